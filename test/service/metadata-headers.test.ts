/**
 * One GET of a metadata file, three paths that can answer it on a real `startServer`: the
 * connection front (fast-front.ts), node:http's fast path (fast-read.ts `withFastReads`) and the
 * Koa route (app.ts). Each is made to answer in turn and shown to be the one that did; all three
 * send the same status, the same headers in the same order (but Date) and the same bytes, for
 * `timestamp.json` (200 and 304, with the root-version hint) and a versioned file.
 */
import { Agent, request } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IMMUTABLE_CACHE_CONTROL, ROOT_VERSION_HEADER, metadataHeaders } from '../../src/api/headers.ts';
import { paths } from '../../src/api/routes.ts';
import { startServer, type RunningServer } from '../../src/main.ts';
import { image } from '../support/engine-repo.ts';
import { ADMIN, CI, ServiceHarness } from './harness.ts';

const REPO = 'wabbit-networks/net-monitor';
const TOKENS = JSON.stringify([
  { name: 'admin', token: ADMIN, scopes: ['admin'] },
  { name: 'ci', token: CI, scopes: ['write:wabbit-networks/*'] },
]);

interface Answer {
  status: number;
  /** Names as sent, in order; Date's value blanked. */
  headers: Array<[string, string]>;
  body: Buffer;
}

/** One GET on a connection of its own (keep-alive, as clients send it), raw headers kept in order. */
function getOnce(port: number, path: string, headers: Record<string, string>): Promise<Answer> {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  return new Promise<Answer>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, headers, agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (d: Buffer) => chunks.push(d));
      res.on('end', () => {
        const raw = res.rawHeaders;
        const pairs: Array<[string, string]> = [];
        for (let i = 0; i < raw.length; i += 2) pairs.push([raw[i] as string, raw[i] === 'Date' ? '<date>' : (raw[i + 1] as string)]);
        resolve({ status: res.statusCode ?? 0, headers: pairs, body: Buffer.concat(chunks) });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  }).finally(() => agent.destroy());
}

const dirs: string[] = [];
let running: RunningServer;
let port: number;
/** Calls of the Koa route's `service.read` (the fast paths read the head cache only). */
let koaReads = 0;

beforeAll(async () => {
  const h = new ServiceHarness();
  const dir = mkdtempSync(join(tmpdir(), 'tufoci-headers-'));
  dirs.push(dir);
  running = await startServer({
    dataDir: join(dir, 'data'),
    port: 0,
    logger: pino({ level: 'silent' }),
    signers: { snapshot: [h.online.snapshot], timestamp: [h.online.timestamp], ci: [h.online.ci] },
    tokensEnv: TOKENS,
    refreshTickMs: 3_600_000,
  });
  port = Number(new URL(running.url).port);
  const created = await fetch(`${running.url}${paths.repository(REPO)}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
    body: await h.createBody(),
  });
  expect(created.status, await created.text()).toBe(201);
  const ci = await fetch(`${running.url}${paths.metadata(REPO, '1.ci.json')}`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${CI}`, 'content-type': 'application/json' },
    body: Buffer.from(await h.ciBytes(1, { v1: image(1) })),
  });
  expect(ci.status, await ci.text()).toBe(201);
  expect((await fetch(`${running.url}${paths.metadata(REPO, 'timestamp.json')}`)).status).toBe(200); // the head is cached
  const service = running.service;
  const read = service.read.bind(service);
  service.read = (...args: Parameters<typeof service.read>) => {
    koaReads++;
    return read(...args);
  };
});

afterAll(async () => {
  await running?.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** The same GET through each path, with proof of which one answered. */
async function throughEachPath(file: string, headers: Record<string, string>): Promise<{ front: Answer; fastRead: Answer; koa: Answer }> {
  const stats = running.fastFront.stats;
  const path = paths.metadata(REPO, file);

  let before = { ...stats, koaReads };
  const front = await getOnce(port, path, headers);
  expect({ ...stats, koaReads }).toEqual({ answered: before.answered + 1, delegated: before.delegated, koaReads: before.koaReads });

  // '%' is outside the front's subset: handed to node:http, where withFastReads decodes the name and answers.
  before = { ...stats, koaReads };
  const fastRead = await getOnce(port, path.replace('wabbit-networks/', 'wabbit-networks%2F'), headers);
  expect({ ...stats, koaReads }).toEqual({ answered: before.answered, delegated: before.delegated + 1, koaReads: before.koaReads });

  // A query string is outside both fast paths: the Koa route answers.
  before = { ...stats, koaReads };
  const koa = await getOnce(port, `${path}?via=koa`, headers);
  expect({ ...stats, koaReads }).toEqual({ answered: before.answered, delegated: before.delegated + 1, koaReads: before.koaReads + 1 });

  return { front, fastRead, koa };
}

describe('the metadata GET through the front, the node:http fast path and the Koa route', () => {
  it('timestamp.json: the same status, headers (with the root version) and bytes on all three', async () => {
    const { front, fastRead, koa } = await throughEachPath('timestamp.json', { 'x-request-id': 'one-id' });
    expect(front.status).toBe(200);
    expect(fastRead).toEqual(front);
    expect(koa).toEqual(front);
    expect(front.headers.map(([n]) => n)).toEqual(['X-Request-Id', 'ETag', 'Cache-Control', ROOT_VERSION_HEADER, 'Content-Type', 'Content-Length', 'Date', 'Connection', 'Keep-Alive']);
    expect(new Map(front.headers).get(ROOT_VERSION_HEADER)).toBe('1');
    expect(new Map(front.headers).get('Cache-Control')).toBe('public, max-age=10');
  });

  it('timestamp.json with a matching If-None-Match: the same 304 on all three', async () => {
    const etag = new Map((await getOnce(port, paths.metadata(REPO, 'timestamp.json'), {})).headers).get('ETag') as string;
    const { front, fastRead, koa } = await throughEachPath('timestamp.json', { 'x-request-id': 'one-id', 'if-none-match': etag });
    expect(front.status).toBe(304);
    expect(fastRead).toEqual(front);
    expect(koa).toEqual(front);
    expect(front.headers.map(([n]) => n)).toEqual(['X-Request-Id', 'ETag', 'Cache-Control', ROOT_VERSION_HEADER, 'Date', 'Connection', 'Keep-Alive']);
  });

  it('a versioned file: the same immutable answer, without the root version, on all three', async () => {
    const { front, fastRead, koa } = await throughEachPath('1.ci.json', { 'x-request-id': 'one-id' });
    expect(front.status).toBe(200);
    expect(fastRead).toEqual(front);
    expect(koa).toEqual(front);
    expect(new Map(front.headers).get('Cache-Control')).toBe(IMMUTABLE_CACHE_CONTROL);
    expect(front.headers.some(([n]) => n === ROOT_VERSION_HEADER)).toBe(false);
  });

  it('metadataHeaders, the one function the three paths set these headers with', () => {
    const set: Array<[string, string]> = [];
    const sink = { setHeader: (name: string, value: string) => set.push([name, value]) };
    metadataHeaders(sink, { bytes: new Uint8Array(5), etag: '"e"', immutable: false }, 3, false, 7);
    expect(set).toEqual([
      ['ETag', '"e"'],
      ['Cache-Control', 'public, max-age=7'],
      [ROOT_VERSION_HEADER, '3'],
      ['Content-Type', 'application/json; charset=utf-8'],
      ['Content-Length', '5'],
    ]);
  });
});
