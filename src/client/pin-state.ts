/**
 * The pin wins over saved state. A client's trusted TUF state (`verifyImage`'s
 * `stateDir`) is used only while it descends from the root the client pins
 * now: the same root, or one reached from it by rotations tuf-js verified.
 *
 * Alongside the state, `.tufoci-pin` records (JSON, written atomically, 0600;
 * not a `.json` name, so it never collides with a role file tuf-js persists):
 * - `pin`: version and sha256 of the root the state started from;
 * - `roots`: version and sha256 of every root reached from it by a verified
 *   rotation (the N.root.json bytes handed to tuf-js during a refresh that
 *   then succeeded).
 * A pin is accepted when its bytes hash to the recorded pin, to one of the
 * recorded roots (re-pinning to a later root of the same chain), or to the
 * root the state trusts now. Anything else is refused: the caller names both
 * roots and how to reset the state. State written before this record existed
 * is accepted only for a pin equal to its current root.
 */
import { createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { DirectoryState } from './state-files.ts';

export const PIN_RECORD_FILE = '.tufoci-pin';
const MAX_RECORD_BYTES = 1024 * 1024;

export interface RootRef {
  version: number;
  sha256: string;
}

export interface PinRecord {
  pin: RootRef;
  roots: RootRef[];
}

export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** Version and sha256 of root metadata bytes (version 0 when they do not parse: only the hash counts). */
export function rootRef(bytes: Uint8Array): RootRef {
  let version = 0;
  try {
    const v = (JSON.parse(new TextDecoder().decode(bytes)) as { signed?: { version?: unknown } }).signed?.version;
    if (typeof v === 'number' && Number.isSafeInteger(v) && v > 0) version = v;
  } catch {
    // unparsable: tuf-js refuses it later; the hash still identifies it
  }
  return { version, sha256: sha256Hex(bytes) };
}

/** `root v2 (sha256 1a2b3c4d5e6f)` */
export function describeRoot(root: RootRef): string {
  return `root v${root.version || '?'} (sha256 ${root.sha256.slice(0, 12)})`;
}

function isRootRef(v: unknown): v is RootRef {
  const r = v as RootRef;
  return typeof v === 'object' && v !== null && Number.isSafeInteger(r.version) && typeof r.sha256 === 'string' && /^[0-9a-f]{64}$/.test(r.sha256);
}

/** The record in `dir`, or undefined when there is none (or it is unreadable). */
export function readPinRecord(dir: string): PinRecord | undefined {
  const file = join(dir, PIN_RECORD_FILE);
  try {
    if (statSync(file).size > MAX_RECORD_BYTES) return undefined;
    const parsed = JSON.parse(readFileSync(file, 'utf8')) as { pin?: unknown; roots?: unknown };
    if (!isRootRef(parsed.pin) || !Array.isArray(parsed.roots) || !parsed.roots.every(isRootRef)) return undefined;
    return { pin: parsed.pin, roots: parsed.roots };
  } catch {
    return undefined;
  }
}

/** Replace the record atomically (temporary file, then rename), mode 0600. */
export function writePinRecord(dir: string, record: PinRecord): void {
  new DirectoryState(dir).write(PIN_RECORD_FILE, `${JSON.stringify(record)}\n`);
}

export type PinCheck =
  | { ok: true }
  | {
      ok: false;
      pinned: RootRef;
      /** The root the state started from, when recorded. */
      startedFrom?: RootRef;
      /** The root the state trusts now. */
      current: RootRef;
    };

/**
 * Make `dir` (holding, or about to hold, tuf-js's `root.json`) a state that
 * descends from `pin`: a new state starts from it (record first, then
 * root.json); an existing one is checked against the record.
 */
export function checkPinnedState(dir: string, pin: Uint8Array): PinCheck {
  const pinned = rootRef(pin);
  let stateRoot: Uint8Array;
  try {
    stateRoot = readFileSync(join(dir, 'root.json'));
  } catch {
    writePinRecord(dir, { pin: pinned, roots: [] });
    new DirectoryState(dir).write('root.json', pin);
    return { ok: true };
  }
  const current = rootRef(stateRoot);
  const record = readPinRecord(dir);
  if (pinned.sha256 === current.sha256) {
    if (!record) writePinRecord(dir, { pin: pinned, roots: [] });
    return { ok: true };
  }
  if (record && (record.pin.sha256 === pinned.sha256 || record.roots.some((r) => r.sha256 === pinned.sha256))) return { ok: true };
  return { ok: false, pinned, ...(record ? { startedFrom: record.pin } : {}), current };
}

/** After a refresh succeeded: add the roots it walked through (verified by tuf-js) to the record. */
export function recordVerifiedRoots(dir: string, roots: readonly Uint8Array[]): void {
  if (roots.length === 0) return;
  const record = readPinRecord(dir);
  if (!record) return; // no provenance to extend (cannot happen after checkPinnedState)
  const known = new Set([record.pin.sha256, ...record.roots.map((r) => r.sha256)]);
  const added: RootRef[] = [];
  for (const ref of roots.map(rootRef)) {
    if (known.has(ref.sha256)) continue;
    known.add(ref.sha256);
    added.push(ref);
  }
  if (added.length > 0) writePinRecord(dir, { pin: record.pin, roots: [...record.roots, ...added] });
}
