/**
 * The checked wrapper on its own, over a backend spy: bad arguments are
 * refused with named errors before the backend is called, the backend's own
 * StorageErrors pass through, anything else it throws becomes a named
 * UNAVAILABLE, optional methods exist exactly when the backend has them, and
 * every call that reached the backend is reported to the observer.
 */
import { describe, expect, it } from 'vitest';
import { CheckedStore, checkedStore, type StoreCall } from '../../src/storage/checked-store.ts';
import { MemoryStore } from '../../src/storage/memory-store.ts';
import { OciLayoutStore } from '../../src/storage/oci-layout-store.ts';
import { RegistryStore } from '../../src/storage/registry-store.ts';
import { StorageError } from '../../src/storage/storage-error.ts';
import { OCI_MANIFEST_MEDIA_TYPE, type Store } from '../../src/storage/store.ts';

const DIGEST = `sha256:${'a'.repeat(64)}`;

/** A backend that records every call and answers from `answer` (or throws what it returns, if an Error). */
function spyBackend(answer: (operation: string) => unknown = () => undefined): { store: Store; calls: string[] } {
  const calls: string[] = [];
  const call = async (operation: string): Promise<never> => {
    calls.push(operation);
    const value = answer(operation);
    if (value instanceof Error) throw value;
    return value as never;
  };
  const store: Store = {
    backend: 'spy',
    ping: () => call('ping'),
    putBlob: () => call('putBlob'),
    hasBlob: () => call('hasBlob'),
    getBlob: () => call('getBlob'),
    putManifest: () => call('putManifest'),
    getManifest: () => call('getManifest'),
    listRepositories: () => call('listRepositories'),
    listTags: () => call('listTags'),
    deleteManifest: () => call('deleteManifest'),
    deleteTag: () => call('deleteTag'),
    listReferrers: () => call('listReferrers'),
    putManifests: () => call('putManifests'),
    getManifestIfNoneMatch: () => call('getManifestIfNoneMatch'),
  };
  return { store, calls };
}

async function refusal(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error('expected a rejection, got success');
    },
    (error: unknown) => error,
  );
}

async function expectInvalidName(promise: Promise<unknown>, repository: string, reference: string): Promise<void> {
  const error = await refusal(promise);
  expect(error).toBeInstanceOf(StorageError);
  expect((error as StorageError).code).toBe('INVALID_NAME');
  expect((error as StorageError).detail).toMatchObject({ backend: 'spy', repository, reference });
}

