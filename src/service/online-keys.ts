/**
 * The service's online keys, as a keyring of numbered key sets.
 *
 * Every repository gets **its own** snapshot, timestamp and CI keys. TUF
 * metadata does not name its repository: if two repositories trusted the same
 * timestamp/snapshot keys, a registry could serve repository X's timestamp and
 * snapshot under R, and a client would walk R's older targets files under a
 * fresh timestamp (a cross-repository mix-and-match that rolls R back).
 * Distinct keys make that signature check fail. A *derived* set therefore
 * holds one 256-bit master secret, and the key of role `r` for repository `R`
 * is the ed25519 key whose seed is HMAC-SHA256(master, "tufoci online key
 * v1" ‖ r ‖ R): nothing per repository is stored, every instance sharing the
 * keyring derives the same keys.
 *
 * A *shared* set holds one key per role for every repository: key files or
 * `pkcs11:` URIs of HSM keys an operator supplies (TUFOCI_SNAPSHOT_KEY…), data
 * directories from before derivation, or signers injected by tests. The cross-repository
 * check then rests on each client pinning one root per repository; new
 * deployments use derived sets.
 *
 * The newest set that is not revoked is *current*: new roots list its keys.
 * Older sets keep signing for repositories whose root still lists them (the
 * engine's `signWith` uses only the signers a root authorizes) until their
 * owners sign a root listing a newer one (`tufoci rotate online`). A revoked
 * set may not appear in a new root, yet keeps signing the repositories still on
 * it: the attacker holds that key anyway, and withholding signatures would only
 * freeze them (docs/SECURITY.md).
 *
 * Embedded default: `<dataDir>/keys/keyring.json` plus `set-<n>/master.key`
 * (mode 0600). Several instances share the directory (one volume) and pick up
 * each other's changes through `sync()`; sets are created with an exclusive
 * `mkdir`, so concurrent creators agree on one.
 */
import { createHmac, createPrivateKey, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, open, readFile, stat } from 'node:fs/promises';
import { isAbsolute, join } from 'node:path';
import { CoordError } from '../coord/index.ts';
import { InMemorySigner, KeyError, generateKeyFiles, isPkcs11Uri, legacyKeyId, loadSigner, type Signer, type TufKeyJson } from '../keys/index.ts';
import { writeFileAtomic } from '../storage/atomic-file.ts';
import { ServiceError } from './errors.ts';

export const ONLINE_ROLES = ['snapshot', 'timestamp', 'ci'] as const;
export type OnlineRole = (typeof ONLINE_ROLES)[number];

export interface OnlineSigners {
  snapshot: readonly Signer[];
  timestamp: readonly Signer[];
  /** Signers of service-held delegations (`ci`); optional for injected signers. */
  ci?: readonly Signer[];
}

export interface KeySetInfo {
  id: number;
  created: string;
  kind: 'derived' | 'shared';
  /** The set's public keys — for one repository when the set is derived (absent without one). */
  keys: Record<OnlineRole, { keyid: string; key: TufKeyJson } | undefined>;
  revoked?: { at: string; reason: string };
}

interface KeySet {
  id: number;
  created: string;
  revoked?: { at: string; reason: string };
  master?: Buffer;
  shared?: Partial<Record<OnlineRole, Signer>>;
}

interface KeyringFileSet {
  id: number;
  created: string;
  kind?: 'derived' | 'shared';
  /** derived: the master secret's file. */
  master?: string;
  /** shared: one PEM file per role. */
  files?: Partial<Record<OnlineRole, string>>;
  revoked?: { at: string; reason: string };
}

const MAX_SETS = 64;
const CACHE_ENTRIES = 4096;
/** PKCS#8 DER prefix of an ed25519 private key; the 32-byte seed follows. */
const ED25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');

