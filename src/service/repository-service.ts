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
import { createHash, randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Targets } from '@tufjs/models';
import {
  EngineError,
  legacyKeyListings,
  loadRepositoryState,
  signingIds,
  metadataFileName,
  parseMetadata,
  produceSnapshotAndTimestamp,
  produceTimestamp,
  verifyNewRepository,
  verifyRootUpload,
  verifyTargetsUpload,
  type LegacyKeyListing,
  type OnlineResult,
  type RepoState,
  type VerificationResult,
} from '../engine/index.ts';
import { parseMetadataFileName } from '../engine/names.ts';
import { binsFor, buildTargets, isoExpiry, putDelegation, signParts, targetFile, type ImageTarget } from '../engine/build.ts';
import { checkTargetEntries } from '../engine/upload.ts';
import { foldJobs, heldBins, jobEndsAt, jobRoleName, jobsOf, serviceHeldRoles } from '../engine/jobs.ts';
import { signedFromJSON, signedToJSON } from '../engine/models.ts';
import { currentVersion } from '../engine/state.ts';
import { delegationChain, delegationOf, delegationsOf, resolveTarget } from '../engine/state.ts';
import { asJson } from '../engine/signatures.ts';
import { MetadataPrecheck, limitsFromPolicy, parseExpires, precheckMetadata } from '../engine/parse.ts';
import { computeKeyId, parsePublicKey, type TufKeyJson } from '../keys/tuf-key.ts';
import type { Policy } from '../policy/policy.ts';
import { isStorageError, type MetadataFile, type MetadataStore } from '../storage/index.ts';
import type { Coordinator, JsonObject, Lock } from '../coord/index.ts';
import { CoordError } from '../coord/index.ts';
import { ServiceError } from './errors.ts';
import type { GrantInfo, JobInfo, RepositoryStatus, RoleStatus, TagsResult, UploadResult } from '../api/types.ts';

export type { GrantInfo, JobInfo, RepositoryStatus, RoleStatus, TagsResult, UploadResult } from '../api/types.ts';
import { OnlineKeyring, type KeySetInfo, type OnlineSigners } from './online-keys.ts';

export type { OnlineSigners } from './online-keys.ts';

export interface Logger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

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

/** A batch of writes being applied under the lock (group commit, RepositoryService#write). */
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

interface QueuedWrite {
  step: (draft: Readonly<Draft>) => Promise<StepOutcome<unknown>>;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}

/** Writes committed together at most (bounds the time a batch holds the lock). */
const MAX_BATCH = 64;
/** Pause of a drainer that released the lock to a waiter, before it competes again. */
const HAND_OFF_MS = 15;
/** Writes waiting per repository at most; more are answered BUSY at once (bounds memory). */
const MAX_QUEUED = 1024;

const MINUTE = 60_000;
/** Uploads from this size on are prechecked in slices (#precheck); smaller ones cost under a slice anyway. */
const PRECHECK_BYTES = 64 * 1024;

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

export class RepositoryService {
  readonly #d: Required<Omit<RepositoryServiceDeps, 'lockTtlMs' | 'lockWaitMs' | 'cacheBytes' | 'signers'>>;
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
  /** Group commit: writes waiting per repository, and the repositories with a drainer running. */
  readonly #queues = new Map<string, QueuedWrite[]>();
  readonly #draining = new Set<string>();
  /** Repositories whose last lock release found another acquirer waiting. */
  readonly #handOff = new Set<string>();
  #closing = false;

