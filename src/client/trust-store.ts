/**
 * The client's trust store: pinned roots of trust per repository or repository prefix
 * (`acme/` covers every repository under it), and where verify keeps the TUF state it has
 * verified for each repository. `tufoci trust` is its command line; programs use it directly:
 *
 * ```ts
 * const trust = new TrustStore();                    // $TUFOCI_HOME, else ~/.config/tufoci
 * trust.add('wabbit-networks/', readFileSync('root.json'));
 * await verifyImage({ ...trust.optionsFor('wabbit-networks/net-monitor'), store, repository, tag });
 * ```
 *
 * Layout of the directory (mode 0700): `trust.json` (the entries), `roots/<prefix>.root.json`
 * (the pinned roots, byte for byte as given), `state/<repository>/` (verified state).
 */
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { TufociError } from '../errors.ts';
import { readEnvelopeStrict } from '../engine/envelope.ts';
import { EngineError } from '../engine/errors.ts';
import { readRootRoles } from './core/roles.ts';
import { isRepositoryName } from '../storage/names.ts';
import { PIN_RECORD_FILE } from './pin-state.ts';

export type TrustStoreErrorCode = 'BAD_PREFIX' | 'NO_TRUST' | 'BAD_TRUST_FILE';
export class TrustStoreError extends TufociError<TrustStoreErrorCode> {}

export interface TrustEntry {
  /** A repository name, or a prefix ending in `/`. */
  prefix: string;
  /** The pinned root's file, relative to the store's directory. */
  root: string;
  /** The pinned root's root key ids (for listing). */
  keyids: string[];
}

export interface AddedTrust {
  prefix: string;
  version: number;
  threshold: number;
  keyids: string[];
}

/** A root larger than this is refused when pinned (the default policy's root bound). */
export const DEFAULT_ROOT_MAX_BYTES = 524_288;
const MAX_TRUST_FILE_BYTES = 4 * 1024 * 1024;

/** $TUFOCI_HOME, else $XDG_CONFIG_HOME/tufoci, else ~/.config/tufoci. */
export function defaultTrustDir(): string {
  return process.env['TUFOCI_HOME'] ?? join(process.env['XDG_CONFIG_HOME'] ?? join(homedir(), '.config'), 'tufoci');
}

function isPrefix(text: string): boolean {
  return text.endsWith('/') ? isRepositoryName(text.slice(0, -1)) : isRepositoryName(text);
}

export class TrustStore {
  readonly dir: string;

  constructor(dir: string = defaultTrustDir()) {
    this.dir = dir;
  }

