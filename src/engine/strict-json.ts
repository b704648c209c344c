/**
 * A JSON reader that accepts only documents every conforming parser reads
 * the same way, in time linear in the input, with its depth bounded before
 * any value is built.
 *
 * RFC 8259 leaves several things to the parser, and parsers differ on them.
 * tufoci never accepts (service) or trusts (client) such bytes:
 * - duplicate member names in one object (`{"version": 1, "version": 2}`:
 *   JavaScript keeps the last, other parsers the first, some refuse);
 * - numbers that are not integers in the safe range (`3.0`, `3.97e2`, `-0`,
 *   `1e400`, 2^53 and above): TUF has no floats, OLPC canonical JSON cannot
 *   encode them, and parsers disagree on `3.0` (int or float) and on
 *   precision above 2^53;
 * - unpaired UTF-16 surrogates written as `\uD800` escapes (some parsers
 *   refuse, some substitute U+FFFD, some keep them);
 * - nesting deeper than `maxDepth` (parsers have different recursion limits;
 *   some crash).
 * The grammar is otherwise RFC 8259's exactly; the input text must already be
 * strictly decoded UTF-8 (TextDecoder with `fatal: true`), so raw unpaired
 * surrogates cannot occur.
 *
 * How: one pass over the characters validates the grammar and the rules
 * above without allocating values (member names are sliced, and decoded only
 * when they hold an escape); V8's native JSON.parse then builds the value
 * from the same text, which it reads identically because the text is now
 * unambiguous. Both passes are linear.
 */
import { TufociError } from '../errors.ts';

export type StrictJsonCode = 'BAD_JSON' | 'DUPLICATE_KEY' | 'NOT_INTEGER' | 'LONE_SURROGATE' | 'TOO_DEEP';

export class StrictJsonError extends TufociError<StrictJsonCode> {}

/** Default nesting bound: TUF metadata nests 6 levels; `custom` objects leave ample room. */
export const DEFAULT_MAX_DEPTH = 32;

export interface StrictJsonOptions {
  /** Deepest nesting of arrays and objects (the top-level value is depth 1). */
  maxDepth?: number;
  /** What the document is, for messages ("targets metadata", "request body"). */
  label?: string;
}

const MAX_SAFE_DIGITS = 16; // 2^53 - 1 = 9007199254740991 has 16 digits

function isWs(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  return -1;
}

