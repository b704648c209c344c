/**
 * Publish and verify benchmark (issue 6 §4):
 *
 *   npm run bench:verify      (= node bench/verify.bench.ts, on Node 24)
 *
 * For repositories with 10, 1,000 and 100,000 tags (the last one through
 * succinct hash bins), against `tufoci serve` processes started here on two
 * set-ups — `embedded` (OCI layout under its data directory) and `registry`
 * (TUF metadata in a real docker-registry, `R/tuf`) — with the images in
 * that docker-registry:
 *
 * - publish latency p50/p99: CI publish end to end with the library calls of
 *   `tufoci publish` (src/cli/commands/publisher.ts): resolve the tag in the
 *   registry, sign the manifest descriptor, push the signature as a referrer,
 *   add the tag to the role (its bin), sign, upload (retrying on conflicts);
 *   the CI key is loaded from a key file once, as a CI job would at start;
 * - verify latency (verifyImage with a signature policy: TUF + manifest by
 *   digest + plain signatures + the registry tag compared), cold (a fresh
 *   state directory and the pinned 1.root.json) and warm (state kept, the
 *   timestamp unchanged), via the service (`serviceUrl`) and straight from
 *   the registry (`R/tuf`, registry set-up only);
 * - requests and bytes downloaded per verify, counted at HTTP proxies between
 *   the client and the service / registry (separate runs, so timings carry no
 *   proxy cost), split into TUF metadata and image + signatures; bytes are
 *   response bodies ("body") and status line + headers ("head"); plus one
 *   warm verify after a publish elsewhere (timestamp moved), and for
 *   comparison the metadata requests of tuf-js's standard flow (root probe
 *   every refresh) on the same warm state.
 *
 * Set-up speed: the repositories are populated by building the role files
 * with the engine's builders (src/engine/build.ts) and uploading them through
 * the service (one upload per role or bin), not by 100,000 CLI publishes.
 * Every tag points to the same real image manifest (pushed, with its
 * signature); the verified tag `v1` is a real registry tag. Publishes push
 * their own images (before the clock starts).
 *
 * Medians are what to quote; timings move with whatever else runs on the
 * machine (printed: load average). Environment (all optional):
 *   BENCH_SIZES=10,1000,100000   BENCH_BINS=512 (bins for sizes ≥ BENCH_BINS_FROM=10000)
 *   BENCH_SETUPS=embedded,registry
 *   BENCH_PUBLISHES=30  BENCH_COLD_RUNS=10  BENCH_WARM_RUNS=20
 *
 * Why 512 bins for 100,000 tags: @tufjs/models (which the unmodified tuf-js
 * client parses with) is quadratic in the entries of one file (ARCHITECTURE.md),
 * and a client parses its local snapshot and role files on every refresh. 512
 * bins keep both the snapshot (512 entries) and a bin (~195 tags) cheap.
 */
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Updater } from 'tuf-js';
import { buildRoot, buildTargets, binFor, isoExpiry, signMetadata, type ImageTarget } from '../src/engine/index.ts';
import { generateKeyFiles, InMemorySigner, loadSignerFile } from '../src/keys/index.ts';
import { MetadataStore, RegistryStore, type Store } from '../src/storage/index.ts';
import { ServiceClient } from '../src/client/service-client.ts';
import { RegistryFetcher, metadataBaseUrl } from '../src/client/registry-fetcher.ts';
import { pushSignature, signDescriptor } from '../src/client/signatures.ts';
import { verifyImage, type VerifyImageOptions } from '../src/client/verify-image.ts';
import { publishTag } from '../src/cli/commands/publisher.ts';
import { startRegistry, type RegistryServer } from '../test/support/registry-server.ts';
import { pushImage } from '../test/support/image.ts';
import { startCountingProxy, type CountedRequest, type CountingProxy } from '../test/client/counting-proxy.ts';
import { ADMIN_TOKEN, assertNode24, createRepo, envInt, onlineKeys, startTufoci, type Tufoci } from './service-read.bench.ts';
import { machine, median, percentile, table, timeRuns } from './stats.ts';

