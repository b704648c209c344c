/**
 * Notary v1 as a benchmark peer: runs `notary-signer` + `notary-server` (Debian
 * package `notary` 0.7) beside our benchmarks, so that a benchmark can time
 * `notary lookup <gun> <tag>` next to `tufoci verify` in the same run.
 *
 *   PATH=$PWD/node_modules/.bin:$PATH node bench/notary-peer.ts
 *
 * What it sets up (see ../shared/notes/notary-v1-peer.md for the checked facts):
 *  - a temporary directory with a throwaway test CA and two leaf certificates
 *    (server, signer; serverAuth+clientAuth, SAN IP:127.0.0.1 + DNS:localhost),
 *    all under `TEST-ONLY-certs/` with a TEST-ONLY README beside them;
 *  - notary-signer (gRPC, mutual TLS) and notary-server (HTTPS) with memory
 *    storage on free loopback ports, started by this module and stopped by PID
 *    (SIGTERM, then SIGKILL after a grace; SIGKILL from an exit hook as a last resort);
 *  - per repository: `notary init -p <gun>` (the server holds the timestamp key),
 *    optionally a CI-style delegation `targets/releases` with its own generated
 *    key, then every tag published by hash in ONE `notary publish`, as Docker
 *    Content Trust does with `addhash` + `publish`. To stage 10,000 tags in
 *    seconds rather than minutes, the first tag is staged by a real
 *    `notary addhash`, the byte format of the change file it wrote is checked
 *    against ours, and the remaining changes are written straight into
 *    `trust_dir/tuf/<gun>/changelist/` in that same format. After the publish,
 *    `notary list` must show every tag with its sha256, and the changelist must be empty.
 *  - lookups: `notary -c <config> lookup <gun> <tag>` as a child process, timed
 *    spawn→exit with performance.now(). 'cold' = a fresh trust_dir whose config
 *    pins the GUN's root certificate key id (`trust_pinning.certs`), no cached
 *    metadata; 'warm' = a trust_dir in which a lookup was already done.
 *    Requests and response bytes are counted from notary-server's JSON access
 *    log (`msg == "response completed"`, `http.request.uri`,
 *    `http.response.written`): the lines written between the start of the lookup
 *    and a marker request (`GET /v2/?bench-marker=<uuid>`) sent after it exited.
 *
 * Run directly, it benchmarks delegated repositories of BENCH_SIZES tags.
 * Environment (all optional):
 *   BENCH_SIZES=10,1000,10000   repository sizes (tags)
 *   BENCH_COLD_RUNS=5           cold lookups per size
 *   BENCH_WARM_RUNS=10          warm lookups per size
 *   BENCH_KEEP=1                keep the temporary directory (printed) for inspection
 *
 * Imported, use `startNotary()`, `peer.createRepository()`, `peer.lookup()`, `peer.stop()`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { closeSync, openSync, readFileSync, rmSync } from 'node:fs';
import { mkdir, mkdtemp, open, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { request as httpsRequest } from 'node:https';
import { connect } from 'node:net';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';
import { freeLoopbackPort } from '../test/support/ports.ts';
import { machine, median } from './stats.ts';

const NOTARY = '/usr/bin/notary';
const NOTARY_SERVER = '/usr/bin/notary-server';
const NOTARY_SIGNER = '/usr/bin/notary-signer';
const OPENSSL = 'openssl';
/** The delegation a CI job signs tags into (our comparable setup signs with a delegated CI key). */
export const CI_DELEGATION = 'targets/releases';

/** Throwaway passphrases for the throwaway keys, passed to every `notary` child. */
const PASSPHRASE_ENV: Record<string, string> = {
  NOTARY_ROOT_PASSPHRASE: 'TEST-ONLY-root-passphrase',
  NOTARY_TARGETS_PASSPHRASE: 'TEST-ONLY-targets-passphrase',
  NOTARY_SNAPSHOT_PASSPHRASE: 'TEST-ONLY-snapshot-passphrase',
  NOTARY_DELEGATION_PASSPHRASE: 'TEST-ONLY-delegation-passphrase',
};

// ------------------------------------------------------------------ API types

export interface NotaryTag {
  tag: string;
  size: number;
  /** Lower-case hex. */
  sha256: string;
}

