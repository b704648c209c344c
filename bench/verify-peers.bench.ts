/**
 * tufoci's client next to Notary v1, in one run:
 *
 *   npm run bench:peers        (= node bench/verify-peers.bench.ts, on Node 24:
 *                                PATH=$PWD/node_modules/.bin:$PATH node bench/verify-peers.bench.ts)
 *
 * What it measures. For repositories of BENCH_SIZES tags, populated the way the CLI does by
 * default (`tufoci delegate add <repo> ci --key ci.pub --paths 'v*' --terminating`, then
 * `tufoci publish`): top-level targets delegates `ci` (paths v*, terminating) with
 * `x-tufoci-bins: B`, B = binsFor(tags, 16384) (1 = no bins, up to 64 tags), and `ci` itself
 * delegates to B succinct hash bins `ci-<hex>` holding the tags, signed by the key `tufoci publish`
 * derives from the CI key for the repository (`x-tufoci-bins-scope`, engine/bound-bins.ts: the
 * snapshot lists the bins by version alone). The role files are
 * built with the engine's builders and uploaded through a `tufoci serve --registry` started here, so
 * the TUF metadata lives in the docker-registry (`R/tuf`), which is where every verify below reads
 * it from (no service URL). The tag verified, v1, names a real image manifest, signed by the CI key
 * (a plain signature pushed as a referrer); every other tag v0…v(N-1) names a digest of its own
 * (sha256 of `<repo>:<tag>`), so the roles hold N distinct hashes as a real repository's do.
 *
 *  1. in-process `verifyImage` (TUF + manifest by digest + the CI key's signature + the registry's
 *     tag compared): cold = no state directory (ephemeral, the pinned 1.root.json only), warm = a
 *     state directory that verified once (timestamp unchanged); the same with `tufClient: 'tuf-js'`
 *     (the unmodified tuf-js Updater) as the reference. A new RegistryStore per verify, as a fresh
 *     process has.
 *  2. the CLI, `node bin/tufoci.js verify <host:port>/<repo>:v1 --trust 1.root.json --sig-key ci.pub`,
 *     a child process timed spawn→exit: cold = `--ephemeral`, warm = a TUFOCI_HOME in which one
 *     verify already ran; `node -e 0` timed in the same rounds (the floor of any Node CLI).
 *  3. Notary v1 (bench/notary-peer.ts: notary-server + notary-signer, the tags in a delegation
 *     `targets/releases`): `notary lookup <gun> v1` cold (fresh trust_dir, root pinned) and warm,
 *     also spawn→exit. Sizes ≤ BENCH_NOTARY_MAX only (publishing 100,000 tags in Notary is slow).
 *     The CLI, the "before" CLI, Notary and `node -e 0` are run in interleaved rounds, so that
 *     drift of the machine hits them alike.
 *  4. requests and response-body bytes per in-process verify, counted at an HTTP proxy in front of
 *     the registry (separate runs from the timed ones), split into TUF (`/v2/<repo>/tuf/…`) and
 *     image + signatures; the CLI's totals through the same proxy as a cross-check; Notary's from
 *     its server's access log.
 *  5. the CLI's peak RSS (VmHWM of /proc/self/status, written by an `--import`ed exit hook) for
 *     a cold and a warm verify, per size (median of BENCH_RSS_RUNS runs). Not
 *     process.resourceUsage().maxRSS: on Linux a child's ru_maxrss keeps the high-water mark of
 *     the process it was forked from (this bench, which holds the populated repositories), so it
 *     grew with the repository size while the verify's own peak did not; VmHWM starts afresh at
 *     exec. (maxRSS where there is no /proc.)
 *  6. with BENCH_BEFORE=<dir> (a checkout of an older tufoci; its node_modules may be a symlink to
 *     this one's), that checkout's CLI verify, cold and warm, against the same repositories.
 *  7. one upload of a delegated role listing 19,000 targets (`2.ci.json` of a plain, unbinned `ci`
 *     in a repository of its own) and the service's answer; if it is accepted, an in-process cold
 *     verify of a tag in it is timed.
 *
 * Environment (all optional):
 *   BENCH_SIZES=10,1000,10000,100000   repository sizes (tags)
 *   BENCH_NOTARY_MAX=10000             largest size Notary is run at (0: no Notary)
 *   BENCH_COLD_RUNS=10  BENCH_WARM_RUNS=20           in-process and Notary runs per size
 *   BENCH_CLI_COLD_RUNS, BENCH_CLI_WARM_RUNS          CLI rounds (default: the same as above)
 *   BENCH_RSS_RUNS=3                   peak-RSS runs per size and mode
 *   BENCH_INPROC_WARMUP=10             untimed in-process verifies before each timed series
 *   BENCH_BEFORE=/path/to/old/tufoci   also time that checkout's CLI ("before" column)
 *   BENCH_CLI_ROOT=<project>/node_modules/tufoci   time that installed package's CLI (built, bundled)
 *                                      instead of the checkout's (npm pack, then npm i the tarball)
 *   BENCH_KEEP=1                       keep the temporary directory (printed)
 *
 * How to read it. Quote medians; every figure is one machine under whatever else runs on it (the
 * machine and the load average are printed at the start and the end). "ms" columns are wall
 * clock. The final table compares each figure with the issue's goal and prints PASS/FAIL; the
 * bench exits 0 once it has measured everything, whatever the verdicts, and non-zero when a
 * set-up step (a server, a population, a verify that should succeed) failed. Every server is
 * started here on a free loopback port and stopped by PID at the end, on SIGINT/SIGTERM too.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Targets } from '@tufjs/models';
import { BINS_SCOPE_FIELD, binFor, binsFor, buildRoot, buildTargets, isoExpiry, signMetadata, type ImageTarget } from '../src/engine/index.ts';
import { generateKeyFiles, InMemorySigner, loadSignerFile, repositoryBinsSigner } from '../src/keys/index.ts';
import { RegistryStore } from '../src/storage/index.ts';
import { ServiceClient, ServiceClientError } from '../src/client/service-client.ts';
import { pushSignature, signDescriptor } from '../src/client/signatures.ts';
import { verifyImage, type TufClientName } from '../src/client/verify-image.ts';
import { startRegistry, type RegistryServer } from '../test/support/registry-server.ts';
import { pushImage } from '../test/support/image.ts';
import { startCountingProxy, type CountedRequest, type CountingProxy } from '../test/client/counting-proxy.ts';
import { ADMIN_TOKEN, REPO_ROOT, assertNode24, createRepo, envInt, onlineKeys, startTufoci, type Tufoci } from './service-read.bench.ts';
import { startNotary, syntheticTags, type LookupResult, type NotaryPeer } from './notary-peer.ts';
import { machine, median, timeRuns } from './stats.ts';
import { benchProcesses, type ChildRun } from './processes.ts';

// ------------------------------------------------------------------ settings

const SIZES = (process.env['BENCH_SIZES'] ?? '10,1000,10000,100000').split(',').map((s) => Number(s.trim()));
const NOTARY_MAX = envInt('BENCH_NOTARY_MAX', 10_000, { allowZero: true });
const COLD_RUNS = envInt('BENCH_COLD_RUNS', 10);
const WARM_RUNS = envInt('BENCH_WARM_RUNS', 20);
const CLI_COLD_RUNS = envInt('BENCH_CLI_COLD_RUNS', COLD_RUNS);
const CLI_WARM_RUNS = envInt('BENCH_CLI_WARM_RUNS', WARM_RUNS);
const RSS_RUNS = envInt('BENCH_RSS_RUNS', 3);
/** Untimed in-process verifies before each timed series: the first size measured would otherwise carry the JIT's warm-up alone. */
const INPROC_WARMUP = envInt('BENCH_INPROC_WARMUP', 10, { allowZero: true });
const BEFORE = process.env['BENCH_BEFORE'] ? resolve(process.env['BENCH_BEFORE']) : undefined;
/** Whose bin/tufoci.js is the CLI timed: the checkout (default), or an installed package (<project>/node_modules/tufoci). */
const CLI_ROOT = process.env['BENCH_CLI_ROOT'] ? resolve(process.env['BENCH_CLI_ROOT']) : REPO_ROOT;
const KEEP = process.env['BENCH_KEEP'] === '1';
/** The `max` tufoci delegate add passes to binsFor (policy.bins.max by default). */
const BINS_MAX = 16_384;
const BIG_ROLE_TARGETS = 19_000;
const DAY = 86_400_000;
const CHILD_TIMEOUT_MS = 60_000;

