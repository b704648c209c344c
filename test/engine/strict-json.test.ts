import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { StrictJsonError, checkStrictJson, parseStrictJson, scanStrictJson, scanStrictJsonAsync } from '../../src/engine/strict-json.ts';

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

  it('finds a repeated name anywhere in an object of any size, nested or not, escaped or not', () => {
    const escape = (name: string, all: boolean): string => (all ? `"${[...name].map((c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`).join('')}"` : JSON.stringify(name));
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.string({ unit: 'binary-ascii', maxLength: 6 }), { minLength: 1, maxLength: 40 }),
        fc.nat(),
        fc.nat(),
        fc.boolean(),
        fc.boolean(),
        (names, pick, at, escaped, nested) => {
          const members = names.map((n, k) => `${escape(n, escaped && k % 3 === 0)}:${k}`);
          const dup = names[pick % names.length] as string;
          members.splice(at % (members.length + 1), 0, `${escape(dup, !escaped)}:0`);
          const object = `{${members.join(',')}}`;
          const text = nested ? `{"a":{"b":1,"c":[1]},"x":${object},"z":{"b":2}}` : object;
          expect(codeOf(text)).toBe('DUPLICATE_KEY');
          expect(codeOf(nested ? `{"a":{"b":1},"x":{${names.map((n, k) => `${escape(n, escaped)}:${k}`).join(',')}},"z":{"b":2}}` : `{${names.map((n, k) => `${JSON.stringify(n)}:${k}`).join(',')}}`)).toBe('OK');
        },
      ),
      { numRuns: 500 },
    );
  });

  it('locates and counts captured members without parsing them', () => {
    const text = '{"signatures":[{"keyid":"a"},{"keyid":"b"}],"signed":{"version":3,"targets":{"v1":{},"v2":{}},"delegations":{"keys":{},"roles":[]}},"x":{"signed":{"version":9}}}';
    const { spans, sizes } = scanStrictJson(text, { capture: new Set(['signatures', 'signed/version', 'signed/targets', 'signed/delegations/keys', 'signed/delegations/roles', 'signed/missing']) });
    const at = (path: string): string | undefined => {
      const span = spans.get(path);
      return span && text.slice(span.start, span.end);
    };
    expect(at('signed/version')).toBe('3'); // the top-level signed, not x.signed
    expect(at('signed/targets')).toBe('{"v1":{},"v2":{}}');
    expect(sizes.get('signatures')).toBe(2);
    expect(sizes.get('signed/targets')).toBe(2);
    expect(sizes.get('signed/delegations/keys')).toBe(0);
    expect(sizes.get('signed/delegations/roles')).toBe(0);
    expect(spans.has('signed/missing')).toBe(false);
  });

  it('checks names only as deep as asked, and never beyond for a caller that checks the rest itself', () => {
    expect(scanStrictJson('{"a":{"b":1,"b":2}}', { namesDepth: 1 }).text.length).toBeGreaterThan(0);
    expect(() => scanStrictJson('{"a":1,"a":2}', { namesDepth: 1 })).toThrow(StrictJsonError);
  });

  it('bounds the members of an object by its depth, during the scan', () => {
    const wide = (count: number): string => `{${Array.from({ length: count }, (_, k) => `"k${k}":0`).join(',')}}`;
    const at = (text: string): string => {
      try {
        scanStrictJson(text, { maxMembers: [2, 3] });
        return 'OK';
      } catch (e) {
        return (e as StrictJsonError).code;
      }
    };
    expect(at('{"a":1,"b":2}')).toBe('OK');
    expect(at('{"a":1,"b":2,"c":3}')).toBe('TOO_MANY_MEMBERS');
    expect(at(`{"a":${wide(3)}}`)).toBe('OK');
    expect(at(`{"a":${wide(4)}}`)).toBe('TOO_MANY_MEMBERS');
    expect(at(`{"a":{"b":${wide(4)}}}`)).toBe('TOO_MANY_MEMBERS'); // the last bound holds below
    expect(at(`[${wide(3)}]`)).toBe('OK'); // depth counts arrays too: this object is one level down
    expect(at(`[${wide(4)}]`)).toBe('TOO_MANY_MEMBERS');
    expect(at(`[${Array.from({ length: 50 }, () => '0').join(',')}]`)).toBe('OK'); // elements are not members
  });

  it('scans in slices, yielding between them, with the same result as in one go', async () => {
    const big = JSON.stringify({ signed: { targets: Object.fromEntries(Array.from({ length: 20_000 }, (_, k) => [`v${k}`, { length: k, hashes: { sha256: 'ab' } }])) }, signatures: [] });
    const capture = new Set(['signed/targets', 'signatures']);
    const whole = scanStrictJson(big, { capture });
    const sliced = await scanStrictJsonAsync(new TextEncoder().encode(big), { capture });
    expect(sliced.spans).toEqual(whole.spans);
    expect(sliced.sizes).toEqual(whole.sizes);
    expect(sliced.text).toBe(big);
    for (const [bad, code] of [[big.slice(0, -1), 'BAD_JSON'], [big.replace('"length":7,', '"length":7.0,'), 'NOT_INTEGER'], [big.replace('"length":9,', '"length":9,"length":9,'), 'DUPLICATE_KEY']] as const) {
      await expect(scanStrictJsonAsync(new TextEncoder().encode(bad))).rejects.toMatchObject({ code });
    }
    await expect(scanStrictJsonAsync(new Uint8Array([0x22, 0xff, 0x22]))).rejects.toMatchObject({ code: 'BAD_JSON' });
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

  it('decodes UTF-8 as a fatal decoder does: overlong forms and encoded surrogates refused, the rest read exactly', async () => {
    const bad = [
      [0x22, 0xc0, 0xaf, 0x22], // overlong "/"
      [0x22, 0xed, 0xa0, 0x80, 0x22], // U+D800 encoded
      [0x22, 0xf4, 0x90, 0x80, 0x80, 0x22], // above U+10FFFF
      [0x22, 0xe2, 0x82, 0x22], // truncated sequence
    ];
    for (const b of bad) {
      expect(() => parseStrictJson(new Uint8Array(b))).toThrow(StrictJsonError);
      await expect(scanStrictJsonAsync(new Uint8Array(b))).rejects.toMatchObject({ code: 'BAD_JSON' });
    }
    const text = '{"name":"caf\u00e9 é 😀 ß","n":1}';
    const bytes = new TextEncoder().encode(text);
    expect(parseStrictJson(bytes)).toEqual(JSON.parse(text));
    expect((await scanStrictJsonAsync(bytes)).text).toBe(text);
    // Large enough for several slices, non-ASCII throughout.
    const big = JSON.stringify({ items: Array.from({ length: 20_000 }, (_, i) => `élément ${i} ✓`) });
    expect((await scanStrictJsonAsync(new TextEncoder().encode(big))).text).toBe(big);
  });
});
