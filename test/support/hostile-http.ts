/**
 * A hostile HTTP server for deadline tests. For each request, `choose` decides:
 * - `hang`: accept the request and never send response headers;
 * - `drip`: forward it to `upstream`, send the upstream's status and headers
 *   at once, then its body one byte every `dripMs` (default 100 ms);
 * - `unavailable`: answer 503 with `Retry-After: 5` (a registry asking to be retried later);
 * - `forward`: forward it to `upstream` unchanged.
 * Without an upstream, only `hang` makes sense. Every request is recorded, and
 * `clientClosed(n)` resolves once the client has closed the connections of `n`
 * held (hung or dripping) requests: proof that the client aborted them.
 */
import { createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

export type Behaviour = 'hang' | 'drip' | 'unavailable' | 'forward';

export interface HostileRequest {
  method: string;
  path: string;
  behaviour: Behaviour;
}

export interface HostileServerOptions {
  upstream?: string;
  choose: (req: { method: string; path: string }) => Behaviour;
  dripMs?: number;
}

export interface HostileServer {
  readonly url: string;
  readonly requests: HostileRequest[];
  /** Resolves once the client closed the connections of at least `n` held requests. */
  clientClosed(n?: number): Promise<void>;
  close(): Promise<void>;
}

export async function startHostileServer(opts: HostileServerOptions): Promise<HostileServer> {
  const upstream = opts.upstream === undefined ? undefined : new URL(opts.upstream);
  const dripMs = opts.dripMs ?? 100;
  const requests: HostileRequest[] = [];
  const sockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();
  let closedHeld = 0;
  const waiters: Array<{ n: number; resolve: () => void }> = [];

  const held = (req: IncomingMessage): void => {
    req.socket.once('close', () => {
      closedHeld++;
      for (const w of waiters.splice(0)) {
        if (closedHeld >= w.n) w.resolve();
        else waiters.push(w);
      }
    });
  };

  const forward = (req: IncomingMessage, res: ServerResponse, drip: boolean): void => {
    if (!upstream) {
      res.writeHead(502).end('no upstream');
      return;
    }
    const out = httpRequest({ host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers }, (up) => {
      if (!drip) {
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
        return;
      }
      const chunks: Buffer[] = [];
      up.on('data', (c: Buffer) => chunks.push(c));
      up.on('end', () => {
        const body = Buffer.concat(chunks);
        res.writeHead(up.statusCode ?? 502, up.headers);
        res.flushHeaders();
        let sent = 0;
        const timer = setInterval(() => {
          if (res.destroyed || sent >= body.byteLength) {
            clearInterval(timer);
            timers.delete(timer);
            if (!res.destroyed) res.end();
            return;
          }
          res.write(body.subarray(sent, sent + 1));
          sent++;
        }, dripMs);
        timers.add(timer);
      });
    });
    out.on('error', () => res.destroy());
    req.pipe(out);
  };

  const server: Server = createServer((req, res) => {
    const method = req.method ?? 'GET';
    const path = req.url ?? '/';
    const behaviour = opts.choose({ method, path });
    requests.push({ method, path, behaviour });
    if (behaviour === 'hang') {
      held(req);
      req.resume(); // read the request; never answer
      return;
    }
    if (behaviour === 'unavailable') {
      req.resume();
      res.writeHead(503, { 'Retry-After': '5', 'Content-Type': 'application/json' }).end('{"errors":[{"code":"UNAVAILABLE","message":"try later"}]}');
      return;
    }
    if (behaviour === 'drip') held(req);
    forward(req, res, behaviour === 'drip');
  });
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    clientClosed(n = 1) {
      if (closedHeld >= n) return Promise.resolve();
      return new Promise<void>((resolve) => waiters.push({ n, resolve }));
    },
    async close() {
      for (const t of timers) clearInterval(t);
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
