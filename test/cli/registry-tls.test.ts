/**
 * HTTPS registries with a private CA, end to end: a real docker-registry
 * serving TLS with a certificate from a CA made by openssl in this test (temp
 * dir, never committed); `tufoci serve --registry https://… --ca-file` keeps
 * the TUF metadata there; the CLI publishes and verifies straight from it.
 * verify succeeds with --ca-file and with NODE_EXTRA_CA_CERTS, and fails
 * without either (or with another CA) naming the certificate problem; plain
 * HTTP to a TLS port says so; plain HTTP goes to a non-loopback registry only
 * with --plain-http; a bad --ca-file is a usage error.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RegistryStore } from '../../src/storage/index.ts';
import { trustCertificates } from '../../src/storage/tls.ts';
import { runTufoci, type CliResult } from '../support/cli.ts';
import { pushImage, type PushedImage } from '../support/image.ts';
import { startRegistry, type RegistryServer } from '../support/registry-server.ts';
import { makeTestCa, type TestCa } from '../support/test-ca.ts';
import { startTufoci, type TufociProcess } from '../support/tufoci-process.ts';

const dir = mkdtempSync(join(tmpdir(), 'tufoci-tls-'));
const REPO = 'wabbit-networks/net-monitor';
const ADMIN = 'a'.repeat(64);
let ca: TestCa;
let otherCa: TestCa;
let registry: RegistryServer;
let service: TufociProcess;
let host: string;
let v1: PushedImage;
/** The environment of every tufoci run: none of the runner's TUFOCI_* or NODE_EXTRA_CA_CERTS (this machine sets it to the system bundle). */
let env: NodeJS.ProcessEnv;

const tufoci = (args: string[], extra: NodeJS.ProcessEnv = {}): Promise<CliResult> => runTufoci(args, { cwd: dir, env: { ...env, ...extra } });
const verify = (...flags: string[]): string[] => ['verify', `${host}/${REPO}:v1`, '--trust', '1.root.json', '--sig-key', 'ci.pub', '--ephemeral', ...flags];

