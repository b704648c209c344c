/**
 * Producing the online roles: snapshot and timestamp.
 *
 * Invariants:
 * - A new snapshot lists every targets-type file of the state (records and
 *   tombstones) with its current version, so no file a client has seen is ever
 *   dropped (TUF 5.5.5), and its version is the trusted snapshot version + 1.
 * - A new timestamp names the snapshot by version, length and sha256, and its
 *   version is the trusted timestamp version + 1.
 * - Expiry comes from the policy default for the role, counted from `now`.
 * - Signing goes through the async Signer seam; only signers whose keys the
 *   root authorizes for the role are used, under the ids root lists them
 *   (a legacy id included: legacy-keyids.ts), and the result is re-parsed and
 *   verified (signatures, threshold, consistency) before it is returned.
 *   A result that does not verify is never returned.
 */
import { createHash } from 'node:crypto';
import { MetaFile, Metadata, Signature, Snapshot, Timestamp } from '@tufjs/models';
import type { Signer } from '../keys/signer.ts';
import type { Policy } from '../policy/policy.ts';
import { boundBins } from './bound-bins.ts';
import { canonicalSignedBytes } from './canonical.ts';
import { signingIds } from './legacy-keyids.ts';
import { EngineError } from './errors.ts';
import { metadataFileName } from './names.ts';
import { parseMetadata } from './parse.ts';
import { verifyThreshold } from './signatures.ts';
import { snapshotEntries, type RepoState } from './state.ts';
import { checkConsistency } from './consistency.ts';
import { memberFields, namespaceOf } from './scope.ts';
import { encodeMetadata, signedToJSON } from './models.ts';

export interface OnlineContext {
  now: number;
  policy: Policy;
  signers: { snapshot: readonly Signer[]; timestamp: readonly Signer[] };
  /**
   * The repository signed for. In a namespace (scope.ts) its snapshot and timestamp name it
   * (`x-tufoci-scope`): the namespace's online keys sign every member's.
   */
  repository?: string;
}

/** The signed scope field of a member's snapshot and timestamp, when the repository is in a namespace. */
function memberScope(state: RepoState, ctx: OnlineContext): { unrecognizedFields?: Record<string, string> } {
  const ns = ctx.repository === undefined ? undefined : namespaceOf(state.root.md.signed, ctx.repository);
  return ns !== undefined && ctx.repository !== undefined ? { unrecognizedFields: memberFields(ns, ctx.repository) } : {};
}

export interface ProducedFile {
  /** The file name clients fetch (`7.snapshot.json`, `timestamp.json`). */
  name: string;
  bytes: Uint8Array;
}

export interface OnlineResult {
  state: RepoState;
  /** Files to write, in order: snapshot (if new) then timestamp, which is always last. */
  files: ProducedFile[];
}

