/**
 * In-memory backend, for unit tests of logic only: nothing survives the
 * process. It keeps the same contract as the real backends (names, bounds,
 * digest checks, referenced blobs must exist), so logic tested against it
 * behaves the same on disk and over HTTP.
 */
import { sha256Digest } from './digest.ts';
import { CheckedStore, type CheckedStoreOptions } from './checked-store.ts';
import { MAX_MANIFEST_BYTES } from './limits.ts';
import { checkManifest, type ManifestRefs } from './manifest-refs.ts';
import { isDigest } from './names.ts';
import { StorageError } from './storage-error.ts';
import type { BlobRef, Manifest, ManifestPut, Store } from './store.ts';

interface StoredManifest {
  bytes: Uint8Array;
  mediaType: string;
}

interface Repository {
  blobs: Map<string, Uint8Array>;
  manifests: Map<string, StoredManifest>;
  tags: Map<string, string>;
}

const BACKEND = 'memory';

/** The backend behind `MemoryStore`'s checks: arguments are well-formed here. */
class MemoryBackend implements Store {
  readonly backend = BACKEND;
  readonly #repositories = new Map<string, Repository>();

  async ping(): Promise<void> {}

  #repo(repository: string, create: boolean): Repository | undefined {
    let repo = this.#repositories.get(repository);
    if (!repo && create) {
      repo = { blobs: new Map(), manifests: new Map(), tags: new Map() };
      this.#repositories.set(repository, repo);
    }
    return repo;
  }

  #error(code: 'NOT_FOUND' | 'TOO_LARGE' | 'DIGEST_MISMATCH', message: string, repository: string, reference: string): StorageError {
    return new StorageError(code, message, { backend: BACKEND, repository, reference });
  }

  async putBlob(repository: string, bytes: Uint8Array): Promise<BlobRef> {
    const digest = sha256Digest(bytes);
    const repo = this.#repo(repository, true)!;
    if (!repo.blobs.has(digest)) repo.blobs.set(digest, Uint8Array.from(bytes));
    return { digest, size: bytes.byteLength };
  }

  async hasBlob(repository: string, digest: string): Promise<boolean> {
    return this.#repo(repository, false)?.blobs.has(digest) ?? false;
  }

  async getBlob(repository: string, digest: string, maxBytes: number): Promise<Uint8Array> {
    const bytes = this.#repo(repository, false)?.blobs.get(digest);
    if (!bytes) throw this.#error('NOT_FOUND', `blob ${digest} not found in ${repository}`, repository, digest);
    if (bytes.byteLength > maxBytes) {
      throw this.#error('TOO_LARGE', `blob ${digest} in ${repository} is ${bytes.byteLength} bytes, above the bound of ${maxBytes}`, repository, digest);
    }
    if (sha256Digest(bytes) !== digest) {
      throw this.#error('DIGEST_MISMATCH', `blob ${digest} in ${repository} does not hash to its digest`, repository, digest);
    }
    return Uint8Array.from(bytes);
  }

  async putManifest(repository: string, reference: string, bytes: Uint8Array, mediaType: string): Promise<{ digest: string }> {
    return this.#storeManifest(repository, reference, bytes, mediaType, this.#checkManifestPut(repository, reference, bytes, mediaType));
  }

  /** Every check first, then the blobs, then the manifests in order (see `Store.putManifests`). */
  async putManifests(repository: string, puts: readonly ManifestPut[]): Promise<Array<{ digest: string }>> {
    const refs = puts.map((p) => this.#checkManifestPut(repository, p.reference, p.bytes, p.mediaType));
    for (const p of puts) for (const b of p.blobs) await this.putBlob(repository, b);
    return puts.map((p, i) => this.#storeManifest(repository, p.reference, p.bytes, p.mediaType, refs[i] as ManifestRefs));
  }

  #checkManifestPut(repository: string, reference: string, bytes: Uint8Array, mediaType: string): ManifestRefs {
    const digest = sha256Digest(bytes);
    const detail = { backend: BACKEND, repository, reference };
    if (isDigest(reference) && reference !== digest) {
      throw new StorageError('DIGEST_MISMATCH', `manifest put as ${reference} in ${repository} hashes to ${digest}`, detail);
    }
    if (bytes.byteLength > MAX_MANIFEST_BYTES) {
      throw new StorageError('TOO_LARGE', `manifest ${reference} for ${repository} is ${bytes.byteLength} bytes, above ${MAX_MANIFEST_BYTES}`, detail);
    }
    const check = checkManifest(bytes, mediaType);
    if (!check.ok) {
      throw new StorageError(check.badMediaType ? 'BAD_MEDIA_TYPE' : 'INVALID_MANIFEST', `manifest ${reference} for ${repository}: ${check.reason}`, detail);
    }
    return check.refs;
  }

  #storeManifest(repository: string, reference: string, bytes: Uint8Array, mediaType: string, refs: ManifestRefs): { digest: string } {
    const digest = sha256Digest(bytes);
    const detail = { backend: BACKEND, repository, reference };
    const repo = this.#repo(repository, true)!;
    for (const blob of refs.blobs) {
      if (!repo.blobs.has(blob)) {
        throw new StorageError('INVALID_MANIFEST', `manifest ${reference} for ${repository} references blob ${blob} that is not in the repository`, detail);
      }
    }
    for (const child of refs.manifests) {
      if (!repo.manifests.has(child)) {
        throw new StorageError('INVALID_MANIFEST', `index ${reference} for ${repository} references manifest ${child} that is not in the repository`, detail);
      }
    }
    repo.manifests.set(digest, { bytes: Uint8Array.from(bytes), mediaType });
    if (!isDigest(reference)) repo.tags.set(reference, digest);
    return { digest };
  }

  /** Undefined when `reference` names the manifest `digest`; the manifest otherwise. */
  async getManifestIfNoneMatch(repository: string, reference: string, digest: string, maxBytes: number): Promise<Manifest | undefined> {
    const repo = this.#repo(repository, false);
    const current = isDigest(reference) ? reference : repo?.tags.get(reference);
    if (current === digest && repo?.manifests.has(digest)) return undefined;
    return this.getManifest(repository, reference, maxBytes);
  }

  async getManifest(repository: string, reference: string, maxBytes: number): Promise<Manifest> {
    const repo = this.#repo(repository, false);
    const digest = isDigest(reference) ? reference : repo?.tags.get(reference);
    const stored = digest === undefined ? undefined : repo?.manifests.get(digest);
    if (!stored || digest === undefined) {
      throw this.#error('NOT_FOUND', `manifest ${reference} not found in ${repository}`, repository, reference);
    }
    if (stored.bytes.byteLength > maxBytes) {
      throw this.#error('TOO_LARGE', `manifest ${reference} in ${repository} is ${stored.bytes.byteLength} bytes, above the bound of ${maxBytes}`, repository, reference);
    }
    if (sha256Digest(stored.bytes) !== digest) {
      throw this.#error('DIGEST_MISMATCH', `manifest ${reference} in ${repository} does not hash to ${digest}`, repository, reference);
    }
    return { bytes: Uint8Array.from(stored.bytes), mediaType: stored.mediaType, digest };
  }

  async listRepositories(): Promise<string[]> {
    return [...this.#repositories.entries()].filter(([, r]) => r.tags.size > 0 || r.manifests.size > 0).map(([name]) => name).sort();
  }

  async listTags(repository: string): Promise<string[]> {
    return [...(this.#repo(repository, false)?.tags.keys() ?? [])].sort();
  }

  async deleteManifest(repository: string, digest: string): Promise<void> {
    const repo = this.#repo(repository, false);
    if (!repo?.manifests.delete(digest)) {
      throw this.#error('NOT_FOUND', `manifest ${digest} not found in ${repository}`, repository, digest);
    }
    for (const [tag, target] of repo.tags) if (target === digest) repo.tags.delete(tag);
  }

  async deleteTag(repository: string, tag: string): Promise<void> {
    if (!this.#repo(repository, false)?.tags.delete(tag)) {
      throw this.#error('NOT_FOUND', `tag ${tag} not found in ${repository}`, repository, tag);
    }
  }

  corruptBlobForTesting(repository: string, digest: string, bytes: Uint8Array): void {
    const repo = this.#repo(repository, false);
    if (repo?.blobs.has(digest)) repo.blobs.set(digest, Uint8Array.from(bytes));
    else if (repo?.manifests.has(digest)) repo.manifests.get(digest)!.bytes = Uint8Array.from(bytes);
    else throw new Error(`no blob ${digest} in ${repository}`);
  }
}

export class MemoryStore extends CheckedStore {
  declare readonly putManifests: NonNullable<CheckedStore['putManifests']>;
  declare readonly getManifestIfNoneMatch: NonNullable<CheckedStore['getManifestIfNoneMatch']>;
  readonly #backend: MemoryBackend;

  constructor(options: CheckedStoreOptions = {}) {
    const backend = new MemoryBackend();
    super(backend, options);
    this.#backend = backend;
  }

  /** Test hook: overwrite a stored blob with other bytes, as a failing disk would. */
  corruptBlobForTesting(repository: string, digest: string, bytes: Uint8Array): void {
    this.#backend.corruptBlobForTesting(repository, digest, bytes);
  }
}
