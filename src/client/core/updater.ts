/**
 * tufoci's TUF client: the client workflow of the TUF specification
 * (section 5) over a TrustedSet, one fetch seam, and a saved state that is
 * kept as verified data.
 *
 * The workflow, in the order tuf-js's Updater runs it (so the timestamp-first
 * fetchers, which save requests on that order, serve both):
 * 1. the root walk from the saved root: `<N+1>.root.json` until not found
 *    (403/404), at most `maxRootRotations` steps, each root bound to the
 *    repository's scope;
 * 2. the timestamp (a saved copy first, for the rollback floor);
 * 3. the snapshot (the saved copy if it is the one the timestamp names, else
 *    `<v>.snapshot.json` under consistent snapshots);
 * 4. on lookup, targets roles in preorder depth first from `targets`: at most
 *    `maxDelegations` roles, terminating delegations end the search,
 *    succinct hash bins name the one bin a target can be in.
 *
 * The saved state is tuf-js's layout (`root.json`, `timestamp.json`,
 * `snapshot.json`, `<role>.json`, each written atomically, mode 0600), so
 * either client can continue what the other saved, plus `.tufoci-verified`:
 * the sha256 of the root, timestamp and snapshot verified together by this
 * core, and of each targets role verified under that snapshot. A saved file
 * whose hash is in that record, under the same root (and snapshot, for a
 * role), enters the trusted set without its signatures being checked again:
 * it is data this client verified, not data from the network. Anything else
 * saved (another client's files, a different root) is verified like bytes
 * from the network. Versions, expiries and the snapshot's pins apply to both.
 *
 * So a warm run whose timestamp did not change checks no signature, fetches
 * only the timestamp, and reads only the files on the path to the target.
 */
import { createHash } from 'node:crypto';
import { DirectoryState, type StateFiles } from '../state-files.ts';
import { rootScopeChain } from '../vet.ts';
import { CoreError, DEFAULT_CORE_LIMITS, TrustedSet, sha256Hex, type CoreLimits, type TargetInfo, type VerifiedTargets } from './trusted-set.ts';

/** The fetch seam: bytes of one metadata file, at most `maxLength`; a missing file throws with `statusCode` 403 or 404. */
export interface MetadataSource {
  downloadBytes(url: string, maxLength: number): Promise<Uint8Array>;
}

export interface CoreUpdaterOptions {
  /** The saved state, a directory; must hold `root.json` (the pin, on a first run). */
  dir?: string;
  /** The saved state kept elsewhere (instead of `dir`): in memory, for an ephemeral verify (../state-files.ts). */
  state?: StateFiles;
  /** Where metadata files are fetched: `<base>/<file name>`. */
  metadataBaseUrl: string;
  fetcher: MetadataSource;
  /** The repository being verified: every root's scope must cover it. */
  repository: string;
  /** The reference time for expiry (ms since the epoch): when the update started. Default now. */
  referenceTime?: number;
  /** Default 256, as tuf-js. */
  maxRootRotations?: number;
  /** Roles one lookup may visit; default 32, as tuf-js. */
  maxDelegations?: number;
  limits?: CoreLimits;
  /**
   * The target the caller will look up after refresh, if it knows it: when the snapshot is new,
   * the targets roles its lookup will most likely read (top-level targets, the few other named
   * roles, the hash bin the path falls in) are requested together, before the walk needs them
   * one after another (speculation: see `#prefetchPath`).
   */
  expectedTarget?: string;
  /**
   * Keep the record of what this run verified (`.tufoci-verified`, what lets the next run skip
   * signature checks): default true. An ephemeral verify, whose directory is removed after it,
   * has no next run.
   */
  saveRecord?: boolean;
}

/** Named roles (not hash bins) a snapshot may list for their files to be requested ahead. */
const MAX_SPECULATIVE_ROLES = 4;
/** Groups of hash bins (one name prefix each) whose one bin for the target is requested ahead. */
const MAX_SPECULATIVE_BIN_GROUPS = 4;

/** A file verified under the record's snapshot: its sha256, and the version and expiry read then. */
interface FileRecord {
  sha: string;
  version: number;
  expires: number;
}

/** A lookup answered under the record's snapshot: the target entry, and every role the lookup read, in order. */
interface AnswerRecord {
  target: Record<string, unknown>;
  via: string[];
}

