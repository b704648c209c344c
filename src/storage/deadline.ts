/**
 * One deadline for a whole operation (a `verifyImage`): every HTTP request made
 * while it runs, and every wait between retries, ends when it passes, on top of
 * each request's own timeout.
 *
 * The deadline travels with the async context (AsyncLocalStorage), so layers
 * that know nothing of it (tuf-js, the MetadataStore, a Store wrapper) pass it
 * on untouched: `RegistryStore`, `RegistryAuth` and the client's
 * `ServiceFetcher` take their request signals from `requestSignal(ms)` and
 * stop retrying once it has passed. Outside a deadline nothing changes.
 *
 * What it was waiting for: callers name their steps with `waitingFor(what,
 * fn)` (nested: "the manifest R@d" → "GET <url>: no response headers yet");
 * when the deadline fires it records the innermost steps in flight, so the
 * error says which request (and which phase of it) did not finish.
 */
import { AsyncLocalStorage } from 'node:async_hooks';

/** `1.5 s`, `30 s`, `250 ms`. */
export function formatDuration(ms: number): string {
  return ms >= 1000 ? `${Number((ms / 1000).toFixed(3))} s` : `${ms} ms`;
}

/** The abort reason of a deadline's signal: how long it was, and what was in flight when it passed. */
export class DeadlineExceededError extends Error {
  readonly timeoutMs: number;
  readonly waitingFor: readonly string[];

  constructor(timeoutMs: number, waitingFor: readonly string[]) {
    super(`the deadline of ${formatDuration(timeoutMs)} passed${waitingFor.length ? ` while waiting for ${waitingFor.join('; ')}` : ''}`);
    this.name = 'DeadlineExceededError';
    this.timeoutMs = timeoutMs;
    this.waitingFor = waitingFor;
  }
}

interface Scope {
  deadline: Deadline;
  /** The steps this code runs inside, outermost first. */
  path: readonly string[];
}

const scope = new AsyncLocalStorage<Scope>();

export class Deadline {
  readonly timeoutMs: number;
  readonly signal: AbortSignal;
  readonly #controller = new AbortController();
  readonly #timer: NodeJS.Timeout;
  /** Steps in flight, each a path of names, outermost first. */
  readonly #inFlight = new Set<readonly string[]>();

  constructor(timeoutMs: number) {
    if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw new RangeError(`a deadline must be a positive number of milliseconds, got ${timeoutMs}`);
    this.timeoutMs = timeoutMs;
    this.signal = this.#controller.signal;
    this.#timer = setTimeout(() => this.#controller.abort(new DeadlineExceededError(timeoutMs, this.#waiting())), timeoutMs);
  }

  get expired(): boolean {
    return this.signal.aborted;
  }

  /** The reason it passed (undefined before). */
  get reason(): DeadlineExceededError | undefined {
    return this.signal.aborted ? (this.signal.reason as DeadlineExceededError) : undefined;
  }

  /** The innermost steps in flight, each written outermost first. */
  #waiting(): string[] {
    const paths = [...this.#inFlight];
    const isPrefix = (a: readonly string[], b: readonly string[]): boolean => a.length < b.length && a.every((s, i) => b[i] === s);
    const leaves = paths.filter((p) => !paths.some((q) => isPrefix(p, q)));
    return [...new Set(leaves.map((p) => p.join(': ')))];
  }

  /**
   * Run `fn` under this deadline: requests it makes through the storage layer
   * and the client's fetchers share it. The promise settles at the latest when
   * the deadline passes (rejecting with its `DeadlineExceededError`), even if
   * some layer ignores the signal.
   */
  run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.signal.aborted) return Promise.reject(this.signal.reason as Error);
    const work = scope.run({ deadline: this, path: [] }, fn);
    return new Promise<T>((resolve, reject) => {
      const onAbort = (): void => reject(this.signal.reason as Error);
      this.signal.addEventListener('abort', onAbort, { once: true });
      work.then(
        (value) => {
          this.signal.removeEventListener('abort', onAbort);
          resolve(value);
        },
        (error: unknown) => {
          this.signal.removeEventListener('abort', onAbort);
          reject(error as Error);
        },
      );
    });
  }

  /** Stop the timer (the operation ended). */
  dispose(): void {
    clearTimeout(this.#timer);
  }

  /** @internal `waitingFor` */
  async step<T>(what: string, parent: readonly string[], fn: () => Promise<T>): Promise<T> {
    const path = [...parent, what];
    this.#inFlight.add(path);
    try {
      return await scope.run({ deadline: this, path }, fn);
    } finally {
      this.#inFlight.delete(path);
    }
  }
}

/** The deadline of the operation this code runs in, if any. */
export function currentDeadline(): Deadline | undefined {
  return scope.getStore()?.deadline;
}

/** Run `fn` as the step `what` of the current deadline (named in its error if it passes meanwhile); without a deadline, just `fn()`. */
export function waitingFor<T>(what: string | (() => string), fn: () => Promise<T>): Promise<T> {
  const current = scope.getStore();
  if (!current) return fn();
  return current.deadline.step(typeof what === 'string' ? what : what(), current.path, fn);
}

/** The signal for one request: its own timeout, cut short by the current deadline. */
export function requestSignal(timeoutMs: number): AbortSignal {
  const own = AbortSignal.timeout(timeoutMs);
  const deadline = currentDeadline();
  return deadline ? AbortSignal.any([own, deadline.signal]) : own;
}

/** The current deadline's reason if it has passed: callers stop (no retry) and report it. */
export function deadlinePassed(): DeadlineExceededError | undefined {
  return currentDeadline()?.reason;
}

/** Wait `ms` before a retry; returns early (without throwing) when the current deadline passes. */
export function retryPause(ms: number): Promise<void> {
  const signal = currentDeadline()?.signal;
  if (signal?.aborted) return Promise.resolve();
  return new Promise<void>((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}
