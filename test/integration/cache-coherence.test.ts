/**
 * What one instance serves after another instance wrote. Heads are cached
 * per instance and dropped when a newer head is announced over Redis pub/sub;
 * a head load that was already under way when the announcement arrived must
 * not put the older head back into the cache for good: a tuf-js client behind
 * a load balancer would then never see the new version from that instance
 * (and one that saw it from the other would be handed a rollback).
 *
 * B reads the registry through a tap that holds B's read of the snapshot
 * while A writes, which makes the overlap certain rather than likely (the
 * concurrency test in two-instances.test.ts meets it by chance).
 */
import { describe, expect, it } from 'vitest';
import { startRedis } from '../support/redis-server.ts';
import { startTufoci } from '../support/tufoci-process.ts';
import { CI_TOKEN, TOKENS, Traffic, createRepository, eventually, imageFor, readTimestamp, verifyWithTuf, logProblemsOnFailure, type Endpoint, useFleet } from './fleet.ts';
import { startRegistryTap } from './registry-tap.ts';

const fleet = useFleet();

describe('head caches of two instances', () => {
  it('an instance whose head load overlapped a write by the other instance does not keep serving the older head', async () => {
    const { registry, keys, owner } = fleet;
    const redis = await startRedis();
    const tap = await startRegistryTap(registry.url);
    const common = { redis: redis.url, tokens: TOKENS, snapshotKey: keys.snapshotKey, timestampKey: keys.timestampKey };
    // B logs at debug level, where it tells that a peer's head announcement reached it.
    const [a, b] = await Promise.all([startTufoci({ ...common, registry: registry.url, name: 'A' }), startTufoci({ ...common, registry: tap.url, name: 'B', logLevel: 'debug' })]);
    logProblemsOnFailure([a, b]);
    const traffic = new Traffic();
    const repo = 'it/cache/overlap';
    const A: Endpoint = { name: 'A', url: a.url };
    const B: Endpoint = { name: 'B', url: b.url };
    try {
      expect((await createRepository(traffic, A, owner, repo)).status).toBe(201);
      // B has never loaded this repository: its first read loads the head from the registry.
      const hold = tap.holdNext((r) => r.method === 'GET' && r.path === `/v2/${repo}/tuf/manifests/1.snapshot.json`);
      const firstRead = readTimestamp(traffic, B, repo);
      await hold.reached; // B has read timestamp.json version 1 and is reading 1.snapshot.json
      const put = await traffic.call(A, 'PUT', `/v1/repos/${repo}/metadata/1.ci.json`, { token: CI_TOKEN, body: await owner.ciBytes(1, { v1: imageFor(repo, 'v1') }) });
      expect(put.status).toBe(201);
      expect(put.json<{ timestampVersion: number }>().timestampVersion).toBe(2);
      // A announced version 2 before answering; B's load is still held: let the announcement reach B first.
      await b.waitForLog((l) => l['msg'] === 'head announcement received' && l['repository'] === repo && l['timestampVersion'] === 2);
      hold.release();
      expect([1, 2]).toContain((await firstRead).version); // a read that began before the write may answer the older head

      // …but from now on B must serve version 2 (the registry has had it since before B finished loading).
      let served = 0;
      await eventually('B serves timestamp version 2', async () => (served = (await readTimestamp(traffic, B, repo)).version) === 2, 10_000).catch(() => undefined);
      expect(served, `B still serves timestamp version ${served} while the registry and A have version 2`).toBe(2);
      const check = await verifyWithTuf(B.url, repo, await owner.rootFor(repo), new Map([['v1', imageFor(repo, 'v1')]]));
      expect(check.missing, 'tuf-js over B does not find the acknowledged tag').toEqual([]);
    } finally {
      await Promise.all([a.stop(), b.stop()]);
      await tap.close();
      await redis.close();
    }
  }, 60_000);

  it('the same overlap inside one instance: a head load that began before its own write does not replace the newer head', async () => {
    const { registry, keys, owner } = fleet;
    const tap = await startRegistryTap(registry.url);
    const a = await startTufoci({ registry: tap.url, tokens: TOKENS, snapshotKey: keys.snapshotKey, timestampKey: keys.timestampKey, name: 'A' });
    const traffic = new Traffic();
    const repo = 'it/cache/self';
    const A: Endpoint = { name: 'A', url: a.url };
    try {
      expect((await createRepository(traffic, A, owner, repo)).status).toBe(201);
      await a.stop();
      // A fresh process (as after a deploy) loads the head at start-up; hold that load at the snapshot read.
      const hold = tap.holdNext((r) => r.method === 'GET' && r.path === `/v2/${repo}/tuf/manifests/1.snapshot.json`);
      const a3 = await startTufoci({ registry: tap.url, tokens: TOKENS, snapshotKey: keys.snapshotKey, timestampKey: keys.timestampKey, name: 'A3' });
      const A3: Endpoint = { name: 'A3', url: a3.url };
      logProblemsOnFailure([a, a3]);
      try {
        await hold.reached;
        const firstRead = readTimestamp(traffic, A3, repo); // joins the load under way
        const put = await traffic.call(A3, 'PUT', `/v1/repos/${repo}/metadata/1.ci.json`, { token: CI_TOKEN, body: await owner.ciBytes(1, { v1: imageFor(repo, 'v1') }) });
        expect(put.status).toBe(201);
        expect(put.json<{ timestampVersion: number }>().timestampVersion).toBe(2);
        hold.release();
        expect([1, 2]).toContain((await firstRead).version); // began before the write: may answer the older head
        let served = 0;
        await eventually('A3 serves timestamp version 2', async () => (served = (await readTimestamp(traffic, A3, repo)).version) === 2, 10_000).catch(() => undefined);
        expect(served, `A3 acknowledged timestamp version 2 and then serves version ${served}`).toBe(2);
      } finally {
        hold.release();
        await a3.stop();
      }
    } finally {
      await a.stop();
      await tap.close();
    }
  }, 60_000);
});
