/**
 * Coordination between service instances: the one interface, implemented by
 * `InProcessCoordinator` (the embedded default, one process, no network) and
 * `RedisCoordinator` (several instances sharing one Redis server).
 *
 * Ground rule: the registry is the source of truth. A coordinator holds
 * nothing that cannot be lost; losing it costs a retry, a cache miss or an
 * extra re-signing, never a wrong answer, as long as the service keeps its
 * own checks (the engine refuses a timestamp version that does not go up).
 *
 * The interface is four smaller ones, one per concern, which `Coordinator`
 * extends: `WriterLocks`, `HeadAnnouncements`, `RefreshSchedule` and
 * `Grants`; each carries its guarantees below. Every coordinator is built as
 * a `CheckedCoordinator` (checked-coordinator.ts), which checks arguments,
 * refuses calls after `close()` and names failures once for every backend.
 *
 * ## Lifecycle and failures
 * - `ping()` resolves when the backend answers and, while `onHead` listeners
 *   exist, the head subscription is live (readiness).
 * - `close()` releases the locks this coordinator still holds (best effort),
 *   aborts their signals, drops listeners, quits connections and clears
 *   timers; it is idempotent. Afterwards every method rejects with `CLOSED`.
 * - Every failure is a `CoordError`: `UNAVAILABLE` when Redis does not answer
 *   (commands time out after `commandTimeoutMs`; the client keeps
 *   reconnecting), `INVALID_ARGUMENT` for a bad name, time or TTL.
 */
import type { CoordBackend } from './coord-error.ts';

export type JsonValue = null | boolean | number | string | JsonValue[] | JsonObject;
export interface JsonObject {
  [key: string]: JsonValue;
}

export interface AcquireOptions {
  /** Lifetime of the lock unless extended, in ms (positive integer). */
  ttlMs: number;
  /** How long to keep trying while another holder has it, in ms (0: one try). */
  waitMs: number;
  /** Stop waiting early (the promise rejects with the signal's reason). */
  signal?: AbortSignal;
  /**
   * Called once when the first try found the lock held and this acquirer
   * starts waiting, registered so that the holder's `release()` wakes it (and
   * answers `waiters`). Not called when the first try succeeds or `waitMs` is 0.
   * Must not throw.
   */
  onWaiting?: () => void;
}

export interface IsCurrentOptions {
  /** Also require at least this much TTL left on the backend, in ms. */
  minRemainingMs?: number;
}

export interface Lock {
  readonly repository: string;
  /** Strictly increasing per repository; see `WriterLocks`. */
  readonly fence: number;
  /** Aborts when the lock is known or suspected lost. */
  readonly signal: AbortSignal;
  /** Compare-and-extend: true if still held and the TTL is now `ttlMs`. */
  extend(ttlMs: number): Promise<boolean>;
  /** Still the holder, and the latest fence issued for the repository. */
  isCurrent(options?: IsCurrentOptions): Promise<boolean>;
  /** Compare-and-delete: true if this lock was still held and is now released. */
  release(): Promise<boolean>;
  /**
   * After `release()`: another acquirer (this instance or another) was waiting for the lock and
   * has been woken. A holder with more work should pause briefly before acquiring again, so the
   * lock passes to the waiter instead of starving it (RepositoryService's group commit does).
   */
  readonly waiters: boolean;
}

export type HeadListener = (repository: string, version: number) => void;

/**
 * `reconnected`: head messages may have been missed; drop cached heads.
 * `reset`: the backend lost its data; drop cached heads and re-seed the
 * refresh schedule from the store.
 */
export type ResyncReason = 'reconnected' | 'reset';
export type ResyncListener = (reason: ResyncReason) => void;

export interface RefreshLease {
  readonly token: string;
  /** `nowMs + leaseMs` of the claim. */
  readonly expiresAtMs: number;
}

export interface RefreshClaim {
  readonly repository: string;
  readonly lease: RefreshLease;
}

