/**
 * Revocation through the client: `tufoci delegate revoke-key` and
 * `tufoci delegate remove` on the embedded default, checked with the
 * unmodified tuf-js Updater (through `verifyImage`). After the targets
 * version that revokes, and the timestamp the service writes with it, clients
 * refuse the tags only the revoked key (or removed role) vouched for, and keep
 * verifying the tags other keys vouch for.
 *
 * Delegations of `targets` (disjoint paths, so no lookup walks another role):
 *   ci-a  key A          paths a*   a1 signed by A
 *   ci-b  keys B1, B2    paths b*   b1 signed by B1 and B2 (threshold 1)
 *   ci    keys K1, K2    paths c*   c1 signed by K1 only  (threshold 1)
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type RunningServer } from '../../src/main.ts';
import { ServiceClient, ServiceClientError } from '../../src/client/service-client.ts';
import { VerifyError } from '../../src/client/verify-image.ts';
// Every verify runs through the client core and the unmodified tuf-js Updater; both must agree.
import { verifyBothClients as verifyImage } from '../support/differential.ts';
import { buildTargets, isoExpiry, signMetadata } from '../../src/engine/index.ts';
import { generateKeyFiles, loadSignerFile, type FileSigner, type Signer } from '../../src/keys/index.ts';
import { delegate, init } from '../../src/cli/commands/owner.ts';
import { pushImage, type PushedImage } from '../support/image.ts';
import { runCommandJson } from '../support/cli.ts';

const REPO = 'wabbit-networks/net-monitor';
const DAY = 86_400_000;
const dir = mkdtempSync(join(tmpdir(), 'tufoci-revoke-'));
let server: RunningServer;
let client: ServiceClient;
let S: string[];
let pinned: Uint8Array;
let state: string;
const k = new Map<string, FileSigner>();
const images = new Map<string, PushedImage>();
const key = (name: string): string => join(dir, `${name}.key`);
const pub = (name: string): string => join(dir, `${name}.pub`);
const signer = (name: string): FileSigner => k.get(name) as FileSigner;
const img = (tag: string): PushedImage => images.get(tag) as PushedImage;

const cli = (fn: (argv: string[]) => Promise<void>, argv: string[]): Promise<Record<string, unknown>> => runCommandJson(fn, argv, S);

async function sign(role: string, version: number, tags: string[], by: Signer[]): Promise<Uint8Array> {
  const targets = Object.fromEntries(tags.map((t) => [t, img(t)]));
  return signMetadata(buildTargets({ version, expires: isoExpiry(Date.now() + 30 * DAY), targets }), by);
}

/** verifyImage as a client with persisted state (and, with `fresh`, one that trusts only the pinned root). */
const verify = (tag: string, fresh = false) =>
  verifyImage({ store: server.store, repository: REPO, tag, trustedRoot: pinned, serviceUrl: server.url, ...(fresh ? {} : { stateDir: state }) });

async function outcome(tag: string, fresh = false): Promise<string> {
  try {
    const r = await verify(tag, fresh);
    return r.digest === img(tag).digest ? 'ok' : `wrong digest ${r.digest}`;
  } catch (e) {
    if (e instanceof VerifyError) return `${e.code}: ${e.message}`;
    throw e;
  }
}

/** Every tag, from the stateful client and from a fresh one: both must agree. */
async function outcomes(tags: string[]): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const t of tags) {
    out[t] = await outcome(t);
    expect(await outcome(t, true), `fresh client, ${t}`).toBe(out[t]);
  }
  return out;
}

const timestampVersion = async (): Promise<number> => (await client.status(REPO)).roles.find((r) => r.role === 'timestamp')?.version ?? 0;
const notSigned = (tag: string): string => `NOT_IN_TUF: tag ${tag} of ${REPO} is not signed by any trusted key`;

beforeAll(async () => {
  server = await startServer({ dataDir: join(dir, 'data'), port: 0, logger: pino({ level: 'silent' }) });
  const token = readFileSync(join(dir, 'data', 'admin-token'), 'utf8').trim();
  client = new ServiceClient({ url: server.url, token });
  S = ['--server', server.url, '--token', token];
  for (const name of ['root', 'targets', 'A', 'B1', 'B2', 'K1', 'K2']) {
    await generateKeyFiles(join(dir, name), name.startsWith('B') ? 'ecdsa-p256' : 'ed25519');
    k.set(name, await loadSignerFile(key(name)));
  }
  for (const tag of ['a1', 'b1', 'b2', 'c1', 'c2']) images.set(tag, await pushImage(server.store, REPO, tag));
  await cli(init, [REPO, '--root-key', key('root'), '--targets-key', key('targets'), '--root-out', join(dir, '1.root.json')]);
  pinned = readFileSync(join(dir, '1.root.json'));
  state = mkdtempSync(join(tmpdir(), 'tufoci-revoke-state-'));
  const T = ['--targets-key', key('targets')];
  await cli(delegate, ['add', REPO, 'ci-a', '--key', pub('A'), '--paths', 'a*', ...T]);
  await cli(delegate, ['add', REPO, 'ci-b', '--key', pub('B1'), '--key', pub('B2'), '--threshold', '1', '--paths', 'b*', ...T]);
  await cli(delegate, ['add', REPO, 'ci', '--key', pub('K1'), '--key', pub('K2'), '--threshold', '1', '--paths', 'c*', ...T]);
  await client.upload(REPO, '1.ci-a.json', await sign('ci-a', 1, ['a1'], [signer('A')]));
  await client.upload(REPO, '1.ci-b.json', await sign('ci-b', 1, ['b1'], [signer('B1'), signer('B2')]));
  await client.upload(REPO, '1.ci.json', await sign('ci', 1, ['c1'], [signer('K1')]));
});
afterAll(async () => server?.close());

