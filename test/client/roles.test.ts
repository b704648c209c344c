/**
 * The client core's entry readers (src/client/core/roles.ts) against the @tufjs/models classes they
 * stand for: on generated valid and malformed input, both accept or both refuse, and what they
 * read is the same. The path matcher against tuf-js's own rule (minimatch per segment).
 */
import { createHash } from 'node:crypto';
import { MetaFile, Root, TargetFile, Timestamp } from '@tufjs/models';
import { Delegations as ModelDelegations } from '@tufjs/models/dist/delegations.js';
import { DelegatedRole as ModelDelegatedRole, SuccinctRoles as ModelSuccinctRoles } from '@tufjs/models/dist/role.js';
import fc from 'fast-check';
import { minimatch } from 'minimatch';
import { describe, expect, it } from 'vitest';
import {
  DelegatedRole,
  SuccinctRoles,
  isTargetInPathPattern,
  matchSegment,
  readDelegations,
  readMetaEntry,
  readRootRoles,
  readSnapshotMeta,
  readTargetInfo,
  verifyLengthAndHashes,
} from '../../src/client/core/roles.ts';

type Outcome<T> = { ok: true; value: T } | { ok: false; message: string };
function outcome<T>(f: () => T): Outcome<T> {
  try {
    return { ok: true, value: f() };
  } catch (e) {
    return { ok: false, message: e instanceof Error ? e.message : String(e) };
  }
}
/** Both accept with the same reading, or both refuse with the same message. */
function same<A, B>(ours: Outcome<A>, theirs: Outcome<B>, read: (a: A) => unknown, readModel: (b: B) => unknown): void {
  expect(ours.ok, JSON.stringify({ ours, theirs: theirs.ok ? 'accepted' : theirs.message })).toBe(theirs.ok);
  if (ours.ok && theirs.ok) expect(read(ours.value)).toEqual(readModel(theirs.value));
  // Where the models crash on hostile input (reading a field of null), the core refuses with its own message.
  if (!ours.ok && !theirs.ok && !theirs.message.startsWith('Cannot read properties of')) expect(ours.message).toBe(theirs.message);
}

const KEYID = 'a'.repeat(64);
const KEY = { keytype: 'ed25519', scheme: 'ed25519', keyval: { public: 'ab'.repeat(32) } };

// Values that a field may hold in hostile metadata: the right type, a wrong one, or nothing.
const junk = fc.oneof(fc.constant(undefined), fc.constant(null), fc.boolean(), fc.integer({ min: -3, max: 3 }), fc.string({ maxLength: 4 }), fc.constant([]), fc.constant({}), fc.constant(['x']));
const version = fc.oneof(fc.integer({ min: -1, max: 5 }), junk);
const hashes = fc.oneof(fc.constant({ sha256: 'ab' }), fc.constant({ sha512: 'cd', sha256: 'ef' }), fc.constant({ sha256: 1 }), fc.constant(['ab']), junk);
const keyids = fc.oneof(fc.constant([KEYID]), fc.constant([KEYID, KEYID]), fc.constant([]), fc.constant([1]), junk);
const threshold = fc.oneof(fc.integer({ min: -1, max: 3 }), junk);
const pathsField = fc.oneof(fc.constant(undefined), fc.constant(['v*']), fc.constant([]), fc.constant([3]), junk);

describe('meta entries and targets read as the models read them', () => {
  it('MetaFile: version, length, hashes', () => {
    fc.assert(
      fc.property(fc.record({ version, length: fc.oneof(fc.integer({ min: -2, max: 600 }), junk), hashes }, { requiredKeys: [] }), (entry) => {
        same(outcome(() => readMetaEntry(entry)), outcome(() => MetaFile.fromJSON(entry as never)), (a) => [a.version, a.length, a.hashes], (b) => [b.version, b.length, b.hashes]);
      }),
      { numRuns: 2000 },
    );
  });

  it('MetaFile.verify: the same refusals for length and hashes', () => {
    const data = Buffer.from('some metadata bytes');
    const sha256 = createHash('sha256').update(data).digest('hex');
    const entries = [
      { version: 1 },
      { version: 1, length: data.length, hashes: { sha256 } },
      { version: 1, length: data.length + 1 },
      { version: 1, hashes: { sha256: '00' } },
      { version: 1, hashes: { 'no-such-hash': '00' } },
      { version: 1, hashes: { sha256, sha512: createHash('sha512').update(data).digest('hex') } },
    ];
    for (const e of entries) {
      const ours = outcome(() => verifyLengthAndHashes(readMetaEntry(e), data));
      const theirs = outcome(() => MetaFile.fromJSON(e as never).verify(data));
      same(ours, theirs, () => 0, () => 0);
    }
  });

  it('TargetFile: length, hashes, custom', () => {
    const custom = fc.oneof(fc.constant({ mediaType: 'm' }), fc.constant(['m']), junk);
    fc.assert(
      fc.property(fc.record({ length: fc.oneof(fc.integer({ min: -2, max: 600 }), junk), hashes, custom }, { requiredKeys: [] }), (entry) => {
        same(
          outcome(() => readTargetInfo('v1', entry)),
          outcome(() => TargetFile.fromJSON('v1', entry as never)),
          (a) => [a.path, a.length, a.hashes, a.custom, JSON.stringify(a.toJSON())],
          (b) => [b.path, b.length, b.hashes, b.custom, JSON.stringify(b.toJSON())],
        );
      }),
      { numRuns: 2000 },
    );
  });

  it("Timestamp: the snapshot's entry", () => {
    fc.assert(
      fc.property(fc.oneof(fc.record({ 'snapshot.json': fc.oneof(fc.record({ version, hashes }, { requiredKeys: [] }), junk) }), junk), (meta) => {
        const signed = { _type: 'timestamp', spec_version: '1.0.31', version: 1, expires: '2030-01-01T00:00:00Z', meta };
        const theirs = outcome(() => Timestamp.fromJSON(signed as never).snapshotMeta);
        same(outcome(() => readSnapshotMeta(signed)), theirs, (a) => [a.version, a.length, a.hashes], (b) => [b.version, b.length, b.hashes]);
      }),
      { numRuns: 1000 },
    );
  });
});

