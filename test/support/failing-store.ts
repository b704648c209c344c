/**
 * A Store decorator that fails chosen operations, to test what callers leave
 * behind when a backend fails half way (it forwards everything else).
 */
import { StorageError } from '../../src/storage/storage-error.ts';
import type { BlobRef, Manifest, Store } from '../../src/storage/store.ts';

export class FailingStore implements Store {
  readonly backend: string;
  readonly inner: Store;
  /** Tags whose manifest put fails with UNAVAILABLE. */
  readonly failManifestTags = new Set<string>();
  readonly manifestPuts: string[] = [];

  constructor(inner: Store) {
    this.inner = inner;
    this.backend = inner.backend;
  }

  ping(): Promise<void> {
    return this.inner.ping();
  }
  putBlob(repository: string, bytes: Uint8Array): Promise<BlobRef> {
    return this.inner.putBlob(repository, bytes);
  }
  hasBlob(repository: string, digest: string): Promise<boolean> {
    return this.inner.hasBlob(repository, digest);
  }
  getBlob(repository: string, digest: string, maxBytes: number): Promise<Uint8Array> {
    return this.inner.getBlob(repository, digest, maxBytes);
  }
  async putManifest(repository: string, reference: string, bytes: Uint8Array, mediaType: string): Promise<{ digest: string }> {
    this.manifestPuts.push(reference);
    if (this.failManifestTags.has(reference)) {
      throw new StorageError('UNAVAILABLE', `injected failure putting ${reference}`, { backend: this.backend, repository, reference });
    }
    return this.inner.putManifest(repository, reference, bytes, mediaType);
  }
  getManifest(repository: string, reference: string, maxBytes: number): Promise<Manifest> {
    return this.inner.getManifest(repository, reference, maxBytes);
  }
  listRepositories(): Promise<string[]> {
    return this.inner.listRepositories();
  }
  listTags(repository: string): Promise<string[]> {
    return this.inner.listTags(repository);
  }
  deleteManifest(repository: string, digest: string): Promise<void> {
    return this.inner.deleteManifest(repository, digest);
  }
  deleteTag(repository: string, tag: string): Promise<void> {
    return this.inner.deleteTag(repository, tag);
  }
}
