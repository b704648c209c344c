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
 *  8. A namespace: the owner creates `wabbit-networks/` trust once (one root
 *     for the prefix, kept at wabbit-networks/tufoci-namespace); net-scanner
 *     and net-dashboard join with their targets alone; CI publishes v1 in
 *     each; a client trusting the namespace once verifies both. (net-monitor
 *     keeps the root of its own of steps 2–7.)
 *  9. acme-rockets mirrors net-scanner alone (image, signatures, its `R/tuf`)
 *     and the namespace's metadata (the anchor's `R/tuf`, where a member's
 *     root files are read); with the service stopped its client verifies
 *     net-scanner from acme's registry. Then
 *     acme's registry serves net-dashboard's image, signatures and metadata,
 *     signed by the same namespace keys, under net-scanner's name: refused,
 *     since every member's files name the member they are for.
 *
 * Every expected outcome is checked here too (a `DemoFailure` otherwise), so
 * the demo exits non-zero if any attack is accepted.
 *
 * The story is told here, one method per step; what it runs on lives beside
 * it: stage.ts (registries, the service, child processes, cleanup),
 * narrator.ts (output and the checks), parties.ts (who runs the CLI where),
 * mirror.ts (acme-rockets' skopeo copies).
 */
import { copyFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROUTES, paths } from '../api/routes.ts';
import {
  EMPTY_JSON_BYTES,
  MetadataStore,
  OCI_MANIFEST_MEDIA_TYPE,
  RegistryStore,
  buildMetadataArtifact,
  parseMetadataFileName,
  type Manifest,
} from '../storage/index.ts';
import { listSignatures } from '../client/signatures.ts';
import { namespaceAnchor } from '../engine/scope.ts';
import { pushImage, type PushedImage } from './image.ts';
import { Mirror } from './mirror.ts';
import { DemoFailure, Narrator, short, type CliRun } from './narrator.ts';
import { DASHBOARD, NAMESPACE, OTHER_REPO, Parties, REPO, SCANNER, TUF_REPO, ref, tufRepo, type Party } from './parties.ts';
import type { RegistryProcess } from './registry-process.ts';
import { Stage } from './stage.ts';

export { DemoFailure, type CliRun } from './narrator.ts';
export { DASHBOARD, NAMESPACE, OTHER_REPO, REPO, SCANNER, TUF_REPO } from './parties.ts';

const DAY = 86_400_000;
const MAX_MANIFEST = 4 * 1024 * 1024;
/** acme-rockets' clients require both signatures: wabbit-networks' CI key and acme-rockets' approver. */
const BOTH_SIGNERS = ['--sig-key', 'ci.pub', '--sig-key', 'acme-approver.pub', '--sig-threshold', '2'];
/** The namespace root the owner's `init wabbit-networks/` writes (not 1.root.json: that is net-monitor's). */
const NAMESPACE_ROOT = 'wabbit-networks-root.json';

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
  /** Steps 8–9: the `wabbit-networks/` namespace, its two members, net-scanner's mirror. */
  namespace: NamespaceResult;
}

export interface NamespaceResult {
  scanner: PushedImage;
  dashboard: PushedImage;
  runs: {
    init: CliRun;
    joinScanner: CliRun;
    joinDashboard: CliRun;
    publishScanner: CliRun;
    publishDashboard: CliRun;
    verifyScanner: CliRun;
    verifyDashboard: CliRun;
    verifyAcmeScanner: CliRun;
    /** net-dashboard served as net-scanner on acme-rockets: a new client pinning the namespace root only. */
    passedOff: CliRun;
    /** The same, to acme's client that trusts the namespace and verified net-scanner before. */
    passedOffTrusting: CliRun;
  };
  /** net-scanner's metadata files copied to acme-rockets, in copy order (timestamp.json last). */
  mirroredTufFiles: string[];
  /** The namespace's metadata files (its anchor's R/tuf) copied to acme-rockets, in copy order. */
  mirroredNamespaceFiles: string[];
  /** acme's copy of the anchor's 1.root.json is the namespace root the owner created, byte for byte. */
  mirroredRootIsNamespaceRoot: boolean;
  /** acme-rockets' repositories (its catalog) when its client verified net-scanner. */
  acmeRepositories: string[];
  /** Whether the service was running while the acme-rockets client verified net-scanner. */
  serviceRunningDuringMirrorVerify: boolean;
  /** net-dashboard's metadata files the hostile mirror served under net-scanner/tuf, in copy order. */
  passedOffTufFiles: string[];
}

