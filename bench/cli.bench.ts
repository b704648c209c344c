/**
 * Start-up of the `tufoci` command (the start-up issue, 14), in one run:
 *
 *   npm run bench:cli        (= node bench/cli.bench.ts, on Node 24:
 *                              PATH=$PWD/node_modules/.bin:$PATH node bench/cli.bench.ts)
 *
 * What it measures. Every figure is a child process timed spawn→exit (wall clock), on the Node
 * binary running this script (process.execPath), the median over BENCH_RUNS interleaved rounds:
 * each round runs every command below once, in the same order, so that drift of the machine hits
 * them alike; BENCH_WARMUP untimed rounds come first (page cache, Node's compile cache, the saved
 * TUF state). Commands:
 *  - `node -e 0`, the floor of any Node CLI, the reference every ratio is taken against;
 *  - `node import-client.mjs` in the installed project: the compile cache on (as bin/tufoci.js
 *    does), then `await import('tufoci')` and exit — loading the whole client entry (every export:
 *    more modules than a verify needs, which the CLI imports by path);
 *  - `tufoci --help`;
 *  - `tufoci keygen k<n>` (a new name every run, in a scratch directory; the two files are removed
 *    after the run, outside the timing);
 *  - `tufoci status <repo>` against the `tufoci serve --registry` started here (TUFOCI_SERVER and
 *    TUFOCI_TOKEN set);
 *  - `tufoci verify <host:port>/<repo>:v1 --trust 1.root.json --sig-key ci.pub` straight from the
 *    registry (no --server), warm: a TUFOCI_HOME of its own per column in which one verify already
 *    ran (the warm-up rounds do it), so each run reads the timestamp, finds nothing new, and checks
 *    the manifest and the CI key's signature.
 * Each tufoci command runs in four columns:
 *  - installed: `npm pack` of this checkout (prepack builds dist/ with tsc, as
 *    test/package/install.test.ts does — so uncommitted changes in the tree are in it) installed
 *    with `npm install --prefer-offline <tgz>` into an empty temporary project, run as
 *    `node <project>/node_modules/tufoci/bin/tufoci.js …`: built JavaScript from dist/, the
 *    compile cache on. This is the column the goals are about;
 *  - installed, TUFOCI_NO_COMPILE_CACHE=1: the same with Node's compile cache off (what the cache
 *    gives on built JavaScript);
 *  - checkout: `node bin/tufoci.js …` of this checkout (src/*.ts, type stripping, compile cache on);
 *  - checkout, TUFOCI_NO_COMPILE_CACHE=1 (every module type-stripped and compiled every run).
 * And once, after the rounds, in one Node process in the installed project: `import { verifyImage }
 * from 'tufoci'`, 10 untimed verifies, then BENCH_RUNS timed warm verifies of the same tag with the
 * same state directory, a new RegistryStore per verify (as a fresh process has): the client core's
 * own cost of a warm verify, without Node's start-up or module loading.
 *
 * Set-up (not timed): a docker-registry and `tufoci serve --registry` (the checkout's, via
 * bench/service-read.bench.ts startTufoci), each on a free loopback port; an image pushed as
 * <repo>:v1; then the checkout's CLI as an owner would: keygen root, targets and ci; init; delegate
 * add ci --paths 'v*' --terminating; publish <host>/<repo>:v1 --role ci --key ci.key.
 *
 * Environment (all optional):
 *   BENCH_RUNS=30      timed rounds (and timed in-process verifies)
 *   BENCH_WARMUP=3     untimed rounds before them
 *   BENCH_KEEP=1       keep the temporary directory (printed): the tarball, the project, the keys
 *
 * How to read it. Quote medians; every figure is one machine under whatever else runs on it (the
 * machine, the load average at the start and the end, and the commit the package was packed from
 * are printed). "(n×)" is a command's median over the median of `node -e 0` in the same rounds.
 * The goals (installed column): `--help` ≤ 2× node -e 0; `keygen` ≤ 3×; `status` ≤ 3×; warm
 * `verify` ≤ Node's start-up plus the client core's own cost, i.e. node -e 0 + the in-process warm
 * verify median; what the CLI takes beyond that sum is the residual (module loading, compiling,
 * first use of fetch and of the JIT, process exit), and the goal is met when it is ≤ 0. The
 * `import('tufoci')` row puts module loading in scale (it loads more than verify does, so it is not
 * a subset of the residual). "cache saves" is the installed column without the compile cache minus
 * with it. The final table prints PASS/FAIL per goal; the bench exits 0 once it has measured
 * everything, whatever the verdicts, and non-zero when a set-up step (pack, install, a server, the
 * repository, a command that should succeed) failed. Every server is started here on a free
 * loopback port and stopped by PID at the end, on SIGINT/SIGTERM too.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { promisify } from 'node:util';
import { RegistryStore } from '../src/storage/index.ts';
import { pushImage } from '../test/support/image.ts';
import { startRegistry } from '../test/support/registry-server.ts';
import { ADMIN_TOKEN, REPO_ROOT, assertNode24, envInt, startTufoci } from './service-read.bench.ts';
import { machine, median } from './stats.ts';
import { benchProcesses, type ChildRun } from './processes.ts';

// ------------------------------------------------------------------ settings

const RUNS = envInt('BENCH_RUNS', 30);
const WARMUP = envInt('BENCH_WARMUP', 3, { allowZero: true });
const KEEP = process.env['BENCH_KEEP'] === '1';
const REPO = 'bench/cli-startup';
const CHILD_TIMEOUT_MS = 60_000;
const IN_PROCESS_WARMUP = 10;

const GOAL = { helpX: 2, keygenX: 3, statusX: 3 };

const execFileP = promisify(execFile);

function log(message: string): void {
  process.stderr.write(`[cli.bench] ${message}\n`);
}

// ------------------------------------------------------------------ cleanup by PID

const processes = benchProcesses({ log, keep: KEEP, childTimeoutMs: CHILD_TIMEOUT_MS });
const { livePids, liveDirs, stoppers, stopAll, runNode } = processes;

/** npm (not timed) with `node` on PATH being this Node binary, so prepack and the install run on it. */
async function npm(args: string[], cwd: string): Promise<string> {
  const env = { ...process.env, PATH: `${dirname(process.execPath)}${delimiter}${process.env['PATH'] ?? ''}`, npm_config_update_notifier: 'false' };
  try {
    return (await execFileP('npm', args, { cwd, env, maxBuffer: 64 * 1024 * 1024 })).stdout;
  } catch (e) {
    const err = e as { code?: unknown; stdout?: string; stderr?: string };
    throw new Error(`npm ${args.join(' ')} failed (${String(err.code)}):\n${err.stdout ?? ''}\n${err.stderr ?? String(e)}`);
  }
}

