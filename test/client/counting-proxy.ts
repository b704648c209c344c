/**
 * A loopback HTTP proxy that counts what a client downloads: every request
 * with its status, response body bytes and response head bytes (status line
 * and headers as sent). `rewrite` may change a response's status, headers or
 * body before it goes on (tests use it to send hostile hints). Used by the
 * fetcher tests and bench/verify.bench.ts.
 */
import { createServer, request as httpRequest, STATUS_CODES, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from 'node:http';

export interface CountedRequest {
  method: string;
  path: string;
  status: number;
  /** Response body bytes sent to the client. */
  bodyBytes: number;
  /** Status line and headers, as sent (an HTTP/1.1 estimate: `Name: value\r\n` each). */
  headBytes: number;
}

export interface ProxiedResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

export interface CountingProxy {
  readonly url: string;
  readonly requests: CountedRequest[];
  /** Change a response before it reaches the client (default: none). */
  rewrite: ((req: { method: string; path: string }, res: ProxiedResponse) => ProxiedResponse) | undefined;
  /** Forget the requests seen so far. */
  reset(): void;
  close(): Promise<void>;
}

function headSize(status: number, headers: Record<string, string | string[] | number | undefined>): number {
  let n = `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\n`.length + 2;
  for (const [k, v] of Object.entries(headers)) {
    if (v === undefined) continue;
    for (const one of Array.isArray(v) ? v : [v]) n += k.length + 2 + String(one).length + 2;
  }
  return n;
}

export async function startCountingProxy(upstreamUrl: string): Promise<CountingProxy> {
  const upstream = new URL(upstreamUrl);
  let self = '';
  const proxy: CountingProxy = {
    url: '',
    requests: [],
    rewrite: undefined,
    reset() {
      proxy.requests.length = 0;
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    const seen = { method: req.method ?? 'GET', path: req.url ?? '/' };
    const out = httpRequest({ host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers }, (up) => {
      const chunks: Buffer[] = [];
      up.on('data', (c: Buffer) => chunks.push(c));
      up.on('end', () => {
        let response: ProxiedResponse = { status: up.statusCode ?? 502, headers: { ...up.headers }, body: Buffer.concat(chunks) };
        if (proxy.rewrite) response = proxy.rewrite(seen, response);
        const headers: Record<string, string | string[] | number | undefined> = { ...response.headers };
        const location = headers['location'];
        if (typeof location === 'string' && location.startsWith(upstream.origin)) headers['location'] = self + location.slice(upstream.origin.length);
        delete headers['transfer-encoding'];
        // The body may have been rewritten: keep Content-Length true (a rewrite that deletes it gets chunked encoding).
        if ('content-length' in headers && seen.method !== 'HEAD' && response.status !== 304 && response.status !== 204) headers['content-length'] = response.body.byteLength;
        const body = seen.method === 'HEAD' ? Buffer.alloc(0) : response.body;
        proxy.requests.push({ ...seen, status: response.status, bodyBytes: body.byteLength, headBytes: headSize(response.status, headers) });
        res.writeHead(response.status, headers);
        res.end(body);
      });
    });
    out.on('error', (error) => {
      if (!res.headersSent) {
        res.writeHead(502, { 'content-type': 'text/plain' });
        res.end(`proxy: ${String(error)}`);
      } else res.destroy();
    });
    req.on('error', () => out.destroy());
    req.pipe(out);
  };

  const server: Server = createServer(handle);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as { port: number };
  self = `http://127.0.0.1:${port}`;
  (proxy as { url: string }).url = self;
  return proxy;
}
