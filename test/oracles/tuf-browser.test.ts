/**
 * A second, independent TUF client reads what tufoci serves:
 * @freedomofpress/tuf-browser (a minimal client by other authors: top-level
 * roles only, no delegations; WebCrypto and fetch, run here in Node) against
 * the service (`tufoci serve`'s embedded composition in this process, its
 * own derived online keys) over HTTP.
 *
 * The owner creates the repository with `tufoci init` (root keys ECDSA P-256
 * and ed25519, threshold 2), delegates `ci` as tufoci repositories do, and
 * lists an image in top-level targets (the only targets role this client
 * reads). The client pinned to 1.root.json reads root, timestamp, snapshot
 * and targets and downloads the image manifest, checking its length and
 * sha256 (the target base URL serves manifests from the service's store by
 * digest). Then the owner rotates root with `tufoci rotate root` (two new
 * keys, root v2 signed by the old and the new ones) and moves the tag; the
 * client walks to root 2 and reads the new target. The library reports
 * problems only by throwing and by `console.warn` (a key id that is not the
 * specification's), so every console method is watched: nothing may be printed.
 * A control shows the watch works: root v1 relisted under the key ids tufoci
 * wrote before it followed the specification makes the library warn.
 */
import { createServer, type Server } from 'node:http';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TUFClient } from '@freedomofpress/tuf-browser';
import { FSBackend } from '@freedomofpress/tuf-browser/node';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi, type MockInstance } from 'vitest';
import { startServer, type RunningServer } from '../../src/main.ts';
import { ServiceClient } from '../../src/client/service-client.ts';
import { isoExpiry, nextTargets, parseMetadata, signMetadata, targetFile } from '../../src/engine/index.ts';
import { computeKeyId, generateKeyFiles, legacyKeyId, loadSignerFile, type FileSigner } from '../../src/keys/index.ts';
import { delegate, init } from '../../src/cli/commands/owner.ts';
import { rotateRoot } from '../../src/cli/commands/rotate.ts';
import { runCommandJson } from '../support/cli.ts';
import { pushImage, type PushedImage } from '../support/image.ts';
import { relistUnderLegacyIds } from './legacy-ids.ts';

const REPO = 'wabbit-networks/net-monitor';
const DAY = 86_400_000;
const dir = mkdtempSync(join(tmpdir(), 'tufoci-oracle-tuf-browser-'));
const key = (name: string): string => join(dir, `${name}.key`);
const keys = new Map<string, FileSigner>();
let server: RunningServer;
let client: ServiceClient;
let S: string[];
let content: Server;
let metadataUrl: string;
let targetsUrl: string;
let pinned: string;

const cli = (fn: (argv: string[]) => Promise<void>, argv: string[]): Promise<Record<string, unknown>> => runCommandJson(fn, argv, S);

/** The owner lists `tag` → `img` in top-level targets (the next version, signed with the offline targets key). */
async function listInTargets(tag: string, img: PushedImage): Promise<number> {
  const status = await client.status(REPO);
  const version = status.roles.find((r) => r.role === 'targets')?.version as number;
  const current = parseMetadata('targets', await client.metadata(REPO, `${version}.targets.json`), server.policy.roles.targets.maxBytes).md.signed;
  const next = nextTargets(current, isoExpiry(Date.now() + 90 * DAY), (json) => {
    (json['targets'] as Record<string, unknown>)[tag] = targetFile(tag, img).toJSON();
  });
  await client.upload(REPO, `${next.version}.targets.json`, await signMetadata(next, [keys.get('targets') as FileSigner]));
  return next.version;
}

/** Manifest bytes by digest, named the way a TUF client asks for a consistent-snapshot target: `<sha256 hex>.<path>`. */
function contentServer(): Server {
  return createServer((req, res) => {
    const m = /^\/targets\/([0-9a-f]{64})\.([A-Za-z0-9_][A-Za-z0-9._-]*)$/.exec(req.url ?? '');
    if (!m) return void res.writeHead(404).end();
    server.store.getManifest(REPO, `sha256:${m[1]}`, 4 * 1024 * 1024).then(
      (manifest) => res.writeHead(200, { 'content-type': manifest.mediaType }).end(manifest.bytes),
      () => res.writeHead(404).end(),
    );
  });
}

beforeAll(async () => {
  server = await startServer({ dataDir: join(dir, 'data'), port: 0, logger: pino({ level: 'silent' }) });
  const token = readFileSync(join(dir, 'data', 'admin-token'), 'utf8').trim();
  client = new ServiceClient({ url: server.url, token });
  S = ['--server', server.url, '--token', token];
  const kinds: Array<[string, 'ed25519' | 'ecdsa-p256']> = [
    ['root-p256', 'ecdsa-p256'], ['root-ed', 'ed25519'], ['root-p256-2', 'ecdsa-p256'], ['root-ed-2', 'ed25519'], ['targets', 'ed25519'], ['ci', 'ecdsa-p256'],
  ];
  for (const [name, type] of kinds) {
    await generateKeyFiles(join(dir, name), type, 'TEST KEY for tufoci tests only');
    keys.set(name, await loadSignerFile(key(name)));
  }
  content = contentServer();
  await new Promise<void>((res) => content.listen(0, '127.0.0.1', res));
  targetsUrl = `http://127.0.0.1:${(content.address() as { port: number }).port}/targets/`;
  metadataUrl = `${server.url}/v1/repos/${REPO}/metadata/`;

  await cli(init, [REPO, '--root-key', key('root-p256'), '--root-key', key('root-ed'), '--threshold', '2', '--targets-key', key('targets'), '--root-out', join(dir, '1.root.json')]);
  await cli(delegate, ['add', REPO, 'ci', '--key', join(dir, 'ci.pub'), '--paths', 'v*', '--terminating', '--targets-key', key('targets')]);
  pinned = readFileSync(join(dir, '1.root.json'), 'utf8');
});
afterAll(async () => {
  content?.close();
  await server?.close();
});

