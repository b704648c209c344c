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
 * How: one iterative pass over the characters (`scanStrictJson`) validates
 * the grammar and the rules above, remembering each object's member names in
 * a Set, and builds no value. Plain string content is skipped by one native
 * regular-expression step. On request it also returns, for a few member paths
 * (`capture`: `signed/version`, `signed/targets`), where their values lie in
 * the text and how many members or elements they hold: a caller can refuse a
 * document on its counts or on one small field before building anything.
 * `parseStrictJson` then lets V8's JSON.parse build the value from the same
 * text, which it reads identically because the text is now unambiguous.
 */
import { isAscii, isUtf8 } from 'node:buffer';
import { TufociError } from '../errors.ts';

export type StrictJsonCode = 'BAD_JSON' | 'DUPLICATE_KEY' | 'NOT_INTEGER' | 'LONE_SURROGATE' | 'TOO_DEEP' | 'TOO_MANY_MEMBERS';

export class StrictJsonError extends TufociError<StrictJsonCode> {}

/** Default nesting bound: TUF metadata nests 6 levels; `custom` objects leave ample room. */
export const DEFAULT_MAX_DEPTH = 32;

export interface StrictJsonOptions {
  /** Deepest nesting of arrays and objects (the top-level value is depth 1). */
  maxDepth?: number;
  /** What the document is, for messages ("targets metadata", "request body"). */
  label?: string;
  /**
   * Member paths (names joined by `/`, from the top-level object: `signed/targets`) whose values
   * the scan locates (`spans`) and, for objects and arrays, counts (`sizes`).
   */
  capture?: ReadonlySet<string>;
  /**
   * Check member names for duplicates only in objects this deep or shallower (default: all).
   * For a caller that hands deeper parts to another strict read of its own (a request body whose
   * members are metadata documents), so that the names are not remembered twice.
   */
  namesDepth?: number;
  /**
   * The most members an object may have, by depth: `maxMembers[0]` for the top-level object,
   * `[1]` one level down, the last entry for every level below (default: no bound). For bodies
   * whose shape is known, so that a wide object where a small one belongs is refused during
   * the scan, before anything is parsed.
   */
  maxMembers?: readonly number[];
}

