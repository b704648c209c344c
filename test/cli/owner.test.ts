/** The owner's CLI path against a real service: keygen → init → delegate → status, and clear failures. */
import { mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type RunningServer } from '../../src/main.ts';
import { runTufoci, type CliResult } from '../support/cli.ts';

const dir = mkdtempSync(join(tmpdir(), 'tufoci-cli-'));
let server: RunningServer;
let env: NodeJS.ProcessEnv;

const tufoci = (...args: string[]): Promise<CliResult> => runTufoci(args, { cwd: dir, env });

beforeAll(async () => {
  server = await startServer({ dataDir: join(dir, 'data'), port: 0, logger: pino({ level: 'silent' }) });
  env = { ...process.env, TUFOCI_SERVER: server.url, TUFOCI_TOKEN: readFileSync(join(dir, 'data', 'admin-token'), 'utf8').trim() };
});
afterAll(async () => server.close());

describe('tufoci owner commands', () => {
  it('keygen → init → delegate add → status', async () => {
    for (const [name, type] of [['root', 'ed25519'], ['targets', 'ed25519'], ['ci', 'ecdsa-p256']]) {
      const r = await tufoci('keygen', name as string, '--type', type as string, '--json');
      expect(r.code).toBe(0);
      expect(JSON.parse(r.stdout).keyid).toMatch(/^[0-9a-f]{64}$/);
      expect(statSync(join(dir, `${name}.key`)).mode & 0o777).toBe(0o600);
    }
    expect((await tufoci('keygen', 'root')).code).not.toBe(0); // never overwrites
    const init = await tufoci('init', 'wabbit-networks/net-monitor', '--root-key', 'root.key', '--targets-key', 'targets.key');
    expect(init.code, init.stderr).toBe(0);
    expect(init.stdout).toContain('created wabbit-networks/net-monitor');
    const add = await tufoci('delegate', 'add', 'wabbit-networks/net-monitor', 'ci', '--key', 'ci.pub', '--paths', 'v*', '--terminating', '--targets-key', 'targets.key', '--json');
    expect(add.code, add.stderr).toBe(0);
    expect(JSON.parse(add.stdout)).toMatchObject({ role: 'targets', version: 2 });
    const status = JSON.parse((await tufoci('status', 'wabbit-networks/net-monitor', '--json')).stdout);
    expect(status.roles.find((r: { role: string }) => r.role === 'targets').version).toBe(2);
    const rm = await tufoci('delegate', 'remove', 'wabbit-networks/net-monitor', 'ci', '--targets-key', 'targets.key');
    expect(rm.code, rm.stderr).toBe(0);
  });

  it('expiring: lists roles in the window and exits 1 when an offline role is in it', async () => {
    const soon = await tufoci('expiring', '--within', '2d', '--json');
    expect(soon.code).toBe(0); // only the online timestamp (1 day) is inside 2 days
    expect(JSON.parse(soon.stdout).map((r: { role: string }) => r.role)).toEqual(['timestamp']);
    const far = await tufoci('expiring', '--within', '100d');
    expect(far.code).toBe(1); // targets (90 days) is offline
    expect(far.stdout).toMatch(/wabbit-networks\/net-monitor  targets v\d+ expires/);
  });

  it('fails with a message and a non-zero exit', async () => {
    const wrongKey = await tufoci('delegate', 'add', 'wabbit-networks/net-monitor', 'x', '--key', 'ci.pub', '--targets-key', 'root.key');
    expect(wrongKey.code).toBe(2);
    expect(wrongKey.stderr).toMatch(/not signed by your targets key/);
    const missing = await tufoci('status', 'nobody/here');
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/no TUF repository nobody\/here \(REPO_NOT_FOUND\)/);
    const usage = await tufoci('init');
    expect(usage.code).toBe(2);
    expect((await tufoci('frobnicate')).stderr).toMatch(/unknown command/);
    expect((await tufoci('init', '--help')).stdout).toMatch(/usage: tufoci init/);
  });
});