let consoleSpies: MockInstance[] = [];
/** Watch every console method the library could report through; returns what was printed. */
function watchConsole(): () => string[] {
  const printed: string[] = [];
  consoleSpies = (['warn', 'error', 'log', 'info', 'debug', 'trace'] as const).map((m) =>
    vi.spyOn(console, m).mockImplementation((...args: unknown[]) => void printed.push(`console.${m}: ${args.map(String).join(' ')}`)),
  );
  return () => printed;
}
afterEach(() => {
  for (const s of consoleSpies) s.mockRestore();
  consoleSpies = [];
});

async function manifest(img: PushedImage): Promise<Buffer> {
  return Buffer.from((await server.store.getManifest(REPO, img.digest, 1 << 20)).bytes);
}

/** The version of the root the client cached (`<namespace>/root.json`, written once it moves past the pinned root). */
function cachedRootVersion(namespace: string): number | undefined {
  const path = join(namespace, 'root.json');
  return existsSync(path) ? (JSON.parse(readFileSync(path, 'utf8')) as { signed: { version: number } }).signed.version : undefined;
}

describe('@freedomofpress/tuf-browser reads tufoci repositories', () => {
  it('control: a root listing an ECDSA key under the id tufoci wrote before (RFC 8785) makes this client warn', async () => {
    const repo = 'wabbit-networks/legacy-ids';
    const rootOut = join(dir, 'legacy-ids.1.root.json');
    await cli(init, [repo, '--root-key', key('root-p256'), '--root-key', key('root-ed'), '--threshold', '2', '--targets-key', key('targets'), '--root-out', rootOut]);
    const root = await relistUnderLegacyIds(readFileSync(rootOut), [keys.get('root-p256') as FileSigner, keys.get('root-ed') as FileSigner]);
    const printed = watchConsole();
    const tuf = new TUFClient(`${server.url}/v1/repos/${repo}/metadata/`, new TextDecoder().decode(root), mkdtempSync(join(tmpdir(), 'tufoci-tuf-browser-cache-')), targetsUrl, { backend: new FSBackend() });
    await tuf.updateTUF(); // it warns and goes on: it verifies signatures with the keys as listed
    const p256 = (keys.get('root-p256') as FileSigner).public;
    expect(legacyKeyId(p256)).not.toBe(computeKeyId(p256));
    // One warning, for the ECDSA root key only (printed each time the library loads root's keys).
    expect([...new Set(printed())]).toEqual([expect.stringContaining(`console.warn: KeyId ${legacyKeyId(p256)} does not match the expected ${computeKeyId(p256)}`)]);
  });

  it('pinned to 1.root.json: the top-level workflow, a target downloaded and checked; after a root rotation it walks to root 2', async () => {
    const latest1 = await pushImage(server.store, REPO, 'latest', 'release one');
    await listInTargets('latest', latest1);
    const root1 = JSON.parse(pinned) as { signed: { keys: Record<string, { keytype: string }>; roles: { root: { keyids: string[]; threshold: number } } } };
    expect(root1.signed.roles.root.keyids.map((id) => root1.signed.keys[id]?.keytype).sort()).toEqual(['ecdsa', 'ed25519']);
    expect(root1.signed.roles.root.threshold).toBe(2);

    const cache = mkdtempSync(join(tmpdir(), 'tufoci-tuf-browser-cache-'));
    const backend = new FSBackend();
    const printed = watchConsole();
    const tuf = new TUFClient(metadataUrl, pinned, cache, targetsUrl, { backend });
    await tuf.updateTUF();
    expect(await tuf.listSignedTargets()).toEqual(['latest']);
    expect(Buffer.from(await tuf.getTarget('latest'))).toEqual(await manifest(latest1));
    expect(cachedRootVersion(cache)).toBeUndefined(); // still on the pinned root v1
    expect(printed()).toEqual([]);

    // The owner rotates root: both keys replaced, root v2 signed by a threshold of v1's keys and by every new key.
    for (const s of consoleSpies) s.mockRestore();
    const rotated = await cli(rotateRoot, [REPO, '--old-key', key('root-p256'), '--old-key', key('root-ed'), '--new-key', key('root-p256-2'), '--new-key', key('root-ed-2'), '--threshold', '2']);
    expect(rotated).toMatchObject({ version: 2, root: { keyids: [keys.get('root-p256-2')?.keyid, keys.get('root-ed-2')?.keyid], threshold: 2 } });
    const latest2 = await pushImage(server.store, REPO, 'latest', 'release two');
    await listInTargets('latest', latest2);

    const printedAfter = watchConsole();
    // The same client (state kept in its cache) and a fresh one pinned to 1.root.json both walk to root 2.
    const again = new TUFClient(metadataUrl, pinned, cache, targetsUrl, { backend });
    const fresh = new TUFClient(metadataUrl, pinned, mkdtempSync(join(tmpdir(), 'tufoci-tuf-browser-cache-')), targetsUrl, { backend });
    for (const c of [tuf, again, fresh]) {
      await c.updateTUF();
      expect(await c.listSignedTargets()).toEqual(['latest']);
      expect(Buffer.from(await c.getTarget('latest'))).toEqual(await manifest(latest2));
    }
    expect(cachedRootVersion(cache)).toBe(2);
    expect(printedAfter()).toEqual([]);
  });
});