function deriveSigner(master: Buffer, role: OnlineRole, repository: string): Signer {
  const seed = createHmac('sha256', master).update(`tufoci online key v1\0${role}\0${repository}`).digest();
  return new InMemorySigner(createPrivateKey({ key: Buffer.concat([ED25519_PKCS8_PREFIX, seed]), format: 'der', type: 'pkcs8' }));
}

async function readMaster(path: string): Promise<Buffer> {
  const st = await stat(path);
  if ((st.mode & 0o077) !== 0) {
    throw new KeyError('KEY_FILE_PERMISSIONS', `${path} is readable by group or others; run: chmod 600 ${path}`, { detail: { path } });
  }
  const hex = (await readFile(path, 'utf8')).split('\n').filter((l) => l && !l.startsWith('#'))[0] ?? '';
  if (!/^[0-9a-f]{64}$/.test(hex)) throw new KeyError('BAD_KEY', `${path} does not hold a 64-hex-digit master secret`, { detail: { path } });
  return Buffer.from(hex, 'hex');
}

/**
 * keyring.json (mode 0644) names a shared set's keys; a `pkcs11:` URI there must not carry its PIN,
 * which would then be readable by everyone who can read the data directory.
 */
function refuseStoredPin(role: OnlineRole, ref: string, where: string): void {
  if (isPkcs11Uri(ref) && /[?&]pin-value=/.test(ref)) {
    throw new KeyError(
      'BAD_KEY_URI',
      `the ${role} key's pkcs11: URI carries pin-value, and ${where} would keep it readable by all; give the PIN with pin-source=file:/path (mode 0600) or TUFOCI_PKCS11_PIN instead`,
      { detail: { role } },
    );
  }
}

