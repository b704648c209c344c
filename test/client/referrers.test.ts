/**
 * Listing plain signatures: the OCI 1.1 referrers API first, the referrers tag
 * schema (`sha256-<hex>`) when the registry has no such API.
 *
 * - The API branch runs against a small local HTTP server that implements the
 *   referrers endpoint on top of the fake registry (Debian's docker-registry
 *   2.8 has none), with the tag-schema index deleted so only the API can find
 *   the signature.
 * - The fallback runs against a real docker-registry, which answers 404.
 */
import type { ServerResponse } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listSignatures, pushSignature, referrersTag, signDescriptor, verifySignatures, SIGNATURE_ARTIFACT_TYPE, SignatureError } from '../../src/client/signatures.ts';
import { InMemorySigner } from '../../src/keys/index.ts';
import { EMPTY_JSON_BYTES, EMPTY_JSON_DIGEST, MemoryStore, OCI_INDEX_MEDIA_TYPE, OCI_MANIFEST_MEDIA_TYPE, RegistryStore, StorageError, sha256Digest, type Store } from '../../src/storage/index.ts';
import { startFakeRegistry, type FakeRegistry, type RecordedRequest } from '../support/fake-registry.ts';
import { pushImage } from '../support/image.ts';
import { startRegistry, type RegistryServer } from '../support/registry-server.ts';

const REPO = 'wabbit-networks/net-monitor';
const ci = InMemorySigner.generate();
const other = InMemorySigner.generate();

/** The referrers endpoint over the fake registry's manifests (what a distribution 1.1 registry computes from `subject`). */
function referrersEndpoint(fake: FakeRegistry, opts: { pageSize?: number; ignoreFilter?: boolean; extra?: unknown[] } = {}) {
  return (request: RecordedRequest, response: ServerResponse): boolean => {
    const url = new URL(request.url, 'http://fake');
    const m = /^\/v2\/(.+)\/referrers\/(sha256:[a-f0-9]{64})$/.exec(url.pathname);
    if (!m || request.method !== 'GET') return false;
    const filter = opts.ignoreFilter ? null : url.searchParams.get('artifactType');
    const all: unknown[] = [...(opts.extra ?? [])];
    for (const [digest, manifest] of fake.manifests) {
      const parsed = JSON.parse(manifest.bytes.toString('utf8')) as { subject?: { digest?: string }; artifactType?: string };
      if (parsed.subject?.digest !== m[2]) continue;
      if (filter !== null && parsed.artifactType !== filter) continue;
      all.push({ mediaType: manifest.mediaType, digest, size: manifest.bytes.byteLength, ...(parsed.artifactType ? { artifactType: parsed.artifactType } : {}) });
    }
    const pageSize = opts.pageSize ?? 1000;
    const start = Number(url.searchParams.get('start') ?? '0');
    const page = all.slice(start, start + pageSize);
    const headers: Record<string, string> = { 'Content-Type': OCI_INDEX_MEDIA_TYPE };
    if (filter !== null) headers['OCI-Filters-Applied'] = 'artifactType';
    if (start + pageSize < all.length) {
      const next = new URL(url.href);
      next.searchParams.set('start', String(start + pageSize));
      headers['Link'] = `<${next.pathname}${next.search}>; rel="next"`;
    }
    response.writeHead(200, headers);
    response.end(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX_MEDIA_TYPE, manifests: page }));
    return true;
  };
}

