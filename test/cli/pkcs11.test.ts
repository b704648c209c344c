/**
 * Keys in an HSM end to end, on a real SoftHSM2 made in a temporary directory:
 * `tufoci serve` (a child process, metadata in a real registry) with its
 * snapshot, timestamp and CI keys in token "service"; the owner's root keys
 * and a CI key in token "owner", the targets key on disk. The `tufoci` command
 * runs as a child process (so each run also shows it exits on its own after
 * using the token) for init, delegate add (the CI key's public key read from
 * the token), publish (signed in the token), rotate root to a second token
 * key; clients verify with the unmodified tuf-js Updater and tufoci's core.
 * Every key id is checked against the one computed from the public key the
 * token generated, and no PIN may appear in any output.
 */
import { createPublicKey } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ServiceClient } from '../../src/client/service-client.ts';
import { computeKeyId, tufKeyFromPublicKey } from '../../src/keys/index.ts';
import { RegistryStore } from '../../src/storage/index.ts';
import { runTufoci, type CliResult } from '../support/cli.ts';
// Every verify runs through the client core and the unmodified tuf-js Updater; both must agree.
import { verifyBothClients } from '../support/differential.ts';
import { pushImage, type PushedImage } from '../support/image.ts';
import { startRegistry, type RegistryServer } from '../support/registry-server.ts';
import { SOFTHSM_MODULE, createSoftHsm, jwkOfPoint, type SoftHsm, type TokenKey } from '../support/softhsm.ts';
import { startTufoci, type TufociProcess } from '../support/tufoci-process.ts';

const REPO = 'wabbit-networks/hsm-monitor';
const ADMIN = 'pkcs11-test-admin-token-0123456789';
const OWNER_PIN = '246802';
const SERVICE_PIN = '135791';
const WRONG_PIN = '864200';
const PINS = [OWNER_PIN, SERVICE_PIN, WRONG_PIN];

const dir = mkdtempSync(join(tmpdir(), 'tufoci-hsm-cli-'));
const dataDir = join(dir, 'service-data');
let hsm: SoftHsm;
let registry: RegistryServer;
let service: TufociProcess;
let store: RegistryStore;
let admin: ServiceClient;
let ownerPin: string;
let v1: PushedImage;
const tokenKeys = new Map<string, TokenKey>();
const outputs: string[] = [];

/** The key id of a token key, from the public key the token generated (JWK → node:crypto → TUF key JSON). */
const keyid = (name: string): string => computeKeyId(tufKeyFromPublicKey(createPublicKey({ key: jwkOfPoint(tokenKeys.get(name) as TokenKey), format: 'jwk' })));
const owner = (object: string, query = ''): string => `pkcs11:token=owner;object=${object}${query ? `?${query}` : ''}`;
const SERVICE_KEYS = {
  TUFOCI_SNAPSHOT_KEY: `pkcs11:token=service;object=snapshot?module-path=${SOFTHSM_MODULE}`,
  TUFOCI_TIMESTAMP_KEY: 'pkcs11:token=service;object=timestamp',
  TUFOCI_CI_KEY: 'pkcs11:token=service;id=%13',
};

function cliEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('TUFOCI_') && v !== undefined) env[k] = v;
  return { ...env, ...hsm.env, TUFOCI_SERVER: service.url, TUFOCI_TOKEN: ADMIN, TUFOCI_HOME: join(dir, 'home') };
}

async function tufoci(...args: string[]): Promise<CliResult> {
  const r = await runTufoci(args, { cwd: dir, env: cliEnv() });
  outputs.push(r.stdout, r.stderr);
  return r;
}

function startService(env: Record<string, string>): Promise<TufociProcess> {
  return startTufoci({ registry: registry.url, dataDir, tokens: [{ name: 'admin', token: ADMIN, scopes: ['admin'] }], env: { ...hsm.env, ...env } });
}

const json = (bytes: Uint8Array): { signatures: Array<{ keyid: string }>; signed: Record<string, any> } => JSON.parse(new TextDecoder().decode(bytes));
const signersOf = (bytes: Uint8Array): string[] => json(bytes).signatures.map((s) => s.keyid).sort();

beforeAll(async () => {
  hsm = createSoftHsm();
  hsm.initToken('owner', OWNER_PIN);
  hsm.initToken('service', SERVICE_PIN);
  for (const k of await hsm.generate('owner', OWNER_PIN, [
    { label: 'root-1', id: '01', type: 'ed25519' },
    { label: 'root-2', id: '02', type: 'ecdsa-p256' },
    { label: 'ci', id: '03', type: 'ecdsa-p256' },
  ])) tokenKeys.set(k.label, k);
  for (const k of await hsm.generate('service', SERVICE_PIN, [
    { label: 'snapshot', id: '11', type: 'ed25519' },
    { label: 'timestamp', id: '12', type: 'ecdsa-p256' },
    { label: 'service-ci', id: '13', type: 'ed25519' },
  ])) tokenKeys.set(k.label, k);
  ownerPin = hsm.pinFile('owner.pin', OWNER_PIN);
  registry = await startRegistry();
  store = new RegistryStore({ url: registry.url });
  v1 = await pushImage(store, REPO, 'v1', 'hsm build');
  service = await startService({ ...SERVICE_KEYS, TUFOCI_PKCS11_PIN: SERVICE_PIN });
  admin = new ServiceClient({ url: service.url, token: ADMIN });
  expect((await tufoci('keygen', 'targets')).code).toBe(0);
});

