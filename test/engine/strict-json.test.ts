import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { StrictJsonError, checkStrictJson, parseStrictJson } from '../../src/engine/strict-json.ts';

function codeOf(text: string, maxDepth?: number): string {
  try {
    checkStrictJson(text, maxDepth === undefined ? {} : { maxDepth });
    return 'OK';
  } catch (e) {
    if (e instanceof StrictJsonError) return e.code;
    throw e;
  }
}

// JSON values without floats, -0 or unsafe integers: what the reader must accept.
const integerJson = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small' },
    fc.integer({ min: Number.MIN_SAFE_INTEGER, max: Number.MAX_SAFE_INTEGER }).filter((x) => !Object.is(x, -0)),
    fc.string({ unit: 'binary' }),
    fc.boolean(),
    fc.constant(null),
    fc.array(tie('value'), { maxLength: 5 }),
    fc.dictionary(fc.string({ unit: 'binary' }), tie('value'), { maxKeys: 5 }),
  ),
})).value;

describe('strict JSON reader', () => {
  it('reads every integer-only JSON document as JSON.parse does, in any whitespace layout', () => {
    fc.assert(
      fc.property(integerJson, fc.boolean(), (v, pretty) => {
        const text = JSON.stringify(v, null, pretty ? 2 : undefined);
        expect(parseStrictJson(text, { maxDepth: 64 })).toStrictEqual(JSON.parse(text));
      }),
      { numRuns: 500 },
    );
  });

  it('refuses what JSON.parse refuses (never accepts a non-JSON text)', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 40 }), (s) => {
        let native = true;
        try {
          JSON.parse(s);
        } catch {
          native = false;
        }
        if (!native) expect(codeOf(s)).not.toBe('OK');
      }),
      { numRuns: 2000 },
    );
    for (const bad of ['', ' ', '{', '[1,]', '{"a":1,}', '{"a" 1}', '01', '.5', '"\\x"', '"\t"', 'tru', 'nul', '[1] [2]', '{"a":1}}', '"\\u12"', "'a'"]) {
      expect(codeOf(bad), bad).toBe('BAD_JSON');
    }
  });

  it('refuses duplicate member names, also when one is written with escapes', () => {
    expect(codeOf('{"version": 1, "version": 2}')).toBe('DUPLICATE_KEY');
    expect(codeOf('{"signed": {"a": {}, "b": {"x": 1, "x": 1}}}')).toBe('DUPLICATE_KEY');
    expect(codeOf('{"version": 1, "\\u0076ersion": 2}')).toBe('DUPLICATE_KEY');
    expect(codeOf('[{"a": 1}, {"a": 1}]')).toBe('OK'); // same name in sibling objects is fine
  });

  it('refuses numbers that are not safe integers', () => {
    for (const n of ['3.0', '3.97e2', '1e3', '1E3', '-0', '9007199254740992', '-9007199254740992', '12345678901234567890', '1e400']) {
      expect(codeOf(`{"version": ${n}}`), n).toBe('NOT_INTEGER');
    }
    for (const n of ['0', '-1', '9007199254740991', '-9007199254740991']) expect(codeOf(`[${n}]`), n).toBe('OK');
  });

  it('refuses unpaired surrogate escapes and accepts paired ones', () => {
    expect(codeOf('"\\ud800"')).toBe('LONE_SURROGATE');
    expect(codeOf('"\\udc00"')).toBe('LONE_SURROGATE');
    expect(codeOf('"\\ud800\\u0041"')).toBe('LONE_SURROGATE');
    expect(codeOf('{"\\ud800x": 1}')).toBe('LONE_SURROGATE');
    expect(parseStrictJson('"\\ud83d\\ude00"')).toBe('😀');
  });

  it('bounds nesting before building anything, without recursion', () => {
    const deep = '['.repeat(200_000) + ']'.repeat(200_000);
    expect(codeOf(deep)).toBe('TOO_DEEP');
    expect(codeOf('{"a":'.repeat(33) + '1' + '}'.repeat(33))).toBe('TOO_DEEP');
    expect(codeOf('{"a":'.repeat(32) + '1' + '}'.repeat(32))).toBe('OK');
    expect(codeOf('[[[]]]', 2)).toBe('TOO_DEEP');
  });

  it('refuses bytes that are not UTF-8 and a byte-order mark', () => {
    expect(() => parseStrictJson(new Uint8Array([0x22, 0xff, 0x22]))).toThrow(StrictJsonError);
    expect(() => parseStrictJson(new Uint8Array([0xef, 0xbb, 0xbf, 0x7b, 0x7d]))).toThrow(StrictJsonError);
  });
});
