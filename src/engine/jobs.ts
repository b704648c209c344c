/**
 * Service-held delegations and job roles (job-scoped CI keys).
 *
 * A *service-held* role is a delegated role whose keys are all online CI keys
 * of the service (the owner delegated it once, offline, e.g. `ci` for `v*`).
 * The service signs it: it adds a terminating delegation to a *job role* for
 * each redeemed grant, folds a job's targets into it when the grant ends, and
 * re-signs it before it expires.
 *
 * A job role's name carries the end of its grant: `job-<unix seconds>-<8 hex>`.
 * The metadata itself is the only record the fold needs, so nothing about a
 * job lives only in the coordinator (Redis may lose it).
 */
import type { Targets } from '@tufjs/models';
import { signedToJSON } from './models.ts';
import type { RepoState } from './state.ts';
import { BINS_FIELD } from './build.ts';

const JOB_ROLE = /^job-(\d{10})-([0-9a-f]{8})$/;

export function jobRoleName(endsAtMs: number, random: string): string {
  if (!/^[0-9a-f]{8}$/.test(random)) throw new RangeError('job role suffix must be 8 hex digits');
  return `job-${String(Math.ceil(endsAtMs / 1000)).padStart(10, '0')}-${random}`;
}

/** When the grant behind a job role ends (epoch ms), or undefined for other names. */
export function jobEndsAt(role: string): number | undefined {
  const m = JOB_ROLE.exec(role);
  return m ? Number(m[1]) * 1000 : undefined;
}

/** Delegated roles of `state` whose every key is one of `serviceKeyIds` (and whose threshold those keys meet). */
export function serviceHeldRoles(state: RepoState, serviceKeyIds: ReadonlySet<string>): Array<{ role: string; keyIDs: string[]; threshold: number }> {
  const out: Array<{ role: string; keyIDs: string[]; threshold: number }> = [];
  for (const [parent, rec] of state.targets) {
    const roles = rec.md.signed.delegations?.roles ?? {};
    for (const [name, role] of Object.entries(roles)) {
      if (jobEndsAt(name) !== undefined) continue;
      if (role.keyIDs.length === 0 || !role.keyIDs.every((k) => serviceKeyIds.has(k)) || role.threshold > role.keyIDs.length) continue;
      // The role is delegated by `parent`; only one delegator per name is valid (the engine refuses ambiguity).
      if (out.some((o) => o.role === name)) continue;
      void parent;
      out.push({ role: name, keyIDs: [...role.keyIDs], threshold: role.threshold });
    }
  }
  // The hash bins a held role spreads its tags over (with the service's keys) are held too.
  for (const [parent, rec] of state.targets) {
    const succinct = rec.md.signed.delegations?.succinctRoles;
    if (!succinct || !out.some((o) => o.role === parent)) continue;
    if (succinct.keyIDs.length === 0 || !succinct.keyIDs.every((k) => serviceKeyIds.has(k))) continue;
    for (const bin of succinct.getRoles()) out.push({ role: bin, keyIDs: [...succinct.keyIDs], threshold: succinct.threshold });
  }
  return out;
}

/** The hash bins a service-held role asks to spread its tags over (`x-tufoci-bins` on its delegation), if any. */
export function requestedBins(state: RepoState, role: string): number | undefined {
  for (const rec of state.targets.values()) {
    const bins = rec.md.signed.delegations?.roles?.[role]?.unrecognizedFields?.[BINS_FIELD];
    if (typeof bins === 'number') return bins;
  }
  return undefined;
}

/**
 * The hash bins a service-held role spreads its tags over: the count its delegation asks for, or
 * the bins it already delegates to (set up by the service when the role outgrew one file).
 */
export function heldBins(state: RepoState, role: string): number | undefined {
  return requestedBins(state, role) ?? state.targets.get(role)?.md.signed.delegations?.succinctRoles?.numberOfBins;
}

/** Job roles `role` delegates to, with the end of their grants. */
export function jobsOf(targets: Targets | undefined): Array<{ role: string; endsAt: number }> {
  const out: Array<{ role: string; endsAt: number }> = [];
  for (const name of Object.keys(targets?.delegations?.roles ?? {})) {
    const endsAt = jobEndsAt(name);
    if (endsAt !== undefined) out.push({ role: name, endsAt });
  }
  return out;
}

/**
 * Fold ended jobs into a service-held role's JSON: each ended job's targets
 * are copied into the role (a job's entry replaces an older one for the same
 * tag) and its delegation is removed. Returns the folded job names.
 */
export function foldJobs(json: Record<string, unknown>, state: RepoState, ended: readonly string[]): string[] {
  const targets = ((json['targets'] ?? {}) as Record<string, unknown>);
  const folded: string[] = [];
  for (const job of ended) {
    const rec = state.targets.get(job);
    if (rec) {
      const jobTargets = (signedToJSON(rec.md.signed)['targets'] ?? {}) as Record<string, unknown>;
      for (const [path, entry] of Object.entries(jobTargets)) targets[path] = entry;
    }
    folded.push(job);
  }
  json['targets'] = targets;
  const delegations = json['delegations'] as { keys: Record<string, unknown>; roles?: Array<Record<string, unknown>> } | undefined;
  if (delegations?.roles) {
    const kept = delegations.roles.filter((r) => !ended.includes(r['name'] as string));
    if (kept.length === 0) delete json['delegations'];
    else {
      const used = new Set(kept.flatMap((r) => r['keyids'] as string[]));
      json['delegations'] = { keys: Object.fromEntries(Object.entries(delegations.keys).filter(([k]) => used.has(k))), roles: kept };
    }
  }
  return folded;
}
