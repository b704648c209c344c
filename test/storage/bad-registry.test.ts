/**
 * Issue #4 §6 "Bad input": a registry answering with the wrong digest, a
 * wrong media type, an oversized or endless body, HTML instead of JSON, a
 * redirect loop or a 5xx. Each becomes a typed StorageError naming the
 * repository and reference, and nothing partial becomes visible.
 */
import { createHash } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { EMBED_MAX_BYTES } from '../../src/storage/artifact.ts';
import { MetadataStore } from '../../src/storage/metadata-store.ts';
import { nextLink, RegistryStore } from '../../src/storage/registry-store.ts';
import { StorageError, type StorageErrorCode } from '../../src/storage/storage-error.ts';
import { OCI_MANIFEST_MEDIA_TYPE } from '../../src/storage/store.ts';
import { freeLoopbackPort } from '../support/registry-server.ts';
import { registryError, startFakeRegistry, type FakeRegistry, type RecordedRequest } from '../support/fake-registry.ts';

const text = (s: string): Buffer => Buffer.from(s);
const digestOf = (bytes: Uint8Array): string => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
const REPO = 'acme/app/tuf';

async function expectError(promise: Promise<unknown>, code: StorageErrorCode, reference?: string, repository = REPO): Promise<StorageError> {
  const error = await promise.then(
    () => {
      throw new Error('expected a rejection');
    },
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(StorageError);
  const se = error as StorageError;
  expect({ code: se.code, message: se.message }).toMatchObject({ code });
  expect(se.detail.backend).toBe('registry');
  expect(se.detail.repository).toBe(repository);
  if (reference !== undefined) expect(se.detail.reference).toBe(reference);
  return se;
}

function send(response: ServerResponse, status: number, headers: Record<string, string>, body?: Buffer | string): true {
  response.writeHead(status, headers);
  response.end(body);
  return true;
}

const manifestBytes = (annotation = 'x'): Buffer =>
  text(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST_MEDIA_TYPE, config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: digestOf(text('{}')), size: 2 }, layers: [], annotations: { a: annotation } }));

