/**
 * The seed demo's story, end to end, driven through the real `tufoci` CLI and
 * `skopeo`: `npm run demo` prints it (src/demo/seed-demo.ts) and
 * test/integration/seed-demo.test.ts asserts on its result. One module, so the
 * demo a newcomer runs is exactly what CI checks.
 *
 * Cast: two real registries (Debian docker-registry) on loopback ports,
 * "wabbit-networks" (the publisher) and "acme-rockets" (a consumer that
 * mirrors the image); the tufoci service on the embedded default (OCI layout
 * in a temporary directory, in-process coordination), started in-process so
 * the demo can give it a clock (the freeze scenario, below).
 *
 *  1. wabbit-networks pushes a small real image as net-monitor:v1.
 *  2. The owner (offline root + targets keys) creates the TUF repository and
 *     delegates `ci` for `v*`; CI publishes v1 (plain signature + target).
 *  3. A client pinning the wabbit-networks root verifies; one with no root,
 *     and one pinning another publisher's root, are refused.
 *  4. acme-rockets mirrors image, signature referrers and `R/tuf` with skopeo;
 *     with the service stopped, its client verifies from acme's registry.
 *  5. acme-rockets adds its own signature key; a client requiring both
 *     wabbit-networks' CI and acme-rockets' approval verifies.
 *  6. CI rebuilds v1 (security fix); the mirror syncs; not approved by acme
 *     yet → refused; approved → verifies the new build.
 *  7. Attacks by the mirror on a client that trusts the newer state: rollback,
 *     mix-and-match, the registry tag moved back, freeze.
 *
 * Every expected outcome is checked here too (a `DemoFailure` otherwise), so
 * the demo exits non-zero if any attack is accepted.
 */
import { execFile, type ChildProcess } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { startServer, type RunningServer } from '../main.ts';
import {
  EMPTY_JSON_BYTES,
  OCI_MANIFEST_MEDIA_TYPE,
  OciLayoutStore,
  RegistryStore,
  buildMetadataArtifact,
  parseMetadataFileName,
  type Manifest,
} from '../storage/index.ts';
import { listSignatures } from '../client/signatures.ts';
import { pushImage, type PushedImage } from './image.ts';
import { startRegistryProcess, type RegistryProcess } from './registry-process.ts';

export const REPO = 'wabbit-networks/net-monitor';
export const TUF_REPO = `${REPO}/tuf`;
/** Another publisher's repository on the same service (a foreign root; the mix-and-match source). */
export const OTHER_REPO = 'globex/net-logger';
const CLI = fileURLToPath(new URL('../../bin/tufoci.js', import.meta.url));
const SKOPEO = '/usr/bin/skopeo';
const DAY = 86_400_000;
const MAX_MANIFEST = 4 * 1024 * 1024;

export interface CliRun {
  /** The command as a person would type it. */
  command: string;
  code: number;
  stdout: string;
  stderr: string;
}

export interface SeedDemoResult {
  registries: { wabbit: string; acme: string };
  build1: PushedImage;
  build2: PushedImage;
  runs: {
    publish1: CliRun;
    verifyWabbit: CliRun;
    verifyNoRoot: CliRun;
    verifyOtherRoot: CliRun;
    verifyAcmeServiceStopped: CliRun;
    verifyAcmeBothSigners: CliRun;
    publish2: CliRun;
    verifyAcmeNotApproved: CliRun;
    verifyAcmeBuild2: CliRun;
    rollback: CliRun;
    mixAndMatch: CliRun;
    tagMovedBack: CliRun;
    freeze: CliRun;
  };
  /** Metadata files copied to acme-rockets in step 4, in copy order (timestamp.json last). */
  mirroredTufFiles: string[];
  /** Whether the service was running while the acme-rockets client verified in step 4. */
  serviceRunningDuringMirrorVerify: boolean;
  /** How the client found signatures on acme-rockets' registry. */
  acmeSignatureSource: 'referrers-api' | 'tag-schema';
}

/** An expected outcome did not happen: the demo fails. */
export class DemoFailure extends Error {}

