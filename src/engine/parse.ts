/**
 * Bytes → parsed TUF metadata, or a typed refusal.
 *
 * Invariants:
 * - The size bound is checked before anything else is done with the bytes.
 * - The bytes must read the same in every conforming parser (strict-json.ts:
 *   no duplicate member names, integers only, no unpaired surrogates, bounded
 *   depth); that pass is linear and runs before any value is built.
 * - Every count the models would iterate over (signatures, keys, roles,
 *   delegations, path patterns, targets) is bounded on the plain JSON, before
 *   any @tufjs/models object is built: no upload can make parsing superlinear.
 * - Input is `unknown` until checked: `{signed, signatures}`, `_type`, spec
 *   version 1.x, integer version ≥ 1, `expires` a real calendar instant in UTC
 *   (RFC 3339, `Z`, seconds precision), hex signatures with unique key ids.
 * - The bytes that signatures are checked over are the canonical form of the
 *   `signed` object *as @tufjs/models re-serializes it*, which is what every
 *   tuf-js client verifies. If that differs from the canonical form of the
 *   object as uploaded, the upload is refused (NOT_CANONICAL): the service must
 *   never accept a file that some client would read differently.
 * - Nothing thrown from here is untyped: model errors become MALFORMED with the
 *   original error kept as `cause`.
 */
import type { Metadata, Root, Snapshot, Targets, Timestamp } from '@tufjs/models';
import { isDeepStrictEqual } from 'node:util';
import { checkDistinctNames } from './strict-json.ts';
import { EngineError } from './errors.ts';
import type { SignatureEntry } from './signatures.ts';
import { metadataFromParts, signedFromJSON, signedToJSON } from './models.ts';
import {
  DEFAULT_PARSE_LIMITS,
  checkRoleLists,
  lazySignedBytes,
  parseExpires,
  readEnvelope,
  scanEnvelope,
  strictRefusal,
  type ParseHooks,
  type ParseLimits,
  type RoleType,
} from './envelope.ts';

export {
  DEFAULT_PARSE_LIMITS,
  MetadataPrecheck,
  binsHint,
  limitsFromPolicy,
  parseExpires,
  precheckMetadata,
  readEnvelopeStrict,
  readEnvelopeVerified,
  type Envelope,
  type ParseHooks,
  type ParseLimits,
  type RoleType,
} from './envelope.ts';

export interface KindMap {
  root: Root;
  targets: Targets;
  snapshot: Snapshot;
  timestamp: Timestamp;
}

export interface Parsed<K extends RoleType> {
  readonly md: Metadata<KindMap[K]>;
  readonly bytes: Uint8Array;
  readonly signedBytes: Buffer;
  readonly signatures: readonly SignatureEntry[];
}

export function parseMetadata<K extends RoleType>(
  kind: K,
  bytes: Uint8Array,
  maxBytes: number,
  label: string = kind,
  limits: ParseLimits = DEFAULT_PARSE_LIMITS,
  hooks: ParseHooks = {},
): Parsed<K> {
  const detail = { role: label };
  // Names are checked here in the envelope and in `signed` (the fields read below come from
  // there); deeper, once the signatures verified (below): a junk-signed file never pays for them.
  const scanned = scanEnvelope(kind, bytes, maxBytes, label, limits);
  const { text } = scanned;
  const { signatures, version } = readEnvelope(kind, scanned, label, hooks);
  const json = JSON.parse(text) as Record<string, unknown>;
  const signed = json['signed'] as Record<string, unknown>;
  checkRoleLists(kind, label, signed, limits);
  // The canonical bytes of the object as sent; when the models reproduce that object (checked
  // below), they are also the bytes every client verifies. Computed at most once.
  const canonical = lazySignedBytes(scanned, signed, label);
  hooks.beforeModels?.({ signatures, signedBytes: canonical, version });
  try {
    checkDistinctNames(scanned, json, { label: `${label} metadata` }); // every name, before anything is trusted
  } catch (cause) {
    throw strictRefusal(cause, label, detail);
  }
  let md: Metadata<KindMap[K]>;
  try {
    const { signed: _s, signatures: _sigs, ...unrecognized } = json;
    md = metadataFromParts(signedFromJSON(kind, signed) as KindMap[K], signatures, unrecognized);
  } catch (cause) {
    throw new EngineError('MALFORMED', `${label}: not well-formed ${kind} metadata`, { detail, cause });
  }
  // Clients verify the canonical form of what the models re-serialize; it must be the object uploaded.
  const reserialized = signedToJSON(md.signed);
  if (!isDeepStrictEqual(reserialized, signed)) {
    throw new EngineError('NOT_CANONICAL', `${label}: signed part does not survive a parse/serialize round trip; clients would verify different bytes`, {
      detail,
    });
  }
  return { md, bytes, signedBytes: canonical(), signatures };
}

export function expiresAt(md: Metadata<Root | Targets | Snapshot | Timestamp>): number {
  return parseExpires(md.signed.expires);
}
