/**
 * A small, real OCI image, built and pushed without Docker: an image config,
 * one uncompressed tar layer holding one file, and the image manifest that
 * names them (the config's `rootfs.diff_ids` lists the layer, as runtimes
 * expect). Deterministic: the same `content` gives the same digest.
 */
import { OCI_MANIFEST_MEDIA_TYPE, sha256Digest, type Store } from '../storage/index.ts';

export interface PushedImage {
  digest: string;
  size: number;
  mediaType: string;
}

/** A POSIX ustar archive with one regular file (mode 0644, owner 0, mtime 0). */
export function tarWithOneFile(path: string, content: Uint8Array): Uint8Array {
  const header = new Uint8Array(512);
  const put = (offset: number, text: string): void => {
    header.set(new TextEncoder().encode(text), offset);
  };
  const octal = (n: number, width: number): string => `${n.toString(8).padStart(width - 1, '0')}\0`;
  put(0, path); // name (≤ 100 bytes)
  put(100, octal(0o644, 8)); // mode
  put(108, octal(0, 8)); // uid
  put(116, octal(0, 8)); // gid
  put(124, octal(content.byteLength, 12)); // size
  put(136, octal(0, 12)); // mtime
  put(148, '        '); // checksum, counted as spaces
  put(156, '0'); // regular file
  put(257, 'ustar\0'); // magic
  put(263, '00'); // version
  let sum = 0;
  for (const b of header) sum += b;
  put(148, `${sum.toString(8).padStart(6, '0')}\0 `);
  const padded = Math.ceil(content.byteLength / 512) * 512;
  const tar = new Uint8Array(512 + padded + 1024); // two zero blocks end the archive
  tar.set(header, 0);
  tar.set(content, 512);
  return tar;
}

/** Push the image's blobs and its manifest under `tag`; returns the manifest descriptor. */
export async function pushImage(store: Store, repository: string, tag: string, content: string): Promise<PushedImage> {
  const enc = new TextEncoder();
  const layerBytes = tarWithOneFile('etc/net-monitor/build', enc.encode(`${content}\n`));
  const layer = await store.putBlob(repository, layerBytes);
  const config = await store.putBlob(
    repository,
    enc.encode(
      JSON.stringify({
        architecture: 'amd64',
        os: 'linux',
        config: { Labels: { 'org.opencontainers.image.description': content } },
        rootfs: { type: 'layers', diff_ids: [layer.digest] },
      }),
    ),
  );
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
