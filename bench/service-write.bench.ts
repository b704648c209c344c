/**
 * Service write-path benchmark:
 *
 *   PATH=$PWD/node_modules/.bin:$PATH node bench/service-write.bench.ts
 *
 * CI publishing tags: every upload is the next version of the delegated role
 * `ci` with one more tag, signed offline here with in-memory keys. Uploads/s
 * (= tags/s) and p50/p99 latency of one published tag (first attempt to
 * acknowledged, retries included), measured over HTTP against `tufoci serve`
 * processes started here, for three set-ups:
 *
 *   embedded     1 instance, OCI layout under its data dir, in-process coordination
 *   registry     1 instance, a real docker-registry (--registry) + redis-server (--redis)
 *   registry ×2  2 instances sharing that registry and Redis (and the online keys);
 *                the client sends its requests to them in turn, as a round-robin load balancer
 *
 * and three scenarios in each:
 *
 *   (a) one repository, one client publishing one tag after another;
 *   (a) one repository, BENCH_CLIENTS concurrent clients (CI jobs) each publishing its
 *       own tags. They collide on the repository's write lock and on the version:
 *       the client honours 409 BUSY + Retry-After, and on 409 VERSION_TAKEN /
 *       VERSION_ROLLBACK re-reads the head (status → current ci version → that
 *       file) and signs again on top of it, after a short jittered backoff;
 *   (b) BENCH_REPOS repositories in parallel, one client per repository publishing
 *       BENCH_TAGS_PER_REPO tags one after another;
 *   (c) as (b), but every upload adds BENCH_BATCH_TAGS tags at once (a CI job pushing
 *       `1.2.3`, `1.2`, `1`, `latest`… in one signed role version). This is batching:
 *       its rows count uploads and tags separately, and the target line says which
 *       figure it quotes. Every row before it is one tag per upload.
 *   (d) service-signed tags: each repository delegates `release` (r*) to the service's CI
 *       key, and CI jobs POST one tag per request to /v1/repos/<repo>/tags; the service
 *       signs the role. (d1) one repository, BENCH_SIGNED_ONE_CLIENTS concurrent jobs;
 *       (d2) BENCH_REPOS repositories × BENCH_SIGNED_CLIENTS concurrent jobs each. Requests
 *       queued behind a commit are signed together (group commit): one tag per request,
 *       several tags per role version.
 *
 * Where a client is the only writer of its repository (sequential, (b)) its
 * uploads are signed before the clock starts, so the bench process spends its
 * CPU on HTTP only; the concurrent clients sign as they go (they must: their
 * next version depends on what the others published). Per process CPU seconds
 * (from /proc) are printed per scenario, to show what saturates the 2 cores.
 *
 * Environment (all optional):
 * Each scenario stops at its tag count or its time limit, whichever comes first
 * (uploads in flight then finish); rates are tags acknowledged / wall time.
 *   BENCH_SEQ_TAGS=150  BENCH_SEQ_SECONDS=10     (a) sequential
 *   BENCH_CLIENTS=8     BENCH_CONC_TAGS=120  BENCH_CONC_SECONDS=10   (a) concurrent clients, tags in all
 *   BENCH_REPOS=100     BENCH_TAGS_PER_REPO=40  BENCH_MANY_SECONDS=20   (b)
 *   BENCH_BATCH_TAGS=10 BENCH_BATCH_UPLOADS_PER_REPO=20  BENCH_BATCH_SECONDS=20   (c); BENCH_BATCH_TAGS=0 skips it
 *   BENCH_SIGNED_ONE_CLIENTS=64 BENCH_SIGNED_ONE_TAGS=3000   (d1)
 *   BENCH_SIGNED_CLIENTS=8  BENCH_SIGNED_TAGS_PER_CLIENT=25  BENCH_SIGNED_SECONDS=20   (d2); BENCH_SIGNED=0 skips (d)
 *   BENCH_SETUPS=embedded,registry,registry2   which set-ups to run
 *   BENCH_PROFILE=1           run the tufoci instances under --cpu-prof and print where
 *                             their CPU went over each set-up (slows them down; the
 *                             .cpuprofile files are kept in the temp directory)
 *   BENCH_COUNT_REQUESTS=1    put a counting HTTP proxy between the instances and the
 *                             registry and print the registry requests per tag, by kind
 *                             (the proxy costs CPU: rates measured with it are lower)
 */
