/**
 * Offline signing ceremonies end to end, through the real `tufoci` command (child processes, exit
 * codes) against the service on a real docker-registry with roles/production.json (two-of-n root
 * and targets): `init --out` with no key (and with one), separate `sign-metadata` runs per
 * keyholder, `upload` refused until every threshold is met; then `delegate add --out` and a root
 * rotation through a directory, old and new keys signing; CI publishes and the unmodified tuf-js
 * Updater (with the client core, test/support/differential.ts) verifies from the pinned 1.root.json;
 * a keyholder signs with a key in an HSM (SoftHSM2). Then bad input: a tampered file or manifest, a key that signs for nothing, a key that signed
 * already, a directory that is no ceremony, a stale one, another service.
 */
import { copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type RunningServer } from '../../src/main.ts';
import { ServiceClient } from '../../src/client/service-client.ts';
import { RegistryStore } from '../../src/storage/index.ts';
import { computeKeyId, generateKeyFiles, type TufKeyJson } from '../../src/keys/index.ts';
import { verifyBothClients } from '../support/differential.ts';
import { startRegistry, type RegistryServer } from '../support/registry-server.ts';
import { pushImage, type PushedImage } from '../support/image.ts';
import { clientRefusal, runTufoci, type CliResult } from '../support/cli.ts';
import { createSoftHsm, type SoftHsm } from '../support/softhsm.ts';

const dir = mkdtempSync(join(tmpdir(), 'tufoci-ceremony-'));
const REPO = 'wabbit-networks/net-monitor';
const PRODUCTION = new URL('../../roles/production.json', import.meta.url).pathname;
let registry: RegistryServer;
let server: RunningServer;
let client: ServiceClient;
let store: RegistryStore;
let env: NodeJS.ProcessEnv;
let v1: PushedImage;
let hsm: SoftHsm;
const HSM_PIN = '975310';
const ids = new Map<string, string>();
const runs: CliResult[] = [];

const tufoci = async (...args: string[]): Promise<CliResult> => {
  const r = await runTufoci(args, { cwd: dir, env });
  runs.push(r);
  return r;
};
const id = (name: string): string => ids.get(name) as string;
const at = (...parts: string[]): string => join(dir, ...parts);
const manifestOf = (d: string): Record<string, any> => JSON.parse(readFileSync(at(d, 'ceremony.json'), 'utf8'));
const signersOf = (d: string, file: string): string[] => (JSON.parse(readFileSync(at(d, file), 'utf8')) as { signatures: Array<{ keyid: string }> }).signatures.map((s) => s.keyid).sort();
const sorted = (...names: string[]): string[] => names.map(id).sort();
const roleOf = async (role: string) => (await client.status(REPO)).roles.find((r) => r.role === role);

beforeAll(async () => {
  registry = await startRegistry();
  server = await startServer({ dataDir: at('data'), port: 0, registry: registry.url, policyFile: PRODUCTION, logger: pino({ level: 'silent' }) });
  const token = readFileSync(at('data', 'admin-token'), 'utf8').trim();
  client = new ServiceClient({ url: server.url, token });
  env = { ...process.env, TUFOCI_SERVER: server.url, TUFOCI_TOKEN: token, TUFOCI_HOME: at('home') };
  store = new RegistryStore({ url: registry.url });
  v1 = await pushImage(store, REPO, 'v1', 'ceremony build');
  const kinds: Array<[string, 'ed25519' | 'ecdsa-p256']> = [
    ['root-alice', 'ed25519'], ['root-bob', 'ecdsa-p256'], ['root-carol', 'ed25519'], ['root-dave', 'ecdsa-p256'],
    ['targets-1', 'ed25519'], ['targets-2', 'ecdsa-p256'], ['ci', 'ecdsa-p256'],
  ];
  for (const [name, type] of kinds) ids.set(name, (await generateKeyFiles(at(name), type)).keyid);
  // One keyholder keeps a root key in an HSM (SoftHSM2 in a temporary directory).
  hsm = createSoftHsm();
  hsm.initToken('keyholder', HSM_PIN);
  await hsm.generate('keyholder', HSM_PIN, [{ label: 'root-hsm', id: '21', type: 'ecdsa-p256' }]);
  env = { ...env, ...hsm.env };
});
afterAll(async () => {
  await server?.close();
  await registry?.stop();
  hsm?.remove();
});

