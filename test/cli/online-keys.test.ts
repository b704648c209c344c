/**
 * Online key rotation and the compromise path, end to end: the embedded-default
 * service (its keyring on disk under data/keys), the tufoci CLI, a real
 * registry, and clients verifying through the library (the unmodified tuf-js
 * Updater inside verifyImage) from the 1.root.json they pinned.
 */
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { Updater } from 'tuf-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type RunningServer } from '../../src/main.ts';
import { RegistryStore } from '../../src/storage/index.ts';
import { ServiceClient, ServiceClientError } from '../../src/client/service-client.ts';
// Every verify runs through the client core and the unmodified tuf-js Updater; both must agree.
import { verifyBothClients as verifyImage } from '../support/differential.ts';
import { isoExpiry, parseMetadata, signMetadata } from '../../src/engine/index.ts';
import { loadSignerFile, type Signer } from '../../src/keys/index.ts';
import { OnlineKeyring } from '../../src/keys/online-keyring.ts';
import { nextRoot } from '../../src/cli/commands/rotate.ts';
import { startRegistry, type RegistryServer } from '../support/registry-server.ts';
import { pushImage, type PushedImage } from '../support/image.ts';
import { MapFetcher } from '../support/engine-repo.ts';
import { Timestamp } from '@tufjs/models';
import { runTufoci, type CliResult } from '../support/cli.ts';

const dir = mkdtempSync(join(tmpdir(), 'tufoci-online-'));
const A = 'wabbit-networks/net-monitor';
const B = 'wabbit-networks/net-logger';
let server: RunningServer;
let registry: RegistryServer;
let store: RegistryStore;
let host: string;
let env: NodeJS.ProcessEnv;
let admin: ServiceClient;
const images: Record<string, PushedImage> = {};

const tufoci = (...args: string[]): Promise<CliResult> => runTufoci(args, { cwd: dir, env });

const pinned = (repo: string): Buffer => readFileSync(join(dir, `${repo.replace('/', '_')}.1.root.json`));
const verify = (repo: string) => verifyImage({ store, repository: repo, tag: 'v1', trustedRoot: pinned(repo), serviceUrl: server.url });

async function timestampKeyid(repo: string): Promise<string[]> {
  const ts = JSON.parse(new TextDecoder().decode(await admin.metadata(repo, 'timestamp.json'))) as { signatures: Array<{ keyid: string }> };
  return ts.signatures.map((s) => s.keyid);
}

beforeAll(async () => {
  registry = await startRegistry();
  host = registry.url.replace('http://', '');
  server = await startServer({ dataDir: join(dir, 'data'), port: 0, logger: pino({ level: 'silent' }), refreshTickMs: 3_600_000 });
  const token = readFileSync(join(dir, 'data', 'admin-token'), 'utf8').trim();
  env = { ...process.env, TUFOCI_SERVER: server.url, TUFOCI_TOKEN: token, TUFOCI_HOME: join(dir, 'home') };
  admin = new ServiceClient({ url: server.url, token });
  store = new RegistryStore({ url: registry.url });
  for (const name of ['root', 'targets', 'ci']) expect((await tufoci('keygen', name)).code).toBe(0);
  for (const repo of [A, B]) {
    images[repo] = await pushImage(store, repo, 'v1', `build of ${repo}`);
    const i = await tufoci('init', repo, '--root-key', 'root.key', '--targets-key', 'targets.key', '--root-out', `${repo.replace('/', '_')}.1.root.json`);
    expect(i.code, i.stderr).toBe(0);
    expect((await tufoci('delegate', 'add', repo, 'ci', '--key', 'ci.pub', '--paths', 'v*', '--targets-key', 'targets.key')).code).toBe(0);
    const p = await tufoci('publish', `${host}/${repo}:v1`, '--role', 'ci', '--key', 'ci.key');
    expect(p.code, p.stderr).toBe(0);
  }
});
afterAll(async () => {
  await server?.close();
  await registry?.stop();
});