export interface ClaimOptions {
  /** At most this many repositories (non-negative integer). */
  limit: number;
  /** Lease length in ms (positive integer). */
  leaseMs: number;
}

/**
 * Writer lock with fencing (`acquire`, `Lock`).
 *
 * - At most one live `Lock` per repository across every coordinator sharing
 *   a backend. `acquire` polls with jittered backoff (5 ms doubling to
 *   100 ms) until it holds the lock or `waitMs` (measured on the monotonic
 *   clock) is spent; `undefined` means busy: answer 409 with `Retry-After`.
 *   `waitMs: 0` tries exactly once. Aborting `options.signal` rejects with the
 *   signal's reason.
 * - `lock.fence` is strictly greater than every fence issued before it for
 *   the same repository by the same backend state. Fences are not small
 *   counters: a new fence is `max(last + 1, issuing clock in microseconds)`
 *   (Redis: the server's `TIME`; in-process: `now() * 1000`). So even after
 *   the backend lost its counters (Redis restart without persistence), a new
 *   fence is above every fence issued before the loss, provided the issuing
 *   clock did not step back across the loss and fewer than one fence per
 *   microsecond was issued. Fences stay below 2^53 (safe integers) until the
 *   year 2255.
 * - `lock.isCurrent()` is true only while the lock is still held under this
 *   lock's token, its fence is the latest issued for the repository, the local
 *   deadline has not passed, and (with `minRemainingMs`) at least that much
 *   TTL is left. It is answered by the backend atomically, at the moment of
 *   the call: a caller that then writes must finish well within the remaining
 *   TTL, which is what `minRemainingMs` is for. After a Redis data loss every
 *   lock taken before it answers false (its key is gone), whether or not a
 *   new holder exists; a stalled holder can therefore never overwrite state
 *   written by a holder that acquired later.
 * - `lock.extend(ttlMs)` resets the TTL if and only if the lock is still held
 *   under its token (compare-and-extend); `lock.release()` deletes it only if
 *   still held under its token (compare-and-delete) and answers whether it
 *   did. Nobody can extend or delete someone else's lock. A release that
 *   fails for want of Redis (`UNAVAILABLE`) leaves the lock to its TTL.
 * - `lock.signal` aborts (reason: a `CoordError` `LOCK_LOST`, `detail.reason`
 *   one of `released`, `expired`, `refused`, `superseded`, `closed`) as soon
 *   as the lock is known or suspected lost: released, an extend or isCurrent
 *   refused, the local TTL deadline passed without a successful extend (the
 *   local deadline is measured from *before* the request that set the TTL,
 *   so it never lies after the server's), or (in-process) another acquirer
 *   took over. Once aborted, a lock is dead: `extend` and `isCurrent` answer
 *   false. With an injected `now` (tests), the in-process implementation
 *   arms no local deadline timer; the other triggers still apply.
 */
export interface WriterLocks {
  acquire(repository: string, options: AcquireOptions): Promise<Lock | undefined>;
}

/**
 * Heads (`publishHead`, `getHead`, `onHead`, `onResync`).
 *
 * - `publishHead(repository, version)` records the version when it is above
 *   the recorded one and then notifies every `onHead` listener of every
 *   coordinator sharing the backend, including the publisher's own; it
 *   answers whether the head moved. A version at or below the recorded one is
 *   ignored (timestamp versions only go up).
 * - `onHead` registers at once and returns the unsubscribe function.
 *   In-process delivery is synchronous, before `publishHead` resolves. Redis
 *   delivery is pub/sub on a dedicated subscriber connection, subscribed in
 *   the background: once `ping()` has resolved after the `onHead` call, the
 *   listener receives every later publish while the connection stays up,
 *   typically within a millisecond on a LAN.
 * - Pub/sub is at-most-once. When the subscription goes live after a gap
 *   (the subscriber connection was lost, or the first attempt failed because
 *   Redis was unreachable), `onResync` listeners get `'reconnected'`: drop
 *   every cached head. No writer can move a head while
 *   Redis is unreachable (it cannot take the lock), so drop-on-reconnect
 *   bounds staleness to the outage.
 * - `getHead` answers the last recorded version, for a reader that missed a
 *   message; `undefined` after a data loss until the next publish.
 *
 * ## Reset (`onResync('reset')`)
 * - Redis can lose everything (restart without persistence, flush, failover
 *   to an empty replica). The Redis coordinator notices (an epoch marker is
 *   missing or changed) on reconnect and on every `claimDueRefreshes`, and
 *   tells `onResync` listeners `'reset'`: drop cached heads and call
 *   `scheduleRefresh` for every repository in the store, because the
 *   schedule, the heads, `knownRepositories` and the grants are gone. A
 *   fresh coordinator that never saw an epoch does not report a reset (the
 *   service seeds the schedule at start anyway). In-process never resets.
 */