import { randomInt } from 'node:crypto';
import { copyFileSync, readFileSync, readdirSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { generateKeyFiles, type TufKeyJson } from '../src/keys/index.ts';
import { startRedis, type RedisServer } from '../test/support/redis-server.ts';
import { startRegistry, type RegistryServer } from '../test/support/registry-server.ts';
import { startRegistryTap, type RegistryTap, type TappedRequest } from '../test/integration/registry-tap.ts';
import {
  ADMIN_TOKEN,
  Owner,
  assertNode24,
  createRepo,
  envInt,
  imageFor,
  onlineKeys,
  startTufoci,
  summarizeProfile,
  type Tufoci,
} from './service-read.bench.ts';
import { machine, median, percentile } from './stats.ts';

const SEQ_TAGS = envInt('BENCH_SEQ_TAGS', 150);
const CLIENTS = envInt('BENCH_CLIENTS', 8);
const CONC_TAGS = envInt('BENCH_CONC_TAGS', 120);
const REPOS = envInt('BENCH_REPOS', 100);
const TAGS_PER_REPO = envInt('BENCH_TAGS_PER_REPO', 40);
const SEQ_SECONDS = envInt('BENCH_SEQ_SECONDS', 10);
const CONC_SECONDS = envInt('BENCH_CONC_SECONDS', 10);
const MANY_SECONDS = envInt('BENCH_MANY_SECONDS', 20);
const BATCH_TAGS = envInt('BENCH_BATCH_TAGS', 10, { allowZero: true });
const BATCH_UPLOADS_PER_REPO = envInt('BENCH_BATCH_UPLOADS_PER_REPO', 20);
const BATCH_SECONDS = envInt('BENCH_BATCH_SECONDS', 20);
const SIGNED = process.env['BENCH_SIGNED'] !== '0';
const SIGNED_ONE_CLIENTS = envInt('BENCH_SIGNED_ONE_CLIENTS', 64);
const SIGNED_ONE_TAGS = envInt('BENCH_SIGNED_ONE_TAGS', 3000);
const SIGNED_CLIENTS = envInt('BENCH_SIGNED_CLIENTS', 8);
const SIGNED_TAGS_PER_CLIENT = envInt('BENCH_SIGNED_TAGS_PER_CLIENT', 25);
const SIGNED_SECONDS = envInt('BENCH_SIGNED_SECONDS', 20);
const SETUPS = (process.env['BENCH_SETUPS'] ?? 'embedded,registry,registry2').split(',').map((s) => s.trim()).filter(Boolean);
const PROFILE = process.env['BENCH_PROFILE'] === '1';
const COUNT_REQUESTS = process.env['BENCH_COUNT_REQUESTS'] === '1';
/** A bound on every scenario, whatever the counts: the script must end. */
const SCENARIO_DEADLINE_MS = 120_000;

const owner = new Owner();
const auth = { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' };

// ------------------------------------------------------------------ client

/** A set-up's instances, used in turn like a round-robin load balancer. */
class Endpoints {
  #next = 0;
  readonly urls: string[];
  constructor(urls: string[]) {
    this.urls = urls;
  }
  pick(): string {
    const url = this.urls[this.#next % this.urls.length] as string;
    this.#next++;
    return url;
  }
}

interface Counters {
  busy: number;
  taken: number;
  rereads: number;
  otherRetries: number;
}

interface Published {
  ms: number;
  attempts: number;
  /** Tags the upload added (1 unless batched). */
  tags?: number;
}

class PublishError extends Error {}

interface View {
  version: number;
  tags: string[];
}

/** The current `ci` role of `repo`, as a CI job would learn it: status, then the file. */
async function readHead(ep: Endpoints, repo: string): Promise<View> {
  const s = await fetch(`${ep.pick()}/v1/repos/${repo}/status`);
  if (!s.ok) throw new PublishError(`GET status of ${repo}: HTTP ${s.status} ${(await s.text()).slice(0, 200)}`);
  const status = (await s.json()) as { roles: Array<{ role: string; version: number }> };
  const version = status.roles.find((r) => r.role === 'ci')?.version ?? 0;
  if (version === 0) return { version: 0, tags: [] };
  const f = await fetch(`${ep.pick()}/v1/repos/${repo}/metadata/${version}.ci.json`);
  if (!f.ok) throw new PublishError(`GET ${version}.ci.json of ${repo}: HTTP ${f.status}`);
  const md = (await f.json()) as { signed: { targets: Record<string, unknown> } };
  return { version, tags: Object.keys(md.signed.targets) };
}

/**
 * Publish one tag: PUT `<v+1>.ci.json` on top of `view`, retrying as a
 * real client would. `presigned` (when given) is the upload for `view` —
 * only valid while this client is the repository's single writer.
 * Returns the new view.
 */
async function publish(ep: Endpoints, repo: string, view: View, tag: string | string[], c: Counters, presigned?: Uint8Array): Promise<{ view: View; attempts: number }> {
  let current = view;
  let bytes = presigned;
  for (let attempt = 1; attempt <= 200; attempt++) {
    const version = current.version + 1;
    const tags = [...current.tags, ...(Array.isArray(tag) ? tag : [tag])];
    bytes ??= await owner.ciBytes(version, tags);
    const r = await fetch(`${ep.pick()}/v1/repos/${repo}/metadata/${version}.ci.json`, { method: 'PUT', headers: auth, body: bytes });
    const text = await r.text();
    if (r.status === 201 || r.status === 200) return { view: { version, tags }, attempts: attempt };
    bytes = undefined;
    let code = '';
    try {
      code = (JSON.parse(text) as { error?: { code?: string } }).error?.code ?? '';
    } catch {
      // not JSON: handled below
    }
    if (r.status === 409 && code === 'BUSY') {
      c.busy++;
      await sleep(Number(r.headers.get('retry-after') ?? '1') * 1000 * (0.5 + Math.random() / 2));
    } else if (r.status === 409 && (code === 'VERSION_TAKEN' || code === 'VERSION_ROLLBACK')) {
      c.taken++;
      // Someone else published first: back off a little (full jitter), re-read the head, sign again.
      await sleep(randomInt(0, Math.min(50, 2 ** attempt) + 1));
      c.rereads++;
      current = await readHead(ep, repo);
    } else if (r.status === 503 || code === 'LOCK_LOST' || code === 'UNAVAILABLE') {
      c.otherRetries++;
      await sleep(100 + randomInt(0, 100));
      c.rereads++;
      current = await readHead(ep, repo);
    } else {
      throw new PublishError(`PUT ${version}.ci.json of ${repo}: HTTP ${r.status} ${text.slice(0, 300)}`);
    }
  }
  throw new PublishError(`gave up publishing ${tag} to ${repo} after 200 attempts`);
}

/** Publish one service-signed tag (POST /tags), retrying 409 BUSY and 503 as a CI job would. */
async function postTag(ep: Endpoints, repo: string, tag: string, c: Counters): Promise<number> {
  const body = JSON.stringify({ role: 'release', tags: { [tag]: imageFor(tag) } });
  for (let attempt = 1; attempt <= 50; attempt++) {
    const r = await fetch(`${ep.pick()}/v1/repos/${repo}/tags`, { method: 'POST', headers: auth, body });
    const text = await r.text();
    if (r.status === 201) return attempt;
    const code = r.status === 409 || r.status === 503 ? ((JSON.parse(text) as { error?: { code?: string } }).error?.code ?? '') : '';
    if (code === 'BUSY') c.busy++;
    else if (r.status === 503) c.otherRetries++;
    else throw new PublishError(`POST tags ${tag} to ${repo}: HTTP ${r.status} ${text.slice(0, 300)}`);
    await sleep(100 + randomInt(0, 200));
  }
  throw new PublishError(`gave up publishing ${tag} to ${repo} after 50 attempts`);
}

/** The tags of `repo`'s service-signed role `release`. */
async function releaseTags(ep: Endpoints, repo: string): Promise<string[]> {
  const s = await fetch(`${ep.pick()}/v1/repos/${repo}/status`);
  const status = (await s.json()) as { roles: Array<{ role: string; version: number }> };
  const version = status.roles.find((r) => r.role === 'release')?.version ?? 0;
  if (version === 0) return [];
  const f = await fetch(`${ep.pick()}/v1/repos/${repo}/metadata/${version}.release.json`);
  return Object.keys(((await f.json()) as { signed: { targets: Record<string, unknown> } }).signed.targets);
}

/** Create-body for (d): `ci` as usual, plus `release` (r*) delegated to the service's CI key. */
async function signedCreateBody(url: string, repo: string): Promise<string> {
  const r = await fetch(`${url}/v1/online-keys?repository=${encodeURIComponent(repo)}`);
  const keys = (await r.json()) as Record<'snapshot' | 'timestamp' | 'ci', Array<{ key: TufKeyJson }>>;
  const ci = keys.ci.map((k) => k.key);
  if (ci.length === 0) throw new Error('the service has no online CI key to delegate release to');
  const online = { snapshot: keys.snapshot.map((k) => k.key), timestamp: keys.timestamp.map((k) => k.key) };
  return owner.createBody(repo, online, [{ name: 'release', keys: ci, threshold: 1, paths: ['r*'] }]);
}

// ------------------------------------------------------------------ CPU accounting

/** utime + stime of a process and all its threads, in seconds (Linux /proc); `kernel`: stime only. */
function cpuSeconds(pid: number, kernel = false): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((kernel ? 0 : Number(fields[11])) + Number(fields[12])) / 100; // fields 14 and 15 of proc(5), USER_HZ = 100
  } catch {
    return Number.NaN;
  }
}

interface Pids {
  [name: string]: number;
}

function cpuSnapshot(pids: Pids): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [name, pid] of Object.entries(pids)) {
    out[name] = cpuSeconds(pid);
    if (name.startsWith('tufoci')) out[`${name} (kernel)`] = cpuSeconds(pid, true);
  }
  const self = process.cpuUsage();
  out['bench client'] = (self.user + self.system) / 1e6;
  return out;
}

