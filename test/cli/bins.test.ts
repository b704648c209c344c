/**
 * Hash bins by default: `tufoci delegate add` asks the delegated role to spread
 * its tags over bins of its own (`x-tufoci-bins`, from --expected-tags), and
 * `tufoci publish` sets them up, moving tags a plain role already lists into
 * them. Every verify runs through the client core and the unmodified tuf-js
 * Updater (both must agree), on the embedded-default service.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type RunningServer } from '../../src/main.ts';
import { ServiceClient, ServiceClientError } from '../../src/client/service-client.ts';
import { VerifyError } from '../../src/client/verify-image.ts';
import { verifyBothClients as verifyImage } from '../support/differential.ts';
import { BINS_FIELD, BINS_SCOPE_FIELD, binsFor, buildTargets, isoExpiry, nextTargets, parseMetadata, signMetadata } from '../../src/engine/index.ts';
import { InMemorySigner, generateKeyFiles, loadSignerFile, type FileSigner } from '../../src/keys/index.ts';
import { delegate, init } from '../../src/cli/commands/owner.ts';
import { publishTag } from '../../src/cli/commands/publisher.ts';
import { pushImage, type PushedImage } from '../support/image.ts';
import { runCommandJson } from '../support/cli.ts';

const DAY = 86_400_000;
const dir = mkdtempSync(join(tmpdir(), 'tufoci-bins-'));
let server: RunningServer;
let client: ServiceClient;
let S: string[];
let ci: FileSigner;
let targetsKey: FileSigner;
const cli = (fn: (argv: string[]) => Promise<void>, argv: string[]): Promise<Record<string, unknown>> => runCommandJson(fn, argv, S);

beforeAll(async () => {
  server = await startServer({ dataDir: join(dir, 'data'), port: 0, logger: pino({ level: 'silent' }) });
  const token = readFileSync(join(dir, 'data', 'admin-token'), 'utf8').trim();
  client = new ServiceClient({ url: server.url, token });
  S = ['--server', server.url, '--token', token];
  for (const name of ['root', 'targets', 'ci']) await generateKeyFiles(join(dir, name), 'ed25519');
  ci = await loadSignerFile(join(dir, 'ci.key'));
  targetsKey = await loadSignerFile(join(dir, 'targets.key'));
});
afterAll(async () => server?.close());

async function repository(repo: string, expectedTags?: number): Promise<Uint8Array> {
  const root = join(dir, `${repo.replaceAll('/', '_')}.root.json`);
  await cli(init, [repo, '--root-key', join(dir, 'root.key'), '--targets-key', join(dir, 'targets.key'), '--root-out', root]);
  const extra = expectedTags === undefined ? [] : ['--expected-tags', String(expectedTags)];
  await cli(delegate, ['add', repo, 'ci', '--key', join(dir, 'ci.pub'), '--paths', 'v*', '--terminating', ...extra, '--targets-key', join(dir, 'targets.key')]);
  return readFileSync(root);
}

async function publish(repo: string, tags: string[]): Promise<Map<string, PushedImage>> {
  const images = new Map<string, PushedImage>();
  for (const tag of tags) {
    const image = await pushImage(server.store, repo, tag, `${repo} ${tag}`);
    images.set(tag, image);
    await publishTag(client, repo, 'ci', tag, { ...image }, ci, 30 * DAY);
  }
  return images;
}

const roleOf = async (repo: string, role: string) => {
  const status = await client.status(repo);
  const r = status.roles.find((x) => x.role === role);
  return r ? parseMetadata('targets', await client.metadata(repo, `${r.version}.${role}.json`), 4 << 20, role).md.signed : undefined;
};

/** The current snapshot's meta entries. */
const snapshotMeta = async (repo: string): Promise<Record<string, Record<string, unknown>>> => {
  const v = (await client.status(repo)).roles.find((r) => r.role === 'snapshot')?.version as number;
  return (JSON.parse(Buffer.from(await client.metadata(repo, `${v}.snapshot.json`)).toString()) as { signed: { meta: Record<string, Record<string, unknown>> } }).signed.meta;
};

