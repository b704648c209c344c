/**
 * The store's HTTP client (src/storage/http-client.ts) keeps the parts of fetch the store relies
 * on: no redirect is followed, no Accept-Encoding is sent, a POST without a body says
 * Content-Length: 0, repeated headers are joined as Headers.get joins them, the signal aborts a
 * body read, and a connection lost mid-body is an error of the read (not of the process).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { httpRequest } from '../../src/storage/http-client.ts';
import { readBodyBounded } from '../../src/storage/http-body.ts';

let server: Server;
let base: string;
const seen: Array<{ method: string; url: string; headers: IncomingMessage['headers'] }> = [];
const handlers: Record<string, (req: IncomingMessage, res: ServerResponse) => void> = {
  '/redirect': (_q, res) => void res.writeHead(307, { location: '/elsewhere' }).end(),
  '/twice': (_q, res) => void res.writeHead(200, [['x-two', 'a'], ['x-two', 'b'], ['content-length', '2']]).end('ok'),
  '/stall': (_q, res) => void res.writeHead(200, { 'content-length': '100' }).write('partial'),
  '/cut': (q, res) => {
    res.writeHead(200, { 'content-length': '100' });
    res.write('partial', () => q.socket.destroy());
  },
  '/echo': (q, res) => {
    const chunks: Buffer[] = [];
    q.on('data', (c: Buffer) => chunks.push(c)).on('end', () => res.writeHead(200).end(Buffer.concat(chunks)));
  },
};

beforeAll(async () => {
  server = createServer((req, res) => {
    seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
    (handlers[req.url ?? ''] ?? ((_q, r) => void r.writeHead(404).end()))(req, res);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

describe('the HTTP client', () => {
  it('answers a redirect as it is, without following it', async () => {
    const r = await httpRequest(new URL(`${base}/redirect`), { method: 'GET' });
    expect(r.status).toBe(307);
    expect(r.headers.get('Location')).toBe('/elsewhere');
    await r.cancel();
    expect(seen.some((s) => s.url === '/elsewhere')).toBe(false);
  });

  it('sends no Accept-Encoding, Content-Length: 0 on an empty POST, and the body it is given', async () => {
    const empty = await httpRequest(new URL(`${base}/echo`), { method: 'POST', headers: { 'X-A': '1' } });
    expect(await readBodyBounded(empty, 100)).toEqual({ kind: 'ok', bytes: new Uint8Array(0) });
    const last = seen.at(-1)!;
    expect(last.headers['content-length']).toBe('0');
    expect(last.headers['accept-encoding']).toBeUndefined();
    expect(last.headers['x-a']).toBe('1');
    const full = await httpRequest(new URL(`${base}/echo`), { method: 'PUT', body: new TextEncoder().encode('hello') });
    const body = await readBodyBounded(full, 100);
    expect(body.kind === 'ok' && Buffer.from(body.bytes).toString()).toBe('hello');
  });

  it('joins repeated headers with ", " and reads names case-insensitively', async () => {
    const r = await httpRequest(new URL(`${base}/twice`), { method: 'GET' });
    expect(r.headers.get('X-Two')).toBe('a, b');
    expect(r.headers.get('x-missing')).toBeNull();
    await r.cancel();
  });

  it('HEAD has no body', async () => {
    const r = await httpRequest(new URL(`${base}/twice`), { method: 'HEAD' });
    expect(r.status).toBe(200);
    expect(r.body).toBeNull();
  });

  it('the signal aborts a body that stalls, with an AbortError', async () => {
    const ac = new AbortController();
    const r = await httpRequest(new URL(`${base}/stall`), { method: 'GET', signal: ac.signal });
    const reading = readBodyBounded(r, 1000);
    ac.abort();
    await expect(reading).rejects.toMatchObject({ name: 'AbortError' });
  });

  it('a connection lost mid-body is an error of the read', async () => {
    const r = await httpRequest(new URL(`${base}/cut`), { method: 'GET' });
    await expect(readBodyBounded(r, 1000)).rejects.toThrow();
  });

  it('a body past the bound is cut off there', async () => {
    const r = await httpRequest(new URL(`${base}/twice`), { method: 'GET' });
    expect(await readBodyBounded(r, 1)).toEqual({ kind: 'too-large', declared: 2 });
  });
});
