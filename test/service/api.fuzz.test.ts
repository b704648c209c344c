/**
 * Property-based fuzz of the HTTP API, as `tufoci serve` answers it (withFastReads in front of the
 * Koa app), over a repository its owner set up: root, targets delegating `ci` (owner's CI key) and
 * `release` (service-held), and one `ci` version.
 *
 * Random requests — methods, paths (valid and invalid repository and file names, traversal,
 * percent-encoding, unicode, very long names), tokens (none, unknown, malformed, read-only, write
 * for another namespace, admin, a grant token nobody issued), content types, bodies (random bytes,
 * random JSON, deep nesting, huge numbers, long strings, duplicate names, non-integer numbers,
 * lone surrogates, sizes at the limits) and valid signed uploads with one field, signature, key id,
 * version or expiry changed — must each be answered such that:
 * - the status is never 5xx; a 2xx only for a request that is valid (reads of what exists, an
 *   identical retry, a few operator routes); every other answer a 4xx whose JSON body has an error
 *   code (one the HTTP_STATUS table maps to that status) and a message;
 * - the repository is unchanged afterwards: every stored file, the served timestamp and status,
 *   and the list of repositories;
 * - the request costs the process at most CPU_BUDGET_MS of CPU time (process.cpuUsage around the
 *   request: the service runs in this process; the least of three tries, so that a collection of
 *   earlier runs' garbage is not charged to it). A CPU budget, not a wall-clock timing.
 *
 * Each property runs for a bounded time (see TIME_LIMIT_MS); fast-check prints the seed and the
 * shrunk counterexample of a failure, and `FUZZ_SEED` / `FUZZ_TIME_MS` replay or extend a run.
 */
import { createHash } from 'node:crypto';
import type { RequestListener } from 'node:http';
import fc from 'fast-check';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { canonicalSignedBytes } from '../../src/engine/canonical.ts';
import { isoExpiry } from '../../src/engine/build.ts';
import type { InMemorySigner } from '../../src/keys/index.ts';
import { createApp } from '../../src/service/app.ts';
import { TokenAuth, parseTokens } from '../../src/service/auth.ts';
import { HTTP_STATUS } from '../../src/service/errors.ts';
import { withFastReads } from '../../src/service/fast-read.ts';
import { createMetrics } from '../../src/service/metrics.ts';
import { image, signer } from '../support/engine-repo.ts';
import { inject, type Injected } from '../support/inject.ts';
import { ADMIN, CI, OTHER, ServiceHarness } from './harness.ts';

const REPO = 'wabbit-networks/net-monitor';
const READER = 'reader-token-0123456789abcdef';
/** Upload body limit of the app under test, and the limit of the small JSON routes (grants, revoke). */
const MAX_BODY = 1024 * 1024;
const SMALL_BODY = 16 * 1024;
const CPU_BUDGET_MS = 100;
const DAY = 86_400_000;
/** Per property; the three properties and the set-up stay within about a minute. */
const TIME_LIMIT_MS = Number(process.env['FUZZ_TIME_MS'] ?? 15_000);
const SEED = process.env['FUZZ_SEED'] === undefined ? undefined : Number(process.env['FUZZ_SEED']);

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };
type Doc = { signatures: Json; signed: JsonObject } & JsonObject;

// ------------------------------------------------------------------ the service under test

type TokenName = 'none' | 'admin' | 'ci' | 'other' | 'reader' | 'unknown' | 'grant' | 'basic' | 'bearer-empty' | 'bearer-twice';

const AUTHORIZATION: Record<TokenName, string | undefined> = {
  none: undefined,
  admin: `Bearer ${ADMIN}`,
  ci: `Bearer ${CI}`, // write:wabbit-networks/*
  other: `Bearer ${OTHER}`, // write:acme-rockets/*
  reader: `Bearer ${READER}`, // read:wabbit-networks/*
  unknown: `Bearer ${'u'.repeat(40)}`,
  grant: `Bearer tufoci_grant_${'A'.repeat(43)}`, // shaped like a grant token, never issued
  basic: `Basic ${Buffer.from(`admin:${ADMIN}`).toString('base64')}`,
  'bearer-empty': 'Bearer ',
  'bearer-twice': `Bearer ${ADMIN} ${ADMIN}`,
};
const TOKEN_NAMES = Object.keys(AUTHORIZATION) as TokenName[];

function canWrite(token: TokenName, repo: string): boolean {
  if (token === 'admin') return true;
  if (token === 'ci') return repo.startsWith('wabbit-networks/');
  if (token === 'other') return repo.startsWith('acme-rockets/');
  return false;
}

function canRead(token: TokenName, repo: string, privateRead: boolean): boolean {
  return !privateRead || canWrite(token, repo) || (token === 'reader' && repo.startsWith('wabbit-networks/'));
}

const CONTENT_TYPES = [
  undefined,
  '',
  'application/json',
  'application/json; charset=utf-8',
  'APPLICATION/JSON',
  'application/octet-stream',
  'text/plain',
  'text/html',
  'application/x-www-form-urlencoded',
  'multipart/form-data; boundary=x',
  'application/jsonx',
] as const;
type ContentType = (typeof CONTENT_TYPES)[number];

/** Content types the upload and JSON routes take (anything else: 415). */
function jsonContentType(type: ContentType): boolean {
  return type === undefined || type === '' || /^application\/(json|octet-stream)(;|$)/i.test(type);
}

interface World {
  h: ServiceHarness;
  listeners: { public: RequestListener; private: RequestListener };
  /** Every file of REPO in the store after set-up. */
  stored: Map<string, Uint8Array>;
  /** Valid next versions nobody uploaded: each is accepted as it is, so a refusal of a mutant is the mutation's doing. */
  next: Record<'ci' | 'targets' | 'root', { fileName: string; doc: Doc; signers: InMemorySigner[] }>;
  impossible: Record<ImpossibleDate, string>;
  fresh: number;
  /** Set when a request broke a property: the next run starts from a new world. */
  dirty: boolean;
}

const decoder = new TextDecoder();

function parseDoc(bytes: Uint8Array): Doc {
  return JSON.parse(decoder.decode(bytes)) as Doc;
}

async function resign(doc: Doc, signers: readonly InMemorySigner[]): Promise<void> {
  const bytes = canonicalSignedBytes(doc.signed);
  const signatures: Json[] = [];
  for (const s of signers) {
    const { keyid, sig } = await s.sign(bytes);
    signatures.push({ keyid, sig });
  }
  doc.signatures = signatures;
}

