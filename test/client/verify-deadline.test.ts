/**
 * One deadline for a whole verify: a registry or service that never answers,
 * drip-feeds a body, or keeps asking to be retried later makes `verifyImage`
 * (and `tufoci verify --timeout`) fail when the deadline passes, naming what it
 * was waiting for, and the request in flight is aborted. The hostile servers
 * sit in front of a real registry holding real TUF metadata and a signed image.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyImage, VerifyError, type VerifyImageOptions } from '../../src/client/verify-image.ts';
import { pushSignature, signDescriptor } from '../../src/client/signatures.ts';
import { MetadataStore, RegistryStore } from '../../src/storage/index.ts';
import { SimRepo } from '../support/engine-repo.ts';
import { startRegistry, type RegistryServer } from '../support/registry-server.ts';
import { pushImage, type PushedImage } from '../support/image.ts';
import { startHostileServer, type Behaviour, type HostileServer } from '../support/hostile-http.ts';
import { runTufoci } from '../support/cli.ts';

const REPO = 'wabbit-networks/net-monitor';
/** The tests' safety net when a verify does not honour its deadline (today's clients wait minutes). */
const SAFETY_NET_MS = 20_000;
let registry: RegistryServer;
let repo: SimRepo;
let v1: PushedImage;
let hostile: HostileServer;
let choose: (req: { method: string; path: string }) => Behaviour = () => 'forward';

beforeAll(async () => {
  registry = await startRegistry();
  const store = new RegistryStore({ url: registry.url });
  v1 = await pushImage(store, REPO, 'v1', 'v1');
  repo = await new SimRepo().init();
  await repo.upload('ci', await repo.targetsBytes({ version: 1, targets: { v1: { ...v1 } } }, [repo.ciKey]));
  const files = [...repo.files].filter(([n]) => n !== 'timestamp.json').map(([fileName, bytes]) => ({ fileName, bytes }));
  await new MetadataStore({ store }).publish(REPO, [...files, { fileName: 'timestamp.json', bytes: repo.files.get('timestamp.json') as Uint8Array }]);
  await pushSignature(store, REPO, v1, await signDescriptor(v1, [repo.ciKey]));
  hostile = await startHostileServer({ upstream: registry.url, choose: (req) => choose(req) });
});
afterAll(async () => {
  await hostile?.close();
  await registry?.stop();
});

const root = (): Uint8Array => repo.files.get('1.root.json') as Uint8Array;

function verify(extra: Partial<VerifyImageOptions>) {
  return verifyImage({ store: new RegistryStore({ url: hostile.url }), repository: REPO, tag: 'v1', trustedRoot: root(), ...extra });
}

async function timedOut(p: Promise<unknown>): Promise<VerifyError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(VerifyError);
  expect((e as VerifyError).code, (e as Error).message).toBe('TIMEOUT');
  return e as VerifyError;
}