const GOAL = {
  warmMs: 2,
  coldMs: 10,
  cliVsNotary: 1,
  cliOverFloorMs: 30,
  bigRoleColdMs: 50,
  coldTufBytes: 30_000,
  warmRequests: 2,
  coldRequests: 8,
  /** "Independent of tag count": the largest size's peak RSS within this factor of the smallest's. */
  rssGrowth: 1.1,
};

/** Prints the process's own peak RSS in KiB at exit: VmHWM (reset at exec), else maxRSS. */
const RSS_HOOK =
  'data:text/javascript,process.on("exit",()=>{let k=process.resourceUsage().maxRSS;' +
  'try{k=Number(/VmHWM:\\s*(\\d+)/.exec(process.getBuiltinModule("fs").readFileSync("/proc/self/status","utf8"))[1])}catch{}' +
  'process.stderr.write("maxrss "+k+"\\n")})';

function log(message: string): void {
  process.stderr.write(`[verify-peers] ${message}\n`);
}

// ------------------------------------------------------------------ cleanup by PID

const processes = benchProcesses({ log, keep: KEEP, childTimeoutMs: CHILD_TIMEOUT_MS });
const { livePids, liveDirs, stoppers, stopAll, onSignal, runNode } = processes;

/** A checkout's `tufoci` entry point: bin/tufoci.js where it has one (the package's bin), else src/cli/main.ts. */
function cliEntry(root: string): string {
  const bin = join(root, 'bin', 'tufoci.js');
  return existsSync(bin) ? bin : join(root, 'src', 'cli', 'main.ts');
}

interface CliTarget {
  /** The checkout whose src/cli/main.ts runs. */
  root: string;
  label: string;
}

interface RepoFixture {
  repo: string;
  tags: number;
  bins: number;
  rootFile: string;
  trustedRoot: Uint8Array;
  digest: string;
}

