/**
 * One of two instances dies (SIGKILL) in the middle of concurrent uploads, at
 * the worst moment: its write has put the new role file and snapshot into the
 * registry but not yet moved timestamp.json (a tap in front of the registry
 * holds the answer to its snapshot write while the test kills it). What must
 * hold afterwards: no acknowledged upload is lost (tuf-js over the survivor
 * finds every one), the survivor answers no 5xx, uploads to every repository
 * — including the one the crash interrupted — go on, and the survivor keeps
 * re-signing timestamp.json after the other instance died.
 *
 * The survivor runs in this process (`startServer` with an injected clock):
 * `tufoci serve` takes no clock offset, and with the default policy the
 * timestamp is re-signed 18 hours after it was signed; the shortest the
 * policy allows (integer minutes, margin below expiry) is still a minute.
 * The dying instance is a real `tufoci serve` process.
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
  eventually,
  imageFor,
  logProblemsOnFailure,
  readTimestamp,
  startInProcess,
  verifyWithTuf,
  type Endpoint,
  type UploadJob,
  useFleet,
} from './fleet.ts';
import { failures, pad, verifyStored, timestampOrder, verifyAll } from './checks.ts';
import { startRegistryTap, type TappedRequest } from './registry-tap.ts';

const HOUR = 3_600_000;

const fleet = useFleet();

const snapshotWrite = (r: TappedRequest): boolean => r.method === 'PUT' && /^\/v2\/it\/crash\/r\d+\/tuf\/manifests\/\d+\.snapshot\.json$/.test(r.path);

describe('an instance killed mid-write', () => {
  it('loses no acknowledged upload, blocks no repository, and the survivor keeps re-signing timestamps', async () => {
    const { registry, keys, owner } = fleet;
    const redis = await startRedis();
    const tap = await startRegistryTap(registry.url);
    const a = await startTufoci({ name: 'A', registry: tap.url, redis: redis.url, tokens: TOKENS, snapshotKey: keys.snapshotKey, timestampKey: keys.timestampKey });
    const b = await startInProcess({ name: 'B', registry: registry.url, redis: redis.url, keys });
    logProblemsOnFailure([a, b]);
    const traffic = new Traffic();
    const A: Endpoint = { name: 'A', url: a.url };
    const B: Endpoint = { name: 'B', url: b.url };
    let eps: Endpoint[] = [A, B];
    try {
      const repos = Array.from({ length: 20 }, (_, i) => `it/crash/r${pad(i)}`);
      for (const [i, repo] of repos.entries()) expect((await createRepository(traffic, eps[i % 2] as Endpoint, owner, repo)).status).toBe(201);

      const started = Date.now();
      const uploader = new Uploader({ owner, traffic, endpoints: () => eps, deadline: started + 100_000 });
      const observer = new TimestampObserver(traffic, () => eps, repos);
      const jobs: UploadJob[] = Array.from({ length: 100 }, (_, i) => {
        const repo = repos[i % 20] as string;
        return { repo, tag: `v${pad(i)}`, image: imageFor(repo, `v${pad(i)}`), first: i + Math.floor(i / 20) };
      });

      // When a third of the uploads are acknowledged: kill A right after its next snapshot write landed.
      let crash: { repo: string; snapshot: string; at: number } | undefined;
      let allDone!: () => void;
      const done = new Promise<undefined>((resolve) => {
        allDone = () => resolve(undefined);
      });
      const killer = (async () => {
        const third = eventually('a third of the uploads acknowledged', async () => [...uploader.acks.values()].reduce((n, l) => n + l.length, 0) >= 33, 60_000, 20);
        if ((await Promise.race([third.then(() => true, () => false), done])) !== true) return;
        const hold = tap.holdNext(snapshotWrite);
        const reached = await Promise.race([hold.reached, done]);
        if (!reached) return;
        await a.kill();
        eps = [B];
        const m = /^\/v2\/(.+)\/tuf\/manifests\/(.+)$/.exec(reached.path) as RegExpExecArray;
        crash = { repo: m[1] as string, snapshot: m[2] as string, at: Date.now() };
        hold.release();
      })();

      observer.start();
      const outcomes = await Promise.all(jobs.map((j) => uploader.upload(j)));
      allDone();
      await killer;
      await observer.stop();
      console.log(`crash: ${jobs.length} uploads in ${Date.now() - started} ms; A killed after writing ${crash?.snapshot} of ${crash?.repo}; refusals:\n${traffic.summary()}`);
      expect(crash, 'A was killed between its snapshot and timestamp writes').toBeDefined();
      expect(a.running()).toBe(false);

      // No acknowledged upload lost, no 5xx, timestamps in order.
      expect.soft(await verifyStored(registry.url, owner, uploader, repos), 'no acknowledged upload lost').toEqual([]);
      expect.soft(await verifyAll([B], owner, uploader, repos, registry.url), 'the survivor serves every acknowledged upload').toEqual([]);
      expect.soft(traffic.serverErrors(), traffic.summary(traffic.serverErrors())).toEqual([]);
      expect.soft(traffic.noAnswers().filter((e) => e.endpoint !== 'A'), 'only the killed instance left requests unanswered').toEqual([]);
      expect.soft(repos.flatMap((r) => timestampOrder(r, uploader.acks.get(r) ?? []))).toEqual([]);
      expect.soft(observer.regressions).toEqual([]);
      // The crash interrupted one write; it must not block its repository for good.
      expect.soft(failures(outcomes), 'every upload is acknowledged in the end (through the survivor)').toEqual([]);

      // The survivor re-signs timestamp.json once it is due: move its clock 23 hours on
      // (default policy: timestamps last 24 h and are re-signed 6 h before expiry).
      const before = new Map<string, { version: number; expires: string }>();
      for (const repo of repos) before.set(repo, await readTimestamp(traffic, B, repo));
      b.offsetMs = 23 * HOUR;
      const resigned = new Set<string>();
      await eventually(
        'the survivor re-signs every timestamp',
        async () => {
          for (const repo of repos) {
            if (resigned.has(repo)) continue;
            if ((await readTimestamp(traffic, B, repo)).version > (before.get(repo)?.version ?? 0)) resigned.add(repo);
          }
          return resigned.size === repos.length;
        },
        60_000,
        250,
      ).catch(() => undefined);
      expect(repos.filter((r) => !resigned.has(r)), 'timestamps the survivor did not re-sign').toEqual([]);
      for (const repo of repos) {
        const was = before.get(repo) as { version: number; expires: string };
        const now = await readTimestamp(traffic, B, repo);
        expect(now.version).toBeGreaterThan(was.version);
        expect(Date.parse(now.expires), `${repo}: expiry moved forward`).toBeGreaterThan(Date.parse(was.expires) + 20 * HOUR);
        const check = await verifyWithTuf(B.url, repo, await owner.rootFor(repo), uploader.acknowledged(repo));
        expect(check.missing, `${repo}: acknowledged tags after re-signing`).toEqual([]);
        expect(check.timestampVersion, `${repo}: tuf-js trusts the re-signed timestamp`).toBeGreaterThanOrEqual(now.version);
      }
    } finally {
      await a.kill();
      await b.close();
      await tap.close();
      await redis.close();
    }
  }, 170_000);
});