beforeAll(async () => {
  ca = makeTestCa(dir);
  otherCa = makeTestCa(dir, 'another test CA');
  registry = await startRegistry({ tls: { ...ca.issue('registry', { ips: ['127.0.0.1'], dns: ['localhost'] }), ca: ca.caPem } });
  host = registry.url.replace('https://', '');
  // This test process pushes the image over TLS itself: it trusts the test CA too.
  trustCertificates(ca.caPem, 'the test CA');
  v1 = await pushImage(new RegistryStore({ url: registry.url }), REPO, 'v1', 'tls build');
  service = await startTufoci({ registry: registry.url, args: ['--ca-file', ca.caFile], tokens: [{ name: 'admin', token: ADMIN, scopes: ['admin'] }], name: 'tls-backed' });
  env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('TUFOCI_') && k !== 'NODE_EXTRA_CA_CERTS'));
  Object.assign(env, { TUFOCI_SERVER: service.url, TUFOCI_TOKEN: ADMIN, TUFOCI_HOME: join(dir, 'home'), DOCKER_CONFIG: join(dir, 'no-docker-config') });
  for (const name of ['root', 'targets', 'ci']) expect((await tufoci(['keygen', name])).code).toBe(0);
  expect((await tufoci(['init', REPO, '--root-key', 'root.key', '--targets-key', 'targets.key'])).code).toBe(0);
  expect((await tufoci(['delegate', 'add', REPO, 'ci', '--key', 'ci.pub', '--paths', 'v*', '--terminating', '--targets-key', 'targets.key'])).code).toBe(0);
  const pub = await tufoci(['publish', `${host}/${REPO}:v1`, '--role', 'ci', '--key', 'ci.key', '--https', '--ca-file', ca.caFile]);
  expect(pub.code, pub.stderr).toBe(0);
});
afterAll(async () => {
  await service?.stop();
  await registry?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('a registry on HTTPS with a private CA', () => {
  it('the service stored the TUF metadata in it (serve --ca-file); verify reads it straight from there with --ca-file', async () => {
    const r = await tufoci(verify('--https', '--ca-file', ca.caFile));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.split('\n')[0]).toBe(v1.digest);
    expect(r.stdout).toMatch(/signed by [0-9a-f]{12}/);
  });

  it('NODE_EXTRA_CA_CERTS in the environment works the same', async () => {
    const r = await tufoci(verify('--https'), { NODE_EXTRA_CA_CERTS: ca.caFile });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.split('\n')[0]).toBe(v1.digest);
  });

  it('without either, or with another CA, verify fails naming the certificate problem', async () => {
    for (const flags of [['--https'], ['--https', '--ca-file', otherCa.caFile]]) {
      const r = await tufoci(verify(...flags));
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(`TLS: the certificate of ${host} is not accepted: unable to verify the first certificate (UNABLE_TO_VERIFY_LEAF_SIGNATURE); if it is issued by a private CA, trust its CA with --ca-file FILE or NODE_EXTRA_CA_CERTS=FILE`);
      expect(r.stdout).toBe('');
    }
  });

  it('plain HTTP to its TLS port (a loopback host without --https) says that it serves HTTPS', async () => {
    const r = await tufoci(verify('--ca-file', ca.caFile));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/registry answered HTTP 400: it serves HTTPS and this request was plain HTTP \(for a loopback registry, --https\)/);
  });

  it('--plain-http with --https, and a --ca-file that is missing, not PEM or holds a private key: usage errors (exit 2)', async () => {
    writeFileSync(join(dir, 'not-pem.txt'), 'hello\n');
    writeFileSync(join(dir, 'with-key.pem'), `${ca.caPem}-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n`);
    const cases: Array<[string[], RegExp]> = [
      [['--https', '--plain-http'], /--plain-http and --https contradict each other/],
      [['--https', '--ca-file', join(dir, 'missing.pem')], /--ca-file .*missing\.pem: no such file/],
      [['--https', '--ca-file', join(dir, 'not-pem.txt')], /holds no PEM certificate/],
      [['--https', '--ca-file', join(dir, 'with-key.pem')], /holds a private key: give only the CA certificate\(s\)/],
    ];
    for (const [flags, message] of cases) {
      const r = await tufoci(verify(...flags));
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toMatch(message);
      expect(r.stderr).not.toContain('AAAA');
    }
  });
});

describe('plain HTTP only for loopback or when asked', () => {
  let plain: RegistryServer;
  let address: string;
  beforeAll(async () => {
    const ipv4 = Object.values(networkInterfaces())
      .flat()
      .find((a) => a !== undefined && a.family === 'IPv4' && !a.internal);
    if (!ipv4) throw new Error('this test needs a non-loopback IPv4 address on this machine (none in os.networkInterfaces())');
    address = ipv4.address;
    plain = await startRegistry({ listenHost: address });
    await pushImage(new RegistryStore({ url: plain.url }), REPO, 'v1', 'plain build');
  });
  afterAll(() => plain?.stop());

  it('a non-loopback registry is spoken to in HTTPS: a plain HTTP one is refused, and used with --plain-http', async () => {
    const ref = `${address}:${plain.port}/${REPO}:v1`;
    const refused = await tufoci(['sign', ref, '--key', 'ci.key']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(`TLS: ${address}:${plain.port} does not answer in TLS (ERR_SSL_WRONG_VERSION_NUMBER), it may serve plain HTTP; tufoci talks plain HTTP to a registry only on loopback or with --plain-http`);
    const asked = await tufoci(['sign', ref, '--key', 'ci.key', '--plain-http']);
    expect(asked.code, asked.stderr).toBe(0);
    expect(asked.stdout).toMatch(/^signed wabbit-networks\/net-monitor@sha256:[0-9a-f]{64} with [0-9a-f]{12}; signature sha256:[0-9a-f]{64}$/m);
  });
});