const SIZES = (process.env['BENCH_SIZES'] ?? '10,1000,100000').split(',').map((s) => Number(s.trim())).filter((n) => Number.isSafeInteger(n) && n > 0);
const BINS = envInt('BENCH_BINS', 512);
const BINS_FROM = envInt('BENCH_BINS_FROM', 10_000);
const SETUPS = (process.env['BENCH_SETUPS'] ?? 'embedded,registry').split(',').map((s) => s.trim()).filter(Boolean);
const PUBLISHES = envInt('BENCH_PUBLISHES', 30);
const COLD_RUNS = envInt('BENCH_COLD_RUNS', 10);
const WARM_RUNS = envInt('BENCH_WARM_RUNS', 20);
const DAY = 86_400_000;
/** The goal for a warm client verifying one tag of a 100,000-tag repository. */
const WARM_BYTES_GOAL = 5_554;

type Source = 'service' | 'registry';

interface Counted {
  metaRequests: number;
  metaBody: number;
  metaHead: number;
  imageRequests: number;
  imageBody: number;
  imageHead: number;
  files: string[];
}

interface VerifyRow {
  setup: string;
  tags: number;
  source: Source;
  coldMs: number[];
  warmMs: number[];
  cold: Counted;
  warm: Counted;
  afterPublish: Counted;
  /** Metadata requests of tuf-js's standard flow on the same warm state. */
  standardWarm: Counted;
}

interface PublishRow {
  setup: string;
  tags: number;
  role: string;
  ms: number[];
}

const owner = { root: InMemorySigner.generate(), targets: InMemorySigner.generate() };

function log(message: string): void {
  process.stderr.write(`[verify.bench] ${message}\n`);
}

/** Split what the proxies saw into TUF metadata and image + signatures. */
function count(repo: string, registry: readonly CountedRequest[], service: readonly CountedRequest[]): Counted {
  const out: Counted = { metaRequests: 0, metaBody: 0, metaHead: 0, imageRequests: 0, imageBody: 0, imageHead: 0, files: [] };
  const tuf = `/v2/${repo}/tuf/`;
  for (const r of service) {
    out.metaRequests++;
    out.metaBody += r.bodyBytes;
    out.metaHead += r.headBytes;
    out.files.push(`${r.path.slice(r.path.lastIndexOf('/') + 1)} ${r.status}`);
  }
  for (const r of registry) {
    if (r.path.startsWith(tuf)) {
      out.metaRequests++;
      out.metaBody += r.bodyBytes;
      out.metaHead += r.headBytes;
      const [kind, ref] = r.path.slice(tuf.length).split('/');
      out.files.push(`${kind === 'blobs' ? 'blob' : ref} ${r.status}`);
    } else {
      out.imageRequests++;
      out.imageBody += r.bodyBytes;
      out.imageHead += r.headBytes;
    }
  }
  return out;
}

interface Bench {
  registry: RegistryServer;
  images: RegistryStore;
  registryProxy: CountingProxy;
  proxiedImages: RegistryStore;
  ci: Awaited<ReturnType<typeof loadSignerFile>>;
  dir: string;
}

