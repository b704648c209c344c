/**
 * Repositories whose metadata lists ECDSA keys under the key ids tufoci wrote
 * before it followed the TUF specification (`legacyKeyId`): they keep loading,
 * serving and verifying; new uploads may not list a legacy id; signers whose key
 * the trusted metadata lists under a legacy id sign under both ids, each key
 * counting once; and the repair (re-sign, re-list, rotate) keeps tuf-js clients
 * pinned to the old root verifying throughout.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Updater } from 'tuf-js';
import { describe, expect, it } from 'vitest';
import {
  EngineError,
  buildRoot,
  buildTargets,
  isoExpiry,
  legacyKeyListings,
  loadRepositoryState,
  metadataFileName,
  parseMetadata,
  produceSnapshotAndTimestamp,
  signMetadata,
  verifyRootUpload,
  verifyTargetsUpload,
  verifyThreshold,
  type RepoState,
} from '../../src/engine/index.ts';
import { computeKeyId, legacyKeyId, type InMemorySigner } from '../../src/keys/index.ts';
import { DAY, MapFetcher, NOW, image, policy, signer } from '../support/engine-repo.ts';
import { asLegacySigner, buildLegacyRepository, legacyRoot, legacyTargets, type LegacyRepository } from '../support/legacy-repo.ts';

const keys = {
  root: signer('ecdsa-p256'),
  targets: signer('ecdsa-p256'),
  ci: signer('ecdsa-p256'),
  snapshot: signer('ecdsa-p256'),
  timestamp: signer('ecdsa-p256'),
  release: signer('ed25519'),
};
const L = (s: InMemorySigner): string => legacyKeyId(s.public);
const C = (s: InMemorySigner): string => computeKeyId(s.public);
const ctx = { now: NOW, policy, onlineKeys: [keys.snapshot.public, keys.timestamp.public] };
const online = { now: NOW, policy, signers: { snapshot: [keys.snapshot], timestamp: [keys.timestamp] } };

function legacy(): Promise<LegacyRepository> {
  return buildLegacyRepository({
    now: NOW,
    policy,
    rootKeys: [keys.root],
    targetsKey: keys.targets,
    online: { snapshot: keys.snapshot, timestamp: keys.timestamp },
    delegations: [
      { name: 'ci', key: keys.ci, paths: ['v*'], terminating: true, tags: { v1: image(1) } },
      { name: 'release', key: keys.release, paths: ['release-*'], tags: { 'release-1': image(9) } },
    ],
  });
}

function file(repo: { files: ReadonlyMap<string, Uint8Array> }, name: string): Uint8Array {
  const bytes = repo.files.get(name);
  if (!bytes) throw new Error(`no ${name}`);
  return bytes;
}

/** What the service does with stored files: load them from the pinned root on. */
function load(files: ReadonlyMap<string, Uint8Array>, roots: number) {
  const ts = parseMetadata('timestamp', file({ files }, 'timestamp.json'), policy.roles.timestamp.maxBytes).md.signed;
  const snapName = metadataFileName('snapshot', ts.snapshotMeta.version);
  const snap = parseMetadata('snapshot', file({ files }, snapName), policy.roles.snapshot.maxBytes).md.signed;
  const targets = new Map<string, Uint8Array>();
  for (const [name, meta] of Object.entries(snap.meta)) targets.set(name.slice(0, -5), file({ files }, metadataFileName(name.slice(0, -5), meta.version)));
  return loadRepositoryState(
    {
      roots: Array.from({ length: roots }, (_, i) => file({ files }, `${i + 1}.root.json`)),
      timestamp: file({ files }, 'timestamp.json'),
      snapshot: file({ files }, snapName),
      targets,
    },
    policy,
  );
}

/** An unmodified tuf-js Updater pinned to `root`, over `files`. */
function updater(files: ReadonlyMap<string, Uint8Array>, root: Uint8Array): Updater {
  const dir = mkdtempSync(join(tmpdir(), 'tufoci-legacy-'));
  writeFileSync(join(dir, 'root.json'), root);
  return new Updater({ metadataDir: dir, metadataBaseUrl: 'https://legacy.invalid/metadata', fetcher: new MapFetcher(files) });
}

async function resolves(files: ReadonlyMap<string, Uint8Array>, root: Uint8Array, tag: string): Promise<string | undefined> {
  const u = updater(files, root);
  await u.refresh();
  return (await u.getTargetInfo(tag))?.hashes['sha256'];
}

function refusal(fn: () => unknown): EngineError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(EngineError);
    return e as EngineError;
  }
  throw new Error('accepted');
}