export interface HeadAnnouncements {
  publishHead(repository: string, version: number): Promise<boolean>;
  getHead(repository: string): Promise<number | undefined>;
  /** Registers at once; returns the unsubscribe function (see `ping` for Redis). */
  onHead(listener: HeadListener): () => void;
  onResync(listener: ResyncListener): () => void;
}

/**
 * Refresh schedule (`scheduleRefresh`, `claimDueRefreshes`, `completeRefresh`).
 *
 * - `scheduleRefresh(repository, atMs)` is idempotent and keeps the earliest
 *   time; it also records the repository for `knownRepositories()`.
 * - `claimDueRefreshes(nowMs, { limit, leaseMs })` atomically takes up to
 *   `limit` repositories that are due (`atMs <= nowMs`) or whose lease expired
 *   (`expiresAtMs <= nowMs`: the claimer died), expired leases first, then by
 *   due time. Each is leased until `nowMs + leaseMs` under a fresh token; no
 *   two concurrent claimers ever get the same repository while its lease
 *   lives. Times are the callers' wall clocks (epoch ms): instances should
 *   agree within a small fraction of `leaseMs`; skew only makes a lease end
 *   early or late (an extra or a late re-signing, which the writer lock
 *   serialises anyway).
 * - `completeRefresh(claim, nextAtMs)` ends the lease and schedules the next
 *   refresh (keeping an earlier time scheduled during the lease). It answers
 *   false and changes nothing when the lease is no longer this claim's
 *   (expired and re-claimed, or lost with Redis's data): whoever holds it now,
 *   or the re-seeding after a reset, owns the schedule.
 * - A repository scheduled while leased is not handed out again until the
 *   lease ends.
 * - `knownRepositories()` lists every repository ever scheduled (since the
 *   last data loss).
 */
export interface RefreshSchedule {
  scheduleRefresh(repository: string, atMs: number): Promise<void>;
  claimDueRefreshes(nowMs: number, options: ClaimOptions): Promise<RefreshClaim[]>;
  completeRefresh(claim: RefreshClaim, nextAtMs: number): Promise<boolean>;
  knownRepositories(): Promise<string[]>;
}

/**
 * Grants (`putGrant`, `takeGrant`, `peekGrant`).
 *
 * - One-time JSON objects with a TTL. `putGrant` stores only if the id is
 *   free (answers false otherwise). `takeGrant` is an atomic get-and-delete:
 *   of any number of concurrent takes, exactly one gets the value. `peekGrant`
 *   reads without consuming. Values go through JSON on both implementations
 *   (what comes back is a fresh copy; `undefined` members vanish). Grants do
 *   not survive a Redis data loss.
 */
export interface Grants {
  putGrant(id: string, value: JsonObject, ttlMs: number): Promise<boolean>;
  takeGrant(id: string): Promise<JsonObject | undefined>;
  peekGrant(id: string): Promise<JsonObject | undefined>;
}

/** Everything a service instance coordinates through, with readiness and shutdown (see the top of this file). */
export interface Coordinator extends WriterLocks, HeadAnnouncements, RefreshSchedule, Grants {
  readonly backend: CoordBackend;
  ping(): Promise<void>;
  close(): Promise<void>;
}
