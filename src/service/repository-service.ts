/**
 * The service layer: one TUF repository per OCI repository, kept in a MetadataStore, written
 * under the coordinator's lock, served from an in-memory cache of each repository's current
 * files. `RepositoryService` composes the pieces, one idea each:
 *
 * - head-cache.ts: the cached heads (loaded by re-verifying from `1.root.json`, reloaded
 *   incrementally, dropped on a peer's announcement);
 * - writes.ts: create, upload and service-signed tags, queued per repository and committed in
 *   batches (util/keyed-batch-queue.ts), the TUF rules decided by the engine;
 * - commit.ts: the lock, the write order (role files, snapshot, then — fence checked — the
 *   timestamp) and the announcement to peers;
 * - service-signing.ts: the online keys' contexts and service-held roles signed;
 * - grants.ts, online-key-admin.ts, refresh.ts: grants, online key sets, refresh scheduling.
 *
 * Invariants:
 * - The store is the source of truth. Before every write, under the repository's lock, the
 *   current `timestamp.json` is read from the store and the cached head is reloaded if it is not
 *   the newest; the engine then verifies the upload against that trusted state. Correctness rests
 *   on the engine's version checks and the store's immutable versioned files; the lock only
 *   avoids wasted work and collisions.
 * - Only after the timestamp is written is a write acknowledged.
 * - Loading a head re-verifies everything (engine/load.ts) from the stored `1.root.json`. That
 *   root is the service's trust anchor for the repository; clients keep their own pins.
 * - The cache is bounded in bytes; an evicted head is reloaded on demand.
 */
import { legacyKeyListings, type RepoState } from '../engine/index.ts';
import type { ImageTarget } from '../engine/build.ts';
import { jobEndsAt, serviceHeldRoles } from '../engine/jobs.ts';
import { parseMetadataFileName } from '../engine/names.ts';
import type { MetadataPrecheck } from '../engine/parse.ts';
import { parseExpires } from '../engine/parse.ts';
import { delegationOf } from '../engine/state.ts';
import { OnlineKeyring, type KeySetInfo, type OnlineSigners } from '../keys/online-keyring.ts';
import type { TufKeyJson } from '../keys/tuf-key.ts';
import type { Policy } from '../policy/policy.ts';
import { isStorageError, type MetadataStore } from '../storage/index.ts';
import type { Coordinator } from '../coord/index.ts';
import type { GrantInfo, JobInfo, NamespaceMembers, NamespaceSync, RepositoryStatus, RoleStatus, TagsResult, UploadResult } from '../api/types.ts';
import { anchorPrefix, memberOf, namespaceAnchor, namespaceOf } from '../engine/scope.ts';
import { mapLimit } from '../util/map-limit.ts';
import { Committer } from './commit.ts';
import { ServiceError } from './errors.ts';
import { Grants, type JobGrant } from './grants.ts';
import { HeadCache, etagOf, headEtag } from './head-cache.ts';
import type { Logger } from './logger.ts';
import { OnlineKeyAdmin } from './online-key-admin.ts';
import { RefreshScheduler } from './refresh.ts';
import { ServiceSigning } from './service-signing.ts';
import { Writes } from './writes.ts';

export type { GrantInfo, JobInfo, RepositoryStatus, RoleStatus, TagsResult, UploadResult } from '../api/types.ts';
export type { OnlineSigners } from '../keys/online-keyring.ts';
export type { Logger } from './logger.ts';
export { GRANT_PREFIX, type JobGrant } from './grants.ts';

export interface RepositoryServiceDeps {
  metadata: MetadataStore;
  coord: Coordinator;
  /** The online keys; or `signers`, wrapped in an in-memory keyring. */
  keyring?: OnlineKeyring;
  signers?: OnlineSigners;
  policy: Policy;
  clock: () => number;
  logger: Logger;
  /**
   * Write lock lifetime (default 30 s), and how long a writer waits for it before BUSY (default
   * 15 s: with group commit one drainer per instance waits, not every request; answering a whole
   * batch BUSY while a peer's commit is merely slow turns load into retry storms).
   */
  lockTtlMs?: number;
  lockWaitMs?: number;
  /** Bound of the head cache, in bytes of metadata held. */
  cacheBytes?: number;
  /**
   * How long a root upload at a namespace's anchor waits for its members to take the new root
   * before it is answered (default 10 s); the members still pending are named in the answer and
   * taken in the background (and, should this instance stop, by their next refresh).
   */
  memberSyncWaitMs?: number;
}

