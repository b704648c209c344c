/**
 * OCI distribution API backend over Node's fetch.
 *
 * Invariants:
 * - Every request has a timeout (AbortSignal) and every body read a bound;
 *   a body over its bound is cut off (`TOO_LARGE`), never buffered whole.
 * - Every blob and manifest fetched is hashed; a body that does not hash to
 *   the digest asked for, or to the `Docker-Content-Digest` the registry
 *   announced, is refused (`DIGEST_MISMATCH`). Manifests must come back with a
 *   manifest Content-Type (`BAD_MEDIA_TYPE`) and parse as one (`PROTOCOL`).
 * - Only idempotent requests are retried (GET, HEAD, PUT of a manifest), on
 *   network errors, 429 and 5xx, with a short exponential backoff. Upload
 *   sessions (POST/PATCH/PUT of an upload) are never replayed.
 * - Inside an overall deadline (deadline.ts, e.g. a verify's), every request,
 *   body read and pause between retries ends when it passes, and nothing is
 *   retried after it (`UNAVAILABLE`, naming the deadline).
 * - Redirects are followed by hand up to `maxRedirects`; credentials are only
 *   sent to the registry's own origin.
 * - A tag moves only when the registry has accepted the whole manifest, which
 *   it accepts only once every referenced blob is uploaded.
 * - Errors name the repository and reference and carry the HTTP status and
 *   the registry's error codes in `detail`.
 * - Blobs known to exist (uploaded, found by HEAD or read back by this
 *   instance) are remembered per repository, never across repositories, in a
 *   bounded set: content addressed, so the memory cannot go stale except by a
 *   registry garbage collection, and a manifest PUT refused for an unknown
 *   blob forgets its blobs. `putManifests` uploads the blobs it is given
 *   without asking first (they are new bytes nearly always) and in parallel.
 * - A blob below the chunked threshold is offered as one `POST ?digest=`
 *   (OCI single-request upload); a registry that answers 202 instead (as
 *   distribution 2.8 does) gets the POST-PUT pair, and this instance stops
 *   offering the single request.
 */
import { sha256Digest } from './digest.ts';
import { deadlinePassed, requestSignal, retryPause, waitingFor } from './deadline.ts';
import { discardBody, mediaTypeOf, readBodyBounded } from './http-body.ts';
import { emptyResponse, httpRequest, type HttpResponse } from './http-client.ts';
import { CheckedStore, type CheckedStoreOptions } from './checked-store.ts';
import { checkManifest, checkManifestPut } from './manifest-refs.ts';
import { clip, isDigest, isRepositoryName, isTag } from './names.ts';
import { RegistryAuth, type Credentials } from './registry-auth.ts';
import { StorageError, type StorageErrorCode, type StorageErrorDetail } from './storage-error.ts';
import { describeTlsFailure } from './tls.ts';
import { MANIFEST_MEDIA_TYPES, type BlobRef, type Manifest, type ManifestPut, type Store } from './store.ts';
import { OCI_INDEX_MEDIA_TYPE, type ListReferrersOptions, type ReferrerDescriptor } from './store.ts';

const BACKEND = 'registry';
const MAX_ERROR_BODY_BYTES = 64 * 1024;
const RETRYABLE_STATUS = new Set([429, 500, 502, 503, 504]);
/** Bound on the blobs remembered as present (repository + digest pairs). */
const MAX_KNOWN_BLOBS = 16_384;
/** Blob uploads of one `putManifests` in flight at once. */
const UPLOAD_CONCURRENCY = 4;

export interface RegistryStoreOptions extends CheckedStoreOptions {
  /** Base URL of the registry, e.g. `https://registry.example` or `http://127.0.0.1:5000`. */
  url: string;
  credentials?: Credentials;
  /** Per request, including reading its body (default 30 s). */
  timeoutMs?: number;
  /** Extra attempts for idempotent requests (default 2). */
  retries?: number;
  /** First backoff step; doubles per attempt, plus jitter (default 100 ms). */
  retryBaseDelayMs?: number;
  /** Default 5. */
  maxRedirects?: number;
  /** Blobs of at least this many bytes are uploaded in chunks (default 8 MiB). */
  chunkedUploadThreshold?: number;
  /** Bytes per PATCH of a chunked upload (default 4 MiB). */
  chunkSize?: number;
  /** `n` asked per page of tags/list (default 1000); registries may ignore it. */
  tagsPageSize?: number;
  /** Bound on one tags/list page (default 16 MiB). */
  maxTagsPageBytes?: number;
  /** Bound on pages followed (default 10,000). */
  maxTagsPages?: number;
  userAgent?: string;
}

