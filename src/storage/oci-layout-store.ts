/**
 * The embedded default backend: one OCI image layout directory per repository
 * under a root directory (`<root>/<repository>/{oci-layout,index.json,blobs/sha256/<hex>}`),
 * readable and writable by skopeo and oras (`skopeo copy oci:<root>/<repository>:<tag> ...`).
 *
 * Invariants:
 * - Every file is replaced atomically (temporary file, fsync, rename, fsync of
 *   the directory), so a crash leaves either the old or the new state.
 * - A tag appears in index.json (descriptor annotated
 *   `org.opencontainers.image.ref.name`) only after the manifest blob and every
 *   blob it references are on disk.
 * - index.json is rewritten by one drainer per layout directory (the keyed
 *   batch queue of src/util, the one the service's writes use too; an async
 *   critical section per repository): updates queued while it writes are
 *   applied together in its next rewrite (group commit), so N concurrent tag
 *   writes cost far fewer than N rewrites. Exclusion covers one process;
 *   several processes writing one layout directory need the coordinator's lock.
 * - Blobs are content addressed and verified on every read.
 * - `putManifests` writes every blob of a batch (in parallel), syncs the blob
 *   directory once, then applies all its tags in one index.json rewrite: the
 *   tags appear together, atomically, never before their blobs are durable.
 * - A repository component may not be `blobs`, `index.json` or `oci-layout`:
 *   those names belong to the layout of the parent repository.
 */
import { access, constants, mkdir, readdir, stat, unlink } from 'node:fs/promises';
import type { Dirent } from 'node:fs';
import { join, resolve } from 'node:path';
import { isErrno, readFileBounded, syncDirectory, writeFileAtomic } from './atomic-file.ts';
import { KeyedBatchQueue, type BatchEntry } from '../util/keyed-batch-queue.ts';
import { sha256Digest } from './digest.ts';
import { CheckedStore, type CheckedStoreOptions } from './checked-store.ts';
import { checkManifestPut } from './manifest-refs.ts';
import { assertRepositoryName, clip, isDigest, isRepositoryName } from './names.ts';
import { StorageError, type StorageErrorCode } from './storage-error.ts';
import { MANIFEST_MEDIA_TYPES, OCI_INDEX_MEDIA_TYPE, type BlobRef, type Manifest, type ManifestPut, type Store } from './store.ts';

const BACKEND = 'oci-layout';
const REF_NAME = 'org.opencontainers.image.ref.name';
const LAYOUT_FILE_BYTES = new TextEncoder().encode('{"imageLayoutVersion":"1.0.0"}');
const RESERVED_COMPONENTS = new Set(['blobs', 'index.json', 'oci-layout']);

export interface OciLayoutStoreOptions extends CheckedStoreOptions {
  /** Directory holding one layout directory per repository; created on demand. */
  root: string;
  /** Bound on index.json (default 64 MiB, about 200,000 tags). */
  maxIndexBytes?: number;
  /** fsync files and directories (default true). */
  fsync?: boolean;
}

interface IndexDescriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
  [field: string]: unknown;
}

interface ImageIndex {
  schemaVersion: 2;
  mediaType?: string;
  manifests: IndexDescriptor[];
  [field: string]: unknown;
}

/**
 * The manifests of index.json being changed by one batch: copied once per
 * batch, with a tag → position map built on first use, so each update is
 * O(1) for tags instead of a copy of the whole list. An update that throws
 * must not have changed anything.
 */
class IndexDraft {
  readonly #entries: (IndexDescriptor | undefined)[];
  #byTag: Map<string, number> | undefined;

  constructor(manifests: readonly IndexDescriptor[]) {
    this.#entries = [...manifests];
  }

