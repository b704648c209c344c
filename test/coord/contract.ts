/**
 * The one behavioural contract every Coordinator passes (after
 * distribution's storage driver test suite). Each backend's *.test.ts calls
 * `coordinatorContract(name, setup)`. `setup` runs before each test and gives
 * a harness whose coordinators share one backend state, as several service
 * instances would; tests use fresh repository names.
 */
import { randomBytes } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CoordError, isCoordError, type CoordErrorCode } from '../../src/coord/coord-error.ts';
import type { AcquireOptions, Coordinator, Lock, RefreshClaim } from '../../src/coord/coordinator.ts';
import { requireCurrent, withLock } from '../../src/coord/with-lock.ts';

export interface ContractHarness {
  /** A new coordinator on the shared state (another service instance). */
  open(): Promise<Coordinator>;
  /** Let `ms` of lock and grant lifetime pass, without waiting for it (a fake clock, or TTLs shortened on the server). */
  elapse(ms: number): Promise<void>;
  /** Close every coordinator opened here. */
  close(): Promise<void>;
}

/** A lock TTL short enough to wait out in a test, long enough to survive a busy event loop. */
const SHORT_TTL_MS = 250;
const PAST_SHORT_TTL_MS = 450;
const LONG_TTL_MS = 30_000;

let counter = 0;
export const freshName = (prefix: string): string => `${prefix}/r${++counter}-${randomBytes(3).toString('hex')}`;

/**
 * What a listener heard, and a promise for the first value (heard already, or
 * later) that passes a test: tests wait on events, never on the clock.
 */
export class Heard<T> {
  readonly values: T[] = [];
  #waiters: Array<{ test: (value: T) => boolean; resolve: () => void }> = [];

  readonly push = (value: T): void => {
    this.values.push(value);
    this.#waiters = this.#waiters.filter((waiter) => {
      if (!waiter.test(value)) return true;
      waiter.resolve();
      return false;
    });
  };

  until(test: (value: T) => boolean): Promise<void> {
    if (this.values.some(test)) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push({ test, resolve }));
  }
}

/** Resolves when `coordinator` hears `version` of `repository`; listening starts at once. */
export function headArrives(coordinator: Coordinator, repository: string, version: number): Promise<void> {
  return new Promise((resolve) => {
    const stop = coordinator.onHead((r, v) => {
      if (r !== repository || v !== version) return;
      stop();
      resolve();
    });
  });
}

/** An `onWaiting` hook, and a promise that resolves once the acquirer is registered as a waiter. */
export function waiter(): { onWaiting: () => void; registered: Promise<void> } {
  let onWaiting!: () => void;
  const registered = new Promise<void>((resolve) => {
    onWaiting = resolve;
  });
  return { onWaiting, registered };
}

/** Resolves once the lock's signal has aborted (at once if it already has). */
export function aborted(signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
}

/** Let every other ready task run once (not a timed pause). */
const yieldToOthers = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/**
 * `coordinator` with every lock it hands out watched: `next()` resolves at the
 * next successful `extend` of any of them (how a test follows withLock's renewals).
 */
function watchingRenewals(coordinator: Coordinator): { coordinator: Coordinator; next(): Promise<void> } {
  let waiting: Array<() => void> = [];
  const extended = (): void => {
    const woken = waiting;
    waiting = [];
    for (const wake of woken) wake();
  };
  const forward = <T extends object>(target: T, prop: string | symbol): unknown => {
    const value: unknown = Reflect.get(target, prop, target);
    return typeof value === 'function' ? value.bind(target) : value;
  };
  const watchLock = (lock: Lock): Lock =>
    new Proxy(lock, {
      get: (target, prop) =>
        prop === 'extend'
          ? async (ttlMs: number) => {
              const ok = await target.extend(ttlMs);
              if (ok) extended();
              return ok;
            }
          : forward(target, prop),
    });
  const watched = new Proxy(coordinator, {
    get: (target, prop) =>
      prop === 'acquire'
        ? async (repository: string, options: AcquireOptions) => {
            const lock = await target.acquire(repository, options);
            return lock === undefined ? undefined : watchLock(lock);
          }
        : forward(target, prop),
  });
  return { coordinator: watched, next: () => new Promise<void>((resolve) => waiting.push(resolve)) };
}

export async function rejectionOf(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error('expected a rejection, got success');
    },
    (error: unknown) => error,
  );
}

