/**
 * Polling with jittered exponential backoff, bounded by a wait budget on the
 * monotonic clock: how `acquire` waits for a busy lock on every backend.
 * Each pause is uniform in [d/2, d], d doubling from 5 ms to 100 ms, and
 * never beyond the budget; the last try happens at the budget's end.
 */
import { setTimeout as sleep } from 'node:timers/promises';

export const BACKOFF_MIN_MS = 5;
export const BACKOFF_MAX_MS = 100;

export async function pollWithin<T>(
  waitMs: number,
  attempt: () => Promise<T | undefined>,
  signal?: AbortSignal,
): Promise<T | undefined> {
  const deadline = performance.now() + waitMs;
  let delay = BACKOFF_MIN_MS;
  for (;;) {
    signal?.throwIfAborted();
    const result = await attempt();
    if (result !== undefined) return result;
    const remaining = deadline - performance.now();
    if (remaining <= 0) return undefined;
    const pause = Math.min(remaining, delay / 2 + Math.random() * (delay / 2));
    try {
      await sleep(pause, undefined, signal === undefined ? undefined : { signal });
    } catch (error) {
      if (signal?.aborted === true) throw signal.reason;
      throw error;
    }
    delay = Math.min(delay * 2, BACKOFF_MAX_MS);
  }
}
