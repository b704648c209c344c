/**
 * TUF metadata files of an OCI repository R, kept as artifacts (artifact.ts)
 * tagged with their file names in the sibling repository `R/tuf` (by default)
 * of any Store backend.
 *
 * Invariants:
 * - Versioned files (`N.role.json`) are immutable: writing different bytes to
 *   an existing one is a CONFLICT, writing the same bytes is a no-op success.
 *   Only `timestamp.json` moves.
 * - A file is visible only once complete: blobs first, the tagged manifest
 *   last, so a failed write leaves no tag (or the previous timestamp).
 * - `publish` writes a set of files with timestamp.json last, and stops at the
 *   first failure: the timestamp never points at files that failed to write.
 *   The other files go to the backend as one batch where it has
 *   `putManifests` (blobs first, in parallel; tags visible in order — role
 *   files, then snapshots — or together, as one index.json rewrite on a
 *   layout), and timestamp.json in a batch of its own once that one is done.
 * - Reads return exactly the file's bytes, bounded by the caller, after the
 *   manifest was checked to be the artifact of the file name asked for; from
 *   the descriptor's `data` when it carries them (one request), else the blob.
 *   A file of at least COMPRESS_MIN_BYTES is written as a gzip layer (unless
 *   `compress: false`); reading one checks it strictly (artifact.ts
 *   decompressLayer) and returns the file it holds, never the gzip bytes.
 * - The last timestamp.json written or read per repository is remembered
 *   with its manifest digest (bounded). Reading timestamp.json again asks the
 *   backend for the manifest only if its digest changed (`If-None-Match`);
 *   the digest commits to the layer digest and so to the bytes, so
 *   "unchanged" is as good as reading them, in one request instead of two.
 * - `prune` never deletes a protected file, timestamp.json, or any root.
 * - Writes to one repository are serialised within this process (one mutex
 *   per backend instance and repository). Across processes the coordinator's
 *   lock must be held; the check-then-write of a versioned file is not atomic
 *   on a registry, which has no conditional PUT.
 */
import {
  ANNOTATION_FILENAME,
  buildMetadataArtifact,
  compressMetadata,
  decompressLayer,
  EMPTY_JSON_BYTES,
  isArtifactProblem,
  parseMetadataArtifact,
  type ArtifactProblem,
  type MetadataArtifact,
  type ParsedMetadataArtifact,
} from './artifact.ts';
import { sha256Digest } from './digest.ts';
import { KeyedMutex } from './keyed-mutex.ts';
import { assertMaxBytes } from './limits.ts';
import { assertMetadataFileName, TIMESTAMP_FILE_NAME, type MetadataFileName } from './metadata-name.ts';
import { assertRepositoryName, clip } from './names.ts';
import { isStorageError, StorageError, type StorageErrorCode } from './storage-error.ts';
import { OCI_MANIFEST_MEDIA_TYPE, type Manifest, type Store } from './store.ts';

export { ANNOTATION_ROOT_VERSION } from './artifact.ts';

/** What a read found (readMetadataIfChanged). */
export interface MetadataRead {
  /** The file's exact bytes. */
  readonly bytes: Uint8Array;
  /** The artifact manifest's annotations (docs/FORMAT.md: the file name; on timestamp.json, the writer's root version). */
  readonly annotations: Readonly<Record<string, string>>;
  /** The stored file is the caller's `known` bytes (returned as they are): nothing but the manifest was read. */
  readonly unchanged: boolean;
}

/** Artifact manifests are a few hundred bytes; this bounds what a hostile registry can make us read. */
export const MAX_ARTIFACT_MANIFEST_BYTES = 64 * 1024;
/** Repositories whose last timestamp.json is remembered (each entry holds one timestamp file). */
const MAX_REMEMBERED_TIMESTAMPS = 4096;

export interface MetadataStoreOptions {
  store: Store;
  /** Where the metadata of image repository R lives (default `R/tuf`). */
  metadataRepository?: (repository: string) => string;
  /** The inverse: the image repository whose metadata a store repository holds, if any (default: strip `/tuf`). */
  imageRepository?: (metadataRepository: string) => string | undefined;
  /** Write files of at least COMPRESS_MIN_BYTES as gzip layers (default true). Reading handles both. */
  compress?: boolean;
}

