/**
 * Docker credential helpers for tests.
 *
 * - `startPassStore`: the real `docker-credential-pass` (Debian
 *   golang-docker-credential-helpers) over a real `pass` store, encrypted to a
 *   throwaway gpg key without passphrase, all under a temporary directory
 *   (GNUPGHOME, PASSWORD_STORE_DIR). Headless: no pinentry is ever asked.
 *   `stop()` ends the gpg-agent that gpg started for that GNUPGHOME
 *   (`gpgconf --kill`, which addresses that agent only) and removes the directory.
 * - `writeHelper`: a small `docker-credential-<name>` shell script speaking the
 *   same protocol, for the cases a real helper will not produce on demand
 *   (hangs, bad JSON, failures, identity tokens).
 * Missing binaries are a failure, never a skip.
 */
import { execFileSync } from 'node:child_process';
import { accessSync, chmodSync, constants, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const PASS_HELPER_BINARIES = ['/usr/bin/docker-credential-pass', '/usr/bin/pass', '/usr/bin/gpg', '/usr/bin/gpgconf', '/usr/bin/gpg-agent'];

export function assertPassHelper(): void {
  for (const binary of PASS_HELPER_BINARIES) {
    try {
      accessSync(binary, constants.X_OK);
    } catch {
      throw new Error(`${binary} is missing: run \`apt-get install golang-docker-credential-helpers pass gnupg\` — the credential helper tests use the real docker-credential-pass and do not skip`);
    }
  }
}

export interface PassStore {
  /** GNUPGHOME and PASSWORD_STORE_DIR, to add to a helper's (or tufoci's) environment. */
  env: Record<string, string>;
  /** `docker-credential-pass store`: keep credentials for `serverUrl`. */
  store(serverUrl: string, username: string, secret: string): void;
  stop(): void;
}

export function startPassStore(): PassStore {
  assertPassHelper();
  const dir = mkdtempSync(join(tmpdir(), 'tufoci-pass-'));
  const gnupgHome = join(dir, 'gnupg');
  mkdirSync(gnupgHome, { mode: 0o700 });
  const env = { GNUPGHOME: gnupgHome, PASSWORD_STORE_DIR: join(dir, 'store') };
  const full = { ...process.env, ...env };
  const run = (cmd: string, args: string[], input?: string): string =>
    execFileSync(cmd, args, { env: full, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'], ...(input !== undefined ? { input } : {}) });
  try {
    run('gpg', ['--batch', '--passphrase', '', '--quick-gen-key', 'tufoci test <tufoci-test@example.invalid>', 'default', 'default', 'never']);
    const fingerprint = /^fpr:+([0-9A-F]{40}):/m.exec(run('gpg', ['--batch', '--with-colons', '--list-secret-keys']))?.[1];
    if (!fingerprint) throw new Error('gpg made no key');
    run('pass', ['init', fingerprint]);
  } catch (error) {
    stopAgent(full);
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  return {
    env,
    store(serverUrl, username, secret) {
      run('docker-credential-pass', ['store'], JSON.stringify({ ServerURL: serverUrl, Username: username, Secret: secret }));
    },
    stop() {
      stopAgent(full);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function stopAgent(env: NodeJS.ProcessEnv): void {
  try {
    execFileSync('gpgconf', ['--kill', 'gpg-agent'], { env, stdio: 'ignore' });
  } catch {
    // no agent was started
  }
}

/**
 * `dir/docker-credential-<name>`: a shell script that reads the server URL from stdin
 * (appending it to $HELPER_LOG when set) and runs `body` with it in "$key".
 */
export function writeHelper(dir: string, name: string, body: string): string {
  const path = join(dir, `docker-credential-${name}`);
  writeFileSync(path, `#!/bin/sh\nkey=$(cat)\n[ -n "$HELPER_LOG" ] && printf '%s %s\\n' '${name}' "$key" >> "$HELPER_LOG"\n${body}\n`);
  chmodSync(path, 0o755);
  return path;
}

/** A helper answering `{"ServerURL": key, "Username": username, "Secret": secret}`. */
export function writeAnsweringHelper(dir: string, name: string, username: string, secret: string): string {
  const json = (s: string): string => JSON.stringify(s).replace(/'/g, `'\\''`);
  return writeHelper(dir, name, `printf '{"ServerURL":"%s","Username":${json(username)},"Secret":${json(secret)}}' "$key"`);
}
