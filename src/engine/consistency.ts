/**
 * Whole-state consistency: the checks a TUF client makes across files
 * (timestamp → snapshot → targets), run by the engine on what it produces and
 * on what it loads from storage.
 *
 * Invariants:
 * - timestamp and snapshot are signed by a threshold of the root's keys for their role;
 * - timestamp names the snapshot's exact version, length and sha256 (5.5.2, 5.5.4);
 * - the snapshot lists every targets-type file of the state, at its exact version (5.6.2),
 *   and nothing else (mix-and-match: a snapshot naming versions that do not exist is refused).
 */
import { createHash } from 'node:crypto';
import type { Metadata, Snapshot, Timestamp } from '@tufjs/models';
import { canonicalSignedBytes } from './canonical.ts';
import { EngineError } from './errors.ts';
import { verifyThreshold } from './signatures.ts';
import { signedToJSON } from './models.ts';
import { snapshotEntries, type RepoState } from './state.ts';

function onlineSignature(state: RepoState, role: 'snapshot' | 'timestamp', md: Metadata<Snapshot | Timestamp>): void {
  const r = state.root.md.signed.roles[role];
  if (!r) throw new EngineError('INCONSISTENT', `root has no ${role} role`, { detail: { role } });
  const sigs = Object.values(md.signatures).map((s) => ({ keyid: s.keyID, sig: s.sig }));
  const result = verifyThreshold(role, canonicalSignedBytes(signedToJSON(md.signed)), sigs, r, state.root.md.signed.keys);
  if (!result.ok) {
    throw new EngineError('THRESHOLD_NOT_MET', `${role} is not signed by a threshold of the root's ${role} keys`, {
      detail: { role, verification: result },
    });
  }
}

/**
 * `signatures: false` skips re-verifying the online signatures — only for
 * files the engine has just signed and verified itself (online.ts).
 */
export function checkConsistency(state: RepoState, options: { signatures?: boolean } = {}): void {
  const { snapshot, timestamp } = state;
  if (!snapshot || !timestamp) throw new EngineError('NO_SNAPSHOT', 'state has no snapshot/timestamp', { detail: {} });
  if (options.signatures !== false) {
    onlineSignature(state, 'timestamp', timestamp.md);
    onlineSignature(state, 'snapshot', snapshot.md);
  }
  const sm = timestamp.md.signed.snapshotMeta;
  if (sm.version !== snapshot.md.signed.version) {
    throw new EngineError('INCONSISTENT', `timestamp names snapshot ${sm.version}, but snapshot is version ${snapshot.md.signed.version}`, {
      detail: { role: 'snapshot', expected: sm.version, got: snapshot.md.signed.version },
    });
  }
  if (sm.length !== undefined && sm.length !== snapshot.bytes.byteLength) {
    throw new EngineError('INCONSISTENT', `timestamp names a snapshot of ${sm.length} bytes, got ${snapshot.bytes.byteLength}`, {
      detail: { role: 'snapshot' },
    });
  }
  const sha = sm.hashes?.['sha256'];
  if (sha !== undefined && sha !== createHash('sha256').update(snapshot.bytes).digest('hex')) {
    throw new EngineError('INCONSISTENT', 'snapshot does not match the sha256 the timestamp names', { detail: { role: 'snapshot' } });
  }
  const expected = snapshotEntries(state);
  const listed = snapshot.md.signed.meta;
  for (const [role, version] of expected) {
    const entry = listed[`${role}.json`];
    if (!entry) throw new EngineError('INCONSISTENT', `snapshot does not list ${role}.json`, { detail: { role } });
    if (entry.version !== version) {
      throw new EngineError('INCONSISTENT', `snapshot names ${role} version ${entry.version}, trusted metadata is version ${version}`, {
        detail: { role, expected: version, got: entry.version },
      });
    }
  }
  for (const name of Object.keys(listed)) {
    const role = name.endsWith('.json') ? name.slice(0, -5) : name;
    if (!expected.has(role)) {
      throw new EngineError('INCONSISTENT', `snapshot names ${name}, which does not exist in this repository`, { detail: { role } });
    }
  }
}