export interface SeedDemoOptions {
  /** One line of the story (default: console.log). */
  say?: (line: string) => void;
  /** Color/bold step titles (default: when stdout is a TTY). */
  bold?: boolean;
}

/** Who and what the story's steps act on, set up once. */
interface Cast {
  wabbit: RegistryProcess;
  acme: RegistryProcess;
  wabbitStore: RegistryStore;
  acmeStore: RegistryStore;
  owner: Party;
  ci: Party;
  globex: Party;
  client: Party;
  stranger: Party;
  acmeOps: Party;
  acmeClient: Party;
  nsClient: Party;
  acmeNsClient: Party;
}

export class SeedDemo {
  readonly #stage = new Stage();
  readonly #tell: Narrator;
  readonly #parties: Parties;
  readonly #mirror: Mirror;

  constructor(options: SeedDemoOptions = {}) {
    this.#tell = new Narrator(options.say ?? ((line) => console.log(line)), options.bold ?? Boolean(process.stdout.isTTY));
    this.#parties = new Parties(this.#stage, this.#tell);
    this.#mirror = new Mirror(this.#stage, this.#tell);
  }

  get tmpDir(): string {
    return this.#stage.tmp;
  }

  /** Registries' PIDs (for exit hooks). */
  registryPids(): number[] {
    return this.#stage.registryPids();
  }

  /** Stop everything this demo started (idempotent): CLI children, service, registries by PID, temp dir. */
  cleanup(): Promise<void> {
    return this.#stage.cleanup();
  }

  /** SIGKILL the registries now, synchronously (process 'exit' hook). */
  killNow(): void {
    this.#stage.killNow();
  }

