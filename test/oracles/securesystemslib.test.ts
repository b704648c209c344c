/**
 * securesystemslib (Debian's python3-securesystemslib, the library python-tuf
 * builds on) as an independent oracle for what tufoci writes: key ids and
 * signatures, for every key type the default policy allows (ed25519 and
 * ECDSA P-256).
 *
 * The metadata is real tufoci output: the service (`tufoci serve`'s
 * composition, in this process, with ECDSA P-256 snapshot and CI keys and an
 * ed25519 timestamp key) and the owner's `tufoci init`, `delegate add`
 * (an ECDSA CI key, and `--online` to the service's CI key), `rotate root`;
 * a CI upload signed with the ECDSA key and service-signed tags. Root v1 and v2
 * are signed by an ECDSA P-256 and an ed25519 key (threshold 2).
 * test/oracles/check_metadata.py recomputes every listed key id and verifies
 * every signature; this file asserts its report, and that the oracle does
 * refuse tampered signatures and the key ids tufoci wrote before it followed
 * the specification (`legacyKeyId`).
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type RunningServer } from '../../src/main.ts';
import { ServiceClient } from '../../src/client/service-client.ts';
import { buildTargets, isoExpiry, signMetadata } from '../../src/engine/index.ts';
import { InMemorySigner, computeKeyId, generateKeyFiles, legacyKeyId, loadSignerFile, type FileSigner, type TufKeyJson } from '../../src/keys/index.ts';
import { delegate, init } from '../../src/cli/commands/owner.ts';
import { rotateRoot } from '../../src/cli/commands/rotate.ts';
import { publishTag } from '../../src/cli/commands/publisher.ts';
import { runCommandJson } from '../support/cli.ts';
import { image } from '../support/engine-repo.ts';
import { relistUnderLegacyIds } from './legacy-ids.ts';

const PYTHON = '/usr/bin/python3';
const ORACLE = new URL('./check_metadata.py', import.meta.url).pathname;
const GOLDEN = new URL('../../fixtures/golden/', import.meta.url).pathname;
const REPO = 'wabbit-networks/net-monitor';
const DAY = 86_400_000;

interface KeyIdEntry { file: string; listed: string; computed?: string; keytype: string; scheme: string; match: boolean; error?: string }
interface SignatureEntry { file: string; keyid: string; keytype?: string; by: string[]; verified: boolean; error?: string }
interface ThresholdEntry { file: string; by: string; threshold: number; valid: number; met: boolean }
interface Report { securesystemslib: string; keyids: KeyIdEntry[]; signatures: SignatureEntry[]; thresholds: ThresholdEntry[]; errors: unknown[] }

/** Run the oracle over metadata files (name → bytes); its JSON report. */
function oracle(files: ReadonlyMap<string, Uint8Array>): Promise<Report> {
  const input = JSON.stringify({ files: Object.fromEntries([...files].map(([name, bytes]) => [name, new TextDecoder().decode(bytes)])) });
  return new Promise((resolve, reject) => {
    if (!existsSync(PYTHON)) return reject(new Error(`${PYTHON} is missing: install python3-securesystemslib (npm test does, as root on Debian)`));
    const child = spawn(PYTHON, [ORACLE], { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0) return reject(new Error(`check_metadata.py exited ${code}: ${Buffer.concat(err).toString()}`));
      resolve(JSON.parse(Buffer.concat(out).toString()) as Report);
    });
    child.stdin.end(input);
  });
}

const dir = mkdtempSync(join(tmpdir(), 'tufoci-oracle-sslib-'));
const online = {
  snapshot: InMemorySigner.generate('ecdsa-p256'),
  timestamp: InMemorySigner.generate('ed25519'),
  ci: InMemorySigner.generate('ecdsa-p256'),
};
const keys = new Map<string, FileSigner>();
const key = (name: string): string => join(dir, `${name}.key`);
const signer = (name: string): FileSigner => keys.get(name) as FileSigner;
let server: RunningServer;
let client: ServiceClient;
let S: string[];
/** Every metadata file of REPO as the service serves it. */
const files = new Map<string, Uint8Array>();

const cli = (fn: (argv: string[]) => Promise<void>, argv: string[]): Promise<Record<string, unknown>> => runCommandJson(fn, argv, S);

async function uploadCi(version: number, targets: Record<string, ReturnType<typeof image>>): Promise<void> {
  const bytes = await signMetadata(buildTargets({ version, expires: isoExpiry(Date.now() + 30 * DAY), targets }), [signer('ci')]);
  await client.upload(REPO, `${version}.ci.json`, bytes);
}

