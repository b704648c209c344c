/**
 * Administration of the online key sets (the keyring itself is src/keys/online-keyring.ts): the
 * keys a repository's next root should list, which repositories are on which set, rotation and
 * revocation. A repository moves to a new set exactly when a root listing it is accepted, so
 * none of this needs per-repository state.
 */
import type { RepoState } from '../engine/index.ts';
import { asJson } from '../engine/signatures.ts';
import type { KeySetInfo, OnlineKeyring } from '../keys/online-keyring.ts';
import { computeKeyId, type TufKeyJson } from '../keys/tuf-key.ts';
import type { MetadataStore } from '../storage/index.ts';
import { mapLimit } from '../util/map-limit.ts';
import { anchorPrefix, onlineKeyOwner } from '../engine/scope.ts';
import { ServiceError } from './errors.ts';
import type { HeadCache } from './head-cache.ts';
import type { Logger } from './logger.ts';

export interface OnlineKeyAdminDeps {
  metadata: MetadataStore;
  keyring: OnlineKeyring;
  heads: HeadCache;
  logger: Logger;
}

export class OnlineKeyAdmin {
  readonly #d: OnlineKeyAdminDeps;

  constructor(deps: OnlineKeyAdminDeps) {
    this.#d = deps;
  }

  /**
   * Public keys of the current online key set for `repository` (what its owner puts in root for
   * snapshot and timestamp, and the CI key for service-held delegations). Derived sets give every
   * repository its own keys, so without a repository only shared sets have keys to show.
   */
  onlineKeys(repository?: string): { set: number; kind: 'derived' | 'shared'; snapshot: TufKeyJson[]; timestamp: TufKeyJson[]; ci: TufKeyJson[] } {
    if (repository !== undefined) this.#d.metadata.metadataRepository(repository); // validates the name
    // A namespace's anchor answers with the namespace's snapshot and timestamp keys (scope.ts).
    const cur = this.#d.keyring.current(repository === undefined ? undefined : (anchorPrefix(repository) ?? repository));
    const own = repository === undefined ? cur : this.#d.keyring.current(repository);
    const list = (set: typeof cur, role: 'snapshot' | 'timestamp' | 'ci'): TufKeyJson[] => (set.keys[role] ? [set.keys[role].key] : []);
    return { set: cur.id, kind: cur.kind, snapshot: list(cur, 'snapshot'), timestamp: list(cur, 'timestamp'), ci: list(own, 'ci') };
  }

  /** The online key sets the repository's current root lists for snapshot and timestamp. */
  #setsOf(repository: string, state: RepoState): number[] {
    const root = state.root.md.signed;
    const ids = new Set<number>();
    for (const name of ['snapshot', 'timestamp'] as const) {
      for (const keyid of root.roles[name]?.keyIDs ?? []) {
        const key = root.keys[keyid];
        // Look up by the key's own id (a root may name a key under another id).
        const set = key ? this.#d.keyring.setOf(computeKeyId(asJson(key)), onlineKeyOwner(root, repository)) : undefined;
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
    const repos = await this.#d.metadata.listRepositories();
    const rows = await mapLimit(repos, 8, async (repository) => {
      const sets = this.#setsOf(repository, (await this.#d.heads.head(repository)).state);
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
    const head = await this.#d.heads.head(repository);
    await this.#d.keyring.sync();
    const owner = onlineKeyOwner(head.state.root.md.signed, repository);
    const current = this.#d.keyring.current(owner);
    const sets = this.#setsOf(repository, head.state);
    if (sets.length === 1 && sets[0] === current.id) {
      await this.#d.keyring.rotate(current.id);
      const next = this.#d.keyring.current(owner);
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
      for (const repository of await this.#d.metadata.listRepositories()) {
        const root = (await this.#d.heads.head(repository)).state.root.md.signed;
        const keyid = Object.keys(root.keys).find((k) => k.startsWith(ref));
        const key = keyid ? root.keys[keyid] : undefined;
        const set = key ? this.#d.keyring.setOf(computeKeyId(asJson(key)), onlineKeyOwner(root, repository)) : undefined;
        if (set) {
          id = set.id;
          break;
        }
      }
    }
    if (id === undefined || !this.#d.keyring.sets().some((s) => s.id === id)) {
      throw new ServiceError('NOT_FOUND', id === undefined ? `no online key set holds ${ref.slice(0, 64)}` : `no online key set ${id}`, {
        detail: id === undefined ? { ref: ref.slice(0, 64) } : { set: id },
      });
    }
    const { revoked, current } = await this.#d.keyring.revoke(id, reason);
    this.#d.logger.warn({ set: revoked.id, reason: revoked.revoked?.reason }, 'online key set revoked');
    const usage = await this.onlineKeyUsage();
    return { revoked, current, affected: usage.filter((u) => u.sets.includes(revoked.id)).map((u) => u.repository) };
  }
}