describe('key ids written before the specification fix', () => {
  it('differ from the specification ids for ECDSA (PEM) keys only', () => {
    expect(L(keys.ci)).not.toBe(C(keys.ci));
    expect(L(keys.release)).toBe(C(keys.release));
  });

  it('a repository that lists its keys under legacy ids loads with every role verified, and tuf-js verifies its tags', async () => {
    const repo = await legacy();
    const { state, problems } = load(repo.files, 1);
    expect(problems).toEqual([]);
    expect([...state.targets.keys()].sort()).toEqual(['ci', 'release', 'targets']);
    expect(state.root.md.signed.roles['root']?.keyIDs).toEqual([L(keys.root)]);
    expect(await resolves(repo.files, repo.root1, 'v1')).toBe(image(1).digest.slice(7));
    expect(await resolves(repo.files, repo.root1, 'release-1')).toBe(image(9).digest.slice(7));
  });

  it('legacyKeyListings names each key listed under a legacy id: where, for which roles, and its correct id', async () => {
    const repo = await legacy();
    const targets = [...repo.state.targets].map(([role, rec]) => [role, rec.md.signed] as const);
    expect(legacyKeyListings(repo.state.root.md.signed, targets)).toEqual([
      { listedIn: 'root', roles: ['root'], keyid: L(keys.root), expected: C(keys.root) },
      { listedIn: 'root', roles: ['targets'], keyid: L(keys.targets), expected: C(keys.targets) },
      { listedIn: 'root', roles: ['snapshot'], keyid: L(keys.snapshot), expected: C(keys.snapshot) },
      { listedIn: 'root', roles: ['timestamp'], keyid: L(keys.timestamp), expected: C(keys.timestamp) },
      { listedIn: 'targets', roles: ['ci'], keyid: L(keys.ci), expected: C(keys.ci) },
    ]);
  });

  it('a new upload listing a key under its legacy id is refused: BAD_KEY naming the key and its correct id', async () => {
    const repo = await legacy();
    const t2 = legacyTargets({
      version: 2,
      expires: isoExpiry(NOW + 30 * DAY),
      delegations: [{ name: 'ci', keys: [keys.ci.public], threshold: 1, paths: ['v*'], terminating: true }],
    });
    const bytes = await signMetadata(t2, [asLegacySigner(keys.targets), keys.targets]);
    const e = refusal(() => verifyTargetsUpload(repo.state, 'targets', bytes, ctx));
    expect(e.code).toBe('BAD_KEY');
    expect(e.detail).toEqual({ role: 'targets.delegations', keyid: L(keys.ci), expected: C(keys.ci) });
    expect(e.message).toBe(
      `targets.delegations: key id ${L(keys.ci)} is the id tufoci wrote before it followed the TUF specification; list this key as ${C(keys.ci)}`,
    );

    const r2 = legacyRoot({
      version: 2,
      expires: isoExpiry(NOW + 300 * DAY),
      root: { keys: [keys.root.public], threshold: 1 },
      targets: { keys: [keys.targets.public], threshold: 1 },
      snapshot: { keys: [keys.snapshot.public], threshold: 1 },
      timestamp: { keys: [keys.timestamp.public], threshold: 1 },
    });
    const rootBytes = await signMetadata(r2, [asLegacySigner(keys.root), keys.root]);
    const rootErr = refusal(() => verifyRootUpload(repo.state, rootBytes, ctx));
    expect(rootErr).toMatchObject({ code: 'BAD_KEY', detail: { role: 'root', keyid: L(keys.root), expected: C(keys.root) } });

  });

  it('a key that signs under its legacy and its correct id counts once', async () => {
    const data = new TextEncoder().encode('signed bytes');
    const sigs = [await asLegacySigner(keys.ci).sign(data), await keys.ci.sign(data)];
    const keyMap = { [L(keys.ci)]: keys.ci.public, [C(keys.ci)]: keys.ci.public };
    const twice = verifyThreshold('ci', data, sigs, { keyIDs: [L(keys.ci), C(keys.ci)], threshold: 2 }, keyMap);
    expect(twice).toMatchObject({ ok: false, signed: [L(keys.ci)], unsigned: [], ignored: [{ keyid: C(keys.ci), reason: 'duplicate-key' }] });
    expect(verifyThreshold('ci', data, sigs, { keyIDs: [L(keys.ci), C(keys.ci)], threshold: 1 }, keyMap).ok).toBe(true);
    const legacyOnly = verifyThreshold('ci', data, sigs, { keyIDs: [L(keys.ci)], threshold: 1 }, keyMap);
    expect(legacyOnly).toMatchObject({ ok: true, signed: [L(keys.ci)], ignored: [{ keyid: C(keys.ci), reason: 'not-authorized' }] });
    const correctOnly = verifyThreshold('ci', data, sigs, { keyIDs: [C(keys.ci)], threshold: 1 }, keyMap);
    expect(correctOnly).toMatchObject({ ok: true, signed: [C(keys.ci)], ignored: [{ keyid: L(keys.ci), reason: 'not-authorized' }] });
  });

  it('the online signers keep signing snapshot and timestamp for a root listing their ECDSA keys under legacy ids', async () => {
    const repo = await legacy();
    const out = await produceSnapshotAndTimestamp(repo.state, { ...online, now: NOW + 60_000 });
    expect(out.state.timestamp?.md.signed.version).toBe(2);
    expect(Object.keys(out.state.timestamp?.md.signatures ?? {})).toEqual([L(keys.timestamp)]);
    expect(Object.keys(out.state.snapshot?.md.signatures ?? {})).toEqual([L(keys.snapshot)]);
  });

  it('the repair: the role re-signed under both ids, its key re-listed, root re-listed and signed under both ids; tuf-js walks from the legacy root', async () => {
    const repo = await legacy();
    const files = new Map(repo.files);
    let state: RepoState = repo.state;
    const put = async (role: string, bytes: Uint8Array): Promise<void> => {
      state = verifyTargetsUpload(state, role, bytes, ctx).state;
      files.set(metadataFileName(role, state.targets.get(role)?.md.signed.version), bytes);
      const out = await produceSnapshotAndTimestamp(state, online);
      state = out.state;
      for (const f of out.files) files.set(f.name, f.bytes);
    };
    const expires = (days: number): string => isoExpiry(NOW + days * DAY);
    const delegations = [
      { name: 'ci', keys: [keys.ci.public], threshold: 1, paths: ['v*'], terminating: true },
      { name: 'release', keys: [keys.release.public], threshold: 1, paths: ['release-*'] },
    ];

    // Re-listing ci before ci is re-signed would leave its current version unverifiable.
    const early = verifyTargetsUpload(
      state,
      'targets',
      await signMetadata(buildTargets({ version: 2, expires: expires(90), delegations }), [keys.targets], { trustedIds: [L(keys.targets)] }),
      ctx,
    );
    expect(early.state.tombstones.get('ci')).toBe(1);

    // 1. ci signs its next version: under its legacy id (trusted now) and its correct id.
    const ci2 = await signMetadata(buildTargets({ version: 2, expires: expires(30), targets: { v1: image(1), v2: image(2) } }), [keys.ci], { trustedIds: [L(keys.ci)] });
    expect(parseMetadata('targets', ci2, policy.roles.delegated.maxBytes).signatures.map((s) => s.keyid)).toEqual([C(keys.ci), L(keys.ci)]);
    await put('ci', ci2);
    // 2. targets re-lists ci under its correct id, signed under both ids of the targets key.
    await put('targets', await signMetadata(buildTargets({ version: 2, expires: expires(90), delegations }), [keys.targets], { trustedIds: [L(keys.targets)] }));
    expect(state.tombstones.size).toBe(0);
    expect(await resolves(files, repo.root1, 'v2')).toBe(image(2).digest.slice(7));
    // 3. root 2 re-lists every key under its correct id, signed under both ids of the root key.
    const root2 = await signMetadata(
      buildRoot({
        version: 2,
        expires: expires(365),
        root: { keys: [keys.root.public], threshold: 1 },
        targets: { keys: [keys.targets.public], threshold: 1 },
        snapshot: { keys: [keys.snapshot.public], threshold: 1 },
        timestamp: { keys: [keys.timestamp.public], threshold: 1 },
      }),
      [keys.root],
      { trustedIds: [L(keys.root)] },
    );
    const rotated = verifyRootUpload(state, root2, ctx);
    expect(rotated.warnings).toEqual([]);
    files.set('2.root.json', root2);
    const out = await produceSnapshotAndTimestamp(rotated.state, online);
    state = out.state;
    for (const f of out.files) files.set(f.name, f.bytes);

    expect(legacyKeyListings(state.root.md.signed, [...state.targets].map(([r, rec]) => [r, rec.md.signed] as const))).toEqual([]);
    expect(Object.keys(state.timestamp?.md.signatures ?? {})).toEqual([C(keys.timestamp)]);
    expect(load(files, 2).problems).toEqual([]);
    // A client pinned to the legacy root walks to root 2 and verifies.
    const u = updater(files, repo.root1);
    await u.refresh();
    expect((await u.getTargetInfo('v2'))?.hashes['sha256']).toBe(image(2).digest.slice(7));
    expect((await u.getTargetInfo('release-1'))?.hashes['sha256']).toBe(image(9).digest.slice(7));
  });
});
