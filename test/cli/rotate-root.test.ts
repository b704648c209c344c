/**
 * Root rotation end to end on the embedded default (`tufoci serve`'s
 * composition, in this process): `tufoci rotate root` signs and uploads root
 * N+1; clients with the unmodified tuf-js Updater (through `verifyImage`)
 * that pinned an older root follow the chain; roots the chain rules forbid are
 * refused by the service and change nothing; a client further behind than
 * tuf-js's `maxRootRotations` stops at an intermediate root.
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
import { buildRoot, buildTargets, isoExpiry, parseMetadata, signMetadata, verifyThreshold } from '../../src/engine/index.ts';
import { generateKeyFiles, loadSignerFile, type FileSigner, type Signer } from '../../src/keys/index.ts';
import { UsageError } from '../../src/cli/common.ts';
import { delegate, init } from '../../src/cli/commands/owner.ts';
import { nextRoot, roleKeysOf, rotateRoot } from '../../src/cli/commands/rotate.ts';
import { pushImage, type PushedImage } from '../support/image.ts';
import { clientRefusal, runCommandJson, runTufoci, type CliResult } from '../support/cli.ts';

const DAY = 86_400_000;
const dir = mkdtempSync(join(tmpdir(), 'tufoci-rotate-'));
let server: RunningServer;
let token: string;
let client: ServiceClient;
let S: string[]; // --server/--token flags
const signers = new Map<string, FileSigner>();

const key = (name: string): string => join(dir, `${name}.key`);
const pub = (name: string): string => join(dir, `${name}.pub`);
const id = (name: string): string => (signers.get(name) as FileSigner).keyid;
const signer = (name: string): FileSigner => signers.get(name) as FileSigner;

const cli = (fn: (argv: string[]) => Promise<void>, argv: string[]): Promise<Record<string, unknown>> => runCommandJson(fn, argv, S);

/** `tufoci …` as a child process (the real entry point and its exit codes). */
const tufoci = (...args: string[]): Promise<CliResult> => runTufoci(args, { cwd: dir, env: { ...process.env, TUFOCI_SERVER: server.url, TUFOCI_TOKEN: token } });

/** tufoci init (root keys, threshold) + delegate add ci; returns the pinned 1.root.json. */
async function createRepo(repo: string, rootKeys: string[], threshold = 1): Promise<Uint8Array> {
  const rootOut = join(dir, `${repo.replace(/\//g, '_')}.1.root.json`);
  await cli(init, [repo, ...rootKeys.flatMap((k) => ['--root-key', key(k)]), '--threshold', String(threshold), '--targets-key', key('targets'), '--root-out', rootOut]);
  await cli(delegate, ['add', repo, 'ci', '--key', pub('ci'), '--paths', 'v*', '--terminating', '--targets-key', key('targets')]);
  return readFileSync(rootOut);
}

/** CI: version `version` of the delegated role listing `tags`, signed and uploaded. */
async function publishCi(repo: string, version: number, tags: Record<string, PushedImage>, by: Signer[] = [signer('ci')]) {
  const bytes = await signMetadata(buildTargets({ version, expires: isoExpiry(Date.now() + 30 * DAY), targets: tags }), by);
  return client.upload(repo, `${version}.ci.json`, bytes);
}

function verify(repository: string, tag: string, trustedRoot: Uint8Array, extra: Partial<VerifyImageOptions> = {}) {
  return verifyImage({ store: server.store, repository, tag, trustedRoot, serviceUrl: server.url, ...extra });
}

beforeAll(async () => {
  server = await startServer({ dataDir: join(dir, 'data'), port: 0, logger: pino({ level: 'silent' }) });
  token = readFileSync(join(dir, 'data', 'admin-token'), 'utf8').trim();
  client = new ServiceClient({ url: server.url, token });
  S = ['--server', server.url, '--token', token];
  const kinds: Array<[string, 'ed25519' | 'ecdsa-p256']> = [
    ['root1', 'ed25519'], ['root2', 'ed25519'], ['root3', 'ecdsa-p256'], ['root4', 'ecdsa-p256'], ['root5', 'ecdsa-p256'],
    ['rootA', 'ed25519'], ['rootB', 'ed25519'], ['rootC', 'ed25519'], ['rootD', 'ed25519'], ['attacker', 'ed25519'],
    ['c1', 'ed25519'], ['c2', 'ed25519'], ['c3', 'ed25519'], ['c4', 'ed25519'], ['c5', 'ed25519'],
    ['targets', 'ed25519'], ['targets2', 'ecdsa-p256'], ['ci', 'ed25519'],
  ];
  for (const [name, type] of kinds) {
    await generateKeyFiles(join(dir, name), type);
    signers.set(name, await loadSignerFile(key(name)));
  }
});
afterAll(async () => server?.close());