  #tufoci(party: Party, args: string[], opts: { echo?: boolean; display?: string } = {}): Promise<CliRun> {
    return this.#parties.tufoci(party, args, opts);
  }

  // ----------------------------------------------------------------- story

  async run(): Promise<SeedDemoResult> {
    const cast = await this.#setUp();
    const build1 = await this.#pushFirstBuild(cast);
    const publish1 = await this.#createAndPublish(cast, build1);
    const clients = await this.#firstClients(cast, build1);
    const mirrored = await this.#mirrorWithServiceStopped(cast, build1);
    const verifyAcmeBothSigners = await this.#acmeApproves(cast, build1);
    const rebuilt = await this.#securityFix(cast, build1);
    this.#tell.step(7, 'Attacks by the acme-rockets registry on its client, which already trusts the newer state');
    const rollback = await this.#rollback(cast, mirrored.oldTimestamp);
    const mixAndMatch = await this.#mixAndMatch(cast);
    const tagMovedBack = await this.#tagMovedBack(cast, build1, rebuilt.build2);
    const freeze = await this.#freeze(cast);
    const members = await this.#namespace(cast);
    const memberMirror = await this.#mirrorMember(cast, members);
    this.#tell.say('');
    this.#tell.say('Done: every step verified, every attack refused with its reason.');
    return {
      registries: { wabbit: cast.wabbit.host, acme: cast.acme.host },
      build1,
      build2: rebuilt.build2,
      runs: {
        publish1,
        ...clients,
        verifyAcmeServiceStopped: mirrored.verifyAcmeServiceStopped,
        verifyAcmeBothSigners,
        publish2: rebuilt.publish2,
        verifyAcmeNotApproved: rebuilt.verifyAcmeNotApproved,
        verifyAcmeBuild2: rebuilt.verifyAcmeBuild2,
        rollback,
        mixAndMatch,
        tagMovedBack,
        freeze,
      },
      mirroredTufFiles: mirrored.mirroredTufFiles,
      serviceRunningDuringMirrorVerify: mirrored.serviceRunningDuringMirrorVerify,
      acmeSignatureSource: mirrored.acmeSignatureSource,
      namespace: { ...members, ...memberMirror, runs: { ...members.runs, ...memberMirror.runs } },
    };
  }

  /** Registries, the service, the parties. */
  async #setUp(): Promise<Cast> {
    const stage = this.#stage;
    this.#tell.say('tufoci seed demo: wabbit-networks publishes net-monitor; acme-rockets mirrors and approves it; then one wabbit-networks/ root for two more repositories.');
    const [wabbit, acme] = await Promise.all([stage.startRegistry('wabbit-networks'), stage.startRegistry('acme-rockets')]);
    await stage.startService();
    this.#tell.note(`registries (docker-registry 2.8): wabbit-networks ${wabbit.host} (pid ${wabbit.pid}), acme-rockets ${acme.host} (pid ${acme.pid})`);
    this.#tell.note(`tufoci service: ${stage.serviceUrl}, embedded default: OCI layout in $DATA=${stage.serviceDir}, in-process coordination`);
    this.#tell.note(`owner and CI use TUFOCI_SERVER=${stage.serviceUrl} and TUFOCI_TOKEN=$(cat $DATA/admin-token)`);
    const p = this.#parties;
    return {
      wabbit,
      acme,
      owner: p.party('wabbit-owner', true),
      ci: p.party('wabbit-ci', true),
      globex: p.party('globex-owner', true),
      client: p.party('client', false),
      stranger: p.party('stranger', false),
      acmeOps: p.party('acme-ops', false),
      acmeClient: p.party('acme-client', false),
      nsClient: p.party('ns-client', false),
      acmeNsClient: p.party('acme-ns-client', false),
      wabbitStore: new RegistryStore({ url: wabbit.url }),
      acmeStore: new RegistryStore({ url: acme.url }),
    };
  }

  /** 1. A small real image, pushed as v1. */
  async #pushFirstBuild({ wabbit, wabbitStore }: Cast): Promise<PushedImage> {
    this.#tell.step(1, `wabbit-networks pushes ${REPO}:v1 to its registry (config + one tar layer; no Docker needed)`);
    const build1 = await pushImage(wabbitStore, REPO, 'v1', 'net-monitor v1, build 1');
    this.#tell.ok(`${ref(wabbit)} = ${build1.digest}`);
    return build1;
  }

  /** 2. Offline keys, the repository, the `ci` delegation; CI publishes v1. */
  async #createAndPublish({ wabbit, owner, ci }: Cast, build1: PushedImage): Promise<CliRun> {
    const t = this.#tell;
    t.step(2, 'The owner creates the TUF repository with offline keys and delegates "ci" for v*; CI publishes v1');
    await Promise.all([this.#tufoci(owner, ['keygen', 'root'], { echo: false }), this.#tufoci(owner, ['keygen', 'targets'], { echo: false }), this.#tufoci(ci, ['keygen', 'ci', '--type', 'ecdsa-p256'], { echo: false })]);
    copyFileSync(join(ci.dir, 'ci.pub'), join(owner.dir, 'ci.pub')); // CI hands its public key to the owner
    t.must(await this.#tufoci(owner, ['init', REPO, '--root-key', 'root.key', '--targets-key', 'targets.key']), 'init');
    t.must(await this.#tufoci(owner, ['delegate', 'add', REPO, 'ci', '--key', 'ci.pub', '--paths', 'v*', '--terminating', '--targets-key', 'targets.key']), 'delegate');
    const publish1 = t.must(await this.#tufoci(ci, ['publish', ref(wabbit), '--role', 'ci', '--key', 'ci.key']), 'publish v1');
    if (!publish1.stdout.includes(build1.digest)) throw new DemoFailure(`publish did not publish ${build1.digest}: ${publish1.stdout}`);
    return publish1;
  }

  /** 3. A client pinning the root verifies; one with no root and one pinning another publisher's are refused. */
  async #firstClients({ wabbit, owner, ci, globex, client, stranger }: Cast, build1: PushedImage): Promise<Pick<SeedDemoResult['runs'], 'verifyWabbit' | 'verifyNoRoot' | 'verifyOtherRoot'>> {
    const t = this.#tell;
    const serviceUrl = this.#stage.serviceUrl;
    t.step(3, 'Clients: one pins the wabbit-networks root; one has no root; one pins another publisher\'s root');
    for (const f of ['1.root.json', 'ci.pub']) copyFileSync(join(f === 'ci.pub' ? ci.dir : owner.dir, f), join(client.dir, f)); // received out of band
    t.must(await this.#tufoci(client, ['trust', 'add', 'wabbit-networks/', '1.root.json']), 'trust add');
    const verifyWabbit = await this.#tufoci(client, ['verify', ref(wabbit), '--server', serviceUrl, '--sig-key', 'ci.pub']);
    t.expectDigest(verifyWabbit, build1.digest, 'client pinning the wabbit-networks root');
    t.ok(`v1 is ${short(build1.digest)}, signed by wabbit-networks CI`);
    const verifyNoRoot = await this.#tufoci(stranger, ['verify', ref(wabbit), '--server', serviceUrl]);
    t.expectRefused(verifyNoRoot, 2, /no root of trust for wabbit-networks\/net-monitor/, 'client without a root');
    await Promise.all([this.#tufoci(globex, ['keygen', 'globex-root'], { echo: false }), this.#tufoci(globex, ['keygen', 'globex-targets'], { echo: false })]);
    t.must(await this.#tufoci(globex, ['init', OTHER_REPO, '--root-key', 'globex-root.key', '--targets-key', 'globex-targets.key', '--root-out', 'globex-root.json'], { echo: false }), 'init globex');
    t.note(`(globex created ${OTHER_REPO} on the same service with its own offline keys)`);
    copyFileSync(join(globex.dir, 'globex-root.json'), join(stranger.dir, 'globex-root.json'));
    const verifyOtherRoot = await this.#tufoci(stranger, ['verify', ref(wabbit), '--server', serviceUrl, '--trust', 'globex-root.json', '--ephemeral']);
    // Refused before any request: that root names the repository it vouches for (its scope), and it is not this one.
    t.expectRefused(verifyOtherRoot, 1, /vouches for ".*", not for wabbit-networks\/net-monitor/, 'client pinning another root');
    return { verifyWabbit, verifyNoRoot, verifyOtherRoot };
  }

  /** 4. The service stops; acme-rockets mirrors and its client verifies from acme's registry alone. */
  async #mirrorWithServiceStopped(
    { wabbit, acme, acmeStore, client, acmeClient }: Cast,
    build1: PushedImage,
  ): Promise<Pick<SeedDemoResult, 'mirroredTufFiles' | 'serviceRunningDuringMirrorVerify' | 'acmeSignatureSource'> & { verifyAcmeServiceStopped: CliRun; oldTimestamp: Manifest }> {
    const t = this.#tell;
    t.step(4, 'acme-rockets mirrors image, signatures and R/tuf with skopeo; the service is stopped; acme\'s client verifies from acme\'s registry');
    await this.#stage.stopService();
    t.ok('tufoci service stopped');
    t.note('(skopeo also gets --insecure-policy --src-tls-verify=false --dest-tls-verify=false: the loopback registries speak plain HTTP)');
    const mirroredTufFiles = await this.#mirror.all(wabbit, acme, build1.digest);
    const oldTimestamp = await acmeStore.getManifest(TUF_REPO, 'timestamp.json', MAX_MANIFEST); // kept: the rollback attack replays it
    for (const f of ['1.root.json', 'ci.pub']) copyFileSync(join(client.dir, f), join(acmeClient.dir, f));
    t.must(await this.#tufoci(acmeClient, ['trust', 'add', 'wabbit-networks/', '1.root.json']), 'acme trust add');
    const serviceRunningDuringMirrorVerify = this.#stage.serviceRunning || (await reachable(this.#stage.serviceUrl));
    const verifyAcmeServiceStopped = await this.#tufoci(acmeClient, ['verify', ref(acme), '--sig-key', 'ci.pub']);
    t.expectDigest(verifyAcmeServiceStopped, build1.digest, 'acme-rockets client, service stopped');
    t.ok(`same digest from acme-rockets (TUF read from ${acme.host}/${TUF_REPO}; signatures copied unchanged)`);
    const acmeSignatureSource = (await listSignatures(acmeStore, REPO, build1.digest)).source;
    return { mirroredTufFiles, oldTimestamp, serviceRunningDuringMirrorVerify, verifyAcmeServiceStopped, acmeSignatureSource };
  }

  /** 5. acme-rockets signs the digest it checked; its client requires both signatures. */
  async #acmeApproves({ acme, acmeOps, acmeClient }: Cast, build1: PushedImage): Promise<CliRun> {
    const t = this.#tell;
    t.step(5, 'acme-rockets adds its own signature: its approval key signs the digest it checked');
    await this.#tufoci(acmeOps, ['keygen', 'acme-approver'], { echo: false });
    t.must(await this.#tufoci(acmeOps, ['sign', ref(acme), '--key', 'acme-approver.key']), 'acme sign');
    copyFileSync(join(acmeOps.dir, 'acme-approver.pub'), join(acmeClient.dir, 'acme-approver.pub'));
    const verifyAcmeBothSigners = await this.#tufoci(acmeClient, ['verify', ref(acme), ...BOTH_SIGNERS]);
    t.expectDigest(verifyAcmeBothSigners, build1.digest, 'acme client requiring both signers');
    t.ok('TUF (wabbit-networks root) + signatures of wabbit-networks CI and acme-rockets, both required');
    return verifyAcmeBothSigners;
  }

  /** 6. v1 rebuilt and published again; refused at acme-rockets until it approves the new build. */
  async #securityFix(
    { wabbit, acme, wabbitStore, ci, acmeOps, acmeClient }: Cast,
    build1: PushedImage,
  ): Promise<{ build2: PushedImage } & Pick<SeedDemoResult['runs'], 'publish2' | 'verifyAcmeNotApproved' | 'verifyAcmeBuild2'>> {
    const t = this.#tell;
    t.step(6, 'A security fix: CI rebuilds v1 and publishes it again; the mirror syncs; acme-rockets approves the new build');
    await this.#stage.startService();
    t.note(`(service restarted on the same data: ${this.#stage.serviceUrl})`);
    const build2 = await pushImage(wabbitStore, REPO, 'v1', 'net-monitor v1, build 2 (security fix)');
    const publish2 = t.must(await this.#tufoci(ci, ['publish', ref(wabbit), '--role', 'ci', '--key', 'ci.key']), 'publish v1 again');
    if (!publish2.stdout.includes(build2.digest)) throw new DemoFailure(`publish did not publish ${build2.digest}: ${publish2.stdout}`);
    await this.#mirror.all(wabbit, acme, build2.digest);
    const verifyAcmeNotApproved = await this.#tufoci(acmeClient, ['verify', ref(acme), ...BOTH_SIGNERS]);
    t.expectRefused(verifyAcmeNotApproved, 1, new RegExp(`${build2.digest} is signed by 1 of the 2 trusted key\\(s\\) required`), 'build 2 before acme approves');
    t.must(await this.#tufoci(acmeOps, ['sign', ref(acme), '--key', 'acme-approver.key']), 'acme sign build 2');
    const verifyAcmeBuild2 = await this.#tufoci(acmeClient, ['verify', ref(acme), ...BOTH_SIGNERS]);
    t.expectDigest(verifyAcmeBuild2, build2.digest, 'acme client after approval');
    t.ok(`v1 is now ${short(build2.digest)}; build 1 (${short(build1.digest)}) is still in both registries, validly signed`);
    return { build2, publish2, verifyAcmeNotApproved, verifyAcmeBuild2 };
  }

  /** 7a. Rollback: timestamp.json re-tagged to the one of step 4 (its snapshot and targets, where v1 = build 1, are all still there). */
  async #rollback({ acme, acmeStore, acmeClient }: Cast, oldTimestamp: Manifest): Promise<CliRun> {
    const currentTimestamp = await acmeStore.getManifest(TUF_REPO, 'timestamp.json', MAX_MANIFEST);
    this.#tell.note('rollback: timestamp.json re-tagged to the manifest of step 4 (snapshot and targets where v1 = build 1)');
    await acmeStore.putManifest(TUF_REPO, 'timestamp.json', oldTimestamp.bytes, oldTimestamp.mediaType);
    const rollback = await this.#tufoci(acmeClient, ['verify', ref(acme), ...BOTH_SIGNERS], { echo: false });
    this.#tell.expectRefused(rollback, 1, /the store serves timestamp \d+, the client already trusts \d+ \(rollback\)/, 'rollback');
    await acmeStore.putManifest(TUF_REPO, 'timestamp.json', currentTimestamp.bytes, currentTimestamp.mediaType);
    return rollback;
  }

  /**
   * 7b. Mix-and-match: globex's current timestamp *and* snapshot (fresh, validly signed by the service, on the same
   * service) served under net-monitor. Each repository has its own online keys, so the signature check refuses it.
   */
  async #mixAndMatch({ acme, acmeStore, acmeClient }: Cast): Promise<CliRun> {
    const t = this.#tell;
    const serviceUrl = this.#stage.serviceUrl;
    const fetchOther = async (file: string): Promise<Uint8Array> => {
      const r = await fetch(`${serviceUrl}${paths.metadata(OTHER_REPO, file)}`);
      if (r.status !== 200) throw new DemoFailure(`reading ${OTHER_REPO}'s ${file} from the service answered ${r.status}`);
      return new Uint8Array(await r.arrayBuffer());
    };
    const foreignTimestamp = await fetchOther('timestamp.json');
    const foreignSnapshotVersion = (JSON.parse(new TextDecoder().decode(foreignTimestamp)) as { signed: { meta: Record<string, { version: number }> } }).signed.meta['snapshot.json']?.version;
    const snapshotFile = `${foreignSnapshotVersion}.snapshot.json`;
    const realSnapshot = await acmeStore.getManifest(TUF_REPO, snapshotFile, MAX_MANIFEST).catch(() => undefined);
    const realTimestamp = await acmeStore.getManifest(TUF_REPO, 'timestamp.json', MAX_MANIFEST);
    t.note(`mix-and-match: timestamp.json and ${snapshotFile} replaced by ${OTHER_REPO}'s (fresh, signed by the same service); a new client (pinned root only)`);
    await putArtifact(acmeStore, snapshotFile, await fetchOther(snapshotFile));
    await putArtifact(acmeStore, 'timestamp.json', foreignTimestamp);
    const mixAndMatch = await this.#tufoci(acmeClient, ['verify', ref(acme), '--trust', '1.root.json', '--ephemeral'], { echo: false });
    t.expectRefused(mixAndMatch, 1, /TUF metadata of wabbit-networks\/net-monitor refused: .*timestamp was signed by 0\/1 keys/i, 'mix-and-match');
    t.note("  (every repository has its own online keys: another repository's timestamp does not verify)");
    await acmeStore.putManifest(TUF_REPO, 'timestamp.json', realTimestamp.bytes, realTimestamp.mediaType);
    if (realSnapshot) await acmeStore.putManifest(TUF_REPO, snapshotFile, realSnapshot.bytes, realSnapshot.mediaType);
    return mixAndMatch;
  }

  /** 7c. The registry's own tag v1 moved back to build 1 (validly signed by both keys): TUF still answers build 2. */
  async #tagMovedBack({ acme, acmeStore, acmeClient }: Cast, build1: PushedImage, build2: PushedImage): Promise<CliRun> {
    const t = this.#tell;
    t.note(`tag moved back: ${ref(acme)} re-tagged to build 1, which both keys validly signed`);
    const build1Manifest: Manifest = await acmeStore.getManifest(REPO, build1.digest, MAX_MANIFEST);
    const build2Manifest: Manifest = await acmeStore.getManifest(REPO, build2.digest, MAX_MANIFEST);
    await acmeStore.putManifest(REPO, 'v1', build1Manifest.bytes, OCI_MANIFEST_MEDIA_TYPE);
    const tagMovedBack = await this.#tufoci(acmeClient, ['verify', ref(acme), ...BOTH_SIGNERS], { echo: false });
    t.expectDigest(tagMovedBack, build2.digest, 'tag moved back');
    if (!tagMovedBack.stderr.includes(`registry's tag v1 points at ${build1.digest}`)) throw new DemoFailure(`tag moved back: no warning about the registry tag: ${tagMovedBack.stderr}`);
    t.ok(`verify still answers ${short(build2.digest)} (exit 0) and warns:`);
    t.note(`  ${tagMovedBack.stderr.trim().split('\n')[0]}`);
    await acmeStore.putManifest(REPO, 'v1', build2Manifest.bytes, OCI_MANIFEST_MEDIA_TYPE);
    return tagMovedBack;
  }

  /**
   * 7d. Freeze: a timestamp past its expiry. To avoid waiting a day, the demo runs the service's clock two days
   * behind for one publish: the timestamp it signs (1-day expiry) expired yesterday. The mirror copies it and freezes.
   */
  async #freeze({ wabbit, acme, wabbitStore, ci, acmeClient }: Cast): Promise<CliRun> {
    const t = this.#tell;
    const stage = this.#stage;
    t.note('freeze: the mirror serves a timestamp past its expiry (the service signed it with its clock 2 days behind)');
    await pushImage(wabbitStore, REPO, 'v1.1', 'net-monitor v1.1');
    stage.clockSkewMs = 2 * DAY;
    try {
      t.must(await this.#tufoci(ci, ['publish', ref(wabbit, 'v1.1'), '--role', 'ci', '--key', 'ci.key'], { echo: false }), 'publish v1.1');
      await stage.stopService(); // before its refresh tick re-signs the expired timestamp
    } finally {
      stage.clockSkewMs = 0;
    }
    await this.#mirror.tuf(acme);
    const freeze = await this.#tufoci(acmeClient, ['verify', ref(acme), ...BOTH_SIGNERS], { echo: false });
    t.expectRefused(freeze, 1, /timestamp\.json is expired \(freeze/, 'freeze');
    return freeze;
  }

  /**
   * 8. A namespace: `init wabbit-networks/` once (the owner's offline keys; the root is kept at the
   * anchor wabbit-networks/tufoci-namespace), two repositories join with `delegate add` (their
   * targets alone, which name them), CI publishes v1 in each, and a client that trusts the
   * namespace once verifies both.
   */
  async #namespace({ wabbit, wabbitStore, owner, ci, nsClient }: Cast): Promise<MembersPublished> {
    const t = this.#tell;
    t.step(8, `A namespace: the owner creates ${NAMESPACE} trust once; net-scanner and net-dashboard join it; CI publishes v1 in each`);
    await this.#stage.startService();
    const serviceUrl = this.#stage.serviceUrl;
    t.note(`(service restarted on the same data: ${serviceUrl})`);
    const [scanner, dashboard] = await Promise.all([pushImage(wabbitStore, SCANNER, 'v1', 'net-scanner v1'), pushImage(wabbitStore, DASHBOARD, 'v1', 'net-dashboard v1')]);
    t.ok(`${ref(wabbit, 'v1', SCANNER)} = ${short(scanner.digest)}, ${ref(wabbit, 'v1', DASHBOARD)} = ${short(dashboard.digest)}`);
    const init = t.must(await this.#tufoci(owner, ['init', NAMESPACE, '--root-key', 'root.key', '--targets-key', 'targets.key', '--root-out', NAMESPACE_ROOT]), 'init namespace');
    const joinNamespace = async (repo: string): Promise<CliRun> =>
      t.must(await this.#tufoci(owner, ['delegate', 'add', repo, 'ci', '--key', 'ci.pub', '--paths', 'v*', '--terminating', '--targets-key', 'targets.key']), `${repo} joins`);
    const joinScanner = await joinNamespace(SCANNER);
    const joinDashboard = await joinNamespace(DASHBOARD);
    t.note('(net-monitor, created in step 2 with a root of its own, stays as it is)');
    const publish = async (repo: string, image: PushedImage): Promise<CliRun> => {
      const run = t.must(await this.#tufoci(ci, ['publish', ref(wabbit, 'v1', repo), '--role', 'ci', '--key', 'ci.key']), `publish ${repo}:v1`);
      if (!run.stdout.includes(image.digest)) throw new DemoFailure(`publish did not publish ${image.digest}: ${run.stdout}`);
      return run;
    };
    const publishScanner = await publish(SCANNER, scanner);
    const publishDashboard = await publish(DASHBOARD, dashboard);
    for (const [from, f] of [[owner, NAMESPACE_ROOT], [ci, 'ci.pub']] as const) copyFileSync(join(from.dir, f), join(nsClient.dir, f)); // received out of band
    t.must(await this.#tufoci(nsClient, ['trust', 'add', NAMESPACE, NAMESPACE_ROOT]), 'trust add namespace');
    const verifyScanner = await this.#tufoci(nsClient, ['verify', ref(wabbit, 'v1', SCANNER), '--server', serviceUrl, '--sig-key', 'ci.pub']);
    t.expectDigest(verifyScanner, scanner.digest, 'client trusting the namespace, net-scanner');
    const verifyDashboard = await this.#tufoci(nsClient, ['verify', ref(wabbit, 'v1', DASHBOARD), '--server', serviceUrl, '--sig-key', 'ci.pub']);
    t.expectDigest(verifyDashboard, dashboard.digest, 'client trusting the namespace, net-dashboard');
    t.ok(`one trusted root for both: net-scanner v1 is ${short(scanner.digest)}, net-dashboard v1 is ${short(dashboard.digest)}`);
    return { scanner, dashboard, runs: { init, joinScanner, joinDashboard, publishScanner, publishDashboard, verifyScanner, verifyDashboard } };
  }

  /**
   * 9. net-scanner alone is mirrored to acme-rockets, with the namespace's metadata (the anchor's
   * R/tuf, where a member's root files are read); with the service stopped, acme's client
   * trusting the namespace verifies net-scanner there. Then acme's
   * registry serves net-dashboard's image, signatures and metadata under net-scanner's name:
   * signed by the same namespace keys, and refused, because each file names its member.
   */
  async #mirrorMember({ wabbit, acme, acmeStore, owner, nsClient, acmeNsClient }: Cast, { scanner, dashboard }: MembersPublished): Promise<MemberMirrored> {
    const t = this.#tell;
    const anchor = namespaceAnchor(NAMESPACE);
    t.step(9, `acme-rockets mirrors net-scanner alone and the namespace's metadata (${tufRepo(anchor)}); the service is stopped; then acme's registry passes net-dashboard off as net-scanner`);
    await this.#stage.stopService();
    t.ok('tufoci service stopped');
    const mirroredTufFiles = await this.#mirror.all(wabbit, acme, scanner.digest, SCANNER);
    const mirroredNamespaceFiles = await this.#mirror.metadata(acme, anchor);
    const mirroredRoot = await new MetadataStore({ store: acmeStore }).readMetadata(anchor, '1.root.json', MAX_MANIFEST);
    const mirroredRootIsNamespaceRoot = Buffer.from(mirroredRoot).equals(readFileSync(join(owner.dir, NAMESPACE_ROOT)));
    if (!mirroredRootIsNamespaceRoot) throw new DemoFailure(`${acme.host}/${tufRepo(anchor)}:1.root.json is not the namespace root ${NAMESPACE_ROOT}`);
    const acmeRepositories = (await acmeStore.listRepositories()).sort();
    if (acmeRepositories.some((r) => r.startsWith(DASHBOARD))) throw new DemoFailure(`acme-rockets holds net-dashboard: ${acmeRepositories.join(' ')}`);
    t.ok(`${tufRepo(anchor)}:1.root.json on acme-rockets is the ${NAMESPACE} root, byte for byte; nothing of net-dashboard is copied`);
    for (const f of [NAMESPACE_ROOT, 'ci.pub']) copyFileSync(join(nsClient.dir, f), join(acmeNsClient.dir, f));
    t.must(await this.#tufoci(acmeNsClient, ['trust', 'add', NAMESPACE, NAMESPACE_ROOT]), 'acme trust add namespace');
    const serviceRunningDuringMirrorVerify = this.#stage.serviceRunning || (await reachable(this.#stage.serviceUrl));
    const verifyAcmeScanner = await this.#tufoci(acmeNsClient, ['verify', ref(acme, 'v1', SCANNER), '--sig-key', 'ci.pub']);
    t.expectDigest(verifyAcmeScanner, scanner.digest, 'acme-rockets client trusting the namespace, service stopped');
    t.ok(`same digest from acme-rockets, service stopped (TUF read from ${acme.host}: ${tufRepo(SCANNER)}, roots at ${tufRepo(anchor)})`);
    t.note(`passed off: acme's registry serves net-dashboard's v1, signatures and metadata (the same namespace keys signed them) as net-scanner's; a new client (pinned root only), then acme's client`);
    const passedOffTufFiles = await this.#mirror.passOff(wabbit, acme, dashboard.digest, DASHBOARD, SCANNER);
    const memberMismatch = new RegExp(`TUF metadata of ${SCANNER} refused: .*is for "${DASHBOARD}", not for ${SCANNER}: another namespace member's metadata served as this one's`);
    const passedOff = await this.#tufoci(acmeNsClient, ['verify', ref(acme, 'v1', SCANNER), '--trust', NAMESPACE_ROOT, '--ephemeral', '--sig-key', 'ci.pub']);
    t.expectRefused(passedOff, 1, memberMismatch, 'net-dashboard passed off as net-scanner (new client)');
    const passedOffTrusting = await this.#tufoci(acmeNsClient, ['verify', ref(acme, 'v1', SCANNER), '--sig-key', 'ci.pub']);
    t.expectRefused(passedOffTrusting, 1, memberMismatch, 'net-dashboard passed off as net-scanner (client with state)');
    t.note("  (one root's keys sign every member's files, the same online keys and the same targets key: each file names its repository)");
    return { mirroredTufFiles, mirroredNamespaceFiles, mirroredRootIsNamespaceRoot, acmeRepositories, serviceRunningDuringMirrorVerify, passedOffTufFiles, runs: { verifyAcmeScanner, passedOff, passedOffTrusting } };
  }
}

/** Steps 8–9, as the story goes: the namespace and its members (8), then net-scanner's mirror and the attack on it (9). */
type MembersPublished = Pick<NamespaceResult, 'scanner' | 'dashboard'> & { runs: Pick<NamespaceResult['runs'], 'init' | 'joinScanner' | 'joinDashboard' | 'publishScanner' | 'publishDashboard' | 'verifyScanner' | 'verifyDashboard'> };
type MemberMirrored = Omit<NamespaceResult, 'scanner' | 'dashboard' | 'runs'> & { runs: Pick<NamespaceResult['runs'], 'verifyAcmeScanner' | 'passedOff' | 'passedOffTrusting'> };

/** What a hostile registry can do: put any bytes under a metadata tag, as a well-formed artifact of that name. */
async function putArtifact(store: RegistryStore, fileName: string, bytes: Uint8Array): Promise<void> {
  const name = parseMetadataFileName(fileName);
  if (!name) throw new DemoFailure(`not a metadata file name: ${fileName}`);
  const artifact = buildMetadataArtifact(name, bytes);
  await store.putBlob(TUF_REPO, EMPTY_JSON_BYTES);
  await store.putBlob(TUF_REPO, bytes);
  await store.putManifest(TUF_REPO, fileName, artifact.manifest, OCI_MANIFEST_MEDIA_TYPE);
}

async function reachable(url: string): Promise<boolean> {
  try {
    const r = await fetch(`${url}${ROUTES.health}`, { signal: AbortSignal.timeout(1000) });
    await r.body?.cancel();
    return true;
  } catch {
    return false;
  }
}
