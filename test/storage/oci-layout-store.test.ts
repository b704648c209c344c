import { spawnSync } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EMPTY_JSON_BYTES } from '../../src/storage/digest.ts';
import { MetadataStore } from '../../src/storage/metadata-store.ts';
import { OciLayoutStore } from '../../src/storage/oci-layout-store.ts';
import { StorageError } from '../../src/storage/storage-error.ts';
import { OCI_MANIFEST_MEDIA_TYPE } from '../../src/storage/store.ts';
import { storeContract } from './contract.ts';

storeContract('oci-layout', async () => {
  const root = await mkdtemp(join(tmpdir(), 'tufoci-layout-'));
  const store = new OciLayoutStore({ root });
  return {
    store,
    canDeleteTag: true,
    corrupt: async (repository, digest, bytes) => writeFile(join(store.layoutDirectory(repository), 'blobs', 'sha256', digest.slice(7)), bytes),
    close: () => rm(root, { recursive: true, force: true }),
  };
});

describe('OciLayoutStore on disk', () => {
  let root: string;
  let store: OciLayoutStore;
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'tufoci-layout-'));
    store = new OciLayoutStore({ root });
  });
  afterAll(() => rm(root, { recursive: true, force: true }));

  it('writes a standard OCI image layout per repository, with no temporary files left', async () => {
    const metadata = new MetadataStore({ store });
    const bytes = new TextEncoder().encode('{"signed":{"_type":"root","version":1},"signatures":[]}');
    const { manifestDigest, layerDigest } = await metadata.writeMetadata('acme/app', '1.root.json', bytes);
    const dir = join(root, 'acme', 'app', 'tuf');
    expect(store.layoutDirectory('acme/app/tuf')).toBe(dir);
    expect(JSON.parse(await readFile(join(dir, 'oci-layout'), 'utf8'))).toEqual({ imageLayoutVersion: '1.0.0' });
    const index = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8'));
    expect(index).toEqual({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [
        {
          mediaType: OCI_MANIFEST_MEDIA_TYPE,
          digest: manifestDigest,
          size: expect.any(Number),
          annotations: { 'org.opencontainers.image.ref.name': '1.root.json' },
        },
      ],
    });
    const blobs = (await readdir(join(dir, 'blobs', 'sha256'))).sort();
    expect(blobs).toEqual([manifestDigest, layerDigest, 'sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a'].map((d) => d.slice(7)).sort());
    expect(await readFile(join(dir, 'blobs', 'sha256', layerDigest.slice(7)))).toEqual(Buffer.from(bytes));
    expect((await readdir(dir)).sort()).toEqual(['blobs', 'index.json', 'oci-layout']);
  });

  it('is readable by skopeo (skopeo inspect --raw oci:<dir>:<tag> returns the stored manifest)', async () => {
    const metadata = new MetadataStore({ store });
    const { manifestDigest } = await metadata.writeMetadata('acme/skopeo', '3.ci.json', new TextEncoder().encode('{"signed":{"version":3}}'));
    const dir = store.layoutDirectory('acme/skopeo/tuf');
    const result = spawnSync('skopeo', ['inspect', '--raw', `oci:${dir}:3.ci.json`], { encoding: 'utf8' });
    expect(result.error).toBeUndefined();
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    const raw = (await store.getManifest('acme/skopeo/tuf', '3.ci.json', 4096)).bytes;
    expect(result.stdout.trim()).toBe(Buffer.from(raw).toString());
    expect(manifestDigest).toBe((await store.getManifest('acme/skopeo/tuf', '3.ci.json', 4096)).digest);
  });

  it('refuses repository components that collide with layout files', async () => {
    for (const bad of ['acme/blobs', 'acme/index.json', 'oci-layout/x']) {
      const error = await store.putBlob(bad, new Uint8Array(1)).then(() => undefined, (e: unknown) => e);
      expect(error).toBeInstanceOf(StorageError);
      expect((error as StorageError).code).toBe('INVALID_NAME');
    }
  });

  it('reports a corrupt index.json as a PROTOCOL error naming the repository', async () => {
    await store.putBlob('acme/broken', EMPTY_JSON_BYTES);
    await writeFile(join(store.layoutDirectory('acme/broken'), 'index.json'), '<html>oops</html>');
    const error = await store.listTags('acme/broken').then(() => undefined, (e: unknown) => e);
    expect(error).toBeInstanceOf(StorageError);
    expect((error as StorageError).toJSON()).toMatchObject({ code: 'PROTOCOL', detail: { backend: 'oci-layout', repository: 'acme/broken', reference: 'index.json' } });
  });

  it('bounds index.json reads', async () => {
    const tiny = new OciLayoutStore({ root, maxIndexBytes: 64 });
    const metadata = new MetadataStore({ store });
    await metadata.writeMetadata('acme/big', '1.root.json', new Uint8Array([123, 125]));
    const error = await tiny.listTags('acme/big/tuf').then(() => undefined, (e: unknown) => e);
    expect((error as StorageError).code).toBe('TOO_LARGE');
  });

  it('sees index.json changes made by another writer (another instance or tool)', async () => {
    const metadata = new MetadataStore({ store });
    await metadata.writeMetadata('acme/shared', '1.root.json', new TextEncoder().encode('{"a":1}'));
    expect(await store.listTags('acme/shared/tuf')).toEqual(['1.root.json']);
    const other = new MetadataStore({ store: new OciLayoutStore({ root }) });
    await other.writeMetadata('acme/shared', '2.root.json', new TextEncoder().encode('{"a":2}'));
    expect(await store.listTags('acme/shared/tuf')).toEqual(['1.root.json', '2.root.json']);
    expect(Buffer.from(await metadata.readMetadata('acme/shared', '2.root.json', 100)).toString()).toBe('{"a":2}');
  });

  it('groups concurrent tag writes into few index rewrites and loses none', async () => {
    const repo = 'acme/many';
    const config = await store.putBlob(repo, EMPTY_JSON_BYTES);
    const writes = Array.from({ length: 200 }, (_, i) => {
      const manifest = new TextEncoder().encode(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST_MEDIA_TYPE, config: { mediaType: 'application/vnd.oci.empty.v1+json', ...config }, layers: [], annotations: { i: String(i) } }));
      return store.putManifest(repo, `t${i}`, manifest, OCI_MANIFEST_MEDIA_TYPE);
    });
    await Promise.all(writes);
    expect((await store.listTags(repo)).length).toBe(200);
    const again = new OciLayoutStore({ root });
    expect((await again.listTags(repo)).length).toBe(200);
  });
});