describe('hash bins by default', () => {
  it('picks a bin count from the expected size that makes a cold client download the least', () => {
    expect([10, 64, 65, 1000, 10_000, 100_000, 1_000_000].map((n) => binsFor(n, 16_384))).toEqual([1, 1, 8, 32, 128, 512, 1024]);
    expect(binsFor(1_000_000, 512)).toBe(512);
  });

  it('delegate add asks ci for bins (1,000 tags expected: 32); publish sets them up; each tag lands in its bin and verifies', async () => {
    const repo = 'bins/default';
    const pin = await repository(repo);
    const top = await roleOf(repo, 'targets');
    expect(top?.delegations?.roles?.['ci']?.unrecognizedFields?.[BINS_FIELD]).toBe(32);
    const images = await publish(repo, ['v1', 'v2', 'v3']);
    const ciRole = await roleOf(repo, 'ci');
    expect(ciRole?.delegations?.succinctRoles).toMatchObject({ numberOfBins: 32, namePrefix: 'ci', threshold: 1 });
    expect(Object.keys(ciRole?.targets ?? {})).toEqual([]);
    // The bins are signed by a key derived from the CI key for this repository, and ci says so:
    // the snapshot lists them by version alone, and every other file by length and hash.
    const binsKey = ci.derive(`bins\0${repo}`) as InMemorySigner;
    expect(binsKey.keyid).not.toBe(ci.keyid);
    expect(ciRole?.delegations?.succinctRoles?.keyIDs).toEqual([binsKey.keyid]);
    expect(ciRole?.unrecognizedFields?.[BINS_SCOPE_FIELD]).toBe(repo);
    const meta = await snapshotMeta(repo);
    const binEntries = Object.entries(meta).filter(([f]) => /^ci-[0-9a-f]+\.json$/.test(f));
    expect(binEntries.length).toBeGreaterThan(0);
    for (const [f, entry] of binEntries) expect(entry, f).toEqual({ version: expect.any(Number) });
    for (const f of ['targets.json', 'ci.json']) expect(meta[f], f).toMatchObject({ length: expect.any(Number), hashes: { sha256: expect.stringMatching(/^[0-9a-f]{64}$/) } });
    for (const [tag, image] of images) {
      const bin = ciRole?.delegations?.succinctRoles?.getRoleForTarget(tag) as string;
      expect(Object.keys((await roleOf(repo, bin))?.targets ?? {})).toContain(tag);
      expect((await verifyImage({ store: server.store, repository: repo, tag, trustedRoot: pin })).digest).toBe(image.digest);
    }
    // A tag nobody published: its bin may have no metadata yet; both clients say it is not signed.
    const absent = await verifyImage({ store: server.store, repository: repo, tag: 'v404', trustedRoot: pin }).catch((e: unknown) => e);
    expect(absent, String(absent)).toBeInstanceOf(VerifyError);
    expect((absent as VerifyError).code).toBe('NOT_IN_TUF');
  });

  it('two repositories whose CI key is one key: a registry serving one repository\'s bin as the other\'s is refused by both clients, though the snapshot pins neither by hash', async () => {
    const [a, b] = ['bins/shared-a', 'bins/shared-b'];
    await repository(a);
    const pinB = await repository(b);
    await publish(a, ['v1']);
    const real = (await publish(b, ['v1'])).get('v1') as PushedImage;
    const bin = (await roleOf(b, 'ci'))?.delegations?.succinctRoles?.getRoleForTarget('v1') as string;
    const version = (await client.status(b)).roles.find((r) => r.role === bin)?.version as number;
    expect((await client.status(a)).roles.find((r) => r.role === bin)?.version).toBe(version); // same file name in both
    expect((await snapshotMeta(b))[`${bin}.json`]).toEqual({ version });
    expect((await verifyImage({ store: server.store, repository: b, tag: 'v1', trustedRoot: pinB })).digest).toBe(real.digest);
    // The registry swaps in A's bin (same name, same version, signed by a key derived from the same CI key).
    const file = `${version}.${bin}.json`;
    const forged = await server.store.getManifest(`${a}/tuf`, file, 1 << 16);
    const layer = (JSON.parse(Buffer.from(forged.bytes).toString()) as { layers: Array<{ digest: string }> }).layers[0]?.digest as string;
    await server.store.putBlob(`${b}/tuf`, await server.store.getBlob(`${a}/tuf`, layer, 1 << 20));
    await server.store.putManifest(`${b}/tuf`, file, forged.bytes, forged.mediaType);
    const refused = await verifyImage({ store: server.store, repository: b, tag: 'v1', trustedRoot: pinB }).catch((e: unknown) => e);
    expect(refused, String(refused)).toBeInstanceOf(VerifyError);
    // Refused by TUF for the bin's signature (with one key for both repositories' bins, TUF would
    // take A's tags, and only a missing image could stop the verify).
    expect((refused as VerifyError).code).toBe('TUF_REFUSED');
    expect((refused as VerifyError).message).toMatch(new RegExp(`${bin} is signed by 0 of the 1 key`));
  });

  it('ci may claim bins of its own only for its repository, with a key no other role uses', async () => {
    const repo = 'bins/claims';
    await repository(repo);
    await publish(repo, ['v1']);
    const current = (await roleOf(repo, 'ci')) as NonNullable<Awaited<ReturnType<typeof roleOf>>>;
    const tryCi = async (edit: (json: Record<string, unknown>) => void) => {
      const next = nextTargets(current, current.expires, edit);
      return client.upload(repo, `${next.version}.ci.json`, await signMetadata(next, [ci])).catch((e: unknown) => e);
    };
    const other = await tryCi((json) => void (json[BINS_SCOPE_FIELD] = 'bins/elsewhere'));
    expect(other).toBeInstanceOf(ServiceClientError);
    expect((other as ServiceClientError).code).toBe('BAD_DELEGATION');
    expect((other as ServiceClientError).message).toMatch(/must name this repository/);
    // Bins keyed by the CI key itself (which signs ci, and may sign other repositories' bins too).
    const shared = await tryCi((json) => {
      const d = json['delegations'] as { keys: Record<string, unknown>; succinct_roles: { keyids: string[] } };
      d.keys = { [ci.keyid]: ci.public };
      d.succinct_roles.keyids = [ci.keyid];
    });
    expect(shared).toBeInstanceOf(ServiceClientError);
    expect((shared as ServiceClientError).message).toMatch(/also used by another role/);
    const plain = await roleOf(repo, 'ci');
    expect(plain?.version).toBe(current.version); // nothing changed
  });

  it('a plain role (--expected-tags 0) re-delegated with bins: the next publish moves its tags into bins, and every tag verifies throughout', async () => {
    const repo = 'bins/migrate';
    const pin = await repository(repo, 0);
    expect((await roleOf(repo, 'targets'))?.delegations?.roles?.['ci']?.unrecognizedFields?.[BINS_FIELD]).toBeUndefined();
    const before = await publish(repo, ['v1', 'v2', 'v3', 'v4']);
    expect(Object.keys((await roleOf(repo, 'ci'))?.targets ?? {}).sort()).toEqual(['v1', 'v2', 'v3', 'v4']);
    await cli(delegate, ['add', repo, 'ci', '--key', join(dir, 'ci.pub'), '--paths', 'v*', '--terminating', '--expected-tags', '5000', '--targets-key', join(dir, 'targets.key')]);
    const after = await publish(repo, ['v5']);
    const ciRole = await roleOf(repo, 'ci');
    expect(ciRole?.delegations?.succinctRoles?.numberOfBins).toBe(binsFor(5000, 16_384));
    expect(Object.keys(ciRole?.targets ?? {})).toEqual([]);
    for (const [tag, image] of [...before, ...after]) {
      expect((await verifyImage({ store: server.store, repository: repo, tag, trustedRoot: pin })).digest, tag).toBe(image.digest);
    }
  });

  it('a role the service holds, asked for bins (--online --expected-tags): the service moves its tags into bins in one commit and signs new tags into them; grants are refused for it', async () => {
    const repo = 'bins/online';
    const root = join(dir, 'online.root.json');
    await cli(init, [repo, '--root-key', join(dir, 'root.key'), '--targets-key', join(dir, 'targets.key'), '--root-out', root]);
    const pin = readFileSync(root);
    const T = ['--targets-key', join(dir, 'targets.key')];
    await cli(delegate, ['add', repo, 'ci', '--online', '--paths', 'v*', ...T]); // --online: no bins unless asked
    const images = new Map<string, PushedImage>();
    const put = async (tags: string[]): Promise<void> => {
      const batch: Record<string, PushedImage> = {};
      for (const tag of tags) batch[tag] = await pushImage(server.store, repo, tag, `${repo} ${tag}`);
      for (const [t, i] of Object.entries(batch)) images.set(t, i);
      await client.publishTags(repo, 'ci', Object.fromEntries(Object.entries(batch).map(([t, i]) => [t, { ...i }])));
    };
    await put(['v1', 'v2', 'v3']);
    expect(Object.keys((await roleOf(repo, 'ci'))?.targets ?? {}).sort()).toEqual(['v1', 'v2', 'v3']);
    await cli(delegate, ['add', repo, 'ci', '--online', '--paths', 'v*', '--expected-tags', '2000', ...T]);
    const before = (await client.status(repo)).roles.find((r) => r.role === 'timestamp')?.version ?? 0;
    await put(['v4', 'v5']);
    expect((await client.status(repo)).roles.find((r) => r.role === 'timestamp')?.version).toBe(before + 1); // one commit
    const ciRole = await roleOf(repo, 'ci');
    expect(ciRole?.delegations?.succinctRoles?.numberOfBins).toBe(binsFor(2000, 16_384));
    expect(Object.keys(ciRole?.targets ?? {})).toEqual([]);
    for (const [tag, image] of images) expect((await verifyImage({ store: server.store, repository: repo, tag, trustedRoot: pin })).digest, tag).toBe(image.digest);
    const grant = await client.createGrant(repo, { role: 'ci', paths: ['v*'], ttlSeconds: 600 }).catch((e: unknown) => e);
    expect(grant).toBeInstanceOf(ServiceClientError);
    expect((grant as ServiceClientError).message).toMatch(/--expected-tags 0/);
  });

  it('the service refuses a bins request that is not a power of two within the policy', async () => {
    const repo = 'bins/refused';
    await repository(repo, 0);
    const top = (await roleOf(repo, 'targets')) as NonNullable<Awaited<ReturnType<typeof roleOf>>>;
    for (const bad of [3, 1, 1 << 20, 'many']) {
      const next = nextTargets(top, top.expires, (json) => {
        const roles = (json['delegations'] as { roles: Array<Record<string, unknown>> }).roles;
        (roles[0] as Record<string, unknown>)[BINS_FIELD] = bad;
      });
      const e = await client.upload(repo, `${next.version}.targets.json`, await signMetadata(next, [targetsKey])).catch((x: unknown) => x);
      expect(e, String(bad)).toBeInstanceOf(ServiceClientError);
      expect((e as ServiceClientError).code).toBe('BAD_DELEGATION');
    }
  });
});