/** What a scan found besides validity. */
export interface Scanned {
  /** The decoded text. */
  text: string;
  /** Captured paths present in the document: the value's text is `text.slice(start, end)`. */
  spans: Map<string, { start: number; end: number }>;
  /** Captured paths whose value is an object or array: its number of members or elements. */
  sizes: Map<string, number>;
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

/** Plain string content: no quote, backslash or control character (skipped in one native step). */
const PLAIN = /[^"\\\u0000-\u001f]*/y;

/** Objects with more members than this keep their names in a Set. */
const SMALL_OBJECT = 8;

interface Open {
  /** An object (else an array). */
  object: boolean;
  /**
   * Its names so far (where names are checked): an array while there are few (most TUF objects
   * have a handful of members, and a Set per object costs more), a Set beyond SMALL_OBJECT.
   */
  names: string[] | Set<string> | undefined;
  /** Its members or elements so far. */
  count: number;
  /** The most members it may have (objects). */
  limit: number;
  /** Its path when it is captured or may contain a captured path (else undefined). */
  path: string | undefined;
  /** Where it starts, when it is captured. */
  start: number;
}

/**
 * One scan of one text. A class rather than closures over the scan's locals: the position `i`
 * is read and written on every character, and as a closure variable it would live in a heap
 * context; here the hot loops keep it in a local and store it back.
 */
class Scanner {
  readonly text: string;
  readonly n: number;
  readonly label: string;
  readonly maxDepth: number;
  readonly namesDepth: number;
  readonly capture: ReadonlySet<string> | undefined;
  readonly maxMembers: readonly number[] | undefined;
  /** Paths of containers on the way to a captured path ('' is the top-level object). */
  readonly prefixes = new Set<string>();
  readonly spans = new Map<string, { start: number; end: number }>();
  readonly sizes = new Map<string, number>();
  readonly open: Open[] = [];
  i = 0;
  /** The path of the value about to be scanned (undefined: not tracked). */
  valuePath: string | undefined = undefined;
  /** Whether the string scanned last held a backslash. */
  escaped = false;

  constructor(text: string, options: StrictJsonOptions) {
    this.text = text;
    this.n = text.length;
    this.label = options.label ?? 'document';
    this.maxDepth = options.maxDepth ?? DEFAULT_MAX_DEPTH;
    this.namesDepth = options.namesDepth ?? this.maxDepth;
    this.capture = options.capture;
    this.maxMembers = options.maxMembers;
    if (this.capture) {
      for (const c of this.capture) {
        const parts = c.split('/');
        for (let k = 0; k < parts.length; k++) this.prefixes.add(parts.slice(0, k).join('/'));
      }
    }
  }

  fail(code: StrictJsonCode, what: string, at: number = this.i): never {
    throw new StrictJsonError(code, `${this.label}: ${what} at offset ${at}`, { detail: { offset: at, reason: code } });
  }

  skipWs(): void {
    const text = this.text;
    let i = this.i;
    while (i < this.n && isWs(text.charCodeAt(i))) i++;
    this.i = i;
  }

  /** Scan a string starting at the opening quote; `escaped` says whether it held a backslash. */
  scanString(): void {
    const text = this.text;
    const n = this.n;
    let i = this.i + 1; // opening quote
    let escaped = false;
    for (;;) {
      PLAIN.lastIndex = i;
      PLAIN.test(text);
      i = PLAIN.lastIndex;
      if (i >= n) this.fail('BAD_JSON', 'unterminated string', i);
      const c = text.charCodeAt(i);
      if (c === 0x22) break;
      if (c < 0x20) this.fail('BAD_JSON', 'control character in a string', i);
      escaped = true; // a backslash
      const e = text.charCodeAt(i + 1);
      if (e === 0x22 || e === 0x5c || e === 0x2f || e === 0x62 || e === 0x66 || e === 0x6e || e === 0x72 || e === 0x74) {
        i += 2;
        continue;
      }
      if (e !== 0x75) this.fail('BAD_JSON', 'invalid escape in a string', i);
      const unit = this.readHex4(i + 2);
      if (unit >= 0xd800 && unit <= 0xdbff) {
        // A high surrogate must be followed at once by an escaped low surrogate.
        if (text.charCodeAt(i + 6) !== 0x5c || text.charCodeAt(i + 7) !== 0x75) this.fail('LONE_SURROGATE', 'unpaired UTF-16 surrogate escape', i);
        const low = this.readHex4(i + 8);
        if (low < 0xdc00 || low > 0xdfff) this.fail('LONE_SURROGATE', 'unpaired UTF-16 surrogate escape', i);
        i += 12;
        continue;
      }
      if (unit >= 0xdc00 && unit <= 0xdfff) this.fail('LONE_SURROGATE', 'unpaired UTF-16 surrogate escape', i);
      i += 6;
    }
    this.i = i + 1;
    this.escaped = escaped;
  }

  readHex4(at: number): number {
    let v = 0;
    for (let k = 0; k < 4; k++) {
      const h = at + k < this.n ? hexValue(this.text.charCodeAt(at + k)) : -1;
      if (h < 0) this.fail('BAD_JSON', 'invalid \\u escape', at);
      v = v * 16 + h;
    }
    return v;
  }

  scanNumber(): void {
    const text = this.text;
    const n = this.n;
    const start = this.i;
    let i = start;
    if (text.charCodeAt(i) === 0x2d) i++;
    const first = i;
    if (i >= n || !isDigit(text.charCodeAt(i))) this.fail('BAD_JSON', 'invalid number', i);
    if (text.charCodeAt(i) === 0x30) i++;
    else while (i < n && isDigit(text.charCodeAt(i))) i++;
    const c = i < n ? text.charCodeAt(i) : 0;
    if (c === 0x2e || c === 0x65 || c === 0x45) {
      this.fail('NOT_INTEGER', `number ${text.slice(start, Math.min(n, start + 24)).split(/[,\]}\s]/)[0]} is not an integer (write integers without a fraction or exponent)`, start);
    }
    const digits = i - first;
    if (digits > MAX_SAFE_DIGITS || (digits === MAX_SAFE_DIGITS && !Number.isSafeInteger(Number(text.slice(first, i))))) {
      this.fail('NOT_INTEGER', 'integer outside the range every parser reads exactly (±2^53)', start);
    }
    if (first !== start && digits === 1 && text.charCodeAt(first) === 0x30) this.fail('NOT_INTEGER', '-0 is not an integer every parser reads the same way', start);
    this.i = i;
  }

  literal(word: string): void {
    if (this.text.startsWith(word, this.i)) this.i += word.length;
    else this.fail('BAD_JSON', 'unexpected character');
  }

  /** Whether the innermost open container leads to a captured path (its members' paths are kept). */
  leadsToCapture(): boolean {
    const open = this.open;
    if (open.length === 1) return this.prefixes.has('');
    const path = (open[open.length - 1] as Open).path;
    return path !== undefined && this.prefixes.has(path);
  }

  /** The path of a member or element of the innermost open container at `parent`, if kept. */
  childPath(parent: string | undefined, name: string): string | undefined {
    if (this.capture === undefined || !this.leadsToCapture()) return undefined;
    return this.open.length === 1 ? name : `${parent}/${name}`;
  }

  /** The name whose raw text lies between `from` and `to` (inside its quotes). */
  readonly decode = (from: number, to: number, escaped: boolean): string =>
    escaped ? (JSON.parse(this.text.slice(from - 1, to + 1)) as string) : this.text.slice(from, to);

  /** At a member name: scan it, refuse a duplicate (where names are checked), consume the colon. */
  memberName(): void {
    const text = this.text;
    if (text.charCodeAt(this.i) !== 0x22) this.fail('BAD_JSON', 'expected a member name');
    const start = this.i;
    this.scanString();
    const escaped = this.escaped;
    const end = this.i - 1;
    const own = this.open[this.open.length - 1] as Open;
    const names = own.names;
    if (names) {
      const name = this.decode(start + 1, end, escaped);
      if (Array.isArray(names) ? names.includes(name) : names.has(name)) this.fail('DUPLICATE_KEY', `duplicate member name ${JSON.stringify(name.slice(0, 60))}`, start);
      if (!Array.isArray(names)) names.add(name);
      else if (names.length < SMALL_OBJECT) names.push(name);
      else own.names = new Set([...names, name]);
    }
    this.valuePath = this.capture !== undefined && this.leadsToCapture() ? this.childPath(own.path, this.decode(start + 1, end, escaped)) : undefined;
    this.skipWs();
    if (text.charCodeAt(this.i) !== 0x3a) this.fail('BAD_JSON', 'expected : after a member name');
    this.i++;
    this.skipWs();
  }

  /** The whole text: iterative, the depth bound enforced before a container is entered. */
  /** Whether the next token is a value (else a separator or a closing bracket). */
  expectValue = true;
  started = false;

  /**
   * Scan on until the position passes `stopAt` (then undefined: call again to go on) or the text
   * ends (then what it found). The state between calls is the scanner's own.
   */
  run(stopAt: number = Number.POSITIVE_INFINITY): Scanned | undefined {
    const text = this.text;
    const n = this.n;
    const open = this.open;
    const capture = this.capture;
    if (!this.started) {
      this.started = true;
      this.skipWs();
    }
    let expectValue = this.expectValue;
    for (;;) {
      if (this.i > stopAt) {
        this.expectValue = expectValue;
        return undefined;
      }
      if (expectValue) {
        if (this.i >= n) this.fail('BAD_JSON', 'unexpected end of input');
        const start = this.i;
        const c = text.charCodeAt(start);
        if (c === 0x7b || c === 0x5b) {
          if (open.length >= this.maxDepth) this.fail('TOO_DEEP', `nesting deeper than ${this.maxDepth} levels`);
          const object = c === 0x7b;
          this.i++;
          this.skipWs();
          if (text.charCodeAt(this.i) === (object ? 0x7d : 0x5d)) {
            this.i++;
            const path = this.valuePath;
            if (path !== undefined && capture?.has(path)) {
              this.spans.set(path, { start, end: this.i });
              this.sizes.set(path, 0);
            }
          } else {
            const limits = this.maxMembers;
            const limit = object && limits && limits.length ? (limits[Math.min(open.length, limits.length - 1)] as number) : Number.POSITIVE_INFINITY;
            open.push({ object, names: object && open.length < this.namesDepth ? [] : undefined, count: 1, limit, path: this.valuePath, start });
            if (object) this.memberName();
            else this.valuePath = this.childPath(this.valuePath, '[]');
            continue;
          }
        } else {
          if (c === 0x22) this.scanString();
          else if (c === 0x2d || isDigit(c)) this.scanNumber();
          else if (c === 0x74) this.literal('true');
          else if (c === 0x66) this.literal('false');
          else if (c === 0x6e) this.literal('null');
          else this.fail('BAD_JSON', 'unexpected character');
          const path = this.valuePath;
          if (path !== undefined && capture?.has(path)) this.spans.set(path, { start, end: this.i });
        }
        expectValue = false;
      }
      // After a value: close containers or move to the next element/member.
      this.skipWs();
      const top = open[open.length - 1];
      if (!top) break;
      const c = this.i < n ? text.charCodeAt(this.i) : -1;
      if (c === 0x2c) {
        this.i++;
        this.skipWs();
        if (++top.count > top.limit) this.fail('TOO_MANY_MEMBERS', `an object with more than ${top.limit} members where at most ${top.limit} belong`);
        if (top.object) this.memberName();
        else this.valuePath = this.childPath(top.path, '[]');
        expectValue = true;
        continue;
      }
      if (c === (top.object ? 0x7d : 0x5d)) {
        this.i++;
        open.pop();
        if (top.path !== undefined && capture?.has(top.path)) {
          this.spans.set(top.path, { start: top.start, end: this.i });
          this.sizes.set(top.path, top.count);
        }
        continue;
      }
      this.fail('BAD_JSON', top.object ? 'expected , or } in an object' : 'expected , or ] in an array');
    }
    if (this.i !== n) this.fail('BAD_JSON', 'unexpected data after the JSON value');
    return { text, spans: this.spans, sizes: this.sizes };
  }
}

/** Validate `text` per the rules above; see `Scanned` for what `capture` adds. */
function scan(text: string, options: StrictJsonOptions): Scanned {
  return new Scanner(text, options).run() as Scanned;
}

/**
 * Strictly decoded UTF-8, a BOM kept (the scan refuses it as an unexpected character). Validation
 * and decoding are native and run at memory speed (simdutf): an ASCII body, which all metadata
 * tufoci writes is, becomes a one-byte string by a copy. One flat string, never a rope of chunks:
 * a rope costs a second copy when it is first indexed, and a streaming TextDecoder is several
 * times slower than both steps together.
 */
function decodeStrict(input: Uint8Array, label: string): string {
  const buf = Buffer.from(input.buffer, input.byteOffset, input.byteLength);
  if (isAscii(buf)) return buf.toString('latin1');
  if (!isUtf8(buf)) throw new StrictJsonError('BAD_JSON', `${label}: not valid UTF-8`, { detail: { reason: 'BAD_JSON' } });
  return buf.toString('utf8');
}

/** Strictly decode UTF-8 (no BOM, no invalid sequences) and scan; builds no value. */
export function scanStrictJson(input: Uint8Array | string, options: StrictJsonOptions = {}): Scanned {
  return scan(typeof input === 'string' ? input : decodeStrict(input, options.label ?? 'document'), options);
}

/** Characters scanned between two yields to the event loop by `scanStrictJsonAsync`. */
const SLICE_CHARS = 64 * 1024;

/**
 * `scanStrictJson` in slices, yielding to the event loop between them, so that scanning a large
 * body never holds other requests up for more than a slice: for a service that refuses what it
 * can before the synchronous parse. (The decoding is one native step of about 0.1 ms per MiB.)
 */
export async function scanStrictJsonAsync(input: Uint8Array, options: StrictJsonOptions = {}): Promise<Scanned> {
  const scanner = new Scanner(decodeStrict(input, options.label ?? 'document'), options);
  for (let stopAt = SLICE_CHARS; ; stopAt += SLICE_CHARS) {
    const done = scanner.run(stopAt);
    if (done) return done;
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
}

/** Strictly decode, check, and parse. */
export function parseStrictJson(input: Uint8Array | string, options: StrictJsonOptions = {}): unknown {
  return JSON.parse(scanStrictJson(input, options).text);
}

/** Throws StrictJsonError unless `text` is one JSON value meeting the rules above. */
export function checkStrictJson(text: string, options: StrictJsonOptions = {}): void {
  scan(text, options);
}