interface Fixture {
  dir: string;
  registry: RegistryServer;
  /** host:port of the registry, as image references name it. */
  registryHost: string;
  proxy: CountingProxy;
  service: Tufoci;
  client: ServiceClient;
  images: RegistryStore;
  ci: Awaited<ReturnType<typeof loadSignerFile>>;
  ciPub: string;
  owner: { root: InMemorySigner; targets: InMemorySigner };
}

function verifyArgs(f: Fixture, r: RepoFixture, cli: CliTarget, host: string, mode: 'cold' | 'warm', rss = false): string[] {
  return [
    ...(rss ? ['--import', RSS_HOOK] : []),
    cliEntry(cli.root),
    'verify',
    `${host}/${r.repo}:v1`,
    '--trust',
    r.rootFile,
    '--sig-key',
    f.ciPub,
    ...(mode === 'cold' ? ['--ephemeral'] : []),
  ];
}

/** One CLI verify; throws unless it exited 0 and printed the digest. */
async function cliVerify(f: Fixture, r: RepoFixture, cli: CliTarget, home: string, mode: 'cold' | 'warm', opts: { host?: string; rss?: boolean } = {}): Promise<ChildRun & { maxRssKiB?: number }> {
  const run = await runNode(verifyArgs(f, r, cli, opts.host ?? f.registryHost, mode, opts.rss), { cwd: cli.root, env: { TUFOCI_HOME: home } });
  if (run.code !== 0 || !run.stdout.includes(r.digest)) {
    throw new Error(`${cli.label} verify ${r.repo}:v1 (${mode}) failed (exit ${run.code}): ${run.stderr.slice(-1500)} ${run.stdout.slice(-500)}`);
  }
  if (!opts.rss) return run;
  const m = /maxrss (\d+)/.exec(run.stderr);
  if (!m) throw new Error(`${cli.label} verify printed no maxrss line: ${run.stderr.slice(-500)}`);
  return { ...run, maxRssKiB: Number(m[1]) };
}

// ------------------------------------------------------------------ population

/**
 * The repository as `tufoci delegate add <repo> ci --key ci.pub --paths 'v*' --terminating` and
 * `tufoci publish` leave it: `ci` asked for B = binsFor(tags) bins, and (B > 1) `ci` delegating to
 * its bins `ci-<hex>` (the repository's bins key, x-tufoci-bins-scope), each holding its tags.
 */