describe('referrers API (a registry that implements it)', () => {
  let fake: FakeRegistry;
  let store: RegistryStore;
  let image: Awaited<ReturnType<typeof pushImage>>;

  beforeAll(async () => {
    fake = await startFakeRegistry();
    store = new RegistryStore({ url: fake.url, retries: 0 });
    image = await pushImage(store, REPO, 'v1', 'referrers api');
    await pushSignature(store, REPO, image, await signDescriptor(image, [ci]));
    await pushSignature(store, REPO, image, await signDescriptor(image, [other]));
    // Only the API can find the signatures now.
    fake.tags.delete(`${REPO}:${referrersTag(image.digest)}`);
  });
  afterAll(async () => fake?.stop());

  it('lists signatures through GET /v2/<name>/referrers/<digest>?artifactType=… and verifies them', async () => {
    fake.intercept = referrersEndpoint(fake);
    fake.requests.length = 0;
    const listed = await listSignatures(store, REPO, image.digest);
    expect(listed.source).toBe('referrers-api');
    expect(listed.referrers).toHaveLength(2);
    const asked = fake.requests.find((r) => r.url.includes('/referrers/'));
    expect(asked?.url).toBe(`/v2/${REPO}/referrers/${image.digest}?artifactType=${encodeURIComponent(SIGNATURE_ARTIFACT_TYPE)}`);
    expect(asked?.headers['accept']).toBe(OCI_INDEX_MEDIA_TYPE);
    expect(fake.requests.some((r) => r.url.includes(referrersTag(image.digest)))).toBe(false);
    expect(await verifySignatures(store, REPO, image, { keys: [ci.public, other.public], threshold: 2 })).toEqual(expect.arrayContaining([ci.keyid, other.keyid]));
  });

  it('filters by artifact type itself when the registry ignores the filter, and skips malformed entries', async () => {
    const junk = [
      { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: `sha256:${'1'.repeat(64)}`, size: 10, artifactType: 'application/vnd.example.sbom' },
      { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: 'not-a-digest', size: 10, artifactType: SIGNATURE_ARTIFACT_TYPE },
      { digest: `sha256:${'2'.repeat(64)}`, size: 10, artifactType: SIGNATURE_ARTIFACT_TYPE },
      'garbage',
    ];
    fake.intercept = referrersEndpoint(fake, { ignoreFilter: true, extra: junk });
    const listed = await store.listReferrers(REPO, image.digest, { artifactType: SIGNATURE_ARTIFACT_TYPE, maxBytes: 1 << 20 });
    expect(listed).toHaveLength(2);
    expect(listed.every((d) => d.artifactType === SIGNATURE_ARTIFACT_TYPE)).toBe(true);
    expect(await verifySignatures(store, REPO, image, { keys: [ci.public] })).toEqual([ci.keyid]);
  });

  it('follows Link pages', async () => {
    fake.intercept = referrersEndpoint(fake, { pageSize: 1 });
    fake.requests.length = 0;
    const listed = await store.listReferrers(REPO, image.digest, { artifactType: SIGNATURE_ARTIFACT_TYPE, maxBytes: 1 << 20 });
    expect(listed).toHaveLength(2);
    expect(fake.requests.filter((r) => r.url.includes('/referrers/'))).toHaveLength(2);
  });

  it('bounds the response and refuses what is not an image index', async () => {
    fake.intercept = (request, response) => {
      if (!request.url.includes('/referrers/')) return false;
      response.writeHead(200, { 'Content-Type': OCI_INDEX_MEDIA_TYPE });
      response.end(JSON.stringify({ schemaVersion: 2, manifests: Array.from({ length: 5000 }, (_, i) => ({ mediaType: 'x', digest: `sha256:${i.toString(16).padStart(64, '0')}`, size: i })) }));
      return true;
    };
    await expect(store.listReferrers(REPO, image.digest, { maxBytes: 4096 })).rejects.toMatchObject({ code: 'TOO_LARGE' });
    fake.intercept = (request, response) => {
      if (!request.url.includes('/referrers/')) return false;
      response.writeHead(200, { 'Content-Type': 'text/html' });
      response.end('<html>');
      return true;
    };
    await expect(store.listReferrers(REPO, image.digest, { maxBytes: 4096 })).rejects.toMatchObject({ code: 'BAD_MEDIA_TYPE' });
    fake.intercept = (request, response) => {
      if (!request.url.includes('/referrers/')) return false;
      response.writeHead(200, { 'Content-Type': OCI_INDEX_MEDIA_TYPE });
      response.end('{"schemaVersion":2}');
      return true;
    };
    const err = await listSignatures(store, REPO, image.digest).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StorageError);
    expect((err as StorageError).code).toBe('PROTOCOL');
  });

  it('a listed referrer that is not a signature of this image does not count', async () => {
    // The API lists the other image's signature manifest under this digest: its subject differs, so it is skipped.
    const second = await pushImage(store, REPO, 'v2', 'another image');
    const sig = await pushSignature(store, REPO, second, await signDescriptor(second, [ci]));
    fake.intercept = (request, response) => {
      if (!request.url.includes(`/referrers/${image.digest}`)) return false;
      response.writeHead(200, { 'Content-Type': OCI_INDEX_MEDIA_TYPE });
      response.end(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX_MEDIA_TYPE, manifests: [sig] }));
      return true;
    };
    const err = await verifySignatures(store, REPO, image, { keys: [ci.public] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SignatureError);
    expect((err as SignatureError).message).toMatch(/signed by 0 of the 1 trusted key/);
  });
});

