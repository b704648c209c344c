/**
 * A real OCI registry for tests: Debian's `docker-registry` (distribution
 * 2.8) on a free loopback port, with its own temporary config and storage,
 * deletes enabled, optionally behind htpasswd Basic auth. Stopped by PID
 * (SIGTERM, then SIGKILL). A missing binary is a failure, never a skip.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { accessSync, constants } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const REGISTRY_BINARY = '/usr/bin/docker-registry';

export interface RegistryServerOptions {
  /** Require HTTP Basic auth with this user (htpasswd, bcrypt). */
  basicAuth?: { username: string; password: string };
}

export interface RegistryServer {
  url: string;
  port: number;
  pid: number;
  /** The registry's filesystem storage root. */
  storageDir: string;
  /** Where the registry keeps a blob's bytes (to corrupt it in tests). */
  blobDataPath(digest: string): string;
  stop(): Promise<void>;
}

export function assertRegistryBinary(binary = REGISTRY_BINARY): void {
  try {
    accessSync(binary, constants.X_OK);
  } catch {
    throw new Error(`docker-registry is not installed (${binary} missing): run \`apt-get install docker-registry\` — the registry tests need a real registry and do not skip`);
  }
}

export { freeLoopbackPort } from './ports.ts';
import { freeLoopbackPort } from './ports.ts';

const BCRYPT_ALPHABET = './ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

/**
 * A bcrypt hash for htpasswd. Node has no bcrypt; perl's crypt() goes to the
 * system libcrypt (libxcrypt on Debian), which implements `$2b$`. perl-base
 * is an essential Debian package, so no extra dependency is needed.
 */
export function bcryptHash(password: string): string {
  const random = randomBytes(22);
  let salt = '';
  for (let i = 0; i < 21; i++) salt += BCRYPT_ALPHABET[random[i]! % 64];
  salt += '.Oeu'[random[21]! % 4]; // the last salt character carries only 2 significant bits
  const result = spawnSync('perl', ['-e', 'print crypt($ARGV[0], $ARGV[1])', password, `$2b$05$${salt}`], { encoding: 'utf8' });
  const hash = result.stdout;
  if (result.status !== 0 || !hash.startsWith('$2b$05$') || hash.length !== 60) {
    throw new Error(`could not compute a bcrypt hash with perl crypt(): ${result.stderr || hash}`);
  }
  return hash;
}

async function waitUntilReady(url: string, child: ChildProcess, stderr: () => string, expectStatus: number): Promise<void> {
  const deadline = Date.now() + 15_000;
  let lastError: unknown;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`docker-registry exited with ${child.exitCode}: ${stderr()}`);
    try {
      const response = await fetch(`${url}/v2/`, { signal: AbortSignal.timeout(1000) });
      await response.body?.cancel();
      if (response.status === expectStatus) return;
      lastError = new Error(`GET /v2/ answered ${response.status}`);
    } catch (error) {
      lastError = error;
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`docker-registry did not become ready at ${url}: ${String(lastError)}; stderr: ${stderr()}`);
}

export async function startRegistry(options: RegistryServerOptions = {}): Promise<RegistryServer> {
  assertRegistryBinary();
  const dir = await mkdtemp(join(tmpdir(), 'tufoci-registry-'));
  const port = await freeLoopbackPort();
  const storageDir = join(dir, 'data');
  const auth = options.basicAuth
    ? `auth:\n  htpasswd:\n    realm: tufoci-test\n    path: ${join(dir, 'htpasswd')}\n`
    : '';
  if (options.basicAuth) {
    await writeFile(join(dir, 'htpasswd'), `${options.basicAuth.username}:${bcryptHash(options.basicAuth.password)}\n`);
  }
  const config = [
    'version: 0.1',
    'log:',
    '  level: error',
    '  accesslog:',
    '    disabled: true',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${storageDir}`,
    '  delete:',
    '    enabled: true',
    '  maintenance:',
    '    uploadpurging:',
    '      enabled: false',
    'http:',
    `  addr: 127.0.0.1:${port}`,
    `  secret: ${randomBytes(16).toString('hex')}`,
    auth,
  ].join('\n');
  const configPath = join(dir, 'config.yml');
  await writeFile(configPath, config);
  const child = spawn(REGISTRY_BINARY, ['serve', configPath], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (chunk: string) => {
    if (stderr.length < 20_000) stderr += chunk;
  });
  const spawned = new Promise<void>((resolve, reject) => {
    child.once('spawn', resolve);
    child.once('error', reject);
  });
  await spawned;
  const url = `http://127.0.0.1:${port}`;
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(timer);
    }
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await waitUntilReady(url, child, () => stderr, options.basicAuth ? 401 : 200);
  } catch (error) {
    await stop();
    throw error;
  }
  if (child.pid === undefined) throw new Error('docker-registry has no pid');
  return {
    url,
    port,
    pid: child.pid,
    storageDir,
    blobDataPath: (digest: string) => {
      const hex = digest.slice('sha256:'.length);
      return join(storageDir, 'docker', 'registry', 'v2', 'blobs', 'sha256', hex.slice(0, 2), hex, 'data');
    },
    stop,
  };
}
