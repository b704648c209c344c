/**
 * Hostile-upload benchmark:
 *
 *   npm run bench:hostile        (PATH=$PWD/node_modules/.bin:$PATH node bench/hostile.bench.ts)
 *
 * What a client holding nothing but a write token for one repository (`write:hostile/*`), or no
 * token at all, can make the service spend. Every shape below is sent with the write token and
 * again without a token (every route that takes a body needs one: those rows show what is spent
 * before the refusal, i.e. whether the body is parsed before the caller is known). Shapes:
 *
 *   deleg-10k / deleg-fit  PUT 99.targets.json with 10,000 delegations (above the targets role's
 *                          maxBytes: refused from its Content-Length) / as many as fit under it, each with its own
 *                          key and path, junk signature
 *   targets-100k           PUT 99.targets.json with 100,000+ minimal targets, up to the targets
 *                          role's maxBytes, junk signature
 *   deep-array-create      POST /v1/repos/<repo> (creation) with a 200,000-deep JSON array
 *   deep-object-create     POST /v1/repos/<repo> with a 100,000-deep object inside "root"
 *   deep-object-metadata   PUT 99.targets.json with a 100,000-deep object inside a target
 *   dup-version            PUT 1.dupver.json with "version": 2, "version": 1    ┐ signed by a key the
 *   float-version          PUT 1.floatver.json with "version": 1.0              │ role delegates to
 *   exp-length             PUT 1.explen.json with a target "length": 3.97e2     │ (fixtures/keys/ci):
 *   bad-date               PUT 1.baddate.json expiring on an impossible date    ┘ valid but for the quirk
 *   sigs-5k                PUT 99.targets.json (one target) with 5,000 signature entries
 *   sigs-root-2k           PUT 2.root.json with 2,000 signature entries
 *   over-limit             PUT 99.targets.json one byte over the request-body limit (Content-Length)
 *   over-limit-chunked     the same, chunked (no Content-Length)
 *   cl-lie-stall           raw socket: Content-Length 1 MiB, 64 KiB sent, then nothing
 *   cl-lie-short           raw socket: Content-Length 100, 2 MiB sent
 *
 * The four signed shapes upload version 1 of their own delegated role, so an upload the service
 * accepts (a reader built on JSON.parse and Date.parse takes the last duplicate key, 1.0 as 1,
 * 3.97e2 as 397, and rolls 30 February over into March) changes nothing the other rows depend on;
 * its repeats are answered 200 "unchanged". Such a row shows 201/200 and counts as FAIL.
 *
 * (a) CPU per refusal. The service runs in this process (startServer: embedded OCI layout,
 *     in-process coordination) and each request goes over loopback with a keep-alive node:http
 *     client. A sample is process.cpuUsage() (user + system, all threads) from just before the
 *     hostile request until a GET /healthz sent right after it on the same keep-alive agent has
 *     answered — the server reads the rest of an unread body before it can answer that, so work
 *     done after the refusal is counted — minus the median cost of that GET /healthz alone (the
 *     baseline, measured first). The figure therefore includes the client's side of the exchange
 *     (writing the body to the socket, reading the answer): small next to parsing, but most of
 *     the 32 MiB rows; the no-token row of the same body bounds that transport share from above
 *     (it includes the server draining the unread body). Raw-socket rows count the CPU from
 *     connect to the end of the exchange. One warm-up request per row, then up to BENCH_RUNS
 *     samples or BENCH_ROW_SECONDS of wall time per row, whichever ends first (at least one); a
 *     warm-up slower than BENCH_ROW_SECONDS is the row's only sample ("cold"). A request the
 *     service handles synchronously cannot be timed out in process: its timeout is noticed when
 *     it returns, and the row shows "timeout".
 *     Goal: p99 ≤ 100 ms of CPU and a 4xx answer with a JSON error code (PASS/FAIL per row;
 *     with fewer than 100 samples p99 is the maximum). cl-lie-short breaks the HTTP framing, so
 *     there node:http's plain 400 and a closed connection are the expected answer.
 *     cl-lie-stall opens BENCH_RUNS such connections at once and waits BENCH_STALL_MS: PASS needs
 *     an answer before then (the server bounds the read: the in-process service runs with a body
 *     deadline of BENCH_BODY_TIMEOUT_MS, default 2 s, instead of its 30 s default); "held" says
 *     the server kept the connection open until the bench closed it.
 * (b) /healthz latency under hostile load, once per child configuration (CHILD_CONFIGS: Node's
 *     defaults, and the Dockerfile's command). `tufoci serve` runs as a child process (its own data
 *     dir and tokens) so its event loop is not the measuring client's; a worker thread probes
 *     GET /healthz every BENCH_PROBE_INTERVAL_MS over its own keep-alive connection, first for
 *     BENCH_IDLE_SECONDS with no other traffic, then for BENCH_HEALTH_SECONDS while
 *     BENCH_HOSTILE_LOOPS loops post the HTTP shapes above (with the write token) back to back.
 *     Goal: p99 ≤ 10 ms under load. A probe that times out counts at its timeout.
 *
 * Every request has a timeout (BENCH_REQUEST_TIMEOUT_MS); every loop is bounded by count and
 * time; the child is stopped by PID in `finally`, on SIGINT/SIGTERM and (SIGKILL) at exit. The
 * bench exits 0 when it measured everything, whatever the verdicts; non-zero on a set-up failure.
 *
 * Environment (all optional):
 *   BENCH_RUNS=10               samples per row in (a)       BENCH_ROW_SECONDS=6   wall budget per row
 *   BENCH_REQUEST_TIMEOUT_MS=30000                           BENCH_STALL_MS=5000   cl-lie-stall wait
 *   BENCH_HEALTH_SECONDS=10     (b) under load               BENCH_IDLE_SECONDS=3  (b) idle reference
 *   BENCH_HOSTILE_LOOPS=2       (b) concurrent hostile loops BENCH_PROBE_INTERVAL_MS=5
 *   BENCH_PARTS=a,b             which parts to run
 *   BENCH_SHAPES=id,…           only these shapes (ids as printed), in both parts
 *   BENCH_CHILD_NODE_ARGS       node flags of the (b) child, space-separated (--trace-gc, --cpu-prof)
 *   BENCH_CHILD_LOG=path        keep the (b) child's output there (the last configuration's)
 *   BENCH_CHILD_CONFIGS=defaults,deployed   which child configurations (b) runs
 */
