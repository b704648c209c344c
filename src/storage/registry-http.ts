/**
 * The registry backend's HTTP: one request to the distribution API with
 * everything a request needs around it, and typed errors for what comes back.
 *
 * - Every request has a timeout (AbortSignal) and every body read a bound;
 *   a body over its bound is cut off (`TOO_LARGE`), never buffered whole.
 * - Only requests marked idempotent are retried (GET, HEAD, PUT of a
 *   manifest), on network errors, 429 and 5xx, with a short exponential
 *   backoff (`Retry-After` honoured up to 5 s).
 * - Inside an overall deadline (deadline.ts, e.g. a verify's), every request,
 *   body read and pause between retries ends when it passes, and nothing is
 *   retried after it (`UNAVAILABLE`, naming the deadline).
 * - Redirects are followed by hand up to `maxRedirects`; credentials are only
 *   sent to the registry's own origin. A 401 is answered once per request
 *   through `RegistryAuth` (Basic, or a Bearer token for the access asked).
 * - An unexpected response becomes a `StorageError` naming the repository and
 *   reference, carrying the HTTP status and the registry's error codes.
 *
 * It knows nothing of blobs, manifests or uploads: registry-upload.ts and
 * registry-store.ts build their requests on it.
 */
import { deadlinePassed, requestSignal, retryPause, waitingFor } from './deadline.ts';
import { discardBody, readBodyBounded } from './http-body.ts';
import { emptyResponse, httpRequest, type HttpResponse } from './http-client.ts';
import { clip } from './names.ts';
import { RegistryAuth, type Credentials } from './registry-auth.ts';
import { StorageError, type StorageErrorCode, type StorageErrorDetail } from './storage-error.ts';
import { describeTlsFailure } from './tls.ts';

export const BACKEND = 'registry';
const MAX_ERROR_BODY_BYTES = 64 * 1024;
const RETRYABLE_STATUS = new Set([429, 500, 502, 503, 504]);

export interface RegistryHttpOptions {
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
  userAgent?: string;
}

export type AccessClass = 'pull' | 'push' | 'delete';

export interface RequestSpec {
  method: 'GET' | 'HEAD' | 'POST' | 'PATCH' | 'PUT' | 'DELETE';
  url: string;
  repository: string;
  reference: string;
  headers?: Record<string, string>;
  body?: Uint8Array;
  idempotent: boolean;
  access: AccessClass;
}

export interface RegistryErrorEntry {
  code: string;
  message: string;
}

