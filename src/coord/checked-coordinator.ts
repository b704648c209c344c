/**
 * What every coordinator shares, done once around it (the idea of
 * distribution's `storage/driver/base`): a `CheckedCoordinator` wraps a
 * backend and
 * - refuses every call after `close()` with `CLOSED`, and bad arguments with
 *   `INVALID_ARGUMENT` (names and ids, times, TTLs, limits, grant values),
 *   before the backend is called, so both backends refuse exactly the same
 *   inputs;
 * - names every failure: a backend's `CoordError` passes through as it is, so
 *   does the reason of an aborted `acquire` signal; anything else becomes
 *   `UNAVAILABLE` naming the backend, the operation and the repository or
 *   grant id, with the original as `cause`;
 * - reports each call that reached the backend to an optional observer
 *   (operation, outcome, seconds), which the composition root turns into
 *   metrics.
 *
 * The lock a backend hands out is a `LockHandle` (lock-handle.ts), shared by
 * both backends, which checks `extend` and `isCurrent` arguments itself.
 * Backends assume well-formed arguments; the exported coordinator classes
 * (`InProcessCoordinator`, `RedisCoordinator`) extend this class around their
 * private implementation, so a backend cannot be constructed unchecked.
 */
import { observedCall, type ObservedCall } from '../util/observed-call.ts';
import { ArgumentChecker } from './arguments.ts';
import { CoordError, type CoordBackend, type CoordErrorCode } from './coord-error.ts';
import type { AcquireOptions, ClaimOptions, Coordinator, HeadListener, JsonObject, Lock, RefreshClaim, ResyncListener } from './coordinator.ts';

export type CoordOperation =
  | 'acquire'
  | 'publishHead'
  | 'getHead'
  | 'scheduleRefresh'
  | 'claimDueRefreshes'
  | 'completeRefresh'
  | 'knownRepositories'
  | 'putGrant'
  | 'takeGrant'
  | 'peekGrant'
  | 'ping';

/**
 * One finished call to a backend (a refusal by the wrapper's own checks is not a call): `outcome`
 * is `ok`, or the failure's `CoordError` code (`aborted`: the caller's signal ended an `acquire`);
 * `seconds` includes an `acquire`'s wait.
 */
export type CoordCall = ObservedCall<CoordBackend, CoordOperation, 'aborted' | CoordErrorCode>;

export type CoordObserver = (call: CoordCall) => void;

export interface CheckedCoordinatorOptions {
  /** Told about every call that reached the backend, after it settled. Must not throw. */
  observe?: CoordObserver;
}

export class CheckedCoordinator implements Coordinator {
  readonly backend: CoordBackend;
  readonly #inner: Coordinator;
  readonly #args: ArgumentChecker;
  readonly #observe: CoordObserver | undefined;
  #closed = false;

  constructor(inner: Coordinator, options: CheckedCoordinatorOptions = {}) {
    this.backend = inner.backend;
    this.#inner = inner;
    this.#args = new ArgumentChecker(inner.backend);
    this.#observe = options.observe;
  }

