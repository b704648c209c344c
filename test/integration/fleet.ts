/**
 * What the multi-instance tests share: an owner who signs root, targets and
 * the delegated `ci` role offline; the HTTP traffic of the test, recorded; an
 * upload client that behaves like a CI job racing other CI jobs; a timestamp
 * observer; and verification with the unmodified tuf-js Updater over HTTP.
 *
 * The upload client (one tag per upload):
 * - reads the current `ci` version from `GET /v1/repos/<repo>/status` and the
 *   tags of that version from `<v>.ci.json`, adds the tags it knows were
 *   acknowledged and its own, signs version v+1 and PUTs it;
 * - 201/200: acknowledged. 409 BUSY: waits Retry-After and sends the same
 *   bytes again. 409 VERSION_TAKEN / VERSION_ROLLBACK / VERSION_SKIP: backs off
 *   (jittered, exponential) and starts over from the status. 503: waits and
 *   sends the same bytes again. No answer (connection refused or reset): the
 *   outcome is unknown, so the same bytes go to the next instance (an upload
 *   that did land answers 200 unchanged). Anything else is a final failure,
 *   as is running out of attempts or time.
 */
import { startRegistry, type RegistryServer } from '../support/registry-server.ts';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { Updater } from 'tuf-js';
import { startServer, type RunningServer } from '../../src/main.ts';
import { MetadataStore, RegistryStore } from '../../src/storage/index.ts';
import { RegistryFetcher, metadataBaseUrl } from '../../src/client/registry-fetcher.ts';
import { buildRoot, buildTargets, isoExpiry, signMetadata, type ImageTarget } from '../../src/engine/index.ts';
import { InMemorySigner, generateKeyFiles, loadSignerFile, type TufKeyJson } from '../../src/keys/index.ts';
import { afterAll, beforeAll, onTestFailed } from 'vitest';
import type { TufociProcess, TufociTokenSpec } from '../support/tufoci-process.ts';

export const ADMIN_TOKEN = 'integration-admin-token-0123456789';
export const CI_TOKEN = 'integration-ci-token-0123456789ab';
export const TOKENS: TufociTokenSpec[] = [
  { name: 'admin', token: ADMIN_TOKEN, scopes: ['admin'] },
  { name: 'ci', token: CI_TOKEN, scopes: ['write:it/*'] },
];

const MINUTE = 60_000;
const DAY = 86_400_000;
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

export interface OnlineKeyFiles {
  dir: string;
  snapshotKey: string;
  timestampKey: string;
  snapshot: TufKeyJson;
  timestamp: TufKeyJson;
}

/** Online key files every instance is given (they must all sign with the keys root names). */
export async function makeOnlineKeys(): Promise<OnlineKeyFiles> {
  const dir = await mkdtemp(join(tmpdir(), 'tufoci-online-keys-'));
  const snapshot = await generateKeyFiles(join(dir, 'snapshot'), 'ed25519', 'integration test snapshot key');
  const timestamp = await generateKeyFiles(join(dir, 'timestamp'), 'ed25519', 'integration test timestamp key');
  return { dir, snapshotKey: snapshot.privatePath, timestampKey: timestamp.privatePath, snapshot: snapshot.public, timestamp: timestamp.public };
}

/** A manifest target of its own for each (repository, tag). */
export function imageFor(repo: string, tag: string): ImageTarget {
  const hex = createHash('sha256').update(`${repo}:${tag}`).digest('hex');
  return { digest: `sha256:${hex}`, size: 400 + (parseInt(hex.slice(0, 4), 16) % 4000), mediaType: OCI_MANIFEST };
}

/** The repository owner: offline root and targets keys, and the CI key `ci` is delegated to. */
export class Owner {
  readonly root = InMemorySigner.generate();
  readonly targets = InMemorySigner.generate();
  readonly ci = InMemorySigner.generate();
  readonly online: { snapshot: TufKeyJson; timestamp: TufKeyJson };
  targetsBytes!: Uint8Array;
  readonly #roots = new Map<string, Promise<Uint8Array>>();

  constructor(online: { snapshot: TufKeyJson; timestamp: TufKeyJson }) {
    this.online = online;
  }

  async init(): Promise<this> {
    const now = Date.now();
    this.targetsBytes = await signMetadata(
      buildTargets({
        version: 1,
        expires: isoExpiry(now + 30 * DAY),
        delegations: [{ name: 'ci', keys: [this.ci.public], threshold: 1, paths: ['v*'], terminating: true }],
      }),
      [this.targets],
    );
    return this;
  }

