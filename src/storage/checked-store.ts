/**
 * What every backend shares, done once around it (the idea of distribution's
 * `storage/driver/base`): a `CheckedStore` wraps a backend and
 * - refuses bad arguments before the backend is called: repository names,
 *   tags, digests and references by their grammars (`INVALID_NAME`), read
 *   bounds (`RangeError`: a caller bug, not a storage failure);
 * - names every failure: a backend's `StorageError` passes through as it is
 *   (it already names backend, repository and reference), anything else the
 *   backend lets escape becomes `UNAVAILABLE` naming the backend, the
 *   operation, the repository and the reference, with the original as `cause`;
 * - reports each call to an optional observer (operation, outcome, seconds),
 *   which the composition root turns into metrics.
 *
 * Backends therefore assume well-formed arguments and check only what is
 * theirs (a manifest's content, a layout's reserved directory names). The
 * exported backend classes (`MemoryStore`, `OciLayoutStore`, `RegistryStore`)
 * extend `CheckedStore` around their private implementation, so a backend
 * cannot be constructed unchecked.
 */
import { assertMaxBytes } from './limits.ts';
import { assertDigest, assertReference, assertRepositoryName, assertTag, clip } from './names.ts';
import { StorageError, type StorageErrorCode } from './storage-error.ts';
import type { BlobRef, ListReferrersOptions, Manifest, ManifestPut, ReferrerDescriptor, Store } from './store.ts';
import { observedCall, type ObservedCall } from '../util/observed-call.ts';

export type StoreOperation =
  | 'ping'
  | 'putBlob'
  | 'hasBlob'
  | 'getBlob'
  | 'putManifest'
  | 'getManifest'
  | 'getManifestIfNoneMatch'
  | 'putManifests'
  | 'listRepositories'
  | 'listTags'
  | 'deleteManifest'
  | 'deleteTag'
  | 'listReferrers';

/** One finished call to a backend (a refusal by the wrapper's own checks is not a call); `outcome`: `ok`, or the failure's `StorageError` code. */
export type StoreCall = ObservedCall<string, StoreOperation, StorageErrorCode>;

export type StoreObserver = (call: StoreCall) => void;

export interface CheckedStoreOptions {
  /** Told about every call that reached the backend, after it settled. Must not throw. */
  observe?: StoreObserver;
}

export class CheckedStore implements Store {
  readonly backend: string;
  readonly #inner: Store;
  readonly #observe: StoreObserver | undefined;
  readonly listReferrers?: (repository: string, digest: string, options: ListReferrersOptions) => Promise<ReferrerDescriptor[]>;
  readonly putManifests?: (repository: string, puts: readonly ManifestPut[]) => Promise<Array<{ digest: string }>>;
  readonly getManifestIfNoneMatch?: (repository: string, reference: string, digest: string, maxBytes: number) => Promise<Manifest | undefined>;

  constructor(inner: Store, options: CheckedStoreOptions = {}) {
    this.backend = inner.backend;
    this.#inner = inner;
    this.#observe = options.observe;
    // The optional methods exist on the wrapper exactly when the backend has them.
    const { listReferrers, putManifests, getManifestIfNoneMatch } = inner;
    if (listReferrers) {
      this.listReferrers = async (repository, digest, options) => {
        this.#digest(repository, digest);
        assertMaxBytes(options.maxBytes);
        return this.#call('listReferrers', repository, digest, () => listReferrers.call(inner, repository, digest, options));
      };
    }
    if (putManifests) {
      this.putManifests = async (repository, puts) => {
        assertRepositoryName(this.backend, repository);
        for (const put of puts) assertReference(this.backend, repository, put.reference);
        const last = puts.length === 0 ? '' : (puts[puts.length - 1] as ManifestPut).reference;
        return this.#call('putManifests', repository, last, () => putManifests.call(inner, repository, puts));
      };
    }
    if (getManifestIfNoneMatch) {
      this.getManifestIfNoneMatch = async (repository, reference, digest, maxBytes) => {
        this.#reference(repository, reference);
        assertDigest(this.backend, repository, digest);
        assertMaxBytes(maxBytes);
        return this.#call('getManifestIfNoneMatch', repository, reference, () => getManifestIfNoneMatch.call(inner, repository, reference, digest, maxBytes));
      };
    }
  }