  #tags(): Map<string, number> {
    if (this.#byTag === undefined) {
      this.#byTag = new Map();
      this.#entries.forEach((d, i) => {
        const tag = d === undefined ? undefined : refName(d);
        if (tag === undefined) return;
        const earlier = this.#byTag!.get(tag);
        if (earlier !== undefined) this.#entries[earlier] = undefined; // a duplicate tag: the last one wins
        this.#byTag!.set(tag, i);
      });
    }
    return this.#byTag;
  }

  hasTag(tag: string): boolean {
    return this.#tags().has(tag);
  }

  hasDigest(digest: string): boolean {
    return this.#entries.some((d) => d?.digest === digest);
  }

  setTag(tag: string, descriptor: IndexDescriptor): void {
    const at = this.#tags().get(tag);
    const tagged = { ...descriptor, annotations: { [REF_NAME]: tag } };
    if (at !== undefined) this.#entries[at] = tagged;
    else this.#tags().set(tag, this.#entries.push(tagged) - 1);
  }

  add(descriptor: IndexDescriptor): void {
    this.#entries.push(descriptor);
  }

  removeTag(tag: string): void {
    const at = this.#tags().get(tag);
    if (at === undefined) return;
    this.#entries[at] = undefined;
    this.#tags().delete(tag);
  }

  /** Remove every descriptor of a digest; returns how many there were. */
  removeDigest(digest: string): number {
    let removed = 0;
    this.#entries.forEach((d, i) => {
      if (d?.digest !== digest) return;
      const tag = refName(d);
      if (tag !== undefined) this.#tags().delete(tag);
      this.#entries[i] = undefined;
      removed++;
    });
    return removed;
  }

  manifests(): IndexDescriptor[] {
    return this.#entries.filter((d): d is IndexDescriptor => d !== undefined);
  }
}

type IndexUpdate = (draft: IndexDraft) => void;

/** An index update waiting for its directory's next rewrite; `repository` names it in errors. */
interface PendingUpdate {
  apply: IndexUpdate;
  repository: string;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isDescriptor(value: unknown): value is IndexDescriptor {
  if (!isRecord(value)) return false;
  const annotations = value['annotations'];
  return (
    typeof value['mediaType'] === 'string' &&
    typeof value['digest'] === 'string' &&
    Number.isSafeInteger(value['size']) &&
    (annotations === undefined ||
      (isRecord(annotations) && Object.values(annotations).every((v) => typeof v === 'string')))
  );
}

function refName(descriptor: IndexDescriptor): string | undefined {
  return descriptor.annotations?.[REF_NAME];
}

/** The backend behind `OciLayoutStore`'s checks: names, digests and bounds are well-formed here. */
class OciLayoutBackend implements Store {
  readonly backend = BACKEND;
  readonly #root: string;
  readonly #maxIndexBytes: number;
  readonly #fsync: boolean;
  /** index.json rewrites, one drainer per layout directory. */
  readonly #indexWrites = new KeyedBatchQueue<string, PendingUpdate, void>({ commit: (dir, batch) => this.#applyBatch(dir, batch) });
  readonly #initialized = new Set<string>();
  /** Parsed index.json per directory, reused while the file's identity (inode, size, mtime) is unchanged. */
  readonly #indexCache = new Map<string, { identity: string; index: ImageIndex }>();

  constructor(options: OciLayoutStoreOptions) {
    this.#root = resolve(options.root);
    this.#maxIndexBytes = options.maxIndexBytes ?? 64 * 1024 * 1024;
    this.#fsync = options.fsync ?? true;
  }

  /** The layout directory of a (well-formed) repository name; its components may not be the layout's own names. */
  layoutDirectory(repository: string): string {
    const components = repository.split('/');
    const reserved = components.find((c) => RESERVED_COMPONENTS.has(c));
    if (reserved !== undefined) {
      throw new StorageError(
        'INVALID_NAME',
        `repository ${repository} has a component "${reserved}", reserved by the OCI layout of its parent directory`,
        { backend: BACKEND, repository, reference: '' },
      );
    }
    return join(this.#root, ...components);
  }

  #blobPath(dir: string, digest: string): string {
    return join(dir, 'blobs', 'sha256', digest.slice('sha256:'.length));
  }

  #fail(code: StorageErrorCode, message: string, repository: string, reference: string, cause?: unknown): StorageError {
    return new StorageError(code, message, { backend: BACKEND, repository, reference }, cause === undefined ? {} : { cause });
  }

