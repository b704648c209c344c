/**
 * Building and signing metadata on the owner's side (CLI, tests, demo, bench).
 *
 * Pure: no I/O, no clock. Delegations are built in exactly one place,
 * `delegationsJson` + `Targets.fromJSON`, because @tufjs/models does not export
 * its Delegations/DelegatedRole/SuccinctRoles classes.
 */
import { Metadata, Root, Signature, Targets, TargetFile, type Snapshot, type Timestamp } from '@tufjs/models';
import { computeKeyId, type TufKeyJson } from '../keys/tuf-key.ts';
import type { Signer } from '../keys/signer.ts';
import { canonicalSignedBytes } from './canonical.ts';
import { SCOPE_FIELD, memberFields } from './scope.ts';
import { signingIds } from './legacy-keyids.ts';
import { encodeMetadata, signedFromJSON, signedToJSON } from './models.ts';

export const SPEC_VERSION = '1.0.31';

/** TUF expiry string, seconds precision. */
export function isoExpiry(ms: number): string {
  return new Date(Math.floor(ms / 1000) * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

export interface RoleKeys {
  keys: readonly TufKeyJson[];
  threshold: number;
}

export interface RootSpec {
  version: number;
  expires: string;
  root: RoleKeys;
  targets: RoleKeys;
  snapshot: RoleKeys;
  timestamp: RoleKeys;
  /** The repository (or `namespace/`) this root vouches for, signed in as `x-tufoci-scope` (scope.ts). */
  scope?: string;
}

export function buildRoot(spec: RootSpec): Root {
  const keys: Record<string, Json> = {};
  const roles: Record<string, Json> = {};
  for (const name of ['root', 'targets', 'snapshot', 'timestamp'] as const) {
    const ids: string[] = [];
    for (const k of spec[name].keys) {
      const keyid = computeKeyId(k);
      keys[keyid] = { keytype: k.keytype, scheme: k.scheme, keyval: { public: k.keyval.public } };
      if (!ids.includes(keyid)) ids.push(keyid);
    }
    roles[name] = { keyids: ids, threshold: spec[name].threshold };
  }
  return Root.fromJSON({
    _type: 'root',
    spec_version: SPEC_VERSION,
    version: spec.version,
    expires: spec.expires,
    consistent_snapshot: true,
    keys,
    roles,
    ...(spec.scope !== undefined ? { [SCOPE_FIELD]: spec.scope } : {}),
  });
}

export interface ImageTarget {
  /** Manifest digest, `sha256:<hex>`. */
  digest: string;
  /** Manifest size in bytes. */
  size: number;
  mediaType: string;
  /** Extra fields for `custom` (documented in docs/FORMAT.md). */
  custom?: Record<string, string | number | boolean>;
}

export function targetFile(path: string, t: ImageTarget): TargetFile {
  const hex = t.digest.startsWith('sha256:') ? t.digest.slice(7) : t.digest;
  return new TargetFile({ path, length: t.size, hashes: { sha256: hex }, unrecognizedFields: { custom: { ...t.custom, mediaType: t.mediaType } } });
}

export interface DelegationSpec {
  name: string;
  keys: readonly TufKeyJson[];
  threshold: number;
  paths?: readonly string[];
  terminating?: boolean;
  /**
   * The hash bins the role's own keys spread its tags over (`x-tufoci-bins`, a power of two ≥ 2):
   * the role then delegates to `<name>-<hex>` bins itself (TAP 15) and lists no tags of its own.
   */
  bins?: number;
}

/** The delegation entry field naming the hash bins a role spreads its tags over (binsFor). */
export const BINS_FIELD = 'x-tufoci-bins';

/**
 * How many hash bins suit a role expected to hold `tags` tags: the power of two that makes the
 * least a cold client downloads, the snapshot's entry per bin (~110 bytes) against the bin's
 * entries (~150 bytes per tag); 1 (no bins) for up to 64 tags, and at most `max`.
 */
export function binsFor(tags: number, max: number): number {
  if (!(tags > 64)) return 1;
  const cost = (b: number): number => 110 * b + (150 * tags) / b;
  let best = 2;
  for (let b = 4; b <= max; b *= 2) if (cost(b) < cost(best)) best = b;
  return Math.min(best, max);
}

export interface BinsSpec {
  namePrefix: string;
  /** Number of bins, a power of two ≥ 2. */
  bins: number;
  keys: readonly TufKeyJson[];
  threshold: number;
}

export interface TargetsSpec {
  version: number;
  expires: string;
  targets?: Record<string, ImageTarget>;
  delegations?: readonly DelegationSpec[];
  bins?: BinsSpec;
  /** In a namespace, the member these targets are for: `x-tufoci-scope` and `x-tufoci-namespace` (scope.ts). */
  member?: { repository: string; namespace: string };
}

type Json = string | number | boolean | null | Json[] | { [k: string]: Json };

/** The JSON of a `delegations` object. */
export function delegationsJson(spec: { delegations?: readonly DelegationSpec[]; bins?: BinsSpec }): Record<string, Json> | undefined {
  if (!spec.delegations?.length && !spec.bins) return undefined;
  const keys: Record<string, Json> = {};
  const addKeys = (list: readonly TufKeyJson[]): string[] =>
    list.map((k) => {
      const id = computeKeyId(k);
      keys[id] = { keytype: k.keytype, scheme: k.scheme, keyval: { public: k.keyval.public } };
      return id;
    });
  const out: Record<string, Json> = { keys };
  if (spec.bins) {
    const bitLength = Math.log2(spec.bins.bins);
    if (!Number.isInteger(bitLength) || bitLength < 1) throw new RangeError('bins must be a power of two ≥ 2');
    out['succinct_roles'] = {
      keyids: addKeys(spec.bins.keys),
      threshold: spec.bins.threshold,
      bit_length: bitLength,
      name_prefix: spec.bins.namePrefix,
    };
  } else {
    out['roles'] = (spec.delegations ?? []).map((d) => ({
      name: d.name,
      keyids: addKeys(d.keys),
      threshold: d.threshold,
      terminating: d.terminating ?? false,
      paths: [...(d.paths ?? ['*'])],
      ...(d.bins !== undefined && d.bins > 1 ? { [BINS_FIELD]: d.bins } : {}),
    }));
  }
  return out;
}

export function buildTargets(spec: TargetsSpec): Targets {
  const targets: Record<string, Json> = {};
  for (const [path, t] of Object.entries(spec.targets ?? {})) targets[path] = targetFile(path, t).toJSON() as Json;
  const json: Record<string, Json> = { _type: 'targets', spec_version: SPEC_VERSION, version: spec.version, expires: spec.expires, targets };
  const delegations = delegationsJson(spec);
  if (delegations) json['delegations'] = delegations;
  if (spec.member !== undefined) Object.assign(json, memberFields(spec.member.namespace, spec.member.repository));
  return signedFromJSON('targets', json) as Targets;
}

export interface SignOptions {
  /**
   * The key ids the trusted delegator of the role lists (root's role, or the delegation). A signer
   * whose key it lists under the id tufoci wrote before following the TUF specification signs
   * under that id as well as under its own (legacy-keyids.ts): the metadata then verifies under the
   * current listing and under one that re-lists the key correctly.
   */
  trustedIds?: Iterable<string>;
}

/** Sign `signed` with each signer over its canonical form; returns the file bytes. */
export async function signMetadata(signed: Root | Targets | Snapshot | Timestamp, signers: readonly Signer[], opts: SignOptions = {}): Promise<Uint8Array> {
  return (await signParts(signed, signers, opts)).bytes;
}

/**
 * Sign, and return what parseMetadata would make of the result (file bytes, the canonical bytes
 * signed, the signatures) without parsing it again: for metadata this process builds itself.
 */
export async function signParts<T extends Root | Targets | Snapshot | Timestamp>(
  signed: T,
  signers: readonly Signer[],
  opts: SignOptions = {},
): Promise<{ md: Metadata<T>; bytes: Uint8Array; signedBytes: Buffer; signatures: Array<{ keyid: string; sig: string }> }> {
  const json = signedToJSON(signed); // once: the canonical form is signed, the same object is written
  const signedBytes = canonicalSignedBytes(json);
  const md = new Metadata(signed);
  const signatures: Array<{ keyid: string; sig: string }> = [];
  const trusted = opts.trustedIds ? [...opts.trustedIds] : [];
  for (const s of signers) {
    const sig = await s.sign(signedBytes);
    md.signatures[sig.keyid] = new Signature({ keyID: sig.keyid, sig: sig.sig });
    signatures.push({ keyid: sig.keyid, sig: sig.sig });
    for (const alias of trusted.length ? signingIds(s.public, trusted) : []) {
      if (md.signatures[alias]) continue;
      md.signatures[alias] = new Signature({ keyID: alias, sig: sig.sig });
      signatures.push({ keyid: alias, sig: sig.sig });
    }
  }
  const written = Object.values(md.signatures).map((x) => ({ keyid: x.keyID, sig: x.sig }));
  return { md, bytes: encodeMetadata(written, json, signedBytes, md.unrecognizedFields as Record<string, unknown>), signedBytes, signatures };
}

/** The hash bin (TAP 15) of `path` in a targets role that delegates with succinct_roles. */
export function binFor(delegator: Targets, path: string): string {
  const succinct = delegator.delegations?.succinctRoles;
  if (!succinct) throw new RangeError('this targets role does not delegate to hash bins');
  return succinct.getRoleForTarget(path);
}

/**
 * The next version of a targets role: the current one's JSON, changed by
 * `edit`, with version + 1 and a new expiry. Used by owners to add or remove
 * delegations and targets without losing what the role already holds.
 */
export function nextTargets(current: Targets, expires: string, edit: (json: Record<string, unknown>) => void): Targets {
  const json = structuredClone(signedToJSON(current));
  edit(json);
  json['version'] = current.version + 1;
  json['expires'] = expires;
  return signedFromJSON('targets', json) as Targets;
}

/** Add (or replace) an explicit delegation in a targets role's JSON. */
export function putDelegation(json: Record<string, unknown>, spec: DelegationSpec): void {
  const existing = (json['delegations'] ?? { keys: {}, roles: [] }) as { keys: Record<string, unknown>; roles?: Array<Record<string, unknown>>; succinct_roles?: unknown };
  if (existing.succinct_roles) throw new RangeError('this role delegates to hash bins; it cannot also delegate to named roles');
  const built = delegationsJson({ delegations: [spec] }) as { keys: Record<string, unknown>; roles: Array<Record<string, unknown>> };
  const roles = (existing.roles ?? []).filter((r) => r['name'] !== spec.name);
  roles.push(...built.roles);
  json['delegations'] = { keys: pruneKeys({ ...existing.keys, ...built.keys }, roles), roles };
}

/** Remove a delegation (its role stays listed in the snapshot; clients stop consulting it). */
export function removeDelegation(json: Record<string, unknown>, name: string): boolean {
  const existing = json['delegations'] as { keys: Record<string, unknown>; roles?: Array<Record<string, unknown>> } | undefined;
  const roles = existing?.roles ?? [];
  const kept = roles.filter((r) => r['name'] !== name);
  if (!existing || kept.length === roles.length) return false;
  if (kept.length === 0) delete json['delegations'];
  else json['delegations'] = { keys: pruneKeys(existing.keys, kept), roles: kept };
  return true;
}

/** Remove one key from a delegation, leaving the others. */
export function revokeDelegationKey(json: Record<string, unknown>, name: string, keyid: string): boolean {
  const existing = json['delegations'] as { keys: Record<string, unknown>; roles?: Array<Record<string, unknown>> } | undefined;
  const role = existing?.roles?.find((r) => r['name'] === name);
  const ids = (role?.['keyids'] ?? []) as string[];
  if (!existing || !role || !ids.includes(keyid)) return false;
  role['keyids'] = ids.filter((k) => k !== keyid);
  existing.keys = pruneKeys(existing.keys, existing.roles ?? []);
  return true;
}

function pruneKeys(keys: Record<string, unknown>, roles: Array<Record<string, unknown>>): Record<string, unknown> {
  const used = new Set(roles.flatMap((r) => (r['keyids'] ?? []) as string[]));
  return Object.fromEntries(Object.entries(keys).filter(([id]) => used.has(id)));
}
