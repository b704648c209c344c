/**
 * Bytes → a TUF metadata envelope read strictly, or a typed refusal; no models.
 *
 * This is the half of parsing that builds no @tufjs/models object: the size bound, the strict
 * scan, the envelope's fields, the bounded counts, the canonical bytes of `signed`. The client
 * core reads everything through it (readEnvelopeStrict, readEnvelopeVerified), so the command a
 * user runs to verify loads no model class; parse.ts builds the models on top of it for the
 * engine's write path (parseMetadata).
 *
 * Invariants:
 * - The size bound is checked before anything else is done with the bytes.
 * - The bytes must read the same in every conforming parser (strict-json.ts:
 *   no duplicate member names, integers only, no unpaired surrogates, bounded
 *   depth); that pass is linear and runs before any value is built.
 * - Every count the models would iterate over (signatures, keys, roles,
 *   delegations, path patterns, targets) is bounded on the plain JSON, before
 *   any object is built: no input can make parsing superlinear.
 * - Input is `unknown` until checked: `{signed, signatures}`, `_type`, spec
 *   version 1.x, integer version ≥ 1, `expires` a real calendar instant in UTC
 *   (RFC 3339, `Z`, seconds precision), hex signatures with unique key ids.
 */
import { canonicalSignedBytes } from './canonical.ts';
import { EngineError } from './errors.ts';
import type { SignatureEntry } from './signatures.ts';
import { isAscii, isUtf8 } from 'node:buffer';
import { checkDistinctNames, scanStrictJson, scanStrictJsonAsync, spanText, StrictJsonError, StrictJsonStream, type Scanned, type StrictJsonOptions } from './strict-json.ts';

export type RoleType = 'root' | 'targets' | 'snapshot' | 'timestamp';
const SPEC_VERSION = /^1\.[0-9]{1,4}(?:\.[0-9]{1,4})?$/;
const EXPIRES = /^([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})Z$/;
const KEYID = /^[0-9a-f]{64}$/;
/** A signature's hex as tufoci and securesystemslib write it: what an upload must use. */
const SIG = /^(?:[0-9a-f]{2}){1,512}$/;
/**
 * A signature's hex in either case, as a client reads it: the specification fixes no case, and
 * tuf-js, python-tuf and go-tuf decode both to the same bytes, so a client refusing upper case
 * would refuse what every other client accepts.
 */
const SIG_ANY_CASE = /^(?:[0-9a-fA-F]{2}){1,512}$/;
const DAYS = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * `expires` as ms since the epoch, or NaN unless it is a real instant written
 * `YYYY-MM-DDTHH:MM:SSZ`. Date.parse alone rolls `2027-02-30` over to March 2
 * (and accepts hour 24); Python's strptime and Go's time.Parse refuse them, so
 * those are refused here too. Leap seconds (`:60`) are refused: parsers differ.
 */
export function parseExpires(expires: string): number {
  const m = EXPIRES.exec(expires);
  if (!m) return Number.NaN;
  const [year, month, day, hour, minute, second] = m.slice(1).map(Number) as [number, number, number, number, number, number];
  if (year < 1 || month < 1 || month > 12 || hour > 23 || minute > 59 || second > 59 || day < 1) return Number.NaN;
  const leap = month === 2 && (year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0));
  if (day > (DAYS[month - 1] as number) + (leap ? 1 : 0)) return Number.NaN;
  return Date.parse(expires);
}

/**
 * Bounds on what one metadata file may list, checked on the plain JSON before
 * any model object is built. The engine passes the policy's limits
 * (`limitsFromPolicy`); clients and tools reading metadata they did not
 * produce use `DEFAULT_PARSE_LIMITS`, the default policy's values.
 */
export interface ParseLimits {
  /** Targets in one targets role. */
  maxTargets: number;
  /** Delegated roles one targets role lists. */
  maxDelegations: number;
  /** Key ids one role (top-level or delegated) lists; also bounds root's roles' key ids. */
  maxKeysPerRole: number;
  /** Path patterns one delegation lists. */
  maxPathsPerDelegation: number;
}

export const DEFAULT_PARSE_LIMITS: ParseLimits = { maxTargets: 4096, maxDelegations: 256, maxKeysPerRole: 64, maxPathsPerDelegation: 1024 };

