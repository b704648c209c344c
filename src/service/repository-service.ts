/**
 * The service layer: one TUF repository per OCI repository, kept in a
 * MetadataStore, written under the coordinator's lock, served from an
 * in-memory cache of each repository's current files.
 *
 * Invariants:
 * - The store is the source of truth. Before every write, under the
 *   repository's lock, the current `timestamp.json` is read from the store and
 *   the cached head is reloaded if it is not the newest; the engine then
 *   verifies the upload against that trusted state. Correctness rests on the
 *   engine's version checks and the store's immutable versioned files; the lock
 *   only avoids wasted work and collisions.
 * - Write order: the uploaded role file, then the new snapshot, then — after
 *   checking the lock's fence is still current — `timestamp.json`, last. A
 *   reader never sees a timestamp naming a file that is not there. Only after
 *   the timestamp is written is the upload acknowledged.
 * - Loading a head re-verifies everything (engine/load.ts) from the stored
 *   `1.root.json`. That root is the service's trust anchor for the repository;
 *   clients keep their own pins.
 * - Identical retries are answered with the same result (200, `unchanged`); a
 *   different file for a version already taken is VERSION_TAKEN (409).
 * - The cache is bounded in bytes; an evicted head is reloaded on demand.
 */
import { createHash } from 'node:crypto';
import {
  EngineError,
  loadRepositoryState,
  metadataFileName,
  parseMetadata,
  produceSnapshotAndTimestamp,
  produceTimestamp,
  verifyNewRepository,
  verifyRootUpload,
  verifyTargetsUpload,
  type OnlineResult,
  type RepoState,
  type VerificationResult,
} from '../engine/index.ts';
import { parseMetadataFileName } from '../engine/names.ts';
import { delegationOf } from '../engine/state.ts';
import { parseExpires } from '../engine/parse.ts';
import type { Signer } from '../keys/signer.ts';
import type { TufKeyJson } from '../keys/tuf-key.ts';
import type { Policy } from '../policy/policy.ts';
import { isStorageError, type MetadataFile, type MetadataStore } from '../storage/index.ts';
import type { Coordinator, Lock } from '../coord/index.ts';
import { CoordError } from '../coord/index.ts';
import { ServiceError } from './errors.ts';

export interface Logger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export interface OnlineSigners {
  snapshot: readonly Signer[];
  timestamp: readonly Signer[];
}

export interface RepositoryServiceDeps {
  metadata: MetadataStore;
  coord: Coordinator;
  signers: OnlineSigners;
  policy: Policy;
  clock: () => number;
  logger: Logger;
  /** Write lock lifetime and how long a writer waits for it. */
  lockTtlMs?: number;
  lockWaitMs?: number;
  /** Bound of the head cache, in bytes of metadata held. */
  cacheBytes?: number;
}

export interface ServedFile {
  bytes: Uint8Array;
  etag: string;
  immutable: boolean;
}

interface Head {
  state: RepoState;
  timestampVersion: number;
  /** Every current file by name (root chain head, targets files, snapshot, timestamp). */
  files: Map<string, Uint8Array>;
  etags: Map<string, string>;
  bytes: number;
}

export interface UploadResult {
  repository: string;
  role: string;
  version: number;
  snapshotVersion: number;
  timestampVersion: number;
  unchanged: boolean;
  verification?: VerificationResult;
  warnings?: string[];
}

export interface RoleStatus {
  role: string;
  version: number;
  expires: string;
  expiresInSeconds: number;
  keyids: string[];
  threshold: number;
  signedBy: 'online' | 'offline';
}

export interface RepositoryStatus {
  repository: string;
  roles: RoleStatus[];
  tombstones: Array<{ role: string; version: number }>;
}

const MINUTE = 60_000;

