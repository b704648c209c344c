/**
 * Loading the trusted state of a repository from stored files.
 *
 * The store (a registry, an OCI layout) is not trusted: the loader re-verifies
 * everything the way a TUF client would, starting from a root the caller
 * already trusts.
 *
 * Invariants (in the order the TUF client workflow runs them):
 * 1. `roots[0]` is the trust anchor: it must be signed by a threshold of its own
 *    root keys. Each following root must be version + 1 and signed by a
 *    threshold of the previous root's keys and of its own (5.3.4–5.3.5).
 *    Expiry is not enforced here: an expired repository must still load so it
 *    can be renewed; uploads and clients enforce expiry.
 * 2. timestamp is signed by the root's timestamp keys (5.4.2).
 * 3. snapshot matches the timestamp's version, length and hash and is signed by
 *    the root's snapshot keys (5.5.2–5.5.3).
 * 4. Targets files are loaded from "targets" down the delegation tree; each must
 *    be exactly the version the snapshot names (5.6.2, mix-and-match) and be
 *    signed by its delegator's keys. A file that the snapshot lists but that is
 *    unreachable, or whose delegator's keys no longer sign it (revocation), is
 *    kept as a tombstone at its snapshot version, never dropped.
 * 5. A file missing or at the wrong version is INCONSISTENT: the load fails.
 */
import type { Policy } from '../policy/policy.ts';
import { EngineError } from './errors.ts';
import { limitsFromPolicy, parseMetadata } from './parse.ts';
import { verifyThreshold } from './signatures.ts';
import { checkConsistency } from './consistency.ts';
import { delegationsOf, withTargets, type RepoState } from './state.ts';

export interface StoredFiles {
  /** Root versions in order, starting with the trust anchor. */
  roots: readonly Uint8Array[];
  timestamp: Uint8Array;
  /** The snapshot version the timestamp names. */
  snapshot: Uint8Array;
  /** The targets files at the versions the snapshot names, by role (absent = not stored). */
  targets: ReadonlyMap<string, Uint8Array>;
}

export interface LoadProblem {
  role: string;
  code: string;
  message: string;
}

export interface LoadResult {
  state: RepoState;
  problems: LoadProblem[];
}

function verifyRootChain(roots: readonly Uint8Array[], policy: Policy): RepoState {
  const [anchor, ...rest] = roots;
  if (!anchor) throw new EngineError('INCONSISTENT', 'no trusted root given', { detail: { role: 'root' } });
  const parsed = parseMetadata('root', anchor, policy.roles.root.maxBytes, 'root', limitsFromPolicy(policy));
  const own = parsed.md.signed.roles['root'];
  if (!own) throw new EngineError('MALFORMED', 'root does not define the root role', { detail: { role: 'root' } });
  const self = verifyThreshold('root', parsed.signedBytes, parsed.signatures, own, parsed.md.signed.keys);
  if (!self.ok) throw new EngineError('THRESHOLD_NOT_MET', 'trusted root is not signed by its own root keys', { detail: { verification: self } });
  let state: RepoState = { root: { md: parsed.md, bytes: anchor }, targets: new Map(), tombstones: new Map(), snapshot: undefined, timestamp: undefined };
  for (const bytes of rest) {
    // Rotation checks without expiry/policy limits: they applied when the root was accepted.
    state = rotateRoot(state, bytes, policy);
  }
  return state;
}