describe('checkedStore', () => {
  it('refuses bad names, digests, references and bounds before the backend is called', async () => {
    const { store: backend, calls } = spyBackend();
    const store = checkedStore(backend);
    await expectInvalidName(store.putBlob('Upper/Case', new Uint8Array()), 'Upper/Case', '');
    await expectInvalidName(store.hasBlob('ok/repo', 'sha256:XYZ'), 'ok/repo', 'sha256:XYZ');
    await expectInvalidName(store.getBlob('ok/repo', `md5:${'a'.repeat(32)}`, 10), 'ok/repo', `md5:${'a'.repeat(32)}`);
    await expectInvalidName(store.putManifest('ok/repo', '../escape', new Uint8Array(), OCI_MANIFEST_MEDIA_TYPE), 'ok/repo', '../escape');
    await expectInvalidName(store.getManifest('ok/repo', '.hidden', 10), 'ok/repo', '.hidden');
    await expectInvalidName(store.listTags('../etc'), '../etc', '');
    await expectInvalidName(store.deleteManifest('ok/repo', 'latest'), 'ok/repo', 'latest');
    await expectInvalidName(store.deleteTag('ok/repo', DIGEST), 'ok/repo', DIGEST);
    await expectInvalidName(store.listReferrers!('ok/repo', 'nope', { maxBytes: 10 }), 'ok/repo', 'nope');
    await expectInvalidName(store.getManifestIfNoneMatch!('ok/repo', 'latest', 'sha256:nothex', 10), 'ok/repo', 'sha256:nothex');
    const entry = { bytes: new Uint8Array(), mediaType: OCI_MANIFEST_MEDIA_TYPE, blobs: [] };
    await expectInvalidName(store.putManifests!('ok/repo', [{ reference: 'first', ...entry }, { reference: 'bad tag', ...entry }]), 'ok/repo', 'bad tag');
    await expect(store.getBlob('ok/repo', DIGEST, -1)).rejects.toBeInstanceOf(RangeError);
    await expect(store.getManifest('ok/repo', 'latest', 1.5)).rejects.toBeInstanceOf(RangeError);
    await expect(store.listReferrers!('ok/repo', DIGEST, { maxBytes: Number.NaN })).rejects.toBeInstanceOf(RangeError);
    expect(calls).toEqual([]);
  });

  it('forwards well-formed calls and passes the backend\u2019s StorageErrors through unchanged', async () => {
    const own = new StorageError('NOT_FOUND', 'no such tag', { backend: 'spy', repository: 'ok/repo', reference: 'latest' });
    const { store: backend, calls } = spyBackend((operation) => (operation === 'getManifest' ? own : operation === 'listTags' ? ['a', 'b'] : undefined));
    const store = checkedStore(backend);
    expect(await store.listTags('ok/repo')).toEqual(['a', 'b']);
    expect(await refusal(store.getManifest('ok/repo', 'latest', 10))).toBe(own);
    await store.hasBlob('ok/repo', DIGEST);
    expect(calls).toEqual(['listTags', 'getManifest', 'hasBlob']);
  });

  it('names an untyped backend failure as UNAVAILABLE with backend, operation, repository and reference', async () => {
    const cause = new Error('EIO: i/o error');
    const { store: backend } = spyBackend(() => cause);
    const error = await refusal(checkedStore(backend).getManifest('ok/repo', 'latest', 10));
    expect(error).toBeInstanceOf(StorageError);
    expect((error as StorageError).code).toBe('UNAVAILABLE');
    expect((error as StorageError).detail).toMatchObject({ backend: 'spy', repository: 'ok/repo', reference: 'latest', operation: 'getManifest' });
    expect((error as StorageError).cause).toBe(cause);
    expect((error as StorageError).message).toContain('EIO');
  });

  it('has the optional methods exactly when the backend has them, and wraps a store only once', () => {
    const { store: full } = spyBackend();
    const { listReferrers: _a, putManifests: _b, getManifestIfNoneMatch: _c, ...minimal } = full;
    const checkedMinimal = checkedStore(minimal);
    expect(checkedMinimal.listReferrers).toBeUndefined();
    expect(checkedMinimal.putManifests).toBeUndefined();
    expect(checkedMinimal.getManifestIfNoneMatch).toBeUndefined();
    expect(checkedStore(full).listReferrers).toBeTypeOf('function');
    expect(checkedStore(checkedMinimal)).toBe(checkedMinimal);
    expect(new MemoryStore().listReferrers).toBeUndefined();
  });

  it('tells the observer about every call that reached the backend, with its outcome', async () => {
    const seen: StoreCall[] = [];
    const { store: backend } = spyBackend((operation) =>
      operation === 'getBlob' ? new StorageError('TOO_LARGE', 'big', { backend: 'spy', repository: 'ok/repo', reference: DIGEST }) : undefined,
    );
    const store = checkedStore(backend, { observe: (call) => seen.push(call) });
    await store.ping();
    await refusal(store.getBlob('ok/repo', DIGEST, 1));
    await refusal(store.getBlob('ok/repo', 'bad', 1)); // refused by the checks: never reached the backend
    expect(seen.map(({ operation, outcome, backend: name }) => ({ operation, outcome, backend: name }))).toEqual([
      { operation: 'ping', outcome: 'ok', backend: 'spy' },
      { operation: 'getBlob', outcome: 'TOO_LARGE', backend: 'spy' },
    ]);
    for (const call of seen) expect(call.seconds).toBeGreaterThanOrEqual(0);
  });

  it('is what every backend class is built as', () => {
    expect(new MemoryStore()).toBeInstanceOf(CheckedStore);
    expect(new OciLayoutStore({ root: '/nonexistent/layout' })).toBeInstanceOf(CheckedStore);
    expect(new RegistryStore({ url: 'http://127.0.0.1:9' })).toBeInstanceOf(CheckedStore);
  });
});
