/**
 * The TUF write rules of service-held roles (engine/jobs.ts): what the service may sign into
 * them, and the next version of one. Pure: the service passes the state, the policy, its CI key
 * ids and `now`; signing (async signers) and committing stay with it.
 *
 * - `editServiceRole` builds the next version of a service-held role with an edit applied.
 * - `tagShadowing` is the client's search order (`resolveTarget`) applied to tags a role is about
 *   to list: a tag a client would take from another role, or never reach, is refused.
 * - `checkHeldRoleCapacity`, `binsToAdopt`, `checkBinCapacity`: the target-count rules (a role
 *   with job roles cannot move to hash bins; one without moves to bins when it outgrows a file).
 * - `parentShadowedTags`: a job re-listing a tag its service-held parent lists makes the parent
 *   drop that entry (a role's own targets win over its delegations).
 * - `refreshPlan` / `nextRefreshAt`: which online roles are due for re-signing, and when next.
 */
import { memberOf, namespaceOf } from './scope.ts';
import type { Targets } from '@tufjs/models';
import type { TufKeyJson } from '../keys/tuf-key.ts';
import type { Policy } from '../policy/policy.ts';
import { binsFor, buildTargets, isoExpiry, putDelegation, targetFile, type ImageTarget } from './build.ts';
import { EngineError } from './errors.ts';
import { foldJobs, heldBins, jobEndsAt, jobsOf, serviceHeldRoles } from './jobs.ts';
import { signedFromJSON, signedToJSON } from './models.ts';
import { parseExpires } from './parse.ts';
import { currentVersion, delegationOf, resolveTarget, type RepoState } from './state.ts';

const MINUTE = 60_000;

type SuccinctRoles = NonNullable<NonNullable<Targets['delegations']>['succinctRoles']>;

/** A target entry as JSON, by tag. */
export type TargetEntry = readonly [tag: string, entry: unknown];

/** An edit of a targets role's signed JSON. It replaces target entries and delegations rather than changing nested objects in place. */
export type TargetsEdit = (json: Record<string, unknown>) => void;

/**
 * The next version of service-held role `role` with `edit` applied: version one above the
 * current one, expiring the policy's default online lifetime after `now`.
 */
export function editServiceRole(state: RepoState, role: string, edit: TargetsEdit, opts: { now: number; policy: Policy }): Targets {
  const expires = isoExpiry(opts.now + opts.policy.roles.snapshot.expiresDefaultMinutes * MINUTE);
  const rec = state.targets.get(role);
  // signedToJSON builds fresh top-level objects; edits replace target entries and delegations
  // rather than changing nested objects in place (foldJobs, putDelegation, tag edits), so only
  // the delegations (which putDelegation reads from) are copied, not every target entry.
  const json = signedToJSON(rec?.md.signed ?? buildTargets({ version: 1, expires }));
  if (json['delegations'] !== undefined) json['delegations'] = structuredClone(json['delegations']);
  edit(json);
  json['version'] = currentVersion(state, role) + 1;
  json['expires'] = expires;
  return signedFromJSON('targets', json) as Targets;
}

/** Target entries as JSON: from tags to sign, or from a role's JSON `targets`. */
export function targetEntries(tags: ReadonlyMap<string, ImageTarget> | Readonly<Record<string, unknown>>): TargetEntry[] {
  return tags instanceof Map ? [...tags].map(([t, x]) => [t, targetFile(t, x).toJSON()] as const) : Object.entries(tags);
}

/** Edit: list `entries` (replacing entries of the same tags). */
export function listTargets(entries: Iterable<TargetEntry>): TargetsEdit {
  return (json) => {
    const listed = json['targets'] as Record<string, unknown>;
    for (const [tag, entry] of entries) listed[tag] = entry;
  };
}

/** Edit: drop the entries of `tags`. */
export function dropTargets(tags: readonly string[]): TargetsEdit {
  return (json) => {
    const listed = json['targets'] as Record<string, unknown>;
    for (const tag of tags) delete listed[tag];
  };
}

/** Edit: fold the jobs of `ended` (jobs.ts foldJobs) and delegate to a new job role, not terminating (a tag this job does not list falls through to its siblings). */
export function delegateJob(state: RepoState, ended: readonly string[], job: { jobRole: string; key: TufKeyJson; paths: readonly string[] }): TargetsEdit {
  return (json) => {
    foldJobs(json, state, ended);
    putDelegation(json, { name: job.jobRole, keys: [job.key], threshold: 1, paths: [...job.paths], terminating: false });
  };
}