async function makeWorld(): Promise<World> {
  const h = new ServiceHarness();
  expect((await h.create()).status).toBe(201);
  expect((await h.delegateRelease()).status).toBe(201);
  const ci1 = await h.request('PUT', `/v1/repos/${REPO}/metadata/1.ci.json`, { token: CI, body: await h.ciBytes(1, { v1: image(1) }) });
  expect(ci1.status).toBe(201);
  const logger = pino({ level: 'silent' });
  const tokens = parseTokens(
    [
      { name: 'admin', token: ADMIN, scopes: ['admin'] },
      { name: 'ci', token: CI, scopes: ['write:wabbit-networks/*'] },
      { name: 'other', token: OTHER, scopes: ['write:acme-rockets/*'] },
      { name: 'reader', token: READER, scopes: ['read:wabbit-networks/*'] },
    ],
    'fuzz',
  );
  const listener = (publicRead: boolean): RequestListener => {
    const auth = new TokenAuth(tokens, publicRead);
    const metrics = createMetrics(() => h.service.expiries());
    const app = createApp({ service: h.service, auth, logger, metrics, ready: async () => undefined, maxBodyBytes: MAX_BODY });
    return withFastReads({ service: h.service, auth, metrics }, app.callback());
  };
  const stored = new Map<string, Uint8Array>();
  for (const f of await h.metadata.listMetadata(REPO)) stored.set(f.fileName, await h.metadata.readMetadata(REPO, f.fileName, 1 << 24));
  const targets3 = parseDoc(stored.get('2.targets.json') as Uint8Array);
  targets3.signed['version'] = 3;
  await resign(targets3, [h.owner.targets]);
  return {
    h,
    listeners: { public: listener(true), private: listener(false) },
    stored,
    next: {
      ci: { fileName: '2.ci.json', doc: parseDoc(await h.ciBytes(2, { v1: image(1), v2: image(2) })), signers: [h.ci] },
      targets: { fileName: '3.targets.json', doc: targets3, signers: [h.owner.targets] },
      root: { fileName: '2.root.json', doc: parseDoc(await h.rootBytes(2)), signers: [h.owner.root] },
    },
    impossible: impossibleDates(h.now),
    fresh: 0,
    dirty: false,
  };
}

/** A create body for `repo`, not yet sent: `{"root": 1.root.json, "targets": 1.targets.json}`. */
async function createBody(w: World, repo: string): Promise<{ root: Doc; targets: Doc }> {
  return JSON.parse(await w.h.createBody(repo)) as { root: Doc; targets: Doc };
}

// ------------------------------------------------------------------ requests and the properties

type Expect = 'ok' | 'refuse' | 'any';

interface Request {
  method: string;
  url: string;
  token: TokenName;
  contentType?: ContentType;
  body?: Uint8Array;
  headers?: Record<string, string>;
  privateRead?: boolean;
}

function clip(text: string, max = 240): string {
  return text.length <= max ? text : `${text.slice(0, max)}… (${text.length} characters)`;
}

function describeRequest(req: Request): string {
  const body = req.body === undefined ? 'no body' : `${req.body.byteLength}-byte body ${JSON.stringify(clip(Buffer.from(req.body).toString('utf8'), 160))}`;
  const extra = req.headers ? ` headers ${JSON.stringify(req.headers)}` : '';
  return `${req.method} ${clip(req.url, 200)} token=${req.token} content-type=${JSON.stringify(req.contentType)}${req.privateRead ? ' (private reads)' : ''}${extra}, ${body}`;
}

async function send(w: World, req: Request): Promise<{ r: Injected; cpuMs: number }> {
  const headers: Record<string, string> = { ...req.headers };
  const authorization = AUTHORIZATION[req.token];
  if (authorization !== undefined) headers['authorization'] = authorization;
  if (req.contentType !== undefined) headers['content-type'] = req.contentType;
  const listener = req.privateRead ? w.listeners.private : w.listeners.public;
  const before = process.cpuUsage();
  const r = await inject(listener, { method: req.method, url: req.url, headers, ...(req.body !== undefined ? { body: req.body } : {}) });
  const used = process.cpuUsage(before);
  return { r, cpuMs: (used.user + used.system) / 1000 };
}

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** Everything a request could change: the stored files, what is served, the repositories. */
async function fingerprint(w: World): Promise<string> {
  const { h } = w;
  const lines = [`repositories ${(await h.metadata.listRepositories()).sort().join(' ')}`];
  const files = (await h.metadata.listMetadata(REPO)).map((f) => f.fileName).sort();
  for (const f of files) lines.push(`${f} ${sha256(await h.metadata.readMetadata(REPO, f, 1 << 24))}`);
  const ts = await send(w, { method: 'GET', url: `/v1/repos/${REPO}/metadata/timestamp.json`, token: 'none' });
  lines.push(`served timestamp ${ts.r.status} ${sha256(ts.r.body)}`);
  const status = await send(w, { method: 'GET', url: `/v1/repos/${REPO}/status`, token: 'none' });
  lines.push(`status ${status.r.status} ${status.r.body.toString('utf8')}`);
  return lines.join('\n');
}

const KNOWN_CODES = new Map<string, Set<number>>();
for (const table of Object.values(HTTP_STATUS)) {
  for (const [code, status] of Object.entries(table)) KNOWN_CODES.set(code, (KNOWN_CODES.get(code) ?? new Set()).add(status));
}

function errorBodyProblems(r: Injected): string[] {
  let body: unknown;
  try {
    body = r.json();
  } catch {
    return [`a ${r.status} without a JSON body`];
  }
  const error = (typeof body === 'object' && body !== null ? (body as Record<string, unknown>)['error'] : undefined) as Record<string, unknown> | undefined;
  if (typeof error !== 'object' || error === null) return ['no "error" object in the body'];
  const problems: string[] = [];
  const code = error['code'];
  if (typeof code !== 'string' || !/^[A-Z][A-Z0-9_]*$/.test(code)) problems.push(`error code ${JSON.stringify(code)} is not a code`);
  else if (!KNOWN_CODES.get(code)?.has(r.status)) problems.push(`error code ${code} is not answered with ${r.status} in HTTP_STATUS`);
  const message = error['message'];
  if (typeof message !== 'string' || message.trim().length === 0) problems.push('no error message');
  if (typeof error['detail'] !== 'object' || error['detail'] === null) problems.push('no error detail object');
  return problems;
}

/**
 * Send `req` and check every property. Throws (failing the run) with the request, the answer and
 * each property broken.
 */
async function check(w: World, req: Request, expectation: Expect, extra?: (r: Injected) => string[]): Promise<void> {
  const before = await fingerprint(w);
  const { r, cpuMs } = await send(w, req);
  const after = await fingerprint(w);
  const problems: string[] = [];
  if (r.status >= 500) problems.push(`answered ${r.status}`);
  else if (r.status < 200 || (r.status >= 300 && r.status !== 304 && r.status < 400)) problems.push(`answered ${r.status}`);
  if (expectation === 'refuse' && r.status < 400) problems.push(`accepted (${r.status}) a request that must be refused`);
  if (expectation === 'ok' && r.status >= 400) problems.push(`refused (${r.status}) a valid request`);
  if (r.status >= 400 && req.method !== 'HEAD') problems.push(...errorBodyProblems(r));
  if (before !== after) problems.push(`the repository changed:\n--- before\n${before}\n--- after\n${after}`);
  if (cpuMs > CPU_BUDGET_MS && before === after) {
    // Over budget: measure twice more and keep the least, so that a garbage collection of what
    // earlier runs left behind is not charged to this request. A refused request can be repeated.
    const measured = [cpuMs];
    for (let i = 0; i < 2; i++) measured.push((await send(w, req)).cpuMs);
    if (Math.min(...measured) > CPU_BUDGET_MS) problems.push(`took ${measured.map((m) => m.toFixed(1)).join(', ')} ms of CPU in three tries (budget ${CPU_BUDGET_MS} ms)`);
  } else if (cpuMs > CPU_BUDGET_MS) problems.push(`took ${cpuMs.toFixed(1)} ms of CPU (budget ${CPU_BUDGET_MS} ms)`);
  if (problems.length === 0 && extra) problems.push(...extra(r));
  if (problems.length > 0) {
    w.dirty = true;
    throw new Error(`${describeRequest(req)}\n→ ${r.status} ${clip(r.body.toString('utf8'), 600)} (${cpuMs.toFixed(1)} ms CPU)\n${problems.map((p) => `- ${p}`).join('\n')}`);
  }
}

