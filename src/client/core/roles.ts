/**
 * The entries of TUF metadata that the client core reads — a root's keys and roles, a meta entry
 * (timestamp → snapshot, snapshot → targets roles), a target, a targets role's delegations —
 * validated by the rules of @tufjs/models (the classes tuf-js's Updater builds), with the same
 * messages, but without loading it.
 *
 * Why not the models themselves: `tufoci verify` is a short-lived command, and @tufjs/models with
 * minimatch is the largest library its start-up would load (about 20 ms on our machines, a third
 * of what the command adds to Node's own start-up). The core builds no model of a whole file
 * anyway (it reads only the entries on the path to one target, trusted-set.ts); these functions
 * validate those entries one at a time. They are held to the models by the differential tests
 * (test/client/core-differential.test.ts runs every scenario through both clients; the unit tests
 * in test/client/roles.test.ts compare each reader with the model class it stands for, on valid and
 * malformed input, and the path matcher with minimatch on generated patterns).
 *
 * Path patterns: tuf-js matches a delegation's `paths` segment by segment with minimatch (default
 * options). The common patterns — literal characters, `*` and `?`, on a segment that is not empty
 * and does not start with a dot — are matched here; any other pattern (classes, braces, extglobs,
 * negation, escapes, `**`, comments) or segment is handed to minimatch itself, loaded on first
 * use, so the rules for those are minimatch's and not a copy.
 */
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import type { KeyMap } from '../../engine/signatures.ts';

type JSONObject = Record<string, unknown>;

/** The top-level roles (a delegated role may not take one of these names). */
export const TOP_LEVEL_ROLE_NAMES: readonly string[] = ['root', 'targets', 'snapshot', 'timestamp'];

// The models' guards (utils/guard.js), with their exact meaning: an array is an object here.
function isObjectLike(v: unknown): v is JSONObject {
  return typeof v === 'object' && v !== null;
}
function isStringArray(v: unknown): v is string[] {
  return Array.isArray(v) && v.every((s) => typeof s === 'string');
}
function isStringRecord(v: unknown): v is Record<string, string> {
  return isObjectLike(v) && Object.values(v).every((s) => typeof s === 'string');
}
function isObjectRecord(v: unknown): v is Record<string, JSONObject> {
  return isObjectLike(v) && Object.values(v).every(isObjectLike);
}
/** `const { a } = data` as the models destructure their input: TypeError on null and undefined. */
function fields(data: unknown, what: string): JSONObject {
  if (data === null || data === undefined) throw new TypeError(`${what} must be an object`);
  return Object(data) as JSONObject;
}

/** A file's entry in its parent: what the models' MetaFile holds. */
export interface MetaEntry {
  readonly version: number;
  readonly length: number | undefined;
  readonly hashes: Readonly<Record<string, string>> | undefined;
}

/** MetaFile.fromJSON's checks. */
export function readMetaEntry(data: unknown): MetaEntry {
  const { version, length, hashes } = fields(data, 'meta entry');
  if (typeof version !== 'number') throw new TypeError('version must be a number');
  if (length !== undefined && typeof length !== 'number') throw new TypeError('length must be a number');
  if (hashes !== undefined && !isStringRecord(hashes)) throw new TypeError('hashes must be string keys and values');
  if (version <= 0) throw new TypeError('Metafile version must be at least 1');
  if (length !== undefined && length < 0) throw new TypeError('Length must be at least 0');
  return { version, length, hashes };
}

/** MetaFile.verify: the length, then each hash the entry names (same messages). */
export function verifyLengthAndHashes(meta: MetaEntry, data: Uint8Array): void {
  if (meta.length !== undefined && data.length !== meta.length) throw new Error(`Expected length ${meta.length} but got ${data.length}`);
  if (!meta.hashes) return;
  for (const [algorithm, expected] of Object.entries(meta.hashes)) {
    let hash;
    try {
      hash = createHash(algorithm);
    } catch {
      throw new Error(`Hash algorithm ${algorithm} not supported`);
    }
    const observed = hash.update(data).digest('hex');
    if (observed !== expected) throw new Error(`Expected hash ${expected} but got ${observed}`);
  }
}

/** A target as the models' TargetFile holds it (what a lookup returns). */
export interface TargetInfo {
  readonly path: string;
  readonly length: number;
  readonly hashes: Readonly<Record<string, string>>;
  /** `custom` if it is an object (not an array), else `{}`: TargetFile's getter. */
  readonly custom: Readonly<Record<string, unknown>>;
  /** The entry as JSON, as TargetFile.toJSON writes it. */
  toJSON(): Record<string, unknown>;
}

