/**
 * Client fetch efficiency straight from a registry (RegistryFetcher through
 * verifyImage, real docker-registry, requests counted at an HTTP proxy in
 * front of it): a warm client reads one manifest of TUF metadata, roots are
 * still found and rotated through, and a skipped probe is never why a client
 * stays behind.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { verifyImage, type VerifyImageOptions } from '../../src/client/verify-image.ts';
import { buildRoot, produceSnapshotAndTimestamp, signMetadata, verifyRootUpload } from '../../src/engine/index.ts';
import type { InMemorySigner } from '../../src/keys/index.ts';
import { MetadataStore, RegistryStore } from '../../src/storage/index.ts';
import { SimRepo, signer } from '../support/engine-repo.ts';
import { pushImage, type PushedImage } from '../support/image.ts';
import { pushSignature, signDescriptor } from '../../src/client/signatures.ts';
import { startRegistry, type RegistryServer } from '../support/registry-server.ts';
import { startCountingProxy, type CountingProxy } from './counting-proxy.ts';

let registry: RegistryServer;
let proxy: CountingProxy;
let direct: RegistryStore;
let counted: RegistryStore;
let v1: PushedImage;
const dirs: string[] = [];
let n = 0;

beforeAll(async () => {
  registry = await startRegistry();
  proxy = await startCountingProxy(registry.url);
  direct = new RegistryStore({ url: registry.url });
  counted = new RegistryStore({ url: proxy.url });
});
afterAll(async () => {
  await proxy?.close();
  await registry?.stop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const tmp = (): string => {
  const d = mkdtempSync(join(tmpdir(), 'tufoci-reg-fetch-'));
  dirs.push(d);
  return d;
};

/** One repository per test: a SimRepo (service-side engine, in memory) published to the registry. */
class World {
  readonly repo = `wabbit-networks/fetch-${++n}`;
  readonly sim = new SimRepo();
  readonly metadata = new MetadataStore({ store: direct });
  timestampKeys: InMemorySigner[] = [];
  /** Whether the timestamp's manifest names the root version (what tufoci writers do; older ones and other tools do not). */
  readonly rootHint: boolean;

  constructor(opts: { rootHint?: boolean } = {}) {
    this.rootHint = opts.rootHint ?? true;
  }

  async init(): Promise<this> {
    await this.sim.init();
    v1 = await pushImage(direct, this.repo, 'v1');
    await this.sim.upload('ci', await this.sim.targetsBytes({ version: 1, targets: { v1: { ...v1 } } }, [this.sim.ciKey]));
    this.timestampKeys = [this.sim.timestampKey];
    await this.sync();
    return this;
  }

  /** Publish every file produced so far, timestamp last (what the service does). */
  async sync(opts: { withoutTimestamp?: boolean } = {}): Promise<void> {
    const files = [...this.sim.files].filter(([name]) => name !== 'timestamp.json').map(([fileName, bytes]) => ({ fileName, bytes }));
    const ts = this.sim.files.get('timestamp.json') as Uint8Array;
    // As the service writes them: the timestamp's manifest names the root version current now.
    await this.metadata.publish(this.repo, opts.withoutTimestamp ? files : [...files, { fileName: 'timestamp.json', bytes: ts }], this.rootHint ? { rootVersion: this.sim.state.root.md.signed.version } : {});
  }

  /** Root N+1 (optionally naming a new timestamp key), verified by the engine; snapshot and timestamp re-signed. */
  async rotateRoot(newTimestampKey?: InMemorySigner): Promise<Uint8Array> {
    const s = this.sim;
    const version = s.state.root.md.signed.version + 1;
    if (newTimestampKey) this.timestampKeys = [newTimestampKey];
    const bytes = await signMetadata(
      buildRoot({
        version,
        expires: s.expires(365),
        root: { keys: [s.root1.public], threshold: 1 },
        targets: { keys: [s.targetsKey.public], threshold: 1 },
        snapshot: { keys: [s.snapshotKey.public], threshold: 1 },
        timestamp: { keys: this.timestampKeys.map((k) => k.public), threshold: 1 },
      }),
      [s.root1],
    );
    s.state = verifyRootUpload(s.state, bytes, { ...s.ctx, onlineKeys: [s.snapshotKey.public, ...this.timestampKeys.map((k) => k.public)] }).state;
    s.files.set(`${version}.root.json`, bytes);
    const out = await produceSnapshotAndTimestamp(s.state, { ...s.online, signers: { snapshot: [s.snapshotKey], timestamp: this.timestampKeys } });
    s.state = out.state;
    for (const f of out.files) s.files.set(f.name, f.bytes);
    return bytes;
  }

  verify(stateDir: string | undefined, extra: Partial<VerifyImageOptions> = {}) {
    return verifyImage({ store: counted, repository: this.repo, tag: 'v1', trustedRoot: this.sim.files.get('1.root.json') as Uint8Array, ...(stateDir ? { stateDir } : {}), ...extra });
  }

