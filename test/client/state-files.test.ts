/**
 * The two places a verify keeps its TUF state (src/client/state-files.ts) answer alike: a
 * directory (files replaced whole, mode 0600) and memory (an ephemeral verify with the core).
 */
import { mkdtempSync, readdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DirectoryState, MemoryState, type StateFiles } from '../../src/client/state-files.ts';

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
const text = (b: Uint8Array | undefined): string | undefined => (b === undefined ? undefined : new TextDecoder().decode(b));

describe.each([
  ['a directory', (): StateFiles => new DirectoryState(mkdtempSync(join(tmpdir(), 'tufoci-state-')))],
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