  get #file(): string {
    return join(this.dir, 'trust.json');
  }

  list(): TrustEntry[] {
    if (!existsSync(this.#file)) return [];
    const bytes = readFileSync(this.#file);
    if (bytes.length > MAX_TRUST_FILE_BYTES) throw new TrustStoreError('BAD_TRUST_FILE', `${this.#file} is larger than ${MAX_TRUST_FILE_BYTES} bytes`);
    let parsed: unknown;
    try {
      parsed = JSON.parse(bytes.toString('utf8'));
    } catch (cause) {
      throw new TrustStoreError('BAD_TRUST_FILE', `${this.#file} is not JSON`, { cause });
    }
    const ok = (e: unknown): e is TrustEntry =>
      typeof e === 'object' && e !== null && typeof (e as TrustEntry).prefix === 'string' && typeof (e as TrustEntry).root === 'string' && Array.isArray((e as TrustEntry).keyids);
    if (!Array.isArray(parsed) || !parsed.every(ok)) throw new TrustStoreError('BAD_TRUST_FILE', `${this.#file} is not a list of trust entries`);
    return parsed;
  }

  /**
   * Pin `root` (the bytes of a root.json: a well-formed, strictly parsed root, at most `maxBytes`)
   * for a repository or, with a trailing `/`, every repository under a prefix. Replaces an entry
   * for the same prefix; leaves saved state alone (a state that does not descend from the new pin
   * is refused by the next verify, see `reset`).
   */
  add(prefix: string, root: Uint8Array, opts: { maxBytes?: number } = {}): AddedTrust {
    if (!isPrefix(prefix)) throw new TrustStoreError('BAD_PREFIX', `"${prefix.slice(0, 200)}" is not an OCI repository name or a prefix of one ending in /`);
    // A malformed root is refused here, read as the client core reads it (strictly, then its keys and roles).
    const envelope = readEnvelopeStrict('root', root, opts.maxBytes ?? DEFAULT_ROOT_MAX_BYTES);
    let rootRole;
    try {
      rootRole = readRootRoles(envelope.signed).roles['root'];
    } catch (cause) {
      throw new EngineError('MALFORMED', `root: not well-formed root metadata (${cause instanceof Error ? cause.message : String(cause)})`, { detail: { role: 'root' }, cause });
    }
    const name = `roots/${prefix.replace(/[^A-Za-z0-9._-]/g, '_')}.root.json`;
    mkdirSync(join(this.dir, 'roots'), { recursive: true, mode: 0o700 });
    this.#writeAtomic(join(this.dir, name), root);
    const keyids = [...(rootRole?.keyIDs ?? [])];
    this.#save([...this.list().filter((e) => e.prefix !== prefix), { prefix, root: name, keyids }]);
    return { prefix, version: envelope.version, threshold: rootRole?.threshold ?? 0, keyids };
  }

  remove(prefix: string): void {
    const entries = this.list();
    if (!entries.some((e) => e.prefix === prefix)) throw new TrustStoreError('NO_TRUST', `no trust entry for ${prefix.slice(0, 200)}`);
    this.#save(entries.filter((e) => e.prefix !== prefix));
  }

  /** The entry that answers for a repository: an exact entry, else the longest matching prefix. */
  entryFor(repository: string): TrustEntry | undefined {
    return this.list()
      .filter((e) => repository === e.prefix || (e.prefix.endsWith('/') && repository.startsWith(e.prefix)))
      .sort((a, b) => b.prefix.length - a.prefix.length)[0];
  }

  /** The pinned root's bytes for a repository, or undefined when nothing answers for it. */
  rootFor(repository: string): Uint8Array | undefined {
    const entry = this.entryFor(repository);
    return entry ? readFileSync(join(this.dir, entry.root)) : undefined;
  }

  /** Where verify keeps the verified TUF state of a repository. */
  stateDirFor(repository: string): string {
    if (!isRepositoryName(repository)) throw new TrustStoreError('BAD_PREFIX', `"${repository.slice(0, 200)}" is not an OCI repository name`);
    return join(this.dir, 'state', repository);
  }

  /**
   * Where the members of the namespace pinned for `prefix` share their newest verified root
   * (shared-root.ts). Under `state/.namespaces/`: no repository name starts with a dot.
   */
  namespaceStateDirFor(prefix: string): string {
    if (!prefix.endsWith('/') || !isPrefix(prefix)) throw new TrustStoreError('BAD_PREFIX', `"${prefix.slice(0, 200)}" is not a prefix ending in /`);
    return join(this.dir, 'state', '.namespaces', prefix.slice(0, -1));
  }

  /**
   * `trustedRoot`, `stateDir` and `resetHint` for verifyImage (and `namespaceStateDir` when a
   * prefix entry answers), plus the entry that answered; NO_TRUST when nothing answers.
   */
  optionsFor(repository: string): { trustedRoot: Uint8Array; stateDir: string; resetHint: string; namespaceStateDir?: string; trustedBy: string } {
    const entry = this.entryFor(repository);
    const trustedRoot = entry ? readFileSync(join(this.dir, entry.root)) : undefined;
    if (!entry || !trustedRoot) throw new TrustStoreError('NO_TRUST', `no root of trust for ${repository.slice(0, 200)}: run tufoci trust add`, { detail: { repository } });
    return {
      trustedRoot,
      stateDir: this.stateDirFor(repository),
      resetHint: `tufoci trust reset ${repository}`,
      ...(entry.prefix.endsWith('/') ? { namespaceStateDir: this.namespaceStateDirFor(entry.prefix) } : {}),
      trustedBy: entry.prefix,
    };
  }

  /**
   * Remove a saved TUF state: the role files and tufoci's records, only in a directory that holds
   * a state (a root.json or a pin record), then the directory if left empty. False when there was
   * no state there.
   */
  static resetState(dir: string): boolean {
    if (!existsSync(join(dir, 'root.json')) && !existsSync(join(dir, PIN_RECORD_FILE))) return false;
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      // (.tmp-<uuid>: a write a crash interrupted, state-files.ts; .tmp-pin-<uuid>: one by an older tufoci)
      if (entry.isFile() && (entry.name.endsWith('.json') || entry.name.startsWith('.tufoci-') || /^\.tmp-(?:pin-)?[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(entry.name))) {
        rmSync(join(dir, entry.name), { force: true });
      }
    }
    try {
      rmdirSync(dir);
    } catch {
      // other files live there too (a --state directory shared with something else): left in place
    }
    return true;
  }

  #save(list: TrustEntry[]): void {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    this.#writeAtomic(this.#file, `${JSON.stringify(list, null, 2)}\n`);
  }

  #writeAtomic(path: string, data: Uint8Array | string): void {
    const tmp = `${path}.tmp-${process.pid}`;
    writeFileSync(tmp, data, { mode: 0o600 });
    renameSync(tmp, path);
  }
}