  /** 1.root.json of `repo`: the same keys for every repository, bound to `repo` by its scope. */
  rootFor(repo: string): Promise<Uint8Array> {
    let root = this.#roots.get(repo);
    if (!root) {
      root = signMetadata(
        buildRoot({
          version: 1,
          expires: isoExpiry(Date.now() + 365 * DAY),
          root: { keys: [this.root.public], threshold: 1 },
          targets: { keys: [this.targets.public], threshold: 1 },
          snapshot: { keys: [this.online.snapshot], threshold: 1 },
          timestamp: { keys: [this.online.timestamp], threshold: 1 },
          scope: repo,
        }),
        [this.root],
      );
      this.#roots.set(repo, root);
    }
    return root;
  }

  async createBody(repo: string): Promise<string> {
    const dec = new TextDecoder();
    return JSON.stringify({ root: JSON.parse(dec.decode(await this.rootFor(repo))), targets: JSON.parse(dec.decode(this.targetsBytes)) });
  }

  /** `version` of the ci role listing `targets`; expires in 50 minutes (the ci class allows 60). */
  ciBytes(version: number, targets: Record<string, ImageTarget>): Promise<Uint8Array> {
    return signMetadata(buildTargets({ version, expires: isoExpiry(Date.now() + 50 * MINUTE), targets }), [this.ci]);
  }
}

// ------------------------------------------------------------------ an in-process instance

export interface InProcessInstance {
  readonly name: string;
  readonly url: string;
  readonly running: RunningServer;
  /** Added to Date.now() by the instance's clock. */
  offsetMs: number;
  /** Its pino JSON lines. */
  readonly lines: string[];
  close(): Promise<void>;
}

/**
 * `startServer` in this process, configured as `tufoci serve` would be (same
 * registry, Redis, tokens, online key files), with an injected clock that the
 * test moves forward: `tufoci serve` has no way to take a clock offset, and
 * re-signing is otherwise hours away.
 */
export async function startInProcess(options: { name: string; registry: string; redis: string; keys: OnlineKeyFiles; refreshTickMs?: number }): Promise<InProcessInstance> {
  const dataDir = await mkdtemp(join(tmpdir(), 'tufoci-inproc-'));
  const lines: string[] = [];
  const logger = pino(
    { level: 'info' },
    {
      write(line: string) {
        if (lines.length < 100_000) lines.push(line);
      },
    },
  );
  const signers = { snapshot: [await loadSignerFile(options.keys.snapshotKey)], timestamp: [await loadSignerFile(options.keys.timestampKey)] };
  const instance = {
    name: options.name,
    offsetMs: 0,
    lines,
  } as { name: string; offsetMs: number; lines: string[]; url: string; running: RunningServer; close(): Promise<void> };
  const running = await startServer({
    dataDir,
    host: '127.0.0.1',
    port: 0,
    registry: options.registry,
    redis: options.redis,
    tokensEnv: JSON.stringify(TOKENS),
    refreshTickMs: options.refreshTickMs ?? 200,
    clock: () => Date.now() + instance.offsetMs,
    signers,
    logger,
  });
  instance.running = running;
  instance.url = running.url;
  let closed = false;
  instance.close = async () => {
    if (closed) return;
    closed = true;
    await running.close();
    await rm(dataDir, { recursive: true, force: true });
  };
  return instance;
}

// ------------------------------------------------------------------ traffic

export interface Endpoint {
  name: string;
  url: string;
}

export interface Exchange {
  /** When the request was sent and when it ended (epoch ms). */
  at: number;
  end: number;
  endpoint: string;
  method: string;
  path: string;
  status?: number;
  code?: string;
  /** No HTTP answer (refused, reset, timeout). */
  error?: string;
}

export interface Reply {
  status: number;
  headers: Headers;
  body: Uint8Array;
  /** `error.code` of a JSON error body. */
  code: string | undefined;
  json<T>(): T;
}

export class NoAnswer extends Error {}

/** Every request the test makes; answers below 400 are only counted. */
export class Traffic {
  readonly notable: Exchange[] = [];
  ok = 0;