/** `.tufoci-verified`: what this core verified together under one root. */
interface VerifiedRecord {
  /** sha256 of the root the rest was verified under. */
  root: string;
  timestamp?: string;
  snapshot?: FileRecord;
  /** Targets roles verified under that snapshot. */
  roles: Record<string, FileRecord>;
  /** Recent lookups (at most MAX_ANSWERS) under that snapshot, by target path. */
  answers: Record<string, AnswerRecord>;
}

const MAX_ANSWERS = 256;

export const VERIFIED_RECORD_FILE = '.tufoci-verified';
const MAX_RECORD_BYTES = 4 * 1024 * 1024;

function isNotFound(error: unknown): boolean {
  const status = (error as { statusCode?: unknown } | null)?.statusCode;
  return status === 404 || status === 403;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

export class CoreUpdater {
  readonly #o: Required<Omit<CoreUpdaterOptions, 'limits' | 'expectedTarget' | 'saveRecord' | 'dir' | 'state'>> & { limits: CoreLimits };
  readonly #state: StateFiles;
  #set: TrustedSet | undefined;
  /** The record as read at the start, if it still describes the saved root. */
  #saved: VerifiedRecord | undefined;
  /** Whether the trusted snapshot is the one the saved record names (its roles' hashes then apply). */
  #sameSnapshot = false;
  /** Roles verified under the trusted snapshot, this run or (same snapshot) before. */
  #roles: Record<string, FileRecord> = {};
  /** Lookups answered under the trusted snapshot, this run or (same snapshot) before. */
  #answers: Record<string, AnswerRecord> = {};
  /** sha256 of the trusted snapshot's bytes. */
  #snapshotSha: string | undefined;
  /** The record as it is on disk (read or last written), to write it only when it changed. */
  #recordText: string | undefined;
  /** Every `<N>.root.json` this run verified, in order. */
  readonly rootsVerified: Uint8Array[] = [];
  /** Metadata files read from the network and from the saved state, for callers that count. */
  readonly counts = { fetched: 0, fetchedBytes: 0, signaturesSkipped: 0 };

  /** Files requested ahead of the walk (`#prefetchPath`), by file name: each taken by the first #fetch of it. */
  readonly #ahead = new Map<string, { maxLength: number; bytes: Promise<Uint8Array> }>();
  readonly #expectedTarget: string | undefined;
  readonly #keepRecord: boolean;

  constructor(options: CoreUpdaterOptions) {
    const { expectedTarget, saveRecord, dir, state, ...rest } = options;
    if (state === undefined && dir === undefined) throw new TypeError('CoreUpdater needs a state directory (dir) or a state (state)');
    this.#state = state ?? new DirectoryState(dir as string);
    this.#expectedTarget = expectedTarget;
    this.#keepRecord = saveRecord ?? true;
    this.#o = {
      referenceTime: Date.now(),
      maxRootRotations: 256,
      maxDelegations: 32,
      ...rest,
      limits: options.limits ?? DEFAULT_CORE_LIMITS,
      metadataBaseUrl: options.metadataBaseUrl.replace(/\/+$/, ''),
    };
  }

  get trusted(): TrustedSet {
    if (!this.#set) throw new CoreError('ORDER', 'refresh() has not run', { detail: {} });
    return this.#set;
  }

  #readSaved(name: string, maxBytes: number): Uint8Array | undefined {
    return this.#state.read(name, maxBytes);
  }

  #write(name: string, bytes: Uint8Array | string): void {
    this.#state.write(name, bytes);
  }

  async #fetch(file: string, maxLength: number): Promise<Uint8Array> {
    const ahead = this.#ahead.get(file);
    this.#ahead.delete(file);
    const bytes = await (ahead && ahead.maxLength === maxLength ? ahead.bytes : this.#o.fetcher.downloadBytes(`${this.#o.metadataBaseUrl}/${file}`, maxLength));
    this.counts.fetched++;
    this.counts.fetchedBytes += bytes.byteLength;
    return bytes;
  }

  #readRecord(rootSha: string): VerifiedRecord | undefined {
    const bytes = this.#readSaved(VERIFIED_RECORD_FILE, MAX_RECORD_BYTES);
    if (!bytes) return undefined;
    try {
      const text = Buffer.from(bytes).toString('utf8');
      this.#recordText = text;
      const r = JSON.parse(text) as Partial<Record<keyof VerifiedRecord, unknown>>;
      const hex = (v: unknown): v is string => typeof v === 'string' && /^[0-9a-f]{64}$/.test(v);
      const obj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
      const file = (v: unknown): v is FileRecord => obj(v) && hex(v['sha']) && Number.isSafeInteger(v['version']) && typeof v['expires'] === 'number';
      if (r.root !== rootSha || !obj(r.roles)) return undefined;
      const roles: Record<string, FileRecord> = {};
      for (const [k, v] of Object.entries(r.roles)) if (file(v)) roles[k] = v;
      const answers: Record<string, AnswerRecord> = {};
      if (obj(r.answers)) {
        for (const [k, v] of Object.entries(r.answers)) {
          if (obj(v) && obj(v['target']) && Array.isArray(v['via']) && v['via'].every((x) => typeof x === 'string')) answers[k] = v as unknown as AnswerRecord;
        }
      }
      return { root: r.root, ...(hex(r.timestamp) ? { timestamp: r.timestamp } : {}), ...(file(r.snapshot) ? { snapshot: r.snapshot } : {}), roles, answers };
    } catch {
      return undefined;
    }
  }

  #saveRecord(): void {
    if (!this.#keepRecord) return;
    const set = this.trusted;
    const snapshot = set.snapshot;
    const record: VerifiedRecord = {
      root: sha256Hex(set.root.bytes),
      ...(set.timestamp ? { timestamp: sha256Hex(set.timestamp.bytes) } : {}),
      ...(snapshot ? { snapshot: { sha: this.#snapshotSha ?? sha256Hex(snapshot.bytes), version: snapshot.version, expires: snapshot.expires } } : {}),
      roles: this.#roles,
      answers: this.#answers,
    };
    const text = JSON.stringify(record);
    if (text === this.#recordText) return; // unchanged: a warm run writes nothing
    try {
      this.#write(VERIFIED_RECORD_FILE, text);
      this.#recordText = text;
    } catch {
      // only a saving: without the record the next run verifies the saved files again
    }
  }

  /** Root, timestamp and snapshot, each verified (5.3–5.5). */
  async refresh(): Promise<void> {
    const { limits } = this.#o;
    const rootBytes = this.#readSaved('root.json', limits.rootMaxBytes);
    if (!rootBytes) throw new CoreError('MISSING', `no trusted root in ${this.#state.where}`, { detail: { dir: this.#state.where } });
    this.#saved = this.#readRecord(sha256Hex(rootBytes));
    // A record for this root means this core verified it (and wrote the record after).
    const set = new TrustedSet(rootBytes, this.#o.referenceTime, limits, { verified: this.#saved !== undefined });
    this.#set = set;
    this.#roles = {};
    this.#answers = {};
    this.#sameSnapshot = false;

    if (await this.#walkRoots(set)) this.#saved = undefined; // a new root: nothing saved was verified under it

    await this.#loadTimestamp(set);
    await this.#loadSnapshot(set);
    await this.#loadTargets(set, 'targets', 'root');
    this.#saveRecord();
  }

  /** 5.3: walk to the newest root; whether the trusted root changed. */
  async #walkRoots(set: TrustedSet): Promise<boolean> {
    const scopes = rootScopeChain(this.#o.repository, set.root.signed['x-tufoci-scope'] !== undefined);
    const first = set.root.version + 1;
    for (let version = first; version < first + this.#o.maxRootRotations; version++) {
      let bytes: Uint8Array;
      try {
        bytes = await this.#fetch(`${version}.root.json`, this.#o.limits.rootMaxBytes);
      } catch (error) {
        if (isNotFound(error)) break;
        throw error;
      }
      const root = set.updateRoot(bytes, `${version}.root.json`);
      scopes(`${version}.root.json`, root.signed);
      this.rootsVerified.push(bytes);
      this.#write('root.json', bytes);
    }
    return set.root.version >= first;
  }

  /** 5.4: the saved timestamp (the rollback floor), then the served one unless it is the same bytes. */
  async #loadTimestamp(set: TrustedSet): Promise<void> {
    const saved = this.#readSaved('timestamp.json', this.#o.limits.timestampMaxBytes);
    if (saved) {
      const verified = this.#saved?.timestamp === sha256Hex(saved);
      try {
        set.updateTimestamp(saved, verified);
        if (verified) this.counts.signaturesSkipped++;
      } catch {
        // an unusable saved copy (expired, another root's): the served one is verified without it
      }
    }
    const served = await this.#fetch('timestamp.json', this.#o.limits.timestampMaxBytes);
    const trusted = set.timestamp;
    if (trusted && sameBytes(served, trusted.bytes)) {
      set.finalTimestamp(); // unchanged: still refused once expired (freeze)
      return;
    }
    try {
      set.updateTimestamp(served);
    } catch (error) {
      if (error instanceof CoreError && error.code === 'EQUAL_VERSION') return; // keep the trusted one
      throw error;
    }
    this.#write('timestamp.json', served);
  }

  /** 5.5: the saved snapshot if it is the one the timestamp names, else the one it pins. */
  async #loadSnapshot(set: TrustedSet): Promise<void> {
    const meta = set.finalTimestamp().snapshotMeta;
    const saved = this.#readSaved('snapshot.json', Math.max(this.#o.limits.snapshotMaxBytes, meta.length ?? 0));
    if (saved) {
      const sha = sha256Hex(saved);
      const record = this.#saved?.snapshot;
      const verified = record?.sha === sha;
      try {
        set.updateSnapshot(saved, { local: true, verified, ...(verified ? { known: record } : {}) });
        if (verified) this.counts.signaturesSkipped++;
        this.#sameSnapshot = verified;
        this.#snapshotSha = sha;
        if (verified) {
          this.#roles = { ...this.#saved?.roles };
          this.#answers = { ...this.#saved?.answers };
        }
        return;
      } catch {
        // older than the timestamp names (kept as the rollback floor), expired, or unusable
      }
    }
    const bytes = await this.#fetch(set.root.consistentSnapshot ? `${meta.version}.snapshot.json` : 'snapshot.json', meta.length ?? this.#o.limits.snapshotMaxBytes);
    set.updateSnapshot(bytes);
    this.#snapshotSha = sha256Hex(bytes);
    this.#write('snapshot.json', bytes);
    if (this.#expectedTarget !== undefined) this.#prefetchPath(set, this.#expectedTarget);
  }

  /** The file name of a targets role's version `version` (consistent snapshots) or its plain name. */
  #roleFile(set: TrustedSet, role: string, version: number): string {
    return set.root.consistentSnapshot ? `${version}.${encodeURIComponent(role)}.json` : `${encodeURIComponent(role)}.json`;
  }

  /**
   * Speculation, on a snapshot just fetched: request together the files a lookup of `target` will
   * most likely read, which the walk would otherwise request one after another (each waits for its
   * delegator): `targets`, the other named roles when there are at most MAX_SPECULATIVE_ROLES, and
   * for each group of hash bins (`<prefix>-<hex>` names, as many hex digits as TAP 15 gives 2^k
   * bins) the one bin the target's hash falls in. Nothing fetched ahead is trusted on arrival: the
   * walk takes it (`#fetch`) only when it reaches that role, and verifies it as it verifies every
   * file; a wrong guess costs one request and its bytes (each bounded by the snapshot's length for
   * it). Roles this client holds a saved copy of are not requested (the walk may use the copy).
   */
  #prefetchPath(set: TrustedSet, target: string): void {
    const snap = set.snapshot;
    if (!snap) return;
    const named: string[] = [];
    const bins = new Map<string, { digits: number; max: number }>();
    for (const name of Object.keys(snap.meta)) {
      if (!name.endsWith('.json')) continue;
      const role = name.slice(0, -5);
      if (role === 'targets') continue;
      const bin = /^(.+)-([0-9a-f]+)$/.exec(role);
      if (bin) {
        const [, prefix, hex] = bin as unknown as [string, string, string];
        const group = bins.get(prefix) ?? { digits: hex.length, max: 0 };
        if (group.digits !== hex.length) group.digits = -1; // not one TAP 15 group
        group.max = Math.max(group.max, Number.parseInt(hex, 16));
        bins.set(prefix, group);
      } else if (named.length <= MAX_SPECULATIVE_ROLES) {
        named.push(role);
      }
    }
    const roles = ['targets', ...(named.length <= MAX_SPECULATIVE_ROLES ? named : [])];
    let groups = 0;
    for (const [prefix, { digits, max }] of bins) {
      if (digits < 1 || digits > 8 || groups >= MAX_SPECULATIVE_BIN_GROUPS) continue;
      const bitLength = Math.max(1, Math.ceil(Math.log2(max + 1)));
      if ((2 ** bitLength - 1).toString(16).length !== digits) continue;
      const bin = createHash('sha256').update(target).digest().readUInt32BE(0) >>> (32 - bitLength);
      roles.push(`${prefix}-${bin.toString(16).padStart(digits, '0')}`);
      groups++;
    }
    for (const role of roles) {
      let meta;
      try {
        meta = set.metaFor(role);
      } catch {
        continue; // not listed: nothing to read
      }
      if (this.#state.has(`${encodeURIComponent(role)}.json`)) continue;
      const file = this.#roleFile(set, role, meta.version);
      if (this.#ahead.has(file)) continue;
      const maxLength = meta.length ?? this.#o.limits.targetsMaxBytes;
      const bytes = this.#o.fetcher.downloadBytes(`${this.#o.metadataBaseUrl}/${file}`, maxLength);
      bytes.catch(() => undefined); // the walk's #fetch of it sees the error; a guess it never takes fails silently
      this.#ahead.set(file, { maxLength, bytes });
    }
  }

  /** 5.6: a targets role, from the saved state when it is the version the snapshot names, else fetched. */
  async #loadTargets(set: TrustedSet, role: string, delegator: string): Promise<VerifiedTargets> {
    const have = set.targets(role);
    if (have) return have;
    const file = `${encodeURIComponent(role)}.json`;
    const known = this.#sameSnapshot ? this.#roles[role] : undefined;
    if (known) {
      // Verified under this very snapshot before: its pin, version and signatures were checked then.
      const saved = this.#readSaved(file, this.#o.limits.targetsMaxBytes);
      if (saved && sha256Hex(saved) === known.sha) {
        this.counts.signaturesSkipped++;
        return set.updateTargets(saved, role, delegator, true, known);
      }
    }
    const meta = set.metaFor(role);
    const maxBytes = meta.length ?? this.#o.limits.targetsMaxBytes;
    const saved = this.#readSaved(file, maxBytes);
    if (saved) {
      try {
        const t = set.updateTargets(saved, role, delegator);
        this.#roles[role] = { sha: sha256Hex(saved), version: t.version, expires: t.expires };
        return t;
      } catch {
        // not the version the snapshot names, or unusable: fetched below
      }
    }
    const bytes = await this.#fetch(this.#roleFile(set, role, meta.version), maxBytes);
    const t = set.updateTargets(bytes, role, delegator);
    this.#write(file, bytes);
    this.#roles[role] = { sha: sha256Hex(bytes), version: t.version, expires: t.expires };
    return t;
  }

  /**
   * A lookup answered under the trusted snapshot before: valid while every role it read is still
   * the one verified then and not expired (the snapshot and timestamp were checked by refresh).
   */
  #answered(path: string): TargetInfo | undefined {
    const answer = this.#sameSnapshot ? own(this.#answers, path) : undefined;
    if (!answer) return undefined;
    const now = this.#o.referenceTime;
    for (const role of answer.via) {
      const known = this.#roles[role];
      if (!known || now >= known.expires) return undefined; // read it again (and be refused if expired)
    }
    return this.trusted.targetInfo(path, answer.target);
  }

  #remember(path: string, target: TargetInfo, via: string[]): void {
    delete this.#answers[path];
    this.#answers[path] = { target: target.toJSON() as Record<string, unknown>, via };
    const paths = Object.keys(this.#answers);
    for (const old of paths.slice(0, Math.max(0, paths.length - MAX_ANSWERS))) delete this.#answers[old];
  }

  /**
   * 5.6.7: the target `path` as the most trusted role that lists it names it: preorder depth
   * first, at most `maxDelegations` roles, a terminating delegation ending the search.
   */
  async getTargetInfo(path: string): Promise<TargetInfo | undefined> {
    const set = this.trusted;
    try {
      const answered = this.#answered(path);
      if (answered) return answered;
      const toVisit: Array<{ role: string; parent: string }> = [{ role: 'targets', parent: 'root' }];
      const visited = new Set<string>();
      const via: string[] = [];
      while (visited.size <= this.#o.maxDelegations && toVisit.length > 0) {
        const { role, parent } = toVisit.pop() as { role: string; parent: string };
        if (visited.has(role)) continue;
        const targets = await this.#loadTargets(set, role, parent);
        via.push(role);
        const found = set.targetIn(targets, path);
        if (found) {
          this.#remember(path, found, via);
          return found;
        }
        visited.add(role);
        const children: Array<{ role: string; parent: string }> = [];
        for (const d of set.rolesForTarget(targets, path)) {
          children.push({ role: d.role, parent: role });
          if (d.terminating) {
            toVisit.length = 0;
            break;
          }
        }
        toVisit.push(...children.reverse());
      }
      return undefined;
    } finally {
      this.#saveRecord();
    }
  }
}

function own<T>(map: Record<string, T>, key: string): T | undefined {
  return Object.hasOwn(map, key) ? map[key] : undefined;
}
