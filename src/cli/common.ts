/** What every `tufoci` command shares: usage errors, output, durations, the service client. */
import { existsSync, readFileSync } from 'node:fs';
import { ServiceClient } from '../client/service-client.ts';

import { UsageError } from './usage-error.ts';

export { UsageError };

export interface Output {
  json: boolean;
  /** A human line (suppressed with --json). */
  say(line: string): void;
  /** The machine result (printed as JSON with --json). */
  result(value: unknown): void;
}

export function output(json: boolean): Output {
  return {
    json,
    say: (line) => {
      if (!json) console.log(line);
    },
    result: (value) => {
      if (json) console.log(JSON.stringify(value, null, 2));
    },
  };
}

/** `30d`, `12h`, `10m`, `90s` → milliseconds. */
export function parseDuration(text: string, flag: string): number {
  const m = /^(\d{1,7})([smhdy])$/.exec(text);
  if (!m) throw new UsageError(`${flag} must look like 30d, 12h, 10m or 90s, got "${text}"`);
  const unit = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000, y: 365 * 86_400_000 }[m[2] as 's' | 'm' | 'h' | 'd' | 'y'];
  return Number(m[1]) * unit;
}

export function positiveInt(text: string | undefined, flag: string, fallback: number): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 1) throw new UsageError(`${flag} must be a positive integer, got "${text}"`);
  return n;
}

/** The service's URL and token from --server/--token, TUFOCI_SERVER/TUFOCI_TOKEN, or a local ./data/admin-token. */
export function serviceEndpoint(values: { server?: string | undefined; token?: string | undefined }): { url: string; token?: string } {
  const url = values.server ?? process.env['TUFOCI_SERVER'] ?? 'http://127.0.0.1:8080';
  let token = values.token ?? process.env['TUFOCI_TOKEN'];
  if (!token && existsSync('data/admin-token')) token = readFileSync('data/admin-token', 'utf8').trim();
  return { url, ...(token ? { token } : {}) };
}

/** The service client of serviceEndpoint; `timeoutMs` for a call that may take longer than the default 30 s. */
export function serviceClient(values: { server?: string | undefined; token?: string | undefined }, opts: { timeoutMs?: number } = {}): ServiceClient {
  return new ServiceClient({ ...serviceEndpoint(values), ...opts });
}

export const SERVER_OPTIONS = {
  server: { type: 'string' },
  token: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

export const SERVER_HELP = `  --server URL       the tufoci service (default $TUFOCI_SERVER or http://127.0.0.1:8080)
  --token TOKEN      bearer token (default $TUFOCI_TOKEN, else ./data/admin-token when present)
  --json             print the result as JSON
  -h, --help         this help`;