  async ping(): Promise<void> {
    return this.#call('ping', '', '', () => this.#inner.ping());
  }

  async putBlob(repository: string, bytes: Uint8Array): Promise<BlobRef> {
    assertRepositoryName(this.backend, repository);
    return this.#call('putBlob', repository, '', () => this.#inner.putBlob(repository, bytes));
  }

  async hasBlob(repository: string, digest: string): Promise<boolean> {
    this.#digest(repository, digest);
    return this.#call('hasBlob', repository, digest, () => this.#inner.hasBlob(repository, digest));
  }

  async getBlob(repository: string, digest: string, maxBytes: number): Promise<Uint8Array> {
    this.#digest(repository, digest);
    assertMaxBytes(maxBytes);
    return this.#call('getBlob', repository, digest, () => this.#inner.getBlob(repository, digest, maxBytes));
  }

  async putManifest(repository: string, reference: string, bytes: Uint8Array, mediaType: string): Promise<{ digest: string }> {
    this.#reference(repository, reference);
    return this.#call('putManifest', repository, reference, () => this.#inner.putManifest(repository, reference, bytes, mediaType));
  }

  async getManifest(repository: string, reference: string, maxBytes: number): Promise<Manifest> {
    this.#reference(repository, reference);
    assertMaxBytes(maxBytes);
    return this.#call('getManifest', repository, reference, () => this.#inner.getManifest(repository, reference, maxBytes));
  }

  async listRepositories(): Promise<string[]> {
    return this.#call('listRepositories', '', '', () => this.#inner.listRepositories());
  }

  async listTags(repository: string): Promise<string[]> {
    assertRepositoryName(this.backend, repository);
    return this.#call('listTags', repository, '', () => this.#inner.listTags(repository));
  }

  async deleteManifest(repository: string, digest: string): Promise<void> {
    this.#digest(repository, digest);
    return this.#call('deleteManifest', repository, digest, () => this.#inner.deleteManifest(repository, digest));
  }

  async deleteTag(repository: string, tag: string): Promise<void> {
    assertRepositoryName(this.backend, repository);
    assertTag(this.backend, repository, tag);
    return this.#call('deleteTag', repository, tag, () => this.#inner.deleteTag(repository, tag));
  }

  #digest(repository: string, digest: string): void {
    assertRepositoryName(this.backend, repository);
    assertDigest(this.backend, repository, digest);
  }

  #reference(repository: string, reference: string): void {
    assertRepositoryName(this.backend, repository);
    assertReference(this.backend, repository, reference);
  }

  #call<T>(operation: StoreOperation, repository: string, reference: string, run: () => Promise<T>): Promise<T> {
    return observedCall(this.#observe, this.backend, operation, run, (error) => this.#named(error, operation, repository, reference), (named) => named.code);
  }

  /** The backend's own `StorageError`, or an `UNAVAILABLE` one naming where an untyped failure happened. */
  #named(error: unknown, operation: StoreOperation, repository: string, reference: string): StorageError {
    if (error instanceof StorageError) return error;
    const where = `${repository || 'the store'}${reference ? ` (${clip(reference, 80)})` : ''}`;
    const reason = error instanceof Error ? error.message : String(error);
    return new StorageError('UNAVAILABLE', `${operation} on the ${this.backend} backend failed for ${where}: ${clip(reason, 300)}`, {
      backend: this.backend,
      repository,
      reference,
      operation,
    }, { cause: error });
  }
}

/** `inner` behind the checks, naming and observer above (a `CheckedStore` is returned as it is). */
export function checkedStore(inner: Store, options: CheckedStoreOptions = {}): Store {
  return inner instanceof CheckedStore ? inner : new CheckedStore(inner, options);
}
