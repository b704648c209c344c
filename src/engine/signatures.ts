/**
 * Threshold signature verification that counts each public key once.
 *
 * Invariants:
 * - Only keys the delegating role authorizes (its `keyids`) can count.
 * - Keys are grouped by identity (the SPKI DER of the public key), not by key
 *   id: two key ids for one key, or two signatures by one key, count once.
 *   (@tufjs/models' `verifyDelegate` counts key ids, which is why this file exists.)
 * - The result is data, not an exception: which keys signed, which are missing,
 *   which signatures were ignored and why, so a refusal can be explained.
 * - Parsed keys are memoized by content in keys/tuf-key.ts; nothing here does I/O.
 */
import { verify as cryptoVerify } from 'node:crypto';
import type { Key } from '@tufjs/models';
import { parsePublicKey, type PublicKeyInfo, type TufKeyJson } from '../keys/tuf-key.ts';

export interface SignatureEntry {
  keyid: string;
  sig: string;
}

export type IgnoredReason = 'not-authorized' | 'unknown-key' | 'bad-key' | 'duplicate-key' | 'invalid-signature';

export interface VerificationResult {
  role: string;
  threshold: number;
  /** One key id per distinct key whose valid signature counted. */
  signed: string[];
  /** One key id per distinct authorized key without a valid signature. */
  unsigned: string[];
  /** Signatures that did not count, and why. */
  ignored: Array<{ keyid: string; reason: IgnoredReason }>;
  ok: boolean;
}

export interface AuthorizedRole {
  keyIDs: readonly string[];
  threshold: number;
}

export type KeyMap = Readonly<Record<string, Key | TufKeyJson>>;

/** A models Key (or key JSON) as TUF key JSON. */
export function asJson(key: Key | TufKeyJson): TufKeyJson {
  if ('keyVal' in key) return { keytype: key.keyType, scheme: key.scheme, keyval: { public: key.keyVal['public'] ?? '' } };
  return key;
}

/** Signature hex, either case (the specification fixes none; every TUF client decodes both to the same bytes). */
const HEX = /^(?:[0-9a-fA-F]{2})+$/;

export function verifySignature(info: PublicKeyInfo, data: Uint8Array, sigHex: string): boolean {
  if (!HEX.test(sigHex) || sigHex.length > 1024) return false;
  try {
    return cryptoVerify(info.hash, data, info.keyObject, Buffer.from(sigHex, 'hex'));
  } catch {
    return false;
  }
}

/** Resolve the authorized keys of a role into distinct identities. */
export function authorizedIdentities(role: AuthorizedRole, keys: KeyMap): {
  byIdentity: Map<string, Array<{ keyid: string; info: PublicKeyInfo }>>;
  problems: Array<{ keyid: string; reason: IgnoredReason }>;
} {
  const byIdentity = new Map<string, Array<{ keyid: string; info: PublicKeyInfo }>>();
  const problems: Array<{ keyid: string; reason: IgnoredReason }> = [];
  for (const keyid of new Set(role.keyIDs)) {
    const key = Object.hasOwn(keys, keyid) ? keys[keyid] : undefined;
    if (!key) {
      problems.push({ keyid, reason: 'unknown-key' });
      continue;
    }
    let info: PublicKeyInfo;
    try {
      info = parsePublicKey(keyid, asJson(key));
    } catch {
      problems.push({ keyid, reason: 'bad-key' });
      continue;
    }
    const group = byIdentity.get(info.identity);
    if (group) group.push({ keyid, info });
    else byIdentity.set(info.identity, [{ keyid, info }]);
  }
  return { byIdentity, problems };
}

export function verifyThreshold(
  roleName: string,
  signedBytes: Uint8Array,
  signatures: readonly SignatureEntry[],
  role: AuthorizedRole,
  keys: KeyMap,
): VerificationResult {
  const { byIdentity } = authorizedIdentities(role, keys);
  const sigByKeyId = new Map<string, string>();
  const ignored: VerificationResult['ignored'] = [];
  const authorizedIds = new Set<string>();
  for (const group of byIdentity.values()) for (const { keyid } of group) authorizedIds.add(keyid);
  for (const s of signatures) {
    if (sigByKeyId.has(s.keyid)) ignored.push({ keyid: s.keyid, reason: 'duplicate-key' });
    else if (!authorizedIds.has(s.keyid)) ignored.push({ keyid: s.keyid, reason: 'not-authorized' });
    else sigByKeyId.set(s.keyid, s.sig);
  }
  const signed: string[] = [];
  const unsigned: string[] = [];
  for (const group of byIdentity.values()) {
    let counted: string | undefined;
    for (const { keyid, info } of group) {
      const sig = sigByKeyId.get(keyid);
      if (sig === undefined) continue;
      if (counted !== undefined) {
        ignored.push({ keyid, reason: 'duplicate-key' });
      } else if (verifySignature(info, signedBytes, sig)) {
        counted = keyid;
      } else {
        ignored.push({ keyid, reason: 'invalid-signature' });
      }
    }
    const first = group[0];
    if (counted !== undefined) signed.push(counted);
    else if (first) unsigned.push(first.keyid);
  }
  return { role: roleName, threshold: role.threshold, signed, unsigned, ignored, ok: signed.length >= role.threshold && role.threshold >= 1 };
}

/** "1 of 2 signatures; missing key 4f3a…" */
export function describeVerification(r: VerificationResult): string {
  const parts = [`${r.role}: ${r.signed.length} of ${r.threshold} required signatures`];
  if (r.unsigned.length > 0) parts.push(`missing ${r.unsigned.map((k) => k.slice(0, 12)).join(', ')}`);
  const dup = r.ignored.filter((i) => i.reason === 'duplicate-key').length;
  if (dup > 0) parts.push(`${dup} duplicate signature(s) by an already counted key ignored`);
  const bad = r.ignored.filter((i) => i.reason === 'invalid-signature').length;
  if (bad > 0) parts.push(`${bad} invalid signature(s)`);
  const unauth = r.ignored.filter((i) => i.reason === 'not-authorized').length;
  if (unauth > 0) parts.push(`${unauth} signature(s) by keys not authorized for ${r.role}`);
  return parts.join('; ');
}
