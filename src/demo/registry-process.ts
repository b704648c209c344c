/**
 * A real OCI registry: Debian's `docker-registry` (distribution 2.8) on a
 * free loopback port, with its own temporary config and storage, deletes
 * enabled, optionally behind htpasswd Basic auth. Stopped by PID (SIGTERM,
 * then SIGKILL after 3 s); `killNow` is the synchronous last resort for
 * process exit. The demo uses it; so do the tests (test/support/registry-server.ts).
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { request as httpsRequest } from 'node:https';
import { createServer } from 'node:net';
import { join } from 'node:path';

export const REGISTRY_BINARY = '/usr/bin/docker-registry';

export interface RegistryProcess {
  name: string;
  /** `127.0.0.1:<port>` (or the listen host's), as image references name it. */
  host: string;
  url: string;
  port: number;
  pid: number;
  /** The registry's filesystem storage root. */
  storageDir: string;
  stop(): Promise<void>;
  /** SIGKILL at once, synchronously (for process exit hooks). */
  killNow(): void;
}

/** A free TCP port on 127.0.0.1 (bind port 0, read it, close). */
export function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (address && typeof address === 'object' ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

export interface RegistryProcessOptions {
  /** Gets the PID as soon as the process exists (before it is ready), for emergency cleanup. */
  onSpawn?: (pid: number) => void;
  /** Require HTTP Basic auth: the htpasswd file's content (bcrypt entries). */
  htpasswd?: string;
  /** Listen on this address instead of 127.0.0.1 (the port is still picked free on loopback). */
  listenHost?: string;
  /** Serve HTTPS: certificate and key files (PEM), and the CA (PEM text) the readiness probe trusts. */
  tls?: { certificate: string; key: string; ca: string };
}

export async function startRegistryProcess(name: string, parentDir: string, opts: RegistryProcessOptions = {}): Promise<RegistryProcess> {
  const dir = await mkdtemp(join(parentDir, `registry-${name}-`));
  const port = await freeLoopbackPort();
  const listenHost = opts.listenHost ?? '127.0.0.1';
  const storageDir = join(dir, 'data');
  if (opts.htpasswd !== undefined) await writeFile(join(dir, 'htpasswd'), opts.htpasswd);
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
    `  addr: ${listenHost}:${port}`,
    `  secret: ${randomBytes(16).toString('hex')}`,
    ...(opts.tls ? ['  tls:', `    certificate: ${opts.tls.certificate}`, `    key: ${opts.tls.key}`] : []),
    ...(opts.htpasswd !== undefined ? ['auth:', '  htpasswd:', `    realm: tufoci-${name}`, `    path: ${join(dir, 'htpasswd')}`] : []),
    '',
  ].join('\n');
  await writeFile(join(dir, 'config.yml'), config);
  const child = spawn(REGISTRY_BINARY, ['serve', join(dir, 'config.yml')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (chunk: string) => {
    if (stderr.length < 20_000) stderr += chunk;
  });
  await new Promise<void>((resolve, reject) => {
    child.once('spawn', resolve);
    child.once('error', reject);
  });
  const pid = child.pid as number;
  opts.onSpawn?.(pid);
  const alive = (): boolean => child.exitCode === null && child.signalCode === null;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async (): Promise<void> => {
    if (alive()) {
      process.kill(pid, 'SIGTERM');
      const timer = setTimeout(() => alive() && process.kill(pid, 'SIGKILL'), 3000);
      await exited;
      clearTimeout(timer);
    }
    await rm(dir, { recursive: true, force: true });
  };
  const url = `${opts.tls ? 'https' : 'http'}://${listenHost}:${port}`;
  const tls = opts.tls;
  const probe = (): Promise<number> =>
    tls
      ? new Promise((resolve, reject) => {
          const req = httpsRequest(`${url}/v2/`, { ca: tls.ca, timeout: 1000, agent: false }, (res) => {
            res.resume();
            resolve(res.statusCode ?? 0);
          });
          req.once('error', reject);
          req.once('timeout', () => req.destroy(new Error('timeout')));
          req.end();
        })
      : fetch(`${url}/v2/`, { signal: AbortSignal.timeout(1000) }).then(async (r) => {
          await r.body?.cancel();
          return r.status;
        });
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (!alive()) {
      await stop();
      throw new Error(`docker-registry (${name}) exited with ${child.exitCode}: ${stderr.trim()}`);
    }
    try {
      if ((await probe()) === (opts.htpasswd !== undefined ? 401 : 200)) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`docker-registry (${name}) did not become ready at ${url}: ${stderr.trim()}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return {
    name,
    host: `${listenHost}:${port}`,
    url,
    port,
    pid,
    storageDir,
    stop,
    killNow: () => {
      if (alive()) process.kill(pid, 'SIGKILL');
    },
  };
}
