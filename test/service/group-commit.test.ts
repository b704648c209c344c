/**
 * Group commit and service-signed tags (writes.ts on the keyed batch queue, publishTags):
 * writes queued while a commit holds a repository's lock are applied together,
 * each verified against everything before it, refused alone when bad, and
 * acknowledged only after the one timestamp that covers them all. Tags
 * published into a role delegated to the service's CI key are signed by the
 * service, once per batch, and verify with the unmodified tuf-js Updater.
 */
import { describe, expect, it } from 'vitest';
import type { MetadataFile } from '../../src/storage/index.ts';
import { image } from '../support/engine-repo.ts';
import { CI, ServiceHarness } from './harness.ts';

const REPO = 'wabbit-networks/net-monitor';

/** A harness whose repository delegates `ci` (v*) to the owner's CI key and `release` (r*) to the service's CI key. */
async function withRelease(): Promise<ServiceHarness> {
  const h = new ServiceHarness();
  expect((await h.create()).status).toBe(201);
  expect((await h.delegateRelease()).status).toBe(201);
  return h;
}

/** Hold the next commit's role/snapshot write until `open()`; `reached` resolves when it is waiting. */
function gateNextPublish(h: ServiceHarness): { reached: Promise<void>; open: () => void; published: MetadataFile[][] } {
  const original = h.metadata.publish.bind(h.metadata);
  const published: MetadataFile[][] = [];
  let open!: () => void;
  let arrived!: () => void;
  const gate = new Promise<void>((r) => (open = r));
  const reached = new Promise<void>((r) => (arrived = r));
  let first = true;
  h.metadata.publish = async (repository, files, options) => {
    published.push([...files]);
    if (first) {
      first = false;
      arrived();
      await gate;
    }
    return original(repository, files, options);
  };
  return { reached, open, published };
}

async function roleTargets(h: ServiceHarness, role: string): Promise<{ version: number; tags: string[] }> {
  const status = (await h.request('GET', `/v1/repos/${REPO}/status`)).json<{ roles: Array<{ role: string; version: number }> }>();
  const version = status.roles.find((r) => r.role === role)?.version ?? 0;
  const file = await h.request('GET', `/v1/repos/${REPO}/metadata/${version}.${role}.json`);
  return { version, tags: Object.keys(file.json<{ signed: { targets: Record<string, unknown> } }>().signed.targets).sort() };
}