describe('offline signing ceremony (roles/production.json: 2-of-3 root, 2-of-2 targets)', () => {
  it('init --out with no private key; two sign-metadata runs for root, two for targets; upload refused until both thresholds are met', async () => {
    const init = await tufoci('init', REPO, '--root-pub', 'root-alice.pub', '--root-pub', 'root-bob.pub', '--root-pub', 'root-carol.pub', '--threshold', '2',
      '--targets-pub', 'targets-1.pub', '--targets-pub', 'targets-2.pub', '--targets-threshold', '2', '--out', 'c-init');
    expect(init.code, init.stderr).toBe(0);
    expect(init.stdout).toContain('written to c-init (not uploaded)');
    expect(readdirSync(at('c-init')).sort()).toEqual(['1.root.json', '1.targets.json', 'ceremony.json']);
    const m = manifestOf('c-init');
    expect(m).toMatchObject({ format: 'tufoci-ceremony/1', command: 'init', repository: REPO, server: server.url, base: {} });
    expect(m['files'].map((f: { file: string }) => f.file)).toEqual(['1.root.json', '1.targets.json']);
    expect(m['files'][0].thresholds[0]).toMatchObject({ label: 'root v1 (its own keys)', threshold: 2, definedBy: { file: '1.root.json', role: 'root' } });
    expect([...m['files'][0].thresholds[0].keyids].sort()).toEqual(sorted('root-alice', 'root-bob', 'root-carol'));
    expect(m['files'][1].thresholds[0]).toMatchObject({ label: 'targets v1 (the targets keys of root v1)', threshold: 2 });
    expect([...m['files'][1].thresholds[0].keyids].sort()).toEqual(sorted('targets-1', 'targets-2'));
    expect(signersOf('c-init', '1.root.json')).toEqual([]);
    for (const g of m['files'].flatMap((f: { thresholds: unknown[] }) => f.thresholds) as Array<{ keys: Record<string, TufKeyJson> }>) {
      for (const [k, key] of Object.entries(g.keys)) expect(computeKeyId(key)).toBe(k); // public keys under their TUF key ids
    }
    expect(await clientRefusal(client.status(REPO))).toMatchObject({ code: 'REPO_NOT_FOUND' }); // nothing was uploaded

    const none = await tufoci('upload', 'c-init');
    expect(none.code).toBe(1);
    expect(none.stderr).toContain('not uploading c-init: 1.root.json: root v1 (its own keys) has 0 of the 2 signature(s) it needs: 2 more');
    expect(none.stderr).toContain('1.targets.json: targets v1 (the targets keys of root v1) has 0 of the 2 signature(s) it needs: 2 more');
    expect(none.stderr).toContain('(THRESHOLD_NOT_MET)');

    const alice = await tufoci('sign-metadata', 'c-init', '--key', 'root-alice.key');
    expect(alice.code, alice.stderr).toBe(0);
    expect(alice.stdout).toContain(`signed 1.root.json with key ${id('root-alice').slice(0, 12)} (root-alice.key): root v1`);
    expect(alice.stdout).toContain(`for ${REPO}`);
    expect(alice.stdout).toContain(`signed part sha256 ${m['files'][0].signedSha256}`); // the digest --out printed
    expect(init.stdout).toContain(m['files'][0].signedSha256);
    expect(signersOf('c-init', '1.root.json')).toEqual([id('root-alice')]);
    expect(signersOf('c-init', '1.targets.json')).toEqual([]);
    const oneRoot = await tufoci('upload', 'c-init');
    expect(oneRoot.code).toBe(1);
    expect(oneRoot.stderr).toContain('1.root.json: root v1 (its own keys) has 1 of the 2 signature(s) it needs: 1 more');

    expect((await tufoci('sign-metadata', 'c-init', '--key', 'root-bob.key')).code).toBe(0);
    expect(signersOf('c-init', '1.root.json')).toEqual(sorted('root-alice', 'root-bob'));
    const rootMet = await tufoci('upload', 'c-init');
    expect(rootMet.code).toBe(1);
    expect(rootMet.stderr).not.toContain('1.root.json:');
    expect(rootMet.stderr).toContain('1.targets.json: targets v1 (the targets keys of root v1) has 0 of the 2 signature(s) it needs: 2 more');

    const t1 = await tufoci('sign-metadata', 'c-init', '--key', 'targets-1.key', '--json');
    expect(t1.code, t1.stderr).toBe(0);
    expect(JSON.parse(t1.stdout)).toMatchObject({ keyid: id('targets-1'), signed: ['1.targets.json'], alreadySigned: [] });
    const oneTargets = await tufoci('upload', 'c-init');
    expect(oneTargets.code).toBe(1);
    expect(oneTargets.stderr).toContain('1.targets.json: targets v1 (the targets keys of root v1) has 1 of the 2 signature(s) it needs: 1 more');
    expect(await clientRefusal(client.status(REPO))).toMatchObject({ code: 'REPO_NOT_FOUND' }); // refusals send nothing

    const t2 = await tufoci('sign-metadata', 'c-init', '--key', 'targets-2.key');
    expect(t2.stdout).toContain('every threshold is met: tufoci upload c-init');
    const up = await tufoci('upload', 'c-init', '--json');
    expect(up.code, up.stderr).toBe(0);
    expect(JSON.parse(up.stdout)).toMatchObject({ repository: REPO, command: 'init', uploaded: [{ role: 'root', version: 1, unchanged: false }], skipped: [] });
    expect(await roleOf('root')).toMatchObject({ version: 1, threshold: 2 });
    expect((await roleOf('root'))?.keyids.sort()).toEqual(sorted('root-alice', 'root-bob', 'root-carol'));
    expect(await roleOf('targets')).toMatchObject({ version: 1, threshold: 2 });
    // What was uploaded is byte for byte what the ceremony signed.
    expect(new TextDecoder().decode(await client.metadata(REPO, '1.root.json'))).toBe(readFileSync(at('c-init', '1.root.json'), 'utf8'));

    const again = await tufoci('upload', 'c-init');
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toContain('the service holds every file already; nothing sent');
  });

  it('delegate add --out: one targets key signs at once, the second with sign-metadata; CI publishes; tuf-js verifies from the pinned root', async () => {
    const add = ['delegate', 'add', REPO, 'ci', '--key', 'ci.pub', '--paths', 'v*', '--terminating', '--expected-tags', '0'];
    const prep = await tufoci(...add, '--targets-key', 'targets-1.key', '--trust', 'c-init/1.root.json', '--out', 'c-ci');
    expect(prep.code, prep.stderr).toBe(0);
    expect(manifestOf('c-ci')).toMatchObject({ command: 'delegate add', base: { root: 1, targets: 1 }, files: [{ file: '2.targets.json', role: 'targets', version: 2 }] });
    expect(signersOf('c-ci', '2.targets.json')).toEqual([id('targets-1')]);
    // A second directory built on the same targets v1 (no key at all, other paths): stale once c-ci is uploaded.
    expect((await tufoci(...add.map((a) => (a === 'v*' ? 'w*' : a)), '--out', 'c-ci-stale')).code).toBe(0);
    expect(signersOf('c-ci-stale', '2.targets.json')).toEqual([]);

    const short = await tufoci('upload', 'c-ci');
    expect(short.code).toBe(1);
    expect(short.stderr).toContain('2.targets.json: targets v2 (the targets keys of root v1) has 1 of the 2 signature(s) it needs: 1 more');
    expect((await roleOf('targets'))?.version).toBe(1);

    const t2 = await tufoci('sign-metadata', 'c-ci', '--key', 'targets-2.key');
    expect(t2.code, t2.stderr).toBe(0);
    expect(t2.stdout).toContain(`delegates ci: 1 of ${id('ci').slice(0, 12)}, paths v*, terminating`);
    const up = await tufoci('upload', 'c-ci');
    expect(up.code, up.stderr).toBe(0);
    expect((await roleOf('targets'))?.version).toBe(2);

    for (const k of ['targets-1.key', 'targets-2.key']) expect((await tufoci('sign-metadata', 'c-ci-stale', '--key', k)).code).toBe(0);
    const stale = await tufoci('upload', 'c-ci-stale');
    expect(stale.code).toBe(1);
    expect(stale.stderr).toContain(`the service already holds another targets v2 of ${REPO}; c-ci-stale was prepared on what the service held then: prepare the ceremony again (STALE)`);

    const pub = await tufoci('publish', `${registry.url.replace('http://', '')}/${REPO}:v1`, '--role', 'ci', '--key', 'ci.key');
    expect(pub.code, pub.stderr).toBe(0);
    const pinned = readFileSync(at('c-init', '1.root.json'));
    // Through the service and straight from the registry the service stores its metadata in.
    for (const serviceUrl of [server.url, undefined]) {
      const r = await verifyBothClients({ store, repository: REPO, tag: 'v1', trustedRoot: pinned, ...(serviceUrl ? { serviceUrl } : {}) });
      expect(r).toMatchObject({ digest: v1.digest, tuf: { root: 1 } });
    }
  });

  it('rotate root --out: root v2 needs 2 of root v1\'s keys and 2 of its own; a forged manifest changes nothing; clients pinned to v1 follow', async () => {
    const prep = await tufoci('rotate', 'root', REPO, '--new-pub', 'root-alice.pub', '--new-pub', 'root-bob.pub', '--new-pub', 'root-dave.pub', '--threshold', '2',
      '--trust', 'c-init/1.root.json', '--out', 'c-rot');
    expect(prep.code, prep.stderr).toBe(0);
    const m = manifestOf('c-rot');
    expect(m).toMatchObject({ command: 'rotate root', base: { root: 1 }, files: [{ file: '2.root.json', role: 'root', version: 2 }] });
    expect(m['files'][0].thresholds.map((g: { label: string; threshold: number }) => [g.label, g.threshold])).toEqual([['root v2 (the keys of root v1)', 2], ['root v2 (its own keys)', 2]]);

    expect((await tufoci('sign-metadata', 'c-rot', '--key', 'root-carol.key')).code).toBe(0); // old keys only
    const oldOnly = await tufoci('upload', 'c-rot');
    expect(oldOnly.code).toBe(1);
    expect(oldOnly.stderr).toContain('2.root.json: root v2 (the keys of root v1) has 1 of the 2 signature(s) it needs: 1 more');
    expect(oldOnly.stderr).toContain('2.root.json: root v2 (its own keys) has 0 of the 2 signature(s) it needs: 2 more');

    expect((await tufoci('sign-metadata', 'c-rot', '--key', 'root-dave.key')).code).toBe(0); // new keys only
    const half = await tufoci('upload', 'c-rot');
    expect(half.code).toBe(1);
    expect(half.stderr).toContain('root v2 (the keys of root v1) has 1 of the 2 signature(s) it needs: 1 more');
    expect(half.stderr).toContain('root v2 (its own keys) has 1 of the 2 signature(s) it needs: 1 more');

    // The manifest is not what upload trusts: claiming root v1 needs one key changes nothing.
    cpSync(at('c-rot'), at('c-rot-forged'), { recursive: true });
    const forged = manifestOf('c-rot-forged');
    forged['files'][0].thresholds[0].threshold = 1;
    writeFileSync(at('c-rot-forged', 'ceremony.json'), JSON.stringify(forged));
    const forgedUp = await tufoci('upload', 'c-rot-forged');
    expect(forgedUp.code).toBe(1);
    expect(forgedUp.stderr).toContain('root v2 (the keys of root v1) has 1 of the 2 signature(s) it needs: 1 more');
    expect((await roleOf('root'))?.version).toBe(1);

    const alice = await tufoci('sign-metadata', 'c-rot', '--key', 'root-alice.key'); // a key of both roots: counts for both
    expect(alice.code, alice.stderr).toBe(0);
    expect(alice.stdout).toContain('every threshold is met');
    expect(signersOf('c-rot', '2.root.json')).toEqual(sorted('root-alice', 'root-carol', 'root-dave'));
    const up = await tufoci('upload', 'c-rot', '--root-out', 'rotated.2.root.json');
    expect(up.code, up.stderr).toBe(0);
    expect(readFileSync(at('rotated.2.root.json'), 'utf8')).toBe(readFileSync(at('c-rot', '2.root.json'), 'utf8'));
    const root = await roleOf('root');
    expect(root).toMatchObject({ version: 2, threshold: 2 });
    expect(root?.keyids.sort()).toEqual(sorted('root-alice', 'root-bob', 'root-dave'));

    const pinned = readFileSync(at('c-init', '1.root.json'));
    const state = mkdtempSync(join(tmpdir(), 'tufoci-ceremony-state-'));
    for (const stateDir of [state, undefined]) {
      const r = await verifyBothClients({ store, repository: REPO, tag: 'v1', trustedRoot: pinned, serviceUrl: server.url, ...(stateDir ? { stateDir } : {}) });
      expect(r).toMatchObject({ digest: v1.digest, tuf: { root: 2 } });
    }
    // Carol, no longer a root key, signs nothing in the next rotation.
    expect((await tufoci('rotate', 'root', REPO, '--new-pub', 'root-alice.pub', '--new-pub', 'root-bob.pub', '--threshold', '2', '--out', 'c-rot3')).code).toBe(0);
    const carol = await tufoci('sign-metadata', 'c-rot3', '--key', 'root-carol.key');
    expect(carol.code).toBe(1);
    expect(carol.stderr).toMatch(/signs for none of the files in c-rot3 .*\(NOT_AUTHORIZED\)/);
  });

  it('a keyholder whose root key is in an HSM: named by its pkcs11: URI, signs with it; the PIN is never printed or written', async () => {
    const HSM_REPO = 'wabbit-networks/hsm-ceremony';
    const uri = 'pkcs11:token=keyholder;object=root-hsm';
    const prep = await tufoci('init', HSM_REPO, '--root-pub', uri, '--root-pub', 'root-bob.pub', '--threshold', '2',
      '--targets-pub', 'targets-1.pub', '--targets-pub', 'targets-2.pub', '--targets-threshold', '2', '--out', 'c-hsm', '--json');
    expect(prep.code, prep.stderr).toBe(0);
    const hsmId = (JSON.parse(prep.stdout).files[0].thresholds[0].unsigned as string[]).find((k) => k !== id('root-bob')) as string;
    const signed = await tufoci('sign-metadata', 'c-hsm', '--key', `${uri}?pin-value=${HSM_PIN}`);
    expect(signed.code, signed.stderr).toBe(0);
    expect(signed.stdout).toContain(`signed 1.root.json with key ${hsmId.slice(0, 12)} (${uri}?pin-value=***)`);
    expect(signersOf('c-hsm', '1.root.json')).toEqual([hsmId]);
    for (const k of ['root-bob.key', 'targets-1.key', 'targets-2.key']) expect((await tufoci('sign-metadata', 'c-hsm', '--key', k)).code).toBe(0);
    const up = await tufoci('upload', 'c-hsm');
    expect(up.code, up.stderr).toBe(0);
    expect((await client.status(HSM_REPO)).roles.find((r) => r.role === 'root')?.keyids.sort()).toEqual([hsmId, id('root-bob')].sort());
    for (const r of runs) expect(r.stdout + r.stderr).not.toContain(HSM_PIN);
    for (const f of readdirSync(at('c-hsm'))) expect(readFileSync(at('c-hsm', f), 'utf8')).not.toContain(HSM_PIN);
  });
});

