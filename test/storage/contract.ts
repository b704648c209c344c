/**
 * The one contract every Store backend passes (after distribution's
 * storage driver test suite). Each backend's *.test.ts calls
 * `storeContract(name, factory)`. Tests use fresh repository names, so a
 * factory may share one backend (one registry process) across tests.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ANNOTATION_FILENAME,
  ANNOTATION_ROLE,
  ANNOTATION_VERSION,
  EMBED_MAX_BYTES,
  METADATA_ARTIFACT_TYPE,
  OCI_EMPTY_MEDIA_TYPE,
  TUF_METADATA_LAYER_MEDIA_TYPE,
  TUF_METADATA_GZIP_LAYER_MEDIA_TYPE,
  compressMetadata,
  buildMetadataArtifact,
} from '../../src/storage/artifact.ts';
import { EMPTY_JSON_BYTES, EMPTY_JSON_DIGEST, sha256Digest } from '../../src/storage/digest.ts';
import { MetadataStore } from '../../src/storage/metadata-store.ts';
import { StorageError, type StorageErrorCode } from '../../src/storage/storage-error.ts';
import { OCI_MANIFEST_MEDIA_TYPE, type Store } from '../../src/storage/store.ts';
import { FailingStore } from '../support/failing-store.ts';

export interface ContractSubject {
  store: Store;
  /** Overwrite the stored bytes of a blob (or manifest) in place, as a failing disk or a hostile mirror would. */
  corrupt(repository: string, digest: string, bytes: Uint8Array): Promise<void>;
  /** Whether deleteTag removes just a tag (false: the backend must answer UNSUPPORTED). */
  canDeleteTag: boolean;
  close?(): Promise<void>;
}

const text = (s: string): Uint8Array => new TextEncoder().encode(s);
let counter = 0;
const freshRepo = (prefix: string): string => `${prefix}/r${++counter}-${randomBytes(3).toString('hex')}`;

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error('expected a rejection, got success');
    },
    (error: unknown) => error,
  );
}

/** Expect a StorageError of `code` whose detail names backend, repository and reference. */
async function expectStorageError(
  promise: Promise<unknown>,
  code: StorageErrorCode,
  where: { backend: string; repository?: string; reference?: string },
): Promise<StorageError> {
  const error = await rejection(promise);
  expect(error).toBeInstanceOf(StorageError);
  const storageError = error as StorageError;
  expect({ code: storageError.code, message: storageError.message }).toMatchObject({ code });
  expect(storageError.detail.backend).toBe(where.backend);
  if (where.repository !== undefined) expect(storageError.detail.repository).toBe(where.repository);
  if (where.reference !== undefined) expect(storageError.detail.reference).toBe(where.reference);
  return storageError;
}

function imageManifest(config: { digest: string; size: number }, layers: { digest: string; size: number }[], extra: Record<string, unknown> = {}): Uint8Array {
  return text(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST_MEDIA_TYPE,
      config: { mediaType: OCI_EMPTY_MEDIA_TYPE, ...config },
      layers: layers.map((l) => ({ mediaType: 'application/octet-stream', ...l })),
      ...extra,
    }),
  );
}

/** Signed-metadata-shaped bytes (storage does not verify them; TUF does). */
function metadataBytes(type: string, version: number, salt = ''): Uint8Array {
  return text(JSON.stringify({ signatures: [], signed: { _type: type, version, expires: '2030-01-01T00:00:00Z', salt } }));
}

/** The backend's batch write: every backend in this suite has one. */
function batchOf(store: Store): NonNullable<Store['putManifests']> {
  expect(store.putManifests, 'every backend writes batches').toBeTypeOf('function');
  return store.putManifests!.bind(store);
}

