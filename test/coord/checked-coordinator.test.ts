/**
 * The checked wrapper on its own, over a backend spy: bad arguments and
 * calls after close() are refused with named errors before the backend is
 * called, the backend's CoordErrors and an aborted signal's reason pass
 * through, anything else becomes a named UNAVAILABLE, and every call that
 * reached the backend is reported to the observer.
 */
import { describe, expect, it } from 'vitest';
import { CheckedCoordinator, checkedCoordinator, type CoordCall } from '../../src/coord/checked-coordinator.ts';
import { CoordError, isCoordError, type CoordErrorCode } from '../../src/coord/coord-error.ts';
import type { Coordinator } from '../../src/coord/coordinator.ts';
import { InProcessCoordinator } from '../../src/coord/in-process-coordinator.ts';
import { RedisCoordinator } from '../../src/coord/redis-coordinator.ts';
import { rejectionOf } from './contract.ts';

/** A backend that records every call and answers from `answer` (or throws what it returns, if an Error). */
function spyBackend(answer: (operation: string) => unknown = () => undefined): { coordinator: Coordinator; calls: string[] } {
  const calls: string[] = [];
  const call = async (operation: string): Promise<never> => {
    calls.push(operation);
    const value = answer(operation);
    if (value instanceof Error) throw value;
    return value as never;
  };
  const coordinator: Coordinator = {
    backend: 'in-process',
    acquire: () => call('acquire'),
    publishHead: () => call('publishHead'),
    getHead: () => call('getHead'),
    onHead: () => {
      calls.push('onHead');
      return () => undefined;
    },
    onResync: () => {
      calls.push('onResync');
      return () => undefined;
    },
    scheduleRefresh: () => call('scheduleRefresh'),
    claimDueRefreshes: () => call('claimDueRefreshes'),
    completeRefresh: () => call('completeRefresh'),
    knownRepositories: () => call('knownRepositories'),
    putGrant: () => call('putGrant'),
    takeGrant: () => call('takeGrant'),
    peekGrant: () => call('peekGrant'),
    ping: () => call('ping'),
    close: () => call('close'),
  };
  return { coordinator, calls };
}

async function expectRefused(promise: Promise<unknown>, code: CoordErrorCode, detail: Record<string, unknown>): Promise<void> {
  const error = await rejectionOf(promise);
  expect(isCoordError(error, code), `expected ${code}, got ${String(error)}`).toBe(true);
  expect((error as CoordError).detail).toMatchObject({ backend: 'in-process', ...detail });
}