// ------------------------------------------------------------------ registry requests

/** The counting proxy in front of the registry of the running set-up (BENCH_COUNT_REQUESTS=1). */
let tap: RegistryTap | undefined;

/** A registry request by kind: method and API endpoint, with the metadata file for manifests. */
function requestKind(r: TappedRequest): string {
  const path = r.path.split('?')[0] ?? '';
  if (path === '/v2/' || path === '/v2') return `${r.method} /v2/`;
  if (path.includes('/blobs/uploads/')) return `${r.method} blob upload${r.path.includes('digest=') ? ' (with digest)' : ''}`;
  const m = /\/(blobs|manifests)\/([^/]+)$/.exec(path);
  if (m) {
    const ref = decodeURIComponent(m[2] ?? '');
    const what = m[1] === 'blobs' ? 'blob' : ref.startsWith('sha256:') ? 'manifest by digest' : `manifest ${ref.replace(/^[0-9]+\./, 'N.')}`;
    return `${r.method} ${what}`;
  }
  if (path.endsWith('/tags/list')) return `${r.method} tags/list`;
  if (path.endsWith('/_catalog')) return `${r.method} _catalog`;
  return `${r.method} other`;
}

function countKinds(requests: readonly TappedRequest[]): Map<string, number> {
  const out = new Map<string, number>();
  for (const r of requests) out.set(requestKind(r), (out.get(requestKind(r)) ?? 0) + 1);
  return out;
}

