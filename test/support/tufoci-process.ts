/**
 * `tufoci serve` as a child process, for multi-instance tests: started with
 * `process.execPath src/cli/main.ts serve …` (the Node 24 the tests run on)
 * on a free loopback port, its data directory in a fresh temporary folder,
 * tokens through TUFOCI_TOKENS, online keys through TUFOCI_SNAPSHOT_KEY /
 * TUFOCI_TIMESTAMP_KEY when given (instances that serve the same
 * repositories must sign with the same online keys). Ready once `/readyz`
 * answers 200. Its stdout and stderr (pino JSON lines) are kept, bounded, for
 * diagnostics. Stopped by PID: `stop()` sends SIGTERM (graceful: in-flight
 * writes finish) and SIGKILL only if it does not exit in time; `kill()`
 * sends SIGKILL at once (a crash).
 *
 * No TUFOCI_* variable of the test runner's environment leaks into the
 * child: only what the options say.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freeLoopbackPort } from './ports.ts';

export const CLI_PATH = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));

export interface TufociTokenSpec {
  name: string;
  token: string;
  scopes: string[];
}

export interface TufociProcessOptions {
  /** `--registry URL`; without it, the OCI layout under the data directory. */
  registry?: string;
  /** `--redis URL`; without it, in-process coordination. */
  redis?: string;
  redisPrefix?: string;
  /** Put into TUFOCI_TOKENS as JSON. */
  tokens?: TufociTokenSpec[];
  /** `--refresh-tick MS` (default here 200, so refresh work shows up quickly). */
  refreshTickMs?: number;
  /** `--policy FILE`. */
  policyFile?: string;
  /** Online key files (TUFOCI_SNAPSHOT_KEY / TUFOCI_TIMESTAMP_KEY). */
  snapshotKey?: string;
  timestampKey?: string;
  /** `--data DIR`; default a new temporary directory, removed by stop()/kill(). */
  dataDir?: string;
  /** TUFOCI_LOG_LEVEL (default info). */
  logLevel?: string;
  /** Further arguments after `serve`. */
  args?: string[];
  /** Further environment variables. */
  env?: Record<string, string>;
  /** How long to wait for `/readyz` 200 (default 30 s). */
  readyTimeoutMs?: number;
  /** A name for messages (default `tufoci`). */
  name?: string;
}

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface TufociProcess {
  readonly name: string;
  readonly url: string;
  readonly port: number;
  readonly pid: number;
  readonly dataDir: string;
  /** Resolves when the process has exited. */
  readonly exited: Promise<ExitStatus>;
  /** Whether the process is still running. */
  running(): boolean;
  /** Everything it wrote to stdout and stderr so far (bounded; the oldest part dropped first). */
  output(): string;
  /** Its JSON log lines, parsed (non-JSON lines skipped). */
  logs(): Array<Record<string, unknown>>;
  /**
   * Resolves with the first JSON log line (already written or still to come) that `match`
   * accepts; rejects if none has come within `timeoutMs` (default 10 s) or the process exits.
   */
  waitForLog(match: (line: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
  /** The last `lines` lines of output, for assertion messages. */
  tail(lines?: number): string;
  /** SIGTERM, wait for exit (SIGKILL after `graceMs`, default 15 s); removes a temporary data dir. */
  stop(graceMs?: number): Promise<ExitStatus>;
  /** SIGKILL now (a crash); removes a temporary data dir. */
  kill(): Promise<ExitStatus>;
}

const OUTPUT_LIMIT = 4 * 1024 * 1024;

/** Children still running, killed if the test process exits without stopping them. */
const live = new Set<ChildProcess>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const child of live) {
      try {
        child.kill('SIGKILL');
      } catch {
        // already gone
      }
    }
  });
}

function childEnv(options: TufociProcessOptions): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('TUFOCI_') && v !== undefined) env[k] = v;
  env['TUFOCI_LOG_LEVEL'] = options.logLevel ?? 'info';
  if (options.tokens) env['TUFOCI_TOKENS'] = JSON.stringify(options.tokens);
  if (options.snapshotKey) env['TUFOCI_SNAPSHOT_KEY'] = options.snapshotKey;
  if (options.timestampKey) env['TUFOCI_TIMESTAMP_KEY'] = options.timestampKey;
  return { ...env, ...(options.env ?? {}) };
}

function serveArgs(options: TufociProcessOptions, dataDir: string, port: number): string[] {
  const args = [CLI_PATH, 'serve', '--data', dataDir, '--listen', `127.0.0.1:${port}`, '--refresh-tick', String(options.refreshTickMs ?? 200)];
  if (options.registry) args.push('--registry', options.registry);
  if (options.redis) args.push('--redis', options.redis);
  if (options.redisPrefix) args.push('--redis-prefix', options.redisPrefix);
  if (options.policyFile) args.push('--policy', options.policyFile);
  return [...args, ...(options.args ?? [])];
}

class StartFailure extends Error {
  readonly addressInUse: boolean;
  constructor(message: string, addressInUse: boolean) {
    super(message);
    this.addressInUse = addressInUse;
  }
}