describe('roots and delegations read as the models read them', () => {
  const role = fc.oneof(fc.record({ keyids, threshold }, { requiredKeys: [] }), junk);
  const key = fc.oneof(fc.constant(KEY), fc.constant({ ...KEY, keyval: { public: 3 } }), fc.constant({ ...KEY, scheme: undefined }), fc.constant({ ...KEY, keytype: 7 }), junk);

  it('Root: consistent_snapshot, keys, roles (the four top-level ones required)', () => {
    const roles = fc.oneof(
      fc.record({ root: role, targets: role, snapshot: role, timestamp: role }),
      fc.record({ root: role, targets: role }),
      fc.record({ root: role, targets: role, snapshot: role, timestamp: role, extra: role }),
      junk,
    );
    fc.assert(
      fc.property(fc.record({ keys: fc.oneof(fc.record({ [KEYID]: key }), junk), roles, consistent_snapshot: fc.oneof(fc.boolean(), junk) }, { requiredKeys: [] }), (fields) => {
        const signed = { _type: 'root', spec_version: '1.0.31', version: 1, expires: '2030-01-01T00:00:00Z', ...fields };
        same(
          outcome(() => readRootRoles(signed)),
          outcome(() => Root.fromJSON(signed as never)),
          (a) => [a.consistentSnapshot, Object.keys(a.keys), Object.fromEntries(Object.entries(a.roles).map(([n, r]) => [n, [r.keyIDs, r.threshold]]))],
          (b) => [b.consistentSnapshot, Object.keys(b.keys), Object.fromEntries(Object.entries(b.roles).map(([n, r]) => [n, [r.keyIDs, r.threshold]]))],
        );
      }),
      { numRuns: 2000 },
    );
  });

  it('DelegatedRole and SuccinctRoles: every field, in the models order of checks', () => {
    fc.assert(
      fc.property(
        fc.record({ name: fc.oneof(fc.constant('ci'), fc.constant('targets'), junk), keyids, threshold, terminating: fc.oneof(fc.boolean(), junk), paths: pathsField, path_hash_prefixes: pathsField }, { requiredKeys: [] }),
        (r) => {
          same(
            outcome(() => DelegatedRole.fromJSON(r)),
            outcome(() => ModelDelegatedRole.fromJSON(r as never)),
            (a) => [a.name, a.keyIDs, a.threshold, a.terminating, a.paths, a.pathHashPrefixes],
            (b) => [b.name, b.keyIDs, b.threshold, b.terminating, b.paths, b.pathHashPrefixes],
          );
        },
      ),
      { numRuns: 2000 },
    );
    fc.assert(
      fc.property(fc.record({ keyids, threshold, bit_length: fc.oneof(fc.integer({ min: -1, max: 34 }), junk), name_prefix: fc.oneof(fc.constant('ci'), junk) }, { requiredKeys: [] }), (r) => {
        same(
          outcome(() => SuccinctRoles.fromJSON(r)),
          outcome(() => ModelSuccinctRoles.fromJSON(r as never)),
          (a) => [a.keyIDs, a.threshold, a.bitLength, a.namePrefix, a.suffixLen],
          (b) => [b.keyIDs, b.threshold, b.bitLength, b.namePrefix, b.suffixLen],
        );
      }),
      { numRuns: 2000 },
    );
  });

  it('Delegations: keys, unique role names, no top-level names, succinct roles', () => {
    const delegated = fc.oneof(
      fc.constant({ name: 'ci', keyids: [KEYID], threshold: 1, terminating: true, paths: ['v*'] }),
      fc.constant({ name: 'snapshot', keyids: [KEYID], threshold: 1, terminating: false, paths: ['*'] }),
      fc.constant({ name: 'ci', keyids: [KEYID], threshold: 0, terminating: true, paths: ['v*'] }),
      junk,
    );
    const succinct = fc.oneof(fc.constant({ keyids: [KEYID], threshold: 1, bit_length: 4, name_prefix: 'bins' }), fc.constant({ keyids: [KEYID], threshold: 1, bit_length: 0, name_prefix: 'bins' }), junk);
    fc.assert(
      fc.property(fc.record({ keys: fc.oneof(fc.record({ [KEYID]: key }), junk), roles: fc.oneof(fc.array(delegated, { maxLength: 3 }), junk), succinct_roles: succinct }, { requiredKeys: ['keys'] }), (d) => {
        same(
          outcome(() => readDelegations(d)),
          outcome(() => ModelDelegations.fromJSON(d as never)),
          (a) => [Object.keys(a.keys), a.roles?.map((r) => r.name), a.succinct?.bitLength],
          (b) => [Object.keys(b.keys), b.roles ? Object.keys(b.roles) : undefined, b.succinctRoles?.bitLength],
        );
      }),
      { numRuns: 2000 },
    );
  });

  it('succinct bins: the same bin for every target, and the same names recognised', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 32 }), fc.string({ maxLength: 30 }), fc.string({ maxLength: 12 }), (bitLength, target, suffix) => {
        const json = { keyids: [KEYID], threshold: 1, bit_length: bitLength, name_prefix: 'ci' };
        const ours = SuccinctRoles.fromJSON(json);
        const theirs = ModelSuccinctRoles.fromJSON(json as never);
        expect(ours.getRoleForTarget(target)).toBe(theirs.getRoleForTarget(target));
        for (const name of [`ci-${suffix}`, ours.getRoleForTarget(target), `ci-${'f'.repeat(ours.suffixLen)}`, `cx-${suffix}`]) {
          expect(ours.isDelegatedRole(name)).toBe(theirs.isDelegatedRole(name));
        }
      }),
      { numRuns: 2000 },
    );
  });
});

