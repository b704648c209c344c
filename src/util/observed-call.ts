/**
 * One call to a backend, timed and reported: the checked wrappers of storage and coordination
 * (src/storage/checked-store.ts, src/coord/checked-coordinator.ts) run every backend call through
 * it, so a metrics observer sees each call once, with how it ended. Failures are named by the
 * caller (`name`: the backend's own typed error, or one that says where an untyped one happened)
 * before they are reported and thrown. No I/O; the clock is the monotonic one, read only when
 * someone observes.
 */

/** A finished call as an observer sees it. */
export interface ObservedCall<B, O, C> {
  backend: B;
  operation: O;
  /** `ok`, or what the named failure's `outcome` says (typically its error code). */
  outcome: 'ok' | C;
  /** Wall time of the call, monotonic clock. */
  seconds: number;
}

/**
 * Run `run`; report it to `observe` (if any) as ok or as `outcomeOf(named failure)`; return its
 * result or throw the failure as `name` gives it.
 */
export async function observedCall<T, B, O, C, E>(
  observe: ((call: ObservedCall<B, O, C>) => void) | undefined,
  backend: B,
  operation: O,
  run: () => Promise<T>,
  name: (error: unknown) => E,
  outcomeOf: (named: E) => C,
): Promise<T> {
  const started = observe === undefined ? 0 : performance.now();
  try {
    const result = await run();
    observe?.({ backend, operation, outcome: 'ok', seconds: (performance.now() - started) / 1000 });
    return result;
  } catch (error) {
    const named = name(error);
    observe?.({ backend, operation, outcome: outcomeOf(named), seconds: (performance.now() - started) / 1000 });
    throw named;
  }
}
