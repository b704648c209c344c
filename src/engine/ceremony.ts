/**
 * Offline signing ceremonies: metadata that several keyholders sign one after another, each on
 * their own machine, before anyone uploads it (`tufoci init|delegate|rotate root … --out DIR`,
 * `tufoci sign-metadata DIR --key K`, `tufoci upload DIR`; the edges are src/cli/ceremony-dir.ts
 * and src/cli/commands/ceremony.ts).
 *
 * A ceremony directory holds the metadata files under the names they are uploaded as, and a
 * manifest (`ceremony.json`): the command, the repository, the service, the versions it was built
 * on, and per file the thresholds it must meet (keys by id, public parts only) and the sha256 of
 * its signed part as first written.
 *
 * Invariants:
 * - Pure: no I/O, no clock. The manifest is data from disk, hence untrusted: it is validated field
 *   by field here, and what it claims only decides which files a key is offered to sign and what
 *   is printed. Whether a file may be uploaded is decided against thresholds the upload derives
 *   again from the files themselves and the service's verified root (ceremony commands).
 * - A file whose signed part no longer hashes to what the manifest recorded, or that carries a
 *   signature that does not verify or that no threshold of the file lists, is TAMPERED: nothing
 *   signs it and nothing uploads it.
 * - Signatures are over the canonical bytes of `signed` exactly as parseMetadata computes them
 *   (what signMetadata signs, what every client verifies); files are re-encoded with
 *   encodeMetadata, so a signed-then-re-signed file is byte-identical to one signMetadata wrote
 *   with all its signers at once.
 * - Keys count by identity (signatures.ts): a key signs a file once, under its specification id,
 *   and under its legacy id too where a threshold lists it so (legacy-keyids.ts, as signParts).
 */
import { createHash } from 'node:crypto';
import { TufociError } from '../errors.ts';
import { keyIdsOf, listedIdOf, signingIds } from './legacy-keyids.ts';
import { encodeMetadata, signedToJSON } from './models.ts';
import type { Parsed, RoleType } from './parse.ts';
import { asJson, verifySignature, verifyThreshold, type AuthorizedRole, type KeyMap, type VerificationResult } from './signatures.ts';
import { isTufKeyJson, parsePublicKey, type TufKeyJson } from '../keys/tuf-key.ts';
import type { Signer } from '../keys/signer.ts';

export const CEREMONY_FORMAT = 'tufoci-ceremony/1';
/** The manifest's file name in a ceremony directory. */
export const MANIFEST_FILE = 'ceremony.json';

export type CeremonyErrorCode =
  | 'BAD_MANIFEST' // ceremony.json is not a manifest this version writes
  | 'TAMPERED' // a file changed after it was written, or carries a signature that does not verify
  | 'NOT_AUTHORIZED' // the key signs for none of the files (or a signature is by a key no threshold lists)
  | 'ALREADY_SIGNED' // the key signed every file it is authorized for already
  | 'THRESHOLD_NOT_MET' // upload: a file lacks signatures
  | 'STALE'; // upload: the service moved on since the directory was prepared

export class CeremonyError extends TufociError<CeremonyErrorCode> {}

/** One threshold a file must meet: a role's keys and threshold, as some metadata lists them. */
export interface ThresholdGroup {
  /** For messages: "root v2 (the keys of root v1)", "targets v3 (the targets keys of root v1)". */
  label: string;
  threshold: number;
  keyids: string[];
  /** Public keys by id (every id in `keyids`). */
  keys: Record<string, TufKeyJson>;
  /**
   * Where the group is defined: a file of the ceremony (`role` of the root in that file), checked
   * against that file whenever it is read; absent when it comes from the service's current root.
   */
  definedBy?: { file: string; role: 'root' | 'targets' };
}

export interface CeremonyFile {
  /** The file name in the directory, which is also the name it is uploaded as (`2.root.json`). */
  file: string;
  role: 'root' | 'targets';
  version: number;
  /** sha256 (hex) of the canonical bytes of `signed` as first written. */
  signedSha256: string;
  /** Every one of these must be met before upload. */
  thresholds: ThresholdGroup[];
}

