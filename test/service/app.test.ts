/**
 * The HTTP API against app.callback() (no listen): reads, writes, idempotent
 * retries, and every error code of the table in src/service/errors.ts — each
 * refusal answered with a JSON body naming the problem and changing nothing.
 */
import { createServer } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { HTTP_STATUS } from '../../src/service/errors.ts';
import { image, signer } from '../support/engine-repo.ts';
import { ADMIN, CI, OTHER, ServiceHarness } from './harness.ts';

const REPO = 'wabbit-networks/net-monitor';
const exercised = new Set<string>();

function expectError(r: { status: number; json<T>(): T }, status: number, code: string): void {
  expect(r.status, JSON.stringify(r.json())).toBe(status);
  const body = r.json<{ error: { code: string; message: string; detail: unknown } }>();
  expect(body.error.code).toBe(code);
  expect(typeof body.error.message).toBe('string');
  expect(body.error.message.length).toBeGreaterThan(0);
  expect(body.error).toHaveProperty('detail');
  exercised.add(code);
}

/** Write `bytes` to a raw connection, then wait for the server's answer and its closing the connection (no timer). */
function rawExchange(port: number, bytes: Buffer): Promise<{ status: number; json<T>(): T; text: string }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => socket.write(bytes));
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', reject);
    socket.on('close', () => {
      const text = Buffer.concat(chunks).toString();
      const json = text.slice(text.indexOf('\r\n\r\n') + 4);
      resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1]), json: <T>() => JSON.parse(json) as T, text });
    });
  });
}

async function ready(): Promise<ServiceHarness> {
  const h = new ServiceHarness();
  expect((await h.create()).status).toBe(201);
  return h;
}

describe('reads', () => {
  it('serves online keys, the TUF layout with cache headers, and status', async () => {
    const h = await ready();
    const keys = await h.request('GET', '/v1/online-keys');
    expect(keys.json<{ timestamp: Array<{ keyid: string }> }>().timestamp[0]?.keyid).toBe(h.online.timestamp.keyid);
    const ts = await h.request('GET', `/v1/repos/${REPO}/metadata/timestamp.json`);
    expect(ts.status).toBe(200);
    expect(ts.headers['content-type']).toMatch(/application\/json/);
    expect(ts.headers['cache-control']).toBe('public, max-age=10');
    const etag = ts.headers['etag'] as string;
    expect(etag).toMatch(/^"[0-9a-f]{64}"$/);
    expect((await h.request('GET', `/v1/repos/${REPO}/metadata/timestamp.json`, { headers: { 'if-none-match': etag } })).status).toBe(304);
    const root = await h.request('GET', `/v1/repos/${REPO}/metadata/1.root.json`);
    expect(root.headers['cache-control']).toBe('public, max-age=31536000, immutable');
    expect(Buffer.compare(root.body, Buffer.from(await h.rootBytes()))).toBe(0);
    const status = await h.request('GET', `/v1/repos/${REPO}/status`);
    const roles = status.json<{ roles: Array<{ role: string; version: number; signedBy: string }> }>().roles;
    expect(roles.map((r) => r.role).sort()).toEqual(['root', 'snapshot', 'targets', 'timestamp']);
    expect(roles.find((r) => r.role === 'timestamp')?.signedBy).toBe('online');
    expect((await h.request('GET', '/healthz')).json()).toEqual({ ok: true });
    expect((await h.request('GET', '/readyz')).status).toBe(200);
    const metrics = await h.request('GET', '/metrics');
    expect(metrics.body.toString()).toMatch(/tufoci_role_expiry_seconds\{repository="wabbit-networks\/net-monitor",role="timestamp"\} \d+/);
  });

  it('the unmodified tuf-js Updater verifies over HTTP what the service serves', async () => {
    const h = await ready();
    expect((await h.request('PUT', `/v1/repos/${REPO}/metadata/1.ci.json`, { token: CI, body: await h.ciBytes(1, { v1: image(1) }) })).status).toBe(201);
    await h.withUpdater(async (updater) => {
      expect((await updater.getTargetInfo('v1'))?.hashes['sha256']).toBe(image(1).digest.slice(7));
    });
  });
});

