/**
 * The pure side of offline signing ceremonies (src/engine/ceremony.ts): a signature added to a
 * partly signed file gives the bytes signMetadata writes for the same keys in the same order
 * (legacy key ids included); a key counts once however often it appears; the manifest reader
 * refuses what this version does not write; tampering is named.
 */
import { describe, expect, it } from 'vitest';
import {
  addSignature,
  checkIntegrity,
  parseManifest,
  signedBy,
  signedDigest,
  thresholdGroup,
  verifyGroups,
  type CeremonyFile,
  type CeremonyManifest,
  type ThresholdGroup,
} from '../../src/engine/ceremony.ts';
import { buildRoot, buildTargets, isoExpiry, parseMetadata, signMetadata } from '../../src/engine/index.ts';
import { InMemorySigner, legacyKeyId, type TufKeyJson } from '../../src/keys/index.ts';

const MAX = 1 << 20;
const a = InMemorySigner.generate('ed25519');
const b = InMemorySigner.generate('ecdsa-p256');
const c = InMemorySigner.generate('ed25519');
const expires = isoExpiry(Date.now() + 86_400_000);

function keysOf(...signers: InMemorySigner[]): Record<string, TufKeyJson> {
  return Object.fromEntries(signers.map((s) => [s.keyid, s.public]));
}

function group(label: string, threshold: number, signers: InMemorySigner[]): ThresholdGroup {
  return thresholdGroup(label, { keyIDs: signers.map((s) => s.keyid), threshold }, keysOf(...signers));
}

function entryFor(bytes: Uint8Array, thresholds: ThresholdGroup[], file = '1.targets.json'): CeremonyFile {
  const p = parseMetadata('targets', bytes, MAX);
  return { file, role: 'targets', version: p.md.signed.version, signedSha256: signedDigest(p.signedBytes), thresholds };
}

