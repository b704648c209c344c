/**
 * A tuf-js Fetcher that reads TUF metadata straight from OCI storage (a
 * registry, a mirror of it, or an OCI layout directory), through a
 * MetadataStore. The unmodified tuf-js Updater does all TUF verification.
 *
 * URLs: `oci+tuf://<repository>/<file>`, where <repository> is the image
 * repository R (the MetadataStore maps it to where its metadata lives,
 * `R/tuf` by default) and <file> a TUF file name (`3.root.json`,
 * `timestamp.json`). Give the Updater `metadataBaseUrl: metadataBaseUrl(R)`.
 * The registry itself is not in the URL: it is whatever the MetadataStore's
 * backend points at.
 *
 * Mapping to what tuf-js expects:
 * - a missing file → `DownloadHTTPError` with status 404, which is how the
 *   Updater learns there is no newer root;
 * - a file above the length tuf-js allows → `DownloadLengthMismatchError`
 *   (checked against the artifact's layer size before any download);
 * - anything else (digest mismatch, wrong media type, unreachable registry) →
 *   the StorageError itself, never a 404, so a broken mirror cannot pass for
 *   "no update".
 * tuf-js does not export its error classes from the package index; they are
 * imported from `tuf-js/dist/error.js`, the module its Updater itself uses, so
 * `instanceof` checks inside the Updater hold.
 */
import { BaseFetcher } from 'tuf-js';
import { DownloadHTTPError, DownloadLengthMismatchError } from 'tuf-js/dist/error.js';
import { StorageError, isStorageError } from '../storage/storage-error.ts';
import type { MetadataStore } from '../storage/metadata-store.ts';
import { isRepositoryName, clip } from '../storage/names.ts';

export const METADATA_URL_SCHEME = 'oci+tuf:';

/** The `metadataBaseUrl` to give a tuf-js Updater for image repository R. */
export function metadataBaseUrl(repository: string): string {
  if (!isRepositoryName(repository)) {
    throw new StorageError('INVALID_NAME', `"${clip(repository)}" is not an OCI repository name`, { backend: 'fetcher', repository: clip(repository), reference: '' });
  }
  return `${METADATA_URL_SCHEME}//${repository}`;
}

export interface RegistryFetcherOptions {
  metadata: MetadataStore;
  /** Bound for `fetch(url)` callers that pass no length (default 32 MiB). */
  maxBytes?: number;
}

/** Split `oci+tuf://<repository>/<file>`; undefined when the URL is not of that form. */
export function parseMetadataUrl(url: string): { repository: string; fileName: string } | undefined {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return undefined;
  }
  if (parsed.protocol !== METADATA_URL_SCHEME || parsed.search !== '' || parsed.hash !== '' || parsed.username !== '' || parsed.port !== '') return undefined;
  const path = `${parsed.host}${parsed.pathname}`;
  const slash = path.lastIndexOf('/');
  if (slash <= 0) return undefined;
  const repository = path.slice(0, slash);
  let fileName: string;
  try {
    fileName = decodeURIComponent(path.slice(slash + 1));
  } catch {
    return undefined;
  }
  return isRepositoryName(repository) && fileName.length > 0 ? { repository, fileName } : undefined;
}

export class RegistryFetcher extends BaseFetcher {
  readonly #metadata: MetadataStore;
  readonly #maxBytes: number;

  constructor(options: RegistryFetcherOptions) {
    super();
    this.#metadata = options.metadata;
    this.#maxBytes = options.maxBytes ?? 32 * 1024 * 1024;
  }

  async #read(url: string, maxLength: number): Promise<Uint8Array> {
    const target = parseMetadataUrl(url);
    if (!target) {
      throw new StorageError('INVALID_NAME', `${clip(url)} is not an ${METADATA_URL_SCHEME}//<repository>/<file> URL`, { backend: this.#metadata.store.backend, repository: '', reference: clip(url) });
    }
    try {
      return await this.#metadata.readMetadata(target.repository, target.fileName, maxLength);
    } catch (error) {
      // A name that cannot be stored cannot exist: for tuf-js that is a 404.
      if (isStorageError(error, 'NOT_FOUND') || (isStorageError(error, 'INVALID_NAME') && error.detail.reference === target.fileName)) {
        const notFound = new DownloadHTTPError(`${target.fileName} not found for ${target.repository} (${error.message})`, 404);
        notFound.cause = error;
        throw notFound;
      }
      if (isStorageError(error, 'TOO_LARGE')) {
        const tooLarge = new DownloadLengthMismatchError(`${target.fileName} for ${target.repository} exceeds ${maxLength} bytes`);
        tooLarge.cause = error;
        throw tooLarge;
      }
      throw error;
    }
  }

  override async downloadBytes(url: string, maxLength: number): Promise<Buffer> {
    const bytes = await this.#read(url, maxLength);
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  /** Used by BaseFetcher.downloadFile, which enforces its own maxLength on the stream as well. */
  override async fetch(url: string): Promise<ReadableStream<Uint8Array<ArrayBuffer>>> {
    const bytes = new Uint8Array(await this.#read(url, this.#maxBytes));
    return new ReadableStream<Uint8Array<ArrayBuffer>>({
      start(controller) {
        controller.enqueue(bytes);
        controller.close();
      },
    });
  }
}