  /** `CLOSED` once `close()` was called (for subclasses' own methods too). */
  protected assertOpen(operation: string): void {
    if (this.#closed) throw new CoordError('CLOSED', 'the coordinator is closed', { detail: { backend: this.backend, operation } });
  }

  // --- writer lock -------------------------------------------------------

  async acquire(repository: string, options: AcquireOptions): Promise<Lock | undefined> {
    this.assertOpen('acquire');
    this.#args.name('acquire', 'repository', repository);
    const ttlMs = this.#args.duration('acquire', 'ttlMs', options.ttlMs, 1);
    const waitMs = this.#args.duration('acquire', 'waitMs', options.waitMs, 0);
    return this.#call('acquire', { repository }, () => this.#inner.acquire(repository, { ...options, ttlMs, waitMs }), options.signal);
  }

  // --- heads -------------------------------------------------------------

  async publishHead(repository: string, version: number): Promise<boolean> {
    this.assertOpen('publishHead');
    this.#args.name('publishHead', 'repository', repository);
    this.#args.count('publishHead', 'version', version);
    return this.#call('publishHead', { repository }, () => this.#inner.publishHead(repository, version));
  }

  async getHead(repository: string): Promise<number | undefined> {
    this.assertOpen('getHead');
    this.#args.name('getHead', 'repository', repository);
    return this.#call('getHead', { repository }, () => this.#inner.getHead(repository));
  }

  onHead(listener: HeadListener): () => void {
    this.assertOpen('onHead');
    return this.#inner.onHead(listener);
  }

  onResync(listener: ResyncListener): () => void {
    this.assertOpen('onResync');
    return this.#inner.onResync(listener);
  }

  // --- refresh schedule --------------------------------------------------

  async scheduleRefresh(repository: string, atMs: number): Promise<void> {
    this.assertOpen('scheduleRefresh');
    this.#args.name('scheduleRefresh', 'repository', repository);
    this.#args.count('scheduleRefresh', 'atMs', atMs);
    return this.#call('scheduleRefresh', { repository }, () => this.#inner.scheduleRefresh(repository, atMs));
  }

  async claimDueRefreshes(nowMs: number, options: ClaimOptions): Promise<RefreshClaim[]> {
    this.assertOpen('claimDueRefreshes');
    this.#args.count('claimDueRefreshes', 'nowMs', nowMs);
    const limit = this.#args.count('claimDueRefreshes', 'limit', options.limit);
    const leaseMs = this.#args.duration('claimDueRefreshes', 'leaseMs', options.leaseMs, 1);
    return this.#call('claimDueRefreshes', {}, () => this.#inner.claimDueRefreshes(nowMs, { limit, leaseMs }));
  }

  async completeRefresh(claim: RefreshClaim, nextAtMs: number): Promise<boolean> {
    this.assertOpen('completeRefresh');
    const repository = this.#args.name('completeRefresh', 'repository', claim.repository);
    this.#args.name('completeRefresh', 'lease.token', claim.lease.token);
    this.#args.count('completeRefresh', 'nextAtMs', nextAtMs);
    return this.#call('completeRefresh', { repository }, () => this.#inner.completeRefresh(claim, nextAtMs));
  }

  async knownRepositories(): Promise<string[]> {
    this.assertOpen('knownRepositories');
    return this.#call('knownRepositories', {}, () => this.#inner.knownRepositories());
  }

  // --- grants ------------------------------------------------------------

  async putGrant(id: string, value: JsonObject, ttlMs: number): Promise<boolean> {
    this.assertOpen('putGrant');
    this.#args.name('putGrant', 'id', id);
    this.#args.grant('putGrant', id, value);
    this.#args.duration('putGrant', 'ttlMs', ttlMs, 1);
    return this.#call('putGrant', { id }, () => this.#inner.putGrant(id, value, ttlMs));
  }

  async takeGrant(id: string): Promise<JsonObject | undefined> {
    this.assertOpen('takeGrant');
    this.#args.name('takeGrant', 'id', id);
    return this.#call('takeGrant', { id }, () => this.#inner.takeGrant(id));
  }

  async peekGrant(id: string): Promise<JsonObject | undefined> {
    this.assertOpen('peekGrant');
    this.#args.name('peekGrant', 'id', id);
    return this.#call('peekGrant', { id }, () => this.#inner.peekGrant(id));
  }

  // --- lifecycle -----------------------------------------------------------

  async ping(): Promise<void> {
    this.assertOpen('ping');
    return this.#call('ping', {}, () => this.#inner.ping());
  }

  /** Idempotent: every later call is refused with `CLOSED`; the backend releases and disconnects. */
  close(): Promise<void> {
    this.#closed = true;
    return this.#inner.close();
  }

  #call<T>(operation: CoordOperation, where: { repository?: string; id?: string }, run: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    // The caller's own abort reason passes through as it is (outcome `aborted`); anything else is named.
    const aborted = (error: unknown): boolean => signal?.aborted === true && error === signal.reason;
    return observedCall<T, CoordBackend, CoordOperation, 'aborted' | CoordErrorCode, unknown>(
      this.#observe,
      this.backend,
      operation,
      run,
      (error) => (aborted(error) ? error : this.#named(error, operation, where)),
      (named) => (named instanceof CoordError ? named.code : 'aborted'),
    );
  }

  /** The backend's own `CoordError`, or an `UNAVAILABLE` one naming where an untyped failure happened. */
  #named(error: unknown, operation: CoordOperation, where: { repository?: string; id?: string }): CoordError {
    if (error instanceof CoordError) return error;
    const subject = where.repository ?? (where.id !== undefined ? `grant ${where.id}` : undefined);
    const reason = error instanceof Error ? error.message : String(error);
    return new CoordError('UNAVAILABLE', `${operation} on the ${this.backend} coordinator failed${subject !== undefined ? ` for ${subject}` : ''}: ${reason.slice(0, 300)}`, {
      detail: { backend: this.backend, operation, ...where },
      cause: error,
    });
  }
}

/** `inner` behind the checks, naming and observer above (a `CheckedCoordinator` is returned as it is). */
export function checkedCoordinator(inner: Coordinator, options: CheckedCoordinatorOptions = {}): Coordinator {
  return inner instanceof CheckedCoordinator ? inner : new CheckedCoordinator(inner, options);
}