export interface NotaryRepository {
  gun: string;
  /** Key id of the root certificate in root.json (what `trust_pinning.certs` pins). */
  rootKeyId: string;
  /** Role the tags were published into: 'targets' or CI_DELEGATION. */
  role: string;
  tags: number;
  /** Wall-clock milliseconds of the population steps; `totalMs` is their sum. */
  timings: { initMs: number; delegationMs: number; stageMs: number; publishMs: number; verifyMs: number; totalMs: number };
}

export interface LookupResult {
  /** Wall clock of the whole `notary lookup` process, spawn→exit. */
  ms: number;
  /** Responses notary-server logged for this lookup. */
  requests: number;
  /** Sum of `http.response.written` over those responses. */
  bytes: number;
  /** The lookup exited 0 and printed the expected sha256. */
  ok: boolean;
  /** Request URIs in log order (for inspection). */
  uris: string[];
}

export interface NotaryPeer {
  dir: string;
  /** https://127.0.0.1:PORT of notary-server. */
  url: string;
  serverPid: number;
  signerPid: number;
  /** Test CA certificate (PEM) that signed the server and signer leaves. */
  caFile: string;
  createRepository(gun: string, tags: NotaryTag[], opts?: { delegation?: boolean }): Promise<NotaryRepository>;
  lookup(gun: string, tag: string, mode: 'cold' | 'warm'): Promise<LookupResult>;
  stop(): Promise<void>;
}

// ------------------------------------------------------------------ child processes

interface Tracked {
  child: ChildProcess;
  exited: Promise<void>;
}

/** Every child this module has started and not yet seen exit: killed by the exit hooks. */
const liveChildren = new Set<Tracked>();
/** Temporary directories of running peers: removed by the exit hooks. */
const liveDirs = new Set<string>();
const runningPeers = new Set<NotaryPeer>();