export function storeContract(name: string, factory: () => Promise<ContractSubject>): void {
  describe(`Store contract: ${name}`, () => {
    let subject: ContractSubject;
    let store: Store;
    let backend: string;

    beforeAll(async () => {
      subject = await factory();
      store = subject.store;
      backend = store.backend;
    }, 30_000);
    afterAll(async () => {
      await subject?.close?.();
    }, 30_000);

    /** A repository holding the empty config blob and one layer. */
    async function seeded(prefix = 'c'): Promise<{ repo: string; layer: { digest: string; size: number }; config: { digest: string; size: number } }> {
      const repo = freshRepo(prefix);
      const config = await store.putBlob(repo, EMPTY_JSON_BYTES);
      const layer = await store.putBlob(repo, text(`layer ${repo}`));
      return { repo, layer, config };
    }

    describe('readiness and names', () => {
      it('ping resolves', async () => {
        await expect(store.ping()).resolves.toBeUndefined();
      });

      it('refuses invalid repository names, tags and digests before any I/O', async () => {
        await expectStorageError(store.putBlob('Upper/Case', text('x')), 'INVALID_NAME', { backend, reference: '' });
        await expectStorageError(store.listTags('a//b'), 'INVALID_NAME', { backend });
        await expectStorageError(store.listTags('../etc'), 'INVALID_NAME', { backend });
        await expectStorageError(store.getManifest('ok/repo', '../escape', 100), 'INVALID_NAME', { backend, repository: 'ok/repo', reference: '../escape' });
        await expectStorageError(store.getManifest('ok/repo', '.hidden', 100), 'INVALID_NAME', { backend, reference: '.hidden' });
        await expectStorageError(store.getManifest('ok/repo', 'x'.repeat(129), 100), 'INVALID_NAME', { backend });
        await expectStorageError(store.getBlob('ok/repo', 'sha256:XYZ', 100), 'INVALID_NAME', { backend, reference: 'sha256:XYZ' });
        await expectStorageError(store.getBlob('ok/repo', `md5:${'a'.repeat(32)}`, 100), 'INVALID_NAME', { backend });
        await expectStorageError(store.deleteTag('ok/repo', 'a/b'), 'INVALID_NAME', { backend });
        await expectStorageError(store.listTags('a'.repeat(256)), 'INVALID_NAME', { backend });
      });
    });

    describe('blobs', () => {
      it('round-trips bytes under their sha256 digest, idempotently', async () => {
        const repo = freshRepo('blob');
        const bytes = text('hello blob');
        const ref = await store.putBlob(repo, bytes);
        expect(ref).toEqual({ digest: sha256Digest(bytes), size: bytes.byteLength });
        expect(await store.hasBlob(repo, ref.digest)).toBe(true);
        expect(Buffer.from(await store.getBlob(repo, ref.digest, 1024)).toString()).toBe('hello blob');
        expect(await store.putBlob(repo, bytes)).toEqual(ref);
        expect(Buffer.from(await store.getBlob(repo, ref.digest, bytes.byteLength)).toString()).toBe('hello blob');
      });

      it('does not alias caller buffers', async () => {
        const repo = freshRepo('blob');
        const bytes = text('mutable');
        const ref = await store.putBlob(repo, bytes);
        bytes[0] = 0x4d;
        const read = await store.getBlob(repo, ref.digest, 100);
        expect(Buffer.from(read).toString()).toBe('mutable');
        read[0] = 0x4d;
        expect(Buffer.from(await store.getBlob(repo, ref.digest, 100)).toString()).toBe('mutable');
      });

      it('stores the empty blob', async () => {
        const repo = freshRepo('blob');
        const ref = await store.putBlob(repo, new Uint8Array(0));
        expect(ref.size).toBe(0);
        expect((await store.getBlob(repo, ref.digest, 0)).byteLength).toBe(0);
      });

      it('round-trips a 3 MiB blob (chunked upload where the backend has one)', async () => {
        const repo = freshRepo('blob');
        const bytes = randomBytes(3 * 1024 * 1024 + 17);
        const ref = await store.putBlob(repo, bytes);
        const read = await store.getBlob(repo, ref.digest, bytes.byteLength);
        expect(sha256Digest(read)).toBe(ref.digest);
        expect(Buffer.compare(Buffer.from(read), bytes)).toBe(0);
      });

      it('answers NOT_FOUND for an unknown blob, in a known and an unknown repository', async () => {
        const { repo } = await seeded();
        const missing = sha256Digest(text('never stored'));
        expect(await store.hasBlob(repo, missing)).toBe(false);
        await expectStorageError(store.getBlob(repo, missing, 100), 'NOT_FOUND', { backend, repository: repo, reference: missing });
        const nowhere = freshRepo('nowhere');
        expect(await store.hasBlob(nowhere, missing)).toBe(false);
        await expectStorageError(store.getBlob(nowhere, missing, 100), 'NOT_FOUND', { backend, repository: nowhere, reference: missing });
      });

      it('refuses to read a blob above the bound (TOO_LARGE)', async () => {
        const repo = freshRepo('blob');
        const ref = await store.putBlob(repo, text('0123456789'));
        await expectStorageError(store.getBlob(repo, ref.digest, 9), 'TOO_LARGE', { backend, repository: repo, reference: ref.digest });
        expect((await store.getBlob(repo, ref.digest, 10)).byteLength).toBe(10);
      });

      it('refuses a blob whose stored bytes no longer hash to its digest (DIGEST_MISMATCH)', async () => {
        const repo = freshRepo('blob');
        const ref = await store.putBlob(repo, text('original content'));
        await subject.corrupt(repo, ref.digest, text('tampered content'));
        await expectStorageError(store.getBlob(repo, ref.digest, 100), 'DIGEST_MISMATCH', { backend, repository: repo, reference: ref.digest });
      });
    });

    describe('manifests', () => {
      it('round-trips a manifest by tag and by digest', async () => {
        const { repo, layer, config } = await seeded();
        const bytes = imageManifest(config, [layer]);
        const { digest } = await store.putManifest(repo, 'v1', bytes, OCI_MANIFEST_MEDIA_TYPE);
        expect(digest).toBe(sha256Digest(bytes));
        for (const reference of ['v1', digest]) {
          const got = await store.getManifest(repo, reference, 4096);
          expect(got.digest).toBe(digest);
          expect(got.mediaType).toBe(OCI_MANIFEST_MEDIA_TYPE);
          expect(Buffer.from(got.bytes).equals(Buffer.from(bytes))).toBe(true);
        }
      });

      it('puts a manifest by digest, and refuses a digest reference the bytes do not hash to', async () => {
        const { repo, layer, config } = await seeded();
        const bytes = imageManifest(config, [layer]);
        const digest = sha256Digest(bytes);
        await store.putManifest(repo, digest, bytes, OCI_MANIFEST_MEDIA_TYPE);
        expect((await store.getManifest(repo, digest, 4096)).digest).toBe(digest);
        expect(await store.listTags(repo)).toEqual([]);
        const other = sha256Digest(text('other'));
        await expectStorageError(store.putManifest(repo, other, bytes, OCI_MANIFEST_MEDIA_TYPE), 'DIGEST_MISMATCH', { backend, repository: repo, reference: other });
      });

      it('moves a tag on overwrite; the old manifest stays addressable by digest', async () => {
        const { repo, layer, config } = await seeded();
        const first = imageManifest(config, [layer], { annotations: { n: '1' } });
        const second = imageManifest(config, [layer], { annotations: { n: '2' } });
        const a = await store.putManifest(repo, 'latest', first, OCI_MANIFEST_MEDIA_TYPE);
        const b = await store.putManifest(repo, 'latest', second, OCI_MANIFEST_MEDIA_TYPE);
        expect((await store.getManifest(repo, 'latest', 4096)).digest).toBe(b.digest);
        expect((await store.getManifest(repo, a.digest, 4096)).digest).toBe(a.digest);
        expect(await store.listTags(repo)).toEqual(['latest']);
      });

      it('refuses a manifest that references a blob the repository does not have', async () => {
        const { repo, config } = await seeded();
        const ghost = { digest: sha256Digest(text('ghost layer')), size: 11 };
        await expectStorageError(store.putManifest(repo, 'v1', imageManifest(config, [ghost]), OCI_MANIFEST_MEDIA_TYPE), 'INVALID_MANIFEST', { backend, repository: repo, reference: 'v1' });
        await expectStorageError(store.getManifest(repo, 'v1', 4096), 'NOT_FOUND', { backend, repository: repo, reference: 'v1' });
      });

      it('refuses a media type that is not a manifest type, and bytes that are not a manifest', async () => {
        const { repo, layer, config } = await seeded();
        await expectStorageError(store.putManifest(repo, 'v1', imageManifest(config, [layer]), 'text/html'), 'BAD_MEDIA_TYPE', { backend, repository: repo, reference: 'v1' });
        await expectStorageError(store.putManifest(repo, 'v1', text('<html>not json</html>'), OCI_MANIFEST_MEDIA_TYPE), 'INVALID_MANIFEST', { backend, repository: repo, reference: 'v1' });
      });

      it('answers NOT_FOUND for an unknown tag or digest', async () => {
        const { repo } = await seeded();
        await expectStorageError(store.getManifest(repo, 'nope', 4096), 'NOT_FOUND', { backend, repository: repo, reference: 'nope' });
        const digest = sha256Digest(text('no manifest'));
        await expectStorageError(store.getManifest(repo, digest, 4096), 'NOT_FOUND', { backend, repository: repo, reference: digest });
        const nowhere = freshRepo('nowhere');
        await expectStorageError(store.getManifest(nowhere, 'v1', 4096), 'NOT_FOUND', { backend, repository: nowhere, reference: 'v1' });
      });

      it('refuses to read a manifest above the bound (TOO_LARGE)', async () => {
        const { repo, layer, config } = await seeded();
        const bytes = imageManifest(config, [layer]);
        await store.putManifest(repo, 'v1', bytes, OCI_MANIFEST_MEDIA_TYPE);
        await expectStorageError(store.getManifest(repo, 'v1', bytes.byteLength - 1), 'TOO_LARGE', { backend, repository: repo, reference: 'v1' });
      });

      it('refuses a manifest whose stored bytes were altered (DIGEST_MISMATCH)', async () => {
        const { repo, layer, config } = await seeded();
        const bytes = imageManifest(config, [layer]);
        const { digest } = await store.putManifest(repo, 'v1', bytes, OCI_MANIFEST_MEDIA_TYPE);
        // Same length, still a well-formed manifest: only the hash can tell.
        const altered = text(Buffer.from(bytes).toString().replace('application/octet-stream', 'application/octet-streaM'));
        expect(altered.byteLength).toBe(bytes.byteLength);
        await subject.corrupt(repo, digest, altered);
        await expectStorageError(store.getManifest(repo, digest, 4096), 'DIGEST_MISMATCH', { backend, repository: repo, reference: digest });
        await expectStorageError(store.getManifest(repo, 'v1', 4096), 'DIGEST_MISMATCH', { backend, repository: repo, reference: 'v1' });
      });
    });

    describe('tags', () => {
      it('lists the repositories it holds, nested names included', async () => {
        const { repo, layer, config } = await seeded('catalog/nested');
        await store.putManifest(repo, 'one', imageManifest(config, [layer]), OCI_MANIFEST_MEDIA_TYPE);
        const repos = await store.listRepositories();
        expect(repos).toContain(repo);
        expect(repos).not.toContain(freshRepo('never-written'));
        expect([...repos].sort()).toEqual(repos);
      });

      it('lists no tags for an unknown repository', async () => {
        expect(await store.listTags(freshRepo('empty'))).toEqual([]);
      });

      it('lists one tag, then many (sorted, every page)', async () => {
        const { repo, layer, config } = await seeded();
        await store.putManifest(repo, 'only', imageManifest(config, [layer]), OCI_MANIFEST_MEDIA_TYPE);
        expect(await store.listTags(repo)).toEqual(['only']);
        const tags = Array.from({ length: 23 }, (_, i) => `t${String(i).padStart(2, '0')}`);
        for (const tag of tags) await store.putManifest(repo, tag, imageManifest(config, [layer], { annotations: { tag } }), OCI_MANIFEST_MEDIA_TYPE);
        expect(await store.listTags(repo)).toEqual(['only', ...tags].sort());
      });

      it('keeps every tag written concurrently to one repository', async () => {
        const { repo, layer, config } = await seeded();
        const tags = Array.from({ length: 20 }, (_, i) => `c${i}`);
        await Promise.all(tags.map((tag) => store.putManifest(repo, tag, imageManifest(config, [layer], { annotations: { tag } }), OCI_MANIFEST_MEDIA_TYPE)));
        expect(await store.listTags(repo)).toEqual([...tags].sort());
        for (const tag of tags) expect(JSON.parse(Buffer.from((await store.getManifest(repo, tag, 4096)).bytes).toString()).annotations.tag).toBe(tag);
      });

      it('leaves a concurrently overwritten tag on one whole manifest', async () => {
        const { repo, layer, config } = await seeded();
        const candidates = Array.from({ length: 8 }, (_, i) => imageManifest(config, [layer], { annotations: { writer: String(i) } }));
        await Promise.all(candidates.map((bytes) => store.putManifest(repo, 'race', bytes, OCI_MANIFEST_MEDIA_TYPE)));
        const got = await store.getManifest(repo, 'race', 4096);
        expect(candidates.map((c) => sha256Digest(c))).toContain(got.digest);
        expect(await store.listTags(repo)).toEqual(['race']);
      });
    });

    describe('deletion', () => {
      it('deleteManifest removes the manifest and its tags', async () => {
        const { repo, layer, config } = await seeded();
        const gone = await store.putManifest(repo, 'gone', imageManifest(config, [layer], { annotations: { k: 'gone' } }), OCI_MANIFEST_MEDIA_TYPE);
        await store.putManifest(repo, 'stays', imageManifest(config, [layer], { annotations: { k: 'stays' } }), OCI_MANIFEST_MEDIA_TYPE);
        await store.deleteManifest(repo, gone.digest);
        expect(await store.listTags(repo)).toEqual(['stays']);
        await expectStorageError(store.getManifest(repo, gone.digest, 4096), 'NOT_FOUND', { backend, repository: repo, reference: gone.digest });
        await expectStorageError(store.getManifest(repo, 'gone', 4096), 'NOT_FOUND', { backend, repository: repo, reference: 'gone' });
        await expectStorageError(store.deleteManifest(repo, gone.digest), 'NOT_FOUND', { backend, repository: repo, reference: gone.digest });
      });

      it(`deleteTag removes one tag where the backend can (${name})`, async () => {
        const { repo, layer, config } = await seeded();
        const bytes = imageManifest(config, [layer]);
        const { digest } = await store.putManifest(repo, 'a', bytes, OCI_MANIFEST_MEDIA_TYPE);
        await store.putManifest(repo, 'b', bytes, OCI_MANIFEST_MEDIA_TYPE);
        if (subject.canDeleteTag) {
          await store.deleteTag(repo, 'a');
          expect(await store.listTags(repo)).toEqual(['b']);
          expect((await store.getManifest(repo, digest, 4096)).digest).toBe(digest);
          await expectStorageError(store.deleteTag(repo, 'a'), 'NOT_FOUND', { backend, repository: repo, reference: 'a' });
        } else {
          await expectStorageError(store.deleteTag(repo, 'a'), 'UNSUPPORTED', { backend, repository: repo, reference: 'a' });
          expect(await store.listTags(repo)).toEqual(['a', 'b']);
        }
      });
    });

    describe('batch writes and conditional reads (optional methods)', () => {
      it('putManifests stores every blob, then the manifests under their tags, answering their digests', async () => {
        const putManifests = batchOf(store);
        const repo = freshRepo('batch');
        const layerA = text(`layer A ${repo}`);
        const layerB = text(`layer B ${repo}`);
        const manifestA = imageManifest({ digest: EMPTY_JSON_DIGEST, size: 2 }, [{ digest: sha256Digest(layerA), size: layerA.byteLength }]);
        const manifestB = imageManifest({ digest: EMPTY_JSON_DIGEST, size: 2 }, [{ digest: sha256Digest(layerB), size: layerB.byteLength }]);
        const stored = await putManifests(repo, [
          { reference: 'a', bytes: manifestA, mediaType: OCI_MANIFEST_MEDIA_TYPE, blobs: [layerA, EMPTY_JSON_BYTES] },
          { reference: 'b', bytes: manifestB, mediaType: OCI_MANIFEST_MEDIA_TYPE, blobs: [layerB, EMPTY_JSON_BYTES] },
        ]);
        expect(stored).toEqual([{ digest: sha256Digest(manifestA) }, { digest: sha256Digest(manifestB) }]);
        expect(await store.listTags(repo)).toEqual(['a', 'b']);
        expect((await store.getManifest(repo, 'b', 4096)).digest).toBe(sha256Digest(manifestB));
        expect(Buffer.from(await store.getBlob(repo, sha256Digest(layerA), 1024)).equals(Buffer.from(layerA))).toBe(true);
        // Blobs already there are fine to list again.
        await putManifests(repo, [{ reference: 'a2', bytes: manifestA, mediaType: OCI_MANIFEST_MEDIA_TYPE, blobs: [layerA, EMPTY_JSON_BYTES] }]);
        expect(await store.listTags(repo)).toEqual(['a', 'a2', 'b']);
      });

      it('putManifests checks every entry before writing anything', async () => {
        const putManifests = batchOf(store);
        const repo = freshRepo('batch');
        const layer = text(`layer ${repo}`);
        const good = imageManifest({ digest: EMPTY_JSON_DIGEST, size: 2 }, [{ digest: sha256Digest(layer), size: layer.byteLength }]);
        const entry = { bytes: good, mediaType: OCI_MANIFEST_MEDIA_TYPE, blobs: [layer, EMPTY_JSON_BYTES] };
        await expectStorageError(putManifests(repo, [{ reference: 'first', ...entry }, { reference: 'bad tag', ...entry }]), 'INVALID_NAME', { backend, reference: 'bad tag' });
        await expectStorageError(putManifests(repo, [{ reference: 'first', ...entry }, { reference: sha256Digest(text('other')), ...entry }]), 'DIGEST_MISMATCH', { backend });
        await expectStorageError(putManifests(repo, [{ reference: 'first', ...entry }, { reference: 'second', ...entry, mediaType: 'text/plain' }]), 'BAD_MEDIA_TYPE', { backend });
        expect(await store.listTags(repo)).toEqual([]);
      });

      it('putManifests stops at a manifest whose blobs are missing: nothing after it is stored', async () => {
        const putManifests = batchOf(store);
        const repo = freshRepo('batch');
        const layer = text(`layer ${repo}`);
        const good = imageManifest({ digest: EMPTY_JSON_DIGEST, size: 2 }, [{ digest: sha256Digest(layer), size: layer.byteLength }]);
        const missing = imageManifest({ digest: EMPTY_JSON_DIGEST, size: 2 }, [{ digest: sha256Digest(text('never stored')), size: 12 }]);
        const error = await rejection(
          putManifests(repo, [
            { reference: 'one', bytes: good, mediaType: OCI_MANIFEST_MEDIA_TYPE, blobs: [layer, EMPTY_JSON_BYTES] },
            { reference: 'two', bytes: missing, mediaType: OCI_MANIFEST_MEDIA_TYPE, blobs: [EMPTY_JSON_BYTES] },
            { reference: 'three', bytes: good, mediaType: OCI_MANIFEST_MEDIA_TYPE, blobs: [layer] },
          ]),
        );
        expect(error).toBeInstanceOf(StorageError);
        expect((error as StorageError).code).toBe('INVALID_MANIFEST');
        const tags = await store.listTags(repo);
        expect(tags).not.toContain('two');
        expect(tags).not.toContain('three');
      });

      it('getManifestIfNoneMatch answers undefined for the current digest and the manifest otherwise', async () => {
        expect(store.getManifestIfNoneMatch, 'every backend reads conditionally').toBeTypeOf('function');
        const { repo, layer, config } = await seeded('inm');
        const first = imageManifest(config, [layer], { annotations: { n: '1' } });
        const second = imageManifest(config, [layer], { annotations: { n: '2' } });
        await store.putManifest(repo, 'moving', first, OCI_MANIFEST_MEDIA_TYPE);
        expect(await store.getManifestIfNoneMatch!(repo, 'moving', sha256Digest(first), 4096)).toBeUndefined();
        await store.putManifest(repo, 'moving', second, OCI_MANIFEST_MEDIA_TYPE);
        const changed = await store.getManifestIfNoneMatch!(repo, 'moving', sha256Digest(first), 4096);
        expect(changed?.digest).toBe(sha256Digest(second));
        expect(Buffer.from(changed!.bytes).equals(Buffer.from(second))).toBe(true);
        await expectStorageError(store.getManifestIfNoneMatch!(repo, 'absent', sha256Digest(first), 4096), 'NOT_FOUND', { backend, repository: repo, reference: 'absent' });
        await expectStorageError(store.getManifestIfNoneMatch!(repo, 'moving', 'sha256:nothex', 4096), 'INVALID_NAME', { backend });
      });
    });

    describe('MetadataStore over this backend', () => {
      let metadata: MetadataStore;
      beforeAll(() => {
        metadata = new MetadataStore({ store });
      });

      it('writes the artifact described in docs/FORMAT.md to R/tuf, tagged with the file name', async () => {
        const repo = freshRepo('img');
        const bytes = metadataBytes('root', 1);
        const result = await metadata.writeMetadata(repo, '1.root.json', bytes);
        expect(result.written).toBe(true);
        expect(await store.listTags(repo)).toEqual([]);
        expect(await store.listTags(`${repo}/tuf`)).toEqual(['1.root.json']);
        const manifest = await store.getManifest(`${repo}/tuf`, '1.root.json', 65536);
        expect(manifest.mediaType).toBe(OCI_MANIFEST_MEDIA_TYPE);
        expect(manifest.digest).toBe(result.manifestDigest);
        const parsed = JSON.parse(Buffer.from(manifest.bytes).toString());
        expect(parsed).toEqual({
          schemaVersion: 2,
          mediaType: OCI_MANIFEST_MEDIA_TYPE,
          artifactType: METADATA_ARTIFACT_TYPE,
          config: { mediaType: OCI_EMPTY_MEDIA_TYPE, digest: EMPTY_JSON_DIGEST, size: 2 },
          layers: [
            {
              mediaType: TUF_METADATA_LAYER_MEDIA_TYPE,
              digest: sha256Digest(bytes),
              size: bytes.byteLength,
              annotations: { 'org.opencontainers.image.title': '1.root.json', [ANNOTATION_FILENAME]: '1.root.json' },
              data: Buffer.from(bytes).toString('base64'), // a small file rides in its descriptor
            },
          ],
          annotations: { [ANNOTATION_FILENAME]: '1.root.json', [ANNOTATION_ROLE]: 'root', [ANNOTATION_VERSION]: '1' },
        });
        expect(Buffer.from(await store.getBlob(`${repo}/tuf`, EMPTY_JSON_DIGEST, 2)).toString()).toBe('{}');
        expect(Buffer.from(await metadata.readMetadata(repo, '1.root.json', 1 << 20)).equals(Buffer.from(bytes))).toBe(true);
      });

      it('keeps versioned files immutable: same bytes succeed idempotently, other bytes are a CONFLICT', async () => {
        const repo = freshRepo('img');
        const original = metadataBytes('snapshot', 7);
        await metadata.writeMetadata(repo, '7.snapshot.json', original);
        const again = await metadata.writeMetadata(repo, '7.snapshot.json', Uint8Array.from(original));
        expect(again.written).toBe(false);
        const conflict = await expectStorageError(metadata.writeMetadata(repo, '7.snapshot.json', metadataBytes('snapshot', 7, 'evil')), 'CONFLICT', {
          backend,
          repository: `${repo}/tuf`,
          reference: '7.snapshot.json',
        });
        expect(conflict.detail['existingDigest']).toBe(sha256Digest(original));
        expect(Buffer.from(await metadata.readMetadata(repo, '7.snapshot.json', 4096)).equals(Buffer.from(original))).toBe(true);
      });

      it('refuses to overwrite a versioned tag that holds a foreign manifest', async () => {
        const repo = freshRepo('img');
        const metaRepo = `${repo}/tuf`;
        const config = await store.putBlob(metaRepo, EMPTY_JSON_BYTES);
        const layer = await store.putBlob(metaRepo, text('foreign'));
        await store.putManifest(metaRepo, '1.targets.json', imageManifest(config, [layer]), OCI_MANIFEST_MEDIA_TYPE);
        await expectStorageError(metadata.writeMetadata(repo, '1.targets.json', metadataBytes('targets', 1)), 'CONFLICT', { backend, reference: '1.targets.json' });
      });

      it('moves timestamp.json', async () => {
        const repo = freshRepo('img');
        await metadata.writeMetadata(repo, 'timestamp.json', metadataBytes('timestamp', 1));
        const second = metadataBytes('timestamp', 2);
        const result = await metadata.writeMetadata(repo, 'timestamp.json', second);
        expect(result.written).toBe(true);
        expect(Buffer.from(await metadata.readMetadata(repo, 'timestamp.json', 4096)).equals(Buffer.from(second))).toBe(true);
        const manifest = JSON.parse(Buffer.from((await store.getManifest(`${repo}/tuf`, 'timestamp.json', 4096)).bytes).toString());
        expect(manifest.annotations[ANNOTATION_VERSION]).toBe('2');
      });

      it('reads the timestamp.json another writer moved, and never hands out its own copy', async () => {
        const repo = freshRepo('img');
        const other = new MetadataStore({ store });
        const first = metadataBytes('timestamp', 1);
        await metadata.writeMetadata(repo, 'timestamp.json', first);
        const read = await metadata.readMetadata(repo, 'timestamp.json', 4096);
        expect(Buffer.from(read).equals(Buffer.from(first))).toBe(true);
        read.fill(0); // a caller scribbling on what it got changes nothing stored or remembered
        expect(Buffer.from(await metadata.readMetadata(repo, 'timestamp.json', 4096)).equals(Buffer.from(first))).toBe(true);
        await expectStorageError(metadata.readMetadata(repo, 'timestamp.json', first.byteLength - 1), 'TOO_LARGE', { backend, reference: 'timestamp.json' });
        const second = metadataBytes('timestamp', 2);
        await other.writeMetadata(repo, 'timestamp.json', second);
        expect(Buffer.from(await metadata.readMetadata(repo, 'timestamp.json', 4096)).equals(Buffer.from(second))).toBe(true);
        const third = metadataBytes('timestamp', 3);
        await metadata.writeMetadata(repo, 'timestamp.json', third);
        expect(Buffer.from(await other.readMetadata(repo, 'timestamp.json', 4096)).equals(Buffer.from(third))).toBe(true);
        expect(Buffer.from(await metadata.readMetadata(repo, 'timestamp.json', 4096)).equals(Buffer.from(third))).toBe(true);
      });

      it('publishes nothing after a file the backend batch failed on, and never the timestamp', async () => {
        const repo = freshRepo('img');
        const failOn = new Set<string>();
        const failing = new Proxy(store, {
          get(target, property) {
            if (property === 'putManifests' && target.putManifests) {
              return async (repository: string, puts: Parameters<NonNullable<Store['putManifests']>>[1]) => {
                const at = puts.findIndex((p) => failOn.has(p.reference));
                if (at < 0) return target.putManifests!(repository, puts);
                if (at > 0) await target.putManifests!(repository, puts.slice(0, at));
                throw new StorageError('UNAVAILABLE', `injected failure putting ${puts[at]!.reference}`, { backend, repository, reference: puts[at]!.reference });
              };
            }
            const value: unknown = Reflect.get(target, property, target);
            return typeof value === 'function' ? value.bind(target) : value;
          },
        });
        const via = new MetadataStore({ store: failing });
        await via.publish(repo, [
          { fileName: 'timestamp.json', bytes: metadataBytes('timestamp', 1) },
          { fileName: '1.snapshot.json', bytes: metadataBytes('snapshot', 1) },
          { fileName: '1.targets.json', bytes: metadataBytes('targets', 1) },
        ]);
        failOn.add('2.snapshot.json');
        await expectStorageError(
          via.publish(repo, [
            { fileName: 'timestamp.json', bytes: metadataBytes('timestamp', 2) },
            { fileName: '2.snapshot.json', bytes: metadataBytes('snapshot', 2) },
            { fileName: '2.targets.json', bytes: metadataBytes('targets', 2) },
          ]),
          'UNAVAILABLE',
          { backend, reference: '2.snapshot.json' },
        );
        expect(JSON.parse(Buffer.from(await via.readMetadata(repo, 'timestamp.json', 4096)).toString()).signed.version).toBe(1);
        expect((await metadata.listMetadata(repo)).map((f) => f.fileName)).toEqual(['1.snapshot.json', '1.targets.json', '2.targets.json', 'timestamp.json']);
      });

      it('refuses file names that are not storable TUF names', async () => {
        const repo = freshRepo('img');
        for (const bad of ['snapshot.json', 'root.json', '0.root.json', '01.root.json', '1.timestamp.json', '../1.root.json', '1.root', '1.a b.json', `1.${'r'.repeat(130)}.json`]) {
          await expectStorageError(metadata.writeMetadata(repo, bad, metadataBytes('root', 1)), 'INVALID_NAME', { backend, repository: `${repo}/tuf` });
        }
        await expectStorageError(metadata.readMetadata('Not/Valid', '1.root.json', 10), 'INVALID_NAME', { backend });
      });

      it('reads with a bound, and answers NOT_FOUND for a missing file', async () => {
        const repo = freshRepo('img');
        const bytes = metadataBytes('targets', 3);
        await metadata.writeMetadata(repo, '3.targets.json', bytes);
        await expectStorageError(metadata.readMetadata(repo, '3.targets.json', bytes.byteLength - 1), 'TOO_LARGE', { backend, repository: `${repo}/tuf`, reference: '3.targets.json' });
        await expectStorageError(metadata.readMetadata(repo, '4.targets.json', 4096), 'NOT_FOUND', { backend, repository: `${repo}/tuf`, reference: '4.targets.json' });
      });

      it('detects a tampered metadata layer (DIGEST_MISMATCH naming the file)', async () => {
        const repo = freshRepo('img');
        // Larger than what rides in the descriptor, and stored as it is: read from the blob.
        const plain = new MetadataStore({ store, compress: false });
        const big = (salt: string): Uint8Array => metadataBytes('ci', 2, `${salt}${'x'.repeat(EMBED_MAX_BYTES)}`.slice(0, EMBED_MAX_BYTES + 10));
        const bytes = big('original');
        const { layerDigest } = await plain.writeMetadata(repo, '2.ci.json', bytes);
        await subject.corrupt(`${repo}/tuf`, layerDigest, big('tampered'));
        await expectStorageError(plain.readMetadata(repo, '2.ci.json', 1 << 20), 'DIGEST_MISMATCH', { backend, repository: `${repo}/tuf`, reference: '2.ci.json' });
      });

      it('stores a large file compressed and reads back exactly its bytes, from the blob or the descriptor; a tampered compressed layer is refused', async () => {
        const repo = freshRepo('img');
        const metaRepo = `${repo}/tuf`;
        // Hex digests compress to about half: 3 × EMBED_MAX_BYTES of them stay above the descriptor bound compressed.
        const large = (salt: string): Uint8Array => metadataBytes('ci', 2, `${salt}${randomBytes(EMBED_MAX_BYTES * 3 / 2).toString('hex')}`);
        const bytes = large('original');
        const { layerDigest } = await metadata.writeMetadata(repo, '2.ci.json', bytes);
        const manifest = JSON.parse(Buffer.from((await store.getManifest(metaRepo, '2.ci.json', 1 << 16)).bytes).toString()) as { layers: Array<{ mediaType: string; size: number; data?: string }> };
        expect(manifest.layers[0]).toMatchObject({ mediaType: TUF_METADATA_GZIP_LAYER_MEDIA_TYPE, digest: layerDigest });
        expect(manifest.layers[0]?.size).toBeLessThan(bytes.byteLength * 0.75);
        expect(manifest.layers[0]?.data).toBeUndefined();
        expect(Buffer.from(await new MetadataStore({ store }).readMetadata(repo, '2.ci.json', 1 << 20)).equals(Buffer.from(bytes))).toBe(true);
        // The same file again is a no-op (its identity is its own digest); other bytes under its name are a conflict.
        expect((await metadata.writeMetadata(repo, '2.ci.json', bytes)).written).toBe(false);
        await expectStorageError(metadata.writeMetadata(repo, '2.ci.json', large('other')), 'CONFLICT', { backend });
        // Its bound is the file's size, not the compressed layer's.
        await expectStorageError(new MetadataStore({ store }).readMetadata(repo, '2.ci.json', bytes.byteLength - 1), 'TOO_LARGE', { backend, reference: '2.ci.json' });
        await subject.corrupt(metaRepo, layerDigest, (await compressMetadata(large('tampered'))) as Uint8Array);
        await expectStorageError(new MetadataStore({ store }).readMetadata(repo, '2.ci.json', 1 << 20), 'DIGEST_MISMATCH', { backend, repository: metaRepo, reference: '2.ci.json' });
        // A compressible file rides compressed in its descriptor.
        const small = metadataBytes('ci', 3, 'y'.repeat(3 * EMBED_MAX_BYTES));
        await metadata.writeMetadata(repo, '3.ci.json', small);
        const inline = JSON.parse(Buffer.from((await store.getManifest(metaRepo, '3.ci.json', 1 << 16)).bytes).toString()) as { layers: Array<{ mediaType: string; data?: string }> };
        expect(inline.layers[0]?.mediaType).toBe(TUF_METADATA_GZIP_LAYER_MEDIA_TYPE);
        expect(inline.layers[0]?.data).toBeDefined();
        expect(Buffer.from(await new MetadataStore({ store }).readMetadata(repo, '3.ci.json', 1 << 20)).equals(Buffer.from(small))).toBe(true);
      });

      it('reads a small file from its descriptor, and refuses a descriptor whose data is not exactly the layer', async () => {
        const repo = freshRepo('img');
        const metaRepo = `${repo}/tuf`;
        const bytes = metadataBytes('ci', 3, 'small');
        const { layerDigest } = await metadata.writeMetadata(repo, '3.ci.json', bytes);
        // The blob no longer matters to a reader of the descriptor: corrupting it changes nothing.
        await subject.corrupt(metaRepo, layerDigest, metadataBytes('ci', 3, 'tampr'));
        expect(Buffer.from(await metadata.readMetadata(repo, '3.ci.json', 4096)).equals(Buffer.from(bytes))).toBe(true);
        // A manifest whose data differs from what its digest names is refused, not read either way.
        const other = metadataBytes('ci', 4, 'other');
        const manifest = JSON.parse(Buffer.from(buildMetadataArtifact({ fileName: '4.ci.json', role: 'ci', version: 4 }, other).manifest).toString()) as { layers: Array<{ data: string }> };
        (manifest.layers[0] as { data: string }).data = Buffer.from(metadataBytes('ci', 4, 'forgd')).toString('base64');
        await store.putBlob(metaRepo, other);
        await store.putBlob(metaRepo, EMPTY_JSON_BYTES);
        await store.putManifest(metaRepo, '4.ci.json', text(JSON.stringify(manifest)), OCI_MANIFEST_MEDIA_TYPE);
        const error = await expectStorageError(metadata.readMetadata(repo, '4.ci.json', 4096), 'PROTOCOL', { backend, repository: metaRepo, reference: '4.ci.json' });
        expect(error.message).toContain('layer data does not match the layer digest');
      });

      it('refuses an artifact tagged under another file name than the one it carries', async () => {
        const repo = freshRepo('img');
        const metaRepo = `${repo}/tuf`;
        const bytes = metadataBytes('root', 1);
        await metadata.writeMetadata(repo, '1.root.json', bytes);
        const artifact = buildMetadataArtifact({ fileName: '1.root.json', role: 'root', version: 1 }, bytes);
        await store.putManifest(metaRepo, '2.root.json', artifact.manifest, OCI_MANIFEST_MEDIA_TYPE);
        const error = await expectStorageError(metadata.readMetadata(repo, '2.root.json', 4096), 'PROTOCOL', { backend, repository: metaRepo, reference: '2.root.json' });
        expect(error.message).toContain('not 2.root.json');
      });

      it('lists the image repositories that have a timestamp', async () => {
        const withTs = freshRepo('listed');
        const without = freshRepo('unlisted');
        await metadata.writeMetadata(withTs, '1.root.json', metadataBytes('root', 1));
        await metadata.writeMetadata(withTs, 'timestamp.json', metadataBytes('timestamp', 1));
        await metadata.writeMetadata(without, '1.root.json', metadataBytes('root', 1));
        const repos = await metadata.listRepositories();
        expect(repos).toContain(withTs);
        expect(repos).not.toContain(without);
      });

      it('lists metadata files by role and version, ignoring foreign tags', async () => {
        const repo = freshRepo('img');
        expect(await metadata.listMetadata(repo)).toEqual([]);
        for (const [file, type, v] of [['2.root.json', 'root', 2], ['1.root.json', 'root', 1], ['10.targets.json', 'targets', 10], ['9.targets.json', 'targets', 9], ['timestamp.json', 'timestamp', 4]] as const) {
          await metadata.writeMetadata(repo, file, metadataBytes(type, v));
        }
        const metaRepo = `${repo}/tuf`;
        const config = await store.putBlob(metaRepo, EMPTY_JSON_BYTES);
        await store.putManifest(metaRepo, 'latest', imageManifest(config, []), OCI_MANIFEST_MEDIA_TYPE);
        expect((await metadata.listMetadata(repo)).map((f) => f.fileName)).toEqual(['1.root.json', '2.root.json', '9.targets.json', '10.targets.json', 'timestamp.json']);
      });

      it('prunes old versions but never roots, timestamp.json or protected files', async () => {
        const repo = freshRepo('img');
        for (let v = 1; v <= 4; v++) {
          await metadata.writeMetadata(repo, `${v}.root.json`, metadataBytes('root', v));
          await metadata.writeMetadata(repo, `${v}.snapshot.json`, metadataBytes('snapshot', v));
          await metadata.writeMetadata(repo, `${v}.ci.json`, metadataBytes('ci', v));
        }
        await metadata.writeMetadata(repo, 'timestamp.json', metadataBytes('timestamp', 4));
        const deleted = await metadata.prune(repo, { keep: 2, protect: new Set(['1.ci.json']) });
        expect(deleted).toEqual(['1.snapshot.json', '2.ci.json', '2.snapshot.json']);
        expect((await metadata.listMetadata(repo)).map((f) => f.fileName)).toEqual([
          '1.ci.json',
          '3.ci.json',
          '4.ci.json',
          '1.root.json',
          '2.root.json',
          '3.root.json',
          '4.root.json',
          '3.snapshot.json',
          '4.snapshot.json',
          'timestamp.json',
        ]);
        await expectStorageError(metadata.readMetadata(repo, '2.snapshot.json', 4096), 'NOT_FOUND', { backend, reference: '2.snapshot.json' });
        expect(await metadata.prune(repo, { keep: 2, protect: new Set(['1.ci.json']) })).toEqual([]);
      });

      it('lets exactly one of several concurrent writers of a versioned file win', async () => {
        const repo = freshRepo('img');
        const contenders = Array.from({ length: 6 }, (_, i) => metadataBytes('targets', 5, `writer-${i}`));
        const results = await Promise.allSettled(contenders.map((bytes) => metadata.writeMetadata(repo, '5.targets.json', bytes)));
        const won = results.filter((r) => r.status === 'fulfilled');
        const lost = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
        expect(won).toHaveLength(1);
        expect(lost.map((r) => (r.reason as StorageError).code)).toEqual(Array(5).fill('CONFLICT'));
        const winner = contenders[results.findIndex((r) => r.status === 'fulfilled')]!;
        expect(Buffer.from(await metadata.readMetadata(repo, '5.targets.json', 4096)).equals(Buffer.from(winner))).toBe(true);
        const same = await Promise.all(Array.from({ length: 4 }, () => metadata.writeMetadata(repo, '6.targets.json', metadataBytes('targets', 6))));
        expect(same.filter((r) => r.written)).toHaveLength(1);
      });

      it('publishes timestamp.json last and not at all when an earlier file fails', async () => {
        const failing = new FailingStore(store);
        const via = new MetadataStore({ store: failing });
        const repo = freshRepo('img');
        await via.publish(repo, [
          { fileName: 'timestamp.json', bytes: metadataBytes('timestamp', 1) },
          { fileName: '1.snapshot.json', bytes: metadataBytes('snapshot', 1) },
          { fileName: '1.targets.json', bytes: metadataBytes('targets', 1) },
        ]);
        expect(failing.manifestPuts).toEqual(['1.targets.json', '1.snapshot.json', 'timestamp.json']);
        failing.failManifestTags.add('2.snapshot.json');
        const error = await expectStorageError(
          via.publish(repo, [
            { fileName: 'timestamp.json', bytes: metadataBytes('timestamp', 2) },
            { fileName: '2.snapshot.json', bytes: metadataBytes('snapshot', 2) },
            { fileName: '2.targets.json', bytes: metadataBytes('targets', 2) },
          ]),
          'UNAVAILABLE',
          { backend, reference: '2.snapshot.json' },
        );
        expect(error.message).toContain('injected');
        expect(failing.manifestPuts.slice(3)).toEqual(['2.targets.json', '2.snapshot.json']);
        const timestamp = JSON.parse(Buffer.from(await metadata.readMetadata(repo, 'timestamp.json', 4096)).toString());
        expect(timestamp.signed.version).toBe(1);
        expect((await metadata.listMetadata(repo)).map((f) => f.fileName)).toEqual(['1.snapshot.json', '1.targets.json', '2.targets.json', 'timestamp.json']);
      });

      it('uses a configured metadata repository instead of R/tuf', async () => {
        const repo = freshRepo('img');
        const custom = new MetadataStore({ store, metadataRepository: (r) => `tuf-mirror/${r}` });
        await custom.writeMetadata(repo, '1.root.json', metadataBytes('root', 1));
        expect(await store.listTags(`tuf-mirror/${repo}`)).toEqual(['1.root.json']);
        expect(await store.listTags(`${repo}/tuf`)).toEqual([]);
        expect(custom.metadataRepository(repo)).toBe(`tuf-mirror/${repo}`);
      });
    });
  });
}
