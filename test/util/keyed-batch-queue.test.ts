/**
 * The generic group-commit queue: one drainer per key, items arriving during a commit go into
 * the next batch, each item answered once, a failing commit answers what it left unanswered.
 * Commits are held open with explicit gates, never with timers.
 */
import { describe, expect, it } from 'vitest';
import { KeyedBatchQueue, type BatchEntry } from '../../src/util/keyed-batch-queue.ts';

function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}

/** A queue whose commits answer each item with `key:item`, recording every batch; `hold` keeps the next commit open. */
function recorder(options: { maxBatch?: number; maxQueued?: number } = {}) {
  const batches: Array<{ key: string; items: number[] }> = [];
  const held: Array<{ entered: ReturnType<typeof gate>; release: ReturnType<typeof gate> }> = [];
  const queue = new KeyedBatchQueue<string, number, string>({
    ...options,
    commit: async (key, batch) => {
      batches.push({ key, items: batch.map((e) => e.item) });
      const h = held.shift();
      if (h) {
        h.entered.open();
        await h.release.promise;
      }
      for (const e of batch) e.resolve(`${key}:${e.item}`);
    },
  });
  const hold = () => {
    const h = { entered: gate(), release: gate() };
    held.push(h);
    return { entered: h.entered.promise, release: h.release.open };
  };
  return { queue, batches, hold };
}

describe('keyed batch queue', () => {
  it('commits the items that arrive during a commit together, in arrival order', async () => {
    const { queue, batches, hold } = recorder();
    const first = hold();
    const a = queue.enqueue('r', 1);
    await first.entered;
    const rest = [2, 3, 4].map((i) => queue.enqueue('r', i));
    expect(queue.waiting('r')).toBe(3);
    first.release();
    expect(await Promise.all([a, ...rest])).toEqual(['r:1', 'r:2', 'r:3', 'r:4']);
    expect(batches).toEqual([
      { key: 'r', items: [1] },
      { key: 'r', items: [2, 3, 4] },
    ]);
    expect(queue.draining('r')).toBe(false);
  });

  it('takes at most maxBatch items per commit', async () => {
    const { queue, batches, hold } = recorder({ maxBatch: 2 });
    const first = hold();
    const all = [queue.enqueue('r', 1)];
    await first.entered;
    for (const i of [2, 3, 4, 5, 6]) all.push(queue.enqueue('r', i));
    first.release();
    await Promise.all(all);
    expect(batches.map((b) => b.items)).toEqual([[1], [2, 3], [4, 5], [6]]);
  });

  it('drains keys independently: a commit held open for one key does not hold another', async () => {
    const { queue, hold } = recorder();
    const slow = hold();
    const a = queue.enqueue('a', 1);
    await slow.entered;
    expect(await queue.enqueue('b', 2)).toBe('b:2');
    expect(queue.draining('a')).toBe(true);
    slow.release();
    expect(await a).toBe('a:1');
  });

  it('answers a refused item alone and the others with their results', async () => {
    const first = gate();
    const queue = new KeyedBatchQueue<string, number, number>({
      commit: async (_key, batch) => {
        if (batch[0]?.item === 0) await first.promise;
        for (const e of batch) {
          if (e.item < 0) e.reject(new RangeError(`refused ${e.item}`));
          else e.resolve(e.item * 10);
        }
      },
    });
    const zero = queue.enqueue('r', 0); // being committed while the next three queue
    const results = Promise.allSettled([queue.enqueue('r', 1), queue.enqueue('r', -2), queue.enqueue('r', 3)]);
    first.open();
    expect(await zero).toBe(0);
    expect((await results).map((r) => (r.status === 'fulfilled' ? r.value : (r.reason as Error).message))).toEqual([10, 'refused -2', 30]);
  });

  it('a commit that throws rejects every item it left unanswered with its error; answered items keep their answer', async () => {
    const failure = new Error('store unavailable');
    const first = gate();
    const entered = gate();
    const queue = new KeyedBatchQueue<string, number, string>({
      commit: async (_key, batch: ReadonlyArray<BatchEntry<number, string>>) => {
        if (batch[0]?.item === 0) {
          entered.open();
          await first.promise;
          batch[0].resolve('ok');
          return;
        }
        batch[0]?.reject(new Error('refused alone'));
        throw failure;
      },
    });
    const zero = queue.enqueue('r', 0);
    await entered.promise;
    const later = Promise.allSettled([queue.enqueue('r', 1), queue.enqueue('r', 2), queue.enqueue('r', 3)]);
    first.open();
    expect(await zero).toBe('ok');
    const [a, b, c] = await later;
    expect(a).toMatchObject({ status: 'rejected', reason: { message: 'refused alone' } });
    expect(b).toMatchObject({ status: 'rejected', reason: failure });
    expect(c).toMatchObject({ status: 'rejected', reason: failure });
  });

  it('an item a commit forgot to answer is rejected rather than left waiting', async () => {
    const queue = new KeyedBatchQueue<string, number, string>({ commit: async () => undefined });
    await expect(queue.enqueue('r', 1)).rejects.toThrow(/without answering/);
  });

  it('refuses items beyond maxQueued at once with the error `full` makes', async () => {
    const holdOpen = gate();
    const entered = gate();
    const queue = new KeyedBatchQueue<string, number, number>({
      maxQueued: 2,
      full: (key, waiting) => new Error(`${key} full at ${waiting}`),
      commit: async (_key, batch) => {
        entered.open();
        await holdOpen.promise;
        for (const e of batch) e.resolve(e.item);
      },
    });
    const first = queue.enqueue('r', 0);
    await entered.promise; // item 0 is being committed: the queue is empty again
    const waiting = [queue.enqueue('r', 1), queue.enqueue('r', 2)];
    await expect(queue.enqueue('r', 3)).rejects.toThrow('r full at 2');
    holdOpen.open();
    expect(await Promise.all([first, ...waiting])).toEqual([0, 1, 2]);
  });

  it('runs beforeBatch before every batch of a key, and a failing one does not stop the drain', async () => {
    const calls: string[] = [];
    const queue = new KeyedBatchQueue<string, number, number>({
      beforeBatch: (key) => {
        calls.push(`before ${key}`);
        if (calls.length === 1) throw new Error('pause failed');
      },
      commit: async (key, batch) => {
        calls.push(`commit ${key} ${batch.map((e) => e.item).join(',')}`);
        for (const e of batch) e.resolve(e.item);
      },
    });
    expect(await queue.enqueue('r', 1)).toBe(1);
    expect(await queue.enqueue('r', 2)).toBe(2);
    expect(calls).toEqual(['before r', 'commit r 1', 'before r', 'commit r 2']);
  });

  it('idle() resolves once the drainers running now have committed everything queued', async () => {
    const { queue, batches, hold } = recorder();
    const first = hold();
    const answers: string[] = [];
    void queue.enqueue('r', 1).then((v) => answers.push(v));
    await first.entered;
    void queue.enqueue('r', 2).then((v) => answers.push(v));
    const idle = queue.idle();
    first.release();
    await idle;
    expect(batches.map((b) => b.items)).toEqual([[1], [2]]);
    expect(queue.draining('r')).toBe(false);
    await Promise.resolve();
    expect(answers).toEqual(['r:1', 'r:2']);
  });
});
