/**
 * Client fetch efficiency over the service (ServiceFetcher + the service's
 * `Tufoci-Root-Version` header): request counts at an HTTP proxy between the
 * client and a real HTTP server (the service's Koa app behind its read fast
 * path, memory store), root rotations still found, and hostile hints that
 * can only cause a not-found or a fetch, never acceptance.
 */
import { createServer, type Server } from 'node:http';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Updater } from 'tuf-js';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ServiceFetcher, ROOT_VERSION_HEADER, etagOf } from '../../src/client/service-fetcher.ts';
import { verifyImage, type VerifyImageOptions } from '../../src/client/verify-image.ts';
import { withFastReads } from '../../src/service/fast-read.ts';
import { TokenAuth } from '../../src/service/auth.ts';
import { createMetrics } from '../../src/service/metrics.ts';
import { MemoryStore } from '../../src/storage/index.ts';
import { ADMIN, CI, ServiceHarness } from '../service/harness.ts';
import { inject } from '../support/inject.ts';
import { pushImage, type PushedImage } from '../support/image.ts';
import { startCountingProxy, type CountingProxy } from './counting-proxy.ts';

const REPO = 'wabbit-networks/net-monitor';
const dirs: string[] = [];
const tmp = (): string => {
  const d = mkdtempSync(join(tmpdir(), 'tufoci-svc-fetch-'));
  dirs.push(d);
  return d;
};
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

interface World {
  h: ServiceHarness;
  server: Server;
  proxy: CountingProxy;
  images: MemoryStore;
  v1: PushedImage;
  root1: Uint8Array;
}

let w: World;

async function startWorld(): Promise<World> {
  const h = new ServiceHarness();
  expect((await h.create(REPO)).status).toBe(201);
  const images = new MemoryStore();
  const v1 = await pushImage(images, REPO, 'v1');
  expect((await h.request('PUT', `/v1/repos/${REPO}/metadata/1.ci.json`, { token: CI, body: await h.ciBytes(1, { v1 }) })).status).toBe(201);
  const server = createServer(withFastReads({ service: h.service, auth: new TokenAuth([]), metrics: createMetrics(() => []) }, h.handler));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  const proxy = await startCountingProxy(`http://127.0.0.1:${port}`);
  return { h, server, proxy, images, v1, root1: await h.rootBytes(1) };
}

beforeEach(async () => {
  w = await startWorld();
});
afterEach(async () => {
  await w.proxy.close();
  w.server.closeAllConnections();
  await new Promise<void>((resolve) => w.server.close(() => resolve()));
});

/** The pinned root as the service stores it (the bytes clients pin). */
async function pinned(): Promise<Uint8Array> {
  const r = await w.h.request('GET', `/v1/repos/${REPO}/metadata/1.root.json`);
  return new Uint8Array(r.body);
}

async function verify(stateDir: string | undefined, extra: Partial<VerifyImageOptions> = {}) {
  return verifyImage({ store: w.images, repository: REPO, tag: 'v1', trustedRoot: await pinned(), serviceUrl: w.proxy.url, ...(stateDir ? { stateDir } : {}), ...extra });
}

/** The metadata files requested since the last reset, with their statuses. */
function seen(): string[] {
  return w.proxy.requests.map((r) => `${r.path.slice(r.path.lastIndexOf('/') + 1)} ${r.status}`);
}

async function rotateRoot(version: number): Promise<void> {
  const r = await w.h.request('PUT', `/v1/repos/${REPO}/metadata/${version}.root.json`, { token: ADMIN, body: await w.h.rootBytes(version) });
  expect(r.status, r.body.toString()).toBe(201);
}

describe('the service names its root version', () => {
  it('on timestamp.json (200 and 304), from the Koa route and the fast path alike; not on versioned files', async () => {
    const fast = withFastReads({ service: w.h.service, auth: new TokenAuth([]), metrics: createMetrics(() => []) }, w.h.handler);
    const koa = await w.h.request('GET', `/v1/repos/${REPO}/metadata/timestamp.json`);
    const viaFast = await inject(fast, { url: `/v1/repos/${REPO}/metadata/timestamp.json` });
    const notModified = await inject(fast, { url: `/v1/repos/${REPO}/metadata/timestamp.json`, headers: { 'if-none-match': koa.headers['etag'] as string } });
    expect([koa.headers['tufoci-root-version'], viaFast.headers['tufoci-root-version'], notModified.headers['tufoci-root-version']].map(String)).toEqual(['1', '1', '1']);
    expect(notModified.status).toBe(304);
    expect(koa.headers['etag']).toBe(etagOf(new Uint8Array(koa.body)));
    expect((await inject(fast, { url: `/v1/repos/${REPO}/metadata/1.root.json` })).headers['tufoci-root-version']).toBeUndefined();
    await rotateRoot(2);
    expect(String((await inject(fast, { url: `/v1/repos/${REPO}/metadata/timestamp.json` })).headers['tufoci-root-version'])).toBe('2');
    expect(String((await w.h.request('GET', `/v1/repos/${REPO}/metadata/timestamp.json`)).headers['tufoci-root-version'])).toBe('2');
  });
});