describe('revocation, seen by clients', () => {
  it('before any revocation every tag verifies', async () => {
    expect(await outcomes(['a1', 'b1', 'c1'])).toEqual({ a1: 'ok', b1: 'ok', c1: 'ok' });
  });

  it('delegate revoke-key: tags only the revoked key vouched for are refused; tags another key vouched for keep verifying', async () => {
    const r = await cli(delegate, ['revoke-key', REPO, 'ci', '--key', pub('K1'), '--targets-key', key('targets')]);
    expect(r).toMatchObject({ role: 'targets', version: 5 });
    // The revocation is in effect from the timestamp written with it: the client holds exactly that one.
    expect(r['timestampVersion']).toBe(await timestampVersion());
    expect((await verify('a1')).tuf.timestamp).toBe(r['timestampVersion']);

    // ci v1 carries only K1's signature: the whole role stops verifying, for the client that had
    // trusted it (state) and for a fresh one. ci-a and ci-b are untouched.
    expect(await outcomes(['a1', 'b1', 'c1'])).toEqual({
      a1: 'ok',
      b1: 'ok',
      c1: `TUF_REFUSED: TUF metadata of ${REPO} refused: ci is signed by 0 of the 1 key(s) the trusted metadata requires: forged, from another repository, or signed by a revoked key [ci was signed by 0/1 keys]`,
    });

    // The revoked key signs nothing new; the remaining key re-signs what it vouches for.
    const byRevoked = await client.upload(REPO, '2.ci.json', await sign('ci', 2, ['c1', 'c2'], [signer('K1')])).catch((e: unknown) => e);
    expect(byRevoked).toBeInstanceOf(ServiceClientError);
    expect(byRevoked).toMatchObject({ status: 403, code: 'THRESHOLD_NOT_MET' });
    expect((byRevoked as Error).message).toBe(`ci: 0 of 1 required signatures; missing ${signer('K2').keyid.slice(0, 12)}; 1 signature(s) by keys not authorized for ci`);
    await client.upload(REPO, '2.ci.json', await sign('ci', 2, ['c2'], [signer('K2')]));
    expect(await outcomes(['a1', 'b1', 'c1', 'c2'])).toEqual({ a1: 'ok', b1: 'ok', c1: notSigned('c1'), c2: 'ok' });
  });

  it('delegate revoke-key on a role whose current version the other key signed too: its tags keep verifying', async () => {
    await cli(delegate, ['revoke-key', REPO, 'ci-b', '--key', pub('B1'), '--targets-key', key('targets')]);
    expect(await outcomes(['a1', 'b1', 'c2'])).toEqual({ a1: 'ok', b1: 'ok', c2: 'ok' });
    const byRevoked = await client.upload(REPO, '2.ci-b.json', await sign('ci-b', 2, ['b1', 'b2'], [signer('B1')])).catch((e: unknown) => e);
    expect(byRevoked).toMatchObject({ status: 403, code: 'THRESHOLD_NOT_MET' });
    expect(await outcomes(['b2'])).toEqual({ b2: notSigned('b2') });
  });

  it('delegate remove: the removed role\'s tags are refused, the other roles\' keep verifying, and it accepts no upload', async () => {
    const r = await cli(delegate, ['remove', REPO, 'ci-a', '--targets-key', key('targets')]);
    expect((await verify('b1')).tuf.timestamp).toBe(r['timestampVersion']);
    expect(await outcomes(['a1', 'b1', 'c1', 'c2'])).toEqual({ a1: notSigned('a1'), b1: 'ok', c1: notSigned('c1'), c2: 'ok' });
    const upload = await client.upload(REPO, '2.ci-a.json', await sign('ci-a', 2, ['a1'], [signer('A')])).catch((e: unknown) => e);
    expect(upload).toMatchObject({ status: 404, code: 'UNKNOWN_ROLE' });
    // The removed role stays listed in the snapshot at its last version: clients refuse a snapshot
    // that drops a file they have seen (TUF 5.5.5), and the removal is what stops them consulting it.
    const snapshotVersion = (await client.status(REPO)).roles.find((x) => x.role === 'snapshot')?.version;
    const snapshot = JSON.parse(new TextDecoder().decode(await client.metadata(REPO, `${snapshotVersion}.snapshot.json`))) as { signed: { meta: Record<string, { version: number }> } };
    expect(snapshot.signed.meta['ci-a.json']).toEqual({ version: 1 });
  });
});
