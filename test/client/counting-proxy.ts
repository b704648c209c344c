/**
 * A loopback HTTP proxy that counts what a client downloads: every request
 * with its status, response body bytes and response head bytes (status line
 * and headers as sent). `rewrite` may change a response's status, headers or
 * body before it goes on (tests use it to send hostile hints). Used by the
 * fetcher tests and bench/verify.bench.ts.
 */
import { STATUS_CODES, type OutgoingHttpHeaders } from 'node:http';
import { startHttpProxy, type ProxiedResponse } from '../support/http-proxy.ts';

export interface CountedRequest {
  method: string;
  path: string;
  status: number;
  /** Response body bytes sent to the client. */
  bodyBytes: number;
  /** Status line and headers, as sent (an HTTP/1.1 estimate: `Name: value\r\n` each). */
  headBytes: number;
}

export type { ProxiedResponse };

export interface CountingProxy {
  readonly url: string;
  readonly requests: CountedRequest[];
  /** Change a response before it reaches the client (default: none). */
  rewrite: ((req: { method: string; path: string }, res: ProxiedResponse) => ProxiedResponse) | undefined;
  /** Forget the requests seen so far. */
  reset(): void;
  close(): Promise<void>;
}

function headSize(status: number, headers: OutgoingHttpHeaders): number {
  let n = `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\n`.length + 2;
  for (const [k, v] of Object.entries(headers)) {
    if (v === undefined) continue;
    for (const one of Array.isArray(v) ? v : [v]) n += k.length + 2 + String(one).length + 2;
  }
  return n;
}

export async function startCountingProxy(upstreamUrl: string): Promise<CountingProxy> {
  const requests: CountedRequest[] = [];
  const counting: { rewrite: CountingProxy['rewrite'] } = { rewrite: undefined };
  const http = await startHttpProxy(upstreamUrl, {
    intercept: (req, res) => (counting.rewrite ? counting.rewrite(req, res) : res),
    onSent: (req, status, headers, body) => requests.push({ ...req, status, bodyBytes: body.byteLength, headBytes: headSize(status, headers) }),
  });
  return {
    url: http.url,
    requests,
    get rewrite() {
      return counting.rewrite;
    },
    set rewrite(fn) {
      counting.rewrite = fn;
    },
    reset() {
      requests.length = 0;
    },
    close: () => http.close(),
  };
}
