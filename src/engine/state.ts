/**
 * The trusted state of one TUF repository, and the delegation tree inside it.
 *
 * Invariants:
 * - A RepoState is immutable; every change returns a new one.
 * - Every record in it was verified by the engine (upload checks or the loader)
 *   at the time it entered. Records are never removed: once a targets-type file
 *   is listed in a snapshot it stays listed (TUF clients refuse a snapshot that
 *   drops a file), so a removed delegation leaves its role behind as an
 *   unreachable record, and the loader keeps roles it cannot verify any more as
 *   `tombstones` (role → version) so their version numbers never go backwards.
 * - Delegations form a tree: each delegated role name has exactly one
 *   delegating role (explicitly or through succinct hash bins). Uploads that
 *   would make a name ambiguous are refused (BAD_DELEGATION).
 */
import type { Metadata, Root, Snapshot, Targets, Timestamp } from '@tufjs/models';
import { EngineError } from './errors.ts';
import { isTargetInPathPattern } from '../client/core/roles.ts';
import type { AuthorizedRole, KeyMap } from './signatures.ts';

export interface RoleRecord<T extends Root | Targets | Snapshot | Timestamp> {
  readonly md: Metadata<T>;
  readonly bytes: Uint8Array;
}

export interface RepoState {
  readonly root: RoleRecord<Root>;
  /** "targets" and every delegated role, by role name. */
  readonly targets: ReadonlyMap<string, RoleRecord<Targets>>;
  /** Roles listed in the snapshot whose metadata is no longer verifiable. */
  readonly tombstones: ReadonlyMap<string, number>;
  readonly snapshot: RoleRecord<Snapshot> | undefined;
  readonly timestamp: RoleRecord<Timestamp> | undefined;
}

/** Structural view of a delegation entry (DelegatedRole / SuccinctRoles are not exported by @tufjs/models). */
export interface DelegationEntry extends AuthorizedRole {
  readonly kind: 'role' | 'bins';
  readonly parent: string;
  /** Does this delegation cover the target path for this role? */
  covers(path: string): boolean;
  readonly terminating: boolean;
  readonly keys: KeyMap;
}

export function currentVersion(state: RepoState, role: string): number {
  return state.targets.get(role)?.md.signed.version ?? state.tombstones.get(role) ?? 0;
}

interface Index {
  explicit: Map<string, DelegationEntry[]>;
  bins: Array<{ parent: string; targets: Targets }>;
}

const indexCache = new WeakMap<ReadonlyMap<string, RoleRecord<Targets>>, Index>();

interface PathRole {
  readonly paths?: string[] | undefined;
  isDelegatedPath(path: string): boolean;
}

/**
 * Target path → covered, per delegated role object. @tufjs/models matches
 * `paths` with minimatch, compiling each glob again on every call, and every
 * upload re-checks every target of the role. Role objects are immutable and
 * shared by successive states while their delegator's file is unchanged, so
 * the answers stay valid; the models' own matcher still decides each one.
 */
const coverage = new WeakMap<PathRole, Map<string, boolean>>();
/** Bound on remembered answers per role (a role lists at most policy.limits.maxTargetsPerRole targets). */
const MAX_COVERAGE_ENTRIES = 100_000;

function covers(role: PathRole, path: string): boolean {
  let answers = coverage.get(role);
  if (!answers) {
    answers = new Map();
    coverage.set(role, answers);
  }
  let answer = answers.get(path);
  if (answer === undefined) {
    // Path patterns by the client core's matcher (the models' rule: minimatch per segment, the
    // common form without compiling a regular expression per call; test/client/roles.test.ts
    // holds it to minimatch); hash prefixes by the models.
    answer = role.paths ? role.paths.some((pattern) => isTargetInPathPattern(path, pattern)) : role.isDelegatedPath(path);
    if (answers.size >= MAX_COVERAGE_ENTRIES) answers.clear();
    answers.set(path, answer);
  }
  return answer;
}

function buildIndex(targets: ReadonlyMap<string, RoleRecord<Targets>>): Index {
  const explicit = new Map<string, DelegationEntry[]>();
  const bins: Index['bins'] = [];
  for (const [parent, rec] of targets) {
    const delegations = rec.md.signed.delegations;
    if (!delegations) continue;
    for (const [name, role] of Object.entries(delegations.roles ?? {})) {
      const entry: DelegationEntry = {
        kind: 'role',
        parent,
        keyIDs: role.keyIDs,
        threshold: role.threshold,
        terminating: role.terminating,
        keys: delegations.keys,
        covers: (path) => covers(role, path),
      };
      const list = explicit.get(name);
      if (list) list.push(entry);
      else explicit.set(name, [entry]);
    }
    if (delegations.succinctRoles) bins.push({ parent, targets: rec.md.signed });
  }
  return { explicit, bins };
}

function index(state: RepoState): Index {
  let idx = indexCache.get(state.targets);
  if (!idx) {
    idx = buildIndex(state.targets);
    indexCache.set(state.targets, idx);
  }
  return idx;
}

