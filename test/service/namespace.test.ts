/**
 * Namespaces (docs/FORMAT.md §13): one root for `wabbit-networks/`, kept at its anchor; members
 * join with their targets alone, publish as any repository does, take every root rotation of the
 * namespace at once; and every way of passing one scope's metadata off as another's is refused,
 * by tufoci's client core and by the unmodified tuf-js Updater alike (verifyBothClients).
 */
import { describe, expect, it } from 'vitest';
import { verifyBothClients as verifyImage } from '../support/differential.ts';
import { ADMIN, CI, ServiceHarness } from './harness.ts';
import { pushImage } from '../support/image.ts';
import type { ImageTarget } from '../../src/engine/index.ts';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join as joinPath } from 'node:path';
import { verifyImage as verifyCore } from '../../src/client/verify-image.ts';
import { MemoryStore, type Store } from '../../src/storage/index.ts';
import { createHash } from 'node:crypto';
import { canonicalSignedBytes } from '../../src/engine/canonical.ts';

const NS = 'wabbit-networks/';
const ANCHOR = 'wabbit-networks/tufoci-namespace';
const MON = 'wabbit-networks/net-monitor';
const API = 'wabbit-networks/team-a/api';

async function file(h: ServiceHarness, repo: string, name: string): Promise<Uint8Array> {
  const r = await h.request('GET', `/v1/repos/${repo}/metadata/${name}`);
  expect(r.status, `${repo} ${name}`).toBe(200);
  return new Uint8Array(r.body);
}

function json(bytes: Uint8Array): { signed: Record<string, unknown> & { version: number } } {
  return JSON.parse(new TextDecoder().decode(bytes));
}

/** A member's 1.targets.json: names the member, delegates `<repo>/v*` to the owner's CI key. */
function memberTargets(h: ServiceHarness, repo: string, version = 1, opts: { scope?: string | null; paths?: string[]; namespace?: string } = {}): Promise<Uint8Array> {
  return h.targetsBytes({
    version,
    ...(opts.scope === null ? {} : { member: { repository: opts.scope ?? repo, namespace: opts.namespace ?? NS } }),
    delegations: [{ name: 'ci', keys: [h.ci.public], threshold: 1, paths: opts.paths ?? [`${repo}/v*`], terminating: true }],
  });
}

async function createNamespace(h: ServiceHarness, prefix = NS): Promise<Uint8Array> {
  const root = await h.rootBytes(1, [h.owner.root], prefix);
  const anchor = `${prefix}tufoci-namespace`;
  const targets = await h.targetsBytes({ version: 1, member: { repository: anchor, namespace: prefix } });
  const r = await h.request('POST', `/v1/repos/${anchor}`, { token: ADMIN, body: JSON.stringify({ root: json(root), targets: json(targets) }) });
  expect(r.status, r.body.toString()).toBe(201);
  return root;
}

async function join(h: ServiceHarness, repo: string, targets?: Uint8Array): Promise<void> {
  const r = await h.request('POST', `/v1/repos/${repo}`, { token: ADMIN, body: JSON.stringify({ targets: json(targets ?? (await memberTargets(h, repo))) }) });
  expect(r.status, r.body.toString()).toBe(201);
}

async function publishCi(h: ServiceHarness, repo: string, version: number, tags: Record<string, ImageTarget>): Promise<void> {
  const qualified = Object.fromEntries(Object.entries(tags).map(([t, img]) => [`${repo}/${t}`, img]));
  const r = await h.request('PUT', `/v1/repos/${repo}/metadata/${version}.ci.json`, { token: CI, body: await h.ciBytes(version, qualified) });
  expect(r.status, r.body.toString()).toBe(201);
}

async function namespaceWithTwo() {
  const h = new ServiceHarness();
  const pin = await createNamespace(h);
  await join(h, MON);
  await join(h, API);
  const mon = await pushImage(h.store, MON, 'v1', 'net-monitor v1');
  const api = await pushImage(h.store, API, 'v1', 'api v1');
  await publishCi(h, MON, 1, { v1: mon });
  await publishCi(h, API, 1, { v1: api });
  return { h, pin, mon, api };
}