export interface WriteResult {
  fileName: string;
  /** false when an identical versioned file was already there. */
  written: boolean;
  manifestDigest: string;
  layerDigest: string;
}

export interface PruneOptions {
  /** Newest versions of each role to keep (at least 1). */
  keep: number;
  /** File names never deleted, whatever their age (what the current snapshot and timestamp reference). */
  protect?: ReadonlySet<string>;
}

export interface MetadataFile {
  fileName: string;
  bytes: Uint8Array;
}

const mutexes = new WeakMap<Store, KeyedMutex>();

function mutexFor(store: Store): KeyedMutex {
  let mutex = mutexes.get(store);
  if (!mutex) {
    mutex = new KeyedMutex();
    mutexes.set(store, mutex);
  }
  return mutex;
}

/** A file about to be written: its name, bytes and artifact. */
interface PendingWrite {
  name: MetadataFileName;
  bytes: Uint8Array;
  artifact: MetadataArtifact;
}

/** Order for publishing: everything else in the given order, then snapshots, then timestamp. */
function publishRank(name: MetadataFileName): number {
  if (name.role === 'timestamp') return 2;
  if (name.role === 'snapshot') return 1;
  return 0;
}

export class MetadataStore {
  readonly store: Store;
  readonly #metadataRepository: (repository: string) => string;
  readonly #imageRepository: (metadataRepository: string) => string | undefined;
  readonly #mutex: KeyedMutex;
  readonly #compress: boolean;
  /** Per metadata repository, the timestamp.json last written or read here, oldest first. */
  readonly #timestamps = new Map<string, { manifestDigest: string; bytes: Uint8Array; annotations: Readonly<Record<string, string>> }>();
  /** Manifest reads started ahead of a file's read (prefetch), by repository and file name. */
  readonly #prefetched = new Map<string, Promise<Manifest>>();

  constructor(options: MetadataStoreOptions) {
    this.store = options.store;
    this.#metadataRepository = options.metadataRepository ?? ((repository) => `${repository}/tuf`);
    this.#imageRepository = options.imageRepository ?? ((m) => (m.endsWith('/tuf') ? m.slice(0, -'/tuf'.length) : undefined));
    this.#mutex = mutexFor(options.store);
    this.#compress = options.compress ?? true;
  }

  /** The repository holding R's metadata, validated. */
  metadataRepository(repository: string): string {
    assertRepositoryName(this.store.backend, repository);
    const target = this.#metadataRepository(repository);
    assertRepositoryName(this.store.backend, target);
    return target;
  }