let world: World | undefined;

async function currentWorld(): Promise<World> {
  if (!world || world.dirty) world = await makeWorld();
  return world;
}

/** Assert `property` for TIME_LIMIT_MS (and at most `numRuns` runs), then wait for a run still under way. */
async function fuzz<T>(arbitrary: fc.Arbitrary<T>, numRuns: number, run: (w: World, value: T) => Promise<void>): Promise<void> {
  await currentWorld();
  let running: Promise<void> = Promise.resolve();
  try {
    await fc.assert(
      fc.asyncProperty(arbitrary, async (value) => {
        running = currentWorld().then((w) => run(w, value));
        await running;
      }),
      { numRuns, plugins: [fc.interruptAfterTimeLimit(TIME_LIMIT_MS)], ...(SEED !== undefined ? { seed: SEED } : {}) },
    );
  } finally {
    await running.catch(() => undefined);
  }
}

const token = (weights: Partial<Record<TokenName, number>> = {}): fc.Arbitrary<TokenName> =>
  fc.oneof(...TOKEN_NAMES.map((name) => ({ weight: weights[name] ?? 1, arbitrary: fc.constant(name) })));

const contentType = (jsonWeight = 8): fc.Arbitrary<ContentType> =>
  fc.oneof({ weight: jsonWeight, arbitrary: fc.constant('application/json' as ContentType) }, { weight: 2, arbitrary: fc.constantFrom(...CONTENT_TYPES) });

const utf8 = (text: string): Uint8Array => new TextEncoder().encode(text);

// ------------------------------------------------------------------ metadata mutations

type ImpossibleDate = 'hour24' | 'second60' | 'day31' | 'feb30' | 'feb29' | 'month13' | 'day00';

/** Calendar dates that do not exist, each inside the expiry windows of every role (within a year). */
function impossibleDates(now: number): Record<ImpossibleDate, string> {
  const day = isoExpiry(now + 30 * DAY).slice(0, 10);
  const start = new Date(now + 2 * DAY);
  const months = Array.from({ length: 12 }, (_, i) => new Date(Date.UTC(start.getUTCFullYear(), start.getUTCMonth() + 1 + i, 1)));
  const ym = (d: Date): string => `${d.getUTCFullYear()}-${String(d.getUTCMonth() + 1).padStart(2, '0')}`;
  const thirty = months.find((d) => new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 0)).getUTCDate() === 30) as Date;
  const feb = months.find((d) => d.getUTCMonth() === 1) as Date;
  const y = feb.getUTCFullYear();
  const leap = y % 4 === 0 && (y % 100 !== 0 || y % 400 === 0);
  return {
    hour24: `${day}T24:00:00Z`,
    second60: `${day}T23:59:60Z`,
    day31: `${ym(thirty)}-31T00:00:00Z`,
    feb30: `${ym(feb)}-30T00:00:00Z`,
    feb29: `${ym(feb)}-${leap ? '30' : '29'}T00:00:00Z`,
    month13: `${day.slice(0, 4)}-13-01T00:00:00Z`,
    day00: `${day.slice(0, 8)}00T00:00:00Z`,
  };
}

type SignedEdit =
  | { op: 'expires'; value: ImpossibleDate | 'past' | 'far' | 'date-only' | 'offset' | 'fraction' | 'lowercase' | 'no-zone' }
  | { op: 'version'; value: 'minus1' | 'plus1' | 'zero' | 'negative' | 'string' | 'null' | 'unsafe' }
  | { op: 'versionAndName'; delta: number }
  | { op: 'type'; value: string }
  | { op: 'spec'; value: string }
  | { op: 'wrongKey' }
  | { op: 'duplicateSignature' }
  | { op: 'surrogate'; where: 'field' | 'custom' | 'name' }
  | { op: 'structure'; pick: number }
  | { op: 'scope'; value: string };

type IntForm = '.0' | '.00' | 'e0' | 'E+0' | 'e-0' | '0e-1';

type StrictEdit = { op: 'int'; at: number; form: IntForm } | { op: 'dup'; at: number; key: number; decoy: 'same' | 'null' | 'other'; escaped: boolean } | { op: 'bom' };

type UnsignedEdit =
  | { op: 'leaf'; at: number; how: 'bump' | 'null' | 'remove' | 'type' | 'add' }
  | { op: 'rekey'; at: number }
  | { op: 'sig'; how: 'flip' | 'truncate' | 'empty' | 'uppercase' | 'otherKeyid' | 'randomKeyid' | 'none' | 'notArray' | 'missing' | 'foreignSig' };

type Mutation =
  | { kind: 'resign'; edit: SignedEdit }
  | { kind: 'strict'; edit: StrictEdit }
  | { kind: 'unsigned'; edit: UnsignedEdit }
  | { kind: 'rename'; name: string };

interface UploadCase {
  kind: 'upload';
  target: 'ci' | 'targets' | 'root' | 'create';
  /** For `create`: which of its two documents is mutated. */
  part: 'root' | 'targets';
  mutation: Mutation;
  token: TokenName;
  contentType: ContentType;
}

interface ReadCase {
  kind: 'retry' | 'get';
  file: string;
  token: TokenName;
  contentType: ContentType;
}

const signedEdit: fc.Arbitrary<SignedEdit> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      op: fc.constant('expires' as const),
      value: fc.constantFrom('hour24', 'second60', 'day31', 'feb30', 'feb29', 'month13', 'day00', 'past', 'far', 'date-only', 'offset', 'fraction', 'lowercase', 'no-zone'),
    }),
  },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('version' as const), value: fc.constantFrom('minus1', 'plus1', 'zero', 'negative', 'string', 'null', 'unsafe') }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('versionAndName' as const), delta: fc.constantFrom(-1, 1, 2) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('type' as const), value: fc.constantFrom('root', 'targets', 'snapshot', 'timestamp', 'Targets', '') }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('spec' as const), value: fc.constantFrom('2.0.0', '1', '', '0.9.9', '1.0.0.0', '1.0.31-rc1', ' 1.0.31') }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('wrongKey' as const) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('duplicateSignature' as const) }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('surrogate' as const), where: fc.constantFrom('field', 'custom', 'name') }) },
  { weight: 4, arbitrary: fc.record({ op: fc.constant('structure' as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('scope' as const), value: fc.constantFrom('acme-rockets/app', 'acme-rockets/', '', 'wabbit-networks/net-monitor2', 'WABBIT-NETWORKS/NET-MONITOR') }) },
);

const strictEdit: fc.Arbitrary<StrictEdit> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ op: fc.constant('int' as const), at: fc.nat(), form: fc.constantFrom<IntForm>('.0', '.00', 'e0', 'E+0', 'e-0', '0e-1') }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('dup' as const), at: fc.nat(), key: fc.nat(), decoy: fc.constantFrom('same', 'null', 'other'), escaped: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('bom' as const) }) },
);

const unsignedEdit: fc.Arbitrary<UnsignedEdit> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ op: fc.constant('leaf' as const), at: fc.nat(), how: fc.constantFrom('bump', 'null', 'remove', 'type', 'add') }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('rekey' as const), at: fc.nat() }) },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant('sig' as const),
      how: fc.constantFrom('flip', 'truncate', 'empty', 'uppercase', 'otherKeyid', 'randomKeyid', 'none', 'notArray', 'missing', 'foreignSig'),
    }),
  },
);