describe('a namespace: one root, many repositories', () => {
  it('members join with their targets alone and verify under the one namespace root, through both clients', async () => {
    const { h, pin, mon, api } = await namespaceWithTwo();
    expect((await verifyImage({ store: h.store, repository: MON, tag: 'v1', trustedRoot: pin })).digest).toBe(mon.digest);
    expect((await verifyImage({ store: h.store, repository: API, tag: 'v1', trustedRoot: pin })).digest).toBe(api.digest);
    // A member keeps no root files: its roots are the anchor's, in the store and at the service; its own files name it.
    expect((await h.metadata.listMetadata(MON)).filter((f) => f.role === 'root')).toEqual([]);
    expect((await h.request('GET', `/v1/repos/${MON}/metadata/1.root.json`)).status).toBe(404);
    expect(Buffer.from(await file(h, ANCHOR, '1.root.json')).equals(Buffer.from(pin))).toBe(true);
    expect(json(await file(h, MON, 'timestamp.json')).signed['x-tufoci-scope']).toBe(MON);
    expect((await h.request('GET', `/v1/namespace-of/${API}`)).json()).toEqual({ namespace: NS, anchor: ANCHOR, rootVersion: 1 });
  });

  it('a target path names its repository: an unqualified tag, or another repository\'s, is refused at upload', async () => {
    const { h, mon } = await namespaceWithTwo();
    for (const path of ['v2', `${API}/v2`]) {
      const r = await h.request('PUT', `/v1/repos/${MON}/metadata/2.ci.json`, { token: CI, body: await h.ciBytes(2, { [path]: mon }) });
      expect(r.status, path).toBe(422);
    }
  });

  it("a member's targets must name the member; a namespace root is created only at its anchor", async () => {
    const h = new ServiceHarness();
    const pin = await createNamespace(h);
    const none = await h.request('POST', `/v1/repos/${MON}`, { token: ADMIN, body: JSON.stringify({ targets: json(await memberTargets(h, MON, 1, { scope: null })) }) });
    expect(none.status).toBe(422);
    expect(none.json<{ error: { code: string } }>().error.code).toBe('SCOPE_MISSING');
    const other = await h.request('POST', `/v1/repos/${MON}`, { token: ADMIN, body: JSON.stringify({ targets: json(await memberTargets(h, MON, 1, { scope: API })) }) });
    expect(other.json<{ error: { code: string } }>().error.code).toBe('SCOPE_MISMATCH');
    const direct = await h.request('POST', `/v1/repos/${MON}`, { token: ADMIN, body: JSON.stringify({ root: json(pin), targets: json(await memberTargets(h, MON)) }) });
    expect(direct.status).toBe(409);
    expect(direct.json<{ error: { code: string } }>().error.code).toBe('NAMESPACE_ROOT');
    const outside = await h.request('POST', '/v1/repos/acme-rockets/app', { token: ADMIN, body: JSON.stringify({ targets: json(await memberTargets(h, 'acme-rockets/app')) }) });
    expect(outside.status).toBe(404);
    expect(outside.json<{ error: { code: string } }>().error.code).toBe('NO_NAMESPACE');
  });

  it('one root rotation at the anchor reaches every member; a client pinned to root 1 follows it', async () => {
    const { h, pin, mon, api } = await namespaceWithTwo();
    const r = await h.request('PUT', `/v1/repos/${ANCHOR}/metadata/2.root.json`, { token: ADMIN, body: await h.rootBytes(2, [h.owner.root], NS) });
    expect(r.status, r.body.toString()).toBe(201);
    expect(r.json<{ members: unknown }>().members).toEqual({ namespace: NS, rootVersion: 2, updated: 2, failed: [] });
    for (const [repo, img] of [[MON, mon], [API, api]] as const) {
      const v = await verifyImage({ store: h.store, repository: repo, tag: 'v1', trustedRoot: pin });
      expect(v).toMatchObject({ digest: img.digest, tuf: { root: 2 } });
    }
    // Syncing again changes nothing; a member never takes a root of its own.
    expect((await h.request('POST', `/v1/namespace-sync/${ANCHOR}`, { token: ADMIN, body: '{}' })).json()).toEqual({ namespace: NS, rootVersion: 2, updated: 0, failed: [] });
    const own = await h.request('PUT', `/v1/repos/${MON}/metadata/3.root.json`, { token: ADMIN, body: await h.rootBytes(3, [h.owner.root], NS) });
    expect(own.status).toBe(409);
    expect(own.json<{ error: { code: string } }>().error.code).toBe('IN_NAMESPACE');
  });

  it('a client walks a rotation of the namespace root once, not once per member', async () => {
    const { h, pin, mon, api } = await namespaceWithTwo();
    for (const v of [2, 3]) expect((await h.request('PUT', `/v1/repos/${ANCHOR}/metadata/${v}.root.json`, { token: ADMIN, body: await h.rootBytes(v, [h.owner.root], NS) })).status).toBe(201);
    const asked: string[] = [];
    const counting = new Proxy(h.store, {
      get(target, prop, receiver) {
        const value = Reflect.get(target, prop, receiver) as unknown;
        if (prop !== 'getManifest' || typeof value !== 'function') return typeof value === 'function' ? value.bind(target) : value;
        return (repo: string, ref: string, max: number) => {
          asked.push(`${repo}:${ref}`);
          return (value as Store['getManifest']).call(target, repo, ref, max);
        };
      },
    });
    const base = mkdtempSync(joinPath(tmpdir(), 'tufoci-ns-walk-'));
    const namespaceStateDir = joinPath(base, 'ns');
    const first = await verifyCore({ store: counting, repository: MON, tag: 'v1', trustedRoot: pin, stateDir: joinPath(base, 'mon'), namespaceStateDir });
    expect(first).toMatchObject({ digest: mon.digest, tuf: { root: 3 } });
    // A member keeps no root files: the namespace's are read at its anchor.
    expect(asked).toEqual(expect.arrayContaining([`${ANCHOR}/tuf:2.root.json`, `${ANCHOR}/tuf:3.root.json`]));
    expect(asked.filter((a) => a.startsWith(`${MON}/tuf:`) && a.endsWith('.root.json'))).toEqual([]);
    asked.length = 0;
    const second = await verifyCore({ store: counting, repository: API, tag: 'v1', trustedRoot: pin, stateDir: joinPath(base, 'api'), namespaceStateDir });
    expect(second).toMatchObject({ digest: api.digest, tuf: { root: 3 } });
    expect(asked.filter((a) => /:[23]\.root\.json$/.test(a))).toEqual([]);
  });

  it("the owner's tools list a namespace's members a page at a time: not the anchor, a sub-namespace's members or a repository with a root of its own", async () => {
    const { h } = await namespaceWithTwo();
    const sub = 'wabbit-networks/team-b/';
    await createNamespace(h, sub);
    await join(h, `${sub}web`, await memberTargets(h, `${sub}web`, 1, { namespace: sub }));
    expect((await h.create('wabbit-networks/own')).status).toBe(201); // a root of its own under the prefix
    await join(h, 'wabbit-networks/zeta');
    const all = await h.request('GET', `/v1/namespace-members/${ANCHOR}`, { token: CI });
    expect(all.status, all.body.toString()).toBe(200);
    expect(all.json()).toEqual({ namespace: NS, anchor: ANCHOR, rootVersion: 1, members: [MON, API, 'wabbit-networks/zeta'].sort(), unreadable: [] });
    // Pages: a page looks at `limit` repositories under the prefix (members or not) and names where the next begins.
    const seen: string[] = [];
    let after: string | undefined;
    let pages = 0;
    do {
      const r = await h.request('GET', `/v1/namespace-members/${ANCHOR}?limit=2${after ? `&after=${encodeURIComponent(after)}` : ''}`, { token: CI });
      expect(r.status, r.body.toString()).toBe(200);
      const page = r.json<{ members: string[]; next?: string }>();
      seen.push(...page.members);
      after = page.next;
      pages++;
    } while (after !== undefined);
    expect(seen).toEqual([MON, API, 'wabbit-networks/zeta'].sort());
    expect(pages).toBe(3); // six repositories under wabbit-networks/ besides its anchor: three members, own, the sub-namespace's anchor and its member
    // The sub-namespace lists its own.
    expect((await h.request('GET', `/v1/namespace-members/${sub}tufoci-namespace`, { token: ADMIN })).json<{ members: string[] }>().members).toEqual([`${sub}web`]);
  });

  it('a team manages its own sub-delegation inside its member', async () => {
    const h = new ServiceHarness();
    const pin = await createNamespace(h);
    const { InMemorySigner } = await import('../../src/keys/index.ts');
    const team = InMemorySigner.generate();
    // The namespace owner delegates the member to the team's key once …
    await join(h, API, await h.targetsBytes({ version: 1, member: { repository: API, namespace: NS }, delegations: [{ name: 'team-a', keys: [team.public], threshold: 1, paths: [`${API}/*`] }] }));
    // … the team delegates its release tags to its own CI key, without the owner.
    const teamRole = await h.targetsBytes({ version: 1, delegations: [{ name: 'team-a-ci', keys: [h.ci.public], threshold: 1, paths: [`${API}/v*`] }] }, [team]);
    expect((await h.request('PUT', `/v1/repos/${API}/metadata/1.team-a.json`, { token: CI, body: teamRole })).status).toBe(201);
    const img = await pushImage(h.store, API, 'v1', 'api v1');
    const ciRole = await h.ciBytes(1, { [`${API}/v1`]: img });
    expect((await h.request('PUT', `/v1/repos/${API}/metadata/1.team-a-ci.json`, { token: CI, body: ciRole })).status).toBe(201);
    expect((await verifyImage({ store: h.store, repository: API, tag: 'v1', trustedRoot: pin })).digest).toBe(img.digest);
    // The team cannot reach outside its member: a path of another repository is refused.
    const outside = await h.targetsBytes({ version: 2, targets: { [`${MON}/v1`]: img } }, [team]);
    expect((await h.request('PUT', `/v1/repos/${API}/metadata/2.team-a.json`, { token: CI, body: outside })).status).toBe(422);
  });

  it('service-signed tags in a member are qualified by the service', async () => {
    const h = new ServiceHarness();
    const pin = await createNamespace(h);
    const targets = await h.targetsBytes({ version: 1, member: { repository: MON, namespace: NS }, delegations: [{ name: 'release', keys: [h.online.ci.public], threshold: 1, paths: [`${MON}/r*`] }] });
    await join(h, MON, targets);
    const img = await pushImage(h.store, MON, 'r1', 'release 1');
    const r = await h.request('POST', `/v1/repos/${MON}/tags`, { token: CI, body: JSON.stringify({ role: 'release', tags: { r1: { digest: img.digest, size: img.size, mediaType: img.mediaType } } }) });
    expect(r.status, r.body.toString()).toBe(201);
    expect((await verifyImage({ store: h.store, repository: MON, tag: 'r1', trustedRoot: pin })).digest).toBe(img.digest);
  });
});