async function populate(f: Fixture, repo: string, tags: number): Promise<RepoFixture> {
  const t0 = performance.now();
  const online = await onlineKeys(f.service.url, repo);
  const expires = isoExpiry(Date.now() + 30 * DAY);
  const bins = binsFor(tags, BINS_MAX);
  const root = await signMetadata(
    buildRoot({
      version: 1,
      expires: isoExpiry(Date.now() + 365 * DAY),
      root: { keys: [f.owner.root.public], threshold: 1 },
      targets: { keys: [f.owner.targets.public], threshold: 1 },
      snapshot: { keys: online.snapshot, threshold: 1 },
      timestamp: { keys: online.timestamp, threshold: 1 },
      scope: repo,
    }),
    [f.owner.root],
  );
  const top = buildTargets({
    version: 1,
    expires,
    delegations: [{ name: 'ci', keys: [f.ci.public], threshold: 1, paths: ['v*'], terminating: true, ...(bins > 1 ? { bins } : {}) }],
  });
  const dec = new TextDecoder();
  await createRepo(f.service.url, repo, `{"root":${dec.decode(root)},"targets":${dec.decode(await signMetadata(top, [f.owner.targets]))}}`);
  const image = await pushImage(f.images, repo, 'v1', `${repo} v1`);
  await pushSignature(f.images, repo, image, await signDescriptor(image, [f.ci]));

  const groups = new Map<string, Record<string, ImageTarget>>();
  let ciRole: Targets | undefined;
  const binsKey = repositoryBinsSigner(f.ci, repo) as InMemorySigner; // what tufoci publish signs the bins with
  if (bins > 1) {
    ciRole = buildTargets({ version: 1, expires, bins: { namePrefix: 'ci', bins, keys: [binsKey.public], threshold: 1 } });
    (ciRole.unrecognizedFields as Record<string, unknown>)[BINS_SCOPE_FIELD] = repo;
    await f.client.upload(repo, '1.ci.json', await signMetadata(ciRole, [f.ci]));
  }
  for (let i = 0; i < tags; i++) {
    const tag = `v${i}`;
    const role = ciRole ? binFor(ciRole, tag) : 'ci';
    let g = groups.get(role);
    if (!g) groups.set(role, (g = {}));
    // v1 is the real image every verify checks; every other tag names a digest of its own, as tags
    // of a real repository do (the same digest under every tag would make the roles compress away).
    g[tag] = tag === 'v1' ? image : { ...image, digest: `sha256:${createHash('sha256').update(`${repo}:${tag}`).digest('hex')}` };
  }
  let done = 0;
  for (const [role, targets] of groups) {
    await f.client.upload(repo, `1.${role}.json`, await signMetadata(buildTargets({ version: 1, expires, targets }), [ciRole ? binsKey : f.ci]));
    if (++done % 128 === 0) log(`  ${repo}: ${done}/${groups.size} role files uploaded`);
  }
  const trustedRoot = await f.client.metadata(repo, '1.root.json');
  const rootFile = join(f.dir, `${repo.replace(/\//g, '_')}.1.root.json`);
  await writeFile(rootFile, trustedRoot);
  log(`  ${repo}: ${tags} tags, ${bins > 1 ? `ci → ${bins} bins` : 'ci (no bins)'}, ${groups.size} role file(s) uploaded, ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  return { repo, tags, bins, rootFile, trustedRoot, digest: image.digest };
}

// ------------------------------------------------------------------ measurements

async function inProcess(f: Fixture, r: RepoFixture, registryUrl: string, stateDir: string | undefined, tufClient: TufClientName = 'tufoci'): Promise<void> {
  const v = await verifyImage({
    store: new RegistryStore({ url: registryUrl }),
    repository: r.repo,
    tag: 'v1',
    trustedRoot: r.trustedRoot,
    signatures: { keys: [f.ci.public] },
    tufClient,
    ...(stateDir !== undefined ? { stateDir } : {}),
  });
  if (v.digest !== r.digest || v.signers.length !== 1) throw new Error(`in-process verify of ${r.repo}:v1 answered ${v.digest} signed by ${v.signers.length}`);
}

interface Counted {
  tufRequests: number;
  tufBody: number;
  imageRequests: number;
  imageBody: number;
  files: string[];
}

function count(repo: string, requests: readonly CountedRequest[]): Counted {
  const out: Counted = { tufRequests: 0, tufBody: 0, imageRequests: 0, imageBody: 0, files: [] };
  const tuf = `/v2/${repo}/tuf/`;
  for (const q of requests) {
    if (q.path.startsWith(tuf)) {
      out.tufRequests++;
      out.tufBody += q.bodyBytes;
      // `tuf/manifests/<file name>` or `tuf/blobs/sha256:<12 hex>`, with what the answer's body cost.
      out.files.push(`tuf/${q.path.slice(tuf.length).replace(/(sha256:[0-9a-f]{12})[0-9a-f]+/, '$1…')} ${q.status} ${q.bodyBytes} B`);
    } else {
      out.imageRequests++;
      out.imageBody += q.bodyBytes;
      out.files.push(`${q.path.replace(`/v2/${repo}/`, '').split('/')[0]} ${q.status}`);
    }
  }
  return out;
}

interface SizeRow {
  tags: number;
  bins: number;
  inproc: { cold: number[]; warm: number[]; tufjsCold: number[]; tufjsWarm: number[] };
  cli: { floor: number[]; cold: number[]; warm: number[] };
  before?: { cold: number[]; warm: number[] } | { error: string };
  notary?: { cold: LookupResult[]; warm: LookupResult[]; populateS: number };
  counted: { cold: Counted; warm: Counted; cliCold: number; cliWarm: number };
  rss: { cold: number[]; warm: number[] };
}

async function measureSize(f: Fixture, r: RepoFixture, peer: NotaryPeer | undefined, gun: string | undefined, notaryPopulateS: number | undefined): Promise<SizeRow> {
  const sdir = await mkdtemp(join(f.dir, `size-${r.tags}-`));
  let n = 0;
  const fresh = async (): Promise<string> => {
    const d = join(sdir, `s${++n}`);
    await mkdir(d, { recursive: true, mode: 0o700 });
    return d;
  };

  // 1. In-process, straight from the registry.
  log(`${r.tags} tags: in-process verifies`);
  const cold = await timeRuns(() => inProcess(f, r, f.registry.url, undefined), COLD_RUNS, INPROC_WARMUP);
  const warmDir = await fresh();
  const warm = await timeRuns(() => inProcess(f, r, f.registry.url, warmDir), WARM_RUNS, INPROC_WARMUP);
  const tufjsCold = await timeRuns(() => inProcess(f, r, f.registry.url, undefined, 'tuf-js'), COLD_RUNS, INPROC_WARMUP);
  const tufjsDir = await fresh();
  const tufjsWarm = await timeRuns(() => inProcess(f, r, f.registry.url, tufjsDir, 'tuf-js'), WARM_RUNS, INPROC_WARMUP);

  // 4. Requests and bytes, through the proxy (not timed).
  f.proxy.reset();
  await inProcess(f, r, f.proxy.url, undefined);
  const countedCold = count(r.repo, f.proxy.requests);
  const countDir = await fresh();
  await inProcess(f, r, f.proxy.url, countDir);
  f.proxy.reset();
  await inProcess(f, r, f.proxy.url, countDir);
  const countedWarm = count(r.repo, f.proxy.requests);
  const proxyHost = f.proxy.url.replace(/^http:\/\//, '');
  const current: CliTarget = { root: CLI_ROOT, label: 'tufoci' };
  f.proxy.reset();
  await cliVerify(f, r, current, await fresh(), 'cold', { host: proxyHost });
  const cliCold = f.proxy.requests.length;
  const cliCountHome = await fresh();
  await cliVerify(f, r, current, cliCountHome, 'warm', { host: proxyHost });
  f.proxy.reset();
  await cliVerify(f, r, current, cliCountHome, 'warm', { host: proxyHost });
  const cliWarm = f.proxy.requests.length;

  // 2, 3, 6. CLI, before, Notary and node -e 0 in interleaved rounds.
  log(`${r.tags} tags: CLI${BEFORE ? ', before' : ''}${peer ? ', notary lookup' : ''} and node -e 0, ${CLI_COLD_RUNS} cold + ${CLI_WARM_RUNS} warm rounds`);
  const before: CliTarget | undefined = BEFORE ? { root: BEFORE, label: 'before' } : undefined;
  let beforeError: string | undefined;
  const beforeTimes = { cold: [] as number[], warm: [] as number[] };
  const tryBefore = async (home: string, mode: 'cold' | 'warm'): Promise<void> => {
    if (!before || beforeError) return;
    try {
      beforeTimes[mode].push((await cliVerify(f, r, before, home, mode)).ms);
    } catch (e) {
      beforeError = (e instanceof Error ? e.message : String(e)).slice(0, 600);
      log(`${r.tags} tags: the before CLI failed: ${beforeError}`);
    }
  };
  const cli = { floor: [] as number[], cold: [] as number[], warm: [] as number[] };
  const notaryCold: LookupResult[] = [];
  const notaryWarm: LookupResult[] = [];
  const notaryOk = (x: LookupResult): LookupResult => {
    if (!x.ok) throw new Error(`notary lookup ${gun} v1 failed`);
    return x;
  };
  // One untimed run of each first (module caches, page cache).
  await runNode(['-e', '0'], { cwd: REPO_ROOT });
  await cliVerify(f, r, current, await fresh(), 'cold');
  const coldHome = await fresh(); // --ephemeral: nothing is kept there
  const beforeColdHome = await fresh();
  if (before) {
    await tryBefore(beforeColdHome, 'cold');
    beforeTimes.cold.length = 0;
  }
  for (let i = 0; i < CLI_COLD_RUNS; i++) {
    cli.floor.push((await runNode(['-e', '0'], { cwd: REPO_ROOT })).ms);
    cli.cold.push((await cliVerify(f, r, current, coldHome, 'cold')).ms);
    await tryBefore(beforeColdHome, 'cold');
  }
  if (peer && gun) for (let i = 0; i < COLD_RUNS; i++) notaryCold.push(notaryOk(await peer.lookup(gun, 'v1', 'cold')));
  const warmHome = await fresh();
  await cliVerify(f, r, current, warmHome, 'warm'); // primes the state
  const beforeWarmHome = await fresh();
  if (before) {
    await tryBefore(beforeWarmHome, 'warm');
    beforeTimes.warm.length = 0;
  }
  for (let i = 0; i < Math.max(CLI_WARM_RUNS, peer ? WARM_RUNS : 0); i++) {
    if (i < CLI_WARM_RUNS) {
      cli.floor.push((await runNode(['-e', '0'], { cwd: REPO_ROOT })).ms);
      cli.warm.push((await cliVerify(f, r, current, warmHome, 'warm')).ms);
      await tryBefore(beforeWarmHome, 'warm');
    }
    if (peer && gun && i < WARM_RUNS) notaryWarm.push(notaryOk(await peer.lookup(gun, 'v1', 'warm')));
  }

  // 5. Peak RSS of the CLI.
  const rss = { cold: [] as number[], warm: [] as number[] };
  for (let i = 0; i < RSS_RUNS; i++) {
    rss.cold.push((await cliVerify(f, r, current, coldHome, 'cold', { rss: true })).maxRssKiB as number);
    rss.warm.push((await cliVerify(f, r, current, warmHome, 'warm', { rss: true })).maxRssKiB as number);
  }

  if (!KEEP) await rm(sdir, { recursive: true, force: true });
  return {
    tags: r.tags,
    bins: r.bins,
    inproc: { cold, warm, tufjsCold, tufjsWarm },
    cli,
    ...(before ? { before: beforeError ? { error: beforeError } : beforeTimes } : {}),
    ...(peer && notaryPopulateS !== undefined ? { notary: { cold: notaryCold, warm: notaryWarm, populateS: notaryPopulateS } } : {}),
    counted: { cold: countedCold, warm: countedWarm, cliCold, cliWarm },
    rss,
  };
}

interface BigRole {
  status: number;
  code: string;
  message: string;
  bytes: number;
  coldMs?: number[];
}

/** 7. A plain delegated role of 19,000 targets, uploaded as 2.ci.json of a repository of its own. */
async function bigRole(f: Fixture): Promise<BigRole> {
  const r = await populate(f, 'bench/peers-big-role', 10);
  const image = await f.images.getManifest(r.repo, 'v1', 1 << 20);
  const target: ImageTarget = { digest: image.digest, size: image.bytes.byteLength, mediaType: image.mediaType };
  const targets: Record<string, ImageTarget> = {};
  for (let i = 0; i < BIG_ROLE_TARGETS; i++) targets[`v${i}`] = target;
  const bytes = await signMetadata(buildTargets({ version: 2, expires: isoExpiry(Date.now() + 30 * DAY), targets }), [f.ci]);
  try {
    await f.client.upload(r.repo, '2.ci.json', bytes);
  } catch (e) {
    if (e instanceof ServiceClientError) return { status: e.status, code: e.code, message: e.message, bytes: bytes.byteLength };
    throw e;
  }
  log(`the ${BIG_ROLE_TARGETS}-target role was accepted: timing cold verifies of ${r.repo}:v1`);
  const coldMs = await timeRuns(() => inProcess(f, r, f.registry.url, undefined), COLD_RUNS, 2);
  return { status: 201, code: 'accepted', message: '', bytes: bytes.byteLength, coldMs };
}

// ------------------------------------------------------------------ report

const n0 = (x: number): string => Math.round(x).toLocaleString('en-US');
const ms = (x: number): string => (x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2));
const mib = (kib: number): string => (kib / 1024).toFixed(1);
const ratio = (a: number, b: number): string => `${(a / b).toFixed(2)}×`;
const verdict = (ok: boolean | undefined): string => (ok === undefined ? 'n/a' : ok ? 'PASS' : 'FAIL');
const per = (rows: SizeRow[], fn: (r: SizeRow) => string): string => rows.map((r) => `${n0(r.tags)}: ${fn(r)}`).join(' · ');

function report(rows: SizeRow[], big: BigRole, startedAt: number): void {
  console.log(`\nverify-peers.bench — ${machine()}; load average ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  console.log(`in-process and notary: ${COLD_RUNS} cold, ${WARM_RUNS} warm runs per size; CLI${BEFORE ? ' and before' : ''}: ${CLI_COLD_RUNS} cold, ${CLI_WARM_RUNS} warm rounds; peak RSS: ${RSS_RUNS} runs; all medians`);
  console.log('TUF metadata read straight from the registry (R/tuf); tag v1; the CI key\'s signature checked\n');

  console.log('1. In-process verifyImage, median ms (goals: warm ≤ 2, cold ≤ 10)');
  console.table(
    rows.map((r) => ({
      tags: r.tags,
      'ci bins': r.bins > 1 ? r.bins : 'none',
      'tufoci cold': ms(median(r.inproc.cold)),
      'cold ≤ 10': verdict(median(r.inproc.cold) <= GOAL.coldMs),
      'tufoci warm': ms(median(r.inproc.warm)),
      'warm ≤ 2': verdict(median(r.inproc.warm) <= GOAL.warmMs),
      'tuf-js cold': ms(median(r.inproc.tufjsCold)),
      'tuf-js warm': ms(median(r.inproc.tufjsWarm)),
    })),
  );

  console.log('2./3./6. Whole process, spawn→exit, median ms');
  console.table(
    rows.map((r) => {
      const b = r.before && 'cold' in r.before ? r.before : undefined;
      const row: Record<string, string | number> = {
        tags: r.tags,
        'node -e 0': ms(median(r.cli.floor)),
        'CLI cold': ms(median(r.cli.cold)),
        'CLI warm': ms(median(r.cli.warm)),
        'warm − floor': ms(median(r.cli.warm) - median(r.cli.floor)),
      };
      if (BEFORE) {
        row['before cold'] = b ? ms(median(b.cold)) : 'failed';
        row['before warm'] = b ? ms(median(b.warm)) : 'failed';
      }
      row['notary cold'] = r.notary ? ms(median(r.notary.cold.map((x) => x.ms))) : '—';
      row['notary warm'] = r.notary ? ms(median(r.notary.warm.map((x) => x.ms))) : '—';
      row['CLI/notary cold'] = r.notary ? ratio(median(r.cli.cold), median(r.notary.cold.map((x) => x.ms))) : '—';
      row['CLI/notary warm'] = r.notary ? ratio(median(r.cli.warm), median(r.notary.warm.map((x) => x.ms))) : '—';
      return row;
    }),
  );
  for (const r of rows) if (r.before && 'error' in r.before) console.log(`  before, ${r.tags} tags: ${r.before.error}`);
  for (const r of rows) if (r.notary) console.log(`  notary, ${r.tags} tags: populated in ${r.notary.populateS.toFixed(1)} s`);

  console.log('\n4. Requests and response-body bytes per verify from the registry (goals: warm = 2 requests in all, cold ≤ 8; TUF bytes of a cold verify ≤ 30,000 at 100,000 tags)');
  const reqRows: Array<Record<string, string | number>> = [];
  for (const r of rows) {
    for (const mode of ['cold', 'warm'] as const) {
      const c = r.counted[mode];
      const nl = r.notary?.[mode];
      reqRows.push({
        tags: r.tags,
        verify: mode,
        'TUF req': c.tufRequests,
        'TUF bytes': c.tufBody,
        'img+sig req': c.imageRequests,
        'img+sig bytes': c.imageBody,
        'total req': c.tufRequests + c.imageRequests,
        'total bytes': c.tufBody + c.imageBody,
        'CLI total req': mode === 'cold' ? r.counted.cliCold : r.counted.cliWarm,
        'notary req': nl ? median(nl.map((x) => x.requests)) : '—',
        'notary bytes': nl ? median(nl.map((x) => x.bytes)) : '—',
      });
    }
  }
  console.table(reqRows);
  for (const r of rows) console.log(`  ${r.tags} tags: cold ${r.counted.cold.files.join(', ')}\n  ${' '.repeat(String(r.tags).length)}       warm ${r.counted.warm.files.join(', ')}`);

  console.log('\n5. CLI peak RSS (VmHWM: the process\'s own, from exec to exit), median MiB');
  console.table(rows.map((r) => ({ tags: r.tags, cold: mib(median(r.rss.cold)), warm: mib(median(r.rss.warm)) })));

  const bigLine =
    big.code === 'accepted'
      ? `accepted (HTTP ${big.status}); in-process cold verify of a tag in it ${ms(median(big.coldMs ?? []))} ms`
      : `refused: HTTP ${big.status} ${big.code}`;
  console.log(`\n7. Upload of a delegated role of ${n0(BIG_ROLE_TARGETS)} targets (2.ci.json, ${n0(big.bytes)} bytes): ${bigLine}${big.message ? `\n   "${big.message.slice(0, 400)}"` : ''}`);

  // ---------------------------------------------------------------- verdicts
  const final: Array<Record<string, string>> = [];
  const add = (check: string, tufoci: string, notary: string, r: string, goal: string, ok: boolean | undefined): void => {
    final.push({ check, tufoci, notary, ratio: r, goal, verdict: verdict(ok) });
  };
  add('in-process warm verify', per(rows, (r) => `${ms(median(r.inproc.warm))} ms`), '', '', '≤ 2 ms, per size', rows.every((r) => median(r.inproc.warm) <= GOAL.warmMs));
  add('in-process cold verify', per(rows, (r) => `${ms(median(r.inproc.cold))} ms`), '', '', '≤ 10 ms, per size', rows.every((r) => median(r.inproc.cold) <= GOAL.coldMs));
  const at10k = rows.find((r) => r.tags === 10_000 && r.notary);
  if (at10k?.notary) {
    const a = median(at10k.cli.warm);
    const b = median(at10k.notary.warm.map((x) => x.ms));
    add('CLI warm verify vs notary lookup warm', `${ms(a)} ms`, `${ms(b)} ms`, ratio(a, b), '≤ 1×, 10,000 tags', a / b <= GOAL.cliVsNotary);
  } else {
    add('CLI warm verify vs notary lookup warm', 'not measured at 10,000 tags', '', '', '≤ 1×, 10,000 tags', undefined);
  }
  add(
    'CLI warm verify vs node -e 0 + 30 ms',
    per(rows, (r) => `${ms(median(r.cli.warm))} vs ${ms(median(r.cli.floor) + GOAL.cliOverFloorMs)}`),
    '',
    `max ${Math.max(...rows.map((r) => median(r.cli.warm) / (median(r.cli.floor) + GOAL.cliOverFloorMs))).toFixed(2)}×`,
    '≤ node -e 0 + 30 ms, every size',
    rows.every((r) => median(r.cli.warm) <= median(r.cli.floor) + GOAL.cliOverFloorMs),
  );
  add(
    `${n0(BIG_ROLE_TARGETS)}-target upload`,
    big.code === 'accepted' ? `accepted, cold verify ${ms(median(big.coldMs ?? []))} ms` : `refused (HTTP ${big.status} ${big.code})`,
    '',
    '',
    'refused, or verifies in ≤ 50 ms',
    big.code !== 'accepted' ? big.status >= 400 && big.status < 500 : median(big.coldMs ?? []) <= GOAL.bigRoleColdMs,
  );
  const at100k = rows.find((r) => r.tags === 100_000);
  const notaryLargest = [...rows].reverse().find((r) => r.notary);
  const notaryColdBytes = (r: SizeRow): number => median((r.notary as NonNullable<SizeRow['notary']>).cold.map((x) => x.bytes));
  add(
    'TUF bytes of a cold verify',
    at100k ? n0(at100k.counted.cold.tufBody) : 'not measured at 100,000 tags',
    at100k?.notary ? n0(notaryColdBytes(at100k)) : notaryLargest ? `${n0(notaryColdBytes(notaryLargest))} (at ${n0(notaryLargest.tags)} tags)` : '',
    at100k?.notary ? ratio(at100k.counted.cold.tufBody, notaryColdBytes(at100k)) : '',
    '≤ 30,000, 100,000 tags',
    at100k ? at100k.counted.cold.tufBody <= GOAL.coldTufBytes : undefined,
  );
  const total = (c: Counted): number => c.tufRequests + c.imageRequests;
  const notaryReq = rows.filter((r) => r.notary);
  add(
    'requests warm / cold from the registry',
    per(rows, (r) => `${total(r.counted.warm)} / ${total(r.counted.cold)}`),
    notaryReq.length ? per(notaryReq, (r) => `${median(r.notary!.warm.map((x) => x.requests))} / ${median(r.notary!.cold.map((x) => x.requests))}`) : '',
    '',
    '2 / ≤ 8, every size',
    rows.every((r) => total(r.counted.warm) === GOAL.warmRequests && total(r.counted.cold) <= GOAL.coldRequests),
  );
  const bySize = [...rows].sort((a, b) => a.tags - b.tags);
  const lo = bySize[0] as SizeRow;
  const hi = bySize[bySize.length - 1] as SizeRow;
  const growth = (mode: 'cold' | 'warm'): number => median(hi.rss[mode]) / median(lo.rss[mode]);
  add(
    'client memory (peak RSS) across sizes',
    `cold ${per(rows, (r) => `${mib(median(r.rss.cold))}`)} MiB; warm ${per(rows, (r) => `${mib(median(r.rss.warm))}`)} MiB`,
    '',
    `${n0(hi.tags)}/${n0(lo.tags)} tags: cold ${growth('cold').toFixed(2)}×, warm ${growth('warm').toFixed(2)}×`,
    `independent of tag count (largest ≤ ${GOAL.rssGrowth}× smallest)`,
    rows.length < 2 ? undefined : growth('cold') <= GOAL.rssGrowth && growth('warm') <= GOAL.rssGrowth,
  );
  console.log('\nSummary');
  console.table(final);
  console.log(`${machine()}; load average ${loadavg().map((l) => l.toFixed(2)).join(' ')}; total ${((performance.now() - startedAt) / 1000).toFixed(0)} s`);
}

// ------------------------------------------------------------------ main

async function main(): Promise<void> {
  assertNode24();
  if (SIZES.some((n) => !Number.isSafeInteger(n) || n < 2)) throw new Error(`BENCH_SIZES must be integers ≥ 2 separated by commas (tag v1 is verified), got ${process.env['BENCH_SIZES']}`);
  if (BEFORE) {
    try {
      await stat(join(BEFORE, 'src', 'cli', 'main.ts'));
    } catch {
      throw new Error(`BENCH_BEFORE=${BEFORE} has no src/cli/main.ts`);
    }
  }
  const startedAt = performance.now();
  console.log(`verify-peers.bench — ${machine()}; load average ${loadavg().map((l) => l.toFixed(2)).join(' ')}; sizes ${SIZES.join(', ')}; notary up to ${NOTARY_MAX}${BEFORE ? `; before: ${BEFORE}` : ''}`);
  processes.install();
  const dir = await processes.tempDir('tufoci-verify-peers-');
  const rows: SizeRow[] = [];
  let big: BigRole;
  try {
    const registry = await startRegistry();
    livePids.add(registry.pid);
    liveDirs.add(dirname(registry.storageDir));
    stoppers.push(async () => {
      await registry.stop();
      livePids.delete(registry.pid);
      liveDirs.delete(dirname(registry.storageDir));
    });
    const proxy = await startCountingProxy(registry.url);
    stoppers.push(() => proxy.close());
    const service = await startTufoci({ dataDir: join(dir, 'service'), registry: registry.url });
    livePids.add(service.pid);
    stoppers.push(async () => {
      await service.stop();
      livePids.delete(service.pid);
    });
    log(`docker-registry ${registry.url} (pid ${registry.pid}), tufoci serve --registry ${service.url} (pid ${service.pid})`);
    let peer: NotaryPeer | undefined;
    if (SIZES.some((n) => n <= NOTARY_MAX)) {
      peer = await startNotary();
      // notary-peer.ts installs SIGINT/SIGTERM handlers that exit once its own servers stopped,
      // which would race ours: ours stops everything in order (the peer included, by peer.stop()),
      // so its handlers are detached; its exit hook (SIGKILL by PID) stays as the last resort.
      for (const sig of ['SIGINT', 'SIGTERM'] as const) for (const l of process.listeners(sig)) if (l !== onSignal) process.off(sig, l);
      livePids.add(peer.serverPid);
      livePids.add(peer.signerPid);
      const p = peer;
      stoppers.push(async () => {
        await p.stop();
        livePids.delete(p.serverPid);
        livePids.delete(p.signerPid);
      });
      log(`notary-server ${peer.url} (pid ${peer.serverPid}), notary-signer pid ${peer.signerPid}`);
    }
    const ciFiles = await generateKeyFiles(join(dir, 'ci'), 'ed25519');
    const f: Fixture = {
      dir,
      registry,
      registryHost: registry.url.replace(/^http:\/\//, ''),
      proxy,
      service,
      client: new ServiceClient({ url: service.url, token: ADMIN_TOKEN, timeoutMs: 120_000 }),
      images: new RegistryStore({ url: registry.url }),
      ci: await loadSignerFile(ciFiles.privatePath),
      ciPub: ciFiles.publicPath,
      owner: { root: InMemorySigner.generate(), targets: InMemorySigner.generate() },
    };

    for (const size of SIZES) {
      const withNotary = peer !== undefined && size <= NOTARY_MAX;
      const gun = withNotary ? `bench.example/peers/app-${size}-${Date.now().toString(36)}` : undefined;
      log(`${size} tags: populating tufoci${withNotary ? ' and Notary (side by side)' : ''}`);
      // Set-up only (not timed against anything): both populations run at once.
      const [repo, notaryRepo] = await Promise.all([
        populate(f, `bench/peers-${size}`, size),
        withNotary && peer && gun ? peer.createRepository(gun, syntheticTags(size), { delegation: true }) : Promise.resolve(undefined),
      ]);
      if (notaryRepo) log(`  notary ${gun}: ${size} tags in ${notaryRepo.role}, ${(notaryRepo.timings.totalMs / 1000).toFixed(1)} s`);
      rows.push(await measureSize(f, repo, withNotary ? peer : undefined, gun, notaryRepo ? notaryRepo.timings.totalMs / 1000 : undefined));
      const last = rows[rows.length - 1] as SizeRow;
      log(`${size} tags: in-process cold ${ms(median(last.inproc.cold))} / warm ${ms(median(last.inproc.warm))} ms; CLI cold ${ms(median(last.cli.cold))} / warm ${ms(median(last.cli.warm))} ms`);
    }
    log(`uploading a delegated role of ${BIG_ROLE_TARGETS} targets`);
    big = await bigRole(f);
  } finally {
    await stopAll();
  }
  report(rows, big, startedAt);
}

processes.run(main);
