/**
 * Accepted flows: online role production, timestamp refresh, root rotation
 * followed by an unmodified tuf-js client, delegation removal and re-keying.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadRepositoryState, produceTimestamp, verifyRootUpload, checkConsistency } from '../../src/engine/index.ts';
import { DAY, SimRepo, image, signer } from '../support/engine-repo.ts';

describe('online roles', () => {
  it('each upload yields snapshot N+1 listing every targets file, then timestamp N+1 naming it', async () => {
    const repo = await new SimRepo().init();
    expect(repo.state.snapshot?.md.signed.version).toBe(1);
    await repo.upload('ci', await repo.targetsBytes({ version: 1, targets: { v1: image(1) } }, [repo.ciKey]));
    const snap = repo.state.snapshot?.md.signed;
    expect(snap?.version).toBe(2);
    expect(Object.fromEntries(Object.entries(snap?.meta ?? {}).map(([k, v]) => [k, v.version]))).toEqual({ 'targets.json': 1, 'ci.json': 1 });
    const ts = repo.state.timestamp?.md.signed;
    expect(ts?.version).toBe(2);
    expect(ts?.snapshotMeta.length).toBe(repo.files.get('2.snapshot.json')?.byteLength);
    expect(Date.parse(ts?.expires ?? '')).toBe(repo.now + repo.ctx.policy.roles.timestamp.expiresDefaultMinutes * 60_000);
  });

  it('refreshes the timestamp alone, keeping the snapshot', async () => {
    const repo = await new SimRepo().init();
    repo.now += DAY / 2;
    const out = await produceTimestamp(repo.state, repo.online);
    expect(out.files.map((f) => f.name)).toEqual(['timestamp.json']);
    expect(out.state.timestamp?.md.signed.version).toBe(2);
    expect(out.state.timestamp?.md.signed.snapshotMeta.version).toBe(1);
    checkConsistency(out.state);
  });

  it('refuses to sign with online keys the root does not name', async () => {
    const repo = await new SimRepo().init();
    await expect(produceTimestamp(repo.state, { ...repo.online, signers: { snapshot: [], timestamp: [signer()] } })).rejects.toMatchObject({
      code: 'SIGNER_MISSING',
    });
  });
});

describe('root rotation followed by tuf-js', () => {
  it('a client pinned to 1.root.json follows three rotations, incl. a threshold and key-type change', async () => {
    const repo = await new SimRepo().init({ targets: { latest: image(1) } });
    const dir = mkdtempSync(join(tmpdir(), 'tufoci-rot-'));
    expect((await repo.updater(dir).getTargetInfo('latest'))?.length).toBe(image(1).size);
    const a = signer();
    const b = signer('ecdsa-p256');
    const c = signer('ecdsa-p256');
    // v2: root1 → {a, b} threshold 2 (signed by root1 and a, b)
    const r2 = await repo.rootBytes(2, [repo.root1, a, b], [a, b], 2);
    repo.state = verifyRootUpload(repo.state, r2, repo.ctx).state;
    repo.files.set('2.root.json', r2);
    // v3: {a, b} → {b, c} threshold 2, signed by a+b (old) and b+c (new)
    const r3 = await repo.rootBytes(3, [a, b, c], [b, c], 2);
    repo.state = verifyRootUpload(repo.state, r3, repo.ctx).state;
    repo.files.set('3.root.json', r3);
    // v4: {b, c} → {c} threshold 1, ECDSA only
    const r4 = await repo.rootBytes(4, [b, c], [c], 1);
    const result = verifyRootUpload(repo.state, r4, repo.ctx);
    expect(result.verification.previous?.signed).toHaveLength(2);
    repo.state = result.state;
    repo.files.set('4.root.json', r4);
    await repo.publish();
    const client = repo.updater(mkdtempSync(join(tmpdir(), 'tufoci-rot-')));
    expect((await client.getTargetInfo('latest'))?.length).toBe(image(1).size);
    // the earlier client, with 1.root.json cached, walks the chain too
    expect((await repo.updater(dir).getTargetInfo('latest'))?.length).toBe(image(1).size);
  });

  it('a root that only one of two required old keys signed is refused', async () => {
    const repo = await new SimRepo().init();
    const r2 = await repo.rootBytes(2, [repo.root1, repo.root2], [repo.root1, repo.root2], 2);
    repo.state = verifyRootUpload(repo.state, r2, repo.ctx).state;
    const r3 = await repo.rootBytes(3, [repo.root1], [repo.root1], 1);
    await expect(async () => verifyRootUpload(repo.state, r3, repo.ctx)).rejects.toMatchObject({ code: 'THRESHOLD_NOT_MET' });
  });
});

describe('revocation through delegation changes', () => {
  it('re-keying a delegation makes the old key\'s targets unverifiable for tuf-js, and a new upload restores them', async () => {
    const repo = await new SimRepo().init();
    await repo.upload('ci', await repo.targetsBytes({ version: 1, targets: { v1: image(1) } }, [repo.ciKey]));
    const newCi = signer();
    await repo.upload('targets', await repo.targetsBytes({ version: 2, delegations: [{ name: 'ci', keys: [newCi.public], threshold: 1, paths: ['v*'] }] }));
    // Still listed (never dropped), still at version 1, but tuf-js refuses it: the revoked key signed it.
    expect(repo.state.snapshot?.md.signed.meta['ci.json']?.version).toBe(1);
    await expect(repo.updater().getTargetInfo('v1')).rejects.toThrow();
    // The loader keeps it as a tombstone at its version; the new key's upload continues the version line.
    const loaded = loadRepositoryState(
      {
        roots: [repo.files.get('1.root.json') as Uint8Array],
        timestamp: repo.files.get('timestamp.json') as Uint8Array,
        snapshot: repo.files.get(`${repo.state.snapshot?.md.signed.version}.snapshot.json`) as Uint8Array,
        targets: new Map([
          ['targets', repo.files.get('2.targets.json') as Uint8Array],
          ['ci', repo.files.get('1.ci.json') as Uint8Array],
        ]),
      },
      repo.ctx.policy,
    );
    expect(loaded.state.tombstones.get('ci')).toBe(1);
    expect(loaded.problems).toContainEqual(expect.objectContaining({ role: 'ci', code: 'THRESHOLD_NOT_MET' }));
    // The state the upload produced already says the same: a tombstone, not a live role.
    expect(repo.state.tombstones.get('ci')).toBe(1);
    expect(repo.state.targets.has('ci')).toBe(false);
    expect([...loaded.state.targets.keys()].sort()).toEqual([...repo.state.targets.keys()].sort());
    repo.state = loaded.state;
    await repo.upload('ci', await repo.targetsBytes({ version: 2, targets: { v1: image(7) } }, [newCi]));
    expect((await repo.updater().getTargetInfo('v1'))?.hashes['sha256']).toBe(image(7).digest.slice(7));
  });

  it('a targets upload that leaves a delegation unchanged keeps its role live; one that drops it makes a tombstone', async () => {
    const repo = await new SimRepo().init();
    await repo.upload('ci', await repo.targetsBytes({ version: 1, targets: { v1: image(1) } }, [repo.ciKey]));
    const other = signer();
    const ci = { name: 'ci', keys: [repo.ciKey.public], threshold: 1, paths: ['v*'] };
    await repo.upload('targets', await repo.targetsBytes({ version: 2, delegations: [ci, { name: 'docs', keys: [other.public], threshold: 1, paths: ['d*'] }] }));
    expect(repo.state.targets.has('ci')).toBe(true);
    expect(repo.state.tombstones.size).toBe(0);
    await repo.upload('targets', await repo.targetsBytes({ version: 3, delegations: [{ name: 'docs', keys: [other.public], threshold: 1, paths: ['d*'] }] }));
    expect(repo.state.targets.has('ci')).toBe(false);
    expect(repo.state.tombstones.get('ci')).toBe(1);
    expect(repo.state.snapshot?.md.signed.meta['ci.json']?.version).toBe(1);
  });

  it('removing a delegation keeps the role listed, and its uploads are refused', async () => {
    const repo = await new SimRepo().init();
    await repo.upload('ci', await repo.targetsBytes({ version: 1, targets: { v1: image(1) } }, [repo.ciKey]));
    await repo.upload('targets', await repo.targetsBytes({ version: 2 }));
    expect(Object.keys(repo.state.snapshot?.md.signed.meta ?? {}).sort()).toEqual(['ci.json', 'targets.json']);
    expect(await repo.updater().getTargetInfo('v1')).toBeUndefined();
    await expect(repo.upload('ci', await repo.targetsBytes({ version: 2 }, [repo.ciKey]))).rejects.toMatchObject({ code: 'UNKNOWN_ROLE' });
  });
});