/** File names a valid upload could be sent to instead of its own. */
const WRONG_NAMES = [
  '1.release.json',
  '2.release.json',
  '2.snapshot.json',
  'timestamp.json',
  '2.nobody.json',
  '3.root.json',
  '2.targets.json',
  '3.ci.json',
  '02.ci.json',
  '2.ci.JSON',
  '2.ci',
  '9007199254740993.ci.json',
  '2.timestamp.json',
  '.json',
  '2..json',
];

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  { weight: 8, arbitrary: fc.record({ kind: fc.constant('resign' as const), edit: signedEdit }) },
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('strict' as const), edit: strictEdit }) },
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('unsigned' as const), edit: unsignedEdit }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('rename' as const), name: fc.constantFrom(...WRONG_NAMES) }) },
);

const uploadCase: fc.Arbitrary<UploadCase> = fc.record({
  kind: fc.constant('upload' as const),
  target: fc.constantFrom('ci', 'ci', 'targets', 'root', 'create'),
  part: fc.constantFrom('root', 'targets'),
  mutation,
  token: token({ ci: 24, admin: 6 }),
  contentType: contentType(),
});

const readCase: fc.Arbitrary<ReadCase> = fc.record({
  kind: fc.constantFrom('retry', 'get'),
  file: fc.constantFrom('1.root.json', '1.targets.json', '2.targets.json', '1.ci.json', '1.snapshot.json', '3.snapshot.json', 'timestamp.json'),
  token: token({ ci: 4, admin: 2 }),
  contentType: contentType(),
});

/** Serialize like JSON.stringify, optionally writing one integer in another notation or one member twice. */
function emit(doc: Json, edit?: StrictEdit): string {
  const ints: number[] = [];
  const objects: JsonObject[] = [];
  const walk = (v: Json): void => {
    if (typeof v === 'number' && Number.isInteger(v)) ints.push(v);
    else if (Array.isArray(v)) v.forEach(walk);
    else if (v !== null && typeof v === 'object') {
      if (Object.keys(v).length > 0) objects.push(v);
      Object.values(v).forEach(walk);
    }
  };
  walk(doc);
  const intAt = edit?.op === 'int' && ints.length > 0 ? edit.at % ints.length : -1;
  const dupIn = edit?.op === 'dup' && objects.length > 0 ? objects[edit.at % objects.length] : undefined;
  let intIndex = 0;
  const go = (v: Json): string => {
    if (typeof v === 'number' && Number.isInteger(v) && intIndex++ === intAt && edit?.op === 'int') {
      return edit.form === '0e-1' ? `${v}0e-1` : `${v}${edit.form}`;
    }
    if (v === null || typeof v !== 'object') return JSON.stringify(v);
    if (Array.isArray(v)) return `[${v.map(go).join(',')}]`;
    const keys = Object.keys(v);
    const members = keys.map((k) => {
      const member = `${JSON.stringify(k)}:${go(v[k] as Json)}`;
      if (v !== dupIn || edit?.op !== 'dup' || k !== keys[edit.key % keys.length]) return member;
      const name = edit.escaped ? `"${[...k].map((c) => `\\u${(c.codePointAt(0) as number).toString(16).padStart(4, '0')}`).join('')}"` : JSON.stringify(k);
      const value = v[k] as Json;
      const decoy =
        edit.decoy === 'same' ? JSON.stringify(value) : edit.decoy === 'null' ? 'null' : typeof value === 'number' ? String(value + 1) : typeof value === 'string' ? JSON.stringify(`${value}x`) : '0';
      return `${name}:${decoy},${member}`; // a parser keeping the last member reads the valid document
    });
    return `{${members.join(',')}}`;
  };
  return go(doc);
}

function asObject(v: Json | undefined): JsonObject {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new Error(`expected an object, got ${JSON.stringify(v)}`);
  return v;
}

/** Edits of a signed document that leave it well signed but not valid for its role. */
function structureEdits(role: 'ci' | 'targets' | 'root'): Array<(signed: JsonObject) => void> {
  const entry = (signed: JsonObject): JsonObject => {
    const targets = asObject(signed['targets']);
    const first = Object.keys(targets)[0];
    if (first !== undefined) return asObject(targets[first]);
    const added = { length: 509, hashes: { sha256: '9'.repeat(64) }, custom: { mediaType: 'application/vnd.oci.image.manifest.v1+json' } };
    targets['r9'] = added;
    return added;
  };
  const renameEntry = (to: string) => (signed: JsonObject) => {
    const value = entry(signed);
    const targets = asObject(signed['targets']);
    for (const k of Object.keys(targets)) delete targets[k];
    targets[to] = value;
  };
  const onEntries: Array<(signed: JsonObject) => void> = [
    renameEntry('../v1'),
    renameEntry('v1/x'),
    renameEntry(`v${'x'.repeat(128)}`),
    renameEntry('vé'),
    renameEntry('v 1'),
    renameEntry('.v1'),
    (s) => void (asObject(entry(s)['hashes'])['sha256'] = 'zz'.repeat(32)),
    (s) => void (asObject(entry(s)['hashes'])['sha256'] = 'AB'.repeat(32)),
    (s) => void (entry(s)['hashes'] = { md5: '00'.repeat(16) }),
    (s) => void (asObject(entry(s)['custom'])['mediaType'] = 'text/plain'),
    (s) => void delete entry(s)['custom'],
    (s) => void (entry(s)['length'] = 0),
    (s) => void (entry(s)['length'] = -1),
    (s) => void (entry(s)['length'] = 2 ** 53 + 2),
    (s) => void (entry(s)['length'] = 4 * 1024 * 1024 + 1),
  ];
  const delegation = (s: JsonObject): JsonObject => asObject((asObject(s['delegations'])['roles'] as Json[])[0]);
  switch (role) {
    case 'ci':
      return [renameEntry('latest'), ...onEntries];
    case 'targets':
      return [
        ...onEntries,
        (s) => void (delegation(s)['threshold'] = 0),
        (s) => void (delegation(s)['threshold'] = 5),
        (s) => void (delegation(s)['name'] = 'a/b'),
        (s) => void (delegation(s)['name'] = 'targets'),
        (s) => void (delegation(s)['keyids'] = ['ab'.repeat(32)]),
        (s) => void (asObject(s['delegations'])['roles'] as Json[]).push(structuredClone(delegation(s))),
      ];
    case 'root': {
      const role = (s: JsonObject, name: string): JsonObject => asObject(asObject(s['roles'])[name]);
      return [
        (s) => void (role(s, 'root')['threshold'] = 0),
        (s) => void (role(s, 'root')['threshold'] = 2),
        (s) => void (role(s, 'targets')['threshold'] = 0),
        (s) => void (s['consistent_snapshot'] = false),
        (s) => void delete asObject(s['roles'])['timestamp'],
        (s) => void (role(s, 'snapshot')['keyids'] = ['ab'.repeat(32)]),
        (s) => void (role(s, 'timestamp')['keyids'] = []),
      ];
    }
  }
}

