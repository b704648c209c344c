import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { StrictJsonError, StrictJsonStream, checkStrictJson, parseStrictJson, scanStrictJson, scanStrictJsonAsync } from '../../src/engine/strict-json.ts';

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

describe('strict JSON reader, as a stream', () => {
  /** The verdict of one whole scan: the code it refused with, or what it captured. */
  function whole(bytes: Uint8Array, options: Parameters<typeof scanStrictJson>[1]): string {
    try {
      const s = scanStrictJson(bytes, options);
      return JSON.stringify({ spans: [...s.spans], sizes: [...s.sizes], members: s.members });
    } catch (e) {
      if (e instanceof StrictJsonError) return e.code;
      throw e;
    }
  }
  /** The same, pushed in pieces cut at `cuts`. */
  function streamed(bytes: Uint8Array, options: Parameters<typeof scanStrictJson>[1], cuts: number[]): string {
    const stream = new StrictJsonStream(options);
    try {
      let at = 0;
      for (const cut of [...cuts.map((c) => c % (bytes.length + 1)).sort((a, b) => a - b), bytes.length]) {
        stream.push(bytes.subarray(at, cut));
        at = cut;
      }
      const s = stream.end();
      return JSON.stringify({ spans: [...s.spans], sizes: [...s.sizes], members: s.members });
    } catch (e) {
      if (e instanceof StrictJsonError) return e.code;
      throw e;
    }
  }
  const capture = new Set(['signatures', 'signed', 'signed/version', 'signed/targets', 'signed/delegations/roles', 'a', 'a/b']);
  const options = { capture, namesDepth: 2, maxMembers: [16, 64, Number.POSITIVE_INFINITY], maxSizes: new Map([['signed/targets', 6]]) };

  it('finds what a whole scan finds, and refuses what it refuses with the same code, however the bytes are cut', () => {
    const doc = fc.oneof(
      integerJson.map((v) => JSON.stringify(v)),
      fc.record({ signed: fc.record({ version: fc.nat(), targets: fc.dictionary(fc.string({ maxLength: 4 }), integerJson, { maxKeys: 9 }) }), signatures: fc.array(integerJson, { maxLength: 3 }) }).map((v) => JSON.stringify(v, null, 1)),
    );
    // Mutations that make documents wrong in the ways the reader names.
    const mutate = fc.oneof(
      fc.constant((t: string) => t),
      fc.nat().map((k) => (t: string) => t.slice(0, k % (t.length + 1))),
      fc.nat().map((k) => (t: string) => `${t.slice(0, k % (t.length + 1))}1.5${t.slice(k % (t.length + 1))}`),
      fc.constant((t: string) => t.replace('"version":', '"version":1,"version":')),
      fc.constant((t: string) => `${t} x`),
      fc.constant((t: string) => t.replace(/"/, '"\\ud800')),
      fc.constant((t: string) => `${'['.repeat(40)}${t}${']'.repeat(40)}`),
    );
    fc.assert(
      fc.property(doc, mutate, fc.array(fc.nat(), { maxLength: 12 }), (text, edit, cuts) => {
        const bytes = new TextEncoder().encode(edit(text));
        expect(streamed(bytes, options, cuts)).toBe(whole(bytes, options));
      }),
      { numRuns: 3000 },
    );
  });

  it('refuses at the first byte that shows it must: pieces after a refusal are never needed', () => {
    const stream = new StrictJsonStream({ maxDepth: 32 });
    expect(() => stream.push(new TextEncoder().encode('['.repeat(33)))).toThrow(expect.objectContaining({ code: 'TOO_DEEP' }));
    const counted = new StrictJsonStream({ capture: new Set(['signed/targets']), maxSizes: new Map([['signed/targets', 2]]) });
    counted.push(new TextEncoder().encode('{"signed":{"targets":{"a":1,"b":2'));
    expect(() => counted.push(new TextEncoder().encode(',"c":3'))).toThrow(expect.objectContaining({ code: 'TOO_MANY_MEMBERS', detail: expect.objectContaining({ path: 'signed/targets', limit: 2 }) }));
  });

  it('keeps a token spread over many pieces in linear time, and one byte at a time reads as one piece', () => {
    const long = `{"signed":{"version":7},"x":"${'a'.repeat(300_000)}","signatures":[]}`;
    const bytes = new TextEncoder().encode(long);
    const stream = new StrictJsonStream({ capture });
    for (let at = 0; at < bytes.length; at += 1000) stream.push(bytes.subarray(at, at + 1000));
    const s = stream.end();
    expect(s.spans.get('signed/version')).toEqual(scanStrictJson(bytes, { capture }).spans.get('signed/version'));
    const small = new TextEncoder().encode('{"signed":{"version":12,"targets":{"v1":{"length":3}}},"signatures":[{"k":"\\u00e9"}]}');
    const bytewise = new StrictJsonStream({ capture });
    for (let at = 0; at < small.length; at++) bytewise.push(small.subarray(at, at + 1));
    const b = bytewise.end();
    const w = scanStrictJson(small, { capture });
    expect([...b.spans]).toEqual([...w.spans]);
    expect([...b.sizes]).toEqual([...w.sizes]);
  });
});

describe('strict JSON reader, names checked on the parsed value', () => {
  it('refuses a repeated name in an object at any depth, __proto__ included, and parses the rest as JSON.parse does', () => {
    fc.assert(
      fc.property(integerJson, fc.nat(), fc.constantFrom('a', '__proto__', '0', 'constructor'), fc.boolean(), (v, pick, name, repeat) => {
        // Put an object holding `name` (twice, if `repeat`) in place of the pick-th value of the tree.
        const inner = repeat ? `{"${name}":1,"x":[],"${name}":{"y":2}}` : `{"${name}":1,"x":[]}`;
        let index = 0;
        let placedIt = false;
        const write = (x: unknown): string => {
          if (!placedIt && index++ === pick % 16) {
            placedIt = true;
            return inner;
          }
          if (Array.isArray(x)) return `[${x.map(write).join(',')}]`;
          if (typeof x === 'object' && x !== null) return `{${Object.entries(x).map(([k, e]) => `${JSON.stringify(k)}:${write(e)}`).join(',')}}`;
          return JSON.stringify(x);
        };
        const text = write({ v, w: [v] });
        const placed = placedIt ? text : `[${text},${inner}]`;
        if (repeat) {
          expect(() => parseStrictJson(placed, { maxDepth: 64 })).toThrow(expect.objectContaining({ code: 'DUPLICATE_KEY' }));
        } else {
          expect(parseStrictJson(placed, { maxDepth: 64 })).toStrictEqual(JSON.parse(placed));
        }
      }),
      { numRuns: 1000 },
    );
  });
});