  async call(ep: Endpoint, method: string, path: string, opts: { token?: string; body?: Uint8Array | string; timeoutMs?: number } = {}): Promise<Reply> {
    const headers: Record<string, string> = {};
    if (opts.token) headers['authorization'] = `Bearer ${opts.token}`;
    if (opts.body !== undefined) headers['content-type'] = 'application/json';
    const at = Date.now();
    let response: Response;
    let body: Uint8Array;
    try {
      response = await fetch(`${ep.url}${path}`, {
        method,
        headers,
        ...(opts.body !== undefined ? { body: opts.body } : {}),
        signal: AbortSignal.timeout(opts.timeoutMs ?? 60_000),
      });
      body = new Uint8Array(await response.arrayBuffer());
    } catch (error) {
      const cause = (error as { cause?: { code?: string; message?: string } }).cause;
      const text = `${String(error)}${cause ? ` (${cause.code ?? cause.message ?? String(cause)})` : ''}`;
      this.notable.push({ at, end: Date.now(), endpoint: ep.name, method, path, error: text });
      throw new NoAnswer(`${method} ${ep.name}${path}: ${text}`);
    }
    let code: string | undefined;
    if (response.status >= 400) {
      try {
        code = (JSON.parse(new TextDecoder().decode(body)) as { error?: { code?: string } }).error?.code;
      } catch {
        code = undefined;
      }
      this.notable.push({ at, end: Date.now(), endpoint: ep.name, method, path, status: response.status, ...(code !== undefined ? { code } : {}) });
    } else this.ok++;
    return {
      status: response.status,
      headers: response.headers,
      body,
      code,
      json: <T>() => JSON.parse(new TextDecoder().decode(body)) as T,
    };
  }

  /** 5xx answers. */
  serverErrors(): Exchange[] {
    return this.notable.filter((e) => e.status !== undefined && e.status >= 500);
  }

  noAnswers(): Exchange[] {
    return this.notable.filter((e) => e.error !== undefined);
  }

  summary(list: Exchange[] = this.notable, limit = 12): string {
    const counts = new Map<string, number>();
    for (const e of list) {
      const k = `${e.endpoint} ${e.method} ${e.status ?? 'no answer'} ${e.code ?? e.error?.slice(0, 80) ?? ''}`;
      counts.set(k, (counts.get(k) ?? 0) + 1);
    }
    return [...counts].sort((a, b) => b[1] - a[1]).slice(0, limit).map(([k, n]) => `${n}× ${k}`).join('\n');
  }
}

// ------------------------------------------------------------------ repositories

export async function createRepository(traffic: Traffic, ep: Endpoint, owner: Owner, repo: string): Promise<Reply> {
  return traffic.call(ep, 'POST', `/v1/repos/${repo}`, { token: ADMIN_TOKEN, body: await owner.createBody(repo) });
}

interface TimestampJson {
  signed: { version: number; expires: string; meta: Record<string, { version: number }> };
}

export async function readTimestamp(traffic: Traffic, ep: Endpoint, repo: string): Promise<{ version: number; expires: string; bytes: Uint8Array }> {
  const r = await traffic.call(ep, 'GET', `/v1/repos/${repo}/metadata/timestamp.json`);
  if (r.status !== 200) throw new Error(`timestamp.json of ${repo} from ${ep.name}: ${r.status} ${r.code ?? ''}`);
  const ts = r.json<TimestampJson>();
  return { version: ts.signed.version, expires: ts.signed.expires, bytes: r.body };
}

// ------------------------------------------------------------------ uploads

export interface UploadJob {
  repo: string;
  tag: string;
  image: ImageTarget;
  /** Index of the instance this job talks to first. */
  first: number;
}

export interface Ack {
  tag: string;
  image: ImageTarget;
  status: number;
  ciVersion: number;
  timestampVersion: number;
  endpoint: string;
  at: number;
}

export interface UploadOutcome {
  job: UploadJob;
  ack?: Ack;
  attempts: number;
  /** Every non-acknowledging answer on the way (codes or `no answer`). */
  codes: string[];
  /** Why it gave up. */
  failure?: string;
}

interface StatusJson {
  roles: Array<{ role: string; version: number }>;
}

interface CiJson {
  signed: { version: number; targets: Record<string, { length: number; hashes: { sha256: string }; custom?: { mediaType?: string } }> };
}

export interface UploaderOptions {
  owner: Owner;
  traffic: Traffic;
  /** Instances to talk to; the list may change (an instance that died is removed). */
  endpoints: () => Endpoint[];
  /** Give up after this many PUTs. */
  maxAttempts?: number;
  /** Give up at this time (epoch ms) unless `upload` is given another. */
  deadline: number;
  /** Backoff after losing a race: uniform in [0, min(cap, base·2^n)] after the n-th (default 50 ms, 8 s). */
  backoffBaseMs?: number;
  backoffCapMs?: number;
}

