/**
 * Namespace benchmark: one namespace of many repositories against the references its goals name,
 * on one machine in one run (medians; ratios within the run):
 *
 *   PATH=$PWD/node_modules/.bin:$PATH node bench/namespace.bench.ts [--quick] [--repos 10000] [--tags 100]
 *     [--clients 64] [--samples 200] [--seconds 15] [--concurrency 16]     (npm run bench:namespace -- …)
 *
 * Two `tufoci serve` processes, embedded (OCI layout under their data dirs, in-process coordination),
 * so that each reference runs on a service that holds nothing else:
 *   big  the namespace `wabbit-networks/`: its anchor and --repos members, each created from its
 *        1.targets.json alone, delegating `ci` (`<R>/*`) to the service's CI key for R, and given
 *        --tags service-signed tags in one POST /tags (populated --concurrency members at a time);
 *   ref  the namespace `solo/` with its one member `solo/app`, and two ordinary per-repository TUF
 *        repositories `acme/one` and `acme/hundred` (service-held `ci`), each with --tags tags.
 * Figures:
 *   publish p50  one POST /tags of one new tag into a random member, vs into solo/app: --samples
 *                sequential requests each, alternating big/ref so that drift hits both alike;
 *   throughput   --clients concurrent clients for --seconds, one tag per request, each client to
 *                members of its own (no two clients share one), vs the same clients all publishing
 *                to acme/one (group commit; the earlier run's 624 tags/s was this scenario); and, as a
 *                control, to --clients ordinary repositories, one each (the cost of a namespace, or of
 *                any one-tag commit?); with the service's CPU seconds per wall second;
 *   cold verify  verifyImage through the service behind a counting proxy, a fresh state dir, pinned
 *                to the namespace's 1.root.json: TUF response bytes (body + head) vs acme/hundred;
 *   warm verify  TUF requests of a second verify with the same state, at once and again after the
 *                publish phases (other members changed, the verified one did not).
 * The verified image is real, in an in-memory store: only TUF metadata goes through the proxy.
 * Flags have environment equivalents (BENCH_NS_REPOS, …, BENCH_QUICK=1); BENCH_KEEP=1 keeps the
 * temp dir. --quick: 40 repositories, 8 clients, 30 samples, 3 s.
 */
import { randomInt } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { buildRoot, buildTargets, isoExpiry, signMetadata, type ImageTarget } from '../src/engine/index.ts';
import { InMemorySigner, type TufKeyJson } from '../src/keys/index.ts';
import { MemoryStore } from '../src/storage/index.ts';
import { verifyImage } from '../src/client/verify-image.ts';
import { mapLimit } from '../src/util/map-limit.ts';
import { pushImage } from '../test/support/image.ts';
import { startCountingProxy, type CountingProxy } from '../test/client/counting-proxy.ts';
import { ADMIN_TOKEN, assertNode24, imageFor, onlineKeys, startTufoci, type Tufoci } from './service-read.bench.ts';
import { benchProcesses } from './processes.ts';
import { machine, median, percentile, processCpuSeconds } from './stats.ts';

const number = { type: 'string' } as const;
const { values: flags } = parseArgs({
  options: { repos: number, tags: number, clients: number, samples: number, seconds: number, concurrency: number, 'cache-mb': number, quick: { type: 'boolean' } },
  strict: true,
});
const QUICK = flags['quick'] === true || process.env['BENCH_QUICK'] === '1';

function setting(name: Exclude<keyof typeof flags, 'quick'>, full: number, quick: number): number {
  const env = `BENCH_NS_${name.toUpperCase()}`;
  const raw = flags[name] ?? process.env[env];
  if (raw === undefined || raw === '') return QUICK ? quick : full;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`--${name} (${env}) must be a positive integer, got ${String(raw)}`);
  return n;
}

const REPOS = setting('repos', 10_000, 40);
const TAGS = setting('tags', 100, 100);
const CLIENTS = setting('clients', 64, 8);
const SAMPLES = setting('samples', 200, 30);
const SECONDS = setting('seconds', 15, 3);
const CONCURRENCY = setting('concurrency', 16, 16);
const COLD_RUNS = 5;
const EARLIER_TAGS_PER_S = 624;
const NS = 'wabbit-networks/';
const SOLO = 'solo/';
const SOLO_MEMBER = 'solo/app';
const ONE = 'acme/one';
const HUNDRED = 'acme/hundred';
const DAY = 86_400_000;

