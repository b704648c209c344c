/**
 * A namespace end to end with the CLI, on a real registry that also holds the TUF metadata
 * (the service writes there): `init wabbit-networks/` once; repositories join with
 * `delegate add`; CI publishes (own key, service-signed, ephemeral grant); a client trusts the
 * namespace once and verifies every member straight from the registry, through the client core
 * and through tuf-js; one root rotation covers every member.
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type RunningServer } from '../../src/main.ts';
import { RegistryStore } from '../../src/storage/index.ts';
import { startRegistry, type RegistryServer } from '../support/registry-server.ts';
import { pushImage, type PushedImage } from '../support/image.ts';
import { runTufoci, type CliResult } from '../support/cli.ts';

const dir = mkdtempSync(join(tmpdir(), 'tufoci-ns-cli-'));
const NS = 'wabbit-networks/';
const MON = 'wabbit-networks/net-monitor';
const API = 'wabbit-networks/team-a/api';
let server: RunningServer;
let registry: RegistryServer;
let host: string;
let env: NodeJS.ProcessEnv;
let mon: PushedImage;
let api: PushedImage;

const tufoci = (...args: string[]): Promise<CliResult> => runTufoci(args, { cwd: dir, env });
const ok = async (...args: string[]): Promise<CliResult> => {
  const r = await tufoci(...args);
  expect(r.code, `tufoci ${args.join(' ')}\n${r.stderr}`).toBe(0);
  return r;
};

beforeAll(async () => {
  registry = await startRegistry();
  host = registry.url.replace('http://', '');
  server = await startServer({ dataDir: join(dir, 'data'), port: 0, registry: registry.url, logger: pino({ level: 'silent' }) });
  env = { ...process.env, TUFOCI_SERVER: server.url, TUFOCI_TOKEN: readFileSync(join(dir, 'data', 'admin-token'), 'utf8').trim(), TUFOCI_HOME: join(dir, 'home') };
  const store = new RegistryStore({ url: registry.url });
  mon = await pushImage(store, MON, 'v1', 'net-monitor v1');
  api = await pushImage(store, API, 'v1', 'api v1');
  for (const name of ['root', 'root2', 'targets', 'ci']) await ok('keygen', name);
  await ok('init', NS, '--root-key', 'root.key', '--targets-key', 'targets.key');
}, 120_000);
afterAll(async () => {
  await server?.close();
  await registry?.stop();
});

describe('a namespace with the CLI', () => {
  it('repositories join with delegate add, CI publishes, a client trusting the namespace once verifies each from the registry', async () => {
    const joined = JSON.parse((await ok('delegate', 'add', MON, 'ci', '--key', 'ci.pub', '--paths', 'v*', '--targets-key', 'targets.key', '--json')).stdout);
    expect(joined).toMatchObject({ namespace: NS, version: 1 });
    await ok('delegate', 'add', API, 'ci', '--key', 'ci.pub', '--paths', 'v*', '--expected-tags', '0', '--targets-key', 'targets.key');
    await ok('publish', `${host}/${MON}:v1`, '--role', 'ci', '--key', 'ci.key');
    await ok('publish', `${host}/${API}:v1`, '--role', 'ci', '--key', 'ci.key');
    await ok('trust', 'add', NS, '1.root.json');
    for (const [repo, img] of [[MON, mon], [API, api]] as const) {
      for (const client of ['tufoci', 'tuf-js']) {
        const r = await ok('verify', `${host}/${repo}:v1`, '--tuf-client', client, '--plain-http', '--json');
        expect(JSON.parse(r.stdout).digest, `${repo} ${client}`).toBe(img.digest);
      }
    }
    // A tag of one member is not another's.
    await pushImage(new RegistryStore({ url: registry.url }), API, 'v9', 'net-monitor v1'); // same bytes as MON:v1
    const not = await tufoci('verify', `${host}/${API}:v9`, '--plain-http');
    expect(not.code).toBe(1);
    expect(not.stderr).toMatch(/not signed by any trusted key/);
  });

  it('a member delegates to the service (--online): publish --service-signed in a namespace', async () => {
    await ok('delegate', 'add', MON, 'release', '--online', '--paths', 'r*', '--targets-key', 'targets.key');
    const r1 = await pushImage(new RegistryStore({ url: registry.url }), MON, 'r1', 'release 1');
    await ok('publish', `${host}/${MON}:r1`, '--service-signed', '--role', 'release');
    const v = await ok('verify', `${host}/${MON}:r1`, '--plain-http', '--json');
    expect(JSON.parse(v.stdout).digest).toBe(r1.digest);
  });

  it('a CI job with a grant publishes --ephemeral in a member; the grant\'s paths are qualified by the service', async () => {
    await ok('delegate', 'add', API, 'jobs', '--online', '--paths', 'e*', '--expected-tags', '0', '--targets-key', 'targets.key');
    const e1 = await pushImage(new RegistryStore({ url: registry.url }), API, 'e1', 'job build e1');
    const grant = JSON.parse((await ok('grant', API, '--role', 'jobs', '--paths', 'e1', '--ttl', '10m', '--json')).stdout) as { token: string; paths: string[] };
    expect(grant.paths).toEqual([`${API}/e1`]);
    const pub = JSON.parse((await ok('publish', `${host}/${API}:e1`, '--ephemeral', '--grant', grant.token, '--json')).stdout);
    expect(pub.digest).toBe(e1.digest);
    const v = await ok('verify', `${host}/${API}:e1`, '--plain-http', '--json');
    expect(JSON.parse(v.stdout).digest).toBe(e1.digest);
  });

  it('one rotation of the namespace root covers every member; the pinned client follows it', async () => {
    const rot = JSON.parse((await ok('rotate', 'root', NS, '--old-key', 'root.key', '--new-key', 'root2.key', '--json')).stdout);
    expect(rot).toMatchObject({ version: 2, members: { namespace: NS, rootVersion: 2, failed: [] } });
    expect(rot.members.updated).toBe(2);
    for (const repo of [MON, API]) {
      const r = await ok('verify', `${host}/${repo}:v1`, '--plain-http', '--json');
      expect(JSON.parse(r.stdout).tuf.root).toBe(2);
    }
    // The namespace moves to new online keys in one rotation too.
    const online = JSON.parse((await ok('rotate', 'online', NS, '--root-key', 'root2.key', '--json')).stdout);
    expect(online).toMatchObject({ rootVersion: 3, members: { rootVersion: 3, updated: 2, failed: [] } });
    const after = await ok('verify', `${host}/${MON}:v1`, '--plain-http', '--json');
    expect(JSON.parse(after.stdout).tuf.root).toBe(3);
    const all = JSON.parse((await ok('rotate', 'online', '--all', '--root-key', 'root2.key', '--json')).stdout);
    expect(all.failed).toEqual([]);
    // A member's targets are renewed with the namespace's targets key like any repository's.
    await ok('resign', MON, '--role', 'targets', '--key', 'targets.key');
    expect(JSON.parse((await ok('verify', `${host}/${MON}:v1`, '--plain-http', '--json')).stdout).digest).toBe(mon.digest);
    // Status of a member names its namespace root.
    const st = JSON.parse((await ok('status', API, '--json')).stdout);
    expect(st.roles.find((r: { role: string }) => r.role === 'root').version).toBe(3);
    expect(st.namespace).toBe(NS);
    expect(JSON.parse((await ok('status', NS, '--json')).stdout).repository).toBe(`${NS}tufoci-namespace`);
    // The namespace's root is listed once (at its anchor) by expiring, not once per member.
    const exp = await tufoci('expiring', '--within', '400d', '--json');
    const roots = (JSON.parse(exp.stdout) as Array<{ repository: string; role: string }>).filter((f) => f.role === 'root' && f.repository.startsWith(NS));
    expect(roots.map((f) => f.repository)).toEqual([`${NS}tufoci-namespace`]);
  });

  it('a repository with a root of its own moves into the namespace; clients pinned to its own root follow the hand-off', async () => {
    const OWN = 'wabbit-networks/legacy';
    const store = new RegistryStore({ url: registry.url });
    const before = await pushImage(store, OWN, 'v1', 'legacy v1');
    await ok('init', OWN, '--root-key', 'root.key', '--targets-key', 'targets.key', '--root-out', 'legacy.root.json');
    await ok('delegate', 'add', OWN, 'ci', '--key', 'ci.pub', '--paths', 'v*', '--expected-tags', '0', '--targets-key', 'targets.key');
    await ok('publish', `${host}/${OWN}:v1`, '--role', 'ci', '--key', 'ci.key');
    await ok('trust', 'add', OWN, 'legacy.root.json'); // an exact entry: it answers before the namespace's prefix
    const state = join(dir, 'legacy-state');
    const tufjsState = join(dir, 'legacy-state-tufjs');
    const serviceState = join(dir, 'legacy-state-service');
    for (const [client, s] of [['tufoci', state], ['tuf-js', tufjsState]] as const) {
      const v = await ok('verify', `${host}/${OWN}:v1`, '--plain-http', '--tuf-client', client, '--state', s, '--json');
      expect(JSON.parse(v.stdout)).toMatchObject({ digest: before.digest, trustedBy: OWN });
    }
    await ok('verify', `${host}/${OWN}:v1`, '--plain-http', '--server', server.url, '--state', serviceState);
    const moved = JSON.parse((await ok('migrate', OWN, '--to', NS, '--root-key', 'root.key', '--targets-key', 'targets.key', '--json')).stdout);
    expect(moved).toMatchObject({ namespace: NS, version: 3 });
    const after = await pushImage(store, OWN, 'v2', 'legacy v2');
    await ok('publish', `${host}/${OWN}:v2`, '--role', 'ci', '--key', 'ci.key');
    // The same clients, the same pins: both follow the hand-off and verify as members.
    for (const [client, s] of [['tufoci', state], ['tuf-js', tufjsState]] as const) {
      const v = await ok('verify', `${host}/${OWN}:v2`, '--plain-http', '--tuf-client', client, '--state', s, '--json');
      expect(JSON.parse(v.stdout).digest, client).toBe(after.digest);
      const again = await ok('verify', `${host}/${OWN}:v2`, '--plain-http', '--tuf-client', client, '--state', s, '--json');
      expect(JSON.parse(again.stdout).digest, client).toBe(after.digest);
    }
    // Through the service too: the member's own URL keeps its old chain (the hand-off), the anchor's the namespace's.
    const svc = await ok('verify', `${host}/${OWN}:v2`, '--plain-http', '--server', server.url, '--state', serviceState, '--json');
    expect(JSON.parse(svc.stdout).digest).toBe(after.digest);
    const svcNs = await ok('verify', `${host}/${OWN}:v2`, '--plain-http', '--server', server.url, '--trust', '1.root.json', '--ephemeral', '--json');
    expect(JSON.parse(svcNs.stdout).digest).toBe(after.digest);
    // A client that trusts the namespace verifies it too; the repository's own root is never used again.
    const ns = await ok('verify', `${host}/${OWN}:v2`, '--plain-http', '--trust', '1.root.json', '--ephemeral', '--json');
    expect(JSON.parse(ns.stdout).digest).toBe(after.digest);
    expect((await tufoci('rotate', 'root', OWN, '--old-key', 'root.key', '--new-key', 'root2.key')).code).not.toBe(0);
  });

  it('usage errors: init of a bad prefix, a delegation outside any namespace and repository', async () => {
    const bad = await tufoci('init', 'Wabbit/', '--root-key', 'root.key', '--targets-key', 'targets.key');
    expect(bad.code).toBe(2);
    const cache = await tufoci('serve', '--cache-mb', '0');
    expect(cache.code).toBe(2);
    expect(cache.stderr).toMatch(/--cache-mb must be a whole number of MiB/);
    const none = await tufoci('delegate', 'add', 'acme-rockets/app', 'ci', '--key', 'ci.pub', '--targets-key', 'targets.key');
    expect(none.code).not.toBe(0);
    expect(none.stderr).toMatch(/acme-rockets\/app/);
  });
});
