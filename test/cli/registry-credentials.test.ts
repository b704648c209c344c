/**
 * Registry credentials where people keep them, end to end: a real
 * docker-registry behind htpasswd (bcrypt) Basic auth, the real
 * docker-credential-pass over a throwaway pass/gpg store, and the `tufoci`
 * command as a child process with DOCKER_CONFIG pointing at a config.json.
 * publish and verify work with the helper's credentials and fail without;
 * credHelpers[host] wins over credsStore; flags win over the config file; a
 * missing, hanging or garbling helper is a clear exit 1; the secret appears
 * in no output.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type RunningServer } from '../../src/main.ts';
import { RegistryStore } from '../../src/storage/index.ts';
import { startPassStore, writeAnsweringHelper, writeHelper, type PassStore } from '../support/credential-helpers.ts';
import { pushImage, type PushedImage } from '../support/image.ts';
import { runTufoci, type CliResult } from '../support/cli.ts';
import { startRegistry, type RegistryServer } from '../support/registry-server.ts';

const dir = mkdtempSync(join(tmpdir(), 'tufoci-creds-'));
const bin = join(dir, 'bin');
const REPO = 'wabbit-networks/net-monitor';
const USER = 'ci-user';
const SECRET = `pw-${randomBytes(12).toString('hex')}`;
let registry: RegistryServer;
let server: RunningServer;
let pass: PassStore;
let host: string;
let baseEnv: NodeJS.ProcessEnv;
let v1: PushedImage;
const outputs: string[] = [];

/** A DOCKER_CONFIG directory holding `config` as config.json (none for undefined). */
function dockerConfig(name: string, config: unknown): string {
  const d = join(dir, 'docker', name);
  mkdirSync(d, { recursive: true });
  if (config !== undefined) writeFileSync(join(d, 'config.json'), JSON.stringify(config));
  return d;
}

async function tufoci(docker: string, args: string[], extraEnv: NodeJS.ProcessEnv = {}): Promise<CliResult> {
  const r = await runTufoci(args, { cwd: dir, env: { ...baseEnv, DOCKER_CONFIG: docker, ...extraEnv } });
  outputs.push(r.stdout, r.stderr);
  return r;
}