// ------------------------------------------------------------------ scenarios

interface Result {
  setup: string;
  scenario: string;
  /** Acknowledged uploads, and the tags they added (the same unless batched). */
  uploads: number;
  tags: number;
  seconds: number;
  samples: Published[];
  counters: Counters;
  cpu: Record<string, number>;
  /** Registry requests during the scenario by kind (BENCH_COUNT_REQUESTS=1). */
  requests?: Map<string, number>;
}

async function timed(
  setup: string,
  scenario: string,
  pids: Pids,
  body: (record: (p: Published) => void, c: Counters) => Promise<void>,
): Promise<Result> {
  const samples: Published[] = [];
  const counters: Counters = { busy: 0, taken: 0, rereads: 0, otherRetries: 0 };
  const before = cpuSnapshot(pids);
  const firstRequest = tap?.requests.length ?? 0;
  const t0 = performance.now();
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, rej) => {
    timer = setTimeout(() => rej(new Error(`${setup} / ${scenario} did not finish within ${SCENARIO_DEADLINE_MS / 1000} s`)), SCENARIO_DEADLINE_MS);
  });
  try {
    await Promise.race([body((p) => samples.push(p), counters), deadline]);
  } finally {
    clearTimeout(timer);
  }
  const seconds = (performance.now() - t0) / 1000;
  const after = cpuSnapshot(pids);
  const cpu: Record<string, number> = {};
  for (const k of Object.keys(after)) cpu[k] = (after[k] as number) - (before[k] as number);
  const tags = samples.reduce((n, s) => n + (s.tags ?? 1), 0);
  console.error(`  ${setup} / ${scenario}: ${samples.length} uploads, ${tags} tags in ${seconds.toFixed(1)} s`);
  const requests = tap ? countKinds(tap.requests.slice(firstRequest)) : undefined;
  return { setup, scenario, uploads: samples.length, tags, seconds, samples, counters, cpu, ...(requests ? { requests } : {}) };
}

