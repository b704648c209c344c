/**
 * Grants: job-scoped CI keys. A grant is a one-time token whose SHA-256 is kept in the
 * coordinator (atomic take); redeeming it changes nothing in TUF. The job's role
 * (`job-<end>-<hex>`, limited to the grant's paths and time) is delegated from the service-held
 * role in the same commit that accepts the job's first upload (writes.ts), so a delegation never
 * names a role without metadata.
 */
import { createHash, randomBytes } from 'node:crypto';
import { heldBins, jobRoleName } from '../engine/jobs.ts';
import { computeKeyId, parsePublicKey, type TufKeyJson } from '../keys/tuf-key.ts';
import type { Policy } from '../policy/policy.ts';
import type { Coordinator, JsonObject } from '../coord/index.ts';
import type { GrantInfo, JobInfo } from '../api/types.ts';
import { targetPrefix } from '../engine/scope.ts';
import { ServiceError } from './errors.ts';
import type { HeadCache } from './head-cache.ts';
import type { Logger } from './logger.ts';
import type { ServiceSigning } from './service-signing.ts';

const MINUTE = 60_000;

/** Grant tokens start with this, so the API tells them from configured bearer tokens. */
export const GRANT_PREFIX = 'tufoci_grant_';

function grantKey(kind: 'grant' | 'job', token: string): string {
  return `${kind}:${createHash('sha256').update(token, 'utf8').digest('hex')}`;
}

/** A redeemed grant, as the coordinator keeps it until the grant ends. */
export interface JobGrant {
  repository: string;
  role: string;
  jobRole: string;
  paths: string[];
  endsAt: number;
  key: TufKeyJson;
}

export interface GrantsDeps {
  coord: Coordinator;
  policy: Policy;
  clock: () => number;
  logger: Logger;
  heads: HeadCache;
  signing: ServiceSigning;
}

export class Grants {
  readonly #d: GrantsDeps;

  constructor(deps: GrantsDeps) {
    this.#d = deps;
  }