import { createPrivateKey, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { copyFile, mkdtemp, rm } from 'node:fs/promises';
import { Agent, request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { connect } from 'node:net';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { pino } from 'pino';
import type { Root } from '@tufjs/models';
import { SPEC_VERSION, buildRoot, buildTargets, isoExpiry, signMetadata, type ImageTarget } from '../src/engine/index.ts';
import { signedToJSON } from '../src/engine/models.ts';
import { InMemorySigner, computeKeyId, type TufKeyJson } from '../src/keys/index.ts';
import { startServer, type RunningServer } from '../src/main.ts';
import { loadPolicyFile, defaultPolicyPath, type Policy } from '../src/policy/policy.ts';
import { ADMIN_TOKEN, REPO_ROOT, assertNode24, envInt, imageFor, onlineKeys, startTufoci, type Tufoci } from './service-read.bench.ts';
import { machine, median, percentile, processCpuSeconds } from './stats.ts';

const RUNS = envInt('BENCH_RUNS', 10);
const ROW_SECONDS = envInt('BENCH_ROW_SECONDS', 6);
const REQUEST_TIMEOUT_MS = envInt('BENCH_REQUEST_TIMEOUT_MS', 30_000);
const STALL_MS = envInt('BENCH_STALL_MS', 5_000);
/** The service's body deadline here (its default is 30 s), shorter than STALL_MS so cl-lie-stall sees it act. */
const BODY_TIMEOUT_MS = envInt('BENCH_BODY_TIMEOUT_MS', 2_000);
const HEALTH_SECONDS = envInt('BENCH_HEALTH_SECONDS', 10);
const IDLE_SECONDS = envInt('BENCH_IDLE_SECONDS', 3);
const LOOPS = envInt('BENCH_HOSTILE_LOOPS', 2);
const PROBE_INTERVAL_MS = envInt('BENCH_PROBE_INTERVAL_MS', 5, { allowZero: true });
const PARTS = new Set((process.env['BENCH_PARTS'] ?? 'a,b').split(',').map((s) => s.trim()));
const CHILD_NODE_ARGS = (process.env['BENCH_CHILD_NODE_ARGS'] ?? '').split(' ').filter(Boolean);
/**
 * The child configurations (b) runs, one after the other: Node's defaults, and the way the
 * Dockerfile and docker-compose.yml start the service (docs/OPERATIONS.md: a larger first
 * old-generation limit, so that reading hostile bodies does not trigger a mark-compact every
 * 10–20 MB). BENCH_CHILD_CONFIGS=defaults|deployed picks one.
 */
const CHILD_CONFIGS = [
  { name: 'node defaults', id: 'defaults', nodeArgs: CHILD_NODE_ARGS },
  { name: 'as deployed (--initial-old-space-size=256)', id: 'deployed', nodeArgs: ['--initial-old-space-size=256', ...CHILD_NODE_ARGS] },
].filter((c) => !process.env['BENCH_CHILD_CONFIGS'] || process.env['BENCH_CHILD_CONFIGS'].split(',').includes(c.id));
const ONLY = process.env['BENCH_SHAPES'] ? new Set(process.env['BENCH_SHAPES'].split(',').map((s) => s.trim())) : undefined;

const CPU_GOAL_MS = 100;
const HEALTH_GOAL_MS = 10;
const REPO = 'hostile/net-monitor';
/** A repository the write token may create (creation shapes never get that far). */
const NEW_REPO = 'hostile/created-by-upload';
const WRITE_TOKEN = 'bench-write-token-hostile-0123456789';
const TOKENS = JSON.stringify([
  { name: 'admin', token: ADMIN_TOKEN, scopes: ['admin'] },
  { name: 'attacker', token: WRITE_TOKEN, scopes: ['write:hostile/*'] },
]);
/** Delegated roles the signed shapes upload version 1 of (all delegated to fixtures/keys/ci). */
const SIGNED_ROLES = { dupver: 'dv*', floatver: 'fv*', explen: 'fl*', baddate: 'bd*' } as const;

// ------------------------------------------------------------------ keys and metadata

/** A TEST key from fixtures/keys (the files carry a comment line before the PEM). */
function fixtureSigner(name: string): InMemorySigner {
  const text = readFileSync(join(REPO_ROOT, 'fixtures', 'keys', `${name}.key`), 'utf8');
  return new InMemorySigner(createPrivateKey(text.slice(text.indexOf('-----BEGIN'))));
}

interface Keys {
  root: InMemorySigner;
  targets: InMemorySigner;
  ci: InMemorySigner;
}

function loadKeys(): Keys {
  return { root: fixtureSigner('root-1'), targets: fixtureSigner('targets'), ci: fixtureSigner('ci') };
}

const DAY = 86_400_000;
const junkSig = (keyid: string): { keyid: string; sig: string } => ({ keyid, sig: '00'.repeat(64) });
const randomKeyId = (): string => randomBytes(32).toString('hex');

function rootSigned(version: number, keys: Keys, online: { snapshot: TufKeyJson[]; timestamp: TufKeyJson[] }, now: number): Root {
  return buildRoot({
    version,
    expires: isoExpiry(now + 365 * DAY),
    root: { keys: [keys.root.public], threshold: 1 },
    targets: { keys: [keys.targets.public], threshold: 1 },
    snapshot: { keys: online.snapshot, threshold: 1 },
    timestamp: { keys: online.timestamp, threshold: 1 },
    scope: REPO,
  });
}

/** Create REPO on the service at `url`: root and targets signed with the fixture keys. */
async function setupRepository(url: string, keys: Keys, now: number): Promise<void> {
  const online = await onlineKeys(url, REPO);
  const root = await signMetadata(rootSigned(1, keys, online, now), [keys.root]);
  const delegations = [
    { name: 'ci', keys: [keys.ci.public], threshold: 1, paths: ['v*'], terminating: true },
    ...Object.entries(SIGNED_ROLES).map(([name, path]) => ({ name, keys: [keys.ci.public], threshold: 1, paths: [path] })),
  ];
  const targets = await signMetadata(buildTargets({ version: 1, expires: isoExpiry(now + 90 * DAY), delegations }), [keys.targets]);
  const dec = new TextDecoder();
  const r = await fetch(`${url}/v1/repos/${REPO}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
    body: `{"root":${dec.decode(root)},"targets":${dec.decode(targets)}}`,
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  });
  const text = await r.text();
  if (r.status !== 201 && r.status !== 200) throw new Error(`creating ${REPO}: HTTP ${r.status} ${text.slice(0, 300)}`);
}

/** The first impossible calendar date (30 Feb, 31 Apr/Jun/Sep/Nov) at least 2 days ahead. */
function impossibleDate(now: number): string {
  const days = { '02': 30, '04': 31, '06': 31, '09': 31, '11': 31 } as const;
  for (let year = new Date(now).getUTCFullYear(); ; year++) {
    for (const [month, day] of Object.entries(days)) {
      const rolled = Date.UTC(year, Number(month) - 1, day); // Date.UTC rolls it over into the next month
      if (rolled > now + 2 * DAY) return `${year}-${month}-${day}T00:00:00Z`;
    }
  }
}

function envelope(signed: unknown, signatures: unknown[]): Buffer {
  return Buffer.from(JSON.stringify({ signed, signatures }));
}

function targetsSigned(version: number, expires: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { _type: 'targets', spec_version: SPEC_VERSION, version, expires, targets: {}, ...extra };
}

function manyDelegations(n: number, expires: string, keys: Keys): Buffer {
  const dkeys: Record<string, TufKeyJson> = {};
  const roles: unknown[] = [];
  for (let i = 0; i < n; i++) {
    const key: TufKeyJson = { keytype: 'ed25519', scheme: 'ed25519', keyval: { public: randomBytes(32).toString('hex') } };
    const id = computeKeyId(key);
    dkeys[id] = key;
    roles.push({ name: `r${i}`, keyids: [id], threshold: 1, terminating: false, paths: [`r${i}-*`] });
  }
  return envelope(targetsSigned(99, expires, { delegations: { keys: dkeys, roles } }), [junkSig(keys.targets.keyid)]);
}

/** As many minimal targets (`{"hashes":{},"length":0}`) as fit in `maxBytes` less 4 KiB. */
function manyTargets(maxBytes: number, expires: string, keys: Keys): { body: Buffer; count: number } {
  const head = JSON.stringify({ signatures: [junkSig(keys.targets.keyid)], signed: targetsSigned(99, expires) }).replace(/"targets":\{\}.*$/, '"targets":{');
  const parts: string[] = [];
  let size = head.length + 3;
  for (let i = 0; ; i++) {
    const entry = `${i ? ',' : ''}"t${i.toString(36)}":{"hashes":{},"length":0}`;
    if (size + entry.length > maxBytes - 4096) break;
    parts.push(entry);
    size += entry.length;
  }
  return { body: Buffer.from(`${head}${parts.join('')}}}}`), count: parts.length };
}

function deepObject(depth: number): string {
  return `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`;
}

/** Version 1 of `role` listing one tag, signed by the fixture CI key; `edit` rewrites the file text. */
async function signedRole(role: keyof typeof SIGNED_ROLES, keys: Keys, expires: string, tag: string, target: ImageTarget, edit?: (text: string) => string): Promise<Buffer> {
  const bytes = await signMetadata(buildTargets({ version: 1, expires, targets: { [tag]: target } }), [keys.ci]);
  const text = new TextDecoder().decode(bytes);
  if (!edit) return Buffer.from(text);
  const edited = edit(text);
  if (edited === text) throw new Error(`the ${role} shape did not change the signed file`);
  return Buffer.from(edited);
}

// ------------------------------------------------------------------ shapes

type Kind = 'http' | 'chunked' | 'stall' | 'short';

interface Shape {
  id: string;
  what: string;
  method: 'PUT' | 'POST';
  path: string;
  body: Buffer;
  kind: Kind;
}

async function buildShapes(keys: Keys, policy: Policy, maxBody: number, now: number): Promise<Shape[]> {
  const expires = isoExpiry(now + 30 * DAY);
  const meta = (file: string): string => `/v1/repos/${REPO}/metadata/${file}`;
  const shapes: Shape[] = [];
  const add = (s: Omit<Shape, 'kind'> & { kind?: Kind }): void => {
    shapes.push({ kind: 'http', ...s });
  };

  const deleg10k = manyDelegations(10_000, expires, keys);
  add({ id: 'deleg-10k', what: '10,000 delegations, junk sig', method: 'PUT', path: meta('99.targets.json'), body: deleg10k });
  // As many as fit under the role's size bound, so the count is what refuses them.
  let fit = 5_000;
  let delegFit = manyDelegations(fit, expires, keys);
  while (delegFit.byteLength > policy.roles.targets.maxBytes - 4096) delegFit = manyDelegations((fit = Math.floor(fit * 0.9)), expires, keys);
  add({ id: 'deleg-fit', what: `${fit.toLocaleString('en')} delegations, junk sig`, method: 'PUT', path: meta('99.targets.json'), body: delegFit });
  const many = manyTargets(policy.roles.targets.maxBytes, expires, keys);
  add({ id: 'targets-100k', what: `${many.count.toLocaleString('en')} targets, junk sig`, method: 'PUT', path: meta('99.targets.json'), body: many.body });

  const deepArray = Buffer.from(`${'['.repeat(200_000)}${']'.repeat(200_000)}`);
  add({ id: 'deep-array-create', what: 'create: 200,000-deep array', method: 'POST', path: `/v1/repos/${NEW_REPO}`, body: deepArray });
  const deepRoot = `{"signed":{"_type":"root","x":${deepObject(100_000)}},"signatures":[]}`;
  add({ id: 'deep-object-create', what: 'create: 100,000-deep object in root', method: 'POST', path: `/v1/repos/${NEW_REPO}`, body: Buffer.from(`{"root":${deepRoot},"targets":{}}`) });
  const deepTarget = envelope(targetsSigned(99, expires, { targets: { t1: { hashes: {}, length: 0, custom: { x: 0 } } } }), [junkSig(keys.targets.keyid)]).toString();
  add({
    id: 'deep-object-metadata',
    what: '100,000-deep object in a target',
    method: 'PUT',
    path: meta('99.targets.json'),
    body: Buffer.from(deepTarget.replace('"custom":{"x":0}', `"custom":{"x":${deepObject(100_000)}}`)),
  });

  const date = impossibleDate(now);
  add({
    id: 'dup-version',
    what: '"version":2,"version":1 (signed)',
    method: 'PUT',
    path: meta('1.dupver.json'),
    body: await signedRole('dupver', keys, expires, 'dv1', imageFor('dv1'), (t) => t.replace(/"version":1(?=[,}])/, '"version":2,"version":1')),
  });
  add({
    id: 'float-version',
    what: '"version":1.0 (signed)',
    method: 'PUT',
    path: meta('1.floatver.json'),
    body: await signedRole('floatver', keys, expires, 'fv1', imageFor('fv1'), (t) => t.replace(/"version":1(?=[,}])/, '"version":1.0')),
  });
  add({
    id: 'exp-length',
    what: 'target "length":3.97e2 (signed)',
    method: 'PUT',
    path: meta('1.explen.json'),
    body: await signedRole('explen', keys, expires, 'fl1', { ...imageFor('fl1'), size: 397 }, (t) => t.replace('"length":397', '"length":3.97e2')),
  });
  add({
    id: 'bad-date',
    what: `expires ${date} (signed)`,
    method: 'PUT',
    path: meta('1.baddate.json'),
    body: await signedRole('baddate', keys, date, 'bd1', imageFor('bd1')),
  });

  const oneTarget = targetsSigned(99, expires, { targets: { v1: { hashes: { sha256: 'ab'.repeat(32) }, length: 1 } } });
  const sigs = (n: number, trusted: string): unknown[] => [junkSig(trusted), ...Array.from({ length: n - 1 }, () => junkSig(randomKeyId()))];
  add({ id: 'sigs-5k', what: '5,000 signatures, small role', method: 'PUT', path: meta('99.targets.json'), body: envelope(oneTarget, sigs(5_000, keys.targets.keyid)) });
  const root2 = signedToJSON(rootSigned(2, keys, { snapshot: [keys.ci.public], timestamp: [keys.ci.public] }, now));
  add({ id: 'sigs-root-2k', what: '2,000 signatures on root', method: 'PUT', path: meta('2.root.json'), body: envelope(root2, sigs(2_000, keys.root.keyid)) });

  const over = Buffer.alloc(maxBody + 1, 0x20);
  over[0] = 0x7b; // "{" then spaces: JSON that never ends
  add({ id: 'over-limit', what: `${maxBody + 1} B, Content-Length`, method: 'PUT', path: meta('99.targets.json'), body: over });
  add({ id: 'over-limit-chunked', what: `${maxBody + 1} B, chunked`, method: 'PUT', path: meta('99.targets.json'), body: over, kind: 'chunked' });
  add({ id: 'cl-lie-stall', what: 'Content-Length 1 MiB, 64 KiB sent, stall', method: 'PUT', path: meta('99.targets.json'), body: deleg10k.subarray(0, 64 * 1024), kind: 'stall' });
  add({ id: 'cl-lie-short', what: 'Content-Length 100, 2 MiB sent', method: 'PUT', path: meta('99.targets.json'), body: deleg10k.subarray(0, 2 * 1024 * 1024), kind: 'short' });
  if (ONLY) {
    const unknown = [...ONLY].filter((id) => !shapes.some((s) => s.id === id));
    if (unknown.length > 0) throw new Error(`BENCH_SHAPES names unknown shapes: ${unknown.join(', ')}`);
    return shapes.filter((s) => ONLY.has(s.id));
  }
  return shapes;
}

// ------------------------------------------------------------------ client

interface Outcome {
  /** HTTP status, or what happened instead. */
  status: number | 'reset' | 'timeout' | 'no answer' | 'closed';
  code?: string;
  ms: number;
  /** Raw-socket shapes: the server kept the connection open until the bench closed it. */
  held?: boolean;
}

function label(o: Outcome): string {
  return typeof o.status === 'number' ? `${o.status}${o.code ? ` ${o.code}` : ''}` : o.status;
}

function errorCode(text: string): string | undefined {
  return /"code"\s*:\s*"([A-Za-z0-9_]{1,60})"/.exec(text)?.[1];
}

/** One HTTP request on `agent`; never rejects, settles within `timeoutMs`. */
function send(base: URL, agent: Agent, method: string, path: string, opts: { token?: string; body?: Buffer; chunked?: boolean; timeoutMs?: number } = {}): Promise<Outcome> {
  const t0 = performance.now();
  const timeoutMs = opts.timeoutMs ?? REQUEST_TIMEOUT_MS;
  return new Promise<Outcome>((resolve) => {
    let done = false;
    const finish = (o: Omit<Outcome, 'ms'>): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve({ ...o, ms: performance.now() - t0 });
    };
    const headers: IncomingHttpHeaders & Record<string, string> = {};
    if (opts.token) headers['authorization'] = `Bearer ${opts.token}`;
    if (opts.body) {
      headers['content-type'] = 'application/json';
      if (!opts.chunked) headers['content-length'] = String(opts.body.byteLength);
    }
    const req = httpRequest({ host: base.hostname, port: base.port, method, path, headers, agent }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        if (text.length < 65_536) text += c;
      });
      res.on('end', () => finish({ status: res.statusCode ?? 0, ...(errorCode(text) ? { code: errorCode(text) as string } : {}) }));
      res.on('error', () => finish({ status: res.statusCode ?? 0, ...(errorCode(text) ? { code: errorCode(text) as string } : {}) }));
    });
    const timer = setTimeout(() => {
      finish({ status: 'timeout' });
      req.destroy();
    }, timeoutMs);
    req.on('error', () => finish({ status: 'reset' }));
    if (!opts.body) req.end();
    else if (!opts.chunked) req.end(opts.body);
    else {
      for (let i = 0; i < opts.body.byteLength; i += 64 * 1024) req.write(opts.body.subarray(i, i + 64 * 1024));
      req.end();
    }
  });
}

/**
 * A request whose Content-Length does not match what is sent, over a raw socket: `head` and
 * `body` are written, the socket stays open (no half-close) until the server closes it or
 * `capMs` passes. The outcome is the server's first answer, if any.
 */
function rawExchange(base: URL, shape: Shape, token: string | undefined, declared: number, capMs: number): Promise<Outcome> {
  const t0 = performance.now();
  return new Promise<Outcome>((resolve) => {
    const socket = connect(Number(base.port), base.hostname);
    let text = '';
    let answeredMs: number | undefined;
    let closedByServer = false;
    let done = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      const status = /^HTTP\/1\.[01] (\d{3})/.exec(text)?.[1];
      resolve({
        status: status ? Number(status) : closedByServer ? 'closed' : 'no answer',
        ...(errorCode(text) ? { code: errorCode(text) as string } : {}),
        ms: answeredMs ?? performance.now() - t0,
        held: !closedByServer,
      });
    };
    const timer = setTimeout(finish, capMs);
    socket.setEncoding('latin1');
    socket.on('data', (c: string) => {
      answeredMs ??= performance.now() - t0;
      if (text.length < 65_536) text += c;
    });
    socket.on('error', () => undefined); // EPIPE/ECONNRESET once the server gives up: 'close' follows
    socket.on('close', () => {
      closedByServer = !done;
      finish();
    });
    socket.on('connect', () => {
      const head = [
        `${shape.method} ${shape.path} HTTP/1.1`,
        `Host: ${base.host}`,
        'Content-Type: application/json',
        `Content-Length: ${declared}`,
        ...(token ? [`Authorization: Bearer ${token}`] : []),
        '',
        '',
      ].join('\r\n');
      socket.write(head);
      socket.write(shape.body);
    });
  });
}

function sendShape(base: URL, agent: Agent, shape: Shape, token: string | undefined, timeoutMs = REQUEST_TIMEOUT_MS): Promise<Outcome> {
  switch (shape.kind) {
    case 'stall':
      return rawExchange(base, shape, token, 1024 * 1024, Math.min(STALL_MS, timeoutMs));
    case 'short':
      return rawExchange(base, shape, token, 100, timeoutMs);
    default:
      return send(base, agent, shape.method, shape.path, { body: shape.body, ...(token ? { token } : {}), chunked: shape.kind === 'chunked', timeoutMs });
  }
}

// ------------------------------------------------------------------ (a) CPU per refusal, in process

interface Row {
  shape: Shape;
  token: 'write' | 'none';
  cpuMs: number[];
  wallMs: number[];
  outcomes: Outcome[];
  /** The first request took longer than the row's budget and is its only sample (no warm-up). */
  cold?: boolean;
}

const cpuNow = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

function summarize(outcomes: Outcome[]): string {
  const counts = new Map<string, number>();
  for (const o of outcomes) {
    const k = label(o) + (o.held === true ? ' (held)' : o.held === false ? ' (closed)' : '');
    counts.set(k, (counts.get(k) ?? 0) + 1);
  }
  return [...counts.entries()].map(([k, n]) => (counts.size > 1 ? `${k} ×${n}` : k)).join(', ');
}

/**
 * A clear refusal: 4xx with a JSON error code. For cl-lie-short the framing itself is broken (the
 * bytes after the declared body are no HTTP request), so node:http's plain 400 and a closed
 * connection are the right answer there.
 */
function refused(o: Outcome, kind: Kind): boolean {
  const is4xx = typeof o.status === 'number' && o.status >= 400 && o.status < 500;
  return kind === 'short' ? is4xx && o.held === false : is4xx && o.code !== undefined;
}

function verdict(row: Row): string {
  if (row.cpuMs.length === 0) return 'FAIL (no sample)';
  const why: string[] = [];
  if (percentile(row.cpuMs, 99) > CPU_GOAL_MS) why.push('cpu');
  if (!row.outcomes.every((o) => refused(o, row.shape.kind))) why.push(row.outcomes.some((o) => typeof o.status === 'number' && o.status < 400) ? 'accepted' : 'not a 4xx refusal');
  return why.length === 0 ? 'PASS' : `FAIL (${why.join(', ')})`;
}

async function partA(dir: string, keys: Keys): Promise<{ rows: Row[]; baselineMs: number; maxBody: number }> {
  const logPath = join(dir, 'in-process.log');
  const running: RunningServer = await startServer({
    dataDir: join(dir, 'in-process'),
    host: '127.0.0.1',
    port: 0,
    tokensEnv: TOKENS,
    refreshTickMs: 3_600_000,
    logger: pino({ level: 'warn' }, pino.destination({ dest: logPath, sync: true })),
    bodyTimeoutMs: BODY_TIMEOUT_MS,
  });
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const base = new URL(running.url);
  try {
    const now = Date.now();
    await setupRepository(running.url, keys, now);
    const maxBody = appBodyLimit(running.policy);
    const shapes = await buildShapes(keys, running.policy, maxBody, now);

    // Baseline: GET /healthz alone, the request that follows every hostile one.
    const healthz = (): Promise<Outcome> => send(base, agent, 'GET', '/healthz');
    for (let i = 0; i < 20; i++) await healthz();
    const base0: number[] = [];
    for (let i = 0; i < 50; i++) {
      const c0 = cpuNow();
      const o = await healthz();
      if (o.status !== 200) throw new Error(`GET /healthz: ${label(o)}`);
      base0.push(cpuNow() - c0);
    }
    const baselineMs = median(base0);

    const rows: Row[] = [];
    for (const shape of shapes) {
      for (const token of ['write', 'none'] as const) {
        const row: Row = { shape, token, cpuMs: [], wallMs: [], outcomes: [] };
        rows.push(row);
        const tok = token === 'write' ? WRITE_TOKEN : undefined;
        if (shape.kind === 'stall') {
          // Concurrent: each connection waits up to STALL_MS.
          const c0 = cpuNow();
          const outs = await Promise.all(Array.from({ length: RUNS }, () => sendShape(base, agent, shape, tok)));
          const perRequest = (cpuNow() - c0) / RUNS;
          for (const o of outs) {
            row.outcomes.push(o);
            row.wallMs.push(o.ms);
            row.cpuMs.push(perRequest);
          }
          console.error(`  ${shape.id} (${token}): ${summarize(row.outcomes)}`);
          continue;
        }
        const one = async (): Promise<{ cpu: number; o: Outcome }> => {
          const c0 = cpuNow();
          const o = await sendShape(base, agent, shape, tok);
          await healthz(); // answered once the server is done with the hostile request's bytes
          return { cpu: cpuNow() - c0 - baselineMs, o };
        };
        const record = ({ cpu, o }: { cpu: number; o: Outcome }): void => {
          row.cpuMs.push(Math.max(0, cpu));
          row.wallMs.push(o.ms);
          row.outcomes.push(o);
        };
        const started = performance.now();
        const warm = await one();
        if (performance.now() - started > ROW_SECONDS * 1000) {
          // Slower than the row's whole budget: that first request is the row's one sample.
          row.cold = true;
          record(warm);
        }
        while (row.cpuMs.length < RUNS && (row.cpuMs.length === 0 || performance.now() - started < ROW_SECONDS * 1000)) record(await one());
        console.error(`  ${shape.id} (${token}): ${summarize(row.outcomes)}, cpu p50 ${median(row.cpuMs).toFixed(1)} ms, ${row.cpuMs.length} runs`);
      }
    }
    return { rows, baselineMs, maxBody };
  } finally {
    agent.destroy();
    await running.close();
  }
}

/** The request-body limit createApp applies by default (src/service/app.ts, docs/API.md "Limits"). */
function appBodyLimit(policy: Policy): number {
  return 2 * Math.max(...Object.values(policy.roles).map((r) => r.maxBytes)) + 64 * 1024;
}

// ------------------------------------------------------------------ (b) /healthz under load, child process

/** The prober: its own thread, event loop and keep-alive connection. */
const PROBER = `
const { parentPort, workerData } = require('node:worker_threads');
const http = require('node:http');
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
const samples = [];
let timeouts = 0, errors = 0, stop = false;
parentPort.on('message', (m) => { if (m === 'stop') stop = true; });
function probe() {
  return new Promise((resolve) => {
    const t0 = process.hrtime.bigint();
    let done = false;
    const end = (ok, timedOut) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve({ ms: Number(process.hrtime.bigint() - t0) / 1e6, ok, timedOut });
    };
    const req = http.get(workerData.url + '/healthz', { agent }, (res) => {
      res.resume();
      res.on('end', () => end(res.statusCode === 200, false));
    });
    const timer = setTimeout(() => { end(false, true); req.destroy(); }, workerData.timeoutMs);
    req.on('error', () => end(false, false));
  });
}
(async () => {
  while (!stop) {
    const r = await probe();
    samples.push(r.ms);
    if (r.timedOut) timeouts++;
    else if (!r.ok) errors++;
    if (workerData.intervalMs > 0) await new Promise((res) => setTimeout(res, workerData.intervalMs));
    else await new Promise((res) => setImmediate(res));
  }
  agent.destroy();
  parentPort.postMessage({ samples, timeouts, errors });
})();
`;

interface Probes {
  samples: number[];
  timeouts: number;
  errors: number;
}

function startProber(url: string): { stop(): Promise<Probes> } {
  const worker = new Worker(PROBER, { eval: true, workerData: { url, intervalMs: PROBE_INTERVAL_MS, timeoutMs: 5_000 } });
  const result = new Promise<Probes>((resolve, reject) => {
    worker.once('message', (m: Probes) => resolve(m));
    worker.once('error', reject);
    worker.once('exit', (code) => reject(new Error(`the /healthz prober exited (${code}) before reporting`)));
  });
  result.catch(() => undefined);
  return {
    async stop() {
      worker.postMessage('stop');
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error('the /healthz prober did not report within 10 s')), 10_000);
      });
      try {
        return await Promise.race([result, deadline]);
      } finally {
        clearTimeout(timer);
        await worker.terminate();
      }
    },
  };
}


/**
 * The service's own event-loop delay since the last scrape, ms: prom-client's monitorEventLoopDelay
 * histogram (reset by each scrape), which records the intervals of a 10 ms timer; the period is
 * subtracted, so an idle loop reads about 0.
 */
interface Lag {
  p50: number;
  p99: number;
  max: number;
}

const LAG_PERIOD_MS = 10;

async function scrapeLag(url: string): Promise<Lag> {
  const res = await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(10_000) });
  const text = await res.text();
  const read = (name: string): number => {
    const m = new RegExp(`^tufoci_process_nodejs_eventloop_lag_${name}_seconds (\\S+)$`, 'm').exec(text);
    if (!m) throw new Error(`GET /metrics has no event-loop ${name}`);
    return Math.max(0, Number(m[1]) * 1000 - LAG_PERIOD_MS);
  };
  return { p50: read('p50'), p99: read('p99'), max: read('max') };
}

interface PartB {
  idle: Probes;
  loaded: Probes;
  idleLag: Lag;
  loadedLag: Lag;
  hostile: Outcome[];
  seconds: number;
  childCpuSeconds: number;
}

async function partB(dir: string, keys: Keys, nodeArgs: readonly string[], onChild: (c: Tufoci | undefined) => void): Promise<PartB> {
  const child = await startTufoci({ dataDir: join(dir, `child-${Date.now()}`), env: { TUFOCI_TOKENS: TOKENS, TUFOCI_LOG_LEVEL: 'warn' }, nodeArgs: [...nodeArgs] });
  onChild(child);
  const agents: Agent[] = [];
  try {
    const now = Date.now();
    await setupRepository(child.url, keys, now);
    const policy = await loadPolicyFile(defaultPolicyPath());
    const shapes = (await buildShapes(keys, policy, appBodyLimit(policy), now)).filter((s) => s.kind === 'http' || s.kind === 'chunked');
    const base = new URL(child.url);

    console.error(`  idle /healthz for ${IDLE_SECONDS} s…`);
    await scrapeLag(child.url); // resets the service's event-loop histogram
    const idleProber = startProber(child.url);
    await new Promise((res) => setTimeout(res, IDLE_SECONDS * 1000)); // the measurement window
    const idle = await idleProber.stop();
    const idleLag = await scrapeLag(child.url);

    console.error(`  /healthz for ${HEALTH_SECONDS} s with ${LOOPS} hostile loop(s)…`);
    const hostile: Outcome[] = [];
    const cpu0 = processCpuSeconds(child.pid);
    const t0 = performance.now();
    const stopAt = t0 + HEALTH_SECONDS * 1000;
    const prober = startProber(child.url);
    await Promise.all(
      Array.from({ length: LOOPS }, async (_, loop) => {
        const agent = new Agent({ keepAlive: true, maxSockets: 1 });
        agents.push(agent);
        for (let i = loop; performance.now() < stopAt && i < 1_000_000; i++) {
          const shape = shapes[i % shapes.length] as Shape;
          const left = stopAt - performance.now();
          hostile.push(await sendShape(base, agent, shape, WRITE_TOKEN, Math.max(1_000, Math.min(REQUEST_TIMEOUT_MS, left + 5_000))));
        }
      }),
    );
    const loaded = await prober.stop();
    const loadedLag = await scrapeLag(child.url);
    const seconds = (performance.now() - t0) / 1000;
    return { idle, loaded, idleLag, loadedLag, hostile, seconds, childCpuSeconds: processCpuSeconds(child.pid) - cpu0 };
  } finally {
    for (const a of agents) a.destroy();
    await child.stop();
    onChild(undefined);
    const keep = process.env['BENCH_CHILD_LOG'];
    if (keep) await copyFile(join(child.dataDir, 'tufoci.log'), keep);
  }
}

// ------------------------------------------------------------------ main

function size(n: number): string {
  return n >= 1024 * 1024 ? `${(n / 1024 / 1024).toFixed(1)} MiB` : `${(n / 1024).toFixed(0)} KiB`;
}

function probeRow(phase: string, p: Probes, goal: boolean): Record<string, string | number> {
  const p99 = p.samples.length ? percentile(p.samples, 99) : Number.NaN;
  return {
    phase,
    probes: p.samples.length,
    'p50 ms': +(p.samples.length ? median(p.samples) : Number.NaN).toFixed(2),
    'p99 ms': +p99.toFixed(2),
    'max ms': +Math.max(...p.samples).toFixed(1),
    timeouts: p.timeouts,
    errors: p.errors,
    [`goal p99 ≤ ${HEALTH_GOAL_MS} ms`]: goal ? (p99 <= HEALTH_GOAL_MS && p.timeouts === 0 && p.errors === 0 ? 'PASS' : 'FAIL') : '(reference)',
  };
}

async function main(): Promise<void> {
  assertNode24();
  for (const p of PARTS) if (p !== 'a' && p !== 'b') throw new Error(`BENCH_PARTS: unknown part ${p} (a, b)`);
  const started = Date.now();
  const loadBefore = loadavg()[0] as number;
  const keys = loadKeys();
  const dir = await mkdtemp(join(tmpdir(), 'tufoci-hostile-bench-'));

  // The child is stopped by PID whatever happens: finally, signals, and process exit.
  let child: Tufoci | undefined;
  const killChild = (): void => {
    if (!child) return;
    try {
      process.kill(child.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  };
  process.once('exit', killChild);
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      const c = child;
      void (c ? c.stop(2_000) : Promise.resolve())
        .then(() => rm(dir, { recursive: true, force: true }))
        .finally(() => process.exit(130));
    });
  }

  let a: Awaited<ReturnType<typeof partA>> | undefined;
  const bs: Array<{ config: string; b: PartB }> = [];
  try {
    if (PARTS.has('a')) {
      console.error('(a) CPU per refusal, service in process…');
      a = await partA(dir, keys);
    }
    if (PARTS.has('b')) {
      for (const config of CHILD_CONFIGS) {
        console.error(`(b) /healthz under hostile uploads, service as a child process, ${config.name}…`);
        bs.push({ config: config.name, b: await partB(dir, keys, config.nodeArgs, (c) => (child = c)) });
      }
    }
  } finally {
    if (child) await (child as Tufoci).stop(2_000);
    await rm(dir, { recursive: true, force: true });
  }

  console.log(`\ntufoci hostile-upload benchmark — ${machine()}`);
  console.log(`1-min load average when the script started ${loadBefore.toFixed(2)}${loadBefore > 0.7 ? ' — WARNING: the machine was busy: figures are high and noisy' : ''}`);
  if (a) {
    console.log(`\n(a) CPU per request, service in process (embedded), write token "write:hostile/*" or none; request-body limit ${a.maxBody} B`);
    console.log(`    cpu = process.cpuUsage() around the request + a GET /healthz after it, minus ${a.baselineMs.toFixed(2)} ms (median of that GET alone); includes the client's share`);
    console.table(
      a.rows.map((r) => ({
        shape: r.shape.id,
        what: r.shape.what,
        token: r.token,
        body: size(r.shape.body.byteLength),
        runs: r.cold ? `${r.cpuMs.length} (cold)` : r.cpuMs.length,
        answer: summarize(r.outcomes),
        'cpu p50 ms': +median(r.cpuMs).toFixed(1),
        'cpu p99 ms': +percentile(r.cpuMs, 99).toFixed(1),
        'wall p50 ms': +median(r.wallMs).toFixed(1),
        [`goal ≤ ${CPU_GOAL_MS} ms, 4xx`]: verdict(r),
      })),
    );
    const passed = a.rows.filter((r) => verdict(r) === 'PASS').length;
    console.log(`(a) ${passed} of ${a.rows.length} rows PASS (CPU p99 ≤ ${CPU_GOAL_MS} ms and refused with a 4xx JSON error)`);
  }
  for (const { config, b } of bs) {
    const byOutcome = new Map<string, number>();
    for (const o of b.hostile) byOutcome.set(label(o), (byOutcome.get(label(o)) ?? 0) + 1);
    console.log(`\n(b) GET /healthz latency, tufoci serve as a child process (${config}); probes every ${PROBE_INTERVAL_MS} ms from a worker thread`);
    console.table([probeRow('idle', b.idle, false), probeRow(`${LOOPS} hostile loop(s)`, b.loaded, true)]);
    const p99 = b.loaded.samples.length ? percentile(b.loaded.samples, 99) : Number.NaN;
    console.log(
      `    hostile requests in ${b.seconds.toFixed(1)} s: ${b.hostile.length} (${[...byOutcome.entries()].map(([k, n]) => `${k} ×${n}`).join(', ')}); service CPU ${b.childCpuSeconds.toFixed(2)} s`,
    );
    const lag = (l: Lag): string => `p50 ${l.p50.toFixed(1)} ms, p99 ${l.p99.toFixed(1)} ms, max ${l.max.toFixed(1)} ms`;
    console.log(`    the service's own event-loop delay (monitorEventLoopDelay, beyond its 10 ms period): idle ${lag(b.idleLag)}; under load ${lag(b.loadedLag)}`);
    console.log(`(b) /healthz p99 under hostile uploads, ${config}: ${p99.toFixed(2)} ms (goal ≤ ${HEALTH_GOAL_MS} ms: ${p99 <= HEALTH_GOAL_MS && b.loaded.timeouts === 0 ? 'PASS' : 'FAIL'})`);
  }
  console.log(`\ntotal ${((Date.now() - started) / 1000).toFixed(0)} s`);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