/** Pre-signed uploads of a single writer: version v lists tags v1…v(v × perUpload). */
async function presign(count: number, perUpload = 1): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  const tags: string[] = [];
  for (let v = 1; v <= count; v++) {
    for (let i = 0; i < perUpload; i++) tags.push(`v${tags.length + 1}`);
    out.push(await owner.ciBytes(v, tags));
  }
  return out;
}

async function runSetup(setup: string, ep: Endpoints, pids: Pids, signed: { seq: Uint8Array[]; perRepo: Uint8Array[]; batched: Uint8Array[] }): Promise<Result[]> {
  const results: Result[] = [];
  const online = await onlineKeys(ep.urls[0] as string, 'bench/seq');
  const body = (repo: string): Promise<string> => owner.createBody(repo, online);
  const tag = (n: number): string => `v${n}`;
  const published = new Map<string, number>();
  const until = (seconds: number): (() => boolean) => {
    const end = performance.now() + seconds * 1000;
    return () => performance.now() < end;
  };

  // (a) one repository, one client.
  await createRepo(ep.pick(), 'bench/seq', await body('bench/seq'));
  results.push(
    await timed(setup, '(a) 1 repo, 1 client', pids, async (record, c) => {
      const more = until(SEQ_SECONDS);
      let view: View = { version: 0, tags: [] };
      for (let i = 0; i < SEQ_TAGS && more(); i++) {
        const t0 = performance.now();
        const r = await publish(ep, 'bench/seq', view, tag(i + 1), c, signed.seq[i]);
        view = r.view;
        record({ ms: performance.now() - t0, attempts: r.attempts });
        published.set('bench/seq', i + 1);
      }
    }),
  );

  // (a) one repository, concurrent clients.
  await createRepo(ep.pick(), 'bench/conc', await body('bench/conc'));
  results.push(
    await timed(setup, `(a) 1 repo, ${CLIENTS} clients`, pids, async (record, c) => {
      const more = until(CONC_SECONDS);
      let next = 0;
      await Promise.all(
        Array.from({ length: CLIENTS }, async (_, client) => {
          let view = await readHead(ep, 'bench/conc');
          while (next < CONC_TAGS && more()) {
            const n = next++;
            const t0 = performance.now();
            const r = await publish(ep, 'bench/conc', view, `v${client}-${n}`, c);
            view = r.view;
            record({ ms: performance.now() - t0, attempts: r.attempts });
            published.set('bench/conc', (published.get('bench/conc') ?? 0) + 1);
          }
        }),
      );
    }),
  );

  // (b) many repositories in parallel.
  const repos = Array.from({ length: REPOS }, (_, i) => `bench/many-${String(i).padStart(3, '0')}`);
  let created = 0;
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (created < repos.length) {
        const repo = repos[created++] as string;
        await createRepo(ep.pick(), repo, await body(repo));
      }
    }),
  );
  results.push(
    await timed(setup, `(b) ${REPOS} repos in parallel`, pids, async (record, c) => {
      const more = until(MANY_SECONDS);
      await Promise.all(
        repos.map(async (repo) => {
          let view: View = { version: 0, tags: [] };
          for (let i = 0; i < TAGS_PER_REPO && more(); i++) {
            const t0 = performance.now();
            const r = await publish(ep, repo, view, tag(i + 1), c, signed.perRepo[i]);
            view = r.view;
            record({ ms: performance.now() - t0, attempts: r.attempts });
            published.set(repo, i + 1);
          }
        }),
      );
    }),
  );

  // (c) many repositories in parallel, BATCH_TAGS tags per upload.
  const batchRepos = BATCH_TAGS > 0 ? Array.from({ length: REPOS }, (_, i) => `bench/batch-${String(i).padStart(3, '0')}`) : [];
  if (batchRepos.length > 0) {
    let made = 0;
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (made < batchRepos.length) {
          const repo = batchRepos[made++] as string;
          await createRepo(ep.pick(), repo, await body(repo));
        }
      }),
    );
    results.push(
      await timed(setup, `(c) ${REPOS} repos, ${BATCH_TAGS} tags/upload`, pids, async (record, c) => {
        const more = until(BATCH_SECONDS);
        await Promise.all(
          batchRepos.map(async (repo) => {
            let view: View = { version: 0, tags: [] };
            for (let i = 0; i < BATCH_UPLOADS_PER_REPO && more(); i++) {
              const t0 = performance.now();
              const batch = Array.from({ length: BATCH_TAGS }, (_, k) => tag(i * BATCH_TAGS + k + 1));
              const r = await publish(ep, repo, view, batch, c, signed.batched[i]);
              view = r.view;
              record({ ms: performance.now() - t0, attempts: r.attempts, tags: BATCH_TAGS });
              published.set(repo, i + 1);
            }
          }),
        );
      }),
    );
  }

  // (d) service-signed tags, one per request, many concurrent jobs.
  const signedAcked = new Map<string, Set<string>>();
  const ack = (repo: string, tag: string): void => {
    let set = signedAcked.get(repo);
    if (!set) signedAcked.set(repo, (set = new Set()));
    set.add(tag);
  };
  if (SIGNED) {
    const one = 'bench/signed-one';
    await createRepo(ep.pick(), one, await signedCreateBody(ep.urls[0] as string, one));
    results.push(
      await timed(setup, `(d1) 1 repo, ${SIGNED_ONE_CLIENTS} jobs, service-signed`, pids, async (record, c) => {
        const more = until(SIGNED_SECONDS);
        let next = 0;
        await Promise.all(
          Array.from({ length: SIGNED_ONE_CLIENTS }, async () => {
            while (next < SIGNED_ONE_TAGS && more()) {
              const tag = `r${next++}`;
              const t0 = performance.now();
              const attempts = await postTag(ep, one, tag, c);
              record({ ms: performance.now() - t0, attempts });
              ack(one, tag);
            }
          }),
        );
      }),
    );
    const signedRepos = Array.from({ length: REPOS }, (_, i) => `bench/signed-${String(i).padStart(3, '0')}`);
    let made = 0;
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (made < signedRepos.length) {
          const repo = signedRepos[made++] as string;
          await createRepo(ep.pick(), repo, await signedCreateBody(ep.urls[0] as string, repo));
        }
      }),
    );
    results.push(
      await timed(setup, `(d2) ${REPOS} repos × ${SIGNED_CLIENTS} jobs, service-signed`, pids, async (record, c) => {
        const more = until(SIGNED_SECONDS);
        await Promise.all(
          signedRepos.flatMap((repo) =>
            Array.from({ length: SIGNED_CLIENTS }, async (_, job) => {
              for (let i = 0; i < SIGNED_TAGS_PER_CLIENT && more(); i++) {
                const tag = `r${job}-${i}`;
                const t0 = performance.now();
                const attempts = await postTag(ep, repo, tag, c);
                record({ ms: performance.now() - t0, attempts });
                ack(repo, tag);
              }
            }),
          ),
        );
      }),
    );
  }
  for (const [repo, acked] of signedAcked) {
    const listed = new Set(await releaseTags(ep, repo));
    const lost = [...acked].filter((t) => !listed.has(t));
    if (lost.length > 0 || listed.size !== acked.size) {
      throw new Error(`${setup}: ${repo} lists ${listed.size} release tags; ${acked.size} were acknowledged (${lost.length} missing, e.g. ${lost.slice(0, 3).join(', ')})`);
    }
  }

  // Every repository ends with exactly the tags acknowledged to its clients: nothing lost, nothing doubled.
  for (const repo of ['bench/seq', 'bench/conc', ...repos, ...batchRepos]) {
    const expected = published.get(repo) ?? 0;
    const expectedTags = expected * (repo.startsWith('bench/batch-') ? BATCH_TAGS : 1);
    const head = await readHead(ep, repo);
    if (head.version !== expected || new Set(head.tags).size !== expectedTags) {
      throw new Error(`${setup}: ${repo} has ci version ${head.version} with ${head.tags.length} tags; ${expected} uploads (${expectedTags} tags) were acknowledged`);
    }
  }
  return results;
}