const owner = { root: InMemorySigner.generate(), targets: InMemorySigner.generate() };
const dec = new TextDecoder();
const expires = (days: number): string => isoExpiry(Date.now() + days * DAY);
const log = (message: string): void => void process.stderr.write(`[namespace.bench] ${message}\n`);
const processes = benchProcesses({ log, keep: process.env['BENCH_KEEP'] === '1', childTimeoutMs: 60_000 });

// ------------------------------------------------------------------ API calls

/** 409 BUSY / 503 answers retried (counted: a figure of how contended the writes were). */
let retried = 0;

/** One API request with the admin token, retrying 409 BUSY and 503 as a CI job would; the JSON answer. */
async function api(url: string, method: string, path: string, body?: string): Promise<unknown> {
  for (let attempt = 1; attempt <= 50; attempt++) {
    const headers: Record<string, string> = { authorization: `Bearer ${ADMIN_TOKEN}` };
    if (body !== undefined) headers['content-type'] = 'application/json';
    const r = await fetch(`${url}${path}`, { method, headers, ...(body !== undefined ? { body } : {}) });
    const text = await r.text();
    if (r.ok) return JSON.parse(text) as unknown;
    let code = '';
    try {
      code = (JSON.parse(text) as { error?: { code?: string } }).error?.code ?? '';
    } catch {
      // not JSON: refused below
    }
    if (!(r.status === 503 || (r.status === 409 && code === 'BUSY'))) throw new Error(`${method} ${path}: HTTP ${r.status} ${text.slice(0, 300)}`);
    retried++;
    await sleep(100 + randomInt(0, 200));
  }
  throw new Error(`${method} ${path}: gave up after 50 attempts`);
}

async function ciKey(url: string, repo: string): Promise<TufKeyJson> {
  const keys = (await api(url, 'GET', `/v1/online-keys?repository=${encodeURIComponent(repo)}`)) as { ci: Array<{ key: TufKeyJson }> };
  const key = keys.ci[0]?.key;
  if (!key) throw new Error(`the service has no online CI key for ${repo}`);
  return key;
}

/** 1.root.json for `scope` (a repository, or a `prefix/`) listing the service's online keys for `keysOf`. */
async function rootBytes(url: string, scope: string, keysOf: string, version = 1): Promise<string> {
  const online = await onlineKeys(url, keysOf);
  const root = buildRoot({
    version,
    expires: expires(365),
    root: { keys: [owner.root.public], threshold: 1 },
    targets: { keys: [owner.targets.public], threshold: 1 },
    snapshot: { keys: online.snapshot, threshold: 1 },
    timestamp: { keys: online.timestamp, threshold: 1 },
    scope,
  });
  return dec.decode(await signMetadata(root, [owner.root]));
}

/** 1.targets.json delegating `ci` (`paths`) to the service's CI key for `repo`; `namespace`: as its member. */
async function targetsBytes(url: string, repo: string, paths: string[], namespace?: string): Promise<string> {
  const ci = await ciKey(url, repo);
  const targets = buildTargets({
    version: 1,
    expires: expires(90),
    ...(namespace !== undefined ? { member: { repository: repo, namespace } } : {}),
    delegations: [{ name: 'ci', keys: [ci], threshold: 1, paths }],
  });
  return dec.decode(await signMetadata(targets, [owner.targets]));
}

async function createNamespace(url: string, prefix: string): Promise<void> {
  const anchor = `${prefix}tufoci-namespace`;
  const targets = dec.decode(await signMetadata(buildTargets({ version: 1, expires: expires(90), member: { repository: anchor, namespace: prefix } }), [owner.targets]));
  await api(url, 'POST', `/v1/repos/${anchor}`, `{"root":${await rootBytes(url, prefix, anchor)},"targets":${targets}}`);
}

