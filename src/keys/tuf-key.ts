/**
 * TUF public keys: the JSON form that goes into root and delegations, key ids,
 * and the normalized identity used to count each public key once.
 *
 * Supported: ed25519 (keyval.public = 64 hex chars of the raw key) and ECDSA
 * P-256 (keytype "ecdsa", scheme "ecdsa-sha2-nistp256", keyval.public = SPKI PEM),
 * the forms python-tuf/securesystemslib, go-tuf and tuf-js all read.
 *
 * Key ids follow the specification: the hex SHA-256 of the OLPC canonical
 * JSON of {keytype, scheme, keyval}, the form securesystemslib, python-tuf,
 * go-tuf and tuf-js hash. OLPC escapes only `"` and `\` and writes every other
 * character raw, so a PEM public value (ECDSA) hashes with literal newlines;
 * RFC 8785 would write `\n` and give another id. `legacyKeyId` is that RFC 8785
 * id, which tufoci wrote before, kept only to recognise and repair old listings.
 */
import { createHash, createPublicKey, type KeyObject } from 'node:crypto';
import canonicalize from 'canonicalize';
import { canonicalize as olpc } from '@tufjs/canonical-json';
import { TufociError } from '../errors.ts';

export type KeyType = 'ed25519' | 'ecdsa-p256';

export interface TufKeyJson {
  keytype: string;
  scheme: string;
  keyval: { public: string };
}

export type KeyErrorCode =
  | 'BAD_KEY'
  | 'UNSUPPORTED_KEY'
  | 'KEY_FILE_PERMISSIONS'
  | 'KEY_FILE_MISSING'
  // pkcs11: keys (src/keys/pkcs11.ts)
  | 'BAD_KEY_URI'
  | 'PKCS11_UNAVAILABLE'
  | 'PKCS11_FAILED'
  | 'KEY_NOT_FOUND'
  | 'KEY_AMBIGUOUS'
  | 'PIN_REQUIRED'
  | 'PIN_INCORRECT'
  // online key sets (src/keys/online-keyring.ts)
  | 'BAD_KEYRING' // keyring.json is not a list of sets
  | 'TOO_MANY_KEY_SETS'
  | 'KEY_SET_NOT_FOUND'
  | 'BUSY'; // another instance is creating the key set asked for: retry

export class KeyError extends TufociError<KeyErrorCode> {}

const ED25519_SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');
const HEX64 = /^[0-9a-f]{64}$/;

function keyBody(key: TufKeyJson): TufKeyJson {
  return { keytype: key.keytype, scheme: key.scheme, keyval: { public: key.keyval.public } };
}

/** The key id the TUF specification defines: SHA-256 of the key's OLPC canonical JSON. */
export function computeKeyId(key: TufKeyJson): string {
  return createHash('sha256').update(olpc(keyBody(key) as never)).digest('hex');
}

/**
 * The id tufoci wrote before it followed the specification (SHA-256 of the RFC 8785
 * form). Equal to `computeKeyId` for keys without control characters (ed25519 hex);
 * different for every PEM (ECDSA) key. Used only to flag and repair old listings.
 */
export function legacyKeyId(key: TufKeyJson): string {
  const out = canonicalize(keyBody(key));
  if (out === undefined) throw new KeyError('BAD_KEY', 'key cannot be canonicalized');
  return createHash('sha256').update(out).digest('hex');
}

/** The TUF JSON form of a Node public KeyObject. */
export function tufKeyFromPublicKey(pub: KeyObject): TufKeyJson {
  if (pub.asymmetricKeyType === 'ed25519') {
    const der = pub.export({ type: 'spki', format: 'der' });
    return { keytype: 'ed25519', scheme: 'ed25519', keyval: { public: der.subarray(ED25519_SPKI_PREFIX.length).toString('hex') } };
  }
  if (pub.asymmetricKeyType === 'ec' && pub.asymmetricKeyDetails?.namedCurve === 'prime256v1') {
    const pem = pub.export({ type: 'spki', format: 'pem' }).toString();
    return { keytype: 'ecdsa', scheme: 'ecdsa-sha2-nistp256', keyval: { public: pem } };
  }
  throw new KeyError('UNSUPPORTED_KEY', `unsupported key type ${pub.asymmetricKeyType ?? 'unknown'}`, {
    detail: { keyType: pub.asymmetricKeyType },
  });
}

/**
 * A parsed, usable public key: its TUF JSON, key id, Node KeyObject, and a
 * normalized identity (hex of the SPKI DER) shared by every encoding of the same key.
 */
