/**
 * The write path: create a repository, upload a role, publish service-signed tags.
 *
 * Each write reads top-down: parse and validate the request → queue it for the repository
 * (group commit, util/keyed-batch-queue.ts) → under the lock, the engine decides what it does to
 * the batch's draft of the fresh head (a refusal answers that write alone) → the batch commits
 * role files, one snapshot and one timestamp (commit.ts) → every write of the batch is answered.
 *
 * - Identical retries are answered with the same result (`unchanged`); a different file for a
 *   version already taken is VERSION_TAKEN.
 * - Steps never change the draft (they return the new state), which is what makes "refused
 *   alone" exact.
 * - Service-held roles that gained tags are signed once per batch, over everything else in it.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import {
  currentVersion,
  delegationChain,
  delegationsOf,
  produceSnapshotAndTimestamp,
  verifyNewMember,
  verifyNewRepository,
  verifyRootUpload,
  verifyTargetsUpload,
  type RepoState,
  type VerificationResult,
} from '../engine/index.ts';
import { buildTargets, isoExpiry, type ImageTarget } from '../engine/build.ts';
import { parseMetadataFileName } from '../engine/names.ts';
import { MetadataPrecheck, limitsFromPolicy, precheckMetadata } from '../engine/parse.ts';
import { checkHeldRoleCapacity, delegateJob, dropTargets, endedJobs, parentShadowedTags, tagShadowing, withNamespaceRoot } from '../engine/service-roles.ts';
import { checkTargetEntries } from '../engine/upload.ts';
import { SUCCESSOR_FIELD, anchorPrefix, memberOf, namespaceAnchor, namespaceOf, successorOf, targetPrefix, type Successor } from '../engine/scope.ts';
import { createHash } from 'node:crypto';
import type { Policy } from '../policy/policy.ts';
import type { MetadataFile, MetadataStore } from '../storage/index.ts';
import { CoordError } from '../coord/index.ts';
import { KeyedBatchQueue, type BatchEntry } from '../util/keyed-batch-queue.ts';
import type { TagsResult, UploadResult } from '../api/types.ts';
import type { Committer } from './commit.ts';
import { ServiceError } from './errors.ts';
import type { JobGrant } from './grants.ts';
import type { Head, HeadCache } from './head-cache.ts';
import type { Logger } from './logger.ts';
import type { ServiceSigning } from './service-signing.ts';

/** A batch of writes being applied under the lock. */
interface Draft {
  /** The head as the store had it when the batch took the lock. */
  readonly head: Head;
  /** That head with every write before this one in the batch applied. */
  state: RepoState;
  /** Role files the batch writes, by file name. */
  readonly files: Map<string, Uint8Array>;
  /** Tags for service-held roles, signed once per role when the batch commits. */
  readonly tags: Map<string, Map<string, ImageTarget>>;
}

/** What one write does to a draft. A step never changes the draft itself; a refusal throws. */
interface StepOutcome<T> {
  state: RepoState;
  files?: MetadataFile[];
  tags?: { role: string; tags: Readonly<Record<string, ImageTarget>> };
  /** The answer, from the head the batch committed. */
  result: (head: Head) => T;
}

type Step = (draft: Readonly<Draft>) => Promise<StepOutcome<unknown>>;

/** Writes committed together at most (bounds the time a batch holds the lock). */
const MAX_BATCH = 64;
/** Pause of a drainer that released the lock to a waiter, before it competes again. */
const HAND_OFF_MS = 15;
/** Writes waiting per repository at most; more are answered BUSY at once (bounds memory). */
const MAX_QUEUED = 1024;
/** Uploads from this size on are prechecked in slices (#precheck); smaller ones cost under a slice anyway. */
const PRECHECK_BYTES = 64 * 1024;

export interface WritesDeps {
  metadata: MetadataStore;
  policy: Policy;
  logger: Logger;
  heads: HeadCache;
  committer: Committer;
  signing: ServiceSigning;
}

export class Writes {
  readonly #d: WritesDeps;
  readonly #queue: KeyedBatchQueue<string, Step, unknown>;

