/**
 * The loopback HTTP proxy the test helpers build on (test/client/counting-proxy.ts,
 * test/integration/registry-tap.ts): every request is forwarded to `upstream`
 * with its headers (Host included, so a registry builds upload Locations on the
 * proxy's address; absolute Locations naming the upstream are rewritten to the
 * proxy anyway), the response is read whole and handed to `intercept`, which may
 * change it or hold it back, then sent on with a true Content-Length.
 */
import { createServer, request as httpRequest, type IncomingHttpHeaders, type OutgoingHttpHeaders, type Server } from 'node:http';

export interface ProxiedRequest {
  method: string;
  path: string;
}

export interface ProxiedResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

export interface HttpProxyOptions {
  /** Every request, as it arrives. */
  onRequest?: (req: ProxiedRequest) => void;
  /** The upstream's answer → what the client gets (may wait; default unchanged). */
  intercept?: (req: ProxiedRequest, res: ProxiedResponse) => ProxiedResponse | Promise<ProxiedResponse>;
  /** What was sent: final status, headers and body. */
  onSent?: (req: ProxiedRequest, status: number, headers: OutgoingHttpHeaders, body: Buffer) => void;
}

export interface HttpProxy {
  readonly url: string;
  close(): Promise<void>;
}

export async function startHttpProxy(upstreamUrl: string, opts: HttpProxyOptions = {}): Promise<HttpProxy> {
  const upstream = new URL(upstreamUrl);
  let self = '';
  const server: Server = createServer((req, res) => {
    const seen: ProxiedRequest = { method: req.method ?? 'GET', path: req.url ?? '/' };
    opts.onRequest?.(seen);
    const out = httpRequest({ host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers }, (up) => {
      const chunks: Buffer[] = [];
      up.on('data', (c: Buffer) => chunks.push(c));
      up.on('end', () => {
        void (async () => {
          let response: ProxiedResponse = { status: up.statusCode ?? 502, headers: { ...up.headers }, body: Buffer.concat(chunks) };
          if (opts.intercept) response = await opts.intercept(seen, response);
          if (res.destroyed || req.socket.destroyed) return;
          const headers: OutgoingHttpHeaders = { ...response.headers };
          const location = headers['location'];
          if (typeof location === 'string' && location.startsWith(upstream.origin)) headers['location'] = self + location.slice(upstream.origin.length);
          delete headers['transfer-encoding'];
          // The body may have been rewritten: keep Content-Length true (a rewrite that deletes it gets chunked encoding).
          if ('content-length' in headers && seen.method !== 'HEAD' && response.status !== 304 && response.status !== 204) headers['content-length'] = response.body.byteLength;
          const body = seen.method === 'HEAD' ? Buffer.alloc(0) : response.body;
          opts.onSent?.(seen, response.status, headers, body);
          res.writeHead(response.status, headers);
          res.end(body);
        })();
      });
    });
    out.on('error', (error) => {
      if (!res.headersSent && !res.destroyed) {
        res.writeHead(502, { 'content-type': 'text/plain' });
        res.end(`proxy: ${String(error)}`);
      } else res.destroy();
    });
    req.on('error', () => out.destroy());
    req.pipe(out);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as { port: number };
  self = `http://127.0.0.1:${port}`;
  return {
    url: self,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
