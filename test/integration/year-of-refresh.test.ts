/**
 * A year of timestamps and snapshots, across two instances, with no gap.
 *
 * Two RepositoryService instances composed as src/main.ts composes them —
 * each with its own RegistryStore/MetadataStore on one real docker-registry
 * and its own RedisCoordinator on one real redis-server — share a simulated
 * clock that the test moves forward an hour at a time through 365 days. At
 * every step both instances run their scheduler tick (`refreshDue`): mostly at
 * once, racing for the refresh the coordinator hands to exactly one of them,
 * sometimes one after the other.
 *
 * Policy: roles/default.json unchanged — timestamp 1 day with a 6 h margin
 * (re-signed every 18 h), snapshot 7 days with a 1 day margin: ~485
 * re-signings in the year; 30 s on an idle 2-core machine, 40-70 s under load.
 *
 * After every step: timestamp and the snapshot it names are not expired at the
 * simulated time; after every step with a write, the registry (the stored
 * truth, not a cache) is read again and must show exactly the writes that were
 * logged — every re-signing was due when it happened and happened once: each
 * moves the timestamp version by exactly one, no version is written twice.
 * (Between writes the store cannot change: the two instances are its only
 * writers and log every commit.) The owner re-signs targets and CI publishes
 * mid-year, as they would. Once a month, and
 * at the end, the unmodified tuf-js Updater (through verifyImage, with state
 * kept all year) verifies a tag with `Date` set to the simulated time.
 * On day 120 one instance dies right after claiming a due refresh: the other
 * reclaims it when the lease ends and carries on alone.
 *
 * Redis lock TTLs and the lock's own deadline are real time; refresh leases
 * and schedules are simulated time (the coordinator takes `now` from the caller).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { RedisCoordinator } from '../../src/coord/index.ts';
// Every verify runs through the client core and the unmodified tuf-js Updater; both must agree.
import { verifyBothClients as verifyImage } from '../support/differential.ts';
import { buildRoot, buildTargets, isoExpiry, signMetadata, type ImageTarget } from '../../src/engine/index.ts';
import { parseExpires } from '../../src/engine/parse.ts';
import { InMemorySigner } from '../../src/keys/index.ts';
import { defaultPolicyPath, loadPolicyFile, type Policy } from '../../src/policy/policy.ts';
import { RepositoryService, type Logger } from '../../src/service/repository-service.ts';
import { MetadataStore, RegistryStore } from '../../src/storage/index.ts';
import { startRedis, type RedisServer } from '../support/redis-server.ts';
import { startRegistry, type RegistryServer } from '../support/registry-server.ts';
import { pushImage } from '../support/image.ts';

const REPO = 'it/year';
const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const MIN = 60_000;

interface Event {
  instance: string;
  level: 'info' | 'warn' | 'error';
  msg: string;
  obj: Record<string, unknown>;
}

interface Instance {
  name: string;
  service: RepositoryService;
  coord: RedisCoordinator;
  closed: boolean;
}

let registry: RegistryServer;
let redis: RedisServer;
let policy: Policy;
let now = Math.floor(Date.now() / 1000) * 1000;
const events: Event[] = [];
const online = { snapshot: InMemorySigner.generate(), timestamp: InMemorySigner.generate() };
const owner = { root: InMemorySigner.generate(), targets: InMemorySigner.generate(), ci: InMemorySigner.generate() };

function instance(name: string): Instance {
  const log = (level: Event['level']) => (obj: object, msg?: string) => void events.push({ instance: name, level, msg: msg ?? '', obj: obj as Record<string, unknown> });
  const logger: Logger = { info: log('info'), warn: log('warn'), error: log('error') };
  const coord = new RedisCoordinator({ url: redis.url, keyPrefix: 'year:' });
  const service = new RepositoryService({
    metadata: new MetadataStore({ store: new RegistryStore({ url: registry.url }) }),
    coord,
    signers: { snapshot: [online.snapshot], timestamp: [online.timestamp] },
    policy,
    clock: () => now,
    logger,
  });
  return { name, service, coord, closed: false };
}

async function close(i: Instance): Promise<void> {
  if (i.closed) return;
  i.closed = true;
  await i.service.close();
  await i.coord.close();
}

let a: Instance;
let b: Instance;

beforeAll(async () => {
  [registry, redis] = await Promise.all([startRegistry(), startRedis()]);
  policy = await loadPolicyFile(defaultPolicyPath());
  a = instance('a');
  b = instance('b');
});
afterAll(async () => {
  for (const i of [a, b]) if (i) await close(i);
  await registry?.stop();
  await redis?.close();
});

describe('a year of online re-signing across two instances', () => {
  it('timestamp and snapshot never expire, each refresh happens exactly once, and tuf-js verifies all year', { timeout: 120_000 }, async () => {
    const observer = new MetadataStore({ store: new RegistryStore({ url: registry.url }) });
    const start = now;
    const ci = (version: number, tags: Record<string, ImageTarget>) =>
      signMetadata(buildTargets({ version, expires: isoExpiry(now + 300 * DAY), targets: tags }), [owner.ci]);

    // The owner creates the repository; CI publishes v1 (a real manifest in the registry).
    const v1 = await pushImage(new RegistryStore({ url: registry.url }), REPO, 'v1');
    const root = await signMetadata(
      buildRoot({
        version: 1,
        expires: isoExpiry(now + 600 * DAY),
        root: { keys: [owner.root.public], threshold: 1 },
        targets: { keys: [owner.targets.public], threshold: 1 },
        snapshot: { keys: [online.snapshot.public], threshold: 1 },
        timestamp: { keys: [online.timestamp.public], threshold: 1 },
        scope: REPO,
      }),
      [owner.root],
    );
    const targets = (version: number) =>
      signMetadata(
        buildTargets({ version, expires: isoExpiry(now + 300 * DAY), delegations: [{ name: 'ci', keys: [owner.ci.public], threshold: 1, paths: ['v*'], terminating: true }] }),
        [owner.targets],
      );
    await a.service.create(REPO, root, await targets(1));
    await b.service.upload(REPO, '1.ci.json', await ci(1, { v1 }));

    const stateDir = await mkdtemp(join(tmpdir(), 'tufoci-year-client-'));
    /** The unmodified tuf-js Updater (verifyImage, state kept all year) at the simulated time. */
    const verifyAt = async (at: number, tag = 'v1') => {
      vi.useFakeTimers({ toFake: ['Date'] });
      vi.setSystemTime(at);
      try {
        return await verifyImage({ store: new RegistryStore({ url: registry.url }), repository: REPO, tag, trustedRoot: root, stateDir });
      } finally {
        vi.useRealTimers();
      }
    };

    const read = async () => {
      const ts = JSON.parse(new TextDecoder().decode(await observer.readMetadata(REPO, 'timestamp.json', 16_384))) as {
        signed: { version: number; expires: string; meta: Record<string, { version: number }> };
      };
      const snapVersion = ts.signed.meta['snapshot.json']?.version as number;
      return { version: ts.signed.version, expires: parseExpires(ts.signed.expires), snapVersion };
    };
    const snapExpiry = new Map<number, number>();
    const snapshotExpires = async (version: number): Promise<number> => {
      let e = snapExpiry.get(version);
      if (e === undefined) {
        const s = JSON.parse(new TextDecoder().decode(await observer.readMetadata(REPO, `${version}.snapshot.json`, 1 << 20))) as { signed: { expires: string } };
        snapExpiry.set(version, (e = parseExpires(s.signed.expires)));
      }
      return e;
    };

    let last = await read();
    const problems: string[] = [];
    const refreshes: Array<{ at: number; by: string; version: number; snapshot: boolean }> = [];
    let uploads = 0;
    let steps = 0;
    let seed = 7;
    let reads = 0;
    const t0 = Date.now();
    let killed = false;
    let reclaimed: number | undefined;
    let monthly = 0;
    const tsMargin = policy.refresh.timestampMarginMinutes * MIN;
    const snapMargin = policy.refresh.snapshotMarginMinutes * MIN;

    while (now < start + 365 * DAY) {
      now += HOUR;
      steps++;
      const day = Math.floor((now - start) / DAY);
      const seen = events.length;

      if (!killed && day >= 120) {
        // b claims the due refresh and dies before re-signing (its lease is never completed).
        const due = last.expires - tsMargin <= now || (await snapshotExpires(last.snapVersion)) - snapMargin <= now;
        if (due) {
          const claims = await b.coord.claimDueRefreshes(now, { limit: 16, leaseMs: 60_000 });
          expect(claims.map((c) => c.repository)).toEqual([REPO]);
          await close(b);
          killed = true;
          expect(await a.service.refreshDue()).toBe(0); // leased to the dead instance for another minute
          now += HOUR;
          reclaimed = now;
        }
      }
      // Two steps in three both tick at once (a race the coordinator must give to one of them only),
      // a first or b first; on the third they tick one after the other, b first, so that both
      // instances do re-sign. The choice is seeded: reruns are alike.
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      const live = (seed % 3 === 1 ? [a, b] : [b, a]).filter((i) => !i.closed);
      const ticks: number[] = [];
      if (seed % 3 === 0) for (const i of live) ticks.push(await i.service.refreshDue());
      else ticks.push(...(await Promise.all(live.map((i) => i.service.refreshDue()))));
      let wrote = ticks.some((n) => n > 0);
      if (day === 180 && uploads === 0) {
        // Mid-year the owner re-signs targets and CI publishes again, through either instance.
        await a.service.upload(REPO, '2.targets.json', await targets(2));
        const v2 = await pushImage(new RegistryStore({ url: registry.url }), REPO, 'v2');
        await a.service.upload(REPO, '2.ci.json', await ci(2, { v1, v2 }));
        uploads = 2;
        last = { ...last, version: last.version + 2 }; // accounted for below
        wrote = true;
      }

      if (events.length > seen) wrote = true;
      for (const e of events.slice(seen)) {
        if (e.level !== 'info') problems.push(`${e.instance} ${e.level}: ${e.msg} ${JSON.stringify(e.obj).slice(0, 200)}`);
        if (e.msg === 'online roles re-signed') refreshes.push({ at: now, by: e.instance, version: e.obj['timestampVersion'] as number, snapshot: e.obj['snapshot'] as boolean });
      }
      const stepRefreshes = refreshes.filter((r) => r.at === now);
      const current = wrote ? await read() : last;
      if (wrote) reads++;
      // Exactly once: the stored timestamp moved by exactly the refreshes logged (one version each).
      // (A tick may also count a claim it found not due — after an upload the schedule keeps the
      // earlier time — so the logs, not the tick counts, say what was written.)
      expect(current.version, `day ${day}: timestamp version`).toBe(last.version + stepRefreshes.length);
      expect(stepRefreshes.length, `day ${day}: refreshes in one step`).toBeLessThanOrEqual(1);
      for (const r of stepRefreshes) {
        // It was due (inside a margin) when it happened, and what it replaced had not expired yet.
        const snapDueAt = (await snapshotExpires(last.snapVersion)) - snapMargin;
        expect(last.expires - tsMargin <= now || snapDueAt <= now, `day ${day}: refresh not due`).toBe(true);
        expect(r.snapshot).toBe(snapDueAt <= now);
        expect(last.expires, `day ${day}: replaced an expired timestamp`).toBeGreaterThan(now);
        expect(snapDueAt + snapMargin, `day ${day}: replaced an expired snapshot`).toBeGreaterThan(now);
      }
      // No gap: what the registry holds is valid at the simulated time.
      expect(current.expires, `day ${day}: timestamp expired`).toBeGreaterThan(now);
      expect(await snapshotExpires(current.snapVersion), `day ${day}: snapshot expired`).toBeGreaterThan(now);
      last = current;

      if (day >= (monthly + 1) * 30) {
        monthly++;
        const r = await verifyAt(now);
        expect(r.digest).toBe(v1.digest);
        expect(r.tuf.timestamp).toBe(current.version);
      }
    }

    expect(problems).toEqual([]);
    expect(killed).toBe(true);
    // After the kill only a re-signs, starting with the refresh b had claimed.
    const afterKill = refreshes.filter((r) => r.at >= (reclaimed as number));
    expect(afterKill[0]?.at).toBe(reclaimed);
    expect(afterKill.every((r) => r.by === 'a')).toBe(true);
    expect(new Set(refreshes.filter((r) => r.at < (reclaimed as number)).map((r) => r.by))).toEqual(new Set(['a', 'b']));
    // Distinct, consecutive versions: 1 at creation, +1 per write, +1 per refresh.
    const versions = refreshes.map((r) => r.version);
    expect(new Set(versions).size).toBe(versions.length);
    expect(last.version).toBe(1 + 1 + uploads + refreshes.length);
    // Timestamp every 18 hours, snapshot every 6 days: about 485 re-signings in the year.
    expect(refreshes.length).toBeGreaterThan(480);
    expect(refreshes.filter((r) => r.snapshot).length).toBeGreaterThan(55);
    console.log(
      `year of refresh: ${steps} steps, ${reads} registry reads, ${refreshes.length} re-signings (${refreshes.filter((r) => r.snapshot).length} with snapshot; ${refreshes.filter((r) => r.by === 'b').length} by b), timestamp v${last.version}, ${((Date.now() - t0) / 1000).toFixed(1)} s`,
    );

    // The end of the year, as the unmodified tuf-js Updater sees it; and a control: two days later,
    // with no re-signing, the same client refuses the frozen timestamp.
    const end = await verifyAt(now, 'v2');
    expect(end.tuf).toMatchObject({ timestamp: last.version, snapshot: last.snapVersion });
    await expect(verifyAt(now + 2 * DAY)).rejects.toThrow(/expired/);
    await rm(stateDir, { recursive: true, force: true });
  });
});