/** TargetFile.fromJSON's checks. */
export function readTargetInfo(path: string, data: unknown): TargetInfo {
  const { length, hashes, custom } = fields(data, 'target');
  if (typeof length !== 'number') throw new TypeError('length must be a number');
  if (!isStringRecord(hashes)) throw new TypeError('hashes must have string keys and values');
  if (length < 0) throw new TypeError('Length must be at least 0');
  return {
    path,
    length,
    hashes,
    custom: isObjectLike(custom) && !Array.isArray(custom) ? custom : {},
    // TargetFile.toJSON's form: length and hashes first, then the other fields as read.
    toJSON: () => {
      const { length: _length, hashes: _hashes, ...rest } = data as Record<string, unknown>;
      return { length, hashes, ...rest };
    },
  };
}

/** The keys and threshold a role requires. */
export interface RoleKeys {
  readonly keyIDs: readonly string[];
  readonly threshold: number;
}

function readRoleKeys(data: unknown, arrayWhat: string): RoleKeys & { rest: JSONObject } {
  const { keyids, threshold, ...rest } = fields(data, 'role');
  if (!isStringArray(keyids)) throw new TypeError(arrayWhat);
  if (typeof threshold !== 'number') throw new TypeError('threshold must be a number');
  return { keyIDs: keyids, threshold, rest };
}

/** Role's constructor checks. */
function checkRoleKeys(role: RoleKeys): void {
  if (new Set(role.keyIDs).size !== role.keyIDs.length) throw new TypeError('duplicate key IDs found');
  if (role.threshold < 1) throw new TypeError('threshold must be at least 1');
}

/**
 * Key.fromJSON's checks, on every key of a key map. What passes is a key map for
 * engine/signatures.ts, which parses a key when a signature needs it (and refuses one whose
 * `keyval.public` is missing or malformed then, as the models do when they verify).
 */
function checkKeys(keys: Record<string, JSONObject>): KeyMap {
  for (const key of Object.values(keys)) {
    const { keytype, scheme, keyval } = key;
    if (typeof keytype !== 'string') throw new TypeError('keytype must be a string');
    if (typeof scheme !== 'string') throw new TypeError('scheme must be a string');
    if (!isStringRecord(keyval)) throw new TypeError('keyval must be a string record');
  }
  return keys as unknown as KeyMap;
}

/** What the core reads of a root: its keys (as JSON, for engine/signatures.ts), its roles, consistent snapshots. */
export interface RootRoles {
  readonly keys: KeyMap;
  readonly roles: Readonly<Record<string, RoleKeys>>;
  readonly consistentSnapshot: boolean;
}

/** Root.fromJSON's checks on `signed` (whose common fields the envelope reader checked). */
export function readRootRoles(signed: JSONObject): RootRoles {
  const { keys, roles, consistent_snapshot } = signed;
  if (typeof consistent_snapshot !== 'boolean') throw new TypeError('consistent_snapshot must be a boolean');
  let keyMap: KeyMap = {};
  if (keys !== undefined) {
    if (!isObjectRecord(keys)) throw new TypeError('keys must be an object');
    keyMap = checkKeys(keys);
  }
  const roleMap: Record<string, RoleKeys> = {};
  if (roles === undefined) {
    // The models' default: every top-level role with no keys (so nothing verifies under it).
    for (const name of TOP_LEVEL_ROLE_NAMES) roleMap[name] = { keyIDs: [], threshold: 1 };
  } else {
    if (!isObjectRecord(roles)) throw new TypeError('roles must be an object');
    for (const [name, data] of Object.entries(roles)) {
      const { keyIDs, threshold } = readRoleKeys(data, 'keyids must be an array');
      const role = { keyIDs, threshold };
      checkRoleKeys(role);
      Object.defineProperty(roleMap, name, { value: role, enumerable: true, writable: false, configurable: false });
    }
    if (!TOP_LEVEL_ROLE_NAMES.every((name) => Object.hasOwn(roleMap, name))) throw new TypeError('missing top-level role');
  }
  return { keys: keyMap, roles: roleMap, consistentSnapshot: consistent_snapshot };
}