beforeAll(async () => {
  mkdirSync(bin);
  registry = await startRegistry({ basicAuth: { username: USER, password: SECRET } });
  host = registry.url.replace('http://', '');
  pass = startPassStore();
  pass.store(host, USER, SECRET);
  server = await startServer({ dataDir: join(dir, 'data'), port: 0, logger: pino({ level: 'silent' }) });
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('TUFOCI_') && k !== 'DOCKER_CONFIG'));
  baseEnv = {
    ...inherited,
    ...pass.env,
    PATH: `${bin}:${process.env['PATH'] ?? '/usr/bin:/bin'}`,
    TUFOCI_SERVER: server.url,
    TUFOCI_TOKEN: readFileSync(join(dir, 'data', 'admin-token'), 'utf8').trim(),
    TUFOCI_HOME: join(dir, 'home'),
  };
  v1 = await pushImage(new RegistryStore({ url: registry.url, credentials: { username: USER, password: SECRET } }), REPO, 'v1', 'credentials build');
  const none = dockerConfig('none', undefined);
  for (const name of ['root', 'targets', 'ci']) expect((await tufoci(none, ['keygen', name])).code).toBe(0);
  expect((await tufoci(none, ['init', REPO, '--root-key', 'root.key', '--targets-key', 'targets.key'])).code).toBe(0);
  expect((await tufoci(none, ['delegate', 'add', REPO, 'ci', '--key', 'ci.pub', '--paths', 'v*', '--terminating', '--targets-key', 'targets.key'])).code).toBe(0);
  writeAnsweringHelper(bin, 'wrong', USER, 'not-the-password');
  writeHelper(bin, 'hangs', 'exec sleep 600');
  writeHelper(bin, 'garbles', `echo 'this is not json'`);
});
afterAll(async () => {
  await server?.close();
  await registry?.stop();
  pass?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const verifyArgs = (): string[] => ['verify', `${host}/${REPO}:v1`, '--trust', '1.root.json', '--server', server.url, '--sig-key', 'ci.pub', '--ephemeral'];

describe('credentials from a docker-credential helper reach the registry', () => {
  it('credsStore "pass": publish (pull + push of the signature) and verify work with the helper\'s credentials', async () => {
    const docker = dockerConfig('store', { credsStore: 'pass' });
    const pub = await tufoci(docker, ['publish', `${host}/${REPO}:v1`, '--role', 'ci', '--key', 'ci.key']);
    expect(pub.code, pub.stderr).toBe(0);
    expect(pub.stdout).toContain(`published ${REPO}:v1 = ${v1.digest}`);
    const ok = await tufoci(docker, verifyArgs());
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout.split('\n')[0]).toBe(v1.digest);
    expect(ok.stdout).toMatch(/signed by [0-9a-f]{12}/);
  });

  it('without credentials, or with the wrong ones, the same verify is refused by the registry', async () => {
    for (const docker of [dockerConfig('none', undefined), dockerConfig('empty', {}), dockerConfig('wrong', { credsStore: 'wrong' })]) {
      const r = await tufoci(docker, verifyArgs());
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/HTTP 401/);
    }
  });

  it('credHelpers[host:port] wins over credsStore (here a helper that is not installed)', async () => {
    const r = await tufoci(dockerConfig('per-host', { credsStore: 'not-installed', credHelpers: { [host]: 'pass' } }), verifyArgs());
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.split('\n')[0]).toBe(v1.digest);
  });

  it('auths keeps working without a helper (docker login without a credential store)', async () => {
    const r = await tufoci(dockerConfig('auths', { auths: { [`https://${host}/v2/`]: { auth: Buffer.from(`${USER}:${SECRET}`).toString('base64') } } }), verifyArgs());
    expect(r.code, r.stderr).toBe(0);
  });

  it('explicit flags win over the config file', async () => {
    const withHelper = dockerConfig('store', { credsStore: 'pass' });
    const wrongFlags = await tufoci(withHelper, [...verifyArgs(), '--registry-username', USER, '--registry-password', 'not-it']);
    expect(wrongFlags.code).toBe(1);
    expect(wrongFlags.stderr).toMatch(/HTTP 401/);
    // Right flags: a configured helper that is not even installed is never run.
    const rightFlags = await tufoci(dockerConfig('missing', { credsStore: 'not-installed' }), verifyArgs(), { TUFOCI_REGISTRY_USERNAME: USER, TUFOCI_REGISTRY_PASSWORD: SECRET });
    expect(rightFlags.code, rightFlags.stderr).toBe(0);
  });
});

describe('helper trouble is a clear exit 1', () => {
  it('a helper that is not installed', async () => {
    const r = await tufoci(dockerConfig('missing', { credsStore: 'not-installed' }), verifyArgs());
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^tufoci: credential helper docker-credential-not-installed \(credsStore in .*config\.json\) is not installed: no docker-credential-not-installed on PATH \(needed for 127\.0\.0\.1:\d+\) \(CREDENTIAL_HELPER_MISSING\)$/m);
  });

  it('a helper that hangs is stopped after TUFOCI_CREDENTIAL_HELPER_TIMEOUT', async () => {
    const r = await tufoci(dockerConfig('hangs', { credHelpers: { [host]: 'hangs' } }), verifyArgs(), { TUFOCI_CREDENTIAL_HELPER_TIMEOUT: '0.5' });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/credential helper docker-credential-hangs \(credHelpers\["127\.0\.0\.1:\d+"\] in .*\) did not answer for 127\.0\.0\.1:\d+ within 500 ms; it was stopped \(CREDENTIAL_HELPER_TIMEOUT\)/);
    const bad = await tufoci(dockerConfig('hangs', { credHelpers: { [host]: 'hangs' } }), verifyArgs(), { TUFOCI_CREDENTIAL_HELPER_TIMEOUT: 'soon' });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/TUFOCI_CREDENTIAL_HELPER_TIMEOUT must be seconds/);
  });

  it('a helper that prints something other than the credentials JSON', async () => {
    const r = await tufoci(dockerConfig('garbles', { credsStore: 'garbles' }), verifyArgs());
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/credential helper docker-credential-garbles .* with something that is not \{"ServerURL","Username","Secret"\} JSON \(CREDENTIAL_HELPER_BAD_OUTPUT\)/);
  });

  it('the secret was in no output of any run above', () => {
    expect(outputs.length).toBeGreaterThan(20);
    for (const text of outputs) expect(text).not.toContain(SECRET);
  });
});