function isRunning(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

function track(child: ChildProcess): Tracked {
  const exited = new Promise<void>((res) => child.once('close', () => res()));
  const t: Tracked = { child, exited };
  liveChildren.add(t);
  void exited.then(() => liveChildren.delete(t));
  return t;
}

/** SIGTERM by PID, SIGKILL after `graceMs`; resolves once the process has exited. */
async function stopByPid(t: Tracked, graceMs = 3000): Promise<void> {
  const { child } = t;
  if (child.pid === undefined || !isRunning(child)) return;
  try {
    process.kill(child.pid, 'SIGTERM');
  } catch {
    /* already gone */
  }
  const timer = setTimeout(() => {
    if (child.pid !== undefined && isRunning(child)) {
      try {
        process.kill(child.pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
  }, graceMs);
  await t.exited;
  clearTimeout(timer);
}

function onExit(): void {
  // Last resort: synchronous, so only SIGKILL and rmSync.
  for (const t of liveChildren) {
    if (t.child.pid !== undefined && isRunning(t.child)) {
      try {
        process.kill(t.child.pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
  }
  for (const d of liveDirs) rmSync(d, { recursive: true, force: true });
}

let signalling = false;
function onSignal(signal: NodeJS.Signals): void {
  if (signalling) return;
  signalling = true;
  console.error(`\nnotary-peer: ${signal}, stopping notary-server and notary-signer`);
  const all = Promise.allSettled([...runningPeers].map((p) => p.stop()));
  const hardStop = setTimeout(() => process.exit(signal === 'SIGINT' ? 130 : 143), 6000);
  void all.finally(() => {
    clearTimeout(hardStop);
    process.exit(signal === 'SIGINT' ? 130 : 143);
  });
}

function installHooks(): void {
  if (runningPeers.size > 0) return;
  process.on('exit', onExit);
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
}

function removeHooks(): void {
  if (runningPeers.size > 0) return;
  process.off('exit', onExit);
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
}

interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Run a short-lived command to completion, bounded by `timeoutMs` (then SIGKILL by PID). */
async function run(command: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<RunResult> {
  const timeoutMs = opts.timeoutMs ?? 60_000;
  const t0 = performance.now();
  const child = spawn(command, args, { cwd: opts.cwd, env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const t = track(child);
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout?.on('data', (c: Buffer) => out.push(c));
  child.stderr?.on('data', (c: Buffer) => err.push(c));
  let spawnError: Error | undefined;
  child.once('error', (e) => {
    spawnError = e;
  });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    if (child.pid !== undefined && isRunning(child)) process.kill(child.pid, 'SIGKILL');
  }, timeoutMs);
  // 'exit' for the timing (the process has ended); 'close' so that all output has been read.
  const exited = new Promise<number>((res) => {
    child.once('exit', () => res(performance.now()));
    child.once('error', () => res(performance.now()));
  });
  await t.exited;
  const t1 = await exited;
  clearTimeout(timer);
  if (spawnError) throw new Error(`${command} could not be started: ${spawnError.message}`);
  const result = { code: child.exitCode, signal: child.signalCode, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8'), ms: t1 - t0 };
  if (timedOut) throw new Error(`${command} ${args.join(' ')} did not finish within ${timeoutMs} ms; stderr: ${result.stderr.slice(-4000)}`);
  return result;
}

/** `run`, throwing with the child's stderr unless it exits 0. */
async function runOk(command: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<RunResult> {
  const r = await run(command, args, opts);
  if (r.code !== 0) {
    throw new Error(`${command} ${args.join(' ')} failed (${r.code !== null ? `exit code ${r.code}` : r.signal}):\n${r.stderr.slice(-4000)}${r.stdout ? `\nstdout: ${r.stdout.slice(-2000)}` : ''}`);
  }
  return r;
}

interface Daemon extends Tracked {
  pid: number;
  logFile: string;
  what: string;
}

/**
 * A long-running server whose stdout+stderr go straight to `logFile` (the file
 * descriptor is the child's own, so a line is in the file as soon as the child wrote it).
 */
async function startDaemon(what: string, command: string, args: string[], opts: { cwd: string; logFile: string }): Promise<Daemon> {
  const fd = openSync(opts.logFile, 'a', 0o600);
  let child: ChildProcess;
  try {
    child = spawn(command, args, { cwd: opts.cwd, env: process.env, stdio: ['ignore', fd, fd] });
  } finally {
    closeSync(fd);
  }
  const t = track(child);
  await new Promise<void>((res, rej) => {
    child.once('spawn', res);
    child.once('error', (e) => rej(new Error(`${what} (${command}) could not be started: ${e.message}`)));
  });
  if (child.pid === undefined) throw new Error(`${what} has no pid`);
  return { ...t, pid: child.pid, logFile: opts.logFile, what };
}

function logTail(file: string, chars = 3000): string {
  try {
    return readFileSync(file, 'utf8').slice(-chars);
  } catch {
    return '(no log)';
  }
}

function daemonExit(d: Daemon): string | undefined {
  const { child } = d;
  if (child.exitCode !== null) return `exit code ${child.exitCode}`;
  return child.signalCode ?? undefined;
}

// ------------------------------------------------------------------ readiness

/** One HTTPS GET trusting only `ca`; resolves with status and body. */
function httpsGet(url: string, ca: string, timeoutMs: number): Promise<{ status: number; body: string }> {
  return new Promise((res, rej) => {
    const req = httpsRequest(url, { ca, agent: false, timeout: timeoutMs }, (resp) => {
      const chunks: Buffer[] = [];
      resp.on('data', (c: Buffer) => chunks.push(c));
      resp.on('end', () => res({ status: resp.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      resp.on('error', rej);
    });
    req.on('timeout', () => req.destroy(new Error(`timeout after ${timeoutMs} ms`)));
    req.on('error', rej);
    req.end();
  });
}

function tcpAccepts(port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((res) => {
    const socket = connect({ host: '127.0.0.1', port });
    const done = (ok: boolean): void => {
      socket.destroy();
      res(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

async function waitUntil(d: Daemon, what: string, probe: () => Promise<string | true>, timeoutMs = 20_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  let last = '';
  while (performance.now() < deadline) {
    const exit = daemonExit(d);
    if (exit !== undefined) throw new Error(`${d.what} ended (${exit}) before ${what}; log:\n${logTail(d.logFile)}`);
    const r = await probe().catch((e: unknown) => String(e));
    if (r === true) return;
    last = r;
    await sleep(50);
  }
  throw new Error(`${d.what} not ready (${what}) within ${timeoutMs} ms (${last}); log:\n${logTail(d.logFile)}`);
}

// ------------------------------------------------------------------ certificates

const TEST_ONLY_README = `TEST-ONLY: throwaway certificates and keys generated by bench/notary-peer.ts
for a local Notary v1 benchmark on 127.0.0.1. They protect nothing, are deleted
when the benchmark stops, and must never be used for anything else.
`;

async function makeTestPki(dir: string): Promise<{ ca: string; server: { cert: string; key: string }; signer: { cert: string; key: string } }> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await writeFile(join(dir, 'README-TEST-ONLY.txt'), TEST_ONLY_README);
  const ca = join(dir, 'TEST-ONLY-ca.crt');
  const caKey = join(dir, 'TEST-ONLY-ca.key');
  await runOk(OPENSSL, [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', caKey, '-out', ca, '-days', '30', '-subj', '/O=TEST-ONLY/CN=TEST-ONLY notary-peer benchmark CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
  ], { cwd: dir });
  const leaf = async (name: string): Promise<{ cert: string; key: string }> => {
    const key = join(dir, `TEST-ONLY-${name}.key`);
    const csr = join(dir, `TEST-ONLY-${name}.csr`);
    const cert = join(dir, `TEST-ONLY-${name}.crt`);
    const ext = join(dir, `TEST-ONLY-${name}.ext`);
    await writeFile(ext, [
      '# TEST-ONLY leaf certificate extensions (bench/notary-peer.ts)',
      'basicConstraints=CA:FALSE',
      'keyUsage=critical,digitalSignature,keyEncipherment',
      'extendedKeyUsage=serverAuth,clientAuth',
      'subjectAltName=IP:127.0.0.1,DNS:localhost',
      '',
    ].join('\n'));
    await runOk(OPENSSL, ['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', csr, '-subj', `/O=TEST-ONLY/CN=TEST-ONLY notary-${name}`], { cwd: dir });
    await runOk(OPENSSL, ['x509', '-req', '-in', csr, '-CA', ca, '-CAkey', caKey, '-CAcreateserial', '-out', cert, '-days', '30', '-extfile', ext], { cwd: dir });
    return { cert, key };
  };
  return { ca, server: await leaf('server'), signer: await leaf('signer') };
}

/** A key + self-signed certificate for the CI delegation (valid > 6 months, or notary warns "near expiry"). */
async function makeDelegationKey(dir: string, name: string): Promise<{ cert: string; key: string }> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await writeFile(join(dir, 'README-TEST-ONLY.txt'), TEST_ONLY_README);
  const key = join(dir, `TEST-ONLY-${name}.key`);
  const cert = join(dir, `TEST-ONLY-${name}.crt`);
  await runOk(OPENSSL, ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', cert, '-days', '400', '-subj', `/O=TEST-ONLY/CN=TEST-ONLY ${name}`], { cwd: dir });
  return { cert, key };
}

// ------------------------------------------------------------------ changelist

/**
 * One staged change exactly as `notary addhash` writes it:
 * `{"action":"create","role":<role>,"type":"target","path":<tag>,"data":base64(FileMeta JSON)}`
 * with FileMeta `{"length":<size>,"hashes":{"sha256":base64(digest)}}`.
 */
export function addhashChange(role: string, t: NotaryTag): string {
  if (!/^[0-9a-f]{64}$/.test(t.sha256)) throw new Error(`tag ${t.tag}: sha256 must be 64 lower-case hex digits`);
  const meta = JSON.stringify({ length: t.size, hashes: { sha256: Buffer.from(t.sha256, 'hex').toString('base64') } });
  return JSON.stringify({ action: 'create', role, type: 'target', path: t.tag, data: Buffer.from(meta).toString('base64') });
}

/** A changelist file name as notary's file changelist makes it: `%020d_<uuid>.change`, UnixNano first (it sorts by name). */
function changeFileName(unixNanos: bigint): string {
  return `${unixNanos.toString().padStart(20, '0')}_${randomUUID()}.change`;
}

// ------------------------------------------------------------------ the peer

interface RepoState {
  info: NotaryRepository;
  expected: Map<string, string>;
  warmDir?: string;
  warmConfig?: string;
}

/**
 * Start notary-signer and notary-server on free loopback ports, ready once
 * `/_notary_server/health` answers 200 over TLS (bounded wait, 20 s each).
 * `opts.dir` (default: a new mkdtemp directory) holds certificates, configs,
 * logs and client trust dirs; `stop()` removes it (BENCH_KEEP=1 keeps it).
 */
export async function startNotary(opts: { dir?: string } = {}): Promise<NotaryPeer> {
  const dir = opts.dir ?? (await mkdtemp(join(tmpdir(), 'notary-peer-')));
  await mkdir(dir, { recursive: true, mode: 0o700 });
  installHooks();
  liveDirs.add(dir);
  const daemons: Daemon[] = [];
  let stopped = false;

  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    // Server first (it is the signer's client), then the signer.
    for (const d of [...daemons].reverse()) await stopByPid(d).catch(() => undefined);
    if (process.env.BENCH_KEEP === '1') console.error(`notary-peer: kept ${dir}`);
    else await rm(dir, { recursive: true, force: true });
    liveDirs.delete(dir);
    runningPeers.delete(peer);
    removeHooks();
  };
  // Registered before anything can fail, so that the signal hooks see it.
  const peer = { stop } as NotaryPeer;
  runningPeers.add(peer);

  try {
    const pki = await makeTestPki(join(dir, 'TEST-ONLY-certs'));
    const caPem = await readFile(pki.ca, 'utf8');
    const signerPort = await freeLoopbackPort();
    const serverPort = await freeLoopbackPort();
    const url = `https://127.0.0.1:${serverPort}`;

    const signerConfig = join(dir, 'signer-config.json');
    await writeFile(signerConfig, JSON.stringify({
      server: { grpc_addr: `127.0.0.1:${signerPort}`, tls_cert_file: pki.signer.cert, tls_key_file: pki.signer.key, client_ca_file: pki.ca },
      storage: { backend: 'memory' },
      logging: { level: 'info' },
    }, null, 2));
    const serverConfig = join(dir, 'server-config.json');
    await writeFile(serverConfig, JSON.stringify({
      server: { http_addr: `127.0.0.1:${serverPort}`, tls_cert_file: pki.server.cert, tls_key_file: pki.server.key },
      trust_service: {
        type: 'remote', hostname: '127.0.0.1', port: String(signerPort), key_algorithm: 'ecdsa',
        tls_ca_file: pki.ca, tls_client_cert: pki.server.cert, tls_client_key: pki.server.key,
      },
      storage: { backend: 'memory' },
      logging: { level: 'info' },
    }, null, 2));

    const signer = await startDaemon('notary-signer', NOTARY_SIGNER, ['-config', signerConfig], { cwd: dir, logFile: join(dir, 'notary-signer.log') });
    daemons.push(signer);
    await waitUntil(signer, `accepting on 127.0.0.1:${signerPort}`, async () => ((await tcpAccepts(signerPort, 500)) ? true : 'not listening'));
    const server = await startDaemon('notary-server', NOTARY_SERVER, ['-config', serverConfig], { cwd: dir, logFile: join(dir, 'notary-server.log') });
    daemons.push(server);
    await waitUntil(server, `GET ${url}/_notary_server/health`, async () => {
      const r = await httpsGet(`${url}/_notary_server/health`, caPem, 1000);
      return r.status === 200 ? true : `HTTP ${r.status} ${r.body.slice(0, 200)}`;
    });

    const publisherDir = join(dir, 'publisher');
    await mkdir(publisherDir, { recursive: true, mode: 0o700 });
    const publisherConfig = join(dir, 'publisher-config.json');
    await writeFile(publisherConfig, JSON.stringify({ trust_dir: publisherDir, remote_server: { url, root_ca: pki.ca } }, null, 2));
    const repos = new Map<string, RepoState>();
    const notaryEnv = { ...PASSPHRASE_ENV };
    const notary = (args: string[], timeoutMs = 120_000): Promise<RunResult> => runOk(NOTARY, ['-c', publisherConfig, ...args], { cwd: dir, env: notaryEnv, timeoutMs });

    const clientConfig = async (trustDir: string, gun: string, rootKeyId: string): Promise<string> => {
      await mkdir(trustDir, { recursive: true, mode: 0o700 });
      const file = join(trustDir, '..', `${trustDir.split('/').pop()}-config.json`);
      await writeFile(file, JSON.stringify({ trust_dir: trustDir, remote_server: { url, root_ca: pki.ca }, trust_pinning: { certs: { [gun]: [rootKeyId] } } }, null, 2));
      return file;
    };

    /** Access-log lines from byte `offset` up to the marker request's line. */
    const accessLogSince = async (offset: number, marker: string): Promise<Array<{ uri: string; written: number }>> => {
      const deadline = performance.now() + 5000;
      const fh = await open(server.logFile, 'r');
      try {
        while (true) {
          const { size } = await fh.stat();
          const buf = Buffer.alloc(size - offset);
          if (buf.length > 0) await fh.read(buf, 0, buf.length, offset);
          const lines = buf.toString('utf8').split('\n');
          const markerAt = lines.findIndex((l) => l.includes(marker));
          if (markerAt >= 0) {
            const out: Array<{ uri: string; written: number }> = [];
            for (const line of lines.slice(0, markerAt)) {
              if (!line.startsWith('{')) continue;
              let j: Record<string, unknown>;
              try {
                j = JSON.parse(line) as Record<string, unknown>;
              } catch {
                continue;
              }
              if (j.msg !== 'response completed') continue;
              out.push({ uri: String(j['http.request.uri']), written: Number(j['http.response.written'] ?? 0) });
            }
            return out;
          }
          if (performance.now() > deadline) throw new Error(`marker ${marker} did not appear in ${server.logFile} within 5 s`);
          await sleep(2);
        }
      } finally {
        await fh.close();
      }
    };

    let clientSeq = 0;
    const timedLookup = async (config: string, gun: string, tag: string, expected: string): Promise<LookupResult> => {
      const offset = (await stat(server.logFile)).size;
      const r = await run(NOTARY, ['-c', config, 'lookup', gun, tag], { cwd: dir, timeoutMs: 60_000 });
      const marker = `bench-marker=${randomUUID()}`;
      const m = await httpsGet(`${url}/v2/?${marker}`, caPem, 5000);
      if (m.status !== 200) throw new Error(`marker request answered HTTP ${m.status}`);
      const lines = await accessLogSince(offset, marker);
      const ok = r.code === 0 && r.stdout.includes(`sha256:${expected}`);
      if (!ok) console.error(`notary lookup ${gun} ${tag} failed (exit ${r.code ?? r.signal}): ${r.stderr.slice(-2000)} ${r.stdout.slice(-500)}`);
      return { ms: r.ms, requests: lines.length, bytes: lines.reduce((s, l) => s + l.written, 0), ok, uris: lines.map((l) => l.uri) };
    };

    Object.assign(peer, {
      dir,
      url,
      serverPid: server.pid,
      signerPid: signer.pid,
      caFile: pki.ca,

      async createRepository(gun: string, tags: NotaryTag[], ropts: { delegation?: boolean } = {}): Promise<NotaryRepository> {
        if (stopped) throw new Error('notary peer is stopped');
        if (repos.has(gun)) throw new Error(`repository ${gun} already exists`);
        if (tags.length === 0) throw new Error('createRepository needs at least one tag');
        const role = ropts.delegation ? CI_DELEGATION : 'targets';
        const t0 = performance.now();
        await notary(['init', '-p', gun]);
        const root = JSON.parse(await readFile(join(publisherDir, 'tuf', gun, 'metadata', 'root.json'), 'utf8')) as { signed: { roles: { root: { keyids: string[] } } } };
        const rootKeyId = root.signed.roles.root.keyids[0];
        if (!rootKeyId) throw new Error(`${gun}: root.json has no root key id`);
        const t1 = performance.now();

        if (ropts.delegation) {
          // CI-style: a delegation key the CI job holds, with its certificate registered in targets.json.
          const ci = await makeDelegationKey(join(dir, 'TEST-ONLY-delegations', gun.replace(/[^A-Za-z0-9.-]/g, '_')), 'ci-releases');
          await notary(['delegation', 'add', gun, CI_DELEGATION, ci.cert, '--all-paths']);
          await notary(['key', 'import', ci.key, '--role', CI_DELEGATION, '--gun', gun]);
          await notary(['publish', gun]);
        }
        const t2 = performance.now();

        // Stage: the first tag through the real client, then check our encoding against the file it wrote.
        const changelist = join(publisherDir, 'tuf', gun, 'changelist');
        const first = tags[0] as NotaryTag;
        await notary(['addhash', gun, first.tag, String(first.size), '--sha256', first.sha256, ...(ropts.delegation ? ['--roles', CI_DELEGATION] : [])]);
        const staged = (await readdir(changelist)).filter((f) => f.endsWith('.change'));
        if (staged.length !== 1) throw new Error(`${gun}: expected one staged change after addhash, found ${staged.length}`);
        const real = (await readFile(join(changelist, staged[0] as string), 'utf8')).trim();
        const ours = addhashChange(role, first);
        if (real !== ours) throw new Error(`${gun}: notary addhash wrote a change our direct staging does not reproduce:\n  notary: ${real}\n  ours:   ${ours}`);
        if (!/^\d{20}_[0-9a-f-]{36}\.change$/.test(staged[0] as string)) throw new Error(`${gun}: unexpected changelist file name ${staged[0]}`);
        const base = BigInt(Date.now()) * 1_000_000n;
        for (let i = 1; i < tags.length; i++) {
          await writeFile(join(changelist, changeFileName(base + BigInt(i))), addhashChange(role, tags[i] as NotaryTag), { mode: 0o600 });
        }
        const t3 = performance.now();
        await notary(['publish', gun], 600_000);
        const t4 = performance.now();

        // Faithful? Everything staged must be published, and the server must list every tag with its hash.
        const left = (await readdir(changelist)).filter((f) => f.endsWith('.change'));
        if (left.length !== 0) throw new Error(`${gun}: ${left.length} changes still staged after publish`);
        const listed = new Map<string, string>();
        const list = await notary(['list', gun, ...(ropts.delegation ? ['--roles', CI_DELEGATION] : [])]);
        for (const line of list.stdout.split('\n')) {
          const m = /^(\S+)\s+([0-9a-f]{64})\s+(\d+)\s+(\S+)\s*$/.exec(line.trim());
          if (m) listed.set(m[1] as string, `${m[2]} ${m[3]} ${m[4]}`);
        }
        for (const t of tags) {
          const got = listed.get(t.tag);
          if (got !== `${t.sha256} ${t.size} ${role}`) throw new Error(`${gun}: tag ${t.tag} listed as ${got ?? '(missing)'}, expected ${t.sha256} ${t.size} ${role}`);
        }
        if (listed.size !== tags.length) throw new Error(`${gun}: notary list shows ${listed.size} targets, expected ${tags.length}`);
        const t5 = performance.now();

        const info: NotaryRepository = {
          gun,
          rootKeyId,
          role,
          tags: tags.length,
          timings: { initMs: t1 - t0, delegationMs: t2 - t1, stageMs: t3 - t2, publishMs: t4 - t3, verifyMs: t5 - t4, totalMs: t5 - t0 },
        };
        repos.set(gun, { info, expected: new Map(tags.map((t) => [t.tag, t.sha256])) });
        return info;
      },

      async lookup(gun: string, tag: string, mode: 'cold' | 'warm'): Promise<LookupResult> {
        if (stopped) throw new Error('notary peer is stopped');
        const repo = repos.get(gun);
        if (!repo) throw new Error(`unknown repository ${gun}: create it with createRepository first`);
        const expected = repo.expected.get(tag);
        if (expected === undefined) throw new Error(`${gun}: no tag ${tag} was published`);
        const clients = join(dir, 'clients');
        await mkdir(clients, { recursive: true, mode: 0o700 });
        if (mode === 'cold') {
          const trustDir = join(clients, `cold-${++clientSeq}`);
          const config = await clientConfig(trustDir, gun, repo.info.rootKeyId);
          try {
            return await timedLookup(config, gun, tag, expected);
          } finally {
            await rm(trustDir, { recursive: true, force: true });
            await rm(config, { force: true });
          }
        }
        if (!repo.warmConfig) {
          repo.warmDir = join(clients, `warm-${++clientSeq}`);
          repo.warmConfig = await clientConfig(repo.warmDir, gun, repo.info.rootKeyId);
          const prime = await timedLookup(repo.warmConfig, gun, tag, expected);
          if (!prime.ok) throw new Error(`${gun}: the priming lookup for warm runs failed`);
        }
        return timedLookup(repo.warmConfig, gun, tag, expected);
      },
    });
    return peer;
  } catch (error) {
    await stop();
    throw error;
  }
}

// ------------------------------------------------------------------ main

function envInt(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`${name} must be a positive integer, got ${raw}`);
  return n;
}

function sizesFromEnv(): number[] {
  const raw = process.env.BENCH_SIZES ?? '10,1000,10000';
  const sizes = raw.split(',').map((s) => Number(s.trim()));
  if (sizes.some((n) => !Number.isInteger(n) || n <= 0)) throw new Error(`BENCH_SIZES must be positive integers separated by commas, got ${raw}`);
  return sizes;
}

/** `n` tags v0…v(n-1) with deterministic digests and plausible manifest sizes. */
export function syntheticTags(n: number, seed = 'notary-peer'): NotaryTag[] {
  const out: NotaryTag[] = [];
  for (let i = 0; i < n; i++) {
    const digest = createHash('sha256').update(`${seed}/${i}`).digest();
    out.push({ tag: `v${i}`, size: 500 + digest.readUInt16BE(0), sha256: digest.toString('hex') });
  }
  return out;
}

function spread(xs: number[]): string {
  const lo = Math.min(...xs);
  const hi = Math.max(...xs);
  return lo === hi ? lo.toLocaleString('en-US') : `${lo.toLocaleString('en-US')}–${hi.toLocaleString('en-US')}`;
}

async function main(): Promise<void> {
  for (const bin of [NOTARY, NOTARY_SERVER, NOTARY_SIGNER]) {
    try {
      await stat(bin);
    } catch {
      throw new Error(`${bin} is missing: run \`apt-get install notary\``);
    }
  }
  const sizes = sizesFromEnv();
  const coldRuns = envInt('BENCH_COLD_RUNS', 5);
  const warmRuns = envInt('BENCH_WARM_RUNS', 10);
  console.log(`notary-peer: ${machine()}; sizes ${sizes.join(', ')}; ${coldRuns} cold + ${warmRuns} warm lookups each`);
  const started = performance.now();
  const peer = await startNotary();
  try {
    console.log(`notary-server ${peer.url} (pid ${peer.serverPid}), notary-signer pid ${peer.signerPid}, dir ${peer.dir}`);
    const rows: Array<Record<string, string | number>> = [];
    for (const n of sizes) {
      const gun = `bench.example/notary-peer/app-${n}-${randomBytes(3).toString('hex')}`;
      const tags = syntheticTags(n);
      const repo = await peer.createRepository(gun, tags, { delegation: true });
      const tm = repo.timings;
      console.log(
        `${n} tags: populated in ${(tm.totalMs / 1000).toFixed(2)} s ` +
          `(init ${tm.initMs.toFixed(0)} ms, delegation ${tm.delegationMs.toFixed(0)} ms, stage ${tm.stageMs.toFixed(0)} ms, ` +
          `publish ${tm.publishMs.toFixed(0)} ms, verify by notary list ${tm.verifyMs.toFixed(0)} ms)`,
      );
      const tag = (tags[tags.length - 1] as NotaryTag).tag;
      const cold: LookupResult[] = [];
      for (let i = 0; i < coldRuns; i++) cold.push(await peer.lookup(gun, tag, 'cold'));
      const warm: LookupResult[] = [];
      for (let i = 0; i < warmRuns; i++) warm.push(await peer.lookup(gun, tag, 'warm'));
      const allOk = [...cold, ...warm].every((r) => r.ok);
      rows.push({
        tags: n,
        'populate s': Number((tm.totalMs / 1000).toFixed(2)),
        'publish ms': Math.round(tm.publishMs),
        'cold ms (median)': Number(median(cold.map((r) => r.ms)).toFixed(1)),
        'cold requests': spread(cold.map((r) => r.requests)),
        'cold bytes': spread(cold.map((r) => r.bytes)),
        'warm ms (median)': Number(median(warm.map((r) => r.ms)).toFixed(1)),
        'warm requests': spread(warm.map((r) => r.requests)),
        'warm bytes': spread(warm.map((r) => r.bytes)),
        ok: allOk ? 'yes' : `NO (${[...cold, ...warm].filter((r) => !r.ok).length} failed)`,
      });
      console.log(`  cold uris: ${(cold[0] as LookupResult).uris.join(' ')}`);
      console.log(`  warm uris: ${(warm[0] as LookupResult).uris.join(' ')}`);
    }
    console.log(`\nnotary lookup (whole process, spawn→exit), delegation ${CI_DELEGATION}, root pinned for cold runs`);
    console.table(rows);
    console.log(`${machine()}; load average (1 min) ${loadavg()[0]?.toFixed(2)}; total ${((performance.now() - started) / 1000).toFixed(1)} s`);
  } finally {
    await peer.stop();
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  });
}