// ------------------------------------------------------------------ set-ups

async function withInstances(
  setup: string,
  dir: string,
  count: number,
  store: { registry?: RegistryServer; redis?: RedisServer },
  fn: (ep: Endpoints, pids: Pids) => Promise<Result[]>,
): Promise<Result[]> {
  const profDir = join(dir, `${setup}-profiles`);
  const keys = join(dir, `${setup}-online-keys`);
  // Instances behind one load balancer share the online keys (root lists them).
  await mkdir(keys, { recursive: true, mode: 0o700 });
  await generateKeyFiles(join(keys, 'snapshot'), 'ed25519', 'bench online snapshot key');
  await generateKeyFiles(join(keys, 'timestamp'), 'ed25519', 'bench online timestamp key');
  await generateKeyFiles(join(keys, 'ci'), 'ed25519', 'bench online CI key');
  const instances: Tufoci[] = [];
  tap = COUNT_REQUESTS && store.registry ? await startRegistryTap(store.registry.url) : undefined;
  try {
    for (let i = 0; i < count; i++) {
      instances.push(
        await startTufoci({
          dataDir: join(dir, `${setup}-${i + 1}`),
          ...(store.registry ? { registry: tap?.url ?? store.registry.url } : {}),
          ...(store.redis ? { redis: store.redis.url } : {}),
          ...(PROFILE ? { nodeArgs: ['--cpu-prof', '--cpu-prof-dir', profDir] } : {}),
          env: { TUFOCI_SNAPSHOT_KEY: join(keys, 'snapshot.key'), TUFOCI_TIMESTAMP_KEY: join(keys, 'timestamp.key'), TUFOCI_CI_KEY: join(keys, 'ci.key') },
        }),
      );
    }
    const pids: Pids = {};
    instances.forEach((t, i) => (pids[count > 1 ? `tufoci ${i + 1}` : 'tufoci'] = t.pid));
    if (store.registry) pids['docker-registry'] = store.registry.pid;
    if (store.redis?.pid !== undefined) pids['redis-server'] = store.redis.pid;
    return await fn(new Endpoints(instances.map((t) => t.url)), pids);
  } finally {
    for (const t of instances) await t.stop();
    await tap?.close();
    tap = undefined;
    if (PROFILE) {
      for (const f of readdirSync(profDir).filter((n) => n.endsWith('.cpuprofile'))) {
        const s = summarizeProfile(join(profDir, f), 12);
        console.log(`\nCPU profile of a tufoci instance in "${setup}" (whole run; % of non-idle samples): ${f}`);
        console.table(s.files);
        console.table(s.functions);
        console.table(s.inclusive);
        const keep = join(tmpdir(), `tufoci-write-${setup}-${f}`);
        copyFileSync(join(profDir, f), keep);
        console.log(`profile kept at ${keep}`);
      }
    }
  }
}