describe('verifyImage over the service: requests per verify', () => {
  it('warm with the timestamp unchanged: exactly one metadata request (a 304); cold: no root probe', async () => {
    const state = tmp();
    expect((await verify(state)).digest).toBe(w.v1.digest);
    const [first, second, ...roles] = seen();
    expect([first, second]).toEqual(['timestamp.json 200', '2.snapshot.json 200']);
    expect(roles.sort()).toEqual(['1.ci.json 200', '1.targets.json 200']); // requested together after the snapshot
    for (let i = 0; i < 3; i++) {
      w.proxy.reset();
      const r = await verify(state);
      expect(r.digest).toBe(w.v1.digest);
      expect(seen()).toEqual(['timestamp.json 304']);
      expect(w.proxy.requests[0]?.bodyBytes).toBe(0);
    }
    // The timestamp moves (another tag published): one 200, then only what changed.
    const v2 = await pushImage(w.images, REPO, 'v2');
    await w.h.request('PUT', `/v1/repos/${REPO}/metadata/2.ci.json`, { token: CI, body: await w.h.ciBytes(2, { v1: w.v1, v2 }) });
    w.proxy.reset();
    await verify(state);
    expect(seen()).toEqual(['timestamp.json 200', '3.snapshot.json 200', '2.ci.json 200']);
  });

  it("counts what the unmodified tuf-js DefaultFetcher would ask for, for comparison: a root probe every time", async () => {
    const state = tmp();
    const { writeFileSync } = await import('node:fs');
    writeFileSync(join(state, 'root.json'), await pinned());
    const run = async (): Promise<void> => {
      const u = new Updater({ metadataDir: state, metadataBaseUrl: `${w.proxy.url}/v1/repos/${REPO}/metadata` });
      await u.refresh();
      expect(await u.getTargetInfo('v1')).toBeDefined();
    };
    await run();
    expect(seen()).toEqual(['2.root.json 404', 'timestamp.json 200', '2.snapshot.json 200', '1.targets.json 200', '1.ci.json 200']);
    w.proxy.reset();
    await run();
    expect(seen()).toEqual(['2.root.json 404', 'timestamp.json 200']);
  });

  it('a new root is still found and rotated through; then warm is one request again', async () => {
    const state = tmp();
    await verify(state);
    await rotateRoot(2);
    await rotateRoot(3);
    w.proxy.reset();
    const r = await verify(state);
    expect(r.tuf.root).toBe(3);
    expect(seen()).toEqual(['timestamp.json 200', '2.root.json 200', '3.root.json 200', `${r.tuf.snapshot}.snapshot.json 200`]);
    w.proxy.reset();
    expect((await verify(state)).tuf.root).toBe(3);
    expect(seen()).toEqual(['timestamp.json 304']);
    // A cold client pinning root 1 walks the chain and stops where the header says, without a 4.root.json probe.
    w.proxy.reset();
    expect((await verify(undefined)).tuf.root).toBe(3);
    expect(seen().filter((s) => s.includes('root'))).toEqual(['2.root.json 200', '3.root.json 200']);
  });
});

