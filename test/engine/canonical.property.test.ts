/** The fast canonical encoder is byte-identical to @tufjs/canonical-json (the reference tuf-js uses). */
import { canonicalize } from '@tufjs/canonical-json';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { canonicalJsonString } from '../../src/engine/canonical.ts';

const json = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small' },
    fc.string({ unit: 'binary' }),
    fc.string({ unit: 'grapheme-composite' }),
    fc.integer(),
    fc.boolean(),
    fc.constant(null),
    fc.array(tie('value'), { maxLength: 5 }),
    fc.dictionary(fc.string({ unit: 'binary' }), tie('value'), { maxKeys: 5 }),
  ),
})).value;

describe('canonical JSON', () => {
  it('matches the reference encoder on random JSON, including control characters and lone surrogates', () => {
    fc.assert(
      fc.property(json, (v) => {
        expect(canonicalJsonString(v)).toBe(canonicalize(v as never));
      }),
      { numRuns: 2000 },
    );
  });

  it('matches the reference on keys a plain object treats specially', () => {
    for (const v of [{ __proto__x: 1 }, JSON.parse('{"__proto__": {"a": 1}, "b": 2}'), { '10': 1, '9': 2, a: 3 }, { '4294967295': 1, '1': 2 }, { constructor: 1 }]) {
      expect(canonicalJsonString(v)).toBe(canonicalize(v as never));
    }
  });

  it('refuses floats like the reference', () => {
    expect(() => canonicalJsonString({ a: 1.5 })).toThrow();
    expect(() => canonicalize({ a: 1.5 })).toThrow();
  });
});