/** Jobs `role` delegates to whose grants have ended at `now`. */
export function endedJobs(state: RepoState, role: string, now: number): string[] {
  return jobsOf(state.targets.get(role)?.md.signed).filter((j) => j.endsAt <= now).map((j) => j.role);
}

/**
 * The first of `tags` a TUF client would not take from `role`: one an earlier role lists
 * (`listedBy`), or one a terminating delegation keeps it from reaching (no `listedBy`).
 */
export function tagShadowing(state: RepoState, role: string, tags: Iterable<string>): { tag: string; listedBy?: string } | undefined {
  for (const tag of tags) {
    const seen = resolveTarget(state, tag, { assume: role });
    if (seen !== role) return seen === undefined ? { tag } : { tag, listedBy: seen };
  }
  return undefined;
}

/**
 * A role that delegates to job roles and has no hash bins cannot grow beyond the policy's target
 * count (bins cannot hold job roles): POLICY_VIOLATION when `tags` (with `pending`, tags already
 * on their way in the same commit) would take it there.
 */
export function checkHeldRoleCapacity(state: RepoState, role: string, tags: readonly string[], pending: ReadonlySet<string> | ReadonlyMap<string, unknown> | undefined, policy: Policy): void {
  const listed = state.targets.get(role)?.md.signed.targets ?? {};
  const fresh = tags.filter((t) => !Object.hasOwn(listed, t) && !pending?.has(t)).length;
  const total = Object.keys(listed).length + (pending?.size ?? 0) + fresh;
  const limit = policy.limits.maxTargetsPerRole;
  if (heldBins(state, role) === undefined && jobsOf(state.targets.get(role)?.md.signed).length > 0 && total > limit) {
    throw new EngineError(
      'POLICY_VIOLATION',
      `${role} would list ${total} targets, above the limit of ${limit}, and it delegates to job roles, which hash bins cannot hold; once their grants have ended the service moves its tags into hash bins and takes more (no grants for ${role} meanwhile)`,
      { detail: { role, count: total, limit } },
    );
  }
}

/**
 * The hash bins `role` spreads its tags over once `tags` are added: those it has or asks for, or
 * — when it would outgrow one file and delegates to no job roles — a count the service sets up.
 * Undefined: the tags go into the role itself.
 */
export function binsToAdopt(state: RepoState, role: string, tags: Iterable<string>, policy: Policy): number | undefined {
  const bins = heldBins(state, role);
  if (bins !== undefined) return bins;
  const rec = state.targets.get(role)?.md.signed;
  const total = new Set([...Object.keys(rec?.targets ?? {}), ...tags]).size;
  if (total > policy.limits.maxTargetsPerRole && jobsOf(rec).length === 0) return Math.max(2, binsFor(4 * total, policy.bins.max));
  return undefined;
}

/** Edit: move a role's targets out (into `moved`) and give it the bins delegation of `bins`. */
export function adoptBins(moved: Record<string, unknown>, bins: Targets): TargetsEdit {
  return (json) => {
    Object.assign(moved, json['targets']);
    json['targets'] = {};
    json['delegations'] = (bins.toJSON() as Record<string, unknown>)['delegations'];
  };
}

/** Entries grouped by the hash bin each belongs to, in first-seen order. */
export function entriesByBin(succinct: SuccinctRoles, entries: Iterable<TargetEntry>): Map<string, TargetEntry[]> {
  const byBin = new Map<string, TargetEntry[]>();
  for (const entry of entries) {
    const bin = succinct.getRoleForTarget(entry[0]);
    const list = byBin.get(bin) ?? [];
    list.push(entry);
    byBin.set(bin, list);
  }
  return byBin;
}

/** POLICY_VIOLATION when adding `adding` entries would take hash bin `bin` above the policy's target count. */
export function checkBinCapacity(state: RepoState, bin: string, adding: number, policy: Policy): void {
  const total = Object.keys(state.targets.get(bin)?.md.signed.targets ?? {}).length + adding;
  const limit = policy.limits.maxTargetsPerRole;
  if (total > limit) {
    throw new EngineError('POLICY_VIOLATION', `${bin} would list ${total} targets, above the limit of ${limit}`, { detail: { role: bin, count: total, limit } });
  }
}