describe('ceremony bad input: clear refusals, non-zero exits, nothing changed', () => {
  const OTHER = 'wabbit-networks/other';
  const init1 = ['init', OTHER, '--root-key', 'root-alice.key', '--root-pub', 'root-bob.pub', '--threshold', '2', '--targets-pub', 'targets-1.pub', '--targets-pub', 'targets-2.pub', '--targets-threshold', '2'];

  it('init --out with one key signs with it; a key that signs for nothing and a key that signed already are refused, by key not by file', async () => {
    const prep = await tufoci(...init1, '--out', 'c-bad');
    expect(prep.code, prep.stderr).toBe(0);
    expect(signersOf('c-bad', '1.root.json')).toEqual([id('root-alice')]);
    expect(signersOf('c-bad', '1.targets.json')).toEqual([]);
    const before = readdirSync(at('c-bad')).map((f) => readFileSync(at('c-bad', f), 'utf8'));

    const stranger = await tufoci('sign-metadata', 'c-bad', '--key', 'ci.key');
    expect(stranger.code).toBe(1);
    expect(stranger.stderr).toContain(`key ${id('ci').slice(0, 12)} (ci.key) signs for none of the files in c-bad`);
    expect(stranger.stderr).toContain('(NOT_AUTHORIZED)');

    const twice = await tufoci('sign-metadata', 'c-bad', '--key', 'root-alice.key');
    expect(twice.code).toBe(1);
    expect(twice.stderr).toContain('already signed 1.root.json in c-bad: each key signs once; nothing signed (ALREADY_SIGNED)');
    copyFileSync(at('root-alice.key'), at('root-alice-copy.key')); // the same key under another name
    const copy = await tufoci('sign-metadata', 'c-bad', '--key', 'root-alice-copy.key');
    expect(copy.code).toBe(1);
    expect(copy.stderr).toContain('(ALREADY_SIGNED)');
    expect(readdirSync(at('c-bad')).map((f) => readFileSync(at('c-bad', f), 'utf8'))).toEqual(before);

    // A duplicate signature entry pasted in by hand does not count twice (and is not a second key).
    const dup = at('c-dup');
    cpSync(at('c-bad'), dup, { recursive: true });
    const file = JSON.parse(readFileSync(join(dup, '1.root.json'), 'utf8'));
    file.signatures.push({ ...file.signatures[0] });
    writeFileSync(join(dup, '1.root.json'), JSON.stringify(file));
    const dupSign = await tufoci('sign-metadata', 'c-dup', '--key', 'root-bob.key');
    expect(dupSign.code).toBe(1);
    expect(dupSign.stderr).toMatch(/c-dup\/1\.root\.json is no longer well-formed root metadata: .*two signatures carry key id/);
  });

  it('a file changed after it was written, or after it was signed, is refused by sign-metadata and upload', async () => {
    expect((await tufoci('sign-metadata', 'c-bad', '--key', 'targets-1.key')).code).toBe(0);
    // Changed content (a later expiry): the signed part no longer hashes to what --out wrote.
    cpSync(at('c-bad'), at('c-tampered'), { recursive: true });
    const t = JSON.parse(readFileSync(at('c-tampered', '1.targets.json'), 'utf8'));
    t.signed.expires = '2099-01-01T00:00:00Z';
    writeFileSync(at('c-tampered', '1.targets.json'), JSON.stringify(t));
    for (const args of [['sign-metadata', 'c-tampered', '--key', 'targets-2.key'], ['upload', 'c-tampered']]) {
      const r = await tufoci(...args);
      expect(r.code, args.join(' ')).toBe(1);
      expect(r.stderr).toMatch(/1\.targets\.json was changed after it was written: its signed part has sha256 [0-9a-f]{16}…, ceremony\.json recorded [0-9a-f]{16}…; prepare the ceremony again \(TAMPERED\)/);
    }
    // The same change with the manifest's digest changed to match: the signature on it gives it away.
    const m = manifestOf('c-tampered');
    const { signedDigest } = await import('../../src/engine/ceremony.ts');
    const { canonicalSignedBytes } = await import('../../src/engine/canonical.ts');
    m['files'][1].signedSha256 = signedDigest(canonicalSignedBytes(t.signed));
    writeFileSync(at('c-tampered', 'ceremony.json'), JSON.stringify(m));
    const resigned = await tufoci('sign-metadata', 'c-tampered', '--key', 'targets-2.key');
    expect(resigned.code).toBe(1);
    expect(resigned.stderr).toContain(`1.targets.json: the signature by key ${id('targets-1').slice(0, 12)} does not verify: the file was changed after it was signed (TAMPERED)`);
    // A manifest that lowers a threshold root v1 itself states.
    cpSync(at('c-bad'), at('c-lowered'), { recursive: true });
    const lowered = manifestOf('c-lowered');
    lowered['files'][0].thresholds[0].threshold = 1;
    writeFileSync(at('c-lowered', 'ceremony.json'), JSON.stringify(lowered));
    const low = await tufoci('upload', 'c-lowered');
    expect(low.code).toBe(1);
    expect(low.stderr).toContain('ceremony.json says "root v1 (its own keys)" is 1 of');
    expect(low.stderr).toContain('but 1.root.json lists 2 of');
    expect(await clientRefusal(client.status(OTHER))).toMatchObject({ code: 'REPO_NOT_FOUND' });
  });

  it('wrong directories: none, not a ceremony, not empty for --out, a broken manifest, another service', async () => {
    const missing = await tufoci('upload', 'no-such-dir');
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('tufoci: no-such-dir: no such directory');
    mkdirSync(at('plain'));
    writeFileSync(at('plain', '1.root.json'), readFileSync(at('c-init', '1.root.json')));
    for (const cmd of [['upload', 'plain'], ['sign-metadata', 'plain', '--key', 'root-alice.key']]) {
      const r = await tufoci(...cmd);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain('plain is not a ceremony directory: it has no ceremony.json');
    }
    const notEmpty = await tufoci(...init1, '--out', 'c-bad');
    expect(notEmpty.code).toBe(2);
    expect(notEmpty.stderr).toContain('--out c-bad is not empty (');
    expect(manifestOf('c-bad')['command']).toBe('init'); // untouched

    cpSync(at('c-bad'), at('c-broken'), { recursive: true });
    const broken = manifestOf('c-broken');
    broken['files'][0].file = '../1.root.json';
    writeFileSync(at('c-broken', 'ceremony.json'), JSON.stringify(broken));
    const b = await tufoci('sign-metadata', 'c-broken', '--key', 'root-bob.key');
    expect(b.code).toBe(1);
    expect(b.stderr).toContain('ceremony.json: files[0].file must be <version>.<root|targets>.json (BAD_MANIFEST)');

    const elsewhere = await tufoci('upload', 'c-bad', '--server', 'http://127.0.0.1:1');
    expect(elsewhere.code).toBe(2);
    expect(elsewhere.stderr).toContain(`c-bad was prepared for the service at ${server.url}, not http://127.0.0.1:1`);
    const usage = await tufoci('sign-metadata', 'c-bad');
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain('--key is required');
    expect((await tufoci('upload', '--help')).stdout).toContain('usage: tufoci upload <DIR>');
  });

  it('flags that do not go together, and a private key that is not one of the role\'s keys, are usage errors', async () => {
    const cases: Array<[string[], string]> = [
      [['init', OTHER, '--root-pub', 'root-alice.pub', '--targets-key', 'targets-1.key'], '--root-pub and --targets-pub name keys that sign later: they go with --out DIR'],
      [['init', OTHER, '--root-pub', 'root-alice.pub', '--targets-pub', 'targets-1.pub', '--threshold', '2', '--out', 'c-none'], '--threshold 2 needs at least 2 --root-key or --root-pub'],
      [['rotate', 'root', REPO, '--new-pub', 'root-alice.pub', '--targets-key-new', 'targets-1.key', '--out', 'c-none'], '--targets-key-new does not go with --out'],
      [['delegate', 'add', REPO, 'x', '--key', 'ci.pub', '--targets-key', 'targets-1.key', '--trust', 'c-init/1.root.json'], '--trust goes with --out'],
      [['delegate', 'add', REPO, 'x', '--key', 'ci.pub', '--targets-key', 'root-alice.key', '--out', 'c-none'], `key ${id('root-alice').slice(0, 12)} is not among the keys that sign 3.targets.json`],
    ];
    for (const [args, message] of cases) {
      const r = await tufoci(...args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr).toContain(message);
    }
    expect(existsSync(at('c-none'))).toBe(false);
  });

  it('the service has the last word: a 1-of-1 ceremony meets its own thresholds, and production.json refuses it', async () => {
    const lax = await tufoci('init', 'wabbit-networks/lax', '--root-key', 'root-alice.key', '--targets-key', 'targets-1.key', '--out', 'c-lax');
    expect(lax.code, lax.stderr).toBe(0);
    expect(lax.stdout).toContain('every threshold is met');
    const up = await tufoci('upload', 'c-lax');
    expect(up.code).toBe(1);
    expect(up.stderr).toMatch(/root threshold 1 is below the policy minimum 2 \(POLICY_VIOLATION\)/);
    expect(await clientRefusal(client.status('wabbit-networks/lax'))).toMatchObject({ code: 'REPO_NOT_FOUND' });
  });

  it('resign --role targets --out: a 2-of-2 targets role is renewed by two keyholders apart; other roles are re-signed by their own key', async () => {
    const before = await roleOf('targets');
    const prep = await tufoci('resign', REPO, '--role', 'targets', '--key', 'targets-2.key', '--expires', '60d', '--out', 'c-resign');
    expect(prep.code, prep.stderr).toBe(0);
    const next = (before?.version ?? 0) + 1;
    expect(manifestOf('c-resign')).toMatchObject({ command: 'resign', files: [{ file: `${next}.targets.json`, role: 'targets', version: next }] });
    expect(signersOf('c-resign', `${next}.targets.json`)).toEqual([id('targets-2')]);
    const short = await tufoci('upload', 'c-resign');
    expect(short.code).toBe(1);
    expect(short.stderr).toContain('has 1 of the 2 signature(s) it needs: 1 more');
    expect((await roleOf('targets'))?.version).toBe(before?.version);
    expect((await tufoci('sign-metadata', 'c-resign', '--key', 'targets-1.key')).code).toBe(0);
    const up = await tufoci('upload', 'c-resign');
    expect(up.code, up.stderr).toBe(0);
    const after = await roleOf('targets');
    expect(after?.version).toBe(next);
    expect(after?.expiresInSeconds).toBeGreaterThan(59 * 86_400);
    expect(after!.expiresInSeconds).toBeLessThan(61 * 86_400);
    // The tags and delegations are the same: CI's tag still verifies, by both clients, from the pin.
    const r = await verifyBothClients({ store, repository: REPO, tag: 'v1', trustedRoot: readFileSync(at('c-init', '1.root.json')) });
    expect(r.digest).toBe(v1.digest);
    const other = await tufoci('resign', REPO, '--role', 'ci', '--out', 'c-resign-ci');
    expect(other.code).toBe(2);
    expect(other.stderr).toContain('--out re-signs the top-level targets role');
    const stranger = await tufoci('resign', REPO, '--role', 'targets', '--key', 'ci.key', '--out', 'c-resign-stranger');
    expect(stranger.code).toBe(2);
    expect(stranger.stderr).toContain('is not a key of targets of');
  });

  it('no private key material in any ceremony directory or in anything printed', async () => {
    const secrets = [...ids.keys()].map((n) => readFileSync(at(`${n}.key`), 'utf8').split('\n').filter((l) => l && !l.startsWith('-----'))[0] as string);
    for (const d of readdirSync(dir).filter((d) => d.startsWith('c-'))) {
      for (const f of readdirSync(at(d))) {
        expect(f, d).toMatch(/^(ceremony|[0-9]+\.(root|targets))\.json$/); // no temporary files left
        const text = readFileSync(at(d, f), 'utf8');
        expect(text).not.toContain('PRIVATE KEY');
        for (const s of secrets) expect(text).not.toContain(s);
      }
    }
    expect(runs.length).toBeGreaterThan(30);
    for (const r of runs) for (const s of ['PRIVATE KEY', ...secrets]) expect(r.stdout + r.stderr).not.toContain(s);
    expect(existsSync(at('c-init', 'ceremony.json'))).toBe(true);
  });
});
