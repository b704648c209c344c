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
  constructor(dir: string) {
    this.dir = dir;
    this.where = dir;
  }

  read(name: string, maxBytes: number): Uint8Array | undefined {
    const file = join(this.dir, name);
    try {
      if (statSync(file).size > maxBytes) return undefined;
      return readFileSync(file);
    } catch {
      return undefined;
    }
  }

  write(name: string, bytes: Uint8Array | string): void {
    const tmp = join(this.dir, `.tmp-${randomUUID()}`);
    try {
      writeFileSync(tmp, bytes, { mode: 0o600, flag: 'wx' });
      renameSync(tmp, join(this.dir, name));
    } catch (error) {
      rmSync(tmp, { force: true });
      throw error;
    }
  }

  has(name: string): boolean {
    return existsSync(join(this.dir, name));
  }

  remove(name: string): void {
    rmSync(join(this.dir, name), { force: true });
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
