/**
 * The seed demo's narrator: prints the story (numbered steps, notes, ✔ and ✘ lines) through the
 * `say` it is given, and checks every expected outcome of a CLI run, throwing DemoFailure when one
 * did not happen, so that the demo fails if an attack is accepted. Imports nothing.
 */

export interface CliRun {
  /** The command as a person would type it. */
  command: string;
  code: number;
  stdout: string;
  stderr: string;
}

/** An expected outcome did not happen: the demo fails. */
export class DemoFailure extends Error {}

export const short = (digest: string): string => `${digest.slice(0, 19)}…`;

export class Narrator {
  readonly say: (line: string) => void;
  readonly #bold: boolean;

  constructor(say: (line: string) => void, bold: boolean) {
    this.say = say;
    this.#bold = bold;
  }

  step(n: number, title: string): void {
    const line = `${n}. ${title}`;
    this.say('');
    this.say(this.#bold ? `\x1b[1m${line}\x1b[0m` : line);
  }

  note(text: string): void {
    this.say(`   ${text}`);
  }

  ok(text: string): void {
    this.say(`   ✔ ${text}`);
  }

  refused(text: string): void {
    this.say(`   ✘ refused: ${text}`);
  }

  /** The run succeeded and its first line is `digest`. */
  expectDigest(run: CliRun, digest: string, what: string): void {
    const first = run.stdout.split('\n')[0];
    if (run.code !== 0 || first !== digest) {
      throw new DemoFailure(`${what}: expected exit 0 and ${digest}, got exit ${run.code}: ${run.stdout.trim()} ${run.stderr.trim()}`);
    }
  }

  /** The run exited `code` with a message matching `reason`: told as a refusal, its text returned. */
  expectRefused(run: CliRun, code: number, reason: RegExp, what: string): string {
    const message = run.stderr.trim().split('\n').find((l) => l.startsWith('tufoci: ')) ?? run.stderr.trim();
    if (run.code !== code || !reason.test(message)) {
      throw new DemoFailure(`${what}: expected exit ${code} matching ${reason}, got exit ${run.code}: ${run.stdout.trim()} ${run.stderr.trim()}`);
    }
    const text = message.replace(/^tufoci: /, '');
    this.refused(`${text} (exit ${run.code})`);
    return text;
  }

  /** The run succeeded. */
  must(run: CliRun, what: string): CliRun {
    if (run.code !== 0) throw new DemoFailure(`${what} failed (exit ${run.code}): ${run.stderr.trim() || run.stdout.trim()}`);
    return run;
  }
}
