/**
 * The storage seam: content-addressed blobs, manifests and tags of one OCI
 * repository per call, in the shape of the OCI distribution API.
 *
 * Contract every backend keeps (checked by test/storage/contract.ts):
 * - Names are validated before any I/O (`INVALID_NAME`): repositories by the
 *   OCI name grammar, tags by the tag grammar, digests as `sha256:<hex>`.
 * - Every read is bounded by the caller's `maxBytes` (`TOO_LARGE`), and every
 *   byte returned has been hashed: a blob or manifest that does not hash to its
 *   digest is never returned (`DIGEST_MISMATCH`).
 * - A manifest becomes visible under a tag only once it and the bytes it was
 *   given are fully stored: a failed put leaves the previous tag target (or no
 *   tag) in place.
 * - Putting a manifest under an existing tag moves the tag. Immutability of
 *   versioned TUF files is the job of the MetadataStore above, not of backends.
 * - Returned and accepted byte arrays are never aliased with backend state.
 * - No TUF logic lives here.
 * - Failures are `StorageError`s naming backend, repository and reference.
 */

/** Media types of manifests the backends store and the registry backend asks for. */
export {
  DOCKER_MANIFEST_LIST_MEDIA_TYPE,
  DOCKER_MANIFEST_MEDIA_TYPE,
  MANIFEST_MEDIA_TYPES,
  OCI_INDEX_MEDIA_TYPE,
  OCI_MANIFEST_MEDIA_TYPE,
} from '../oci/media-types.ts';

export interface BlobRef {
  digest: string;
  size: number;
}

export interface Manifest {
  bytes: Uint8Array;
  mediaType: string;
  digest: string;
}

/** One entry of a referrers list: a descriptor of a manifest whose `subject` is the asked digest. */
export interface ReferrerDescriptor {
  mediaType: string;
  digest: string;
  size: number;
  artifactType?: string;
  annotations?: Record<string, string>;
}

export interface ListReferrersOptions {
  /** Only referrers of this artifact type (asked of the registry and re-checked locally). */
  artifactType?: string;
  /** Bound on each response body (`TOO_LARGE` beyond it). */
  maxBytes: number;
  /** Stop after this many descriptors (default 1,000). */
  maxCount?: number;
}

/** One manifest of a `putManifests` batch, with the blobs it references that may need storing. */
export interface ManifestPut {
  /** Tag, or the manifest's own digest. */
  reference: string;
  bytes: Uint8Array;
  mediaType: string;
  /** Blob contents the manifest references; stored before any manifest of the batch (present ones may be skipped). */
  blobs: readonly Uint8Array[];
}

export interface Store {
  /** Short backend name used in error details: 'memory', 'oci-layout', 'registry'. */
  readonly backend: string;

  /** Resolve when the backend can serve requests; reject with a StorageError otherwise. */
  ping(): Promise<void>;

  /** Store bytes as a blob; idempotent (content addressed). */
  putBlob(repository: string, bytes: Uint8Array): Promise<BlobRef>;
  hasBlob(repository: string, digest: string): Promise<boolean>;
  /** The blob's bytes, verified against `digest`; `TOO_LARGE` beyond `maxBytes`. */
  getBlob(repository: string, digest: string, maxBytes: number): Promise<Uint8Array>;

  /**
   * Store a manifest under a tag (moving the tag) or under its digest (which
   * must then equal the bytes' sha256). Blobs it references must exist where
   * the backend checks (the registry does). Returns the manifest digest.
   */
  putManifest(repository: string, reference: string, bytes: Uint8Array, mediaType: string): Promise<{ digest: string }>;
  /** The manifest named by tag or digest; its digest is always recomputed from the bytes. */
  getManifest(repository: string, reference: string, maxBytes: number): Promise<Manifest>;

  /** Every repository the backend holds, sorted (a registry needs catalog access). */
  listRepositories(): Promise<string[]>;

  /** Every tag of the repository (all pages), sorted; `[]` for a repository that does not exist. */
  listTags(repository: string): Promise<string[]>;

  /** Remove a manifest and every tag pointing at it. `NOT_FOUND` if absent. */
  deleteManifest(repository: string, digest: string): Promise<void>;
  /** Remove one tag, leaving the manifest. `NOT_FOUND` if absent, `UNSUPPORTED` where the backend cannot. */
  deleteTag(repository: string, tag: string): Promise<void>;

  /**
   * OCI 1.1 referrers API (`GET /v2/<name>/referrers/<digest>`): descriptors of
   * the manifests whose `subject` is `digest`. Optional: a backend without it,
   * or a registry answering `UNSUPPORTED` (it has no referrers API, e.g.
   * distribution 2.8), leaves callers to the referrers tag schema
   * (`sha256-<hex>`). The list is unauthenticated registry data: callers fetch
   * each referrer by digest and verify it.
   */
  listReferrers?(repository: string, digest: string, options: ListReferrersOptions): Promise<ReferrerDescriptor[]>;

  /**
   * Optional batch write, the same effect as `putBlob` for every blob and then
   * `putManifest` for each entry in order, in fewer round trips or disk syncs:
   * - every name, digest, size and media type is checked before any write;
   * - every blob of the batch is stored before any manifest;
   * - the manifests become visible in the given order: none before the ones
   *   listed ahead of it (a backend may show several at once, atomically);
   * - it stops at the first failure: no manifest after a failed one is stored.
   * Callers without it (or wrappers that do not forward it) use the single calls.
   */
  putManifests?(repository: string, puts: readonly ManifestPut[]): Promise<Array<{ digest: string }>>;

  /**
   * Optional conditional read: `undefined` when the manifest `reference`
   * names has the digest `digest` (HTTP `If-None-Match`; nothing is read),
   * otherwise the manifest exactly as `getManifest` returns it. `NOT_FOUND`
   * when there is none. For a caller that holds bytes whose manifest digest it
   * computed itself: "unchanged" is as trustworthy as reading the same bytes.
   */
  getManifestIfNoneMatch?(repository: string, reference: string, digest: string, maxBytes: number): Promise<Manifest | undefined>;
}
