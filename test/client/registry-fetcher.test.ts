/**
 * The unmodified tuf-js Updater reading TUF metadata from OCI storage through
 * RegistryFetcher (memory backend here; the registry and layout backends are
 * exercised end to end in test/storage/skopeo-interop.test.ts).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DownloadHTTPError, DownloadLengthMismatchError } from 'tuf-js/dist/error.js';
import { metadataBaseUrl, parseMetadataUrl, RegistryFetcher } from '../../src/client/registry-fetcher.ts';
import { MemoryStore } from '../../src/storage/memory-store.ts';
import { MetadataStore } from '../../src/storage/metadata-store.ts';
import { RegistryStore } from '../../src/storage/registry-store.ts';
import { StorageError } from '../../src/storage/storage-error.ts';
import { OCI_MANIFEST_MEDIA_TYPE } from '../../src/storage/store.ts';
import { freeLoopbackPort } from '../support/registry-server.ts';
import { buildTufRepo, removeClientDirs, updaterFor, type TufRepo } from '../support/tuf-repo.ts';

const REPO = 'wabbit-networks/net-monitor';

async function published(repo: TufRepo, skip: string[] = []): Promise<{ store: MemoryStore; metadata: MetadataStore; fetcher: RegistryFetcher }> {
  const store = new MemoryStore();
  const metadata = new MetadataStore({ store });
  await metadata.publish(REPO, [...repo.files].filter(([name]) => !skip.includes(name)).map(([fileName, bytes]) => ({ fileName, bytes })));
  return { store, metadata, fetcher: new RegistryFetcher({ metadata }) };
}

describe('RegistryFetcher URLs', () => {
  it('maps oci+tuf://<repository>/<file> both ways', () => {
    expect(metadataBaseUrl(REPO)).toBe('oci+tuf://wabbit-networks/net-monitor');
    expect(parseMetadataUrl('oci+tuf://wabbit-networks/net-monitor/3.root.json')).toEqual({ repository: REPO, fileName: '3.root.json' });
    expect(parseMetadataUrl('oci+tuf://a/timestamp.json')).toEqual({ repository: 'a', fileName: 'timestamp.json' });
    for (const bad of ['https://wabbit-networks/net-monitor/1.root.json', 'oci+tuf://Upper/1.root.json', 'oci+tuf://a/1.root.json?x=1', 'oci+tuf://u:p@a/1.root.json', 'oci+tuf://a/', 'not a url']) {
      expect(parseMetadataUrl(bad)).toBeUndefined();
    }
    expect(() => metadataBaseUrl('Not/Valid')).toThrow(StorageError);
  });
});

describe('tuf-js Updater over RegistryFetcher', () => {
  let repo: TufRepo;
  beforeAll(async () => {
    repo = await buildTufRepo();
  });
  afterAll(removeClientDirs);

  it('refreshes (walking root versions until a 404) and finds top-level and delegated targets', async () => {
    const { fetcher } = await published(repo);
    const updater = updaterFor(repo, metadataBaseUrl(REPO), fetcher);
    await updater.refresh();
    const v1 = await updater.getTargetInfo('v1');
    const v2 = await updater.getTargetInfo('v2');
    expect(v1?.hashes['sha256']).toBe(repo.targets['v1']!.digest.slice(7));
    expect(v1?.length).toBe(repo.targets['v1']!.size);
    expect(v2?.hashes['sha256']).toBe(repo.targets['v2']!.digest.slice(7));
    expect(v2?.custom['mediaType']).toBe('application/vnd.oci.image.manifest.v1+json');
    expect(await updater.getTargetInfo('v3')).toBeUndefined();
  });

  it('maps a missing file to DownloadHTTPError 404 with the StorageError as cause', async () => {
    const { fetcher } = await published(repo);
    const error = await fetcher.downloadBytes(`${metadataBaseUrl(REPO)}/3.root.json`, 1024).then(() => undefined, (e: unknown) => e);
    expect(error).toBeInstanceOf(DownloadHTTPError);
    expect((error as DownloadHTTPError).statusCode).toBe(404);
    expect((error as Error).cause).toBeInstanceOf(StorageError);
    expect(((error as Error).cause as StorageError).code).toBe('NOT_FOUND');
  });

  it('fails the refresh when timestamp.json is missing', async () => {
    const { fetcher } = await published(repo, ['timestamp.json']);
    await expect(updaterFor(repo, metadataBaseUrl(REPO), fetcher).refresh()).rejects.toBeInstanceOf(DownloadHTTPError);
  });

  it('enforces the length tuf-js allows, before downloading', async () => {
    const { fetcher } = await published(repo);
    const updater = updaterFor(repo, metadataBaseUrl(REPO), fetcher, { timestampMaxLength: 100 });
    const error = await updater.refresh().then(() => undefined, (e: unknown) => e);
    expect(error).toBeInstanceOf(DownloadLengthMismatchError);
    expect(((error as Error).cause as StorageError).code).toBe('TOO_LARGE');
    // downloadFile (tuf-js's Fetcher interface, for targets) enforces it too
    const viaStream = await fetcher.downloadFile(`${metadataBaseUrl(REPO)}/timestamp.json`, 10, async () => 'read').then(() => undefined, (e: unknown) => e);
    expect(viaStream).toBeInstanceOf(DownloadLengthMismatchError);
    expect(await fetcher.downloadFile(`${metadataBaseUrl(REPO)}/timestamp.json`, 1 << 20, async () => 'read')).toBe('read');
  });

  it('refuses tampered metadata: the layer digest check fires before TUF sees the bytes', async () => {
    const { store, metadata, fetcher } = await published(repo);
    const snapshot = repo.files.get('1.snapshot.json')!;
    const tampered = Buffer.from(snapshot);
    tampered[tampered.length - 3] = tampered[tampered.length - 3] === 0x30 ? 0x31 : 0x30;
    const digest = (await metadata.writeMetadata(REPO, '1.snapshot.json', snapshot)).layerDigest;
    store.corruptBlobForTesting(`${REPO}/tuf`, digest, tampered);
    // The file rides in its manifest too (OCI 1.1 data): tamper that copy, so both are wrong.
    const manifest = await store.getManifest(`${REPO}/tuf`, '1.snapshot.json', 65536);
    const edited = Buffer.from(manifest.bytes).toString().replace(Buffer.from(snapshot).toString('base64'), tampered.toString('base64'));
    await store.putManifest(`${REPO}/tuf`, '1.snapshot.json', new TextEncoder().encode(edited), OCI_MANIFEST_MEDIA_TYPE);
    await expect(updaterFor(repo, metadataBaseUrl(REPO), fetcher).refresh()).rejects.toThrow(/layer data does not match the layer digest/);
  });

  it('does not turn an unreachable registry into "no newer root"', async () => {
    const port = await freeLoopbackPort();
    const metadata = new MetadataStore({ store: new RegistryStore({ url: `http://127.0.0.1:${port}`, retries: 0 }) });
    const updater = updaterFor(repo, metadataBaseUrl(REPO), new RegistryFetcher({ metadata }));
    const error = await updater.refresh().then(() => undefined, (e: unknown) => e);
    expect(error).toBeInstanceOf(StorageError);
    expect((error as StorageError).toJSON()).toMatchObject({ code: 'UNAVAILABLE', detail: { repository: `${REPO}/tuf`, reference: '2.root.json' } });
  });

  it('refuses URLs that are not oci+tuf metadata URLs', async () => {
    const { fetcher } = await published(repo);
    const error = await fetcher.downloadBytes('https://example.invalid/1.root.json', 1024).then(() => undefined, (e: unknown) => e);
    expect((error as StorageError).code).toBe('INVALID_NAME');
  });
});
