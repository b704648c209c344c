/**
 * A tuf-js Fetcher for TUF metadata served over HTTP by a tufoci service
 * (`<service>/v1/repos/<repo>/metadata/<file>`, docs/API.md), or any TUF
 * HTTP mirror. It replaces tuf-js's DefaultFetcher to make fewer requests
 * (timestamp-first-fetcher.ts):
 *
 * - `timestamp.json` is requested with `If-None-Match: "<sha256 of the
 *   trusted timestamp>"` (the service's ETag is the quoted sha256 of the
 *   bytes); a 304 hands tuf-js the trusted bytes again, which it verifies
 *   again as usual (signature, version, expiry).
 * - The service names its current root version in the `Tufoci-Root-Version`
 *   header of timestamp.json responses (200 and 304). Root probes above it are
 *   answered 404 without a request; at or below it they go to the network.
 *   Without the header, a probe is skipped only when the timestamp is the
 *   caller's `coveredTimestamp`.
 *
 * So a warm client whose timestamp did not change makes one request (a 304),
 * a cold one skips the `2.root.json` probe. Everything read is bounded: a
 * body by the length tuf-js allows (Content-Length checked first, then the
 * stream), each request by a timeout. 5xx answers and network errors are
 * retried (`retries`, default 2, as tuf-js's DefaultFetcher does); 403/404 are
 * `DownloadHTTPError`s, which is how tuf-js learns there is no newer root.
 * Inside an overall deadline (src/storage/deadline.ts: `verifyImage`'s
 * `timeoutMs`), requests, body reads and pauses between retries end when it
 * passes, and nothing is retried after it.
 */
import { createHash } from 'node:crypto';
import { DownloadHTTPError, DownloadLengthMismatchError } from 'tuf-js/dist/error.js';
import { deadlinePassed, requestSignal, retryPause, waitingFor } from '../storage/deadline.ts';
import { ROOT_VERSION_HEADER } from '../api/headers.ts';
import { ServiceClientError } from './service-client.ts';
import { httpRequest, type HttpHeaders, type HttpRequestInit, type HttpResponse } from '../storage/http-client.ts';
import { parseVersionHint, TimestampFirstFetcher, type FetchedTimestamp, type TimestampFirstOptions } from './timestamp-first-fetcher.ts';

export { ROOT_VERSION_HEADER };

export interface ServiceFetcherOptions extends TimestampFirstOptions {
  /** Per request (default 30 s). */
  timeoutMs?: number;
  /** Retries after a network error or a 5xx (default 2). */
  retries?: number;
  userAgent?: string;
  /** The HTTP client (default src/storage/http-client.ts, node:http rather than fetch: start-up). */
  request?: (url: URL, init: HttpRequestInit) => Promise<HttpResponse>;
}

interface Answer {
  status: number;
  headers: HttpHeaders;
  bytes: Uint8Array;
}

/** The ETag the tufoci service gives a file: the quoted hex sha256 of its bytes. */
export function etagOf(bytes: Uint8Array): string {
  return `"${createHash('sha256').update(bytes).digest('hex')}"`;
}

export class ServiceFetcher extends TimestampFirstFetcher {
  readonly #timeoutMs: number;
  readonly #retries: number;
  readonly #userAgent: string;
  readonly #send: (url: URL, init: HttpRequestInit) => Promise<HttpResponse>;

  constructor(options: ServiceFetcherOptions = {}) {
    super(options);
    this.#timeoutMs = options.timeoutMs ?? 30_000;
    this.#retries = options.retries ?? 2;
    this.#userAgent = options.userAgent ?? 'tufoci';
    this.#send = options.request ?? httpRequest;
  }

  async #get(url: string, maxLength: number, headers: Record<string, string> = {}): Promise<Answer> {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      parsed = new URL('invalid:');
    }
    if ((parsed.protocol !== 'https:' && parsed.protocol !== 'http:') || parsed.username !== '' || parsed.password !== '') {
      throw new ServiceClientError(0, 'BAD_REQUEST', `${url.slice(0, 200)} is not an http(s) metadata URL`, { url: url.slice(0, 200) });
    }
    const shown = url.slice(0, 200);
    for (let attempt = 0; ; attempt++) {
      const passed = deadlinePassed();
      if (passed) throw new ServiceClientError(0, 'UNREACHABLE', `GET ${shown} stopped: ${passed.message}`, { url: shown, deadlineMs: passed.timeoutMs }, passed);
      let response: HttpResponse;
      try {
        response = await waitingFor(() => `GET ${shown}: no response headers yet`, () =>
          this.#send(parsed, { method: 'GET', headers: { 'user-agent': this.#userAgent, ...headers }, signal: requestSignal(this.#timeoutMs) }),
        );
      } catch (cause) {
        if (attempt < this.#retries && !deadlinePassed()) {
          await waitingFor(() => `a retry of GET ${shown} (after a network error)`, () => retryPause(100 * 2 ** attempt));
          continue;
        }
        throw new ServiceClientError(0, 'UNREACHABLE', `cannot read ${shown} (${cause instanceof Error ? cause.message : String(cause)})`, { url: shown }, cause);
      }
      if (response.status >= 500 && attempt < this.#retries) {
        await response.cancel();
        await waitingFor(() => `a retry of GET ${shown} (after HTTP ${response.status})`, () => retryPause(100 * 2 ** attempt));
        continue;
      }
      if (response.status === 304) {
        await response.cancel();
        return { status: 304, headers: response.headers, bytes: new Uint8Array(0) };
      }
      if (response.status !== 200) {
        await response.cancel();
        throw new DownloadHTTPError(`GET ${url.slice(0, 200)} answered ${response.status}`, response.status);
      }
      return { status: 200, headers: response.headers, bytes: await waitingFor(() => `GET ${shown}: reading the response body`, () => this.#body(response, url, maxLength)) };
    }
  }

  async #body(response: HttpResponse, url: string, maxLength: number): Promise<Uint8Array> {
    const tooLarge = (): DownloadLengthMismatchError => new DownloadLengthMismatchError(`${url.slice(0, 200)} exceeds ${maxLength} bytes`);
    const declared = response.headers.get('content-length');
    if (declared !== null && Number(declared) > maxLength) {
      await response.cancel();
      throw tooLarge();
    }
    const chunks: Uint8Array[] = [];
    let size = 0;
    if (response.body) {
      for await (const chunk of response.body) {
        size += chunk.byteLength;
        if (size > maxLength) throw tooLarge(); // leaving the loop destroys the stream
        chunks.push(chunk);
      }
    }
    return new Uint8Array(Buffer.concat(chunks, size));
  }

  protected async readFile(url: string, maxLength: number): Promise<Uint8Array> {
    return (await this.#get(url, maxLength)).bytes;
  }


  protected async readTimestamp(url: string, maxLength: number, trusted: Uint8Array | undefined): Promise<FetchedTimestamp> {
    const answer = await this.#get(url, maxLength, trusted ? { 'if-none-match': etagOf(trusted) } : {});
    const rootVersion = parseVersionHint(answer.headers.get(ROOT_VERSION_HEADER));
    const hint = rootVersion === undefined ? {} : { rootVersion };
    if (answer.status === 304) {
      // Only meaningful for the conditional request we sent.
      if (!trusted) throw new DownloadHTTPError(`GET ${url.slice(0, 200)} answered 304 to an unconditional request`, 304);
      return { bytes: trusted, ...hint };
    }
    return { bytes: answer.bytes, ...hint };
  }
}