async function git(args: string[]): Promise<string> {
  try {
    return (await execFileP('git', args, { cwd: REPO_ROOT })).stdout.trim();
  } catch {
    return '?';
  }
}

// ------------------------------------------------------------------ what is timed

type Column = 'installed' | 'installed, no cache' | 'checkout' | 'checkout, no cache';
const COLUMNS: readonly Column[] = ['installed', 'installed, no cache', 'checkout', 'checkout, no cache'];
type Command = 'help' | 'keygen' | 'status' | 'verify';
const COMMANDS: readonly Command[] = ['help', 'keygen', 'status', 'verify'];
const LABEL: Record<Command, string> = {
  help: 'tufoci --help',
  keygen: 'tufoci keygen <new name>',
  status: 'tufoci status <repo>',
  verify: 'tufoci verify (warm, registry)',
};

interface Setup {
  dir: string;
  project: string;
  registryUrl: string;
  registryHost: string;
  serviceUrl: string;
  rootFile: string;
  ciPub: string;
  digest: string;
  commit: string;
}

interface ColumnCtx {
  column: Column;
  bin: string;
  env: NodeJS.ProcessEnv;
  /** cwd of every command (keygen writes there). */
  scratch: string;
  /** TUFOCI_HOME of the warm verify. */
  home: string;
}

let keyCounter = 0;

