/**
 * The writer-lock pattern the service uses, in one place: take the lock or
 * refuse with `BUSY` (→ 409 + Retry-After), keep it alive while the work
 * runs, release it afterwards whatever happened, and check it right before
 * the irreversible step (`requireCurrent` → `LOCK_LOST`).
 */
import { CoordError } from './coord-error.ts';
import type { AcquireOptions, Coordinator, IsCurrentOptions, Lock } from './coordinator.ts';

export interface WithLockOptions extends AcquireOptions {
  /** Extend the lock to `ttlMs` this often while the work runs (default `ttlMs / 3`). */
  renewEveryMs?: number;
}

/**
 * Run `work` holding the writer lock of `repository`. `lock.signal` aborts
 * if a renewal is refused or the TTL runs out without one; a renewal that
 * fails for want of Redis is retried at the next tick. The lock is released
 * when `work` settles; a failed release is left to the TTL.
 */
export async function withLock<T>(
  coordinator: Coordinator,
  repository: string,
  options: WithLockOptions,
  work: (lock: Lock) => Promise<T>,
): Promise<T> {
  const lock = await coordinator.acquire(repository, options);
  if (lock === undefined) {
    throw new CoordError('BUSY', `another writer holds the lock on ${repository}`, {
      detail: { backend: coordinator.backend, operation: 'acquire', repository, waitedMs: options.waitMs },
    });
  }
  const every = options.renewEveryMs ?? Math.max(1, Math.floor(options.ttlMs / 3));
  const renewer = setInterval(() => {
    if (lock.signal.aborted) return;
    lock.extend(options.ttlMs).catch(() => undefined);
  }, every);
  renewer.unref();
  try {
    return await work(lock);
  } finally {
    clearInterval(renewer);
    await lock.release().catch(() => false);
  }
}

/** Throw `LOCK_LOST` unless `lock.isCurrent(options)`. */
export async function requireCurrent(lock: Lock, backend: Coordinator['backend'], options: IsCurrentOptions = {}): Promise<void> {
  if (await lock.isCurrent(options)) return;
  throw new CoordError('LOCK_LOST', `the writer lock on ${lock.repository} is no longer current`, {
    detail: { backend, operation: 'isCurrent', repository: lock.repository, fence: lock.fence },
  });
}
