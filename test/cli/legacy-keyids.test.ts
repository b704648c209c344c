/**
 * A repository created before tufoci's key ids followed the TUF specification
 * (ECDSA keys listed, and signatures made, under `legacyKeyId`), end to end on
 * the embedded service with ECDSA online keys: it keeps serving and verifying
 * and CI keeps publishing; `tufoci status` flags every legacy id with its
 * repair; uploads that list a legacy id are refused; and the repair (`tufoci
 * resign` of the delegated role and of targets, then `tufoci rotate root`)
 * leaves status clean while clients with the unmodified tuf-js Updater pinned to
 * the legacy 1.root.json walk to the repaired root and verify.
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type RunningServer } from '../../src/main.ts';
import { ServiceClient } from '../../src/client/service-client.ts';
import { type VerifyImageOptions } from '../../src/client/verify-image.ts';
// Every verify runs through the client core and the unmodified tuf-js Updater; both must agree.
import { verifyBothClients as verifyImage } from '../support/differential.ts';
import { pushSignature, signDescriptor } from '../../src/client/signatures.ts';
import { buildTargets, isoExpiry, parseMetadata, signMetadata } from '../../src/engine/index.ts';
import { InMemorySigner, computeKeyId, generateKeyFiles, legacyKeyId, loadSignerFile, type FileSigner, type Signer } from '../../src/keys/index.ts';
import { UsageError } from '../../src/cli/common.ts';
import { delegate, status } from '../../src/cli/commands/owner.ts';
import { publishTag } from '../../src/cli/commands/publisher.ts';
import { resign } from '../../src/cli/commands/resign.ts';
import { rotateRoot } from '../../src/cli/commands/rotate.ts';
import { pushImage, type PushedImage } from '../support/image.ts';
import { clientRefusal, runCommandJson, runTufoci } from '../support/cli.ts';
import { asLegacySigner, buildLegacyRepository, legacyTargets, storeLegacyRepository } from '../support/legacy-repo.ts';

const DAY = 86_400_000;
const dir = mkdtempSync(join(tmpdir(), 'tufoci-legacy-'));
const online = { snapshot: InMemorySigner.generate('ecdsa-p256'), timestamp: InMemorySigner.generate('ecdsa-p256'), ci: [InMemorySigner.generate('ecdsa-p256')] };
let server: RunningServer;
let token: string;
let client: ServiceClient;
let S: string[];
const signers = new Map<string, FileSigner>();

const key = (name: string): string => join(dir, `${name}.key`);
const signer = (name: string): FileSigner => signers.get(name) as FileSigner;
const L = (s: Signer): string => legacyKeyId(s.public);
const C = (s: Signer): string => computeKeyId(s.public);
const cli = (fn: (argv: string[]) => Promise<void>, argv: string[]): Promise<Record<string, unknown>> => runCommandJson(fn, argv, S);
const tufoci = (...args: string[]) => runTufoci(args, { cwd: dir, env: { ...process.env, TUFOCI_SERVER: server.url, TUFOCI_TOKEN: token } });

function verify(repository: string, tag: string, trustedRoot: Uint8Array, extra: Partial<VerifyImageOptions> = {}) {
  return verifyImage({ store: server.store, repository, tag, trustedRoot, serviceUrl: server.url, signatures: { keys: [signer('ci').public] }, ...extra });
}

/** The keyids a stored metadata file is signed under. */
async function signedUnder(repo: string, fileName: string): Promise<string[]> {
  const json = JSON.parse(new TextDecoder().decode(await client.metadata(repo, fileName))) as { signatures: Array<{ keyid: string }> };
  return json.signatures.map((s) => s.keyid).sort();
}

/** What every legacy repository here shares: the owner's root and targets keys, the service's online keys. */
function legacyBase() {
  return { now: Date.now(), policy: server.policy, rootKeys: [signer('root')], targetsKey: signer('targets'), online: { snapshot: online.snapshot, timestamp: online.timestamp } };
}

