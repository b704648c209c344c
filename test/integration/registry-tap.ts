/**
 * A loopback HTTP proxy in front of a registry, so a test can stop one
 * service instance at an exact point of its write sequence: `holdNext(match)`
 * lets the next matching request reach the registry (it takes effect there)
 * and holds its response back until `release()`. Killing the instance while
 * its response is held is a crash right after that write; restarting Redis
 * while it is held makes the instance lose its lock between two writes.
 *
 * Everything else is forwarded unchanged (bodies streamed both ways). The
 * Host header is passed through, so the registry builds upload `Location`s on
 * the proxy's address; absolute Locations naming the registry are rewritten
 * to the proxy anyway.
 */
import { createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';

export interface TappedRequest {
  method: string;
  path: string;
}

export interface Hold {
  /** Resolves once a matching request was answered by the registry (its effect is there); the response is still held. */
  readonly reached: Promise<TappedRequest & { status: number }>;
  /** Send the held response on (a no-op if the client is gone). */
  release(): void;
}

export interface RegistryTap {
  readonly url: string;
  /** Every request seen, in order (method and path). */
  readonly requests: TappedRequest[];
  holdNext(match: (r: TappedRequest) => boolean): Hold;
  close(): Promise<void>;
}

interface Armed {
  match: (r: TappedRequest) => boolean;
  reached: (r: TappedRequest & { status: number }) => void;
  released: Promise<void>;
}

export async function startRegistryTap(registryUrl: string): Promise<RegistryTap> {
  const upstream = new URL(registryUrl);
  const armed: Armed[] = [];
  const releases: Array<() => void> = [];
  const requests: TappedRequest[] = [];
  let self = '';

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    const seen: TappedRequest = { method: req.method ?? 'GET', path: req.url ?? '/' };
    requests.push(seen);
    const index = armed.findIndex((a) => a.match(seen));
    const hold = index >= 0 ? armed.splice(index, 1)[0] : undefined;
    const headers = { ...req.headers };
    const out = httpRequest(
      { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers },
      (up) => {
        const responseHeaders = { ...up.headers };
        const location = responseHeaders['location'];
        if (typeof location === 'string' && location.startsWith(upstream.origin)) responseHeaders['location'] = self + location.slice(upstream.origin.length);
        if (!hold) {
          res.writeHead(up.statusCode ?? 502, responseHeaders);
          up.pipe(res);
          return;
        }
        const chunks: Buffer[] = [];
        up.on('data', (c: Buffer) => chunks.push(c));
        up.on('end', () => {
          hold.reached({ ...seen, status: up.statusCode ?? 0 });
          void hold.released.then(() => {
            if (res.destroyed || req.socket.destroyed) return;
            res.writeHead(up.statusCode ?? 502, responseHeaders);
            res.end(Buffer.concat(chunks));
          });
        });
      },
    );
    out.on('error', (error) => {
      if (!res.headersSent && !res.destroyed) {
        res.writeHead(502, { 'content-type': 'text/plain' });
        res.end(`tap: ${String(error)}`);
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

  return {
    url: self,
    requests,
    holdNext(match) {
      let release!: () => void;
      const released = new Promise<void>((resolve) => {
        release = resolve;
      });
      releases.push(release);
      let reached!: (r: TappedRequest & { status: number }) => void;
      const reachedP = new Promise<TappedRequest & { status: number }>((resolve) => {
        reached = resolve;
      });
      armed.push({ match, reached, released });
      return { reached: reachedP, release };
    },
    async close() {
      for (const r of releases) r();
      armed.length = 0;
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