async function launch(options: TufociProcessOptions, dataDir: string, ownsDataDir: boolean): Promise<TufociProcess> {
  const name = options.name ?? 'tufoci';
  const port = await freeLoopbackPort();
  const child = spawn(process.execPath, serveArgs(options, dataDir, port), {
    env: childEnv(options),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  /** Waiting for a log line: each is offered every complete JSON line as it arrives. */
  const watchers = new Set<(line: Record<string, unknown>) => void>();
  let partial = '';
  const collect = (chunk: Buffer): void => {
    const text = chunk.toString('utf8');
    output += text;
    if (output.length > OUTPUT_LIMIT) output = output.slice(output.length - OUTPUT_LIMIT / 2);
    if (watchers.size === 0) {
      partial = '';
      return;
    }
    const lines = (partial + text).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) {
      if (!line.startsWith('{')) continue;
      let parsed: Record<string, unknown>;
      try {
        parsed = JSON.parse(line) as Record<string, unknown>;
      } catch {
        continue;
      }
      for (const w of [...watchers]) w(parsed);
    }
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  const exited = new Promise<ExitStatus>((resolve) => {
    child.once('exit', (code, signal) => {
      live.delete(child);
      resolve({ code, signal });
    });
  });
  await new Promise<void>((resolve, reject) => {
    child.once('spawn', resolve);
    child.once('error', reject);
  });
  if (child.pid === undefined) throw new Error(`${name}: no pid`);
  const pid = child.pid;
  live.add(child);
  installExitHook();

  const running = (): boolean => child.exitCode === null && child.signalCode === null;
  let removed = false;
  const cleanup = async (): Promise<void> => {
    if (ownsDataDir && !removed) {
      removed = true;
      await rm(dataDir, { recursive: true, force: true });
    }
  };
  const send = (signal: NodeJS.Signals): void => {
    try {
      if (running()) process.kill(pid, signal);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error; // exited meanwhile
    }
  };
  const signalAndWait = async (signal: NodeJS.Signals, graceMs: number): Promise<ExitStatus> => {
    if (running()) {
      send(signal);
      if (signal !== 'SIGKILL') {
        const timer = setTimeout(() => send('SIGKILL'), graceMs);
        const status = await exited;
        clearTimeout(timer);
        await cleanup();
        return status;
      }
    }
    const status = await exited;
    await cleanup();
    return status;
  };
  const tail = (lines = 40): string => output.split('\n').slice(-lines - 1).join('\n');
  const url = `http://127.0.0.1:${port}`;
  const proc: TufociProcess = {
    name,
    url,
    port,
    pid,
    dataDir,
    exited,
    running,
    output: () => output,
    logs: () => {
      const out: Array<Record<string, unknown>> = [];
      for (const line of output.split('\n')) {
        if (!line.startsWith('{')) continue;
        try {
          out.push(JSON.parse(line) as Record<string, unknown>);
        } catch {
          // a line cut by the bound
        }
      }
      return out;
    },
    waitForLog: (match, timeoutMs = 10_000) => {
      const seen = proc.logs().find(match);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const done = (): void => {
          watchers.delete(watch);
          clearTimeout(timer);
        };
        const watch = (line: Record<string, unknown>): void => {
          if (!match(line)) return;
          done();
          resolve(line);
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`${name}: no matching log line within ${timeoutMs} ms:\n${tail()}`));
        }, timeoutMs);
        watchers.add(watch);
        void exited.then(() => {
          if (!watchers.has(watch)) return;
          done();
          reject(new Error(`${name} exited before writing the log line waited for:\n${tail()}`));
        });
      });
    },
    tail,
    stop: (graceMs = 15_000) => signalAndWait('SIGTERM', graceMs),
    kill: () => signalAndWait('SIGKILL', 0),
  };

  const deadline = Date.now() + (options.readyTimeoutMs ?? 30_000);
  let last = 'no answer yet';
  while (Date.now() < deadline) {
    if (!running()) {
      await exited;
      throw new StartFailure(`${name} exited (${child.exitCode ?? child.signalCode}) before it was ready:\n${tail()}`, /EADDRINUSE/.test(output));
    }
    try {
      const r = await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(2_000) });
      const body = await r.text();
      if (r.status === 200) return proc;
      last = `/readyz answered ${r.status} ${body.slice(0, 300)}`;
    } catch (error) {
      last = String(error);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  await signalAndWait('SIGKILL', 0);
  throw new Error(`${name} did not become ready at ${url}: ${last}\n${tail()}`);
}

/** Start `tufoci serve` and wait until `/readyz` answers 200. */
export async function startTufoci(options: TufociProcessOptions = {}): Promise<TufociProcess> {
  const ownsDataDir = options.dataDir === undefined;
  const dataDir = options.dataDir ?? (await mkdtemp(join(tmpdir(), 'tufoci-serve-')));
  // The free port is found by binding and closing; another process can take it in between. Retry then.
  for (let attempt = 1; ; attempt++) {
    try {
      return await launch(options, dataDir, ownsDataDir);
    } catch (error) {
      if (!(error instanceof StartFailure && error.addressInUse && attempt < 5)) {
        if (ownsDataDir) await rm(dataDir, { recursive: true, force: true });
        throw error;
      }
    }
  }
}