beforeAll(async () => {
  server = await startServer({ dataDir: join(dir, 'data'), port: 0, logger: pino({ level: 'silent' }), signers: { snapshot: [online.snapshot], timestamp: [online.timestamp], ci: [online.ci] } });
  const token = readFileSync(join(dir, 'data', 'admin-token'), 'utf8').trim();
  client = new ServiceClient({ url: server.url, token });
  S = ['--server', server.url, '--token', token];
  const kinds: Array<[string, 'ed25519' | 'ecdsa-p256']> = [
    ['root-p256', 'ecdsa-p256'], ['root-ed', 'ed25519'], ['root-ed-2', 'ed25519'], ['targets', 'ecdsa-p256'], ['ci', 'ecdsa-p256'],
  ];
  for (const [name, type] of kinds) {
    await generateKeyFiles(join(dir, name), type, 'TEST KEY for tufoci tests only');
    keys.set(name, await loadSignerFile(key(name)));
  }

  await cli(init, [REPO, '--root-key', key('root-p256'), '--root-key', key('root-ed'), '--threshold', '2', '--targets-key', key('targets'), '--root-out', join(dir, '1.root.json')]);
  await cli(delegate, ['add', REPO, 'ci', '--key', join(dir, 'ci.pub'), '--paths', 'v*', '--terminating', '--targets-key', key('targets')]);
  await cli(delegate, ['add', REPO, 'release', '--online', '--paths', 'r*', '--targets-key', key('targets')]);
  await uploadCi(1, { v1: image(1) });
  await client.publishTags(REPO, 'release', { r1: image(2) });
  // Root v2: the ECDSA key kept, the ed25519 key replaced; signed by both old keys and both new ones.
  await cli(rotateRoot, [REPO, '--old-key', key('root-p256'), '--old-key', key('root-ed'), '--new-key', key('root-p256'), '--new-key', key('root-ed-2'), '--threshold', '2']);
  await uploadCi(2, { v1: image(1), v2: image(3) });

  for (const r of (await client.status(REPO)).roles) {
    if (r.role === 'timestamp') files.set('timestamp.json', await client.metadata(REPO, 'timestamp.json'));
    else for (let v = 1; v <= r.version; v++) files.set(`${v}.${r.role}.json`, await client.metadata(REPO, `${v}.${r.role}.json`));
  }
});
afterAll(async () => server?.close());

function json(bytes: Uint8Array): { signed: Record<string, unknown>; signatures: Array<{ keyid: string; sig: string }> } {
  return JSON.parse(new TextDecoder().decode(bytes));
}

function bytesOf(value: unknown): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(value));
}