export class RepositoryService {
  readonly #d: Required<Omit<RepositoryServiceDeps, 'lockTtlMs' | 'lockWaitMs' | 'cacheBytes'>>;
  readonly #lockTtlMs: number;
  readonly #lockWaitMs: number;
  readonly #cacheBytes: number;
  readonly #heads = new Map<string, Head>();
  readonly #loading = new Map<string, Promise<Head>>();
  /** Heads dropped because a peer moved on: kept to make the next load incremental. */
  readonly #superseded = new Map<string, Head>();
  /** The newest timestamp version announced by peers, per repository (bounded like #superseded). */
  readonly #announced = new Map<string, number>();
  #cached = 0;
  readonly #unsubscribe: Array<() => void>;
  readonly #inflight = new Set<Promise<unknown>>();
  #closing = false;

  constructor(deps: RepositoryServiceDeps) {
    this.#d = { metadata: deps.metadata, coord: deps.coord, signers: deps.signers, policy: deps.policy, clock: deps.clock, logger: deps.logger };
    this.#lockTtlMs = deps.lockTtlMs ?? 30_000;
    this.#lockWaitMs = deps.lockWaitMs ?? 5_000;
    this.#cacheBytes = deps.cacheBytes ?? 256 * 1024 * 1024;
    this.#unsubscribe = [
      deps.coord.onHead((repository, version) => {
        if (version > (this.#announced.get(repository) ?? 0)) {
          this.#announced.delete(repository);
          this.#announced.set(repository, version);
          if (this.#announced.size > 4096) this.#announced.delete(this.#announced.keys().next().value as string);
        }
        const head = this.#heads.get(repository);
        if (head && head.timestampVersion < version) {
          this.#evict(repository);
          this.#superseded.set(repository, head);
          if (this.#superseded.size > 256) this.#superseded.delete(this.#superseded.keys().next().value as string);
        }
      }),
      // Missed invalidations (reconnect) or a wiped coordinator (reset): drop every cached head.
      deps.coord.onResync((reason) => {
        const repos = [...this.#heads.keys()];
        for (const r of repos) this.#evict(r);
        if (reason === 'reset') {
          // The coordinator lost its schedule: put every stored repository back on it.
          this.#d.metadata
            .listRepositories()
            .then((all) => Promise.all([...new Set([...all, ...repos])].map((r) => this.track(r).catch((err: unknown) => this.#d.logger.warn({ repository: r, err }, 'could not re-schedule refresh')))))
            .catch((err: unknown) => this.#d.logger.warn({ err }, 'could not list repositories to re-schedule'));
        }
      }),
    ];
  }

  get policy(): Policy {
    return this.#d.policy;
  }

  /** Public keys of the online signers (what owners put in root for snapshot and timestamp). */
  onlineKeys(): { snapshot: TufKeyJson[]; timestamp: TufKeyJson[] } {
    return { snapshot: this.#d.signers.snapshot.map((s) => s.public), timestamp: this.#d.signers.timestamp.map((s) => s.public) };
  }

  #allOnlineKeys(): TufKeyJson[] {
    return [...this.#d.signers.snapshot, ...this.#d.signers.timestamp].map((s) => s.public);
  }

  // ---------------------------------------------------------------- cache

  #evict(repository: string): void {
    const head = this.#heads.get(repository);
    if (!head) return;
    this.#heads.delete(repository);
    this.#cached -= head.bytes;
  }

  #remember(repository: string, head: Head): Head {
    this.#evict(repository);
    this.#heads.set(repository, head);
    this.#cached += head.bytes;
    // Evict least recently used heads beyond the byte bound (Map keeps insertion order).
    for (const [name, h] of this.#heads) {
      if (this.#cached <= this.#cacheBytes || name === repository) break;
      this.#heads.delete(name);
      this.#cached -= h.bytes;
    }
    return head;
  }

  #touch(repository: string, head: Head): void {
    this.#heads.delete(repository);
    this.#heads.set(repository, head);
  }

  static #headOf(state: RepoState): Head {
    const files = new Map<string, Uint8Array>();
    const root = state.root;
    files.set(metadataFileName('root', root.md.signed.version), root.bytes);
    for (const [role, rec] of state.targets) files.set(metadataFileName(role, rec.md.signed.version), rec.bytes);
    if (state.snapshot) files.set(metadataFileName('snapshot', state.snapshot.md.signed.version), state.snapshot.bytes);
    if (state.timestamp) files.set('timestamp.json', state.timestamp.bytes);
    let bytes = 0;
    for (const b of files.values()) bytes += b.byteLength;
    return { state, timestampVersion: state.timestamp?.md.signed.version ?? 0, files, etags: new Map(), bytes };
  }

  async #readFile(repository: string, fileName: string, maxBytes: number): Promise<Uint8Array> {
    return this.#d.metadata.readMetadata(repository, fileName, maxBytes);
  }

  /** Load (or reload incrementally from `previous`) the head of a repository from the store. */
  async #loadHead(repository: string, previous?: Head, timestampBytes?: Uint8Array): Promise<Head> {
    const { policy } = this.#d;
    let tsBytes = timestampBytes;
    if (!tsBytes) {
      try {
        tsBytes = await this.#readFile(repository, 'timestamp.json', policy.roles.timestamp.maxBytes);
      } catch (e) {
        if (isStorageError(e, 'NOT_FOUND')) throw new ServiceError('REPO_NOT_FOUND', `no TUF repository ${repository}`, { detail: { repository } });
        throw e;
      }
    }
    const ts = parseMetadata('timestamp', tsBytes, policy.roles.timestamp.maxBytes);
    const snapName = metadataFileName('snapshot', ts.md.signed.snapshotMeta.version);
    const snapBytes = previous?.files.get(snapName) ?? (await this.#readFile(repository, snapName, policy.roles.snapshot.maxBytes));
    const snap = parseMetadata('snapshot', snapBytes, policy.roles.snapshot.maxBytes);
    const listed = await this.#d.metadata.listMetadata(repository);
    const rootVersions = listed.filter((f) => f.role === 'root' && f.version !== undefined).map((f) => f.version as number).sort((a, b) => a - b);
    const roots = await mapLimit(rootVersions, 8, (v) => {
      const name = metadataFileName('root', v);
      const prev = previous && previous.state.root.md.signed.version >= v ? previous.files.get(name) : undefined;
      return prev ? Promise.resolve(prev) : this.#readFile(repository, name, policy.roles.root.maxBytes);
    });
    const stored = new Set(listed.map((f) => f.fileName));
    const targets = new Map<string, Uint8Array>();
    const maxTargets = Math.max(policy.roles.targets.maxBytes, policy.roles.delegated.maxBytes, policy.roles.ci.maxBytes);
    await mapLimit(Object.entries(snap.md.signed.meta), 16, async ([name, meta]) => {
      const role = name.slice(0, -'.json'.length);
      const fileName = metadataFileName(role, meta.version);
      const bytes = previous?.files.get(fileName) ?? (stored.has(fileName) ? await this.#readFile(repository, fileName, maxTargets) : undefined);
      if (bytes) targets.set(role, bytes);
    });
    const { state, problems } = loadRepositoryState({ roots, timestamp: tsBytes, snapshot: snapBytes, targets }, policy);
    if (problems.length > 0) this.#d.logger.warn({ repository, problems }, 'repository loaded with unverifiable roles kept as tombstones');
    return RepositoryService.#headOf(state);
  }

  /** The cached head, loading it once if needed (concurrent callers share the load). */
  async #head(repository: string): Promise<Head> {
    const cached = this.#heads.get(repository);
    if (cached) {
      this.#touch(repository, cached);
      return cached;
    }
    let pending = this.#loading.get(repository);
    if (!pending) {
      const previous = this.#superseded.get(repository);
      this.#superseded.delete(repository);
      pending = this.#loadHead(repository, previous).then(async (h) => {
        // A peer announced a newer head while this load was under way: load again (incrementally)
        // rather than cache what is already superseded.
        if ((this.#announced.get(repository) ?? 0) > h.timestampVersion) h = await this.#loadHead(repository, h);
        return this.#remember(repository, h);
      });
      this.#loading.set(repository, pending);
      pending.finally(() => this.#loading.delete(repository)).catch(() => {});
    }
    return pending;
  }

  /** Under the lock: the head as the store has it now. */
  async #freshHead(repository: string): Promise<Head | undefined> {
    let tsBytes: Uint8Array;
    try {
      tsBytes = await this.#readFile(repository, 'timestamp.json', this.#d.policy.roles.timestamp.maxBytes);
    } catch (e) {
      if (isStorageError(e, 'NOT_FOUND')) return undefined;
      throw e;
    }
    const cached = this.#heads.get(repository);
    const current = cached?.files.get('timestamp.json');
    if (cached && current && Buffer.from(current).equals(Buffer.from(tsBytes))) return cached;
    const previous = cached ?? this.#superseded.get(repository);
    this.#superseded.delete(repository);
    return this.#remember(repository, await this.#loadHead(repository, previous, tsBytes));
  }

  // ---------------------------------------------------------------- reads

  /** A current file already in the cache, or undefined (no I/O): the read fast path. */
  cachedFile(repository: string, fileName: string): ServedFile | undefined {
    const head = this.#heads.get(repository);
    const bytes = head?.files.get(fileName);
    if (!head || !bytes) return undefined;
    let etag = head.etags.get(fileName);
    if (!etag) {
      etag = `"${createHash('sha256').update(bytes).digest('hex')}"`;
      head.etags.set(fileName, etag);
    }
    return { bytes, etag, immutable: fileName !== 'timestamp.json' };
  }

  /** A metadata file by its TUF name, from the cache of current files or the store. */
  async read(repository: string, fileName: string): Promise<ServedFile> {
    const parsed = parseMetadataFileName(fileName);
    if (!parsed) throw new ServiceError('NOT_FOUND', `${fileName} is not a TUF metadata file name`, { detail: { repository, fileName } });
    const head = await this.#head(repository);
    const bytes = head.files.get(fileName);
    const immutable = fileName !== 'timestamp.json';
    if (bytes) {
      let etag = head.etags.get(fileName);
      if (!etag) {
        etag = `"${createHash('sha256').update(bytes).digest('hex')}"`;
        head.etags.set(fileName, etag);
      }
      return { bytes, etag, immutable };
    }
    if (!immutable || parsed.version === undefined) throw new ServiceError('NOT_FOUND', `${fileName} not found in ${repository}`, { detail: { repository, fileName } });
    // An older version (e.g. a root the client walks through): immutable, read through.
    const max = parsed.role === 'root' ? this.#d.policy.roles.root.maxBytes : Math.max(this.#d.policy.roles.snapshot.maxBytes, this.#d.policy.roles.delegated.maxBytes);
    try {
      const old = await this.#readFile(repository, fileName, max);
      return { bytes: old, etag: `"${createHash('sha256').update(old).digest('hex')}"`, immutable };
    } catch (e) {
      if (isStorageError(e, 'NOT_FOUND')) throw new ServiceError('NOT_FOUND', `${fileName} not found in ${repository}`, { detail: { repository, fileName } });
      throw e;
    }
  }

  /** Image repositories with TUF metadata in the store. */
  async repositories(): Promise<string[]> {
    return this.#d.metadata.listRepositories();
  }

  async status(repository: string): Promise<RepositoryStatus> {
    const { state } = await this.#head(repository);
    const now = this.#d.clock();
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
    for (const [role, rec] of state.targets) {
      let keyids: string[] = [];
      let threshold = 0;
      try {
        const d = delegationOf(state, role);
        keyids = [...d.keyIDs];
        threshold = d.threshold;
      } catch {
        // unreachable role: no current delegation
      }
      add(role, rec.md.signed.version, rec.md.signed.expires, keyids, threshold, 'offline');
    }
    return { repository, roles, tombstones: [...state.tombstones].map(([role, version]) => ({ role, version })) };
  }

  // ---------------------------------------------------------------- writes

  async #withLock<T>(repository: string, fn: (lock: Lock) => Promise<T>): Promise<T> {
    if (this.#closing) throw new ServiceError('SHUTTING_DOWN', 'the service is shutting down', { detail: { repository } });
    const lock = await this.#d.coord.acquire(repository, { ttlMs: this.#lockTtlMs, waitMs: this.#lockWaitMs });
    if (!lock) {
      throw new CoordError('BUSY', `${repository} is being written by another request; retry`, { detail: { repository, retryAfterSeconds: 1 } });
    }
    const run = (async () => {
      try {
        return await fn(lock);
      } finally {
        await lock.release().catch((e: unknown) => this.#d.logger.warn({ repository, err: e }, 'lock release failed'));
      }
    })();
    this.#inflight.add(run);
    try {
      return await run;
    } finally {
      this.#inflight.delete(run);
    }
  }

  /** Write role files, then snapshot, then (fence checked) timestamp; update cache and peers. */
  async #commit(repository: string, lock: Lock, state: RepoState, roleFiles: MetadataFile[], online: OnlineResult): Promise<Head> {
    const ts = online.files.find((f) => f.name === 'timestamp.json');
    const rest = online.files.filter((f) => f.name !== 'timestamp.json');
    // Every file here carries a version above what the trusted head references (the engine checked
    // that under this lock), so a same-named file in the store is an orphan of a commit that never
    // moved the timestamp: it may be replaced instead of blocking that version forever.
    const files = [...roleFiles, ...rest.map((f) => ({ fileName: f.name, bytes: f.bytes }))];
    if (!(await lock.isCurrent({ minRemainingMs: 2_000 }))) {
      throw new CoordError('LOCK_LOST', `the write lock on ${repository} expired before the files could be written; retry`, { detail: { repository } });
    }
    await this.#d.metadata.publish(repository, files, { replaceable: new Set(files.map((f) => f.fileName).filter((n) => n !== '1.root.json' && n !== '1.targets.json')) });
    if (!ts) throw new EngineError('NO_SNAPSHOT', 'no timestamp produced', { detail: { repository } });
    if (!(await lock.isCurrent({ minRemainingMs: 1_000 }))) {
      throw new CoordError('LOCK_LOST', `the write lock on ${repository} expired before the timestamp could move; retry`, { detail: { repository } });
    }
    await this.#d.metadata.writeMetadata(repository, 'timestamp.json', ts.bytes);
    const head = this.#remember(repository, RepositoryService.#headOf(online.state));
    await this.#announce(repository, head, state);
    return head;
  }

  async #announce(repository: string, head: Head, _prev: RepoState): Promise<void> {
    try {
      await this.#d.coord.publishHead(repository, head.timestampVersion);
      await this.#d.coord.scheduleRefresh(repository, this.nextRefreshAt(head.state));
    } catch (e) {
      // Redis holds nothing that cannot be lost: the write is already durable in the store.
      this.#d.logger.warn({ repository, err: e }, 'could not announce the new head to the coordinator');
    }
  }

  #online(): { now: number; policy: Policy; signers: OnlineSigners } {
    return { now: this.#d.clock(), policy: this.#d.policy, signers: this.#d.signers };
  }

  #ctx(): { now: number; policy: Policy; onlineKeys: TufKeyJson[] } {
    return { now: this.#d.clock(), policy: this.#d.policy, onlineKeys: this.#allOnlineKeys() };
  }

  #result(repository: string, role: string, version: number, head: Head, unchanged: boolean, extra: Partial<UploadResult> = {}): UploadResult {
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

  /** Create a repository from owner-signed 1.root.json and 1.targets.json. */
  async create(repository: string, rootBytes: Uint8Array, targetsBytes: Uint8Array): Promise<UploadResult> {
    this.#d.metadata.metadataRepository(repository); // validates the name before anything else
    return this.#withLock(repository, async (lock) => {
      const existing = await this.#freshHead(repository);
      if (existing) {
        const same =
          bytesEqual(existing.files.get('1.root.json') ?? (await this.#storedOrUndefined(repository, '1.root.json')), rootBytes) &&
          bytesEqual(await this.#storedOrUndefined(repository, '1.targets.json'), targetsBytes);
        if (same) return this.#result(repository, 'root', 1, existing, true);
        throw new ServiceError('REPO_EXISTS', `${repository} already exists`, { detail: { repository } });
      }
      const state = verifyNewRepository(rootBytes, targetsBytes, this.#ctx());
      const online = await produceSnapshotAndTimestamp(state, this.#online());
      const head = await this.#commit(
        repository,
        lock,
        state,
        [
          { fileName: '1.root.json', bytes: rootBytes },
          { fileName: '1.targets.json', bytes: targetsBytes },
        ],
        online,
      );
      this.#d.logger.info({ repository }, 'repository created');
      return this.#result(repository, 'root', 1, head, false);
    });
  }

  async #storedOrUndefined(repository: string, fileName: string): Promise<Uint8Array | undefined> {
    try {
      return await this.#readFile(repository, fileName, this.#d.policy.roles.targets.maxBytes);
    } catch (e) {
      if (isStorageError(e, 'NOT_FOUND')) return undefined;
      throw e;
    }
  }

  /**
   * Upload a new version of a role: `fileName` is `<version>.<role>.json`; `root`
   * rotates the root, anything else is top-level targets or a delegated role.
   */
  async upload(repository: string, fileName: string, bytes: Uint8Array, roleClass: 'delegated' | 'ci' = 'delegated'): Promise<UploadResult> {
    const name = parseMetadataFileName(fileName);
    if (!name || name.version === undefined || name.role === 'snapshot' || name.role === 'timestamp') {
      throw new ServiceError('BAD_REQUEST', `upload to <version>.<role>.json of root, targets or a delegated role, not ${fileName.slice(0, 120)}`, {
        detail: { repository, fileName: fileName.slice(0, 200) },
      });
    }
    const { role, version } = name as { role: string; version: number };
    return this.#withLock(repository, async (lock) => {
      const head = await this.#freshHead(repository);
      if (!head) throw new ServiceError('REPO_NOT_FOUND', `no TUF repository ${repository}`, { detail: { repository } });
      const current = role === 'root' ? head.state.root.md.signed.version : (head.state.targets.get(role)?.md.signed.version ?? head.state.tombstones.get(role) ?? 0);
      if (version <= current) {
        const stored = head.files.get(fileName) ?? (await this.#storedOrUndefined(repository, fileName));
        if (stored && bytesEqual(stored, bytes)) return this.#result(repository, role, version, head, true);
        throw new ServiceError('VERSION_TAKEN', `${role} version ${version} is taken (current ${current}); upload version ${current + 1}`, {
          detail: { repository, role, version, current },
        });
      }
      const ctx = this.#ctx();
      let state: RepoState;
      let verification: VerificationResult | undefined;
      let warnings: string[] | undefined;
      const onParsed = (parsed: number): void => {
        if (parsed !== version) {
          throw new ServiceError('NAME_MISMATCH', `${fileName} holds ${role} version ${parsed}`, { detail: { repository, fileName, version: parsed } });
        }
      };
      if (role === 'root') {
        const r = verifyRootUpload(head.state, bytes, ctx, { onParsed });
        ({ state, warnings } = r);
        verification = r.verification.current;
      } else {
        const r = verifyTargetsUpload(head.state, role, bytes, ctx, { roleClass, onParsed });
        ({ state, verification } = r);
      }
      const online = await produceSnapshotAndTimestamp(state, this.#online());
      const next = await this.#commit(repository, lock, head.state, [{ fileName, bytes }], online);
      this.#d.logger.info({ repository, role, version }, 'role uploaded');
      return this.#result(repository, role, version, next, false, { verification, ...(warnings?.length ? { warnings } : {}) });
    });
  }

  // ---------------------------------------------------------------- refresh

  /** When the online roles of `state` must be re-signed next (policy margins before expiry). */
  nextRefreshAt(state: RepoState): number {
    const { refresh } = this.#d.policy;
    const ts = state.timestamp ? parseExpires(state.timestamp.md.signed.expires) - refresh.timestampMarginMinutes * MINUTE : 0;
    const ss = state.snapshot ? parseExpires(state.snapshot.md.signed.expires) - refresh.snapshotMarginMinutes * MINUTE : 0;
    return Math.min(ts, ss);
  }

  /**
   * Re-sign the online roles of one repository if they are within their
   * refresh margin (snapshot too when it is). Returns the next refresh time.
   */
  async refresh(repository: string): Promise<number> {
    return this.#withLock(repository, async (lock) => {
      const head = await this.#freshHead(repository);
      if (!head) return Number.POSITIVE_INFINITY;
      const now = this.#d.clock();
      const { refresh } = this.#d.policy;
      const snapDue = !head.state.snapshot || parseExpires(head.state.snapshot.md.signed.expires) - refresh.snapshotMarginMinutes * MINUTE <= now;
      const tsDue = !head.state.timestamp || parseExpires(head.state.timestamp.md.signed.expires) - refresh.timestampMarginMinutes * MINUTE <= now;
      if (!snapDue && !tsDue) return this.nextRefreshAt(head.state);
      const online = snapDue ? await produceSnapshotAndTimestamp(head.state, this.#online()) : await produceTimestamp(head.state, this.#online());
      const next = await this.#commit(repository, lock, head.state, [], online);
      this.#d.logger.info({ repository, snapshot: snapDue, timestampVersion: next.timestampVersion }, 'online roles re-signed');
      return this.nextRefreshAt(next.state);
    });
  }

  /** One scheduler tick: claim due repositories (exactly once across instances) and refresh them. */
  async refreshDue(limit = 16): Promise<number> {
    const claims = await this.#d.coord.claimDueRefreshes(this.#d.clock(), { limit, leaseMs: this.#lockTtlMs * 2 });
    let done = 0;
    for (const claim of claims) {
      const { repository } = claim;
      try {
        const next = await this.refresh(repository);
        await this.#d.coord.completeRefresh(claim, next);
        done++;
      } catch (e) {
        this.#d.logger.error({ repository, err: e }, 'refresh failed; it will be retried when its lease ends');
      }
    }
    return done;
  }

  /** Put a repository on the refresh schedule (used at start-up for every stored repository). */
  async track(repository: string): Promise<void> {
    const head = await this.#head(repository);
    await this.#d.coord.scheduleRefresh(repository, this.nextRefreshAt(head.state));
  }

  /** Seconds to expiry per role, for metrics. */
  expiries(): Array<{ repository: string; role: string; seconds: number }> {
    const now = this.#d.clock();
    const out: Array<{ repository: string; role: string; seconds: number }> = [];
    for (const [repository, head] of this.#heads) {
      const s = head.state;
      const push = (role: string, expires: string | undefined): void => {
        if (expires) out.push({ repository, role, seconds: Math.floor((parseExpires(expires) - now) / 1000) });
      };
      push('root', s.root.md.signed.expires);
      push('timestamp', s.timestamp?.md.signed.expires);
      push('snapshot', s.snapshot?.md.signed.expires);
      push('targets', s.targets.get('targets')?.md.signed.expires);
    }
    return out;
  }

  /** Stop accepting writes and wait for the ones in flight. */
  async close(): Promise<void> {
    this.#closing = true;
    await Promise.allSettled([...this.#inflight]);
    for (const u of this.#unsubscribe) u();
  }
}

function bytesEqual(a: Uint8Array | undefined, b: Uint8Array): boolean {
  return a !== undefined && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i] as T);
    }
  });
  await Promise.all(workers);
  return out;
}