type AccessClass = 'pull' | 'push' | 'delete';

interface RequestSpec {
  method: 'GET' | 'HEAD' | 'POST' | 'PATCH' | 'PUT' | 'DELETE';
  url: string;
  repository: string;
  reference: string;
  headers?: Record<string, string>;
  body?: Uint8Array;
  idempotent: boolean;
  access: AccessClass;
}

interface RegistryErrorEntry {
  code: string;
  message: string;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** A URL as named in a deadline error: without its query, which may carry a redirect's presigned token. */
function shownUrl(url: string | URL): string {
  try {
    const u = new URL(url);
    return `${u.origin}${u.pathname}${u.search ? '?…' : ''}`;
  } catch {
    return clip(String(url), 200);
  }
}

interface CheckedManifest {
  digest: string;
  /** Blobs the manifest references. */
  blobs: string[];
}

/** `<url>; rel="next"` from a Link header, if any. */
export function nextLink(header: string | null): string | undefined {
  if (header === null) return undefined;
  for (const part of header.split(/,(?=\s*<)/)) {
    const m = /^\s*<([^>]*)>\s*(.*)$/.exec(part);
    if (m && m[1] !== undefined && /(?:^|;)\s*rel="?next"?\s*(?:;|$)/i.test(m[2] ?? '')) return m[1];
  }
  return undefined;
}

/** The backend behind `RegistryStore`'s checks: names, digests and bounds are well-formed here. */
class RegistryBackend implements Store {
  readonly backend = BACKEND;
  readonly #base: URL;
  /** Origin plus any path prefix, without a trailing slash: `#url('/v2/')` appends to it. */
  readonly #prefix: string;
  readonly #timeoutMs: number;
  readonly #retries: number;
  readonly #retryBaseDelayMs: number;
  readonly #maxRedirects: number;
  readonly #chunkedThreshold: number;
  readonly #chunkSize: number;
  readonly #tagsPageSize: number;
  readonly #maxTagsPageBytes: number;
  readonly #maxTagsPages: number;
  readonly #userAgent: string;
  /** `repository\ndigest` of blobs known to be in that repository, oldest first. */
  readonly #knownBlobs = new Set<string>();
  /** Whether the registry completes `POST /blobs/uploads/?digest=` with a body in one request (undefined: not asked yet). */
  #singlePostUploads: boolean | undefined;
  readonly auth: RegistryAuth;

  constructor(options: RegistryStoreOptions) {
    let base: URL;
    try {
      base = new URL(options.url);
    } catch (error) {
      throw new StorageError('INVALID_NAME', `registry URL "${clip(options.url)}" is not a URL`, { backend: BACKEND, repository: '', reference: '' }, { cause: error });
    }
    if (base.protocol !== 'https:' && base.protocol !== 'http:') {
      throw new StorageError('INVALID_NAME', `registry URL must be http(s), got ${base.protocol}`, { backend: BACKEND, repository: '', reference: '' });
    }
    this.#base = base;
    this.#prefix = base.origin + base.pathname.replace(/\/+$/, '');
    this.#timeoutMs = options.timeoutMs ?? 30_000;
    this.#retries = options.retries ?? 2;
    this.#retryBaseDelayMs = options.retryBaseDelayMs ?? 100;
    this.#maxRedirects = options.maxRedirects ?? 5;
    this.#chunkedThreshold = options.chunkedUploadThreshold ?? 8 * 1024 * 1024;
    this.#chunkSize = Math.max(1, options.chunkSize ?? 4 * 1024 * 1024);
    this.#tagsPageSize = options.tagsPageSize ?? 1000;
    this.#maxTagsPageBytes = options.maxTagsPageBytes ?? 16 * 1024 * 1024;
    this.#maxTagsPages = options.maxTagsPages ?? 10_000;
    this.#userAgent = options.userAgent ?? 'tufoci-storage';
    this.auth = new RegistryAuth({
      ...(options.credentials ? { credentials: options.credentials } : {}),
      timeoutMs: this.#timeoutMs,
      userAgent: this.#userAgent,
    });
  }

  #url(path: string): string {
    return `${this.#prefix}${path}`;
  }