  constructor(deps: RepositoryServiceDeps) {
    const keyring = deps.keyring ?? (deps.signers ? OnlineKeyring.fromSigners(deps.signers, deps.clock) : undefined);
    if (!keyring) throw new TypeError('RepositoryService needs a keyring or signers');
    this.#d = { metadata: deps.metadata, coord: deps.coord, keyring, policy: deps.policy, clock: deps.clock, logger: deps.logger };
    this.#lockTtlMs = deps.lockTtlMs ?? 30_000;
    this.#lockWaitMs = deps.lockWaitMs ?? 15_000;
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

  get keyring(): OnlineKeyring {
    return this.#d.keyring;
  }

  /**
   * Public keys of the current online key set for `repository` (what its owner puts in root for
   * snapshot and timestamp, and the CI key for service-held delegations). Derived sets give every
   * repository its own keys, so without a repository only shared sets have keys to show.
   */
  onlineKeys(repository?: string): { set: number; kind: 'derived' | 'shared'; snapshot: TufKeyJson[]; timestamp: TufKeyJson[]; ci: TufKeyJson[] } {
    if (repository !== undefined) this.#d.metadata.metadataRepository(repository); // validates the name
    const cur = this.#d.keyring.current(repository);
    const list = (role: 'snapshot' | 'timestamp' | 'ci'): TufKeyJson[] => (cur.keys[role] ? [cur.keys[role].key] : []);
    return { set: cur.id, kind: cur.kind, snapshot: list('snapshot'), timestamp: list('timestamp'), ci: list('ci') };
  }

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
    const readRoot = (v: number): Promise<Uint8Array> => {
      const name = metadataFileName('root', v);
      const prev = previous && previous.state.root.md.signed.version >= v ? previous.files.get(name) : undefined;
      return prev ? Promise.resolve(prev) : this.#readFile(repository, name, policy.roles.root.maxBytes);
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
        const next = await this.#readOptional(repository, metadataFileName('root', v), policy.roles.root.maxBytes);
        if (!next) break;
        roots.push(next);
      }
    } else {
      const listed = await this.#d.metadata.listMetadata(repository);
      const rootVersions = listed.filter((f) => f.role === 'root' && f.version !== undefined).map((f) => f.version as number).sort((a, b) => a - b);
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
        (stored ? (stored.has(fileName) ? await this.#readFile(repository, fileName, maxTargets) : undefined) : await this.#readOptional(repository, fileName, maxTargets));
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
    const held = new Set(serviceHeldRoles(state, this.#ciKeyIds(repository)).map((h) => h.role));
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
    return { repository, roles, tombstones: [...state.tombstones].map(([role, version]) => ({ role, version })), legacyKeyIds };
  }

  // ---------------------------------------------------------------- online keys

  /** The online key sets the repository's current root lists for snapshot and timestamp. */
  #setsOf(repository: string, state: RepoState): number[] {
    const root = state.root.md.signed;
    const ids = new Set<number>();
    for (const name of ['snapshot', 'timestamp'] as const) {
      for (const keyid of root.roles[name]?.keyIDs ?? []) {
        const key = root.keys[keyid];
        // Look up by the key's own id (a root may name a key under another id).
        const set = key ? this.#d.keyring.setOf(computeKeyId(asJson(key)), repository) : undefined;
        if (set) ids.add(set.id);
      }
    }
    return [...ids].sort((a, b) => a - b);
  }

  /** Per repository: which online key sets its root lists, and whether one is revoked or not current. */
  async onlineKeyUsage(): Promise<Array<{ repository: string; sets: number[]; onRevoked: boolean; onCurrent: boolean }>> {
    await this.#d.keyring.sync();
    const current = this.#d.keyring.current().id;
    const revoked = new Set(this.#d.keyring.sets().filter((s) => s.revoked).map((s) => s.id));
    const repos = await this.repositories();
    const rows = await mapLimit(repos, 8, async (repository) => {
      const sets = this.#setsOf(repository, (await this.#head(repository)).state);
      return { repository, sets, onRevoked: sets.some((id) => revoked.has(id)), onCurrent: sets.length > 0 && sets.every((id) => id === current) };
    });
    return rows;
  }

  /**
   * The online keys `repository`'s next root should list: the current set, or —
   * when its root already lists exactly that set — a freshly generated one
   * (`tufoci rotate online`). The service signs with a new set only once a root
   * listing it has been accepted.
   */
  async nextOnlineKeys(repository: string): Promise<{ set: KeySetInfo; generated: boolean }> {
    const head = await this.#head(repository);
    await this.#d.keyring.sync();
    const current = this.#d.keyring.current(repository);
    const sets = this.#setsOf(repository, head.state);
    if (sets.length === 1 && sets[0] === current.id) {
      await this.#d.keyring.rotate(current.id);
      const next = this.#d.keyring.current(repository);
      this.#d.logger.info({ repository, set: next.id }, 'generated a new online key set');
      return { set: next, generated: next.id !== current.id };
    }
    return { set: current, generated: false };
  }

  /**
   * Revoke a compromised online key set, named by number or by one of its key ids (8+ leading
   * hex digits; derived keys are found through the repositories that list them). Returns the
   * repositories whose root still lists the set.
   */
  async revokeOnlineKeys(ref: string, reason: string): Promise<{ revoked: KeySetInfo; current: KeySetInfo; affected: string[] }> {
    await this.#d.keyring.sync();
    let id: number | undefined = /^\d{1,6}$/.test(ref) ? Number(ref) : this.#d.keyring.sharedSetOf(ref);
    if (id === undefined && /^[0-9a-f]{8,64}$/.test(ref)) {
      for (const repository of await this.repositories()) {
        const root = (await this.#head(repository)).state.root.md.signed;
        const keyid = Object.keys(root.keys).find((k) => k.startsWith(ref));
        const key = keyid ? root.keys[keyid] : undefined;
        const set = key ? this.#d.keyring.setOf(computeKeyId(asJson(key)), repository) : undefined;
        if (set) {
          id = set.id;
          break;
        }
      }
    }
    if (id === undefined) throw new ServiceError('NOT_FOUND', `no online key set holds ${ref.slice(0, 64)}`, { detail: { ref: ref.slice(0, 64) } });
    const { revoked, current } = await this.#d.keyring.revoke(id, reason);
    this.#d.logger.warn({ set: revoked.id, reason: revoked.revoked?.reason }, 'online key set revoked');
    const usage = await this.onlineKeyUsage();
    return { revoked, current, affected: usage.filter((u) => u.sets.includes(revoked.id)).map((u) => u.repository) };
  }

  // ---------------------------------------------------------------- grants (job-scoped CI keys)

  /** Key ids of the service's CI keys (every set): delegations to only these are service-held. */
  #ciKeyIds(repository: string): Set<string> {
    return this.#d.keyring.ciKeyIds(repository);
  }

  /**
   * Re-sign service-held role `role` at its next version with `edit` applied,
   * verify it like any upload, and return the new state and file.
   */
  async #signServiceRole(repository: string, state: RepoState, role: string, edit: (json: Record<string, unknown>) => void): Promise<{ state: RepoState; file: MetadataFile }> {
    const held = serviceHeldRoles(state, this.#ciKeyIds(repository)).find((r) => r.role === role);
    if (!held) throw new ServiceError('NOT_SERVICE_HELD', `"${role}" is not delegated to the service's CI key`, { detail: { role } });
    const now = this.#d.clock();
    const expires = isoExpiry(now + this.#d.policy.roles.snapshot.expiresDefaultMinutes * MINUTE);
    const rec = state.targets.get(role);
    // signedToJSON builds fresh top-level objects; `edit` replaces target entries and delegations
    // rather than changing nested objects in place (foldJobs, putDelegation, tag edits), so only
    // the delegations (which putDelegation reads from) are copied, not every target entry.
    const json = signedToJSON(rec?.md.signed ?? buildTargets({ version: 1, expires }));
    if (json['delegations'] !== undefined) json['delegations'] = structuredClone(json['delegations']);
    edit(json);
    json['version'] = currentVersion(state, role) + 1;
    json['expires'] = expires;
    const signed = signedFromJSON('targets', json) as Targets;
    // Under the id(s) the delegation lists: a delegation written before the key id fix lists an ECDSA key under its legacy id.
    const signers = this.#d.keyring.signers(repository).ci.filter((s) => signingIds(s.public, held.keyIDs).some((id) => held.keyIDs.includes(id)));
    const parts = await signParts(signed, signers, { trustedIds: held.keyIDs });
    const r = verifyTargetsUpload(state, role, parts.bytes, this.#ctx(repository), { parsed: parts });
    return { state: r.state, file: { fileName: `${signed.version}.${role}.json`, bytes: parts.bytes } };
  }

  /**
   * Sign `tags` into service-held role `role`: into the role itself, or, when its delegation asks
   * for hash bins (`x-tufoci-bins`), into the bins it delegates to. The first time, the role is
   * given the bins delegation (the service's keys and the delegation's threshold) and the tags it
   * listed move into their bins, all in the same commit (clients see one snapshot with both).
   * Returns the signed files in the order they must be verified, with the state after each.
   */
  async #signTags(repository: string, state: RepoState, role: string, tags: ReadonlyMap<string, ImageTarget>): Promise<Array<{ state: RepoState; file: MetadataFile }>> {
    const entries = (m: ReadonlyMap<string, ImageTarget> | Record<string, unknown>) => (m instanceof Map ? [...m].map(([t, x]) => [t, targetFile(t, x).toJSON()] as const) : Object.entries(m));
    let bins = heldBins(state, role);
    if (bins === undefined) {
      // A role that would outgrow one file moves to hash bins the service sets up itself, rather
      // than refusing the tags (publishTags refused them already if job roles keep it from that).
      const listed = Object.keys(state.targets.get(role)?.md.signed.targets ?? {});
      const total = new Set([...listed, ...tags.keys()]).size;
      if (total > this.#d.policy.limits.maxTargetsPerRole && jobsOf(state.targets.get(role)?.md.signed).length === 0) {
        bins = Math.max(2, binsFor(4 * total, this.#d.policy.bins.max));
      }
    }
    if (bins === undefined) {
      return [
        await this.#signServiceRole(repository, state, role, (json) => {
          const listed = json['targets'] as Record<string, unknown>;
          for (const [tag, target] of entries(tags)) listed[tag] = target;
        }),
      ];
    }
    const out: Array<{ state: RepoState; file: MetadataFile }> = [];
    const moved: Record<string, unknown> = {};
    let current = state;
    let succinct = current.targets.get(role)?.md.signed.delegations?.succinctRoles;
    if (!succinct) {
      if (jobsOf(current.targets.get(role)?.md.signed).length > 0) {
        throw new ServiceError('BAD_REQUEST', `"${role}" has job roles delegated; it moves to hash bins once their grants have ended`, { detail: { repository, role } });
      }
      const held = serviceHeldRoles(current, this.#ciKeyIds(repository)).find((r) => r.role === role);
      const listed = held?.keyIDs ?? [];
      const keys = this.#d.keyring.signers(repository).ci.map((s) => s.public).filter((k) => signingIds(k, listed).some((id) => listed.includes(id)));
      const built = buildTargets({ version: 1, expires: isoExpiry(0), bins: { namePrefix: role, bins, keys, threshold: held?.threshold ?? 1 } });
      const signed = await this.#signServiceRole(repository, current, role, (json) => {
        Object.assign(moved, json['targets']);
        json['targets'] = {};
        json['delegations'] = (built.toJSON() as Record<string, unknown>)['delegations'];
      });
      out.push(signed);
      current = signed.state;
      succinct = current.targets.get(role)?.md.signed.delegations?.succinctRoles;
      if (!succinct) throw new ServiceError('BAD_REQUEST', `"${role}" could not be given its hash bins`, { detail: { repository, role } });
    }
    const byBin = new Map<string, Array<readonly [string, unknown]>>();
    for (const entry of [...entries(moved), ...entries(tags)]) {
      const bin = succinct.getRoleForTarget(entry[0]);
      const list = byBin.get(bin) ?? [];
      list.push(entry);
      byBin.set(bin, list);
    }
    for (const [bin, list] of byBin) {
      const total = Object.keys(current.targets.get(bin)?.md.signed.targets ?? {}).length + list.length;
      if (total > this.#d.policy.limits.maxTargetsPerRole) {
        throw new EngineError('POLICY_VIOLATION', `${bin} would list ${total} targets, above the limit of ${this.#d.policy.limits.maxTargetsPerRole}`, {
          detail: { role: bin, count: total, limit: this.#d.policy.limits.maxTargetsPerRole },
        });
      }
      const signed = await this.#signServiceRole(repository, current, bin, (json) => {
        const listed = json['targets'] as Record<string, unknown>;
        for (const [tag, target] of list) listed[tag] = target;
      });
      out.push(signed);
      current = signed.state;
    }
    return out;
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
    const head = await this.#head(repository);
    if (!serviceHeldRoles(head.state, this.#ciKeyIds(repository)).some((r) => r.role === role)) {
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
    const grant = { repository, role, paths: opts.paths, endsAt };
    if (!(await this.#d.coord.putGrant(grantKey('grant', token), grant, opts.ttlMs))) {
      throw new ServiceError('BAD_REQUEST', 'grant id collision; retry', { detail: {} });
    }
    this.#d.logger.info({ repository, role, paths: opts.paths, endsAt: new Date(endsAt).toISOString() }, 'grant issued');
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

  /** Service-held roles of `state` that need re-signing at `now`: ended jobs to fold, or near expiry. */
  #dueServiceRoles(repository: string, state: RepoState, now: number): Array<{ role: string; ended: string[] }> {
    const margin = this.#d.policy.refresh.snapshotMarginMinutes * MINUTE;
    const out: Array<{ role: string; ended: string[] }> = [];
    for (const { role } of serviceHeldRoles(state, this.#ciKeyIds(repository))) {
      const rec = state.targets.get(role);
      if (!rec) continue; // never signed yet: nothing to keep fresh
      const ended = jobsOf(rec.md.signed).filter((j) => j.endsAt <= now).map((j) => j.role);
      if (ended.length || parseExpires(rec.md.signed.expires) - margin <= now) out.push({ role, ended });
    }
    return out;
  }

  // ---------------------------------------------------------------- writes

  async #withLock<T>(repository: string, fn: (lock: Lock) => Promise<T>): Promise<T> {
    if (this.#closing) throw new ServiceError('SHUTTING_DOWN', 'the service is shutting down', { detail: { repository } });
    return this.#locked(repository, fn);
  }

  /** Run `fn` under the repository's write lock (no shutdown check: queued writes still finish). */
  async #locked<T>(repository: string, fn: (lock: Lock) => Promise<T>): Promise<T> {
    const lock = await this.#d.coord.acquire(repository, { ttlMs: this.#lockTtlMs, waitMs: this.#lockWaitMs });
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
    await this.#d.metadata.writeMetadata(repository, 'timestamp.json', ts.bytes, { rootVersion: online.state.root.md.signed.version });
    const head = this.#remember(repository, RepositoryService.#headOf(online.state));
    await this.#announce(repository, head, state);
    return head;
  }

  async #announce(repository: string, head: Head, _prev: RepoState): Promise<void> {
    try {
      await this.#d.coord.publishHead(repository, head.timestampVersion);
      await this.#d.coord.scheduleRefresh(repository, this.nextRefreshAt(repository, head.state));
    } catch (e) {
      // Redis holds nothing that cannot be lost: the write is already durable in the store.
      this.#d.logger.warn({ repository, err: e }, 'could not announce the new head to the coordinator');
    }
  }

  #online(repository: string): { now: number; policy: Policy; signers: Required<OnlineSigners> } {
    return { now: this.#d.clock(), policy: this.#d.policy, signers: this.#d.keyring.signers(repository) };
  }

  #ctx(repository: string): { now: number; policy: Policy; onlineKeys: TufKeyJson[]; revokedKeys: TufKeyJson[]; repository: string } {
    const ring = this.#d.keyring;
    return { now: this.#d.clock(), policy: this.#d.policy, onlineKeys: ring.acceptableKeys(repository), revokedKeys: ring.revokedKeys(repository), repository };
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

  /**
   * The same checks for an upload of `fileName` while its body arrives (MetadataPrecheck: each
   * piece scanned as it is read, the upload refused at the first piece that shows it must be),
   * for a body of `declaredBytes` (undefined: not declared). Undefined when there is nothing to
   * precheck: a small body (it costs under a slice anyway) or a name upload() refuses itself.
   * Pass the body to upload() with `prechecked` once `finish` returned.
   */
  uploadPrecheck(fileName: string, roleClass: 'delegated' | 'ci', declaredBytes: number | undefined): MetadataPrecheck | undefined {
    if (declaredBytes !== undefined && declaredBytes < PRECHECK_BYTES) return undefined;
    const name = parseMetadataFileName(fileName);
    if (!name || name.version === undefined || name.role === 'snapshot' || name.role === 'timestamp') return undefined;
    const { kind, maxBytes } = this.#uploadRole(name.role, roleClass);
    return new MetadataPrecheck(kind, maxBytes, name.role, limitsFromPolicy(this.#d.policy));
  }

  /** Create a repository from owner-signed 1.root.json and 1.targets.json. */
  async create(repository: string, rootBytes: Uint8Array, targetsBytes: Uint8Array): Promise<UploadResult> {
    this.#d.metadata.metadataRepository(repository); // validates the name before anything else
    await this.#precheck('root', rootBytes, 'delegated');
    await this.#precheck('targets', targetsBytes, 'delegated');
    return this.#withLock(repository, async (lock) => {
      const existing = await this.#freshHead(repository);
      if (existing) {
        const same =
          bytesEqual(existing.files.get('1.root.json') ?? (await this.#readOptional(repository, '1.root.json')), rootBytes) &&
          bytesEqual(await this.#readOptional(repository, '1.targets.json'), targetsBytes);
        if (same) return this.#result(repository, 'root', 1, existing, true);
        throw new ServiceError('REPO_EXISTS', `${repository} already exists`, { detail: { repository } });
      }
      const state = verifyNewRepository(rootBytes, targetsBytes, this.#ctx(repository));
      const online = await produceSnapshotAndTimestamp(state, this.#online(repository));
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

  /** A stored metadata file, or undefined when the store has none by that name. */
  async #readOptional(repository: string, fileName: string, maxBytes = this.#d.policy.roles.targets.maxBytes): Promise<Uint8Array | undefined> {
    try {
      return await this.#readFile(repository, fileName, maxBytes);
    } catch (e) {
      if (isStorageError(e, 'NOT_FOUND')) return undefined;
      throw e;
    }
  }

  /**
   * Upload a new version of a role: `fileName` is `<version>.<role>.json`; `root`
   * rotates the root, anything else is top-level targets or a delegated role.
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
    const cached = this.#heads.get(repository);
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

  /** One upload applied to a batch's draft (see #write): verified against everything before it in the batch. */
  async #uploadStep(
    repository: string,
    draft: Readonly<Draft>,
    u: { fileName: string; role: string; version: number; bytes: Uint8Array; roleClass: 'delegated' | 'ci'; job: JobGrant | undefined },
  ): Promise<StepOutcome<UploadResult>> {
    const { fileName, role, version, bytes, roleClass, job } = u;
    const current = role === 'root' ? draft.state.root.md.signed.version : currentVersion(draft.state, role);
    if (version <= current) {
      const stored = draft.files.get(fileName) ?? draft.head.files.get(fileName) ?? (await this.#readOptional(repository, fileName));
      if (stored && bytesEqual(stored, bytes)) return { state: draft.state, result: (h) => this.#result(repository, role, version, h, true) };
      throw new ServiceError('VERSION_TAKEN', `${role} version ${version} is taken (current ${current}); upload version ${current + 1}`, {
        detail: { repository, role, version, current },
      });
    }
    const ctx = this.#ctx(repository);
    const roleFiles: MetadataFile[] = [{ fileName, bytes }];
    let state: RepoState;
    let verification: VerificationResult | undefined;
    let warnings: string[] | undefined;
    const onParsed = (parsed: number): void => {
      if (parsed !== version) {
        throw new ServiceError('NAME_MISMATCH', `${fileName} holds ${role} version ${parsed}`, { detail: { repository, fileName, version: parsed } });
      }
    };
    if (role === 'root') {
      const r = verifyRootUpload(draft.state, bytes, ctx, { onParsed });
      ({ state, warnings } = r);
      verification = r.verification.current;
    } else {
      let base = draft.state;
      const parentFiles: MetadataFile[] = [];
      if (job && job.jobRole === role && delegationsOf(base, role).length === 0) {
        // A job's first upload: delegate its role from the service-held parent in the same commit.
        if (job.endsAt <= ctx.now) throw new ServiceError('GRANT_EXPIRED', `the grant ended at ${new Date(job.endsAt).toISOString()}`, { detail: { repository } });
        const ended = jobsOf(base.targets.get(job.role)?.md.signed).filter((j) => j.endsAt <= ctx.now).map((j) => j.role);
        const signed = await this.#signServiceRole(repository, base, job.role, (json) => {
          foldJobs(json, base, ended);
          // Not terminating: a tag this job does not list falls through to its sibling jobs.
          putDelegation(json, { name: job.jobRole, keys: [job.key], threshold: 1, paths: job.paths, terminating: false });
        });
        base = signed.state;
        parentFiles.push(signed.file);
      }
      const r = verifyTargetsUpload(base, role, bytes, ctx, { roleClass, onParsed });
      ({ state, verification } = r);
      roleFiles.push(...parentFiles);
    }
    if (jobEndsAt(role) !== undefined) {
      // A job re-publishing a tag its service-held parent already lists: the parent's
      // entry would win (clients look at a role before its delegations), so drop it there.
      const parent = delegationOf(state, role).parent;
      const listed = Object.keys(state.targets.get(role)?.md.signed.targets ?? {});
      const shadowed = listed.filter((tag) => state.targets.get(parent)?.md.signed.targets[tag] !== undefined);
      if (shadowed.length && serviceHeldRoles(state, this.#ciKeyIds(repository)).some((h) => h.role === parent)) {
        const signed = await this.#signServiceRole(repository, state, parent, (json) => {
          const t = json['targets'] as Record<string, unknown>;
          for (const tag of shadowed) delete t[tag];
        });
        state = signed.state;
        // The parent may already have a new version in this commit (the job's first upload).
        const i = roleFiles.findIndex((f) => f.fileName.endsWith(`.${parent}.json`));
        if (i >= 0) roleFiles.splice(i, 1);
        roleFiles.push(signed.file);
      }
    }
    return {
      state,
      files: roleFiles,
      result: (h) => this.#result(repository, role, version, h, false, { verification, ...(warnings?.length ? { warnings } : {}) }),
    };
  }

  /**
   * Publish tags in service-held role `role` (a delegation to the service's CI key, made by the
   * owner with `delegate add … --online`): the service signs the role. Concurrent publications
   * to one repository are signed as one new role version in one commit (#write). Each tag must
   * lie inside the role's delegated paths, and a TUF client looking it up must reach this role
   * first (TAG_SHADOWED otherwise: an earlier role lists it, or a terminating delegation ends the
   * search before this role).
   */
  async publishTags(repository: string, role: string, tags: Readonly<Record<string, ImageTarget>>): Promise<TagsResult> {
    this.#d.metadata.metadataRepository(repository); // validates the name before anything else
    const names = Object.keys(tags);
    if (names.length === 0) throw new ServiceError('BAD_REQUEST', 'no tags to publish', { detail: { repository, role } });
    if (names.length > this.#d.policy.limits.maxTargetsPerRole) {
      throw new ServiceError('BAD_REQUEST', `${names.length} tags in one request, above the limit of ${this.#d.policy.limits.maxTargetsPerRole}`, {
        detail: { repository, role, count: names.length },
      });
    }
    return this.#write(repository, async (draft) => {
      const { state } = draft;
      if (!serviceHeldRoles(state, this.#ciKeyIds(repository)).some((h) => h.role === role)) {
        throw new ServiceError('NOT_SERVICE_HELD', `"${role}" of ${repository} is not delegated to the service's CI key; the service cannot sign it`, {
          detail: { repository, role },
        });
      }
      const { policy } = this.#d;
      const chain = delegationChain(state, role, policy.limits.maxDelegationDepth);
      checkTargetEntries(role, buildTargets({ version: 1, expires: isoExpiry(0), targets: { ...tags } }), chain, policy);
      for (const tag of names) {
        const seen = resolveTarget(state, tag, { assume: role });
        if (seen !== role) {
          throw new ServiceError(
            'TAG_SHADOWED',
            seen === undefined
              ? `a client looking up "${tag}" in ${repository} stops before reaching ${role} (a terminating delegation covers it first)`
              : `a client looking up "${tag}" in ${repository} takes it from ${seen}, which it reads before ${role}`,
            { detail: { repository, role, tag, ...(seen === undefined ? {} : { listedBy: seen }) } },
          );
        }
      }
      const listed = state.targets.get(role)?.md.signed.targets ?? {};
      const pending = draft.tags.get(role);
      const fresh = names.filter((t) => !Object.hasOwn(listed, t) && !pending?.has(t)).length;
      const total = Object.keys(listed).length + (pending?.size ?? 0) + fresh;
      // A role with hash bins is bounded per bin, when the bins are signed; one without moves to
      // bins then (#signTags), unless it delegates to job roles, which bins cannot hold.
      if (heldBins(state, role) === undefined && jobsOf(state.targets.get(role)?.md.signed).length > 0 && total > policy.limits.maxTargetsPerRole) {
        throw new EngineError('POLICY_VIOLATION', `${role} would list ${total} targets, above the limit of ${policy.limits.maxTargetsPerRole}, and it delegates to job roles, which hash bins cannot hold; once their grants have ended the service moves its tags into hash bins and takes more (no grants for ${role} meanwhile)`, {
          detail: { role, count: total, limit: policy.limits.maxTargetsPerRole },
        });
      }
      return {
        state,
        tags: { role, tags },
        result: (h) => ({ ...this.#result(repository, role, currentVersion(h.state, role), h, false), tags: names }),
      };
    });
  }

  /**
   * Group commit. Writes to one repository queue here; one drainer per repository takes the
   * queue (up to MAX_BATCH) under the lock, applies each write in arrival order to a draft of
   * the fresh head (each verified against everything before it; a refused write is answered
   * alone and changes nothing), signs every service-held role that gained tags once, and
   * commits role files, one snapshot and one timestamp for the whole batch. Every write in the
   * batch is acknowledged only after that timestamp is written. N concurrent writers cost one
   * lock acquisition and one commit instead of N.
   */
  #write<T>(repository: string, step: (draft: Readonly<Draft>) => Promise<StepOutcome<T>>): Promise<T> {
    if (this.#closing) return Promise.reject(new ServiceError('SHUTTING_DOWN', 'the service is shutting down', { detail: { repository } }));
    return new Promise<T>((resolve, reject) => {
      let queue = this.#queues.get(repository);
      if (!queue) {
        queue = [];
        this.#queues.set(repository, queue);
      }
      if (queue.length >= MAX_QUEUED) {
        reject(new CoordError('BUSY', `${repository} has ${queue.length} writes waiting; retry`, { detail: { repository, retryAfterSeconds: 1 } }));
        return;
      }
      queue.push({ step, resolve: resolve as (value: unknown) => void, reject });
      if (this.#draining.has(repository)) return;
      this.#draining.add(repository);
      const run = this.#drain(repository);
      this.#inflight.add(run);
      void run.finally(() => this.#inflight.delete(run));
    });
  }

  async #drain(repository: string): Promise<void> {
    try {
      for (;;) {
        const queue = this.#queues.get(repository);
        if (!queue || queue.length === 0) {
          this.#queues.delete(repository);
          return;
        }
        if (this.#handOff.delete(repository)) {
          // Another acquirer (usually another instance's drainer) was waiting when this one
          // released: let it take the lock before this instance's next batch, instead of
          // re-acquiring at once and starving it into 409 BUSY. Writes keep queueing meanwhile.
          await sleep(HAND_OFF_MS);
        }
        await this.#commitBatch(repository, queue.splice(0, MAX_BATCH));
      }
    } finally {
      this.#draining.delete(repository);
    }
  }

  async #commitBatch(repository: string, batch: QueuedWrite[]): Promise<void> {
    const settled = new Set<QueuedWrite>();
    const settle = (w: QueuedWrite, ok: boolean, value: unknown): void => {
      if (settled.has(w)) return;
      settled.add(w);
      if (ok) w.resolve(value);
      else w.reject(value);
    };
    try {
      await this.#locked(repository, async (lock) => {
        const head = await this.#freshHead(repository);
        if (!head) {
          const e = new ServiceError('REPO_NOT_FOUND', `no TUF repository ${repository}`, { detail: { repository } });
          for (const w of batch) settle(w, false, e);
          return;
        }
        const draft: Draft = { head, state: head.state, files: new Map(), tags: new Map() };
        const applied: Array<{ w: QueuedWrite; result: (h: Head) => unknown; tagRole: string | undefined }> = [];
        for (const w of batch) {
          try {
            const out = await w.step(draft);
            draft.state = out.state;
            for (const f of out.files ?? []) draft.files.set(f.fileName, f.bytes);
            if (out.tags) {
              let pending = draft.tags.get(out.tags.role);
              if (!pending) draft.tags.set(out.tags.role, (pending = new Map()));
              for (const [tag, target] of Object.entries(out.tags.tags)) pending.set(tag, target);
            }
            applied.push({ w, result: out.result, tagRole: out.tags?.role });
          } catch (e) {
            settle(w, false, e);
          }
        }
        // Each service-held role that gained tags is signed once, over everything else in the batch
        // (or, for a role that asks for hash bins, each bin that gained tags).
        for (const [role, tags] of draft.tags) {
          try {
            for (const signed of await this.#signTags(repository, draft.state, role, tags)) {
              draft.state = signed.state;
              draft.files.set(signed.file.fileName, signed.file.bytes);
            }
          } catch (e) {
            for (const a of applied) if (a.tagRole === role) settle(a.w, false, e);
          }
        }
        const live = applied.filter((a) => !settled.has(a.w));
        if (live.length === 0) return;
        let next = head;
        if (draft.state !== head.state || draft.files.size > 0) {
          const online = await produceSnapshotAndTimestamp(draft.state, this.#online(repository));
          const files = [...draft.files].map(([fileName, bytes]) => ({ fileName, bytes }));
          next = await this.#commit(repository, lock, head.state, files, online);
          this.#d.logger.info({ repository, writes: live.length, files: files.map((f) => f.fileName), timestampVersion: next.timestampVersion }, 'committed');
        }
        for (const a of live) settle(a.w, true, a.result(next));
      });
    } catch (e) {
      for (const w of batch) settle(w, false, e);
    }
  }

  // ---------------------------------------------------------------- refresh

  /** When the online roles of `state` must be re-signed next (policy margins before expiry). */
  nextRefreshAt(repository: string, state: RepoState): number {
    const { refresh } = this.#d.policy;
    const ts = state.timestamp ? parseExpires(state.timestamp.md.signed.expires) - refresh.timestampMarginMinutes * MINUTE : 0;
    const ss = state.snapshot ? parseExpires(state.snapshot.md.signed.expires) - refresh.snapshotMarginMinutes * MINUTE : 0;
    let next = Math.min(ts, ss);
    // Service-held roles: re-signed on the snapshot margin; their jobs folded when their grants end.
    for (const { role } of serviceHeldRoles(state, this.#ciKeyIds(repository))) {
      const rec = state.targets.get(role);
      if (!rec) continue;
      next = Math.min(next, parseExpires(rec.md.signed.expires) - refresh.snapshotMarginMinutes * MINUTE);
      for (const job of jobsOf(rec.md.signed)) next = Math.min(next, job.endsAt);
    }
    return next;
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
      const services = this.#dueServiceRoles(repository, head.state, now);
      const snapDue = services.length > 0 || !head.state.snapshot || parseExpires(head.state.snapshot.md.signed.expires) - refresh.snapshotMarginMinutes * MINUTE <= now;
      const tsDue = !head.state.timestamp || parseExpires(head.state.timestamp.md.signed.expires) - refresh.timestampMarginMinutes * MINUTE <= now;
      if (!snapDue && !tsDue) return this.nextRefreshAt(repository, head.state);
      // Service-held roles first (fold ended jobs, renew), then snapshot and timestamp over them.
      let state = head.state;
      const roleFiles: MetadataFile[] = [];
      for (const { role, ended } of services) {
        const signed = await this.#signServiceRole(repository, state, role, (json) => void foldJobs(json, state, ended));
        state = signed.state;
        roleFiles.push(signed.file);
        if (ended.length) this.#d.logger.info({ repository, role, folded: ended }, 'ended jobs folded into their service-held role');
      }
      const online = snapDue ? await produceSnapshotAndTimestamp(state, this.#online(repository)) : await produceTimestamp(state, this.#online(repository));
      const next = await this.#commit(repository, lock, head.state, roleFiles, online);
      this.#d.logger.info({ repository, snapshot: snapDue, roles: roleFiles.map((f) => f.fileName), timestampVersion: next.timestampVersion }, 'online roles re-signed');
      return this.nextRefreshAt(repository, next.state);
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
    await this.#d.coord.scheduleRefresh(repository, this.nextRefreshAt(repository, head.state));
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
      for (const [role, rec] of s.targets) push(role, rec.md.signed.expires);
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