describe('engine/ceremony', () => {
  it('adding signatures one run at a time writes the bytes signMetadata writes for the same keys in the same order', async () => {
    // ed25519 signatures are deterministic, so the bytes must be equal; ECDSA ones are not.
    const d = InMemorySigner.generate('ed25519');
    const targets = buildTargets({ version: 1, expires, delegations: [{ name: 'ci', keys: [b.public], threshold: 1, paths: ['v*'] }] });
    const all = await signMetadata(targets, [a, d]);
    const g = group('targets v1', 2, [a, d]);
    const none = await signMetadata(targets, []);
    const entry = entryFor(none, [g]);
    const first = await addSignature(entry, parseMetadata('targets', none, MAX), a);
    const second = await addSignature(entry, parseMetadata('targets', first, MAX), d);
    expect(Buffer.from(second).toString()).toBe(Buffer.from(all).toString());
    const parsed = parseMetadata('targets', second, MAX);
    checkIntegrity(entry, parsed);
    expect(verifyGroups(parsed, [g])[0]).toMatchObject({ ok: true, signed: [a.keyid, d.keyid] });
    expect(signedBy(parsed, d.public) && !signedBy(parsed, c.public)).toBe(true);
  });

  it('a key listed under its legacy id signs under both ids, as signMetadata with trustedIds does', async () => {
    const legacy = legacyKeyId(b.public);
    expect(legacy).not.toBe(b.keyid);
    const targets = buildTargets({ version: 2, expires });
    const reference = parseMetadata('targets', await signMetadata(targets, [b], { trustedIds: [legacy] }), MAX);
    const g = thresholdGroup('targets v2 (legacy listing)', { keyIDs: [legacy], threshold: 1 }, { [legacy]: b.public });
    const none = await signMetadata(targets, []);
    const entry = entryFor(none, [g], '2.targets.json');
    const signed = parseMetadata('targets', await addSignature(entry, parseMetadata('targets', none, MAX), b), MAX);
    expect(signed.signatures.map((s) => s.keyid)).toEqual(reference.signatures.map((s) => s.keyid)); // [correct id, legacy id]
    expect(signed.signatures[0]?.sig).toBe(signed.signatures[1]?.sig);
    expect(Buffer.compare(signed.signedBytes, reference.signedBytes)).toBe(0);
    checkIntegrity(entry, signed);
    expect(verifyGroups(signed, [g])[0]?.ok).toBe(true);
  });

  it('one key counts once: listed under two ids and signing under both is 1 of 2', async () => {
    const legacy = legacyKeyId(b.public);
    const targets = buildTargets({ version: 1, expires });
    const bytes = await signMetadata(targets, [b], { trustedIds: [legacy] }); // two entries, one key
    const parsed = parseMetadata('targets', bytes, MAX);
    expect(parsed.signatures.map((s) => s.keyid).sort()).toEqual([b.keyid, legacy].sort());
    const g = thresholdGroup('targets v1', { keyIDs: [b.keyid, legacy], threshold: 2 }, { [b.keyid]: b.public, [legacy]: b.public });
    const [r] = verifyGroups(parsed, [g]);
    expect(r).toMatchObject({ ok: false, threshold: 2 });
    expect(r?.signed).toHaveLength(1);
  });

  it('tampering is named: a changed signed part, a signature that does not verify, a signature no threshold lists', async () => {
    const targets = buildTargets({ version: 1, expires });
    const g = group('targets v1', 1, [a]);
    const bytes = await signMetadata(targets, [a]);
    const entry = entryFor(bytes, [g]);
    const json = JSON.parse(Buffer.from(bytes).toString());
    json.signed.expires = isoExpiry(Date.now() + 2 * 86_400_000);
    const changed = parseMetadata('targets', Buffer.from(JSON.stringify(json)), MAX);
    expect(() => checkIntegrity(entry, changed)).toThrow(/was changed after it was written/);
    expect(() => checkIntegrity({ ...entry, signedSha256: signedDigest(changed.signedBytes) }, changed)).toThrow(/does not verify: the file was changed after it was signed/);
    const foreign = parseMetadata('targets', await signMetadata(targets, [c]), MAX);
    expect(() => checkIntegrity(entry, foreign)).toThrow(expect.objectContaining({ code: 'TAMPERED', message: expect.stringContaining('which none of its thresholds') }));
  });

  it('parseManifest takes what writeCeremony writes and refuses the rest by field', async () => {
    const root = buildRoot({ version: 1, expires, root: { keys: [a.public], threshold: 1 }, targets: { keys: [b.public], threshold: 1 }, snapshot: { keys: [c.public], threshold: 1 }, timestamp: { keys: [c.public], threshold: 1 } });
    const rootBytes = await signMetadata(root, []);
    const p = parseMetadata('root', rootBytes, MAX);
    const m: CeremonyManifest = {
      format: 'tufoci-ceremony/1',
      command: 'init',
      summary: 'init x/y',
      repository: 'x/y',
      server: 'http://127.0.0.1:1',
      created: new Date().toISOString(),
      base: {},
      files: [
        { file: '1.root.json', role: 'root', version: 1, signedSha256: signedDigest(p.signedBytes), thresholds: [thresholdGroup('root v1', { keyIDs: [a.keyid], threshold: 1 }, keysOf(a), { file: '1.root.json', role: 'root' })] },
        { file: '1.targets.json', role: 'targets', version: 1, signedSha256: '0'.repeat(64), thresholds: [thresholdGroup('targets v1', { keyIDs: [b.keyid], threshold: 1 }, keysOf(b), { file: '1.root.json', role: 'targets' })] },
      ],
    };
    const json = (): Record<string, any> => JSON.parse(JSON.stringify(m));
    expect(parseManifest(json())).toEqual(m);
    const refusals: Array<[(j: Record<string, any>) => void, RegExp]> = [
      [(j) => (j['extra'] = 1), /extra: unknown field/],
      [(j) => (j['format'] = 'tufoci-ceremony/2'), /format must be/],
      [(j) => (j['files'][0].file = '../1.root.json'), /files\[0\]\.file must be <version>\.<root\|targets>\.json/],
      [(j) => (j['files'][1].version = 2), /role and version must be those of its file name/],
      [(j) => (j['files'][0].thresholds[0].threshold = 2), /threshold must be an integer from 1 to 1/],
      [(j) => (j['files'][0].thresholds[0].keys[a.keyid] = c.public), /is not the key id of the key given for it/],
      [(j) => j['files'].reverse(), /a init ceremony holds root,targets files, not targets,root/],
      [(j) => (j['command'] = 'publish'), /command must be one of/],
    ];
    for (const [edit, message] of refusals) {
      const j = json();
      edit(j);
      expect(() => parseManifest(j)).toThrow(message);
    }
  });
});