describe('writes', () => {
  it('uploads move snapshot then timestamp; identical retries answer 200 with the same result', async () => {
    const h = await ready();
    const body = await h.ciBytes(1, { v1: image(1) });
    const first = await h.request('PUT', `/v1/repos/${REPO}/metadata/1.ci.json`, { token: CI, body });
    expect(first.status).toBe(201);
    expect(first.json()).toMatchObject({ role: 'ci', version: 1, snapshotVersion: 2, timestampVersion: 2, unchanged: false });
    const again = await h.request('PUT', `/v1/repos/${REPO}/metadata/1.ci.json`, { token: CI, body });
    expect(again.status).toBe(200);
    expect(again.json()).toMatchObject({ role: 'ci', version: 1, unchanged: true });
    expect(await h.timestampVersion()).toBe(2);
    const snapshot = await h.request('GET', `/v1/repos/${REPO}/metadata/2.snapshot.json`);
    expect(snapshot.json<{ signed: { meta: Record<string, { version: number }> } }>().signed.meta['ci.json']?.version).toBe(1);
  });

  it('creating the same repository twice: identical → 200, different → 409', async () => {
    const h = new ServiceHarness();
    const body = await h.createBody();
    expect((await h.request('POST', `/v1/repos/${REPO}`, { token: ADMIN, body })).status).toBe(201);
    expect((await h.request('POST', `/v1/repos/${REPO}`, { token: ADMIN, body })).status).toBe(200);
    const different = JSON.parse(body);
    different.targets = JSON.parse(new TextDecoder().decode(await h.targetsBytes({ version: 1 })));
    expectError(await h.request('POST', `/v1/repos/${REPO}`, { token: ADMIN, body: JSON.stringify(different) }), 409, 'REPO_EXISTS');
  });

  it('rotates the root through an upload', async () => {
    const h = await ready();
    const r = await h.request('PUT', `/v1/repos/${REPO}/metadata/2.root.json`, { token: ADMIN, body: await h.rootBytes(2) });
    expect(r.status).toBe(201);
    expect((await h.request('GET', `/v1/repos/${REPO}/metadata/2.root.json`)).status).toBe(200);
    expect((await h.request('GET', `/v1/repos/${REPO}/metadata/1.root.json`)).status).toBe(200); // older roots stay readable
  });
});