describe('the service bins a role it holds once it outgrows one file', () => {
  // A policy whose roles list at most 8 targets, so that "outgrows" takes 9 tags, not 4,097.
  let small: RunningServer;
  let smallClient: ServiceClient;
  let SS: string[];
  beforeAll(async () => {
    const policy = JSON.parse(readFileSync(new URL('../../roles/default.json', import.meta.url), 'utf8')) as { limits: Record<string, number> };
    policy.limits['maxTargetsPerRole'] = 8;
    const policyFile = join(dir, 'small-roles.json');
    writeFileSync(policyFile, JSON.stringify(policy));
    small = await startServer({ dataDir: join(dir, 'small'), port: 0, policyFile, logger: pino({ level: 'silent' }) });
    const token = readFileSync(join(dir, 'small', 'admin-token'), 'utf8').trim();
    smallClient = new ServiceClient({ url: small.url, token });
    SS = ['--server', small.url, '--token', token];
  });
  afterAll(async () => small?.close());

  const put = async (repo: string, tags: string[], images: Map<string, PushedImage>): Promise<void> => {
    const batch: Record<string, PushedImage> = {};
    for (const tag of tags) batch[tag] = await pushImage(small.store, repo, tag, `${repo} ${tag}`);
    for (const [t, i] of Object.entries(batch)) images.set(t, i);
    await smallClient.publishTags(repo, 'ci', Object.fromEntries(Object.entries(batch).map(([t, i]) => [t, { ...i }])));
  };
  const ciOf = async (repo: string) => {
    const r = (await smallClient.status(repo)).roles.find((x) => x.role === 'ci')!;
    return parseMetadata('targets', await smallClient.metadata(repo, `${r.version}.ci.json`), 4 << 20, 'ci').md.signed;
  };

  it('service-signed tags past the limit go into hash bins the service sets up itself (no request, no refusal); every tag verifies; grants then are refused', async () => {
    const repo = 'bins/auto';
    const root = join(dir, 'auto.root.json');
    await runCommandJson(init, [repo, '--root-key', join(dir, 'root.key'), '--targets-key', join(dir, 'targets.key'), '--root-out', root], SS);
    await runCommandJson(delegate, ['add', repo, 'ci', '--online', '--paths', 'v*', '--targets-key', join(dir, 'targets.key')], SS);
    const pin = readFileSync(root);
    const images = new Map<string, PushedImage>();
    await put(repo, ['v1', 'v2', 'v3', 'v4', 'v5', 'v6', 'v7', 'v8'], images);
    expect(Object.keys((await ciOf(repo)).targets)).toHaveLength(8);
    await put(repo, ['v9', 'v10'], images);
    const ci = await ciOf(repo);
    expect(ci.delegations?.succinctRoles?.numberOfBins).toBeGreaterThanOrEqual(2);
    expect(Object.keys(ci.targets)).toEqual([]);
    await put(repo, ['v11'], images); // later tags go straight into the bins
    for (const [tag, image] of images) expect((await verifyImage({ store: small.store, repository: repo, tag, trustedRoot: pin })).digest, tag).toBe(image.digest);
    const grant = await smallClient.createGrant(repo, { role: 'ci', paths: ['v*'], ttlSeconds: 600 }).catch((e: unknown) => e);
    expect(grant).toBeInstanceOf(ServiceClientError);
  });

  it('a role with job roles delegated cannot move to bins: past the limit the tag is refused, naming the fix', async () => {
    const repo = 'bins/jobs';
    await runCommandJson(init, [repo, '--root-key', join(dir, 'root.key'), '--targets-key', join(dir, 'targets.key'), '--root-out', join(dir, 'jobs.root.json')], SS);
    await runCommandJson(delegate, ['add', repo, 'ci', '--online', '--paths', 'v*', '--targets-key', join(dir, 'targets.key')], SS);
    const images = new Map<string, PushedImage>();
    await put(repo, ['v1', 'v2', 'v3', 'v4', 'v5', 'v6', 'v7', 'v8'], images);
    const grant = await smallClient.createGrant(repo, { role: 'ci', paths: ['vjob*'], ttlSeconds: 600 });
    const key = InMemorySigner.generate();
    const job = await smallClient.withToken(grant.token).redeemGrant(repo, key.public);
    const w1 = await pushImage(small.store, repo, 'vjob1', 'job build');
    const jobRole = buildTargets({ version: 1, expires: isoExpiry(Date.now() + 30 * 60_000), targets: { vjob1: { digest: w1.digest, size: w1.size, mediaType: w1.mediaType } } });
    await smallClient.withToken(grant.token).upload(repo, `1.${job.jobRole}.json`, await signMetadata(jobRole, [key]));
    expect(Object.keys((await ciOf(repo)).delegations?.roles ?? {})).toEqual([job.jobRole]);
    const e = await put(repo, ['v9'], images).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(ServiceClientError);
    expect((e as ServiceClientError).message).toMatch(/above the limit of 8/);
    expect(Object.keys((await ciOf(repo)).targets)).toHaveLength(8);
  });
});
