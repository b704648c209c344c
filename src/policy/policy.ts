/**
 * Role policy: data in roles/*.json, loaded and validated once.
 *
 * Every duration is in minutes and every size in bytes. Validation is strict:
 * unknown fields are refused (a typo must not silently fall back to a default)
 * and every error names the file and the field path.
 */
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { TufociError } from '../errors.ts';

export const ROLE_CLASSES = ['root', 'targets', 'delegated', 'ci', 'snapshot', 'timestamp'] as const;
export type RoleClass = (typeof ROLE_CLASSES)[number];

export interface RolePolicy {
  expiresDefaultMinutes: number;
  expiresMaxMinutes: number;
  minThreshold: number;
  maxBytes: number;
}

export interface Policy {
  /** Where this policy came from (a file path or "inline"). */
  source: string;
  description: string;
  roles: Record<RoleClass, RolePolicy>;
  keyTypes: Array<{ keytype: string; scheme: string }>;
  refresh: { timestampMarginMinutes: number; snapshotMarginMinutes: number };
  bins: { default: number; max: number };
  limits: {
    maxTargetsPerRole: number;
    maxDelegationsPerRole: number;
    maxDelegationDepth: number;
    maxKeysPerRole: number;
    maxManifestBytes: number;
  };
  prune: { keepVersions: number };
}

export class PolicyError extends TufociError<'BAD_POLICY'> {}

type Obj = Record<string, unknown>;

class Reader {
  readonly source: string;
  constructor(source: string) {
    this.source = source;
  }
  fail(field: string, problem: string): never {
    throw new PolicyError('BAD_POLICY', `${this.source}: ${field}: ${problem}`, { detail: { file: this.source, field } });
  }
  object(value: unknown, field: string, keys: readonly string[], optional: readonly string[] = []): Obj {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) this.fail(field, 'must be an object');
    const obj = value as Obj;
    for (const k of Object.keys(obj)) {
      if (!keys.includes(k) && !optional.includes(k)) this.fail(field ? `${field}.${k}` : k, 'unknown field');
    }
    for (const k of keys) if (!(k in obj)) this.fail(field ? `${field}.${k}` : k, 'is required');
    return obj;
  }
  int(value: unknown, field: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
    if (typeof value !== 'number' || !Number.isInteger(value)) this.fail(field, 'must be an integer');
    if (value < min || value > max) this.fail(field, `must be between ${min} and ${max}`);
    return value;
  }
  string(value: unknown, field: string): string {
    if (typeof value !== 'string' || value.length === 0) this.fail(field, 'must be a non-empty string');
    return value;
  }
}

const ROLE_KEYS = ['expiresDefaultMinutes', 'expiresMaxMinutes', 'minThreshold', 'maxBytes'] as const;
const SUPPORTED_KEY_TYPES = new Set(['ed25519/ed25519', 'ecdsa/ecdsa-sha2-nistp256', 'ecdsa-sha2-nistp256/ecdsa-sha2-nistp256']);

