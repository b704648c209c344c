/**
 * The publisher and client commands end to end on a real registry and the
 * embedded-default service: keygen → init → delegate → publish → verify,
 * the trust store, and clear refusals with non-zero exits.
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type RunningServer } from '../../src/main.ts';
import { RegistryStore, OCI_MANIFEST_MEDIA_TYPE } from '../../src/storage/index.ts';
import { startRegistry, type RegistryServer } from '../support/registry-server.ts';
import { pushImage, type PushedImage } from '../support/image.ts';
import { runTufoci, type CliResult } from '../support/cli.ts';

const dir = mkdtempSync(join(tmpdir(), 'tufoci-pub-'));
const REPO = 'wabbit-networks/net-monitor';
let server: RunningServer;
let registry: RegistryServer;
let host: string;
let env: NodeJS.ProcessEnv;
let v1: PushedImage;
let old: PushedImage;

const tufoci = (...args: string[]): Promise<CliResult> => runTufoci(args, { cwd: dir, env });

beforeAll(async () => {
  registry = await startRegistry();
  host = registry.url.replace('http://', '');
  server = await startServer({ dataDir: join(dir, 'data'), port: 0, logger: pino({ level: 'silent' }) });
  env = { ...process.env, TUFOCI_SERVER: server.url, TUFOCI_TOKEN: readFileSync(join(dir, 'data', 'admin-token'), 'utf8').trim(), TUFOCI_HOME: join(dir, 'home') };
  const store = new RegistryStore({ url: registry.url });
  old = await pushImage(store, REPO, 'v1', 'old build');
  v1 = await pushImage(store, REPO, 'v1', 'new build');
  for (const name of ['root', 'targets', 'ci']) expect((await tufoci('keygen', name)).code).toBe(0);
  expect((await tufoci('init', REPO, '--root-key', 'root.key', '--targets-key', 'targets.key')).code).toBe(0);
  expect((await tufoci('delegate', 'add', REPO, 'ci', '--key', 'ci.pub', '--paths', 'v*', '--terminating', '--targets-key', 'targets.key')).code).toBe(0);
});
afterAll(async () => {
  await server?.close();
  await registry?.stop();
});

describe('publish and verify', () => {
  it('CI publishes v1; a client pinning the root verifies it through the service, signature included', async () => {
    const pub = await tufoci('publish', `${host}/${REPO}:v1`, '--role', 'ci', '--key', 'ci.key', '--json');
    expect(pub.code, pub.stderr).toBe(0);
    // In the hash bin of ci that v1 hashes to (delegate add spreads ci's tags over bins by default).
    expect(JSON.parse(pub.stdout)).toMatchObject({ digest: v1.digest, role: expect.stringMatching(/^ci-[0-9a-f]+$/), version: 1 });
    const root = join(dir, '1.root.json'); // written by tufoci init
    const ok = await tufoci('verify', `${host}/${REPO}:v1`, '--trust', root, '--server', server.url, '--sig-key', 'ci.pub');
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout.split('\n')[0]).toBe(v1.digest);
    expect(ok.stdout).toMatch(/signed by [0-9a-f]{12}/);
  });

  it('--tuf-client tuf-js verifies through the unmodified tuf-js Updater; an unknown client is a usage error', async () => {
    const root = join(dir, '1.root.json');
    const ref = `${host}/${REPO}:v1`;
    const reference = await tufoci('verify', ref, '--trust', root, '--server', server.url, '--ephemeral', '--tuf-client', 'tuf-js');
    expect(reference.code, reference.stderr).toBe(0);
    expect(reference.stdout.split('\n')[0]).toBe(v1.digest);
    const bad = await tufoci('verify', ref, '--trust', root, '--tuf-client', 'notary');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--tuf-client must be tufoci or tuf-js');
  });

  it('the trust store pins roots per prefix; no pin is a clear refusal', async () => {
    const none = await tufoci('verify', `${host}/${REPO}:v1`, '--server', server.url);
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/no root of trust for wabbit-networks\/net-monitor/);
    expect((await tufoci('trust', 'add', 'wabbit-networks/', '1.root.json')).code).toBe(0);
    expect((await tufoci('trust', 'list')).stdout).toContain('wabbit-networks/');
    const ok = await tufoci('verify', `${host}/${REPO}:v1`, '--server', server.url, '--json');
    expect(ok.code, ok.stderr).toBe(0);
    expect(JSON.parse(ok.stdout).digest).toBe(v1.digest);
  });

  it('refuses an unpublished tag and a signature policy that is not met', async () => {
    await pushImage(new RegistryStore({ url: registry.url }), REPO, 'v2', 'never published');
    const r = await tufoci('verify', `${host}/${REPO}:v2`, '--server', server.url, '--ephemeral');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/tag v2 of wabbit-networks\/net-monitor is not signed by any trusted key/);
    const s = await tufoci('verify', `${host}/${REPO}:v1`, '--server', server.url, '--ephemeral', '--sig-key', 'root.pub');
    expect(s.code).toBe(1);
    expect(s.stderr).toMatch(/signed by 0 of the 1 trusted key/);
  });

  it('a registry tag moved back to an older digest: verify answers the TUF digest and warns', async () => {
    const store = new RegistryStore({ url: registry.url });
    await store.putManifest(REPO, 'v1', (await store.getManifest(REPO, old.digest, 10_000)).bytes, OCI_MANIFEST_MEDIA_TYPE);
    const r = await tufoci('verify', `${host}/${REPO}:v1`, '--server', server.url, '--ephemeral');
    expect(r.code).toBe(0);
    expect(r.stdout.split('\n')[0]).toBe(v1.digest);
    expect(r.stderr).toMatch(new RegExp(`registry's tag v1 points at ${old.digest}`));
  });
});