export interface CeremonyManifest {
  format: typeof CEREMONY_FORMAT;
  /** `init`, `delegate add`, `delegate remove`, `delegate revoke-key`, `rotate root`. */
  command: CeremonyCommand;
  /** One human line: what the ceremony does. */
  summary: string;
  repository: string;
  /** The tufoci service the files were built against and are uploaded to. */
  server: string;
  /** When the directory was written (ISO 8601). */
  created: string;
  /** The versions on the service the files were built on (none for init). */
  base: { root?: number; targets?: number };
  /** In upload order. */
  files: CeremonyFile[];
}

export const CEREMONY_COMMANDS = ['init', 'delegate add', 'delegate remove', 'delegate revoke-key', 'rotate root', 'resign'] as const;
export type CeremonyCommand = (typeof CEREMONY_COMMANDS)[number];

/** A ceremony file name: `<version>.<role>.json`, nothing that could leave the directory. */
const FILE_NAME = /^([1-9][0-9]{0,9})\.(root|targets)\.json$/;
const KEYID = /^[0-9a-f]{64}$/;
const SHA256 = /^[0-9a-f]{64}$/;

/** sha256 (hex) of the canonical bytes of a file's `signed`. */
export function signedDigest(signedBytes: Uint8Array): string {
  return createHash('sha256').update(signedBytes).digest('hex');
}

/** A threshold group from a role as @tufjs/models holds it (or as AuthorizedRole + key map). */
export function thresholdGroup(label: string, role: AuthorizedRole, keys: KeyMap, definedBy?: ThresholdGroup['definedBy']): ThresholdGroup {
  const keyids = [...new Set(role.keyIDs)];
  const out: Record<string, TufKeyJson> = {};
  for (const id of keyids) {
    const k = Object.hasOwn(keys, id) ? keys[id] : undefined;
    if (!k) throw new CeremonyError('BAD_MANIFEST', `${label}: key ${id.slice(0, 12)} is listed but not defined`, { detail: { label, keyid: id } });
    out[id] = asJson(k);
  }
  return { label, threshold: role.threshold, keyids, keys: out, ...(definedBy ? { definedBy } : {}) };
}

/** Same keys (by id) and threshold. */
export function sameGroup(a: Pick<ThresholdGroup, 'keyids' | 'threshold'>, b: Pick<ThresholdGroup, 'keyids' | 'threshold'>): boolean {
  return a.threshold === b.threshold && [...a.keyids].sort().join(',') === [...b.keyids].sort().join(',');
}

function bad(message: string, field: string): never {
  throw new CeremonyError('BAD_MANIFEST', `${MANIFEST_FILE}: ${message}`, { detail: { field } });
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function only(obj: Record<string, unknown>, field: string, required: readonly string[], optional: readonly string[] = []): void {
  for (const k of Object.keys(obj)) if (!required.includes(k) && !optional.includes(k)) bad(`${field ? `${field}.` : ''}${k}: unknown field`, `${field}.${k}`);
  for (const k of required) if (!Object.hasOwn(obj, k)) bad(`${field ? `${field}.` : ''}${k} is required`, `${field}.${k}`);
}

function str(v: unknown, field: string, max = 1024): string {
  if (typeof v !== 'string' || v.length === 0 || v.length > max) bad(`${field} must be a non-empty string`, field);
  return v;
}

function int(v: unknown, field: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) bad(`${field} must be an integer from ${min} to ${max}`, field);
  return v;
}

