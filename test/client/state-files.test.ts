/**
 * The two places a verify keeps its TUF state (src/client/state-files.ts) answer alike: a
 * directory (files replaced whole, mode 0600) and memory (an ephemeral verify with the core).
 */
import { mkdtempSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DirectoryState, MemoryState, type StateFiles } from '../../src/client/state-files.ts';
import { TrustStore } from '../../src/client/trust-store.ts';

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
const text = (b: Uint8Array | undefined): string | undefined => (b === undefined ? undefined : new TextDecoder().decode(b));

describe.each([
  ['a directory', (): StateFiles => new DirectoryState(mkdtempSync(join(tmpdir(), 'tufoci-state-')))],
  ['a directory, reads remembered', (): StateFiles => new DirectoryState(mkdtempSync(join(tmpdir(), 'tufoci-state-')), { cacheReads: true })],
  ['memory', (): StateFiles => new MemoryState()],
])('state files in %s', (_, make) => {
  it('reads what was written, within a bound; replaces, lists and removes', () => {
    const state = make();
    expect(state.read('root.json', 100)).toBeUndefined();
    expect(state.has('root.json')).toBe(false);
    state.write('root.json', enc('{"v":1}'));
    state.write('timestamp.json', '{"t":1}');
    expect(text(state.read('root.json', 100))).toBe('{"v":1}');
    expect(state.read('root.json', 6)).toBeUndefined(); // larger than the bound: as if absent
    state.write('root.json', enc('{"v":2}'));
    expect(text(state.read('root.json', 100))).toBe('{"v":2}');
    expect(state.names().sort()).toEqual(['root.json', 'timestamp.json']);
    state.remove('timestamp.json');
    state.remove('never-there.json');
    expect(state.has('timestamp.json')).toBe(false);
    expect(state.names()).toEqual(['root.json']);
  });

  it('keeps its own copy of what it was given', () => {
    const state = make();
    const bytes = enc('{"v":1}');
    state.write('root.json', bytes);
    bytes[2] = 0x78;
    expect(text(state.read('root.json', 100))).toBe('{"v":1}');
  });
});

it('a directory state writes its files mode 0600 and leaves no temporary file behind', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tufoci-state-'));
  new DirectoryState(dir).write('root.json', enc('{}'));
  expect(statSync(join(dir, 'root.json')).mode & 0o777).toBe(0o600);
  expect(readdirSync(dir)).toEqual(['root.json']);
});

it('a directory state that remembers its reads reads each file once, and sees its own writes and removals', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tufoci-state-'));
  const state = new DirectoryState(dir, { cacheReads: true });
  state.write('root.json', enc('{"v":1}'));
  expect(text(state.read('root.json', 100))).toBe('{"v":1}');
  // Another writer's change is not seen: the object is for the directory's one writer.
  writeFileSync(join(dir, 'root.json'), '{"v":9}');
  expect(text(state.read('root.json', 100))).toBe('{"v":1}');
  expect(text(new DirectoryState(dir).read('root.json', 100))).toBe('{"v":9}');
  state.remove('root.json');
  expect(state.read('root.json', 100)).toBeUndefined();
  expect(state.has('root.json')).toBe(false);
  expect(readdirSync(dir)).toEqual([]);
});

it('a state reset removes the leftovers of an interrupted write (.tmp-<uuid>), and leaves other files alone', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tufoci-state-'));
  new DirectoryState(dir).write('root.json', enc('{}'));
  writeFileSync(join(dir, '.tmp-0c6e1f2a-3b4c-4d5e-8f90-a1b2c3d4e5f6'), 'half a file');
  writeFileSync(join(dir, '.tmp-pin-0c6e1f2a-3b4c-4d5e-8f90-a1b2c3d4e5f6'), 'half a record');
  writeFileSync(join(dir, '.tmp-notes'), 'someone else’s');
  expect(TrustStore.resetState(dir)).toBe(true);
  expect(readdirSync(dir)).toEqual(['.tmp-notes']);
});