export function limitsFromPolicy(policy: { limits: { maxTargetsPerRole: number; maxDelegationsPerRole: number; maxKeysPerRole: number } }): ParseLimits {
  return {
    maxTargets: policy.limits.maxTargetsPerRole,
    maxDelegations: policy.limits.maxDelegationsPerRole,
    maxKeysPerRole: policy.limits.maxKeysPerRole,
    maxPathsPerDelegation: DEFAULT_PARSE_LIMITS.maxPathsPerDelegation,
  };
}

function countOf(v: unknown): number {
  if (Array.isArray(v)) return v.length;
  if (isObject(v)) {
    let n = 0;
    for (const _ in v) n++;
    return n;
  }
  return 0;
}

function bound(label: string, field: string, count: number, limit: number): void {
  if (count > limit) {
    throw new EngineError('POLICY_VIOLATION', `${label}: ${field} lists ${count} entries, above the limit of ${limit}`, {
      detail: { role: label, field, count, limit },
    });
  }
}

/** What fixes a role that lists more tags than a client can afford: hash bins (tufoci delegate add). */
export function binsHint(role: string): string {
  return `spread its tags over hash bins: tufoci delegate add <repo> ${role} --key <its key(s)> --expected-tags <how many> --targets-key <targets key> re-delegates ${role} with bins, and the next tufoci publish moves its tags into them`;
}

