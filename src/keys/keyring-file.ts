/**
 * The keyring directory on disk: `keyring.json` (mode 0644) lists the numbered online key sets;
 * a derived set's master secret is `set-<n>/master.key` (0600), a shared set names one key file
 * or `pkcs11:` URI per role. Several instances share the directory (one volume): a set's
 * directory is created with an exclusive `mkdir`, so concurrent creators agree on one, and
 * keyring.json is replaced atomically (readers see the old list or the new one).
 */
import { mkdir, readFile, stat } from 'node:fs/promises';
import { isAbsolute, join } from 'node:path';
import { writeFileAtomic } from '../util/atomic-file.ts';
import type { OnlineRole } from './online-derivation.ts';
import { isPkcs11Uri } from './key-files.ts';
import { KeyError } from './tuf-key.ts';

export interface Revocation {
  at: string;
  reason: string;
}

/** One set as keyring.json lists it. */
export interface KeyringFileSet {
  id: number;
  created: string;
  kind?: 'derived' | 'shared';
  /** derived: the master secret's file. */
  master?: string;
  /** shared: one PEM file (or pkcs11: URI) per role. */
  files?: Partial<Record<OnlineRole, string>>;
  revoked?: Revocation;
}

export class KeyringFile {
  readonly dir: string;

  constructor(dir: string) {
    this.dir = dir;
  }

  get path(): string {
    return join(this.dir, 'keyring.json');
  }

  /** A file named in keyring.json, resolved against the directory (absolute paths and pkcs11: URIs as they are). */
  resolve(file: string): string {
    return isAbsolute(file) || isPkcs11Uri(file) ? file : join(this.dir, file);
  }

  async read(): Promise<KeyringFileSet[]> {
    const parsed = JSON.parse(await readFile(this.path, 'utf8')) as { sets?: unknown };
    if (!Array.isArray(parsed.sets)) throw new KeyError('BAD_KEYRING', `${this.path}: "sets" must be an array`, { detail: { path: this.path } });
    return parsed.sets as KeyringFileSet[];
  }

  async write(sets: readonly KeyringFileSet[]): Promise<void> {
    await writeFileAtomic(this.path, new TextEncoder().encode(`${JSON.stringify({ sets }, null, 2)}\n`));
  }

  /**
   * What tells one version of keyring.json from the next, or undefined when there is none: the
   * file's identity (an atomic replacement is a new inode), size and modification time, so two
   * writes within one tick of the file system's clock are still told apart.
   */
  async version(): Promise<string | undefined> {
    const st = await stat(this.path, { bigint: true }).catch(() => undefined);
    return st ? `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}` : undefined;
  }

  /** Create the directory of set `id` (exclusively); false when it exists (another instance creates that set). */
  async claimSet(id: number): Promise<boolean> {
    try {
      await mkdir(join(this.dir, `set-${id}`), { mode: 0o700 });
      return true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      return false;
    }
  }
}

/**
 * keyring.json is readable by everyone who can read the data directory: a `pkcs11:` URI stored
 * there must not carry its PIN.
 */
export function refuseStoredPin(role: OnlineRole, ref: string, where: string): void {
  if (isPkcs11Uri(ref) && /[?&]pin-value=/.test(ref)) {
    throw new KeyError(
      'BAD_KEY_URI',
      `the ${role} key's pkcs11: URI carries pin-value, and ${where} would keep it readable by all; give the PIN with pin-source=file:/path (mode 0600) or TUFOCI_PKCS11_PIN instead`,
      { detail: { role } },
    );
  }
}
