/**
 * Property: any random byte mutation of a valid upload is refused with a typed
 * EngineError and nothing throws an untyped error — except mutations that leave
 * the same JSON document (insignificant whitespace, which JSON allows and
 * python-tuf's pretty-printed files rely on): those are the same metadata and
 * must be accepted.
 */
import { isDeepStrictEqual } from 'node:util';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { EngineError, verifyRootUpload, verifyTargetsUpload } from '../../src/engine/index.ts';
import { SimRepo, image } from '../support/engine-repo.ts';

type Mutation = { kind: 'flip'; at: number; bit: number } | { kind: 'delete'; at: number; len: number } | { kind: 'insert'; at: number; bytes: number[] } | { kind: 'set'; at: number; byte: number };

function mutate(input: Uint8Array, m: Mutation): Uint8Array {
  const at = m.at % input.length;
  switch (m.kind) {
    case 'flip': {
      const out = new Uint8Array(input);
      out[at] = (out[at] as number) ^ (1 << m.bit);
      return out;
    }
    case 'set': {
      const out = new Uint8Array(input);
      out[at] = m.byte === out[at] ? (m.byte + 1) & 0xff : m.byte;
      return out;
    }
    case 'delete':
      return new Uint8Array([...input.subarray(0, at), ...input.subarray(at + m.len)]);
    case 'insert':
      return new Uint8Array([...input.subarray(0, at), ...m.bytes, ...input.subarray(at)]);
  }
}

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ kind: fc.constant('set' as const), at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ kind: fc.constant('delete' as const), at: fc.nat(), len: fc.integer({ min: 1, max: 16 }) }),
  fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), bytes: fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 1, maxLength: 8 }) }),
);

function sameDocument(a: Uint8Array, b: Uint8Array): boolean {
  try {
    return isDeepStrictEqual(JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(a)), JSON.parse(new TextDecoder().decode(b)));
  } catch {
    return false;
  }
}

function outcome(run: () => unknown, mutated: Uint8Array, original: Uint8Array): boolean {
  const same = sameDocument(mutated, original);
  try {
    run();
  } catch (e) {
    return e instanceof EngineError && !same;
  }
  return same;
}

describe('mutated uploads', () => {
  it('every mutation of a delegated-role upload is refused with a typed error', async () => {
    const repo = await new SimRepo().init();
    const valid = await repo.targetsBytes({ version: 1, targets: { v1: image(1), v2: image(2) } }, [repo.ciKey]);
    expect(verifyTargetsUpload(repo.state, 'ci', valid, repo.ctx).version).toBe(1); // the unmutated upload is accepted
    fc.assert(
      fc.property(mutation, (m) => {
        const bytes = mutate(valid, m);
        return outcome(() => verifyTargetsUpload(repo.state, 'ci', bytes, repo.ctx), bytes, valid);
      }),
      { numRuns: 1500 },
    );
  });

  it('whitespace-only changes are the same metadata and are accepted', async () => {
    const repo = await new SimRepo().init();
    const valid = await repo.targetsBytes({ version: 1, targets: { v1: image(1) } }, [repo.ciKey]);
    const pretty = new TextEncoder().encode(JSON.stringify(JSON.parse(new TextDecoder().decode(valid)), null, 2));
    expect(verifyTargetsUpload(repo.state, 'ci', pretty, repo.ctx).version).toBe(1);
  });

  it('every mutation of a root rotation is refused with a typed error', async () => {
    const repo = await new SimRepo().init();
    const valid = await repo.rootBytes(2, [repo.root1]);
    expect(verifyRootUpload(repo.state, valid, repo.ctx).version).toBe(2);
    fc.assert(
      fc.property(mutation, (m) => {
        const bytes = mutate(valid, m);
        return outcome(() => verifyRootUpload(repo.state, bytes, repo.ctx), bytes, valid);
      }),
      { numRuns: 700 },
    );
  });
});
