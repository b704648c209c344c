/**
 * The service's cache of each repository's current files (its *head*), bounded in bytes.
 *
 * - A head is loaded by re-verifying the stored files from `1.root.json` (engine/load.ts; a
 *   namespace member's roots are its anchor's), and
 *   reloaded incrementally from a previous head: only files whose versions changed are read.
 * - Concurrent readers of a head not cached share one load.
 * - A peer's announcement of a newer timestamp drops the cached head but keeps it (superseded) as
 *   the base of the next, incremental, load; a load that overlapped such an announcement is
 *   loaded again instead of cached.
 * - `fresh` is the writer's read under the lock: the head as the store has it now (the store,
 *   not the cache or the coordinator, is the truth).
 * - Least recently used heads are evicted beyond the byte bound; an evicted head is reloaded on
 *   demand.
 */
import { createHash } from 'node:crypto';
import { EngineError, loadRepositoryState, metadataFileName, parseMetadata, type LoadResult, type RepoState } from '../engine/index.ts';
import { anchorPrefix, isNamespaceScope, namedNamespace, namesMember, namespaceAnchor, scopeCovers } from '../engine/scope.ts';
import type { Policy } from '../policy/policy.ts';
import { isStorageError, type MetadataStore } from '../storage/index.ts';
import { mapLimit } from '../util/map-limit.ts';
import { ServiceError } from './errors.ts';
import type { Logger } from './logger.ts';

export interface Head {
  state: RepoState;
  timestampVersion: number;
  /** Every current file by name (root chain head, targets files, snapshot, timestamp). */
  files: Map<string, Uint8Array>;
  etags: Map<string, string>;
  bytes: number;
}

/** The head of a verified state: its current files by name. */
export function headOf(state: RepoState, member = false): Head {
  const files = new Map<string, Uint8Array>();
  const root = state.root;
  // A member's root is its namespace's: served at the anchor, never under the member's name (a
  // member moved in from a root of its own keeps that chain's files under its name).
  if (!member) files.set(metadataFileName('root', root.md.signed.version), root.bytes);
  for (const [role, rec] of state.targets) files.set(metadataFileName(role, rec.md.signed.version), rec.bytes);
  if (state.snapshot) files.set(metadataFileName('snapshot', state.snapshot.md.signed.version), state.snapshot.bytes);
  if (state.timestamp) files.set('timestamp.json', state.timestamp.bytes);
  let bytes = 0;
  for (const b of files.values()) bytes += b.byteLength;
  return { state, timestampVersion: state.timestamp?.md.signed.version ?? 0, files, etags: new Map(), bytes };
}

/** The ETag of `bytes`, a current file of `head` (computed once per file). */
export function headEtag(head: Head, fileName: string, bytes: Uint8Array): string {
  let etag = head.etags.get(fileName);
  if (!etag) {
    etag = etagOf(bytes);
    head.etags.set(fileName, etag);
  }
  return etag;
}

export function etagOf(bytes: Uint8Array): string {
  return `"${createHash('sha256').update(bytes).digest('hex')}"`;
}

/**
 * A member's state: its files under the newest root of the namespace that verifies them. Between
 * a rotation of the namespace's online keys at the anchor and the member's re-signing
 * (RepositoryService#syncNamespace) its timestamp is signed under an earlier root of the chain.
 */
function loadMember(roots: Uint8Array[], timestamp: Uint8Array, snapshot: Uint8Array, targets: Map<string, Uint8Array>, policy: Policy): LoadResult {
  for (let n = roots.length; ; n--) {
    try {
      return loadRepositoryState({ roots: roots.slice(0, n), timestamp, snapshot, targets }, policy);
    } catch (error) {
      if (n <= 1 || !(error instanceof EngineError)) throw error;
    }
  }
}

export interface HeadCacheDeps {
  metadata: MetadataStore;
  policy: Policy;
  logger: Logger;
  /** Bound of the cache, in bytes of metadata held. */
  cacheBytes: number;
}

/** Announced versions and superseded heads kept at most (oldest dropped first). */
const ANNOUNCED_ENTRIES = 4096;
const SUPERSEDED_ENTRIES = 256;

