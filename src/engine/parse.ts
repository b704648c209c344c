/**
 * Bytes → parsed TUF metadata, or a typed refusal.
 *
 * Invariants:
 * - The size bound is checked before anything else is done with the bytes.
 * - Input is `unknown` until checked: strict UTF-8, JSON, `{signed, signatures}`,
 *   `_type`, spec version 1.x, integer version ≥ 1, RFC 3339 `expires` in UTC,
 *   hex signatures with unique key ids.
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
import { canonicalSignedBytes } from './canonical.ts';
import { EngineError } from './errors.ts';
import type { SignatureEntry } from './signatures.ts';
import { metadataFromParts, signedFromJSON, signedToJSON } from './models.ts';

export type RoleType = 'root' | 'targets' | 'snapshot' | 'timestamp';
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

const SPEC_VERSION = /^1\.[0-9]{1,4}(?:\.[0-9]{1,4})?$/;
const EXPIRES = /^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$/;
const KEYID = /^[0-9a-f]{64}$/;
const SIG = /^(?:[0-9a-f]{2}){1,512}$/;
const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false });

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function parseExpires(expires: string): number {
  return EXPIRES.test(expires) ? Date.parse(expires) : Number.NaN;
}

export function parseMetadata<K extends RoleType>(kind: K, bytes: Uint8Array, maxBytes: number, label: string = kind): Parsed<K> {
  const detail = { role: label };
  if (bytes.byteLength > maxBytes) {
    throw new EngineError('TOO_LARGE', `${label} metadata is ${bytes.byteLength} bytes, above the limit of ${maxBytes}`, {
      detail: { ...detail, size: bytes.byteLength, limit: maxBytes },
    });
  }
  let text: string;
  let json: unknown;
  try {
    text = decoder.decode(bytes);
    json = JSON.parse(text);
  } catch (cause) {
    throw new EngineError('MALFORMED', `${label} metadata is not valid UTF-8 JSON`, { detail, cause });
  }
  if (!isObject(json) || !isObject(json['signed']) || !Array.isArray(json['signatures'])) {
    throw new EngineError('MALFORMED', `${label} metadata must be an object with "signed" and "signatures"`, { detail });
  }
  const signed = json['signed'];
  if (signed['_type'] !== kind) {
    throw new EngineError('WRONG_TYPE', `expected ${kind} metadata, got _type ${JSON.stringify(signed['_type'])?.slice(0, 40)}`, {
      detail: { ...detail, expected: kind },
    });
  }
  const spec = signed['spec_version'];
  if (typeof spec !== 'string' || !SPEC_VERSION.test(spec)) {
    throw new EngineError('UNSUPPORTED_SPEC_VERSION', `${label}: spec_version must be 1.x, got ${JSON.stringify(spec)?.slice(0, 40)}`, {
      detail,
    });
  }
  const version = signed['version'];
  if (typeof version !== 'number' || !Number.isSafeInteger(version) || version < 1) {
    throw new EngineError('MALFORMED', `${label}: version must be an integer ≥ 1`, { detail });
  }
  const expires = signed['expires'];
  if (typeof expires !== 'string' || Number.isNaN(parseExpires(expires))) {
    throw new EngineError('MALFORMED', `${label}: expires must be a UTC timestamp like 2030-01-01T00:00:00Z`, { detail });
  }
  const signatures: SignatureEntry[] = [];
  const seen = new Set<string>();
  for (const s of json['signatures'] as unknown[]) {
    if (!isObject(s) || typeof s['keyid'] !== 'string' || typeof s['sig'] !== 'string' || !KEYID.test(s['keyid']) || !SIG.test(s['sig'])) {
      throw new EngineError('MALFORMED', `${label}: each signature needs a 64-hex keyid and a hex sig`, { detail });
    }
    if (seen.has(s['keyid'])) {
      throw new EngineError('MALFORMED', `${label}: two signatures carry key id ${s['keyid'].slice(0, 12)}`, {
        detail: { ...detail, keyid: s['keyid'] },
      });
    }
    seen.add(s['keyid']);
    signatures.push({ keyid: s['keyid'], sig: s['sig'] });
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
  let signedBytes: Buffer;
  try {
    signedBytes = canonicalSignedBytes(reserialized);
  } catch (cause) {
    throw new EngineError('MALFORMED', `${label}: signed part has no canonical JSON form (floats are not allowed)`, { detail, cause });
  }
  return { md, bytes, signedBytes, signatures };
}

export function expiresAt(md: Metadata<Root | Targets | Snapshot | Timestamp>): number {
  return parseExpires(md.signed.expires);
}