function isoMinutesFrom(now: number, minutes: number): string {
  // TUF expiry format: seconds precision, UTC, "Z".
  return new Date(Math.floor(now / 1000) * 1000 + minutes * 60_000).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

async function signWith<T extends Snapshot | Timestamp>(
  role: 'snapshot' | 'timestamp',
  signed: T,
  state: RepoState,
  signers: readonly Signer[],
): Promise<Uint8Array> {
  const rootRole = state.root.md.signed.roles[role];
  if (!rootRole) throw new EngineError('INCONSISTENT', `root has no ${role} role`, { detail: { role } });
  const authorized = new Set(rootRole.keyIDs);
  const json = signedToJSON(signed);
  const bytes = canonicalSignedBytes(json);
  const md = new Metadata<T>(signed);
  for (const s of signers) {
    // Under the id(s) root lists the key under: a root written before the key id fix lists it
    // under its legacy id (legacy-keyids.ts).
    const ids = signingIds(s.public, authorized).filter((id) => authorized.has(id));
    if (ids.length === 0) continue;
    const sig = await s.sign(bytes);
    for (const keyid of ids) md.signatures[keyid] = new Signature({ keyID: keyid, sig: sig.sig });
  }
  const out = encodeMetadata(Object.values(md.signatures).map((x) => ({ keyid: x.keyID, sig: x.sig })), json, bytes);
  const check = verifyThreshold(role, bytes, Object.values(md.signatures).map((s) => ({ keyid: s.keyID, sig: s.sig })), rootRole, state.root.md.signed.keys);
  if (!check.ok) {
    throw new EngineError('SIGNER_MISSING', `the online signers cannot sign ${role}: ${check.signed.length} of ${check.threshold} signatures`, {
      detail: { role, verification: check },
    });
  }
  return out;
}

const digests = new WeakMap<Uint8Array, string>();

/** SHA-256 hex of a stored file's bytes, computed once per byte array (records are immutable). */
function sha256Of(bytes: Uint8Array): string {
  let hex = digests.get(bytes);
  if (hex === undefined) {
    hex = createHash('sha256').update(bytes).digest('hex');
    digests.set(bytes, hex);
  }
  return hex;
}

/** A new snapshot listing the state's targets files, then a new timestamp for it. */
export async function produceSnapshotAndTimestamp(state: RepoState, ctx: OnlineContext): Promise<OnlineResult> {
  const meta: Record<string, MetaFile> = {};
  const entries = [...snapshotEntries(state)].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const bound = boundBins(state, ctx.repository);
  for (const [role, version] of entries) {
    // Length and hash pin the exact file (TUF 5.6.2/5.6.3), so a registry cannot hand a client
    // another repository's targets file of the same version signed by a shared key; hash bins
    // whose keys are this repository's alone need no pin (bound-bins.ts).
    const rec = state.targets.get(role);
    meta[`${role}.json`] = rec && rec.md.signed.version === version && !bound(role) ? new MetaFile({ version, length: rec.bytes.byteLength, hashes: { sha256: sha256Of(rec.bytes) } }) : new MetaFile({ version });
  }
  const snapshot = new Snapshot({
    version: (state.snapshot?.md.signed.version ?? 0) + 1,
    specVersion: '1.0.31',
    expires: isoMinutesFrom(ctx.now, ctx.policy.roles.snapshot.expiresDefaultMinutes),
    meta,
    ...memberScope(state, ctx),
  });
  const snapshotBytes = await signWith('snapshot', snapshot, state, ctx.signers.snapshot);
  const snapshotParsed = parseMetadata('snapshot', snapshotBytes, ctx.policy.roles.snapshot.maxBytes);
  const withSnapshot: RepoState = { ...state, snapshot: { md: snapshotParsed.md, bytes: snapshotBytes } };
  const ts = await produceTimestamp(withSnapshot, ctx);
  return {
    state: ts.state,
    files: [{ name: metadataFileName('snapshot', snapshot.version), bytes: snapshotBytes }, ...ts.files],
  };
}

/** A new timestamp for the current snapshot (refresh before expiry, or after a new snapshot). */
export async function produceTimestamp(state: RepoState, ctx: OnlineContext): Promise<OnlineResult> {
  const snap = state.snapshot;
  if (!snap) throw new EngineError('NO_SNAPSHOT', 'there is no snapshot to timestamp yet', { detail: { role: 'timestamp' } });
  const timestamp = new Timestamp({
    version: (state.timestamp?.md.signed.version ?? 0) + 1,
    specVersion: '1.0.31',
    expires: isoMinutesFrom(ctx.now, ctx.policy.roles.timestamp.expiresDefaultMinutes),
    snapshotMeta: new MetaFile({
      version: snap.md.signed.version,
      length: snap.bytes.byteLength,
      hashes: { sha256: createHash('sha256').update(snap.bytes).digest('hex') },
    }),
    ...memberScope(state, ctx),
  });
  const bytes = await signWith('timestamp', timestamp, state, ctx.signers.timestamp);
  const parsed = parseMetadata('timestamp', bytes, ctx.policy.roles.timestamp.maxBytes);
  const next: RepoState = { ...state, timestamp: { md: parsed.md, bytes } };
  checkConsistency(next, { signatures: false }); // signWith verified both signatures already
  return { state: next, files: [{ name: metadataFileName('timestamp'), bytes }] };
}