/** Timestamp.fromJSON's reading of `meta`: the snapshot's entry (without `meta`, the models' default: version 1, nothing pinned). */
export function readSnapshotMeta(signed: JSONObject): MetaEntry {
  const meta = signed['meta'];
  if (meta === undefined) return { version: 1, length: undefined, hashes: undefined };
  const entry = isObjectLike(meta) ? (meta as JSONObject)['snapshot.json'] : undefined;
  if (!isObjectLike(entry)) throw new TypeError('missing snapshot.json in meta');
  return readMetaEntry(entry);
}

// ------------------------------------------------------------------ delegations

/** A delegated role, as the models' DelegatedRole reads it. */
export class DelegatedRole implements RoleKeys {
  readonly name: string;
  readonly keyIDs: readonly string[];
  readonly threshold: number;
  readonly terminating: boolean;
  readonly paths: readonly string[] | undefined;
  readonly pathHashPrefixes: readonly string[] | undefined;

  private constructor(o: { name: string; keyIDs: readonly string[]; threshold: number; terminating: boolean; paths: readonly string[] | undefined; pathHashPrefixes: readonly string[] | undefined }) {
    this.name = o.name;
    this.keyIDs = o.keyIDs;
    this.threshold = o.threshold;
    this.terminating = o.terminating;
    this.paths = o.paths;
    this.pathHashPrefixes = o.pathHashPrefixes;
  }

  /** DelegatedRole.fromJSON's checks, then its constructor's. */
  static fromJSON(data: unknown): DelegatedRole {
    const { keyIDs, threshold, rest } = readRoleKeys(data, 'keyids must be an array of strings');
    const { name, terminating, paths, path_hash_prefixes } = rest;
    if (typeof name !== 'string') throw new TypeError('name must be a string');
    if (typeof terminating !== 'boolean') throw new TypeError('terminating must be a boolean');
    if (paths !== undefined && !isStringArray(paths)) throw new TypeError('paths must be an array of strings');
    if (path_hash_prefixes !== undefined && !isStringArray(path_hash_prefixes)) throw new TypeError('path_hash_prefixes must be an array of strings');
    checkRoleKeys({ keyIDs, threshold });
    // The models test truthiness here (an empty array counts as set).
    if (paths && path_hash_prefixes) throw new TypeError('paths and pathHashPrefixes are mutually exclusive');
    return new DelegatedRole({ name, keyIDs, threshold, terminating, paths, pathHashPrefixes: path_hash_prefixes });
  }

  /** Whether `target` is delegated to this role: a path pattern matches it, or its sha256 starts with a prefix. */
  isDelegatedPath(target: string): boolean {
    if (this.paths) return this.paths.some((pattern) => isTargetInPathPattern(target, pattern));
    if (this.pathHashPrefixes) {
      const hash = createHash('sha256').update(target).digest('hex');
      return this.pathHashPrefixes.some((prefix) => hash.startsWith(prefix));
    }
    return false;
  }
}

/** Succinct hash bins (TAP 15), as the models' SuccinctRoles reads them. */
export class SuccinctRoles implements RoleKeys {
  readonly keyIDs: readonly string[];
  readonly threshold: number;
  readonly bitLength: number;
  readonly namePrefix: string;
  readonly numberOfBins: number;
  readonly suffixLen: number;

  private constructor(o: { keyIDs: readonly string[]; threshold: number; bitLength: number; namePrefix: string }) {
    this.keyIDs = o.keyIDs;
    this.threshold = o.threshold;
    this.bitLength = o.bitLength;
    this.namePrefix = o.namePrefix;
    this.numberOfBins = 2 ** o.bitLength;
    this.suffixLen = (this.numberOfBins - 1).toString(16).length;
  }

  static fromJSON(data: unknown): SuccinctRoles {
    const { keyIDs, threshold, rest } = readRoleKeys(data, 'keyids must be an array of strings');
    const { bit_length, name_prefix } = rest;
    if (typeof bit_length !== 'number') throw new TypeError('bit_length must be a number');
    if (typeof name_prefix !== 'string') throw new TypeError('name_prefix must be a string');
    checkRoleKeys({ keyIDs, threshold });
    if (bit_length <= 0 || bit_length > 32) throw new TypeError('bitLength must be between 1 and 32');
    return new SuccinctRoles({ keyIDs, threshold, bitLength: bit_length, namePrefix: name_prefix });
  }

  /** The bin `target` belongs to: the leftmost `bitLength` bits of its sha256. */
  getRoleForTarget(target: string): string {
    const bin = createHash('sha256').update(target).digest().readUInt32BE(0) >>> (32 - this.bitLength);
    return `${this.namePrefix}-${bin.toString(16).padStart(this.suffixLen, '0')}`;
  }

