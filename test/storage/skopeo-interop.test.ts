/**
 * Interop proof with standard OCI tooling and a real registry:
 *   1. TUF metadata is written to an OCI layout directory (the embedded default);
 *   2. skopeo copies every tag to a real registry (docker-registry);
 *   3. the unmodified tuf-js Updater, through RegistryFetcher, verifies the
 *      same targets from the registry copy as from the original layout;
 *   4. skopeo copies the registry back into a fresh layout (the air-gapped
 *      transfer), which verifies the same way again.
 * The artifacts must survive both copies byte for byte (same manifest digests).
 * `ci` holds 400 targets, so its layer is stored compressed and read from its
 * blob: skopeo copies the `+gzip` layer as it is.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { metadataBaseUrl, RegistryFetcher } from '../../src/client/registry-fetcher.ts';
import { TUF_METADATA_GZIP_LAYER_MEDIA_TYPE } from '../../src/storage/artifact.ts';
import { MetadataStore } from '../../src/storage/metadata-store.ts';
import { OciLayoutStore } from '../../src/storage/oci-layout-store.ts';
import { RegistryStore } from '../../src/storage/registry-store.ts';
import type { Store } from '../../src/storage/store.ts';
import { startRegistry, type RegistryServer } from '../support/registry-server.ts';
import { buildTufRepo, removeClientDirs, updaterFor, type TufRepo } from '../support/tuf-repo.ts';

const run = promisify(execFile);
const SKOPEO = '/usr/bin/skopeo';
const REPO = 'wabbit-networks/net-monitor';
const META_REPO = `${REPO}/tuf`;

async function skopeo(args: string[]): Promise<void> {
  if (!existsSync(SKOPEO)) throw new Error(`skopeo is not installed (${SKOPEO} missing): run \`apt-get install skopeo\``);
  try {
    await run(SKOPEO, args, { timeout: 60_000 });
  } catch (error) {
    const e = error as { stderr?: string; message: string };
    throw new Error(`skopeo ${args.join(' ')} failed: ${e.stderr ?? e.message}`, { cause: error });
  }
}

/** What a client that trusts 1.root.json concludes about every target, through the given store. */
async function verifiedTargets(repo: TufRepo, store: Store): Promise<Record<string, unknown>> {
  const updater = updaterFor(repo, metadataBaseUrl(REPO), new RegistryFetcher({ metadata: new MetadataStore({ store }) }));
  await updater.refresh();
  const out: Record<string, unknown> = {};
  for (const path of [...Object.keys(repo.targets), 'absent']) out[path] = (await updater.getTargetInfo(path))?.toJSON() ?? null;
  return out;
}

async function manifestDigests(store: Store, tags: string[]): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const tag of tags) out[tag] = (await store.getManifest(META_REPO, tag, 65536)).digest;
  return out;
}

describe('skopeo round trip: OCI layout → registry → OCI layout', () => {
  let registry: RegistryServer;
  let work: string;
  let repo: TufRepo;
  beforeAll(async () => {
    [registry, work, repo] = await Promise.all([startRegistry(), mkdtemp(join(tmpdir(), 'tufoci-interop-')), buildTufRepo(Date.now(), { ciTargets: 400 })]);
  }, 30_000);
  afterAll(async () => {
    removeClientDirs();
    await registry?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  }, 30_000);

  it('verifies the same targets from the original layout, the registry copy and the air-gapped copy', async () => {
    // 1. publish into an OCI layout
    const original = new OciLayoutStore({ root: join(work, 'original') });
    await new MetadataStore({ store: original }).publish(REPO, [...repo.files].map(([fileName, bytes]) => ({ fileName, bytes })));
    const tags = await original.listTags(META_REPO);
    expect(tags).toEqual([...repo.files.keys()].sort());
    const ciLayer = (JSON.parse(Buffer.from((await original.getManifest(META_REPO, '1.ci.json', 65536)).bytes).toString()) as { layers: Array<{ mediaType: string; data?: string }> }).layers[0];
    expect(ciLayer?.mediaType).toBe(TUF_METADATA_GZIP_LAYER_MEDIA_TYPE);
    expect(ciLayer?.data).toBeUndefined();
    const fromLayout = await verifiedTargets(repo, original);
    expect(fromLayout['v1']).toMatchObject({ length: repo.targets['v1']!.size, hashes: { sha256: repo.targets['v1']!.digest.slice(7) } });
    expect(fromLayout['v2']).toMatchObject({ length: repo.targets['v2']!.size, hashes: { sha256: repo.targets['v2']!.digest.slice(7) } });
    expect(fromLayout['vx399']).toMatchObject({ length: repo.targets['vx399']!.size });
    expect(fromLayout['absent']).toBeNull();

    // 2. skopeo: layout → registry, tag by tag. Sequential: distribution 2.8 can answer 500 when
    //    two clients push the same blob (here the shared empty config) at the same moment.
    const layoutDir = original.layoutDirectory(META_REPO);
    const host = `127.0.0.1:${registry.port}`;
    for (const tag of tags) {
      await skopeo(['copy', '--all', '--preserve-digests', '--dest-tls-verify=false', `oci:${layoutDir}:${tag}`, `docker://${host}/${META_REPO}:${tag}`]);
    }

    // 3. the registry copy verifies the same
    const remote = new RegistryStore({ url: registry.url });
    expect(await remote.listTags(META_REPO)).toEqual(tags);
    expect(await verifiedTargets(repo, remote)).toEqual(fromLayout);
    expect(await manifestDigests(remote, tags)).toEqual(await manifestDigests(original, tags));

    // 4. skopeo: registry → fresh layout (sequential: one writer per layout index.json)
    const airGapped = new OciLayoutStore({ root: join(work, 'air-gapped') });
    const copyDir = airGapped.layoutDirectory(META_REPO);
    await mkdir(copyDir, { recursive: true });
    for (const tag of tags) {
      await skopeo(['copy', '--all', '--preserve-digests', '--dest-oci-accept-uncompressed-layers', '--src-tls-verify=false', `docker://${host}/${META_REPO}:${tag}`, `oci:${copyDir}:${tag}`]);
    }
    expect(await airGapped.listTags(META_REPO)).toEqual(tags);
    expect(await verifiedTargets(repo, airGapped)).toEqual(fromLayout);
    expect(await manifestDigests(airGapped, tags)).toEqual(await manifestDigests(original, tags));
    for (const [fileName, bytes] of repo.files) {
      expect(Buffer.from(await new MetadataStore({ store: airGapped }).readMetadata(REPO, fileName, 1 << 20)).equals(Buffer.from(bytes))).toBe(true);
    }
  }, 90_000);
});