function group(v: unknown, field: string): ThresholdGroup {
  if (!isObject(v)) bad(`${field} must be an object`, field);
  only(v, field, ['label', 'threshold', 'keyids', 'keys'], ['definedBy']);
  const keyids = v['keyids'];
  if (!Array.isArray(keyids) || keyids.length === 0 || keyids.length > 64) bad(`${field}.keyids must list 1 to 64 key ids`, `${field}.keyids`);
  const keys = v['keys'];
  if (!isObject(keys)) bad(`${field}.keys must be an object`, `${field}.keys`);
  const outKeys: Record<string, TufKeyJson> = {};
  for (const [i, id] of keyids.entries()) {
    if (typeof id !== 'string' || !KEYID.test(id)) bad(`${field}.keyids[${i}] is not a key id`, `${field}.keyids`);
    const k = Object.hasOwn(keys, id) ? keys[id] : undefined;
    if (!isTufKeyJson(k)) bad(`${field}.keys has no public key for ${id.slice(0, 12)}`, `${field}.keys`);
    // The id must name this key (its specification id, or the legacy id a role may still list).
    const ids = keyIdsOf(k);
    if (id !== ids.correct && id !== ids.legacy) bad(`${field}.keys: ${id.slice(0, 12)} is not the key id of the key given for it`, `${field}.keys`);
    try {
      parsePublicKey(id, k);
    } catch {
      bad(`${field}.keys: ${id.slice(0, 12)} is not a usable public key`, `${field}.keys`);
    }
    outKeys[id] = { keytype: k.keytype, scheme: k.scheme, keyval: { public: k.keyval.public } };
  }
  if (Object.keys(keys).length !== keyids.length) bad(`${field}.keys must hold exactly the keys of ${field}.keyids`, `${field}.keys`);
  const threshold = int(v['threshold'], `${field}.threshold`, 1, keyids.length);
  let definedBy: ThresholdGroup['definedBy'];
  if (v['definedBy'] !== undefined) {
    const d = v['definedBy'];
    if (!isObject(d)) bad(`${field}.definedBy must be an object`, `${field}.definedBy`);
    only(d, `${field}.definedBy`, ['file', 'role']);
    const file = str(d['file'], `${field}.definedBy.file`);
    if (!FILE_NAME.test(file)) bad(`${field}.definedBy.file is not a ceremony file name`, `${field}.definedBy.file`);
    if (d['role'] !== 'root' && d['role'] !== 'targets') bad(`${field}.definedBy.role must be root or targets`, `${field}.definedBy.role`);
    definedBy = { file, role: d['role'] };
  }
  return { label: str(v['label'], `${field}.label`, 200), threshold, keyids: keyids as string[], keys: outKeys, ...(definedBy ? { definedBy } : {}) };
}

/** ceremony.json's parsed JSON → a manifest, or BAD_MANIFEST naming the field. */
export function parseManifest(value: unknown): CeremonyManifest {
  if (!isObject(value)) bad('must be a JSON object', '');
  only(value, '', ['format', 'command', 'summary', 'repository', 'server', 'created', 'base', 'files']);
  if (value['format'] !== CEREMONY_FORMAT) bad(`format must be "${CEREMONY_FORMAT}" (written by another version of tufoci?)`, 'format');
  const command = value['command'];
  if (!CEREMONY_COMMANDS.includes(command as CeremonyCommand)) bad(`command must be one of ${CEREMONY_COMMANDS.join(', ')}`, 'command');
  const base = value['base'];
  if (!isObject(base)) bad('base must be an object', 'base');
  only(base, 'base', [], ['root', 'targets']);
  const files = value['files'];
  if (!Array.isArray(files) || files.length === 0 || files.length > 8) bad('files must list 1 to 8 files', 'files');
  const seen = new Set<string>();
  const parsedFiles = files.map((f: unknown, i): CeremonyFile => {
    const field = `files[${i}]`;
    if (!isObject(f)) bad(`${field} must be an object`, field);
    only(f, field, ['file', 'role', 'version', 'signedSha256', 'thresholds']);
    const file = str(f['file'], `${field}.file`);
    const m = FILE_NAME.exec(file);
    if (!m) bad(`${field}.file must be <version>.<root|targets>.json`, `${field}.file`);
    if (seen.has(file)) bad(`${field}.file ${file} is listed twice`, `${field}.file`);
    seen.add(file);
    const version = int(f['version'], `${field}.version`, 1, 2 ** 31);
    if (f['role'] !== m[2] || version !== Number(m[1])) bad(`${field}: role and version must be those of its file name ${file}`, field);
    const sha = f['signedSha256'];
    if (typeof sha !== 'string' || !SHA256.test(sha)) bad(`${field}.signedSha256 must be 64 hex digits`, `${field}.signedSha256`);
    const thresholds = f['thresholds'];
    if (!Array.isArray(thresholds) || thresholds.length === 0 || thresholds.length > 4) bad(`${field}.thresholds must list 1 to 4 thresholds`, `${field}.thresholds`);
    return { file, role: m[2] as 'root' | 'targets', version, signedSha256: sha, thresholds: thresholds.map((g: unknown, j) => group(g, `${field}.thresholds[${j}]`)) };
  });
  const roles = parsedFiles.map((f) => f.role).join(',');
  const shapes: Record<CeremonyCommand, string[]> = { init: ['root,targets'], 'rotate root': ['root', 'targets,root'], 'delegate add': ['targets'], 'delegate remove': ['targets'], 'delegate revoke-key': ['targets'], resign: ['targets'] };
  if (!shapes[command as CeremonyCommand].includes(roles)) bad(`a ${String(command)} ceremony holds ${shapes[command as CeremonyCommand].join(' or ')} files, not ${roles}`, 'files');
  if (command === 'init' && parsedFiles.some((f) => f.version !== 1)) bad('an init ceremony holds version 1 files', 'files');
  for (const f of parsedFiles) for (const g of f.thresholds) if (g.definedBy && !seen.has(g.definedBy.file)) bad(`${f.file}: a threshold is defined by ${g.definedBy.file}, which the ceremony does not hold`, 'files');
  return {
    format: CEREMONY_FORMAT,
    command: command as CeremonyCommand,
    summary: str(value['summary'], 'summary', 2000),
    repository: str(value['repository'], 'repository', 256),
    server: str(value['server'], 'server', 2048),
    created: str(value['created'], 'created', 64),
    base: {
      ...(base['root'] !== undefined ? { root: int(base['root'], 'base.root', 1, 2 ** 31) } : {}),
      ...(base['targets'] !== undefined ? { targets: int(base['targets'], 'base.targets', 1, 2 ** 31) } : {}),
    },
    files: parsedFiles,
  };
}