/**
 * `repo` as the service left it before the fix: root, targets delegating `ci`, ci listing v1, all
 * under legacy ids, and v1's plain signature made by `tufoci sign` (its envelope naming the legacy id).
 */
async function legacyRepository(repo: string, opts: { serviceHeld?: boolean } = {}): Promise<{ root1: Uint8Array; v1: PushedImage }> {
  const v1 = await pushImage(server.store, repo, 'v1');
  const built = await buildLegacyRepository({
    ...legacyBase(),
    delegations: [
      { name: 'ci', key: signer('ci'), paths: ['v*'], terminating: true, tags: { v1 } },
      // `tufoci delegate add R release --online`: the service's (here ECDSA) CI key.
      ...(opts.serviceHeld ? [{ name: 'release', key: online.ci[0] as Signer, paths: ['release-*'], terminating: true, tags: {} }] : []),
    ],
  });
  await storeLegacyRepository(server.store, repo, built);
  const descriptor = { mediaType: v1.mediaType, digest: v1.digest, size: v1.size };
  await pushSignature(server.store, repo, descriptor, await signDescriptor(descriptor, [asLegacySigner(signer('ci'))]));
  return { root1: built.root1, v1 };
}

beforeAll(async () => {
  server = await startServer({ dataDir: join(dir, 'data'), port: 0, logger: pino({ level: 'silent' }), signers: { snapshot: [online.snapshot], timestamp: [online.timestamp], ci: online.ci } });
  token = readFileSync(join(dir, 'data', 'admin-token'), 'utf8').trim();
  client = new ServiceClient({ url: server.url, token });
  S = ['--server', server.url, '--token', token];
  for (const name of ['root', 'targets', 'ci']) {
    await generateKeyFiles(join(dir, name), 'ecdsa-p256');
    signers.set(name, await loadSignerFile(key(name)));
  }
});
afterAll(async () => server?.close());

