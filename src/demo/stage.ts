/**
 * The seed demo's stage: what it starts and must stop. Two `docker-registry` processes, the
 * tufoci service in-process (embedded default: OCI layout in the demo's temporary directory,
 * in-process coordination) with a clock the story can set back, the child processes the parties
 * run, and the temporary directory. Everything is stopped by `cleanup()` (registries by PID), or
 * SIGKILLed by `killNow()` from an exit hook.
 */
import { execFile, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { startServer, type RunningServer } from '../main.ts';
import { DemoFailure, type Narrator } from './narrator.ts';
import { startRegistryProcess, type RegistryProcess } from './registry-process.ts';

export interface Exited {
  code: number;
  stdout: string;
  stderr: string;
}

export class Stage {
  readonly tmp: string;
  readonly #cleanups: Array<() => Promise<void>> = [];
  readonly #children = new Set<ChildProcess>();
  #registries: RegistryProcess[] = [];
  /** Registries spawned but not yet ready (not in #registries yet). */
  readonly #spawning = new Set<number>();
  #service: RunningServer | undefined;
  #serviceCleanup = false;
  /** The service's clock runs this many ms behind real time (freeze scenario only). */
  clockSkewMs = 0;
  serviceUrl = '';
  token = '';
  #cleaned: Promise<void> | undefined;

  constructor() {
    this.tmp = mkdtempSync(join(tmpdir(), 'tufoci-demo-'));
  }

  /** The service's data directory ($DATA in the story). */
  get serviceDir(): string {
    return join(this.tmp, 'service');
  }

  /** The service's OCI layout root (what skopeo's `oci:` transport reads). */
  get layoutRoot(): string {
    return join(this.serviceDir, 'oci');
  }

  get serviceRunning(): boolean {
    return this.#service !== undefined;
  }

  /** Registries' PIDs (for exit hooks). */
  registryPids(): number[] {
    return this.#registries.map((r) => r.pid);
  }

  /** Stop everything this demo started (idempotent): CLI children, service, registries by PID, temp dir. */
  cleanup(): Promise<void> {
    this.#cleaned ??= (async () => {
      for (const child of this.#children) child.kill('SIGKILL');
      for (const fn of this.#cleanups.reverse()) await fn().catch(() => undefined);
      rmSync(this.tmp, { recursive: true, force: true });
    })();
    return this.#cleaned;
  }

  /** SIGKILL the registries now, synchronously (process 'exit' hook). */
  killNow(): void {
    for (const r of this.#registries) r.killNow();
    for (const pid of this.#spawning) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    for (const child of this.#children) child.kill('SIGKILL');
  }

  async startRegistry(name: string): Promise<RegistryProcess> {
    let spawned: number | undefined;
    const registry = await startRegistryProcess(name, this.tmp, {
      onSpawn: (pid) => {
        spawned = pid;
        this.#spawning.add(pid);
      },
    });
    if (spawned !== undefined) this.#spawning.delete(spawned);
    this.#registries.push(registry);
    this.#cleanups.push(() => registry.stop());
    if (this.#cleaned) {
      await registry.stop();
      throw new DemoFailure('stopped');
    }
    return registry;
  }

  /** Start the service (again, on the same data: a new port); cleanup stops it. */
  async startService(): Promise<void> {
    this.#service = await startServer({
      dataDir: this.serviceDir,
      port: 0,
      clock: () => Date.now() - this.clockSkewMs,
      logger: pino({ level: 'silent' }),
    });
    this.serviceUrl = this.#service.url;
    this.token = readFileSync(join(this.serviceDir, 'admin-token'), 'utf8').trim();
    if (!this.#serviceCleanup) {
      this.#serviceCleanup = true;
      this.#cleanups.push(() => this.stopService());
    }
  }

  async stopService(): Promise<void> {
    const s = this.#service;
    this.#service = undefined;
    await s?.close();
  }

  /** Run a program to its end; a non-zero exit is a result, a failure to run it a DemoFailure. */
  exec(file: string, args: string[], cwd: string, env: NodeJS.ProcessEnv): Promise<Exited> {
    return new Promise((resolve, reject) => {
      const child = execFile(file, args, { cwd, env, maxBuffer: 16 * 1024 * 1024, timeout: 60_000 }, (error, stdout, stderr) => {
        this.#children.delete(child);
        if (error && typeof error.code !== 'number') return reject(new DemoFailure(`${file} ${args.join(' ')}: ${error.message}`));
        resolve({ code: error ? (error.code as number) : 0, stdout: String(stdout), stderr: String(stderr) });
      });
      this.#children.add(child);
    });
  }
}

/** A part of the story that works on the stage and reports through the narrator (parties, the mirror). */
export class OnStage {
  protected readonly stage: Stage;
  protected readonly narrator: Narrator;

  constructor(stage: Stage, narrator: Narrator) {
    this.stage = stage;
    this.narrator = narrator;
  }
}
