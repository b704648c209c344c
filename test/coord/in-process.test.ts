/**
 * The coordinator contract on the embedded implementation (fake clock,
 * peers as instances), plus what only it does: takeover aborts the old
 * holder's signal at once, and with the real clock a lock's signal aborts by
 * itself when its TTL runs out.
 */
import { describe, expect, it } from 'vitest';
import type { Coordinator } from '../../src/coord/coordinator.ts';
import { InProcessCoordinator } from '../../src/coord/in-process-coordinator.ts';
import { aborted, coordinatorContract, freshName, type ContractHarness } from './contract.ts';

async function inProcessHarness(): Promise<ContractHarness> {
  const clock = { now: 1_700_000_000_000 };
  const errors: unknown[] = [];
  const first = new InProcessCoordinator({ now: () => clock.now, onError: (error) => errors.push(error) });
  const opened: InProcessCoordinator[] = [];
  return {
    async open(): Promise<Coordinator> {
      const coordinator = opened.length === 0 ? first : first.peer();
      opened.push(coordinator);
      return coordinator;
    },
    async elapse(ms) {
      clock.now += ms;
    },
    async close() {
      for (const coordinator of opened) await coordinator.close();
    },
  };
}

coordinatorContract('in-process', inProcessHarness);

describe('InProcessCoordinator', () => {
  it('aborts the old holder\u2019s signal as soon as another acquirer takes over the expired lock', async () => {
    let now = 1_000;
    const coordinator = new InProcessCoordinator({ now: () => now });
    const peer = coordinator.peer();
    const repository = freshName('takeover');
    const first = await coordinator.acquire(repository, { ttlMs: 100, waitMs: 0 });
    now += 101;
    expect(first?.signal.aborted).toBe(false);
    const second = await peer.acquire(repository, { ttlMs: 100, waitMs: 0 });
    expect(second).toBeDefined();
    expect(first?.signal.aborted).toBe(true);
    expect((first?.signal.reason as { detail: { reason: string } }).detail.reason).toBe('superseded');
    await coordinator.close();
    await peer.close();
  });

  it('with the real clock, aborts a lock\u2019s signal by itself when its TTL runs out', async () => {
    const coordinator = new InProcessCoordinator();
    const lock = await coordinator.acquire(freshName('deadline'), { ttlMs: 60, waitMs: 0 });
    expect(lock?.signal.aborted).toBe(false);
    await aborted(lock!.signal);
    expect((lock?.signal.reason as { detail: { reason: string } }).detail.reason).toBe('expired');
    expect(await lock?.isCurrent()).toBe(false);
    await coordinator.close();
  });

  it('issues fences of at least the clock in microseconds, so they stay above a previous process\u2019s', async () => {
    const earlier = new InProcessCoordinator({ now: () => 5_000 });
    const repository = freshName('fence-floor');
    const old = await earlier.acquire(repository, { ttlMs: 100, waitMs: 0 });
    await earlier.close();
    const later = new InProcessCoordinator({ now: () => 5_001 });
    const fresh = await later.acquire(repository, { ttlMs: 100, waitMs: 0 });
    expect(old?.fence).toBe(5_000_000);
    expect(fresh?.fence).toBe(5_001_000);
    await later.close();
  });
});
