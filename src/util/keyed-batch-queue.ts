/**
 * Group commit, generic over the key that serialises work (a repository, a directory) and the
 * item queued. Items for one key queue here; one drainer per key takes the queue (up to
 * `maxBatch` at a time) and hands it to `commit`, which answers each entry once: `resolve` or
 * `reject`. Items that arrive while a batch is being committed wait for the next batch of the
 * same drainer, so N concurrent callers cost one commit instead of N. Different keys drain
 * independently.
 *
 * `commit` answers entries as it sees fit (a refused item alone, the rest after one write); if it
 * throws, every entry it has not answered is rejected with that error, and if it returns with an
 * entry unanswered, that entry is rejected too (a caller never waits for ever).
 *
 * The queue does no I/O and reads no clock: pauses between batches (`beforeBatch`) are the
 * caller's.
 */

/** One queued item and its answer. */
export interface BatchEntry<I, R> {
  readonly item: I;
  /** Answer the caller; later answers of the same entry are ignored. */
  resolve(value: R): void;
  reject(error: unknown): void;
  /** Whether the entry has been answered. */
  readonly settled: boolean;
}

export interface KeyedBatchQueueOptions<K, I, R> {
  /** Commit one batch for `key`, answering its entries (see the module comment). */
  commit: (key: K, batch: ReadonlyArray<BatchEntry<I, R>>) => Promise<void>;
  /** Entries per batch at most (default: all waiting). */
  maxBatch?: number;
  /** Entries waiting per key at most; beyond it `enqueue` rejects with `full(key, waiting)` (default: unbounded). */
  maxQueued?: number;
  full?: (key: K, waiting: number) => unknown;
  /** Run before each batch of `key` is taken (e.g. a pause that lets another party go first). */
  beforeBatch?: (key: K) => Promise<void> | void;
}

class Entry<I, R> implements BatchEntry<I, R> {
  readonly item: I;
  readonly #resolve: (value: R) => void;
  readonly #reject: (error: unknown) => void;
  #settled = false;

  constructor(item: I, resolve: (value: R) => void, reject: (error: unknown) => void) {
    this.item = item;
    this.#resolve = resolve;
    this.#reject = reject;
  }

  get settled(): boolean {
    return this.#settled;
  }

  resolve(value: R): void {
    if (this.#settled) return;
    this.#settled = true;
    this.#resolve(value);
  }

  reject(error: unknown): void {
    if (this.#settled) return;
    this.#settled = true;
    this.#reject(error);
  }
}

export class KeyedBatchQueue<K, I, R> {
  readonly #commit: KeyedBatchQueueOptions<K, I, R>['commit'];
  readonly #maxBatch: number;
  readonly #maxQueued: number;
  readonly #full: (key: K, waiting: number) => unknown;
  readonly #beforeBatch: ((key: K) => Promise<void> | void) | undefined;
  readonly #queues = new Map<K, Entry<I, R>[]>();
  readonly #draining = new Set<K>();
  readonly #drainers = new Set<Promise<void>>();

  constructor(options: KeyedBatchQueueOptions<K, I, R>) {
    this.#commit = options.commit;
    this.#maxBatch = options.maxBatch ?? Number.POSITIVE_INFINITY;
    this.#maxQueued = options.maxQueued ?? Number.POSITIVE_INFINITY;
    this.#full = options.full ?? ((key, waiting) => new Error(`${String(key)} has ${waiting} items waiting`));
    this.#beforeBatch = options.beforeBatch;
    if (!(this.#maxBatch >= 1)) throw new RangeError('maxBatch must be at least 1');
  }

  /** Queue `item` for `key`; settles when the batch holding it has been committed. */
  enqueue(key: K, item: I): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      let queue = this.#queues.get(key);
      if (!queue) {
        queue = [];
        this.#queues.set(key, queue);
      }
      if (queue.length >= this.#maxQueued) {
        reject(this.#full(key, queue.length));
        return;
      }
      queue.push(new Entry(item, resolve, reject));
      if (this.#draining.has(key)) return;
      this.#draining.add(key);
      const run = this.#drain(key);
      this.#drainers.add(run);
      void run.finally(() => this.#drainers.delete(run));
    });
  }

  /** Items waiting for `key` (not counting the batch being committed). */
  waiting(key: K): number {
    return this.#queues.get(key)?.length ?? 0;
  }

  /** Whether a drainer is running for `key`. */
  draining(key: K): boolean {
    return this.#draining.has(key);
  }

  /** Resolves once every drainer running now has finished (items queued meanwhile included). */
  async idle(): Promise<void> {
    await Promise.allSettled([...this.#drainers]);
  }

  async #drain(key: K): Promise<void> {
    try {
      for (;;) {
        const queue = this.#queues.get(key);
        if (!queue || queue.length === 0) {
          this.#queues.delete(key);
          return;
        }
        if (this.#beforeBatch) {
          try {
            await this.#beforeBatch(key);
          } catch {
            // a pause that fails is no reason to keep callers waiting
          }
        }
        const batch = queue.splice(0, this.#maxBatch);
        try {
          await this.#commit(key, batch);
          for (const e of batch) if (!e.settled) e.reject(new Error(`a batch for ${String(key)} was committed without answering one of its items`));
        } catch (error) {
          for (const e of batch) e.reject(error);
        }
      }
    } finally {
      this.#draining.delete(key);
    }
  }
}
