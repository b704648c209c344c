/**
 * The embedded coordinator: every guarantee of `Coordinator` within one
 * process, no network. State lives in a hub shared by `peer()` coordinators,
 * which stand in for several service instances in tests (each peer has its
 * own listeners, locks and `close()`).
 *
 * Lock and grant lifetimes are read from `now()` (default `Date.now`);
 * inject a clock to control expiry in tests. With an injected clock no local
 * lock deadline timer is armed (see coordinator.ts); `acquire`'s `waitMs` is
 * real time on every clock. Refresh times are the callers' `nowMs`.
 * Everything is lost with the process, which also ends every holder.
 */
import { randomUUID } from 'node:crypto';
import { parseGrant } from './arguments.ts';
import { acquireByPolling, Wakers } from './backoff.ts';
import { CheckedCoordinator, type CheckedCoordinatorOptions } from './checked-coordinator.ts';
import { CoordError } from './coord-error.ts';
import type { AcquireOptions, ClaimOptions, Coordinator, HeadListener, JsonObject, Lock, RefreshClaim, ResyncListener } from './coordinator.ts';
import { LockHandle, type LockCheck } from './lock-handle.ts';

export interface InProcessCoordinatorOptions extends CheckedCoordinatorOptions {
  /** Wall clock in epoch ms for lock and grant lifetimes (default `Date.now`). */
  now?: () => number;
  /** Where a throwing listener is reported (default: `process.emitWarning`). */
  onError?: (error: unknown) => void;
}

interface HeldLock {
  token: string;
  fence: number;
  expiresAt: number;
  handle: LockHandle;
}

/** The state peers share. */
class Hub {
  readonly now: () => number;
  readonly injectedClock: boolean;
  readonly locks = new Map<string, HeldLock>();
  readonly fences = new Map<string, number>();
  readonly heads = new Map<string, number>();
  readonly due = new Map<string, number>();
  readonly leases = new Map<string, { token: string; expiresAtMs: number }>();
  readonly repositories = new Set<string>();
  readonly grants = new Map<string, { text: string; expiresAt: number }>();
  readonly members = new Set<InProcessBackend>();
  /** Acquirers waiting for a repository's lock: woken when it is released. */
  readonly waiting = new Wakers();
  grantPuts = 0;

  constructor(now: (() => number) | undefined) {
    this.now = now ?? Date.now;
    this.injectedClock = now !== undefined;
  }
}

const GRANT_SWEEP_EVERY = 64;

function warn(error: unknown): void {
  process.emitWarning(error instanceof Error ? error : new Error(String(error)));
}

/** The implementation behind `InProcessCoordinator`'s checks: arguments are well-formed here, and it is open. */
class InProcessBackend implements Coordinator {
  readonly backend = 'in-process';
  readonly #onError: (error: unknown) => void;
  readonly #headListeners = new Set<HeadListener>();
  readonly #resyncListeners = new Set<ResyncListener>();
  readonly #locks = new Set<LockHandle>();
  #hub: Hub;
  #closed = false;

  constructor(options: InProcessCoordinatorOptions) {
    this.#onError = options.onError ?? warn;
    this.#hub = new Hub(options.now);
    this.#hub.members.add(this);
  }

  /** Leave this backend's own state for `other`'s, as a peer of it. */
  join(other: InProcessBackend): void {
    this.#hub.members.delete(this);
    this.#hub = other.#hub;
    this.#hub.members.add(this);
  }

  /** Closed while an `acquire` was waiting. */
  #open(operation: string): void {
    if (this.#closed) throw new CoordError('CLOSED', 'the coordinator is closed', { detail: { backend: 'in-process', operation } });
  }

  // --- writer lock -------------------------------------------------------

  async acquire(repository: string, options: AcquireOptions): Promise<Lock | undefined> {
    return acquireByPolling(options, () => this.#open('acquire'), () => this.#tryAcquire(repository, options.ttlMs), this.#hub.waiting.on(repository));
  }

  #tryAcquire(repository: string, ttlMs: number): LockHandle | undefined {
    const hub = this.#hub;
    const startedAt = performance.now();
    const now = hub.now();
    const held = hub.locks.get(repository);
    if (held !== undefined && held.expiresAt > now) return undefined;
    held?.handle.lose('superseded');
    const fence = Math.max((hub.fences.get(repository) ?? 0) + 1, Math.floor(now * 1000));
    hub.fences.set(repository, fence);
    const token = randomUUID();
    const current = (): HeldLock | undefined => {
      const entry = hub.locks.get(repository);
      return entry !== undefined && entry.token === token && entry.expiresAt > hub.now() ? entry : undefined;
    };
    const handle: LockHandle = new LockHandle({
      backend: 'in-process',
      repository,
      fence,
      ...(hub.injectedClock ? {} : { timing: { startedAt, ttlMs } }),
      onEnd: (ended) => this.#locks.delete(ended),
      ops: {
        extend: async (ms) => {
          const entry = current();
          if (entry === undefined) return false;
          entry.expiresAt = hub.now() + ms;
          return true;
        },
        check: async (minRemainingMs): Promise<LockCheck> => {
          const entry = current();
          if (entry === undefined || hub.fences.get(repository) !== fence) return 'lost';
          return entry.expiresAt - hub.now() >= minRemainingMs ? 'current' : 'short';
        },
        release: async () => {
          const entry = hub.locks.get(repository);
          if (entry === undefined || entry.token !== token) return false;
          hub.locks.delete(repository);
          if (entry.expiresAt <= hub.now()) return false;
          return hub.waiting.wake(repository) ? 'waiters' : true;
        },
      },
    });
    hub.locks.set(repository, { token, fence, expiresAt: now + ttlMs, handle });
    this.#locks.add(handle);
    return handle;
  }

