/**
 * Refresh scheduling: online roles (timestamp, snapshot, service-held roles) are re-signed on
 * the policy's margins before they expire, and ended jobs are folded into their service-held
 * role. The coordinator keeps the schedule; one tick claims the repositories that are due,
 * exactly once across instances. What is due, and when next, is the engine's decision
 * (engine/service-roles.ts refreshPlan, nextRefreshAt).
 */
import { produceSnapshotAndTimestamp, produceTimestamp, type RepoState } from '../engine/index.ts';
import { foldJobs } from '../engine/jobs.ts';
import { memberOf, namespaceAnchor } from '../engine/scope.ts';
import { nextRefreshAt, refreshPlan, withNamespaceRoot } from '../engine/service-roles.ts';
import type { Policy } from '../policy/policy.ts';
import type { MetadataFile } from '../storage/index.ts';
import type { Coordinator } from '../coord/index.ts';
import type { Committer } from './commit.ts';
import type { HeadCache } from './head-cache.ts';
import type { Logger } from './logger.ts';
import type { ServiceSigning } from './service-signing.ts';

export interface RefreshDeps {
  coord: Coordinator;
  policy: Policy;
  clock: () => number;
  logger: Logger;
  heads: HeadCache;
  committer: Committer;
  signing: ServiceSigning;
  /** Lease of a claimed refresh (twice the lock lifetime). */
  leaseMs: number;
}

export class RefreshScheduler {
  readonly #d: RefreshDeps;

  constructor(deps: RefreshDeps) {
    this.#d = deps;
  }

  /** When the online roles of `state` must be re-signed next (policy margins before expiry). */
  nextRefreshAt(repository: string, state: RepoState): number {
    return nextRefreshAt(state, this.#d.signing.ciKeyIds(repository), this.#d.policy);
  }

  /**
   * Re-sign the online roles of one repository if they are within their refresh margin
   * (snapshot too when it is). Returns the next refresh time.
   */
  async refresh(repository: string): Promise<number> {
    const { heads, committer, signing, policy, logger } = this.#d;
    return committer.withLock(repository, async (lock) => {
      const head = await heads.fresh(repository);
      if (!head) return Number.POSITIVE_INFINITY;
      const plan = refreshPlan(head.state, signing.ciKeyIds(repository), policy, this.#d.clock());
      // A member still under an older root of its namespace (a sync that did not reach it) takes
      // the anchor's now: its snapshot and timestamp are re-signed with the keys that root names.
      const ns = memberOf(head.state.root.md.signed, repository);
      const anchorRoot = ns === undefined ? undefined : (await heads.fresh(namespaceAnchor(ns)))?.state.root;
      const caughtUp = anchorRoot === undefined ? undefined : withNamespaceRoot(head.state, repository, anchorRoot);
      const behind = caughtUp !== undefined;
      if (!plan.snapshot && !plan.timestamp && !behind) return this.nextRefreshAt(repository, head.state);
      // Service-held roles first (fold ended jobs, renew), then snapshot and timestamp over them.
      let state = caughtUp ?? head.state;
      const roleFiles: MetadataFile[] = [];
      for (const { role, ended } of plan.services) {
        const base = state;
        const signed = await signing.signServiceRole(repository, base, role, (json) => void foldJobs(json, base, ended));
        state = signed.state;
        roleFiles.push(signed.file);
        if (ended.length) logger.info({ repository, role, folded: ended }, 'ended jobs folded into their service-held role');
      }
      const online = plan.snapshot || behind ? await produceSnapshotAndTimestamp(state, signing.online(repository, state)) : await produceTimestamp(state, signing.online(repository, state));
      const next = await committer.commit(repository, lock, roleFiles, online);
      logger.info({ repository, snapshot: plan.snapshot, roles: roleFiles.map((f) => f.fileName), timestampVersion: next.timestampVersion }, 'online roles re-signed');
      return this.nextRefreshAt(repository, next.state);
    });
  }

  /** One scheduler tick: claim due repositories (exactly once across instances) and refresh them. */
  async refreshDue(limit = 16): Promise<number> {
    const { coord, logger } = this.#d;
    const claims = await coord.claimDueRefreshes(this.#d.clock(), { limit, leaseMs: this.#d.leaseMs });
    let done = 0;
    for (const claim of claims) {
      const { repository } = claim;
      try {
        const next = await this.refresh(repository);
        await coord.completeRefresh(claim, next);
        done++;
      } catch (e) {
        logger.error({ repository, err: e }, 'refresh failed; it will be retried when its lease ends');
      }
    }
    return done;
  }

  /** Put a repository on the refresh schedule (used at start-up for every stored repository). */
  async track(repository: string): Promise<void> {
    const head = await this.#d.heads.head(repository);
    await this.#d.coord.scheduleRefresh(repository, this.nextRefreshAt(repository, head.state));
  }
}
