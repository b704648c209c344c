/**
 * MetadataStore's conditional read (readMetadataIfChanged), the one read the registry fetcher
 * makes of timestamp.json: the caller's bytes back when the stored layer is exactly them, the
 * stored bytes otherwise, the artifact's annotations with either, the bound before any download.
 * Memory backend: this is the logic; test/client/fetcher-contract.test.ts runs it against a real
 * docker-registry.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ANNOTATION_ROOT_VERSION, MetadataStore } from '../../src/storage/metadata-store.ts';
import { MemoryStore } from '../../src/storage/memory-store.ts';
import { StorageError } from '../../src/storage/storage-error.ts';

const REPO = 'wabbit-networks/net-monitor';
const enc = (s: string): Uint8Array => new TextEncoder().encode(s);

/** Count the calls of `store`'s methods `names` (all into one counter), calling through. */
function countCalls(store: MemoryStore, names: ReadonlyArray<'getBlob' | 'getManifest' | 'getManifestIfNoneMatch'>): () => number {
  let calls = 0;
  const methods = store as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;
  for (const name of names) {
    const original = methods[name]?.bind(store);
    if (!original) continue;
    methods[name] = async (...args: unknown[]) => {
      calls++;
      return original(...args);
    };
  }
  return () => calls;
}

/** A memory store that counts blob reads. */
function counted(): { store: MemoryStore; blobReads: () => number } {
  const store = new MemoryStore();
  return { store, blobReads: countCalls(store, ['getBlob']) };
}

describe('MetadataStore.readMetadataIfChanged', () => {
  it("returns the caller's bytes when the stored layer is exactly them, else the stored bytes; the writer's root version with both", async () => {
    const { store } = counted();
    const writer = new MetadataStore({ store });
    const v1 = enc('{"signed":{"version":1}}');
    const v2 = enc('{"signed":{"version":2}}');
    await writer.writeMetadata(REPO, 'timestamp.json', v1, { rootVersion: 3 });
    const reader = new MetadataStore({ store });
    const same = await reader.readMetadataIfChanged(REPO, 'timestamp.json', 1024, v1);
    expect(same.unchanged).toBe(true);
    expect(same.bytes).toBe(v1);
    expect(same.annotations[ANNOTATION_ROOT_VERSION]).toBe('3');
    const other = await reader.readMetadataIfChanged(REPO, 'timestamp.json', 1024, v2);
    expect(other.unchanged).toBe(false);
    expect(Buffer.from(other.bytes).equals(Buffer.from(v1))).toBe(true);
    await writer.writeMetadata(REPO, 'timestamp.json', v2, { rootVersion: 4 });
    const moved = await new MetadataStore({ store }).readMetadataIfChanged(REPO, 'timestamp.json', 1024, v1);
    expect(moved.unchanged).toBe(false);
    expect(Buffer.from(moved.bytes).equals(Buffer.from(v2))).toBe(true);
    expect(moved.annotations[ANNOTATION_ROOT_VERSION]).toBe('4');
    // readMetadata is the same read without a known copy.
    expect(Buffer.from(await reader.readMetadata(REPO, 'timestamp.json', 1024)).equals(Buffer.from(v2))).toBe(true);
  });

  it.each([
    ['stored as it is', false, enc(`{"signed":{"pad":"${'x'.repeat(60_000)}"}}`)],
    ['stored compressed', true, enc(`{"signed":{"pad":"${randomBytes(30_000).toString('hex')}"}}`)],
  ] as const)('a large file (%s), known to the caller, is not downloaded again; one that is not known is, from its blob', async (_, compress, big) => {
    const { store, blobReads } = counted();
    await new MetadataStore({ store, compress }).writeMetadata(REPO, '1.snapshot.json', big); // above what a manifest carries inline
    const known = await new MetadataStore({ store }).readMetadataIfChanged(REPO, '1.snapshot.json', 1 << 20, big);
    expect(known.unchanged).toBe(true);
    expect(blobReads()).toBe(0);
    const fresh = await new MetadataStore({ store }).readMetadataIfChanged(REPO, '1.snapshot.json', 1 << 20);
    expect(fresh.unchanged).toBe(false);
    expect(Buffer.from(fresh.bytes).equals(Buffer.from(big))).toBe(true);
    expect(blobReads()).toBe(1);
  });

  it('prefetch sends the manifest request at once; the next read of the file takes its answer, and a write in between discards it', async () => {
    const store = new MemoryStore();
    const manifestReads = countCalls(store, ['getManifest', 'getManifestIfNoneMatch']);
    const v1 = enc('{"signed":{"version":1}}');
    const v2 = enc('{"signed":{"version":2}}');
    const metadata = new MetadataStore({ store });
    await metadata.writeMetadata(REPO, 'timestamp.json', v1);
    const reader = new MetadataStore({ store });
    reader.prefetch(REPO, 'timestamp.json');
    expect(manifestReads()).toBe(1); // sent before anyone reads
    const read = await reader.readMetadataIfChanged(REPO, 'timestamp.json', 1024);
    expect(Buffer.from(read.bytes).equals(Buffer.from(v1))).toBe(true);
    expect(manifestReads()).toBe(1); // the read took the prefetched answer
    await reader.readMetadata(REPO, 'timestamp.json', 1024);
    expect(manifestReads()).toBe(2); // one use only
    reader.prefetch(REPO, 'timestamp.json');
    await reader.writeMetadata(REPO, 'timestamp.json', v2);
    expect(Buffer.from(await reader.readMetadata(REPO, 'timestamp.json', 1024)).equals(Buffer.from(v2))).toBe(true);
    // A prefetch whose request fails surfaces at the read that takes it.
    const failing = new MetadataStore({ store });
    failing.prefetch(REPO, '9.root.json');
    await expect(failing.readMetadata(REPO, '9.root.json', 1024)).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });

  it('refuses a file above the bound before reading its layer, known copy or not', async () => {
    const { store, blobReads } = counted();
    const big = enc(`{"signed":{"pad":"${'y'.repeat(60_000)}"}}`);
    await new MetadataStore({ store }).writeMetadata(REPO, '2.snapshot.json', big);
    for (const known of [undefined, big]) {
      const error = await new MetadataStore({ store }).readMetadataIfChanged(REPO, '2.snapshot.json', 1000, known).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(StorageError);
      expect((error as StorageError).code).toBe('TOO_LARGE');
    }
    expect(blobReads()).toBe(0);
  });
});