describe('every refusal is a JSON 4xx/5xx that changes nothing', () => {
  it('auth: no token, unknown token, token without scope', async () => {
    const h = await ready();
    const body = await h.ciBytes(1, { v1: image(1) });
    expectError(await h.request('PUT', `/v1/repos/${REPO}/metadata/1.ci.json`, { body }), 401, 'UNAUTHENTICATED');
    expectError(await h.request('PUT', `/v1/repos/${REPO}/metadata/1.ci.json`, { body, token: 'x'.repeat(30) }), 401, 'UNAUTHENTICATED');
    expectError(await h.request('PUT', `/v1/repos/${REPO}/metadata/1.ci.json`, { body, token: OTHER }), 403, 'FORBIDDEN');
    expect(await h.timestampVersion()).toBe(1);
  });

  it('request shape: bad body, too large, wrong content type, unknown route, bad names', async () => {
    const h = await ready();
    expectError(await h.request('POST', '/v1/repos/wabbit-networks/other', { token: ADMIN, body: '{"root": 1}' }), 400, 'BAD_REQUEST');
    expectError(await h.request('PUT', `/v1/repos/${REPO}/metadata/2.ci.json`, { token: CI, body: new Uint8Array(1024 * 1024 + 1) }), 413, 'BODY_TOO_LARGE');
    expectError(await h.request('PUT', `/v1/repos/${REPO}/metadata/1.ci.json`, { token: CI, body: 'x', headers: { 'content-type': 'text/html' } }), 415, 'UNSUPPORTED_MEDIA_TYPE');
    expectError(await h.request('GET', '/v2/nothing'), 404, 'NOT_FOUND');
    const deleted = await h.request('DELETE', `/v1/repos/${REPO}/metadata/1.root.json`);
    expectError(deleted, 405, 'METHOD_NOT_ALLOWED');
    expect(deleted.headers['allow']).toMatch(/\bPUT\b/);
    expectError(await h.request('PROPFIND', `/v1/repos/${REPO}/status`), 405, 'METHOD_NOT_ALLOWED'); // a method no route knows: not a 501
    expectError(await h.request('GET', `/v1/repos/${REPO}/metadata/9.ci.json`), 404, 'NOT_FOUND');
    expectError(await h.request('GET', '/v1/repos/nobody/here/metadata/timestamp.json'), 404, 'REPO_NOT_FOUND');
    expectError(await h.request('POST', '/v1/repos/Bad..Name', { token: ADMIN, body: await h.createBody() }), 400, 'INVALID_NAME');
    // A name too long for the lock's key is refused as a name before the upload queues for the lock.
    expectError(await h.request('PUT', `/v1/repos/wabbit-networks/${'a'.repeat(2000)}/metadata/2.ci.json`, { token: CI, body: '{}' }), 400, 'INVALID_NAME');
    expectError(await h.request('PUT', `/v1/repos/${REPO}/metadata/3.snapshot.json`, { token: ADMIN, body: '{}' }), 400, 'BAD_REQUEST');
    expectError(await h.request('PUT', `/v1/repos/${REPO}/metadata/5.ci.json`, { token: CI, body: await h.ciBytes(5, { v1: image(1) }) }), 409, 'VERSION_SKIP');
    expectError(await h.request('PUT', `/v1/repos/${REPO}/metadata/1.ci.json`, { token: CI, body: await h.ciBytes(2, { v1: image(1) }) }), 400, 'NAME_MISMATCH');
    expect(await h.timestampVersion()).toBe(1);
  });

  it('TUF refusals map to their statuses', async () => {
    const h = await ready();
    await h.request('PUT', `/v1/repos/${REPO}/metadata/1.ci.json`, { token: CI, body: await h.ciBytes(1, { v1: image(1) }) });
    const put = (file: string, body: Uint8Array | string, token = CI) => h.request('PUT', `/v1/repos/${REPO}/metadata/${file}`, { token, body });
    expectError(await put('1.ci.json', await h.ciBytes(1, { v1: image(2) })), 409, 'VERSION_TAKEN');
    expectError(await put('2.ci.json', await h.ciBytes(2, { v2: image(2) }, [signer()])), 403, 'THRESHOLD_NOT_MET');
    expectError(await put('2.ci.json', await h.ciBytes(2, { latest: image(2) })), 403, 'PATH_NOT_DELEGATED');
    expectError(await put('2.ci.json', await h.targetsBytes({ version: 2, expires: h.expires(-1) }, [h.ci])), 422, 'EXPIRED');
    expectError(await put('2.ci.json', await h.targetsBytes({ version: 2, expires: h.expires(5000) }, [h.ci])), 422, 'EXPIRY_TOO_FAR');
    expectError(await put('2.ci.json', await h.ciBytes(2, { v2: { ...image(2), mediaType: 'text/plain' } })), 422, 'BAD_TARGET');
    expectError(await put('2.ci.json', '{"signed":'), 400, 'MALFORMED');
    expectError(await put('2.ci.json', await h.rootBytes(2)), 400, 'WRONG_TYPE');
    expectError(await put('1.nobody.json', await h.ciBytes(1, {})), 404, 'UNKNOWN_ROLE');
    expectError(await put('2.targets.json', await h.targetsBytes({ version: 2, delegations: [{ name: 'ci', keys: [h.ci.public], threshold: 3, paths: ['v*'] }] }), ADMIN), 422, 'POLICY_VIOLATION');
    expectError(await put('2.targets.json', await h.targetsBytes({ version: 2, delegations: [{ name: 'a/b', keys: [h.ci.public], threshold: 1 }] }), ADMIN), 400, 'BAD_ROLE_NAME');
    expect(await h.timestampVersion()).toBe(2);
  });

  it('a root naming foreign online keys is refused', async () => {
    const h = new ServiceHarness();
    const body = JSON.parse(await h.createBody());
    const { buildRoot, signMetadata } = await import('../../src/engine/index.ts');
    const other = signer();
    body.root = JSON.parse(
      new TextDecoder().decode(
        await signMetadata(
          buildRoot({
            version: 1,
            expires: h.expires(100),
            root: { keys: [h.owner.root.public], threshold: 1 },
            targets: { keys: [h.owner.targets.public], threshold: 1 },
            snapshot: { keys: [other.public], threshold: 1 },
            timestamp: { keys: [h.online.timestamp.public], threshold: 1 },
          }),
          [h.owner.root],
        ),
      ),
    );
    expectError(await h.request('POST', `/v1/repos/${REPO}`, { token: ADMIN, body: JSON.stringify(body) }), 422, 'ONLINE_KEYS_MISSING');
    expectError(await h.request('GET', `/v1/repos/${REPO}/metadata/timestamp.json`), 404, 'REPO_NOT_FOUND');
  });

  it('a busy repository answers 409 with Retry-After', async () => {
    const h = await ready();
    const lock = await h.coord.acquire(REPO, { ttlMs: 10_000, waitMs: 0 });
    expect(lock).toBeDefined();
    const r = await h.request('PUT', `/v1/repos/${REPO}/metadata/1.ci.json`, { token: CI, body: await h.ciBytes(1, { v1: image(1) }) });
    expectError(r, 409, 'BUSY');
    expect(r.headers['retry-after']).toBe('1');
    await lock?.release();
    expect((await h.request('PUT', `/v1/repos/${REPO}/metadata/1.ci.json`, { token: CI, body: await h.ciBytes(1, { v1: image(1) }) })).status).toBe(201);
  });

  it('a version already taken is answered 409 VERSION_TAKEN at once, even while the lock is held', async () => {
    const h = await ready();
    expect((await h.request('PUT', `/v1/repos/${REPO}/metadata/1.ci.json`, { token: CI, body: await h.ciBytes(1, { v1: image(1) }) })).status).toBe(201);
    const lock = await h.coord.acquire(REPO, { ttlMs: 10_000, waitMs: 0 });
    expect(lock).toBeDefined();
    const r = await h.request('PUT', `/v1/repos/${REPO}/metadata/1.ci.json`, { token: CI, body: await h.ciBytes(1, { v1: image(2) }) });
    expectError(r, 409, 'VERSION_TAKEN');
    expect(r.json<{ error: { detail: { current: number } } }>().error.detail.current).toBe(1);
    // A new version still waits for the lock.
    expectError(await h.request('PUT', `/v1/repos/${REPO}/metadata/2.ci.json`, { token: CI, body: await h.ciBytes(2, { v1: image(2) }) }), 409, 'BUSY');
    await lock?.release();
  });

  it('a shutting-down service refuses new writes', async () => {
    const h = await ready();
    await h.service.close();
    expectError(await h.request('PUT', `/v1/repos/${REPO}/metadata/1.ci.json`, { token: CI, body: await h.ciBytes(1, { v1: image(1) }) }), 503, 'SHUTTING_DOWN');
  });

  it('grants: unknown, used, expired, wrong repository, wrong role file, and a role the service does not hold', async () => {
    const h = await ready();
    const grantBody = JSON.stringify({ paths: ['v1.*'], ttlSeconds: 600 });
    expectError(await h.request('POST', `/v1/repos/${REPO}/grants`, { token: CI, body: grantBody }), 409, 'NOT_SERVICE_HELD');
    // Delegate `release` to the service's CI key (offline, by the owner).
    const targets2 = await h.targetsBytes({
      version: 2,
      delegations: [
        { name: 'ci', keys: [h.ci.public], threshold: 1, paths: ['v*'], terminating: true },
        { name: 'release', keys: [h.online.ci.public], threshold: 1, paths: ['r*'] },
      ],
    });
    expect((await h.request('PUT', `/v1/repos/${REPO}/metadata/2.targets.json`, { token: ADMIN, body: targets2 })).status).toBe(201);
    const body = JSON.stringify({ paths: ['r1.*'], ttlSeconds: 600, role: 'release' });
    expectError(await h.request('POST', `/v1/repos/${REPO}/grants`, { token: OTHER, body }), 403, 'FORBIDDEN');
    expectError(await h.request('POST', `/v1/repos/${REPO}/grants`, { token: CI, body: JSON.stringify({ paths: ['r1.*'], ttlSeconds: 86_400, role: 'release' }) }), 400, 'BAD_REQUEST');
    const g = await h.request('POST', `/v1/repos/${REPO}/grants`, { token: CI, body });
    expect(g.status).toBe(201);
    expect(g.headers['cache-control']).toBe('no-store');
    const token = g.json<{ token: string }>().token;
    const before = await h.timestampVersion();
    const key = JSON.stringify({ key: signer().public });
    expectError(await h.request('POST', `/v1/repos/${REPO}/grants/redeem`, { token: 'tufoci_grant_nope', body: key }), 401, 'GRANT_INVALID');
    expectError(await h.request('POST', `/v1/repos/${REPO}/grants/redeem`, { body: key }), 401, 'GRANT_INVALID');
    const job = await h.request('POST', `/v1/repos/${REPO}/grants/redeem`, { token, body: key });
    expect(job.status).toBe(201);
    const jobRole = job.json<{ jobRole: string }>().jobRole;
    expect(await h.timestampVersion()).toBe(before); // nothing in TUF until the job uploads
    expectError(await h.request('POST', `/v1/repos/${REPO}/grants/redeem`, { token, body: key }), 409, 'GRANT_USED');
    expectError(await h.request('PUT', `/v1/repos/${REPO}/metadata/3.targets.json`, { token, body: targets2 }), 403, 'GRANT_SCOPE');
    expectError(await h.request('PUT', `/v1/repos/acme-rockets/x/metadata/1.${jobRole}.json`, { token, body: targets2 }), 403, 'GRANT_SCOPE');
    h.now += 11 * 60_000;
    expectError(await h.request('PUT', `/v1/repos/${REPO}/metadata/1.${jobRole}.json`, { token, body: targets2 }), 401, 'GRANT_EXPIRED');
    const g2 = await h.request('POST', `/v1/repos/${REPO}/grants`, { token: CI, body });
    expectError(await h.request('POST', `/v1/repos/acme-rockets/x/grants/redeem`, { token: g2.json<{ token: string }>().token, body: key }), 403, 'GRANT_SCOPE');
    expect(await h.timestampVersion()).toBe(before);
  });

  it('service-signed tags: refusals change nothing', async () => {
    const h = await ready();
    const body = (role: string, tag: string): string =>
      JSON.stringify({ role, tags: { [tag]: { digest: image(1).digest, size: image(1).size, mediaType: image(1).mediaType } } });
    // Top-level targets lists r-owner itself and delegates `release` (r*) to the service's CI key.
    expect((await h.delegateRelease()).status).toBe(201);
    const before = await h.timestampVersion();
    expectError(await h.request('POST', `/v1/repos/${REPO}/tags`, { body: body('release', 'r1') }), 401, 'UNAUTHENTICATED');
    expectError(await h.request('POST', `/v1/repos/${REPO}/tags`, { token: OTHER, body: body('release', 'r1') }), 403, 'FORBIDDEN');
    expectError(await h.request('POST', `/v1/repos/${REPO}/tags`, { token: CI, body: '{"tags": [1]}' }), 400, 'BAD_REQUEST');
    expectError(await h.request('POST', `/v1/repos/${REPO}/tags`, { token: CI, body: '{"role": "release", "tags": {}}' }), 400, 'BAD_REQUEST');
    expectError(await h.request('POST', `/v1/repos/${REPO}/tags`, { token: CI, body: body('ci', 'v1') }), 409, 'NOT_SERVICE_HELD');
    expectError(await h.request('POST', `/v1/repos/${REPO}/tags`, { token: CI, body: body('release', 'v1') }), 403, 'PATH_NOT_DELEGATED');
    expectError(await h.request('POST', `/v1/repos/${REPO}/tags`, { token: CI, body: body('nope', 'r1') }), 409, 'NOT_SERVICE_HELD');
    const shadowed = await h.request('POST', `/v1/repos/${REPO}/tags`, { token: CI, body: body('release', 'r-owner') });
    expectError(shadowed, 409, 'TAG_SHADOWED');
    expect(shadowed.json<{ error: { detail: { listedBy: string } } }>().error.detail.listedBy).toBe('targets');
    const badTarget = JSON.stringify({ role: 'release', tags: { r1: { digest: 'sha256:nothex', size: 10, mediaType: image(1).mediaType } } });
    expectError(await h.request('POST', `/v1/repos/${REPO}/tags`, { token: CI, body: badTarget }), 422, 'BAD_TARGET');
    expect(await h.timestampVersion()).toBe(before);
  });

  it('namespaces: a root at the wrong place, no namespace, a member rotating its own root; none changes anything', async () => {
    const h = new ServiceHarness();
    const NS = 'wabbit-networks/';
    const ANCHOR = `${NS}tufoci-namespace`;
    const parse = (b: Uint8Array): unknown => JSON.parse(new TextDecoder().decode(b));
    const nsRoot = await h.rootBytes(1, [h.owner.root], NS);
    const anchorTargets = await h.targetsBytes({ version: 1, member: { repository: ANCHOR, namespace: NS } });
    const memberTargets = await h.targetsBytes({ version: 1, member: { repository: REPO, namespace: NS } });
    // A namespace root for a repository that is not the namespace's anchor; an anchor without one.
    expectError(await h.request('POST', `/v1/repos/${REPO}`, { token: ADMIN, body: JSON.stringify({ root: parse(nsRoot), targets: parse(memberTargets) }) }), 409, 'NAMESPACE_ROOT');
    expectError(await h.request('POST', `/v1/repos/${ANCHOR}`, { token: ADMIN, body: JSON.stringify({ root: parse(await h.rootBytes(1, [h.owner.root], ANCHOR)), targets: parse(await h.targetsBytes({ version: 1 })) }) }), 409, 'NAMESPACE_ROOT');
    expectError(await h.request('POST', `/v1/repos/${REPO}`, { token: ADMIN, body: JSON.stringify({ targets: parse(memberTargets) }) }), 404, 'NO_NAMESPACE');
    expectError(await h.request('GET', `/v1/namespace-of/${REPO}`), 404, 'NO_NAMESPACE');
    // A repository named …/tags cannot be created: the route is the tags of its parent, and the refusal says so.
    const shadowed = await h.request('POST', '/v1/repos/wabbit-networks/tags', { token: ADMIN, body: await h.createBody('wabbit-networks/tags') });
    expectError(shadowed, 400, 'BAD_REQUEST');
    expect(shadowed.json<{ error: { message: string } }>().error.message).toMatch(/wabbit-networks\/tags cannot be created/);
    expect((await h.request('GET', `/v1/repos/${REPO}/status`)).status).toBe(404);
    expect((await h.request('POST', `/v1/repos/${ANCHOR}`, { token: ADMIN, body: JSON.stringify({ root: parse(nsRoot), targets: parse(anchorTargets) }) })).status).toBe(201);
    expect((await h.request('POST', `/v1/repos/${REPO}`, { token: ADMIN, body: JSON.stringify({ targets: parse(memberTargets) }) })).status).toBe(201);
    const before = await h.timestampVersion();
    // A member's root is the namespace's: one of its own is refused.
    expectError(await h.request('PUT', `/v1/repos/${REPO}/metadata/2.root.json`, { token: ADMIN, body: await h.rootBytes(2, [h.owner.root], NS) }), 409, 'IN_NAMESPACE');
    expectError(await h.request('POST', `/v1/namespace-sync/${REPO}`, { token: ADMIN, body: '{}' }), 400, 'BAD_REQUEST');
    // The member listing: a write token for the anchor (also where reads are public), bounded pages, a JSON refusal for anything else.
    const members = `/v1/namespace-members/${ANCHOR}`;
    expectError(await h.request('GET', members), 401, 'UNAUTHENTICATED');
    expectError(await h.request('GET', members, { token: OTHER }), 403, 'FORBIDDEN');
    expectError(await h.request('GET', `/v1/namespace-members/${REPO}`, { token: ADMIN }), 400, 'BAD_REQUEST');
    expectError(await h.request('GET', '/v1/namespace-members/acme-rockets/tufoci-namespace', { token: ADMIN }), 404, 'NO_NAMESPACE');
    for (const query of ['limit=0', 'limit=1001', 'limit=abc', 'limit=1.5', 'limit=-1', 'limit=1&limit=2', 'after=acme-rockets/app', 'after=wabbit-networks/Upper', 'after=a&after=b', 'page=2']) {
      const r = await h.request('GET', `${members}?${query}`, { token: ADMIN });
      expectError(r, 400, 'BAD_REQUEST');
    }
    expect((await h.request('GET', `${members}?limit=1000&after=${encodeURIComponent(REPO)}`, { token: CI })).json()).toEqual({ namespace: NS, anchor: ANCHOR, rootVersion: 1, members: [], unreadable: [] });
    expect((await h.request('GET', members, { token: CI })).json<{ members: string[] }>().members).toEqual([REPO]);
    expect(await h.timestampVersion()).toBe(before);
    expect(await h.timestampVersion(ANCHOR)).toBe(1);
    expect((await h.request('GET', `/v1/repos/${REPO}/metadata/2.root.json`)).status).toBe(404);
  });

  it('online key sets: rotate (admin only), a bounded number of sets, and a revoked key refused in new roots', async () => {
    const h = await ready();
    expectError(await h.request('POST', '/v1/online-keys/rotate', { token: CI, body: '{}' }), 403, 'FORBIDDEN');
    let r = await h.request('POST', '/v1/online-keys/rotate', { token: ADMIN, body: '{}' });
    expect(r.status).toBe(201);
    expect(r.json<{ set: { id: number } }>().set.id).toBe(1);
    expect((await h.request('GET', '/v1/online-keys')).json<{ set: number }>().set).toBe(1);
    for (let i = 2; i < 64; i++) expect((await h.request('POST', '/v1/online-keys/rotate', { token: ADMIN, body: '{}' })).status).toBe(201);
    expectError(await h.request('POST', '/v1/online-keys/rotate', { token: ADMIN, body: '{}' }), 409, 'TOO_MANY_KEY_SETS');
    expectError(await h.request('POST', '/v1/online-keys/revoke', { token: ADMIN, body: '{"reason":"x"}' }), 400, 'BAD_REQUEST');
    expectError(await h.request('POST', '/v1/online-keys/revoke', { token: ADMIN, body: '{"key":"0123456789abcdef","reason":"x"}' }), 404, 'NOT_FOUND');
    r = await h.request('POST', '/v1/online-keys/revoke', { token: ADMIN, body: JSON.stringify({ key: h.online.timestamp.keyid, reason: 'leaked' }) });
    expect(r.status).toBe(200);
    expect(r.json<{ revoked: { id: number; revoked: { reason: string } }; affected: string[] }>()).toMatchObject({ revoked: { id: 0, revoked: { reason: 'leaked' } }, affected: [REPO] });
    // The repository still lists set 0: a new root that keeps it is refused; the service still signs with it meanwhile.
    const before = await h.timestampVersion();
    expectError(await h.request('PUT', `/v1/repos/${REPO}/metadata/2.root.json`, { token: ADMIN, body: await h.rootBytes(2) }), 422, 'ONLINE_KEY_REVOKED');
    expect(await h.timestampVersion()).toBe(before);
    const usage = await h.request('GET', '/v1/online-keys/usage', { token: ADMIN });
    expect(usage.json<{ repositories: unknown[] }>().repositories).toEqual([{ repository: REPO, sets: [0], onRevoked: true, onCurrent: false }]);
  });

  it('a body that does not arrive in time is answered 408 and the connection closed; one over the limit 413, not a reset', async () => {
    const h = new ServiceHarness(undefined, { bodyTimeoutMs: 300 });
    expect((await h.create()).status).toBe(201);
    const server = createServer(h.handler);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    const exchange = (head: string, body: Buffer) => rawExchange(port, Buffer.concat([Buffer.from(head), body]));
    try {
      const put = (extra: string): string =>
        `PUT /v1/repos/${REPO}/metadata/1.ci.json HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${CI}\r\nContent-Type: application/json\r\n${extra}\r\n`;
      // Declares 1,000 bytes, sends 10, then nothing: answered when the deadline passes.
      const stalled = await exchange(put('Content-Length: 1000\r\n'), Buffer.alloc(10, 0x20));
      expectError(stalled, 408, 'BODY_TIMEOUT');
      expect(stalled.text).toMatch(/\r\nconnection: close\r\n/i);
      // Chunked, past the 1 MiB limit of this harness: a 413 with a JSON body, then the connection closes.
      const chunk = Buffer.alloc(64 * 1024, 0x20);
      const frames = Buffer.concat(Array.from({ length: 20 }, () => Buffer.concat([Buffer.from(`${chunk.length.toString(16)}\r\n`), chunk, Buffer.from('\r\n')])));
      const large = await exchange(put('Transfer-Encoding: chunked\r\n'), frames);
      expectError(large, 413, 'BODY_TOO_LARGE');
      // Refused before its body was read (no token): answered, and closed instead of reading the rest.
      const anonymous = await exchange(put('Content-Length: 100000\r\n').replace(`Authorization: Bearer ${CI}\r\n`, ''), Buffer.alloc(10, 0x20));
      expectError(anonymous, 401, 'UNAUTHENTICATED');
      expect(await h.timestampVersion()).toBe(1);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('a body declared over the limit is answered 413 before it is read, and the client that goes on sending it still reads the answer: the rest is drained', async () => {
    const h = new ServiceHarness();
    expect((await h.create()).status).toBe(201);
    const server = createServer(h.handler);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    const declared = 3 * 1024 * 1024; // 3 MiB against the harness's 1 MiB limit
    const head = `PUT /v1/repos/${REPO}/metadata/2.ci.json HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${CI}\r\nContent-Type: application/json\r\nContent-Length: ${declared}\r\n\r\n`;
    const next = `GET /v1/repos/${REPO}/status HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${CI}\r\n\r\n`;
    try {
      const texts = await new Promise<string[]>((resolve, reject) => {
        const socket = connect(port, '127.0.0.1', () => socket.write(head));
        let received = '';
        const answers: string[] = [];
        socket.on('error', reject);
        socket.on('close', () => resolve(answers));
        socket.on('data', (c: Buffer) => {
          received += c.toString();
          // One answer is complete when its JSON body (Content-Length bytes) is in.
          for (;;) {
            const end = received.indexOf('\r\n\r\n');
            const length = Number(/\r\ncontent-length: (\d+)/i.exec(received.slice(0, end))?.[1] ?? 'NaN');
            if (end < 0 || Number.isNaN(length) || received.length < end + 4 + length) break;
            answers.push(received.slice(0, end + 4 + length));
            received = received.slice(end + 4 + length);
            // The 413 came before the body: send all of it now, then a second request on the same connection.
            if (answers.length === 1) socket.write(Buffer.concat([Buffer.alloc(declared, 0x20), Buffer.from(next)]));
            if (answers.length === 2) socket.end();
          }
        });
      });
      expect(texts).toHaveLength(2);
      expect(texts[0]).toMatch(/^HTTP\/1\.1 413 /);
      expect(texts[0]).toMatch(/BODY_TOO_LARGE/);
      expect(texts[0]).not.toMatch(/\r\nconnection: close\r\n/i);
      expect(texts[1]).toMatch(/^HTTP\/1\.1 200 /);
      expect(await h.timestampVersion()).toBe(1);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('a hostile upload is refused at the first piece of its body that shows it must be: the rest is never awaited', async () => {
    // A long body deadline: an answer that waited for the rest of the body would come 20 s later, as a 408.
    const h = new ServiceHarness(undefined, { bodyTimeoutMs: 20_000 });
    expect((await h.create()).status).toBe(201);
    const server = createServer(h.handler);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    /** Declare a body of `declared` bytes, send only `sent`, and wait for the answer and the close. */
    const partial = (declared: number, sent: string) =>
      rawExchange(
        port,
        Buffer.from(`PUT /v1/repos/${REPO}/metadata/2.targets.json HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${ADMIN}\r\nContent-Type: application/json\r\nContent-Length: ${declared}\r\n\r\n${sent}`),
      );
    try {
      const deep = await partial(1_000_000, `{"signed":${'['.repeat(200)}`);
      expectError(deep, 400, 'TOO_DEEP');
      expect(deep.text).toMatch(/\r\nconnection: close\r\n/i);
      const roles = Array.from({ length: 300 }, (_, k) => `{"name":"r${k}","keyids":[],"threshold":1,"terminating":false,"paths":["r${k}"]}`).join(',');
      const wide = await partial(900_000, `{"signatures":[],"signed":{"_type":"targets","delegations":{"keys":{},"roles":[${roles}`);
      expectError(wide, 422, 'POLICY_VIOLATION');
      expect(wide.json<{ error: { detail: unknown } }>().error.detail).toMatchObject({ field: 'delegations.roles', limit: 256 });
      expect(await h.timestampVersion()).toBe(1);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  afterAll(() => {
    // Every service-level code of the table has a test above.
    const serviceCodes = Object.keys(HTTP_STATUS['ServiceError'] ?? {});
    expect(serviceCodes.filter((c) => !exercised.has(c))).toEqual([]);
  });
});

describe('read fast path', () => {
  it('answers cached files exactly as the Koa route does, and falls back on misses', async () => {
    const { withFastReads } = await import('../../src/service/fast-read.ts');
    const { createMetrics } = await import('../../src/service/metrics.ts');
    const { TokenAuth } = await import('../../src/service/auth.ts');
    const { inject } = await import('../support/inject.ts');
    const h = await ready();
    const fast = withFastReads({ service: h.service, auth: new TokenAuth([]), metrics: createMetrics(() => []) }, h.handler);
    for (const file of ['timestamp.json', '1.root.json', '1.snapshot.json']) {
      const viaKoa = await h.request('GET', `/v1/repos/${REPO}/metadata/${file}`);
      const viaFast = await inject(fast, { url: `/v1/repos/${REPO}/metadata/${file}` });
      expect(viaFast.status).toBe(200);
      expect(Buffer.compare(viaFast.body, viaKoa.body)).toBe(0);
      for (const header of ['etag', 'cache-control', 'content-length']) expect(String(viaFast.headers[header])).toBe(String(viaKoa.headers[header]));
      expect(viaFast.headers['content-type']).toBe(viaKoa.headers['content-type']);
      const cond = await inject(fast, { url: `/v1/repos/${REPO}/metadata/${file}`, headers: { 'if-none-match': viaKoa.headers['etag'] as string } });
      expect(cond.status).toBe(304);
    }
    const miss = await inject(fast, { url: `/v1/repos/${REPO}/metadata/9.ci.json` });
    expect(miss.status).toBe(404);
    expect(miss.json<{ error: { code: string } }>().error.code).toBe('NOT_FOUND');
  });
});

describe('orphans of a commit that never moved the timestamp', () => {
  it('do not block the versions they hold', async () => {
    const h = await ready();
    // A crashed commit left 1.ci.json and 2.snapshot.json behind, timestamp still at 1.
    await h.metadata.publish(REPO, [
      { fileName: '1.ci.json', bytes: await h.ciBytes(1, { v9: image(9) }) },
      { fileName: '2.snapshot.json', bytes: new TextEncoder().encode('{"orphan": true}') },
    ]);
    expect(await h.timestampVersion()).toBe(1);
    const r = await h.request('PUT', `/v1/repos/${REPO}/metadata/1.ci.json`, { token: CI, body: await h.ciBytes(1, { v1: image(1) }) });
    expect(r.status, JSON.stringify(r.json())).toBe(201);
    expect(await h.timestampVersion()).toBe(2);
    const snap = await h.request('GET', `/v1/repos/${REPO}/metadata/2.snapshot.json`);
    expect(snap.json<{ signed: { _type: string } }>().signed._type).toBe('snapshot');
  });
});