function applySignedEdit(w: World, role: 'ci' | 'targets' | 'root', signed: JsonObject, edit: SignedEdit): void {
  const now = w.h.now;
  const day = isoExpiry(now + 30 * DAY).slice(0, 10);
  switch (edit.op) {
    case 'expires': {
      const other: Record<string, string> = {
        past: isoExpiry(now - DAY),
        far: isoExpiry(now + 5 * 365 * DAY),
        'date-only': day,
        offset: `${day}T00:00:00+00:00`,
        fraction: `${day}T00:00:00.000Z`,
        lowercase: `${day}t00:00:00z`,
        'no-zone': `${day}T00:00:00`,
      };
      signed['expires'] = other[edit.value] ?? w.impossible[edit.value as ImpossibleDate];
      return;
    }
    case 'version': {
      const v = signed['version'] as number;
      const values: Record<typeof edit.value, Json> = { minus1: v - 1, plus1: v + 1, zero: 0, negative: -v, string: String(v), null: null, unsafe: 2 ** 53 + 2 };
      signed['version'] = values[edit.value];
      return;
    }
    case 'versionAndName':
      signed['version'] = (signed['version'] as number) + edit.delta;
      return;
    case 'type':
      signed['_type'] = edit.value === signed['_type'] ? 'mirrors' : edit.value;
      return;
    case 'spec':
      signed['spec_version'] = edit.value;
      return;
    case 'surrogate':
      if (edit.where === 'name') signed['x-tufoci-\ud800'] = 1;
      else if (edit.where === 'custom' && role !== 'root') {
        const targets = asObject(signed['targets']);
        const first = Object.keys(targets)[0];
        if (first === undefined) targets['v9'] = { length: 509, hashes: { sha256: '9'.repeat(64) }, custom: { mediaType: 'application/vnd.oci.image.manifest.v1+json', note: '\udc00' } };
        else asObject(asObject(targets[first])['custom'])['note'] = 'a\udc00';
      } else signed['x-tufoci-note'] = 'a\ud800b';
      return;
    case 'structure': {
      const edits = structureEdits(role);
      (edits[edit.pick % edits.length] as (s: JsonObject) => void)(signed);
      return;
    }
    case 'scope':
      if (role === 'root') signed['x-tufoci-scope'] = edit.value;
      else signed['expires'] = w.impossible.feb30;
      return;
    case 'wrongKey':
    case 'duplicateSignature':
      return;
  }
}

function applyUnsignedEdit(w: World, doc: Doc, edit: UnsignedEdit): void {
  if (edit.op === 'leaf') {
    const leaves: Array<{ parent: JsonObject | Json[]; key: string | number; value: Json }> = [];
    const walk = (parent: JsonObject | Json[]): void => {
      const entries: Array<[string | number, Json]> = Array.isArray(parent) ? parent.map((v, i) => [i, v]) : Object.entries(parent);
      for (const [key, value] of entries) {
        if (value !== null && typeof value === 'object' && Object.keys(value).length > 0) walk(value);
        else leaves.push({ parent, key, value });
      }
    };
    walk(doc.signed);
    const leaf = leaves[edit.at % leaves.length] as (typeof leaves)[number];
    const { parent, key, value } = leaf;
    const set = (v: Json): void => {
      if (Array.isArray(parent)) parent[key as number] = v;
      else parent[key as string] = v;
    };
    switch (edit.how) {
      case 'remove':
        if (Array.isArray(parent)) parent.splice(key as number, 1);
        else delete parent[key as string];
        return;
      case 'null':
        return set(value === null ? 0 : null);
      case 'add':
        if (Array.isArray(parent)) parent.push(structuredClone(value));
        else parent[`x-tufoci-${String(key)}`] = structuredClone(value);
        return;
      case 'type':
        return set(typeof value === 'string' ? [value] : typeof value === 'number' || typeof value === 'boolean' ? String(value) : 'x');
      case 'bump':
        if (typeof value === 'number') return set(value + 1);
        if (typeof value === 'boolean') return set(!value);
        if (typeof value === 'string') return set(/[0-9a-f]$/.test(value) ? value.slice(0, -1) + (value.endsWith('0') ? '1' : '0') : `${value}x`);
        return set(Array.isArray(value) ? [1] : value === null ? 0 : { x: 1 });
    }
  }
  if (edit.op === 'rekey') {
    // Rename one member (a key id in a key map, a target path, a role name): the signature no longer matches.
    const members: Array<{ object: JsonObject; key: string }> = [];
    const walk = (v: Json): void => {
      if (Array.isArray(v)) v.forEach(walk);
      else if (v !== null && typeof v === 'object') {
        for (const [key, inner] of Object.entries(v)) {
          members.push({ object: v, key });
          walk(inner);
        }
      }
    };
    walk(doc.signed);
    const { object, key } = members[edit.at % members.length] as (typeof members)[number];
    const renamed = /[0-9a-f]$/.test(key) ? key.slice(0, -1) + (key.endsWith('0') ? '1' : '0') : `${key}x`;
    object[renamed] = object[key] as Json;
    delete object[key];
    return;
  }
  const sigs = doc.signatures as Array<{ keyid: string; sig: string }>;
  const first = sigs[0] as { keyid: string; sig: string };
  switch (edit.how) {
    case 'flip':
      first.sig = first.sig.slice(0, -1) + (first.sig.endsWith('0') ? '1' : '0');
      return;
    case 'truncate':
      first.sig = first.sig.slice(0, -2);
      return;
    case 'empty':
      first.sig = '';
      return;
    case 'uppercase':
      first.sig = first.sig.toUpperCase();
      if (!/[a-f]/.test(first.sig.toLowerCase())) first.sig = `${first.sig.slice(0, -1)}A`;
      return;
    case 'otherKeyid':
      first.keyid = first.keyid === w.h.online.timestamp.keyid ? w.h.owner.targets.keyid : w.h.online.timestamp.keyid;
      return;
    case 'randomKeyid':
      first.keyid = 'ab'.repeat(32);
      return;
    case 'none':
      doc.signatures = [];
      return;
    case 'notArray':
      doc.signatures = { [first.keyid]: first.sig };
      return;
    case 'missing':
      delete (doc as JsonObject)['signatures'];
      return;
    case 'foreignSig': {
      // A valid signature by the same key, over another document.
      const other = parseDoc(w.stored.get('1.ci.json') as Uint8Array).signatures as Array<{ sig: string }>;
      first.sig = (other[0] as { sig: string }).sig;
      return;
    }
  }
}

async function buildUpload(w: World, c: UploadCase): Promise<Request> {
  let url: string;
  let body: { root: Doc; targets: Doc } | Doc;
  let doc: Doc;
  let role: 'ci' | 'targets' | 'root';
  let signers: InMemorySigner[];
  if (c.target === 'create') {
    const repo = `wabbit-networks/fuzz-${++w.fresh}`;
    const both = await createBody(w, repo);
    url = `/v1/repos/${repo}`;
    body = both;
    doc = both[c.part];
    role = c.part;
    signers = c.part === 'root' ? [w.h.owner.root] : [w.h.owner.targets];
  } else {
    const next = w.next[c.target];
    doc = structuredClone(next.doc);
    body = doc;
    url = `/v1/repos/${REPO}/metadata/${next.fileName}`;
    role = c.target;
    signers = next.signers;
  }
  const m = c.mutation;
  let text: string;
  if (m.kind === 'resign') {
    applySignedEdit(w, role, doc.signed, m.edit);
    await resign(doc, m.edit.op === 'wrongKey' ? [signer()] : signers);
    if (m.edit.op === 'duplicateSignature') (doc.signatures as Json[]).push(structuredClone((doc.signatures as Json[])[0] as Json));
    if (m.edit.op === 'versionAndName' && c.target !== 'create') url = `/v1/repos/${REPO}/metadata/${doc.signed['version'] as number}.${c.target}.json`;
    text = emit(body as Json);
  } else if (m.kind === 'strict') {
    text = m.edit.op === 'bom' ? `\ufeff${emit(body as Json)}` : emit(body as Json, m.edit);
  } else if (m.kind === 'unsigned') {
    applyUnsignedEdit(w, doc, m.edit);
    text = emit(body as Json);
  } else if (c.target === 'create') {
    applyUnsignedEdit(w, doc, { op: 'leaf', at: 0, how: 'bump' });
    text = emit(body as Json);
  } else {
    url = `/v1/repos/${REPO}/metadata/${m.name}`;
    text = emit(body as Json);
  }
  return { method: c.target === 'create' ? 'POST' : 'PUT', url, token: c.token, contentType: c.contentType, body: utf8(text), headers: {} };
}