/** Create the repository and fill it with `size` tags, all naming one real image; returns the role the tags live in. */
async function populate(b: Bench, service: Tufoci, client: ServiceClient, repo: string, size: number): Promise<string> {
  const online = await onlineKeys(service.url, repo);
  const expires = isoExpiry(Date.now() + 30 * DAY);
  const bins = size >= BINS_FROM ? BINS : 0;
  const root = await signMetadata(
    buildRoot({
      version: 1,
      expires: isoExpiry(Date.now() + 365 * DAY),
      root: { keys: [owner.root.public], threshold: 1 },
      targets: { keys: [owner.targets.public], threshold: 1 },
      snapshot: { keys: online.snapshot, threshold: 1 },
      timestamp: { keys: online.timestamp, threshold: 1 },
      scope: repo,
    }),
    [owner.root],
  );
  const top = buildTargets(
    bins
      ? { version: 1, expires, bins: { namePrefix: 'ci', bins, keys: [b.ci.public], threshold: 1 } }
      : { version: 1, expires, delegations: [{ name: 'ci', keys: [b.ci.public], threshold: 1, paths: ['v*'], terminating: true }] },
  );
  const dec = new TextDecoder();
  await createRepo(service.url, repo, `{"root":${dec.decode(root)},"targets":${dec.decode(await signMetadata(top, [owner.targets]))}}`);
  const image = await pushImage(b.images, repo, 'v1', `${repo} v1`);
  await pushSignature(b.images, repo, image, await signDescriptor(image, [b.ci]));
  const groups = new Map<string, Record<string, ImageTarget>>();
  for (let i = 0; i < size; i++) {
    const tag = `v${i}`;
    const role = bins ? binFor(top, tag) : 'ci';
    let g = groups.get(role);
    if (!g) groups.set(role, (g = {}));
    g[tag] = image;
  }
  const t0 = performance.now();
  let done = 0;
  for (const [role, targets] of groups) {
    await client.upload(repo, `1.${role}.json`, await signMetadata(buildTargets({ version: 1, expires, targets }), [b.ci]));
    if (++done % 64 === 0) log(`  ${repo}: ${done}/${groups.size} role files uploaded`);
  }
  log(`  ${repo}: ${size} tags in ${groups.size} role file(s), uploaded in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  return bins ? `${bins} bins` : 'ci';
}

/** One CI publish, as `tufoci publish <registry>/<repo>:<tag> --role ci --key ci.key` does it. */
async function publishOne(b: Bench, client: ServiceClient, repo: string, tag: string): Promise<void> {
  const manifest = await b.images.getManifest(repo, tag, 4 * 1024 * 1024);
  const descriptor = { mediaType: manifest.mediaType, digest: manifest.digest, size: manifest.bytes.byteLength };
  await pushSignature(b.images, repo, descriptor, await signDescriptor(descriptor, [b.ci]));
  await publishTag(client, repo, 'ci', tag, { ...descriptor }, b.ci, 30 * DAY);
}

async function measureVerify(b: Bench, setup: string, service: Tufoci, serviceProxy: CountingProxy, client: ServiceClient, repo: string, size: number, source: Source, extraTag: () => Promise<void>): Promise<VerifyRow> {
  const trustedRoot = await client.metadata(repo, '1.root.json');
  const expected = (await b.images.getManifest(repo, 'v1', 1 << 20)).digest;
  const options = (store: Store, serviceUrl: string, stateDir: string): VerifyImageOptions => ({
    store,
    repository: repo,
    tag: 'v1',
    trustedRoot,
    signatures: { keys: [b.ci.public] },
    stateDir,
    ...(source === 'service' ? { serviceUrl } : {}),
  });
  // A new registry client per verify, as a fresh `tufoci verify` process has (it learns per
  // client, e.g., whether the registry has the referrers API).
  const verify = async (registryUrl: string, serviceUrl: string, stateDir: string): Promise<void> => {
    const r = await verifyImage(options(new RegistryStore({ url: registryUrl }), serviceUrl, stateDir));
    if (r.digest !== expected || r.signers.length !== 1) throw new Error(`verify of ${repo}:v1 answered ${r.digest} signed by ${r.signers.length}`);
  };
  const fresh = (): string => mkdtempSync(join(b.dir, 'state-'));

  // Latency, straight to the servers.
  const coldMs = await timeRuns(
    async () => {
      const d = fresh();
      try {
        await verify(b.registry.url, service.url, d);
      } finally {
        rmSync(d, { recursive: true, force: true });
      }
    },
    COLD_RUNS,
    1,
  );
  const warmDir = fresh();
  const warmMs = await timeRuns(() => verify(b.registry.url, service.url, warmDir), WARM_RUNS, 2);

  // Requests and bytes, through the proxies.
  const measure = async (stateDir: string): Promise<Counted> => {
    b.registryProxy.reset();
    serviceProxy.reset();
    await verify(b.registryProxy.url, serviceProxy.url, stateDir);
    return count(repo, b.registryProxy.requests, serviceProxy.requests);
  };
  const countDir = fresh();
  const cold = await measure(countDir);
  const warm = await measure(countDir);

  // tuf-js's standard flow on a copy of the same warm state: root probe + timestamp (over a registry: + its layer).
  const standardDir = fresh();
  cpSync(countDir, standardDir, { recursive: true });
  b.registryProxy.reset();
  serviceProxy.reset();
  const updater =
    source === 'service'
      ? new Updater({ metadataDir: standardDir, metadataBaseUrl: `${serviceProxy.url}/v1/repos/${repo}/metadata` })
      : new Updater({ metadataDir: standardDir, metadataBaseUrl: metadataBaseUrl(repo), fetcher: new RegistryFetcher({ metadata: new MetadataStore({ store: b.proxiedImages }) }) });
  await updater.refresh();
  if (!(await updater.getTargetInfo('v1'))) throw new Error('standard flow did not find v1');
  const standardWarm = count(repo, b.registryProxy.requests, serviceProxy.requests);

  // A publish elsewhere moves the timestamp (and the snapshot, and the role or bin it went to).
  await extraTag();
  const afterPublish = await measure(countDir);
  for (const d of [warmDir, countDir, standardDir]) rmSync(d, { recursive: true, force: true });
  return { setup, tags: size, source, coldMs, warmMs, cold, warm, afterPublish, standardWarm };
}

async function main(): Promise<void> {
  assertNode24();
  const dir = await mkdtemp(join(tmpdir(), 'tufoci-verify-bench-'));
  const publishRows: PublishRow[] = [];
  const verifyRows: VerifyRow[] = [];
  let registry: RegistryServer | undefined;
  let registryProxy: CountingProxy | undefined;
  try {
    registry = await startRegistry();
    registryProxy = await startCountingProxy(registry.url);
    const ciFiles = await generateKeyFiles(join(dir, 'ci'));
    const b: Bench = {
      registry,
      images: new RegistryStore({ url: registry.url }),
      registryProxy,
      proxiedImages: new RegistryStore({ url: registryProxy.url }),
      ci: await loadSignerFile(ciFiles.privatePath),
      dir,
    };
    for (const setup of SETUPS) {
      if (setup !== 'embedded' && setup !== 'registry') throw new Error(`BENCH_SETUPS: unknown set-up ${setup}`);
      const service = await startTufoci({ dataDir: join(dir, `data-${setup}`), ...(setup === 'registry' ? { registry: registry.url } : {}) });
      const serviceProxy = await startCountingProxy(service.url);
      const client = new ServiceClient({ url: service.url, token: ADMIN_TOKEN });
      try {
        for (const size of SIZES) {
          const repo = `bench/verify-${setup}-${size}`;
          log(`${setup}, ${size} tags: populating ${repo}`);
          const role = await populate(b, service, client, repo, size);
          // Publish latency: PUBLISHES tags one after another (images pushed before the clock starts).
          for (let k = 0; k < PUBLISHES + 2; k++) await pushImage(b.images, repo, `vp${k}`, `${repo} vp${k}`);
          let k = 0;
          const ms = await timeRuns(() => publishOne(b, client, repo, `vp${k++}`), PUBLISHES, 2);
          publishRows.push({ setup, tags: size, role, ms });
          log(`${setup}, ${size} tags: publish p50 ${median(ms).toFixed(1)} ms`);
          const sources: Source[] = setup === 'registry' ? ['service', 'registry'] : ['service'];
          for (const source of sources) {
            let extra = 0;
            const extraTag = async (): Promise<void> => {
              const tag = `vx${source}${extra++}`;
              await pushImage(b.images, repo, tag, `${repo} ${tag}`);
              await publishOne(b, client, repo, tag);
            };
            const row = await measureVerify(b, setup, service, serviceProxy, client, repo, size, source, extraTag);
            verifyRows.push(row);
            log(`${setup}, ${size} tags, TUF from ${source}: verify cold ${median(row.coldMs).toFixed(1)} ms, warm ${median(row.warmMs).toFixed(1)} ms; warm metadata ${row.warm.files.join(', ')}`);
          }
        }
      } finally {
        await serviceProxy.close();
        await service.stop();
      }
    }
  } finally {
    await registryProxy?.close();
    await registry?.stop();
    await rm(dir, { recursive: true, force: true });
  }
  report(publishRows, verifyRows);
}

function fmt(ms: number): string {
  return ms >= 100 ? ms.toFixed(0) : ms.toFixed(1);
}

function report(publishRows: PublishRow[], verifyRows: VerifyRow[]): void {
  console.log(`\nverify.bench — ${machine()}; load average ${loadavg().map((l) => l.toFixed(2)).join(' ')} (other work may be running: figures are indicative)`);
  console.log(`publishes: ${PUBLISHES} per row; verifies: ${COLD_RUNS} cold, ${WARM_RUNS} warm per row; ${BINS} bins from ${BINS_FROM} tags\n`);
  console.log('Publish latency (CI publish end to end: resolve tag, sign, push signature, sign role/bin, upload), ms');
  table(publishRows.map((r) => ({ setup: r.setup, tags: r.tags, role: r.role, p50: fmt(median(r.ms)), p99: fmt(percentile(r.ms, 99)), n: r.ms.length })));
  console.log('Verify latency (TUF + manifest by digest + plain signature + registry tag), median ms');
  table(verifyRows.map((r) => ({ setup: r.setup, tags: r.tags, 'TUF from': r.source, cold: fmt(median(r.coldMs)), warm: fmt(median(r.warmMs)), 'warm p99': fmt(percentile(r.warmMs, 99)) })));
  console.log('Requests and bytes per verify (body bytes; head = status line + headers), counted at HTTP proxies');
  const rows: Array<Record<string, string | number>> = [];
  for (const r of verifyRows) {
    for (const [kind, c] of [['cold', r.cold], ['warm', r.warm], ['warm, timestamp moved', r.afterPublish], ['warm, tuf-js standard flow (metadata only)', r.standardWarm]] as const) {
      const standard = kind.startsWith('warm, tuf-js');
      rows.push({
        setup: r.setup,
        tags: r.tags,
        'TUF from': r.source,
        verify: kind,
        'meta req': c.metaRequests,
        'meta body': c.metaBody,
        'meta head': c.metaHead,
        'img+sig req': standard ? '' : c.imageRequests,
        'img+sig body': standard ? '' : c.imageBody,
        'total body': standard ? '' : c.metaBody + c.imageBody,
        'total incl. heads': standard ? '' : c.metaBody + c.imageBody + c.metaHead + c.imageHead,
      });
    }
  }
  table(rows);
  console.log('Warm metadata requests per verify:');
  for (const r of verifyRows) console.log(`  ${r.setup}, ${r.tags} tags, from ${r.source}: ${r.warm.files.join(', ')}   (standard flow: ${r.standardWarm.files.join(', ')})`);
  console.log('\nGoals:');
  const warmOne = verifyRows.every((r) => r.warm.metaRequests === 1);
  console.log(`  warm verify = 1 metadata request: ${warmOne ? 'met' : 'NOT met'} (${verifyRows.map((r) => r.warm.metaRequests).join(', ')})`);
  for (const r of verifyRows.filter((x) => x.tags >= 100_000)) {
    const body = r.warm.metaBody + r.warm.imageBody;
    console.log(`  ${r.tags} tags, ${r.setup}, TUF from ${r.source}: warm download ${body} body bytes (${body + r.warm.metaHead + r.warm.imageHead} with heads) ≤ ${WARM_BYTES_GOAL}: ${body <= WARM_BYTES_GOAL ? 'met' : 'NOT met'}`);
  }
}

await main();
