/**
 * Crash-safe file replacement: write a temporary file in the same directory,
 * fsync it, rename it over the target, then fsync the directory so the rename
 * itself is durable. A reader sees the old file or the new one, never a torn
 * one. Temporary names start with `.tmp-`, which no OCI name component can.
 */
import { randomUUID } from 'node:crypto';
import { open, rename, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';

export interface AtomicWriteOptions {
  /** fsync file and directory (default true). Off only for throwaway data, e.g. benchmarks of the CPU side. */
  fsync?: boolean;
  /**
   * fsync the directory after the rename (default: as `fsync`). A caller
   * renaming several files into one directory passes false and calls
   * `syncDirectory` once after the last rename, before relying on any of them.
   */
  syncDirectory?: boolean;
}

export async function writeFileAtomic(path: string, bytes: Uint8Array, options: AtomicWriteOptions = {}): Promise<void> {
  const fsync = options.fsync ?? true;
  const dir = dirname(path);
  const tmp = join(dir, `.tmp-${randomUUID()}`);
  const handle = await open(tmp, 'wx', 0o644);
  try {
    try {
      await handle.writeFile(bytes);
      if (fsync) await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(tmp, path);
  } catch (error) {
    await unlink(tmp).catch(() => undefined);
    throw error;
  }
  if (options.syncDirectory ?? fsync) await syncDirectory(dir);
}

export async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

export type BoundedRead = { kind: 'ok'; bytes: Uint8Array } | { kind: 'missing' } | { kind: 'too-large'; size: number };

/** Read a whole file, refusing (without reading it) one larger than `maxBytes`. */
export async function readFileBounded(path: string, maxBytes: number): Promise<BoundedRead> {
  let handle;
  try {
    handle = await open(path, 'r');
  } catch (error) {
    if (isErrno(error, 'ENOENT') || isErrno(error, 'ENOTDIR')) return { kind: 'missing' };
    throw error;
  }
  try {
    const { size } = await handle.stat();
    if (size > maxBytes) return { kind: 'too-large', size };
    // Read at most maxBytes + 1 so a file growing under us is still caught.
    const buffer = new Uint8Array(Math.min(size, maxBytes) + 1);
    let filled = 0;
    while (filled < buffer.byteLength) {
      const { bytesRead } = await handle.read(buffer, filled, buffer.byteLength - filled, filled);
      if (bytesRead === 0) break;
      filled += bytesRead;
    }
    if (filled > maxBytes) return { kind: 'too-large', size: filled };
    return { kind: 'ok', bytes: buffer.subarray(0, filled) };
  } finally {
    await handle.close();
  }
}

export function isErrno(error: unknown, code: string): boolean {
  return typeof error === 'object' && error !== null && (error as { code?: unknown }).code === code;
}
