/**
 * The HTTP client of the registry store and its token service: one request, its status, headers
 * and a body to read once, over node:http / node:https with keep-alive agents.
 *
 * Why not Node's fetch: fetch is undici, which Node compiles at first use together with its web
 * streams and its WebAssembly HTTP parser. On this project's machines that is 40–60 ms of every
 * CLI command that talks to a registry, more than the whole verify it serves (docs/ARCHITECTURE.md,
 * "Runtime and toolchain"); node:http is in Node's start-up snapshot and parses with the built-in
 * llhttp. What the store needs of fetch is small and kept the same here:
 * - redirects are never followed (the store follows them by hand, checking each hop);
 * - `signal` aborts the request and the body read (an `AbortError`, as fetch's);
 * - no `Accept-Encoding` is sent, so bodies arrive as the registry stored them (digests are over
 *   those bytes);
 * - header names are case-insensitive and repeated headers are joined with ", ", as `Headers.get`.
 * node:https (and so node:tls) is loaded only for an https URL. The agents' idle sockets are
 * unref'd by Node, so a CLI exits when its work is done.
 */
import type { IncomingHttpHeaders, IncomingMessage, request as RequestFn } from 'node:http';
import type { Agent as HttpsAgent } from 'node:https';

// By process.getBuiltinModule, not `import`: the ESM facade of node:http reads every export, and
// its lazy WebSocket/EventSource getters load undici, the very cost this module exists to avoid.
const http = process.getBuiltinModule('node:http');
const httpRequestFn: typeof RequestFn = http.request;

export interface HttpHeaders {
  get(name: string): string | null;
}

export interface HttpResponse {
  readonly url: string;
  readonly status: number;
  readonly headers: HttpHeaders;
  /** The body, to be read once (async iteration); null for HEAD, 204 and 304 answers. */
  readonly body: AsyncIterable<Uint8Array> | null;
  readonly bodyUsed: boolean;
  /** Release a body that will not be read: drained when small and announced, else the connection closed. */
  cancel(): Promise<void>;
}

export interface HttpRequestInit {
  method: string;
  headers?: Record<string, string>;
  body?: Uint8Array | string;
  signal?: AbortSignal;
}

const httpAgent = new http.Agent({ keepAlive: true, maxSockets: 32 });
let httpsAgent: HttpsAgent | undefined;
let httpsRequestFn: typeof httpRequestFn | undefined;

function https(): { agent: HttpsAgent; request: typeof httpRequestFn } {
  if (!httpsAgent || !httpsRequestFn) {
    const mod = process.getBuiltinModule('node:https');
    httpsAgent = new mod.Agent({ keepAlive: true, maxSockets: 32 });
    httpsRequestFn = mod.request as unknown as typeof httpRequestFn;
  }
  return { agent: httpsAgent, request: httpsRequestFn };
}

/** A body this small with a Content-Length is drained rather than the connection closed. */
const DRAIN_MAX_BYTES = 64 * 1024;

class Headers implements HttpHeaders {
  readonly #h: IncomingHttpHeaders;
  constructor(h: IncomingHttpHeaders) {
    this.#h = h;
  }
  get(name: string): string | null {
    const v = this.#h[name.toLowerCase()];
    if (v === undefined) return null;
    return Array.isArray(v) ? v.join(', ') : v;
  }
}

class Response implements HttpResponse {
  readonly url: string;
  readonly status: number;
  readonly headers: HttpHeaders;
  readonly #res: IncomingMessage | undefined;
  #used = false;

  constructor(url: string, status: number, res: IncomingMessage | undefined, empty: boolean) {
    this.url = url;
    this.status = status;
    this.headers = new Headers(res?.headers ?? {});
    this.#res = empty ? undefined : res;
    // A connection lost after the headers is an error of the body read (the iterator rethrows it),
    // never an unhandled 'error' event of a response nobody reads.
    res?.on('error', () => {});
    if (empty) res?.resume();
  }

  get bodyUsed(): boolean {
    return this.#used;
  }

  get body(): AsyncIterable<Uint8Array> | null {
    const res = this.#res;
    if (!res) return null;
    return {
      [Symbol.asyncIterator]: () => {
        this.#used = true;
        return res[Symbol.asyncIterator]() as AsyncIterator<Uint8Array>;
      },
    };
  }

  async cancel(): Promise<void> {
    const res = this.#res;
    if (!res || this.#used) return;
    this.#used = true;
    const length = Number(res.headers['content-length']);
    if (Number.isSafeInteger(length) && length <= DRAIN_MAX_BYTES) res.resume();
    else res.destroy();
  }
}

/** A response with no body, made here (the store's answer to a challenge it could not meet). */
export function emptyResponse(url: string, status: number): HttpResponse {
  return new Response(url, status, undefined, true);
}

/** One HTTP request: resolves with the response once its headers arrived. */
export async function httpRequest(url: URL, init: HttpRequestInit): Promise<HttpResponse> {
  const secure = url.protocol === 'https:';
  if (!secure && url.protocol !== 'http:') throw new TypeError(`not an http(s) URL: ${url.protocol}`);
  const { agent, request } = secure ? https() : { agent: httpAgent, request: httpRequestFn };
  const headers: Record<string, string> = { ...init.headers };
  const body = typeof init.body === 'string' ? Buffer.from(init.body, 'utf8') : init.body;
  const method = init.method.toUpperCase();
  if (body !== undefined) headers['content-length'] = String(body.byteLength);
  else if (method === 'POST' || method === 'PUT' || method === 'PATCH') headers['content-length'] = '0';
  init.signal?.throwIfAborted();
  return new Promise<HttpResponse>((resolve, reject) => {
    const signal = init.signal;
    const req = request(url, { method, headers, agent, ...(signal ? { signal } : {}) }, (res) => {
      const status = res.statusCode ?? 0;
      if (signal) {
        // After the headers, an abort ends the body read with an AbortError too (as fetch's does),
        // not with the "aborted" of a lost connection.
        const onAbort = (): void => void res.destroy(new DOMException('This operation was aborted', 'AbortError'));
        signal.addEventListener('abort', onAbort, { once: true });
        res.once('close', () => signal.removeEventListener('abort', onAbort));
      }
      resolve(new Response(url.href, status, res, method === 'HEAD' || status === 204 || status === 304));
    });
    req.on('error', reject);
    req.end(body);
  });
}
