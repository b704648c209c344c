/**
 * The verified state of one TUF repository during one update: bytes in,
 * verified data out. tufoci's client core (updater.ts) drives it; the shape
 * follows python-tuf's `trusted_metadata_set.py`, and every rule below is a
 * step of the client workflow in the TUF specification (section 5).
 *
 * Invariants:
 * - Nothing enters the set unverified. Each `update*` takes bytes from the
 *   network, reads them strictly (engine/parse.ts `readEnvelopeStrict`: one
 *   linear pass, duplicate names, floats, impossible dates and oversized
 *   counts refused before anything is built), checks a threshold of the
 *   delegator's keys (engine/signatures.ts: each key counted once, however
 *   many key ids or signatures it appears under), then the version and
 *   expiry rules, and only then replaces what the set holds.
 * - Files loaded from the client's own saved state may enter as `verified`:
 *   the caller vouches that these exact bytes were verified together under
 *   the root trusted now (updater.ts keeps that record). They are parsed
 *   without the strict scan and their signatures are not checked again; their
 *   versions, expiries and pins are checked like any other.
 * - Order is enforced: root, then timestamp, then snapshot, then targets
 *   roles, each only while the one before it is final (not expired, and the
 *   snapshot the version the timestamp names).
 * - Rollback: root versions step by exactly one; timestamp and snapshot
 *   versions, and every file the trusted snapshot lists, never go back.
 *   An equal timestamp version keeps the timestamp already trusted.
 * - Expiry is judged against one reference time, when the update started.
 *   An expired timestamp or snapshot is kept (so the next one is still
 *   checked against it) and refused at once ("freeze").
 * - Linear in every count: nothing large is turned into model objects. Only
 *   what a lookup reads (the one target, the delegations on its path) is
 *   validated, with @tufjs/models' own classes, so the rules are tuf-js's.
 * - Error messages follow tuf-js's for the same refusals, so that a caller
 *   explains both clients' refusals the same way.
 */
import { createHash } from 'node:crypto';
import { DEFAULT_PARSE_LIMITS, readEnvelopeStrict, readEnvelopeVerified, type Envelope, type ParseLimits, type RoleType } from '../../engine/envelope.ts';
import { describeVerification, verifyThreshold, type KeyMap } from '../../engine/signatures.ts';
import { TufociError } from '../../errors.ts';
import { readDelegations, readMetaEntry, readRootRoles, readSnapshotMeta, readTargetInfo, verifyLengthAndHashes, type Delegations, type MetaEntry, type RoleKeys, type RootRoles, type TargetInfo } from './roles.ts';

export type CoreErrorCode =
  | 'ROLLBACK'
  | 'EQUAL_VERSION'
  | 'BAD_VERSION'
  | 'EXPIRED'
  | 'UNSIGNED'
  | 'LENGTH_OR_HASH'
  | 'MALFORMED'
  | 'MISSING'
  | 'ORDER';

/** A refusal of the client core (its messages follow tuf-js's for the same refusals). */
export class CoreError extends TufociError<CoreErrorCode> {}

/** The bytes a file may take, as tuf-js bounds them by default (snapshot and targets: unless their parent names a length). */
export interface CoreLimits extends ParseLimits {
  rootMaxBytes: number;
  timestampMaxBytes: number;
  snapshotMaxBytes: number;
  targetsMaxBytes: number;
}

export const DEFAULT_CORE_LIMITS: CoreLimits = {
  ...DEFAULT_PARSE_LIMITS,
  rootMaxBytes: 512_000,
  timestampMaxBytes: 16_384,
  snapshotMaxBytes: 2_000_000,
  targetsMaxBytes: 1_048_576,
};

type JSONObject = Record<string, unknown>;

function isObject(v: unknown): v is JSONObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function own(map: JSONObject, key: string): unknown {
  return Object.hasOwn(map, key) ? map[key] : undefined;
}

function malformed(what: string, cause?: unknown): CoreError {
  return new CoreError('MALFORMED', what, { detail: {}, ...(cause !== undefined ? { cause } : {}) });
}

/** A file's entry in its parent (timestamp → snapshot, snapshot → targets roles), validated as the models' MetaFile. */
function metaFile(label: string, entry: unknown): MetaEntry {
  try {
    return readMetaEntry(entry);
  } catch (cause) {
    throw malformed(`${label}: malformed meta entry`, cause);
  }
}

