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
 *
 * Fewer requests (timestamp-first-fetcher.ts): the timestamp's artifact
 * manifest is read before the root walk, by MetadataStore's conditional read
 * (readMetadataIfChanged): when its layer digest is the digest of the timestamp
 * the client already trusts (`trustedTimestamp`), the layer is not downloaded
 * again (content addressing makes those the same bytes); when
 * it is also the caller's `coveredTimestamp` (a complete root walk started
 * after it was read), the probe for the next root is answered 404 without a
 * request. A warm client then makes one registry request for TUF metadata:
 * the timestamp's manifest. The manifest also carries the timestamp itself
 * (`data`, for a new one) and the root version its writer had
 * (`io.tufoci.root-version`): a cold client pinned to the current root then
 * makes no root probe either.
 */
import { DownloadLengthMismatchError } from 'tuf-js/dist/error.js';
import { waitingFor } from '../storage/deadline.ts';
import { ANNOTATION_ROOT_VERSION, type MetadataStore } from '../storage/metadata-store.ts';
import { StorageError, isStorageError } from '../storage/storage-error.ts';
import { isRepositoryName, clip } from '../storage/names.ts';
import { notFound, parseVersionHint, TimestampFirstFetcher, type FetchedTimestamp, type TimestampFirstOptions } from './timestamp-first-fetcher.ts';

export const METADATA_URL_SCHEME = 'oci+tuf:';

/** The `metadataBaseUrl` to give a tuf-js Updater for image repository R. */
export function metadataBaseUrl(repository: string): string {
  if (!isRepositoryName(repository)) {
    throw new StorageError('INVALID_NAME', `"${clip(repository)}" is not an OCI repository name`, { backend: 'fetcher', repository: clip(repository), reference: '' });
  }
  return `${METADATA_URL_SCHEME}//${repository}`;
}

export interface RegistryFetcherOptions extends TimestampFirstOptions {
  metadata: MetadataStore;
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

export class RegistryFetcher extends TimestampFirstFetcher {
  readonly #metadata: MetadataStore;

  constructor(options: RegistryFetcherOptions) {
    super(options);
    this.#metadata = options.metadata;
  }

  #target(url: string): { repository: string; fileName: string } {
    const target = parseMetadataUrl(url);
    if (!target) {
      throw new StorageError('INVALID_NAME', `${clip(url)} is not an ${METADATA_URL_SCHEME}//<repository>/<file> URL`, { backend: this.#metadata.store.backend, repository: '', reference: clip(url) });
    }
    return target;
  }

  /** StorageError → what tuf-js expects: 404 for a missing file, a length error above the bound; anything else as is. */
  #mapError(error: unknown, target: { repository: string; fileName: string }, maxLength: number): unknown {
    // A name that cannot be stored cannot exist: for tuf-js that is a 404.
    if (isStorageError(error, 'NOT_FOUND') || (isStorageError(error, 'INVALID_NAME') && error.detail.reference === target.fileName)) {
      return notFound(`${target.fileName} not found for ${target.repository} (${error.message})`, error);
    }
    if (isStorageError(error, 'TOO_LARGE')) {
      const tooLarge = new DownloadLengthMismatchError(`${target.fileName} for ${target.repository} exceeds ${maxLength} bytes`);
      tooLarge.cause = error;
      return tooLarge;
    }
    return error;
  }

  protected async readFile(url: string, maxLength: number): Promise<Uint8Array> {
    const target = this.#target(url);
    try {
      return await waitingFor(() => `${target.fileName} of ${target.repository}`, () => this.#metadata.readMetadata(target.repository, target.fileName, maxLength));
    } catch (error) {
      throw this.#mapError(error, target, maxLength);
    }
  }


  /**
   * timestamp.json by MetadataStore's conditional read: the layer is not downloaded when its
   * digest is that of the trusted timestamp (content addressing: those are then the same bytes).
   */
  protected override readTimestamp(url: string, maxLength: number, trusted: Uint8Array | undefined): Promise<FetchedTimestamp> {
    const target = this.#target(url);
    return waitingFor(
      () => `${target.fileName} of ${target.repository}`,
      async () => {
        try {
          const read = await this.#metadata.readMetadataIfChanged(target.repository, target.fileName, maxLength, trusted);
          // The root version its writer had (a hint: it can only skip a root probe or cause one).
          const rootVersion = parseVersionHint(read.annotations[ANNOTATION_ROOT_VERSION]);
          return { bytes: read.bytes, ...(rootVersion !== undefined ? { rootVersion } : {}) };
        } catch (error) {
          throw this.#mapError(error, target, maxLength);
        }
      },
    );
  }
}
