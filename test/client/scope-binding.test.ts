/**
 * One owner, the same root, targets and CI keys for two repositories (what the
 * seed notes ask for): a store that serves repository A's metadata as B's is
 * refused, by the scope every root names and by the snapshot's hashes.
 */
import { describe, expect, it } from 'vitest';
// Every verify runs through the client core and the unmodified tuf-js Updater; both must agree.
import { verifyBothClients as verifyImage } from '../support/differential.ts';
import { ADMIN, CI, ServiceHarness } from '../service/harness.ts';
import { pushImage, type PushedImage } from '../support/image.ts';

const A = 'wabbit-networks/app-a';
const B = 'wabbit-networks/app-b';

interface Two {
  h: ServiceHarness;
  a: PushedImage;
  b: PushedImage;
  pinB: Uint8Array;
}

async function file(h: ServiceHarness, repo: string, name: string): Promise<Uint8Array> {
  const r = await h.request('GET', `/v1/repos/${repo}/metadata/${name}`);
  expect(r.status, `${repo} ${name}`).toBe(200);
  return new Uint8Array(r.body);
}

async function twoRepositories(): Promise<Two> {
  const h = new ServiceHarness();
  for (const repo of [A, B]) expect((await h.create(repo)).status).toBe(201);
  const a = await pushImage(h.store, A, 'v1', 'built for A');
  const b = await pushImage(h.store, B, 'v1', 'built for B');
  await pushImage(h.store, B, 'copied-from-a', 'built for A'); // the registry also holds A's image under B
  for (const [repo, img] of [[A, a], [B, b]] as const) {
    const r = await h.request('PUT', `/v1/repos/${repo}/metadata/1.ci.json`, { token: CI, body: await h.ciBytes(1, { v1: img }) });
    expect(r.status, r.body.toString()).toBe(201);
  }
  return { h, a, b, pinB: await file(h, B, '1.root.json') };
}

describe('a repository\'s trust is bound to its scope', () => {
  it('every root the service writes names its repository, and a root naming another is refused at upload', async () => {
    const { h } = await twoRepositories();
    const root = JSON.parse(new TextDecoder().decode(await file(h, B, '1.root.json')));
    expect(root.signed['x-tufoci-scope']).toBe(B);
    const wrong = await h.request('PUT', `/v1/repos/${B}/metadata/2.root.json`, { token: ADMIN, body: await h.rootBytes(2, [h.owner.root], A) });
    expect(wrong.status).toBe(422);
    expect(wrong.json<{ error: { code: string } }>().error.code).toBe('SCOPE_MISMATCH');
    expect((await file(h, B, 'timestamp.json')).byteLength).toBeGreaterThan(0);
    expect((await h.request('GET', `/v1/repos/${B}/metadata/2.root.json`)).status).toBe(404);
  });

  it('the baseline: B verifies as B', async () => {
    const { h, b, pinB } = await twoRepositories();
    const r = await verifyImage({ store: h.store, repository: B, tag: 'v1', trustedRoot: pinB });
    expect(r.digest).toBe(b.digest);
  });

  it("A's whole root chain, timestamp, snapshot and targets served as B's are refused for a client pinned to B", async () => {
    const { h, pinB } = await twoRepositories();
    // A's root moves to v2, signed by the root key both repositories share.
    expect((await h.request('PUT', `/v1/repos/${A}/metadata/2.root.json`, { token: ADMIN, body: await h.rootBytes(2, [h.owner.root], A) })).status).toBe(201);
    const ts = JSON.parse(new TextDecoder().decode(await file(h, A, 'timestamp.json')));
    const snapName = `${ts.signed.meta['snapshot.json'].version}.snapshot.json`;
    const names = ['2.root.json', snapName, '1.targets.json', '1.ci.json'];
    const files = await Promise.all(names.map(async (fileName) => ({ fileName, bytes: await file(h, A, fileName) })));
    await h.metadata.publish(B, [...files, { fileName: 'timestamp.json', bytes: await file(h, A, 'timestamp.json') }], { replaceable: new Set(names) });
    await expect(verifyImage({ store: h.store, repository: B, tag: 'v1', trustedRoot: pinB })).rejects.toThrow(/2\.root\.json vouches for "wabbit-networks\/app-a", not for wabbit-networks\/app-b/);
    // A client pinned to A's own root is not fooled into taking it as B's either.
    await expect(verifyImage({ store: h.store, repository: B, tag: 'v1', trustedRoot: await file(h, A, '1.root.json') })).rejects.toThrow(/vouches for "wabbit-networks\/app-a"/);
  });

  it("A's targets file of the same version, signed by the shared key, is refused under B's own snapshot", async () => {
    const { h, pinB } = await twoRepositories();
    await h.metadata.publish(B, [{ fileName: '1.ci.json', bytes: await file(h, A, '1.ci.json') }], { replaceable: new Set(['1.ci.json']) });
    await expect(verifyImage({ store: h.store, repository: B, tag: 'v1', trustedRoot: pinB })).rejects.toMatchObject({ code: 'TUF_REFUSED' });
  });

  it('a scoped chain never loses its scope: an unscoped root after a scoped one is refused', async () => {
    const { h, pinB } = await twoRepositories();
    const json = JSON.parse(new TextDecoder().decode(await h.rootBytes(2, [h.owner.root], B)));
    delete json.signed['x-tufoci-scope'];
    const { canonicalSignedBytes } = await import('../../src/engine/canonical.ts');
    json.signatures = [await h.owner.root.sign(canonicalSignedBytes(json.signed))];
    // Served with the timestamp re-tagged to say root 2 is current, so that the client asks for it
    // (a hint saying root 1 would only make it skip the file, as a 404 would).
    const timestamp = await file(h, B, 'timestamp.json');
    await h.metadata.publish(B, [{ fileName: '2.root.json', bytes: new TextEncoder().encode(JSON.stringify(json)) }, { fileName: 'timestamp.json', bytes: timestamp }], { rootVersion: 2 });
    await expect(verifyImage({ store: h.store, repository: B, tag: 'v1', trustedRoot: pinB })).rejects.toThrow(/2\.root\.json names no scope/);
  });

  it('metadata a hostile store serves with duplicate names or impossible dates is refused before tuf-js reads it', async () => {
    const { h, pinB } = await twoRepositories();
    const ts = new TextDecoder().decode(await file(h, B, 'timestamp.json'));
    await h.metadata.publish(B, [{ fileName: 'timestamp.json', bytes: new TextEncoder().encode(ts.replace('"signed":{', '"signed":{"version":999,')) }]);
    await expect(verifyImage({ store: h.store, repository: B, tag: 'v1', trustedRoot: pinB })).rejects.toThrow(/duplicate member name "version"/);
  });
});
