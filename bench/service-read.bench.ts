/**
 * Service read-path benchmark:
 *
 *   PATH=$PWD/node_modules/.bin:$PATH node bench/service-read.bench.ts
 *
 * Requests/s and p50/p99 latency of `GET /v1/repos/<repo>/metadata/<file>` from
 * `tufoci serve` (one Node process, embedded OCI-layout default, a repository
 * created over the API; `startServer`, so cached reads are answered by the
 * connection-level front, src/service/fast-front.ts, and everything else by
 * node:http and Koa) against nginx serving the same bytes at the same path
 * with the same Content-Type and Cache-Control, measured by wrk on loopback.
 * The fair comparison is nginx with `worker_processes 1` (one event loop each);
 * nginx `worker_processes auto` is printed for reference. Rows: timestamp.json
 * (200), timestamp.json with a matching If-None-Match (304), the versioned,
 * immutable 1.root.json, and two reference points:
 *  - bare `node:http` answering the same bytes and headers: one Node process
 *    paying node:http's per-request cost (what tufoci did before the front);
 *  - tufoci behind nginx (1 worker) running the load balancer's routes from
 *    deploy/tufoci-proxy.conf (timestamp.json micro-cached for 1 s), i.e. the
 *    read path as docker-compose.yml deploys it.
 * Runs are interleaved across rows (each repetition visits every row once) so
 * that drift of the machine hits every row alike; the table shows medians.
 *
 * Environment (all optional):
 *   BENCH_DURATION=6     seconds per wrk run          BENCH_RUNS=3        runs per row
 *   BENCH_CONNECTIONS=64 wrk connections             BENCH_THREADS=2     wrk threads
 *   BENCH_PROFILE=1      also run one tufoci under --cpu-prof for the timestamp row
 *                        and print where its CPU time goes (self time by function and by file)
 *
 * Needs /usr/sbin/nginx and /usr/bin/wrk (Debian: apt-get install nginx wrk).
 * Every server is started here on 127.0.0.1 and stopped by PID at the end.
 *
 * The process helpers and the offline owner below are exported for
 * bench/service-write.bench.ts; this file runs only as the main module.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { accessSync, constants, createWriteStream, readFileSync, readdirSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { buildRoot, buildTargets, isoExpiry, signMetadata, type DelegationSpec, type ImageTarget } from '../src/engine/index.ts';
import { InMemorySigner, type TufKeyJson } from '../src/keys/index.ts';
import { freeLoopbackPort } from '../test/support/registry-server.ts';
import { machine, median } from './stats.ts';

export const REPO_ROOT = resolve(import.meta.dirname, '..');
export const ADMIN_TOKEN = 'bench-admin-token-0123456789abcdef';
export const TOKENS_ENV = JSON.stringify([{ name: 'admin', token: ADMIN_TOKEN, scopes: ['admin'] }]);
const NGINX = '/usr/sbin/nginx';
const WRK = '/usr/bin/wrk';

/** A numeric setting from the environment: positive, or also 0 where 0 means "skip this part". */
export function envInt(name: string, fallback: number, opts: { allowZero?: boolean } = {}): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < 0 || (n === 0 && !opts.allowZero)) throw new Error(`${name} must be a positive number${opts.allowZero ? ' or 0' : ''}, got ${raw}`);
  return n;
}

export function assertBinary(path: string, pkg: string): void {
  try {
    accessSync(path, constants.X_OK);
  } catch {
    throw new Error(`${path} is missing: run \`apt-get install ${pkg}\``);
  }
}

export function assertNode24(): void {
  const major = Number(process.versions.node.split('.')[0]);
  if (major < 24) throw new Error(`run the benchmarks with Node 24 (PATH=$PWD/node_modules/.bin:$PATH node bench/…), not ${process.version}`);
}

// ------------------------------------------------------------------ processes

export interface Proc {
  pid: number;
  /** Last output of the process (for error messages). */
  output(): string;
  /** Exit code or signal once the process has ended, else undefined. */
  exit(): string | undefined;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves when the process has exited. */
  stop(graceMs?: number): Promise<void>;
}