type AnyParsed = Parsed<'root'> | Parsed<'targets'>;

/**
 * The groups `entry` claims that are defined by files of the ceremony, checked against those
 * files (`parsedByName`): TAMPERED where the manifest and the file disagree.
 */
export function checkDefinedGroups(entry: CeremonyFile, parsedByName: ReadonlyMap<string, AnyParsed>): void {
  for (const g of entry.thresholds) {
    if (!g.definedBy) continue;
    const p = parsedByName.get(g.definedBy.file);
    const root = p?.md.signed;
    if (!p || !root || root.type !== 'root') throw new CeremonyError('TAMPERED', `${entry.file}: its threshold "${g.label}" is defined by ${g.definedBy.file}, which is not a root file of the ceremony`, { detail: { file: entry.file } });
    const role = (root as Parsed<'root'>['md']['signed']).roles[g.definedBy.role];
    if (!role || !sameGroup(g, { keyids: role.keyIDs, threshold: role.threshold })) {
      throw new CeremonyError('TAMPERED', `${entry.file}: ${MANIFEST_FILE} says "${g.label}" is ${g.threshold} of ${g.keyids.map((k) => k.slice(0, 12)).join(', ')}, but ${g.definedBy.file} lists ${role ? `${role.threshold} of ${role.keyIDs.map((k) => k.slice(0, 12)).join(', ')}` : 'no such role'}`, {
        detail: { file: entry.file, label: g.label },
      });
    }
  }
}

/**
 * A file of the ceremony as read: its role and version are the manifest's, its signed part is
 * what was first written, every signature on it is by a key one of its thresholds lists and
 * verifies. Anything else is TAMPERED.
 */