function rotateRoot(state: RepoState, bytes: Uint8Array, policy: Policy): RepoState {
  const parsed = parseMetadata('root', bytes, policy.roles.root.maxBytes, 'root', limitsFromPolicy(policy));
  const trusted = state.root.md.signed;
  if (parsed.md.signed.version !== trusted.version + 1) {
    throw new EngineError('INCONSISTENT', `root chain jumps from ${trusted.version} to ${parsed.md.signed.version}`, {
      detail: { role: 'root', expected: trusted.version + 1, got: parsed.md.signed.version },
    });
  }
  const oldRole = trusted.roles['root'];
  const newRole = parsed.md.signed.roles['root'];
  if (!oldRole || !newRole) throw new EngineError('MALFORMED', 'root does not define the root role', { detail: { role: 'root' } });
  const a = verifyThreshold('root (trusted keys)', parsed.signedBytes, parsed.signatures, oldRole, trusted.keys);
  const b = verifyThreshold('root (new keys)', parsed.signedBytes, parsed.signatures, newRole, parsed.md.signed.keys);
  if (!a.ok || !b.ok) {
    throw new EngineError('THRESHOLD_NOT_MET', `root ${parsed.md.signed.version} is not signed by a threshold of the old and new root keys`, {
      detail: { role: 'root', verification: a.ok ? b : a },
    });
  }
  return { ...state, root: { md: parsed.md, bytes } };
}

export function loadRepositoryState(files: StoredFiles, policy: Policy): LoadResult {
  let state = verifyRootChain(files.roots, policy);
  const ts = parseMetadata('timestamp', files.timestamp, policy.roles.timestamp.maxBytes);
  const snap = parseMetadata('snapshot', files.snapshot, policy.roles.snapshot.maxBytes);
  const problems: LoadProblem[] = [];
  const listed = new Map<string, number>();
  for (const [name, meta] of Object.entries(snap.md.signed.meta)) {
    if (!name.endsWith('.json')) throw new EngineError('INCONSISTENT', `snapshot lists ${name}, not a metadata file name`, { detail: { role: name } });
    listed.set(name.slice(0, -5), meta.version);
  }
  if (!listed.has('targets')) throw new EngineError('INCONSISTENT', 'snapshot does not list targets.json', { detail: { role: 'targets' } });

  // Walk the delegation tree breadth first from top-level targets.
  const queue = ['targets'];
  const visited = new Set<string>();
  while (queue.length > 0) {
    const role = queue.shift() as string;
    if (visited.has(role)) continue;
    visited.add(role);
    const version = listed.get(role);
    if (version === undefined) continue; // delegated but never uploaded
    const bytes = files.targets.get(role);
    if (!bytes) {
      throw new EngineError('INCONSISTENT', `snapshot names ${role} version ${version}, which is not stored`, { detail: { role, version } });
    }
    const rp = role === 'targets' ? policy.roles.targets : policy.roles.delegated;
    const parsed = parseMetadata('targets', bytes, Math.max(rp.maxBytes, policy.roles.ci.maxBytes), role, limitsFromPolicy(policy));
    if (parsed.md.signed.version !== version) {
      throw new EngineError('INCONSISTENT', `snapshot names ${role} version ${version}, stored file is version ${parsed.md.signed.version}`, {
        detail: { role, expected: version, got: parsed.md.signed.version },
      });
    }
    const delegations = delegationsOf(state, role);
    const entry = delegations.length === 1 ? delegations[0] : undefined;
    const check = entry ? verifyThreshold(role, parsed.signedBytes, parsed.signatures, entry, entry.keys) : undefined;
    if (!check?.ok) {
      problems.push({
        role,
        code: entry ? 'THRESHOLD_NOT_MET' : 'BAD_DELEGATION',
        message: entry ? `${role} is no longer signed by the keys its delegator names` : `${role} is delegated ${delegations.length} times`,
      });
      continue;
    }
    state = withTargets(state, role, { md: parsed.md, bytes });
    const d = parsed.md.signed.delegations;
    for (const child of Object.keys(d?.roles ?? {})) queue.push(child);
    if (d?.succinctRoles) for (const bin of d.succinctRoles.getRoles()) if (listed.has(bin)) queue.push(bin);
  }
  const tombstones = new Map<string, number>();
  for (const [role, version] of listed) {
    if (!state.targets.has(role)) {
      tombstones.set(role, version);
      if (!problems.some((p) => p.role === role)) problems.push({ role, code: 'UNREACHABLE', message: `${role} is listed in the snapshot but no longer delegated` });
    }
  }
  state = { ...state, tombstones, snapshot: { md: snap.md, bytes: files.snapshot }, timestamp: { md: ts.md, bytes: files.timestamp } };
  checkConsistency(state);
  return { state, problems };
}
