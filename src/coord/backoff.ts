/**
 * Polling with jittered exponential backoff, bounded by a wait budget on the
 * monotonic clock: how `acquire` waits for a busy lock on every backend.
 * Each pause is uniform in [d/2, d], d doubling from 5 ms to 100 ms, and
 * never beyond the budget; the last try happens at the budget's end.
 */
import { setTimeout as sleep } from 'node:timers/promises';

export const BACKOFF_MIN_MS = 5;
export const BACKOFF_MAX_MS = 100;

/**
 * `wakeOn`, when given, registers a callback that cuts the current pause short (a lock released
 * by its holder while others wait): the next try happens at once. It returns its unregistration.
 * `onWaiting`, when given, is called once, after the first try that came back empty with budget
 * left: the caller is now waiting (and, with `wakeOn`, registered to be woken).
 */
export async function pollWithin<T>(
  waitMs: number,
  attempt: () => Promise<T | undefined>,
  signal?: AbortSignal,
  wakeOn?: (wake: () => void) => () => void,
  onWaiting?: () => void,
): Promise<T | undefined> {
  const deadline = performance.now() + waitMs;
  let delay = BACKOFF_MIN_MS;
  let woken = false;
  let wake: (() => void) | undefined;
  const unregister = wakeOn?.(() => {
    woken = true;
    wake?.();
  });
  try {
    for (;;) {
      signal?.throwIfAborted();
      woken = false;
      const result = await attempt();
      if (result !== undefined) return result;
      const remaining = deadline - performance.now();
      if (remaining <= 0) return undefined;
      if (onWaiting !== undefined) {
        const waiting = onWaiting;
        onWaiting = undefined;
        try {
          waiting();
        } catch {
          // a hook, not part of the wait: its failure does not end the wait
        }
      }
      if (woken) continue; // released while that try was on its way: try again now
      const pause = Math.min(remaining, delay / 2 + Math.random() * (delay / 2));
      const ac = new AbortController();
      wake = () => ac.abort();
      const onAbort = (): void => ac.abort();
      signal?.addEventListener('abort', onAbort, { once: true });
      try {
        await sleep(pause, undefined, { signal: ac.signal });
      } catch (error) {
        if (signal?.aborted === true) throw signal.reason;
        if (!ac.signal.aborted) throw error;
      } finally {
        wake = undefined;
        signal?.removeEventListener('abort', onAbort);
      }
      delay = Math.min(delay * 2, BACKOFF_MAX_MS);
    }
  } finally {
    unregister?.();
  }
}

/**
 * Acquirers waiting per key (a repository's lock), for `pollWithin`'s `wakeOn`: `on(key)`
 * registers for the duration of one wait, `wake(key)` cuts every such wait short and answers
 * whether there was one.
 */
export class Wakers {
  readonly #byKey = new Map<string, Set<() => void>>();

  on(key: string): (wake: () => void) => () => void {
    return (wake) => {
      let set = this.#byKey.get(key);
      if (!set) this.#byKey.set(key, (set = new Set()));
      const mine = set;
      mine.add(wake);
      return () => {
        mine.delete(wake);
        if (mine.size === 0 && this.#byKey.get(key) === mine) this.#byKey.delete(key);
      };
    };
  }

  wake(key: string): boolean {
    const set = this.#byKey.get(key);
    if (!set || set.size === 0) return false;
    for (const wake of [...set]) wake();
    return true;
  }
}

/**
 * A writer lock's `acquire` on either backend: `tryAcquire` until it gives a lock or `options.waitMs`
 * passes, checking the coordinator is still open before each try, woken early by `wakeOn` (a
 * release) when the caller waits at all, `options.onWaiting` called once the waiter is registered.
 */
export function acquireByPolling<L>(
  options: { waitMs: number; signal?: AbortSignal; onWaiting?: () => void },
  open: () => void,
  tryAcquire: () => L | undefined | Promise<L | undefined>,
  wakeOn: (wake: () => void) => () => void,
): Promise<L | undefined> {
  return pollWithin(
    options.waitMs,
    async () => {
      open();
      return tryAcquire();
    },
    options.signal,
    options.waitMs > 0 ? wakeOn : undefined,
    options.onWaiting,
  );
}
