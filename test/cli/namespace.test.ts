/**
 * A namespace end to end with the CLI, on a real registry that also holds the TUF metadata
 * (the service writes there): `init wabbit-networks/` once; repositories join with
 * `delegate add`; CI publishes (own key, service-signed, ephemeral grant); a client trusts the
 * namespace once and verifies every member straight from the registry, through the client core
 * and through tuf-js; one root rotation covers every member, also one that replaces the
 * namespace's targets key (every member's targets re-signed in the same command; a member that
 * fails is named with the command that re-signs it).
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type RunningServer } from '../../src/main.ts';
import { loadPublicKey } from '../../src/keys/index.ts';
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
/** The service's tokens: an admin's, and one that writes the wabbit-tools/ anchor and one of its members only. */
const ADMIN_TOKEN = randomBytes(24).toString('hex');
const TOOLS_TOKEN = randomBytes(24).toString('hex');
const TNS = 'wabbit-tools/';
const TA = 'wabbit-tools/net-a';
const TB = 'wabbit-tools/team-b/net-b';

const tufoci = (...args: string[]): Promise<CliResult> => runTufoci(args, { cwd: dir, env });
const ok = async (...args: string[]): Promise<CliResult> => {
  const r = await tufoci(...args);
  expect(r.code, `tufoci ${args.join(' ')}\n${r.stderr}`).toBe(0);
  return r;
};