describe("one scope's metadata never answers for another's", () => {
  it("a tag of repository X served as repository Y's, within one namespace: refused", async () => {
    const { h, pin } = await namespaceWithTwo();
    // Y = net-monitor serves all of X = team-a/api's files (the same keys signed both).
    const ts = json(await file(h, API, 'timestamp.json'));
    const snap = `${(ts.signed['meta'] as Record<string, { version: number }>)['snapshot.json']?.version}.snapshot.json`;
    const names = [snap, '1.targets.json', '1.ci.json'];
    const files = await Promise.all(names.map(async (fileName) => ({ fileName, bytes: await file(h, API, fileName) })));
    await h.metadata.publish(MON, [...files, { fileName: 'timestamp.json', bytes: await file(h, API, 'timestamp.json') }], { replaceable: new Set(names) });
    await expect(verifyImage({ store: h.store, repository: MON, tag: 'v1', trustedRoot: pin })).rejects.toMatchObject({ code: 'TUF_REFUSED' });
    // Only X's targets (under Y's own snapshot and timestamp) are refused as well.
    const h2 = (await namespaceWithTwo());
    await h2.h.metadata.publish(MON, [{ fileName: '1.ci.json', bytes: await file(h2.h, API, '1.ci.json') }], { replaceable: new Set(['1.ci.json']) });
    await expect(verifyImage({ store: h2.h.store, repository: MON, tag: 'v1', trustedRoot: h2.pin })).rejects.toMatchObject({ code: 'TUF_REFUSED' });
  });

  it("a sub-namespace's metadata served for the parent: refused", async () => {
    const h = new ServiceHarness();
    const parent = await createNamespace(h);
    const sub = 'wabbit-networks/team-a/';
    await createNamespace(h, sub); // the same owner keys, another scope
    await join(h, API, await memberTargets(h, API, 1, { namespace: sub })); // joins the longest namespace covering it: team-a/
    expect((await h.request('GET', `/v1/namespace-of/${API}`)).json()).toMatchObject({ namespace: sub });
    const api = await pushImage(h.store, API, 'v1', 'api v1');
    await publishCi(h, API, 1, { v1: api });
    // A client trusting only the parent namespace does not take the sub-namespace's metadata.
    await expect(verifyImage({ store: h.store, repository: API, tag: 'v1', trustedRoot: parent })).rejects.toMatchObject({ code: 'TUF_REFUSED' });
    expect((await verifyImage({ store: h.store, repository: API, tag: 'v1', trustedRoot: await file(h, `${sub}tufoci-namespace`, '1.root.json') })).digest).toBe(api.digest);
  });

  it('a per-repository root served for a namespace scope, and the reverse: refused', async () => {
    const h = new ServiceHarness();
    const nsPin = await createNamespace(h);
    const OWN = 'wabbit-networks/own';
    expect((await h.create(OWN)).status).toBe(201); // a repository with a root of its own, the same owner keys
    const own = await pushImage(h.store, OWN, 'v1', 'own v1');
    expect((await h.request('PUT', `/v1/repos/${OWN}/metadata/1.ci.json`, { token: CI, body: await h.ciBytes(1, { v1: own }) })).status).toBe(201);
    const ownPin = await file(h, OWN, '1.root.json');
    expect((await verifyImage({ store: h.store, repository: OWN, tag: 'v1', trustedRoot: ownPin })).digest).toBe(own.digest);
    // Trusting the namespace: OWN's own root chain and files do not answer for it.
    await expect(verifyImage({ store: h.store, repository: OWN, tag: 'v1', trustedRoot: nsPin })).rejects.toMatchObject({ code: 'TUF_REFUSED' });
    // The reverse: a member's namespace files served to a client that pins OWN's own root.
    await join(h, MON);
    const mon = await pushImage(h.store, MON, 'v1', 'net-monitor v1');
    await publishCi(h, MON, 1, { v1: mon });
    await expect(verifyImage({ store: h.store, repository: MON, tag: 'v1', trustedRoot: ownPin })).rejects.toThrow(/vouches for "wabbit-networks\/own"/);
    // And a root rotation of OWN's chain to the namespace scope is refused at upload.
    const switched = await h.request('PUT', `/v1/repos/${OWN}/metadata/2.root.json`, { token: ADMIN, body: await h.rootBytes(2, [h.owner.root], NS) });
    expect(switched.json<{ error: { code: string } }>().error.code).toBe('SCOPE_MISMATCH');
  });

  it('a repository removed from the namespace, then served from an old snapshot: refused', async () => {
    const { h, pin, mon } = await namespaceWithTwo();
    const stateDir = (await import('node:fs')).mkdtempSync(`${(await import('node:os')).tmpdir()}/tufoci-ns-state-`);
    expect((await verifyImage({ store: h.store, repository: MON, tag: 'v1', trustedRoot: pin, stateDir })).digest).toBe(mon.digest);
    const before = await Promise.all(['timestamp.json', '2.snapshot.json', '1.targets.json', '1.ci.json'].map(async (fileName) => ({ fileName, bytes: await file(h, MON, fileName) })));
    // The owner removes net-monitor: its targets delegate nothing any more.
    const removed = await h.targetsBytes({ version: 2, member: { repository: MON, namespace: NS } });
    expect((await h.request('PUT', `/v1/repos/${MON}/metadata/2.targets.json`, { token: ADMIN, body: removed })).status).toBe(201);
    await expect(verifyImage({ store: h.store, repository: MON, tag: 'v1', trustedRoot: pin, stateDir })).rejects.toMatchObject({ code: 'NOT_IN_TUF' });
    // The registry serves the old timestamp and snapshot again: a client that saw the removal refuses them.
    await h.metadata.publish(MON, before, { replaceable: new Set(before.map((f) => f.fileName)) });
    await expect(verifyImage({ store: h.store, repository: MON, tag: 'v1', trustedRoot: pin, stateDir })).rejects.toMatchObject({ code: 'TUF_REFUSED' });
  });

  it('a hand-off to a namespace root that is not the one named is refused, by the service and by the client', async () => {
    const h = new ServiceHarness();
    const nsPin = await createNamespace(h);
    const OWN = 'wabbit-networks/own';
    expect((await h.create(OWN)).status).toBe(201);
    const own = await pushImage(h.store, OWN, 'v1', 'own v1');
    expect((await h.request('PUT', `/v1/repos/${OWN}/metadata/1.ci.json`, { token: CI, body: await h.ciBytes(1, { v1: own }) })).status).toBe(201);
    const ownPin = await file(h, OWN, '1.root.json');
    const handOff = async (sha256: string): Promise<Uint8Array> => {
      const j = json(await h.rootBytes(2, [h.owner.root], OWN)) as unknown as { signed: Record<string, unknown>; signatures: unknown[] };
      j.signed['x-tufoci-successor'] = { namespace: NS, version: 1, sha256 };
      j.signatures = [await h.owner.root.sign(canonicalSignedBytes(j.signed as never))];
      return new TextEncoder().encode(JSON.stringify(j));
    };
    const memberTargets2 = await h.targetsBytes({ version: 2, member: { repository: OWN, namespace: NS }, delegations: [{ name: 'ci', keys: [h.ci.public], threshold: 1, paths: [`${OWN}/v*`], terminating: true }] });
    const body = async (sha: string): Promise<string> => JSON.stringify({ root: json(await handOff(sha)), targets: json(memberTargets2) });
    const before = await h.timestampVersion(OWN);
    const wrong = await h.request('POST', `/v1/migrations/${OWN}`, { token: ADMIN, body: await body('0'.repeat(64)) });
    expect(wrong.status).toBe(400);
    // A successor root cannot come in as a plain rotation either.
    const plain = await h.request('PUT', `/v1/repos/${OWN}/metadata/2.root.json`, { token: ADMIN, body: await handOff(createHash('sha256').update(nsPin).digest('hex')) });
    expect(plain.status).toBe(400);
    expect(await h.timestampVersion(OWN)).toBe(before);
    const moved = await h.request('POST', `/v1/migrations/${OWN}`, { token: ADMIN, body: await body(createHash('sha256').update(nsPin).digest('hex')) });
    expect(moved.status, moved.body.toString()).toBe(201);
    const v2 = await pushImage(h.store, OWN, 'v2', 'own v2');
    await publishCi(h, OWN, 2, { v2 });
    expect((await verifyImage({ store: h.store, repository: OWN, tag: 'v2', trustedRoot: ownPin })).digest).toBe(v2.digest);
    // A registry that serves another file as the namespace root named: refused.
    const other = await h.rootBytes(1, [h.owner.root], NS);
    const ts = await file(h, ANCHOR, 'timestamp.json');
    await h.metadata.publish(ANCHOR, [{ fileName: '1.root.json', bytes: new TextEncoder().encode(`${new TextDecoder().decode(other)} `) }, { fileName: 'timestamp.json', bytes: ts }], { replaceable: new Set(['1.root.json']) });
    await expect(verifyImage({ store: h.store, repository: OWN, tag: 'v2', trustedRoot: ownPin })).rejects.toMatchObject({ code: 'TUF_REFUSED' });
  });

  it('a rotation is answered once the members are synced or the wait is over; the rest follows in the background, or at the member\'s next refresh', async () => {
    // Writes to net-monitor's metadata wait at a gate (a slow or failing backend for one member).
    let open!: () => void;
    let gate = new Promise<void>((resolve) => (open = resolve));
    let failing = false;
    const inner = new MemoryStore();
    const gated = new Proxy(inner, {
      get(target, prop, receiver) {
        const value = Reflect.get(target, prop, receiver) as unknown;
        if (typeof value !== 'function') return value;
        if (prop !== 'putManifests' && prop !== 'putManifest') return value.bind(target);
        return async (repo: string, ...rest: unknown[]) => {
          if (repo === `${MON}/tuf`) {
            await gate;
            if (failing) throw new Error('backend down');
          }
          return (value as (...a: unknown[]) => unknown).call(target, repo, ...rest);
        };
      },
    });
    const h = new ServiceHarness(gated, { memberSyncWaitMs: 0 });
    open();
    await createNamespace(h);
    await join(h, MON);
    await join(h, API);
    gate = new Promise<void>((resolve) => (open = resolve));
    const r = await h.request('PUT', `/v1/repos/${ANCHOR}/metadata/2.root.json`, { token: ADMIN, body: await h.rootBytes(2, [h.owner.root], NS) });
    expect(r.status, r.body.toString()).toBe(201);
    const members = r.json<{ members: { pending?: number; rootVersion: number } }>().members;
    expect(members.rootVersion).toBe(2);
    expect(members.pending).toBeGreaterThan(0); // net-monitor at least is still at the gate
    open();
    // An explicit sync waits for whatever is still on its way: afterwards every member is on root 2.
    const sync = await h.request('POST', `/v1/namespace-sync/${ANCHOR}`, { token: ADMIN, body: '{}' });
    expect(sync.json<{ failed: unknown[] }>().failed).toEqual([]);
    for (const repo of [MON, API]) expect((await h.service.status(repo)).roles.find((x) => x.role === 'root')?.version).toBe(2);
    // A sync that fails for one member: that member takes the root at its next refresh.
    failing = true;
    const r3 = await h.request('PUT', `/v1/repos/${ANCHOR}/metadata/3.root.json`, { token: ADMIN, body: await h.rootBytes(3, [h.owner.root], NS) });
    expect(r3.status).toBe(201);
    const again = await h.request('POST', `/v1/namespace-sync/${ANCHOR}`, { token: ADMIN, body: '{}' });
    expect(again.json<{ failed: Array<{ repository: string }> }>().failed.map((f) => f.repository)).toEqual([MON]);
    failing = false;
    await h.service.refresh(MON);
    expect((await h.service.status(MON)).roles.find((x) => x.role === 'root')?.version).toBe(3);
  });

  it('through the service, a cold verify of a member reads the root hint and probes no root at the anchor', async () => {
    const { h, pin, mon } = await namespaceWithTwo();
    const { createServer } = await import('node:http');
    const asked: string[] = [];
    const server = createServer((req, res) => {
      asked.push(req.url ?? '');
      void h.handler(req, res);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
      const v = await verifyCore({ store: h.store, repository: MON, tag: 'v1', trustedRoot: pin, serviceUrl: url });
      expect(v.digest).toBe(mon.digest);
      expect(asked.filter((a) => a.endsWith('.root.json'))).toEqual([]);
      expect(asked.filter((a) => a.includes(`/v1/repos/${MON}/metadata/`)).length).toBeGreaterThan(0);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