afterAll(async () => {
  await service?.stop();
  await registry?.stop();
  hsm?.remove();
  rmSync(dir, { recursive: true, force: true });
});

describe('keys in an HSM (SoftHSM2)', () => {
  it("the service's online keys are the token's: it lists them, and keyring.json names them by URI without a PIN", async () => {
    const online = await admin.onlineKeys(REPO);
    expect(online.snapshot.map((k) => k.keyid)).toEqual([keyid('snapshot')]);
    expect(online.timestamp.map((k) => k.keyid)).toEqual([keyid('timestamp')]);
    expect((online.ci ?? []).map((k) => k.keyid)).toEqual([keyid('service-ci')]);
    const keyring = readFileSync(join(dataDir, 'keys', 'keyring.json'), 'utf8');
    expect(JSON.parse(keyring)).toMatchObject({ sets: [{ id: 0, kind: 'shared', files: { snapshot: SERVICE_KEYS.TUFOCI_SNAPSHOT_KEY, timestamp: SERVICE_KEYS.TUFOCI_TIMESTAMP_KEY, ci: SERVICE_KEYS.TUFOCI_CI_KEY } }] });
    for (const pin of PINS) expect(keyring).not.toContain(pin);
  });

  it('init with the root key in the token and the targets key on disk; delegate add to a CI key in the token; publish signed in the token; both clients verify', async () => {
    const init = await tufoci('init', REPO, '--root-key', owner('root-1', `pin-value=${OWNER_PIN}`), '--targets-key', 'targets.key', '--root-out', '1.root.json');
    expect(init.code, init.stderr).toBe(0);
    const root = readFileSync(join(dir, '1.root.json'));
    expect(signersOf(root)).toEqual([keyid('root-1')]);
    const roles = json(root).signed['roles'];
    expect(roles).toMatchObject({ root: { keyids: [keyid('root-1')] }, snapshot: { keyids: [keyid('snapshot')] }, timestamp: { keyids: [keyid('timestamp')] } });
    expect(json(root).signed['keys'][keyid('root-1')]).toMatchObject({ keytype: 'ed25519', scheme: 'ed25519' });

    // The CI key's public key comes from the token's public key object: no PIN needed.
    const add = await tufoci('delegate', 'add', REPO, 'ci', '--key', owner('ci'), '--paths', 'v*', '--terminating', '--targets-key', 'targets.key', '--json');
    expect(add.code, add.stderr).toBe(0);
    const targets = json(await admin.metadata(REPO, '2.targets.json')).signed;
    expect(targets['delegations']['roles'].find((r: { name: string }) => r.name === 'ci')).toMatchObject({ keyids: [keyid('ci')], paths: ['v*'] });
    expect(targets['delegations']['keys'][keyid('ci')]).toMatchObject({ keytype: 'ecdsa', scheme: 'ecdsa-sha2-nistp256' });

    const pub = await tufoci('publish', `${registry.url.replace('http://', '')}/${REPO}:v1`, '--role', 'ci', '--key', owner('ci', `pin-source=file:${ownerPin}`));
    expect(pub.code, pub.stderr).toBe(0);

    // Snapshot and timestamp were signed in the service's token, each by its key alone.
    expect(signersOf(await admin.metadata(REPO, 'timestamp.json'))).toEqual([keyid('timestamp')]);
    const snapshotVersion = json(await admin.metadata(REPO, 'timestamp.json')).signed['meta']['snapshot.json'].version;
    expect(signersOf(await admin.metadata(REPO, `${snapshotVersion}.snapshot.json`))).toEqual([keyid('snapshot')]);
    for (const serviceUrl of [service.url, undefined]) {
      const r = await verifyBothClients({ store, repository: REPO, tag: 'v1', trustedRoot: root, ...(serviceUrl ? { serviceUrl } : {}) });
      expect(r).toMatchObject({ digest: v1.digest, tuf: { root: 1 } });
    }
    // The client names the signature key by the same URI: its public key object, no PIN.
    const checked = await tufoci('verify', `${registry.url.replace('http://', '')}/${REPO}:v1`, '--trust', '1.root.json', '--ephemeral', '--sig-key', owner('ci'), '--json');
    expect(checked.code, checked.stderr).toBe(0);
    expect(JSON.parse(checked.stdout)).toMatchObject({ digest: v1.digest, signers: [keyid('ci')] });
  });

  it('rotate root to a second token key (ed25519 → ECDSA P-256): root v2 is signed by both token keys, and a client pinned to v1 follows', async () => {
    const r = await tufoci('rotate', 'root', REPO, '--old-key', owner('root-1', `pin-source=file:${ownerPin}`), '--new-key', owner('root-2', `pin-source=file:${ownerPin}`), '--json');
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ role: 'root', version: 2, root: { keyids: [keyid('root-2')], threshold: 1 } });
    const root2 = await admin.metadata(REPO, '2.root.json');
    expect(signersOf(root2)).toEqual([keyid('root-1'), keyid('root-2')].sort());
    expect(json(root2).signed['keys'][keyid('root-2')]).toMatchObject({ keytype: 'ecdsa', scheme: 'ecdsa-sha2-nistp256' });
    const pinned = readFileSync(join(dir, '1.root.json'));
    expect(await verifyBothClients({ store, repository: REPO, tag: 'v1', trustedRoot: pinned, serviceUrl: service.url })).toMatchObject({ digest: v1.digest, tuf: { root: 2 } });
    // The old token key alone no longer signs a root: a threshold of root v2's keys must.
    const stale = await tufoci('rotate', 'root', REPO, '--old-key', owner('root-1', `pin-source=file:${ownerPin}`), '--new-key', owner('root-1', `pin-source=file:${ownerPin}`));
    expect(stale.code).toBe(2);
    expect(stale.stderr).toContain(`is not a root key of root v2 of ${REPO}`);
    expect(stale.stderr).toContain(`${owner('root-1', `pin-source=file:${ownerPin}`)} (${keyid('root-1').slice(0, 12)})`);
  });

  it('the command refuses a wrong PIN, a key the token does not hold and a malformed URI, with exit 1 and the reason, never the PIN', async () => {
    const wrong = await tufoci('init', 'wabbit-networks/never', '--root-key', owner('root-1', `pin-value=${WRONG_PIN}`), '--targets-key', 'targets.key');
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toContain('wrong PIN for token "owner" (CKR_PIN_INCORRECT); tokens lock after a few wrong PINs (PIN_INCORRECT)');
    const missing = await tufoci('init', 'wabbit-networks/never', '--root-key', owner('root-9', `pin-source=file:${ownerPin}`), '--targets-key', 'targets.key');
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('no private key object="root-9" on token "owner"');
    expect(missing.stderr).toContain('(KEY_NOT_FOUND)');
    const malformed = await tufoci('init', 'wabbit-networks/never', '--root-key', `pkcs11:token=owner;objekt=root-1?pin-value=${OWNER_PIN}`, '--targets-key', 'targets.key');
    expect(malformed.code).toBe(1);
    expect(malformed.stderr).toContain('unknown path attribute "objekt"');
    expect(malformed.stderr).toContain('pin-value=***');
    expect((await admin.repositories()).includes('wabbit-networks/never')).toBe(false);
  });

  it('the service refuses an online key URI that carries pin-value (keyring.json is world-readable) before it creates a key set', async () => {
    const data = join(dir, 'refused-data');
    const r = await runTufoci(['serve', '--data', data, '--listen', '127.0.0.1:0'], { cwd: dir, env: { ...cliEnv(), TUFOCI_TIMESTAMP_KEY: `pkcs11:token=service;object=timestamp?pin-value=${SERVICE_PIN}` } });
    outputs.push(r.stdout, r.stderr);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("the timestamp key's pkcs11: URI carries pin-value");
    expect(r.stderr).toContain('pin-source=file:/path (mode 0600) or TUFOCI_PKCS11_PIN');
    expect(existsSync(join(data, 'keys', 'set-0'))).toBe(false);
  });

  it('the service stops cleanly with its keys in the token, and signs again after a restart from keyring.json alone', async () => {
    expect(await service.stop()).toEqual({ code: 0, signal: null });
    outputs.push(service.output());
    service = await startService({ TUFOCI_PKCS11_PIN: SERVICE_PIN }); // no TUFOCI_*_KEY: keyring.json names the token keys
    admin = new ServiceClient({ url: service.url, token: ADMIN });
    const before = json(await admin.metadata(REPO, 'timestamp.json')).signed['version'];
    const v2 = await pushImage(store, REPO, 'v2', 'hsm build 2');
    const pub = await tufoci('publish', `${registry.url.replace('http://', '')}/${REPO}:v2`, '--role', 'ci', '--key', owner('ci', `pin-source=file:${ownerPin}`));
    expect(pub.code, pub.stderr).toBe(0);
    const ts = await admin.metadata(REPO, 'timestamp.json');
    expect(json(ts).signed['version']).toBeGreaterThan(before);
    expect(signersOf(ts)).toEqual([keyid('timestamp')]);
    expect(await verifyBothClients({ store, repository: REPO, tag: 'v2', trustedRoot: readFileSync(join(dir, '1.root.json')), serviceUrl: service.url })).toMatchObject({ digest: v2.digest, tuf: { root: 2 } });
  });

  it('no PIN appears in any output of the command or the service', () => {
    const all = [...outputs, service.output()].join('\n');
    expect(all.length).toBeGreaterThan(0);
    for (const pin of PINS) expect(all).not.toContain(pin);
  });
});