/** Throws StrictJsonError unless `text` is one JSON value meeting the rules above. */
export function checkStrictJson(text: string, options: StrictJsonOptions = {}): void {
  const maxDepth = options.maxDepth ?? DEFAULT_MAX_DEPTH;
  const label = options.label ?? 'document';
  const n = text.length;
  let i = 0;

  const fail = (code: StrictJsonCode, what: string): never => {
    throw new StrictJsonError(code, `${label}: ${what} at offset ${i}`, { detail: { offset: i, reason: code } });
  };

  // Containers: one entry per open array/object; for objects, the member names seen so far.
  const keys: Array<Set<string> | null> = [];

  const skipWs = (): void => {
    while (i < n && isWs(text.charCodeAt(i))) i++;
  };

  /** Scan a string starting at the opening quote; returns whether it held a backslash. */
  const scanString = (): boolean => {
    i++; // opening quote
    let escaped = false;
    for (;;) {
      if (i >= n) fail('BAD_JSON', 'unterminated string');
      const c = text.charCodeAt(i);
      if (c === 0x22) {
        i++;
        return escaped;
      }
      if (c < 0x20) fail('BAD_JSON', 'control character in a string');
      if (c !== 0x5c) {
        i++;
        continue;
      }
      escaped = true;
      const e = text.charCodeAt(i + 1);
      if (e === 0x22 || e === 0x5c || e === 0x2f || e === 0x62 || e === 0x66 || e === 0x6e || e === 0x72 || e === 0x74) {
        i += 2;
        continue;
      }
      if (e !== 0x75) fail('BAD_JSON', 'invalid escape in a string');
      const unit = readHex4(i + 2);
      if (unit >= 0xd800 && unit <= 0xdbff) {
        // A high surrogate must be followed at once by an escaped low surrogate.
        if (text.charCodeAt(i + 6) !== 0x5c || text.charCodeAt(i + 7) !== 0x75) fail('LONE_SURROGATE', 'unpaired UTF-16 surrogate escape');
        const low = readHex4(i + 8);
        if (low < 0xdc00 || low > 0xdfff) fail('LONE_SURROGATE', 'unpaired UTF-16 surrogate escape');
        i += 12;
        continue;
      }
      if (unit >= 0xdc00 && unit <= 0xdfff) fail('LONE_SURROGATE', 'unpaired UTF-16 surrogate escape');
      i += 6;
    }
  };

  const readHex4 = (at: number): number => {
    let v = 0;
    for (let k = 0; k < 4; k++) {
      const h = at + k < n ? hexValue(text.charCodeAt(at + k)) : -1;
      if (h < 0) {
        i = at;
        fail('BAD_JSON', 'invalid \\u escape');
      }
      v = v * 16 + h;
    }
    return v;
  };

  const scanNumber = (): void => {
    const start = i;
    if (text.charCodeAt(i) === 0x2d) i++;
    const first = i;
    if (i >= n || !isDigit(text.charCodeAt(i))) fail('BAD_JSON', 'invalid number');
    if (text.charCodeAt(i) === 0x30) i++;
    else while (i < n && isDigit(text.charCodeAt(i))) i++;
    const c = i < n ? text.charCodeAt(i) : 0;
    if (c === 0x2e || c === 0x65 || c === 0x45) {
      i = start;
      fail('NOT_INTEGER', `number ${text.slice(start, Math.min(n, start + 24)).split(/[,\]}\s]/)[0]} is not an integer (write integers without a fraction or exponent)`);
    }
    const digits = i - first;
    if (digits > MAX_SAFE_DIGITS || (digits === MAX_SAFE_DIGITS && !Number.isSafeInteger(Number(text.slice(first, i))))) {
      i = start;
      fail('NOT_INTEGER', 'integer outside the range every parser reads exactly (±2^53)');
    }
    if (first !== start && digits === 1 && text.charCodeAt(first) === 0x30) {
      i = start;
      fail('NOT_INTEGER', '-0 is not an integer every parser reads the same way');
    }
  };

  const literal = (word: string): void => {
    if (text.startsWith(word, i)) i += word.length;
    else fail('BAD_JSON', 'unexpected character');
  };

  // Iterative: the depth bound is enforced before a container is entered, and no recursion.
  skipWs();
  let expectValue = true;
  for (;;) {
    if (expectValue) {
      if (i >= n) fail('BAD_JSON', 'unexpected end of input');
      const c = text.charCodeAt(i);
      if (c === 0x7b || c === 0x5b) {
        if (keys.length >= maxDepth) fail('TOO_DEEP', `nesting deeper than ${maxDepth} levels`);
        i++;
        skipWs();
        const isObject = c === 0x7b;
        const close = isObject ? 0x7d : 0x5d;
        if (text.charCodeAt(i) === close) {
          i++;
          expectValue = false;
        } else {
          keys.push(isObject ? new Set() : null);
          if (isObject) {
            memberName();
          }
          continue;
        }
      } else if (c === 0x22) scanString();
      else if (c === 0x2d || isDigit(c)) scanNumber();
      else if (c === 0x74) literal('true');
      else if (c === 0x66) literal('false');
      else if (c === 0x6e) literal('null');
      else fail('BAD_JSON', 'unexpected character');
      expectValue = false;
    }
    // After a value: close containers or move to the next element/member.
    skipWs();
    if (keys.length === 0) break;
    const top = keys[keys.length - 1];
    const c = i < n ? text.charCodeAt(i) : -1;
    if (c === 0x2c) {
      i++;
      skipWs();
      if (top) memberName();
      expectValue = true;
      continue;
    }
    if (c === (top ? 0x7d : 0x5d)) {
      i++;
      keys.pop();
      continue;
    }
    fail('BAD_JSON', top ? 'expected , or } in an object' : 'expected , or ] in an array');
  }
  if (i !== n) fail('BAD_JSON', 'unexpected data after the JSON value');

  /** At a member name: scan it, refuse a duplicate, consume the colon. */
  function memberName(): void {
    if (text.charCodeAt(i) !== 0x22) fail('BAD_JSON', 'expected a member name');
    const start = i;
    const escaped = scanString();
    const raw = text.slice(start + 1, i - 1);
    const name = escaped ? (JSON.parse(text.slice(start, i)) as string) : raw;
    const seen = keys[keys.length - 1] as Set<string>;
    if (seen.has(name)) {
      i = start;
      fail('DUPLICATE_KEY', `duplicate member name ${JSON.stringify(name.slice(0, 60))}`);
    }
    seen.add(name);
    skipWs();
    if (text.charCodeAt(i) !== 0x3a) fail('BAD_JSON', 'expected : after a member name');
    i++;
    skipWs();
  }
}

const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Strictly decode UTF-8 (no BOM, no invalid sequences), check, and parse. */
export function parseStrictJson(input: Uint8Array | string, options: StrictJsonOptions = {}): unknown {
  let text: string;
  if (typeof input === 'string') text = input;
  else {
    try {
      text = decoder.decode(input);
    } catch (cause) {
      throw new StrictJsonError('BAD_JSON', `${options.label ?? 'document'}: not valid UTF-8`, { detail: { reason: 'BAD_JSON' }, cause });
    }
  }
  checkStrictJson(text, options);
  return JSON.parse(text);
}