export class Uploader {
  readonly #o: UploaderOptions;
  /** Acknowledged uploads per repository. */
  readonly acks = new Map<string, Ack[]>();
  /** Tags of `<v>.ci.json` per repository and version (immutable files, so cached). */
  readonly #ciCache = new Map<string, Record<string, ImageTarget>>();

  constructor(options: UploaderOptions) {
    this.#o = options;
  }

  acknowledged(repo: string): Map<string, ImageTarget> {
    return new Map((this.acks.get(repo) ?? []).map((a) => [a.tag, a.image]));
  }

  #endpoint(i: number): Endpoint {
    const eps = this.#o.endpoints();
    if (eps.length === 0) throw new Error('no instance left');
    return eps[((i % eps.length) + eps.length) % eps.length] as Endpoint;
  }

  #backoff(conflicts: number): number {
    const { backoffBaseMs = 50, backoffCapMs = 8_000 } = this.#o;
    return Math.random() * Math.min(backoffCapMs, backoffBaseMs * 2 ** Math.min(conflicts, 16));
  }

  async #currentVersion(ep: Endpoint, repo: string): Promise<number> {
    const s = await this.#o.traffic.call(ep, 'GET', `/v1/repos/${repo}/status`);
    if (s.status !== 200) throw new Retry(`status ${s.status} ${s.code ?? ''}`, s.status);
    return s.json<StatusJson>().roles.find((r) => r.role === 'ci')?.version ?? 0;
  }

  async #base(ep: Endpoint, repo: string): Promise<{ version: number; targets: Record<string, ImageTarget> }> {
    const version = await this.#currentVersion(ep, repo);
    if (version === 0) return { version, targets: {} };
    const key = `${repo}@${version}`;
    let targets = this.#ciCache.get(key);
    if (!targets) {
      const f = await this.#o.traffic.call(ep, 'GET', `/v1/repos/${repo}/metadata/${version}.ci.json`);
      if (f.status !== 200) throw new Retry(`${version}.ci.json ${f.status} ${f.code ?? ''}`, f.status);
      targets = {};
      for (const [path, t] of Object.entries(f.json<CiJson>().signed.targets)) {
        targets[path] = { digest: `sha256:${t.hashes.sha256}`, size: t.length, mediaType: t.custom?.mediaType ?? OCI_MANIFEST };
      }
      this.#ciCache.set(key, targets);
    }
    return { version, targets };
  }

  /** One upload, retried as described above until acknowledged, refused for good, or `deadline` (epoch ms). */
  async upload(job: UploadJob, deadline = this.#o.deadline): Promise<UploadOutcome> {
    const { traffic, owner } = this.#o;
    const maxAttempts = this.#o.maxAttempts ?? 400;
    const outcome: UploadOutcome = { job, attempts: 0, codes: [] };
    let instance = job.first;
    let pending: { version: number; bytes: Uint8Array } | undefined;
    let conflicts = 0;
    while (outcome.attempts < maxAttempts) {
      if (Date.now() > deadline) {
        outcome.failure = `deadline after ${outcome.attempts} attempts`;
        return outcome;
      }
      const ep = this.#endpoint(instance);
      try {
        if (!pending) {
          const base = await this.#base(ep, job.repo);
          const targets: Record<string, ImageTarget> = { ...base.targets };
          for (const [tag, image] of this.acknowledged(job.repo)) targets[tag] = image;
          targets[job.tag] = job.image;
          pending = { version: base.version + 1, bytes: await owner.ciBytes(base.version + 1, targets) };
        }
        outcome.attempts++;
        const r = await traffic.call(ep, 'PUT', `/v1/repos/${job.repo}/metadata/${pending.version}.ci.json`, { token: CI_TOKEN, body: pending.bytes });
        if (r.status === 201 || r.status === 200) {
          const result = r.json<{ version: number; timestampVersion: number }>();
          const ack: Ack = { tag: job.tag, image: job.image, status: r.status, ciVersion: result.version, timestampVersion: result.timestampVersion, endpoint: ep.name, at: Date.now() };
          let list = this.acks.get(job.repo);
          if (!list) this.acks.set(job.repo, (list = []));
          list.push(ack);
          outcome.ack = ack;
          return outcome;
        }
        outcome.codes.push(`${r.status} ${r.code ?? ''}`);
        if (r.status === 409 && r.code === 'BUSY') {
          // At least Retry-After; longer (jittered, exponential) the more often this job met contention,
          // so that the writers queued on the lock stay few and their versions fresh.
          const after = Number(r.headers.get('retry-after'));
          conflicts++;
          await sleep(Math.max(Number.isFinite(after) && after > 0 ? after * 1000 : 1000, this.#backoff(conflicts)));
          // Same bytes again, unless the role moved on meanwhile (then that try would only be refused).
          if ((await this.#currentVersion(ep, job.repo)) >= pending.version) pending = undefined;
        } else if (r.status === 409 && (r.code === 'VERSION_TAKEN' || r.code === 'VERSION_ROLLBACK' || r.code === 'VERSION_SKIP')) {
          // Lost a race: back off (jittered, exponential) so that racing writers spread out, then start over.
          pending = undefined;
          conflicts++;
          await sleep(this.#backoff(conflicts));
        } else if (r.status === 503) {
          await sleep(200 + Math.random() * 200);
        } else {
          outcome.failure = `${r.status} ${r.code ?? ''}: ${new TextDecoder().decode(r.body).slice(0, 300)}`;
          return outcome;
        }
      } catch (error) {
        if (error instanceof NoAnswer) {
          outcome.codes.push('no answer');
          instance++;
          await sleep(50 + Math.random() * 100);
        } else if (error instanceof Retry) {
          outcome.codes.push(error.message);
          if (error.status >= 500) await sleep(200 + Math.random() * 200);
          else {
            outcome.failure = error.message;
            return outcome;
          }
        } else throw error;
      }
    }
    outcome.failure = `gave up after ${outcome.attempts} attempts`;
    return outcome;
  }
}

class Retry extends Error {
  readonly status: number;
  constructor(message: string, status: number) {
    super(message);
    this.status = status;
  }
}

/** Run `fn` over `items` with at most `limit` at a time. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await fn(items[i] as T);
      }
    }),
  );
  return out;
}

// ------------------------------------------------------------------ observation

/**
 * Polls timestamp.json of every repository on every instance while uploads
 * run, and records any answer whose version is below one that instance
 * served before (what a tuf-js client pinned to it would refuse as a rollback).
 */
export class TimestampObserver {
  readonly #traffic: Traffic;
  readonly #endpoints: () => Endpoint[];
  readonly #repos: readonly string[];
  readonly highest = new Map<string, number>();
  readonly regressions: Array<{ endpoint: string; repo: string; from: number; to: number }> = [];
  reads = 0;
  #running = false;
  #loop: Promise<void> | undefined;

  constructor(traffic: Traffic, endpoints: () => Endpoint[], repos: readonly string[]) {
    this.#traffic = traffic;
    this.#endpoints = endpoints;
    this.#repos = repos;
  }

  start(): void {
    this.#running = true;
    this.#loop = (async () => {
      // One repository at a time, on every instance, every 50 ms: enough to see order, and light:
      // after each write, the next read on the other instance reloads the head from the registry.
      for (let i = 0; this.#running; i++) {
        const repo = this.#repos[i % this.#repos.length] as string;
        await Promise.all([...this.#endpoints().map((ep) => this.#observe(ep, repo)), sleep(50)]);
      }
    })();
  }

  async #observe(ep: Endpoint, repo: string): Promise<void> {
    let version: number;
    try {
      version = (await readTimestamp(this.#traffic, ep, repo)).version;
    } catch {
      return; // recorded by Traffic (an instance that died, an outage)
    }
    this.reads++;
    const key = `${ep.name} ${repo}`;
    const before = this.highest.get(key) ?? 0;
    if (version < before) this.regressions.push({ endpoint: ep.name, repo, from: before, to: version });
    else this.highest.set(key, version);
  }

  async stop(): Promise<void> {
    this.#running = false;
    await this.#loop;
  }
}

// ------------------------------------------------------------------ verification

export interface TufCheck {
  missing: string[];
  wrong: string[];
  /** The timestamp the Updater ended up trusting. */
  timestampVersion: number;
  timestampExpires: string;
}

/**
 * A fresh, unmodified tuf-js Updater trusting 1.root.json, over HTTP from
 * the service at `baseUrl` — or, with `{ registry }`, straight from the
 * registry through the project's tuf-js fetcher over OCI (the stored truth,
 * no service cache in between): every expected tag must resolve, with its
 * digest and size.
 */
export async function verifyWithTuf(
  source: string | { registry: string },
  repo: string,
  rootBytes: Uint8Array,
  expected: ReadonlyMap<string, ImageTarget>,
): Promise<TufCheck> {
  const dir = await mkdtemp(join(tmpdir(), 'tufoci-tufjs-'));
  try {
    await writeFile(join(dir, 'root.json'), rootBytes);
    const updater =
      typeof source === 'string'
        ? new Updater({ metadataDir: dir, metadataBaseUrl: `${source}/v1/repos/${repo}/metadata` })
        : new Updater({
            metadataDir: dir,
            metadataBaseUrl: metadataBaseUrl(repo),
            fetcher: new RegistryFetcher({ metadata: new MetadataStore({ store: new RegistryStore({ url: source.registry }) }) }),
          });
    await updater.refresh();
    const missing: string[] = [];
    const wrong: string[] = [];
    for (const [tag, image] of expected) {
      const info = await updater.getTargetInfo(tag);
      if (!info) missing.push(tag);
      else if (`sha256:${info.hashes['sha256']}` !== image.digest || info.length !== image.size) wrong.push(tag);
    }
    const ts = JSON.parse(await readFile(join(dir, 'timestamp.json'), 'utf8')) as TimestampJson;
    return { missing, wrong, timestampVersion: ts.signed.version, timestampExpires: ts.signed.expires };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** The version of timestamp.json as the registry holds it (the truth the instances cache). */
export async function storedTimestampVersion(registryUrl: string, repo: string): Promise<number> {
  const metadata = new MetadataStore({ store: new RegistryStore({ url: registryUrl }) });
  const bytes = await metadata.readMetadata(repo, 'timestamp.json', 64 * 1024);
  return (JSON.parse(new TextDecoder().decode(bytes)) as TimestampJson).signed.version;
}

/** The warnings and errors among pino JSON log lines, shortened, oldest first. */
export function problemLines(lines: Iterable<Record<string, unknown>>, limit = 15): string[] {
  const out: string[] = [];
  for (const l of lines) {
    if (typeof l['level'] !== 'number' || l['level'] < 40) continue;
    const err = l['err'] as { code?: string; message?: string } | undefined;
    out.push(`${String(l['msg'])}${l['repository'] ? ` ${String(l['repository'])}` : ''}${err ? `: ${err.code ?? ''} ${String(err.message ?? '').slice(0, 160)}` : ''}`);
  }
  return out.slice(-limit);
}

/** When the running test fails, print each instance's last warnings and errors (call inside the test). */
export function logProblemsOnFailure(instances: Array<TufociProcess | InProcessInstance>): void {
  onTestFailed(() => {
    for (const i of instances) {
      const lines = 'logs' in i ? i.logs() : i.lines.flatMap((l) => (l.startsWith('{') ? [JSON.parse(l) as Record<string, unknown>] : []));
      const problems = problemLines(lines);
      if (problems.length) console.log(`${i.name}: last warnings and errors of its log:\n  ${problems.join('\n  ')}`);
    }
  });
}

/** Poll `check` until it returns true (generous bound; never a timed assertion). */
export async function eventually(what: string, check: () => Promise<boolean>, timeoutMs = 60_000, everyMs = 100): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`${what}: not reached within ${timeoutMs} ms`);
    await sleep(everyMs);
  }
}

/** The registry, shared online keys and owner every multi-instance test file starts with. */
export async function setUpFleet(): Promise<{ registry: RegistryServer; keys: OnlineKeyFiles; owner: Owner }> {
  const registry = await startRegistry();
  const keys = await makeOnlineKeys();
  return { registry, keys, owner: await new Owner(keys).init() };
}

export interface Fleet {
  registry: RegistryServer;
  keys: OnlineKeyFiles;
  owner: Owner;
}

/** The fleet of one test file: set up before its tests (beforeAll), torn down after them (afterAll). */
export function useFleet(): Fleet {
  const fleet = {} as Fleet;
  beforeAll(async () => {
    Object.assign(fleet, await setUpFleet());
  });
  afterAll(() => tearDownFleet(fleet.registry, fleet.keys));
  return fleet;
}

export async function tearDownFleet(registry: RegistryServer | undefined, keys: OnlineKeyFiles | undefined): Promise<void> {
  await registry?.stop();
  if (keys) await rm(keys.dir, { recursive: true, force: true });
}
