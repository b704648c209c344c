/** Push a small real image (config, one layer, manifest) to a Store, no Docker needed. */
import { OCI_MANIFEST_MEDIA_TYPE, sha256Digest, type Store } from '../../src/storage/index.ts';

export interface PushedImage {
  digest: string;
  size: number;
  mediaType: string;
}

export async function pushImage(store: Store, repository: string, tag: string, content = tag): Promise<PushedImage> {
  const enc = new TextEncoder();
  const config = await store.putBlob(repository, enc.encode(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] }, config: { Labels: { content } } })));
  const layer = await store.putBlob(repository, enc.encode(`layer of ${content}`));
  const manifest = enc.encode(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST_MEDIA_TYPE,
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: config.digest, size: config.size },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: layer.digest, size: layer.size }],
    }),
  );
  await store.putManifest(repository, tag, manifest, OCI_MANIFEST_MEDIA_TYPE);
  return { digest: sha256Digest(manifest), size: manifest.byteLength, mediaType: OCI_MANIFEST_MEDIA_TYPE };
}
