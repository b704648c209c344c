/**
 * Docker's credential lookup (src/cli/docker-credentials.ts), in this process:
 * the order (credHelpers[key], then credsStore, then auths), the keys
 * (host:port as written, Docker Hub's https://index.docker.io/v1/, auths keys
 * with scheme and path), and the docker-credential-* protocol against the real
 * docker-credential-pass and against small helper scripts for what a real
 * helper will not do on demand: fail, hang, print garbage or too much.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { CredentialHelperError, DOCKER_HUB_KEY, convertToHostname, dockerConfigKey, dockerCredentials, runCredentialHelper } from '../../src/cli/docker-credentials.ts';
import { UsageError } from '../../src/cli/common.ts';
import { startPassStore, writeAnsweringHelper, writeHelper, type PassStore } from '../support/credential-helpers.ts';

const dir = mkdtempSync(join(tmpdir(), 'tufoci-dockercreds-'));
const bin = join(dir, 'bin');
const configDir = join(dir, 'docker');
const log = join(dir, 'helper.log');
mkdirSync(bin);
mkdirSync(configDir);
const env: NodeJS.ProcessEnv = { PATH: `${bin}:/usr/bin:/bin`, HELPER_LOG: log };

function config(value: unknown): void {
  writeFileSync(join(configDir, 'config.json'), typeof value === 'string' ? value : JSON.stringify(value));
}
const calls = (): string[] => (existsSync(log) ? readFileSync(log, 'utf8').trim().split('\n').filter(Boolean) : []);
const lookup = (host: string, extra: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}) => dockerCredentials(host, { configDir, env: extra.env ?? env, ...(extra.timeoutMs ? { timeoutMs: extra.timeoutMs } : {}) });
const basic = (user: string, password: string): string => Buffer.from(`${user}:${password}`).toString('base64');

async function rejection(p: Promise<unknown>): Promise<Error> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(Error);
  return e as Error;
}

beforeAll(() => {
  writeAnsweringHelper(bin, 'alpha', 'alpha-user', 'alpha-secret');
  writeAnsweringHelper(bin, 'beta', 'beta-user', 'beta-secret');
  writeAnsweringHelper(bin, 'token', '<token>', 'refresh-token-value');
  writeAnsweringHelper(bin, 'empty', '', '');
  writeHelper(bin, 'notfound', 'echo "credentials not found in native keychain"; exit 1');
  // Prints a secret-looking JSON and fails: the error must not carry it.
  writeHelper(bin, 'fails', `echo 'store is locked' >&2; printf '{"Secret":"leaked-secret"}'; exit 3`);
  writeHelper(bin, 'failsplain', 'echo "pass store not initialised"; exit 1');
  writeHelper(bin, 'badjson', `echo 'Username=alice Secret=hunter2'`);
  writeHelper(bin, 'wrongshape', `echo '{"Username":1,"Secret":["x"]}'`);
  writeHelper(bin, 'huge', `head -c 400000 /dev/zero | tr '\\0' a`);
  writeHelper(bin, 'hangs', `echo $$ > "${join(dir, 'hangs.pid')}"\nexec sleep 600`);
  writeHelper(bin, 'killed', 'kill -9 $$');
});
beforeEach(() => rmSync(log, { force: true }));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('keys', () => {
  it('Docker Hub has its legacy key; other registries their host[:port] as written', () => {
    for (const hub of ['docker.io', 'index.docker.io', 'registry-1.docker.io']) expect(dockerConfigKey(hub)).toBe(DOCKER_HUB_KEY);
    expect(dockerConfigKey('registry.example:5000')).toBe('registry.example:5000');
    expect(dockerConfigKey('registry.example')).toBe('registry.example');
    expect(convertToHostname('https://registry.example:5000/v2/')).toBe('registry.example:5000');
    expect(convertToHostname('http://registry.example')).toBe('registry.example');
    expect(convertToHostname('registry.example/some/path')).toBe('registry.example');
    expect(convertToHostname(DOCKER_HUB_KEY)).toBe('index.docker.io');
  });
});

describe('lookup order', () => {
  it('no config file, or no entry: no credentials', async () => {
    rmSync(join(configDir, 'config.json'), { force: true });
    expect(await lookup('registry.example')).toBeUndefined();
    config({ auths: { 'other.example': { auth: basic('u', 'p') } } });
    expect(await lookup('registry.example')).toBeUndefined();
  });

  it('credHelpers[host:port] wins over credsStore and auths; the helper gets the key on stdin', async () => {
    config({ credsStore: 'beta', credHelpers: { 'registry.example:5000': 'alpha' }, auths: { 'registry.example:5000': { auth: basic('file-user', 'file-pw') } } });
    const found = await lookup('registry.example:5000');
    expect(found?.credentials).toEqual({ username: 'alpha-user', password: 'alpha-secret' });
    expect(found?.source).toMatch(/^docker-credential-alpha \(credHelpers\["registry\.example:5000"\] in .*config\.json\)$/);
    expect(calls()).toEqual(['alpha registry.example:5000']);
    // The same host without the port is another registry: credsStore answers.
    expect((await lookup('registry.example'))?.credentials).toEqual({ username: 'beta-user', password: 'beta-secret' });
    expect(calls().at(-1)).toBe('beta registry.example');
  });

  it('credsStore answers alone: auths is not consulted when the helper knows nothing (as Docker does)', async () => {
    config({ credsStore: 'notfound', auths: { 'registry.example': { auth: basic('file-user', 'file-pw') } } });
    expect(await lookup('registry.example')).toMatchObject({ credentials: undefined });
    config({ credsStore: 'empty', auths: { 'registry.example': { auth: basic('file-user', 'file-pw') } } });
    expect(await lookup('registry.example')).toMatchObject({ credentials: undefined });
    expect(calls()).toEqual(['notfound registry.example', 'empty registry.example']);
  });

  it('auths without a helper: the exact key, else a key with scheme and path; auth, username/password, identitytoken', async () => {
    config({ auths: { 'https://registry.example:5000/v2/': { auth: basic('url-user', 'pw:with:colons') }, 'plain.example': { username: 'named', password: 'pw' }, 'id.example': { identitytoken: 'id-token' } } });
    expect((await lookup('registry.example:5000'))?.credentials).toEqual({ username: 'url-user', password: 'pw:with:colons' });
    expect(await lookup('registry.example')).toBeUndefined(); // the port is part of the key
    expect((await lookup('plain.example'))?.credentials).toEqual({ username: 'named', password: 'pw' });
    expect((await lookup('id.example'))?.credentials).toEqual({ identityToken: 'id-token' });
    config({ auths: { 'registry.example': { auth: basic('exact', 'pw') }, 'https://registry.example/v1/': { auth: basic('url', 'pw') } } });
    expect((await lookup('registry.example'))?.credentials).toEqual({ username: 'exact', password: 'pw' });
    expect(calls()).toEqual([]);
  });

  it('Docker Hub: credHelpers, the helper and auths all use https://index.docker.io/v1/', async () => {
    config({ credHelpers: { [DOCKER_HUB_KEY]: 'alpha' } });
    expect((await lookup('docker.io'))?.credentials).toEqual({ username: 'alpha-user', password: 'alpha-secret' });
    expect(calls()).toEqual([`alpha ${DOCKER_HUB_KEY}`]);
    config({ auths: { [DOCKER_HUB_KEY]: { auth: basic('hub-user', 'hub-pw') } } });
    expect((await lookup('registry-1.docker.io'))?.credentials).toEqual({ username: 'hub-user', password: 'hub-pw' });
  });

  it('Username <token> is an identity token', async () => {
    config({ credsStore: 'token' });
    expect((await lookup('registry.example'))?.credentials).toEqual({ identityToken: 'refresh-token-value' });
  });

  it('a config that is not JSON, a helper name that is not a program suffix, a bad auth: usage errors', async () => {
    config('{ "credsStore": ');
    expect(await rejection(lookup('registry.example'))).toBeInstanceOf(UsageError);
    config({ credsStore: '../../bin/sh' });
    const e = await rejection(lookup('registry.example'));
    expect(e).toBeInstanceOf(UsageError);
    expect(e.message).toMatch(/is not a plain program suffix/);
    config({ auths: { 'registry.example': { auth: Buffer.from('no-colon').toString('base64') } } });
    expect((await rejection(lookup('registry.example'))).message).toMatch(/is not base64 of "user:password"/);
  });
});

describe('helper failures are clear errors that never carry the secret', () => {
  const helperError = async (name: string, opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<CredentialHelperError> => {
    config({ credsStore: name });
    const e = await rejection(lookup('registry.example', opts));
    expect(e).toBeInstanceOf(CredentialHelperError);
    expect(e.message).toContain(`docker-credential-${name} (credsStore in ${join(configDir, 'config.json')})`);
    return e as CredentialHelperError;
  };

  it('missing helper', async () => {
    const e = await helperError('nonexistent');
    expect(e.code).toBe('CREDENTIAL_HELPER_MISSING');
    expect(e.message).toMatch(/is not installed: no docker-credential-nonexistent on PATH \(needed for registry\.example\)/);
  });

  it('failing helper: exit status and its plain message; JSON output is not repeated', async () => {
    const plain = await helperError('failsplain');
    expect(plain.code).toBe('CREDENTIAL_HELPER_FAILED');
    expect(plain.message).toMatch(/failed for registry\.example \(exit 1\): pass store not initialised$/);
    const e = await helperError('fails');
    expect(e.code).toBe('CREDENTIAL_HELPER_FAILED');
    expect(e.message).toMatch(/\(exit 3\): store is locked$/);
    expect(JSON.stringify(e.toJSON())).not.toContain('leaked-secret');
    const killed = await helperError('killed');
    expect(killed.message).toMatch(/\(signal SIGKILL\)/);
  });

  it('bad JSON and the wrong shape', async () => {
    for (const name of ['badjson', 'wrongshape']) {
      const e = await helperError(name);
      expect(e.code).toBe('CREDENTIAL_HELPER_BAD_OUTPUT');
      expect(e.message).toMatch(/answered for registry\.example with something that is not \{"ServerURL","Username","Secret"\} JSON/);
      expect(e.message).not.toMatch(/hunter2|alice/);
    }
  });

  it('output above the bound: the helper is stopped', async () => {
    const e = await helperError('huge');
    expect(e.code).toBe('CREDENTIAL_HELPER_BAD_OUTPUT');
    expect(e.message).toMatch(/printed more than 262144 bytes/);
  });

  it('a helper that hangs is killed when its timeout passes', async () => {
    const pidFile = join(dir, 'hangs.pid');
    rmSync(pidFile, { force: true });
    const e = await helperError('hangs', { timeoutMs: 300 });
    expect(e.code).toBe('CREDENTIAL_HELPER_TIMEOUT');
    expect(e.message).toMatch(/did not answer for registry\.example within 300 ms; it was stopped/);
    const pid = Number(readFileSync(pidFile, 'utf8'));
    expect(() => process.kill(pid, 0)).toThrow(expect.objectContaining({ code: 'ESRCH' }));
  });

  it('runCredentialHelper refuses a name with a path in it before running anything', async () => {
    await expect(runCredentialHelper('x/../../sh', 'registry.example', { env })).rejects.toBeInstanceOf(UsageError);
  });
});

describe('the real docker-credential-pass (pass + a throwaway gpg key)', () => {
  let pass: PassStore;
  beforeAll(() => {
    pass = startPassStore();
  });
  afterAll(() => pass?.stop());

  it('stores and answers per key; a key it does not hold is no credentials', async () => {
    pass.store('127.0.0.1:5000', 'ci-user', 'pass-secret');
    pass.store(DOCKER_HUB_KEY, 'hub-user', '<hub secret>');
    pass.store('https://registry.example:5000', 'other', 'other-secret');
    const passEnv = { ...process.env, ...pass.env };
    config({ credsStore: 'pass' });
    expect((await lookup('127.0.0.1:5000', { env: passEnv }))?.credentials).toEqual({ username: 'ci-user', password: 'pass-secret' });
    expect((await lookup('docker.io', { env: passEnv }))?.credentials).toEqual({ username: 'hub-user', password: '<hub secret>' });
    expect((await lookup('127.0.0.1:5001', { env: passEnv }))?.credentials).toBeUndefined();
    // An identity token kept by docker login (Username "<token>").
    pass.store('id.example', '<token>', 'stored-refresh-token');
    expect((await lookup('id.example', { env: passEnv }))?.credentials).toEqual({ identityToken: 'stored-refresh-token' });
  });
});
