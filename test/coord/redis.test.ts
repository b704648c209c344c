/**
 * The coordinator contract on a real redis-server (each test under its own
 * key prefix, two RedisCoordinators per test as two service instances), plus
 * what only Redis can do: go away and come back empty.
 *
 * Guarantees checked across a restart (no persistence, so the server comes
 * back empty): the coordinator reconnects by itself; a lock taken before the
 * restart is never current again (its key is gone) and its fence is below
 * any fence issued after (fences are floored at the server's clock in µs);
 * subscribers re-subscribe and report 'reconnected'; the data loss is
 * reported as 'reset'; heads, schedule, repositories and grants are gone
 * (the registry is the source of truth; the service re-seeds).
 */
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isCoordError } from '../../src/coord/coord-error.ts';
import type { Coordinator, ResyncReason } from '../../src/coord/coordinator.ts';
import { RedisCoordinator } from '../../src/coord/redis-coordinator.ts';
import { assertRedisBinary, startRedis, type RedisServer } from '../support/redis-server.ts';
import { coordinatorContract, freshName, Heard, rejectionOf, type ContractHarness } from './contract.ts';

let server: RedisServer;

beforeAll(async () => {
  server = await startRedis();
});

afterAll(async () => {
  await server?.close();
});

/**
 * Let `ms` of lifetime pass for every key under `prefix` that has a TTL (locks, grants), at once and
 * atomically: each TTL is shortened by `ms`, and a key whose TTL does not outlast it is deleted, as
 * expiry would have. Nothing waits for the clock.
 */
const ELAPSE = `
local ms = tonumber(ARGV[2])
for _, key in ipairs(redis.call('KEYS', ARGV[1])) do
  local ttl = redis.call('PTTL', key)
  if ttl > 0 then
    if ttl <= ms then redis.call('DEL', key) else redis.call('PEXPIRE', key, ttl - ms) end
  end
end
return 1`;

/** Retry `ping` until it answers: each try waits (up to the command timeout) for the connection's ready event. */
async function untilAnswers(coordinator: Coordinator, what: string, tries = 20): Promise<void> {
  for (let i = 1; ; i++) {
    try {
      await coordinator.ping();
      return;
    } catch (error) {
      if (i >= tries) throw new Error(`${what}: no answer after ${tries} tries`, { cause: error });
    }
  }
}

function openOn(prefix: string, errors: unknown[]): RedisCoordinator {
  return new RedisCoordinator({ url: server.url, keyPrefix: prefix, commandTimeoutMs: 2_000, onError: (error) => errors.push(error) });
}

