/**
 * Job-scoped CI keys end to end, on a real registry and the embedded-default
 * service with an injected clock: the owner delegates `ci` to the service's
 * CI key once (`delegate add --online`); an operator issues a grant; a CI job
 * publishes with a key it generated for itself (`publish --ephemeral`); when
 * the grant ends the service folds the job's tag into `ci` and the job key
 * signs nothing more. Checked through the client library (verifyImage, with
 * the unmodified tuf-js Updater inside).
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type RunningServer } from '../../src/main.ts';
import { RegistryStore } from '../../src/storage/index.ts';
import { ServiceClient, ServiceClientError } from '../../src/client/service-client.ts';
import { VerifyError } from '../../src/client/verify-image.ts';
// Every verify runs through the client core and the unmodified tuf-js Updater; both must agree.
import { verifyBothClients as verifyImage } from '../support/differential.ts';
import { buildTargets, isoExpiry, signMetadata } from '../../src/engine/index.ts';
import { InMemorySigner } from '../../src/keys/index.ts';
import { startRegistry, type RegistryServer } from '../support/registry-server.ts';
import { pushImage, type PushedImage } from '../support/image.ts';
import { runTufoci, type CliResult } from '../support/cli.ts';

const dir = mkdtempSync(join(tmpdir(), 'tufoci-grant-'));
const REPO = 'wabbit-networks/net-monitor';
const MINUTE = 60_000;
let now = Date.now();
let server: RunningServer;
let registry: RegistryServer;
let store: RegistryStore;
let host: string;
let env: NodeJS.ProcessEnv;
let admin: ServiceClient;
const images: Record<string, PushedImage> = {};

const tufoci = (...args: string[]): Promise<CliResult> => runTufoci(args, { cwd: dir, env });

function verify(tag: string) {
  return verifyImage({ store, repository: REPO, tag, trustedRoot: readFileSync(join(dir, '1.root.json')), serviceUrl: server.url });
}

async function refused(p: Promise<unknown>): Promise<ServiceClientError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(ServiceClientError);
  return e as ServiceClientError;
}

async function jobUpload(job: { jobRole: string }, key: InMemorySigner, version: number, targets: Record<string, PushedImage>): Promise<Uint8Array> {
  const spec = Object.fromEntries(Object.entries(targets).map(([tag, img]) => [tag, { digest: img.digest, size: img.size, mediaType: img.mediaType }]));
  return signMetadata(buildTargets({ version, expires: isoExpiry(now + 40 * MINUTE), targets: spec }), [key]);
}

beforeAll(async () => {
  registry = await startRegistry();
  host = registry.url.replace('http://', '');
  server = await startServer({ dataDir: join(dir, 'data'), port: 0, logger: pino({ level: 'silent' }), clock: () => now, refreshTickMs: 3_600_000 });
  const token = readFileSync(join(dir, 'data', 'admin-token'), 'utf8').trim();
  env = { ...process.env, TUFOCI_SERVER: server.url, TUFOCI_TOKEN: token, TUFOCI_HOME: join(dir, 'home') };
  admin = new ServiceClient({ url: server.url, token });
  store = new RegistryStore({ url: registry.url });
  for (const tag of ['v1.0', 'v1.1', 'v1.2', 'v2.0']) images[tag] = await pushImage(store, REPO, tag, `build ${tag}`);
  for (const name of ['root', 'targets']) expect((await tufoci('keygen', name)).code).toBe(0);
  expect((await tufoci('init', REPO, '--root-key', 'root.key', '--targets-key', 'targets.key')).code).toBe(0);
  const d = await tufoci('delegate', 'add', REPO, 'ci', '--online', '--paths', 'v*', '--targets-key', 'targets.key');
  expect(d.code, d.stderr).toBe(0);
});
afterAll(async () => {
  await server?.close();
  await registry?.stop();
});

describe('job-scoped CI keys', () => {
  it('grant → publish --ephemeral within the TTL: the tag verifies; a second use of the token is refused', async () => {
    const g = await tufoci('grant', REPO, '--paths', 'v1.*', '--ttl', '10m', '--json');
    expect(g.code, g.stderr).toBe(0);
    const grant = JSON.parse(g.stdout) as { token: string; expires: string };
    expect(grant.token).toMatch(/^tufoci_grant_/);

    const pub = await tufoci('publish', `${host}/${REPO}:v1.0`, '--ephemeral', '--grant', grant.token, '--json');
    expect(pub.code, pub.stderr).toBe(0);
    const out = JSON.parse(pub.stdout) as { digest: string; job: { jobRole: string; role: string; paths: string[] } };
    expect(out.digest).toBe(images['v1.0']?.digest);
    expect(out.job).toMatchObject({ role: 'ci', paths: ['v1.*'] });
    expect(out.job.jobRole).toMatch(/^job-\d{10}-[0-9a-f]{8}$/);

    const v = await verify('v1.0');
    expect(v.digest).toBe(images['v1.0']?.digest);

    const again = await tufoci('publish', `${host}/${REPO}:v1.1`, '--ephemeral', '--grant', grant.token);
    expect(again.code).not.toBe(0);
    expect(again.stderr).toMatch(/already used/);
  });

  it('refuses a tag outside the grant, an expired grant, a token for another repository, and an unknown token', async () => {
    // Outside the granted paths: the job role is delegated only v1.*, so the engine refuses v2.0.
    const grant = await admin.createGrant(REPO, { paths: ['v1.*'], ttlSeconds: 600 });
    const key = InMemorySigner.generate();
    const job = await admin.withToken(grant.token).redeemGrant(REPO, key.public);
    const e1 = await refused(admin.withToken(grant.token).upload(REPO, `1.${job.jobRole}.json`, await jobUpload(job, key, 1, { 'v2.0': images['v2.0'] as PushedImage })));
    expect(e1.status).toBe(403);
    expect(e1.code).toBe('PATH_NOT_DELEGATED');
    expect(e1.message).toMatch(/v2\.0/);

    // A grant used after its TTL.
    const late = await admin.createGrant(REPO, { paths: ['v1.*'], ttlSeconds: 120 });
    now += 3 * MINUTE;
    const e2 = await refused(admin.withToken(late.token).redeemGrant(REPO, InMemorySigner.generate().public));
    expect(e2.status).toBe(401);
    expect(e2.code).toBe('GRANT_INVALID');
    expect(e2.message).toMatch(/unknown or expired grant/);

    // Another repository: refused, and the grant is used up.
    const other = await admin.createGrant(REPO, { paths: ['v1.*'], ttlSeconds: 600 });
    const e3 = await refused(admin.withToken(other.token).redeemGrant('acme-rockets/net-monitor', InMemorySigner.generate().public));
    expect(e3.code).toBe('GRANT_SCOPE');

    // A made-up token, and a grant token on a route it does not open.
    const e4 = await refused(admin.withToken('tufoci_grant_forged').redeemGrant(REPO, InMemorySigner.generate().public));
    expect(e4.code).toBe('GRANT_INVALID');
    const e5 = await refused(admin.withToken(grant.token).upload(REPO, '2.targets.json', new Uint8Array([123, 125])));
    expect(e5.code).toBe('GRANT_SCOPE');
    // Nothing above changed what v1.0 means.
    expect((await verify('v1.0')).digest).toBe(images['v1.0']?.digest);
  });

  it('a grant on a role not held by the service is refused with the command to fix it', async () => {
    const e = await refused(admin.createGrant(REPO, { paths: ['v1.*'], ttlSeconds: 600, role: 'release' }));
    expect(e.status).toBe(409);
    expect(e.code).toBe('NOT_SERVICE_HELD');
    expect(e.message).toMatch(/delegate add .* --online/);
  });

  it('after the grant ends: the tag still verifies, folded into ci; the job key and token sign nothing new; replays change nothing', async () => {
    const grant = await admin.createGrant(REPO, { paths: ['v1.*'], ttlSeconds: 600 });
    const key = InMemorySigner.generate();
    const jobClient = admin.withToken(grant.token);
    const job = await jobClient.redeemGrant(REPO, key.public);
    const first = await jobUpload(job, key, 1, { 'v1.2': images['v1.2'] as PushedImage });
    await jobClient.upload(REPO, `1.${job.jobRole}.json`, first);
    // A retry of the identical upload within the grant is answered unchanged.
    expect((await jobClient.upload(REPO, `1.${job.jobRole}.json`, first)).unchanged).toBe(true);
    expect((await verify('v1.2')).digest).toBe(images['v1.2']?.digest);

    now = job.endsAt + 1_000;
    await server.service.refresh(REPO);
    const status = await admin.status(REPO);
    const ci = status.roles.find((r) => r.role === 'ci');
    expect(ci?.signedBy).toBe('online');
    const ciFile = JSON.parse(new TextDecoder().decode(await admin.metadata(REPO, `${ci?.version}.ci.json`))) as {
      signed: { targets: Record<string, { hashes: { sha256: string } }>; delegations?: { roles: Array<{ name: string }> } };
    };
    expect(ciFile.signed.targets['v1.2']?.hashes.sha256).toBe(images['v1.2']?.digest.slice('sha256:'.length));
    expect(ciFile.signed.targets['v1.0']).toBeDefined(); // the first job, folded too
    expect(ciFile.signed.delegations?.roles.map((r) => r.name) ?? []).not.toContain(job.jobRole);

    // Still verifies, now vouched for by ci under the service's key.
    expect((await verify('v1.2')).digest).toBe(images['v1.2']?.digest);

    // The token is dead, and the job key can publish nothing more, even with a write token.
    const e1 = await refused(jobClient.upload(REPO, `2.${job.jobRole}.json`, await jobUpload(job, key, 2, { 'v1.1': images['v1.1'] as PushedImage })));
    expect(e1.code).toBe('GRANT_EXPIRED');
    const e2 = await refused(admin.upload(REPO, `2.${job.jobRole}.json`, await jobUpload(job, key, 2, { 'v1.1': images['v1.1'] as PushedImage })));
    expect(e2.code).toBe('UNKNOWN_ROLE');
    // A replay of the job's old upload changes nothing.
    const before = (await admin.status(REPO)).roles.find((r) => r.role === 'timestamp')?.version;
    const replay = await admin.upload(REPO, `1.${job.jobRole}.json`, first);
    expect(replay.unchanged).toBe(true);
    expect((await admin.status(REPO)).roles.find((r) => r.role === 'timestamp')?.version).toBe(before);
    await expect(verify('v1.1')).rejects.toBeInstanceOf(VerifyError);
  });

  it('a later job moving a tag its parent already lists takes effect at once (the parent drops the old entry)', async () => {
    const grant = await admin.createGrant(REPO, { paths: ['v1.0'], ttlSeconds: 600 });
    const key = InMemorySigner.generate();
    const jobClient = admin.withToken(grant.token);
    const job = await jobClient.redeemGrant(REPO, key.public);
    expect((await verify('v1.0')).digest).toBe(images['v1.0']?.digest);
    await jobClient.upload(REPO, `1.${job.jobRole}.json`, await jobUpload(job, key, 1, { 'v1.0': images['v1.1'] as PushedImage }));
    const moved = await verify('v1.0');
    expect(moved.digest).toBe(images['v1.1']?.digest);
    expect(moved.registryTag).toEqual({ digest: images['v1.0']?.digest, agrees: false });
    now = job.endsAt + 1_000;
    await server.service.refresh(REPO);
    expect((await verify('v1.0')).digest).toBe(images['v1.1']?.digest);
  });

  it('publish --service-signed: the service signs the tag into ci; it verifies, and a tag outside ci\'s paths is refused', async () => {
    images['v3.0'] = await pushImage(store, REPO, 'v3.0', 'build v3.0');
    images['x1'] = await pushImage(store, REPO, 'x1', 'build x1');
    const pub = await tufoci('publish', `${host}/${REPO}:v3.0`, '--service-signed', '--json');
    expect(pub.code, pub.stderr).toBe(0);
    const out = JSON.parse(pub.stdout) as { digest: string; role: string; tags: string[] };
    expect(out).toMatchObject({ digest: images['v3.0']?.digest, role: 'ci', tags: ['v3.0'] });
    const v = await verify('v3.0');
    expect(v.digest).toBe(images['v3.0']?.digest);
    const before = (await admin.status(REPO)).roles.find((r) => r.role === 'timestamp')?.version;
    const bad = await tufoci('publish', `${host}/${REPO}:x1`, '--service-signed');
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/outside the paths targets delegates/);
    expect((await admin.status(REPO)).roles.find((r) => r.role === 'timestamp')?.version).toBe(before);
    const usage = await tufoci('publish', `${host}/${REPO}:v3.0`, '--service-signed', '--expires', '1d');
    expect(usage.code).toBe(2);
  });
});