/**
 * After job role `role` was accepted into `state`: the tags it lists that its service-held parent
 * lists too. The parent's entry would win (clients look at a role before its delegations), so the
 * parent drops them in the same commit. Undefined when there is nothing to drop.
 */
export function parentShadowedTags(state: RepoState, role: string, ciKeyIds: ReadonlySet<string>): { parent: string; tags: string[] } | undefined {
  if (jobEndsAt(role) === undefined) return undefined;
  const parent = delegationOf(state, role).parent;
  const listed = Object.keys(state.targets.get(role)?.md.signed.targets ?? {});
  const tags = listed.filter((tag) => state.targets.get(parent)?.md.signed.targets[tag] !== undefined);
  if (tags.length === 0 || !serviceHeldRoles(state, ciKeyIds).some((h) => h.role === parent)) return undefined;
  return { parent, tags };
}

/** Service-held roles of `state` to re-sign at `now`: ended jobs to fold, or near expiry (the snapshot margin). */
export function dueServiceRoles(state: RepoState, ciKeyIds: ReadonlySet<string>, policy: Policy, now: number): Array<{ role: string; ended: string[] }> {
  const margin = policy.refresh.snapshotMarginMinutes * MINUTE;
  const out: Array<{ role: string; ended: string[] }> = [];
  for (const { role } of serviceHeldRoles(state, ciKeyIds)) {
    const rec = state.targets.get(role);
    if (!rec) continue; // never signed yet: nothing to keep fresh
    const ended = endedJobs(state, role, now);
    if (ended.length || parseExpires(rec.md.signed.expires) - margin <= now) out.push({ role, ended });
  }
  return out;
}

/** What a refresh at `now` re-signs: service-held roles, the snapshot (also whenever a service-held role is), the timestamp. */
export function refreshPlan(
  state: RepoState,
  ciKeyIds: ReadonlySet<string>,
  policy: Policy,
  now: number,
): { services: Array<{ role: string; ended: string[] }>; snapshot: boolean; timestamp: boolean } {
  const { refresh } = policy;
  const services = dueServiceRoles(state, ciKeyIds, policy, now);
  const snapshot = services.length > 0 || !state.snapshot || parseExpires(state.snapshot.md.signed.expires) - refresh.snapshotMarginMinutes * MINUTE <= now;
  const timestamp = !state.timestamp || parseExpires(state.timestamp.md.signed.expires) - refresh.timestampMarginMinutes * MINUTE <= now;
  return { services, snapshot, timestamp };
}

/** When the online roles of `state` must be re-signed next (policy margins before expiry; service-held roles also when a job's grant ends). */
export function nextRefreshAt(state: RepoState, ciKeyIds: ReadonlySet<string>, policy: Policy): number {
  const { refresh } = policy;
  const ts = state.timestamp ? parseExpires(state.timestamp.md.signed.expires) - refresh.timestampMarginMinutes * MINUTE : 0;
  const ss = state.snapshot ? parseExpires(state.snapshot.md.signed.expires) - refresh.snapshotMarginMinutes * MINUTE : 0;
  let next = Math.min(ts, ss);
  for (const { role } of serviceHeldRoles(state, ciKeyIds)) {
    const rec = state.targets.get(role);
    if (!rec) continue;
    next = Math.min(next, parseExpires(rec.md.signed.expires) - refresh.snapshotMarginMinutes * MINUTE);
    for (const job of jobsOf(rec.md.signed)) next = Math.min(next, job.endsAt);
  }
  return next;
}

/**
 * A namespace member's state under its namespace's newer root `root` (verified at the anchor), or
 * undefined when `repository` is no member of that namespace or is not behind it (engine/scope.ts).
 * Its snapshot and timestamp are then signed again with the keys `root` names.
 */
export function withNamespaceRoot(state: RepoState, repository: string, root: RepoState['root']): RepoState | undefined {
  const ns = memberOf(state.root.md.signed, repository);
  if (ns === undefined || namespaceOf(root.md.signed, repository) !== ns || state.root.md.signed.version >= root.md.signed.version) return undefined;
  return { ...state, root };
}