export function checkIntegrity(entry: CeremonyFile, parsed: AnyParsed): void {
  const detail = { file: entry.file };
  if (parsed.md.signed.type !== entry.role || parsed.md.signed.version !== entry.version) {
    throw new CeremonyError('TAMPERED', `${entry.file} holds ${parsed.md.signed.type} v${parsed.md.signed.version}, not ${entry.role} v${entry.version}`, { detail });
  }
  const digest = signedDigest(parsed.signedBytes);
  if (digest !== entry.signedSha256) {
    throw new CeremonyError('TAMPERED', `${entry.file} was changed after it was written: its signed part has sha256 ${digest.slice(0, 16)}…, ${MANIFEST_FILE} recorded ${entry.signedSha256.slice(0, 16)}…; prepare the ceremony again`, {
      detail: { ...detail, digest, expected: entry.signedSha256 },
    });
  }
  for (const s of parsed.signatures) {
    const key = keyOfSignature(entry, s.keyid);
    if (!key) {
      throw new CeremonyError('TAMPERED', `${entry.file} carries a signature by key ${s.keyid.slice(0, 12)}, which none of its thresholds (${entry.thresholds.map((x) => x.label).join('; ')}) lists`, { detail: { ...detail, keyid: s.keyid } });
    }
    if (!verifySignature(parsePublicKey(s.keyid, key), parsed.signedBytes, s.sig)) {
      throw new CeremonyError('TAMPERED', `${entry.file}: the signature by key ${s.keyid.slice(0, 12)} does not verify: the file was changed after it was signed`, { detail: { ...detail, keyid: s.keyid } });
    }
  }
}

/**
 * The key a signature under `keyid` is by: one a threshold of `entry` lists under that id, or one
 * it lists under its legacy id whose specification id this is (a signer signs under both, signParts).
 */
export function keyOfSignature(entry: Pick<CeremonyFile, 'thresholds'>, keyid: string): TufKeyJson | undefined {
  for (const g of entry.thresholds) {
    if (Object.hasOwn(g.keys, keyid)) return g.keys[keyid];
    for (const k of Object.values(g.keys)) if (keyIdsOf(k).correct === keyid) return k;
  }
  return undefined;
}

/** The thresholds of `entry` that list `key` (under its specification or its legacy id). */
export function groupsListing(entry: CeremonyFile, key: TufKeyJson): ThresholdGroup[] {
  return entry.thresholds.filter((g) => listedIdOf(key, g.keyids) !== undefined);
}

/** Did `key` sign `parsed` already (under any of its ids)? The file passed checkIntegrity, so every signature on it verifies. */
export function signedBy(parsed: Pick<AnyParsed, 'signatures'>, key: TufKeyJson): boolean {
  const { correct, legacy } = keyIdsOf(key);
  return parsed.signatures.some((s) => s.keyid === correct || s.keyid === legacy);
}

/**
 * `parsed` with `signer`'s signature added, as file bytes: over the canonical bytes of `signed`,
 * under the signer's key id and, where a threshold of the file lists the key under its legacy id,
 * under that one too (the same bytes signParts writes).
 */
export async function addSignature(entry: CeremonyFile, parsed: AnyParsed, signer: Signer): Promise<Uint8Array> {
  const listed = entry.thresholds.flatMap((g) => g.keyids);
  const sig = await signer.sign(parsed.signedBytes);
  const signatures = parsed.signatures.map((s) => ({ keyid: s.keyid, sig: s.sig }));
  for (const keyid of new Set([sig.keyid, ...signingIds(signer.public, listed)])) {
    if (!signatures.some((s) => s.keyid === keyid)) signatures.push({ keyid, sig: sig.sig });
  }
  return encodeMetadata(signatures, signedToJSON(parsed.md.signed), parsed.signedBytes, parsed.md.unrecognizedFields as Record<string, unknown>);
}

/** Each group of `groups` verified over `parsed` (each key counted once, signatures.ts). */
export function verifyGroups(parsed: Pick<AnyParsed, 'signedBytes' | 'signatures'>, groups: readonly ThresholdGroup[]): VerificationResult[] {
  return groups.map((g) => verifyThreshold(g.label, parsed.signedBytes, parsed.signatures, { keyIDs: g.keyids, threshold: g.threshold }, g.keys));
}

/** "1.targets.json: targets v1 (the targets keys of root v1) has 1 of the 2 signatures it needs: 1 more (from 3f2a…, 9c1b…)" */
export function describeShortfall(file: string, r: VerificationResult): string {
  const more = Math.max(0, r.threshold - r.signed.length);
  const from = r.unsigned.length ? ` (from ${r.unsigned.map((k) => `${k.slice(0, 12)}…`).join(', ')})` : '';
  return `${file}: ${r.role} has ${r.signed.length} of the ${r.threshold} signature(s) it needs: ${more} more${from}`;
}

export type { RoleType };