  #fail(code: StorageErrorCode, message: string, repository: string, reference: string, extra: Record<string, unknown> = {}): StorageError {
    return new StorageError(code, message, { backend: this.store.backend, repository, reference, ...extra });
  }

  #problem(problem: ArtifactProblem, repository: string, fileName: string): StorageError {
    const code = problem.kind === 'bad-media-type' ? 'BAD_MEDIA_TYPE' : 'PROTOCOL';
    return this.#fail(code, `${fileName} in ${repository} is not a tufoci metadata artifact: ${problem.reason}`, repository, fileName);
  }

  async #readArtifact(metaRepo: string, fileName: string): Promise<ParsedMetadataArtifact & { manifestDigest: string }> {
    return this.#parseArtifact(metaRepo, fileName, await this.store.getManifest(metaRepo, fileName, MAX_ARTIFACT_MANIFEST_BYTES));
  }

  #parseArtifact(metaRepo: string, fileName: string, manifest: Manifest): ParsedMetadataArtifact & { manifestDigest: string } {
    if (manifest.mediaType !== OCI_MANIFEST_MEDIA_TYPE) {
      throw this.#fail('BAD_MEDIA_TYPE', `${fileName} in ${metaRepo} is a ${clip(manifest.mediaType, 80)}, not an OCI image manifest`, metaRepo, fileName);
    }
    const parsed = parseMetadataArtifact(manifest.bytes, fileName);
    if (isArtifactProblem(parsed)) throw this.#problem(parsed, metaRepo, fileName);
    return { ...parsed, manifestDigest: manifest.digest };
  }

  /** Write one file; `rootVersion` (timestamp.json only) is the root version current now, a hint for readers (artifact.ts). */
  async writeMetadata(repository: string, fileName: string, bytes: Uint8Array, options: { rootVersion?: number } = {}): Promise<WriteResult> {
    const metaRepo = this.metadataRepository(repository);
    const name = assertMetadataFileName(this.store.backend, metaRepo, fileName);
    return this.#mutex.run(metaRepo, async () => {
      const prepared = await this.#prepare(metaRepo, name, bytes, false, options.rootVersion);
      return 'written' in prepared ? prepared : ((await this.#store(metaRepo, [prepared]))[0] as WriteResult);
    });
  }

  /**
   * The artifact to write for a file, or the result of not writing it: a
   * versioned file (unless `replaceable`) that already holds the same bytes is
   * left alone; one holding other bytes is a CONFLICT.
   */
  async #prepare(metaRepo: string, name: MetadataFileName, bytes: Uint8Array, replaceable: boolean, rootVersion?: number): Promise<PendingWrite | WriteResult> {
    const compressed = this.#compress ? await compressMetadata(bytes) : undefined;
    const artifact = buildMetadataArtifact(name, bytes, { ...(rootVersion !== undefined ? { rootVersion } : {}), ...(compressed ? { compressed } : {}) });
    if (name.version !== undefined && !replaceable) {
      let existing: (ParsedMetadataArtifact & { manifestDigest: string }) | undefined;
      try {
        existing = await this.#readArtifact(metaRepo, name.fileName);
      } catch (error) {
        if (isStorageError(error, 'NOT_FOUND')) existing = undefined;
        else if (isStorageError(error, 'BAD_MEDIA_TYPE') || isStorageError(error, 'PROTOCOL')) {
          throw this.#fail('CONFLICT', `${name.fileName} in ${metaRepo} already exists and is not a tufoci artifact; versioned files are never overwritten`, metaRepo, name.fileName, { existing: error.message });
        } else throw error;
      }
      if (existing) {
        // The file's identity is its own digest, however each copy is stored (plain or compressed).
        if (existing.contentDigest === artifact.contentDigest) {
          return { fileName: name.fileName, written: false, manifestDigest: existing.manifestDigest, layerDigest: existing.layerDigest };
        }
        throw this.#fail('CONFLICT', `${name.fileName} in ${metaRepo} already holds other bytes (${existing.contentDigest}); versioned metadata is immutable`, metaRepo, name.fileName, {
          existingDigest: existing.contentDigest,
          newDigest: artifact.contentDigest,
        });
      }
    }
    return { name, bytes, artifact };
  }

  /** Write files (blobs first, then the tagged manifests in order, stopping at the first failure): one batch where the backend has one. */
  async #store(metaRepo: string, writes: readonly PendingWrite[]): Promise<WriteResult[]> {
    for (const w of writes) {
      if (w.name.fileName === TIMESTAMP_FILE_NAME) this.#timestamps.delete(metaRepo);
      this.#prefetched.delete(`${metaRepo}\n${w.name.fileName}`); // read before this write: no longer the file
    }
    const digests: string[] = [];
    if (this.store.putManifests && writes.length > 0) {
      const stored = await this.store.putManifests(
        metaRepo,
        writes.map((w) => ({ reference: w.name.fileName, bytes: w.artifact.manifest, mediaType: OCI_MANIFEST_MEDIA_TYPE, blobs: [w.artifact.layer ?? w.bytes, EMPTY_JSON_BYTES] })),
      );
      for (const s of stored) digests.push(s.digest);
    } else {
      for (const w of writes) {
        await this.store.putBlob(metaRepo, w.artifact.layer ?? w.bytes);
        await this.store.putBlob(metaRepo, EMPTY_JSON_BYTES);
        digests.push((await this.store.putManifest(metaRepo, w.name.fileName, w.artifact.manifest, OCI_MANIFEST_MEDIA_TYPE)).digest);
      }
    }
    return writes.map((w, i) => {
      const manifestDigest = digests[i] as string;
      if (w.name.fileName === TIMESTAMP_FILE_NAME) {
        const parsed = parseMetadataArtifact(w.artifact.manifest, w.name.fileName); // the manifest built here: its annotations
        this.#rememberTimestamp(metaRepo, manifestDigest, w.bytes, isArtifactProblem(parsed) ? {} : parsed.annotations);
      }
      return { fileName: w.name.fileName, written: true, manifestDigest, layerDigest: w.artifact.layerDigest };
    });
  }

  #rememberTimestamp(metaRepo: string, manifestDigest: string, bytes: Uint8Array, annotations: Readonly<Record<string, string>>): void {
    this.#timestamps.delete(metaRepo);
    this.#timestamps.set(metaRepo, { manifestDigest, bytes: Uint8Array.from(bytes), annotations });
    if (this.#timestamps.size > MAX_REMEMBERED_TIMESTAMPS) this.#timestamps.delete(this.#timestamps.keys().next().value as string);
  }

  /**
   * Write several files so that readers never see a timestamp ahead of its
   * files: all others first (in the given order, snapshots after the rest),
   * timestamp.json last, stopping at the first failure.
   *
   * `replaceable` names versioned files that may overwrite an existing file of
   * the same name. Only for orphans: a writer that holds the repository lock
   * and knows the file's version is above everything the current timestamp
   * chain references (a crashed commit left it; no client was ever directed to
   * it). Everything else stays immutable.
   */
  async publish(repository: string, files: readonly MetadataFile[], options: { replaceable?: ReadonlySet<string>; rootVersion?: number } = {}): Promise<WriteResult[]> {
    const metaRepo = this.metadataRepository(repository);
    const named = files.map((file) => ({ file, name: assertMetadataFileName(this.store.backend, metaRepo, file.fileName) }));
    const seen = new Set<string>();
    for (const { name } of named) {
      if (seen.has(name.fileName)) {
        throw this.#fail('CONFLICT', `publish to ${metaRepo} names ${name.fileName} twice`, metaRepo, name.fileName);
      }
      seen.add(name.fileName);
    }
    const ordered = named
      .map((entry, position) => ({ ...entry, position }))
      .sort((a, b) => publishRank(a.name) - publishRank(b.name) || a.position - b.position);
    return this.#mutex.run(metaRepo, async () => {
      const results: WriteResult[] = [];
      // Two batches: everything but the timestamp, then (only once that is stored) the timestamp.
      for (const stage of [ordered.filter((e) => publishRank(e.name) < 2), ordered.filter((e) => publishRank(e.name) === 2)]) {
        const prepared: Array<PendingWrite | WriteResult> = [];
        for (const { file, name } of stage) prepared.push(await this.#prepare(metaRepo, name, file.bytes, options.replaceable?.has(name.fileName) ?? false, options.rootVersion));
        const written = await this.#store(metaRepo, prepared.filter((p): p is PendingWrite => !('written' in p)));
        for (const p of prepared) results.push('written' in p ? p : (written.shift() as WriteResult));
      }
      return results;
    });
  }

  /** The exact bytes of a metadata file; `TOO_LARGE` (before download) above `maxBytes`. */
  async readMetadata(repository: string, fileName: string, maxBytes: number): Promise<Uint8Array> {
    return (await this.readMetadataIfChanged(repository, fileName, maxBytes)).bytes;
  }

  /**
   * readMetadata, conditional on bytes the caller holds, with what the artifact says about the
   * file: when the stored layer is exactly `known` (its size and digest), `known` is returned and
   * nothing but the manifest is read (`unchanged`). A client holding a timestamp reads the current
   * one so: one request, and no download when it did not change.
   */
  async readMetadataIfChanged(repository: string, fileName: string, maxBytes: number, known?: Uint8Array): Promise<MetadataRead> {
    const metaRepo = this.metadataRepository(repository);
    assertMetadataFileName(this.store.backend, metaRepo, fileName);
    assertMaxBytes(maxBytes);
    const prefetched = this.#takePrefetched(metaRepo, fileName);
    if (prefetched) return this.#readFrom(metaRepo, fileName, maxBytes, known, await prefetched);
    const tooLarge = (size: number): StorageError =>
      this.#fail('TOO_LARGE', `${fileName} in ${metaRepo} is ${size} bytes, above the bound of ${maxBytes}`, metaRepo, fileName, { size, maxBytes });
    const isKnown = (bytes: Uint8Array): boolean => known !== undefined && known.byteLength === bytes.byteLength && Buffer.from(known.buffer, known.byteOffset, known.byteLength).equals(bytes);
    const remembered = fileName === TIMESTAMP_FILE_NAME ? this.#timestamps.get(metaRepo) : undefined;
    let manifest: Manifest | undefined;
    if (remembered && this.store.getManifestIfNoneMatch) {
      try {
        manifest = await this.store.getManifestIfNoneMatch(metaRepo, fileName, remembered.manifestDigest, MAX_ARTIFACT_MANIFEST_BYTES);
      } catch (error) {
        this.#timestamps.delete(metaRepo);
        throw error;
      }
      if (manifest === undefined) {
        if (remembered.bytes.byteLength > maxBytes) throw tooLarge(remembered.bytes.byteLength);
        this.#timestamps.delete(metaRepo); // most recently used last
        this.#timestamps.set(metaRepo, remembered);
        const unchanged = isKnown(remembered.bytes);
        return { bytes: unchanged ? (known as Uint8Array) : Uint8Array.from(remembered.bytes), annotations: remembered.annotations, unchanged };
      }
    }
    return this.#readFrom(metaRepo, fileName, maxBytes, known, manifest ?? (await this.store.getManifest(metaRepo, fileName, MAX_ARTIFACT_MANIFEST_BYTES)));
  }

  /**
   * Start reading a file's artifact manifest now, for this store's next read of that file (one
   * use): a caller that will read timestamp.json shortly sends the request at once and does its
   * local work while it is in flight. The read then checks what arrived as it checks any manifest.
   */
  prefetch(repository: string, fileName: string): void {
    const metaRepo = this.metadataRepository(repository);
    assertMetadataFileName(this.store.backend, metaRepo, fileName);
    const key = `${metaRepo}\n${fileName}`;
    if (this.#prefetched.has(key)) return;
    const manifest = this.store.getManifest(metaRepo, fileName, MAX_ARTIFACT_MANIFEST_BYTES);
    manifest.catch(() => undefined); // the read that takes it sees the error
    this.#prefetched.set(key, manifest);
  }

  #takePrefetched(metaRepo: string, fileName: string): Promise<Manifest> | undefined {
    const key = `${metaRepo}\n${fileName}`;
    const manifest = this.#prefetched.get(key);
    this.#prefetched.delete(key);
    return manifest;
  }

  /** The rest of readMetadataIfChanged, from the file's artifact manifest. */
  async #readFrom(metaRepo: string, fileName: string, maxBytes: number, known: Uint8Array | undefined, manifest: Manifest): Promise<MetadataRead> {
    const tooLarge = (size: number): StorageError =>
      this.#fail('TOO_LARGE', `${fileName} in ${metaRepo} is ${size} bytes, above the bound of ${maxBytes}`, metaRepo, fileName, { size, maxBytes });
    const artifact = this.#parseArtifact(metaRepo, fileName, manifest);
    if (artifact.contentSize > maxBytes) throw tooLarge(artifact.contentSize);
    if (artifact.layerSize > maxBytes) throw tooLarge(artifact.layerSize);
    const found = (bytes: Uint8Array, unchanged: boolean): MetadataRead => {
      if (fileName === TIMESTAMP_FILE_NAME) this.#rememberTimestamp(metaRepo, artifact.manifestDigest, bytes, artifact.annotations);
      return { bytes, annotations: artifact.annotations, unchanged };
    };
    /** The file a checked layer holds: itself, or what it decompresses to (strictly). */
    const content = (layer: Uint8Array): Uint8Array => {
      if (!artifact.compressed) return layer;
      const out = decompressLayer(layer, artifact.contentDigest, artifact.contentSize);
      if (typeof out === 'string') throw this.#fail('PROTOCOL', `${fileName} in ${metaRepo} is not a tufoci metadata artifact: ${out}`, metaRepo, fileName, { layerDigest: artifact.layerDigest });
      return out;
    };
    // The content digest commits to the bytes: a caller's copy with that digest is the file.
    if (known && known.byteLength === artifact.contentSize && sha256Digest(known) === artifact.contentDigest) return found(known, true);
    // Carried in the manifest, already checked against the layer's digest and size.
    if (artifact.data) return found(content(artifact.data), false);
    let bytes: Uint8Array;
    try {
      bytes = await this.store.getBlob(metaRepo, artifact.layerDigest, maxBytes);
    } catch (error) {
      if (error instanceof StorageError) {
        // Name the file, not only the blob digest.
        throw new StorageError(error.code, `${fileName} in ${metaRepo}: ${error.message}`, { ...error.detail, reference: fileName, layerDigest: artifact.layerDigest }, { cause: error });
      }
      throw error;
    }
    if (bytes.byteLength !== artifact.layerSize || sha256Digest(bytes) !== artifact.layerDigest) {
      throw this.#fail('DIGEST_MISMATCH', `${fileName} in ${metaRepo}: layer is ${bytes.byteLength} bytes, its descriptor says ${artifact.layerSize}`, metaRepo, fileName);
    }
    return found(content(bytes), false);
  }

  /** Image repositories that have TUF metadata in this store. */
  async listRepositories(): Promise<string[]> {
    const out: string[] = [];
    for (const r of await this.store.listRepositories()) {
      const image = this.#imageRepository(r);
      if (image !== undefined && (await this.store.listTags(r)).includes(TIMESTAMP_FILE_NAME)) out.push(image);
    }
    return out;
  }

  async listMetadata(repository: string): Promise<MetadataFileName[]> {
    const metaRepo = this.metadataRepository(repository);
    const tags = await this.store.listTags(metaRepo);
    const files: MetadataFileName[] = [];
    for (const tag of tags) {
      try {
        files.push(assertMetadataFileName(this.store.backend, metaRepo, tag));
      } catch {
        // a foreign tag in the repository: not ours to list
      }
    }
    return files.sort((a, b) => (a.role < b.role ? -1 : a.role > b.role ? 1 : (a.version ?? 0) - (b.version ?? 0)));
  }

  /**
   * Delete old versions: for each role, all but the newest `keep`, never a
   * protected file, never a root (clients walk every root version), never
   * timestamp.json. Returns the deleted file names.
   */
  async prune(repository: string, options: PruneOptions): Promise<string[]> {
    if (!Number.isSafeInteger(options.keep) || options.keep < 1) {
      throw new RangeError(`prune keep must be an integer of at least 1, got ${String(options.keep)}`);
    }
    const metaRepo = this.metadataRepository(repository);
    const protect = options.protect ?? new Set<string>();
    return this.#mutex.run(metaRepo, async () => {
      const byRole = new Map<string, MetadataFileName[]>();
      for (const file of await this.listMetadata(repository)) {
        if (file.version === undefined || file.role === 'root' || file.fileName === TIMESTAMP_FILE_NAME) continue;
        const list = byRole.get(file.role) ?? [];
        list.push(file);
        byRole.set(file.role, list);
      }
      const deleted: string[] = [];
      for (const files of byRole.values()) {
        files.sort((a, b) => (b.version ?? 0) - (a.version ?? 0));
        for (const file of files.slice(options.keep)) {
          if (protect.has(file.fileName)) continue;
          const artifact = await this.#readArtifact(metaRepo, file.fileName);
          // The file name annotation makes the manifest unique to this tag, so
          // deleting by digest removes this file and nothing else.
          if (artifact.annotations[ANNOTATION_FILENAME] !== file.fileName) continue;
          await this.store.deleteManifest(metaRepo, artifact.manifestDigest);
          deleted.push(file.fileName);
        }
      }
      return deleted.sort();
    });
  }
}