describe('group commit', () => {
  it('tags published while a commit holds the lock are signed as one role version under one timestamp', async () => {
    const h = await withRelease();
    const before = await h.timestampVersion();
    const gate = gateNextPublish(h);
    const first = h.service.publishTags(REPO, 'release', { r0: image(0) });
    await gate.reached;
    // 29 more publishers arrive while the first commit is writing: they queue behind it.
    const rest = Array.from({ length: 29 }, (_, i) => h.service.publishTags(REPO, 'release', { [`r${i + 1}`]: image(i + 1) }));
    gate.open();
    const results = await Promise.all([first, ...rest]);
    expect(results[0]).toMatchObject({ role: 'release', version: 1, timestampVersion: before + 1, tags: ['r0'] });
    for (const r of results.slice(1)) expect(r).toMatchObject({ role: 'release', version: 2, timestampVersion: before + 2 });
    expect(gate.published).toHaveLength(2); // two commits for thirty publications
    expect(await h.timestampVersion()).toBe(before + 2);
    const release = await roleTargets(h, 'release');
    expect(release.version).toBe(2);
    expect(release.tags).toEqual(Array.from({ length: 30 }, (_, i) => `r${i}`).sort());
  });

  it('in one batch each upload is checked against the ones before it: a refused one is answered alone', async () => {
    const h = await withRelease();
    const before = await h.timestampVersion();
    const gate = gateNextPublish(h);
    const warmup = h.service.publishTags(REPO, 'release', { r0: image(0) });
    await gate.reached;
    const v1 = await h.ciBytes(1, { v1: image(1) });
    const v1other = await h.ciBytes(1, { v1: image(2) });
    const v2 = await h.ciBytes(2, { v1: image(1), v2: image(2) });
    const forged = await h.ciBytes(3, { v3: image(3) }, [h.owner.targets]);
    const batch = [
      h.service.upload(REPO, '1.ci.json', v1),
      h.service.upload(REPO, '1.ci.json', v1other), // same version, other bytes: taken by the one before
      h.service.upload(REPO, '1.ci.json', v1), // identical retry inside the batch
      h.service.upload(REPO, '2.ci.json', v2), // builds on the first, in the same commit
      h.service.upload(REPO, '3.ci.json', forged), // signed by a key ci does not trust
      h.service.publishTags(REPO, 'release', { v9: image(9) }), // outside release's paths
      h.service.publishTags(REPO, 'release', { r1: image(1) }),
    ].map((p) => p.then((value) => ({ ok: true as const, value }), (error: { code?: string }) => ({ ok: false as const, code: error.code })));
    gate.open();
    await warmup;
    const out = await Promise.all(batch);
    expect(out.map((o) => (o.ok ? 'ok' : o.code))).toEqual(['ok', 'VERSION_TAKEN', 'ok', 'ok', 'THRESHOLD_NOT_MET', 'PATH_NOT_DELEGATED', 'ok']);
    expect(out[2]).toMatchObject({ ok: true, value: { unchanged: true } });
    for (const o of [out[0], out[3], out[6]]) expect(o).toMatchObject({ ok: true, value: { timestampVersion: before + 2 } });
    expect(gate.published).toHaveLength(2);
    expect((await roleTargets(h, 'ci')).version).toBe(2);
    expect((await roleTargets(h, 'release')).tags).toEqual(['r0', 'r1']);
  });

  it('at most 1,024 writes wait per repository; the next is answered BUSY at once', async () => {
    const h = await withRelease();
    const gate = gateNextPublish(h);
    const first = h.service.publishTags(REPO, 'release', { r0: image(0) });
    await gate.reached;
    const waiting = Array.from({ length: 1025 }, (_, i) =>
      h.service.publishTags(REPO, 'release', { [`r${(i % 50) + 1}`]: image(i) }).then(
        () => 'ok',
        (e: { code?: string }) => e.code,
      ),
    );
    gate.open();
    await first;
    const out = await Promise.all(waiting);
    expect(out.filter((o) => o === 'ok')).toHaveLength(1024);
    expect(out[1024]).toBe('BUSY');
  });

  it('a commit that fails answers every write of its batch with the error and changes nothing', async () => {
    const h = await withRelease();
    const before = await h.timestampVersion();
    const original = h.metadata.publish.bind(h.metadata);
    h.metadata.publish = async () => {
      throw Object.assign(new Error('disk full'), { code: 'EIO' });
    };
    const ci1 = await h.ciBytes(1, { v1: image(1) });
    const out = await Promise.allSettled([h.service.publishTags(REPO, 'release', { r1: image(1) }), h.service.upload(REPO, '1.ci.json', ci1)]);
    expect(out.map((o) => (o.status === 'rejected' ? (o.reason as Error).message : 'fulfilled'))).toEqual(['disk full', 'disk full']);
    h.metadata.publish = original;
    expect(await h.timestampVersion()).toBe(before);
    const status = (await h.request('GET', `/v1/repos/${REPO}/status`)).json<{ roles: Array<{ role: string; version: number }> }>();
    expect(status.roles.find((r) => r.role === 'ci')?.version ?? 0).toBe(0);
    expect(status.roles.some((r) => r.role === 'release')).toBe(false);
    // Nothing was acknowledged, nothing is left half-done: the same writes succeed now.
    expect(await h.service.publishTags(REPO, 'release', { r1: image(1) })).toMatchObject({ version: 1, timestampVersion: before + 1 });
  });
});

describe('service-signed tags over HTTP', () => {
  it('publishes into a role held by the service; the unmodified tuf-js Updater verifies the tags', async () => {
    const h = await withRelease();
    const r = await h.request('POST', `/v1/repos/${REPO}/tags`, {
      token: CI,
      body: JSON.stringify({ role: 'release', tags: { r1: { digest: image(1).digest, size: image(1).size, mediaType: image(1).mediaType } } }),
    });
    expect(r.status, r.body.toString()).toBe(201);
    expect(r.json()).toMatchObject({ repository: REPO, role: 'release', version: 1, tags: ['r1'], unchanged: false });
    // Moving a tag: the same role, a new version.
    const moved = await h.request('POST', `/v1/repos/${REPO}/tags`, {
      token: CI,
      body: JSON.stringify({ role: 'release', tags: { r1: { digest: image(2).digest, size: image(2).size, mediaType: image(2).mediaType } } }),
    });
    expect(moved.json()).toMatchObject({ version: 2 });
    await h.withUpdater(async (updater) => {
      expect((await updater.getTargetInfo('r1'))?.hashes['sha256']).toBe(image(2).digest.slice(7));
      expect((await updater.getTargetInfo('r-owner'))?.hashes['sha256']).toBe('9'.repeat(64));
    });
    const status = (await h.request('GET', `/v1/repos/${REPO}/status`)).json<{ roles: Array<{ role: string; signedBy: string }> }>();
    expect(status.roles.find((x) => x.role === 'release')?.signedBy).toBe('online');
  });
});