  /** TUF metadata requests since the last reset: `<kind> <file or digest-kind> <status>`. */
  metadataRequests(): string[] {
    const prefix = `/v2/${this.repo}/tuf/`;
    return proxy.requests
      .filter((r) => r.path.startsWith(prefix))
      .map((r) => {
        const [kind, ref] = r.path.slice(prefix.length).split('/') as [string, string];
        return `${kind} ${kind === 'blobs' ? 'blob' : ref} ${r.status}`;
      });
  }
}

beforeEach(() => proxy.reset());

describe('verifyImage straight from the registry: requests per verify', () => {
  it('cold: one manifest per file (small files ride in it), no root probe (the timestamp names root 1); warm: one request', async () => {
    const w = await new World().init();
    const state = tmp();
    expect((await w.verify(state)).digest).toBe(v1.digest);
    const [first, second, ...roles] = w.metadataRequests();
    expect([first, second]).toEqual(['manifests timestamp.json 200', 'manifests 2.snapshot.json 200']);
    // The likely path is requested together after the snapshot: answered in either order.
    expect(roles.sort()).toEqual(['manifests 1.ci.json 200', 'manifests 1.targets.json 200']);
    for (let i = 0; i < 3; i++) {
      proxy.reset();
      expect((await w.verify(state)).digest).toBe(v1.digest);
      expect(w.metadataRequests()).toEqual(['manifests timestamp.json 200']);
    }
  });

  it('a new root (with its new timestamp) is found and rotated through; then warm is one request again', async () => {
    const w = await new World().init();
    const state = tmp();
    await w.verify(state);
    await w.rotateRoot();
    await w.rotateRoot(signer()); // root 3 also replaces the timestamp key
    await w.sync();
    proxy.reset();
    const r = await w.verify(state);
    expect(r.tuf.root).toBe(3);
    expect(w.metadataRequests().slice(0, 3)).toEqual(['manifests timestamp.json 200', 'manifests 2.root.json 200', 'manifests 3.root.json 200']);
    expect(w.metadataRequests().filter((r) => r.includes('4.root.json'))).toEqual([]); // the timestamp names root 3
    proxy.reset();
    expect((await w.verify(state)).tuf.root).toBe(3);
    expect(w.metadataRequests()).toEqual(['manifests timestamp.json 200']);
  });

  it('image facts: a cold verify makes 6 requests in all, a warm one 2 (the timestamp and the registry tag), whatever the signature policy asked before', async () => {
    const w = await new World().init();
    await pushSignature(direct, w.repo, v1, await signDescriptor(v1, [w.sim.ciKey]));
    const policy = { keys: [w.sim.ciKey.public] };
    const state = tmp();
    proxy.reset();
    expect((await w.verify(state, { signatures: policy })).signers).toEqual([w.sim.ciKey.keyid]);
    const all = (): string[] => proxy.requests.map((r) => `${r.method} ${r.path.replace(`/v2/${w.repo}`, '')} ${r.status}`);
    // TUF: 4 manifests, small files riding in them; image: the tag (which is the manifest) and the referrers tag (which carries the signature).
    expect(all().sort()).toEqual(
      [
        'GET /manifests/v1 200',
        `GET /manifests/${v1.digest.replace(':', '-')} 200`,
        'GET /tuf/manifests/timestamp.json 200',
        'GET /tuf/manifests/2.snapshot.json 200',
        'GET /tuf/manifests/1.targets.json 200',
        'GET /tuf/manifests/1.ci.json 200',
      ].sort(),
    );
    proxy.reset();
    expect((await w.verify(state, { signatures: policy })).signers).toEqual([w.sim.ciKey.keyid]);
    expect(all().sort()).toEqual(['GET /manifests/v1 200', 'GET /tuf/manifests/timestamp.json 200']);
    const { readdirSync, statSync } = await import('node:fs');
    // Every file of the saved state is the client's alone; none is left half-written.
    const files = readdirSync(state);
    expect(files).toEqual(expect.arrayContaining(['.tufoci-images', '.tufoci-verified', 'root.json', 'timestamp.json', 'snapshot.json', 'targets.json', 'ci.json']));
    for (const f of files) expect(statSync(join(state, f)).mode & 0o777, f).toBe(0o600);
    expect(files.filter((f) => f.startsWith('.tmp'))).toEqual([]);
    // Another policy is another fact: its signatures are verified (and refused) afresh.
    proxy.reset();
    await expect(w.verify(state, { signatures: { keys: [signer().public] } })).rejects.toThrow(/signed by 0 of the 1 trusted key/);
    expect(all()).toContain(`GET /manifests/${v1.digest.replace(':', '-')} 200`);
  });

  it('a root version on the timestamp that is too high only costs a probe: the walk ends at the 404 and the client verifies', async () => {
    const w = await new World().init();
    await w.metadata.writeMetadata(w.repo, 'timestamp.json', w.sim.files.get('timestamp.json') as Uint8Array, { rootVersion: 7 });
    const state = tmp();
    expect((await w.verify(state)).tuf.root).toBe(1);
    expect(w.metadataRequests().filter((r) => r.includes('root.json'))).toEqual(['manifests 2.root.json 404']);
  });

  it('a root published without a new timestamp is found as soon as the timestamp moves', async () => {
    const w = await new World().init();
    const state = tmp();
    await w.verify(state);
    const oldTimestamp = w.sim.files.get('timestamp.json') as Uint8Array;
    await w.rotateRoot();
    await w.sync({ withoutTimestamp: true }); // a writer that is not tufoci: root and snapshot, timestamp not (yet) moved
    proxy.reset();
    expect((await w.verify(state)).tuf.root).toBe(1); // what an attacker answering 404 for 2.root.json also gets
    expect(w.metadataRequests()).toEqual(['manifests timestamp.json 200']);
    expect(readFileSync(join(state, 'timestamp.json'))).toEqual(Buffer.from(oldTimestamp));
    await w.metadata.writeMetadata(w.repo, 'timestamp.json', w.sim.files.get('timestamp.json') as Uint8Array);
    proxy.reset();
    expect((await w.verify(state)).tuf.root).toBe(2);
    expect(w.metadataRequests()).toContain('manifests 2.root.json 200');
  });

  it('without a root version on the timestamp: probes again when the record of the last root walk does not match the trusted state', async () => {
    const w = await new World({ rootHint: false }).init();
    const state = tmp();
    await w.verify(state);
    rmSync(join(state, '.tufoci-root-walk'));
    proxy.reset();
    await w.verify(state);
    expect(w.metadataRequests()).toEqual(['manifests timestamp.json 200', 'manifests 2.root.json 404']); // layer not downloaded: same digest
    proxy.reset();
    await w.verify(state);
    expect(w.metadataRequests()).toEqual(['manifests timestamp.json 200']);
    writeFileSync(join(state, '.tufoci-root-walk'), JSON.stringify({ timestamp: '0'.repeat(64), root: 1 }));
    proxy.reset();
    await w.verify(state);
    expect(w.metadataRequests()).toEqual(['manifests timestamp.json 200', 'manifests 2.root.json 404']);
  });

  it('a walk cut short by maxRootRotations is not a complete walk: the next run walks on', async () => {
    const w = await new World().init();
    const state = tmp();
    await w.verify(state);
    for (let i = 0; i < 3; i++) await w.rotateRoot();
    await w.sync();
    expect((await w.verify(state, { maxRootRotations: 2 })).tuf.root).toBe(3);
    proxy.reset();
    expect((await w.verify(state, { maxRootRotations: 2 })).tuf.root).toBe(4);
    expect(w.metadataRequests().slice(0, 2)).toEqual(['manifests timestamp.json 200', 'manifests 4.root.json 200']);
  });

  it('a refresh that failed after a skipped probe is repeated with every probe sent: a hint never leaves a client stuck', async () => {
    const w = await new World({ rootHint: false }).init();
    const state = tmp();
    await w.verify(state);
    // Root 2 replaces the timestamp key; the state directory then claims (wrongly) that the new
    // timestamp was covered by a complete walk under root 1.
    await w.rotateRoot(signer());
    await w.sync();
    const ts = w.sim.files.get('timestamp.json') as Uint8Array;
    writeFileSync(join(state, 'timestamp.json'), ts);
    const { createHash } = await import('node:crypto');
    writeFileSync(join(state, '.tufoci-root-walk'), JSON.stringify({ timestamp: createHash('sha256').update(ts).digest('hex'), root: 1 }));
    proxy.reset();
    const r = await w.verify(state);
    expect(r.tuf.root).toBe(2);
    // First attempt: no probe (the record says covered) → tuf-js refuses the timestamp under root 1;
    // second attempt: the probe goes out and finds root 2.
    expect(w.metadataRequests().filter((x) => x.includes('root.json'))).toEqual(['manifests 2.root.json 200', 'manifests 3.root.json 404']);
  });

  it('tampered and rolled-back timestamps are refused as before', async () => {
    const w = await new World().init();
    const state = tmp();
    await w.verify(state);
    const old = w.sim.files.get('timestamp.json') as Uint8Array;
    await w.sim.upload('ci', await w.sim.targetsBytes({ version: 2, targets: { v1: { ...v1 } } }, [w.sim.ciKey]));
    await w.sync();
    await w.verify(state);
    await w.metadata.writeMetadata(w.repo, 'timestamp.json', old);
    await expect(w.verify(state)).rejects.toThrow(/rollback/);
    await w.sync();
    expect((await w.verify(state)).digest).toBe(v1.digest);
  });
});