export interface SeedDemoOptions {
  /** One line of the story (default: console.log). */
  say?: (line: string) => void;
  /** Color/bold step titles (default: when stdout is a TTY). */
  bold?: boolean;
}

type Party = { name: string; dir: string; home: string; service: boolean };

const short = (digest: string): string => `${digest.slice(0, 19)}…`;

export class SeedDemo {
  readonly #say: (line: string) => void;
  readonly #bold: boolean;
  readonly #tmp: string;
  readonly #cleanups: Array<() => Promise<void>> = [];
  readonly #children = new Set<ChildProcess>();
  #registries: RegistryProcess[] = [];
  /** Registries spawned but not yet ready (not in #registries yet). */
  readonly #spawning = new Set<number>();
  #service: RunningServer | undefined;
  /** The service's clock runs this many ms behind real time (freeze scenario only). */
  #clockSkewMs = 0;
  #serviceUrl = '';
  #token = '';
  #cleaned: Promise<void> | undefined;

  constructor(options: SeedDemoOptions = {}) {
    this.#say = options.say ?? ((line) => console.log(line));
    this.#bold = options.bold ?? Boolean(process.stdout.isTTY);
    this.#tmp = mkdtempSync(join(tmpdir(), 'tufoci-demo-'));
  }

  get tmpDir(): string {
    return this.#tmp;
  }

  /** Registries' PIDs (for exit hooks). */
  registryPids(): number[] {
    return this.#registries.map((r) => r.pid);
  }

  /** Stop everything this demo started (idempotent): CLI children, service, registries by PID, temp dir. */
  cleanup(): Promise<void> {
    this.#cleaned ??= (async () => {
      for (const child of this.#children) child.kill('SIGKILL');
      for (const fn of this.#cleanups.reverse()) await fn().catch(() => undefined);
      rmSync(this.#tmp, { recursive: true, force: true });
    })();
    return this.#cleaned;
  }

  /** SIGKILL the registries now, synchronously (process 'exit' hook). */
  killNow(): void {
    for (const r of this.#registries) r.killNow();
    for (const pid of this.#spawning) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    for (const child of this.#children) child.kill('SIGKILL');
  }

  async #startRegistry(name: string): Promise<RegistryProcess> {
    let spawned: number | undefined;
    const registry = await startRegistryProcess(name, this.#tmp, {
      onSpawn: (pid) => {
        spawned = pid;
        this.#spawning.add(pid);
      },
    });
    if (spawned !== undefined) this.#spawning.delete(spawned);
    this.#registries.push(registry);
    this.#cleanups.push(() => registry.stop());
    if (this.#cleaned) {
      await registry.stop();
      throw new DemoFailure('stopped');
    }
    return registry;
  }

  // ------------------------------------------------------------------ output

  #step(n: number, title: string): void {
    const line = `${n}. ${title}`;
    this.#say('');
    this.#say(this.#bold ? `\x1b[1m${line}\x1b[0m` : line);
  }