export class HeadCache {
  readonly #d: HeadCacheDeps;
  readonly #heads = new Map<string, Head>();
  readonly #loading = new Map<string, Promise<Head>>();
  /** Heads dropped because a peer moved on: kept to make the next load incremental. */
  readonly #superseded = new Map<string, Head>();
  /** The newest timestamp version announced by peers, per repository. */
  readonly #announced = new Map<string, number>();
  #cached = 0;

  constructor(deps: HeadCacheDeps) {
    this.#d = deps;
  }

  /** The cached head, if any, without loading or touching it (no I/O). */
  peek(repository: string): Head | undefined {
    return this.#heads.get(repository);
  }

  /** Every cached head. */
  entries(): IterableIterator<[string, Head]> {
    return this.#heads.entries();
  }

  /** The cached head, loading it once if needed (concurrent callers share the load). */
  async head(repository: string): Promise<Head> {
    const cached = this.#heads.get(repository);
    if (cached) {
      this.#heads.delete(repository); // most recently used last
      this.#heads.set(repository, cached);
      return cached;
    }
    let pending = this.#loading.get(repository);
    if (!pending) {
      const previous = this.#superseded.get(repository);
      this.#superseded.delete(repository);
      pending = this.#load(repository, previous).then(async (h) => {
        // A peer announced a newer head while this load was under way: load again (incrementally)
        // rather than cache what is already superseded.
        if ((this.#announced.get(repository) ?? 0) > h.timestampVersion) h = await this.#load(repository, h);
        return this.remember(repository, h);
      });
      this.#loading.set(repository, pending);
      pending.finally(() => this.#loading.delete(repository)).catch(() => {});
    }
    return pending;
  }

  /** Under the lock: the head as the store has it now; undefined when the repository has no timestamp. */
  async fresh(repository: string): Promise<Head | undefined> {
    let tsBytes: Uint8Array;
    try {
      tsBytes = await this.read(repository, 'timestamp.json', this.#d.policy.roles.timestamp.maxBytes);
    } catch (e) {
      if (isStorageError(e, 'NOT_FOUND')) return undefined;
      throw e;
    }
    const cached = this.#heads.get(repository);
    const current = cached?.files.get('timestamp.json');
    if (cached && current && Buffer.from(current).equals(Buffer.from(tsBytes))) return cached;
    const previous = cached ?? this.#superseded.get(repository);
    this.#superseded.delete(repository);
    return this.remember(repository, await this.#load(repository, previous, tsBytes));
  }

  /** Cache `head` as the current head of `repository`, evicting least recently used heads beyond the bound. */
  remember(repository: string, head: Head): Head {
    this.evict(repository);
    this.#heads.set(repository, head);
    this.#cached += head.bytes;
    // Map keeps insertion order: the first entries are the least recently used.
    for (const [name, h] of this.#heads) {
      if (this.#cached <= this.#d.cacheBytes || name === repository) break;
      this.#heads.delete(name);
      this.#cached -= h.bytes;
    }
    return head;
  }

  evict(repository: string): void {
    const head = this.#heads.get(repository);
    if (!head) return;
    this.#heads.delete(repository);
    this.#cached -= head.bytes;
  }

  /** Drop every cached head (missed announcements); returns the repositories that were cached. */
  evictAll(): string[] {
    const repos = [...this.#heads.keys()];
    for (const r of repos) this.evict(r);
    return repos;
  }

  /** A peer announced timestamp `version` of `repository`: an older cached head is dropped (and kept as a base). */
  announced(repository: string, version: number): void {
    if (version > (this.#announced.get(repository) ?? 0)) {
      this.#announced.delete(repository);
      this.#announced.set(repository, version);
      if (this.#announced.size > ANNOUNCED_ENTRIES) this.#announced.delete(this.#announced.keys().next().value as string);
    }
    const head = this.#heads.get(repository);
    if (head && head.timestampVersion < version) {
      this.evict(repository);
      this.#superseded.set(repository, head);
      if (this.#superseded.size > SUPERSEDED_ENTRIES) this.#superseded.delete(this.#superseded.keys().next().value as string);
    }
  }

  /** A stored metadata file. */
  read(repository: string, fileName: string, maxBytes: number): Promise<Uint8Array> {
    return this.#d.metadata.readMetadata(repository, fileName, maxBytes);
  }

  /** A stored metadata file, or undefined when the store has none by that name. */
  async readOptional(repository: string, fileName: string, maxBytes = this.#d.policy.roles.targets.maxBytes): Promise<Uint8Array | undefined> {
    try {
      return await this.read(repository, fileName, maxBytes);
    } catch (e) {
      if (isStorageError(e, 'NOT_FOUND')) return undefined;
      throw e;
    }
  }

  /** Load (or reload incrementally from `previous`) the head of a repository from the store. */
  async #load(repository: string, previous?: Head, timestampBytes?: Uint8Array): Promise<Head> {
    const { policy } = this.#d;
    let tsBytes = timestampBytes;
    if (!tsBytes) {
      try {
        tsBytes = await this.read(repository, 'timestamp.json', policy.roles.timestamp.maxBytes);
      } catch (e) {
        if (isStorageError(e, 'NOT_FOUND')) throw new ServiceError('REPO_NOT_FOUND', `no TUF repository ${repository}`, { detail: { repository } });
        throw e;
      }
    }
    const ts = parseMetadata('timestamp', tsBytes, policy.roles.timestamp.maxBytes);
    // A member of a namespace (its timestamp names one, engine/scope.ts) keeps no root files: its
    // roots are the namespace's, at the anchor.
    // (Named by the timestamp itself, which must be this member's: another member's timestamp
    // put here does not make the loader read under its namespace.)
    const ns = namedNamespace(ts.md.signed);
    const member = isNamespaceScope(ns) && scopeCovers(ns, repository) && anchorPrefix(repository) !== ns && namesMember(ts.md.signed, repository, ns);
    const rootRepository = member ? namespaceAnchor(ns) : repository;
    const snapName = metadataFileName('snapshot', ts.md.signed.snapshotMeta.version);
    const snapBytes = previous?.files.get(snapName) ?? (await this.read(repository, snapName, policy.roles.snapshot.maxBytes));
    const snap = parseMetadata('snapshot', snapBytes, policy.roles.snapshot.maxBytes);
    const readRoot = (v: number): Promise<Uint8Array> => {
      const name = metadataFileName('root', v);
      const prev = previous && previous.state.root.md.signed.version >= v ? previous.files.get(name) : undefined;
      return prev ? Promise.resolve(prev) : this.read(rootRepository, name, policy.roles.root.maxBytes);
    };
    let roots: Uint8Array[];
    let stored: Set<string> | undefined;
    if (previous) {
      // Incremental: the roots up to the one already trusted, then probe for newer ones. Listing
      // every stored file (a registry tag list grows with the repository's whole history) is
      // only needed for a first load.
      const have = previous.state.root.md.signed.version;
      roots = await mapLimit(Array.from({ length: have }, (_, i) => i + 1), 8, readRoot);
      for (let v = have + 1; ; v++) {
        const next = await this.readOptional(rootRepository, metadataFileName('root', v), policy.roles.root.maxBytes);
        if (!next) break;
        roots.push(next);
      }
    } else {
      const listed = await this.#d.metadata.listMetadata(repository);
      const rootsListed = member ? await this.#d.metadata.listMetadata(rootRepository) : listed;
      const rootVersions = rootsListed.filter((f) => f.role === 'root' && f.version !== undefined).map((f) => f.version as number).sort((a, b) => a - b);
      roots = await mapLimit(rootVersions, 8, readRoot);
      stored = new Set(listed.map((f) => f.fileName));
    }
    const targets = new Map<string, Uint8Array>();
    const maxTargets = Math.max(policy.roles.targets.maxBytes, policy.roles.delegated.maxBytes, policy.roles.ci.maxBytes);
    await mapLimit(Object.entries(snap.md.signed.meta), 16, async ([name, meta]) => {
      const role = name.slice(0, -'.json'.length);
      const fileName = metadataFileName(role, meta.version);
      const bytes =
        previous?.files.get(fileName) ??
        (stored ? (stored.has(fileName) ? await this.read(repository, fileName, maxTargets) : undefined) : await this.readOptional(repository, fileName, maxTargets));
      if (bytes) targets.set(role, bytes);
    });
    const { state, problems } = member ? loadMember(roots, tsBytes, snapBytes, targets, policy) : loadRepositoryState({ roots, timestamp: tsBytes, snapshot: snapBytes, targets }, policy);
    if (problems.length > 0) this.#d.logger.warn({ repository, problems }, 'repository loaded with unverifiable roles kept as tombstones');
    return headOf(state, member);
  }
}
