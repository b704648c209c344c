/**
 * One root walk per namespace, not per member. Every member of a namespace keeps its own TUF
 * state (its timestamp, snapshot and targets are its own), but their roots are one chain
 * (engine/scope.ts). The newest root a client verified for any member is kept in the
 * namespace's shared directory, itself a state that descends from the pin (pin-state.ts: the
 * same record, the same rules); a member whose own state trusts an older root of the chain
 * starts its refresh from the shared one, so a client pinned to root 1 walks a rotation once.
 *
 * The shared root is only ever one this client verified from the same pin (a refresh that then
 * succeeded); a shared directory that does not descend from the pin is started over. It is an
 * optimisation: when anything about it is unreadable, each member walks on its own.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { checkPinnedState, readPinRecord, rootRef, writePinRecord, type RootRef } from './pin-state.ts';
import { DEFAULT_ROOT_MAX_BYTES, TrustStore } from './trust-store.ts';
import { DirectoryState } from './state-files.ts';
import { vetRoot } from './vet.ts';

function readRoot(dir: string): Uint8Array | undefined {
  try {
    const bytes = readFileSync(join(dir, 'root.json'));
    return bytes.byteLength <= DEFAULT_ROOT_MAX_BYTES ? bytes : undefined;
  } catch {
    return undefined;
  }
}

function writeRoot(dir: string, bytes: Uint8Array): void {
  new DirectoryState(dir).write('root.json', bytes);
}

/** Add `roots` to the provenance record of `dir` (which must have one). */
function addRoots(dir: string, roots: readonly RootRef[]): void {
  const record = readPinRecord(dir);
  if (!record) return;
  const known = new Set([record.pin.sha256, ...record.roots.map((r) => r.sha256)]);
  const added = roots.filter((r) => !known.has(r.sha256) && (known.add(r.sha256), true));
  if (added.length) writePinRecord(dir, { pin: record.pin, roots: [...record.roots, ...added] });
}

/** The shared directory as a state descending from `pin` (started over when it does not). */
function sharedState(shared: string, pin: Uint8Array): boolean {
  if (checkPinnedState(shared, pin).ok) return true;
  TrustStore.resetState(shared);
  return checkPinnedState(shared, pin).ok;
}

/**
 * Before a member's refresh: when the namespace's shared root is newer than the one the member's
 * state `dir` trusts (both descending from `pin`), the member trusts it from now on.
 */
export function adoptSharedRoot(dir: string, shared: string, pin: Uint8Array, repository: string): void {
  try {
    if (!sharedState(shared, pin)) return;
    const theirs = readRoot(shared);
    const mine = readRoot(dir);
    if (!theirs || !mine || rootRef(theirs).version <= rootRef(mine).version) return;
    vetRoot('the namespace\'s shared root', theirs, repository);
    const record = readPinRecord(shared);
    addRoots(dir, [...(record?.roots ?? []), rootRef(theirs)]);
    writeRoot(dir, theirs);
  } catch {
    // only an optimisation: the member walks the chain itself
  }
}

/** After a member's refresh succeeded: its root, when newer, becomes the namespace's shared one. */
export function shareRoot(dir: string, shared: string, pin: Uint8Array, verified: readonly Uint8Array[]): void {
  try {
    if (!sharedState(shared, pin)) return;
    const mine = readRoot(dir);
    const theirs = readRoot(shared);
    if (!mine || (theirs && rootRef(mine).version <= rootRef(theirs).version)) return;
    addRoots(shared, [...verified.map(rootRef), rootRef(mine)]);
    writeRoot(shared, mine);
  } catch {
    // only an optimisation
  }
}