describe('verifyImage with a deadline', () => {
  it('a registry that never sends response headers: fails at the deadline naming the request, and aborts it', { timeout: SAFETY_NET_MS }, async () => {
    choose = () => 'hang';
    const seen = hostile.requests.length;
    const e = await timedOut(verify({ timeoutMs: 1500 }));
    expect(e.message).toContain(`verify of ${REPO}:v1 did not finish within 1.5 s`);
    expect(e.message).toContain(`timestamp.json of ${REPO}`);
    expect(e.message).toContain(`GET ${hostile.url}/v2/${REPO}/tuf/manifests/timestamp.json: no response headers yet`);
    expect(e.detail).toMatchObject({ timeoutMs: 1500 });
    await hostile.clientClosed(2); // the requests in flight were aborted, not left to their own 30 s timeouts
    // The timestamp and the registry's own tag, read together.
    expect(hostile.requests.slice(seen).map((r) => r.path).sort()).toEqual([`/v2/${REPO}/manifests/v1`, `/v2/${REPO}/tuf/manifests/timestamp.json`]);
  });

  it('a registry that drip-feeds a body one byte at a time: fails at the deadline while reading it', { timeout: SAFETY_NET_MS }, async () => {
    choose = (req) => (req.path.endsWith('/tuf/manifests/timestamp.json') ? 'drip' : 'forward');
    const e = await timedOut(verify({ timeoutMs: 1500 }));
    expect(e.message).toContain('did not finish within 1.5 s');
    expect(e.message).toContain(`GET ${hostile.url}/v2/${REPO}/tuf/manifests/timestamp.json: reading the response body`);
  });

  it('retries share the deadline: a registry answering 503 with Retry-After fails at the deadline, waiting to retry', { timeout: SAFETY_NET_MS }, async () => {
    choose = (req) => (req.path.endsWith('/tuf/manifests/timestamp.json') ? 'unavailable' : 'forward');
    const e = await timedOut(verify({ timeoutMs: 1500 }));
    expect(e.message).toContain(`a retry of GET ${hostile.url}/v2/${REPO}/tuf/manifests/timestamp.json (after HTTP 503)`);
  });

  it('a tufoci service that never answers: fails at the deadline naming the metadata request', { timeout: SAFETY_NET_MS }, async () => {
    const service = await startHostileServer({ choose: () => 'hang' });
    try {
      const e = await timedOut(verifyImage({ store: new RegistryStore({ url: registry.url }), repository: REPO, tag: 'v1', trustedRoot: root(), serviceUrl: service.url, timeoutMs: 1000 }));
      expect(e.message).toContain('did not finish within 1 s');
      expect(e.message).toContain(`GET ${service.url}/v1/repos/${REPO}/metadata/timestamp.json: no response headers yet`);
      await service.clientClosed(1);
    } finally {
      await service.close();
    }
  });

  // TUF answers; then the step named hangs. The manifest and signature steps run only while
  // their facts are not yet known (a fresh state directory); the registry's tag is read every time.
  it.each([
    ['the image manifest', `/v2/${REPO}/manifests/sha256:`, () => `the manifest ${REPO}@${v1.digest}`, true],
    ['the signatures', `/v2/${REPO}/manifests/sha256-`, () => `the signatures of ${v1.digest}`, false],
    ["the registry's own tag", `/v2/${REPO}/manifests/v1`, () => `the registry's tag ${REPO}:v1`, false],
  ])('%s never answers: the timeout names that step', { timeout: SAFETY_NET_MS }, async (what, prefix, names, tagMoved) => {
    const stateDir = mkdtempSync(join(tmpdir(), 'tufoci-deadline-'));
    choose = () => 'forward';
    if (what === "the registry's own tag") expect((await verify({ stateDir, signatures: { keys: [repo.ciKey.public] } })).digest).toBe(v1.digest);
    // The manifest is fetched by digest only when the registry's tag does not serve it: move the tag.
    const store = new RegistryStore({ url: registry.url });
    if (tagMoved) await pushImage(store, REPO, 'v1', 'another build');
    try {
      choose = (req) => (req.path.startsWith(prefix) ? 'hang' : 'forward');
      const e = await timedOut(verify({ stateDir, signatures: { keys: [repo.ciKey.public] }, timeoutMs: 2000 }));
      expect(e.message).toContain('did not finish within 2 s');
      expect(e.message).toContain(names());
      expect(e.message).toContain('no response headers yet');
    } finally {
      if (tagMoved) expect((await pushImage(store, REPO, 'v1', 'v1')).digest).toBe(v1.digest); // the tag back where TUF says
    }
  });

  it('a verify that finishes in time is unaffected', async () => {
    choose = () => 'forward';
    const r = await verify({ timeoutMs: 30_000, signatures: { keys: [repo.ciKey.public] } });
    expect(r).toMatchObject({ digest: v1.digest, signers: [repo.ciKey.keyid] });
  });
});

describe('tufoci verify --timeout', () => {
  it('exits 1 with the timeout error; a bad --timeout is a usage error', { timeout: SAFETY_NET_MS }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tufoci-deadline-cli-'));
    writeFileSync(join(dir, 'root.json'), root());
    const env = { ...process.env, TUFOCI_HOME: join(dir, 'home') };
    choose = () => 'hang';
    const host = hostile.url.replace('http://', '');
    const r = await runTufoci(['verify', `${host}/${REPO}:v1`, '--trust', 'root.json', '--ephemeral', '--timeout', '1'], { cwd: dir, env });
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toContain(`verify of ${REPO}:v1 did not finish within 1 s`);
    expect(r.stderr).toContain('no response headers yet');
    expect(r.stderr).toContain('(TIMEOUT)');
    for (const bad of ['0', '-1', 'soon', '100000']) {
      const u = await runTufoci(['verify', `${host}/${REPO}:v1`, '--trust', 'root.json', '--ephemeral', `--timeout=${bad}`], { cwd: dir, env });
      expect(u.code, bad).toBe(2);
      expect(u.stderr).toContain('--timeout must be');
    }
  });
});
