/**
 * Where a verify keeps its verified TUF state: a directory (each file replaced atomically, mode
 * 0600), or, for an ephemeral verify with tufoci's client core, memory (nothing outlives the run,
 * so nothing needs the file system).
 */
import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface StateFiles {
  /** What messages name: the directory, or "memory". */
  readonly where: string;
  /** A file's bytes; undefined when it is missing, unreadable or larger than `maxBytes`. */
  read(name: string, maxBytes: number): Uint8Array | undefined;
  /** Replace a file as a whole (a crash leaves the old or the new one). */
  write(name: string, bytes: Uint8Array | string): void;
  has(name: string): boolean;
  remove(name: string): void;
  names(): string[];
}

export class DirectoryState implements StateFiles {
  readonly dir: string;
  readonly where: string;
  /** What this object read or wrote, by name (null: missing), when it is the directory's only writer for its lifetime. */
  readonly #cache: Map<string, Uint8Array | null> | undefined;

  /**
   * `cacheReads`: remember every file read or written here, so that reading it again costs no
   * system call. Only for a caller that is the directory's one writer while the object lives (one
   * verify with the client core; not the tuf-js Updater, which writes the directory itself).
   */
  constructor(dir: string, options: { cacheReads?: boolean } = {}) {
    this.dir = dir;
    this.where = dir;
    this.#cache = options.cacheReads ? new Map() : undefined;
  }

  read(name: string, maxBytes: number): Uint8Array | undefined {
    const cached = this.#cache?.get(name);
    if (cached !== undefined) return cached !== null && cached.byteLength <= maxBytes ? cached : undefined;
    const file = join(this.dir, name);
    try {
      if (statSync(file).size > maxBytes) return undefined;
      const bytes = readFileSync(file);
      this.#cache?.set(name, bytes);
      return bytes;
    } catch {
      this.#cache?.set(name, null);
      return undefined;
    }
  }

  write(name: string, bytes: Uint8Array | string): void {
    const tmp = join(this.dir, `.tmp-${randomUUID()}`);
    this.#cache?.delete(name);
    try {
      writeFileSync(tmp, bytes, { mode: 0o600, flag: 'wx' });
      renameSync(tmp, join(this.dir, name));
    } catch (error) {
      rmSync(tmp, { force: true });
      throw error;
    }
    this.#cache?.set(name, typeof bytes === 'string' ? new TextEncoder().encode(bytes) : Uint8Array.from(bytes));
  }

  has(name: string): boolean {
    const cached = this.#cache?.get(name);
    return cached !== undefined ? cached !== null : existsSync(join(this.dir, name));
  }

  remove(name: string): void {
    rmSync(join(this.dir, name), { force: true });
    this.#cache?.set(name, null);
  }

  names(): string[] {
    return readdirSync(this.dir);
  }
}

export class MemoryState implements StateFiles {
  readonly where = 'memory';
  readonly #files = new Map<string, Uint8Array>();

  read(name: string, maxBytes: number): Uint8Array | undefined {
    const bytes = this.#files.get(name);
    return bytes !== undefined && bytes.byteLength <= maxBytes ? bytes : undefined;
  }

  write(name: string, bytes: Uint8Array | string): void {
    this.#files.set(name, typeof bytes === 'string' ? new TextEncoder().encode(bytes) : Uint8Array.from(bytes));
  }

  has(name: string): boolean {
    return this.#files.has(name);
  }

  remove(name: string): void {
    this.#files.delete(name);
  }

  names(): string[] {
    return [...this.#files.keys()];
  }
}
