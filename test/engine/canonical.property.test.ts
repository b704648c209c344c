/** The fast canonical encoder is byte-identical to @tufjs/canonical-json (the reference tuf-js uses). */
import { canonicalize } from '@tufjs/canonical-json';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { canonicalJsonString } from '../../src/engine/canonical.ts';
import { scanStrictJson } from '../../src/engine/strict-json.ts';

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

describe('bytes already in canonical form (the strict scan tells)', () => {
  // Integers and strings every reader accepts: no lone surrogates, no unsafe integers.
  const value = fc.letrec((tie) => ({
    v: fc.oneof(
      { depthSize: 'small' },
      fc.string({ unit: 'grapheme' }),
      fc.string({ unit: fc.constantFrom('a', 'b', '"', '\\', '/', '\n', 'é', 'Z', '0') }),
      fc.integer({ min: -1e9, max: 1e9 }).filter((x) => !Object.is(x, -0)),
      fc.boolean(),
      fc.constant(null),
      fc.array(tie('v'), { maxLength: 4 }),
      fc.dictionary(fc.string({ unit: fc.constantFrom('a', 'B', '_', '1', 'é', '"', '~') , maxLength: 4 }), tie('v'), { maxKeys: 4 }),
    ),
  })).v;
  // Ways of writing the same value that are not canonical.
  const rewrite = fc.constantFrom(
    (t: string) => t,
    (t: string) => t.replace(/,/, ', '),
    (t: string) => t.replace(/:/, ' :'),
    (t: string) => t.replace(/\//, '\\/'),
    (t: string) => t.replace(/a/, '\\u0061'),
    (t: string) => JSON.stringify(JSON.parse(t), null, 1),
    (t: string) => JSON.stringify(JSON.parse(t)), // insertion order, not sorted
  );

  it('a span judged canonical is exactly the canonical encoding of what it parses to, and canonical text is recognised as such', () => {
    fc.assert(
      fc.property(fc.dictionary(fc.string({ maxLength: 3 }), value, { maxKeys: 5 }), rewrite, (signed, edit) => {
        const canonical = canonicalJsonString(signed);
        let text: string;
        try {
          text = edit(canonical);
          JSON.parse(text);
        } catch {
          return; // an edit that does not leave JSON (or raw control characters, which JSON refuses)
        }
        const doc = `{"signatures":[],"signed":${text}}`;
        const scanned = scanStrictJson(doc, { capture: new Set(['signed']) });
        const span = scanned.spans.get('signed') as { start: number; end: number };
        const bytes = Buffer.from(scanned.bytes.subarray(span.start, span.end)).toString('utf8');
        if (scanned.canonicalSpan(span)) expect(bytes).toBe(canonicalJsonString(JSON.parse(bytes)));
        // Text as the canonical encoder writes it, with plain ASCII names, is recognised.
        const asciiNames = (v: unknown): boolean =>
          Array.isArray(v) ? v.every(asciiNames) : typeof v === 'object' && v !== null ? Object.entries(v).every(([k, x]) => /^[\x20-\x7e]*$/.test(k) && !/["\\]/.test(k) && asciiNames(x)) : true;
        if (text === canonical && asciiNames(signed)) expect(scanned.canonicalSpan(span)).toBe(true);
      }),
      { numRuns: 3000 },
    );
  });
});