/** Refused, unless the mutant is byte for byte a file already stored under that name (an identical retry). */
function uploadExpectation(w: World, req: Request): Expect {
  const file = /\/metadata\/([^/]+)$/.exec(req.url)?.[1];
  const stored = file === undefined ? undefined : w.stored.get(file);
  const identical = stored !== undefined && req.body !== undefined && Buffer.compare(Buffer.from(stored), Buffer.from(req.body)) === 0;
  return identical && canWrite(req.token, REPO) && jsonContentType(req.contentType) ? 'ok' : 'refuse';
}

// ------------------------------------------------------------------ hostile bodies

type Route = 'upload' | 'create' | 'tags' | 'grants' | 'redeem' | 'revoke';

type Shape =
  | { kind: 'deep'; depth: number; of: 'array' | 'object' }
  | { kind: 'number'; text: string }
  | { kind: 'digits'; count: number }
  | { kind: 'string'; bytes: number; unit: string }
  | { kind: 'wide'; count: number; of: 'array' | 'object' | 'duplicates' }
  | { kind: 'json'; value: fc.JsonValue }
  | { kind: 'bytes'; bytes: Uint8Array }
  | { kind: 'text'; text: string }
  | { kind: 'size'; bytes: number };

interface ShapeCase {
  route: Route;
  /** 0: the shape is the whole body; 1-3: it fills one field of an otherwise well-formed body. */
  hole: number;
  shape: Shape;
  token: TokenName | 'route';
  contentType: ContentType;
  declaredLength: 'actual' | 'huge';
}

const shape: fc.Arbitrary<Shape> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('deep' as const), depth: fc.constantFrom(33, 100, 1_000, 10_000, 100_000, 200_000, 300_000), of: fc.constantFrom('array', 'object') }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('number' as const), text: fc.constantFrom('1e400', '-1e400', '1e-400', '-0', '9007199254740993', '2.0', '3.97e2', '1E2', '0.5') }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('digits' as const), count: fc.constantFrom(20, 400, 100_000, 900_000) }) },
  {
    weight: 2,
    arbitrary: fc.record({ kind: fc.constant('string' as const), bytes: fc.constantFrom(1_000, 100_000, 1_000_000), unit: fc.constantFrom('a', 'é', '\\ud800', '\\u0000', '\\"', '😀') }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('wide' as const), count: fc.constantFrom(1_000, 30_000, 80_000), of: fc.constantFrom('array', 'object', 'duplicates') }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('json' as const), value: fc.jsonValue({ maxDepth: 5 }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('bytes' as const), bytes: fc.uint8Array({ maxLength: 2048 }) }) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('text' as const),
      text: fc.constantFrom('', ' ', 'null', 'true', '0', '"x"', '[]', '{}', '{', '}', '{"a":1,}', '[1,]', '{"a" 1}', "{'a':1}", 'NaN', 'Infinity', '\ufeff{}', '{"a":1}{"b":2}', '{"__proto__":{"x":1}}', '{"a":"\\x41"}', '{"a":01}'),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('size' as const), bytes: fc.constantFrom(SMALL_BODY, SMALL_BODY + 1, MAX_BODY, MAX_BODY + 1) }) },
);

const shapeCase: fc.Arbitrary<ShapeCase> = fc.record({
  route: fc.constantFrom('upload', 'upload', 'create', 'create', 'tags', 'grants', 'redeem', 'revoke'),
  hole: fc.nat(3),
  shape,
  token: fc.oneof({ weight: 8, arbitrary: fc.constant('route' as const) }, { weight: 1, arbitrary: token() }),
  contentType: contentType(12),
  declaredLength: fc.constantFrom('actual', 'actual', 'actual', 'huge'),
});

function shapeText(s: Shape): string {
  switch (s.kind) {
    case 'deep':
      return s.of === 'array' ? `${'['.repeat(s.depth)}${']'.repeat(s.depth)}` : `${'{"a":'.repeat(s.depth)}0${'}'.repeat(s.depth)}`;
    case 'number':
      return s.text;
    case 'digits':
      return `1${'0'.repeat(s.count)}`;
    case 'string':
      return `"${s.unit.repeat(Math.ceil(s.bytes / Buffer.byteLength(s.unit)))}"`;
    case 'wide':
      if (s.of === 'array') return `[${Array.from({ length: s.count }, () => '0').join(',')}]`;
      return `{${Array.from({ length: s.count }, (_, i) => `"${s.of === 'duplicates' ? 'k' : `k${i}`}":0`).join(',')}}`;
    case 'json':
      return JSON.stringify(s.value);
    case 'bytes':
      return Buffer.from(s.bytes).toString('latin1');
    case 'text':
      return s.text;
    case 'size': {
      const frame = '{"x":""}';
      return `{"x":"${'a'.repeat(s.bytes - frame.length)}"}`;
    }
  }
}

/** Shapes that could by chance make a valid body where a field expects a plain value: only ever the whole body. */
function wholeOnly(s: Shape): boolean {
  return s.kind === 'json' || s.kind === 'bytes' || s.kind === 'text' || s.kind === 'size';
}

async function buildShape(w: World, c: ShapeCase): Promise<Request> {
  const { h } = w;
  const s = c.shape.kind === 'bytes' ? undefined : shapeText(c.shape);
  const hole = wholeOnly(c.shape) ? 0 : c.hole;
  const S = s ?? '';
  const expires = isoExpiry(h.now + 30 * DAY);
  const digest = `sha256:${'5'.repeat(64)}`;
  const manifest = 'application/vnd.oci.image.manifest.v1+json';
  let url: string;
  let routeToken: TokenName;
  let templates: string[];
  switch (c.route) {
    case 'upload':
      url = `/v1/repos/${REPO}/metadata/2.ci.json`;
      routeToken = 'ci';
      templates = [
        `{"signed":${S},"signatures":[]}`,
        `{"signatures":[],"signed":{"_type":"targets","spec_version":"1.0.31","version":2,"expires":"${expires}","targets":${S}}}`,
        `{"signatures":[{"keyid":"${h.ci.keyid}","sig":"00"}],"signed":{"_type":"targets","spec_version":"1.0.31","version":${S},"expires":"${expires}","targets":{}}}`,
      ];
      break;
    case 'create': {
      const repo = `wabbit-networks/fuzz-${++w.fresh}`;
      const both = await createBody(w, repo);
      url = `/v1/repos/${repo}`;
      routeToken = 'admin';
      templates = [`{"root":${S},"targets":${JSON.stringify(both.targets)}}`, `{"root":${JSON.stringify(both.root)},"targets":${S}}`, `{"root":${S},"targets":${S}}`];
      break;
    }
    case 'tags':
      url = `/v1/repos/${REPO}/tags`;
      routeToken = 'ci';
      templates = [
        `{"role":"release","tags":{"r1":${S}}}`,
        `{"role":${S},"tags":{"r1":{"digest":"${digest}","size":527,"mediaType":"${manifest}"}}}`,
        `{"role":"release","tags":{"r1":{"digest":"${digest}","size":${S},"mediaType":"${manifest}"}}}`,
      ];
      break;
    case 'grants':
      url = `/v1/repos/${REPO}/grants`;
      routeToken = 'ci';
      templates = [`{"paths":${S},"ttlSeconds":600,"role":"release"}`, `{"paths":["r1.*"],"ttlSeconds":${S},"role":"release"}`, `{"paths":["r1.*"],"ttlSeconds":600,"role":${S}}`];
      break;
    case 'redeem':
      url = `/v1/repos/${REPO}/grants/redeem`;
      routeToken = 'grant';
      templates = [`{"key":${S}}`, `{"key":{"keytype":"ed25519","scheme":"ed25519","keyval":{"public":${S}}}}`, `{"key":{"keytype":${S},"scheme":"ed25519","keyval":{"public":"00"}}}`];
      break;
    case 'revoke':
      url = '/v1/online-keys/revoke';
      routeToken = 'admin';
      templates = [`{"key":${S},"reason":"fuzz"}`, `{"set":${S}}`, `{"key":"00000000","reason":${S}}`];
      break;
  }
  const body = c.shape.kind === 'bytes' ? c.shape.bytes : utf8(hole === 0 ? S : (templates[hole - 1] as string));
  const headers: Record<string, string> = c.declaredLength === 'huge' ? { 'content-length': String(MAX_BODY * 64) } : {};
  return { method: c.route === 'upload' ? 'PUT' : 'POST', url, token: c.token === 'route' ? routeToken : c.token, contentType: c.contentType, body, headers };
}

