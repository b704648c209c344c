/**
 * Redis restarts (empty: no persistence, as after a crash) while two tufoci
 * serve processes take concurrent uploads — at the moment one of them has
 * written a role file and snapshot but not yet timestamp.json (a tap in front
 * of the registry holds the answer to its snapshot write while Redis goes
 * down). What must hold: uploads fail with 503 while Redis is down — never
 * acknowledged without being stored, never another 5xx — no acknowledged
 * upload is lost, and afterwards uploads to every repository succeed again.
 * And a running instance re-schedules the re-signing of every stored
 * repository after the data loss, not only the ones it happens to cache.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { startRegistry } from '../support/registry-server.ts';
import { startRedis } from '../support/redis-server.ts';
import { startTufoci } from '../support/tufoci-process.ts';
import {
  CI_TOKEN,
  TOKENS,
  Traffic,
  Uploader,
  createRepository,
  eventually,
  imageFor,
  logProblemsOnFailure,
  readTimestamp,
  startInProcess,
  type Endpoint,
  type UploadJob,
  useFleet,
} from './fleet.ts';
import { failures, pad, verifyStored, timestampOrder, verifyAll } from './checks.ts';
import { startRegistryTap, type TappedRequest } from './registry-tap.ts';

const HOUR = 3_600_000;

const fleet = useFleet();

const snapshotWrite = (r: TappedRequest): boolean => r.method === 'PUT' && /^\/v2\/it\/redis\/r\d+\/tuf\/manifests\/\d+\.snapshot\.json$/.test(r.path);

describe('Redis restarting under two instances', () => {
  it('loses no acknowledged upload; uploads answer 503 while it is down and succeed again afterwards, in every repository', async () => {
    const { registry, keys, owner } = fleet;
    const redis = await startRedis();
    const tap = await startRegistryTap(registry.url);
    const common = { redis: redis.url, tokens: TOKENS, snapshotKey: keys.snapshotKey, timestampKey: keys.timestampKey };
    const [a, b] = await Promise.all([startTufoci({ ...common, registry: tap.url, name: 'A' }), startTufoci({ ...common, registry: registry.url, name: 'B' })]);
    logProblemsOnFailure([a, b]);
    const traffic = new Traffic();
    const eps: Endpoint[] = [
      { name: 'A', url: a.url },
      { name: 'B', url: b.url },
    ];
    try {
      const repos = Array.from({ length: 10 }, (_, i) => `it/redis/r${pad(i)}`);
      for (const [i, repo] of repos.entries()) expect((await createRepository(traffic, eps[i % 2] as Endpoint, owner, repo)).status).toBe(201);

      const started = Date.now();
      const uploader = new Uploader({ owner, traffic, endpoints: () => eps, deadline: started + 60_000 });
      const jobs: UploadJob[] = Array.from({ length: 80 }, (_, i) => {
        const repo = repos[i % 10] as string;
        return { repo, tag: `v${pad(i)}`, image: imageFor(repo, `v${pad(i)}`), first: i + Math.floor(i / 10) };
      });

      // When 25 uploads are acknowledged: stop Redis right after A's next snapshot write
      // landed, let A go on (its lock is gone), and start Redis again 2 s later.
      let outage: { repo: string; start: number; end?: number } | undefined;
      let allDone!: () => void;
      const done = new Promise<undefined>((resolve) => {
        allDone = () => resolve(undefined);
      });
      const chaos = (async () => {
        const some = eventually('25 uploads acknowledged', async () => [...uploader.acks.values()].reduce((n, l) => n + l.length, 0) >= 25, 60_000, 20);
        if ((await Promise.race([some.then(() => true, () => false), done])) !== true) return;
        const hold = tap.holdNext(snapshotWrite);
        const reached = await Promise.race([hold.reached, done]);
        if (!reached) return;
        outage = { repo: (/^\/v2\/(.+)\/tuf\//.exec(reached.path) as RegExpExecArray)[1] as string, start: Date.now() };
        await redis.stop();
        hold.release();
        await sleep(2_000);
        await redis.start();
        outage.end = Date.now();
      })();

      const outcomes = await Promise.all(jobs.map((j) => uploader.upload(j)));
      allDone();
      await chaos;
      console.log(`redis restart: ${jobs.length} uploads in ${Date.now() - started} ms; outage ${JSON.stringify(outage)}; refusals:\n${traffic.summary()}`);
      expect(outage?.end, 'Redis was restarted while A was between its snapshot and timestamp writes').toBeDefined();
      const { start } = outage as { start: number };

      // During the outage: 503 with a JSON error, nothing else; nothing 5xx before it.
      const errors = traffic.serverErrors();
      expect.soft(errors.filter((e) => e.method === 'PUT' && e.status === 503).length, 'uploads answered 503 while Redis was down').toBeGreaterThan(0);
      expect.soft(errors.filter((e) => e.status !== 503 || !['UNAVAILABLE', 'LOCK_LOST'].includes(e.code ?? '')), traffic.summary(errors)).toEqual([]);
      expect.soft(errors.filter((e) => e.end < start), 'answered 5xx before Redis went down').toEqual([]);
      expect.soft(traffic.noAnswers(), traffic.summary(traffic.noAnswers())).toEqual([]);

      // Nothing acknowledged is lost; acknowledged timestamps in order.
      for (const ep of eps) await eventually(`${ep.name} ready again`, async () => (await fetch(`${ep.url}/readyz`)).status === 200, 30_000);
      expect.soft(await verifyStored(registry.url, owner, uploader, repos), 'no acknowledged upload lost').toEqual([]);
      expect.soft(await verifyAll(eps, owner, uploader, repos, registry.url), 'both instances serve every acknowledged upload').toEqual([]);
      expect.soft(repos.flatMap((r) => timestampOrder(r, uploader.acks.get(r) ?? []))).toEqual([]);
      // Uploads that met the outage were retried until they went through.
      expect.soft(failures(outcomes), 'every upload is acknowledged in the end').toEqual([]);

      // New uploads succeed afterwards, through either instance, in every repository.
      const after = new Uploader({ owner, traffic, endpoints: () => eps, deadline: Date.now() + 30_000 });
      for (const [repo, acks] of uploader.acks) after.acks.set(repo, [...acks]);
      const later = await Promise.all(
        repos.flatMap((repo) => [0, 1].map((first) => ({ repo, tag: `vafter${first}`, image: imageFor(repo, `vafter${first}`), first }))).map((j) => after.upload(j)),
      );
      expect.soft(failures(later), 'uploads after Redis came back').toEqual([]);
      expect.soft(await verifyStored(registry.url, owner, after, repos), 'no acknowledged upload lost').toEqual([]);
      expect(await verifyAll(eps, owner, after, repos, registry.url), 'both instances serve every acknowledged upload').toEqual([]);
    } finally {
      await Promise.all([a.stop(), b.stop()]);
      await tap.close();
      await redis.close();
    }
  }, 170_000);

  it('after Redis lost its data, a running instance re-schedules every stored repository, not only the ones it has cached', async () => {
    const { registry, keys, owner } = fleet;
    // A registry of its own, empty when C starts, so C caches nothing at start-up.
    const own = await startRegistry();
    const redis = await startRedis();
    const c = await startInProcess({ name: 'C', registry: own.url, redis: redis.url, keys });
    const a = await startTufoci({ name: 'A', registry: own.url, redis: redis.url, tokens: TOKENS, snapshotKey: keys.snapshotKey, timestampKey: keys.timestampKey });
    logProblemsOnFailure([a, c]);
    const traffic = new Traffic();
    const A: Endpoint = { name: 'A', url: a.url };
    const C: Endpoint = { name: 'C', url: c.url };
    const repo = 'it/redis/reseed';
    try {
      // Written through A only: C never loads this repository's head.
      expect((await createRepository(traffic, A, owner, repo)).status).toBe(201);
      const put = await traffic.call(A, 'PUT', `/v1/repos/${repo}/metadata/1.ci.json`, { token: CI_TOKEN, body: await owner.ciBytes(1, { v1: imageFor(repo, 'v1') }) });
      expect(put.status).toBe(201);
      const before = await readTimestamp(traffic, A, repo);
      await a.stop();

      let resetSeen!: () => void;
      const reset = new Promise<void>((resolve) => {
        resetSeen = resolve;
      });
      c.running.coord.onResync((reason) => {
        if (reason === 'reset') resetSeen();
      });
      await redis.restart(); // the refresh schedule is gone
      await Promise.race([reset, sleep(30_000).then(() => Promise.reject(new Error('C never noticed that Redis lost its data')))]);
      await eventually('C ready again', async () => (await fetch(`${C.url}/readyz`)).status === 200, 30_000);

      // 23 hours on, the timestamp is inside its re-signing margin: C must re-sign it.
      c.offsetMs = 23 * HOUR;
      let version = before.version;
      await eventually('C re-signs the timestamp', async () => (version = (await readTimestamp(traffic, C, repo)).version) > before.version, 30_000, 250).catch(() => undefined);
      expect(version, `timestamp.json of ${repo} was not re-signed after the Redis data loss (still version ${before.version})`).toBeGreaterThan(before.version);
    } finally {
      await a.stop();
      await c.close();
      await redis.close();
      await own.stop();
    }
  }, 120_000);
});