  /** Whether `name` is one of the bins. */
  isDelegatedRole(name: string): boolean {
    const prefix = `${this.namePrefix}-`;
    if (!name.startsWith(prefix)) return false;
    const suffix = name.slice(prefix.length);
    if (suffix.length !== this.suffixLen || !/^[0-9a-fA-F]+$/.test(suffix)) return false;
    const n = Number.parseInt(suffix, 16);
    return n >= 0 && n < this.numberOfBins;
  }
}

/** What the core reads of a targets role's `delegations`. */
export interface Delegations {
  readonly keys: KeyMap;
  readonly roles: readonly DelegatedRole[] | undefined;
  readonly succinct: SuccinctRoles | undefined;
}

/** Delegations.fromJSON's checks, in its order: succinct roles, keys, then roles (unique names, none a top-level one). */
export function readDelegations(data: JSONObject): Delegations {
  const { keys, roles, succinct_roles } = data;
  const succinct = isObjectLike(succinct_roles) ? SuccinctRoles.fromJSON(succinct_roles) : undefined;
  if (!isObjectRecord(keys)) throw new TypeError('keys is malformed');
  const keyMap = checkKeys(keys);
  let list: DelegatedRole[] | undefined;
  if (roles !== undefined) {
    if (!Array.isArray(roles) || !roles.every(isObjectLike)) throw new TypeError('roles is malformed');
    const names = new Set<string>();
    list = roles.map((r) => {
      const role = DelegatedRole.fromJSON(r);
      if (names.has(role.name)) throw new TypeError(`duplicate delegated role: ${role.name}`);
      names.add(role.name);
      return role;
    });
    if (list.some((r) => TOP_LEVEL_ROLE_NAMES.includes(r.name))) throw new TypeError('Delegated role name conflicts with top-level role name');
  }
  return { keys: keyMap, roles: list, succinct };
}

// ------------------------------------------------------------------ path patterns

/** Characters that make a pattern more than literals, `*` and `?` for minimatch. */
const NOT_SIMPLE = /[[\]\\{}()!+@#|,]|\*\*/;
/** minimatch's bound on a pattern's length (longer ones throw there, so they go there). */
const MAX_SIMPLE_PATTERN = 64 * 1024;

type Minimatch = (target: string, pattern: string) => boolean;
let minimatch: Minimatch | undefined;

/** minimatch, loaded on first use (only patterns outside the simple form need it). */
function loadMinimatch(): Minimatch {
  minimatch ??= (createRequire(import.meta.url)('minimatch') as { minimatch: Minimatch }).minimatch;
  return minimatch;
}

/** tuf-js's rule: as many segments as the pattern, each matched by minimatch. */
export function isTargetInPathPattern(target: string, pattern: string): boolean {
  const targetParts = target.split('/');
  const patternParts = pattern.split('/');
  if (targetParts.length !== patternParts.length) return false;
  for (let i = 0; i < targetParts.length; i++) {
    if (!matchSegment(targetParts[i] as string, patternParts[i] as string)) return false;
  }
  return true;
}

/** One segment: the simple form here, anything else by minimatch. */
export function matchSegment(segment: string, pattern: string): boolean {
  if (segment === '' || segment.charCodeAt(0) === 0x2e /* . */ || pattern.length > MAX_SIMPLE_PATTERN || NOT_SIMPLE.test(pattern)) {
    return loadMinimatch()(segment, pattern);
  }
  return simpleMatch(segment, pattern);
}

/**
 * Literals, `*` (any run, also empty) and `?` (one UTF-16 unit, as minimatch's regular expressions
 * read it), by the linear greedy algorithm with one backtrack point: O(segment × pattern) at worst.
 */
function simpleMatch(s: string, p: string): boolean {
  let si = 0;
  let pi = 0;
  let star = -1;
  let mark = 0;
  while (si < s.length) {
    const c = p.charCodeAt(pi);
    if (pi < p.length && (c === 0x3f /* ? */ || c === s.charCodeAt(si))) {
      si++;
      pi++;
    } else if (pi < p.length && c === 0x2a /* * */) {
      star = pi++;
      mark = si;
    } else if (star !== -1) {
      pi = star + 1;
      si = ++mark;
    } else {
      return false;
    }
  }
  while (pi < p.length && p.charCodeAt(pi) === 0x2a) pi++;
  return pi === p.length;
}