/** One run of `command` in `c`; throws unless it did what it should (exit 0 and the expected output). */
async function runCommand(s: Setup, c: ColumnCtx, command: Command): Promise<number> {
  let args: string[];
  let check: (r: ChildRun) => boolean;
  let after: (() => Promise<void>) | undefined;
  if (command === 'help') {
    args = ['--help'];
    check = (r) => r.stdout.startsWith('usage: tufoci <command>');
  } else if (command === 'keygen') {
    const name = `k${++keyCounter}`;
    args = ['keygen', name];
    check = (r) => existsSync(join(c.scratch, `${name}.key`)) && existsSync(join(c.scratch, `${name}.pub`));
    after = async () => {
      await rm(join(c.scratch, `${name}.key`), { force: true });
      await rm(join(c.scratch, `${name}.pub`), { force: true });
    };
  } else if (command === 'status') {
    args = ['status', REPO];
    check = (r) => r.stdout.startsWith(REPO) && r.stdout.includes('timestamp');
  } else {
    args = ['verify', `${s.registryHost}/${REPO}:v1`, '--trust', s.rootFile, '--sig-key', s.ciPub];
    check = (r) => r.stdout.split('\n')[0] === s.digest && r.stdout.includes('signed by');
  }
  const r = await runNode([c.bin, ...args], { cwd: c.scratch, env: { ...c.env, TUFOCI_HOME: c.home } });
  if (r.code !== 0 || !check(r)) throw new Error(`${c.column}: tufoci ${args.join(' ')} failed (exit ${r.code}):\n${r.stdout.slice(-1500)}\n${r.stderr.slice(-1500)}`);
  await after?.();
  return r.ms;
}

/** Imports the client entry the way bin/tufoci.js starts (compile cache on), then exits. */
const IMPORT_CLIENT = `import * as nodeModule from 'node:module';
nodeModule.enableCompileCache?.();
await import('tufoci');
`;

/**
 * In one process: import the installed package, then warm verifies with one state directory, a new
 * RegistryStore each; prints {importMs, firstMs, times, digest, signers} as JSON.
 */
const IN_PROCESS = `import * as nodeModule from 'node:module';
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
nodeModule.enableCompileCache?.();
const [url, repository, tag, rootFile, pubFile, stateDir, warmup, runs] = process.argv.slice(2);
const t0 = performance.now();
const { RegistryStore, loadPublicKeyFile, verifyImage } = await import('tufoci');
const importMs = performance.now() - t0;
const trustedRoot = readFileSync(rootFile);
const key = await loadPublicKeyFile(pubFile);
const once = () => verifyImage({ store: new RegistryStore({ url }), repository, tag, trustedRoot, stateDir, timeoutMs: 30000, signatures: { keys: [key.public], threshold: 1 } });
const t1 = performance.now();
const first = await once();
const firstMs = performance.now() - t1;
for (let i = 0; i < Number(warmup); i++) await once();
const times = [];
for (let i = 0; i < Number(runs); i++) {
  const t = performance.now();
  const r = await once();
  times.push(performance.now() - t);
  if (r.digest !== first.digest) throw new Error('digest changed: ' + r.digest);
}
process.stdout.write(JSON.stringify({ importMs, firstMs, times, digest: first.digest, signers: first.signers.length }));
`;

interface InProcess {
  importMs: number;
  firstMs: number;
  times: number[];
  digest: string;
  signers: number;
}

async function inProcessVerify(s: Setup): Promise<InProcess> {
  const script = join(s.project, 'in-process-verify.mjs');
  await writeFile(script, IN_PROCESS);
  const stateDir = join(s.dir, 'in-process-state');
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  const r = await runNode([script, s.registryUrl, REPO, 'v1', s.rootFile, s.ciPub, stateDir, String(IN_PROCESS_WARMUP), String(RUNS)], { cwd: s.project });
  if (r.code !== 0) throw new Error(`in-process verify failed (exit ${r.code}): ${r.stderr.slice(-2000)}`);
  const out = JSON.parse(r.stdout) as InProcess;
  if (out.digest !== s.digest || out.signers !== 1) throw new Error(`in-process verify answered ${out.digest} signed by ${out.signers}, expected ${s.digest} signed by 1`);
  return out;
}

// ------------------------------------------------------------------ set-up