// ------------------------------------------------------------------ routing, names, methods, tokens

const SAFE = /[A-Za-z0-9._~/-]/;

/** Percent-encode everything but unreserved characters and slashes (lone surrogates as U+FFFD). */
function encodePath(text: string): string {
  let out = '';
  for (const ch of text) out += SAFE.test(ch) ? ch : [...Buffer.from(ch, 'utf8')].map((b) => `%${b.toString(16).toUpperCase().padStart(2, '0')}`).join('');
  return out;
}

type Name = { kind: 'fixed'; text: string } | { kind: 'long'; length: number; char: string; prefix: string } | { kind: 'random'; text: string } | { kind: 'segments'; parts: string[] };

function nameText(n: Name): string {
  switch (n.kind) {
    case 'fixed':
      return n.text;
    case 'long':
      return n.prefix + n.char.repeat(n.length);
    case 'random':
      return encodePath(n.text);
    case 'segments':
      return n.parts.join('/');
  }
}

const name = (fixed: readonly string[]): fc.Arbitrary<Name> =>
  fc.oneof(
    { weight: 6, arbitrary: fc.record({ kind: fc.constant('fixed' as const), text: fc.constantFrom(...fixed) }) },
    {
      weight: 2,
      arbitrary: fc.record({ kind: fc.constant('long' as const), length: fc.constantFrom(129, 256, 1_100, 60_000), char: fc.constantFrom('a', '%2F', 'é', '../'), prefix: fc.constantFrom('', 'wabbit-networks/') }),
    },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('random' as const), text: fc.string({ unit: 'binary', maxLength: 40 }) }) },
    {
      weight: 2,
      arbitrary: fc.record({
        kind: fc.constant('segments' as const),
        parts: fc.array(fc.constantFrom('wabbit-networks', 'net-monitor', 'a', 'b0', '..', '.', '', 'x_y', 'x__y', 'x--y', '-x', 'x.', 'UP', 'tuf', '%2e%2e', 'metadata'), { minLength: 1, maxLength: 6 }),
      }),
    },
  );

const REPOSITORIES = [
  REPO,
  'wabbit-networks/other',
  'acme-rockets/app',
  'wabbit-networks',
  `${REPO}/tuf`,
  '../../etc',
  '..',
  'wabbit-networks/../acme-rockets/app',
  'Wabbit-Networks/Net-Monitor',
  'wabbit-networks//net-monitor',
  `${REPO}/`,
  '%2e%2e/%2e%2e',
  'wabbit-networks%2Fnet-monitor',
  'wabbit-networks%2fnet-monitor%2f..%2f..%2facme-rockets',
  'wabbit-networks/net%E0%A4%A',
  'wabbit-networks/%',
  'wabbit-networks/%00',
  'wabbit-networks/n%C3%A9t',
  'wabbit-networks/net%20monitor',
  'wabbit-networks/net-monitor%0A',
  '%F0%9F%98%80',
  '%ED%A0%80',
];

const FILES = [
  'timestamp.json',
  '1.root.json',
  '2.root.json',
  '1.targets.json',
  '2.targets.json',
  '3.targets.json',
  '1.ci.json',
  '2.ci.json',
  '1.snapshot.json',
  '3.snapshot.json',
  '0.root.json',
  '01.root.json',
  '-1.root.json',
  '1.timestamp.json',
  'root.json',
  '1..json',
  '1.json',
  '.json',
  '99999999999999999.root.json',
  '9007199254740993.root.json',
  '1.ROOT.json',
  '1.root.JSON',
  '1.root.json.',
  '..',
  '%2e%2e',
  '..%2F1.root.json',
  '1.r%C3%B6le.json',
  `1.${'r'.repeat(130)}.json`,
];

const SUFFIXES = ['/metadata/', '/status', '/tags', '/grants', '/grants/redeem', '/online-keys', '', '/metadata', '/status/x', '/metadata/timestamp.json/'];

const FIXED_PATHS = [
  '/',
  '/healthz',
  '/readyz',
  '/metrics',
  '/v1',
  '/v1/repos',
  '/v1/repos/',
  '/v1/online-keys',
  '/v1/online-keys?repository=wabbit-networks/net-monitor',
  '/v1/online-keys?repository=Bad..Name',
  '/v1/online-keys?repository=a&repository=b',
  '/v1/online-keys?repository=%E0',
  '/v1/online-keys/usage',
  '/v1/online-keys/rotate',
  '/v1/online-keys/revoke',
  '/v2/',
  '//v1/repos/wabbit-networks/net-monitor/status',
  '/v1//repos/wabbit-networks/net-monitor/status',
  '/V1/REPOS/wabbit-networks/net-monitor/status',
  '/v1/repos/wabbit-networks/net-monitor/metadata/timestamp.json?x=1',
  '/v1/repos/wabbit-networks/net-monitor/metadata/timestamp.json#frag',
  '/v1/repos/wabbit-networks/net-monitor/metadata/timestamp.json%00',
];

type Path = { kind: 'repo'; repo: Name; suffix: string; file: Name | null } | { kind: 'fixed'; path: string } | { kind: 'web'; path: string };

interface RouteCase {
  method: string;
  path: Path;
  token: TokenName;
  privateRead: boolean;
  contentType: ContentType;
  body: { kind: 'none' } | { kind: 'bytes'; bytes: Uint8Array } | { kind: 'json'; text: string };
  requestId: string | null;
  ifNoneMatch: string | null;
}

/** Header values node:http lets through (tab, visible ASCII, obs-text). */
const headerValue = fc.string({ unit: fc.oneof(fc.constantFrom('\t', ' '), fc.integer({ min: 0x21, max: 0x7e }).map((c) => String.fromCharCode(c)), fc.integer({ min: 0x80, max: 0xff }).map((c) => String.fromCharCode(c))), maxLength: 100 });

