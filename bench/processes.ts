/**
 * What the benches that start servers and time child processes share: the PIDs they started (to
 * SIGKILL on exit), the temporary directories (removed unless BENCH_KEEP=1), the stoppers run in
 * reverse order of start on SIGINT/SIGTERM, and `node <args>` timed spawn→exit.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';

export interface ChildRun {
  ms: number;
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface BenchProcesses {
  /** PIDs of the servers and children started and not yet seen stop. */
  readonly livePids: Set<number>;
  /** Directories to remove if the process ends abruptly. */
  readonly liveDirs: Set<string>;
  readonly stoppers: Array<() => Promise<void>>;
  /** The exit hook: SIGKILL by PID whatever still runs, remove the directories. */
  killLeftovers(): void;
  stopAll(): Promise<void>;
  /** The SIGINT/SIGTERM handler: stop everything, then exit 130/143 (hard exit after 8 s). */
  onSignal(signal: NodeJS.Signals): void;
  /** `node <args>` to completion, timed spawn→exit, SIGKILLed by PID after the child timeout. */
  runNode(args: readonly string[], opts: { cwd: string; env?: NodeJS.ProcessEnv }): Promise<ChildRun>;
  /** Install the exit hook and the SIGINT/SIGTERM handlers. */
  install(): void;
  /** A temporary directory under the OS's, removed at the end (kept, and printed, with BENCH_KEEP=1). */
  tempDir(prefix: string): Promise<string>;
  /** Run the bench's main: on success the signal handlers go (the exit hook stays); on failure exit code 1. */
  run(main: () => Promise<void>): void;
}

export function benchProcesses(opts: { log: (message: string) => void; keep: boolean; childTimeoutMs: number }): BenchProcesses {
  const livePids = new Set<number>();
  const liveDirs = new Set<string>();
  const stoppers: Array<() => Promise<void>> = [];
  let signalled = false;

  const killLeftovers = (): void => {
    for (const pid of livePids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
    livePids.clear();
    if (!opts.keep) for (const d of liveDirs) rmSync(d, { recursive: true, force: true });
  };

  const stopAll = async (): Promise<void> => {
    while (stoppers.length) {
      const stop = stoppers.pop() as () => Promise<void>;
      await stop().catch((e: unknown) => opts.log(`stopping: ${String(e)}`));
    }
  };

  const onSignal = (signal: NodeJS.Signals): void => {
    if (signalled) return;
    signalled = true;
    opts.log(`${signal}: stopping every server started here`);
    // In reverse order of start; the exit hook SIGKILLs by PID whatever is still running if that takes too long.
    const hard = setTimeout(() => process.exit(signal === 'SIGINT' ? 130 : 143), 8000);
    void stopAll().finally(() => {
      clearTimeout(hard);
      process.exit(signal === 'SIGINT' ? 130 : 143);
    });
  };

  const runNode = async (args: readonly string[], run: { cwd: string; env?: NodeJS.ProcessEnv }): Promise<ChildRun> => {
    const t0 = performance.now();
    const child: ChildProcess = spawn(process.execPath, args, { cwd: run.cwd, env: { ...process.env, ...run.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    const pid = child.pid;
    if (pid !== undefined) livePids.add(pid);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout?.on('data', (c: Buffer) => out.push(c));
    child.stderr?.on('data', (c: Buffer) => err.push(c));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      if (pid !== undefined) process.kill(pid, 'SIGKILL');
    }, opts.childTimeoutMs);
    const exited = new Promise<number>((res, rej) => {
      child.once('exit', () => res(performance.now()));
      child.once('error', rej);
    });
    const closed = new Promise<void>((res) => child.once('close', () => res()));
    let t1: number;
    try {
      t1 = await exited;
      await closed;
    } finally {
      clearTimeout(timer);
      if (pid !== undefined) livePids.delete(pid);
    }
    const r = { ms: t1 - t0, code: child.exitCode, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') };
    if (timedOut) throw new Error(`node ${args.join(' ')} did not finish within ${opts.childTimeoutMs} ms; stderr: ${r.stderr.slice(-2000)}`);
    return r;
  };

  const install = (): void => {
    process.on('exit', killLeftovers);
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  };

  const tempDir = async (prefix: string): Promise<string> => {
    const dir = await mkdtemp(join(tmpdir(), prefix));
    liveDirs.add(dir);
    stoppers.push(async () => {
      if (opts.keep) console.log(`kept ${dir}`);
      else await rm(dir, { recursive: true, force: true });
      liveDirs.delete(dir);
    });
    return dir;
  };

  const run = (main: () => Promise<void>): void => {
    main().then(
      () => {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
      },
      (err: unknown) => {
        console.error(err);
        process.exitCode = 1;
      },
    );
  };

  return { livePids, liveDirs, stoppers, killLeftovers, stopAll, onSignal, runNode, install, tempDir, run };
}
