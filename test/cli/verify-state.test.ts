/**
 * The pin wins over saved state: `verifyImage`'s state directory (and `tufoci
 * verify`'s $TUFOCI_HOME/state/<repo>) is used only while it descends from the
 * root pinned now — the same root, or one it reached from it by verified
 * rotations. Any other pin is refused, naming both roots and how to reset the
 * state (`tufoci trust reset <repo>`). A real registry holds the image, the
 * embedded-default service the TUF metadata; root 1 → 2 rotated with the CLI;
 * the unrelated root is another service's root for the same repository name.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type RunningServer } from '../../src/main.ts';
import { VerifyError, type VerifyImageOptions } from '../../src/client/verify-image.ts';
// Every verify runs through the client core and the unmodified tuf-js Updater; both must agree.
import { verifyBothClients as verifyImage } from '../support/differential.ts';
import { generateKeyFiles } from '../../src/keys/index.ts';
import { delegate, init } from '../../src/cli/commands/owner.ts';
import { publish } from '../../src/cli/commands/publisher.ts';
import { rotateRoot } from '../../src/cli/commands/rotate.ts';
import { RegistryStore } from '../../src/storage/index.ts';
import { startRegistry, type RegistryServer } from '../support/registry-server.ts';
import { pushImage, type PushedImage } from '../support/image.ts';
import { runCommandJson, runTufoci, type CliResult } from '../support/cli.ts';

const REPO = 'wabbit-networks/net-monitor';
const dir = mkdtempSync(join(tmpdir(), 'tufoci-verify-state-'));
let server: RunningServer;
let registry: RegistryServer;
let host: string;
let env: NodeJS.ProcessEnv;
let S: string[];
let v1: PushedImage;
let root1: Uint8Array;
let root2: Uint8Array;
let other: Uint8Array;

const f = (name: string): string => join(dir, name);
const cli = (fn: (argv: string[]) => Promise<void>, argv: string[]): Promise<Record<string, unknown>> => runCommandJson(fn, argv, S);
const tufoci = (...args: string[]): Promise<CliResult> => runTufoci(args, { cwd: dir, env });
const sha12 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex').slice(0, 12);

beforeAll(async () => {
  registry = await startRegistry();
  host = registry.url.replace('http://', '');
  server = await startServer({ dataDir: f('data'), port: 0, logger: pino({ level: 'silent' }) });
  const token = readFileSync(f('data/admin-token'), 'utf8').trim();
  S = ['--server', server.url, '--token', token];
  env = { ...process.env, TUFOCI_SERVER: server.url, TUFOCI_TOKEN: token, TUFOCI_HOME: f('home') };
  for (const name of ['root', 'root2', 'targets', 'ci', 'other-root', 'other-targets']) await generateKeyFiles(f(name), 'ed25519');
  v1 = await pushImage(new RegistryStore({ url: registry.url }), REPO, 'v1');
  await cli(init, [REPO, '--root-key', f('root.key'), '--targets-key', f('targets.key'), '--root-out', f('1.root.json')]);
  await cli(delegate, ['add', REPO, 'ci', '--key', f('ci.pub'), '--paths', 'v*', '--terminating', '--targets-key', f('targets.key')]);
  await cli(publish, [`${host}/${REPO}:v1`, '--role', 'ci', '--key', f('ci.key')]);
  await cli(rotateRoot, [REPO, '--old-key', f('root.key'), '--new-key', f('root2.key'), '--root-out', f('2.root.json')]);
  // An unrelated root for the same repository name: another owner's, on another service.
  const elsewhere = await startServer({ dataDir: f('data-elsewhere'), port: 0, logger: pino({ level: 'silent' }) });
  try {
    const elsewhereFlags = ['--server', elsewhere.url, '--token', readFileSync(f('data-elsewhere/admin-token'), 'utf8').trim()];
    await runCommandJson(init, [REPO, '--root-key', f('other-root.key'), '--targets-key', f('other-targets.key'), '--root-out', f('other.root.json')], elsewhereFlags);
  } finally {
    await elsewhere.close();
  }
  root1 = readFileSync(f('1.root.json'));
  root2 = readFileSync(f('2.root.json'));
  other = readFileSync(f('other.root.json'));
});
afterAll(async () => {
  await server?.close();
  await registry?.stop();
});

function verify(trustedRoot: Uint8Array, stateDir: string, extra: Partial<VerifyImageOptions> = {}) {
  return verifyImage({ store: new RegistryStore({ url: registry.url }), repository: REPO, tag: 'v1', trustedRoot, stateDir, serviceUrl: server.url, ...extra });
}

describe('saved state and the pinned root', () => {
  it('(a) state from pin 1 (walked to root 2), then a pin of an unrelated root: refused, naming both roots', async () => {
    const state = mkdtempSync(join(tmpdir(), 'tufoci-state-'));
    expect((await verify(root1, state)).tuf.root).toBe(2);
    expect(statSync(join(state, '.tufoci-pin')).mode & 0o777).toBe(0o600);

    const e = await verify(other, state).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(e).toBeInstanceOf(VerifyError);
    expect((e as VerifyError).code).toBe('STATE_NOT_FROM_PIN');
    const message = (e as VerifyError).message;
    expect(message).toContain(`pinned root v1 (sha256 ${sha12(other)})`);
    expect(message).toContain(`root v1 (sha256 ${sha12(root1)})`);
    expect(message).toContain(`root v2 (sha256 ${sha12(root2)})`);
    expect(message).toContain(`remove ${state}`);
    // The library caller can name its own reset command.
    await expect(verify(other, state, { resetHint: 'tufoci trust reset x' })).rejects.toThrow(/to start over from the pinned root, run: tufoci trust reset x$/);
  });

  it('(b) re-pinning to root 2 of the same chain, or back to root 1, is accepted', async () => {
    const state = mkdtempSync(join(tmpdir(), 'tufoci-state-'));
    expect((await verify(root1, state)).tuf.root).toBe(2);
    expect((await verify(root2, state)).digest).toBe(v1.digest);
    expect((await verify(root1, state)).digest).toBe(v1.digest);
  });

  it('(b) a state started from root 2 does not accept root 1: it never saw it', async () => {
    const state = mkdtempSync(join(tmpdir(), 'tufoci-state-'));
    expect((await verify(root2, state)).tuf.root).toBe(2);
    await expect(verify(root1, state)).rejects.toMatchObject({ code: 'STATE_NOT_FROM_PIN' });
  });

  it('(c, d) tufoci: a changed trust pin is refused with exit 1 and the reset command; tufoci trust reset makes verify work again', async () => {
    const ref = `${host}/${REPO}:v1`;
    // A wrong pin first: verify fails, but leaves state started from it.
    expect((await tufoci('trust', 'add', 'wabbit-networks/', 'other.root.json')).code).toBe(0);
    const wrong = await tufoci('verify', ref, '--server', server.url);
    expect(wrong.code).toBe(1);
    // The pin is corrected: the state from the wrong pin is not used.
    expect((await tufoci('trust', 'add', 'wabbit-networks/', '1.root.json')).code).toBe(0);
    const refused = await tufoci('verify', ref, '--server', server.url);
    expect(refused.code, refused.stderr).toBe(1);
    expect(refused.stderr).toContain(`pinned root v1 (sha256 ${sha12(root1)})`);
    expect(refused.stderr).toContain(`root v1 (sha256 ${sha12(other)})`);
    expect(refused.stderr).toContain(`run: tufoci trust reset ${REPO}`);
    expect(refused.stderr).toContain('(STATE_NOT_FROM_PIN)');

    const reset = await tufoci('trust', 'reset', REPO);
    expect(reset.code, reset.stderr).toBe(0);
    expect(reset.stdout).toContain(`removed the saved TUF state of ${REPO}`);
    const ok = await tufoci('verify', ref, '--server', server.url);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout.split('\n')[0]).toBe(v1.digest);

    // --state DIR: the hint names it, and reset takes it too.
    const custom = f('custom-state');
    expect((await tufoci('verify', ref, '--server', server.url, '--state', custom, '--trust', 'other.root.json')).code).toBe(1);
    const refusedCustom = await tufoci('verify', ref, '--server', server.url, '--state', custom);
    expect(refusedCustom.stderr).toContain(`run: tufoci trust reset ${REPO} --state ${custom}`);
    expect((await tufoci('trust', 'reset', REPO, '--state', custom)).code).toBe(0);
    expect((await tufoci('verify', ref, '--server', server.url, '--state', custom)).code).toBe(0);

    // Nothing to reset, or not a repository name.
    expect((await tufoci('trust', 'reset', 'wabbit-networks/nothing-here')).stdout).toContain('no saved TUF state');
    expect((await tufoci('trust', 'reset', 'Not A Repo')).code).toBe(2);
  });
});