  #note(text: string): void {
    this.#say(`   ${text}`);
  }

  #ok(text: string): void {
    this.#say(`   ✔ ${text}`);
  }

  #refused(text: string): void {
    this.#say(`   ✘ refused: ${text}`);
  }

  // --------------------------------------------------------------- processes

  #party(name: string, service: boolean): Party {
    const dir = join(this.#tmp, name);
    const home = join(dir, '.tufoci');
    mkdirSync(home, { recursive: true, mode: 0o700 });
    return { name, dir, home, service };
  }

  #env(party: Party): NodeJS.ProcessEnv {
    const env: NodeJS.ProcessEnv = {};
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('TUFOCI_') && !k.startsWith('DOCKER_') && v !== undefined) env[k] = v;
    env['TUFOCI_HOME'] = party.home;
    env['DOCKER_CONFIG'] = join(party.dir, '.docker'); // no credentials: loopback registries are open
    if (party.service) {
      env['TUFOCI_SERVER'] = this.#serviceUrl;
      env['TUFOCI_TOKEN'] = this.#token;
    }
    return env;
  }

  #exec(file: string, args: string[], cwd: string, env: NodeJS.ProcessEnv): Promise<{ code: number; stdout: string; stderr: string }> {
    return new Promise((resolve, reject) => {
      const child = execFile(file, args, { cwd, env, maxBuffer: 16 * 1024 * 1024, timeout: 60_000 }, (error, stdout, stderr) => {
        this.#children.delete(child);
        if (error && typeof error.code !== 'number') return reject(new DemoFailure(`${file} ${args.join(' ')}: ${error.message}`));
        resolve({ code: error ? (error.code as number) : 0, stdout: String(stdout), stderr: String(stderr) });
      });
      this.#children.add(child);
    });
  }

  /** Run `tufoci <args>` as `party`; print the command (and, with `echo`, its output). */
  async #tufoci(party: Party, args: string[], opts: { echo?: boolean; display?: string } = {}): Promise<CliRun> {
    const command = `tufoci ${opts.display ?? args.map((a) => (/[*\s]/.test(a) ? `'${a}'` : a)).join(' ')}`;
    this.#say(`   ${party.name}$ ${command}`);
    const r = await this.#exec(process.execPath, [CLI, ...args], party.dir, this.#env(party));
    if (opts.echo !== false && r.code === 0) for (const line of r.stdout.trimEnd().split('\n')) if (line) this.#say(`     ${line}`);
    return { command, ...r };
  }

  async #skopeo(src: string, dest: string, preserveDigests = true): Promise<void> {
    const args = ['copy', '--all', ...(preserveDigests ? ['--preserve-digests'] : []), ...(src.startsWith('oci:') ? [] : ['--src-tls-verify=false']), '--dest-tls-verify=false', src, dest];
    const r = await this.#exec(SKOPEO, ['--insecure-policy', ...args], this.#tmp, { ...process.env });
    if (r.code !== 0) throw new DemoFailure(`skopeo ${args.join(' ')} failed (exit ${r.code}): ${r.stderr.trim()}`);
  }

  // ---------------------------------------------------------------- checks

  #expectDigest(run: CliRun, digest: string, what: string): void {
    const first = run.stdout.split('\n')[0];
    if (run.code !== 0 || first !== digest) {
      throw new DemoFailure(`${what}: expected exit 0 and ${digest}, got exit ${run.code}: ${run.stdout.trim()} ${run.stderr.trim()}`);
    }
  }

  #expectRefused(run: CliRun, code: number, reason: RegExp, what: string): string {
    const message = run.stderr.trim().split('\n').find((l) => l.startsWith('tufoci: ')) ?? run.stderr.trim();
    if (run.code !== code || !reason.test(message)) {
      throw new DemoFailure(`${what}: expected exit ${code} matching ${reason}, got exit ${run.code}: ${run.stdout.trim()} ${run.stderr.trim()}`);
    }
    const text = message.replace(/^tufoci: /, '');
    this.#refused(`${text} (exit ${run.code})`);
    return text;
  }

  // --------------------------------------------------------------- service

  async #startService(): Promise<void> {
    this.#service = await startServer({
      dataDir: join(this.#tmp, 'service'),
      port: 0,
      clock: () => Date.now() - this.#clockSkewMs,
      logger: pino({ level: 'silent' }),
    });
    this.#serviceUrl = this.#service.url;
    this.#token = readFileSync(join(this.#tmp, 'service', 'admin-token'), 'utf8').trim();
  }

  async #stopService(): Promise<void> {
    const s = this.#service;
    this.#service = undefined;
    await s?.close();
  }

  /** The service's OCI layout of a repository's metadata (what skopeo's `oci:` transport reads). */
  #layoutDir(repository: string): string {
    return join(this.#tmp, 'service', 'oci', ...`${repository}/tuf`.split('/'));
  }

  /**
   * Mirror to acme-rockets: the image tag, its signature referrers (the
   * `sha256-<hex>` tag: an index skopeo copies with every signature
   * manifest), and every metadata file of `R/tuf` the mirror does not have
   * yet (versioned files are immutable), `timestamp.json` last.
   */
  async #mirror(wabbit: RegistryProcess, acme: RegistryProcess, digest: string): Promise<string[]> {
    const image = `${REPO}:v1`;
    const sigTag = `${REPO}:${digest.replace(':', '-')}`;
    this.#note(`$ skopeo copy --all --preserve-digests docker://${wabbit.host}/${image} docker://${acme.host}/${image}`);
    await this.#skopeo(`docker://${wabbit.host}/${image}`, `docker://${acme.host}/${image}`);
    // skopeo 1.9 cannot keep this OCI 1.1 index byte for byte (it drops the descriptors' artifactType);
    // the signature manifests themselves are copied unchanged (docs/FORMAT.md §8).
    this.#note(`$ skopeo copy --all docker://${wabbit.host}/${sigTag} docker://${acme.host}/${sigTag}`);
    await this.#skopeo(`docker://${wabbit.host}/${sigTag}`, `docker://${acme.host}/${sigTag}`, false);
    const layout = new OciLayoutStore({ root: join(this.#tmp, 'service', 'oci') });
    const have = new Set(await new RegistryStore({ url: acme.url }).listTags(TUF_REPO));
    const files = (await layout.listTags(TUF_REPO)).filter((t) => parseMetadataFileName(t) !== undefined);
    const versioned = files.filter((f) => f !== 'timestamp.json' && !have.has(f));
    const order = [...versioned.sort((a, b) => Number(a.split('.')[0]) - Number(b.split('.')[0])), 'timestamp.json'];
    for (const file of order) await this.#skopeo(`oci:${this.#layoutDir(REPO)}:${file}`, `docker://${acme.host}/${TUF_REPO}:${file}`);
    this.#note(`$ skopeo copy --all --preserve-digests oci:$DATA/oci/${TUF_REPO}:<file> docker://${acme.host}/${TUF_REPO}:<file>`);
    this.#note(`  for ${order.length} files: ${order.join(' ')}`);
    return order;
  }

  // ----------------------------------------------------------------- story

  async run(): Promise<SeedDemoResult> {
    this.#say('tufoci seed demo: wabbit-networks publishes net-monitor; acme-rockets mirrors and approves it.');
    const [wabbit, acme] = await Promise.all([this.#startRegistry('wabbit-networks'), this.#startRegistry('acme-rockets')]);
    await this.#startService();
    this.#cleanups.push(() => this.#stopService());
    this.#note(`registries (docker-registry 2.8): wabbit-networks ${wabbit.host} (pid ${wabbit.pid}), acme-rockets ${acme.host} (pid ${acme.pid})`);
    this.#note(`tufoci service: ${this.#serviceUrl}, embedded default: OCI layout in $DATA=${join(this.#tmp, 'service')}, in-process coordination`);
    this.#note(`owner and CI use TUFOCI_SERVER=${this.#serviceUrl} and TUFOCI_TOKEN=$(cat $DATA/admin-token)`);

    const owner = this.#party('wabbit-owner', true);
    const ci = this.#party('wabbit-ci', true);
    const globex = this.#party('globex-owner', true);
    const client = this.#party('client', false);
    const stranger = this.#party('stranger', false);
    const acmeOps = this.#party('acme-ops', false);
    const acmeClient = this.#party('acme-client', false);
    const wabbitStore = new RegistryStore({ url: wabbit.url });
    const acmeStore = new RegistryStore({ url: acme.url });
    const ref = (reg: RegistryProcess, tag = 'v1'): string => `${reg.host}/${REPO}:${tag}`;

    // 1 ------------------------------------------------------------------
    this.#step(1, `wabbit-networks pushes ${REPO}:v1 to its registry (config + one tar layer; no Docker needed)`);
    const build1 = await pushImage(wabbitStore, REPO, 'v1', 'net-monitor v1, build 1');
    this.#ok(`${ref(wabbit)} = ${build1.digest}`);

    // 2 ------------------------------------------------------------------
    this.#step(2, 'The owner creates the TUF repository with offline keys and delegates "ci" for v*; CI publishes v1');
    await Promise.all([this.#tufoci(owner, ['keygen', 'root'], { echo: false }), this.#tufoci(owner, ['keygen', 'targets'], { echo: false }), this.#tufoci(ci, ['keygen', 'ci', '--type', 'ecdsa-p256'], { echo: false })]);
    copyFileSync(join(ci.dir, 'ci.pub'), join(owner.dir, 'ci.pub')); // CI hands its public key to the owner
    this.#must(await this.#tufoci(owner, ['init', REPO, '--root-key', 'root.key', '--targets-key', 'targets.key']), 'init');
    this.#must(await this.#tufoci(owner, ['delegate', 'add', REPO, 'ci', '--key', 'ci.pub', '--paths', 'v*', '--terminating', '--targets-key', 'targets.key']), 'delegate');
    const publish1 = this.#must(await this.#tufoci(ci, ['publish', ref(wabbit), '--role', 'ci', '--key', 'ci.key']), 'publish v1');
    if (!publish1.stdout.includes(build1.digest)) throw new DemoFailure(`publish did not publish ${build1.digest}: ${publish1.stdout}`);

    // 3 ------------------------------------------------------------------
    this.#step(3, 'Clients: one pins the wabbit-networks root; one has no root; one pins another publisher\'s root');
    for (const f of ['1.root.json', 'ci.pub']) copyFileSync(join(f === 'ci.pub' ? ci.dir : owner.dir, f), join(client.dir, f)); // received out of band
    this.#must(await this.#tufoci(client, ['trust', 'add', 'wabbit-networks/', '1.root.json']), 'trust add');
    const verifyWabbit = await this.#tufoci(client, ['verify', ref(wabbit), '--server', this.#serviceUrl, '--sig-key', 'ci.pub']);
    this.#expectDigest(verifyWabbit, build1.digest, 'client pinning the wabbit-networks root');
    this.#ok(`v1 is ${short(build1.digest)}, signed by wabbit-networks CI`);
    const verifyNoRoot = await this.#tufoci(stranger, ['verify', ref(wabbit), '--server', this.#serviceUrl]);
    this.#expectRefused(verifyNoRoot, 2, /no root of trust for wabbit-networks\/net-monitor/, 'client without a root');
    await Promise.all([this.#tufoci(globex, ['keygen', 'globex-root'], { echo: false }), this.#tufoci(globex, ['keygen', 'globex-targets'], { echo: false })]);
    this.#must(await this.#tufoci(globex, ['init', OTHER_REPO, '--root-key', 'globex-root.key', '--targets-key', 'globex-targets.key', '--root-out', 'globex-root.json'], { echo: false }), 'init globex');
    this.#note(`(globex created ${OTHER_REPO} on the same service with its own offline keys)`);
    copyFileSync(join(globex.dir, 'globex-root.json'), join(stranger.dir, 'globex-root.json'));
    const verifyOtherRoot = await this.#tufoci(stranger, ['verify', ref(wabbit), '--server', this.#serviceUrl, '--trust', 'globex-root.json', '--ephemeral']);
    // Refused before any request: that root names the repository it vouches for (its scope), and it is not this one.
    this.#expectRefused(verifyOtherRoot, 1, /vouches for ".*", not for wabbit-networks\/net-monitor/, 'client pinning another root');

    // 4 ------------------------------------------------------------------
    this.#step(4, 'acme-rockets mirrors image, signatures and R/tuf with skopeo; the service is stopped; acme\'s client verifies from acme\'s registry');
    await this.#stopService();
    this.#ok('tufoci service stopped');
    this.#note('(skopeo also gets --insecure-policy --src-tls-verify=false --dest-tls-verify=false: the loopback registries speak plain HTTP)');
    const mirroredTufFiles = await this.#mirror(wabbit, acme, build1.digest);
    const oldTimestamp = await acmeStore.getManifest(TUF_REPO, 'timestamp.json', MAX_MANIFEST); // kept: the rollback attack replays it
    for (const f of ['1.root.json', 'ci.pub']) copyFileSync(join(client.dir, f), join(acmeClient.dir, f));
    this.#must(await this.#tufoci(acmeClient, ['trust', 'add', 'wabbit-networks/', '1.root.json']), 'acme trust add');
    const serviceRunningDuringMirrorVerify = this.#service !== undefined || (await reachable(this.#serviceUrl));
    const verifyAcmeServiceStopped = await this.#tufoci(acmeClient, ['verify', ref(acme), '--sig-key', 'ci.pub']);
    this.#expectDigest(verifyAcmeServiceStopped, build1.digest, 'acme-rockets client, service stopped');
    this.#ok(`same digest from acme-rockets (TUF read from ${acme.host}/${TUF_REPO}; signatures copied unchanged)`);
    const acmeSignatureSource = (await listSignatures(acmeStore, REPO, build1.digest)).source;

    // 5 ------------------------------------------------------------------
    this.#step(5, 'acme-rockets adds its own signature: its approval key signs the digest it checked');
    await this.#tufoci(acmeOps, ['keygen', 'acme-approver'], { echo: false });
    this.#must(await this.#tufoci(acmeOps, ['sign', ref(acme), '--key', 'acme-approver.key']), 'acme sign');
    copyFileSync(join(acmeOps.dir, 'acme-approver.pub'), join(acmeClient.dir, 'acme-approver.pub'));
    const both = ['--sig-key', 'ci.pub', '--sig-key', 'acme-approver.pub', '--sig-threshold', '2'];
    const verifyAcmeBothSigners = await this.#tufoci(acmeClient, ['verify', ref(acme), ...both]);
    this.#expectDigest(verifyAcmeBothSigners, build1.digest, 'acme client requiring both signers');
    this.#ok('TUF (wabbit-networks root) + signatures of wabbit-networks CI and acme-rockets, both required');

    // 6 ------------------------------------------------------------------
    this.#step(6, 'A security fix: CI rebuilds v1 and publishes it again; the mirror syncs; acme-rockets approves the new build');
    await this.#startService();
    this.#note(`(service restarted on the same data: ${this.#serviceUrl})`);
    const build2 = await pushImage(wabbitStore, REPO, 'v1', 'net-monitor v1, build 2 (security fix)');
    const publish2 = this.#must(await this.#tufoci(ci, ['publish', ref(wabbit), '--role', 'ci', '--key', 'ci.key']), 'publish v1 again');
    if (!publish2.stdout.includes(build2.digest)) throw new DemoFailure(`publish did not publish ${build2.digest}: ${publish2.stdout}`);
    await this.#mirror(wabbit, acme, build2.digest);
    const verifyAcmeNotApproved = await this.#tufoci(acmeClient, ['verify', ref(acme), ...both]);
    this.#expectRefused(verifyAcmeNotApproved, 1, new RegExp(`${build2.digest} is signed by 1 of the 2 trusted key\\(s\\) required`), 'build 2 before acme approves');
    this.#must(await this.#tufoci(acmeOps, ['sign', ref(acme), '--key', 'acme-approver.key']), 'acme sign build 2');
    const verifyAcmeBuild2 = await this.#tufoci(acmeClient, ['verify', ref(acme), ...both]);
    this.#expectDigest(verifyAcmeBuild2, build2.digest, 'acme client after approval');
    this.#ok(`v1 is now ${short(build2.digest)}; build 1 (${short(build1.digest)}) is still in both registries, validly signed`);

    // 7 ------------------------------------------------------------------
    this.#step(7, 'Attacks by the acme-rockets registry on its client, which already trusts the newer state');
    // Rollback: re-tag timestamp.json to the one of step 4 (its snapshot and targets, where v1 = build 1, are all still there).
    const currentTimestamp = await acmeStore.getManifest(TUF_REPO, 'timestamp.json', MAX_MANIFEST);
    this.#note('rollback: timestamp.json re-tagged to the manifest of step 4 (snapshot and targets where v1 = build 1)');
    await acmeStore.putManifest(TUF_REPO, 'timestamp.json', oldTimestamp.bytes, oldTimestamp.mediaType);
    const rollback = await this.#tufoci(acmeClient, ['verify', ref(acme), ...both], { echo: false });
    this.#expectRefused(rollback, 1, /the store serves timestamp \d+, the client already trusts \d+ \(rollback\)/, 'rollback');
    await acmeStore.putManifest(TUF_REPO, 'timestamp.json', currentTimestamp.bytes, currentTimestamp.mediaType);

    // Mix-and-match: globex's current timestamp *and* snapshot (fresh, validly signed by the service, on the same
    // service) served under net-monitor. Each repository has its own online keys, so the signature check refuses it.
    const fetchOther = async (file: string): Promise<Uint8Array> => {
      const r = await fetch(`${this.#serviceUrl}/v1/repos/${OTHER_REPO}/metadata/${file}`);
      if (r.status !== 200) throw new DemoFailure(`reading ${OTHER_REPO}'s ${file} from the service answered ${r.status}`);
      return new Uint8Array(await r.arrayBuffer());
    };
    const foreignTimestamp = await fetchOther('timestamp.json');
    const foreignSnapshotVersion = (JSON.parse(new TextDecoder().decode(foreignTimestamp)) as { signed: { meta: Record<string, { version: number }> } }).signed.meta['snapshot.json']?.version;
    const snapshotFile = `${foreignSnapshotVersion}.snapshot.json`;
    const realSnapshot = await acmeStore.getManifest(TUF_REPO, snapshotFile, MAX_MANIFEST).catch(() => undefined);
    const realTimestamp = await acmeStore.getManifest(TUF_REPO, 'timestamp.json', MAX_MANIFEST);
    this.#note(`mix-and-match: timestamp.json and ${snapshotFile} replaced by ${OTHER_REPO}'s (fresh, signed by the same service); a new client (pinned root only)`);
    await this.#putArtifact(acmeStore, snapshotFile, await fetchOther(snapshotFile));
    await this.#putArtifact(acmeStore, 'timestamp.json', foreignTimestamp);
    const mixAndMatch = await this.#tufoci(acmeClient, ['verify', ref(acme), '--trust', '1.root.json', '--ephemeral'], { echo: false });
    this.#expectRefused(mixAndMatch, 1, /TUF metadata of wabbit-networks\/net-monitor refused: .*timestamp was signed by 0\/1 keys/i, 'mix-and-match');
    this.#note("  (every repository has its own online keys: another repository's timestamp does not verify)");
    await acmeStore.putManifest(TUF_REPO, 'timestamp.json', realTimestamp.bytes, realTimestamp.mediaType);
    if (realSnapshot) await acmeStore.putManifest(TUF_REPO, snapshotFile, realSnapshot.bytes, realSnapshot.mediaType);

    // The registry's own tag v1 moved back to build 1 (validly signed by both keys).
    this.#note(`tag moved back: ${ref(acme)} re-tagged to build 1, which both keys validly signed`);
    const build1Manifest: Manifest = await acmeStore.getManifest(REPO, build1.digest, MAX_MANIFEST);
    const build2Manifest: Manifest = await acmeStore.getManifest(REPO, build2.digest, MAX_MANIFEST);
    await acmeStore.putManifest(REPO, 'v1', build1Manifest.bytes, OCI_MANIFEST_MEDIA_TYPE);
    const tagMovedBack = await this.#tufoci(acmeClient, ['verify', ref(acme), ...both], { echo: false });
    this.#expectDigest(tagMovedBack, build2.digest, 'tag moved back');
    if (!tagMovedBack.stderr.includes(`registry's tag v1 points at ${build1.digest}`)) throw new DemoFailure(`tag moved back: no warning about the registry tag: ${tagMovedBack.stderr}`);
    this.#ok(`verify still answers ${short(build2.digest)} (exit 0) and warns:`);
    this.#note(`  ${tagMovedBack.stderr.trim().split('\n')[0]}`);
    await acmeStore.putManifest(REPO, 'v1', build2Manifest.bytes, OCI_MANIFEST_MEDIA_TYPE);

    // Freeze: a timestamp past its expiry. To avoid waiting a day, the demo runs the service's clock two days
    // behind for one publish: the timestamp it signs (1-day expiry) expired yesterday. The mirror copies it and freezes.
    this.#note('freeze: the mirror serves a timestamp past its expiry (the service signed it with its clock 2 days behind)');
    await pushImage(wabbitStore, REPO, 'v1.1', 'net-monitor v1.1');
    this.#clockSkewMs = 2 * DAY;
    try {
      this.#must(await this.#tufoci(ci, ['publish', ref(wabbit, 'v1.1'), '--role', 'ci', '--key', 'ci.key'], { echo: false }), 'publish v1.1');
      await this.#stopService(); // before its refresh tick re-signs the expired timestamp
    } finally {
      this.#clockSkewMs = 0;
    }
    await this.#mirrorTuf(acme);
    const freeze = await this.#tufoci(acmeClient, ['verify', ref(acme), ...both], { echo: false });
    this.#expectRefused(freeze, 1, /timestamp\.json is expired \(freeze/, 'freeze');

    this.#say('');
    this.#say('Done: every step verified, every attack refused with its reason.');
    return {
      registries: { wabbit: wabbit.host, acme: acme.host },
      build1,
      build2,
      runs: {
        publish1,
        verifyWabbit,
        verifyNoRoot,
        verifyOtherRoot,
        verifyAcmeServiceStopped,
        verifyAcmeBothSigners,
        publish2,
        verifyAcmeNotApproved,
        verifyAcmeBuild2,
        rollback,
        mixAndMatch,
        tagMovedBack,
        freeze,
      },
      mirroredTufFiles,
      serviceRunningDuringMirrorVerify,
      acmeSignatureSource,
    };
  }

  /** Only R/tuf (new versioned files, then timestamp.json), quietly. */
  async #mirrorTuf(acme: RegistryProcess): Promise<void> {
    const layout = new OciLayoutStore({ root: join(this.#tmp, 'service', 'oci') });
    const have = new Set(await new RegistryStore({ url: acme.url }).listTags(TUF_REPO));
    const files = (await layout.listTags(TUF_REPO)).filter((t) => parseMetadataFileName(t) !== undefined && t !== 'timestamp.json' && !have.has(t));
    for (const file of [...files, 'timestamp.json']) await this.#skopeo(`oci:${this.#layoutDir(REPO)}:${file}`, `docker://${acme.host}/${TUF_REPO}:${file}`);
  }

  async #tufFile(store: RegistryStore, file: string): Promise<Uint8Array> {
    const m = JSON.parse(new TextDecoder().decode((await store.getManifest(TUF_REPO, file, MAX_MANIFEST)).bytes)) as { layers: Array<{ digest: string }> };
    return store.getBlob(TUF_REPO, m.layers[0]?.digest ?? '', MAX_MANIFEST);
  }

  /** What a hostile registry can do: put any bytes under a metadata tag, as a well-formed artifact of that name. */
  async #putArtifact(store: RegistryStore, fileName: string, bytes: Uint8Array): Promise<void> {
    const name = parseMetadataFileName(fileName);
    if (!name) throw new DemoFailure(`not a metadata file name: ${fileName}`);
    const artifact = buildMetadataArtifact(name, bytes);
    await store.putBlob(TUF_REPO, EMPTY_JSON_BYTES);
    await store.putBlob(TUF_REPO, bytes);
    await store.putManifest(TUF_REPO, fileName, artifact.manifest, OCI_MANIFEST_MEDIA_TYPE);
  }

  #must(run: CliRun, what: string): CliRun {
    if (run.code !== 0) throw new DemoFailure(`${what} failed (exit ${run.code}): ${run.stderr.trim() || run.stdout.trim()}`);
    return run;
  }
}

async function reachable(url: string): Promise<boolean> {
  try {
    const r = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(1000) });
    await r.body?.cancel();
    return true;
  } catch {
    return false;
  }
}