export function isRecord(value: unknown): value is Record<string, unknown> {
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

/** `<url>; rel="next"` from a Link header, if any. */
export function nextLink(header: string | null): string | undefined {
  if (header === null) return undefined;
  for (const part of header.split(/,(?=\s*<)/)) {
    const m = /^\s*<([^>]*)>\s*(.*)$/.exec(part);
    if (m && m[1] !== undefined && /(?:^|;)\s*rel="?next"?\s*(?:;|$)/i.test(m[2] ?? '')) return m[1];
  }
  return undefined;
}

export class RegistryHttp {
  readonly #base: URL;
  /** Origin plus any path prefix, without a trailing slash: `url('/v2/')` appends to it. */
  readonly #prefix: string;
  readonly #timeoutMs: number;
  readonly #retries: number;
  readonly #retryBaseDelayMs: number;
  readonly #maxRedirects: number;
  readonly #userAgent: string;
  readonly auth: RegistryAuth;

  constructor(options: RegistryHttpOptions) {
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
    this.#userAgent = options.userAgent ?? 'tufoci-storage';
    this.auth = new RegistryAuth({
      ...(options.credentials ? { credentials: options.credentials } : {}),
      timeoutMs: this.#timeoutMs,
      userAgent: this.#userAgent,
    });
  }

  /** Whether `url` is on the registry's own origin (where pagination links must stay). */
  sameOrigin(url: string): boolean {
    return new URL(url).origin === this.#base.origin;
  }

  /** The registry URL of an API path (`/v2/...`). */
  url(path: string): string {
    return `${this.#prefix}${path}`;
  }

  detail(repository: string, reference: string, extra: Record<string, unknown> = {}): StorageErrorDetail {
    return { backend: BACKEND, repository, reference, ...extra };
  }

  fail(code: StorageErrorCode, message: string, repository: string, reference: string, extra: Record<string, unknown> = {}, cause?: unknown): StorageError {
    return new StorageError(code, message, this.detail(repository, reference, extra), cause === undefined ? {} : { cause });
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
        if (tls !== undefined) throw this.fail('UNAVAILABLE', `${method} ${shownUrl(target)} for ${spec.repository || 'the registry'}: ${tls}`, spec.repository, spec.reference, { tls: true }, error);
        throw error;
      }
      if ([301, 302, 303, 307, 308].includes(response.status)) {
        const location = response.headers.get('location');
        await discardBody(response);
        if (location === null) {
          throw this.fail('PROTOCOL', `${spec.method} ${url.pathname}: redirect without Location for ${spec.repository}`, spec.repository, spec.reference, { status: response.status });
        }
        redirects++;
        if (redirects > this.#maxRedirects) {
          throw this.fail('PROTOCOL', `${spec.method} for ${spec.repository} (${spec.reference || 'repository'}): more than ${this.#maxRedirects} redirects (loop?)`, spec.repository, spec.reference, { redirects });
        }
        url = new URL(location, url);
        if (url.protocol !== 'https:' && url.protocol !== 'http:') {
          throw this.fail('PROTOCOL', `${spec.method} for ${spec.repository}: redirect to a ${url.protocol} URL`, spec.repository, spec.reference, { status: response.status });
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
        if (await this.auth.respond(header, accessKey, this.detail(spec.repository, spec.reference))) continue;
        return emptyResponse(url.href, 401);
      }
      return response;
    }
  }

  /** `#send` with retries of idempotent requests on network errors, 429 and 5xx. */
  async request(spec: RequestSpec): Promise<HttpResponse> {
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
        throw this.fail('UNAVAILABLE', `${spec.method} for ${spec.repository} (${spec.reference || 'repository'}) ${timedOut ? `timed out after ${this.#timeoutMs} ms` : 'failed: registry unreachable'}`, spec.repository, spec.reference, { attempts: attempt + 1 }, error);
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
      throw this.fail('UNAVAILABLE', `${spec.method} for ${spec.repository} (${spec.reference || 'repository'}) stopped: ${passed.message}`, spec.repository, spec.reference, { attempts, deadlineMs: passed.timeoutMs }, cause ?? passed);
    }
  }

  #backoff(attempt: number, retryAfter: string | null): number {
    if (retryAfter !== null && /^[0-9]+$/.test(retryAfter)) return Math.min(Number(retryAfter) * 1000, 5000);
    return this.#retryBaseDelayMs * 2 ** attempt + Math.random() * this.#retryBaseDelayMs;
  }

  /** Turn an unexpected response into a typed error (the body read is bounded). */
  async unexpected(response: HttpResponse, spec: RequestSpec, what: string): Promise<StorageError> {
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
    return this.fail(code, `${what} ${spec.reference || ''} in ${spec.repository}: registry answered HTTP ${status}${reason}`.replace('  ', ' '), spec.repository, spec.reference, { status, registryErrors: errors });
  }

  async readBody(response: HttpResponse, spec: RequestSpec, maxBytes: number, what: string): Promise<Uint8Array> {
    let body;
    try {
      body = await waitingFor(() => `${spec.method} ${shownUrl(response.url || spec.url)}: reading the response body`, () => readBodyBounded(response, maxBytes));
    } catch (error) {
      const passed = deadlinePassed();
      throw this.fail('UNAVAILABLE', `reading ${what} ${spec.reference} from ${spec.repository} ${passed ? `stopped: ${passed.message}` : 'failed mid-body'}`, spec.repository, spec.reference, passed ? { deadlineMs: passed.timeoutMs } : {}, error);
    }
    if (body.kind === 'too-large') {
      throw this.fail('TOO_LARGE', `${what} ${spec.reference} in ${spec.repository} is larger than the bound of ${maxBytes} bytes${body.declared !== undefined ? ` (Content-Length ${body.declared})` : ''}`, spec.repository, spec.reference, { maxBytes });
    }
    return body.bytes;
  }
}