describe('securesystemslib checks what tufoci writes', () => {
  it('the repository holds what the oracle must see: two roots, delegated roles, service-signed snapshot and timestamp', () => {
    const names = [...files.keys()];
    expect(names.filter((n) => !n.endsWith('.snapshot.json')).sort()).toEqual(
      ['1.ci.json', '1.release.json', '1.root.json', '1.targets.json', '2.ci.json', '2.root.json', '2.targets.json', '3.targets.json', 'timestamp.json'].sort(),
    );
    expect(names.filter((n) => n.endsWith('.snapshot.json')).length).toBeGreaterThanOrEqual(6); // one per change at least
  });

  it('every key id listed in root and in delegations is the specification\'s, for ed25519 and ECDSA P-256', async () => {
    const report = await oracle(files);
    expect(report.securesystemslib).toMatch(/^0\.\d+/);
    expect(report.errors).toEqual([]);
    for (const k of report.keyids) expect(k, JSON.stringify(k)).toMatchObject({ match: true, computed: k.listed });
    const types = (file: RegExp): string[] => [...new Set(report.keyids.filter((k) => file.test(k.file)).map((k) => `${k.keytype}/${k.scheme}`))].sort();
    // Root lists both owner key types and the service's snapshot (ECDSA) and timestamp (ed25519) keys.
    expect(types(/root/)).toEqual(['ecdsa/ecdsa-sha2-nistp256', 'ed25519/ed25519']);
    // Delegations list the owner's ECDSA CI key and the service's ECDSA CI key.
    expect(types(/targets/)).toEqual(['ecdsa/ecdsa-sha2-nistp256']);
    const delegated = report.keyids.filter((k) => k.file === '3.targets.json').map((k) => k.listed).sort();
    expect(delegated).toEqual([signer('ci').keyid, online.ci.keyid].sort());
    const root2 = report.keyids.filter((k) => k.file === '2.root.json').map((k) => k.listed).sort();
    expect(root2).toEqual([signer('root-p256').keyid, signer('root-ed-2').keyid, signer('targets').keyid, online.snapshot.keyid, online.timestamp.keyid].sort());
  });

  it('every signature verifies over the canonical form of signed, and every threshold is met', async () => {
    const report = await oracle(files);
    expect(report.errors).toEqual([]);
    expect(report.signatures.length).toBeGreaterThanOrEqual(files.size);
    for (const s of report.signatures) {
      expect(s, JSON.stringify(s)).toMatchObject({ verified: true });
      expect(s.by.length, JSON.stringify(s)).toBeGreaterThan(0);
      expect(s.error).toBeUndefined();
    }
    for (const t of report.thresholds) expect(t, JSON.stringify(t)).toMatchObject({ met: true });
    // Every file is covered by a threshold check (root v2 twice: by v1's keys and by its own).
    expect(new Set(report.thresholds.map((t) => t.file))).toEqual(new Set(files.keys()));
    expect(report.thresholds.filter((t) => t.file === '2.root.json').map((t) => [t.by, t.valid])).toEqual([['root v2', 2], ['root v1', 2]]);
    const sigTypes = (file: string): string[] => report.signatures.filter((s) => s.file === file).map((s) => s.keytype ?? '').sort();
    expect(sigTypes('1.root.json')).toEqual(['ecdsa', 'ed25519']);
    expect(sigTypes('2.root.json')).toEqual(['ecdsa', 'ed25519', 'ed25519']); // the ECDSA key kept signs once
    expect(sigTypes('1.ci.json')).toEqual(['ecdsa']);
    expect(sigTypes('1.release.json')).toEqual(['ecdsa']); // the service's CI key
    for (const n of [...files.keys()].filter((f) => f.endsWith('.snapshot.json'))) expect(sigTypes(n)).toEqual(['ecdsa']);
    expect(sigTypes('timestamp.json')).toEqual(['ed25519']);
    expect(sigTypes('3.targets.json')).toEqual(['ecdsa']);
  });

  it('the hash bins tufoci publish signs with the key it derives for the repository: their key ids and signatures check out', async () => {
    const repo = 'wabbit-networks/binned';
    await generateKeyFiles(join(dir, 'ci-ed'), 'ed25519', 'TEST KEY for tufoci tests only');
    const ciEd = await loadSignerFile(key('ci-ed'));
    await cli(init, [repo, '--root-key', key('root-ed'), '--targets-key', key('targets'), '--root-out', join(dir, 'binned.root.json')]);
    await cli(delegate, ['add', repo, 'ci', '--key', join(dir, 'ci-ed.pub'), '--paths', 'v*', '--terminating', '--targets-key', key('targets')]);
    for (const [i, tag] of ['v1', 'v2', 'v3'].entries()) await publishTag(client, repo, 'ci', tag, image(10 + i), ciEd, 30 * DAY);
    const binned = new Map<string, Uint8Array>();
    for (const r of (await client.status(repo)).roles) {
      if (r.role === 'timestamp') binned.set('timestamp.json', await client.metadata(repo, 'timestamp.json'));
      else for (let v = 1; v <= r.version; v++) binned.set(`${v}.${r.role}.json`, await client.metadata(repo, `${v}.${r.role}.json`));
    }
    const bins = [...binned.keys()].filter((f) => /^\d+\.ci-[0-9a-f]+\.json$/.test(f));
    expect(bins.length).toBeGreaterThan(0);
    const report = await oracle(binned);
    expect(report.errors).toEqual([]);
    for (const k of report.keyids) expect(k, JSON.stringify(k)).toMatchObject({ match: true, computed: k.listed });
    for (const sig of report.signatures) expect(sig, JSON.stringify(sig)).toMatchObject({ verified: true });
    for (const t of report.thresholds) expect(t, JSON.stringify(t)).toMatchObject({ met: true });
    const derived = ciEd.derive(`bins\0${repo}`) as InMemorySigner;
    for (const f of bins) expect(report.signatures.filter((x) => x.file === f).map((x) => x.keyid), f).toEqual([derived.keyid]);
    expect(new Set(report.thresholds.map((t) => t.file))).toEqual(new Set(binned.keys()));
  });

  it('the oracle refuses a tampered signature (ECDSA and ed25519), tampered signed content and a duplicate key', async () => {
    const flip = (hex: string, at: number): string => hex.slice(0, at) + (hex[at] === '0' ? '1' : '0') + hex.slice(at + 1);
    const tampered = new Map(files);
    const ci = json(files.get('1.ci.json') as Uint8Array);
    const sig = ci.signatures[0] as { sig: string };
    sig.sig = flip(sig.sig, sig.sig.length - 4); // inside s: still DER, no longer the signature
    tampered.set('1.ci.json', bytesOf(ci));
    const ts = json(files.get('timestamp.json') as Uint8Array);
    (ts.signatures[0] as { sig: string }).sig = flip((ts.signatures[0] as { sig: string }).sig, 10);
    tampered.set('timestamp.json', bytesOf(ts));
    const root1 = json(files.get('1.root.json') as Uint8Array);
    root1.signed['expires'] = isoExpiry(Date.now() + 3650 * DAY);
    tampered.set('1.root.json', bytesOf(root1));
    const ci2 = new TextDecoder().decode(files.get('2.ci.json') as Uint8Array);
    expect(ci2).toContain('"_type":"targets"');
    tampered.set('2.ci.json', new TextEncoder().encode(ci2.replace('"_type":"targets"', '"_type":"targets","_type":"targets"')));

    const report = await oracle(tampered);
    expect(report.errors).toEqual([{ file: '2.ci.json', error: expect.stringContaining('duplicate object key') }]);
    const failed = report.signatures.filter((s) => !s.verified).map((s) => `${s.file} ${s.keytype}`).sort();
    expect(failed).toEqual(['1.ci.json ecdsa', '1.root.json ecdsa', '1.root.json ed25519', 'timestamp.json ed25519']);
    const unmet = report.thresholds.filter((t) => !t.met).map((t) => `${t.file} by ${t.by}`).sort();
    expect(unmet).toEqual(['1.ci.json by targets v3', '1.root.json by root v1', 'timestamp.json by root v2']);
  });

  it('the key ids tufoci wrote before it followed the specification disagree with the oracle for ECDSA keys', async () => {
    // Root v1 as tufoci wrote it with RFC 8785 key ids: relisted under legacyKeyId and signed again.
    const legacyRoot = await relistUnderLegacyIds(files.get('1.root.json') as Uint8Array, [signer('root-p256'), signer('root-ed')]);
    const report = await oracle(new Map([['1.root.json', legacyRoot]]));
    const p256 = signer('root-p256').public;
    const ed = signer('root-ed').public;
    const entry = (k: TufKeyJson): KeyIdEntry => report.keyids.find((e) => e.listed === legacyKeyId(k)) as KeyIdEntry;
    // ECDSA: the legacy id is not the specification's; the oracle computes tufoci's current id.
    expect(legacyKeyId(p256)).not.toBe(computeKeyId(p256));
    expect(entry(p256)).toMatchObject({ keytype: 'ecdsa', match: false, computed: computeKeyId(p256) });
    expect(entry(online.snapshot.public)).toMatchObject({ match: false, computed: computeKeyId(online.snapshot.public) });
    // ed25519 (hex, no characters the two canonical forms write differently): both ids agree.
    expect(legacyKeyId(ed)).toBe(computeKeyId(ed));
    expect(entry(ed)).toMatchObject({ keytype: 'ed25519', match: true });
    // The signatures themselves verify with the keys as listed: only the ids are wrong.
    expect(report.signatures.map((s) => s.verified)).toEqual([true, true]);
    expect(report.keyids.filter((k) => !k.match).map((k) => k.keytype)).toEqual(['ecdsa', 'ecdsa', 'ecdsa']);
  });

  it('the golden metadata under fixtures/golden passes the oracle', async () => {
    const golden = new Map(readdirSync(GOLDEN).filter((f) => f.endsWith('.json')).map((f) => [f, new Uint8Array(readFileSync(join(GOLDEN, f)))]));
    expect(golden.size).toBeGreaterThanOrEqual(5);
    const report = await oracle(golden);
    expect(report.errors).toEqual([]);
    expect(report.keyids.length).toBeGreaterThan(0);
    for (const k of report.keyids) expect(k, JSON.stringify(k)).toMatchObject({ match: true });
    for (const s of report.signatures) expect(s, JSON.stringify(s)).toMatchObject({ verified: true });
    for (const t of report.thresholds) expect(t, JSON.stringify(t)).toMatchObject({ met: true });
  });
});
