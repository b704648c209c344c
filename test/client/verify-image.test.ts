/**
 * Both layers against a real registry: TUF metadata stored in `R/tuf`, plain
 * DSSE signatures as referrers (tag schema), and the attacks a registry can
 * mount — each refused with a reason a person understands.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { VerifyError } from '../../src/client/verify-image.ts';
// Every verify runs through the client core and the unmodified tuf-js Updater; both must agree.
import { verifyBothClients as verifyImage } from '../support/differential.ts';
import { pushSignature, signDescriptor, SignatureError } from '../../src/client/signatures.ts';
import { MetadataStore, RegistryStore, OCI_MANIFEST_MEDIA_TYPE } from '../../src/storage/index.ts';
import { produceTimestamp } from '../../src/engine/index.ts';
import { SimRepo, signer } from '../support/engine-repo.ts';
import { startRegistry, type RegistryServer } from '../support/registry-server.ts';
import { pushImage, type PushedImage } from '../support/image.ts';

const REPO = 'wabbit-networks/net-monitor';
let registry: RegistryServer;
let store: RegistryStore;
let metadata: MetadataStore;
let repo: SimRepo;
let v1: PushedImage;
let v1old: PushedImage;

async function sync(): Promise<void> {
  // Publish every file the simulated service produced, timestamp last.
  const files = [...repo.files].filter(([n]) => n !== 'timestamp.json').map(([fileName, bytes]) => ({ fileName, bytes }));
  await metadata.publish(REPO, [...files, { fileName: 'timestamp.json', bytes: repo.files.get('timestamp.json') as Uint8Array }]);
}

beforeAll(async () => {
  registry = await startRegistry();
  store = new RegistryStore({ url: registry.url });
  metadata = new MetadataStore({ store });
  v1old = await pushImage(store, REPO, 'v1', 'v1 (old build)');
  v1 = await pushImage(store, REPO, 'v1', 'v1 (security fix)');
  repo = await new SimRepo().init();
  await repo.upload('ci', await repo.targetsBytes({ version: 1, targets: { v1: { ...v1old } } }, [repo.ciKey]));
  await repo.upload('ci', await repo.targetsBytes({ version: 2, targets: { v1: { ...v1 } } }, [repo.ciKey]));
  await sync();
  for (const img of [v1, v1old]) await pushSignature(store, REPO, img, await signDescriptor(img, [repo.ciKey]));
});
afterAll(async () => registry?.stop());

const root = (): Uint8Array => repo.files.get('1.root.json') as Uint8Array;

describe('verifyImage against a real registry', () => {
  it('answers the digest TUF names, with its signers', async () => {
    const r = await verifyImage({ store, repository: REPO, tag: 'v1', trustedRoot: root(), signatures: { keys: [repo.ciKey.public] } });
    expect(r.digest).toBe(v1.digest);
    expect(r.signers).toEqual([repo.ciKey.keyid]);
    expect(r.registryTag).toEqual({ digest: v1.digest, agrees: true });
    expect(r.tuf.timestamp).toBe(repo.state.timestamp?.md.signed.version);
  });

  it('refuses a client that trusts another root', async () => {
    const other = await new SimRepo().init();
    await expect(verifyImage({ store, repository: REPO, tag: 'v1', trustedRoot: other.files.get('1.root.json') as Uint8Array })).rejects.toMatchObject({ code: 'TUF_REFUSED' });
  });

  it('refuses a tag TUF does not list, and a signature policy the signatures do not meet', async () => {
    await expect(verifyImage({ store, repository: REPO, tag: 'v9', trustedRoot: root() })).rejects.toThrow(/tag v9 of .* is not signed by any trusted key/);
    const err = await verifyImage({ store, repository: REPO, tag: 'v1', trustedRoot: root(), signatures: { keys: [signer().public] } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SignatureError);
    expect((err as SignatureError).code).toBe('NOT_SIGNED');
  });

  it('when the registry tag moves back to the old signed digest, answers the TUF digest and says so', async () => {
    const oldManifest = await store.getManifest(REPO, v1old.digest, 10_000);
    await store.putManifest(REPO, 'v1', oldManifest.bytes, OCI_MANIFEST_MEDIA_TYPE);
    const r = await verifyImage({ store, repository: REPO, tag: 'v1', trustedRoot: root(), signatures: { keys: [repo.ciKey.public] } });
    expect(r.digest).toBe(v1.digest);
    expect(r.registryTag).toEqual({ digest: v1old.digest, agrees: false });
  });

  it('refuses a rolled-back timestamp once a newer one was trusted (state kept across runs)', async () => {
    const state = mkdtempSync(join(tmpdir(), 'tufoci-state-'));
    const oldTs = repo.files.get('timestamp.json') as Uint8Array;
    await repo.upload('ci', await repo.targetsBytes({ version: 3, targets: { v1: { ...v1 }, v2: { ...v1 } } }, [repo.ciKey]));
    await sync();
    expect((await verifyImage({ store, repository: REPO, tag: 'v1', trustedRoot: root(), stateDir: state })).digest).toBe(v1.digest);
    await metadata.writeMetadata(REPO, 'timestamp.json', oldTs); // the registry serves an old timestamp
    const err = await verifyImage({ store, repository: REPO, tag: 'v1', trustedRoot: root(), stateDir: state }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(VerifyError);
    expect((err as VerifyError).message).toMatch(/serves timestamp \d+, the client already trusts \d+ \(rollback\)/);
    await sync(); // restore
  });

  it('refuses an expired timestamp (freeze)', async () => {
    const frozen = await produceTimestamp(repo.state, { ...repo.online, now: repo.now - 30 * 86_400_000 });
    await metadata.writeMetadata(REPO, 'timestamp.json', frozen.files[0]?.bytes as Uint8Array);
    const err = await verifyImage({ store, repository: REPO, tag: 'v1', trustedRoot: root() }).catch((e: unknown) => e);
    expect((err as VerifyError).code).toBe('TUF_REFUSED');
    expect((err as VerifyError).message).toMatch(/expired/i);
    await sync();
  });
});