describe('tufoci rotate root', () => {
  it('a client that pinned 1.root.json verifies after three rotations: 1 → 2 keys (threshold 2), ed25519 → ECDSA P-256, then 1 signing key', async () => {
    const repo = 'wabbit-networks/rotated';
    const pinned = await createRepo(repo, ['root1']);
    const v1 = await pushImage(server.store, repo, 'v1');
    await publishCi(repo, 1, { v1 });
    const state = mkdtempSync(join(tmpdir(), 'tufoci-rotate-state-'));
    expect((await verify(repo, 'v1', pinned, { stateDir: state })).tuf.root).toBe(1);

    const r2 = await cli(rotateRoot, [repo, '--old-key', key('root1'), '--new-key', key('root1'), '--new-key', key('root2'), '--threshold', '2', '--root-out', join(dir, 'rotated.2.root.json')]);
    expect(r2).toMatchObject({ role: 'root', version: 2, previousVersion: 1, root: { keyids: [id('root1'), id('root2')], threshold: 2 }, rootOut: join(dir, 'rotated.2.root.json') });
    const r3 = await cli(rotateRoot, [repo, '--old-key', key('root1'), '--old-key', key('root2'), '--new-key', key('root3'), '--new-key', key('root4'), '--threshold', '2']);
    expect(r3).toMatchObject({ version: 3, root: { keyids: [id('root3'), id('root4')], threshold: 2 } });
    const r4 = await cli(rotateRoot, [repo, '--old-key', key('root3'), '--old-key', key('root4'), '--new-key', key('root3'), '--new-pub', pub('root5'), '--threshold', '1']);
    expect(r4).toMatchObject({ version: 4, root: { keyids: [id('root3'), id('root5')], threshold: 1 } });

    // Root v3 switched the key type; v4 is signed by both v3 keys and by root3 alone of its own.
    const v3 = JSON.parse(new TextDecoder().decode(await client.metadata(repo, '3.root.json'))) as { signed: { keys: Record<string, { keytype: string; scheme: string }> } };
    expect(v3.signed.keys[id('root3')]).toMatchObject({ keytype: 'ecdsa', scheme: 'ecdsa-sha2-nistp256' });
    const v4 = JSON.parse(new TextDecoder().decode(await client.metadata(repo, '4.root.json'))) as { signatures: Array<{ keyid: string }> };
    expect(v4.signatures.map((s) => s.keyid).sort()).toEqual([id('root3'), id('root4')].sort());

    // Every kind of client follows: the one that kept state, a fresh one pinned to v1 (through the
    // service and straight from the OCI layout), and one pinned to the saved v2.
    const timestamp = (await client.status(repo)).roles.find((r) => r.role === 'timestamp')?.version;
    for (const r of [
      await verify(repo, 'v1', pinned, { stateDir: state }),
      await verify(repo, 'v1', pinned),
      await verifyImage({ store: server.store, repository: repo, tag: 'v1', trustedRoot: pinned }),
      await verify(repo, 'v1', readFileSync(join(dir, 'rotated.2.root.json'))),
    ]) {
      expect(r).toMatchObject({ digest: v1.digest, tuf: { root: 4, timestamp } });
    }
    const v2 = await pushImage(server.store, repo, 'v2');
    await publishCi(repo, 2, { v1, v2 });
    expect((await verify(repo, 'v2', pinned)).digest).toBe(v2.digest);
  });

  it('refuses, and changes nothing for, a root signed only by the new keys, only by the old ones, or skipping a version', async () => {
    const repo = 'wabbit-networks/refusals';
    const pinned = await createRepo(repo, ['root1']);
    const v1 = await pushImage(server.store, repo, 'v1');
    await publishCi(repo, 1, { v1 });
    const before = await client.status(repo);
    const current = parseMetadata('root', pinned, server.policy.roles.root.maxBytes).md.signed;
    const expires = isoExpiry(Date.now() + 300 * DAY);
    const toRoot2 = nextRoot(current, expires, { root: { keys: [signer('root2').public], threshold: 1 } });

    const onlyNew = await clientRefusal(client.upload(repo, '2.root.json', await signMetadata(toRoot2, [signer('root2')])));
    expect(onlyNew).toMatchObject({ status: 403, code: 'THRESHOLD_NOT_MET' });
    expect(onlyNew.message).toBe(`root (trusted keys): 0 of 1 required signatures; missing ${id('root1').slice(0, 12)}; 1 signature(s) by keys not authorized for root (trusted keys)`);

    const onlyOld = await clientRefusal(client.upload(repo, '2.root.json', await signMetadata(toRoot2, [signer('root1')])));
    expect(onlyOld).toMatchObject({ status: 403, code: 'THRESHOLD_NOT_MET' });
    expect(onlyOld.message).toBe(`root (new keys): 0 of 1 required signatures; missing ${id('root2').slice(0, 12)}; 1 signature(s) by keys not authorized for root (new keys)`);

    const skip = buildRoot({ ...{ root: roleKeysOf(current, 'root') }, targets: roleKeysOf(current, 'targets'), snapshot: roleKeysOf(current, 'snapshot'), timestamp: roleKeysOf(current, 'timestamp'), version: 3, expires });
    const skipped = await clientRefusal(client.upload(repo, '3.root.json', await signMetadata(skip, [signer('root1')])));
    expect(skipped).toMatchObject({ status: 409, code: 'VERSION_SKIP' });
    expect(skipped.message).toBe('root version 3 skips ahead; expected 2');

    // The CLI refuses old keys that are not root keys of the current root, before signing anything.
    const stranger = cli(rotateRoot, [repo, '--old-key', key('root2'), '--new-key', key('root2')]);
    await expect(stranger).rejects.toBeInstanceOf(UsageError);
    await expect(stranger).rejects.toThrow(`--old-key ${key('root2')} (${id('root2').slice(0, 12)}) is not a root key of root v1 of ${repo}; its root keys are ${id('root1').slice(0, 12)}`);

    // Nothing changed: same versions, no 2.root.json or 3.root.json, clients still at root v1.
    expect(await client.status(repo)).toEqual({ ...before, roles: before.roles.map((r) => ({ ...r, expiresInSeconds: expect.any(Number) })) });
    for (const f of ['2.root.json', '3.root.json']) expect(await clientRefusal(client.metadata(repo, f))).toMatchObject({ status: 404 });
    expect((await verify(repo, 'v1', pinned)).tuf.root).toBe(1);
  });

  it('a client further behind than maxRootRotations stops at an intermediate root; it catches up over runs with state, or by pinning a newer root', async () => {
    const repo = 'wabbit-networks/far-behind';
    const pinned = await createRepo(repo, ['c1']);
    const v1 = await pushImage(server.store, repo, 'v1');
    await publishCi(repo, 1, { v1 });
    for (let i = 1; i <= 4; i++) await cli(rotateRoot, [repo, '--old-key', key(`c${i}`), '--new-key', key(`c${i + 1}`)]);

    // Default limit (256): the whole chain. Limit 2: root v3, which still names the same online and
    // targets keys, so the tag verifies under it; with state, the next run walks on to v5.
    expect((await verify(repo, 'v1', pinned)).tuf.root).toBe(5);
    expect((await verify(repo, 'v1', pinned, { maxRootRotations: 2 })).tuf.root).toBe(3);
    const state = mkdtempSync(join(tmpdir(), 'tufoci-rotate-state-'));
    const walks: number[] = [];
    for (let i = 0; i < 3; i++) walks.push((await verify(repo, 'v1', pinned, { maxRootRotations: 2, stateDir: state })).tuf.root);
    expect(walks).toEqual([3, 5, 5]);

    // Root v6 replaces the targets key (the old one lost: root first, targets re-signed right after).
    const r6 = await cli(rotateRoot, [repo, '--old-key', key('c5'), '--new-key', key('c5'), '--targets-key-new', key('targets2'), '--root-out', join(dir, 'far-behind.6.root.json')]);
    expect(r6).toMatchObject({ version: 6, targets: { version: 3, keyids: [id('targets2')], threshold: 1 } });
    expect(r6['warnings']).toEqual(['targets.json is not signed by the targets keys of the new root: upload a new targets version signed by them']);

    // A client that cannot reach v6 in one run now meets targets signed by a key its root does not know.
    const stuck = verify(repo, 'v1', pinned, { maxRootRotations: 2 });
    await expect(stuck).rejects.toMatchObject({ code: 'TUF_REFUSED' });
    await expect(stuck).rejects.toThrow('TUF metadata of wabbit-networks/far-behind refused: targets is signed by 0 of the 1 key(s) the trusted metadata requires');
    expect((await verify(repo, 'v1', pinned, { maxRootRotations: 2, stateDir: state })).tuf.root).toBe(6);
    expect((await verify(repo, 'v1', readFileSync(join(dir, 'far-behind.6.root.json')), { maxRootRotations: 2 })).tuf.root).toBe(6);
    expect((await verify(repo, 'v1', pinned)).tuf.root).toBe(6);
  });

  it('replaces the targets key with no gap: targets signed by the old and new keys goes first; the old key alone signs nothing after', async () => {
    const repo = 'wabbit-networks/targets-rotated';
    const pinned = await createRepo(repo, ['root1']);
    const v1 = await pushImage(server.store, repo, 'v1');
    await publishCi(repo, 1, { v1 });
    const r = await cli(rotateRoot, [repo, '--old-key', key('root1'), '--new-key', key('root1'), '--targets-key-new', key('targets2'), '--targets-key', key('targets')]);
    expect(r).toMatchObject({ version: 2, targets: { version: 3, keyids: [id('targets2')] } });
    expect(r['warnings']).toBeUndefined();

    // targets v3 verifies under root v1 and root v2: whichever root a client holds, no gap.
    const t3 = parseMetadata('targets', await client.metadata(repo, '3.targets.json'), server.policy.roles.targets.maxBytes);
    for (const v of [1, 2]) {
      const root = parseMetadata('root', await client.metadata(repo, `${v}.root.json`), server.policy.roles.root.maxBytes).md.signed;
      expect(verifyThreshold('targets', t3.signedBytes, t3.signatures, root.roles['targets'] as { keyIDs: string[]; threshold: number }, root.keys).ok).toBe(true);
    }
    expect((await verify(repo, 'v1', pinned)).tuf).toMatchObject({ root: 2 });

    const oldKey = await clientRefusal(cli(delegate, ['add', repo, 'other', '--key', pub('ci'), '--paths', 'x*', '--targets-key', key('targets')]));
    expect(oldKey).toMatchObject({ status: 403, code: 'THRESHOLD_NOT_MET' });
    expect(oldKey.message).toMatch(/^targets: 0 of 1 required signatures; missing [0-9a-f]{12}/);
    await cli(delegate, ['add', repo, 'other', '--key', pub('ci'), '--paths', 'x*', '--targets-key', key('targets2')]);
    expect((await verify(repo, 'v1', pinned)).digest).toBe(v1.digest);
  });

  it('root key compromise: a threshold of the remaining keys rotates the compromised one out; it then signs nothing', async () => {
    const repo = 'wabbit-networks/compromised';
    const pinned = await createRepo(repo, ['rootA', 'rootB', 'rootC'], 2);
    const v1 = await pushImage(server.store, repo, 'v1');
    await publishCi(repo, 1, { v1 });
    const current = parseMetadata('root', pinned, server.policy.roles.root.maxBytes).md.signed;
    const expires = isoExpiry(Date.now() + 300 * DAY);
    const attackerRoot = (version: number) =>
      buildRoot({ version, expires, root: { keys: [signer('rootC').public, signer('attacker').public], threshold: 1 }, targets: roleKeysOf(current, 'targets'), snapshot: roleKeysOf(current, 'snapshot'), timestamp: roleKeysOf(current, 'timestamp') });

    // rootC alone cannot rotate (through the CLI or by hand).
    const alone = await tufoci('rotate', 'root', repo, '--old-key', key('rootC'), '--new-key', key('attacker'));
    expect(alone.code).toBe(2);
    expect(alone.stderr).toContain(`tufoci: root v1 of ${repo} requires 2 root signatures; 1 --old-key given`);
    const forged = await clientRefusal(client.upload(repo, '2.root.json', await signMetadata(attackerRoot(2), [signer('rootC'), signer('attacker')])));
    expect(forged).toMatchObject({ status: 403, code: 'THRESHOLD_NOT_MET' });
    expect(forged.message).toMatch(/^root \(trusted keys\): 1 of 2 required signatures/);

    // The owners rotate rootC out with rootA + rootB (the real command, as an operator runs it).
    const out = await tufoci('rotate', 'root', repo, '--old-key', key('rootA'), '--old-key', key('rootB'), '--new-key', key('rootA'), '--new-key', key('rootB'), '--new-key', key('rootD'), '--threshold', '2');
    expect(out.code, out.stderr).toBe(0);
    expect(out.stdout).toContain(`rotated ${repo}: root v1 → v2 (2 of 3 keys: ${[id('rootA'), id('rootB'), id('rootD')].map((k) => k.slice(0, 12)).join(', ')})`);

    const after = await clientRefusal(client.upload(repo, '3.root.json', await signMetadata(attackerRoot(3), [signer('rootC'), signer('attacker')])));
    expect(after).toMatchObject({ status: 403, code: 'THRESHOLD_NOT_MET' });
    expect(after.message).toMatch(/^root \(trusted keys\): 0 of 2 required signatures; missing .*; 2 signature\(s\) by keys not authorized/);
    expect((await verify(repo, 'v1', pinned)).tuf.root).toBe(2);
  });

  it('--help and usage errors', async () => {
    const help = await tufoci('rotate', 'root', '--help');
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^usage: tufoci rotate root <repo> --old-key K/);
    expect((await tufoci('rotate', '--help')).stdout).toMatch(/tufoci rotate online <repo>/);
    expect((await tufoci('--help')).stdout).toMatch(/\n {2}rotate {5}rotate a repository's root keys/);
    const missing = await tufoci('rotate', 'root', 'wabbit-networks/rotated', '--new-key', key('root1'));
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/--old-key is required/);
    expect((await tufoci('rotate', 'sideways')).stderr).toMatch(/unknown rotation "sideways"/);
  });
});
