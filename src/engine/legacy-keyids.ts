/**
 * Key ids written before tufoci followed the TUF specification.
 *
 * tufoci once hashed keys in their RFC 8785 form (`legacyKeyId`); the
 * specification hashes the OLPC form (`computeKeyId`), which gives another id
 * for every PEM (ECDSA) key. Repositories created before the fix list such keys
 * under the old id, in root and in delegations, and their signatures carry it.
 *
 * Invariants:
 * - Metadata accepted before keeps loading and verifying: verification matches
 *   signatures to the ids a role lists, whatever they are, and counts each key
 *   once by identity (signatures.ts).
 * - No new upload lists a key under its legacy id (upload.ts `checkKeys`:
 *   BAD_KEY with `expected`, the id to list it under).
 * - A signer whose key the trusted delegator lists under the legacy id signs
 *   under both ids, same signature bytes in two entries (`signingIds`): the
 *   trusted listing counts one, the re-listed one (correct id) counts the other,
 *   so re-listing never leaves a gap.
 */
import type { Root, Targets } from '@tufjs/models';
import { computeKeyId, legacyKeyId, type TufKeyJson } from '../keys/tuf-key.ts';
import { asJson, type KeyMap } from './signatures.ts';

export interface LegacyKeyListing {
  /** The metadata that lists the key: "root", or the delegating targets role. */
  listedIn: string;
  /** The roles it is listed for: root's roles, or the delegated role names (the hash bins' prefix). */
  roles: string[];
  /** The legacy id it is listed under. */
  keyid: string;
  /** Its id per the specification. */
  expected: string;
}

const memo = new Map<string, { correct: string; legacy: string }>();
const MEMO_LIMIT = 4096;

/** Both ids of a key (memoized: status and signing ask for the same few keys over and over). */
export function keyIdsOf(key: TufKeyJson): { correct: string; legacy: string } {
  const cacheKey = `${key.keytype}\0${key.scheme}\0${key.keyval.public}`;
  let ids = memo.get(cacheKey);
  if (!ids) {
    ids = { correct: computeKeyId(key), legacy: legacyKeyId(key) };
    if (memo.size >= MEMO_LIMIT) memo.delete(memo.keys().next().value as string);
    memo.set(cacheKey, ids);
  }
  return ids;
}

/** True when `keyid` is the legacy id of `key` and differs from its specification id. */
export function isLegacyKeyId(keyid: string, key: TufKeyJson): boolean {
  const ids = keyIdsOf(key);
  return keyid === ids.legacy && keyid !== ids.correct;
}

/**
 * The ids a signer of `key` signs under, given the ids the trusted delegator
 * lists (`trustedIds`): its specification id, and its legacy id too when that is
 * what the trusted delegator lists.
 */
export function signingIds(key: TufKeyJson, trustedIds: Iterable<string> = []): string[] {
  const ids = keyIdsOf(key);
  const listed = new Set(trustedIds);
  return ids.legacy !== ids.correct && listed.has(ids.legacy) ? [ids.correct, ids.legacy] : [ids.correct];
}

/** The id among `listed` that names `key` (its specification id or its legacy one), if any. */
export function listedIdOf(key: TufKeyJson, listed: readonly string[]): string | undefined {
  const { correct, legacy } = keyIdsOf(key);
  return listed.includes(correct) ? correct : listed.includes(legacy) ? legacy : undefined;
}

function legacyIn(keys: KeyMap, listedIn: string, roles: Array<[string, readonly string[]]>): LegacyKeyListing[] {
  const out: LegacyKeyListing[] = [];
  const byId = new Map<string, LegacyKeyListing>();
  for (const [role, keyids] of roles) {
    for (const keyid of keyids) {
      const key = Object.hasOwn(keys, keyid) ? keys[keyid] : undefined;
      if (!key || !isLegacyKeyId(keyid, asJson(key))) continue;
      const seen = byId.get(keyid);
      if (seen) {
        if (!seen.roles.includes(role)) seen.roles.push(role);
        continue;
      }
      const entry = { listedIn, roles: [role], keyid, expected: keyIdsOf(asJson(key)).correct };
      byId.set(keyid, entry);
      out.push(entry);
    }
  }
  return out;
}

/**
 * Every key that `root` and the targets roles list under a legacy id: root's
 * first (in the order root, targets, snapshot, timestamp), then each targets
 * role's delegations in the order given.
 */
export function legacyKeyListings(root: Root, targets: Iterable<readonly [string, Targets]>): LegacyKeyListing[] {
  const out = legacyIn(
    root.keys,
    'root',
    (['root', 'targets', 'snapshot', 'timestamp'] as const).map((r) => [r, root.roles[r]?.keyIDs ?? []]),
  );
  for (const [role, t] of targets) {
    const d = t.delegations;
    if (!d) continue;
    const roles: Array<[string, readonly string[]]> = Object.entries(d.roles ?? {}).map(([name, r]) => [name, r.keyIDs]);
    if (d.succinctRoles) roles.push([`${d.succinctRoles.namePrefix}-*`, d.succinctRoles.keyIDs]);
    out.push(...legacyIn(d.keys, role, roles));
  }
  return out;
}

/**
 * Re-list, in the JSON of a root (`keys` + `roles`) or of a targets role's
 * `delegations` object, every key listed under its legacy id under its
 * specification id instead. Returns what was renamed; `json` is changed in place.
 */
export function relistLegacyKeyIds(json: Record<string, unknown>): Array<{ keyid: string; expected: string }> {
  const keys = json['keys'] as Record<string, TufKeyJson> | undefined;
  if (!keys) return [];
  const renamed = new Map<string, string>();
  for (const [keyid, key] of Object.entries(keys)) {
    if (isLegacyKeyId(keyid, key)) renamed.set(keyid, keyIdsOf(key).correct);
  }
  if (renamed.size === 0) return [];
  const rebuilt: Record<string, TufKeyJson> = {};
  for (const [keyid, key] of Object.entries(keys)) rebuilt[renamed.get(keyid) ?? keyid] = key;
  json['keys'] = rebuilt;
  const fix = (r: { keyids?: string[] } | undefined): void => {
    if (r?.keyids) r.keyids = [...new Set(r.keyids.map((id) => renamed.get(id) ?? id))];
  };
  const roles = json['roles'];
  if (Array.isArray(roles)) for (const r of roles as Array<{ keyids?: string[] }>) fix(r);
  else if (roles && typeof roles === 'object') for (const r of Object.values(roles as Record<string, { keyids?: string[] }>)) fix(r);
  fix(json['succinct_roles'] as { keyids?: string[] } | undefined);
  return [...renamed].map(([keyid, expected]) => ({ keyid, expected }));
}
