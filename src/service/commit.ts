/**
 * The commit under a repository's write lock.
 *
 * - `locked` runs work under the coordinator's lock (BUSY when it cannot be had in time); the
 *   keyring is synced first (a peer may have added an online key set a root now lists).
 * - `commit` writes role files, then snapshot, then — after checking the lock is still current
 *   with time to spare — `timestamp.json`, last: a reader never sees a timestamp naming a file
 *   that is not there. Then the new head is cached, announced to peers and its refresh scheduled.
 * - A lock released while another acquirer waited is remembered (`takeHandOff`), so the next
 *   batch of this instance can let that acquirer go first.
 * - `close` refuses new locked work (SHUTTING_DOWN) and waits for what runs.
 */
import { memberOf } from '../engine/scope.ts';
import { EngineError, type OnlineResult, type RepoState } from '../engine/index.ts';
import type { OnlineKeyring } from '../keys/online-keyring.ts';
import type { MetadataFile, MetadataStore } from '../storage/index.ts';
import { CoordError, type Coordinator, type Lock } from '../coord/index.ts';
import { ServiceError } from './errors.ts';
import { headOf, type Head, type HeadCache } from './head-cache.ts';
import type { Logger } from './logger.ts';

export interface CommitDeps {
  metadata: MetadataStore;
  coord: Coordinator;
  keyring: OnlineKeyring;
  heads: HeadCache;
  logger: Logger;
  /** When the committed state must be refreshed next (scheduled with the announcement). */
  nextRefreshAt: (repository: string, state: RepoState) => number;
  lockTtlMs: number;
  lockWaitMs: number;
}

export class Committer {
  readonly #d: CommitDeps;
  readonly #inflight = new Set<Promise<unknown>>();
  /** Repositories whose last lock release found another acquirer waiting. */
  readonly #handOff = new Set<string>();
  #closing = false;

  constructor(deps: CommitDeps) {
    this.#d = deps;
  }

  get closing(): boolean {
    return this.#closing;
  }

  /** SHUTTING_DOWN once `close` was called. */
  refuseWhenClosing(repository: string): void {
    if (this.#closing) throw new ServiceError('SHUTTING_DOWN', 'the service is shutting down', { detail: { repository } });
  }

  /** Whether the last lock release on `repository` found another acquirer waiting (and forget it). */
  takeHandOff(repository: string): boolean {
    return this.#handOff.delete(repository);
  }

  /** Run `fn` under the repository's write lock, unless the service is shutting down. */
  async withLock<T>(repository: string, fn: (lock: Lock) => Promise<T>): Promise<T> {
    this.refuseWhenClosing(repository);
    return this.locked(repository, fn);
  }

  /** Run `fn` under the repository's write lock (no shutdown check: queued writes still finish). */
  async locked<T>(repository: string, fn: (lock: Lock) => Promise<T>): Promise<T> {
    const lock = await this.#d.coord.acquire(repository, { ttlMs: this.#d.lockTtlMs, waitMs: this.#d.lockWaitMs });
    if (!lock) {
      throw new CoordError('BUSY', `${repository} is being written by another request; retry`, { detail: { repository, retryAfterSeconds: 1 } });
    }
    const run = (async () => {
      try {
        await this.#d.keyring.sync(); // a peer may have added an online key set a root now lists
        return await fn(lock);
      } finally {
        await lock.release().catch((e: unknown) => this.#d.logger.warn({ repository, err: e }, 'lock release failed'));
        if (lock.waiters) this.#handOff.add(repository);
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
  async commit(repository: string, lock: Lock, roleFiles: readonly MetadataFile[], online: OnlineResult): Promise<Head> {
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
    await this.#d.metadata.writeMetadata(repository, 'timestamp.json', ts.bytes, { rootVersion: online.state.root.md.signed.version });
    const head = this.#d.heads.remember(repository, headOf(online.state, memberOf(online.state.root.md.signed, repository) !== undefined));
    await this.#announce(repository, head);
    return head;
  }

  async #announce(repository: string, head: Head): Promise<void> {
    try {
      await this.#d.coord.publishHead(repository, head.timestampVersion);
      await this.#d.coord.scheduleRefresh(repository, this.#d.nextRefreshAt(repository, head.state));
    } catch (e) {
      // Redis holds nothing that cannot be lost: the write is already durable in the store.
      this.#d.logger.warn({ repository, err: e }, 'could not announce the new head to the coordinator');
    }
  }

  /** Refuse new locked work and wait for the work under way (and `also`, e.g. the write queue's drainers). */
  async close(also: Promise<unknown>[] = []): Promise<void> {
    this.#closing = true;
    await Promise.allSettled([...this.#inflight, ...also]);
  }
}