  /** Map an fs failure to UNAVAILABLE (disk full, permissions, I/O) unless it is already typed. */
  #io(error: unknown, what: string, repository: string, reference: string): StorageError {
    if (error instanceof StorageError) return error;
    const code = isErrno(error, 'ENOENT') ? 'NOT_FOUND' : 'UNAVAILABLE';
    return this.#fail(code, `${what} failed for ${repository} (${reference || 'repository'})`, repository, reference, error);
  }

  async ping(): Promise<void> {
    try {
      await mkdir(this.#root, { recursive: true });
      await access(this.#root, constants.R_OK | constants.W_OK);
    } catch (error) {
      throw this.#fail('UNAVAILABLE', `layout root ${this.#root} is not a writable directory`, '', '', error);
    }
  }

  async #ensureLayout(dir: string): Promise<void> {
    if (this.#initialized.has(dir)) return;
    await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true });
    const layout = await readFileBounded(join(dir, 'oci-layout'), 4096);
    if (layout.kind === 'missing') await writeFileAtomic(join(dir, 'oci-layout'), LAYOUT_FILE_BYTES, { fsync: this.#fsync });
    this.#initialized.add(dir);
  }

  /** Write a blob unless a file of its size is there; answers whether it wrote (and, with `syncDirectory: false`, left the directory to sync). */
  async #writeBlob(dir: string, digest: string, bytes: Uint8Array, options: { syncDirectory?: boolean } = {}): Promise<boolean> {
    const path = this.#blobPath(dir, digest);
    try {
      const existing = await stat(path);
      if (existing.size === bytes.byteLength) return false;
    } catch (error) {
      if (!isErrno(error, 'ENOENT')) throw error;
    }
    await writeFileAtomic(path, bytes, { fsync: this.#fsync, syncDirectory: (options.syncDirectory ?? true) && this.#fsync });
    return true;
  }

  /**
   * The parsed index.json. The result is shared with a cache and must be
   * treated as read-only: updates replace `manifests` on a shallow copy.
   * Every rewrite (ours, or another tool's) replaces or changes the file, so
   * a cached parse is reused only while inode, size and mtime are unchanged.
   */
  async #readIndex(dir: string, repository: string): Promise<ImageIndex> {
    const path = join(dir, 'index.json');
    let identity: string;
    try {
      const s = await stat(path, { bigint: true });
      identity = `${s.dev}:${s.ino}:${s.size}:${s.mtimeNs}`;
    } catch (error) {
      if (isErrno(error, 'ENOENT') || isErrno(error, 'ENOTDIR')) {
        this.#indexCache.delete(dir);
        return { schemaVersion: 2, mediaType: OCI_INDEX_MEDIA_TYPE, manifests: [] };
      }
      throw error;
    }
    const cached = this.#indexCache.get(dir);
    if (cached && cached.identity === identity) return cached.index;
    const index = await this.#parseIndex(path, repository);
    this.#indexCache.set(dir, { identity, index });
    return index;
  }

  async #parseIndex(path: string, repository: string): Promise<ImageIndex> {
    const read = await readFileBounded(path, this.#maxIndexBytes);
    if (read.kind === 'missing') return { schemaVersion: 2, mediaType: OCI_INDEX_MEDIA_TYPE, manifests: [] };
    if (read.kind === 'too-large') {
      throw this.#fail('TOO_LARGE', `index.json of ${repository} is ${read.size} bytes, above ${this.#maxIndexBytes}`, repository, 'index.json');
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(read.bytes));
    } catch (error) {
      throw this.#fail('PROTOCOL', `index.json of ${repository} is not UTF-8 JSON`, repository, 'index.json', error);
    }
    if (!isRecord(parsed) || parsed['schemaVersion'] !== 2 || !Array.isArray(parsed['manifests']) || !parsed['manifests'].every(isDescriptor)) {
      throw this.#fail('PROTOCOL', `index.json of ${repository} is not an OCI image index`, repository, 'index.json');
    }
    return parsed as ImageIndex;
  }

  /**
   * Apply an index update. One drainer per layout directory rewrites index.json (the keyed batch
   * queue, src/util/keyed-batch-queue.ts); updates that arrive while it writes are applied
   * together in its next rewrite (group commit). Each caller resolves once the rewrite holding
   * its update is durable, or rejects with its own error.
   */
  async #updateIndex(dir: string, repository: string, apply: IndexUpdate): Promise<void> {
    await this.#indexWrites.enqueue(dir, { apply, repository });
  }

  /** One rewrite of `dir`'s index.json holding every update of the batch that applies. */
  async #applyBatch(dir: string, batch: ReadonlyArray<BatchEntry<PendingUpdate, void>>): Promise<void> {
    const repository = (batch[0] as BatchEntry<PendingUpdate, void>).item.repository; // named in a failure to read the index
    let index: ImageIndex;
    try {
      await this.#ensureLayout(dir);
      index = { ...(await this.#readIndex(dir, repository)) };
    } catch (error) {
      for (const update of batch) update.reject(error);
      return;
    }
    const draft = new IndexDraft(index.manifests);
    const applied: Array<BatchEntry<PendingUpdate, void>> = [];
    for (const update of batch) {
      try {
        update.item.apply(draft);
        applied.push(update);
      } catch (error) {
        update.reject(error);
      }
    }
    if (applied.length === 0) return;
    index.manifests = draft.manifests();
    try {
      const path = join(dir, 'index.json');
      await writeFileAtomic(path, new TextEncoder().encode(JSON.stringify(index)), { fsync: this.#fsync });
      const s = await stat(path, { bigint: true });
      this.#indexCache.set(dir, { identity: `${s.dev}:${s.ino}:${s.size}:${s.mtimeNs}`, index });
      for (const update of applied) update.resolve();
    } catch (error) {
      for (const update of applied) update.reject(error);
    }
  }

  async putBlob(repository: string, bytes: Uint8Array): Promise<BlobRef> {
    const dir = this.layoutDirectory(repository);
    const digest = sha256Digest(bytes);
    try {
      await this.#ensureLayout(dir);
      await this.#writeBlob(dir, digest, bytes);
    } catch (error) {
      throw this.#io(error, 'writing a blob', repository, digest);
    }
    return { digest, size: bytes.byteLength };
  }

  async hasBlob(repository: string, digest: string): Promise<boolean> {
    const dir = this.layoutDirectory(repository);
    try {
      return (await stat(this.#blobPath(dir, digest))).isFile();
    } catch (error) {
      if (isErrno(error, 'ENOENT') || isErrno(error, 'ENOTDIR')) return false;
      throw this.#io(error, 'checking a blob', repository, digest);
    }
  }

  async #readVerified(dir: string, repository: string, reference: string, digest: string, maxBytes: number, what: string): Promise<Uint8Array> {
    let read;
    try {
      read = await readFileBounded(this.#blobPath(dir, digest), maxBytes);
    } catch (error) {
      throw this.#io(error, `reading ${what}`, repository, reference);
    }
    if (read.kind === 'missing') throw this.#fail('NOT_FOUND', `${what} ${reference} not found in ${repository}`, repository, reference);
    if (read.kind === 'too-large') {
      throw this.#fail('TOO_LARGE', `${what} ${reference} in ${repository} is ${read.size} bytes, above the bound of ${maxBytes}`, repository, reference);
    }
    if (sha256Digest(read.bytes) !== digest) {
      throw this.#fail('DIGEST_MISMATCH', `${what} ${reference} in ${repository} does not hash to ${digest}`, repository, reference);
    }
    return read.bytes;
  }

  async getBlob(repository: string, digest: string, maxBytes: number): Promise<Uint8Array> {
    const dir = this.layoutDirectory(repository);
    return this.#readVerified(dir, repository, digest, digest, maxBytes, 'blob');
  }

  async putManifest(repository: string, reference: string, bytes: Uint8Array, mediaType: string): Promise<{ digest: string }> {
    const dir = this.layoutDirectory(repository);
    const { digest, refs } = this.#checkManifestPut(repository, reference, bytes, mediaType);
    for (const ref of refs) {
      if (!(await this.hasBlob(repository, ref))) {
        throw this.#fail('INVALID_MANIFEST', `manifest ${reference} for ${repository} references ${ref}, which is not in the repository`, repository, reference);
      }
    }
    try {
      await this.#ensureLayout(dir);
      await this.#writeBlob(dir, digest, bytes);
      const descriptor: IndexDescriptor = { mediaType, digest, size: bytes.byteLength };
      await this.#updateIndex(dir, repository, (draft) => {
        if (!isDigest(reference)) draft.setTag(reference, descriptor);
        else if (!draft.hasDigest(digest)) draft.add(descriptor);
      });
    } catch (error) {
      throw this.#io(error, 'writing a manifest', repository, reference);
    }
    return { digest };
  }

  /**
   * A batch of manifests (see `Store.putManifests`): every check first, then
   * every blob and manifest blob written in parallel with one sync of the
   * blob directory, then one index.json rewrite holding all the tags.
   */
  async putManifests(repository: string, puts: readonly ManifestPut[]): Promise<Array<{ digest: string }>> {
    const dir = this.layoutDirectory(repository);
    const checked = puts.map((p) => this.#checkManifestPut(repository, p.reference, p.bytes, p.mediaType));
    const files = new Map<string, Uint8Array>();
    for (const p of puts) for (const b of p.blobs) files.set(sha256Digest(b), b);
    for (const [i, p] of puts.entries()) {
      for (const ref of (checked[i] as { refs: string[] }).refs) {
        if (!files.has(ref) && !(await this.hasBlob(repository, ref))) {
          throw this.#fail('INVALID_MANIFEST', `manifest ${p.reference} for ${repository} references ${ref}, which is not in the repository`, repository, p.reference);
        }
      }
    }
    for (const [i, p] of puts.entries()) files.set((checked[i] as { digest: string }).digest, p.bytes);
    const at = puts.length === 0 ? '' : (puts[puts.length - 1] as ManifestPut).reference;
    try {
      await this.#ensureLayout(dir);
      const wrote = await Promise.allSettled([...files].map(([digest, bytes]) => this.#writeBlob(dir, digest, bytes, { syncDirectory: false })));
      const failed = wrote.find((r) => r.status === 'rejected');
      if (failed) throw failed.reason;
      if (this.#fsync && wrote.some((r) => r.status === 'fulfilled' && r.value)) await syncDirectory(join(dir, 'blobs', 'sha256'));
      if (puts.length > 0) {
        await this.#updateIndex(dir, repository, (draft) => {
          for (const [i, p] of puts.entries()) {
            const { digest } = checked[i] as { digest: string };
            const descriptor: IndexDescriptor = { mediaType: p.mediaType, digest, size: p.bytes.byteLength };
            if (!isDigest(p.reference)) draft.setTag(p.reference, descriptor);
            else if (!draft.hasDigest(digest)) draft.add(descriptor);
          }
        });
      }
    } catch (error) {
      throw this.#io(error, 'writing manifests', repository, at);
    }
    return checked.map(({ digest }) => ({ digest }));
  }

  /** Reference, digest, size and media type of a manifest to put; the blobs it references. */
  #checkManifestPut(repository: string, reference: string, bytes: Uint8Array, mediaType: string): { digest: string; refs: string[] } {
    const { digest, refs } = checkManifestPut(reference, bytes, mediaType, (code, message) => this.#fail(code, `${message} (${repository})`, repository, reference));
    return { digest, refs: [...refs.blobs, ...refs.manifests] };
  }

  async getManifest(repository: string, reference: string, maxBytes: number): Promise<Manifest> {
    return (await this.#getManifest(repository, reference, maxBytes, undefined)) as Manifest;
  }

  /** Undefined when index.json maps `reference` to `digest` (no blob is read); the manifest otherwise. */
  async getManifestIfNoneMatch(repository: string, reference: string, digest: string, maxBytes: number): Promise<Manifest | undefined> {
    return this.#getManifest(repository, reference, maxBytes, digest);
  }

  async #getManifest(repository: string, reference: string, maxBytes: number, ifNoneMatch: string | undefined): Promise<Manifest | undefined> {
    const dir = this.layoutDirectory(repository);
    let index: ImageIndex;
    try {
      index = await this.#readIndex(dir, repository);
    } catch (error) {
      throw this.#io(error, 'reading index.json', repository, reference);
    }
    const descriptor = isDigest(reference)
      ? index.manifests.find((d) => d.digest === reference)
      : index.manifests.findLast((d) => refName(d) === reference);
    if (!isDigest(reference) && !descriptor) {
      throw this.#fail('NOT_FOUND', `manifest ${reference} not found in ${repository}`, repository, reference);
    }
    if (ifNoneMatch !== undefined && descriptor?.digest === ifNoneMatch) return undefined;
    const digest = descriptor?.digest ?? reference;
    if (!isDigest(digest)) {
      throw this.#fail('PROTOCOL', `index.json of ${repository} maps ${reference} to "${clip(digest, 80)}", not a sha256 digest`, repository, reference);
    }
    if (descriptor && descriptor.size > maxBytes) {
      throw this.#fail('TOO_LARGE', `manifest ${reference} in ${repository} is ${descriptor.size} bytes, above the bound of ${maxBytes}`, repository, reference);
    }
    const bytes = await this.#readVerified(dir, repository, reference, digest, maxBytes, 'manifest');
    if (descriptor && descriptor.size !== bytes.byteLength) {
      throw this.#fail('DIGEST_MISMATCH', `manifest ${reference} in ${repository} is ${bytes.byteLength} bytes, index.json says ${descriptor.size}`, repository, reference);
    }
    let mediaType = descriptor?.mediaType;
    if (mediaType === undefined) {
      // Untagged manifest not listed in index.json (e.g. the previous target of a moved tag).
      try {
        const parsed: unknown = JSON.parse(new TextDecoder().decode(bytes));
        if (isRecord(parsed) && typeof parsed['mediaType'] === 'string') mediaType = parsed['mediaType'];
      } catch {
        // not JSON: not a manifest
      }
      if (mediaType === undefined || !MANIFEST_MEDIA_TYPES.includes(mediaType)) {
        throw this.#fail('NOT_FOUND', `no manifest ${reference} in ${repository} (the blob is not a manifest)`, repository, reference);
      }
    }
    return { bytes, mediaType, digest };
  }

  /** Every repository under the root: directories holding an `oci-layout` file. */
  async listRepositories(): Promise<string[]> {
    const out: string[] = [];
    const walk = async (dir: string, prefix: string[], depth: number): Promise<void> => {
      let entries: Dirent[];
      try {
        entries = await readdir(dir, { withFileTypes: true });
      } catch (error) {
        if (isErrno(error, 'ENOENT')) return;
        throw this.#io(error, 'listing repositories', prefix.join('/'), '');
      }
      if (prefix.length > 0 && entries.some((e) => e.isFile() && e.name === 'oci-layout')) out.push(prefix.join('/'));
      if (depth >= 32) return;
      for (const e of entries) {
        if (e.isDirectory() && !RESERVED_COMPONENTS.has(e.name)) await walk(join(dir, e.name), [...prefix, e.name], depth + 1);
      }
    };
    await walk(this.#root, [], 0);
    return out.filter((r) => isRepositoryName(r)).sort();
  }

  async listTags(repository: string): Promise<string[]> {
    const dir = this.layoutDirectory(repository);
    let index: ImageIndex;
    try {
      index = await this.#readIndex(dir, repository);
    } catch (error) {
      throw this.#io(error, 'reading index.json', repository, '');
    }
    const tags = new Set<string>();
    for (const d of index.manifests) {
      const tag = refName(d);
      if (tag !== undefined) tags.add(tag);
    }
    return [...tags].sort();
  }

  async deleteManifest(repository: string, digest: string): Promise<void> {
    const dir = this.layoutDirectory(repository);
    try {
      const blobExists = await this.hasBlob(repository, digest);
      await this.#updateIndex(dir, repository, (draft) => {
        if (!draft.hasDigest(digest) && !blobExists) {
          throw this.#fail('NOT_FOUND', `manifest ${digest} not found in ${repository}`, repository, digest);
        }
        draft.removeDigest(digest);
      });
      await unlink(this.#blobPath(dir, digest)).catch((error: unknown) => {
        if (!isErrno(error, 'ENOENT')) throw error;
      });
    } catch (error) {
      throw this.#io(error, 'deleting a manifest', repository, digest);
    }
  }

  async deleteTag(repository: string, tag: string): Promise<void> {
    const dir = this.layoutDirectory(repository);
    try {
      await this.#updateIndex(dir, repository, (draft) => {
        if (!draft.hasTag(tag)) throw this.#fail('NOT_FOUND', `tag ${tag} not found in ${repository}`, repository, tag);
        draft.removeTag(tag);
      });
    } catch (error) {
      throw this.#io(error, 'deleting a tag', repository, tag);
    }
  }
}

export class OciLayoutStore extends CheckedStore {
  declare readonly putManifests: NonNullable<CheckedStore['putManifests']>;
  declare readonly getManifestIfNoneMatch: NonNullable<CheckedStore['getManifestIfNoneMatch']>;
  readonly #backend: OciLayoutBackend;

  constructor(options: OciLayoutStoreOptions) {
    const backend = new OciLayoutBackend(options);
    super(backend, options);
    this.#backend = backend;
  }

  /** The layout directory of a repository: usable as `oci:<dir>:<tag>` with skopeo. */
  layoutDirectory(repository: string): string {
    assertRepositoryName(this.backend, repository);
    return this.#backend.layoutDirectory(repository);
  }
}