describe('checkedCoordinator', () => {
  it('refuses bad arguments with INVALID_ARGUMENT, naming operation and field, before the backend is called', async () => {
    const { coordinator: backend, calls } = spyBackend();
    const c = checkedCoordinator(backend);
    await expectRefused(c.acquire('', { ttlMs: 1_000, waitMs: 0 }), 'INVALID_ARGUMENT', { operation: 'acquire', field: 'repository' });
    await expectRefused(c.acquire('r', { ttlMs: 0, waitMs: 0 }), 'INVALID_ARGUMENT', { operation: 'acquire', field: 'ttlMs' });
    await expectRefused(c.acquire('r', { ttlMs: 1_000, waitMs: 1.5 }), 'INVALID_ARGUMENT', { operation: 'acquire', field: 'waitMs' });
    await expectRefused(c.publishHead('r', -1), 'INVALID_ARGUMENT', { operation: 'publishHead', field: 'version' });
    await expectRefused(c.getHead('x'.repeat(1025)), 'INVALID_ARGUMENT', { operation: 'getHead', field: 'repository' });
    await expectRefused(c.scheduleRefresh('r', Number.NaN), 'INVALID_ARGUMENT', { operation: 'scheduleRefresh', field: 'atMs' });
    await expectRefused(c.claimDueRefreshes(1, { limit: -1, leaseMs: 10 }), 'INVALID_ARGUMENT', { operation: 'claimDueRefreshes', field: 'limit' });
    await expectRefused(c.completeRefresh({ repository: 'r', lease: { token: '', expiresAtMs: 1 } }, 5), 'INVALID_ARGUMENT', { operation: 'completeRefresh', field: 'lease.token' });
    await expectRefused(c.putGrant('g', [1] as never, 1_000), 'INVALID_ARGUMENT', { operation: 'putGrant', id: 'g' });
    const cyclic: Record<string, unknown> = {};
    cyclic['self'] = cyclic;
    await expectRefused(c.putGrant('g', cyclic as never, 1_000), 'INVALID_ARGUMENT', { operation: 'putGrant', id: 'g' });
    await expectRefused(c.putGrant('g', { a: 1 }, 0), 'INVALID_ARGUMENT', { operation: 'putGrant', field: 'ttlMs' });
    await expectRefused(c.takeGrant(''), 'INVALID_ARGUMENT', { operation: 'takeGrant', field: 'id' });
    await expectRefused(c.peekGrant(7 as never), 'INVALID_ARGUMENT', { operation: 'peekGrant', field: 'id' });
    expect(calls).toEqual([]);
  });

  it('refuses every call after close() with CLOSED, closing the backend once per close call', async () => {
    const { coordinator: backend, calls } = spyBackend();
    const c = checkedCoordinator(backend);
    await c.close();
    await expectRefused(c.ping(), 'CLOSED', { operation: 'ping' });
    await expectRefused(c.acquire('r', { ttlMs: 1_000, waitMs: 0 }), 'CLOSED', { operation: 'acquire' });
    await expectRefused(c.knownRepositories(), 'CLOSED', { operation: 'knownRepositories' });
    expect(() => c.onHead(() => undefined)).toThrow(CoordError);
    expect(() => c.onResync(() => undefined)).toThrow(CoordError);
    expect(calls).toEqual(['close']);
  });

  it('passes CoordErrors and an aborted signal\u2019s reason through, and names anything else UNAVAILABLE', async () => {
    const own = new CoordError('UNAVAILABLE', 'redis went away', { detail: { backend: 'redis', operation: 'getHead' } });
    const controller = new AbortController();
    const reason = new Error('client went away');
    const { coordinator: backend } = spyBackend((operation) => {
      if (operation === 'getHead') return own;
      if (operation === 'acquire') {
        controller.abort(reason);
        return reason;
      }
      return new TypeError('backend bug');
    });
    const c = checkedCoordinator(backend);
    expect(await rejectionOf(c.getHead('r'))).toBe(own);
    expect(await rejectionOf(c.acquire('r', { ttlMs: 1_000, waitMs: 100, signal: controller.signal }))).toBe(reason);
    const named = await rejectionOf(c.takeGrant('g-1'));
    expect(isCoordError(named, 'UNAVAILABLE')).toBe(true);
    expect((named as CoordError).detail).toMatchObject({ backend: 'in-process', operation: 'takeGrant', id: 'g-1' });
    expect((named as CoordError).cause).toBeInstanceOf(TypeError);
  });

  it('tells the observer about every call that reached the backend, with its outcome', async () => {
    const seen: CoordCall[] = [];
    const { coordinator: backend } = spyBackend((operation) =>
      operation === 'getHead' ? new CoordError('UNAVAILABLE', 'down', { detail: { backend: 'in-process' } }) : undefined,
    );
    const c = checkedCoordinator(backend, { observe: (call) => seen.push(call) });
    await c.ping();
    await rejectionOf(c.getHead('r'));
    await rejectionOf(c.getHead('')); // refused by the checks: never reached the backend
    expect(seen.map(({ operation, outcome }) => ({ operation, outcome }))).toEqual([
      { operation: 'ping', outcome: 'ok' },
      { operation: 'getHead', outcome: 'UNAVAILABLE' },
    ]);
  });

  it('wraps once, and is what both coordinator classes are built as', async () => {
    const { coordinator: backend } = spyBackend();
    const once = checkedCoordinator(backend);
    expect(checkedCoordinator(once)).toBe(once);
    const inProcess = new InProcessCoordinator();
    const peer = inProcess.peer();
    expect(inProcess).toBeInstanceOf(CheckedCoordinator);
    expect(peer).toBeInstanceOf(CheckedCoordinator);
    await inProcess.close();
    expect(() => inProcess.peer()).toThrow(CoordError);
    await peer.close();
    const redis = new RedisCoordinator({ url: 'redis://127.0.0.1:9', redis: { lazyConnect: true } });
    expect(redis).toBeInstanceOf(CheckedCoordinator);
    await redis.close();
  });
});