async function expectCode(promise: Promise<unknown>, code: CoordErrorCode): Promise<CoordError> {
  const error = await rejectionOf(promise);
  expect(isCoordError(error, code), `expected CoordError ${code}, got ${String(error)}`).toBe(true);
  return error as CoordError;
}

function median(values: number[]): number {
  const sorted = [...values].sort((x, y) => x - y);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

async function held(coordinator: Coordinator, repository: string, ttlMs = LONG_TTL_MS): Promise<Lock> {
  const lock = await coordinator.acquire(repository, { ttlMs, waitMs: 0 });
  if (lock === undefined) throw new Error(`could not take the free lock on ${repository}`);
  return lock;
}

export function coordinatorContract(name: string, setup: () => Promise<ContractHarness>): void {
  describe(`Coordinator contract: ${name}`, () => {
    let harness: ContractHarness;
    let a: Coordinator;
    let b: Coordinator;

    beforeEach(async () => {
      harness = await setup();
      a = await harness.open();
      b = await harness.open();
    });

    afterEach(async () => {
      await harness.close();
    });

    describe('writer lock', () => {
      it('takes a free lock at once and answers undefined for a held one with waitMs 0', async () => {
        const repository = freshName('lock');
        const lock = await held(a, repository);
        expect(lock.repository).toBe(repository);
        expect(Number.isSafeInteger(lock.fence) && lock.fence > 0).toBe(true);
        expect(lock.signal.aborted).toBe(false);
        expect(await lock.isCurrent()).toBe(true);
        expect(await b.acquire(repository, { ttlMs: LONG_TTL_MS, waitMs: 0 })).toBeUndefined();
        expect(await a.acquire(repository, { ttlMs: LONG_TTL_MS, waitMs: 0 })).toBeUndefined();
        // Other repositories are independent.
        const other = await held(b, freshName('lock'));
        expect(await other.release()).toBe(true);
        expect(await lock.release()).toBe(true);
        const next = await held(b, repository);
        expect(next.fence).toBeGreaterThan(lock.fence);
      });

      it('gives the lock to exactly one of 50 concurrent acquirers at a time, across two instances', async () => {
        const repository = freshName('mutex');
        let inside = 0;
        let maxInside = 0;
        const fences: number[] = [];
        await Promise.all(
          Array.from({ length: 50 }, async (_, i) => {
            const coordinator = i % 2 === 0 ? a : b;
            const lock = await coordinator.acquire(repository, { ttlMs: LONG_TTL_MS, waitMs: 25_000 });
            if (lock === undefined) throw new Error(`acquirer ${i} never got the lock`);
            inside += 1;
            maxInside = Math.max(maxInside, inside);
            fences.push(lock.fence);
            expect(await lock.isCurrent()).toBe(true);
            await yieldToOthers();
            inside -= 1;
            expect(await lock.release()).toBe(true);
          }),
        );
        expect(maxInside).toBe(1);
        expect(fences).toHaveLength(50);
        for (let i = 1; i < fences.length; i++) expect(fences[i]!).toBeGreaterThan(fences[i - 1]!);
      });

      it('answers undefined when the lock stays busy for the whole waitMs', async () => {
        const repository = freshName('busy');
        const lock = await held(a, repository);
        let waited = 0;
        expect(await b.acquire(repository, { ttlMs: LONG_TTL_MS, waitMs: 150, onWaiting: () => waited++ })).toBeUndefined();
        expect(waited).toBe(1);
        expect(await lock.isCurrent()).toBe(true);
      });

      it('hands the lock to a waiter as soon as the holder releases', async () => {
        const repository = freshName('handover');
        const lock = await held(a, repository);
        const { onWaiting, registered } = waiter();
        const waiting = b.acquire(repository, { ttlMs: LONG_TTL_MS, waitMs: 10_000, onWaiting });
        await registered;
        await lock.release();
        const next = await waiting;
        expect(next).toBeDefined();
        expect(next!.fence).toBeGreaterThan(lock.fence);
      });

      it('tells a releasing holder whether another acquirer was waiting (and only a waiting one counts)', async () => {
        const repository = freshName('waiters');
        let lock = await held(a, repository);
        expect(await b.acquire(repository, { ttlMs: LONG_TTL_MS, waitMs: 0 })).toBeUndefined(); // one try, not waiting
        expect(await lock.release()).toBe(true);
        expect(lock.waiters).toBe(false);
        lock = await held(a, repository);
        const { onWaiting, registered } = waiter();
        const waiting = b.acquire(repository, { ttlMs: LONG_TTL_MS, waitMs: 10_000, onWaiting });
        await registered;
        expect(await lock.release()).toBe(true);
        expect(lock.waiters).toBe(true);
        const next = await waiting;
        expect(next).toBeDefined();
        expect(await next!.release()).toBe(true);
        expect(next!.waiters).toBe(false);
      });

      it('lets a stale holder release nothing: the new holder keeps the lock', async () => {
        const repository = freshName('stale-release');
        const stale = await held(a, repository, SHORT_TTL_MS);
        await harness.elapse(PAST_SHORT_TTL_MS);
        const fresh = await held(b, repository);
        expect(await stale.release()).toBe(false);
        expect(await stale.release()).toBe(false);
        expect(await fresh.isCurrent()).toBe(true);
        expect(await a.acquire(repository, { ttlMs: LONG_TTL_MS, waitMs: 0 })).toBeUndefined();
        expect(await fresh.release()).toBe(true);
        expect(await fresh.release()).toBe(false);
      });

      it('after expiry: another instance acquires with a higher fence, the first is no longer current and cannot extend', async () => {
        const repository = freshName('expiry');
        const first = await held(a, repository, SHORT_TTL_MS);
        await harness.elapse(PAST_SHORT_TTL_MS);
        const second = await held(b, repository);
        expect(second.fence).toBeGreaterThan(first.fence);
        expect(await first.isCurrent()).toBe(false);
        expect(await first.extend(LONG_TTL_MS)).toBe(false);
        expect(first.signal.aborted).toBe(true);
        expect(isCoordError(first.signal.reason, 'LOCK_LOST')).toBe(true);
        expect(await second.isCurrent()).toBe(true);
        await expectCode(requireCurrent(first, a.backend), 'LOCK_LOST');
        await requireCurrent(second, b.backend);
      });

      it('extends a held lock past its first TTL', async () => {
        const repository = freshName('extend');
        const lock = await held(a, repository, 300);
        await harness.elapse(100);
        expect(await lock.extend(5_000)).toBe(true);
        await harness.elapse(400);
        expect(await b.acquire(repository, { ttlMs: LONG_TTL_MS, waitMs: 0 })).toBeUndefined();
        expect(await lock.isCurrent()).toBe(true);
        expect(lock.signal.aborted).toBe(false);
      });

      it('issues strictly increasing fences per repository across instances', async () => {
        const repository = freshName('fence');
        const fences: number[] = [];
        for (let i = 0; i < 20; i++) {
          const lock = await held(i % 2 === 0 ? a : b, repository);
          fences.push(lock.fence);
          await lock.release();
        }
        for (let i = 1; i < fences.length; i++) expect(fences[i]!).toBeGreaterThan(fences[i - 1]!);
        for (const fence of fences) expect(Number.isSafeInteger(fence)).toBe(true);
      });

      it('answers isCurrent false, without losing the lock, when less than minRemainingMs is left', async () => {
        const repository = freshName('remaining');
        const lock = await held(a, repository, 10_000);
        expect(await lock.isCurrent({ minRemainingMs: 60_000 })).toBe(false);
        expect(lock.signal.aborted).toBe(false);
        expect(await lock.isCurrent({ minRemainingMs: 1_000 })).toBe(true);
        expect(await lock.isCurrent()).toBe(true);
        await expectCode(requireCurrent(lock, a.backend, { minRemainingMs: 60_000 }), 'LOCK_LOST');
      });

      it('aborts the signal on release and makes the lock dead', async () => {
        const repository = freshName('signal');
        const lock = await held(a, repository);
        let aborted = 0;
        lock.signal.addEventListener('abort', () => aborted++);
        expect(await lock.release()).toBe(true);
        expect(aborted).toBe(1);
        expect(isCoordError(lock.signal.reason, 'LOCK_LOST')).toBe(true);
        expect((lock.signal.reason as CoordError).detail.reason).toBe('released');
        expect(await lock.isCurrent()).toBe(false);
        expect(await lock.extend(LONG_TTL_MS)).toBe(false);
      });

      it('stops waiting when the acquire signal aborts', async () => {
        const repository = freshName('abort');
        await held(a, repository);
        const controller = new AbortController();
        const { onWaiting, registered } = waiter();
        const waiting = b.acquire(repository, { ttlMs: LONG_TTL_MS, waitMs: 20_000, signal: controller.signal, onWaiting });
        await registered;
        controller.abort(new Error('client went away'));
        expect(await rejectionOf(waiting)).toEqual(new Error('client went away'));
        await expect(b.acquire(repository, { ttlMs: LONG_TTL_MS, waitMs: 0, signal: controller.signal })).rejects.toThrow('client went away');
      });

      it('withLock keeps renewing the lock while the work outlasts its TTL', async () => {
        const repository = freshName('renew');
        const renewals = watchingRenewals(a);
        await withLock(renewals.coordinator, repository, { ttlMs: 300, waitMs: 0, renewEveryMs: 60 }, async (lock) => {
          // 4 × 200 ms of lock lifetime pass, each time right after a renewal: 800 ms in all, beyond the 300 ms TTL.
          for (let i = 0; i < 4; i++) {
            await renewals.next();
            await harness.elapse(200);
          }
          expect(lock.signal.aborted).toBe(false);
          expect(await lock.isCurrent()).toBe(true);
          expect(await b.acquire(repository, { ttlMs: LONG_TTL_MS, waitMs: 0 })).toBeUndefined();
        });
        expect(await b.acquire(repository, { ttlMs: LONG_TTL_MS, waitMs: 0 })).toBeDefined();
      });

      it('withLock runs the work under the lock, releases it, and refuses with BUSY when held', async () => {
        const repository = freshName('with-lock');
        const result = await withLock(a, repository, { ttlMs: LONG_TTL_MS, waitMs: 0 }, async (lock) => {
          expect(await lock.isCurrent()).toBe(true);
          const busy = await expectCode(withLock(b, repository, { ttlMs: LONG_TTL_MS, waitMs: 50 }, async () => 'never'), 'BUSY');
          expect(busy.detail.repository).toBe(repository);
          return 'done';
        });
        expect(result).toBe('done');
        const after = await held(b, repository);
        expect(await after.release()).toBe(true);
        // A failing work still releases.
        await expect(withLock(a, repository, { ttlMs: LONG_TTL_MS, waitMs: 0 }, async () => {
          throw new Error('work failed');
        })).rejects.toThrow('work failed');
        expect(await b.acquire(repository, { ttlMs: LONG_TTL_MS, waitMs: 0 })).toBeDefined();
      });
    });

    describe('heads', () => {
      it('delivers a publish to a listener on another instance; getHead answers; heads only move forward', async () => {
        const repository = freshName('head');
        const seen: Array<[string, number]> = [];
        const unsubscribe = b.onHead((r, v) => {
          if (r === repository) seen.push([r, v]);
        });
        const third = headArrives(b, repository, 3);
        await b.ping(); // readiness includes a live head subscription
        expect(await b.getHead(repository)).toBeUndefined();
        expect(await a.publishHead(repository, 3)).toBe(true);
        await third;
        expect(seen).toEqual([[repository, 3]]);
        expect(await b.getHead(repository)).toBe(3);
        expect(await a.publishHead(repository, 3)).toBe(false);
        expect(await a.publishHead(repository, 2)).toBe(false);
        expect(await a.getHead(repository)).toBe(3);

        // After unsubscribing, nothing arrives; a second listener shows the later message was delivered.
        unsubscribe();
        const fourth = headArrives(b, repository, 4);
        await b.ping();
        expect(await a.publishHead(repository, 4)).toBe(true);
        await fourth;
        expect(seen).toEqual([[repository, 3]]);
      });

      it('delivers to the publisher\u2019s own listeners too, and isolates a throwing listener', async () => {
        const repository = freshName('head-own');
        a.onHead(() => {
          throw new Error('listener bug');
        });
        const own = headArrives(a, repository, 1);
        await a.ping();
        expect(await a.publishHead(repository, 1)).toBe(true);
        await own;
      });

      it('measures the head invalidation delay to another instance (median of 50)', async () => {
        const repository = freshName('head-delay');
        let resolveArrival: ((version: number) => void) | undefined;
        b.onHead((r, v) => {
          if (r === repository) resolveArrival?.(v);
        });
        await b.ping();
        const delays: number[] = [];
        for (let version = 1; version <= 50; version++) {
          const arrived = new Promise<number>((resolve) => {
            resolveArrival = resolve;
          });
          const started = performance.now();
          await a.publishHead(repository, version);
          expect(await arrived).toBe(version);
          delays.push(performance.now() - started);
        }
        const ms = median(delays);
        console.log(`[${name}] head invalidation delay: median ${ms.toFixed(3)} ms, max ${Math.max(...delays).toFixed(3)} ms over ${delays.length} publishes (publish call to listener on another instance)`);
        expect(delays).toHaveLength(50);
      });
    });

    describe('refresh schedule', () => {
      it('keeps the earliest time, hands out only what is due, and remembers repositories', async () => {
        const repository = freshName('sched');
        await a.scheduleRefresh(repository, 5_000);
        await b.scheduleRefresh(repository, 7_000);
        await a.scheduleRefresh(repository, 3_000);
        await a.scheduleRefresh(repository, 4_000);
        expect(await b.claimDueRefreshes(2_999, { limit: 10, leaseMs: 1_000 })).toEqual([]);
        const claims = await b.claimDueRefreshes(3_000, { limit: 10, leaseMs: 1_000 });
        expect(claims.map((c) => c.repository)).toEqual([repository]);
        expect(claims[0]!.lease.expiresAtMs).toBe(4_000);
        expect(await a.claimDueRefreshes(3_500, { limit: 10, leaseMs: 1_000 })).toEqual([]);
        expect(await a.knownRepositories()).toContain(repository);
        expect(await a.claimDueRefreshes(3_000, { limit: 0, leaseMs: 1_000 })).toEqual([]);
      });

      it('hands each of 200 due repositories to exactly one of two instances claiming in parallel', async () => {
        const prefix = freshName('claim');
        const repositories = Array.from({ length: 200 }, (_, i) => `${prefix}-${i}`);
        await Promise.all(repositories.map((repository, i) => (i % 2 === 0 ? a : b).scheduleRefresh(repository, 1_000 + i)));
        const claimed = new Map<string, string[]>();
        const drain = async (coordinator: Coordinator, label: string): Promise<void> => {
          for (let round = 0; round < 200; round++) {
            const claims = await coordinator.claimDueRefreshes(10_000, { limit: 7, leaseMs: 60_000 });
            if (claims.length === 0) return;
            for (const claim of claims) claimed.set(claim.repository, [...(claimed.get(claim.repository) ?? []), label]);
          }
          throw new Error(`${label} was still being handed repositories after 200 claims`);
        };
        await Promise.all([drain(a, 'a'), drain(b, 'b'), drain(a, 'a2'), drain(b, 'b2')]);
        expect(claimed.size).toBe(200);
        for (const repository of repositories) expect(claimed.get(repository), repository).toHaveLength(1);
        const known = await a.knownRepositories();
        for (const repository of repositories) expect(known).toContain(repository);
      });

      it('makes an expired lease claimable by another instance and refuses the stale completion', async () => {
        const repository = freshName('lease');
        await a.scheduleRefresh(repository, 1_000);
        const [first] = await a.claimDueRefreshes(1_000, { limit: 1, leaseMs: 100 });
        expect(first?.repository).toBe(repository);
        expect(await b.claimDueRefreshes(1_099, { limit: 5, leaseMs: 100 })).toEqual([]);
        const [second] = await b.claimDueRefreshes(1_100, { limit: 5, leaseMs: 100 });
        expect(second?.repository).toBe(repository);
        expect(second!.lease.token).not.toBe(first!.lease.token);
        expect(await a.completeRefresh(first!, 5_000)).toBe(false);
        expect(await b.completeRefresh(second!, 5_000)).toBe(true);
        expect(await b.completeRefresh(second!, 5_000)).toBe(false);
        expect(await a.claimDueRefreshes(4_999, { limit: 5, leaseMs: 100 })).toEqual([]);
        const [third] = await a.claimDueRefreshes(5_000, { limit: 5, leaseMs: 100 });
        expect(third?.repository).toBe(repository);
      });

      it('holds back a repository scheduled during its lease until completion, keeping the earlier time', async () => {
        const repository = freshName('lease-resched');
        await a.scheduleRefresh(repository, 1_000);
        const [claim] = await a.claimDueRefreshes(1_000, { limit: 1, leaseMs: 10_000 });
        expect(claim?.repository).toBe(repository);
        await b.scheduleRefresh(repository, 1_500);
        expect(await b.claimDueRefreshes(2_000, { limit: 5, leaseMs: 10_000 })).toEqual([]);
        expect(await a.completeRefresh(claim!, 9_000)).toBe(true);
        const again = await b.claimDueRefreshes(2_000, { limit: 5, leaseMs: 10_000 });
        expect(again.map((c: RefreshClaim) => c.repository)).toEqual([repository]);
      });
    });

    describe('grants', () => {
      it('are one-time: peek does not consume, take does, a second take gets nothing', async () => {
        const id = freshName('grant');
        const value = { job: 'ci-123', scopes: ['targets/bins'], nested: { n: 1, ok: true, none: null } };
        expect(await a.putGrant(id, value, LONG_TTL_MS)).toBe(true);
        expect(await b.peekGrant(id)).toEqual(value);
        expect(await b.peekGrant(id)).toEqual(value);
        expect(await b.takeGrant(id)).toEqual(value);
        expect(await a.takeGrant(id)).toBeUndefined();
        expect(await a.peekGrant(id)).toBeUndefined();
      });

      it('refuses a second put under a live id', async () => {
        const id = freshName('grant-dup');
        expect(await a.putGrant(id, { n: 1 }, LONG_TTL_MS)).toBe(true);
        expect(await b.putGrant(id, { n: 2 }, LONG_TTL_MS)).toBe(false);
        expect(await b.takeGrant(id)).toEqual({ n: 1 });
        expect(await b.putGrant(id, { n: 3 }, LONG_TTL_MS)).toBe(true);
      });

      it('gives a grant to exactly one of 20 concurrent takers', async () => {
        const id = freshName('grant-race');
        await a.putGrant(id, { n: 7 }, LONG_TTL_MS);
        const results = await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 === 0 ? a : b).takeGrant(id)));
        expect(results.filter((r) => r !== undefined)).toEqual([{ n: 7 }]);
      });

      it('expire', async () => {
        const id = freshName('grant-ttl');
        await a.putGrant(id, { n: 1 }, SHORT_TTL_MS);
        await harness.elapse(PAST_SHORT_TTL_MS);
        expect(await b.peekGrant(id)).toBeUndefined();
        expect(await b.takeGrant(id)).toBeUndefined();
        expect(await b.putGrant(id, { n: 2 }, LONG_TTL_MS)).toBe(true);
      });

      it('store a JSON copy: undefined members vanish and later mutation does not leak in', async () => {
        const id = freshName('grant-json');
        const value: Record<string, unknown> = { kept: 'yes', dropped: undefined };
        await a.putGrant(id, value as never, LONG_TTL_MS);
        value.kept = 'changed';
        expect(await b.takeGrant(id)).toEqual({ kept: 'yes' });
      });
    });

    describe('arguments and lifecycle', () => {
      it('refuses bad arguments with INVALID_ARGUMENT', async () => {
        await expectCode(a.acquire('', { ttlMs: 1_000, waitMs: 0 }), 'INVALID_ARGUMENT');
        await expectCode(a.acquire('r', { ttlMs: 0, waitMs: 0 }), 'INVALID_ARGUMENT');
        await expectCode(a.acquire('r', { ttlMs: 1.5, waitMs: 0 }), 'INVALID_ARGUMENT');
        await expectCode(a.acquire('r', { ttlMs: 1_000, waitMs: -1 }), 'INVALID_ARGUMENT');
        await expectCode(a.publishHead('r', -1), 'INVALID_ARGUMENT');
        await expectCode(a.publishHead('r', Number.NaN), 'INVALID_ARGUMENT');
        await expectCode(a.scheduleRefresh('r', Number.POSITIVE_INFINITY), 'INVALID_ARGUMENT');
        await expectCode(a.claimDueRefreshes(1, { limit: 1, leaseMs: 0 }), 'INVALID_ARGUMENT');
        await expectCode(a.putGrant('g', [1, 2] as never, 1_000), 'INVALID_ARGUMENT');
        await expectCode(a.putGrant('g', { a: 1 }, 0), 'INVALID_ARGUMENT');
        const lock = await held(a, freshName('args'));
        await expectCode(lock.extend(0), 'INVALID_ARGUMENT');
        await expectCode(lock.isCurrent({ minRemainingMs: -5 }), 'INVALID_ARGUMENT');
      });

      it('answers ping; close releases held locks, aborts their signals, and refuses further calls with CLOSED', async () => {
        await a.ping();
        const repository = freshName('close');
        const lock = await held(a, repository);
        await a.close();
        await a.close();
        expect(lock.signal.aborted).toBe(true);
        expect((lock.signal.reason as CoordError).detail.reason).toBe('closed');
        expect(await b.acquire(repository, { ttlMs: LONG_TTL_MS, waitMs: 0 })).toBeDefined();
        await expectCode(a.ping(), 'CLOSED');
        await expectCode(a.acquire(repository, { ttlMs: 1_000, waitMs: 0 }), 'CLOSED');
        await expectCode(a.getHead(repository), 'CLOSED');
        await expectCode(a.takeGrant('x'), 'CLOSED');
        await b.ping();
      });
    });
  });
}