/** All delegations naming `role` (more than one means the tree is ambiguous). */
export function delegationsOf(state: RepoState, role: string): DelegationEntry[] {
  if (role === 'targets') {
    const r = state.root.md.signed.roles['targets'];
    if (!r) return [];
    return [{ kind: 'role', parent: 'root', keyIDs: r.keyIDs, threshold: r.threshold, terminating: false, keys: state.root.md.signed.keys, covers: () => true }];
  }
  const idx = index(state);
  const found = [...(idx.explicit.get(role) ?? [])];
  for (const { parent, targets } of idx.bins) {
    const delegations = targets.delegations;
    const succinct = delegations?.succinctRoles;
    if (!delegations || !succinct || !succinct.isDelegatedRole(role)) continue;
    found.push({
      kind: 'bins',
      parent,
      keyIDs: succinct.keyIDs,
      threshold: succinct.threshold,
      terminating: true,
      keys: delegations.keys,
      covers: (path) => succinct.getRoleForTarget(path) === role,
    });
  }
  return found;
}

/** The single delegation of `role`, or a refusal. */
export function delegationOf(state: RepoState, role: string): DelegationEntry {
  const found = delegationsOf(state, role);
  if (found.length === 0) throw new EngineError('UNKNOWN_ROLE', `no role delegates "${role}"`, { detail: { role } });
  if (found.length > 1) {
    throw new EngineError('BAD_DELEGATION', `"${role}" is delegated by more than one role (${found.map((f) => f.parent).join(', ')})`, {
      detail: { role, parents: found.map((f) => f.parent) },
    });
  }
  return found[0] as DelegationEntry;
}

/**
 * The chain of delegations from `role` up to top-level targets (role first).
 * Bounded by `maxDepth` and cycle-checked.
 */
export function delegationChain(state: RepoState, role: string, maxDepth: number): DelegationEntry[] {
  const chain: DelegationEntry[] = [];
  const seen = new Set<string>();
  let current = role;
  while (true) {
    if (seen.has(current)) throw new EngineError('BAD_DELEGATION', `delegation cycle through "${current}"`, { detail: { role } });
    seen.add(current);
    const entry = delegationOf(state, current);
    chain.push(entry);
    if (entry.parent === 'root') return chain;
    if (chain.length > maxDepth + 1) {
      throw new EngineError('BAD_DELEGATION', `"${role}" is delegated more than ${maxDepth} levels deep`, { detail: { role, maxDepth } });
    }
    current = entry.parent;
  }
}

export function withTargets(state: RepoState, role: string, record: RoleRecord<Targets>): RepoState {
  const targets = new Map(state.targets);
  targets.set(role, record);
  let tombstones = state.tombstones;
  if (tombstones.has(role)) {
    const t = new Map(tombstones);
    t.delete(role);
    tombstones = t;
  }
  return { ...state, targets, tombstones };
}

/** Every targets-type role the snapshot must list, with its version. */
export function snapshotEntries(state: RepoState): Map<string, number> {
  const out = new Map<string, number>();
  for (const [role, rec] of state.targets) out.set(role, rec.md.signed.version);
  for (const [role, version] of state.tombstones) if (!out.has(role)) out.set(role, version);
  return out;
}

/**
 * The models' `Delegations.rolesForTarget` (delegated roles in listed order whose paths cover
 * `path`; or the one hash bin it falls in), with the memoised matcher above.
 */
function* rolesForTarget(delegations: Targets['delegations'], path: string): Generator<{ role: string; terminating: boolean }> {
  if (!delegations) return;
  if (delegations.roles) {
    for (const role of Object.values(delegations.roles)) if (covers(role, path)) yield { role: role.name, terminating: role.terminating };
  } else if (delegations.succinctRoles) {
    yield { role: delegations.succinctRoles.getRoleForTarget(path), terminating: true };
  }
}

/**
 * The role a TUF client takes `path` from: the preorder depth-first search from top-level
 * targets that tuf-js's Updater and python-tuf make (delegations in their listed order, a
 * terminating match ends the search after its subtree, at most `maxRoles` roles visited).
 * With `assume`, that role counts as listing `path` when the search reaches it — "would a
 * client see this tag if `assume` published it?". Undefined when no visited role lists it.
 */
export function resolveTarget(state: RepoState, path: string, opts: { assume?: string; maxRoles?: number } = {}): string | undefined {
  const maxRoles = opts.maxRoles ?? 32;
  const stack = ['targets'];
  const visited = new Set<string>();
  while (stack.length > 0 && visited.size < maxRoles) {
    const role = stack.pop() as string;
    if (visited.has(role)) continue;
    visited.add(role);
    if (role === opts.assume) return role;
    const signed = state.targets.get(role)?.md.signed;
    if (!signed) continue;
    if (Object.hasOwn(signed.targets, path)) return role;
    const children: string[] = [];
    for (const { role: child, terminating } of rolesForTarget(signed.delegations, path)) {
      children.push(child);
      if (terminating) {
        stack.length = 0;
        break;
      }
    }
    stack.push(...children.reverse());
  }
  return undefined;
}