/** How far a syncNamespace has got (read while it runs). */
interface SyncProgress {
  rootVersion: number;
  updated: number;
  failed: NamespaceSync['failed'];
  /** Members not looked at yet. */
  pending: number;
}

export interface ServedFile {
  bytes: Uint8Array;
  etag: string;
  immutable: boolean;
}

export class RepositoryService {
  readonly #metadata: MetadataStore;
  readonly #policy: Policy;
  readonly #keyring: OnlineKeyring;
  readonly #clock: () => number;
  readonly #heads: HeadCache;
  readonly #signing: ServiceSigning;
  readonly #committer: Committer;
  readonly #writes: Writes;
  readonly #grants: Grants;
  readonly #keys: OnlineKeyAdmin;
  readonly #refresh: RefreshScheduler;
  readonly #logger: Logger;
  readonly #memberSyncWaitMs: number;
  readonly #unsubscribe: Array<() => void>;

  constructor(deps: RepositoryServiceDeps) {
    const keyring = deps.keyring ?? (deps.signers ? OnlineKeyring.fromSigners(deps.signers, deps.clock) : undefined);
    if (!keyring) throw new TypeError('RepositoryService needs a keyring or signers');
    const { metadata, coord, policy, clock, logger } = deps;
    const lockTtlMs = deps.lockTtlMs ?? 30_000;
    this.#metadata = metadata;
    this.#policy = policy;
    this.#keyring = keyring;
    this.#clock = clock;
    this.#logger = logger;
    this.#memberSyncWaitMs = deps.memberSyncWaitMs ?? 10_000;
    const heads = new HeadCache({ metadata, policy, logger, cacheBytes: deps.cacheBytes ?? 256 * 1024 * 1024 });
    const signing = new ServiceSigning({ keyring, policy, clock });
    const committer = new Committer({
      metadata,
      coord,
      keyring,
      heads,
      logger,
      nextRefreshAt: (repository, state) => this.nextRefreshAt(repository, state),
      lockTtlMs,
      lockWaitMs: deps.lockWaitMs ?? 15_000,
    });
    this.#heads = heads;
    this.#signing = signing;
    this.#committer = committer;
    this.#writes = new Writes({ metadata, policy, logger, heads, committer, signing });
    this.#grants = new Grants({ coord, policy, clock, logger, heads, signing });
    this.#keys = new OnlineKeyAdmin({ metadata, keyring, heads, logger });
    this.#refresh = new RefreshScheduler({ coord, policy, clock, logger, heads, committer, signing, leaseMs: lockTtlMs * 2 });
    this.#unsubscribe = [
      coord.onHead((repository, version) => {
        heads.announced(repository, version);
        logger.debug?.({ repository, timestampVersion: version }, 'head announcement received');
      }),
      // Missed invalidations (reconnect) or a wiped coordinator (reset): drop every cached head.
      coord.onResync((reason) => {
        const repos = heads.evictAll();
        if (reason === 'reset') {
          // The coordinator lost its schedule: put every stored repository back on it.
          metadata
            .listRepositories()
            .then((all) => Promise.all([...new Set([...all, ...repos])].map((r) => this.track(r).catch((err: unknown) => logger.warn({ repository: r, err }, 'could not re-schedule refresh')))))
            .catch((err: unknown) => logger.warn({ err }, 'could not list repositories to re-schedule'));
        }
      }),
    ];
  }

  get policy(): Policy {
    return this.#policy;
  }

  get keyring(): OnlineKeyring {
    return this.#keyring;
  }

  // ---------------------------------------------------------------- reads

  /** A current file already in the cache, or undefined (no I/O): the read fast path. */
  cachedFile(repository: string, fileName: string): ServedFile | undefined {
    const head = this.#heads.peek(repository);
    const bytes = head?.files.get(fileName);
    if (!head || !bytes) return undefined;
    return { bytes, etag: headEtag(head, fileName, bytes), immutable: fileName !== 'timestamp.json' };
  }

  /** The root version of the cached head, or undefined (no I/O): the read paths' root hint. */
  cachedRootVersion(repository: string): number | undefined {
    return this.#heads.peek(repository)?.state.root.md.signed.version;
  }

  /** A metadata file by its TUF name, from the cache of current files or the store. */
  async read(repository: string, fileName: string): Promise<ServedFile> {
    const parsed = parseMetadataFileName(fileName);
    if (!parsed) throw new ServiceError('NOT_FOUND', `${fileName} is not a TUF metadata file name`, { detail: { repository, fileName } });
    const head = await this.#heads.head(repository);
    const bytes = head.files.get(fileName);
    const immutable = fileName !== 'timestamp.json';
    if (bytes) return { bytes, etag: headEtag(head, fileName, bytes), immutable };
    if (!immutable || parsed.version === undefined) throw new ServiceError('NOT_FOUND', `${fileName} not found in ${repository}`, { detail: { repository, fileName } });
    // An older version (e.g. a root the client walks through): immutable, read through.
    const roles = this.#policy.roles;
    const max = parsed.role === 'root' ? roles.root.maxBytes : Math.max(roles.snapshot.maxBytes, roles.delegated.maxBytes);
    // (A member's roots are its namespace's, read at the anchor; under its own name only the files
    // of a chain it had before it moved into the namespace are stored.)
    try {
      const old = await this.#heads.read(repository, fileName, max);
      return { bytes: old, etag: etagOf(old), immutable };
    } catch (e) {
      if (isStorageError(e, 'NOT_FOUND')) throw new ServiceError('NOT_FOUND', `${fileName} not found in ${repository}`, { detail: { repository, fileName } });
      throw e;
    }
  }

  /** Image repositories with TUF metadata in the store. */
  async repositories(): Promise<string[]> {
    return this.#metadata.listRepositories();
  }

  async status(repository: string): Promise<RepositoryStatus> {
    const { state } = await this.#heads.head(repository);
    const now = this.#clock();
    const root = state.root.md.signed;
    const roles: RoleStatus[] = [];
    const add = (role: string, version: number, expires: string, keyids: string[], threshold: number, signedBy: RoleStatus['signedBy']): void => {
      roles.push({ role, version, expires, expiresInSeconds: Math.floor((parseExpires(expires) - now) / 1000), keyids, threshold, signedBy });
    };
    for (const name of ['root', 'timestamp', 'snapshot'] as const) {
      const md = name === 'root' ? state.root.md : state[name]?.md;
      const r = root.roles[name];
      if (md && r) add(name, md.signed.version, md.signed.expires, r.keyIDs, r.threshold, name === 'root' ? 'offline' : 'online');
    }
    const held = new Set(serviceHeldRoles(state, this.#signing.ciKeyIds(repository)).map((h) => h.role));
    for (const [role, rec] of state.targets) {
      let keyids: string[] = [];
      let threshold = 0;
      try {
        const d = delegationOf(state, role);
        keyids = [...d.keyIDs];
        threshold = d.threshold;
      } catch {
        // ambiguous delegation (the engine refuses creating one)
      }
      add(role, rec.md.signed.version, rec.md.signed.expires, keyids, threshold, held.has(role) ? 'online' : jobEndsAt(role) !== undefined ? 'job' : 'offline');
    }
    const legacyKeyIds = legacyKeyListings(root, [...state.targets].map(([role, rec]) => [role, rec.md.signed] as const));
    const namespace = namespaceOf(root, repository);
    return { repository, roles, tombstones: [...state.tombstones].map(([role, version]) => ({ role, version })), legacyKeyIds, ...(namespace !== undefined ? { namespace } : {}) };
  }

  /** Seconds to expiry per role of every cached head, for metrics. */
  expiries(): Array<{ repository: string; role: string; seconds: number }> {
    const now = this.#clock();
    const out: Array<{ repository: string; role: string; seconds: number }> = [];
    for (const [repository, head] of this.#heads.entries()) {
      const s = head.state;
      const push = (role: string, expires: string | undefined): void => {
        if (expires) out.push({ repository, role, seconds: Math.floor((parseExpires(expires) - now) / 1000) });
      };
      push('root', s.root.md.signed.expires);
      push('timestamp', s.timestamp?.md.signed.expires);
      push('snapshot', s.snapshot?.md.signed.expires);
      for (const [role, rec] of s.targets) push(role, rec.md.signed.expires);
    }
    return out;
  }

  // ---------------------------------------------------------------- writes (writes.ts)

  create(repository: string, rootBytes: Uint8Array, targetsBytes: Uint8Array): Promise<UploadResult> {
    return this.#writes.create(repository, rootBytes, targetsBytes);
  }

  /**
   * Upload a role file. A new root at a namespace's anchor is then taken by every member of the
   * namespace (syncNamespace) before the upload is answered.
   */
  async upload(repository: string, fileName: string, bytes: Uint8Array, roleClass: 'delegated' | 'ci' = 'delegated', job?: JobGrant, prechecked = false): Promise<UploadResult> {
    const r = await this.#writes.upload(repository, fileName, bytes, roleClass, job, prechecked);
    const ns = anchorPrefix(repository);
    if (ns !== undefined && r.role === 'root') return { ...r, members: await this.#syncWithin(ns, this.#memberSyncWaitMs) };
    return r;
  }

  /** syncNamespace, answered after `waitMs` at the latest with what it has done so far (the rest goes on). */
  async #syncWithin(prefix: string, waitMs: number): Promise<NamespaceSync> {
    const progress: SyncProgress = { rootVersion: 0, updated: 0, failed: [], pending: 0 };
    const running = this.syncNamespace(prefix, progress);
    running.catch((err: unknown) => this.#logger.warn({ namespace: prefix, err }, 'namespace members not synced'));
    let timer: NodeJS.Timeout | undefined;
    const waited = new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), waitMs);
      timer.unref();
    });
    try {
      const done = await Promise.race([running, waited]);
      if (done) return done;
      this.#logger.info({ namespace: prefix, pending: progress.pending }, 'namespace members take the new root in the background');
      return { namespace: prefix, rootVersion: progress.rootVersion, updated: progress.updated, failed: [...progress.failed], pending: progress.pending };
    } finally {
      clearTimeout(timer);
    }
  }

  /** Create a member of the namespace covering `repository` from its 1.targets.json (writes.ts). */
  createMember(repository: string, targetsBytes: Uint8Array): Promise<UploadResult & { namespace: string }> {
    return this.#writes.createMember(repository, targetsBytes);
  }

  /** Move `repository` into the namespace its next root names as successor (writes.ts). */
  migrate(repository: string, rootBytes: Uint8Array, targetsBytes: Uint8Array): Promise<UploadResult & { namespace: string }> {
    return this.#writes.migrate(repository, rootBytes, targetsBytes);
  }

  /** The namespace covering `repository` (the longest prefix with an anchor), if any. */
  namespaceFor(repository: string): Promise<{ namespace: string; anchor: string; rootVersion: number } | undefined> {
    this.#metadata.metadataRepository(repository); // validates the name
    return this.#writes.namespaceFor(repository);
  }

  /**
   * One page of namespace `prefix`'s members, for the owner's tools that act on each (re-signing
   * every member's targets after a rotation of the targets key): the repositories under the prefix
   * after `after`, in name order, at most `limit` of them looked at, and which of them are members
   * (their root is this namespace's; not the anchor, not a sub-namespace's member, not a repository
   * with a root of its own). A page may hold fewer members than `limit`; `next` says more follow.
   */
  async namespaceMembers(prefix: string, page: { after?: string; limit: number }): Promise<NamespaceMembers> {
    const anchor = namespaceAnchor(prefix);
    const nsHead = await this.#heads.head(anchor).catch((e: unknown) => {
      if (e instanceof ServiceError && e.code === 'REPO_NOT_FOUND') return undefined;
      throw e;
    });
    if (!nsHead || namespaceOf(nsHead.state.root.md.signed, anchor) !== prefix) throw new ServiceError('NO_NAMESPACE', `no namespace ${prefix}`, { detail: { namespace: prefix } });
    const after = page.after;
    const under = (await this.#metadata.listRepositories()).filter((r) => r.startsWith(prefix) && r !== anchor && (after === undefined || r > after)).sort();
    const looked = under.slice(0, page.limit);
    const unreadable: NamespaceMembers['unreadable'] = [];
    const found = await mapLimit(looked, 8, async (repository) => {
      try {
        return memberOf((await this.#heads.head(repository)).state.root.md.signed, repository) === prefix;
      } catch (error) {
        if (error instanceof ServiceError && error.code === 'REPO_NOT_FOUND') return false; // gone since the listing
        unreadable.push({ repository, error: error instanceof Error ? error.message : String(error) });
        return false;
      }
    });
    const last = looked[looked.length - 1];
    return {
      namespace: prefix,
      anchor,
      rootVersion: nsHead.state.root.md.signed.version,
      members: looked.filter((_, i) => found[i]),
      unreadable: unreadable.sort((a, b) => (a.repository < b.repository ? -1 : 1)),
      ...(under.length > looked.length && last !== undefined ? { next: last } : {}),
    };
  }

  /**
   * Bring every member of namespace `prefix` up to its anchor's root: each member whose head is
   * under an older root commits a snapshot and timestamp signed with the keys the new root names
   * (members keep no root files: clients read the namespace's roots at the anchor). Members of a
   * sub-namespace and repositories with roots of their own are left alone. Idempotent: a sync
   * interrupted half way is finished by calling it again (the next root rotation, or
   * `POST /v1/namespace-sync/<anchor>`).
   */
  async syncNamespace(prefix: string, progress: SyncProgress = { rootVersion: 0, updated: 0, failed: [], pending: 0 }): Promise<NamespaceSync> {
    const anchor = namespaceAnchor(prefix);
    const nsHead = await this.#heads.fresh(anchor);
    if (!nsHead) throw new ServiceError('NO_NAMESPACE', `no namespace ${prefix}`, { detail: { namespace: prefix } });
    const root = nsHead.state.root;
    const members = (await this.#metadata.listRepositories()).filter((r) => r.startsWith(prefix) && r !== anchor);
    progress.rootVersion = root.md.signed.version;
    progress.pending = members.length;
    await mapLimit(members, 8, async (repository) => {
      try {
        if (await this.#writes.resignMember(repository, root)) progress.updated++;
      } catch (error) {
        progress.failed.push({ repository, error: error instanceof Error ? error.message : String(error) });
      } finally {
        progress.pending--;
      }
    });
    if (progress.failed.length) this.#logger.warn({ namespace: prefix, failed: progress.failed.length }, 'namespace members did not take the new root');
    return { namespace: prefix, rootVersion: root.md.signed.version, updated: progress.updated, failed: progress.failed };
  }

  uploadPrecheck(fileName: string, roleClass: 'delegated' | 'ci', declaredBytes: number | undefined): MetadataPrecheck | undefined {
    return this.#writes.uploadPrecheck(fileName, roleClass, declaredBytes);
  }

  publishTags(repository: string, role: string, tags: Readonly<Record<string, ImageTarget>>): Promise<TagsResult> {
    return this.#writes.publishTags(repository, role, tags);
  }

  // ---------------------------------------------------------------- online keys (online-key-admin.ts)

  onlineKeys(repository?: string): { set: number; kind: 'derived' | 'shared'; snapshot: TufKeyJson[]; timestamp: TufKeyJson[]; ci: TufKeyJson[] } {
    return this.#keys.onlineKeys(repository);
  }

  onlineKeyUsage(): Promise<Array<{ repository: string; sets: number[]; onRevoked: boolean; onCurrent: boolean }>> {
    return this.#keys.onlineKeyUsage();
  }

  nextOnlineKeys(repository: string): Promise<{ set: KeySetInfo; generated: boolean }> {
    return this.#keys.nextOnlineKeys(repository);
  }

  revokeOnlineKeys(ref: string, reason: string): Promise<{ revoked: KeySetInfo; current: KeySetInfo; affected: string[] }> {
    return this.#keys.revokeOnlineKeys(ref, reason);
  }

  // ---------------------------------------------------------------- grants (grants.ts)

  createGrant(repository: string, opts: { role?: string; paths: string[]; ttlMs: number }): Promise<GrantInfo> {
    return this.#grants.createGrant(repository, opts);
  }

  redeemGrant(repository: string, token: string, key: TufKeyJson): Promise<JobInfo> {
    return this.#grants.redeemGrant(repository, token, key);
  }

  jobFor(token: string): Promise<JobGrant | undefined> {
    return this.#grants.jobFor(token);
  }

  // ---------------------------------------------------------------- refresh (refresh.ts)

  nextRefreshAt(repository: string, state: RepoState): number {
    return this.#refresh.nextRefreshAt(repository, state);
  }

  refresh(repository: string): Promise<number> {
    return this.#refresh.refresh(repository);
  }

  refreshDue(limit = 16): Promise<number> {
    return this.#refresh.refreshDue(limit);
  }

  track(repository: string): Promise<void> {
    return this.#refresh.track(repository);
  }

  /** Stop accepting writes and wait for the ones in flight. */
  async close(): Promise<void> {
    await this.#committer.close([this.#writes.idle()]);
    for (const u of this.#unsubscribe) u();
  }
}
