/**
 * Registry credentials from the Docker CLI's configuration, looked up the way
 * the Docker CLI looks them up (docker/cli cli/config/configfile), so a
 * `docker login` is enough for tufoci:
 *
 * 1. The config file is `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
 * 2. The key of a registry is its host as the image reference names it,
 *    port included (`registry.example:5000`); Docker Hub's (`docker.io`,
 *    `index.docker.io`, `registry-1.docker.io`) is `https://index.docker.io/v1/`.
 * 3. `credHelpers[key]` names the helper for that registry; otherwise
 *    `credsStore` names the helper for every registry. With a helper, the
 *    helper alone answers: `docker-credential-<name> get`, the key on stdin,
 *    `{"ServerURL","Username","Secret"}` on stdout. "credentials not found in
 *    native keychain" (exit 1), or an empty Username and Secret, means no
 *    credentials: anonymous access, as Docker does (the `auths` entry is not
 *    consulted then). Username `<token>` means Secret is an identity token
 *    (an OAuth2 refresh token, see registry-auth.ts).
 * 4. Without a helper: `auths[key]` (`auth` = base64 "user:password", or
 *    `username`/`password`, or `identitytoken`), else the first `auths`
 *    entry whose key, stripped of scheme and path, is the key
 *    (`https://registry.example:5000/v2/`).
 *
 * A helper runs with a timeout (killed by PID when it passes) and bounded
 * output; a missing helper, a failure, a timeout or output that is not the
 * credentials JSON is a `CredentialHelperError` naming the helper, where it
 * was configured and the registry, never the secret. Nothing here logs.
 */
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { TufociError } from '../errors.ts';
import type { Credentials } from '../storage/registry-auth.ts';
import { UsageError } from './common.ts';

export type CredentialHelperErrorCode = 'CREDENTIAL_HELPER_MISSING' | 'CREDENTIAL_HELPER_FAILED' | 'CREDENTIAL_HELPER_TIMEOUT' | 'CREDENTIAL_HELPER_BAD_OUTPUT';

export class CredentialHelperError extends TufociError<CredentialHelperErrorCode> {}

/** Docker Hub's key in config.json (docker/cli's registry.IndexServer). */
export const DOCKER_HUB_KEY = 'https://index.docker.io/v1/';
const DOCKER_HUB_HOSTS = new Set(['docker.io', 'index.docker.io', 'registry-1.docker.io']);
/** The host Docker Hub's registry API answers on. */
export const DOCKER_HUB_API_HOST = 'registry-1.docker.io';

/** What Docker keys a registry's credentials by: its host[:port], or Docker Hub's legacy URL. */
export function dockerConfigKey(host: string): string {
  return DOCKER_HUB_HOSTS.has(host.toLowerCase()) ? DOCKER_HUB_KEY : host;
}

/** docker/cli's ConvertToHostname: `https://host:port/path` → `host:port`; `host/path` → `host`. */
export function convertToHostname(key: string): string {
  if (key.includes('://')) {
    try {
      const u = new URL(key);
      if (u.hostname) return u.host;
    } catch {
      // not a URL: cut at the first slash below
    }
  }
  return key.split('/')[0] ?? key;
}

export const DEFAULT_HELPER_TIMEOUT_MS = 30_000;
/** Far above any real answer (tokens of a few KiB), far below trouble. */
export const MAX_HELPER_OUTPUT_BYTES = 256 * 1024;
const NOT_FOUND = 'credentials not found in native keychain';
const HELPER_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;

export interface HelperOptions {
  /** Environment of the helper (PATH finds it); default process.env. */
  env?: NodeJS.ProcessEnv;
  timeoutMs?: number;
  maxOutputBytes?: number;
  /** Where the helper was configured, for messages (e.g. `credsStore in /home/u/.docker/config.json`). */
  origin?: string;
}