/** Spawn a child whose stdout+stderr go to `logFile` (and a short in-memory tail). */
export async function spawnLogged(command: string, args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string; logFile: string }): Promise<Proc> {
  const log = createWriteStream(opts.logFile);
  const child: ChildProcess = spawn(command, args, { cwd: opts.cwd ?? REPO_ROOT, env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let tail = '';
  const collect = (chunk: Buffer): void => {
    log.write(chunk);
    tail = (tail + chunk.toString('utf8')).slice(-4000);
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  await new Promise<void>((res, rej) => {
    child.once('spawn', res);
    child.once('error', rej);
  });
  const pid = child.pid;
  if (pid === undefined) throw new Error(`${command} has no pid`);
  const exited = new Promise<void>((res) => child.once('exit', () => res()));
  return {
    pid,
    output: () => tail,
    exit: () => (child.exitCode !== null ? `exit code ${child.exitCode}` : (child.signalCode ?? undefined)),
    async stop(graceMs = 5000) {
      if (child.exitCode === null && child.signalCode === null) {
        process.kill(pid, 'SIGTERM');
        const timer = setTimeout(() => {
          if (child.exitCode === null && child.signalCode === null) process.kill(pid, 'SIGKILL');
        }, graceMs);
        await exited;
        clearTimeout(timer);
      }
      await new Promise<void>((res) => log.end(res));
    },
  };
}

async function waitForHttp(url: string, proc: Proc, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    const exit = proc.exit();
    if (exit !== undefined) throw new Error(`${what} ended (${exit}) before answering ${url}; output: ${proc.output()}`);
    try {
      const r = await fetch(url, { signal: AbortSignal.timeout(1000) });
      await r.body?.cancel();
      if (r.ok) return;
      last = `HTTP ${r.status}`;
    } catch (error) {
      last = String(error);
    }
    await sleep(50);
  }
  await proc.stop();
  throw new Error(`${what} did not answer ${url} within ${timeoutMs} ms (${last}); output: ${proc.output()}`);
}

export interface Tufoci extends Proc {
  url: string;
  port: number;
  dataDir: string;
}

export interface TufociOptions {
  dataDir: string;
  registry?: string;
  redis?: string;
  /** Extra `node` flags, e.g. ['--cpu-prof', '--cpu-prof-dir', dir]. */
  nodeArgs?: string[];
  env?: NodeJS.ProcessEnv;
  /** More `tufoci serve` options. */
  serveArgs?: string[];
}

/** `node src/cli/main.ts serve` on a free loopback port, ready once /readyz answers 200. */
export async function startTufoci(opts: TufociOptions): Promise<Tufoci> {
  await mkdir(opts.dataDir, { recursive: true, mode: 0o700 });
  const port = await freeLoopbackPort();
  const args = [
    ...(opts.nodeArgs ?? []),
    'src/cli/main.ts',
    'serve',
    '--data',
    opts.dataDir,
    '--listen',
    `127.0.0.1:${port}`,
    ...(opts.registry ? ['--registry', opts.registry] : []),
    ...(opts.redis ? ['--redis', opts.redis] : []),
    ...(opts.serveArgs ?? []),
  ];
  const proc = await spawnLogged(process.execPath, args, {
    env: { TUFOCI_TOKENS: TOKENS_ENV, TUFOCI_LOG_LEVEL: 'warn', ...opts.env },
    logFile: join(opts.dataDir, 'tufoci.log'),
  });
  const url = `http://127.0.0.1:${port}`;
  await waitForHttp(`${url}/readyz`, proc, 'tufoci');
  return { ...proc, url, port, dataDir: opts.dataDir };
}

export interface Nginx extends Proc {
  url: string;
}

/** What an nginx serves: directives for `http {}` and the body of its one `server {}`. */
export interface NginxSite {
  http: string;
  server: string;
}

/** Static files under `wwwRoot` with tufoci's Content-Type and Cache-Control. */
export function staticSite(wwwRoot: string): NginxSite {
  return {
    http: `
  types { application/json json; }
  default_type application/octet-stream;
  charset utf-8;
  charset_types application/json;`,
    server: `
    root ${wwwRoot};
    location ~ /timestamp\\.json$ { add_header Cache-Control "public, max-age=10"; }
    location / { add_header Cache-Control "public, max-age=31536000, immutable"; }`,
  };
}

/** The load balancer's tufoci routes (deploy/tufoci-proxy.conf, with its cache) in front of `upstream`. */
export function deployProxySite(upstream: string[], cacheDir: string): NginxSite {
  return {
    http: `
  proxy_cache_path ${cacheDir} levels=1:2 keys_zone=tufoci_meta:16m max_size=64m inactive=10m use_temp_path=off;
  upstream tufoci {
${upstream.map((u) => `    server ${u};`).join('\n')}
    keepalive 64;
  }`,
    server: `
    include ${join(REPO_ROOT, 'deploy', 'tufoci-proxy.conf')};`,
  };
}

/** nginx under its own prefix in `dir`, listening on a free loopback port. */
export async function startNginx(dir: string, name: string, workers: number | 'auto', site: NginxSite, probePath: string): Promise<Nginx> {
  assertBinary(NGINX, 'nginx');
  const port = await freeLoopbackPort();
  const prefix = join(dir, `nginx-${name}`);
  await mkdir(join(prefix, 'tmp'), { recursive: true });
  const conf = `
worker_processes ${workers};
daemon off;
pid ${join(prefix, 'nginx.pid')};
error_log ${join(prefix, 'error.log')} warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${join(prefix, 'tmp', 'body')};
  proxy_temp_path ${join(prefix, 'tmp', 'proxy')};
  fastcgi_temp_path ${join(prefix, 'tmp', 'fastcgi')};
  uwsgi_temp_path ${join(prefix, 'tmp', 'uwsgi')};
  scgi_temp_path ${join(prefix, 'tmp', 'scgi')};
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  keepalive_timeout 65s;
  server_tokens off;
${site.http}
  server {
    listen 127.0.0.1:${port};
${site.server}
  }
}
`;
  const confPath = join(prefix, 'nginx.conf');
  await writeFile(confPath, conf);
  // -e: no attempt to open the default /var/log/nginx/error.log before the config is read.
  const proc = await spawnLogged(NGINX, ['-p', prefix, '-e', join(prefix, 'error.log'), '-c', confPath], { logFile: join(prefix, 'stdout.log') });
  const url = `http://127.0.0.1:${port}`;
  await waitForHttp(`${url}${probePath}`, { ...proc, output: () => `${proc.output()} ${safeRead(join(prefix, 'error.log'))}` }, 'nginx');
  return { ...proc, url };
}

/**
 * The ceiling for one Node process: bare `node:http` (no framework, no
 * metrics, no router) answering the same paths with the same headers as
 * tufoci (Content-Type, ETag, Cache-Control, X-Request-Id) and 304 on a
 * matching If-None-Match. A reference row, not a proposal.
 */
const BARE_NODE_SERVER = `
const http = require('node:http');
const { randomUUID } = require('node:crypto');
const files = new Map(Object.entries(JSON.parse(require('node:fs').readFileSync(process.argv[1], 'utf8'))).map(([p, f]) => [p, { ...f, bytes: Buffer.from(f.base64, 'base64') }]));
const server = http.createServer((req, res) => {
  const f = req.method === 'GET' ? files.get(req.url) : undefined;
  if (!f) { res.statusCode = 404; res.end(); return; }
  res.setHeader('X-Request-Id', randomUUID());
  res.setHeader('ETag', f.etag);
  res.setHeader('Cache-Control', f.cacheControl);
  if (req.headers['if-none-match'] === f.etag) { res.statusCode = 304; res.end(); return; }
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  res.setHeader('Content-Length', f.bytes.byteLength);
  res.end(f.bytes);
});
server.listen(Number(process.argv[2]), '127.0.0.1');
process.on('SIGTERM', () => server.close(() => process.exit(0)));
`;

export async function startBareNode(dir: string, files: Record<string, { bytes: Uint8Array; etag: string; cacheControl: string }>, probePath: string): Promise<Nginx> {
  const port = await freeLoopbackPort();
  const manifest = join(dir, 'bare-node-files.json');
  const json: Record<string, { base64: string; etag: string; cacheControl: string }> = {};
  for (const [p, f] of Object.entries(files)) json[p] = { base64: Buffer.from(f.bytes).toString('base64'), etag: f.etag, cacheControl: f.cacheControl };
  await writeFile(manifest, JSON.stringify(json));
  const proc = await spawnLogged(process.execPath, ['-e', BARE_NODE_SERVER, manifest, String(port)], { logFile: join(dir, 'bare-node.log') });
  const url = `http://127.0.0.1:${port}`;
  await waitForHttp(`${url}${probePath}`, proc, 'node:http reference server');
  return { ...proc, url };
}

function safeRead(path: string): string {
  try {
    return readFileSync(path, 'utf8').slice(-2000);
  } catch {
    return '';
  }
}

// ------------------------------------------------------------------ owner (offline keys)

export function imageFor(tag: string): ImageTarget {
  return { digest: `sha256:${createHash('sha256').update(tag).digest('hex')}`, size: 1000 + tag.length, mediaType: 'application/vnd.oci.image.manifest.v1+json' };
}

/**
 * The repository owner and its CI job, with in-memory keys (as in
 * test/service/harness.ts): root and top-level targets offline, a delegated
 * role `ci` for tags `v*`. The same owner can create any number of
 * repositories (TUF metadata does not name the repository).
 */
export class Owner {
  readonly root = InMemorySigner.generate();
  readonly targets = InMemorySigner.generate();
  readonly ci = InMemorySigner.generate();
  readonly now = Date.now();

  expires(days: number): string {
    return isoExpiry(this.now + days * 86_400_000);
  }

  /** Body of `POST /v1/repos/<repo>` for the service's online keys; `extra`: delegations after `ci`. */
  async createBody(repo: string, online: { snapshot: TufKeyJson[]; timestamp: TufKeyJson[] }, extra: readonly DelegationSpec[] = []): Promise<string> {
    const root = await signMetadata(
      buildRoot({
        version: 1,
        expires: this.expires(365),
        root: { keys: [this.root.public], threshold: 1 },
        targets: { keys: [this.targets.public], threshold: 1 },
        snapshot: { keys: online.snapshot, threshold: 1 },
        timestamp: { keys: online.timestamp, threshold: 1 },
        scope: repo,
      }),
      [this.root],
    );
    const targets = await signMetadata(
      buildTargets({ version: 1, expires: this.expires(90), delegations: [{ name: 'ci', keys: [this.ci.public], threshold: 1, paths: ['v*'], terminating: true }, ...extra] }),
      [this.targets],
    );
    const dec = new TextDecoder();
    return `{"root":${dec.decode(root)},"targets":${dec.decode(targets)}}`;
  }

  /** `<version>.ci.json` listing `tags` (each `v…`), signed by the CI key. */
  async ciBytes(version: number, tags: Iterable<string>): Promise<Uint8Array> {
    const targets: Record<string, ImageTarget> = {};
    for (const t of tags) targets[t] = imageFor(t);
    return signMetadata(buildTargets({ version, expires: this.expires(30), targets }), [this.ci]);
  }
}

/** The online keys `repo`'s root must list (each repository has its own, derived by the service). */
export async function onlineKeys(url: string, repo: string): Promise<{ snapshot: TufKeyJson[]; timestamp: TufKeyJson[] }> {
  const r = await fetch(`${url}/v1/online-keys?repository=${encodeURIComponent(repo)}`);
  if (!r.ok) throw new Error(`GET /v1/online-keys: HTTP ${r.status}`);
  const body = (await r.json()) as { snapshot: Array<{ key: TufKeyJson }>; timestamp: Array<{ key: TufKeyJson }> };
  return { snapshot: body.snapshot.map((k) => k.key), timestamp: body.timestamp.map((k) => k.key) };
}

export async function createRepo(url: string, repo: string, body: string): Promise<void> {
  const r = await fetch(`${url}/v1/repos/${repo}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
    body,
  });
  const text = await r.text();
  if (r.status !== 201 && r.status !== 200) throw new Error(`POST /v1/repos/${repo}: HTTP ${r.status} ${text.slice(0, 300)}`);
}

// ------------------------------------------------------------------ wrk

export interface WrkResult {
  rps: number;
  p50ms: number;
  p99ms: number;
  requests: number;
  /** Non-2xx/3xx responses plus socket errors. */
  errors: number;
}

function latencyMs(value: string, unit: string): number {
  const v = Number(value);
  if (unit === 'us') return v / 1000;
  if (unit === 'ms') return v;
  if (unit === 's') return v * 1000;
  if (unit === 'm') return v * 60_000;
  throw new Error(`unknown wrk latency unit ${unit}`);
}

export function parseWrk(out: string): WrkResult {
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(out);
  const p50 = /^\s+50%\s+([\d.]+)(us|ms|s|m)\s*$/m.exec(out);
  const p99 = /^\s+99%\s+([\d.]+)(us|ms|s|m)\s*$/m.exec(out);
  const reqs = /(\d+) requests in/.exec(out);
  if (!rps?.[1] || !p50?.[1] || !p50[2] || !p99?.[1] || !p99[2] || !reqs?.[1]) throw new Error(`could not parse wrk output:\n${out}`);
  const non2xx = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(out)?.[1] ?? 0);
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const socketErrors = sock ? sock.slice(1).reduce((a, b) => a + Number(b), 0) : 0;
  return { rps: Number(rps[1]), p50ms: latencyMs(p50[1], p50[2]), p99ms: latencyMs(p99[1], p99[2]), requests: Number(reqs[1]), errors: non2xx + socketErrors };
}

export async function wrk(url: string, o: { seconds: number; connections: number; threads: number; headers?: Record<string, string> }): Promise<WrkResult> {
  assertBinary(WRK, 'wrk');
  const args = [`-t${o.threads}`, `-c${o.connections}`, `-d${o.seconds}s`, '--latency', '--timeout', '5s'];
  for (const [k, v] of Object.entries(o.headers ?? {})) args.push('-H', `${k}: ${v}`);
  args.push(url);
  const child = spawn(WRK, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
  child.stderr.setEncoding('utf8').on('data', (c: string) => (out += c));
  const killer = setTimeout(() => child.kill('SIGKILL'), (o.seconds + 30) * 1000);
  const code = await new Promise<number | null>((res) => child.once('close', (c) => res(c)));
  clearTimeout(killer);
  if (code !== 0) throw new Error(`wrk exited with ${code}: ${out}`);
  return parseWrk(out);
}

// ------------------------------------------------------------------ CPU profile summary

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  hitCount?: number;
}

/**
 * Where the CPU time of a V8 .cpuprofile goes: self time by file/package and
 * by function, and inclusive (self + callees) time by function; lines are
 * 1-based. `(idle)` samples are left out of the total.
 */
export function summarizeProfile(path: string, top = 15): Record<'files' | 'functions' | 'inclusive', Array<Record<string, string | number>>> {
  const profile = JSON.parse(readFileSync(path, 'utf8')) as { nodes: Array<ProfileNode & { children?: number[] }>; samples: number[]; timeDeltas: number[] };
  const root = `file://${REPO_ROOT}/`;
  const byId = new Map<number, ProfileNode & { children?: number[] }>();
  const parent = new Map<number, number>();
  for (const n of profile.nodes) {
    byId.set(n.id, n);
    for (const c of n.children ?? []) parent.set(c, n.id);
  }
  const fileOf = (n: ProfileNode): string => (n.callFrame.url.startsWith(root) ? n.callFrame.url.slice(root.length) : n.callFrame.url || '(native/V8)');
  const keyOf = (n: ProfileNode): string => `${n.callFrame.functionName || '(anonymous)'} ${fileOf(n)}${n.callFrame.url ? `:${n.callFrame.lineNumber + 1}` : ''}`;
  const byFn = new Map<string, number>();
  const byFile = new Map<string, number>();
  const inclusive = new Map<string, number>();
  let total = 0;
  profile.samples.forEach((id, i) => {
    const us = profile.timeDeltas[i] ?? 0;
    const leaf = byId.get(id);
    if (!leaf || leaf.callFrame.functionName === '(idle)') return;
    total += us;
    const key = keyOf(leaf);
    byFn.set(key, (byFn.get(key) ?? 0) + us);
    const file = fileOf(leaf);
    const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(file)?.[1];
    const group = pkg ? `node_modules/${pkg}` : file.startsWith('node:') ? `${file} (Node core)` : file;
    byFile.set(group, (byFile.get(group) ?? 0) + us);
    const seen = new Set<string>();
    for (let n: ProfileNode | undefined = leaf; n; n = byId.get(parent.get(n.id) ?? -1)) {
      if (!n.callFrame.url) continue; // (root), (program), native frames
      const k = keyOf(n);
      if (seen.has(k)) continue;
      seen.add(k);
      inclusive.set(k, (inclusive.get(k) ?? 0) + us);
    }
  });
  const rows = (m: Map<string, number>, label: string, pct: string): Array<Record<string, string | number>> =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([k, us]) => ({ [label]: k.length > 100 ? `…${k.slice(-99)}` : k, [pct]: +((100 * us) / total).toFixed(1) }));
  return { files: rows(byFile, 'file / package', 'self %'), functions: rows(byFn, 'function (file:line)', 'self %'), inclusive: rows(inclusive, 'function (file:line)', 'incl. %') };
}

// ------------------------------------------------------------------ main

const LB = 'nginx LB (1 worker) → tufoci';

interface Row {
  server: string;
  request: string;
  url: string;
  headers?: Record<string, string>;
  results: WrkResult[];
}

async function main(): Promise<void> {
  assertNode24();
  assertBinary(NGINX, 'nginx');
  assertBinary(WRK, 'wrk');
  const seconds = envInt('BENCH_DURATION', 6);
  const runs = envInt('BENCH_RUNS', 3);
  const connections = envInt('BENCH_CONNECTIONS', 64);
  const threads = envInt('BENCH_THREADS', 2);
  const profile = process.env['BENCH_PROFILE'] === '1';
  const loadBefore = loadavg()[0] as number; // before this script starts anything
  const repo = 'bench/net-monitor';
  const dir = await mkdtemp(join(tmpdir(), 'tufoci-read-bench-'));
  const procs: Proc[] = [];
  const started = Date.now();
  try {
    // 1. tufoci, embedded default, and one repository created over the API.
    const tufoci = await startTufoci({ dataDir: join(dir, 'tufoci') });
    procs.push(tufoci);
    const owner = new Owner();
    await createRepo(tufoci.url, repo, await owner.createBody(repo, await onlineKeys(tufoci.url, repo)));
    const base = `/v1/repos/${repo}/metadata`;
    const ts = await fetch(`${tufoci.url}${base}/timestamp.json`);
    const tsBytes = new Uint8Array(await ts.arrayBuffer());
    const tsEtag = ts.headers.get('etag');
    const rootBytes = new Uint8Array(await (await fetch(`${tufoci.url}${base}/1.root.json`)).arrayBuffer());
    if (ts.status !== 200 || !tsEtag || rootBytes.byteLength === 0) throw new Error(`tufoci did not serve the repository: HTTP ${ts.status}`);
    const contentType = ts.headers.get('content-type');

    // 2. nginx serving the identical bytes at the identical path (readable by its unprivileged workers).
    const www = join(dir, 'www');
    await mkdir(join(www, base), { recursive: true });
    await writeFile(join(www, base, 'timestamp.json'), tsBytes);
    await writeFile(join(www, base, '1.root.json'), rootBytes);
    await chmod(dir, 0o755);
    for (let p = join(www, base); p.startsWith(www); p = resolve(p, '..')) await chmod(p, 0o755);
    const nginx1 = await startNginx(dir, 'static-1', 1, staticSite(www), `${base}/timestamp.json`);
    procs.push(nginx1);
    const nginxAuto = await startNginx(dir, 'static-auto', 'auto', staticSite(www), `${base}/timestamp.json`);
    procs.push(nginxAuto);
    const lb = await startNginx(dir, 'lb-1', 1, deployProxySite([`127.0.0.1:${tufoci.port}`], join(dir, 'nginx-lb-cache')), `${base}/timestamp.json`);
    procs.push(lb);
    for (const path of ['timestamp.json', '1.root.json']) {
      await (await fetch(`${lb.url}${base}/${path}`)).arrayBuffer();
      const again = await fetch(`${lb.url}${base}/${path}`);
      await again.arrayBuffer();
      if (again.headers.get('x-cache') !== 'HIT') throw new Error(`deploy/tufoci-proxy.conf did not cache ${path} (X-Cache ${again.headers.get('x-cache')})`);
    }
    const n = await fetch(`${nginx1.url}${base}/timestamp.json`);
    const nBytes = new Uint8Array(await n.arrayBuffer());
    const nEtag = n.headers.get('etag');
    if (n.status !== 200 || !nEtag || !Buffer.from(nBytes).equals(Buffer.from(tsBytes))) throw new Error(`nginx did not serve the same timestamp.json (HTTP ${n.status})`);
    if (n.headers.get('content-type') !== contentType) throw new Error(`Content-Type differs: tufoci ${contentType}, nginx ${n.headers.get('content-type')}`);
    for (const [u, etag] of [
      [tufoci.url, tsEtag],
      [nginx1.url, nEtag],
    ] as const) {
      const r = await fetch(`${u}${base}/timestamp.json`, { headers: { 'if-none-match': etag } });
      await r.body?.cancel();
      if (r.status !== 304) throw new Error(`${u}: If-None-Match did not give 304 (HTTP ${r.status})`);
    }

    const bare = await startBareNode(
      dir,
      {
        [`${base}/timestamp.json`]: { bytes: tsBytes, etag: tsEtag, cacheControl: ts.headers.get('cache-control') ?? '' },
        [`${base}/1.root.json`]: { bytes: rootBytes, etag: '"root"', cacheControl: 'public, max-age=31536000, immutable' },
      },
      `${base}/timestamp.json`,
    );
    procs.push(bare);

    const rows: Row[] = [
      { server: 'tufoci (1 Node process)', request: 'timestamp.json 200', url: `${tufoci.url}${base}/timestamp.json`, results: [] },
      { server: 'node:http bare (reference)', request: 'timestamp.json 200', url: `${bare.url}${base}/timestamp.json`, results: [] },
      { server: 'nginx worker_processes 1', request: 'timestamp.json 200', url: `${nginx1.url}${base}/timestamp.json`, results: [] },
      { server: 'nginx worker_processes auto', request: 'timestamp.json 200', url: `${nginxAuto.url}${base}/timestamp.json`, results: [] },
      { server: 'tufoci (1 Node process)', request: 'timestamp.json 304', url: `${tufoci.url}${base}/timestamp.json`, headers: { 'If-None-Match': tsEtag }, results: [] },
      { server: 'nginx worker_processes 1', request: 'timestamp.json 304', url: `${nginx1.url}${base}/timestamp.json`, headers: { 'If-None-Match': nEtag }, results: [] },
      { server: 'tufoci (1 Node process)', request: '1.root.json 200', url: `${tufoci.url}${base}/1.root.json`, results: [] },
      { server: 'nginx worker_processes 1', request: '1.root.json 200', url: `${nginx1.url}${base}/1.root.json`, results: [] },
      { server: LB, request: 'timestamp.json 200', url: `${lb.url}${base}/timestamp.json`, results: [] },
      { server: LB, request: 'timestamp.json 304', url: `${lb.url}${base}/timestamp.json`, headers: { 'If-None-Match': tsEtag }, results: [] },
    ];
    const wrkOpts = { seconds, connections, threads };
    console.error(`warming up (${rows.length} rows × 1 s), then ${runs} × ${rows.length} runs of ${seconds} s…`);
    for (const row of rows) await wrk(row.url, { ...wrkOpts, seconds: 1, ...(row.headers ? { headers: row.headers } : {}) });
    for (let i = 0; i < runs; i++) {
      for (const row of rows) {
        row.results.push(await wrk(row.url, { ...wrkOpts, ...(row.headers ? { headers: row.headers } : {}) }));
      }
      console.error(`run ${i + 1}/${runs} done`);
    }

    console.log(`\ntufoci service read benchmark — ${machine()}`);
    console.log(`wrk -t${threads} -c${connections} -d${seconds}s --latency, ${runs} runs per row (interleaved), medians; ${tsBytes.byteLength} B timestamp.json, ${rootBytes.byteLength} B 1.root.json`);
    console.log(`server and wrk share the machine, no CPU pinning; 1-min load average when the script started ${loadBefore.toFixed(2)}`);
    if (loadBefore > 0.7) console.log('WARNING: the machine was busy before this script started (other processes): figures are low and noisy');
    console.log(`"${LB}": deploy/tufoci-proxy.conf in front of the same tufoci (timestamp.json cached 1 s)\n`);
    const med = (r: Row, k: keyof WrkResult): number => median(r.results.map((x) => x[k]));
    const nginxRps = (request: string): number => med(rows.find((r) => r.server === 'nginx worker_processes 1' && r.request === request) as Row, 'rps');
    const lbRatio = med(rows.find((r) => r.server === LB && r.request === 'timestamp.json 200') as Row, 'rps') / nginxRps('timestamp.json 200');
    console.table(
      rows.map((r) => ({
        request: r.request,
        server: r.server,
        'req/s': Math.round(med(r, 'rps')),
        'p50 ms': +med(r, 'p50ms').toFixed(2),
        'p99 ms': +med(r, 'p99ms').toFixed(2),
        'vs nginx(1)': r.server === 'nginx worker_processes 1' ? '1.00' : (med(r, 'rps') / nginxRps(r.request)).toFixed(2),
        errors: r.results.reduce((a, x) => a + x.errors, 0),
      })),
    );
    const ratio = med(rows[0] as Row, 'rps') / nginxRps('timestamp.json 200');
    const bareRatio = med(rows[1] as Row, 'rps') / nginxRps('timestamp.json 200');
    const tufociRatio = (request: string): number => med(rows.find((r) => r.server === 'tufoci (1 Node process)' && r.request === request) as Row, 'rps') / nginxRps(request);
    console.log(`timestamp.json: tufoci / nginx(worker_processes 1) = ${ratio.toFixed(2)}× (target ≥ 0.80×: ${ratio >= 0.8 ? 'met' : 'NOT met'})`);
    console.log(`                304: ${tufociRatio('timestamp.json 304').toFixed(2)}×; 1.root.json 200: ${tufociRatio('1.root.json 200').toFixed(2)}×`);
    console.log(`                bare node:http / nginx(worker_processes 1) = ${bareRatio.toFixed(2)}× (node:http's per-request cost, without a framework)`);
    console.log(`                tufoci behind the deploy/ load balancer / nginx(worker_processes 1) = ${lbRatio.toFixed(2)}×`);

    if (profile) {
      const profDir = join(dir, 'profile');
      const prof = await startTufoci({ dataDir: join(dir, 'tufoci'), nodeArgs: ['--cpu-prof', '--cpu-prof-dir', profDir] });
      procs.push(prof);
      await wrk(`${prof.url}${base}/timestamp.json`, { ...wrkOpts, seconds: 2 });
      const r = await wrk(`${prof.url}${base}/timestamp.json`, wrkOpts);
      await prof.stop(); // SIGTERM → close → process.exit writes the profile
      const file = readdirSync(profDir).find((f) => f.endsWith('.cpuprofile'));
      if (!file) throw new Error(`no .cpuprofile written in ${profDir}`);
      const summary = summarizeProfile(join(profDir, file));
      console.log(`\nCPU profile of tufoci serving timestamp.json (${Math.round(r.rps)} req/s under the profiler; % of non-idle samples)`);
      console.log('self time by file / package');
      console.table(summary.files);
      console.log('self time by function');
      console.table(summary.functions);
      console.log('inclusive time by function (JavaScript frames)');
      console.table(summary.inclusive);
      const keep = join(tmpdir(), `tufoci-read-${Date.now()}.cpuprofile`);
      await writeFile(keep, await readFile(join(profDir, file)));
      console.log(`profile kept at ${keep} (open in Chrome DevTools › Performance)`);
    }
    console.log(`\ntotal ${((Date.now() - started) / 1000).toFixed(0)} s`);
  } finally {
    for (const p of procs.reverse()) await p.stop().catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  }
}

if (import.meta.main) {
  main().catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
