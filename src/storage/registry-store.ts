/**
 * OCI distribution API backend: the `Store` methods, on registry-http.ts
 * (requests with auth, retries, redirects, deadlines and typed errors) and
 * registry-upload.ts (monolithic and chunked blob uploads).
 *
 * Invariants:
 * - Every blob and manifest fetched is hashed; a body that does not hash to
 *   the digest asked for, or to the `Docker-Content-Digest` the registry
 *   announced, is refused (`DIGEST_MISMATCH`). Manifests must come back with a
 *   manifest Content-Type (`BAD_MEDIA_TYPE`) and parse as one (`PROTOCOL`).
 * - Only idempotent requests are retried (GET, HEAD, PUT of a manifest);
 *   upload sessions (POST/PATCH/PUT of an upload) are never replayed.
 * - A tag moves only when the registry has accepted the whole manifest, which
 *   it accepts only once every referenced blob is uploaded.
 * - Lists (tags, catalog, referrers) follow `Link: rel="next"` pages on the
 *   registry's own origin only, bounded in pages and bytes.
 * - Blobs known to exist (uploaded, found by HEAD or read back by this
 *   instance) are remembered per repository, never across repositories, in a
 *   bounded set: content addressed, so the memory cannot go stale except by a
 *   registry garbage collection, and a manifest PUT refused for an unknown
 *   blob forgets its blobs. `putManifests` uploads the blobs it is given
 *   without asking first (they are new bytes nearly always) and in parallel.
 */
import { CheckedStore, type CheckedStoreOptions } from './checked-store.ts';
import { sha256Digest } from './digest.ts';
import { discardBody, mediaTypeOf } from './http-body.ts';
import { checkManifest, checkManifestPut } from './manifest-refs.ts';
import { clip, isDigest, isRepositoryName, isTag } from './names.ts';
import type { RegistryAuth } from './registry-auth.ts';
import { isRecord, nextLink, RegistryHttp, type AccessClass, type RegistryErrorEntry, type RegistryHttpOptions, type RequestSpec } from './registry-http.ts';
import { RegistryUploader, type RegistryUploadOptions } from './registry-upload.ts';
import { MANIFEST_MEDIA_TYPES, type BlobRef, type Manifest, type ManifestPut, type Store } from './store.ts';
import { OCI_INDEX_MEDIA_TYPE, type ListReferrersOptions, type ReferrerDescriptor } from './store.ts';

export { nextLink } from './registry-http.ts';

/** Bound on the blobs remembered as present (repository + digest pairs). */
const MAX_KNOWN_BLOBS = 16_384;
/** Blob uploads of one `putManifests` in flight at once. */
const UPLOAD_CONCURRENCY = 4;

export interface RegistryStoreOptions extends RegistryHttpOptions, RegistryUploadOptions, CheckedStoreOptions {
  /** `n` asked per page of tags/list (default 1000); registries may ignore it. */
  tagsPageSize?: number;
  /** Bound on one tags/list page (default 16 MiB). */
  maxTagsPageBytes?: number;
  /** Bound on pages followed (default 10,000). */
  maxTagsPages?: number;
}

interface CheckedManifest {
  digest: string;
  /** Blobs the manifest references. */
  blobs: string[];
}

/** The backend behind `RegistryStore`'s checks: names, digests and bounds are well-formed here. */
class RegistryBackend implements Store {
  readonly backend = 'registry';
  readonly #http: RegistryHttp;
  readonly #uploader: RegistryUploader;
  readonly #tagsPageSize: number;
  readonly #maxTagsPageBytes: number;
  readonly #maxTagsPages: number;
  /** `repository\ndigest` of blobs known to be in that repository, oldest first. */
  readonly #knownBlobs = new Set<string>();

  constructor(options: RegistryStoreOptions) {
    this.#http = new RegistryHttp(options);
    this.#uploader = new RegistryUploader(this.#http, options);
    this.#tagsPageSize = options.tagsPageSize ?? 1000;
    this.#maxTagsPageBytes = options.maxTagsPageBytes ?? 16 * 1024 * 1024;
    this.#maxTagsPages = options.maxTagsPages ?? 10_000;
  }

  get auth(): RegistryAuth {
    return this.#http.auth;
  }

