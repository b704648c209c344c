/**
 * A real Redis for tests: Debian's `redis-server` on a free loopback port,
 * no persistence (`--save '' --appendonly no`), its working directory in a
 * temporary folder. Ready once it answers PING; stopped by PID (SIGTERM,
 * then SIGKILL). `stop()`/`start()`/`restart()` keep the port, so clients
 * reconnect to the same address and see an empty server, as after a crash.
 * A missing binary is a failure, never a skip.
 */
import { freeLoopbackPort } from './ports.ts';
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const REDIS_BINARY = '/usr/bin/redis-server';

export interface RedisServer {
  readonly port: number;
  /** `redis://127.0.0.1:<port>` */
  readonly url: string;
  /** PID of the running process (changes on restart); undefined while stopped. */
  readonly pid: number | undefined;
  /** Stop the process (its data is lost); `start()` reuses the same port. */
  stop(): Promise<void>;
  /** Start again on the same port, empty. */
  start(): Promise<void>;
  /** `stop()` then `start()`. */
  restart(): Promise<void>;
  /** Stop and remove the temporary directory. */
  close(): Promise<void>;
}

export function assertRedisBinary(binary = REDIS_BINARY): void {
  try {
    accessSync(binary, constants.X_OK);
  } catch {
    throw new Error(
      `redis-server is not installed (${binary} missing): run \`apt-get install redis-server\` — the Redis coordinator tests need a real server and do not skip`,
    );
  }
}


/** One PING over a raw socket: true on `+PONG`. */
async function answersPing(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    let reply = '';
    const done = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1000, () => done(false));
    socket.once('error', () => done(false));
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.on('data', (chunk) => {
      reply += chunk.toString('latin1');
      if (reply.includes('\r\n')) done(reply.startsWith('+PONG'));
    });
  });
}

export async function startRedis(binary = REDIS_BINARY): Promise<RedisServer> {
  assertRedisBinary(binary);
  const dir = await mkdtemp(join(tmpdir(), 'tufoci-redis-'));
  const port = await freeLoopbackPort();
  let child: ChildProcess | undefined;

  const launch = async (): Promise<void> => {
    const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--daemonize', 'no', '--loglevel', 'warning'];
    const proc = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    const collect = (chunk: Buffer): void => {
      if (output.length < 20_000) output += chunk.toString('utf8');
    };
    proc.stdout?.on('data', collect);
    proc.stderr?.on('data', collect);
    await new Promise<void>((resolve, reject) => {
      proc.once('spawn', resolve);
      proc.once('error', reject);
    });
    child = proc;
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      if (proc.exitCode !== null || proc.signalCode !== null) {
        throw new Error(`redis-server exited (${proc.exitCode ?? proc.signalCode}) on port ${port}: ${output}`);
      }
      if (await answersPing(port)) return;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    await stop();
    throw new Error(`redis-server did not answer PING on port ${port} within 10 s: ${output}`);
  };

  const stop = async (): Promise<void> => {
    const proc = child;
    child = undefined;
    if (proc === undefined || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
    proc.kill('SIGTERM');
    const timer = setTimeout(() => proc.kill('SIGKILL'), 3000);
    await exited;
    clearTimeout(timer);
  };

  try {
    await launch();
  } catch (error) {
    await stop();
    await rm(dir, { recursive: true, force: true });
    throw error;
  }

  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    get pid() {
      return child?.pid;
    },
    stop,
    start: async () => {
      if (child !== undefined) throw new Error('redis-server is already running');
      await launch();
    },
    restart: async () => {
      await stop();
      await launch();
    },
    close: async () => {
      await stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