describe('online key rotation', () => {
  it('rotate online: a new key set, a root listing it, timestamps signed by it; pinned clients follow', async () => {
    const before = await admin.onlineKeys(A);
    expect(before.set).toBe(0);
    expect(await timestampKeyid(A)).toEqual([before.timestamp[0]?.keyid]);

    const r = await tufoci('rotate', 'online', A, '--root-key', 'root.key', '--json');
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ repository: A, rootVersion: 2, set: 1, generated: true });

    const after = await admin.onlineKeys(A);
    expect(after.set).toBe(1);
    expect(after.timestamp[0]?.keyid).not.toBe(before.timestamp[0]?.keyid);
    expect(await timestampKeyid(A)).toEqual([after.timestamp[0]?.keyid]);
    // B was not rotated: the service still signs it with set 0 (B's own key of that set).
    expect(await timestampKeyid(B)).toEqual([(await admin.onlineKeys(B)).sets?.find((x) => x.id === 0)?.keyids['timestamp']]);
    // Both verify from their pinned v1 roots (A's client walks to root v2).
    expect((await verify(A)).digest).toBe(images[A]?.digest);
    expect((await verify(B)).digest).toBe(images[B]?.digest);
    const u = await tufoci('online-keys', 'usage', '--json');
    expect(u.code).toBe(0);
    expect(JSON.parse(u.stdout).repositories).toEqual(
      expect.arrayContaining([
        { repository: A, sets: [1], onRevoked: false, onCurrent: true },
        { repository: B, sets: [0], onRevoked: false, onCurrent: false },
      ]),
    );
  });

  it('each repository has its own online keys: another repository\'s timestamp and snapshot do not verify for it', async () => {
    const a = await admin.onlineKeys(A);
    const b = await admin.onlineKeys(B);
    expect(a.timestamp[0]?.keyid).not.toBe(b.timestamp[0]?.keyid);
    // A registry (or mirror) serves B's fresh timestamp and snapshot under A: a client pinning A's root refuses.
    const files = new Map<string, Uint8Array>();
    files.set('1.root.json', await admin.metadata(A, '1.root.json'));
    const bTimestamp = await admin.metadata(B, 'timestamp.json');
    files.set('timestamp.json', bTimestamp);
    const snapVersion = (JSON.parse(new TextDecoder().decode(bTimestamp)) as { signed: { meta: Record<string, { version: number }> } }).signed.meta['snapshot.json']?.version;
    files.set(`${snapVersion}.snapshot.json`, await admin.metadata(B, `${snapVersion}.snapshot.json`));
    const stateDir = mkdtempSync(join(tmpdir(), 'tufoci-client-'));
    mkdirSync(join(stateDir, 'targets'));
    writeFileSync(join(stateDir, 'root.json'), pinned(A));
    const updater = new Updater({ metadataBaseUrl: 'http://x/metadata', targetBaseUrl: 'http://x/targets', metadataDir: stateDir, targetDir: join(stateDir, 'targets'), fetcher: new MapFetcher(files) });
    const refusal = await updater.refresh().then(
      () => undefined,
      (x: unknown) => x,
    );
    expect(String(refusal)).toMatch(/timestamp was signed by 0\/1 keys/);
  });

  it('after the rotation a timestamp signed by the old online key no longer counts for the client', async () => {
    const files = new Map<string, Uint8Array>();
    for (const name of ['1.root.json', '2.root.json', 'timestamp.json']) files.set(name, await admin.metadata(A, name));
    const current = parseMetadata('timestamp', files.get('timestamp.json') as Uint8Array, 16_384).md.signed;
    const ring = await OnlineKeyring.open({ dir: join(dir, 'data', 'keys') });
    const old = ring.signers(A).timestamp[0] as Signer; // set 0's key for A
    const forged = new Timestamp({ specVersion: current.specVersion, version: current.version + 1, expires: isoExpiry(Date.now() + 3_600_000), snapshotMeta: current.snapshotMeta });
    files.set('timestamp.json', await signMetadata(forged, [old]));
    const stateDir = mkdtempSync(join(tmpdir(), 'tufoci-client-'));
    mkdirSync(join(stateDir, 'targets'));
    writeFileSync(join(stateDir, 'root.json'), pinned(A)); // tuf-js starts from metadataDir/root.json
    const updater = new Updater({ metadataBaseUrl: 'http://x/metadata', targetBaseUrl: 'http://x/targets', metadataDir: stateDir, targetDir: join(stateDir, 'targets'), fetcher: new MapFetcher(files) });
    const refusal = await updater.refresh().then(() => undefined, (x: unknown) => x);
    expect(String(refusal)).toMatch(/timestamp was signed by 0\/1 keys/);
  });

  it('a compromised online key: revoke → no root may list it → rotate online --all moves every repository off it', async () => {
    const compromised = (await admin.onlineKeys(B)).sets?.find((s) => s.id === 0)?.keyids['timestamp'] as string;
    const rev = await tufoci('online-keys', 'revoke', compromised.slice(0, 16), '--reason', 'leaked in a CI log');
    expect(rev.code).toBe(1); // repositories still list it
    expect(rev.stdout).toMatch(/revoked set 0/);
    expect(rev.stdout).toContain(B);
    expect(rev.stdout).not.toMatch(new RegExp(`^  ${A}$`, 'm'));

    // A root that still lists the revoked key is refused with the reason.
    const rootSigner = await loadSignerFile(join(dir, 'root.key'));
    const cur = parseMetadata('root', await admin.metadata(B, '1.root.json'), 524_288).md.signed;
    const stale = await signMetadata(nextRoot(cur, isoExpiry(Date.now() + 86_400_000), {}), [rootSigner]);
    const e = await admin.upload(B, '2.root.json', stale).then(
      () => undefined,
      (x: unknown) => x,
    );
    expect(e).toBeInstanceOf(ServiceClientError);
    expect((e as ServiceClientError).code).toBe('ONLINE_KEY_REVOKED');
    expect((e as ServiceClientError).status).toBe(422);

    // One command per owner gets every repository of theirs off the revoked set.
    const all = await tufoci('rotate', 'online', '--all', '--root-key', 'root.key');
    expect(all.code, all.stderr).toBe(0);
    expect(all.stdout).toContain(`${B}: root v2 lists online key set 1`);
    const usage = await tufoci('online-keys', 'usage', '--json');
    expect(usage.code).toBe(0);
    expect(JSON.parse(usage.stdout).repositories.every((r: { onRevoked: boolean; onCurrent: boolean }) => !r.onRevoked && r.onCurrent)).toBe(true);
    expect((await verify(A)).digest).toBe(images[A]?.digest);
    expect((await verify(B)).digest).toBe(images[B]?.digest);
    const list = await tufoci('online-keys', 'list');
    expect(list.stdout).toMatch(/set 0 .*REVOKED .*leaked in a CI log/);
  });

  it('keeps the keyring across a restart and refuses bad operator input with clear errors', async () => {
    const noReason = await tufoci('online-keys', 'revoke', '1');
    expect(noReason.code).toBe(2);
    expect(noReason.stderr).toMatch(/--reason is required/);
    const unknown = await tufoci('online-keys', 'revoke', 'ffffffffffff', '--reason', 'x');
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/no online key set holds ffffffffffff/);
    const noAdmin = await new ServiceClient({ url: server.url }).rotateOnlineKeys().then(
      () => undefined,
      (x: unknown) => x,
    );
    expect((noAdmin as ServiceClientError).status).toBe(401);

    const before = await admin.onlineKeys(B);
    await server.close();
    server = await startServer({ dataDir: join(dir, 'data'), port: 0, logger: pino({ level: 'silent' }), refreshTickMs: 3_600_000 });
    env = { ...env, TUFOCI_SERVER: server.url };
    admin = new ServiceClient({ url: server.url, token: env['TUFOCI_TOKEN'] as string });
    expect(await admin.onlineKeys(B)).toEqual(before);
    expect((await verify(B)).digest).toBe(images[B]?.digest);
  });
});