export interface PublicKeyInfo {
  readonly keyid: string;
  readonly json: TufKeyJson;
  readonly keyObject: KeyObject;
  readonly identity: string;
  /** Hash algorithm for crypto.verify: null for ed25519, 'sha256' for P-256. */
  readonly hash: 'sha256' | null;
}

const SCHEMES: Record<string, { keytypes: readonly string[]; node: string; curve?: string; hash: 'sha256' | null }> = {
  ed25519: { keytypes: ['ed25519'], node: 'ed25519', hash: null },
  'ecdsa-sha2-nistp256': { keytypes: ['ecdsa', 'ecdsa-sha2-nistp256'], node: 'ec', curve: 'prime256v1', hash: 'sha256' },
};

/** True when (keytype, scheme) is a pair tufoci can verify. */
export function isSupportedKeyPair(keytype: string, scheme: string): boolean {
  return SCHEMES[scheme]?.keytypes.includes(keytype) ?? false;
}

const cache = new Map<string, PublicKeyInfo>();
const CACHE_LIMIT = 4096;

/**
 * Parse a TUF key into a PublicKeyInfo. Results are memoized by content (a pure
 * cache: parsing a KeyObject costs far more than the signature check itself).
 * `keyid` is the id the key is listed under; it is not trusted for identity.
 */
export function parsePublicKey(keyid: string, json: TufKeyJson): PublicKeyInfo {
  const cacheKey = `${keyid}\0${json.keytype}\0${json.scheme}\0${json.keyval.public}`;
  const hit = cache.get(cacheKey);
  if (hit) return hit;
  const scheme = SCHEMES[json.scheme];
  if (!scheme || !scheme.keytypes.includes(json.keytype)) {
    throw new KeyError('UNSUPPORTED_KEY', `unsupported key type/scheme ${json.keytype}/${json.scheme}`, {
      detail: { keyid, keytype: json.keytype, scheme: json.scheme },
    });
  }
  let keyObject: KeyObject;
  try {
    if (scheme.node === 'ed25519') {
      const pub = json.keyval.public;
      if (!HEX64.test(pub)) throw new Error('ed25519 public key must be 64 lowercase hex characters');
      keyObject = createPublicKey({ key: Buffer.concat([ED25519_SPKI_PREFIX, Buffer.from(pub, 'hex')]), format: 'der', type: 'spki' });
    } else {
      keyObject = createPublicKey(json.keyval.public);
    }
  } catch (cause) {
    throw new KeyError('BAD_KEY', `key ${keyid.slice(0, 12)} cannot be parsed`, { detail: { keyid }, cause });
  }
  if (keyObject.asymmetricKeyType !== scheme.node || (scheme.curve && keyObject.asymmetricKeyDetails?.namedCurve !== scheme.curve)) {
    throw new KeyError('BAD_KEY', `key ${keyid.slice(0, 12)} does not match its scheme ${json.scheme}`, { detail: { keyid } });
  }
  const identity = keyObject.export({ type: 'spki', format: 'der' }).toString('hex');
  const info: PublicKeyInfo = { keyid, json, keyObject, identity, hash: scheme.hash };
  if (cache.size >= CACHE_LIMIT) cache.delete(cache.keys().next().value as string);
  cache.set(cacheKey, info);
  return info;
}

/** Parse a public key file: TUF key JSON or an SPKI PEM. */
export function parsePublicKeyText(text: string): TufKeyJson {
  const trimmed = text.trim();
  if (trimmed.startsWith('-----BEGIN PUBLIC KEY-----')) {
    try {
      return tufKeyFromPublicKey(createPublicKey(trimmed));
    } catch (cause) {
      if (cause instanceof KeyError) throw cause;
      throw new KeyError('BAD_KEY', 'public key PEM cannot be parsed', { cause });
    }
  }
  let value: unknown;
  try {
    value = JSON.parse(trimmed);
  } catch (cause) {
    throw new KeyError('BAD_KEY', 'public key is neither TUF key JSON nor an SPKI PEM', { cause });
  }
  if (!isTufKeyJson(value)) throw new KeyError('BAD_KEY', 'public key JSON needs keytype, scheme and keyval.public strings');
  return { keytype: value.keytype, scheme: value.scheme, keyval: { public: value.keyval.public } };
}

export function isTufKeyJson(value: unknown): value is TufKeyJson {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Record<string, unknown>;
  const keyval = v['keyval'];
  return (
    typeof v['keytype'] === 'string' &&
    typeof v['scheme'] === 'string' &&
    typeof keyval === 'object' &&
    keyval !== null &&
    typeof (keyval as Record<string, unknown>)['public'] === 'string'
  );
}