/** Length and hashes of `bytes` against what the parent pins (tuf-js's MetaFile.verify, same message). */
function checkLengthAndHashes(label: string, meta: MetaEntry, bytes: Uint8Array): void {
  try {
    verifyLengthAndHashes(meta, bytes);
  } catch (cause) {
    throw new CoreError('LENGTH_OR_HASH', `${label}: ${cause instanceof Error ? cause.message : String(cause)}`, { detail: { file: label }, cause });
  }
}

export interface VerifiedRoot {
  readonly bytes: Uint8Array;
  readonly version: number;
  readonly expires: number;
  readonly consistentSnapshot: boolean;
  readonly signed: JSONObject;
  /** Its keys and roles, validated. */
  readonly model: RootRoles;
}

export interface VerifiedTimestamp {
  readonly bytes: Uint8Array;
  readonly version: number;
  readonly expires: number;
  readonly snapshotMeta: MetaEntry;
}

export interface VerifiedSnapshot {
  readonly bytes: Uint8Array;
  readonly version: number;
  readonly expires: number;
  /** `signed.meta` as parsed: entries are validated when read (`metaFor`). */
  readonly meta: JSONObject;
}

/** One delegation a lookup may follow, as @tufjs/models reads it. */
export interface Delegation {
  readonly role: string;
  readonly terminating: boolean;
}

export interface VerifiedTargets {
  readonly name: string;
  readonly bytes: Uint8Array;
  readonly version: number;
  readonly expires: number;
  /** `signed.targets` as parsed: an entry is validated when looked up. */
  readonly targets: JSONObject;
  /** `signed.delegations` as parsed, validated on first use. */
  readonly delegationsJson: JSONObject | undefined;
}

export type { TargetInfo };

export class TrustedSet {
  readonly #referenceTime: number;
  readonly #limits: CoreLimits;
  #root: VerifiedRoot;
  #timestamp: VerifiedTimestamp | undefined;
  #snapshot: VerifiedSnapshot | undefined;
  readonly #targets = new Map<string, VerifiedTargets>();
  readonly #delegations = new Map<string, Delegations>();

  /**
   * Start from a root the caller trusts (the pin, or its saved root). It must be signed by a
   * threshold of its own root keys, as python-tuf and tuf-js require of the initial root, unless
   * the caller vouches that it verified these bytes before (`verified`).
   */
  constructor(rootBytes: Uint8Array, referenceTime: number, limits: CoreLimits = DEFAULT_CORE_LIMITS, { verified = false }: { verified?: boolean } = {}) {
    this.#referenceTime = referenceTime;
    this.#limits = limits;
    const root = this.#readRoot('root', rootBytes, verified);
    // `verified`: these exact bytes were verified by this client before (the caller's record).
    if (!verified) this.#verify('root', root.envelope, root.model.roles['root'], root.keys);
    this.#root = root.verified;
  }

  get root(): VerifiedRoot {
    return this.#root;
  }
  get timestamp(): VerifiedTimestamp | undefined {
    return this.#timestamp;
  }
  get snapshot(): VerifiedSnapshot | undefined {
    return this.#snapshot;
  }
  targets(role: string): VerifiedTargets | undefined {
    return this.#targets.get(role);
  }

  /** The envelope of `bytes`: read strictly, or (bytes this client verified before) parsed only. */
  #envelope(kind: RoleType, bytes: Uint8Array, maxBytes: number, label: string, verified: boolean): Envelope {
    if (verified) {
      try {
        return readEnvelopeVerified(bytes);
      } catch (cause) {
        throw malformed(`${label}: saved copy does not parse`, cause);
      }
    }
    return readEnvelopeStrict(kind, bytes, maxBytes, label, this.#limits);
  }