  constructor(deps: WritesDeps) {
    this.#d = deps;
    this.#queue = new KeyedBatchQueue<string, Step, unknown>({
      commit: (repository, batch) => this.#commitBatch(repository, batch),
      maxBatch: MAX_BATCH,
      maxQueued: MAX_QUEUED,
      full: (repository, waiting) => new CoordError('BUSY', `${repository} has ${waiting} writes waiting; retry`, { detail: { repository, retryAfterSeconds: 1 } }),
      // Another acquirer (usually another instance's drainer) was waiting when this one released:
      // let it take the lock before this instance's next batch, instead of re-acquiring at once
      // and starving it into 409 BUSY. Writes keep queueing meanwhile.
      beforeBatch: async (repository) => {
        if (deps.committer.takeHandOff(repository)) await sleep(HAND_OFF_MS);
      },
    });
  }

  /** Resolves once every batch being drained now has been committed. */
  idle(): Promise<void> {
    return this.#queue.idle();
  }

  /** Create a repository from owner-signed 1.root.json and 1.targets.json. */
  async create(repository: string, rootBytes: Uint8Array, targetsBytes: Uint8Array): Promise<UploadResult> {
    this.#d.metadata.metadataRepository(repository); // validates the name before anything else
    await this.#precheck('root', rootBytes, 'delegated');
    await this.#precheck('targets', targetsBytes, 'delegated');
    const { heads, committer, signing } = this.#d;
    return committer.withLock(repository, async (lock) => {
      const existing = await heads.fresh(repository);
      if (existing) {
        const same =
          bytesEqual(existing.files.get('1.root.json') ?? (await heads.readOptional(repository, '1.root.json')), rootBytes) &&
          bytesEqual(await heads.readOptional(repository, '1.targets.json'), targetsBytes);
        if (same) return result(repository, 'root', 1, existing, true);
        throw new ServiceError('REPO_EXISTS', `${repository} already exists`, { detail: { repository } });
      }
      const state = verifyNewRepository(rootBytes, targetsBytes, signing.ctx(repository));
      const ns = namespaceOf(state.root.md.signed, repository);
      if (ns !== undefined && anchorPrefix(repository) !== ns) {
        throw new ServiceError('NAMESPACE_ROOT', `a root for namespace ${ns} is created at its anchor ${namespaceAnchor(ns)} (tufoci init ${ns}); ${repository} joins the namespace with its targets alone (tufoci delegate add ${repository} …)`, {
          detail: { repository, namespace: ns },
        });
      }
      if (ns === undefined && anchorPrefix(repository) !== undefined) {
        throw new ServiceError('NAMESPACE_ROOT', `${repository} is the anchor of namespace ${anchorPrefix(repository)}: its root must vouch for "${anchorPrefix(repository)}"`, {
          detail: { repository, namespace: anchorPrefix(repository) },
        });
      }
      const online = await produceSnapshotAndTimestamp(state, signing.online(repository, state));
      const files = [
        { fileName: '1.root.json', bytes: rootBytes },
        { fileName: '1.targets.json', bytes: targetsBytes },
      ];
      const head = await committer.commit(repository, lock, files, online);
      this.#d.logger.info({ repository }, 'repository created');
      return result(repository, 'root', 1, head, false);
    });
  }

  /**
   * Create member `repository` of the namespace that covers it (the longest prefix with an anchor,
   * scope.ts) from its owner-signed 1.targets.json alone: its root is the namespace's (kept at
   * the anchor only), its snapshot and timestamp are signed with the namespace's online keys and
   * name the namespace.
   */
  async createMember(repository: string, targetsBytes: Uint8Array): Promise<UploadResult & { namespace: string }> {
    this.#d.metadata.metadataRepository(repository); // validates the name before anything else
    await this.#precheck('targets', targetsBytes, 'delegated');
    const { heads, committer, signing } = this.#d;
    const found = await this.namespaceFor(repository);
    if (!found) {
      throw new ServiceError('NO_NAMESPACE', `no namespace covers ${repository}: create one (tufoci init <prefix>/) or the repository's own trust (tufoci init ${repository})`, { detail: { repository } });
    }
    const { namespace, anchor } = found;
    return committer.withLock(repository, async (lock) => {
      const existing = await heads.fresh(repository);
      if (existing) {
        if (bytesEqual(await heads.readOptional(repository, '1.targets.json'), targetsBytes)) return { ...result(repository, 'targets', 1, existing, true), namespace };
        throw new ServiceError('REPO_EXISTS', `${repository} already exists`, { detail: { repository } });
      }
      const nsHead = await heads.fresh(anchor);
      if (!nsHead) throw new ServiceError('NO_NAMESPACE', `the anchor ${anchor} of namespace ${namespace} is gone`, { detail: { repository, namespace } });
      const root = nsHead.state.root;
      const state = verifyNewMember(root, targetsBytes, signing.ctx(repository, nsHead.state));
      // No root files: a member's roots are the namespace's, read from the anchor (head-cache.ts).
      const files: MetadataFile[] = [{ fileName: '1.targets.json', bytes: targetsBytes }];
      const online = await produceSnapshotAndTimestamp(state, signing.online(repository, state));
      const head = await committer.commit(repository, lock, files, online);
      this.#d.logger.info({ repository, namespace }, 'namespace member created');
      return { ...result(repository, 'targets', 1, head, false), namespace };
    });
  }

  /**
   * Move `repository`, which has a root of its own, into a namespace: `rootBytes` is its next root
   * naming the namespace root that succeeds it (`x-tufoci-successor`, scope.ts), signed by its
   * root keys; `targetsBytes` its next top-level targets as a member (signed by the namespace's
   * targets keys, naming the member, target paths qualified). One commit: the repository's last
   * own root, the targets, and a snapshot and timestamp signed with the namespace's online keys.
   * Versions go on from the repository's (no file of its history is replaced).
   */
  async migrate(repository: string, rootBytes: Uint8Array, targetsBytes: Uint8Array): Promise<UploadResult & { namespace: string }> {
    this.#d.metadata.metadataRepository(repository); // validates the name before anything else
    await this.#precheck('root', rootBytes, 'delegated');
    await this.#precheck('targets', targetsBytes, 'delegated');
    const { heads, committer, signing, policy } = this.#d;
    return committer.withLock(repository, async (lock) => {
      const head = await heads.fresh(repository);
      if (!head) throw new ServiceError('REPO_NOT_FOUND', `no TUF repository ${repository}`, { detail: { repository } });
      const already = namespaceOf(head.state.root.md.signed, repository);
      if (already !== undefined) throw new ServiceError('IN_NAMESPACE', `${repository} is already in namespace ${already}`, { detail: { repository, namespace: already } });
      const own = verifyRootUpload(head.state, rootBytes, signing.ctx(repository, head.state));
      let successor: Successor | undefined;
      try {
        successor = successorOf(own.state.root.md.signed, repository);
      } catch (cause) {
        throw new ServiceError('BAD_REQUEST', cause instanceof Error ? cause.message : String(cause), { detail: { repository }, cause });
      }
      if (!successor) throw new ServiceError('BAD_REQUEST', `root ${own.version} of ${repository} names no successor ("${SUCCESSOR_FIELD}"): nothing to migrate to`, { detail: { repository } });
      const anchor = namespaceAnchor(successor.namespace);
      const nsHead = await heads.fresh(anchor);
      if (!nsHead || namespaceOf(nsHead.state.root.md.signed, anchor) !== successor.namespace) {
        throw new ServiceError('NO_NAMESPACE', `no namespace ${successor.namespace}`, { detail: { repository, namespace: successor.namespace } });
      }
      const named = successor.version === nsHead.state.root.md.signed.version ? nsHead.state.root.bytes : await heads.readOptional(anchor, `${successor.version}.root.json`, policy.roles.root.maxBytes);
      if (!named || createHash('sha256').update(named).digest('hex') !== successor.sha256) {
        throw new ServiceError('BAD_REQUEST', `the successor root ${successor.version} of namespace ${successor.namespace} does not have sha256 ${successor.sha256.slice(0, 12)}…`, { detail: { repository, successor } });
      }
      // The member: the namespace's current root over the repository's roles (versions go on).
      const member: RepoState = { ...head.state, root: nsHead.state.root };
      const t = verifyTargetsUpload(member, 'targets', targetsBytes, signing.ctx(repository, member));
      const online = await produceSnapshotAndTimestamp(t.state, signing.online(repository, t.state));
      const files = [
        { fileName: `${own.version}.root.json`, bytes: rootBytes },
        { fileName: `${t.version}.targets.json`, bytes: targetsBytes },
      ];
      const next = await committer.commit(repository, lock, files, online);
      this.#d.logger.info({ repository, namespace: successor.namespace }, 'repository moved into a namespace');
      return { ...result(repository, 'targets', t.version, next, false), namespace: successor.namespace };
    });
  }

  /** The namespace that covers `repository`: the longest prefix whose anchor holds a namespace root. */
  async namespaceFor(repository: string): Promise<{ namespace: string; anchor: string; rootVersion: number } | undefined> {
    if (anchorPrefix(repository) !== undefined) return undefined;
    const parts = repository.split('/');
    for (let n = parts.length - 1; n >= 1; n--) {
      const namespace = `${parts.slice(0, n).join('/')}/`;
      const anchor = namespaceAnchor(namespace);
      const head = await this.#d.heads.fresh(anchor);
      if (head && namespaceOf(head.state.root.md.signed, anchor) === namespace) return { namespace, anchor, rootVersion: head.state.root.md.signed.version };
    }
    return undefined;
  }

  /**
   * Upload a new version of a role: `fileName` is `<version>.<role>.json`; `root` rotates the
   * root, anything else is top-level targets or a delegated role.
   */
  async upload(repository: string, fileName: string, bytes: Uint8Array, roleClass: 'delegated' | 'ci' = 'delegated', job?: JobGrant, prechecked = false): Promise<UploadResult> {
    this.#d.metadata.metadataRepository(repository); // validates the name before it reaches the queue and the lock
    const name = parseMetadataFileName(fileName);
    if (!name || name.version === undefined || name.role === 'snapshot' || name.role === 'timestamp') {
      throw new ServiceError('BAD_REQUEST', `upload to <version>.<role>.json of root, targets or a delegated role, not ${fileName.slice(0, 120)}`, {
        detail: { repository, fileName: fileName.slice(0, 200) },
      });
    }
    const { role, version } = name as { role: string; version: number };
    if (!prechecked) await this.#precheck(role, bytes, roleClass);
    // Before queueing for the lock: a version the cached head already holds with other bytes is
    // taken. Versions only move up, so even a cached head behind the store proves it; the
    // writers that lost a race learn it at once instead of waiting for the lock.
    const cached = this.#d.heads.peek(repository);
    if (cached) {
      const current = role === 'root' ? cached.state.root.md.signed.version : (cached.state.targets.get(role)?.md.signed.version ?? 0);
      const held = cached.files.get(fileName);
      if (version <= current && held && !bytesEqual(held, bytes)) {
        throw new ServiceError('VERSION_TAKEN', `${role} version ${version} is taken (current ${current} or later); re-read and upload the next version`, {
          detail: { repository, role, version, current },
        });
      }
    }
    return this.#write(repository, (draft) => this.#uploadStep(repository, draft, { fileName, role, version, bytes, roleClass, job }));
  }

  /**
   * Publish tags in service-held role `role` (a delegation to the service's CI key, made by the
   * owner with `delegate add … --online`): the service signs the role. Concurrent publications
   * to one repository are signed as one new role version in one commit. Each tag must lie inside
   * the role's delegated paths, and a TUF client looking it up must reach this role first
   * (TAG_SHADOWED otherwise: an earlier role lists it, or a terminating delegation ends the
   * search before this role).
   */
  async publishTags(repository: string, role: string, tags: Readonly<Record<string, ImageTarget>>): Promise<TagsResult> {
    this.#d.metadata.metadataRepository(repository); // validates the name before anything else
    const { policy, signing } = this.#d;
    const names = Object.keys(tags);
    if (names.length === 0) throw new ServiceError('BAD_REQUEST', 'no tags to publish', { detail: { repository, role } });
    if (names.length > policy.limits.maxTargetsPerRole) {
      throw new ServiceError('BAD_REQUEST', `${names.length} tags in one request, above the limit of ${policy.limits.maxTargetsPerRole}`, {
        detail: { repository, role, count: names.length },
      });
    }
    return this.#write(repository, async (draft) => {
      const { state } = draft;
      if (!signing.isServiceHeld(repository, state, role)) {
        throw new ServiceError('NOT_SERVICE_HELD', `"${role}" of ${repository} is not delegated to the service's CI key; the service cannot sign it`, {
          detail: { repository, role },
        });
      }
      const chain = delegationChain(state, role, policy.limits.maxDelegationDepth);
      // In a namespace a target path names its repository (scope.ts): the service qualifies the tags.
      const prefix = targetPrefix(state.root.md.signed, repository);
      const paths: Record<string, ImageTarget> = prefix ? Object.fromEntries(names.map((n) => [`${prefix}${n}`, tags[n] as ImageTarget])) : { ...tags };
      checkTargetEntries(role, buildTargets({ version: 1, expires: isoExpiry(0), targets: paths }), chain, policy, prefix);
      const shadowed = tagShadowing(state, role, Object.keys(paths));
      if (shadowed) {
        const { tag, listedBy } = shadowed;
        throw new ServiceError(
          'TAG_SHADOWED',
          listedBy === undefined
            ? `a client looking up "${tag}" in ${repository} stops before reaching ${role} (a terminating delegation covers it first)`
            : `a client looking up "${tag}" in ${repository} takes it from ${listedBy}, which it reads before ${role}`,
          { detail: { repository, role, tag, ...(listedBy === undefined ? {} : { listedBy }) } },
        );
      }
      // A role with hash bins is bounded per bin, when the bins are signed; one without moves to
      // bins then (ServiceSigning#signTags), unless it delegates to job roles, which bins cannot hold.
      checkHeldRoleCapacity(state, role, Object.keys(paths), draft.tags.get(role), policy);
      return {
        state,
        tags: { role, tags: paths },
        result: (h) => ({ ...result(repository, role, currentVersion(h.state, role), h, false), tags: names }),
      };
    });
  }

  /**
   * The same checks as #precheck for an upload of `fileName` while its body arrives
   * (MetadataPrecheck: each piece scanned as it is read, the upload refused at the first piece
   * that shows it must be), for a body of `declaredBytes` (undefined: not declared). Undefined
   * when there is nothing to precheck: a small body (it costs under a slice anyway) or a name
   * upload() refuses itself. Pass the body to upload() with `prechecked` once `finish` returned.
   */
  uploadPrecheck(fileName: string, roleClass: 'delegated' | 'ci', declaredBytes: number | undefined): MetadataPrecheck | undefined {
    if (declaredBytes !== undefined && declaredBytes < PRECHECK_BYTES) return undefined;
    const name = parseMetadataFileName(fileName);
    if (!name || name.version === undefined || name.role === 'snapshot' || name.role === 'timestamp') return undefined;
    const { kind, maxBytes } = this.#uploadRole(name.role, roleClass);
    return new MetadataPrecheck(kind, maxBytes, name.role, limitsFromPolicy(this.#d.policy));
  }

  /** The role an upload of `role` belongs to in the policy, and its parse kind. */
  #uploadRole(role: string, roleClass: 'delegated' | 'ci'): { kind: 'root' | 'targets'; maxBytes: number } {
    const policy = this.#d.policy;
    const rp = role === 'root' ? policy.roles.root : role === 'targets' ? policy.roles.targets : policy.roles[roleClass];
    return { kind: role === 'root' ? 'root' : 'targets', maxBytes: rp.maxBytes };
  }

  /**
   * A large upload's cheap checks (strict scan, shape, fields, counts) in slices that yield to
   * other requests (precheckMetadata), before it waits for the lock and is parsed synchronously.
   * Only checks that do not depend on the repository's state: those come with the lock.
   */
  async #precheck(role: string, bytes: Uint8Array, roleClass: 'delegated' | 'ci'): Promise<void> {
    if (bytes.byteLength < PRECHECK_BYTES) return;
    const { kind, maxBytes } = this.#uploadRole(role, roleClass);
    await precheckMetadata(kind, bytes, maxBytes, role, limitsFromPolicy(this.#d.policy));
  }

  /** Queue one write for the repository's next batch; settles once that batch committed (or refused the write). */
  #write<T>(repository: string, step: (draft: Readonly<Draft>) => Promise<StepOutcome<T>>): Promise<T> {
    if (this.#d.committer.closing) return Promise.reject(new ServiceError('SHUTTING_DOWN', 'the service is shutting down', { detail: { repository } }));
    return this.#queue.enqueue(repository, step) as Promise<T>;
  }

  /** One upload applied to a batch's draft: verified against everything before it in the batch. */
  async #uploadStep(
    repository: string,
    draft: Readonly<Draft>,
    u: { fileName: string; role: string; version: number; bytes: Uint8Array; roleClass: 'delegated' | 'ci'; job: JobGrant | undefined },
  ): Promise<StepOutcome<UploadResult>> {
    const { fileName, role, version, bytes, roleClass, job } = u;
    const { signing } = this.#d;
    const current = role === 'root' ? draft.state.root.md.signed.version : currentVersion(draft.state, role);
    if (version <= current) {
      const stored = draft.files.get(fileName) ?? draft.head.files.get(fileName) ?? (await this.#d.heads.readOptional(repository, fileName));
      if (stored && bytesEqual(stored, bytes)) return { state: draft.state, result: (h) => result(repository, role, version, h, true) };
      throw new ServiceError('VERSION_TAKEN', `${role} version ${version} is taken (current ${current}); upload version ${current + 1}`, {
        detail: { repository, role, version, current },
      });
    }
    const ctx = signing.ctx(repository, draft.state);
    const roleFiles: MetadataFile[] = [{ fileName, bytes }];
    let state: RepoState;
    let verification: VerificationResult | undefined;
    let warnings: string[] | undefined;
    const onParsed = (parsed: number): void => {
      if (parsed !== version) throw new ServiceError('NAME_MISMATCH', `${fileName} holds ${role} version ${parsed}`, { detail: { repository, fileName, version: parsed } });
    };
    if (role === 'root') {
      this.#checkMemberRoot(repository, draft.state);
      const r = verifyRootUpload(draft.state, bytes, ctx, { onParsed });
      if (successorOf(r.state.root.md.signed, repository) !== undefined) {
        throw new ServiceError('BAD_REQUEST', `a root naming a successor namespace moves ${repository} into it, with its member targets in the same commit: tufoci migrate`, { detail: { repository } });
      }
      ({ state, warnings } = r);
      verification = r.verification.current;
    } else {
      let base = draft.state;
      const parentFiles: MetadataFile[] = [];
      if (job && job.jobRole === role && delegationsOf(base, role).length === 0) {
        // A job's first upload: delegate its role from the service-held parent in the same commit.
        if (job.endsAt <= ctx.now) throw new ServiceError('GRANT_EXPIRED', `the grant ended at ${new Date(job.endsAt).toISOString()}`, { detail: { repository } });
        const signed = await signing.signServiceRole(repository, base, job.role, delegateJob(base, endedJobs(base, job.role, ctx.now), job));
        base = signed.state;
        parentFiles.push(signed.file);
      }
      const r = verifyTargetsUpload(base, role, bytes, ctx, { roleClass, onParsed });
      ({ state, verification } = r);
      roleFiles.push(...parentFiles);
    }
    const shadowed = parentShadowedTags(state, role, signing.ciKeyIds(repository));
    if (shadowed) {
      const signed = await signing.signServiceRole(repository, state, shadowed.parent, dropTargets(shadowed.tags));
      state = signed.state;
      // The parent may already have a new version in this commit (the job's first upload).
      const i = roleFiles.findIndex((f) => f.fileName.endsWith(`.${shadowed.parent}.json`));
      if (i >= 0) roleFiles.splice(i, 1);
      roleFiles.push(signed.file);
    }
    return {
      state,
      files: roleFiles,
      result: (h) => result(repository, role, version, h, false, { verification, ...(warnings?.length ? { warnings } : {}) }),
    };
  }

  /**
   * A member of a namespace has no root of its own: its root is rotated once, at the anchor, for
   * every member (RepositoryService#syncNamespace).
   */
  #checkMemberRoot(repository: string, state: RepoState): void {
    const ns = memberOf(state.root.md.signed, repository);
    if (ns === undefined) return;
    throw new ServiceError('IN_NAMESPACE', `${repository} is a member of namespace ${ns}: its root is the namespace's, rotated at ${namespaceAnchor(ns)} (tufoci rotate root ${ns})`, {
      detail: { repository, namespace: ns },
    });
  }

  /**
   * Bring member `repository` to its namespace's current root `root` (verified at the anchor): one
   * commit of a snapshot and timestamp signed with the keys that root names. Resolves to whether
   * there was anything to do.
   */
  resignMember(repository: string, root: RepoState['root']): Promise<boolean> {
    return this.#write(repository, async (draft) => {
      const next = withNamespaceRoot(draft.state, repository, root);
      return next ? { state: next, result: () => true } : { state: draft.state, result: () => false };
    }) as Promise<boolean>;
  }

  /**
   * Under the lock: apply each write in arrival order to a draft of the fresh head (each verified
   * against everything before it; a refused write is answered alone and changes nothing), sign
   * every service-held role that gained tags once, and commit role files, one snapshot and one
   * timestamp for the whole batch. Every write is acknowledged only after that timestamp.
   */
  async #commitBatch(repository: string, batch: ReadonlyArray<BatchEntry<Step, unknown>>): Promise<void> {
    const { heads, committer, signing, logger } = this.#d;
    await committer.locked(repository, async (lock) => {
      const head = await heads.fresh(repository);
      if (!head) {
        const e = new ServiceError('REPO_NOT_FOUND', `no TUF repository ${repository}`, { detail: { repository } });
        for (const w of batch) w.reject(e);
        return;
      }
      const draft: Draft = { head, state: head.state, files: new Map(), tags: new Map() };
      const applied: Array<{ w: BatchEntry<Step, unknown>; result: (h: Head) => unknown; tagRole: string | undefined }> = [];
      for (const w of batch) {
        try {
          const out = await w.item(draft);
          draft.state = out.state;
          for (const f of out.files ?? []) draft.files.set(f.fileName, f.bytes);
          if (out.tags) {
            let pending = draft.tags.get(out.tags.role);
            if (!pending) draft.tags.set(out.tags.role, (pending = new Map()));
            for (const [tag, target] of Object.entries(out.tags.tags)) pending.set(tag, target);
          }
          applied.push({ w, result: out.result, tagRole: out.tags?.role });
        } catch (e) {
          w.reject(e);
        }
      }
      // Each service-held role that gained tags is signed once, over everything else in the batch
      // (or, for a role that spreads its tags over hash bins, each bin that gained tags).
      for (const [role, tags] of draft.tags) {
        try {
          for (const signed of await signing.signTags(repository, draft.state, role, tags)) {
            draft.state = signed.state;
            draft.files.set(signed.file.fileName, signed.file.bytes);
          }
        } catch (e) {
          for (const a of applied) if (a.tagRole === role) a.w.reject(e);
        }
      }
      const live = applied.filter((a) => !a.w.settled);
      if (live.length === 0) return;
      let next = head;
      if (draft.state !== head.state || draft.files.size > 0) {
        const online = await produceSnapshotAndTimestamp(draft.state, signing.online(repository, draft.state));
        const files = [...draft.files].map(([fileName, bytes]) => ({ fileName, bytes }));
        next = await committer.commit(repository, lock, files, online);
        logger.info({ repository, writes: live.length, files: files.map((f) => f.fileName), timestampVersion: next.timestampVersion }, 'committed');
      }
      for (const a of live) a.w.resolve(a.result(next));
    });
  }
}

function result(repository: string, role: string, version: number, head: Head, unchanged: boolean, extra: Partial<UploadResult> = {}): UploadResult {
  return {
    repository,
    role,
    version,
    snapshotVersion: head.state.snapshot?.md.signed.version ?? 0,
    timestampVersion: head.timestampVersion,
    unchanged,
    ...extra,
  };
}

function bytesEqual(a: Uint8Array | undefined, b: Uint8Array): boolean {
  return a !== undefined && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}