describe('hostile hints', () => {
  const lie = (value: string | undefined): void => {
    w.proxy.rewrite = (req, res) => {
      if (!req.path.endsWith('/timestamp.json')) return res;
      const headers = { ...res.headers };
      if (value === undefined) delete headers['tufoci-root-version'];
      else headers['tufoci-root-version'] = value;
      return { ...res, headers };
    };
  };

  it('a header naming an older root hides the new root only as a 404 would; the rotation is caught once the header is honest', async () => {
    const state = tmp();
    await verify(state);
    await rotateRoot(2);
    lie('1');
    w.proxy.reset();
    expect((await verify(state)).tuf.root).toBe(1); // what an attacker answering 404 for 2.root.json also gets
    expect(seen().some((s) => s.startsWith('2.root.json'))).toBe(false);
    w.proxy.rewrite = undefined;
    w.proxy.reset();
    expect((await verify(state)).tuf.root).toBe(2);
    expect(seen()).toContain('2.root.json 200');
  });

  it('a header naming a root that does not exist only causes a fetch (404); garbage headers are ignored', async () => {
    const state = tmp();
    await verify(state);
    lie('99');
    w.proxy.reset();
    expect((await verify(state)).tuf.root).toBe(1);
    expect(seen()).toEqual(['timestamp.json 304', '2.root.json 404']);
    for (const garbage of ['abc', '-1', '1e3', '2.0', '0', '99999999999999999999']) {
      lie(garbage);
      w.proxy.reset();
      await verify(state);
      // No usable hint: the timestamp is unchanged since a complete root walk, so no probe either way.
      expect(seen(), garbage).toEqual(['timestamp.json 304']);
    }
  });

  it('without the header, an unchanged timestamp skips the probe only after a complete walk, and a changed one probes', async () => {
    lie(undefined);
    const state = tmp();
    await verify(state);
    expect(seen()[0]).toBe('timestamp.json 200');
    expect(seen()[1]).toBe('2.root.json 404');
    w.proxy.reset();
    await verify(state);
    expect(seen()).toEqual(['timestamp.json 304']);
    await rotateRoot(2); // writes a new timestamp too
    w.proxy.reset();
    expect((await verify(state)).tuf.root).toBe(2);
    expect(seen().slice(0, 3)).toEqual(['timestamp.json 200', '2.root.json 200', '3.root.json 404']);
  });

  it('a hint never makes the client accept metadata: a tampered or rolled-back timestamp is refused as before', async () => {
    const state = tmp();
    await verify(state);
    const oldTs = new Uint8Array((await w.h.request('GET', `/v1/repos/${REPO}/metadata/timestamp.json`)).body);
    const v2 = await pushImage(w.images, REPO, 'v2');
    await w.h.request('PUT', `/v1/repos/${REPO}/metadata/2.ci.json`, { token: CI, body: await w.h.ciBytes(2, { v1: w.v1, v2 }) });
    await verify(state);
    // Rollback: the old timestamp, with an honest-looking header and no ETag match.
    w.proxy.rewrite = (req, res) => (req.path.endsWith('/timestamp.json') ? { status: 200, headers: { ...res.headers, 'tufoci-root-version': '1', etag: '"x"' }, body: Buffer.from(oldTs) } : res);
    await expect(verify(state)).rejects.toThrow(/rollback/);
    // Tampered: one byte of the signed part changed.
    const tampered = Buffer.from(readFileSync(join(state, 'timestamp.json')));
    const at = tampered.indexOf('"version":') + 10;
    tampered[at] = tampered[at] === 0x39 ? 0x38 : tampered[at]! + 1;
    w.proxy.rewrite = (req, res) => (req.path.endsWith('/timestamp.json') ? { status: 200, headers: { ...res.headers, 'tufoci-root-version': '1' }, body: tampered } : res);
    await expect(verify(state)).rejects.toMatchObject({ code: 'TUF_REFUSED' });
    // A 304 to a request that did not ask for one is an error, not a cache hit.
    w.proxy.rewrite = (req, res) => (req.path.endsWith('/timestamp.json') ? { status: 304, headers: { 'tufoci-root-version': '1' }, body: Buffer.alloc(0) } : res);
    await expect(verify(undefined)).rejects.toMatchObject({ code: 'TUF_REFUSED' });
    w.proxy.rewrite = undefined;
    expect((await verify(state)).digest).toBe(w.v1.digest);
  });

  it('bounds what it reads: a body above the length tuf-js allows is refused, Content-Length first', async () => {
    const fetcher = new ServiceFetcher();
    const url = `${w.proxy.url}/v1/repos/${REPO}/metadata/1.root.json`;
    await expect(fetcher.downloadBytes(url, 100)).rejects.toThrow(/exceeds 100 bytes/);
    w.proxy.rewrite = (_req, res) => {
      const headers = { ...res.headers };
      delete headers['content-length'];
      return { ...res, headers };
    };
    await expect(fetcher.downloadBytes(url, 100)).rejects.toThrow(/exceeds 100 bytes/);
    await expect(fetcher.downloadBytes(`${w.proxy.url}/v1/repos/${REPO}/metadata/9.root.json`, 1000)).rejects.toMatchObject({ statusCode: 404 });
    await expect(fetcher.downloadBytes('file:///etc/passwd', 1000)).rejects.toMatchObject({ code: 'BAD_REQUEST' });
    expect(ROOT_VERSION_HEADER.toLowerCase()).toBe('tufoci-root-version');
  });
});
