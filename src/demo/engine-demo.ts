/**
 * `npm run demo`: the end-to-end story on the embedded default — no server, no
 * registry, no Redis. TUF metadata is written as OCI artifacts into an OCI
 * image layout under ./data/demo, and read back by the *unmodified* tuf-js
 * Updater through tufoci's OCI fetcher.
 *
 * Owner: offline root and targets keys, delegates `ci` for tags `v*`.
 * Service: verifies every upload against the trusted state, signs snapshot and timestamp.
 * CI: publishes tags under its delegated key.
 * Client: verifies `net-monitor:v1`; then the attacks, each refused with its reason.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { writeFileSync } from 'node:fs';
import { Updater } from 'tuf-js';
import {
  EngineError,
  buildRoot,
  buildTargets,
  isoExpiry,
  metadataFileName,
  produceSnapshotAndTimestamp,
  signMetadata,
  verifyNewRepository,
  verifyTargetsUpload,
  type ImageTarget,
  type RepoState,
} from '../engine/index.ts';
import { InMemorySigner } from '../keys/index.ts';
import { defaultPolicyPath, loadPolicyFile } from '../policy/policy.ts';
import { MetadataStore, OciLayoutStore } from '../storage/index.ts';
import { RegistryFetcher, metadataBaseUrl } from '../client/registry-fetcher.ts';

const REPO = 'wabbit-networks/net-monitor';
const dataDir = resolve(process.env['TUFOCI_DATA'] ?? 'data', 'demo');
const bold = (s: string): string => (process.stdout.isTTY ? `\x1b[1m${s}\x1b[0m` : s);
const step = (n: string, s: string): void => console.log(`\n${bold(`${n}. ${s}`)}`);
const ok = (s: string): void => console.log(`   ✔ ${s}`);
const refused = (s: string): void => console.log(`   ✘ refused: ${s}`);

function manifest(tag: string): ImageTarget & { bytes: Uint8Array } {
  // A small, real OCI image manifest (the demo does not need the blobs themselves).
  const bytes = new TextEncoder().encode(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: `sha256:${createHash('sha256').update(`config-${tag}`).digest('hex')}`, size: 2 },
      layers: [],
      annotations: { 'org.opencontainers.image.version': tag },
    }),
  );
  return { bytes, digest: `sha256:${createHash('sha256').update(bytes).digest('hex')}`, size: bytes.byteLength, mediaType: 'application/vnd.oci.image.manifest.v1+json' };
}

async function main(): Promise<void> {
  rmSync(dataDir, { recursive: true, force: true });
  const policy = await loadPolicyFile(defaultPolicyPath());
  const metadata = new MetadataStore({ store: new OciLayoutStore({ root: join(dataDir, 'oci') }) });
  const now = (): number => Date.now();
  const exp = (days: number): string => isoExpiry(now() + days * 86_400_000);

  step('1', 'Keys');
  const owner = { root: InMemorySigner.generate(), targets: InMemorySigner.generate() };
  const online = { snapshot: InMemorySigner.generate(), timestamp: InMemorySigner.generate() };
  const ci = InMemorySigner.generate();
  ok(`owner (offline): root ${owner.root.keyid.slice(0, 12)}, targets ${owner.targets.keyid.slice(0, 12)}`);
  ok(`service (online): snapshot ${online.snapshot.keyid.slice(0, 12)}, timestamp ${online.timestamp.keyid.slice(0, 12)}`);
  ok(`CI: ci ${ci.keyid.slice(0, 12)}`);

  const ctx = () => ({ now: now(), policy, onlineKeys: [online.snapshot.public, online.timestamp.public] });
  let state: RepoState;
  const publish = async (role: string | undefined, bytes: Uint8Array | undefined): Promise<void> => {
    const out = await produceSnapshotAndTimestamp(state, { now: now(), policy, signers: { snapshot: [online.snapshot], timestamp: [online.timestamp] } });
    state = out.state;
    const files = out.files.map((f) => ({ fileName: f.name, bytes: f.bytes }));
    if (role && bytes) files.unshift({ fileName: metadataFileName(role, state.targets.get(role)?.md.signed.version), bytes });
    await metadata.publish(REPO, files); // role file, then snapshot, then timestamp (last)
  };

  step('2', `Owner creates ${REPO} and delegates "ci" for tags v*`);
  const rootBytes = await signMetadata(
    buildRoot({
      version: 1,
      expires: exp(365),
      root: { keys: [owner.root.public], threshold: 1 },
      targets: { keys: [owner.targets.public], threshold: 1 },
      snapshot: { keys: [online.snapshot.public], threshold: 1 },
      timestamp: { keys: [online.timestamp.public], threshold: 1 },
    }),
    [owner.root],
  );
  const targetsBytes = await signMetadata(
    buildTargets({ version: 1, expires: exp(90), delegations: [{ name: 'ci', keys: [ci.public], threshold: 1, paths: ['v*'], terminating: true }] }),
    [owner.targets],
  );
  state = verifyNewRepository(rootBytes, targetsBytes, ctx());
  await metadata.publish(REPO, [
    { fileName: '1.root.json', bytes: rootBytes },
    { fileName: '1.targets.json', bytes: targetsBytes },
  ]);
  await publish(undefined, undefined);
  ok(`verified and stored as OCI artifacts in ${join(dataDir, 'oci', REPO, 'tuf')}`);

  step('3', 'CI publishes net-monitor:v1');
  const v1 = manifest('v1');
  const ci1 = await signMetadata(buildTargets({ version: 1, expires: exp(30), targets: { v1 } }), [ci]);
  state = verifyTargetsUpload(state, 'ci', ci1, ctx()).state;
  await publish('ci', ci1);
  ok(`ci v1: v1 → ${v1.digest}`);

  const clientDir = mkdtempSync(join(tmpdir(), 'tufoci-demo-client-'));
  writeFileSync(join(clientDir, 'root.json'), rootBytes);
  const client = (): Updater =>
    new Updater({ metadataDir: clientDir, metadataBaseUrl: metadataBaseUrl(REPO), fetcher: new RegistryFetcher({ metadata }) });

  step('4', 'A client that pins the wabbit-networks root verifies net-monitor:v1 (unmodified tuf-js Updater, straight from OCI storage)');
  const info = await client().getTargetInfo('v1');
  ok(`v1 = sha256:${info?.hashes['sha256']} (${info?.length} bytes, ${String(info?.custom['mediaType'])})`);

  step('5', 'CI rebuilds v1 (security fix); the client follows');
  const v1b = manifest('v1-rebuilt');
  const ci2 = await signMetadata(buildTargets({ version: 2, expires: exp(30), targets: { v1: v1b } }), [ci]);
  state = verifyTargetsUpload(state, 'ci', ci2, ctx()).state;
  await publish('ci', ci2);
  const info2 = await client().getTargetInfo('v1');
  ok(`v1 = sha256:${info2?.hashes['sha256']} (was ${v1.digest.slice(7, 19)}…)`);
  const oldTimestamp = await metadata.readMetadata(REPO, 'timestamp.json', 16384);

  step('6', 'Attacks on the service, each refused before anything is written');
  const tryUpload = (label: string, role: string, bytes: Uint8Array): void => {
    try {
      verifyTargetsUpload(state, role, bytes, ctx());
      console.log(`   !! ${label} was accepted`);
      process.exitCode = 1;
    } catch (e) {
      if (!(e instanceof EngineError)) throw e;
      refused(`${label} → ${e.code}: ${e.message}`);
    }
  };
  tryUpload('rollback: replay ci v1 (v1 → the old digest)', 'ci', ci1);
  tryUpload('CI signs a tag outside its delegation ("latest")', 'ci', await signMetadata(buildTargets({ version: 3, expires: exp(30), targets: { latest: v1 } }), [ci]));
  tryUpload('a stolen targets key? no: ci must be signed by the ci key', 'ci', await signMetadata(buildTargets({ version: 3, expires: exp(30), targets: { v9: v1 } }), [owner.targets]));
  tryUpload('freeze: an already expired ci', 'ci', await signMetadata(buildTargets({ version: 3, expires: isoExpiry(now() - 60_000), targets: {} }), [ci]));
  const tampered = new TextDecoder().decode(ci2).replace(v1b.digest.slice(7), v1.digest.slice(7));
  tryUpload('tampered bytes after signing', 'ci', new TextEncoder().encode(tampered.replace('"version":2', '"version":3')));

  step('7', 'Attack on the client: the storage serves an old timestamp');
  const ci3 = await signMetadata(buildTargets({ version: 3, expires: exp(30), targets: { v1: v1b, 'v1.1': manifest('v1.1') } }), [ci]);
  state = verifyTargetsUpload(state, 'ci', ci3, ctx()).state;
  await publish('ci', ci3);
  ok(`client sees v1.1 = ${(await client().getTargetInfo('v1.1'))?.hashes['sha256']?.slice(0, 12)}…`);
  await metadata.writeMetadata(REPO, 'timestamp.json', oldTimestamp); // the attacker moves timestamp.json back
  try {
    await client().refresh();
    console.log('   !! the client accepted a rolled-back timestamp');
    process.exitCode = 1;
  } catch (e) {
    refused(`rolled-back timestamp → ${(e as Error).message}`);
  }

  const tags = await metadata.listMetadata(REPO);
  step('8', `The OCI layout now holds ${tags.length} metadata artifacts`);
  console.log(`   ${tags.map((t) => t.fileName).join("  ")}`);
  console.log(`   inspect one: skopeo inspect --raw oci:${join(dataDir, 'oci', REPO, 'tuf')}:timestamp.json`);
  rmSync(clientDir, { recursive: true, force: true });
}

await main();