const routeCase: fc.Arbitrary<RouteCase> = fc.record({
  method: fc.oneof({ weight: 6, arbitrary: fc.constantFrom('GET', 'HEAD', 'POST', 'PUT') }, { weight: 2, arbitrary: fc.constantFrom('DELETE', 'PATCH', 'OPTIONS', 'PROPFIND', 'PURGE', 'TRACE', 'LINK', 'QUERY') }),
  path: fc.oneof(
    {
      weight: 6,
      arbitrary: fc.record({
        kind: fc.constant('repo' as const),
        repo: name(REPOSITORIES),
        suffix: fc.oneof({ weight: 3, arbitrary: fc.constant('/metadata/') }, { weight: 2, arbitrary: fc.constantFrom(...SUFFIXES) }),
        file: fc.option(name(FILES), { freq: 4, nil: null }),
      }),
    },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('fixed' as const), path: fc.constantFrom(...FIXED_PATHS) }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('web' as const), path: fc.webPath({ size: '+1' }) }) },
  ),
  token: token({ none: 3, ci: 3, admin: 2 }),
  privateRead: fc.boolean(),
  contentType: contentType(4),
  body: fc.oneof(
    fc.record({ kind: fc.constant('none' as const) }),
    fc.record({ kind: fc.constant('bytes' as const), bytes: fc.uint8Array({ maxLength: 256 }) }),
    fc.record({ kind: fc.constant('json' as const), text: fc.oneof(fc.json({ maxDepth: 3 }), fc.constantFrom('{}', '[]', '{"key":"00000000"}', '{"paths":["v1.*"]}')) }),
  ),
  requestId: fc.option(headerValue, { nil: null }),
  ifNoneMatch: fc.option(fc.oneof(headerValue, fc.constant('*')), { nil: null }),
});

function routeUrl(p: Path): string {
  switch (p.kind) {
    case 'fixed':
      return p.path;
    case 'web':
      return p.path.startsWith('/') ? p.path : `/${p.path}`;
    case 'repo':
      return `/v1/repos/${nameText(p.repo)}${p.file !== null && p.suffix === '/metadata/' ? `/metadata/${nameText(p.file)}` : p.suffix}`;
  }
}

function safeDecode(text: string): string | undefined {
  try {
    return decodeURIComponent(text);
  } catch {
    return undefined;
  }
}

/** What may answer 2xx: reads, OPTIONS, and the operator routes that change no repository. */
function routeExpectation(w: World, c: RouteCase): Expect {
  const read = c.method === 'GET' || c.method === 'HEAD';
  if (c.path.kind === 'repo' && read && c.path.suffix === '/metadata/' && c.path.file !== null) {
    const repo = safeDecode(nameText(c.path.repo));
    const file = nameText(c.path.file);
    if (repo === REPO && w.stored.has(file) && c.ifNoneMatch === null) return canRead(c.token, REPO, c.privateRead) ? 'ok' : 'refuse';
    if (repo === REPO && c.privateRead && !canRead(c.token, REPO, true)) return 'refuse';
  }
  if (read || c.method === 'OPTIONS') return 'any';
  const url = routeUrl(c.path);
  if (c.method === 'POST' && /\/online-keys$/.test(url) && url.startsWith('/v1/repos/')) return 'any'; // keys for the next root: no repository changes
  if (c.method === 'POST' && (url === '/v1/online-keys/rotate' || url === '/v1/online-keys/revoke') && c.token === 'admin') return 'any';
  return 'refuse';
}

function buildRoute(c: RouteCase): Request {
  const headers: Record<string, string> = {};
  if (c.requestId !== null) headers['x-request-id'] = c.requestId;
  if (c.ifNoneMatch !== null) headers['if-none-match'] = c.ifNoneMatch;
  const body = c.body.kind === 'none' ? undefined : c.body.kind === 'bytes' ? c.body.bytes : utf8(c.body.text);
  return {
    method: c.method,
    url: routeUrl(c.path),
    token: c.token,
    privateRead: c.privateRead,
    headers,
    ...(body !== undefined ? { body, contentType: c.contentType } : {}),
  };
}

// ------------------------------------------------------------------ the tests

describe('HTTP API fuzz', () => {
  it('the unmutated uploads are accepted, and serialization and re-signing reproduce them byte for byte', async () => {
    const w = await makeWorld();
    for (const role of ['ci', 'targets', 'root'] as const) {
      const next = w.next[role];
      const copy = structuredClone(next.doc);
      await resign(copy, next.signers);
      expect(emit(copy as Json)).toBe(emit(next.doc as Json));
      const r = await w.h.request('PUT', `/v1/repos/${REPO}/metadata/${next.fileName}`, { token: ADMIN, body: emit(next.doc as Json) });
      expect(r.status, r.body.toString()).toBe(201);
    }
    const fresh = 'wabbit-networks/fuzz-control';
    const r = await w.h.request('POST', `/v1/repos/${fresh}`, { token: CI, body: emit((await createBody(w, fresh)) as unknown as Json) });
    expect(r.status, r.body.toString()).toBe(201);
    // The impossible days lie inside every role's expiry window: refused by the calendar, not by the window.
    for (const date of [w.impossible.hour24, w.impossible.second60, w.impossible.day31, w.impossible.feb30, w.impossible.feb29]) {
      const [y, m, d] = date.slice(0, 10).split('-').map(Number) as [number, number, number];
      const valid = Date.UTC(y, m - 1, Math.min(d, 28));
      expect(valid - w.h.now).toBeGreaterThan(0);
      expect(valid - w.h.now).toBeLessThan(365 * DAY);
    }
  });

  it('signed uploads with one thing changed, identical retries and reads', { timeout: TIME_LIMIT_MS * 4 + 30_000 }, async () => {
    await fuzz(fc.oneof({ weight: 9, arbitrary: uploadCase as fc.Arbitrary<UploadCase | ReadCase> }, { weight: 1, arbitrary: readCase }), 6_000, async (w, c) => {
      if (c.kind === 'upload') {
        const req = await buildUpload(w, c);
        return check(w, req, uploadExpectation(w, req));
      }
      const stored = w.stored.get(c.file);
      if (c.kind === 'get') {
        if (!stored) return check(w, { method: 'GET', url: `/v1/repos/${REPO}/metadata/${c.file}`, token: c.token }, 'any');
        return check(w, { method: 'GET', url: `/v1/repos/${REPO}/metadata/${c.file}`, token: c.token }, 'ok', (r) =>
          Buffer.compare(r.body, Buffer.from(stored)) === 0 ? [] : ['served bytes differ from the stored file'],
        );
      }
      if (!stored || c.file === 'timestamp.json' || c.file.endsWith('.snapshot.json')) return; // not uploadable
      const valid = canWrite(c.token, REPO) && jsonContentType(c.contentType);
      return check(w, { method: 'PUT', url: `/v1/repos/${REPO}/metadata/${c.file}`, token: c.token, contentType: c.contentType, body: stored }, valid ? 'ok' : 'refuse', (r) =>
        valid && r.json<{ unchanged?: boolean }>().unchanged !== true ? ['an identical retry was not answered "unchanged"'] : [],
      );
    });
  });

  it('hostile bodies: deep nesting, huge numbers, long strings, duplicate names, random bytes and JSON, sizes at the limits', { timeout: TIME_LIMIT_MS * 4 + 30_000 }, async () => {
    await fuzz(shapeCase, 3_000, async (w, c) => check(w, await buildShape(w, c), 'refuse'));
  });

  it('methods, paths, names, tokens and headers', { timeout: TIME_LIMIT_MS * 4 + 30_000 }, async () => {
    await fuzz(routeCase, 10_000, async (w, c) => check(w, buildRoute(c), routeExpectation(w, c)));
  });
});