  // --- heads -------------------------------------------------------------

  async publishHead(repository: string, version: number): Promise<boolean> {
    const recorded = this.#hub.heads.get(repository);
    if (recorded !== undefined && recorded >= version) return false;
    this.#hub.heads.set(repository, version);
    for (const member of this.#hub.members) member.#deliverHead(repository, version);
    return true;
  }

  #deliverHead(repository: string, version: number): void {
    for (const listener of this.#headListeners) {
      try {
        listener(repository, version);
      } catch (error) {
        this.#onError(error);
      }
    }
  }

  async getHead(repository: string): Promise<number | undefined> {
    return this.#hub.heads.get(repository);
  }

  onHead(listener: HeadListener): () => void {
    // A wrapper, so the same function registered twice is two subscriptions.
    const entry: HeadListener = (repository, version) => listener(repository, version);
    this.#headListeners.add(entry);
    return () => {
      this.#headListeners.delete(entry);
    };
  }

  onResync(listener: ResyncListener): () => void {
    // Nothing to resynchronise in one process; kept for the interface.
    const entry: ResyncListener = (reason) => listener(reason);
    this.#resyncListeners.add(entry);
    return () => {
      this.#resyncListeners.delete(entry);
    };
  }

  // --- refresh schedule --------------------------------------------------

  async scheduleRefresh(repository: string, atMs: number): Promise<void> {
    const hub = this.#hub;
    const scheduled = hub.due.get(repository);
    if (scheduled === undefined || atMs < scheduled) hub.due.set(repository, atMs);
    hub.repositories.add(repository);
  }

  async claimDueRefreshes(nowMs: number, options: ClaimOptions): Promise<RefreshClaim[]> {
    const { limit, leaseMs } = options;
    const hub = this.#hub;
    const byTimeThenName = (a: [string, number], b: [string, number]): number =>
      a[1] - b[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0);
    const expired = [...hub.leases]
      .map(([repository, lease]): [string, number] => [repository, lease.expiresAtMs])
      .filter(([, expiresAtMs]) => expiresAtMs <= nowMs)
      .sort(byTimeThenName);
    const due = [...hub.due]
      .filter(([repository, atMs]) => atMs <= nowMs && !hub.leases.has(repository))
      .sort(byTimeThenName);
    const claims: RefreshClaim[] = [];
    for (const [repository] of [...expired, ...due]) {
      if (claims.length >= limit) break;
      const atMs = hub.due.get(repository);
      if (atMs !== undefined && atMs <= nowMs) hub.due.delete(repository);
      const lease = { token: randomUUID(), expiresAtMs: nowMs + leaseMs };
      hub.leases.set(repository, lease);
      claims.push({ repository, lease });
    }
    return claims;
  }

  async completeRefresh(claim: RefreshClaim, nextAtMs: number): Promise<boolean> {
    const { repository, lease: { token } } = claim;
    const hub = this.#hub;
    if (hub.leases.get(repository)?.token !== token) return false;
    hub.leases.delete(repository);
    const scheduled = hub.due.get(repository);
    if (scheduled === undefined || nextAtMs < scheduled) hub.due.set(repository, nextAtMs);
    return true;
  }

  async knownRepositories(): Promise<string[]> {
    return [...this.#hub.repositories].sort();
  }

  // --- grants ------------------------------------------------------------

  async putGrant(id: string, value: JsonObject, ttlMs: number): Promise<boolean> {
    const text = JSON.stringify(value);
    const hub = this.#hub;
    const now = hub.now();
    if (++hub.grantPuts % GRANT_SWEEP_EVERY === 0) {
      for (const [key, grant] of hub.grants) if (grant.expiresAt <= now) hub.grants.delete(key);
    }
    const existing = hub.grants.get(id);
    if (existing !== undefined && existing.expiresAt > now) return false;
    hub.grants.set(id, { text, expiresAt: now + ttlMs });
    return true;
  }

  async takeGrant(id: string): Promise<JsonObject | undefined> {
    const text = this.#liveGrant(id);
    this.#hub.grants.delete(id);
    return text === undefined ? undefined : parseGrant(text);
  }

  async peekGrant(id: string): Promise<JsonObject | undefined> {
    const text = this.#liveGrant(id);
    return text === undefined ? undefined : parseGrant(text);
  }

  #liveGrant(id: string): string | undefined {
    const grant = this.#hub.grants.get(id);
    if (grant === undefined) return undefined;
    if (grant.expiresAt > this.#hub.now()) return grant.text;
    this.#hub.grants.delete(id);
    return undefined;
  }

  // --- lifecycle -----------------------------------------------------------

  async ping(): Promise<void> {}

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const handle of [...this.#locks]) {
      handle.lose('closed');
      await handle.release();
    }
    this.#headListeners.clear();
    this.#resyncListeners.clear();
    this.#hub.members.delete(this);
  }
}

export class InProcessCoordinator extends CheckedCoordinator {
  readonly #options: InProcessCoordinatorOptions;
  readonly #backend: InProcessBackend;

  constructor(options: InProcessCoordinatorOptions = {}) {
    const backend = new InProcessBackend(options);
    super(backend, options);
    this.#options = options;
    this.#backend = backend;
  }

  /** Another coordinator on the same state, as a second service instance would be. */
  peer(): InProcessCoordinator {
    this.assertOpen('peer');
    const peer = new InProcessCoordinator(this.#options);
    peer.#backend.join(this.#backend);
    return peer;
  }
}
