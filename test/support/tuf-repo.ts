/**
 * A small, valid, consistent-snapshot TUF repository for storage and client
 * tests, built with the engine's builders (buildRoot, buildTargets,
 * signMetadata) and ed25519 test keys generated per run (TEST KEYS ONLY).
 *
 * Files: 1.root.json and 2.root.json (a root rotation step, so clients walk
 * root versions and stop at a missing 3.root.json), 1.targets.json with
 * target `v1` and a delegation `ci` (paths `v*`), 1.ci.json with target `v2`,
 * 1.snapshot.json and timestamp.json. `ciTargets` adds that many more targets
 * (`vx0`, `vx1`, …, random digests) to `ci`: a role large enough to be stored
 * compressed and read from its blob.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MetaFile, Snapshot, Timestamp } from '@tufjs/models';
import { Updater, type Fetcher } from 'tuf-js';
import { buildRoot, buildTargets, isoExpiry, SPEC_VERSION, signMetadata } from '../../src/engine/index.ts';
import { InMemorySigner } from '../../src/keys/index.ts';

export interface TufRepo {
  /** File name → exact signed bytes, in publishing order (timestamp last). */
  files: Map<string, Uint8Array>;
  /** Image targets by path and the role that lists them. */
  targets: Record<string, { role: string; digest: string; size: number }>;
}

const DAY = 86_400_000;

function metaFile(version: number, bytes: Uint8Array): MetaFile {
  return new MetaFile({ version, length: bytes.byteLength, hashes: { sha256: createHash('sha256').update(bytes).digest('hex') } });
}

export async function buildTufRepo(now = Date.now(), options: { ciTargets?: number } = {}): Promise<TufRepo> {
  const [rootKey, targetsKey, snapshotKey, timestampKey, ciKey] = Array.from({ length: 5 }, () => InMemorySigner.generate('ed25519')) as [
    InMemorySigner,
    InMemorySigner,
    InMemorySigner,
    InMemorySigner,
    InMemorySigner,
  ];
  const expires = isoExpiry(now + 30 * DAY);
  const rootSpec = (version: number) => ({
    version,
    expires,
    root: { keys: [rootKey.public], threshold: 1 },
    targets: { keys: [targetsKey.public], threshold: 1 },
    snapshot: { keys: [snapshotKey.public], threshold: 1 },
    timestamp: { keys: [timestampKey.public], threshold: 1 },
  });
  const v1 = { digest: `sha256:${'a1'.repeat(32)}`, size: 1234, mediaType: 'application/vnd.oci.image.manifest.v1+json' };
  const v2 = { digest: `sha256:${'b2'.repeat(32)}`, size: 2345, mediaType: 'application/vnd.oci.image.manifest.v1+json' };
  const root1 = await signMetadata(buildRoot(rootSpec(1)), [rootKey]);
  const root2 = await signMetadata(buildRoot(rootSpec(2)), [rootKey]);
  const targets = await signMetadata(
    buildTargets({ version: 1, expires, targets: { v1 }, delegations: [{ name: 'ci', keys: [ciKey.public], threshold: 1, paths: ['v*'] }] }),
    [targetsKey],
  );
  const extra = Object.fromEntries(
    Array.from({ length: options.ciTargets ?? 0 }, (_, i) => [`vx${i}`, { digest: `sha256:${randomBytes(32).toString('hex')}`, size: 1000 + i, mediaType: 'application/vnd.oci.image.manifest.v1+json' }]),
  );
  const ci = await signMetadata(buildTargets({ version: 1, expires, targets: { v2, ...extra } }), [ciKey]);
  const snapshot = await signMetadata(
    new Snapshot({ version: 1, specVersion: SPEC_VERSION, expires, meta: { 'targets.json': metaFile(1, targets), 'ci.json': metaFile(1, ci) } }),
    [snapshotKey],
  );
  const timestamp = await signMetadata(
    new Timestamp({ version: 1, specVersion: SPEC_VERSION, expires: isoExpiry(now + DAY), snapshotMeta: metaFile(1, snapshot) }),
    [timestampKey],
  );
  return {
    files: new Map([
      ['1.root.json', root1],
      ['2.root.json', root2],
      ['1.targets.json', targets],
      ['1.ci.json', ci],
      ['1.snapshot.json', snapshot],
      ['timestamp.json', timestamp],
    ]),
    targets: {
      v1: { role: 'targets', digest: v1.digest, size: v1.size },
      v2: { role: 'ci', digest: v2.digest, size: v2.size },
      ...Object.fromEntries(Object.entries(extra).map(([path, t]) => [path, { role: 'ci', digest: t.digest, size: t.size }])),
    },
  };
}

const clientDirs: string[] = [];

/** An unmodified tuf-js Updater trusting 1.root.json, in a fresh metadata directory (see removeClientDirs). */
export function updaterFor(repo: TufRepo, metadataBaseUrl: string, fetcher: Fetcher, config: Record<string, number> = {}): Updater {
  const dir = mkdtempSync(join(tmpdir(), 'tufoci-storage-client-'));
  clientDirs.push(dir);
  writeFileSync(join(dir, 'root.json'), repo.files.get('1.root.json')!);
  return new Updater({ metadataDir: dir, metadataBaseUrl, fetcher, config });
}

/** Remove the metadata directories made by updaterFor (call in afterAll). */
export function removeClientDirs(): void {
  for (const dir of clientDirs.splice(0)) rmSync(dir, { recursive: true, force: true });
}