async function setUp(dir: string): Promise<Setup> {
  const registry = await startRegistry();
  livePids.add(registry.pid);
  liveDirs.add(dirname(registry.storageDir));
  stoppers.push(async () => {
    await registry.stop();
    livePids.delete(registry.pid);
    liveDirs.delete(dirname(registry.storageDir));
  });
  const service = await startTufoci({ dataDir: join(dir, 'service'), registry: registry.url });
  livePids.add(service.pid);
  stoppers.push(async () => {
    await service.stop();
    livePids.delete(service.pid);
  });
  log(`docker-registry ${registry.url} (pid ${registry.pid}), tufoci serve --registry ${service.url} (pid ${service.pid})`);
  const registryHost = registry.url.replace(/^http:\/\//, '');

  // The package (npm pack runs prepack: dist/ rebuilt from the tree) and the repository, side by side.
  const owner = join(dir, 'owner');
  await mkdir(owner);
  const ownerEnv = { TUFOCI_SERVER: service.url, TUFOCI_TOKEN: ADMIN_TOKEN, TUFOCI_HOME: join(dir, 'owner-home') };
  const tufoci = async (...args: string[]): Promise<void> => {
    const r = await runNode([join(REPO_ROOT, 'bin', 'tufoci.js'), ...args], { cwd: owner, env: ownerEnv });
    if (r.code !== 0) throw new Error(`set-up: tufoci ${args.join(' ')} failed (exit ${r.code}): ${r.stderr.slice(-2000)}`);
  };
  const t0 = performance.now();
  const [packed, image] = await Promise.all([
    npm(['pack', '--json', '--pack-destination', dir], REPO_ROOT),
    (async () => {
      const pushed = await pushImage(new RegistryStore({ url: registry.url }), REPO, 'v1', 'cli bench build');
      for (const name of ['root', 'targets', 'ci']) await tufoci('keygen', name);
      await tufoci('init', REPO, '--root-key', 'root.key', '--targets-key', 'targets.key');
      await tufoci('delegate', 'add', REPO, 'ci', '--key', 'ci.pub', '--paths', 'v*', '--terminating', '--targets-key', 'targets.key');
      await tufoci('publish', `${registryHost}/${REPO}:v1`, '--role', 'ci', '--key', 'ci.key');
      return pushed;
    })(),
  ]);
  const [{ filename }] = JSON.parse(packed.slice(packed.search(/^\[/m))) as [{ filename: string }];
  const tarball = join(dir, filename);
  log(`packed ${filename} and published ${REPO}:v1 (${image.digest.slice(0, 19)}…) in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

  const project = join(dir, 'project');
  await mkdir(project);
  await writeFile(join(project, 'package.json'), `${JSON.stringify({ name: 'tufoci-cli-bench-consumer', private: true, type: 'module' })}\n`);
  const t1 = performance.now();
  await npm(['install', '--no-audit', '--no-fund', '--prefer-offline', tarball], project);
  const installed = join(project, 'node_modules', 'tufoci');
  if (!existsSync(join(installed, 'dist', 'cli', 'main.js')) || existsSync(join(installed, 'src'))) throw new Error(`the installed package at ${installed} is not the built one (dist/cli/main.js and no src/)`);
  log(`installed into ${project} in ${((performance.now() - t1) / 1000).toFixed(1)} s`);

  const head = await git(['rev-parse', '--short', 'HEAD']);
  const dirty = (await git(['status', '--porcelain', '--untracked-files=no', '--', 'src', 'bin', 'package.json'])).split('\n').filter(Boolean).length;
  return {
    dir,
    project,
    registryUrl: registry.url,
    registryHost,
    serviceUrl: service.url,
    rootFile: join(owner, '1.root.json'),
    ciPub: join(owner, 'ci.pub'),
    digest: image.digest,
    commit: dirty ? `${head} + ${dirty} uncommitted file(s) under src/, bin/, package.json` : head,
  };
}

// ------------------------------------------------------------------ report

const fmt = (x: number): string => (x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2));
const times = (a: number, b: number): string => `${(a / b).toFixed(2)}×`;
const verdict = (ok: boolean): string => (ok ? 'PASS' : 'FAIL');
const load = (): string => loadavg().map((l) => l.toFixed(2)).join(' ');

interface Measured {
  floor: number[];
  importClient: number[];
  cli: Record<Column, Record<Command, number[]>>;
  inProcess: InProcess;
}

function report(s: Setup, m: Measured, startLoad: string, startedAt: number): void {
  const node = median(m.floor);
  const med = (col: Column, cmd: Command): number => median(m.cli[col][cmd]);
  console.log(`\ncli.bench — ${machine()}`);
  console.log(`load average at start ${startLoad}, at end ${load()}`);
  console.log(`package packed from ${s.commit}; ${RUNS} interleaved rounds after ${WARMUP} warm-up rounds; medians, ms spawn→exit`);
  console.log(`verify: ${s.registryHost}/${REPO}:v1 --trust 1.root.json --sig-key ci.pub, straight from the registry, a TUFOCI_HOME that verified once\n`);

  console.log('Whole process, median ms (and × node -e 0 in the same rounds)');
  const cell = (x: number): string => `${fmt(x)} (${times(x, node)})`;
  const rows: Array<Record<string, string>> = [
    { command: 'node -e 0', installed: cell(node) },
    { command: "node + import('tufoci') (cache on)", installed: cell(median(m.importClient)) },
  ];
  for (const cmd of COMMANDS) {
    rows.push({
      command: LABEL[cmd],
      installed: cell(med('installed', cmd)),
      'installed, no cache': cell(med('installed, no cache', cmd)),
      'cache saves': fmt(med('installed, no cache', cmd) - med('installed', cmd)),
      checkout: cell(med('checkout', cmd)),
      'checkout, no cache': cell(med('checkout, no cache', cmd)),
    });
  }
  console.table(rows);

  const core = median(m.inProcess.times);
  const sum = node + core;
  console.log('\nWarm verify: Node start-up + client core vs the CLI, median ms');
  console.table([
    { figure: 'node -e 0', ms: fmt(node) },
    { figure: `in-process warm verifyImage (installed package, one process, ${RUNS} runs after ${IN_PROCESS_WARMUP + 1})`, ms: fmt(core) },
    { figure: 'sum (the goal)', ms: fmt(sum) },
    { figure: 'CLI warm verify, installed', ms: fmt(med('installed', 'verify')) },
    { figure: 'residual, installed (CLI − sum)', ms: fmt(med('installed', 'verify') - sum) },
    { figure: "for scale: node + import('tufoci') − node -e 0 (the whole client entry)", ms: fmt(median(m.importClient) - node) },
    { figure: 'CLI warm verify, installed, no cache', ms: fmt(med('installed, no cache', 'verify')) },
    { figure: 'CLI warm verify, checkout', ms: fmt(med('checkout', 'verify')) },
    { figure: 'residual, checkout (CLI − sum)', ms: fmt(med('checkout', 'verify') - sum) },
  ]);
  console.log(`  in that one process (single samples): import('tufoci') ${fmt(m.inProcess.importMs)} ms, its first verify (state saved, cold JIT and connections) ${fmt(m.inProcess.firstMs)} ms`);

  console.log('\nGoals (installed package, compile cache on)');
  const goal = (check: string, value: number, limit: number, goalText: string, extra: Record<string, string>): Record<string, string> => ({
    check,
    installed: `${fmt(value)} ms`,
    ratio: times(value, node),
    goal: goalText,
    limit: `${fmt(limit)} ms`,
    verdict: verdict(value <= limit),
    ...extra,
  });
  const co = (cmd: Command): Record<string, string> => ({ 'checkout (info)': `${fmt(med('checkout', cmd))} ms, ${times(med('checkout', cmd), node)}` });
  console.table([
    goal('tufoci --help', med('installed', 'help'), GOAL.helpX * node, `≤ ${GOAL.helpX}× node -e 0`, co('help')),
    goal('tufoci keygen', med('installed', 'keygen'), GOAL.keygenX * node, `≤ ${GOAL.keygenX}× node -e 0`, co('keygen')),
    goal('tufoci status', med('installed', 'status'), GOAL.statusX * node, `≤ ${GOAL.statusX}× node -e 0`, co('status')),
    goal('tufoci verify, warm', med('installed', 'verify'), sum, `≤ node -e 0 + in-process warm verify (residual ${fmt(med('installed', 'verify') - sum)} ms)`, co('verify')),
  ]);
  console.log(`${machine()}; load average ${load()}; total ${((performance.now() - startedAt) / 1000).toFixed(0)} s`);
}

// ------------------------------------------------------------------ main

async function main(): Promise<void> {
  assertNode24();
  const startedAt = performance.now();
  const startLoad = load();
  console.log(`cli.bench — ${machine()}; load average ${startLoad}; ${RUNS} rounds after ${WARMUP} warm-up rounds`);
  processes.install();
  const dir = await processes.tempDir('tufoci-cli-bench-');
  let s: Setup;
  let m: Measured;
  try {
    s = await setUp(dir);
    const installedBin = join(s.project, 'node_modules', 'tufoci', 'bin', 'tufoci.js');
    const checkoutBin = join(REPO_ROOT, 'bin', 'tufoci.js');
    const env = { TUFOCI_SERVER: s.serviceUrl, TUFOCI_TOKEN: ADMIN_TOKEN };
    const noCache = { ...env, TUFOCI_NO_COMPILE_CACHE: '1' };
    const cols: ColumnCtx[] = [];
    for (const [i, column] of COLUMNS.entries()) {
      const scratch = join(dir, `col${i}`);
      await mkdir(join(scratch, 'home'), { recursive: true, mode: 0o700 });
      cols.push({ column, bin: column.startsWith('installed') ? installedBin : checkoutBin, env: column.endsWith('no cache') ? noCache : env, scratch, home: join(scratch, 'home') });
    }
    const importScript = join(s.project, 'import-client.mjs');
    await writeFile(importScript, IMPORT_CLIENT);
    const importClient = async (): Promise<number> => {
      const r = await runNode([importScript], { cwd: s.project });
      if (r.code !== 0) throw new Error(`import('tufoci') failed (exit ${r.code}): ${r.stderr.slice(-2000)}`);
      return r.ms;
    };
    const floorRun = async (): Promise<number> => {
      const r = await runNode(['-e', '0'], { cwd: dir });
      if (r.code !== 0) throw new Error(`node -e 0 exited ${r.code}`);
      return r.ms;
    };

    m = {
      floor: [],
      importClient: [],
      cli: Object.fromEntries(COLUMNS.map((c) => [c, { help: [], keygen: [], status: [], verify: [] }])) as unknown as Measured['cli'],
      inProcess: { importMs: 0, firstMs: 0, times: [], digest: '', signers: 0 },
    };
    // One round: every command once, in one order; warm-up rounds (at least one: it primes every
    // column's TUFOCI_HOME, so that each timed verify is warm) are not recorded.
    const round = async (record: boolean): Promise<void> => {
      const f = await floorRun();
      const imp = await importClient();
      if (record) {
        m.floor.push(f);
        m.importClient.push(imp);
      }
      for (const cmd of COMMANDS) {
        for (const c of cols) {
          const t = await runCommand(s, c, cmd);
          if (record) m.cli[c.column][cmd].push(t);
        }
      }
    };
    const warmups = Math.max(1, WARMUP);
    log(`${warmups} warm-up round(s), then ${RUNS} timed rounds of ${2 + COMMANDS.length * cols.length} processes`);
    for (let i = 0; i < warmups; i++) await round(false);
    for (let i = 0; i < RUNS; i++) {
      await round(true);
      if ((i + 1) % 10 === 0 || i + 1 === RUNS) log(`  round ${i + 1}/${RUNS}: node -e 0 ${fmt(median(m.floor))} ms, installed verify ${fmt(median(m.cli.installed.verify))} ms (medians so far)`);
    }
    log(`in-process warm verifyImage: ${IN_PROCESS_WARMUP + 1} untimed, ${RUNS} timed`);
    m.inProcess = await inProcessVerify(s);
    if (KEEP) await writeFile(join(dir, 'measured.json'), JSON.stringify(m, null, 2));
  } finally {
    await stopAll();
  }
  report(s, m, startLoad, startedAt);
}

processes.run(main);