async function redisHarness(): Promise<ContractHarness> {
  const prefix = `t${randomBytes(4).toString('hex')}:`;
  const errors: unknown[] = [];
  const opened: RedisCoordinator[] = [];
  const clock = new Redis(server.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  return {
    async open(): Promise<Coordinator> {
      const coordinator = openOn(prefix, errors);
      opened.push(coordinator);
      await coordinator.ping();
      return coordinator;
    },
    async elapse(ms) {
      await clock.eval(ELAPSE, 0, `${prefix}*`, ms);
    },
    async close() {
      await Promise.all(opened.map((coordinator) => coordinator.close()));
      clock.disconnect();
    },
  };
}

describe('test support', () => {
  it('fails, naming redis-server and apt-get, when the binary is missing', () => {
    expect(() => assertRedisBinary('/nonexistent/redis-server')).toThrow(/redis-server.*apt-get install redis-server/);
  });
});

coordinatorContract('redis', redisHarness);

describe('RedisCoordinator against a restarting server', () => {
  it('issues fences near the server clock in microseconds (safe integers)', async () => {
    const errors: unknown[] = [];
    const coordinator = openOn(`f${randomBytes(4).toString('hex')}:`, errors);
    const before = Date.now() * 1000;
    const lock = await coordinator.acquire(freshName('fence-clock'), { ttlMs: 1_000, waitMs: 0 });
    const after = Date.now() * 1000;
    expect(Number.isSafeInteger(lock?.fence)).toBe(true);
    expect(lock!.fence).toBeGreaterThan(before - 60_000_000);
    expect(lock!.fence).toBeLessThan(after + 60_000_000);
    await coordinator.close();
  });

  it('fails with UNAVAILABLE while Redis is down and works again once it is back, head listeners included', async () => {
    const errors: unknown[] = [];
    const prefix = `d${randomBytes(4).toString('hex')}:`;
    const options = { url: server.url, keyPrefix: prefix, commandTimeoutMs: 300, onError: (error: unknown) => errors.push(error) };
    const coordinator = new RedisCoordinator(options);
    await coordinator.ping();
    await server.stop();
    // An instance that starts, and registers its head listener, while Redis is down.
    const late = new RedisCoordinator(options);
    const reasons: ResyncReason[] = [];
    late.onResync((reason) => reasons.push(reason));
    const versions = new Heard<number>();
    late.onHead((_, version) => versions.push(version));
    try {
      const error = await rejectionOf(coordinator.ping());
      expect(isCoordError(error, 'UNAVAILABLE'), String(error)).toBe(true);
      expect(await rejectionOf(coordinator.acquire(freshName('down'), { ttlMs: 1_000, waitMs: 0 }))).toSatisfy((e: unknown) => isCoordError(e, 'UNAVAILABLE'));
      expect(await rejectionOf(late.ping())).toSatisfy((e: unknown) => isCoordError(e, 'UNAVAILABLE'));
    } finally {
      await server.start();
    }
    await untilAnswers(coordinator, 'the coordinator to reconnect');
    await untilAnswers(late, 'the late instance to subscribe');
    expect(reasons).toContain('reconnected');
    expect(await coordinator.publishHead(freshName('late'), 5)).toBe(true);
    await versions.until((version) => version === 5);
    expect(errors.some((e) => isCoordError(e, 'UNAVAILABLE'))).toBe(true);
    await coordinator.close();
    await late.close();
  });

  it('after a restart: reconnects, old locks are not current, fences stay above, resync is reported, data is gone', async () => {
    const prefix = `r${randomBytes(4).toString('hex')}:`;
    const errors: unknown[] = [];
    const a = openOn(prefix, errors);
    const b = openOn(prefix, errors);
    const reasonsA = new Heard<ResyncReason>();
    const reasonsB = new Heard<ResyncReason>();
    a.onResync(reasonsA.push);
    b.onResync(reasonsB.push);
    const heads = new Heard<[string, number]>();
    b.onHead((repository, version) => heads.push([repository, version]));
    await a.ping();
    await b.ping();
    expect(reasonsB.values).toEqual([]); // the first subscription succeeded at once: no gap to report

    const repository = freshName('restart');
    const idle = freshName('restart-idle');
    const before = await a.acquire(repository, { ttlMs: 30_000, waitMs: 0 });
    const idleLock = await a.acquire(idle, { ttlMs: 30_000, waitMs: 0 });
    expect(before).toBeDefined();
    expect(idleLock).toBeDefined();
    await a.publishHead(repository, 7);
    await heads.until(([, version]) => version === 7);
    await a.scheduleRefresh(repository, 1_000);
    await a.putGrant('grant-1', { job: 1 }, 30_000);
    // Both instances learn the epoch (on connect, and here explicitly through a claim).
    await a.claimDueRefreshes(0, { limit: 0, leaseMs: 1_000 });
    await b.claimDueRefreshes(0, { limit: 0, leaseMs: 1_000 });

    await server.restart();

    await untilAnswers(a, 'instance a to reconnect');
    await untilAnswers(b, 'instance b to reconnect');

    // A new holder after the restart gets a higher fence; the old holder is not current.
    const after = await b.acquire(repository, { ttlMs: 30_000, waitMs: 0 });
    expect(after).toBeDefined();
    expect(after!.fence).toBeGreaterThan(before!.fence);
    expect(await before!.isCurrent()).toBe(false);
    expect(await before!.extend(30_000)).toBe(false);
    expect(before!.signal.aborted).toBe(true);
    expect(await after!.isCurrent()).toBe(true);
    // Nobody took the idle repository, yet its pre-restart holder is not current either.
    expect(await idleLock!.isCurrent()).toBe(false);

    // Both instances were told: the data was lost, and b's subscription reconnected.
    await Promise.all([reasonsA.until((reason) => reason === 'reset'), reasonsB.until((reason) => reason === 'reset')]);
    await reasonsB.until((reason) => reason === 'reconnected');

    // The data is gone, as documented; the service re-seeds from the registry.
    expect(await a.getHead(repository)).toBeUndefined();
    expect(await a.knownRepositories()).toEqual([]);
    expect(await a.takeGrant('grant-1')).toBeUndefined();
    expect(await a.claimDueRefreshes(10_000, { limit: 10, leaseMs: 1_000 })).toEqual([]);

    // Heads flow again to the re-subscribed listener.
    expect(await a.publishHead(repository, 8)).toBe(true);
    await heads.until(([, version]) => version === 8);
    await a.scheduleRefresh(repository, 1_000);
    expect((await b.claimDueRefreshes(1_000, { limit: 10, leaseMs: 1_000 })).map((c) => c.repository)).toEqual([repository]);

    await a.close();
    await b.close();
  });
});