  /**
   * Issue a one-time grant: whoever presents the token (a CI job) may, until
   * the grant ends, publish `paths` under service-held role `role` with a key
   * of its own. Only a SHA-256 of the token is stored, in the coordinator.
   */
  async createGrant(repository: string, opts: { role?: string; paths: string[]; ttlMs: number }): Promise<GrantInfo> {
    const role = opts.role ?? 'ci';
    const maxTtl = (this.#d.policy.roles.ci.expiresMaxMinutes - 5) * MINUTE;
    if (!Number.isSafeInteger(opts.ttlMs) || opts.ttlMs < MINUTE || opts.ttlMs > maxTtl) {
      throw new ServiceError('BAD_REQUEST', `a grant lasts from 1 minute to ${maxTtl / MINUTE} minutes (the ci policy's ${this.#d.policy.roles.ci.expiresMaxMinutes} minutes less 5)`, {
        detail: { ttlMs: opts.ttlMs, maxTtlMs: maxTtl },
      });
    }
    if (!Array.isArray(opts.paths) || opts.paths.length === 0 || opts.paths.length > 16 || !opts.paths.every((p) => typeof p === 'string' && /^[\x21-\x7e]{1,128}$/.test(p))) {
      throw new ServiceError('BAD_REQUEST', 'paths: 1 to 16 tag patterns of 1-128 printable characters', { detail: { paths: opts.paths } });
    }
    const head = await this.#d.heads.head(repository);
    if (!this.#d.signing.isServiceHeld(repository, head.state, role)) {
      throw new ServiceError('NOT_SERVICE_HELD', `${repository} does not delegate "${role}" to the service's CI key; the owner runs: tufoci delegate add ${repository} ${role} --online --paths 'v*' --targets-key …`, {
        detail: { repository, role },
      });
    }
    if (heldBins(head.state, role) !== undefined) {
      throw new ServiceError('BAD_REQUEST', `"${role}" of ${repository} spreads its tags over hash bins, which cannot delegate to job roles; grants need a role without bins: tufoci delegate add ${repository} ${role} --online --expected-tags 0 --targets-key …`, {
        detail: { repository, role },
      });
    }
    const token = `${GRANT_PREFIX}${randomBytes(32).toString('base64url')}`;
    const endsAt = this.#d.clock() + opts.ttlMs;
    // In a namespace, target paths name their repository (engine/scope.ts): the grant's patterns are qualified.
    const prefix = targetPrefix(head.state.root.md.signed, repository);
    const grant = { repository, role, paths: opts.paths.map((p) => (prefix && !p.startsWith(prefix) ? `${prefix}${p}` : p)), endsAt };
    if (!(await this.#d.coord.putGrant(grantKey('grant', token), grant, opts.ttlMs))) {
      throw new ServiceError('BAD_REQUEST', 'grant id collision; retry', { detail: {} });
    }
    this.#d.logger.info({ repository, role, paths: grant.paths, endsAt: new Date(endsAt).toISOString() }, 'grant issued');
    return { token, ...grant, expires: new Date(endsAt).toISOString() };
  }

  /**
   * Redeem a grant (once) for the job's public key. Nothing changes in TUF yet:
   * the job role (`job-<end>-<hex>`, limited to the grant's paths and time) is
   * delegated from the service-held role in the same commit that accepts the
   * job's first upload, so a delegation never names a role without metadata.
   * The job then uploads `1.<jobRole>.json` with the grant token as bearer.
   */
  async redeemGrant(repository: string, token: string, key: TufKeyJson): Promise<JobInfo> {
    parsePublicKey(computeKeyId(key), key); // refuses malformed keys
    if (!this.#d.policy.keyTypes.some((t) => t.keytype === key.keytype && t.scheme === key.scheme)) {
      throw new ServiceError('BAD_REQUEST', `key type ${key.keytype}/${key.scheme} is not allowed by the policy`, { detail: { keytype: key.keytype, scheme: key.scheme } });
    }
    const raw = await this.#d.coord.takeGrant(grantKey('grant', token));
    if (!raw) {
      if (await this.#d.coord.peekGrant(grantKey('job', token))) throw new ServiceError('GRANT_USED', 'this grant was already used; ask for a new one', { detail: { repository } });
      throw new ServiceError('GRANT_INVALID', 'unknown or expired grant', { detail: { repository } });
    }
    const grant = raw as unknown as { repository: string; role: string; paths: string[]; endsAt: number };
    if (grant.repository !== repository) {
      throw new ServiceError('GRANT_SCOPE', `this grant is for ${grant.repository}, not ${repository}; it is now used up`, { detail: { repository, granted: grant.repository } });
    }
    const left = grant.endsAt - this.#d.clock();
    if (left <= 0) throw new ServiceError('GRANT_EXPIRED', `the grant ended at ${new Date(grant.endsAt).toISOString()}`, { detail: { repository } });
    const jobRole = jobRoleName(grant.endsAt, randomBytes(4).toString('hex'));
    const job: JobGrant = { repository, role: grant.role, jobRole, paths: grant.paths, endsAt: grant.endsAt, key };
    try {
      await this.#d.coord.putGrant(grantKey('job', token), job as unknown as JsonObject, left);
    } catch (e) {
      await this.#d.coord.putGrant(grantKey('grant', token), raw, left).catch(() => undefined); // not burnt by a coordinator hiccup
      throw e;
    }
    this.#d.logger.info({ repository, role: grant.role, jobRole, keyid: computeKeyId(key) }, 'grant redeemed');
    return { repository, role: grant.role, jobRole, paths: grant.paths, endsAt: grant.endsAt, expires: new Date(grant.endsAt).toISOString(), keyid: computeKeyId(key) };
  }

  /** The job a redeemed grant token stands for, while its grant lasts. */
  async jobFor(token: string): Promise<JobGrant | undefined> {
    const job = await this.#d.coord.peekGrant(grantKey('job', token));
    if (!job) return undefined;
    const j = job as unknown as JobGrant;
    return j.endsAt > this.#d.clock() ? j : undefined;
  }

}