  #readRoot(label: string, bytes: Uint8Array, verified = false): { envelope: Envelope; model: RootRoles; keys: KeyMap; verified: VerifiedRoot } {
    const envelope = this.#envelope('root', bytes, this.#limits.rootMaxBytes, label, verified);
    let model: RootRoles;
    try {
      model = readRootRoles(envelope.signed);
    } catch (cause) {
      throw malformed(`${label}: not well-formed root metadata`, cause);
    }
    const keys = envelope.signed['keys'] as KeyMap;
    return {
      envelope,
      model,
      keys,
      verified: { bytes, version: envelope.version, expires: envelope.expires, consistentSnapshot: model.consistentSnapshot, signed: envelope.signed, model },
    };
  }

  /** A threshold of `role`'s keys (each key counted once) signed the canonical `signed` bytes. */
  #verify(name: string, envelope: Envelope, role: RoleKeys | undefined, keys: KeyMap): void {
    if (!role) throw malformed(`no delegation found for ${name}`);
    const result = verifyThreshold(name, envelope.signedBytes(), envelope.signatures, role, keys);
    if (!result.ok) {
      throw new CoreError('UNSIGNED', `${name} was signed by ${result.signed.length}/${role.threshold} keys`, {
        detail: { role: name, verification: describeVerification(result) },
      });
    }
  }

  #expired(expires: number): boolean {
    return this.#referenceTime >= expires;
  }

  /** 5.3.4–5.3.7: the next root, signed by a threshold of the trusted root keys and of its own. */
  updateRoot(bytes: Uint8Array, label = 'root'): VerifiedRoot {
    if (this.#timestamp) throw new CoreError('ORDER', 'cannot update root after timestamp', { detail: {} });
    const next = this.#readRoot(label, bytes);
    this.#verify('root', next.envelope, this.#root.model.roles['root'], this.#root.model.keys);
    if (next.verified.version !== this.#root.version + 1) {
      throw new CoreError('BAD_VERSION', `Expected version ${this.#root.version + 1}, got ${next.verified.version}`, {
        detail: { role: 'root', expected: this.#root.version + 1, got: next.verified.version },
      });
    }
    this.#verify('root', next.envelope, next.model.roles['root'], next.keys);
    this.#root = next.verified;
    return next.verified;
  }

  /**
   * 5.4: a timestamp signed by the root's timestamp keys, never older than the one trusted, naming
   * a snapshot never older than the one it named. An equal version keeps the trusted one
   * (`EQUAL_VERSION`, which a caller treats as "unchanged"). `verified` bytes (saved state the
   * caller vouches for) skip the signature. Stored even when expired, then refused as expired.
   */
  updateTimestamp(bytes: Uint8Array, verified = false): VerifiedTimestamp {
    if (this.#snapshot) throw new CoreError('ORDER', 'cannot update timestamp after snapshot', { detail: {} });
    if (this.#expired(this.#root.expires)) throw new CoreError('EXPIRED', 'Final root.json is expired', { detail: { role: 'root' } });
    const envelope = this.#envelope('timestamp', bytes, this.#limits.timestampMaxBytes, 'timestamp', verified);
    let snapshotMeta: MetaEntry;
    try {
      snapshotMeta = readSnapshotMeta(envelope.signed);
    } catch (cause) {
      throw malformed('timestamp: not well-formed timestamp metadata', cause);
    }
    if (!verified) this.#verify('timestamp', envelope, this.#root.model.roles['timestamp'], this.#root.model.keys);
    const current = this.#timestamp;
    if (current) {
      if (envelope.version < current.version) {
        throw new CoreError('ROLLBACK', `New timestamp version ${envelope.version} is less than current version ${current.version}`, {
          detail: { role: 'timestamp', got: envelope.version, trusted: current.version },
        });
      }
      if (envelope.version === current.version) {
        throw new CoreError('EQUAL_VERSION', `New timestamp version ${envelope.version} is equal to current version ${current.version}`, { detail: { role: 'timestamp' } });
      }
      if (snapshotMeta.version < current.snapshotMeta.version) {
        throw new CoreError('ROLLBACK', `New snapshot version ${snapshotMeta.version} is less than current version ${current.snapshotMeta.version}`, {
          detail: { role: 'snapshot', got: snapshotMeta.version, trusted: current.snapshotMeta.version },
        });
      }
    }
    this.#timestamp = { bytes, version: envelope.version, expires: envelope.expires, snapshotMeta };
    this.#checkFinalTimestamp();
    return this.#timestamp;
  }

  /** The trusted timestamp, refused if expired (5.4.4). */
  finalTimestamp(): VerifiedTimestamp {
    return this.#checkFinalTimestamp();
  }

  #checkFinalTimestamp(): VerifiedTimestamp {
    const ts = this.#timestamp;
    if (!ts) throw new CoreError('ORDER', 'no trusted timestamp', { detail: {} });
    if (this.#expired(ts.expires)) throw new CoreError('EXPIRED', 'Final timestamp.json is expired', { detail: { role: 'timestamp' } });
    return ts;
  }

  /**
   * 5.5: the snapshot the timestamp pins (length and hashes, unless `local`: the client's saved
   * copy, as tuf-js and python-tuf load it), signed by the root's snapshot keys (unless
   * `verified`), listing every file the trusted snapshot lists at a version never older. Stored,
   * then refused if expired or not the version the timestamp names.
   */
  updateSnapshot(
    bytes: Uint8Array,
    { local = false, verified = false, known }: { local?: boolean; verified?: boolean; known?: { version: number; expires: number } } = {},
  ): VerifiedSnapshot {
    const ts = this.#checkFinalTimestamp();
    if (this.#targets.size > 0) throw new CoreError('ORDER', 'cannot update snapshot after targets', { detail: {} });
    if (!local) checkLengthAndHashes('snapshot', ts.snapshotMeta, bytes);
    if (verified && known && !this.#snapshot) {
      // Bytes this client verified before, with the version and expiry it recorded then: parsed
      // only if a lookup needs an entry that the record does not answer.
      let meta: JSONObject | undefined;
      const label = 'snapshot';
      this.#snapshot = {
        bytes,
        version: known.version,
        expires: known.expires,
        get meta(): JSONObject {
          if (meta === undefined) {
            let parsed: unknown;
            try {
              parsed = readEnvelopeVerified(bytes).signed['meta'];
            } catch (cause) {
              throw malformed(`${label}: saved copy does not parse`, cause);
            }
            if (!isObject(parsed)) throw malformed(`${label}: meta must be an object`);
            meta = parsed;
          }
          return meta;
        },
      };
      this.#checkFinalSnapshot();
      return this.#snapshot;
    }
    const envelope = this.#envelope('snapshot', bytes, this.#limits.snapshotMaxBytes, 'snapshot', verified);
    const meta = envelope.signed['meta'];
    if (!isObject(meta)) throw malformed('snapshot: meta must be an object');
    if (!verified) this.#verify('snapshot', envelope, this.#root.model.roles['snapshot'], this.#root.model.keys);
    const current = this.#snapshot;
    if (current) {
      for (const [name, entry] of Object.entries(current.meta)) {
        const next = own(meta, name);
        if (next === undefined) throw new CoreError('ROLLBACK', `Missing file ${name} in new snapshot`, { detail: { file: name } });
        const was = metaFile(`snapshot ${name}`, entry).version;
        const now = metaFile(`snapshot ${name}`, next).version;
        if (now < was) {
          throw new CoreError('ROLLBACK', `New version ${now} of ${name} is less than current version ${was}`, { detail: { file: name, got: now, trusted: was } });
        }
      }
    }
    this.#snapshot = { bytes, version: envelope.version, expires: envelope.expires, meta };
    this.#checkFinalSnapshot();
    return this.#snapshot;
  }

  #checkFinalSnapshot(): VerifiedSnapshot {
    const snap = this.#snapshot;
    const ts = this.#checkFinalTimestamp();
    if (!snap) throw new CoreError('ORDER', 'no trusted snapshot', { detail: {} });
    if (this.#expired(snap.expires)) throw new CoreError('EXPIRED', 'snapshot.json is expired', { detail: { role: 'snapshot' } });
    if (snap.version !== ts.snapshotMeta.version) {
      throw new CoreError('BAD_VERSION', "Snapshot version doesn't match timestamp", { detail: { role: 'snapshot', got: snap.version, expected: ts.snapshotMeta.version } });
    }
    return snap;
  }

  /** The snapshot's entry for a targets role: its version, and length and hashes if named. */
  metaFor(role: string): MetaEntry {
    const snap = this.#checkFinalSnapshot();
    const entry = own(snap.meta, `${role}.json`);
    if (entry === undefined) throw new CoreError('MISSING', `Missing ${role}.json in snapshot`, { detail: { role } });
    return metaFile(`snapshot ${role}.json`, entry);
  }

  /**
   * 5.6: a targets role, pinned by the snapshot (length and hashes, also for a saved copy, as
   * tuf-js checks them), signed by a threshold of the keys its delegator names for it (unless
   * `verified`), at exactly the version the snapshot names, not expired.
   */
  updateTargets(bytes: Uint8Array, role: string, delegator: string, verified = false, known?: { version: number; expires: number }): VerifiedTargets {
    if (verified && known) return this.#knownTargets(bytes, role, known);
    const meta = this.metaFor(role);
    checkLengthAndHashes(role, meta, bytes);
    const envelope = this.#envelope('targets', bytes, Math.max(this.#limits.targetsMaxBytes, meta.length ?? 0), role, verified);
    const targets = envelope.signed['targets'];
    if (!isObject(targets)) throw malformed(`${role}: targets must be an object`);
    const delegationsJson = envelope.signed['delegations'];
    if (delegationsJson !== undefined && !isObject(delegationsJson)) throw malformed(`${role}: delegations must be an object`);
    if (!verified) {
      if (delegator === 'root') {
        this.#verify(role, envelope, this.#root.model.roles['targets'], this.#root.model.keys);
      } else {
        const parent = this.#targets.get(delegator);
        if (!parent) throw new CoreError('ORDER', `No trusted ${delegator} metadata`, { detail: { role: delegator } });
        const d = this.delegationsOf(parent);
        const entry = d.roles?.find((r) => r.name === role) ?? (d.succinct?.isDelegatedRole(role) ? d.succinct : undefined);
        this.#verify(role, envelope, entry, d.keys);
      }
    }
    if (envelope.version !== meta.version) {
      throw new CoreError('BAD_VERSION', `Version ${envelope.version} of ${role} does not match snapshot version ${meta.version}`, {
        detail: { role, got: envelope.version, expected: meta.version },
      });
    }
    if (this.#expired(envelope.expires)) throw new CoreError('EXPIRED', `${role}.json is expired`, { detail: { role } });
    const result: VerifiedTargets = { name: role, bytes, version: envelope.version, expires: envelope.expires, targets, delegationsJson };
    this.#targets.set(role, result);
    return result;
  }

  /**
   * A targets role this client verified under the trusted snapshot before, with the version and
   * expiry it recorded then (the snapshot's pin and the signatures were checked at that time):
   * refused once expired; parsed only when a lookup reads it.
   */
  #knownTargets(bytes: Uint8Array, role: string, known: { version: number; expires: number }): VerifiedTargets {
    this.#checkFinalSnapshot();
    if (this.#expired(known.expires)) throw new CoreError('EXPIRED', `${role}.json is expired`, { detail: { role } });
    let signed: JSONObject | undefined;
    const read = (): JSONObject => {
      if (signed === undefined) {
        try {
          signed = readEnvelopeVerified(bytes).signed;
        } catch (cause) {
          throw malformed(`${role}: saved copy does not parse`, cause);
        }
        if (!isObject(signed['targets'])) throw malformed(`${role}: targets must be an object`);
        if (signed['delegations'] !== undefined && !isObject(signed['delegations'])) throw malformed(`${role}: delegations must be an object`);
      }
      return signed;
    };
    const result: VerifiedTargets = {
      name: role,
      bytes,
      version: known.version,
      expires: known.expires,
      get targets(): JSONObject {
        return read()['targets'] as JSONObject;
      },
      get delegationsJson(): JSONObject | undefined {
        return read()['delegations'] as JSONObject | undefined;
      },
    };
    this.#targets.set(role, result);
    return result;
  }

  /** The delegations of a trusted role, validated once (as @tufjs/models' Delegations reads them, in linear time). */
  delegationsOf(role: VerifiedTargets): Delegations {
    const cached = this.#delegations.get(role.name);
    if (cached) return cached;
    const json = role.delegationsJson;
    let d: Delegations = { keys: {}, roles: undefined, succinct: undefined };
    if (json) {
      if ((json['roles'] === undefined) === (json['succinct_roles'] === undefined)) throw malformed(`${role.name}: delegations need exactly one of roles and succinct_roles`);
      try {
        d = readDelegations(json);
      } catch (cause) {
        throw malformed(`${role.name}: malformed delegations (${cause instanceof Error ? cause.message : String(cause)})`, cause);
      }
    }
    this.#delegations.set(role.name, d);
    return d;
  }

  /** The roles a trusted role delegates `target` to, in order (tuf-js's `rolesForTarget`). */
  rolesForTarget(role: VerifiedTargets, target: string): Delegation[] {
    const d = this.delegationsOf(role);
    const out: Delegation[] = [];
    if (d.roles) for (const r of d.roles) if (r.isDelegatedPath(target)) out.push({ role: r.name, terminating: r.terminating });
    if (d.succinct) out.push({ role: d.succinct.getRoleForTarget(target), terminating: true });
    return out;
  }

  /** A target entry this client read from a trusted role before (its own record), validated again as a TargetFile. */
  targetInfo(path: string, entry: unknown): TargetInfo {
    try {
      return readTargetInfo(path, entry);
    } catch (cause) {
      throw malformed(`recorded target ${path.slice(0, 80)} is malformed`, cause);
    }
  }

  /** The target `path` in a trusted role, validated as a TargetFile; undefined if it lists none. */
  targetIn(role: VerifiedTargets, path: string): TargetInfo | undefined {
    const entry = own(role.targets, path);
    if (entry === undefined) return undefined;
    try {
      return readTargetInfo(path, entry);
    } catch (cause) {
      throw malformed(`${role.name}: target ${path.slice(0, 80)} is malformed`, cause);
    }
  }
}

export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}