/** The helper's own words on failure, when they are short and plain (never JSON, which could carry a secret). */
function helperMessage(stdout: string, stderr: string): string {
  for (const text of [stdout.trim(), stderr.trim().split('\n').at(-1)?.trim() ?? '']) {
    if (text && text.length <= 300 && !text.includes('\n') && !/^[[{]/.test(text)) return `: ${text}`;
  }
  return '';
}

/**
 * `docker-credential-<name> get` for `serverUrl`: the credentials, or undefined when the helper has none.
 */
export function runCredentialHelper(name: string, serverUrl: string, opts: HelperOptions = {}): Promise<Credentials | undefined> {
  const program = `docker-credential-${name}`;
  const where = `${program}${opts.origin ? ` (${opts.origin})` : ''}`;
  const timeoutMs = opts.timeoutMs ?? DEFAULT_HELPER_TIMEOUT_MS;
  const maxBytes = opts.maxOutputBytes ?? MAX_HELPER_OUTPUT_BYTES;
  if (!HELPER_NAME.test(name)) {
    return Promise.reject(new UsageError(`credential helper name "${name.slice(0, 100)}"${opts.origin ? ` (${opts.origin})` : ''} is not a plain program suffix (letters, digits, . _ -)`));
  }
  return new Promise((resolve, reject) => {
    // Loaded only when a helper runs (node:child_process is a few ms of every command's start-up).
    const { spawn } = process.getBuiltinModule('node:child_process');
    const child = spawn(program, ['get'], { env: opts.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let outBytes = 0;
    let err = '';
    let settled = false;
    let failure: CredentialHelperError | undefined;
    const detail = { helper: program, server: serverUrl };
    const alive = (): boolean => child.exitCode === null && child.signalCode === null;
    const finish = (result: { ok: Credentials | undefined } | { error: Error }): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      child.stdout.destroy();
      child.stderr.destroy();
      if ('error' in result) reject(result.error);
      else resolve(result.ok);
    };
    /** Give up: kill the helper by its PID (the 'exit' event then reports `error`), or report at once when it is gone. */
    const stop = (error: CredentialHelperError): void => {
      if (failure || settled) return;
      failure = error;
      if (alive() && child.pid !== undefined) child.kill('SIGKILL');
      else finish({ error });
    };
    const timer = setTimeout(() => stop(new CredentialHelperError('CREDENTIAL_HELPER_TIMEOUT', `credential helper ${where} did not answer for ${serverUrl} within ${timeoutMs} ms; it was stopped`, { detail })), timeoutMs);
    child.stdout.on('data', (chunk: Buffer) => {
      outBytes += chunk.byteLength;
      if (outBytes > maxBytes) stop(new CredentialHelperError('CREDENTIAL_HELPER_BAD_OUTPUT', `credential helper ${where} printed more than ${maxBytes} bytes for ${serverUrl}; it was stopped`, { detail }));
      else out.push(chunk);
    });
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk: string) => {
      if (err.length < 4096) err += chunk.slice(0, 4096 - err.length);
    });
    child.stdin.on('error', () => undefined); // a helper that exits without reading stdin: its exit status tells
    child.on('error', (error: NodeJS.ErrnoException) => {
      const missing = error.code === 'ENOENT';
      finish({
        error: new CredentialHelperError(
          missing ? 'CREDENTIAL_HELPER_MISSING' : 'CREDENTIAL_HELPER_FAILED',
          missing ? `credential helper ${where} is not installed: no ${program} on PATH (needed for ${serverUrl})` : `credential helper ${where} could not be started for ${serverUrl}: ${error.code ?? error.message}`,
          { detail, cause: error },
        ),
      });
    });
    // Stopped (timeout, too much output): done once the helper is gone, whoever still holds its pipes.
    child.on('exit', () => {
      if (failure) finish({ error: failure });
    });
    // Otherwise the answer is complete once the helper has exited and its output has ended.
    child.on('close', (code, signal) => {
      if (failure) return finish({ error: failure });
      const stdout = Buffer.concat(out).toString('utf8');
      if (code !== 0) {
        if (code !== null && stdout.trim() === NOT_FOUND) return finish({ ok: undefined });
        const how = code !== null ? `exit ${code}` : `signal ${signal}`;
        return finish({ error: new CredentialHelperError('CREDENTIAL_HELPER_FAILED', `credential helper ${where} failed for ${serverUrl} (${how})${helperMessage(stdout, err)}`, { detail: { ...detail, exitCode: code, signal } }) });
      }
      const parsed = parseHelperAnswer(stdout);
      if (parsed === 'bad') {
        return finish({ error: new CredentialHelperError('CREDENTIAL_HELPER_BAD_OUTPUT', `credential helper ${where} answered for ${serverUrl} with something that is not {"ServerURL","Username","Secret"} JSON`, { detail }) });
      }
      finish({ ok: parsed });
    });
    child.stdin.end(serverUrl);
  });
}

function parseHelperAnswer(stdout: string): Credentials | undefined | 'bad' {
  let value: unknown;
  try {
    value = JSON.parse(stdout);
  } catch {
    return 'bad';
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'bad';
  const { Username: username = '', Secret: secret = '' } = value as { Username?: unknown; Secret?: unknown };
  if (typeof username !== 'string' || typeof secret !== 'string') return 'bad';
  if (username === '' && secret === '') return undefined; // some helpers say "none" this way
  if (username === '<token>') return secret ? { identityToken: secret } : undefined;
  return { username, password: secret };
}

interface AuthEntry {
  auth?: unknown;
  username?: unknown;
  password?: unknown;
  identitytoken?: unknown;
}

interface DockerConfig {
  auths?: Record<string, AuthEntry>;
  credsStore?: unknown;
  credHelpers?: Record<string, unknown>;
}

export interface DockerCredentialOptions extends Omit<HelperOptions, 'origin'> {
  /** Directory of config.json; default $DOCKER_CONFIG, else ~/.docker. */
  configDir?: string;
}

export interface FoundCredentials {
  credentials: Credentials | undefined;
  /** Where they came from, for messages: never the secret. */
  source: string;
}

function fromAuthEntry(entry: AuthEntry, path: string, key: string): Credentials | undefined {
  if (typeof entry.identitytoken === 'string' && entry.identitytoken) return { identityToken: entry.identitytoken };
  if (typeof entry.auth === 'string' && entry.auth) {
    const text = Buffer.from(entry.auth, 'base64').toString('utf8');
    const i = text.indexOf(':');
    if (i <= 0) throw new UsageError(`${path}: auths["${key}"].auth is not base64 of "user:password"`);
    return { username: text.slice(0, i), password: text.slice(i + 1).replace(/\0+$/, '') };
  }
  if (typeof entry.username === 'string' && entry.username) return { username: entry.username, password: typeof entry.password === 'string' ? entry.password : '' };
  return undefined;
}

/**
 * The credentials Docker would use for `host` (see the file comment), or undefined when its
 * configuration has none (no file, no entry, or a helper that knows none).
 */
export async function dockerCredentials(host: string, opts: DockerCredentialOptions = {}): Promise<FoundCredentials | undefined> {
  const env = opts.env ?? process.env;
  const dir = opts.configDir ?? env['DOCKER_CONFIG'] ?? join(homedir(), '.docker');
  const path = join(dir, 'config.json');
  if (!existsSync(path)) return undefined;
  let config: DockerConfig;
  try {
    const parsed: unknown = JSON.parse(readFileSync(path, 'utf8'));
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('not an object');
    config = parsed as DockerConfig;
  } catch {
    throw new UsageError(`${path} is not valid JSON`);
  }
  const key = dockerConfigKey(host);
  const helpers = config.credHelpers !== undefined && typeof config.credHelpers === 'object' && config.credHelpers !== null ? config.credHelpers : {};
  const perRegistry = Object.hasOwn(helpers, key) ? helpers[key] : undefined;
  const helper = perRegistry !== undefined ? perRegistry : config.credsStore;
  const origin = perRegistry !== undefined ? `credHelpers["${key}"] in ${path}` : `credsStore in ${path}`;
  if (helper !== undefined && helper !== '') {
    if (typeof helper !== 'string') throw new UsageError(`${origin} must be a string (a docker-credential-<name> suffix)`);
    const credentials = await runCredentialHelper(helper, key, { ...opts, env, origin });
    return { credentials, source: `docker-credential-${helper} (${origin})` };
  }
  const auths = config.auths !== undefined && typeof config.auths === 'object' && config.auths !== null ? config.auths : {};
  const entryKey = Object.hasOwn(auths, key) ? key : Object.keys(auths).find((k) => convertToHostname(k) === key);
  if (entryKey === undefined) return undefined;
  const entry = auths[entryKey];
  if (typeof entry !== 'object' || entry === null) return undefined;
  return { credentials: fromAuthEntry(entry, path, entryKey), source: `auths["${entryKey}"] in ${path}` };
}