describe('RegistryStore against a misbehaving registry', () => {
  let fake: FakeRegistry;
  let store: RegistryStore;
  const path = (p: string): string => new URL(p, 'http://x').pathname;

  beforeAll(async () => {
    fake = await startFakeRegistry();
    store = new RegistryStore({ url: fake.url, retries: 2, retryBaseDelayMs: 5, timeoutMs: 3000, maxRedirects: 4, chunkedUploadThreshold: 100, chunkSize: 40, tagsPageSize: 2 });
  });
  afterAll(() => fake.stop());
  afterEach(() => {
    fake.intercept = undefined;
    fake.requests.length = 0;
  });

  describe('wrong digests', () => {
    it('refuses a blob whose bytes do not hash to the digest asked for', async () => {
      const digest = digestOf(text('the real content'));
      fake.intercept = (req, res) => req.url.includes('/blobs/') && send(res, 200, { 'Content-Type': 'application/octet-stream' }, 'other content');
      const error = await expectError(store.getBlob(REPO, digest, 1000), 'DIGEST_MISMATCH', digest);
      expect(error.detail['actual']).toBe(digestOf(text('other content')));
    });

    it('refuses a manifest by tag whose bytes differ from the Docker-Content-Digest announced', async () => {
      const bytes = manifestBytes();
      fake.intercept = (req, res) => req.url.includes('/manifests/') && send(res, 200, { 'Content-Type': OCI_MANIFEST_MEDIA_TYPE, 'Docker-Content-Digest': digestOf(text('else')) }, bytes);
      await expectError(store.getManifest(REPO, 'timestamp.json', 4096), 'DIGEST_MISMATCH', 'timestamp.json');
    });

    it('refuses a manifest by digest served with other bytes', async () => {
      const wanted = digestOf(manifestBytes('wanted'));
      fake.intercept = (req, res) => req.url.includes('/manifests/') && send(res, 200, { 'Content-Type': OCI_MANIFEST_MEDIA_TYPE }, manifestBytes('served'));
      await expectError(store.getManifest(REPO, wanted, 4096), 'DIGEST_MISMATCH', wanted);
    });

    it('refuses a manifest PUT the registry says it stored under another digest', async () => {
      fake.intercept = (req, res) => req.method === 'PUT' && send(res, 201, { 'Docker-Content-Digest': digestOf(text('nope')) });
      await expectError(store.putManifest(REPO, '1.root.json', manifestBytes(), OCI_MANIFEST_MEDIA_TYPE), 'DIGEST_MISMATCH', '1.root.json');
    });
  });

  describe('wrong media types and garbage', () => {
    it('refuses a manifest served as text/html', async () => {
      fake.intercept = (req, res) => req.url.includes('/manifests/') && send(res, 200, { 'Content-Type': 'text/html' }, '<html>login</html>');
      const error = await expectError(store.getManifest(REPO, '1.root.json', 4096), 'BAD_MEDIA_TYPE', '1.root.json');
      expect(error.detail['contentType']).toBe('text/html');
    });

    it('refuses HTML served with a manifest Content-Type', async () => {
      fake.intercept = (req, res) => req.url.includes('/manifests/') && send(res, 200, { 'Content-Type': OCI_MANIFEST_MEDIA_TYPE }, '<html>proxy error</html>');
      await expectError(store.getManifest(REPO, '1.root.json', 4096), 'PROTOCOL', '1.root.json');
    });

    it('refuses an HTML error page instead of a blob', async () => {
      const digest = digestOf(text('x'));
      fake.intercept = (req, res) => req.url.includes('/blobs/') && send(res, 200, { 'Content-Type': 'text/html; charset=utf-8' }, '<html></html>');
      await expectError(store.getBlob(REPO, digest, 1000), 'BAD_MEDIA_TYPE', digest);
    });

    it('refuses a tag list that is HTML, not JSON, or not a list of tags', async () => {
      fake.intercept = (req, res) => req.url.includes('/tags/list') && send(res, 200, { 'Content-Type': 'text/html' }, '<html></html>');
      await expectError(store.listTags(REPO), 'BAD_MEDIA_TYPE', 'tags/list');
      fake.intercept = (req, res) => req.url.includes('/tags/list') && send(res, 200, { 'Content-Type': 'application/json' }, '{"tags": [1, 2');
      await expectError(store.listTags(REPO), 'PROTOCOL', 'tags/list');
      fake.intercept = (req, res) => req.url.includes('/tags/list') && send(res, 200, { 'Content-Type': 'application/json' }, '{"tags": ["ok", "../evil"]}');
      await expectError(store.listTags(REPO), 'PROTOCOL', 'tags/list');
    });

    it('maps registry error bodies to codes and keeps them in detail', async () => {
      fake.intercept = (req, res) => {
        if (!req.url.includes('/manifests/')) return false;
        registryError(res, 404, 'MANIFEST_UNKNOWN', 'manifest unknown');
        return true;
      };
      const error = await expectError(store.getManifest(REPO, '9.root.json', 4096), 'NOT_FOUND', '9.root.json');
      expect(error.detail).toMatchObject({ status: 404, registryErrors: [{ code: 'MANIFEST_UNKNOWN', message: 'manifest unknown' }] });
      fake.intercept = (req, res) => {
        registryError(res, 403, 'DENIED', 'requested access to the resource is denied');
        return true;
      };
      await expectError(store.getManifest(REPO, '9.root.json', 4096), 'UNAUTHORIZED', '9.root.json');
    });
  });

  describe('oversized and endless bodies', () => {
    it('cuts off an endless blob body at the bound and releases the connection', async () => {
      let closed: Promise<void> | undefined;
      let sent = 0;
      fake.intercept = (req, res) => {
        if (!req.url.includes('/blobs/')) return false;
        res.writeHead(200, { 'Content-Type': 'application/octet-stream' });
        closed = new Promise((resolve) => res.on('close', () => resolve()));
        const chunk = Buffer.alloc(16 * 1024, 0x61);
        const pump = (): void => {
          while (!res.destroyed && res.write(chunk)) sent += chunk.byteLength;
          if (!res.destroyed) res.once('drain', pump);
        };
        pump();
        return true;
      };
      const digest = digestOf(text('whatever'));
      const started = Date.now();
      const error = await expectError(store.getBlob(REPO, digest, 256 * 1024), 'TOO_LARGE', digest);
      expect(error.detail['maxBytes']).toBe(256 * 1024);
      expect(Date.now() - started).toBeLessThan(2000);
      await closed;
      expect(sent).toBeLessThan(64 * 1024 * 1024);
    });

    it('refuses a declared Content-Length above the bound without reading the body', async () => {
      fake.intercept = (req, res) => {
        if (!req.url.includes('/manifests/')) return false;
        res.writeHead(200, { 'Content-Type': OCI_MANIFEST_MEDIA_TYPE, 'Content-Length': String(1024 * 1024 * 1024) });
        res.write('{');
        return true;
      };
      const error = await expectError(store.getManifest(REPO, '1.root.json', 4096), 'TOO_LARGE', '1.root.json');
      expect(error.message).toContain('Content-Length 1073741824');
    });
  });

  describe('redirects', () => {
    it('fails a redirect loop with PROTOCOL after maxRedirects', async () => {
      fake.intercept = (req, res) => (req.url.startsWith('/v2/') || req.url.startsWith('/loop/')) && send(res, 302, { Location: req.url.startsWith('/loop/a') ? '/loop/b' : '/loop/a' });
      const error = await expectError(store.getManifest(REPO, '1.root.json', 4096), 'PROTOCOL', '1.root.json');
      expect(error.detail['redirects']).toBe(5);
      expect(fake.requests).toHaveLength(5);
    });

    it('follows a redirect to storage on another origin without sending credentials there', async () => {
      const storage = await startFakeRegistry();
      try {
        const withAuth = new RegistryStore({ url: fake.url, credentials: { username: 'u', password: 'p' }, retries: 0 });
        const blob = text('blob from storage');
        const digest = digestOf(blob);
        storage.intercept = (req, res) => send(res, 200, { 'Content-Type': 'application/octet-stream' }, blob);
        fake.intercept = (req, res) => {
          if (req.headers.authorization === undefined) return send(res, 401, { 'WWW-Authenticate': 'Basic realm="fake"' });
          return send(res, 307, { Location: `${storage.url}/bucket/${digest.slice(7)}?sig=abc` });
        };
        expect(Buffer.from(await withAuth.getBlob(REPO, digest, 1000)).toString()).toBe('blob from storage');
        expect(fake.requests.map((r) => r.headers.authorization)).toEqual([undefined, `Basic ${Buffer.from('u:p').toString('base64')}`]);
        expect(storage.requests).toHaveLength(1);
        expect(storage.requests[0]!.url).toBe(`/bucket/${digest.slice(7)}?sig=abc`);
        expect(storage.requests[0]!.headers.authorization).toBeUndefined();
      } finally {
        await storage.stop();
      }
    });
  });

  describe('5xx, timeouts and retries', () => {
    it('retries an idempotent GET on 503 and succeeds', async () => {
      let failures = 2;
      fake.intercept = (req, res) => req.url.includes('/manifests/') && failures-- > 0 && send(res, 503, { 'Content-Type': 'text/plain' }, 'busy');
      const bytes = manifestBytes();
      fake.manifests.set(digestOf(bytes), { bytes, mediaType: OCI_MANIFEST_MEDIA_TYPE });
      fake.tags.set(`${REPO}:1.root.json`, digestOf(bytes));
      const got = await store.getManifest(REPO, '1.root.json', 4096);
      expect(got.digest).toBe(digestOf(bytes));
      expect(fake.requests.filter((r) => r.method === 'GET')).toHaveLength(3);
    });

    it('gives up with UNAVAILABLE after the retries, naming status and attempts', async () => {
      fake.intercept = (req, res) => send(res, 500, { 'Content-Type': 'text/plain' }, 'boom');
      const error = await expectError(store.getManifest(REPO, '2.root.json', 4096), 'UNAVAILABLE', '2.root.json');
      expect(error.detail['status']).toBe(500);
      expect(fake.requests).toHaveLength(3);
    });

    it('retries a manifest PUT (idempotent) but never an upload POST', async () => {
      let failures = 1;
      fake.intercept = (req, res) => req.method === 'PUT' && req.url.includes('/manifests/') && failures-- > 0 && send(res, 502, {});
      await store.putManifest(REPO, '1.root.json', manifestBytes(), OCI_MANIFEST_MEDIA_TYPE);
      expect(fake.requests.filter((r) => r.method === 'PUT')).toHaveLength(2);
      fake.requests.length = 0;
      fake.intercept = (req, res) => req.method === 'POST' && send(res, 503, {});
      await expectError(store.putBlob(REPO, text('never uploaded')), 'UNAVAILABLE', digestOf(text('never uploaded')));
      expect(fake.requests.map((r) => r.method)).toEqual(['HEAD', 'POST']);
    });

    it('times out a registry that never answers', async () => {
      const slow = new RegistryStore({ url: fake.url, timeoutMs: 200, retries: 0 });
      fake.intercept = () => true; // accept and never respond
      const started = Date.now();
      const error = await expectError(slow.getManifest(REPO, 'timestamp.json', 4096), 'UNAVAILABLE', 'timestamp.json');
      expect(error.message).toContain('timed out');
      expect(Date.now() - started).toBeLessThan(2000);
      expect(error.cause).toBeInstanceOf(Error);
    });

    it('reports an unreachable registry as UNAVAILABLE', async () => {
      const port = await freeLoopbackPort();
      const dead = new RegistryStore({ url: `http://127.0.0.1:${port}`, retries: 1, retryBaseDelayMs: 1 });
      await expectError(dead.listTags(REPO), 'UNAVAILABLE', 'tags/list');
      const pingError = await dead.ping().then(() => undefined, (e: unknown) => e);
      expect((pingError as StorageError).code).toBe('UNAVAILABLE');
    });
  });

  describe('tag pagination', () => {
    it('follows Link rel="next" across pages, relative and absolute, asking for n', async () => {
      const pages: Record<string, { tags: string[]; next?: string }> = {
        '': { tags: ['c', 'a'], next: `</v2/${REPO}/tags/list?n=2&last=c>; rel="next"` },
        c: { tags: ['e', 'd'], next: `<${'URL'}/v2/${REPO}/tags/list?n=2&last=e>; rel="next"` },
        e: { tags: ['f'] },
      };
      fake.intercept = (req, res) => {
        const url = new URL(req.url, 'http://x');
        const page = pages[url.searchParams.get('last') ?? ''];
        if (!page || url.searchParams.get('n') !== '2') return send(res, 400, {});
        const headers: Record<string, string> = { 'Content-Type': 'application/json; charset=utf-8' };
        if (page.next) headers['Link'] = page.next.replace('URL', fake.url);
        return send(res, 200, headers, JSON.stringify({ name: REPO, tags: page.tags }));
      };
      expect(await store.listTags(REPO)).toEqual(['a', 'c', 'd', 'e', 'f']);
      expect(fake.requests.map((r) => new URL(r.url, 'http://x').searchParams.get('last'))).toEqual([null, 'c', 'e']);
    });

    it('stops a Link loop with PROTOCOL', async () => {
      fake.intercept = (req, res) => send(res, 200, { 'Content-Type': 'application/json', Link: `</v2/${REPO}/tags/list?n=2>; rel="next"` }, '{"tags":["a"]}');
      await expectError(store.listTags(REPO), 'PROTOCOL', 'tags/list');
    });

    it('parses Link headers', () => {
      expect(nextLink('</v2/x/tags/list?n=2&last=b>; rel="next"')).toBe('/v2/x/tags/list?n=2&last=b');
      expect(nextLink('<https://a/prev>; rel="prev", <https://a/next>; rel=next')).toBe('https://a/next');
      expect(nextLink('<https://a/x>; rel="nextish"')).toBeUndefined();
      expect(nextLink(null)).toBeUndefined();
    });
  });

  describe('uploads', () => {
    it('uploads above the threshold in chunks: POST, PATCH with Content-Range per chunk, then PUT ?digest=', async () => {
      const bytes = Buffer.alloc(130, 7);
      const ref = await store.putBlob(REPO, bytes);
      expect(ref.digest).toBe(digestOf(bytes));
      const calls = fake.requests.map((r) => `${r.method} ${r.method === 'PATCH' ? r.headers['content-range'] : ''}`.trim());
      expect(calls).toEqual(['HEAD', 'POST', 'PATCH 0-39', 'PATCH 40-79', 'PATCH 80-119', 'PATCH 120-129', 'PUT']);
      const put = fake.requests.at(-1)!;
      expect(new URL(put.url, 'http://x').searchParams.get('digest')).toBe(ref.digest);
      expect(new URL(put.url, 'http://x').searchParams.get('_state')).toBe('s130');
      expect(put.body.byteLength).toBe(0);
      expect(fake.blobs.get(ref.digest)?.equals(bytes)).toBe(true);
    });

    it('uploads below the threshold monolithically: POST then PUT with the body', async () => {
      const bytes = text('small');
      await store.putBlob(REPO, bytes);
      expect(fake.requests.map((r) => r.method)).toEqual(['HEAD', 'POST', 'PUT']);
      expect(fake.requests[2]!.body.equals(bytes)).toBe(true);
      expect(fake.requests[2]!.headers['content-type']).toBe('application/octet-stream');
    });

    it('skips the upload when HEAD finds the blob', async () => {
      const bytes = text('already there');
      fake.blobs.set(digestOf(bytes), bytes);
      await store.putBlob(REPO, bytes);
      expect(fake.requests.map((r) => r.method)).toEqual(['HEAD']);
    });

    it('refuses a chunk acknowledgement with the wrong Range', async () => {
      fake.intercept = (req, res) => req.method === 'PATCH' && send(res, 202, { Location: `/v2/${REPO}/blobs/uploads/x`, Range: '0-5' });
      await expectError(store.putBlob(REPO, Buffer.alloc(120, 1)), 'PROTOCOL');
    });
  });

  describe('write path round trips', () => {
    /** A fresh client (nothing remembered), and the requests it makes as "METHOD last-path-segment". */
    const fresh = (): RegistryStore => new RegistryStore({ url: fake.url, retries: 0, chunkedUploadThreshold: 1000 });
    const calls = (): string[] =>
      fake.requests.map((r) => `${r.method} ${path(r.url).includes('/blobs/uploads/') ? 'upload' : path(r.url).split('/').at(-1)}${new URL(r.url, 'http://x').searchParams.has('digest') && r.method === 'POST' ? '?digest' : ''}`);

    it('publishes with no existence checks, blobs before manifests, role before snapshot, timestamp strictly last', async () => {
      const metadata = new MetadataStore({ store: fresh() });
      const files = (v: number) => [
        { fileName: 'timestamp.json', bytes: text(`{"t":${v}}`) },
        { fileName: `${v}.snapshot.json`, bytes: text(`{"s":${v}}`) },
        { fileName: `${v}.ci.json`, bytes: text(`{"c":${v}}`) },
      ];
      const replaceable = (v: number) => ({ replaceable: new Set([`${v}.snapshot.json`, `${v}.ci.json`]) });
      await metadata.publish('acme/fast', files(1), replaceable(1));
      const first = calls();
      expect(first.filter((c) => c.startsWith('HEAD') || c.startsWith('GET'))).toEqual([]);
      expect(first.filter((c) => c.startsWith('PUT') && !c.includes('upload'))).toEqual(['PUT 1.ci.json', 'PUT 1.snapshot.json', 'PUT timestamp.json']);
      expect(first.at(-1)).toBe('PUT timestamp.json');
      // Every blob of the first batch (role, snapshot, the empty config once) precedes its manifests;
      // the timestamp's blob comes after them.
      const firstManifest = first.indexOf('PUT 1.ci.json');
      expect(first.slice(0, firstManifest).filter((c) => c === 'PUT upload')).toHaveLength(3);
      expect(first.slice(firstManifest).filter((c) => c === 'PUT upload')).toHaveLength(1);
      expect(first.indexOf('PUT 1.snapshot.json')).toBeLessThan(first.lastIndexOf('POST upload'));
      // distribution answers the single-request POST with an upload session: the body goes again in the PUT.
      expect(first[0]).toBe('POST upload?digest');
      fake.requests.length = 0;
      await metadata.publish('acme/fast', files(2), replaceable(2));
      // The empty config blob is remembered; the single-request POST is no longer offered.
      const second = calls();
      expect(second.slice(0, 4).sort()).toEqual(['POST upload', 'POST upload', 'PUT upload', 'PUT upload']); // two blobs, in parallel
      expect(second.slice(4)).toEqual([
        'PUT 2.ci.json',
        'PUT 2.snapshot.json',
        'POST upload',
        'PUT upload',
        'PUT timestamp.json',
      ]);
    });

    it('uploads a blob in one request where the registry completes a POST with ?digest= (201)', async () => {
      fake.intercept = (req, res) => {
        const url = new URL(req.url, 'http://x');
        const digest = url.searchParams.get('digest');
        if (req.method !== 'POST' || !url.pathname.endsWith('/blobs/uploads/') || digest === null) return false;
        if (digestOf(req.body) !== digest) return send(res, 400, { 'Content-Type': 'application/json' }, '{"errors":[{"code":"DIGEST_INVALID"}]}');
        fake.blobs.set(digest, req.body);
        return send(res, 201, { 'Docker-Content-Digest': digest, Location: `/v2/${REPO}/blobs/${digest}`, 'Content-Length': '0' });
      };
      const store = fresh();
      await store.putBlob(REPO, text('single one'));
      await store.putBlob(REPO, text('single two'));
      expect(calls()).toEqual(['HEAD sha256:' + digestOf(text('single one')).slice(7), 'POST upload?digest', 'HEAD sha256:' + digestOf(text('single two')).slice(7), 'POST upload?digest']);
      expect(fake.blobs.get(digestOf(text('single two')))?.toString()).toBe('single two');
      fake.requests.length = 0;
      const metadata = new MetadataStore({ store });
      await metadata.writeMetadata('acme/single', 'timestamp.json', text('{"t":1}'));
      expect(calls()).toEqual(['POST upload?digest', 'POST upload?digest', 'PUT timestamp.json']);
    });

    it('reads an unchanged timestamp.json in one conditional request, and a moved one in full', async () => {
      fake.intercept = (req, res) => {
        if (req.method !== 'GET' || !path(req.url).endsWith('/manifests/timestamp.json')) return false;
        const current = fake.tags.get('acme/cond/tuf:timestamp.json');
        return req.headers['if-none-match'] === `"${current}"` && send(res, 304, {});
      };
      const metadata = new MetadataStore({ store: fresh() });
      await metadata.writeMetadata('acme/cond', 'timestamp.json', text('{"t":1}'));
      fake.requests.length = 0;
      expect(Buffer.from(await metadata.readMetadata('acme/cond', 'timestamp.json', 100)).toString()).toBe('{"t":1}');
      expect(calls()).toEqual(['GET timestamp.json']);
      await new MetadataStore({ store: fresh() }).writeMetadata('acme/cond', 'timestamp.json', text('{"t":2}'));
      fake.requests.length = 0;
      expect(Buffer.from(await metadata.readMetadata('acme/cond', 'timestamp.json', 100)).toString()).toBe('{"t":2}');
      // The moved timestamp rides in its manifest (OCI 1.1 data): no blob request either.
      expect(calls()).toEqual(['GET timestamp.json']);
      // A registry that ignores If-None-Match answers in full: still the right bytes.
      fake.intercept = undefined;
      fake.requests.length = 0;
      expect(Buffer.from(await metadata.readMetadata('acme/cond', 'timestamp.json', 100)).toString()).toBe('{"t":2}');
      expect(calls()).toHaveLength(1);
    });

    it('asks again about a blob it believed present once the registry refuses a manifest for a missing blob', async () => {
      const store = fresh();
      const layer = text('collected later');
      await store.putBlob(REPO, layer);
      await store.putBlob(REPO, layer);
      expect(calls().filter((c) => c.startsWith('HEAD'))).toHaveLength(1); // the second put remembered it
      fake.blobs.delete(digestOf(layer)); // a registry garbage collection
      fake.intercept = (req, res) =>
        req.method === 'PUT' && req.url.includes('/manifests/') && !fake.blobs.has(digestOf(layer)) && send(res, 400, { 'Content-Type': 'application/json' }, '{"errors":[{"code":"MANIFEST_BLOB_UNKNOWN","message":"blob unknown to registry"}]}');
      const manifest = text(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST_MEDIA_TYPE, config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: digestOf(layer), size: layer.byteLength }, layers: [] }));
      await expectError(store.putManifest(REPO, 'gc', manifest, OCI_MANIFEST_MEDIA_TYPE), 'INVALID_MANIFEST', 'gc');
      fake.requests.length = 0;
      await store.putBlob(REPO, layer);
      expect(calls()[0]).toMatch(/^HEAD sha256:/);
      expect(fake.blobs.has(digestOf(layer))).toBe(true);
      await store.putManifest(REPO, 'gc', manifest, OCI_MANIFEST_MEDIA_TYPE);
    });
  });

  describe('MetadataStore over a misbehaving registry', () => {
    it('names the file when the layer is served with the wrong bytes', async () => {
      const metadata = new MetadataStore({ store, compress: false });
      // Above EMBED_MAX_BYTES and stored as it is: the layer is read as a blob.
      const pad = 'x'.repeat(EMBED_MAX_BYTES);
      const bytes = text(`{"signed":{"_type":"snapshot","version":3,"pad":"${pad}"}}`);
      await metadata.writeMetadata('acme/app', '3.snapshot.json', bytes);
      const layer = digestOf(bytes);
      fake.intercept = (req, res) => path(req.url).endsWith(layer) && req.method === 'GET' && send(res, 200, { 'Content-Type': 'application/octet-stream' }, `{"signed":{"_type":"snapshot","version":4,"pad":"${pad}"}}`);
      const error = await expectError(metadata.readMetadata('acme/app', '3.snapshot.json', 1 << 20), 'DIGEST_MISMATCH', '3.snapshot.json');
      expect(error.detail['layerDigest']).toBe(layer);
      expect(error.cause).toBeInstanceOf(StorageError);
    });

    it('refuses an artifact whose artifactType or layer media type is not ours', async () => {
      const metadata = new MetadataStore({ store });
      await metadata.writeMetadata('acme/app', '5.targets.json', text('{}'));
      const digest = fake.tags.get(`${REPO}:5.targets.json`)!;
      const original = fake.manifests.get(digest)!.bytes.toString();
      const swapped = Buffer.from(original.replace('application/vnd.tuf.metadata+json', 'application/vnd.oci.image.layer.v1.tar'));
      fake.intercept = (req, res) => path(req.url).endsWith('/5.targets.json') && send(res, 200, { 'Content-Type': OCI_MANIFEST_MEDIA_TYPE }, swapped);
      await expectError(metadata.readMetadata('acme/app', '5.targets.json', 4096), 'BAD_MEDIA_TYPE', '5.targets.json');
    });

    it('never moves timestamp.json when a file before it fails to write (5xx on the snapshot manifest)', async () => {
      const metadata = new MetadataStore({ store });
      await metadata.publish('acme/pub', [
        { fileName: '1.snapshot.json', bytes: text('{"v":1,"s":1}') },
        { fileName: 'timestamp.json', bytes: text('{"v":1,"t":1}') },
      ]);
      const before = fake.tags.get('acme/pub/tuf:timestamp.json');
      fake.requests.length = 0;
      fake.intercept = (req: RecordedRequest, res) => req.method === 'PUT' && req.url.endsWith('/manifests/2.snapshot.json') && send(res, 503, {});
      await expectError(
        metadata.publish('acme/pub', [
          { fileName: 'timestamp.json', bytes: text('{"v":2,"t":2}') },
          { fileName: '2.targets.json', bytes: text('{"v":2,"g":2}') },
          { fileName: '2.snapshot.json', bytes: text('{"v":2,"s":2}') },
        ]),
        'UNAVAILABLE',
        '2.snapshot.json',
        'acme/pub/tuf',
      );
      const manifestPuts = fake.requests.filter((r) => r.method === 'PUT' && r.url.includes('/manifests/')).map((r) => path(r.url).split('/').at(-1));
      expect(manifestPuts).toEqual(['2.targets.json', '2.snapshot.json', '2.snapshot.json', '2.snapshot.json']);
      expect(fake.tags.get('acme/pub/tuf:timestamp.json')).toBe(before);
      expect(fake.tags.has('acme/pub/tuf:2.snapshot.json')).toBe(false);
    });
  });
});