// ------------------------------------------------------------------ main

async function main(): Promise<void> {
  assertNode24();
  for (const s of SETUPS) if (!['embedded', 'registry', 'registry2'].includes(s)) throw new Error(`BENCH_SETUPS: unknown set-up ${s}`);
  const started = Date.now();
  const loadBefore = loadavg()[0] as number;
  const dir = await mkdtemp(join(tmpdir(), 'tufoci-write-bench-'));
  const results: Result[] = [];
  try {
    console.error('signing the single-writer uploads…');
    const signed = { seq: await presign(SEQ_TAGS), perRepo: await presign(TAGS_PER_REPO), batched: BATCH_TAGS > 0 ? await presign(BATCH_UPLOADS_PER_REPO, BATCH_TAGS) : [] };
    for (const setup of SETUPS) {
      console.error(`${setup}:`);
      if (setup === 'embedded') {
        results.push(...(await withInstances('embedded', dir, 1, {}, (ep, pids) => runSetup('embedded', ep, pids, signed))));
        continue;
      }
      const registry = await startRegistry();
      let redis: RedisServer | undefined;
      try {
        redis = await startRedis();
        const count = setup === 'registry2' ? 2 : 1;
        const name = count === 2 ? 'registry ×2' : 'registry';
        results.push(...(await withInstances(setup, dir, count, { registry, redis }, (ep, pids) => runSetup(name, ep, pids, signed))));
      } finally {
        await redis?.close();
        await registry.stop();
      }
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }

  console.log(`\ntufoci service write benchmark — ${machine()}`);
  console.log('(a), (b): one tag = one PUT of the next ci version; (c): one PUT adds several tags (batching); latency = first attempt to acknowledged, retries included');
  console.log('registry set-ups: docker-registry (filesystem storage) + redis-server on loopback; OCI layout fsyncs every file');
  console.log(`1-min load average when the script started ${loadBefore.toFixed(2)}${loadBefore > 0.7 ? ' — WARNING: the machine was busy before this script started: figures are low and noisy' : ''}\n`);
  console.table(
    results.map((r) => {
      const ms = r.samples.map((s) => s.ms);
      const attempts = r.samples.map((s) => s.attempts);
      return {
        setup: r.setup,
        scenario: r.scenario,
        uploads: r.uploads,
        'uploads/s': +(r.uploads / r.seconds).toFixed(1),
        'tags/s': +(r.tags / r.seconds).toFixed(1),
        'p50 ms': +median(ms).toFixed(1),
        'p99 ms': +percentile(ms, 99).toFixed(1),
        'attempts/upload': +(attempts.reduce((a, b) => a + b, 0) / Math.max(1, attempts.length)).toFixed(2),
        '409 BUSY': r.counters.busy,
        '409 TAKEN': r.counters.taken,
      };
    }),
  );
  console.log('CPU seconds per 100 uploads, by process (2 cores = 2 CPU s per wall second); "(kernel)": the system-time part, e.g. file system work');
  console.table(
    results.map((r) => {
      const row: Record<string, string | number> = { setup: r.setup, scenario: r.scenario, 'wall s': +r.seconds.toFixed(1) };
      for (const [name, s] of Object.entries(r.cpu)) row[name] = +((100 * s) / Math.max(1, r.uploads)).toFixed(2);
      return row;
    }),
  );
  const counted = results.filter((r) => r.requests);
  if (counted.length > 0) {
    console.log('registry requests per upload, by kind (through the counting proxy)');
    const kinds = [...new Set(counted.flatMap((r) => [...(r.requests as Map<string, number>).keys()]))].sort();
    console.table(
      kinds.map((k) => {
        const row: Record<string, string | number> = { request: k };
        for (const r of counted) row[`${r.setup} ${r.scenario.slice(0, 3)}${r.scenario.includes('clients') ? 'c' : ''}`] = +((r.requests?.get(k) ?? 0) / Math.max(1, r.uploads)).toFixed(2);
        return row;
      }),
    );
    console.table(counted.map((r) => ({ setup: r.setup, scenario: r.scenario, 'requests/upload': +([...(r.requests as Map<string, number>).values()].reduce((a, b) => a + b, 0) / Math.max(1, r.uploads)).toFixed(2) })));
  }
  for (const r of results.filter((x) => x.scenario.startsWith('(b)'))) {
    const rate = r.tags / r.seconds;
    console.log(`${r.setup}: ${rate.toFixed(0)} tags/s across ${REPOS} repositories, one tag per upload (target ≥ 300: ${rate >= 300 ? 'met' : 'NOT met'})`);
  }
  for (const r of results.filter((x) => x.scenario.startsWith('(c)'))) {
    const rate = r.tags / r.seconds;
    console.log(
      `${r.setup}: ${rate.toFixed(0)} tags/s across ${REPOS} repositories with ${BATCH_TAGS} tags per upload (${(r.uploads / r.seconds).toFixed(0)} uploads/s) — batched: ≥ 300 ${rate >= 300 ? 'met' : 'NOT met'} only in this sense`,
    );
  }
  for (const r of results.filter((x) => x.scenario.startsWith('(d'))) {
    const rate = r.tags / r.seconds;
    console.log(`${r.setup}: ${rate.toFixed(0)} tags/s ${r.scenario}, one tag per request (target ≥ 300: ${rate >= 300 ? 'met' : 'NOT met'})`);
  }
  console.log(`\ntotal ${((Date.now() - started) / 1000).toFixed(0)} s`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
