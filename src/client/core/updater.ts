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
import { randomUUID } from 'node:crypto';
import { readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { rootScopeChain } from '../vet.ts';
import { CoreError, DEFAULT_CORE_LIMITS, TrustedSet, sha256Hex, type CoreLimits, type TargetInfo, type VerifiedTargets } from './trusted-set.ts';

/** The fetch seam: bytes of one metadata file, at most `maxLength`; a missing file throws with `statusCode` 403 or 404. */
export interface MetadataSource {
  downloadBytes(url: string, maxLength: number): Promise<Uint8Array>;
}

export interface CoreUpdaterOptions {
  /** The saved state; must hold `root.json` (the pin, on a first run). */
  dir: string;
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
}

/** `.tufoci-verified`: what this core verified together (sha256 of each file's bytes). */
interface VerifiedRecord {
  root: string;
  timestamp?: string;
  snapshot?: string;
  roles: Record<string, string>;
}

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
  readonly #o: Required<Omit<CoreUpdaterOptions, 'limits'>> & { limits: CoreLimits };
  #set: TrustedSet | undefined;
  /** The record as read at the start, if it still describes the saved root. */
  #saved: VerifiedRecord | undefined;
  /** Whether the trusted snapshot is the one the saved record names (its roles' hashes then apply). */
  #sameSnapshot = false;
  /** Roles verified under the trusted snapshot, this run or (same snapshot) before. */
  #roles: Record<string, string> = {};
  /** Every `<N>.root.json` this run verified, in order. */
  readonly rootsVerified: Uint8Array[] = [];
  /** Metadata files read from the network and from the saved state, for callers that count. */
  readonly counts = { fetched: 0, fetchedBytes: 0, signaturesSkipped: 0 };

  constructor(options: CoreUpdaterOptions) {
    this.#o = {
      referenceTime: Date.now(),
      maxRootRotations: 256,
      maxDelegations: 32,
      ...options,
      limits: options.limits ?? DEFAULT_CORE_LIMITS,
      metadataBaseUrl: options.metadataBaseUrl.replace(/\/+$/, ''),
    };
  }

  get trusted(): TrustedSet {
    if (!this.#set) throw new CoreError('ORDER', 'refresh() has not run', { detail: {} });
    return this.#set;
  }

  #readSaved(name: string, maxBytes: number): Uint8Array | undefined {
    const file = join(this.#o.dir, name);
    try {
      if (statSync(file).size > maxBytes) return undefined;
      return readFileSync(file);
    } catch {
      return undefined;
    }
  }

  #write(name: string, bytes: Uint8Array | string): void {
    const tmp = join(this.#o.dir, `.tmp-${randomUUID()}`);
    try {
      writeFileSync(tmp, bytes, { mode: 0o600, flag: 'wx' });
      renameSync(tmp, join(this.#o.dir, name));
    } catch (error) {
      rmSync(tmp, { force: true });
      throw error;
    }
  }

  async #fetch(file: string, maxLength: number): Promise<Uint8Array> {
    const bytes = await this.#o.fetcher.downloadBytes(`${this.#o.metadataBaseUrl}/${file}`, maxLength);
    this.counts.fetched++;
    this.counts.fetchedBytes += bytes.byteLength;
    return bytes;
  }

  #readRecord(rootSha: string): VerifiedRecord | undefined {
    const bytes = this.#readSaved(VERIFIED_RECORD_FILE, MAX_RECORD_BYTES);
    if (!bytes) return undefined;
    try {
      const r = JSON.parse(Buffer.from(bytes).toString('utf8')) as Partial<VerifiedRecord>;
      const hex = (v: unknown): v is string => typeof v === 'string' && /^[0-9a-f]{64}$/.test(v);
      if (r.root !== rootSha || typeof r.roles !== 'object' || r.roles === null) return undefined;
      const roles: Record<string, string> = {};
      for (const [k, v] of Object.entries(r.roles)) if (hex(v)) roles[k] = v;
      return { root: r.root, ...(hex(r.timestamp) ? { timestamp: r.timestamp } : {}), ...(hex(r.snapshot) ? { snapshot: r.snapshot } : {}), roles };
    } catch {
      return undefined;
    }
  }

  #saveRecord(): void {
    const set = this.trusted;
    const record: VerifiedRecord = {
      root: sha256Hex(set.root.bytes),
      ...(set.timestamp ? { timestamp: sha256Hex(set.timestamp.bytes) } : {}),
      ...(set.snapshot ? { snapshot: sha256Hex(set.snapshot.bytes) } : {}),
      roles: this.#roles,
    };
    try {
      this.#write(VERIFIED_RECORD_FILE, JSON.stringify(record));
    } catch {
      // only a saving: without the record the next run verifies the saved files again
    }
  }

  /** Root, timestamp and snapshot, each verified (5.3–5.5). */
  async refresh(): Promise<void> {
    const { dir, limits } = this.#o;
    const rootBytes = this.#readSaved('root.json', limits.rootMaxBytes);
    if (!rootBytes) throw new CoreError('MISSING', `no trusted root in ${dir}`, { detail: { dir } });
    const set = new TrustedSet(rootBytes, this.#o.referenceTime, limits);
    this.#set = set;
    this.#saved = this.#readRecord(sha256Hex(rootBytes));
    this.#roles = {};
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
      const verified = this.#saved?.snapshot === sha;
      try {
        set.updateSnapshot(saved, { local: true, verified });
        if (verified) this.counts.signaturesSkipped++;
        this.#sameSnapshot = verified;
        if (verified) this.#roles = { ...this.#saved?.roles };
        return;
      } catch {
        // older than the timestamp names (kept as the rollback floor), expired, or unusable
      }
    }
    const bytes = await this.#fetch(set.root.consistentSnapshot ? `${meta.version}.snapshot.json` : 'snapshot.json', meta.length ?? this.#o.limits.snapshotMaxBytes);
    set.updateSnapshot(bytes);
    this.#write('snapshot.json', bytes);
  }

  /** 5.6: a targets role, from the saved state when it is the version the snapshot names, else fetched. */
  async #loadTargets(set: TrustedSet, role: string, delegator: string): Promise<VerifiedTargets> {
    const have = set.targets(role);
    if (have) return have;
    const meta = set.metaFor(role);
    const maxBytes = meta.length ?? this.#o.limits.targetsMaxBytes;
    const file = `${encodeURIComponent(role)}.json`;
    const saved = this.#readSaved(file, maxBytes);
    if (saved) {
      const sha = sha256Hex(saved);
      const verified = this.#sameSnapshot && this.#roles[role] === sha;
      try {
        const t = set.updateTargets(saved, role, delegator, verified);
        if (verified) this.counts.signaturesSkipped++;
        this.#roles[role] = sha;
        return t;
      } catch {
        // not the version the snapshot names, or unusable: fetched below
      }
    }
    const bytes = await this.#fetch(set.root.consistentSnapshot ? `${meta.version}.${encodeURIComponent(role)}.json` : file, maxBytes);
    const t = set.updateTargets(bytes, role, delegator);
    this.#write(file, bytes);
    this.#roles[role] = sha256Hex(bytes);
    return t;
  }

  /**
   * 5.6.7: the target `path` as the most trusted role that lists it names it: preorder depth
   * first, at most `maxDelegations` roles, a terminating delegation ending the search.
   */
  async getTargetInfo(path: string): Promise<TargetInfo | undefined> {
    const set = this.trusted;
    const toVisit: Array<{ role: string; parent: string }> = [{ role: 'targets', parent: 'root' }];
    const visited = new Set<string>();
    let found: TargetInfo | undefined;
    try {
      while (visited.size <= this.#o.maxDelegations && toVisit.length > 0) {
        const { role, parent } = toVisit.pop() as { role: string; parent: string };
        if (visited.has(role)) continue;
        const targets = await this.#loadTargets(set, role, parent);
        found = set.targetIn(targets, path);
        if (found) return found;
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
