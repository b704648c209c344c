/**
 * The `Lock` every coordinator hands out. The backend supplies three
 * compare-against-token operations; this class adds what is the same
 * everywhere: the argument checks of `extend` and `isCurrent`, the local TTL deadline, the `signal` and the
 * rule that a lock, once its signal aborted, is dead.
 */
import { ArgumentChecker } from './arguments.ts';
import { CoordError, type CoordBackend } from './coord-error.ts';
import type { IsCurrentOptions, Lock } from './coordinator.ts';

/** `short`: held and latest, but less TTL left than asked for. */
export type LockCheck = 'current' | 'short' | 'lost';

export interface LockOps {
  /** Compare-and-extend on the backend. */
  extend(ttlMs: number): Promise<boolean>;
  /** Token still holds the lock, fence still latest, at least `minRemainingMs` left. */
  check(minRemainingMs: number): Promise<LockCheck>;
  /** Compare-and-delete on the backend; `waiters`: it was held, and someone was waiting (now woken). */
  release(): Promise<boolean | 'waiters'>;
}

export type LockLossReason = 'released' | 'expired' | 'refused' | 'superseded' | 'closed';

export interface LockHandleInit {
  backend: CoordBackend;
  repository: string;
  fence: number;
  ops: LockOps;
  /**
   * `performance.now()` taken just before the request that set the TTL, and
   * that TTL: arms the local deadline. Omitted: no local deadline timer.
   */
  timing?: { startedAt: number; ttlMs: number };
  /** Called once, when the lock ends (lost or released). */
  onEnd(handle: LockHandle): void;
}

export class LockHandle implements Lock {
  readonly repository: string;
  readonly fence: number;
  readonly #backend: CoordBackend;
  readonly #ops: LockOps;
  readonly #args: ArgumentChecker;
  readonly #timed: boolean;
  readonly #onEnd: (handle: LockHandle) => void;
  readonly #controller = new AbortController();
  #deadline = Number.POSITIVE_INFINITY;
  #timer: NodeJS.Timeout | undefined;
  #released = false;
  #waiters = false;

  constructor(init: LockHandleInit) {
    this.repository = init.repository;
    this.fence = init.fence;
    this.#backend = init.backend;
    this.#ops = init.ops;
    this.#args = new ArgumentChecker(init.backend);
    this.#onEnd = init.onEnd;
    this.#timed = init.timing !== undefined;
    if (init.timing !== undefined) this.#arm(init.timing.startedAt + init.timing.ttlMs);
  }

  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  async extend(ttlMs: number): Promise<boolean> {
    this.#args.duration('extend', 'ttlMs', ttlMs, 1);
    if (this.signal.aborted) return false;
    const startedAt = performance.now();
    const extended = await this.#ops.extend(ttlMs);
    if (!extended) {
      this.lose('refused');
      return false;
    }
    if (this.signal.aborted) return false;
    if (this.#timed) this.#arm(startedAt + ttlMs);
    return true;
  }

  async isCurrent(options: IsCurrentOptions = {}): Promise<boolean> {
    const minRemainingMs = this.#args.duration('isCurrent', 'minRemainingMs', options.minRemainingMs ?? 0, 0);
    if (this.signal.aborted) return false;
    const now = performance.now();
    if (now >= this.#deadline) {
      this.lose('expired');
      return false;
    }
    if (now + minRemainingMs > this.#deadline) return false;
    const state = await this.#ops.check(minRemainingMs);
    if (state === 'lost') {
      this.lose('refused');
      return false;
    }
    return state === 'current' && !this.signal.aborted;
  }

  async release(): Promise<boolean> {
    if (this.#released) return false;
    this.#released = true;
    this.lose('released');
    const outcome = await this.#ops.release();
    this.#waiters = outcome === 'waiters';
    return outcome !== false;
  }

  /** See Lock.waiters. */
  get waiters(): boolean {
    return this.#waiters;
  }

  /** Mark the lock lost: abort the signal (once) and stop the deadline timer. */
  lose(reason: LockLossReason): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.signal.aborted) return;
    this.#controller.abort(
      new CoordError('LOCK_LOST', `the writer lock on ${this.repository} is no longer held (${reason})`, {
        detail: { backend: this.#backend, operation: 'lock', repository: this.repository, fence: this.fence, reason },
      }),
    );
    this.#onEnd(this);
  }

  /** Whether `release()` was already called. */
  get released(): boolean {
    return this.#released;
  }

  #arm(deadline: number): void {
    clearTimeout(this.#timer);
    this.#deadline = deadline;
    this.#timer = setTimeout(() => this.lose('expired'), Math.max(0, deadline - performance.now()));
    this.#timer.unref();
  }
}