async function writeMaster(path: string, id: number): Promise<void> {
  const handle = await open(path, 'wx', 0o600);
  try {
    await handle.writeFile(`# tufoci online key master secret, set ${id}. Every repository's online keys derive from it: keep it secret.\n${randomBytes(32).toString('hex')}\n`);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

export interface OnlineKeyringOptions {
  /** Directory of keyring.json and the key files; omitted: in memory. */
  dir?: string;
  /** Key files for a shared set 0 (environment overrides: the operator brings their own keys). */
  paths?: Partial<Record<OnlineRole, string>>;
  /** Signers for shared sets (tests, KMS/HSM) instead of files. */
  signers?: OnlineSigners;
  now?: () => number;
}

export class OnlineKeyring {
  readonly #dir: string | undefined;
  readonly #now: () => number;
  #sets: KeySet[] = [];
  #mtime = -1;
  readonly #derived = new Map<string, Record<OnlineRole, Signer>>();
  /** Key files generated by the last load (to log once). */
  readonly generated: string[] = [];

  private constructor(dir: string | undefined, now: () => number) {
    this.#dir = dir;
    this.#now = now;
  }

  /** An in-memory keyring of shared sets from given signers (tests, KMS/HSM): set i holds the i-th signer of each role. */
  static fromSigners(given: OnlineSigners, now: () => number = Date.now): OnlineKeyring {
    const ring = new OnlineKeyring(undefined, now);
    const created = new Date(now()).toISOString();
    const { snapshot, timestamp, ci } = given;
    const count = Math.max(snapshot.length, timestamp.length, ci?.length ?? 0, 1);
    for (let i = 0; i < count; i++) {
      const shared: Partial<Record<OnlineRole, Signer>> = {};
      if (snapshot[i]) shared.snapshot = snapshot[i];
      if (timestamp[i]) shared.timestamp = timestamp[i];
      if (ci?.[i]) shared.ci = ci[i];
      ring.#sets.push({ id: i, created, shared });
    }
    return ring;
  }

  /** An in-memory keyring with one derived set (tests of the derivation, throwaway services). */
  static inMemory(now: () => number = Date.now): OnlineKeyring {
    const ring = new OnlineKeyring(undefined, now);
    ring.#sets.push({ id: 0, created: new Date(now()).toISOString(), master: randomBytes(32) });
    return ring;
  }

  /** Load the keyring, creating set 0 on first start. */
  static async open(opts: OnlineKeyringOptions = {}): Promise<OnlineKeyring> {
    if (opts.signers) return OnlineKeyring.fromSigners(opts.signers, opts.now);
    if (!opts.dir) return OnlineKeyring.inMemory(opts.now);
    const ring = new OnlineKeyring(opts.dir, opts.now ?? Date.now);
    await mkdir(opts.dir, { recursive: true, mode: 0o700 });
    if (!existsSync(ring.#file())) await ring.#createFirstSet(opts.paths ?? {});
    await ring.#load();
    return ring;
  }

  async #createFirstSet(paths: Partial<Record<OnlineRole, string>>): Promise<void> {
    const dir = this.#dir as string;
    for (const role of ONLINE_ROLES) {
      const explicit = paths[role];
      if (explicit) refuseStoredPin(role, explicit, this.#file()); // before set 0 exists: a corrected start can create it
    }
    try {
      await mkdir(join(dir, 'set-0'), { mode: 0o700 }); // exclusive: one of several starting instances creates set 0
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      await this.#waitFor(0);
      return;
    }
    const created = new Date(this.#now()).toISOString();
    const legacy = existsSync(join(dir, 'snapshot.key')) && existsSync(join(dir, 'timestamp.key'));
    if (Object.keys(paths).length === 0 && !legacy) {
      await writeMaster(join(dir, 'set-0', 'master.key'), 0);
      this.generated.push(join(dir, 'set-0', 'master.key'));
      await this.#write([{ id: 0, created, kind: 'derived', master: join('set-0', 'master.key') }]);
      return;
    }
    // Operator-supplied key files, or a data directory from before derivation: one shared key per role.
    const files: Partial<Record<OnlineRole, string>> = {};
    for (const role of ONLINE_ROLES) {
      const explicit = paths[role];
      if (explicit) {
        files[role] = explicit;
        continue;
      }
      const base = join(dir, role);
      if (!existsSync(`${base}.key`)) {
        await generateKeyFiles(base, 'ed25519', `tufoci online ${role} key (shared set 0), generated on first start`);
        this.generated.push(`${base}.key`);
      }
      files[role] = `${role}.key`;
    }
    await this.#write([{ id: 0, created, kind: 'shared', files }]);
  }

  #file(): string {
    return join(this.#dir as string, 'keyring.json');
  }

  async #write(sets: KeyringFileSet[]): Promise<void> {
    await writeFileAtomic(this.#file(), new TextEncoder().encode(`${JSON.stringify({ sets }, null, 2)}\n`));
  }

  async #readFileSets(): Promise<KeyringFileSet[]> {
    const parsed = JSON.parse(await readFile(this.#file(), 'utf8')) as { sets?: unknown };
    if (!Array.isArray(parsed.sets)) throw new ServiceError('BAD_REQUEST', `${this.#file()}: "sets" must be an array`, { detail: {} });
    return parsed.sets as KeyringFileSet[];
  }

  async #load(): Promise<void> {
    const dir = this.#dir as string;
    const st = await stat(this.#file());
    const known = new Map(this.#sets.map((s) => [s.id, s]));
    const sets: KeySet[] = [];
    const resolve = (f: string): string => (isAbsolute(f) || isPkcs11Uri(f) ? f : join(dir, f));
    for (const fs of await this.#readFileSets()) {
      const have = known.get(fs.id);
      const set: KeySet = { id: fs.id, created: fs.created, ...(fs.revoked ? { revoked: fs.revoked } : {}) };
      if (fs.kind === 'derived' || fs.master) {
        set.master = have?.master ?? (await readMaster(resolve(fs.master as string)));
      } else {
        let shared = have?.shared;
        if (!shared) {
          shared = {};
          for (const role of ONLINE_ROLES) {
            const f = fs.files?.[role];
            if (!f) continue;
            refuseStoredPin(role, f, this.#file());
            shared[role] = await loadSigner(resolve(f));
          }
        }
        set.shared = shared;
      }
      sets.push(set);
    }
    this.#sets = sets.sort((a, b) => a.id - b.id);
    this.#mtime = st.mtimeMs;
  }

  /** Re-read the keyring when another instance changed it. Returns true when it did. */
  async sync(): Promise<boolean> {
    if (!this.#dir) return false;
    const st = await stat(this.#file()).catch(() => undefined);
    if (!st || st.mtimeMs === this.#mtime) return false;
    await this.#load();
    return true;
  }

  #signersOf(set: KeySet, repository: string | undefined): Partial<Record<OnlineRole, Signer>> {
    if (set.shared) return set.shared;
    if (repository === undefined) return {};
    const key = `${set.id}\0${repository}`;
    let signers = this.#derived.get(key);
    if (signers) {
      this.#derived.delete(key); // LRU: most recent last
    } else {
      const master = set.master as Buffer;
      signers = { snapshot: deriveSigner(master, 'snapshot', repository), timestamp: deriveSigner(master, 'timestamp', repository), ci: deriveSigner(master, 'ci', repository) };
      if (this.#derived.size >= CACHE_ENTRIES) this.#derived.delete(this.#derived.keys().next().value as string);
    }
    this.#derived.set(key, signers);
    return signers;
  }

  #info(set: KeySet, repository: string | undefined): KeySetInfo {
    const signers = this.#signersOf(set, repository);
    const keys = {} as KeySetInfo['keys'];
    for (const role of ONLINE_ROLES) {
      const s = signers[role];
      keys[role] = s ? { keyid: s.keyid, key: s.public } : undefined;
    }
    return { id: set.id, created: set.created, kind: set.shared ? 'shared' : 'derived', keys, ...(set.revoked ? { revoked: set.revoked } : {}) };
  }

  /** Every set; with `repository`, the keys that set gives it. */
  sets(repository?: string): KeySetInfo[] {
    return this.#sets.map((s) => this.#info(s, repository));
  }

  #currentSet(): KeySet {
    for (let i = this.#sets.length - 1; i >= 0; i--) {
      const s = this.#sets[i] as KeySet;
      if (!s.revoked) return s;
    }
    // Unreachable through the API: revoking the newest set always makes a new one.
    throw new Error('every online key set is revoked; run "tufoci online-keys rotate"');
  }

  /** The newest set that is not revoked (with the keys it gives `repository`): what new roots list. */
  current(repository?: string): KeySetInfo {
    return this.#info(this.#currentSet(), repository);
  }

  /** Every signer every set has for `repository` (revoked ones too, see the module comment); signWith picks the authorized ones. */
  signers(repository: string): Required<OnlineSigners> {
    const out = { snapshot: [] as Signer[], timestamp: [] as Signer[], ci: [] as Signer[] };
    for (const set of this.#sets) {
      const s = this.#signersOf(set, repository);
      for (const role of ONLINE_ROLES) if (s[role]) out[role].push(s[role]);
    }
    return out;
  }

  /** Public snapshot and timestamp keys a new root of `repository` may list: those of sets not revoked. */
  acceptableKeys(repository: string): TufKeyJson[] {
    const out: TufKeyJson[] = [];
    for (const set of this.#sets) {
      if (set.revoked) continue;
      const s = this.#signersOf(set, repository);
      for (const role of ['snapshot', 'timestamp'] as const) if (s[role]) out.push((s[role] as Signer).public);
    }
    return out;
  }

  /** Public keys of revoked sets for `repository`: refused in new roots. */
  revokedKeys(repository: string): TufKeyJson[] {
    const out: TufKeyJson[] = [];
    for (const set of this.#sets) {
      if (!set.revoked) continue;
      const s = this.#signersOf(set, repository);
      for (const role of ONLINE_ROLES) if (s[role]) out.push((s[role] as Signer).public);
    }
    return out;
  }

  /** The set that gives `repository` the key `keyid`, if any. */
  setOf(keyid: string, repository: string): KeySetInfo | undefined {
    const set = this.#sets.find((s) => {
      const signers = this.#signersOf(s, repository);
      return ONLINE_ROLES.some((r) => signers[r]?.keyid === keyid);
    });
    return set ? this.#info(set, repository) : undefined;
  }

  /**
   * Key ids of `repository`'s service-held CI keys, every set; for an ECDSA key also its legacy
   * id, under which a delegation written before the key id fix lists it.
   */
  ciKeyIds(repository: string): Set<string> {
    return new Set(this.signers(repository).ci.flatMap((s) => [s.keyid, legacyKeyId(s.public)]));
  }

  /**
   * Make a new current (derived) set. Idempotent across instances sharing the
   * directory: when `ifCurrent` is given and the current set is no longer that
   * one (someone rotated meanwhile), the newer set is returned instead.
   */
  async rotate(ifCurrent?: number): Promise<KeySetInfo> {
    await this.sync();
    if (ifCurrent !== undefined && this.#currentSet().id !== ifCurrent) return this.current();
    if (this.#sets.filter((s) => !s.revoked).length >= MAX_SETS) {
      throw new ServiceError('TOO_MANY_KEY_SETS', `the service already holds ${MAX_SETS} online key sets; retire unused ones first`, { detail: { max: MAX_SETS } });
    }
    const id = (this.#sets.at(-1)?.id ?? -1) + 1;
    const created = new Date(this.#now()).toISOString();
    if (!this.#dir) {
      this.#sets.push({ id, created, master: randomBytes(32) });
      return this.current();
    }
    const sub = `set-${id}`;
    try {
      await mkdir(join(this.#dir, sub), { mode: 0o700 }); // exclusive: another instance creating set `id` wins
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      await this.#waitFor(id);
      return this.current();
    }
    await writeMaster(join(this.#dir, sub, 'master.key'), id);
    await this.#write([...(await this.#readFileSets()), { id, created, kind: 'derived', master: join(sub, 'master.key') }]);
    await this.#load();
    return this.current();
  }

  async #waitFor(id: number): Promise<void> {
    for (let i = 0; i < 100; i++) {
      if (existsSync(this.#file())) {
        await this.sync();
        if (this.#sets.some((s) => s.id === id)) return;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new CoordError('BUSY', `online key set ${id} is being created by another instance; retry`, { detail: { id, retryAfterSeconds: 1 } });
  }

  /** Mark set `id` revoked; a new current set is made when it was the newest. */
  async revoke(id: number, reason: string): Promise<{ revoked: KeySetInfo; current: KeySetInfo }> {
    await this.sync();
    const target = this.#sets.find((s) => s.id === id);
    if (!target) throw new ServiceError('NOT_FOUND', `no online key set ${id}`, { detail: { set: id } });
    const revoked = { at: new Date(this.#now()).toISOString(), reason: reason.slice(0, 500) };
    if (!target.revoked) {
      if (this.#dir) {
        await this.#write((await this.#readFileSets()).map((s) => (s.id === id ? { ...s, revoked } : s)));
        await this.#load();
      } else {
        target.revoked = revoked;
      }
    }
    // Revoking the newest set makes a new one: an older set never becomes current again.
    if (this.#sets.at(-1)?.revoked) await this.rotate();
    return { revoked: this.#info(this.#sets.find((s) => s.id === id) as KeySet, undefined), current: this.current() };
  }

  /** The set holding shared key `keyid` (sets whose keys are the same for every repository). */
  sharedSetOf(keyid: string): number | undefined {
    return this.#sets.find((s) => s.shared && ONLINE_ROLES.some((r) => s.shared?.[r]?.keyid === keyid || (keyid.length >= 8 && s.shared?.[r]?.keyid.startsWith(keyid))))?.id;
  }
}
