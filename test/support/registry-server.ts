/**
 * A real OCI registry for tests: the demo's docker-registry starter
 * (src/demo/registry-process.ts), plus Basic auth with a bcrypt htpasswd, the
 * binary check, and the path of a blob's bytes (to corrupt it). A missing
 * binary is a failure, never a skip.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { accessSync, constants } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { REGISTRY_BINARY, startRegistryProcess } from '../../src/demo/registry-process.ts';

export { REGISTRY_BINARY };

export interface RegistryServerOptions {
  /** Require HTTP Basic auth with this user (htpasswd, bcrypt). */
  basicAuth?: { username: string; password: string };
  /** Listen on this address instead of 127.0.0.1. */
  listenHost?: string;
  /** Serve HTTPS with this certificate and key (files), trusted through `ca` (PEM text). */
  tls?: { certificate: string; key: string; ca: string };
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

export async function startRegistry(options: RegistryServerOptions = {}): Promise<RegistryServer> {
  assertRegistryBinary();
  const r = await startRegistryProcess('test', tmpdir(), {
    ...(options.basicAuth ? { htpasswd: `${options.basicAuth.username}:${bcryptHash(options.basicAuth.password)}\n` } : {}),
    ...(options.listenHost ? { listenHost: options.listenHost } : {}),
    ...(options.tls ? { tls: options.tls } : {}),
  });
  return {
    url: r.url,
    port: r.port,
    pid: r.pid,
    storageDir: r.storageDir,
    blobDataPath: (digest: string) => {
      const hex = digest.slice('sha256:'.length);
      return join(r.storageDir, 'docker', 'registry', 'v2', 'blobs', 'sha256', hex.slice(0, 2), hex, 'data');
    },
    stop: r.stop,
  };
}
