/**
 * Running the `tufoci` command in tests: as a child process (exit codes,
 * stdout, stderr, exactly as a user sees them), or a command function in this
 * process with --json (faster; its printed result parsed).
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { expect, vi } from 'vitest';
import { ServiceClientError } from '../../src/client/service-client.ts';

const run = promisify(execFile);
const CLI = new URL('../../bin/tufoci.js', import.meta.url).pathname;

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** `tufoci <args>` in `cwd` with `env`; never throws for a non-zero exit. */
export async function runTufoci(args: readonly string[], opts: { cwd: string; env: NodeJS.ProcessEnv }): Promise<CliResult> {
  try {
    const r = await run(process.execPath, [CLI, ...args], { cwd: opts.cwd, env: opts.env });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

/** A command function run in this process with `extra` flags and --json; its printed result. */
export async function runCommandJson(fn: (argv: string[]) => Promise<void>, argv: readonly string[], extra: readonly string[] = []): Promise<Record<string, unknown>> {
  const lines: string[] = [];
  const spy = vi.spyOn(console, 'log').mockImplementation((...a: unknown[]) => void lines.push(a.map(String).join(' ')));
  try {
    await fn([...argv, ...extra, '--json']);
  } finally {
    spy.mockRestore();
  }
  return JSON.parse(lines.join('\n')) as Record<string, unknown>;
}

/** The ServiceClientError a service call is refused with (fails the test when it is not refused that way). */
export async function clientRefusal(p: Promise<unknown>): Promise<ServiceClientError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(ServiceClientError);
  return e as ServiceClientError;
}