beforeAll(async () => {
  registry = await startRegistry();
  host = registry.url.replace('http://', '');
  const tokens = [
    { name: 'admin', token: ADMIN_TOKEN, scopes: ['admin'] },
    { name: 'tools', token: TOOLS_TOKEN, scopes: [`write:${TNS}tufoci-namespace`, `write:${TA}`] },
  ];
  server = await startServer({ dataDir: join(dir, 'data'), port: 0, registry: registry.url, tokensEnv: JSON.stringify(tokens), logger: pino({ level: 'silent' }) });
  env = { ...process.env, TUFOCI_SERVER: server.url, TUFOCI_TOKEN: ADMIN_TOKEN, TUFOCI_HOME: join(dir, 'home') };
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

describe("rotating a namespace's targets key", () => {
  const images = new Map<string, PushedImage>();
  /** Each client's saved state per member, trusting the namespace's first root (the trust store's pin). */
  const stateOf = (repo: string, client: string): string => join(dir, `tools-state-${client}-${repo.replace(/\//g, '_')}`);
  const verifies = async (repo: string, client: string, ...extra: string[]): Promise<{ digest: string; tuf?: { root: number } }> => {
    const r = await ok('verify', `${host}/${repo}:v1`, '--plain-http', '--tuf-client', client, ...extra, '--json');
    const v = JSON.parse(r.stdout) as { digest: string; tuf?: { root: number } };
    expect(v.digest, `${repo} ${client}`).toBe(images.get(repo)?.digest);
    return v;
  };
  const everyMemberVerifies = async (rootVersion: number): Promise<void> => {
    for (const repo of [TA, TB]) {
      for (const client of ['tufoci', 'tuf-js']) {
        const v = await verifies(repo, client, '--state', stateOf(repo, client)); // walks from where it stood
        if (client === 'tufoci') expect(v.tuf?.root, repo).toBe(rootVersion);
        await verifies(repo, client, '--trust', 'tools.root.json', '--ephemeral'); // cold, from the first root
      }
    }
  };

  beforeAll(async () => {
    for (const name of ['tools-root', 'tools-targets', 'tools-targets2', 'tools-targets3']) await ok('keygen', name);
    await ok('init', TNS, '--root-key', 'tools-root.key', '--targets-key', 'tools-targets.key', '--root-out', 'tools.root.json');
    const store = new RegistryStore({ url: registry.url });
    await ok('delegate', 'add', TA, 'ci', '--key', 'ci.pub', '--paths', 'v*', '--targets-key', 'tools-targets.key');
    await ok('delegate', 'add', TB, 'ci', '--key', 'ci.pub', '--paths', 'v*', '--expected-tags', '0', '--targets-key', 'tools-targets.key');
    for (const repo of [TA, TB]) {
      images.set(repo, await pushImage(store, repo, 'v1', `${repo} v1`));
      await ok('publish', `${host}/${repo}:v1`, '--role', 'ci', '--key', 'ci.key');
    }
    await ok('trust', 'add', TNS, 'tools.root.json');
    await everyMemberVerifies(1);
  }, 120_000);

  it("one rotation re-signs every member's targets with the new key, before the root; clients pinned to the old root follow it, tuf-js's too", async () => {
    const rot = JSON.parse(
      (await ok('rotate', 'root', TNS, '--old-key', 'tools-root.key', '--new-key', 'tools-root.key', '--targets-key-new', 'tools-targets2.key', '--targets-key', 'tools-targets.key', '--json')).stdout,
    );
    expect(rot).toMatchObject({ version: 2, members: { namespace: TNS, rootVersion: 2, failed: [] }, memberTargets: { namespace: TNS, resigned: 2, failed: [] } });
    // Each member's targets went up before the root, signed by the old and the new key: valid under either root.
    const keyids = await Promise.all(['tools-targets.pub', 'tools-targets2.pub'].map(async (f) => (await loadPublicKey(join(dir, f))).keyid));
    for (const repo of [TA, TB]) {
      const t = (JSON.parse((await ok('status', repo, '--json')).stdout) as { roles: Array<{ role: string; version: number }> }).roles.find((r) => r.role === 'targets');
      const file = (await (await fetch(`${server.url}/v1/repos/${repo}/metadata/${t?.version}.targets.json`)).json()) as { signatures: Array<{ keyid: string }> };
      expect(file.signatures.map((x) => x.keyid).sort(), repo).toEqual([...keyids].sort());
    }
    await everyMemberVerifies(2);
    // The replaced key signs nothing any more; the new one renews a member's targets as usual.
    expect((await tufoci('resign', TA, '--role', 'targets', '--key', 'tools-targets.key')).code).not.toBe(0);
    await ok('resign', TA, '--role', 'targets', '--key', 'tools-targets2.key');
    await verifies(TA, 'tufoci', '--state', stateOf(TA, 'tufoci'));
  });

  it('a member that cannot be re-signed: before the root the rotation stops, every member still verifying; after it the member is named with the command that re-signs it', async () => {
    // The tools token writes the anchor and net-a, not team-b/net-b: its upload there is refused.
    const stopped = await tufoci(
      'rotate', 'root', TNS, '--old-key', 'tools-root.key', '--new-key', 'tools-root.key', '--targets-key-new', 'tools-targets3.key', '--targets-key', 'tools-targets2.key', '--token', TOOLS_TOKEN,
    );
    expect(stopped.code, stopped.stderr).toBe(1);
    expect(stopped.stdout).toMatch(/root v3 NOT uploaded: 1 member\(s\) of wabbit-tools\/ could not be re-signed/);
    expect(stopped.stdout).toMatch(new RegExp(`${TB}: .*may not write`));
    expect(JSON.parse((await ok('status', TNS, '--json')).stdout).roles.find((r: { role: string }) => r.role === 'root').version).toBe(2);
    await everyMemberVerifies(2);

    // Without the old key the root goes first: net-b fails after it, and the answer says how to re-sign it.
    const after = await tufoci('rotate', 'root', TNS, '--old-key', 'tools-root.key', '--new-key', 'tools-root.key', '--targets-key-new', 'tools-targets3.key', '--token', TOOLS_TOKEN, '--json');
    expect(after.code, after.stderr).toBe(1);
    const rot = JSON.parse(after.stdout) as { version: number; memberTargets: { resigned: number; failed: Array<{ repository: string; error: string }>; retry: string } };
    expect(rot.version).toBe(3);
    expect(rot.memberTargets.resigned).toBe(1);
    expect(rot.memberTargets.failed.map((f) => f.repository)).toEqual([TB]);
    expect(rot.memberTargets.retry).toBe(`tufoci resign ${TNS} --role targets --key tools-targets3.key --members ${TB}`);
    await verifies(TA, 'tufoci', '--state', stateOf(TA, 'tufoci'));
    const refused = await tufoci('verify', `${host}/${TB}:v1`, '--plain-http', '--state', stateOf(TB, 'tufoci'));
    expect(refused.code).toBe(1);
    // The command it named re-signs net-b: then every member verifies under root 3.
    const [command, ...args] = rot.memberTargets.retry.split(' ');
    expect(command).toBe('tufoci');
    const retried = JSON.parse((await ok(...args, '--json')).stdout);
    expect(retried).toMatchObject({ namespace: TNS, rootVersion: 3, failed: [] });
    expect(retried.resigned.map((r: { repository: string }) => r.repository)).toEqual([TB]);
    await everyMemberVerifies(3);
    // The retry path on its own, for every member: renews them all.
    const all = JSON.parse((await ok('resign', TNS, '--role', 'targets', '--key', 'tools-targets3.key', '--all-members', '--json')).stdout);
    expect(all.resigned.map((r: { repository: string }) => r.repository)).toEqual([TA, TB]);
    expect(all.failed).toEqual([]);
  });

  it('resign <prefix>/: usage errors with exit 2, before any member is touched', async () => {
    for (const [args, message] of [
      [['--key', 'tools-targets3.key'], /--all-members or --members/],
      [['--key', 'tools-targets3.key', '--all-members', '--members', TA], /--all-members or --members/],
      [['--key', 'tools-targets3.key', '--members', 'acme-rockets/app'], /"acme-rockets\/app" is not a repository under wabbit-tools\//],
      [['--key', 'tools-targets3.key', '--members', `${TNS}tufoci-namespace`], /is not a repository under/],
      [['--all-members'], /--key is required/],
      [['--key', 'tools-targets3.key', '--all-members', '--out', join(dir, 'nope')], /--out does not go with/],
    ] as const) {
      const r = await tufoci('resign', TNS, '--role', 'targets', ...args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr).toMatch(message);
    }
    const role = await tufoci('resign', TNS, '--role', 'ci', '--key', 'ci.key', '--all-members');
    expect(role.code).toBe(2);
    // A key that is not the namespace's targets key is refused before any member is touched.
    const stranger = await tufoci('resign', TNS, '--role', 'targets', '--key', 'tools-targets.key', '--all-members');
    expect(stranger.code).toBe(2);
    expect(stranger.stderr).toMatch(/is not a targets key of root v3 of namespace wabbit-tools\//);
    expect((await tufoci('resign', TA, '--role', 'targets', '--key', 'tools-targets3.key', '--members', TB)).code).toBe(2);
  });
});