describe('fallback to the tag schema', () => {
  let registry: RegistryServer;

  beforeAll(async () => {
    registry = await startRegistry();
  });
  afterAll(async () => registry?.stop());

  it('docker-registry 2.8 has no referrers API: UNSUPPORTED, then the sha256-<hex> tag is used', async () => {
    const store = new RegistryStore({ url: registry.url });
    const image = await pushImage(store, REPO, 'v1', 'fallback');
    await pushSignature(store, REPO, image, await signDescriptor(image, [ci]));
    await expect(store.listReferrers(REPO, image.digest, { maxBytes: 1 << 20 })).rejects.toMatchObject({ code: 'UNSUPPORTED' });
    const listed = await listSignatures(store, REPO, image.digest);
    expect(listed.source).toBe('tag-schema');
    expect(listed.referrers).toHaveLength(1);
    expect(await verifySignatures(store, REPO, image, { keys: [ci.public] })).toEqual([ci.keyid]);
  });

  it('verifying reads the sha256-<hex> tag first: one request, the signature manifest and envelope carried in the index; the API is not asked', async () => {
    const fake = await startFakeRegistry();
    try {
      const store = new RegistryStore({ url: fake.url, retries: 0 });
      const image = await pushImage(store, REPO, 'v1', 'fake fallback');
      await pushSignature(store, REPO, image, await signDescriptor(image, [ci]));
      fake.requests.length = 0;
      expect(await verifySignatures(store, REPO, image, { keys: [ci.public] })).toEqual([ci.keyid]);
      expect(fake.requests.map((r) => `${r.method} ${r.url}`)).toEqual([`GET /v2/${REPO}/manifests/${referrersTag(image.digest)}`]);
      // Two signers: the index lists both, still one request.
      await pushSignature(store, REPO, image, await signDescriptor(image, [other]));
      fake.requests.length = 0;
      expect(await verifySignatures(store, REPO, image, { keys: [ci.public, other.public], threshold: 2 })).toHaveLength(2);
      expect(fake.requests).toHaveLength(1);
    } finally {
      await fake.stop();
    }
  });

  it('listing asks a registry answering 404 to the referrers API once per store, then uses the tag schema directly', async () => {
    const fake = await startFakeRegistry();
    try {
      const store = new RegistryStore({ url: fake.url, retries: 0 });
      const image = await pushImage(store, REPO, 'v1', 'fake listing');
      await pushSignature(store, REPO, image, await signDescriptor(image, [ci]));
      fake.requests.length = 0;
      expect((await listSignatures(store, REPO, image.digest)).source).toBe('tag-schema');
      expect((await listSignatures(store, REPO, image.digest)).source).toBe('tag-schema');
      expect(fake.requests.filter((r) => r.url.includes('/referrers/'))).toHaveLength(1);
    } finally {
      await fake.stop();
    }
  });

  it('tag schema: a descriptor without artifactType (skopeo 1.9 drops it when copying) is a candidate; the manifest decides', async () => {
    const store = new MemoryStore();
    const image = await pushImage(store, REPO, 'v1', 'stripped index');
    await pushSignature(store, REPO, image, await signDescriptor(image, [ci]));
    // Another referrer that is not a signature, listed without artifactType either.
    const sbom = new TextEncoder().encode(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST_MEDIA_TYPE, artifactType: 'application/vnd.example.sbom', config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: EMPTY_JSON_DIGEST, size: 2 }, layers: [{ mediaType: 'application/vnd.oci.empty.v1+json', digest: EMPTY_JSON_DIGEST, size: 2 }], subject: image }));
    await store.putBlob(REPO, EMPTY_JSON_BYTES);
    const sbomDigest = (await store.putManifest(REPO, sha256Digest(sbom), sbom, OCI_MANIFEST_MEDIA_TYPE)).digest;
    const tag = referrersTag(image.digest);
    const index = JSON.parse(new TextDecoder().decode((await store.getManifest(REPO, tag, 1 << 20)).bytes)) as { manifests: Array<Record<string, unknown>> };
    index.manifests = [...index.manifests.map(({ artifactType: _dropped, ...rest }) => rest), { mediaType: OCI_MANIFEST_MEDIA_TYPE, digest: sbomDigest, size: sbom.byteLength }];
    await store.putManifest(REPO, tag, new TextEncoder().encode(JSON.stringify(index)), OCI_INDEX_MEDIA_TYPE);
    expect((await listSignatures(store, REPO, image.digest)).referrers).toHaveLength(2);
    expect(await verifySignatures(store, REPO, image, { keys: [ci.public] })).toEqual([ci.keyid]);
  });

  it('a store without listReferrers (memory, OCI layout) uses the tag schema', async () => {
    const store = new MemoryStore();
    expect((store as Store).listReferrers).toBeUndefined();
    const image = await pushImage(store, REPO, 'v1', 'memory');
    await pushSignature(store, REPO, image, await signDescriptor(image, [ci]));
    expect((await listSignatures(store, REPO, image.digest)).source).toBe('tag-schema');
    expect(await verifySignatures(store, REPO, image, { keys: [ci.public] })).toEqual([ci.keyid]);
  });
});