const createMember = async (url: string, prefix: string, repo: string): Promise<unknown> =>
  api(url, 'POST', `/v1/repos/${repo}`, `{"targets":${await targetsBytes(url, repo, [`${repo}/*`], prefix)}}`);

const createPlain = async (url: string, repo: string): Promise<unknown> =>
  api(url, 'POST', `/v1/repos/${repo}`, `{"root":${await rootBytes(url, repo, repo)},"targets":${await targetsBytes(url, repo, ['*'])}}`);

/** POST /tags into the service-held `ci`; checks every tag was taken. */
async function publish(url: string, repo: string, tags: Record<string, ImageTarget>): Promise<void> {
  const r = (await api(url, 'POST', `/v1/repos/${repo}/tags`, JSON.stringify({ role: 'ci', tags }))) as { tags?: string[] };
  if (r.tags?.length !== Object.keys(tags).length) throw new Error(`POST tags to ${repo}: ${Object.keys(tags).length} tags sent, the answer lists ${r.tags?.length}`);
}

/** `count` tags v0…, v1 the real image when given. */
function fill(repo: string, count: number, real?: ImageTarget): Record<string, ImageTarget> {
  const tags: Record<string, ImageTarget> = {};
  for (let i = 0; i < count; i++) tags[`v${i}`] = imageFor(`${repo}:v${i}`);
  if (real) tags['v1'] = real;
  return tags;
}

/** How many targets `repo`'s `ci` lists, with its hash bins (the service moves it to bins past the policy's maxTargetsPerRole). */
async function ciTagCount(url: string, repo: string): Promise<{ tags: number; bins: number }> {
  const status = (await api(url, 'GET', `/v1/repos/${repo}/status`)) as { roles: Array<{ role: string; version: number }> };
  const roles = status.roles.filter((r) => r.role === 'ci' || r.role.startsWith('ci-'));
  const counts = await mapLimit(roles, 16, async (r) => {
    const md = (await api(url, 'GET', `/v1/repos/${repo}/metadata/${r.version}.${r.role}.json`)) as { signed: { targets: Record<string, unknown> } };
    return Object.keys(md.signed.targets).length;
  });
  return { tags: counts.reduce((a, b) => a + b, 0), bins: roles.length - 1 };
}

// ------------------------------------------------------------------ measurements

interface Counted {
  requests: number;
  bytes: number;
  body: number;
  ms: number;
  files: string[];
}

/** One verify of `repo:v1` through `proxy` with `stateDir`: what it downloaded of TUF metadata. */
async function verifyCounted(proxy: CountingProxy, images: MemoryStore, repo: string, trustedRoot: Uint8Array, stateDir: string, expected: string): Promise<Counted> {
  proxy.reset();
  const t0 = performance.now();
  const r = await verifyImage({ store: images, repository: repo, tag: 'v1', trustedRoot, stateDir, serviceUrl: proxy.url });
  const ms = performance.now() - t0;
  if (r.digest !== expected) throw new Error(`verify of ${repo}:v1 answered ${r.digest}, expected ${expected}`);
  const seen = [...proxy.requests];
  const body = seen.reduce((n, q) => n + q.bodyBytes, 0);
  return { requests: seen.length, bytes: body + seen.reduce((n, q) => n + q.headBytes, 0), body, ms, files: seen.map((q) => `${q.path.slice(q.path.lastIndexOf('/') + 1)} ${q.status}`) };
}

/** COLD_RUNS cold verifies (fresh state each) and one warm one on the last state; medians of the cold. */
async function coldAndWarm(dir: string, proxy: CountingProxy, images: MemoryStore, repo: string, rootOf: string, expected: string): Promise<{ cold: Counted; warm: Counted; again: () => Promise<Counted> }> {
  const trustedRoot = new Uint8Array(await (await fetch(`${proxy.url}/v1/repos/${rootOf}/metadata/1.root.json`)).arrayBuffer());
  const runs: Counted[] = [];
  let state = '';
  for (let i = 0; i < COLD_RUNS; i++) {
    state = mkdtempSync(join(dir, 'state-'));
    runs.push(await verifyCounted(proxy, images, repo, trustedRoot, state, expected));
  }
  const last = runs[runs.length - 1] as Counted;
  const cold = { ...last, bytes: median(runs.map((r) => r.bytes)), body: median(runs.map((r) => r.body)), ms: median(runs.map((r) => r.ms)) };
  const warm = await verifyCounted(proxy, images, repo, trustedRoot, state, expected);
  return { cold, warm, again: () => verifyCounted(proxy, images, repo, trustedRoot, state, expected) };
}

/** Sequential one-tag publishes, alternating the namespace's random member and solo/app (5 rounds of warm-up). */
async function publishLatency(big: string, ref: string, members: readonly string[]): Promise<{ big: number[]; ref: number[] }> {
  const out = { big: [] as number[], ref: [] as number[] };
  for (let i = 0; i < SAMPLES + 5; i++) {
    for (const [which, url, repo] of [['big', big, members[randomInt(members.length)] as string], ['ref', ref, SOLO_MEMBER]] as const) {
      const t0 = performance.now();
      await publish(url, repo, { [`p${i}`]: imageFor(`${repo}:p${i}`) });
      if (i >= 5) out[which].push(performance.now() - t0);
    }
  }
  return out;
}


/** CLIENTS concurrent clients for SECONDS, one tag per request, client c to `pick(c)` each time; `cpu`: the service's CPU s per wall s. */
async function throughput(service: Tufoci, pick: (client: number) => string): Promise<{ tags: number; seconds: number; ms: number[]; cpu: number }> {
  const url = service.url;
  const cpu0 = processCpuSeconds(service.pid);
  const t0 = performance.now();
  const end = t0 + SECONDS * 1000;
  const ms: number[] = [];
  await Promise.all(
    Array.from({ length: CLIENTS }, async (_, c) => {
      for (let i = 0; performance.now() < end; i++) {
        const repo = pick(c);
        const s = performance.now();
        await publish(url, repo, { [`t${c}-${i}`]: imageFor(`${repo}:t${c}-${i}`) });
        ms.push(performance.now() - s);
      }
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  return { tags: ms.length, seconds, ms, cpu: (processCpuSeconds(service.pid) - cpu0) / seconds };
}

// ------------------------------------------------------------------ main

async function startService(dir: string, name: string): Promise<{ service: Tufoci; proxy: CountingProxy }> {
  // --cache-mb: the services' head cache (tufoci serve --cache-mb), default the service's own.
  const cacheMb = typeof flags['cache-mb'] === 'string' ? flags['cache-mb'] : undefined;
  const service = await startTufoci({ dataDir: join(dir, name), ...(cacheMb ? { serveArgs: ['--cache-mb', cacheMb] } : {}) });
  processes.livePids.add(service.pid);
  processes.stoppers.push(async () => {
    await service.stop();
    processes.livePids.delete(service.pid);
  });
  const proxy = await startCountingProxy(service.url);
  processes.stoppers.push(() => proxy.close());
  log(`${name}: tufoci serve (embedded) at ${service.url}, pid ${service.pid}`);
  return { service, proxy };
}

const fmt = (n: number, digits = 1): string => n.toFixed(digits);
const verdict = (ok: boolean): string => (ok ? 'PASS' : 'FAIL');

async function main(): Promise<void> {
  assertNode24();
  if (REPOS < CLIENTS + 1) throw new Error(`--repos (${REPOS}) must exceed --clients (${CLIENTS}): each client publishes to members of its own, and one member is kept for verify`);
  processes.install();
  const started = performance.now();
  const loadStart = loadavg();
  const dir = await processes.tempDir('tufoci-namespace-bench-');
  try {
    await measure(dir, started, loadStart);
  } finally {
    await processes.stopAll();
  }
}

async function measure(dir: string, started: number, loadStart: number[]): Promise<void> {
  const big = await startService(dir, 'big');
  const ref = await startService(dir, 'ref');
  const images = new MemoryStore();
  const members = Array.from({ length: REPOS }, (_, i) => `${NS}r${String(i).padStart(5, '0')}`);
  const verified = members[REPOS >> 1] as string;
  const others = members.filter((m) => m !== verified);
  const real = new Map<string, ImageTarget>();
  for (const repo of [verified, HUNDRED]) real.set(repo, await pushImage(images, repo, 'v1', `${repo} v1`));

  log(`ref: namespace ${SOLO} with ${SOLO_MEMBER}, repositories ${ONE} and ${HUNDRED}, ${TAGS} tags each`);
  await createNamespace(ref.service.url, SOLO);
  await createMember(ref.service.url, SOLO, SOLO_MEMBER);
  for (const repo of [ONE, HUNDRED]) await createPlain(ref.service.url, repo);
  for (const repo of [SOLO_MEMBER, ONE, HUNDRED]) await publish(ref.service.url, repo, fill(repo, TAGS, real.get(repo)));
  // The control: as many ordinary repositories as clients, one per client (is the cost the namespace's, or any commit's?).
  const plain = Array.from({ length: CLIENTS }, (_, c) => `acme/c${String(c).padStart(3, '0')}`);
  await mapLimit(plain, CONCURRENCY, async (repo) => {
    await createPlain(ref.service.url, repo);
    await publish(ref.service.url, repo, fill(repo, TAGS));
  });

  log(`big: namespace ${NS} with ${REPOS} members × ${TAGS} tags, ${CONCURRENCY} members at a time`);
  const t0 = performance.now();
  await createNamespace(big.service.url, NS);
  let done = 0;
  let lastLog = t0;
  await mapLimit(members, CONCURRENCY, async (repo) => {
    await createMember(big.service.url, NS, repo);
    await publish(big.service.url, repo, fill(repo, TAGS, real.get(repo)));
    done++;
    const now = performance.now();
    if (now - lastLog >= 5000 || done === REPOS) {
      lastLog = now;
      const rate = done / ((now - t0) / 1000);
      log(`  ${done}/${REPOS} members (${fmt(rate)}/s, ${fmt(rate * TAGS, 0)} tags/s; ${fmt((REPOS - done) / rate, 0)} s to go; load ${fmt(loadavg()[0] as number, 2)})`);
    }
  });
  const populateSeconds = (performance.now() - t0) / 1000;
  const loadPopulated = loadavg();
  const retriedPopulating = retried;
  if ((await ciTagCount(big.service.url, verified)).tags !== TAGS) throw new Error(`${verified} does not list its ${TAGS} tags`);

  log('verify: cold and warm, member vs per-repository repository');
  const nsVerify = await coldAndWarm(dir, big.proxy, images, verified, `${NS}tufoci-namespace`, (real.get(verified) as ImageTarget).digest);
  const refVerify = await coldAndWarm(dir, ref.proxy, images, HUNDRED, HUNDRED, (real.get(HUNDRED) as ImageTarget).digest);

  log(`publish latency: ${SAMPLES} sequential one-tag publishes each`);
  const latency = await publishLatency(big.service.url, ref.service.url, others);

  log(`throughput: ${CLIENTS} clients for ${SECONDS} s into ${ONE}, then into ${CLIENTS} disjoint sets of members`);
  const retriedBefore = retried;
  const oneRepo = await throughput(ref.service, () => ONE);
  const retriedOne = retried - retriedBefore;
  const slices = Array.from({ length: CLIENTS }, (_, c) => others.filter((_, i) => i % CLIENTS === c));
  const spread = await throughput(big.service, (c) => {
    const slice = slices[c] as string[];
    return slice[randomInt(slice.length)] as string;
  });
  const retriedSpread = retried - retriedBefore - retriedOne;
  const control = await throughput(ref.service, (c) => plain[c] as string);
  const oneEnd = await ciTagCount(ref.service.url, ONE);
  if (oneEnd.tags !== TAGS + oneRepo.tags) throw new Error(`${ONE} lists ${oneEnd.tags} tags; ${TAGS + oneRepo.tags} were acknowledged`);
  const warmAfter = await nsVerify.again();

  // One root rotation for the whole namespace: answered (after at most the service's wait), then
  // every member re-signed under it (a sync waits for the round).
  log(`rotation: root 2 of ${NS} at its anchor, then every member re-signed`);
  const anchor = `${NS}tufoci-namespace`;
  const r0 = performance.now();
  const rotated = (await api(big.service.url, 'PUT', `/v1/repos/${anchor}/metadata/2.root.json`, await rootBytes(big.service.url, NS, anchor, 2))) as { members: { updated: number; pending?: number; failed: unknown[] } };
  const answeredMs = performance.now() - r0;
  const synced = (await api(big.service.url, 'POST', `/v1/namespace-sync/${anchor}`, '{}')) as { updated: number; failed: unknown[] };
  const allMs = performance.now() - r0;
  const verifiedRoot = ((await api(big.service.url, 'GET', `/v1/repos/${verified}/status`)) as { roles: Array<{ role: string; version: number }> }).roles.find((x) => x.role === 'root')?.version;
  if (verifiedRoot !== 2) throw new Error(`${verified} is on root ${verifiedRoot} after the sync`);
  const loadEnd = loadavg();

  // ------------------------------------------------------------------ report
  const p50 = { big: median(latency.big), ref: median(latency.ref) };
  const rate = { spread: spread.tags / spread.seconds, one: oneRepo.tags / oneRepo.seconds };
  const bytes = { ns: nsVerify.cold.bytes, ref: refVerify.cold.bytes };
  const warmOk = nsVerify.warm.requests === 1 && warmAfter.requests === 1;
  const load = (l: number[]): string => l.map((x) => x.toFixed(2)).join(' / ');
  console.log(`\ntufoci namespace benchmark — ${machine()}${QUICK ? ' — QUICK (smoke-run sizes)' : ''}`);
  console.log(`namespace ${NS}: ${REPOS} members × ${TAGS} tags (${(REPOS * TAGS).toLocaleString('en')} tags) on an embedded \`tufoci serve\` (OCI layout, fsync), references on a second one`);
  if (typeof flags['cache-mb'] === 'string') console.log(`head cache: ${flags['cache-mb']} MiB (tufoci serve --cache-mb)`);
  console.log(`population: ${fmt(populateSeconds)} s (${fmt(REPOS / populateSeconds)} members/s: create from 1.targets.json + one POST of ${TAGS} tags each; ${CONCURRENCY} in flight; ${retriedPopulating} BUSY/503 retries)`);
  console.log(`load average 1/5/15 min: at start ${load(loadStart)}, after population ${load(loadPopulated)}, at end ${load(loadEnd)}`);
  console.table([
    {
      goal: 'publish p50 (1 tag, sequential)',
      figure: `${fmt(p50.big)} ms into a random member of ${REPOS} (p99 ${fmt(percentile(latency.big, 99))})`,
      reference: `${fmt(p50.ref)} ms into the only member of ${SOLO} (p99 ${fmt(percentile(latency.ref, 99))})`,
      ratio: `${fmt(p50.big / p50.ref, 2)}×`,
      target: '≤ 1.5×',
      result: verdict(p50.big <= 1.5 * p50.ref),
    },
    {
      goal: `throughput, ${CLIENTS} clients, service-signed`,
      figure: `${fmt(rate.spread, 0)} tags/s to ${CLIENTS} disjoint member sets (p50 ${fmt(median(spread.ms))} ms; service CPU ${fmt(spread.cpu, 2)} s/s; ${retriedSpread} retries)`,
      reference: `${fmt(rate.one, 0)} tags/s into one per-repository repo${oneEnd.bins ? ` (moved to ${oneEnd.bins} bins past maxTargetsPerRole)` : ''} (p50 ${fmt(median(oneRepo.ms))} ms; service CPU ${fmt(oneRepo.cpu, 2)} s/s; ${retriedOne} retries)`,
      ratio: `${fmt(rate.spread / rate.one, 2)}×`,
      target: '≥ 1×',
      result: verdict(rate.spread >= rate.one),
    },
    {
      goal: 'cold verify of one tag: TUF bytes',
      figure: `${bytes.ns} B in ${nsVerify.cold.requests} requests (body ${nsVerify.cold.body} B; ${fmt(nsVerify.cold.ms)} ms)`,
      reference: `${bytes.ref} B in ${refVerify.cold.requests} requests (body ${refVerify.cold.body} B; ${fmt(refVerify.cold.ms)} ms), ${TAGS} tags`,
      ratio: `${fmt(bytes.ns / bytes.ref, 2)}×`,
      target: '≤ 2×',
      result: verdict(bytes.ns <= 2 * bytes.ref),
    },
    {
      goal: 'warm verify: TUF requests',
      figure: `${nsVerify.warm.requests} (${nsVerify.warm.files.join(', ')}); after the publishes elsewhere ${warmAfter.requests} (${warmAfter.files.join(', ')})`,
      reference: `per-repository: ${refVerify.warm.requests}`,
      ratio: '–',
      target: '= 1',
      result: verdict(warmOk),
    },
  ]);
  console.log(`throughput vs the earlier run's single-repository figure (${EARLIER_TAGS_PER_S} tags/s): namespace ${fmt(rate.spread / EARLIER_TAGS_PER_S, 2)}×, this run's single repository ${fmt(rate.one / EARLIER_TAGS_PER_S, 2)}×`);
  console.log(
    `control: the same ${CLIENTS} clients, each to an ordinary repository of its own (${TAGS} tags), on the reference service: ${fmt(control.tags / control.seconds, 0)} tags/s (p50 ${fmt(median(control.ms))} ms; service CPU ${fmt(control.cpu, 2)} s/s)`,
  );
  console.log(
    `one root rotation for ${REPOS} members: answered in ${fmt(answeredMs / 1000, 2)} s (${rotated.members.updated} re-signed by then, ${rotated.members.pending ?? 0} pending, ${rotated.members.failed.length} failed); every member on root 2 after ${fmt(allMs / 1000, 1)} s (${fmt(REPOS / (allMs / 1000), 0)} members/s; the sync did ${synced.updated} more, ${synced.failed.length} failed)`,
  );
  console.log(`cold verify files, member:         ${nsVerify.cold.files.join(', ')}`);
  console.log(`cold verify files, per-repository: ${refVerify.cold.files.join(', ')}`);
  console.log(`bytes = response body + status line and headers, at a counting proxy in front of the service; medians of ${COLD_RUNS} cold verifies`);
  console.log(`\ntotal ${fmt((performance.now() - started) / 1000, 0)} s`);
}

processes.run(main);
