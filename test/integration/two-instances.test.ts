/**
 * Two `tufoci serve` processes over one real docker-registry and one real
 * redis-server, as deployed behind a load balancer. Concurrent CI jobs upload
 * through both; what must hold: every acknowledged upload is in the final
 * state as the unmodified tuf-js Updater sees it over HTTP from either
 * instance; acknowledged timestamp versions increase with the role versions
 * they acknowledge; no instance ever serves a timestamp older than one it
 * served before; once writes stop, both serve the newest timestamp; no 5xx.
 *
 * The crash, Redis-restart and cache-coherence cases are in
 * instance-crash.test.ts, redis-restart.test.ts and cache-coherence.test.ts
 * (each file stays under two minutes on two cores).
 */
import { describe, expect, it } from 'vitest';
import { startRedis } from '../support/redis-server.ts';
import { startTufoci } from '../support/tufoci-process.ts';
import {
  TOKENS,
  TimestampObserver,
  Traffic,
  Uploader,
  createRepository,
  imageFor,
  logProblemsOnFailure,
  type Endpoint,
  type UploadJob,
  useFleet,
} from './fleet.ts';
import { failures, pad, verifyStored, sameTimestampEverywhere, timestampOrder, verifyAll } from './checks.ts';

const fleet = useFleet();

/** Uploads racing on one repository, and spread over all 20. */
const HOT = 100;
const SPREAD = 100;

describe('two tufoci serve processes sharing a registry and a redis', () => {
  it('200 concurrent uploads: 100 racing on one repository, 100 across 20 repositories, spread over both instances', async () => {
    const { registry, keys, owner } = fleet;
    const redis = await startRedis();
    const common = { registry: registry.url, redis: redis.url, tokens: TOKENS, snapshotKey: keys.snapshotKey, timestampKey: keys.timestampKey };
    const [a, b] = await Promise.all([startTufoci({ ...common, name: 'A' }), startTufoci({ ...common, name: 'B' })]);
    logProblemsOnFailure([a, b]);
    const traffic = new Traffic();
    try {
      const eps: Endpoint[] = [
        { name: 'A', url: a.url },
        { name: 'B', url: b.url },
      ];
      const repos = Array.from({ length: 20 }, (_, i) => `it/two/r${pad(i)}`);
      const hot = repos[0] as string;
      for (const [i, repo] of repos.entries()) expect((await createRepository(traffic, eps[i % 2] as Endpoint, owner, repo)).status).toBe(201);

      // 100 jobs racing for the next versions of one role, 100 spread over the 20 repositories
      // (5 more racing in each), all at once, alternating between the instances.
      const jobs: UploadJob[] = [
        ...Array.from({ length: HOT }, (_, i) => ({ repo: hot, tag: `vhot${pad(i)}`, image: imageFor(hot, `vhot${pad(i)}`), first: i })),
        ...Array.from({ length: SPREAD }, (_, i) => {
          const repo = repos[i % repos.length] as string;
          return { repo, tag: `v${pad(i)}`, image: imageFor(repo, `v${pad(i)}`), first: i + Math.floor(i / repos.length) };
        }),
      ];
      const started = Date.now();
      const uploader = new Uploader({ owner, traffic, endpoints: () => eps, deadline: started + 100_000 });
      const observer = new TimestampObserver(traffic, () => eps, repos);
      observer.start();
      const outcomes = await Promise.all(jobs.map((j) => uploader.upload(j)));
      await observer.stop();
      const puts = outcomes.reduce((n, o) => n + o.attempts, 0);
      console.log(`two instances: ${jobs.length} uploads in ${Date.now() - started} ms, ${puts} PUTs, ${observer.reads} timestamp reads; refusals:\n${traffic.summary()}`);

      expect.soft(failures(outcomes), 'every upload is acknowledged in the end').toEqual([]);
      expect.soft(traffic.serverErrors(), traffic.summary(traffic.serverErrors())).toEqual([]);
      expect.soft(traffic.noAnswers(), traffic.summary(traffic.noAnswers())).toEqual([]);
      expect.soft(repos.flatMap((r) => timestampOrder(r, uploader.acks.get(r) ?? []))).toEqual([]);
      expect.soft(observer.regressions, 'an instance served a timestamp older than one it served before').toEqual([]);
      expect.soft(await sameTimestampEverywhere(traffic, eps, repos), 'once writes stop, both instances serve the newest timestamp.json').toEqual([]);
      expect.soft(uploader.acknowledged(hot).size).toBe(HOT + SPREAD / repos.length);
      expect.soft(await verifyStored(registry.url, owner, uploader, repos), 'no acknowledged upload lost').toEqual([]);
      expect(await verifyAll(eps, owner, uploader, repos, registry.url), 'both instances serve every acknowledged upload').toEqual([]);
    } finally {
      await Promise.all([a.stop(), b.stop()]);
      await redis.close();
    }
  }, 150_000);
});