/** A refusal of the strict reader as the engine's error of the same name (BAD_JSON: MALFORMED; a list over its bound: POLICY_VIOLATION). */
export function strictRefusal(cause: unknown, label: string, detail: Record<string, unknown>): unknown {
  if (!(cause instanceof StrictJsonError)) return cause;
  const path = cause.detail['path'];
  if (cause.code === 'TOO_MANY_MEMBERS' && typeof path === 'string') {
    const field = path.replace(/^signed\//, '').replace(/\//g, '.');
    const limit = cause.detail['limit'];
    const fix = field === 'targets' ? `; ${binsHint(label)}` : '';
    return new EngineError('POLICY_VIOLATION', `${label}: ${field} lists more than ${String(limit)} entries, above the limit${fix}`, {
      detail: { ...detail, field, limit },
      cause,
    });
  }
  const code = cause.code === 'BAD_JSON' ? 'MALFORMED' : cause.code;
  return new EngineError(code, cause.code === 'BAD_JSON' ? `${label} metadata is not valid UTF-8 JSON (${cause.message})` : cause.message, {
    detail: { ...detail, ...cause.detail },
    cause,
  });
}

/**
 * Members of the envelope (`signed`, `signatures` and unrecognized fields) and of `signed` (eight
 * fields in the specification, and unrecognized ones): generous bounds, checked during the scan,
 * so a wide object there costs nothing. Below them only the bounds of `sizeBounds` apply.
 */
const ENVELOPE_MEMBERS: readonly number[] = [16, 64, Number.POSITIVE_INFINITY];

/** Member paths whose values parseMetadata reads or counts before the whole document is parsed. */
const CAPTURE: ReadonlySet<string> = new Set([
  'signed',
  'signatures',
  'signed/_type',
  'signed/spec_version',
  'signed/version',
  'signed/expires',
  'signed/keys',
  'signed/roles',
  'signed/targets',
  'signed/delegations/keys',
  'signed/delegations/roles',
]);

/** The bound on each captured list, by kind: the scan stops at the first entry beyond one. */
function sizeBounds(kind: RoleType, limits: ParseLimits): Map<string, number> {
  // A role can be signed by at most its keys; root by the old and the new root keys.
  const bounds = new Map<string, number>([['signatures', 2 * limits.maxKeysPerRole]]);
  if (kind === 'root') {
    bounds.set('signed/roles', 8);
    bounds.set('signed/keys', 4 * limits.maxKeysPerRole);
  } else if (kind === 'targets') {
    bounds.set('signed/targets', limits.maxTargets);
    bounds.set('signed/delegations/roles', limits.maxDelegations);
    bounds.set('signed/delegations/keys', limits.maxDelegations * limits.maxKeysPerRole);
  }
  return bounds;
}

/** Counts inside the (already bounded) role lists: key ids and path patterns per role. */
export function checkRoleLists(kind: RoleType, label: string, signed: Record<string, unknown>, limits: ParseLimits): void {
  if (kind === 'root') {
    const roles = signed['roles'];
    if (isObject(roles)) for (const [name, r] of Object.entries(roles)) if (isObject(r)) bound(label, `roles.${name}.keyids`, countOf(r['keyids']), limits.maxKeysPerRole);
  } else if (kind === 'targets') {
    const d = signed['delegations'];
    const roles = isObject(d) ? d['roles'] : undefined;
    if (!Array.isArray(roles)) return;
    for (const r of roles) {
      if (!isObject(r)) continue;
      const name = typeof r['name'] === 'string' ? r['name'].slice(0, 60) : '?';
      bound(label, `delegations.roles[${name}].keyids`, countOf(r['keyids']), limits.maxKeysPerRole);
      bound(label, `delegations.roles[${name}].paths`, countOf(r['paths']) + countOf(r['path_hash_prefixes']), limits.maxPathsPerDelegation);
    }
  }
}

/** Checks a caller runs before the expensive steps. */
export interface ParseHooks {
  /**
   * On the signatures alone, before the document is parsed: typically whether enough of them
   * carry key ids the trusted delegator lists, so a junk-signed file costs only the scan.
   */
  beforeParse?: (p: { signatures: readonly SignatureEntry[]; version: number }) => void;
  /**
   * Typically the signature threshold against the trusted keys, so a forged or
   * junk-signed file is refused before the cost of building models.
   */
  beforeModels?: (p: { signatures: readonly SignatureEntry[]; signedBytes: () => Buffer; version: number }) => void;
}

function checkSize(label: string, bytes: Uint8Array, maxBytes: number): void {
  if (bytes.byteLength > maxBytes) {
    throw new EngineError('TOO_LARGE', `${label} metadata is ${bytes.byteLength} bytes, above the limit of ${maxBytes}`, {
      detail: { role: label, size: bytes.byteLength, limit: maxBytes },
    });
  }
}

/** Scan options of the first, cheap pass: names checked only in the envelope and in `signed`. */
function envelopeScan(kind: RoleType, label: string, limits: ParseLimits): StrictJsonOptions {
  return { label: `${label} metadata`, capture: CAPTURE, namesDepth: 2, maxMembers: ENVELOPE_MEMBERS, maxSizes: sizeBounds(kind, limits) };
}

/**
 * Everything parseMetadata checks before it parses the whole document, from what the scan found:
 * the shape, `_type`, `spec_version`, `version`, `expires`, every count, and the signatures
 * (parsed from their span alone), then `hooks.beforeParse`.
 */
export function readEnvelope(
  kind: RoleType,
  scanned: Pick<Scanned, 'bytes' | 'spans'>,
  label: string,
  hooks: ParseHooks,
  { asClient = false }: { asClient?: boolean } = {},
): { signatures: SignatureEntry[]; version: number } {
  const sigHex = asClient ? SIG_ANY_CASE : SIG;
  const detail = { role: label };
  const { bytes, spans } = scanned;
  /** A small captured value, parsed; a large one (never a valid string or number here) as `{}`. */
  const small = (path: string): unknown => {
    const span = spans.get(path);
    if (!span) return undefined;
    return span.end - span.start <= 256 ? JSON.parse(spanText(scanned, path) as string) : {};
  };
  const opens = (path: string, c: string): boolean => {
    const span = spans.get(path);
    return span !== undefined && bytes[span.start] === c.charCodeAt(0);
  };
  if (!opens('signed', '{') || !opens('signatures', '[')) {
    throw new EngineError('MALFORMED', `${label} metadata must be an object with "signed" and "signatures"`, { detail });
  }
  const type = small('signed/_type');
  if (type !== kind) {
    throw new EngineError('WRONG_TYPE', `expected ${kind} metadata, got _type ${JSON.stringify(type)?.slice(0, 40)}`, {
      detail: { ...detail, expected: kind },
    });
  }
  const spec = small('signed/spec_version');
  if (typeof spec !== 'string' || !SPEC_VERSION.test(spec)) {
    throw new EngineError('UNSUPPORTED_SPEC_VERSION', `${label}: spec_version must be 1.x, got ${JSON.stringify(spec)?.slice(0, 40)}`, {
      detail,
    });
  }
  const version = small('signed/version');
  if (typeof version !== 'number' || !Number.isSafeInteger(version) || version < 1) {
    throw new EngineError('MALFORMED', `${label}: version must be an integer ≥ 1`, { detail });
  }
  const expires = small('signed/expires');
  if (typeof expires !== 'string' || Number.isNaN(parseExpires(expires))) {
    throw new EngineError(typeof expires === 'string' && EXPIRES.test(expires) ? 'BAD_DATE' : 'MALFORMED', `${label}: expires must be a real UTC instant like 2030-01-01T00:00:00Z, got ${JSON.stringify(expires)?.slice(0, 40)}`, {
      detail: { ...detail, expires: typeof expires === 'string' ? expires.slice(0, 40) : null },
    });
  }
  const signatures: SignatureEntry[] = [];
  const seen = new Set<string>();
  for (const s of JSON.parse(spanText(scanned, 'signatures') as string) as unknown[]) {
    if (!isObject(s) || typeof s['keyid'] !== 'string' || typeof s['sig'] !== 'string') {
      throw new EngineError('MALFORMED', `${label}: each signature needs a 64-hex keyid and a hex sig`, { detail });
    }
    // Two entries under one key id are refused by every client (tuf-js: "multiple signatures").
    if (seen.has(s['keyid'])) {
      throw new EngineError('MALFORMED', `${label}: two signatures carry key id ${s['keyid'].slice(0, 12)}`, {
        detail: { ...detail, keyid: s['keyid'] },
      });
    }
    seen.add(s['keyid']);
    if (!KEYID.test(s['keyid']) || !sigHex.test(s['sig'])) {
      // An upload must be well-formed. A client, like tuf-js and python-tuf, passes over an entry
      // that names no key id a key can have or carries no hex: it verifies under no key, so it can
      // count towards no threshold, and the file stands or falls by its other signatures.
      if (asClient) continue;
      throw new EngineError('MALFORMED', `${label}: each signature needs a 64-hex keyid and a hex sig`, { detail });
    }
    signatures.push({ keyid: s['keyid'], sig: s['sig'] });
  }
  hooks.beforeParse?.({ signatures, version });
  return { signatures, version };
}

/**
 * The checks parseMetadata makes before it parses the whole document, with the scan in slices
 * that yield to the event loop: a service runs it first on a large upload, so that one it refuses
 * (too many entries, a malformed field, signatures by keys the delegator does not list) never
 * holds other requests up. What passes is parsed synchronously by parseMetadata as usual.
 */
export async function precheckMetadata(
  kind: RoleType,
  bytes: Uint8Array,
  maxBytes: number,
  label: string = kind,
  limits: ParseLimits = DEFAULT_PARSE_LIMITS,
  hooks: Pick<ParseHooks, 'beforeParse'> = {},
): Promise<void> {
  checkSize(label, bytes, maxBytes);
  let scanned: Scanned;
  try {
    scanned = await scanStrictJsonAsync(bytes, envelopeScan(kind, label, limits));
  } catch (cause) {
    throw strictRefusal(cause, label, { role: label });
  }
  readEnvelope(kind, scanned, label, hooks);
}

/**
 * precheckMetadata for an upload as it arrives: each `push` scans the next piece of the body at
 * once (StrictJsonStream), so an upload that must be refused (too large, too deep, malformed, a
 * list over its bound) is refused at the first piece that shows it, and the rest need never be
 * read; `finish` then checks the complete bytes (UTF-8, shape, fields). The same checks as
 * precheckMetadata, in the same order; nothing here depends on the repository's state.
 */
export class MetadataPrecheck {
  readonly #kind: RoleType;
  readonly #maxBytes: number;
  readonly #label: string;
  readonly #stream: StrictJsonStream;
  #received = 0;

  constructor(kind: RoleType, maxBytes: number, label: string = kind, limits: ParseLimits = DEFAULT_PARSE_LIMITS) {
    this.#kind = kind;
    this.#maxBytes = maxBytes;
    this.#label = label;
    this.#stream = new StrictJsonStream(envelopeScan(kind, label, limits));
  }

  /** The next piece of the body; throws the refusal (EngineError) as soon as one is certain. */
  push(piece: Uint8Array): void {
    this.#received += piece.byteLength;
    if (this.#received > this.#maxBytes) {
      throw new EngineError('TOO_LARGE', `${this.#label} metadata is above the limit of ${this.#maxBytes} bytes`, {
        detail: { role: this.#label, limit: this.#maxBytes },
      });
    }
    try {
      this.#stream.push(piece);
    } catch (cause) {
      throw strictRefusal(cause, this.#label, { role: this.#label });
    }
  }

  /** The complete body (the pieces pushed, in order). */
  finish(bytes: Uint8Array): void {
    const label = this.#label;
    checkSize(label, bytes, this.#maxBytes);
    let found;
    try {
      found = this.#stream.end();
    } catch (cause) {
      throw strictRefusal(cause, label, { role: label });
    }
    const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    if (!isUtf8(buf)) throw new EngineError('MALFORMED', `${label} metadata is not valid UTF-8 JSON`, { detail: { role: label } });
    readEnvelope(this.#kind, { bytes: buf, spans: found.spans }, label, {});
  }
}

/** A metadata file read strictly, without models: what a client core verifies and then reads. */
export interface Envelope {
  /** The whole document. */
  json: Record<string, unknown>;
  /** `json.signed`. */
  signed: Record<string, unknown>;
  signatures: readonly SignatureEntry[];
  version: number;
  /** `signed.expires` in ms since the epoch (a real calendar instant). */
  expires: number;
  /** The canonical bytes of `signed`: what its signatures are over (computed on first use). */
  signedBytes: () => Buffer;
}

/** The size bound, then the strict scan of the envelope (envelopeScan), refusals as the engine's errors. */
export function scanEnvelope(kind: RoleType, bytes: Uint8Array, maxBytes: number, label: string, limits: ParseLimits): Scanned {
  checkSize(label, bytes, maxBytes);
  try {
    return scanStrictJson(bytes, envelopeScan(kind, label, limits));
  } catch (cause) {
    throw strictRefusal(cause, label, { role: label });
  }
}

/**
 * One strict pass over `bytes` (names checked in the envelope and in `signed`), the envelope,
 * counts and small fields as parseMetadata checks them, then `JSON.parse` and every other name
 * (checkDistinctNames), so nothing read afterwards can be ambiguous. Linear in the bytes; builds
 * no model objects. For a client, which refuses or trusts a whole file at once.
 */
export function readEnvelopeStrict(kind: RoleType, bytes: Uint8Array, maxBytes: number, label: string = kind, limits: ParseLimits = DEFAULT_PARSE_LIMITS): Envelope {
  const detail = { role: label };
  const scanned = scanEnvelope(kind, bytes, maxBytes, label, limits);
  const { signatures, version } = readEnvelope(kind, scanned, label, {}, { asClient: true });
  const json = JSON.parse(scanned.text) as Record<string, unknown>;
  try {
    checkDistinctNames(scanned, json, { label: `${label} metadata` }); // every name, before anything is read
  } catch (cause) {
    throw strictRefusal(cause, label, detail);
  }
  const signed = json['signed'] as Record<string, unknown>;
  checkRoleLists(kind, label, signed, limits);
  return {
    json,
    signed,
    signatures,
    version,
    expires: parseExpires(signed['expires'] as string),
    signedBytes: lazySignedBytes(scanned, signed, label),
  };
}

/** The canonical bytes of `signed`, computed on first use (signedBytesOf); MALFORMED when it has none. */
export function lazySignedBytes(scanned: Scanned, signed: Record<string, unknown>, label: string): () => Buffer {
  let bytes: Buffer | undefined;
  return () => {
    if (bytes === undefined) {
      try {
        bytes = signedBytesOf(scanned, signed);
      } catch (cause) {
        throw new EngineError('MALFORMED', `${label}: signed part has no canonical JSON form`, { detail: { role: label }, cause });
      }
    }
    return bytes;
  };
}

/**
 * The canonical bytes of `signed` (what its signatures are over): the bytes as sent when the scan
 * found them in canonical form already (tufoci and python-tuf write them so), else encoded.
 */
function signedBytesOf(scanned: Scanned, signed: Record<string, unknown>): Buffer {
  const span = scanned.spans.get('signed');
  if (span && scanned.canonicalSpan(span)) return scanned.bytes.subarray(span.start, span.end);
  return canonicalSignedBytes(signed);
}

/**
 * An envelope from bytes the caller itself read strictly and verified before (a client's saved
 * state, recognised by its hash): JSON.parse only. Never for bytes from the network.
 */
export function readEnvelopeVerified(bytes: Uint8Array): Envelope {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const json = JSON.parse(isAscii(buf) ? buf.toString('latin1') : buf.toString('utf8')) as Record<string, unknown>;
  const signed = json['signed'] as Record<string, unknown>;
  let signedBytes: Buffer | undefined;
  return {
    json,
    signed,
    signatures: json['signatures'] as SignatureEntry[],
    version: signed['version'] as number,
    expires: parseExpires(signed['expires'] as string),
    signedBytes: () => (signedBytes ??= canonicalSignedBytes(signed)),
  };
}

