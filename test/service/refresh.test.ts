/**
 * Online roles are re-signed before expiry by the scheduler, and a service
 * started on an existing store picks every repository up again.
 */
import { describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { InProcessCoordinator } from '../../src/coord/index.ts';
import { RepositoryService } from '../../src/service/repository-service.ts';
import { policy } from '../support/engine-repo.ts';
import { ServiceHarness } from './harness.ts';

const REPO = 'wabbit-networks/net-monitor';
const MIN = 60_000;

describe('refresh scheduler', () => {
  it('re-signs the timestamp inside its margin, and the snapshot inside its own', async () => {
    const h = new ServiceHarness();
    expect((await h.create()).status).toBe(201);
    expect(await h.service.refreshDue()).toBe(0); // nothing due yet
    h.now += (policy.roles.timestamp.expiresDefaultMinutes - policy.refresh.timestampMarginMinutes) * MIN + 1000;
    expect(await h.service.refreshDue()).toBe(1);
    const ts = await h.request('GET', `/v1/repos/${REPO}/metadata/timestamp.json`);
    const signed = ts.json<{ signed: { version: number; expires: string; meta: Record<string, { version: number }> } }>().signed;
    expect(signed.version).toBe(2);
    expect(signed.meta['snapshot.json']?.version).toBe(1); // snapshot not due yet
    expect(Date.parse(signed.expires)).toBeGreaterThan(h.now + (policy.roles.timestamp.expiresDefaultMinutes - 1) * MIN);
    h.now = Date.parse(signed.expires) + policy.roles.snapshot.expiresDefaultMinutes * MIN; // far past both margins
    expect(await h.service.refreshDue()).toBe(1);
    const later = (await h.request('GET', `/v1/repos/${REPO}/metadata/timestamp.json`)).json<{ signed: { version: number; meta: Record<string, { version: number }> } }>().signed;
    expect(later.version).toBe(3);
    expect(later.meta['snapshot.json']?.version).toBe(2);
  });

  it('a fresh service instance on the same store schedules stored repositories again', async () => {
    const h = new ServiceHarness();
    expect((await h.create()).status).toBe(201);
    const coord = new InProcessCoordinator({ now: () => h.now });
    const fresh = new RepositoryService({
      metadata: h.metadata,
      coord,
      signers: { snapshot: [h.online.snapshot], timestamp: [h.online.timestamp] },
      policy,
      clock: () => h.now,
      logger: pino({ level: 'silent' }),
    });
    for (const r of await h.metadata.listRepositories()) await fresh.track(r);
    expect(await coord.knownRepositories()).toEqual([REPO]);
    h.now += policy.roles.timestamp.expiresDefaultMinutes * MIN;
    expect(await fresh.refreshDue()).toBe(1);
    expect((await fresh.status(REPO)).roles.find((r) => r.role === 'timestamp')?.version).toBe(2);
    await coord.close();
  });
});