describe('a repository written before the key id fix', () => {
  it('keeps serving: a client pinned to its 1.root.json verifies v1 (TUF and the plain signature), and CI keeps publishing', async () => {
    const repo = 'wabbit-networks/legacy-serving';
    const { root1, v1 } = await legacyRepository(repo, { serviceHeld: true });
    expect(await verify(repo, 'v1', root1)).toMatchObject({ digest: v1.digest, tuf: { root: 1, timestamp: 1 } });
    expect(await verifyImage({ store: server.store, repository: repo, tag: 'v1', trustedRoot: root1 })).toMatchObject({ digest: v1.digest });

    // CI publishes under the delegation that lists its key under the legacy id: the new ci version is
    // signed under both ids, and the service signs snapshot and timestamp with its ECDSA online keys.
    const v2 = await pushImage(server.store, repo, 'v2');
    const published = await publishTag(client, repo, 'ci', 'v2', { ...v2 }, signer('ci'), 30 * DAY);
    expect(published).toMatchObject({ role: 'ci', version: 2, timestampVersion: 2 });
    expect(await signedUnder(repo, '2.ci.json')).toEqual([C(signer('ci')), L(signer('ci'))].sort());
    expect(await signedUnder(repo, 'timestamp.json')).toEqual([L(online.timestamp)]);
    expect((await verify(repo, 'v2', root1, { signatures: undefined })).digest).toBe(v2.digest);

    // The service still signs the role delegated to its CI key, under both ids too.
    expect((await client.status(repo)).roles.find((r) => r.role === 'release')).toMatchObject({ signedBy: 'online', keyids: [L(online.ci[0] as Signer)] });
    const r1 = await pushImage(server.store, repo, 'release-1');
    expect(await client.publishTags(repo, 'release', { 'release-1': { ...r1 } })).toMatchObject({ role: 'release', version: 2 });
    expect(await signedUnder(repo, '2.release.json')).toEqual([C(online.ci[0] as Signer), L(online.ci[0] as Signer)].sort());
    expect((await verify(repo, 'release-1', root1, { signatures: undefined })).digest).toBe(r1.digest);
  });

  it('tufoci status flags each key listed under a legacy id, with its correct id and the repair command', async () => {
    const repo = 'wabbit-networks/legacy-status';
    await legacyRepository(repo);
    const json = await cli(status, [repo]);
    const resignTargets = `tufoci resign ${repo} --role targets --key <targets key>`;
    const rotate = `tufoci rotate root ${repo} --old-key <root key> --new-key <root key>`;
    expect(json['legacyKeyIds']).toEqual([
      { listedIn: 'root', roles: ['root'], keyid: L(signer('root')), expected: C(signer('root')), repair: rotate },
      { listedIn: 'root', roles: ['targets'], keyid: L(signer('targets')), expected: C(signer('targets')), repair: `${resignTargets}, then ${rotate}` },
      { listedIn: 'root', roles: ['snapshot'], keyid: L(online.snapshot), expected: C(online.snapshot), repair: rotate },
      { listedIn: 'root', roles: ['timestamp'], keyid: L(online.timestamp), expected: C(online.timestamp), repair: rotate },
      { listedIn: 'targets', roles: ['ci'], keyid: L(signer('ci')), expected: C(signer('ci')), repair: `tufoci resign ${repo} --role ci --key <ci key>, then ${resignTargets}` },
    ]);

    const text = await tufoci('status', repo);
    expect(text.code).toBe(0);
    const warnings = text.stdout.split('\n').filter((l) => l.startsWith('warning:'));
    expect(warnings).toHaveLength(5);
    expect(warnings[4]).toBe(
      `warning: targets lists the key of ci under key id ${L(signer('ci'))}, the id tufoci wrote before it followed the TUF specification; ` +
        `its key id is ${C(signer('ci'))}. Repair: tufoci resign ${repo} --role ci --key <ci key>, then ${resignTargets}`,
    );
    expect(warnings[0]).toContain(`root lists the key of root under key id ${L(signer('root'))}`);
  });

  it('refuses a new upload that lists a key under its legacy id: 422 BAD_KEY naming the key and its correct id', async () => {
    const repo = 'wabbit-networks/legacy-refused';
    await legacyRepository(repo);
    const before = await client.status(repo);
    const targets2 = legacyTargets({
      version: 2,
      expires: isoExpiry(Date.now() + 30 * DAY),
      delegations: [{ name: 'ci', keys: [signer('ci').public], threshold: 1, paths: ['v*'], terminating: true }],
    });
    const e = await clientRefusal(client.upload(repo, '2.targets.json', await signMetadata(targets2, [signer('targets')], { trustedIds: [L(signer('targets'))] })));
    expect(e).toMatchObject({ status: 422, code: 'BAD_KEY', detail: { role: 'targets.delegations', keyid: L(signer('ci')), expected: C(signer('ci')) } });
    expect(e.message).toBe(
      `targets.delegations: key id ${L(signer('ci'))} is the id tufoci wrote before it followed the TUF specification; list this key as ${C(signer('ci'))}`,
    );
    expect(await client.status(repo)).toEqual({ ...before, roles: before.roles.map((r) => ({ ...r, expiresInSeconds: expect.any(Number) })) });
  });

  it('repair: resign ci, resign targets, rotate root; status is clean and clients pinned to the legacy root walk to it and verify', async () => {
    const repo = 'wabbit-networks/legacy-repaired';
    const { root1, v1 } = await legacyRepository(repo);
    const stateDir = mkdtempSync(join(tmpdir(), 'tufoci-legacy-state-'));
    expect((await verify(repo, 'v1', root1, { stateDir })).tuf.root).toBe(1);

    // Out of order, each step refuses and says what comes first.
    const early = cli(resign, [repo, '--role', 'targets', '--key', key('targets')]);
    await expect(early).rejects.toBeInstanceOf(UsageError);
    await expect(early).rejects.toThrow(`would leave ci v1 unverifiable: signed under the legacy key id only. The holder of the key first runs: tufoci resign ${repo} --role ci --key <ci key>`);
    const earlyRoot = cli(rotateRoot, [repo, '--old-key', key('root'), '--new-key', key('root')]);
    await expect(earlyRoot).rejects.toThrow(`First run: tufoci resign ${repo} --role targets --key <targets key>`);
    // A delegate add that would only re-list ci is refused the same way.
    await expect(cli(delegate, ['add', repo, 'ci', '--key', join(dir, 'ci.pub'), '--paths', 'v*', '--terminating', '--targets-key', key('targets')])).rejects.toThrow('would leave ci v1 unverifiable');
    expect((await client.status(repo)).roles.find((r) => r.role === 'targets')?.version).toBe(1);

    // 1. The CI key re-signs ci: under the legacy id its delegation lists, and its correct id.
    const ci = await cli(resign, [repo, '--role', 'ci', '--key', key('ci')]);
    expect(ci['resigned']).toEqual([{ role: 'ci', version: 2, signedAs: [C(signer('ci')), L(signer('ci'))], relisted: [], timestampVersion: 2 }]);
    // 2. The targets key re-signs targets, re-listing ci under its correct id.
    const t = await cli(resign, [repo, '--role', 'targets', '--key', key('targets')]);
    expect(t['resigned']).toEqual([
      { role: 'targets', version: 2, signedAs: [C(signer('targets')), L(signer('targets'))], relisted: [{ keyid: L(signer('ci')), expected: C(signer('ci')) }], timestampVersion: 3 },
    ]);
    expect((await client.status(repo)).tombstones).toEqual([]);
    expect((await verify(repo, 'v1', root1)).tuf).toMatchObject({ root: 1, timestamp: 3 });
    // 3. Root 2 re-lists root, targets, snapshot and timestamp keys, signed under both ids of the root key.
    const r = await cli(rotateRoot, [repo, '--old-key', key('root'), '--new-key', key('root'), '--root-out', join(dir, 'repaired.2.root.json')]);
    expect(r).toMatchObject({ version: 2, previousVersion: 1, root: { keyids: [C(signer('root'))], threshold: 1 } });
    expect(r['warnings']).toBeUndefined();
    expect(await signedUnder(repo, '2.root.json')).toEqual([C(signer('root')), L(signer('root'))].sort());
    expect(await signedUnder(repo, 'timestamp.json')).toEqual([C(online.timestamp)]);

    const after = await cli(status, [repo]);
    expect(after['legacyKeyIds']).toEqual([]);
    const text = await tufoci('status', repo);
    expect(text.stdout).not.toContain('warning');

    // Clients pinned to the legacy root (fresh, with state from before, straight from storage) walk to root 2.
    const timestamp = (await client.status(repo)).roles.find((x) => x.role === 'timestamp')?.version;
    for (const result of [
      await verify(repo, 'v1', root1),
      await verify(repo, 'v1', root1, { stateDir }),
      await verifyImage({ store: server.store, repository: repo, tag: 'v1', trustedRoot: root1 }),
      await verify(repo, 'v1', readFileSync(join(dir, 'repaired.2.root.json'))),
    ]) {
      expect(result).toMatchObject({ digest: v1.digest, tuf: { root: 2, timestamp } });
    }
    // CI publishes on, now under its correct id alone.
    const v3 = await pushImage(server.store, repo, 'v3');
    const published = await publishTag(client, repo, 'ci', 'v3', { ...v3 }, signer('ci'), 30 * DAY);
    expect(await signedUnder(repo, `${published.version}.ci.json`)).toEqual([C(signer('ci'))]);
    expect((await verify(repo, 'v3', root1, { signatures: undefined })).digest).toBe(v3.digest);
    // The legacy signature of v1 still counts for plain-signature policies.
    expect((await verify(repo, 'v1', root1)).digest).toBe(v1.digest);
    // A ci version signed under the legacy id alone no longer counts.
    const legacyOnly = await signMetadata(buildTargets({ version: published.version + 1, expires: isoExpiry(Date.now() + DAY), targets: { v1, v3 } }), [asLegacySigner(signer('ci'))]);
    expect(await clientRefusal(client.upload(repo, `${published.version + 1}.ci.json`, legacyOnly))).toMatchObject({ status: 403, code: 'THRESHOLD_NOT_MET' });
    expect(parseMetadata('root', readFileSync(join(dir, 'repaired.2.root.json')), server.policy.roles.root.maxBytes).md.signed.roles['targets']?.keyIDs).toEqual([C(signer('targets'))]);
  });

  it('hash bins: resign --role <prefix> re-signs every bin under both ids; then resign targets re-lists the bins key', async () => {
    const repo = 'wabbit-networks/legacy-bins';
    const tags: Record<string, PushedImage> = {};
    for (const tag of ['v1', 'v2', 'v3', 'v4']) tags[tag] = await pushImage(server.store, repo, tag);
    const built = await buildLegacyRepository({
      ...legacyBase(),
      delegations: [],
      bins: { namePrefix: 'ci', count: 2, key: signer('ci'), tags },
    });
    await storeLegacyRepository(server.store, repo, built);
    const bins = [...built.files.keys()].filter((f) => /^1\.ci-[0-9a-f]+\.json$/.test(f)).map((f) => f.slice(2, -5)).sort();
    expect(bins.length).toBeGreaterThan(0);
    expect((await cli(status, [repo]))['legacyKeyIds']).toContainEqual(expect.objectContaining({ listedIn: 'targets', roles: ['ci-*'], repair: `tufoci resign ${repo} --role ci --key <ci key>, then tufoci resign ${repo} --role targets --key <targets key>` }));

    await expect(cli(resign, [repo, '--role', 'targets', '--key', key('targets')])).rejects.toThrow(/re-listing the key\(s\) of ci under their correct key ids would leave ci-[0-9a-f]+ v1(, ci-[0-9a-f]+ v1)? unverifiable/);
    const r = (await cli(resign, [repo, '--role', 'ci', '--key', key('ci')]))['resigned'] as Array<{ role: string; version: number; signedAs: string[] }>;
    expect(r.map((x) => [x.role, x.version, x.signedAs]).sort()).toEqual(bins.map((b) => [b, 2, [C(signer('ci')), L(signer('ci'))]]));
    const t = (await cli(resign, [repo, '--role', 'targets', '--key', key('targets')]))['resigned'] as Array<{ relisted: unknown[] }>;
    expect(t[0]?.relisted).toEqual([{ keyid: L(signer('ci')), expected: C(signer('ci')) }]);
    expect(((await cli(status, [repo]))['legacyKeyIds'] as Array<{ listedIn: string }>).map((l) => l.listedIn)).toEqual(['root', 'root', 'root', 'root']);
    for (const [tag, image] of Object.entries(tags)) expect((await verify(repo, tag, built.root1, { signatures: undefined })).digest).toBe(image.digest);
  });

  it('tufoci resign: --help, and usage errors with exit 2', async () => {
    const repo = 'wabbit-networks/legacy-usage';
    await legacyRepository(repo);
    expect((await tufoci('resign', '--help')).stdout).toMatch(/^usage: tufoci resign <repo> --role <role> --key K/);
    const noRole = await tufoci('resign', repo, '--key', key('ci'));
    expect(noRole).toMatchObject({ code: 2 });
    expect(noRole.stderr).toContain('--role is required');
    const wrongKey = await tufoci('resign', repo, '--role', 'ci', '--key', key('targets'));
    expect(wrongKey).toMatchObject({ code: 2 });
    expect(wrongKey.stderr).toContain(`--key ${key('targets')} (${C(signer('targets')).slice(0, 12)}) is not a key of ci of ${repo}; its keys are ${L(signer('ci')).slice(0, 12)}`);
    const noRoleFile = await tufoci('resign', repo, '--role', 'snapshot', '--key', key('ci'));
    expect(noRoleFile).toMatchObject({ code: 2 });
    expect(noRoleFile.stderr).toContain(`${repo} has no metadata for a targets role "snapshot"`);
  });
});
