/**
 * Drive a Node request handler (Koa's app.callback()) without listening on a
 * socket: a real IncomingMessage/ServerResponse pair over an unconnected socket.
 */
import { IncomingMessage, ServerResponse, type RequestListener } from 'node:http';
import { Socket } from 'node:net';

export interface Injected {
  status: number;
  headers: Record<string, string | string[] | number | undefined>;
  body: Buffer;
  json<T = Record<string, unknown>>(): T;
}

export function inject(
  handler: RequestListener,
  opts: { method?: string; url: string; headers?: Record<string, string>; body?: Uint8Array | string },
): Promise<Injected> {
  return new Promise((resolve, reject) => {
    const socket = new Socket();
    const req = new IncomingMessage(socket);
    req.method = opts.method ?? 'GET';
    req.url = opts.url;
    const body = opts.body === undefined ? undefined : typeof opts.body === 'string' ? Buffer.from(opts.body) : Buffer.from(opts.body);
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(opts.headers ?? {})) headers[k.toLowerCase()] = v;
    if (body && headers['content-length'] === undefined) headers['content-length'] = String(body.byteLength);
    req.headers = headers;
    if (body) req.push(body);
    req.push(null);
    const res = new ServerResponse(req);
    const chunks: Buffer[] = [];
    const collect = (chunk: unknown, encoding?: unknown): void => {
      if (chunk === undefined || chunk === null || typeof chunk === 'function') return;
      chunks.push(typeof chunk === 'string' ? Buffer.from(chunk, (typeof encoding === 'string' ? encoding : 'utf8') as BufferEncoding) : Buffer.from(chunk as Uint8Array));
    };
    res.write = ((chunk: unknown, encoding?: unknown, cb?: () => void) => {
      collect(chunk, encoding);
      if (typeof encoding === 'function') (encoding as () => void)();
      else cb?.();
      return true;
    }) as typeof res.write;
    res.end = ((chunk?: unknown, encoding?: unknown) => {
      collect(chunk, encoding);
      const buf = Buffer.concat(chunks);
      resolve({
        status: res.statusCode,
        headers: res.getHeaders() as Injected['headers'],
        body: buf,
        json: <T>() => JSON.parse(buf.toString('utf8')) as T,
      });
      return res;
    }) as typeof res.end;
    try {
      handler(req, res);
    } catch (e) {
      reject(e);
    }
  });
}