  #detail(repository: string, reference: string, extra: Record<string, unknown> = {}): StorageErrorDetail {
    return { backend: BACKEND, repository, reference, ...extra };
  }

  #fail(code: StorageErrorCode, message: string, repository: string, reference: string, extra: Record<string, unknown> = {}, cause?: unknown): StorageError {
    return new StorageError(code, message, this.#detail(repository, reference, extra), cause === undefined ? {} : { cause });
  }

  /** One request: redirects followed by hand, one retry after answering an auth challenge. */
  async #send(spec: RequestSpec): Promise<HttpResponse> {
    let url = new URL(spec.url);
    let method: string = spec.method;
    let body = spec.body;
    let redirects = 0;
    let answeredChallenge = false;
    const accessKey = `${spec.repository}\n${spec.access}`;
    for (;;) {
      const sameOrigin = url.origin === this.#base.origin;
      const headers: Record<string, string> = { 'User-Agent': this.#userAgent, ...spec.headers };
      const authorization = sameOrigin ? this.auth.authorization(accessKey) : undefined;
      if (authorization) headers['Authorization'] = authorization;
      const target = url;
      let response: HttpResponse;
      try {
        response = await waitingFor(() => `${method} ${shownUrl(target)}: no response headers yet`, () =>
          httpRequest(target, {
            method,
            headers,
            ...(body !== undefined ? { body } : {}),
            signal: requestSignal(this.#timeoutMs),
          }),
        );
      } catch (error) {
        // A certificate the client does not accept, or a peer that does not speak TLS: no retry changes that.
        const tls = describeTlsFailure(error, target);
        if (tls !== undefined) throw this.#fail('UNAVAILABLE', `${method} ${shownUrl(target)} for ${spec.repository || 'the registry'}: ${tls}`, spec.repository, spec.reference, { tls: true }, error);
        throw error;
      }
      if ([301, 302, 303, 307, 308].includes(response.status)) {
        const location = response.headers.get('location');
        await discardBody(response);
        if (location === null) {
          throw this.#fail('PROTOCOL', `${spec.method} ${url.pathname}: redirect without Location for ${spec.repository}`, spec.repository, spec.reference, { status: response.status });
        }
        redirects++;
        if (redirects > this.#maxRedirects) {
          throw this.#fail('PROTOCOL', `${spec.method} for ${spec.repository} (${spec.reference || 'repository'}): more than ${this.#maxRedirects} redirects (loop?)`, spec.repository, spec.reference, { redirects });
        }
        url = new URL(location, url);
        if (url.protocol !== 'https:' && url.protocol !== 'http:') {
          throw this.#fail('PROTOCOL', `${spec.method} for ${spec.repository}: redirect to a ${url.protocol} URL`, spec.repository, spec.reference, { status: response.status });
        }
        if (response.status === 303 && method !== 'HEAD') {
          method = 'GET';
          body = undefined;
        }
        continue;
      }
      if (response.status === 401 && sameOrigin && !answeredChallenge) {
        const header = response.headers.get('www-authenticate');
        await discardBody(response);
        answeredChallenge = true;
        if (await this.auth.respond(header, accessKey, this.#detail(spec.repository, spec.reference))) continue;
        return emptyResponse(url.href, 401);
      }
      return response;
    }
  }

  /** `#send` with retries of idempotent requests on network errors, 429 and 5xx. */
  async #request(spec: RequestSpec): Promise<HttpResponse> {
    for (let attempt = 0; ; attempt++) {
      this.#checkDeadline(spec, attempt);
      const canRetry = spec.idempotent && attempt < this.#retries;
      let response: HttpResponse;
      try {
        response = await this.#send(spec);
      } catch (error) {
        if (error instanceof StorageError) throw error;
        this.#checkDeadline(spec, attempt + 1, error);
        if (canRetry) {
          await waitingFor(() => `a retry of ${spec.method} ${shownUrl(spec.url)} (after a network error)`, () => retryPause(this.#backoff(attempt, null)));
          continue;
        }
        const timedOut = isRecord(error) && (error['name'] === 'TimeoutError' || error['name'] === 'AbortError');
        throw this.#fail('UNAVAILABLE', `${spec.method} for ${spec.repository} (${spec.reference || 'repository'}) ${timedOut ? `timed out after ${this.#timeoutMs} ms` : 'failed: registry unreachable'}`, spec.repository, spec.reference, { attempts: attempt + 1 }, error);
      }
      if (RETRYABLE_STATUS.has(response.status) && canRetry) {
        const retryAfter = response.headers.get('retry-after');
        await discardBody(response);
        await waitingFor(() => `a retry of ${spec.method} ${shownUrl(spec.url)} (after HTTP ${response.status})`, () => retryPause(this.#backoff(attempt, retryAfter)));
        continue;
      }
      return response;
    }
  }

  /** Once the overall deadline has passed: no (more) attempts. */
  #checkDeadline(spec: RequestSpec, attempts: number, cause?: unknown): void {
    const passed = deadlinePassed();
    if (passed) {
      throw this.#fail('UNAVAILABLE', `${spec.method} for ${spec.repository} (${spec.reference || 'repository'}) stopped: ${passed.message}`, spec.repository, spec.reference, { attempts, deadlineMs: passed.timeoutMs }, cause ?? passed);
    }
  }

  #backoff(attempt: number, retryAfter: string | null): number {
    if (retryAfter !== null && /^[0-9]+$/.test(retryAfter)) return Math.min(Number(retryAfter) * 1000, 5000);
    return this.#retryBaseDelayMs * 2 ** attempt + Math.random() * this.#retryBaseDelayMs;
  }

  /** Turn an unexpected response into a typed error (the body read is bounded). */
  async #unexpected(response: HttpResponse, spec: RequestSpec, what: string): Promise<StorageError> {
    let errors: RegistryErrorEntry[] = [];
    let plainToTls = false;
    try {
      const body = await readBodyBounded(response, MAX_ERROR_BODY_BYTES);
      if (body.kind === 'ok' && body.bytes.byteLength > 0) {
        const text = new TextDecoder().decode(body.bytes);
        // Go's net/http answers plain HTTP sent to its TLS port with this 400.
        plainToTls = response.status === 400 && this.#base.protocol === 'http:' && /HTTP request to an HTTPS server/i.test(text);
        const parsed: unknown = JSON.parse(text);
        if (isRecord(parsed) && Array.isArray(parsed['errors'])) {
          errors = parsed['errors'].filter(isRecord).slice(0, 10).map((e) => ({
            code: typeof e['code'] === 'string' ? clip(e['code'], 64) : '',
            message: typeof e['message'] === 'string' ? clip(e['message'], 300) : '',
          }));
        }
      }
    } catch {
      // An unreadable or non-JSON error body: the status alone decides.
    }
    const status = response.status;
    const codes = errors.map((e) => e.code);
    let code: StorageErrorCode;
    if (status === 404) code = 'NOT_FOUND';
    else if (status === 401 || status === 403) code = 'UNAUTHORIZED';
    else if (status === 413) code = 'TOO_LARGE';
    else if (status === 429 || status >= 500) code = 'UNAVAILABLE';
    else if (status === 405 || codes.includes('UNSUPPORTED')) code = 'UNSUPPORTED';
    else if (codes.includes('DIGEST_INVALID')) code = 'DIGEST_MISMATCH';
    else if (codes.includes('NAME_INVALID') || codes.includes('TAG_INVALID')) code = 'INVALID_NAME';
    else if (codes.some((c) => c.startsWith('MANIFEST_') || c === 'BLOB_UNKNOWN')) code = 'INVALID_MANIFEST';
    else code = 'PROTOCOL';
    const first = errors[0];
    const reason = first
      ? `: ${first.code}${first.message ? ` (${first.message})` : ''}`
      : plainToTls
        ? ': it serves HTTPS and this request was plain HTTP (for a loopback registry, --https)'
        : '';
    return this.#fail(code, `${what} ${spec.reference || ''} in ${spec.repository}: registry answered HTTP ${status}${reason}`.replace('  ', ' '), spec.repository, spec.reference, { status, registryErrors: errors });
  }

  async #readBody(response: HttpResponse, spec: RequestSpec, maxBytes: number, what: string): Promise<Uint8Array> {
    let body;
    try {
      body = await waitingFor(() => `${spec.method} ${shownUrl(response.url || spec.url)}: reading the response body`, () => readBodyBounded(response, maxBytes));
    } catch (error) {
      const passed = deadlinePassed();
      throw this.#fail('UNAVAILABLE', `reading ${what} ${spec.reference} from ${spec.repository} ${passed ? `stopped: ${passed.message}` : 'failed mid-body'}`, spec.repository, spec.reference, passed ? { deadlineMs: passed.timeoutMs } : {}, error);
    }
    if (body.kind === 'too-large') {
      throw this.#fail('TOO_LARGE', `${what} ${spec.reference} in ${spec.repository} is larger than the bound of ${maxBytes} bytes${body.declared !== undefined ? ` (Content-Length ${body.declared})` : ''}`, spec.repository, spec.reference, { maxBytes });
    }
    return body.bytes;
  }

  async ping(): Promise<void> {
    const spec: RequestSpec = { method: 'GET', url: this.#url('/v2/'), repository: '', reference: '', idempotent: true, access: 'pull' };
    const response = await this.#request(spec);
    if (response.status !== 200) throw await this.#unexpected(response, spec, 'ping');
    await discardBody(response);
  }

  async hasBlob(repository: string, digest: string): Promise<boolean> {
    const spec: RequestSpec = { method: 'HEAD', url: this.#url(`/v2/${repository}/blobs/${digest}`), repository, reference: digest, idempotent: true, access: 'pull' };
    const response = await this.#request(spec);
    await discardBody(response);
    if (response.status === 200) {
      this.#rememberBlob(repository, digest);
      return true;
    }
    if (response.status === 404) return false;
    throw await this.#unexpected(response, spec, 'checking blob');
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
    const spec: RequestSpec = { method: 'GET', url: this.#url(`/v2/${repository}/blobs/${digest}`), repository, reference: digest, idempotent: true, access: 'pull' };
    const response = await this.#request(spec);
    if (response.status !== 200) throw await this.#unexpected(response, spec, 'blob');
    if (mediaTypeOf(response.headers.get('content-type')) === 'text/html') {
      await discardBody(response);
      throw this.#fail('BAD_MEDIA_TYPE', `blob ${digest} in ${repository} came back as text/html (an error page, not content)`, repository, digest);
    }
    const bytes = await this.#readBody(response, spec, maxBytes, 'blob');
    const actual = sha256Digest(bytes);
    if (actual !== digest) {
      throw this.#fail('DIGEST_MISMATCH', `blob ${digest} in ${repository}: the registry served content hashing to ${actual}`, repository, digest, { actual });
    }
    this.#rememberBlob(repository, digest);
    return bytes;
  }

  async putBlob(repository: string, bytes: Uint8Array): Promise<BlobRef> {
    const digest = sha256Digest(bytes);
    const ref = { digest, size: bytes.byteLength };
    if (this.#isKnownBlob(repository, digest) || (await this.hasBlob(repository, digest))) return ref;
    await this.#upload(repository, digest, bytes);
    return ref;
  }

  /** Upload a blob (no existence check): chunked above the threshold, else one request where the registry allows it, else POST then PUT. */
  async #upload(repository: string, digest: string, bytes: Uint8Array): Promise<void> {
    if (bytes.byteLength >= this.#chunkedThreshold) {
      let location = await this.#startUpload(repository, digest);
      for (let start = 0; start < bytes.byteLength; start += this.#chunkSize) {
        const chunk = bytes.subarray(start, Math.min(start + this.#chunkSize, bytes.byteLength));
        location = await this.#patchChunk(repository, digest, location, chunk, start);
      }
      await this.#finishUpload(repository, digest, location, undefined);
    } else if (this.#singlePostUploads !== false && bytes.byteLength >= 2) {
      const session = await this.#singlePost(repository, digest, bytes);
      if (session !== undefined) await this.#finishUpload(repository, digest, session.location, session.received ? undefined : bytes);
    } else {
      await this.#finishUpload(repository, digest, await this.#startUpload(repository, digest), bytes);
    }
    this.#rememberBlob(repository, digest);
  }

  /**
   * `POST /blobs/uploads/?digest=` with the whole blob (OCI single-request
   * upload). Answers undefined when the registry stored it, or the upload
   * session it opened instead (202), saying whether it kept the body (its
   * Range covers all of it; a blob of at least 2 bytes keeps "0-0" unambiguous).
   */
  async #singlePost(repository: string, digest: string, bytes: Uint8Array): Promise<{ location: string; received: boolean } | undefined> {
    const spec: RequestSpec = {
      method: 'POST',
      url: this.#url(`/v2/${repository}/blobs/uploads/?digest=${encodeURIComponent(digest)}`),
      repository,
      reference: digest,
      idempotent: false,
      access: 'push',
      body: bytes,
      headers: { 'Content-Type': 'application/octet-stream' },
    };
    const response = await this.#request(spec);
    if (response.status === 201) {
      await discardBody(response);
      this.#singlePostUploads = true;
      const announced = response.headers.get('docker-content-digest');
      if (announced !== null && announced !== digest) {
        throw this.#fail('DIGEST_MISMATCH', `upload of ${digest} to ${repository}: registry stored ${clip(announced, 80)}`, repository, digest, { announced: clip(announced, 80) });
      }
      return undefined;
    }
    if (response.status === 202) {
      await discardBody(response);
      this.#singlePostUploads = false;
      const range = response.headers.get('range');
      const received = range !== null && new RegExp(`^(?:bytes=)?0-${bytes.byteLength - 1}$`).test(range);
      return { location: this.#uploadLocation(response, spec.url, spec), received };
    }
    if (this.#singlePostUploads === undefined && [400, 405, 415].includes(response.status)) {
      // A registry that refuses a body on POST: fall back to POST then PUT from now on.
      await discardBody(response);
      this.#singlePostUploads = false;
      return { location: await this.#startUpload(repository, digest), received: false };
    }
    throw await this.#unexpected(response, spec, 'uploading blob');
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
            if (bytes.byteLength < this.#chunkedThreshold || !(await this.hasBlob(repository, digest))) await this.#upload(repository, digest, bytes);
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

  #uploadLocation(response: HttpResponse, requestUrl: string, spec: RequestSpec): string {
    const location = response.headers.get('location');
    if (location === null) {
      throw this.#fail('PROTOCOL', `upload of ${spec.reference} to ${spec.repository}: HTTP ${response.status} without Location`, spec.repository, spec.reference);
    }
    return new URL(location, requestUrl).href;
  }

  async #startUpload(repository: string, digest: string): Promise<string> {
    const spec: RequestSpec = { method: 'POST', url: this.#url(`/v2/${repository}/blobs/uploads/`), repository, reference: digest, idempotent: false, access: 'push' };
    const response = await this.#request(spec);
    if (response.status !== 202) throw await this.#unexpected(response, spec, 'starting upload of blob');
    await discardBody(response);
    return this.#uploadLocation(response, spec.url, spec);
  }

  async #patchChunk(repository: string, digest: string, location: string, chunk: Uint8Array, start: number): Promise<string> {
    const end = start + chunk.byteLength - 1;
    const spec: RequestSpec = {
      method: 'PATCH',
      url: location,
      repository,
      reference: digest,
      idempotent: false,
      access: 'push',
      body: chunk,
      headers: { 'Content-Type': 'application/octet-stream', 'Content-Range': `${start}-${end}` },
    };
    const response = await this.#request(spec);
    if (response.status !== 202) throw await this.#unexpected(response, spec, 'uploading a chunk of blob');
    await discardBody(response);
    const range = response.headers.get('range');
    const m = range === null ? null : /^(?:bytes=)?0-([0-9]+)$/.exec(range);
    if (range !== null && (!m || Number(m[1]) !== end)) {
      throw this.#fail('PROTOCOL', `chunked upload of ${digest} to ${repository}: registry has range ${clip(range, 60)}, expected 0-${end}`, repository, digest);
    }
    return this.#uploadLocation(response, location, spec);
  }

  async #finishUpload(repository: string, digest: string, location: string, body: Uint8Array | undefined): Promise<void> {
    const url = `${location}${location.includes('?') ? '&' : '?'}digest=${encodeURIComponent(digest)}`;
    const spec: RequestSpec = {
      method: 'PUT',
      url,
      repository,
      reference: digest,
      idempotent: false,
      access: 'push',
      ...(body !== undefined ? { body } : {}),
      headers: { 'Content-Type': 'application/octet-stream' },
    };
    const response = await this.#request(spec);
    if (response.status !== 201) throw await this.#unexpected(response, spec, 'completing upload of blob');
    await discardBody(response);
    const announced = response.headers.get('docker-content-digest');
    if (announced !== null && announced !== digest) {
      throw this.#fail('DIGEST_MISMATCH', `upload of ${digest} to ${repository}: registry stored ${clip(announced, 80)}`, repository, digest, { announced: clip(announced, 80) });
    }
  }

  async putManifest(repository: string, reference: string, bytes: Uint8Array, mediaType: string): Promise<{ digest: string }> {
    return this.#sendManifest(repository, reference, bytes, mediaType, this.#checkManifestPut(repository, reference, bytes, mediaType));
  }

  /** Everything checked before a manifest is sent: reference, digest, size, media type and JSON shape. */
  #checkManifestPut(repository: string, reference: string, bytes: Uint8Array, mediaType: string): CheckedManifest {
    const { digest, refs } = checkManifestPut(reference, bytes, mediaType, (code, message) => this.#fail(code, `${message} (${repository})`, repository, reference));
    return { digest, blobs: refs.blobs };
  }

  async #sendManifest(repository: string, reference: string, bytes: Uint8Array, mediaType: string, checked: CheckedManifest): Promise<{ digest: string }> {
    const { digest } = checked;
    const spec: RequestSpec = {
      method: 'PUT',
      url: this.#url(`/v2/${repository}/manifests/${reference}`),
      repository,
      reference,
      idempotent: true,
      access: 'push',
      body: bytes,
      headers: { 'Content-Type': mediaType },
    };
    const response = await this.#request(spec);
    if (response.status !== 201 && response.status !== 200) {
      const error = await this.#unexpected(response, spec, 'putting manifest');
      // The registry misses a blob this instance believed present (garbage collected?): ask again next time.
      if (error.code === 'INVALID_MANIFEST') for (const blob of checked.blobs) this.#knownBlobs.delete(`${repository}\n${blob}`);
      throw error;
    }
    await discardBody(response);
    const announced = response.headers.get('docker-content-digest');
    if (announced !== null && announced !== digest) {
      throw this.#fail('DIGEST_MISMATCH', `manifest ${reference} in ${repository}: registry stored ${clip(announced, 80)}, the bytes hash to ${digest}`, repository, reference, { announced: clip(announced, 80) });
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
      url: this.#url(`/v2/${repository}/manifests/${reference}`),
      repository,
      reference,
      idempotent: true,
      access: 'pull',
      headers: { Accept: MANIFEST_MEDIA_TYPES.join(', '), ...(ifNoneMatch !== undefined ? { 'If-None-Match': `"${ifNoneMatch}"` } : {}) },
    };
    const response = await this.#request(spec);
    if (response.status === 304 && ifNoneMatch !== undefined) {
      await discardBody(response);
      return undefined;
    }
    if (response.status !== 200) throw await this.#unexpected(response, spec, 'manifest');
    const mediaType = mediaTypeOf(response.headers.get('content-type'));
    if (!MANIFEST_MEDIA_TYPES.includes(mediaType)) {
      await discardBody(response);
      throw this.#fail('BAD_MEDIA_TYPE', `manifest ${reference} in ${repository} came back as "${clip(mediaType, 80)}", not a manifest media type`, repository, reference, { contentType: clip(mediaType, 80) });
    }
    const bytes = await this.#readBody(response, spec, maxBytes, 'manifest');
    const digest = sha256Digest(bytes);
    const announced = response.headers.get('docker-content-digest');
    if ((isDigest(reference) && digest !== reference) || (announced !== null && announced !== digest)) {
      throw this.#fail('DIGEST_MISMATCH', `manifest ${reference} in ${repository}: content hashes to ${digest}, ${isDigest(reference) ? 'asked for' : 'registry announced'} ${isDigest(reference) ? reference : clip(announced ?? '', 80)}`, repository, reference, { actual: digest });
    }
    const check = checkManifest(bytes, mediaType);
    if (!check.ok) {
      throw this.#fail('PROTOCOL', `manifest ${reference} in ${repository} is not a valid ${mediaType}: ${check.reason}`, repository, reference);
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
    let url: string | undefined = this.#url(`${path}?n=${this.#tagsPageSize}`);
    for (let page = 0; url !== undefined; page++) {
      if (page >= this.#maxTagsPages || seen.has(url)) {
        throw this.#fail('PROTOCOL', `${reference} of ${repository || 'the registry'} does not end (${page} pages${seen.has(url) ? ', a page links back' : ''})`, repository, reference, { pages: page });
      }
      seen.add(url);
      const spec: RequestSpec = { method: 'GET', url, repository, reference, idempotent: true, access, headers: { Accept: 'application/json' } };
      const response = await this.#request(spec);
      if (response.status === 404 && page === 0 && repository !== '') {
        const error = await this.#unexpected(response, spec, reference);
        const codes = (error.detail['registryErrors'] as RegistryErrorEntry[]).map((e) => e.code);
        if (codes.length === 0 || codes.includes('NAME_UNKNOWN')) return [];
        throw error;
      }
      if (response.status !== 200) throw await this.#unexpected(response, spec, reference);
      const contentType = mediaTypeOf(response.headers.get('content-type'));
      if (contentType !== 'application/json' && !contentType.endsWith('+json')) {
        await discardBody(response);
        throw this.#fail('BAD_MEDIA_TYPE', `${reference} of ${repository || 'the registry'} came back as "${clip(contentType, 80)}", not JSON`, repository, reference, { contentType: clip(contentType, 80) });
      }
      const bytes = await this.#readBody(response, spec, this.#maxTagsPageBytes, reference);
      let parsed: unknown;
      try {
        parsed = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
      } catch (error) {
        throw this.#fail('PROTOCOL', `${reference} of ${repository || 'the registry'} is not JSON`, repository, reference, {}, error);
      }
      const pageItems = isRecord(parsed) ? parsed[field] : undefined;
      if (pageItems !== null && (!Array.isArray(pageItems) || !pageItems.every((t): t is string => typeof t === 'string' && valid(t)))) {
        throw this.#fail('PROTOCOL', `${reference} of ${repository || 'the registry'} is not {"${field}": [<valid names>]}`, repository, reference);
      }
      for (const item of pageItems ?? []) items.add(item);
      const next = nextLink(response.headers.get('link'));
      url = next === undefined ? undefined : new URL(next, spec.url).href;
      if (url !== undefined && new URL(url).origin !== this.#base.origin) {
        throw this.#fail('PROTOCOL', `${reference} of ${repository || 'the registry'} links to another origin`, repository, reference);
      }
    }
    return [...items].sort();
  }

  async deleteManifest(repository: string, digest: string): Promise<void> {
    const spec: RequestSpec = { method: 'DELETE', url: this.#url(`/v2/${repository}/manifests/${digest}`), repository, reference: digest, idempotent: false, access: 'delete' };
    const response = await this.#request(spec);
    if (response.status !== 202 && response.status !== 200 && response.status !== 204) throw await this.#unexpected(response, spec, 'deleting manifest');
    await discardBody(response);
  }

  async deleteTag(repository: string, tag: string): Promise<void> {
    const spec: RequestSpec = { method: 'DELETE', url: this.#url(`/v2/${repository}/manifests/${tag}`), repository, reference: tag, idempotent: false, access: 'delete' };
    const response = await this.#request(spec);
    if (response.status === 202 || response.status === 200 || response.status === 204) {
      await discardBody(response);
      return;
    }
    const error = await this.#unexpected(response, spec, 'deleting tag');
    // distribution 2.x answers 400 DIGEST_INVALID: it deletes by digest only (OCI distribution 1.1 allows tags).
    if (response.status === 400 && error.code === 'DIGEST_MISMATCH') {
      throw this.#fail('UNSUPPORTED', `registry cannot delete tag ${tag} of ${repository} (it deletes manifests by digest only)`, repository, tag, { status: 400 }, error);
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
    let url: string | undefined = this.#url(`/v2/${repository}/referrers/${digest}${query}`);
    for (let page = 0; url !== undefined && out.length < maxCount; page++) {
      if (page >= 16 || seen.has(url)) {
        throw this.#fail('PROTOCOL', `referrers of ${digest} in ${repository} do not end (${page} pages)`, repository, digest, { pages: page });
      }
      seen.add(url);
      const spec: RequestSpec = { method: 'GET', url, repository, reference: digest, idempotent: true, access: 'pull', headers: { Accept: OCI_INDEX_MEDIA_TYPE } };
      const response = await this.#request(spec);
      if (response.status === 404 && page === 0) {
        await discardBody(response);
        throw this.#fail('UNSUPPORTED', `registry has no OCI referrers API (referrers of ${digest} in ${repository} answered 404)`, repository, digest, { status: 404 });
      }
      if (response.status !== 200) throw await this.#unexpected(response, spec, 'referrers of');
      const contentType = mediaTypeOf(response.headers.get('content-type'));
      if (contentType !== OCI_INDEX_MEDIA_TYPE && contentType !== 'application/json') {
        await discardBody(response);
        throw this.#fail('BAD_MEDIA_TYPE', `referrers of ${digest} in ${repository} came back as "${clip(contentType, 80)}", not an OCI image index`, repository, digest, { contentType: clip(contentType, 80) });
      }
      const bytes = await this.#readBody(response, spec, options.maxBytes, 'referrers of');
      let parsed: unknown;
      try {
        parsed = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
      } catch (error) {
        throw this.#fail('PROTOCOL', `referrers of ${digest} in ${repository} are not JSON`, repository, digest, {}, error);
      }
      const manifests = isRecord(parsed) ? parsed['manifests'] : undefined;
      if (!Array.isArray(manifests)) throw this.#fail('PROTOCOL', `referrers of ${digest} in ${repository} are not an image index with "manifests"`, repository, digest);
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
      if (url !== undefined && new URL(url).origin !== this.#base.origin) {
        throw this.#fail('PROTOCOL', `referrers of ${digest} in ${repository} link to another origin`, repository, digest);
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
