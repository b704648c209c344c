/**
 * The service's signatures: the contexts the engine verifies and signs with (the online keys of
 * a repository, the policy, `now`), and service-held roles signed at their next version. What a
 * new version holds is the engine's decision (engine/service-roles.ts); this module signs it with
 * the repository's CI keys and verifies the result like any upload.
 */
import { signingIds, verifyTargetsUpload, type RepoState } from '../engine/index.ts';
import { buildTargets, isoExpiry, signParts, type ImageTarget } from '../engine/build.ts';
import { jobsOf, serviceHeldRoles } from '../engine/jobs.ts';
import {
  adoptBins,
  binsToAdopt,
  checkBinCapacity,
  editServiceRole,
  entriesByBin,
  listTargets,
  targetEntries,
  type TargetsEdit,
} from '../engine/service-roles.ts';
import type { OnlineKeyring, OnlineSigners } from '../keys/online-keyring.ts';
import type { TufKeyJson } from '../keys/tuf-key.ts';
import type { Policy } from '../policy/policy.ts';
import type { MetadataFile } from '../storage/index.ts';
import { anchorPrefix, onlineKeyOwner } from '../engine/scope.ts';
import { ServiceError } from './errors.ts';

export interface SignedRole {
  state: RepoState;
  file: MetadataFile;
}

export class ServiceSigning {
  readonly #keyring: OnlineKeyring;
  readonly #policy: Policy;
  readonly #clock: () => number;

  constructor(deps: { keyring: OnlineKeyring; policy: Policy; clock: () => number }) {
    this.#keyring = deps.keyring;
    this.#policy = deps.policy;
    this.#clock = deps.clock;
  }

  /**
   * Whose online snapshot and timestamp keys sign for `repository`: in a namespace the
   * namespace's (one root lists them for every member; known from the trusted root, or for an
   * anchor from its name), else the repository's own. CI keys stay the repository's own.
   */
  keyOwner(repository: string, state?: RepoState): string {
    return state ? onlineKeyOwner(state.root.md.signed, repository) : (anchorPrefix(repository) ?? repository);
  }

  /** What the engine signs `repository`'s snapshot and timestamp with, in trusted state `state`. */
  online(repository: string, state: RepoState): { now: number; policy: Policy; signers: Required<OnlineSigners>; repository: string } {
    return { now: this.#clock(), policy: this.#policy, signers: this.#keyring.signers(this.keyOwner(repository, state)), repository };
  }

  /** What the engine verifies an upload to `repository` against (`state`: its trusted state, if any). */
  ctx(repository: string, state?: RepoState): { now: number; policy: Policy; onlineKeys: TufKeyJson[]; revokedKeys: TufKeyJson[]; repository: string } {
    const ring = this.#keyring;
    const owner = this.keyOwner(repository, state);
    return { now: this.#clock(), policy: this.#policy, onlineKeys: ring.acceptableKeys(owner), revokedKeys: ring.revokedKeys(owner), repository };
  }

  /** Key ids of the service's CI keys (every set): delegations to only these are service-held. */
  ciKeyIds(repository: string): Set<string> {
    return this.#keyring.ciKeyIds(repository);
  }

  /** Whether `role` of `state` is delegated to the service's CI keys only. */
  isServiceHeld(repository: string, state: RepoState, role: string): boolean {
    return serviceHeldRoles(state, this.ciKeyIds(repository)).some((h) => h.role === role);
  }

  /**
   * Re-sign service-held role `role` at its next version with `edit` applied, verify it like any
   * upload, and return the new state and file.
   */
  async signServiceRole(repository: string, state: RepoState, role: string, edit: TargetsEdit): Promise<SignedRole> {
    const held = serviceHeldRoles(state, this.ciKeyIds(repository)).find((r) => r.role === role);
    if (!held) throw new ServiceError('NOT_SERVICE_HELD', `"${role}" is not delegated to the service's CI key`, { detail: { role } });
    const signed = editServiceRole(state, role, edit, { now: this.#clock(), policy: this.#policy });
    // Under the id(s) the delegation lists: a delegation written before the key id fix lists an ECDSA key under its legacy id.
    const signers = this.#keyring.signers(repository).ci.filter((s) => signingIds(s.public, held.keyIDs).some((id) => held.keyIDs.includes(id)));
    const parts = await signParts(signed, signers, { trustedIds: held.keyIDs });
    const r = verifyTargetsUpload(state, role, parts.bytes, this.ctx(repository, state), { parsed: parts });
    return { state: r.state, file: { fileName: `${signed.version}.${role}.json`, bytes: parts.bytes } };
  }

  /**
   * Sign `tags` into service-held role `role`: into the role itself, or, when it spreads its tags
   * over hash bins (engine: binsToAdopt), into the bins it delegates to. The first time, the role is
   * given the bins delegation (the service's keys and the delegation's threshold) and the tags it
   * listed move into their bins, all in the same commit (clients see one snapshot with both).
   * Returns the signed files in the order they must be verified, with the state after each.
   */
  async signTags(repository: string, state: RepoState, role: string, tags: ReadonlyMap<string, ImageTarget>): Promise<SignedRole[]> {
    const bins = binsToAdopt(state, role, tags.keys(), this.#policy);
    if (bins === undefined) return [await this.signServiceRole(repository, state, role, listTargets(targetEntries(tags)))];
    const out: SignedRole[] = [];
    const moved: Record<string, unknown> = {};
    let current = state;
    let succinct = current.targets.get(role)?.md.signed.delegations?.succinctRoles;
    if (!succinct) {
      if (jobsOf(current.targets.get(role)?.md.signed).length > 0) {
        throw new ServiceError('BAD_REQUEST', `"${role}" has job roles delegated; it moves to hash bins once their grants have ended`, { detail: { repository, role } });
      }
      const held = serviceHeldRoles(current, this.ciKeyIds(repository)).find((r) => r.role === role);
      const listed = held?.keyIDs ?? [];
      const keys = this.#keyring.signers(repository).ci.map((s) => s.public).filter((k) => signingIds(k, listed).some((id) => listed.includes(id)));
      const built = buildTargets({ version: 1, expires: isoExpiry(0), bins: { namePrefix: role, bins, keys, threshold: held?.threshold ?? 1 } });
      const signed = await this.signServiceRole(repository, current, role, adoptBins(moved, built));
      out.push(signed);
      current = signed.state;
      succinct = current.targets.get(role)?.md.signed.delegations?.succinctRoles;
      if (!succinct) throw new ServiceError('BAD_REQUEST', `"${role}" could not be given its hash bins`, { detail: { repository, role } });
    }
    for (const [bin, list] of entriesByBin(succinct, [...targetEntries(moved), ...targetEntries(tags)])) {
      checkBinCapacity(current, bin, list.length, this.#policy);
      const signed = await this.signServiceRole(repository, current, bin, listTargets(list));
      out.push(signed);
      current = signed.state;
    }
    return out;
  }
}