/** Validate a parsed policy document. */
export function parsePolicy(value: unknown, source = 'inline'): Policy {
  const r = new Reader(source);
  const top = r.object(value, '', ['roles', 'keyTypes', 'refresh', 'bins', 'limits', 'prune'], ['description']);
  const rolesObj = r.object(top['roles'], 'roles', ROLE_CLASSES);
  const roles = {} as Record<RoleClass, RolePolicy>;
  for (const cls of ROLE_CLASSES) {
    const f = `roles.${cls}`;
    const o = r.object(rolesObj[cls], f, ROLE_KEYS);
    const def = r.int(o['expiresDefaultMinutes'], `${f}.expiresDefaultMinutes`, 1, 10 * 525600);
    const max = r.int(o['expiresMaxMinutes'], `${f}.expiresMaxMinutes`, 1, 10 * 525600);
    if (def > max) r.fail(`${f}.expiresDefaultMinutes`, `must not exceed expiresMaxMinutes (${max})`);
    roles[cls] = {
      expiresDefaultMinutes: def,
      expiresMaxMinutes: max,
      minThreshold: r.int(o['minThreshold'], `${f}.minThreshold`, 1, 64),
      maxBytes: r.int(o['maxBytes'], `${f}.maxBytes`, 512, 256 * 1024 * 1024),
    };
  }
  if (!Array.isArray(top['keyTypes']) || top['keyTypes'].length === 0) r.fail('keyTypes', 'must be a non-empty array');
  const keyTypes = (top['keyTypes'] as unknown[]).map((kt, i) => {
    const o = r.object(kt, `keyTypes[${i}]`, ['keytype', 'scheme']);
    const keytype = r.string(o['keytype'], `keyTypes[${i}].keytype`);
    const scheme = r.string(o['scheme'], `keyTypes[${i}].scheme`);
    if (!SUPPORTED_KEY_TYPES.has(`${keytype}/${scheme}`)) {
      r.fail(`keyTypes[${i}]`, `${keytype}/${scheme} is not a key type tufoci can verify (ed25519/ed25519, ecdsa/ecdsa-sha2-nistp256)`);
    }
    return { keytype, scheme };
  });
  const refresh = r.object(top['refresh'], 'refresh', ['timestampMarginMinutes', 'snapshotMarginMinutes']);
  const tsMargin = r.int(refresh['timestampMarginMinutes'], 'refresh.timestampMarginMinutes', 1);
  if (tsMargin >= roles.timestamp.expiresDefaultMinutes) {
    r.fail('refresh.timestampMarginMinutes', `must be below roles.timestamp.expiresDefaultMinutes (${roles.timestamp.expiresDefaultMinutes})`);
  }
  const ssMargin = r.int(refresh['snapshotMarginMinutes'], 'refresh.snapshotMarginMinutes', 1);
  if (ssMargin >= roles.snapshot.expiresDefaultMinutes) {
    r.fail('refresh.snapshotMarginMinutes', `must be below roles.snapshot.expiresDefaultMinutes (${roles.snapshot.expiresDefaultMinutes})`);
  }
  const bins = r.object(top['bins'], 'bins', ['default', 'max']);
  const binsMax = r.int(bins['max'], 'bins.max', 2, 65536);
  const binsDefault = r.int(bins['default'], 'bins.default', 0, binsMax);
  for (const [f, n] of [['bins.max', binsMax], ['bins.default', binsDefault]] as const) {
    if (n !== 0 && (n & (n - 1)) !== 0) r.fail(f, 'must be 0 or a power of two (succinct hash bins)');
  }
  const limits = r.object(top['limits'], 'limits', [
    'maxTargetsPerRole',
    'maxDelegationsPerRole',
    'maxDelegationDepth',
    'maxKeysPerRole',
    'maxManifestBytes',
  ]);
  const prune = r.object(top['prune'], 'prune', ['keepVersions']);
  return {
    source,
    description: top['description'] === undefined ? '' : r.string(top['description'], 'description'),
    roles,
    keyTypes,
    refresh: { timestampMarginMinutes: tsMargin, snapshotMarginMinutes: ssMargin },
    bins: { default: binsDefault, max: binsMax },
    limits: {
      maxTargetsPerRole: r.int(limits['maxTargetsPerRole'], 'limits.maxTargetsPerRole', 1, 10_000_000),
      maxDelegationsPerRole: r.int(limits['maxDelegationsPerRole'], 'limits.maxDelegationsPerRole', 1, 100_000),
      maxDelegationDepth: r.int(limits['maxDelegationDepth'], 'limits.maxDelegationDepth', 1, 32),
      maxKeysPerRole: r.int(limits['maxKeysPerRole'], 'limits.maxKeysPerRole', 1, 1024),
      maxManifestBytes: r.int(limits['maxManifestBytes'], 'limits.maxManifestBytes', 1024, 64 * 1024 * 1024),
    },
    prune: { keepVersions: r.int(prune['keepVersions'], 'prune.keepVersions', 1, 100_000) },
  };
}

/** Load and validate one policy file. */
export async function loadPolicyFile(path: string): Promise<Policy> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (cause) {
    throw new PolicyError('BAD_POLICY', `${path}: cannot be read`, { detail: { file: path }, cause });
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (cause) {
    throw new PolicyError('BAD_POLICY', `${path}: not valid JSON`, { detail: { file: path }, cause });
  }
  return parsePolicy(value, path);
}

/** The roles/ directory shipped with the project. */
export const ROLES_DIR = new URL('../../roles/', import.meta.url).pathname;

export function defaultPolicyPath(): string {
  return join(ROLES_DIR, 'default.json');
}

/** Load every *.json file of a directory (used by tests and `tufoci policy check`). */
export async function loadPolicyDir(dir: string = ROLES_DIR): Promise<Policy[]> {
  const names = (await readdir(dir)).filter((n) => n.endsWith('.json')).sort();
  return Promise.all(names.map((n) => loadPolicyFile(join(dir, n))));
}

export function minutes(n: number): number {
  return n * 60_000;
}
