/**
 * Hash bins bound to their repository by their keys (docs/FORMAT.md §3, "Repository-bound bins").
 *
 * The snapshot pins every targets file by length and sha256 so that a registry cannot serve
 * another repository's file of the same version, signed by a key both repositories delegate to,
 * as this repository's. A delegating role D may say, signed, that the keys of its succinct hash
 * bins belong to this repository alone:
 *
 *   "x-tufoci-bins-scope": "wabbit-networks/net-monitor"
 *
 * (`tufoci publish` sets this up with a bins key it derives from the CI key for each repository,
 * keys/signer.ts `derive`). Then another repository's bins never carry a signature that D's
 * delegation accepts, and the snapshot lists D's bins by version alone, which TUF allows (the
 * length and hashes of a snapshot entry are optional): at 100,000 tags in 512 bins that is ~23 KB
 * less for every cold client.
 *
 * The claim is made by D's signer, who can sign any tag of the repository anyway. tufoci still
 * checks what it can see, at upload and again whenever it writes a snapshot:
 * - the field names this repository;
 * - D delegates to succinct hash bins;
 * - no key of the bins is used by any other delegation of the repository or by any role of its
 *   root, compared by public key (so a key listed under two ids counts once). In particular the
 *   key that signs D — the CI key, the key most likely shared with other repositories — can never
 *   sign hash-free bins.
 * A D that fails any of these at upload is refused; bins whose D fails them later (another role
 * came to delegate to the bins key) are listed with length and hashes again.
 */
import type { Targets } from '@tufjs/models';
import { EngineError } from './errors.ts';
import type { RepoState } from './state.ts';

export const BINS_SCOPE_FIELD = 'x-tufoci-bins-scope';

type KeyTable = Readonly<Record<string, { keyVal: Record<string, string> }>>;

function publicOf(keys: KeyTable, id: string): string {
  return keys[id]?.keyVal['public'] ?? `id:${id}`;
}

function claimed(signed: Targets): unknown {
  return signed.unrecognizedFields?.[BINS_SCOPE_FIELD];
}

/**
 * Public keys used by every delegation of `state` and every role of its root, except the bins
 * delegation of `except`: how many delegations list each.
 */
function keyUses(state: RepoState, except: string): Map<string, number> {
  const uses = new Map<string, number>();
  const add = (keys: KeyTable, ids: readonly string[]): void => {
    for (const p of new Set(ids.map((id) => publicOf(keys, id)))) uses.set(p, (uses.get(p) ?? 0) + 1);
  };
  const root = state.root.md.signed;
  for (const role of Object.values(root.roles)) add(root.keys as KeyTable, role.keyIDs);
  for (const [name, rec] of state.targets) {
    const d = rec.md.signed.delegations;
    if (!d) continue;
    for (const role of Object.values(d.roles ?? {})) add(d.keys as KeyTable, role.keyIDs);
    if (d.succinctRoles && name !== except) add(d.keys as KeyTable, d.succinctRoles.keyIDs);
  }
  return uses;
}

/** Why `role`'s claim that its bins are bound to `repository` does not hold in `state`; undefined when it holds. */
function problemOf(state: RepoState, role: string, signed: Targets, repository: string | undefined): string | undefined {
  const scope = claimed(signed);
  if (typeof scope !== 'string' || scope !== repository) return `${BINS_SCOPE_FIELD} must name this repository (${JSON.stringify(repository ?? null)}), not ${JSON.stringify(scope).slice(0, 140)}`;
  const d = signed.delegations;
  if (!d?.succinctRoles) return `${BINS_SCOPE_FIELD} is only for a role that delegates to succinct hash bins`;
  const uses = keyUses(state, role);
  const shared = d.succinctRoles.keyIDs.filter((id) => uses.has(publicOf(d.keys as KeyTable, id)));
  if (shared.length > 0) return `the hash bins' key ${shared[0]?.slice(0, 16)}… is also used by another role of this repository; bins bound to the repository need a key of their own (tufoci publish derives one)`;
  return undefined;
}

/** At upload of `role` (already in `state`): refuse a bins-scope claim that does not hold. */
export function checkBoundBins(state: RepoState, role: string, signed: Targets, repository: string | undefined): void {
  if (claimed(signed) === undefined) return;
  const problem = problemOf(state, role, signed, repository);
  if (problem) throw new EngineError('BAD_DELEGATION', `${role}: ${problem}`, { detail: { role, field: BINS_SCOPE_FIELD } });
}

/** The hash bins of `state` whose snapshot entry may be their version alone. */
export function boundBins(state: RepoState, repository: string | undefined): (role: string) => boolean {
  const bound: Array<NonNullable<NonNullable<Targets['delegations']>['succinctRoles']>> = [];
  for (const [name, rec] of state.targets) {
    const succinct = rec.md.signed.delegations?.succinctRoles;
    if (succinct && claimed(rec.md.signed) !== undefined && problemOf(state, name, rec.md.signed, repository) === undefined) bound.push(succinct);
  }
  return bound.length === 0 ? () => false : (role) => bound.some((s) => s.isDelegatedRole(role));
}