describe('path patterns match as tuf-js matches them (minimatch per segment)', () => {
  /** tuf-js's isTargetInPathPattern, written from its rule. */
  function reference(target: string, pattern: string): boolean {
    const t = target.split('/');
    const p = pattern.split('/');
    return t.length === p.length && t.every((part, i) => minimatch(part, p[i] as string));
  }

  it('the simple form (literals, * and ?) on generated segments', () => {
    const segment = fc.string({ unit: fc.constantFrom('a', 'b', 'v', '1', '.', '-', '_', 'é'), maxLength: 8 });
    const pattern = fc.string({ unit: fc.constantFrom('a', 'b', 'v', '1', '.', '-', '*', '?', 'é'), maxLength: 8 });
    fc.assert(
      fc.property(segment, pattern, (s, p) => {
        expect(matchSegment(s, p), `${JSON.stringify(s)} ~ ${JSON.stringify(p)}`).toBe(minimatch(s, p));
      }),
      { numRuns: 20_000 },
    );
  });

  it('whole paths, and patterns beyond the simple form (handed to minimatch)', () => {
    const part = fc.string({ unit: fc.constantFrom('a', 'b', '1', '.', '*', '?', '[', ']', '!', '{', '}', ',', '\\', '#', '+', '@', '(', ')', '|'), maxLength: 6 });
    const path = fc.array(fc.string({ unit: fc.constantFrom('a', 'b', '1', '.', '!', '{', '}'), maxLength: 5 }), { minLength: 1, maxLength: 3 }).map((a) => a.join('/'));
    const pat = fc.array(part, { minLength: 1, maxLength: 3 }).map((a) => a.join('/'));
    fc.assert(
      fc.property(path, pat, (t, p) => {
        expect(isTargetInPathPattern(t, p), `${JSON.stringify(t)} ~ ${JSON.stringify(p)}`).toBe(reference(t, p));
      }),
      { numRuns: 10_000 },
    );
  });

  it('the patterns tufoci itself writes', () => {
    const cases: Array<[string, string]> = [
      ['v1', 'v*'],
      ['v1.2.3', 'v*'],
      ['latest', 'v*'],
      ['', 'v*'],
      ['.hidden', '*'],
      ['release-1', 'release-?'],
      ['team/api', 'team/*'],
      ['team/api/x', 'team/*'],
      ['a', '*'],
    ];
    for (const [t, p] of cases) expect(isTargetInPathPattern(t, p), `${t} ~ ${p}`).toBe(reference(t, p));
  });
});