  async ping(): Promise<void> {
    const spec: RequestSpec = { method: 'GET', url: this.#http.url('/v2/'), repository: '', reference: '', idempotent: true, access: 'pull' };
    const response = await this.#http.request(spec);
    if (response.status !== 200) throw await this.#http.unexpected(response, spec, 'ping');
    await discardBody(response);
  }

  async hasBlob(repository: string, digest: string): Promise<boolean> {
    const spec: RequestSpec = { method: 'HEAD', url: this.#http.url(`/v2/${repository}/blobs/${digest}`), repository, reference: digest, idempotent: true, access: 'pull' };
    const response = await this.#http.request(spec);
    await discardBody(response);
    if (response.status === 200) {
      this.#rememberBlob(repository, digest);
      return true;
    }
    if (response.status === 404) return false;
    throw await this.#http.unexpected(response, spec, 'checking blob');
  }

  #rememberBlob(repository: string, digest: string): void {
    const key = `${repository}\n${digest}`;
    this.#knownBlobs.delete(key);
    this.#knownBlobs.add(key);
    if (this.#knownBlobs.size > MAX_KNOWN_BLOBS) this.#knownBlobs.delete(this.#knownBlobs.values().next().value as string);
  }

  #isKnownBlob(repository: string, digest: string): boolean {
    return this.#knownBlobs.has(`${repository}\n${digest}`);
  }

  async getBlob(repository: string, digest: string, maxBytes: number): Promise<Uint8Array> {
    const spec: RequestSpec = { method: 'GET', url: this.#http.url(`/v2/${repository}/blobs/${digest}`), repository, reference: digest, idempotent: true, access: 'pull' };
    const response = await this.#http.request(spec);
    if (response.status !== 200) throw await this.#http.unexpected(response, spec, 'blob');
    if (mediaTypeOf(response.headers.get('content-type')) === 'text/html') {
      await discardBody(response);
      throw this.#http.fail('BAD_MEDIA_TYPE', `blob ${digest} in ${repository} came back as text/html (an error page, not content)`, repository, digest);
    }
    const bytes = await this.#http.readBody(response, spec, maxBytes, 'blob');
    const actual = sha256Digest(bytes);
    if (actual !== digest) {
      throw this.#http.fail('DIGEST_MISMATCH', `blob ${digest} in ${repository}: the registry served content hashing to ${actual}`, repository, digest, { actual });
    }
    this.#rememberBlob(repository, digest);
    return bytes;
  }

  async putBlob(repository: string, bytes: Uint8Array): Promise<BlobRef> {
    const digest = sha256Digest(bytes);
    const ref = { digest, size: bytes.byteLength };
    if (this.#isKnownBlob(repository, digest) || (await this.hasBlob(repository, digest))) return ref;
    await this.#uploader.upload(repository, digest, bytes);
    this.#rememberBlob(repository, digest);
    return ref;
  }

  /**
   * Store several manifests with their blobs (see `Store.putManifests`):
   * every manifest is checked first, blobs not known to be there are uploaded
   * without asking, in parallel, then the manifests are PUT one after
   * another in the given order, stopping at the first failure.
   */
  async putManifests(repository: string, puts: readonly ManifestPut[]): Promise<Array<{ digest: string }>> {
    const checked = puts.map((p) => this.#checkManifestPut(repository, p.reference, p.bytes, p.mediaType));
    const blobs = new Map<string, Uint8Array>();
    for (const p of puts) {
      for (const bytes of p.blobs) {
        const digest = sha256Digest(bytes);
        if (!this.#isKnownBlob(repository, digest)) blobs.set(digest, bytes);
      }
    }
    const pending = [...blobs];
    const failures: unknown[] = [];
    await Promise.all(
      Array.from({ length: Math.min(UPLOAD_CONCURRENCY, pending.length) }, async () => {
        for (let next = pending.shift(); next !== undefined && failures.length === 0; next = pending.shift()) {
          const [digest, bytes] = next;
          try {
            // A large blob may well be there already: one HEAD is cheap next to sending it again.
            if (bytes.byteLength < this.#uploader.chunkedThreshold || !(await this.hasBlob(repository, digest))) {
              await this.#uploader.upload(repository, digest, bytes);
              this.#rememberBlob(repository, digest);
            }
          } catch (error) {
            failures.push(error);
          }
        }
      }),
    );
    if (failures.length > 0) throw failures[0];
    const out: Array<{ digest: string }> = [];
    for (const [i, p] of puts.entries()) out.push(await this.#sendManifest(repository, p.reference, p.bytes, p.mediaType, checked[i] as CheckedManifest));
    return out;
  }

  async putManifest(repository: string, reference: string, bytes: Uint8Array, mediaType: string): Promise<{ digest: string }> {
    return this.#sendManifest(repository, reference, bytes, mediaType, this.#checkManifestPut(repository, reference, bytes, mediaType));
  }

  /** Everything checked before a manifest is sent: reference, digest, size, media type and JSON shape. */
  #checkManifestPut(repository: string, reference: string, bytes: Uint8Array, mediaType: string): CheckedManifest {
    const { digest, refs } = checkManifestPut(reference, bytes, mediaType, (code, message) => this.#http.fail(code, `${message} (${repository})`, repository, reference));
    return { digest, blobs: refs.blobs };
  }

  async #sendManifest(repository: string, reference: string, bytes: Uint8Array, mediaType: string, checked: CheckedManifest): Promise<{ digest: string }> {
    const { digest } = checked;
    const spec: RequestSpec = {
      method: 'PUT',
      url: this.#http.url(`/v2/${repository}/manifests/${reference}`),
      repository,
      reference,
      idempotent: true,
      access: 'push',
      body: bytes,
      headers: { 'Content-Type': mediaType },
    };
    const response = await this.#http.request(spec);
    if (response.status !== 201 && response.status !== 200) {
      const error = await this.#http.unexpected(response, spec, 'putting manifest');
      // The registry misses a blob this instance believed present (garbage collected?): ask again next time.
      if (error.code === 'INVALID_MANIFEST') for (const blob of checked.blobs) this.#knownBlobs.delete(`${repository}\n${blob}`);
      throw error;
    }
    await discardBody(response);
    const announced = response.headers.get('docker-content-digest');
    if (announced !== null && announced !== digest) {
      throw this.#http.fail('DIGEST_MISMATCH', `manifest ${reference} in ${repository}: registry stored ${clip(announced, 80)}, the bytes hash to ${digest}`, repository, reference, { announced: clip(announced, 80) });
    }
    return { digest };
  }

  async getManifest(repository: string, reference: string, maxBytes: number): Promise<Manifest> {
    return (await this.#getManifest(repository, reference, maxBytes, undefined)) as Manifest;
  }

  /** `getManifest` with `If-None-Match: "<digest>"`: undefined on 304 Not Modified (distribution compares it with the manifest digest). */
  async getManifestIfNoneMatch(repository: string, reference: string, digest: string, maxBytes: number): Promise<Manifest | undefined> {
    return this.#getManifest(repository, reference, maxBytes, digest);
  }

  async #getManifest(repository: string, reference: string, maxBytes: number, ifNoneMatch: string | undefined): Promise<Manifest | undefined> {
    const spec: RequestSpec = {
      method: 'GET',
      url: this.#http.url(`/v2/${repository}/manifests/${reference}`),
      repository,
      reference,
      idempotent: true,
      access: 'pull',
      headers: { Accept: MANIFEST_MEDIA_TYPES.join(', '), ...(ifNoneMatch !== undefined ? { 'If-None-Match': `"${ifNoneMatch}"` } : {}) },
    };
    const response = await this.#http.request(spec);
    if (response.status === 304 && ifNoneMatch !== undefined) {
      await discardBody(response);
      return undefined;
    }
    if (response.status !== 200) throw await this.#http.unexpected(response, spec, 'manifest');
    const mediaType = mediaTypeOf(response.headers.get('content-type'));
    if (!MANIFEST_MEDIA_TYPES.includes(mediaType)) {
      await discardBody(response);
      throw this.#http.fail('BAD_MEDIA_TYPE', `manifest ${reference} in ${repository} came back as "${clip(mediaType, 80)}", not a manifest media type`, repository, reference, { contentType: clip(mediaType, 80) });
    }
    const bytes = await this.#http.readBody(response, spec, maxBytes, 'manifest');
    const digest = sha256Digest(bytes);
    const announced = response.headers.get('docker-content-digest');
    if ((isDigest(reference) && digest !== reference) || (announced !== null && announced !== digest)) {
      throw this.#http.fail('DIGEST_MISMATCH', `manifest ${reference} in ${repository}: content hashes to ${digest}, ${isDigest(reference) ? 'asked for' : 'registry announced'} ${isDigest(reference) ? reference : clip(announced ?? '', 80)}`, repository, reference, { actual: digest });
    }
    const check = checkManifest(bytes, mediaType);
    if (!check.ok) {
      throw this.#http.fail('PROTOCOL', `manifest ${reference} in ${repository} is not a valid ${mediaType}: ${check.reason}`, repository, reference);
    }
    return { bytes, mediaType, digest };
  }

  async listTags(repository: string): Promise<string[]> {
    return this.#listPaged(`/v2/${repository}/tags/list`, 'tags', repository, 'tags/list', 'pull', isTag);
  }

  /** Every repository of the registry (`/v2/_catalog`, all pages); needs catalog access. */
  async listRepositories(): Promise<string[]> {
    return this.#listPaged('/v2/_catalog', 'repositories', '', '_catalog', 'pull', isRepositoryName);
  }

  /** A paginated distribution-API list (`Link: <next>; rel="next"`), bounded in pages and bytes. */
  async #listPaged(path: string, field: string, repository: string, reference: string, access: AccessClass, valid: (s: string) => boolean): Promise<string[]> {
    const items = new Set<string>();
    const seen = new Set<string>();
    let url: string | undefined = this.#http.url(`${path}?n=${this.#tagsPageSize}`);
    for (let page = 0; url !== undefined; page++) {
      if (page >= this.#maxTagsPages || seen.has(url)) {
        throw this.#http.fail('PROTOCOL', `${reference} of ${repository || 'the registry'} does not end (${page} pages${seen.has(url) ? ', a page links back' : ''})`, repository, reference, { pages: page });
      }
      seen.add(url);
      const spec: RequestSpec = { method: 'GET', url, repository, reference, idempotent: true, access, headers: { Accept: 'application/json' } };
      const response = await this.#http.request(spec);
      if (response.status === 404 && page === 0 && repository !== '') {
        const error = await this.#http.unexpected(response, spec, reference);
        const codes = (error.detail['registryErrors'] as RegistryErrorEntry[]).map((e) => e.code);
        if (codes.length === 0 || codes.includes('NAME_UNKNOWN')) return [];
        throw error;
      }
      if (response.status !== 200) throw await this.#http.unexpected(response, spec, reference);
      const contentType = mediaTypeOf(response.headers.get('content-type'));
      if (contentType !== 'application/json' && !contentType.endsWith('+json')) {
        await discardBody(response);
        throw this.#http.fail('BAD_MEDIA_TYPE', `${reference} of ${repository || 'the registry'} came back as "${clip(contentType, 80)}", not JSON`, repository, reference, { contentType: clip(contentType, 80) });
      }
      const bytes = await this.#http.readBody(response, spec, this.#maxTagsPageBytes, reference);
      let parsed: unknown;
      try {
        parsed = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
      } catch (error) {
        throw this.#http.fail('PROTOCOL', `${reference} of ${repository || 'the registry'} is not JSON`, repository, reference, {}, error);
      }
      const pageItems = isRecord(parsed) ? parsed[field] : undefined;
      if (pageItems !== null && (!Array.isArray(pageItems) || !pageItems.every((t): t is string => typeof t === 'string' && valid(t)))) {
        throw this.#http.fail('PROTOCOL', `${reference} of ${repository || 'the registry'} is not {"${field}": [<valid names>]}`, repository, reference);
      }
      for (const item of pageItems ?? []) items.add(item);
      const next = nextLink(response.headers.get('link'));
      url = next === undefined ? undefined : new URL(next, spec.url).href;
      if (url !== undefined && !this.#http.sameOrigin(url)) {
        throw this.#http.fail('PROTOCOL', `${reference} of ${repository || 'the registry'} links to another origin`, repository, reference);
      }
    }
    return [...items].sort();
  }

  async deleteManifest(repository: string, digest: string): Promise<void> {
    const spec: RequestSpec = { method: 'DELETE', url: this.#http.url(`/v2/${repository}/manifests/${digest}`), repository, reference: digest, idempotent: false, access: 'delete' };
    const response = await this.#http.request(spec);
    if (response.status !== 202 && response.status !== 200 && response.status !== 204) throw await this.#http.unexpected(response, spec, 'deleting manifest');
    await discardBody(response);
  }

  async deleteTag(repository: string, tag: string): Promise<void> {
    const spec: RequestSpec = { method: 'DELETE', url: this.#http.url(`/v2/${repository}/manifests/${tag}`), repository, reference: tag, idempotent: false, access: 'delete' };
    const response = await this.#http.request(spec);
    if (response.status === 202 || response.status === 200 || response.status === 204) {
      await discardBody(response);
      return;
    }
    const error = await this.#http.unexpected(response, spec, 'deleting tag');
    // distribution 2.x answers 400 DIGEST_INVALID: it deletes by digest only (OCI distribution 1.1 allows tags).
    if (response.status === 400 && error.code === 'DIGEST_MISMATCH') {
      throw this.#http.fail('UNSUPPORTED', `registry cannot delete tag ${tag} of ${repository} (it deletes manifests by digest only)`, repository, tag, { status: 400 }, error);
    }
    throw error;
  }

  /**
   * OCI 1.1 referrers API: `GET /v2/<name>/referrers/<digest>[?artifactType=]`,
   * following `Link: rel="next"` pages (same origin, at most 16). A 404 on the
   * first page is the spec's "no referrers API" (distribution 2.8 answers it):
   * `UNSUPPORTED`, so callers use the referrers tag schema. Each page is read
   * within `maxBytes`, must be an OCI image index, and entries that are not
   * well-formed descriptors are skipped; the artifact type filter is applied
   * here too, since registries may ignore it. At most `maxCount` entries.
   */
  async listReferrers(repository: string, digest: string, options: ListReferrersOptions): Promise<ReferrerDescriptor[]> {
    const maxCount = options.maxCount ?? 1000;
    const query = options.artifactType !== undefined ? `?artifactType=${encodeURIComponent(options.artifactType)}` : '';
    const out: ReferrerDescriptor[] = [];
    const seen = new Set<string>();
    let url: string | undefined = this.#http.url(`/v2/${repository}/referrers/${digest}${query}`);
    for (let page = 0; url !== undefined && out.length < maxCount; page++) {
      if (page >= 16 || seen.has(url)) {
        throw this.#http.fail('PROTOCOL', `referrers of ${digest} in ${repository} do not end (${page} pages)`, repository, digest, { pages: page });
      }
      seen.add(url);
      const spec: RequestSpec = { method: 'GET', url, repository, reference: digest, idempotent: true, access: 'pull', headers: { Accept: OCI_INDEX_MEDIA_TYPE } };
      const response = await this.#http.request(spec);
      if (response.status === 404 && page === 0) {
        await discardBody(response);
        throw this.#http.fail('UNSUPPORTED', `registry has no OCI referrers API (referrers of ${digest} in ${repository} answered 404)`, repository, digest, { status: 404 });
      }
      if (response.status !== 200) throw await this.#http.unexpected(response, spec, 'referrers of');
      const contentType = mediaTypeOf(response.headers.get('content-type'));
      if (contentType !== OCI_INDEX_MEDIA_TYPE && contentType !== 'application/json') {
        await discardBody(response);
        throw this.#http.fail('BAD_MEDIA_TYPE', `referrers of ${digest} in ${repository} came back as "${clip(contentType, 80)}", not an OCI image index`, repository, digest, { contentType: clip(contentType, 80) });
      }
      const bytes = await this.#http.readBody(response, spec, options.maxBytes, 'referrers of');
      let parsed: unknown;
      try {
        parsed = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
      } catch (error) {
        throw this.#http.fail('PROTOCOL', `referrers of ${digest} in ${repository} are not JSON`, repository, digest, {}, error);
      }
      const manifests = isRecord(parsed) ? parsed['manifests'] : undefined;
      if (!Array.isArray(manifests)) throw this.#http.fail('PROTOCOL', `referrers of ${digest} in ${repository} are not an image index with "manifests"`, repository, digest);
      for (const d of manifests) {
        if (out.length >= maxCount) break;
        if (!isRecord(d) || typeof d['mediaType'] !== 'string' || typeof d['digest'] !== 'string' || !isDigest(d['digest'])) continue;
        if (typeof d['size'] !== 'number' || !Number.isSafeInteger(d['size']) || d['size'] < 0) continue;
        const artifactType = typeof d['artifactType'] === 'string' ? d['artifactType'] : undefined;
        if (options.artifactType !== undefined && artifactType !== options.artifactType) continue;
        const annotations = isRecord(d['annotations']) ? Object.fromEntries(Object.entries(d['annotations']).filter((e): e is [string, string] => typeof e[1] === 'string')) : undefined;
        out.push({ mediaType: d['mediaType'], digest: d['digest'], size: d['size'], ...(artifactType !== undefined ? { artifactType } : {}), ...(annotations ? { annotations } : {}) });
      }
      const next = nextLink(response.headers.get('link'));
      url = next === undefined ? undefined : new URL(next, spec.url).href;
      if (url !== undefined && !this.#http.sameOrigin(url)) {
        throw this.#http.fail('PROTOCOL', `referrers of ${digest} in ${repository} link to another origin`, repository, digest);
      }
    }
    return out;
  }
}

export class RegistryStore extends CheckedStore {
  declare readonly listReferrers: NonNullable<CheckedStore['listReferrers']>;
  declare readonly putManifests: NonNullable<CheckedStore['putManifests']>;
  declare readonly getManifestIfNoneMatch: NonNullable<CheckedStore['getManifestIfNoneMatch']>;
  /** The registry's auth state (tokens obtained, challenges answered). */
  readonly auth: RegistryAuth;

  constructor(options: RegistryStoreOptions) {
    const backend = new RegistryBackend(options);
    super(backend, options);
    this.auth = backend.auth;
  }
}
