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
 * The grammar is otherwise RFC 8259's exactly, over bytes that are strictly
 * valid UTF-8 (checked natively first, so raw unpaired surrogates and
 * overlong forms cannot occur; a BOM is refused as an unexpected character).
 *
 * How: one iterative pass over the bytes (`scanStrictJson`) validates the
 * grammar and the rules above, remembering each object's member names (as
 * deep as asked), and builds no value. On request it also returns, for a few
 * member paths (`capture`: `signed/version`, `signed/targets`), where their
 * values lie in the bytes and how many members or elements they hold, and
 * stops at the first captured list longer than its bound (`maxSizes`): a
 * caller can refuse a document on its counts or on one small field before
 * decoding or building anything. `parseStrictJson` then lets V8's JSON.parse
 * build the value from the same text, which it reads identically because the
 * text is now unambiguous.
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
  /**
   * The most members or elements a captured container may hold, by path: the scan stops at the
   * first one beyond (`TOO_MANY_MEMBERS`, `detail.path`), so an over-long list is refused after
   * reading no more of it than the bound.
   */
  maxSizes?: ReadonlyMap<string, number>;
}

/** What a scan found besides validity. */
export interface Scanned {
  /** The bytes scanned (valid UTF-8). */
  bytes: Buffer;
  /** The decoded text (decoded on first use: a caller that refuses on counts never pays for it). */
  readonly text: string;
  /** Captured paths present in the document: the value is `bytes.subarray(start, end)` (byte offsets). */
  spans: Map<string, { start: number; end: number }>;
  /** Captured paths whose value is an object or array: its number of members or elements. */
  sizes: Map<string, number>;
  /** Members of all objects in the document, as written (`distinctNames` compares it with a parsed value). */
  members: number;
  /**
   * Whether the bytes of a span (`spans`) are already in OLPC canonical form: no whitespace
   * between tokens, no escapes but \" and \\, member names in order (plain ASCII). The canonical
   * form of the value parsed from such a span is the span itself (given distinct names).
   */
  canonicalSpan(span: { start: number; end: number }): boolean;
}

/** The text of a captured value (undefined when the path is absent). */
export function spanText(scanned: Pick<Scanned, 'bytes' | 'spans'>, path: string): string | undefined {
  const span = scanned.spans.get(path);
  return span && scanned.bytes.toString('utf8', span.start, span.end);
}

const MAX_SAFE_DIGITS = 16; // 2^53 - 1 = 9007199254740991 has 16 digits

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  return -1;
}

/** Objects with more members than this keep their names in a Set. */
const SMALL_OBJECT = 8;

const OBJECT = 1;
const ARRAY = 2;

// What the scan expects next (one token per turn of its loop).
/** A value. */
const VALUE = 0;
/** Just inside `{` or `[`: the closing bracket, or the first member or element. */
const FIRST = 1;
/** A member name. */
const NAME = 2;
/** The colon after a member name. */
const COLON = 3;
/** After a value: `,`, a closing bracket, or (at depth 0) the end. */
const AFTER = 4;

/** Thrown inside a turn that reached the end of the bytes pushed so far (more may come). */
const NEED_MORE = Symbol('need more bytes');

/** Departures from canonical form remembered per document (beyond them a span is assumed not canonical). */
const MAX_DEPARTURES = 64;

/**
 * One scan of one document's bytes. Bytes at or above 0x80 occur only inside strings, where they
 * are content; everything structural is ASCII and is read byte by byte (a whole document is
 * checked to be valid UTF-8 natively first; a stream, once complete). The open containers are
 * kept in arrays indexed by depth, allocated once per scan (no object per container), and the hot
 * loop keeps its position in a local: a 4 MiB upload of 100,000 small objects costs tens of
 * milliseconds.
 *
 * Resumable, for bytes that arrive in pieces (`StrictJsonStream`): each turn of the main loop
 * skips whitespace (kept, whatever comes next) and reads one token before it changes any state,
 * so a turn that runs out of bytes (`NEED_MORE`) is undone by going back to its token's first
 * byte, and repeated once more bytes are there. A string that runs out goes on from where it was
 * read to (`inString`), and only a member name that must be read as a name keeps its bytes:
 * every byte is read a bounded number of times and the bytes kept between pieces stay few,
 * however the document is cut. Positions are relative to the current buffer `b`, which starts at
 * document offset `base`; spans and messages use document offsets.
 */
class Scanner {
  b: Buffer = Buffer.alloc(0);
  n = 0;
  /** The document offset of `b[0]`. */
  base = 0;
  /** Whether `b` ends where the document ends (else reaching its end is `NEED_MORE`). */
  final = true;
  readonly label: string;
  readonly maxDepth: number;
  readonly namesDepth: number;
  readonly capture: ReadonlySet<string> | undefined;
  readonly maxMembers: readonly number[] | undefined;
  readonly maxSizes: ReadonlyMap<string, number> | undefined;
  /** Paths of containers on the way to a captured path ('' is the top-level object). */
  readonly prefixes = new Set<string>();
  readonly spans = new Map<string, { start: number; end: number }>();
  readonly sizes = new Map<string, number>();
  /** Members of all objects closed so far. */
  members = 0;
  /**
   * Where the bytes depart from OLPC canonical JSON (whitespace between tokens, an escape other
   * than \" and \\, member names out of order or not plain ASCII): document offsets, the first
   * MAX_DEPARTURES of them, so that a caller can tell whether a captured span is canonical as
   * written (`canonicalSpan`). Tracked for whole documents only (a stream's earlier names are gone).
   */
  readonly departures: number[] = [];
  departuresOverflow = false;
  /** Where the previous member name of the object at each depth lies (positions in `b`), for the order check. */
  readonly lastNameFrom: Float64Array;
  readonly lastNameTo: Float64Array;
  // The open containers, by depth (0 is the outermost).
  readonly kind: Uint8Array;
  readonly count: Float64Array;
  readonly limit: Float64Array;
  /** Document offset of each open container's bracket. */
  readonly start: Float64Array;
  /** Whether the members of the container at this depth have tracked paths. */
  readonly leads: Uint8Array;
  readonly path: Array<string | undefined>;
  readonly names: Array<string[] | Set<string> | undefined>;
  depth = 0;
  i = 0;
  state = VALUE;
  done = false;
  /** The path of the value about to be scanned (undefined: not tracked). */
  valuePath: string | undefined = undefined;
  /** Whether the string scanned last held a backslash. */
  escaped = false;
  /**
   * A string that ran out of bytes and whose bytes are not needed again (a value, or a name that
   * is not read): its opening quote's document offset, and whether it held a backslash so far.
   * The next turn goes on reading its content at `i`.
   */
  inString = false;
  stringStart = 0;
  stringEscaped = false;

  constructor(options: StrictJsonOptions) {
    this.label = options.label ?? 'document';
    this.maxDepth = options.maxDepth ?? DEFAULT_MAX_DEPTH;
    this.namesDepth = options.namesDepth ?? this.maxDepth;
    this.capture = options.capture;
    this.maxMembers = options.maxMembers;
    this.maxSizes = options.maxSizes;
    if (this.capture) {
      for (const c of this.capture) {
        const parts = c.split('/');
        for (let k = 0; k < parts.length; k++) this.prefixes.add(parts.slice(0, k).join('/'));
      }
    }
    const d = this.maxDepth;
    this.kind = new Uint8Array(d);
    this.count = new Float64Array(d);
    this.limit = new Float64Array(d);
    this.start = new Float64Array(d);
    this.leads = new Uint8Array(d);
    this.path = new Array<string | undefined>(d).fill(undefined);
    this.names = new Array<string[] | Set<string> | undefined>(d).fill(undefined);
    this.lastNameFrom = new Float64Array(d);
    this.lastNameTo = new Float64Array(d);
  }

  /** A departure from canonical form at position `at` of `b`. */
  depart(at: number): void {
    if (this.departures.length < MAX_DEPARTURES) this.departures.push(this.base + at);
    else this.departuresOverflow = true;
  }

  /**
   * Whether the member name between `from` and `to` (positions in `b`, inside the quotes) sorts
   * after the previous one of the object at `top` the way canonical JSON orders them: plain ASCII
   * compared byte by byte (which is also UTF-16 order there).
   */
  nameInOrder(top: number, from: number, to: number, first: boolean): boolean {
    const b = this.b;
    for (let k = from; k < to; k++) if ((b[k] as number) >= 0x80) return false;
    const pFrom = this.lastNameFrom[top] as number;
    const pTo = this.lastNameTo[top] as number;
    this.lastNameFrom[top] = from;
    this.lastNameTo[top] = to;
    if (first) return true;
    const pLen = pTo - pFrom;
    const len = to - from;
    const common = Math.min(pLen, len);
    for (let k = 0; k < common; k++) {
      const x = b[from + k] as number;
      const y = b[pFrom + k] as number;
      if (x !== y) return x > y;
    }
    return len > pLen;
  }

  /** Scan `b` next, which starts at document offset `base`, from its byte `i`. */
  setBuffer(b: Buffer, base: number, i: number, final: boolean): void {
    this.b = b;
    this.n = b.length;
    this.base = base;
    this.i = i;
    this.final = final;
  }

  fail(code: StrictJsonCode, what: string, at: number = this.i): never {
    const offset = this.base + at;
    throw new StrictJsonError(code, `${this.label}: ${what} at offset ${offset}`, { detail: { offset, reason: code } });
  }

  /** At the end of the bytes inside a token: more may come (NEED_MORE), or the document ended here. */
  end(i: number, what: string): never {
    if (!this.final) throw NEED_MORE;
    this.fail('BAD_JSON', what, i);
  }

  skipWs(i: number): number {
    const b = this.b;
    const n = this.n;
    while (i < n) {
      const c = b[i] as number;
      if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) break;
      i++;
    }
    return i;
  }

  /**
   * String content from `i` (just past the opening quote, or where an unfinished string was read
   * to) through the closing quote; the position after it. `escaped` says whether a backslash was
   * seen so far; the result's is in `this.escaped`. Out of bytes: `this.i` is where it was read to
   * (an escape that may be incomplete is read again from its backslash), then NEED_MORE.
   */
  stringContent(i: number, escaped: boolean): number {
    const b = this.b;
    const n = this.n;
    for (;;) {
      // Plain content: anything but a quote, a backslash or a control character.
      let c = 0;
      while (i < n) {
        c = b[i] as number;
        if (c === 0x22 || c === 0x5c || c < 0x20) break;
        i++;
      }
      if (i >= n) {
        this.i = i;
        this.escaped = escaped;
        this.end(i, 'unterminated string');
      }
      if (c === 0x22) break;
      if (c < 0x20) this.fail('BAD_JSON', 'control character in a string', i);
      // A backslash: its escape must be complete in these bytes, or it is read again.
      this.i = i;
      this.escaped = escaped;
      escaped = true;
      if (i + 1 >= n) this.end(i, 'unterminated string');
      const e = b[i + 1] as number;
      if (e !== 0x22 && e !== 0x5c && this.final) this.depart(i); // canonical JSON escapes only " and \
      if (e === 0x22 || e === 0x5c || e === 0x2f || e === 0x62 || e === 0x66 || e === 0x6e || e === 0x72 || e === 0x74) {
        i += 2;
        continue;
      }
      if (e !== 0x75) this.fail('BAD_JSON', 'invalid escape in a string', i);
      const unit = this.readHex4(i + 2);
      if (unit >= 0xd800 && unit <= 0xdbff) {
        // A high surrogate must be followed at once by an escaped low surrogate.
        for (let k = 6; k < 8; k++) {
          if (i + k >= n) this.end(i, 'unterminated string');
          if (b[i + k] !== (k === 6 ? 0x5c : 0x75)) this.fail('LONE_SURROGATE', 'unpaired UTF-16 surrogate escape', i);
        }
        const low = this.readHex4(i + 8);
        if (low < 0xdc00 || low > 0xdfff) this.fail('LONE_SURROGATE', 'unpaired UTF-16 surrogate escape', i);
        i += 12;
        continue;
      }
      if (unit >= 0xdc00 && unit <= 0xdfff) this.fail('LONE_SURROGATE', 'unpaired UTF-16 surrogate escape', i);
      i += 6;
    }
    this.escaped = escaped;
    return i + 1;
  }

  readHex4(at: number): number {
    if (at + 4 > this.n) {
      if (!this.final) throw NEED_MORE;
      this.fail('BAD_JSON', 'invalid \\u escape', at);
    }
    let v = 0;
    for (let k = 0; k < 4; k++) {
      const h = hexValue(this.b[at + k] as number);
      if (h < 0) this.fail('BAD_JSON', 'invalid \\u escape', at);
      v = v * 16 + h;
    }
    return v;
  }

  /** A number from its first character; the position after it. At most 16 digits are ever read. */
  scanNumber(start: number): number {
    const b = this.b;
    const n = this.n;
    let i = start;
    if (b[i] === 0x2d) i++;
    const first = i;
    if (i >= n) this.end(i, 'invalid number');
    let c = b[i] as number;
    if (c < 0x30 || c > 0x39) this.fail('BAD_JSON', 'invalid number', i);
    if (c === 0x30) i++;
    else {
      while (i < n) {
        c = b[i] as number;
        if (c < 0x30 || c > 0x39) break;
        if (++i - first > MAX_SAFE_DIGITS) this.fail('NOT_INTEGER', 'integer outside the range every parser reads exactly (±2^53)', start);
      }
    }
    if (i >= n && !this.final) throw NEED_MORE; // the number may go on
    c = i < n ? (b[i] as number) : -1;
    if (c === 0x2e || c === 0x65 || c === 0x45) {
      const shown = b.toString('latin1', start, Math.min(n, start + 24)).split(/[,\]}\s]/)[0];
      this.fail('NOT_INTEGER', `number ${shown} is not an integer (write integers without a fraction or exponent)`, start);
    }
    const digits = i - first;
    if (digits === MAX_SAFE_DIGITS && !Number.isSafeInteger(Number(b.toString('latin1', first, i)))) {
      this.fail('NOT_INTEGER', 'integer outside the range every parser reads exactly (±2^53)', start);
    }
    if (first !== start && digits === 1 && b[first] === 0x30) this.fail('NOT_INTEGER', '-0 is not an integer every parser reads the same way', start);
    return i;
  }

  literal(i: number, word: string): number {
    const b = this.b;
    for (let k = 0; k < word.length; k++) {
      if (i + k >= this.n) this.end(i, 'unexpected character');
      if (b[i + k] !== word.charCodeAt(k)) this.fail('BAD_JSON', 'unexpected character', i);
    }
    return i + word.length;
  }

  /** A member name whose raw bytes lie between `from` and `to` (inside its quotes), of the container at `top`: a duplicate refused (where names are checked), its path kept. */
  recordName(top: number, from: number, to: number, escaped: boolean): void {
    const names = this.names[top];
    const name = escaped ? (JSON.parse(this.b.toString('utf8', from - 1, to + 1)) as string) : this.b.toString('utf8', from, to);
    if (names !== undefined) {
      if (Array.isArray(names) ? names.includes(name) : names.has(name)) this.fail('DUPLICATE_KEY', `duplicate member name ${JSON.stringify(name.slice(0, 60))}`, from - 1);
      if (!Array.isArray(names)) names.add(name);
      else if (names.length < SMALL_OBJECT) names.push(name);
      else this.names[top] = new Set([...names, name]);
    }
    this.valuePath = this.leads[top] === 1 ? (top === 0 ? name : `${this.path[top]}/${name}`) : undefined;
  }

  /** Open a container (its bracket at `at`) whose value path is `valuePath`, at depth `top`. */
  push(top: number, object: boolean, at: number): void {
    const path = this.valuePath;
    const limits = this.maxMembers;
    this.kind[top] = object ? OBJECT : ARRAY;
    this.count[top] = 0;
    this.limit[top] = object && limits && limits.length ? (limits[Math.min(top, limits.length - 1)] as number) : Number.POSITIVE_INFINITY;
    this.start[top] = this.base + at;
    this.path[top] = path;
    this.leads[top] = this.capture !== undefined && (top === 0 ? this.prefixes.has('') : path !== undefined && this.prefixes.has(path)) ? 1 : 0;
    this.names[top] = object && top < this.namesDepth ? [] : undefined;
  }

  /** One more member or element of the container at `top`, within its bounds. */
  member(top: number, at: number): void {
    const members = ++(this.count[top] as number);
    if (members > (this.limit[top] as number)) this.fail('TOO_MANY_MEMBERS', `an object with more than ${this.limit[top]} members where at most ${this.limit[top]} belong`, at);
    const maxSizes = this.maxSizes;
    if (maxSizes !== undefined) {
      const path = this.path[top];
      const bound = path !== undefined ? maxSizes.get(path) : undefined;
      if (bound !== undefined && members > bound) {
        throw new StrictJsonError('TOO_MANY_MEMBERS', `${this.label}: ${path} lists more than ${bound} entries`, {
          detail: { offset: this.base + at, reason: 'TOO_MANY_MEMBERS', path, limit: bound },
        });
      }
    }
    if (this.kind[top] === ARRAY) this.valuePath = this.leads[top] === 1 ? (top === 0 ? '[]' : `${this.path[top]}/[]`) : undefined;
  }

  /** Close the container at `top`, whose closing bracket ends before `end`. */
  close(top: number, end: number): void {
    const path = this.path[top];
    const count = this.count[top] as number;
    if (path !== undefined && this.capture?.has(path)) this.captured(path, this.start[top] as number, this.base + end, count);
    if (this.kind[top] === OBJECT) this.members += count;
    this.names[top] = undefined;
  }

  /** A captured container or value spans these document offsets. */
  captured(path: string, start: number, end: number, size: number | undefined): void {
    this.spans.set(path, { start, end });
    if (size !== undefined) this.sizes.set(path, size);
  }

  /** The end of a string value that opened at document offset `start`. */
  stringValue(start: number, end: number): void {
    const path = this.valuePath;
    if (path !== undefined && this.capture?.has(path)) this.captured(path, start, this.base + end, undefined);
  }

  /**
   * Scan on until a turn would start past `stopAt` (a position in `b`; then false: call again to
   * go on), the bytes run out before the document ends (false; `i` is where to go on, in `b`,
   * once more bytes are there), or the document ends (true).
   */
  run(stopAt: number = Number.POSITIVE_INFINITY): boolean {
    if (this.done) return true;
    const b = this.b;
    const n = this.n;
    const kind = this.kind;
    let i = this.i;
    let at = i;
    let state = this.state;
    let depth = this.depth;
    try {
      if (this.inString) {
        // Go on reading the string that ran out of bytes.
        const end = this.stringContent(i, this.stringEscaped);
        this.inString = false;
        if (state === NAME) {
          this.valuePath = undefined; // a name that is not read
          state = COLON;
        } else {
          this.stringValue(this.stringStart, end);
          state = AFTER;
        }
        i = end;
      }
      for (;;) {
        // Whitespace first: it is never read again, whatever follows.
        const ws = i;
        while (i < n) {
          const w = b[i] as number;
          if (w !== 0x20 && w !== 0x0a && w !== 0x0d && w !== 0x09) break;
          i++;
        }
        if (i !== ws && this.final) this.depart(ws);
        at = i;
        if (i > stopAt) return false;
        if (i >= n) {
          if (!this.final) return false;
          if (state === AFTER && depth === 0) {
            this.done = true;
            return true;
          }
          this.fail('BAD_JSON', 'unexpected end of input', i);
        }
        const c = b[i] as number;
        if (state === VALUE) {
          if (c === 0x7b || c === 0x5b) {
            if (depth >= this.maxDepth) this.fail('TOO_DEEP', `nesting deeper than ${this.maxDepth} levels`, i);
            this.push(depth, c === 0x7b, i);
            depth++;
            state = FIRST;
            i++;
            continue;
          }
          if (c === 0x22) {
            const end = this.stringContentFrom(i, true);
            this.stringValue(this.base + at, end);
            i = end;
          } else {
            if (c === 0x2d || (c >= 0x30 && c <= 0x39)) i = this.scanNumber(i);
            else if (c === 0x74) i = this.literal(i, 'true');
            else if (c === 0x66) i = this.literal(i, 'false');
            else if (c === 0x6e) i = this.literal(i, 'null');
            else this.fail('BAD_JSON', 'unexpected character', i);
            const path = this.valuePath;
            if (path !== undefined && this.capture?.has(path)) this.captured(path, this.base + at, this.base + i, undefined);
          }
          state = AFTER;
          continue;
        }
        const top = depth - 1;
        if (state === AFTER || state === FIRST) {
          if (depth === 0) this.fail('BAD_JSON', 'unexpected data after the JSON value', i);
          const object = kind[top] === OBJECT;
          if (c === (object ? 0x7d : 0x5d)) {
            this.close(top, i + 1);
            depth = top;
            state = AFTER;
            i++;
            continue;
          }
          if (state === AFTER) {
            if (c !== 0x2c) this.fail('BAD_JSON', object ? 'expected , or } in an object' : 'expected , or ] in an array', i);
            i++;
          }
          this.member(top, i);
          state = object ? NAME : VALUE;
          continue;
        }
        if (state === NAME) {
          if (c !== 0x22) this.fail('BAD_JSON', 'expected a member name', i);
          const read = this.names[top] !== undefined || this.leads[top] === 1;
          const end = this.stringContentFrom(i, !read);
          if (this.final && (this.escaped || !this.nameInOrder(top, i + 1, end - 1, this.count[top] === 1))) this.depart(i);
          if (read) this.recordName(top, i + 1, end - 1, this.escaped);
          else this.valuePath = undefined;
          state = COLON;
          i = end;
          continue;
        }
        // COLON
        if (c !== 0x3a) this.fail('BAD_JSON', 'expected : after a member name', i);
        state = VALUE;
        i++;
      }
    } catch (e) {
      if (e !== NEED_MORE) throw e;
      if (this.inString) {
        // The string goes on from where it was read to.
        i = this.i;
        this.stringEscaped = this.escaped;
      } else {
        i = at; // the turn is repeated from its token's first byte
      }
      return false;
    } finally {
      this.i = i;
      this.state = state;
      this.depth = depth;
    }
  }

  /**
   * A string token from its opening quote at `i`; the position after its closing quote. Out of
   * bytes: when `resumable` (its bytes are not needed again), the scan goes on inside it next
   * time (`inString`); else the turn is repeated from the quote.
   */
  stringContentFrom(i: number, resumable: boolean): number {
    try {
      return this.stringContent(i + 1, false);
    } catch (e) {
      if (e === NEED_MORE && resumable) {
        this.inString = true;
        this.stringStart = this.base + i;
        this.stringEscaped = this.escaped;
      }
      throw e;
    }
  }
}

/** What a stream found once it ended: the spans and sizes of `Scanned`, without the bytes. */
export type StreamScanned = Pick<Scanned, 'spans' | 'sizes' | 'members'>;

/**
 * The strict scan of a document that arrives in pieces (a request body as it is read): each
 * `push` scans what it can of the new bytes at once, so a document is refused at the first byte
 * that shows it must be (too deep, malformed, a duplicate name, a captured list over its bound)
 * and the rest need never be read. A piece is scanned where it lies; the few bytes of a token
 * it ends inside are carried over into a small window buffer, reused from piece to piece, that
 * the next piece is copied behind (only a member name that is read as a name is carried whole).
 * UTF-8 validity needs the whole document: a caller checks it on the complete bytes.
 */
export class StrictJsonStream {
  readonly #scanner: Scanner;
  /** Bytes pushed so far. */
  #received = 0;
  /** The bytes from where the scanner stopped to the end of what was pushed: `#window[0..#kept)`, at document offset `#keptBase`. */
  #window: Buffer | undefined;
  #kept = 0;
  #keptBase = 0;

  constructor(options: StrictJsonOptions = {}) {
    this.#scanner = new Scanner(options);
    this.#scanner.setBuffer(Buffer.alloc(0), 0, 0, false);
  }

  /** Scan the next piece; throws StrictJsonError at the first byte that refuses the document. */
  push(piece: Uint8Array): void {
    const chunk = Buffer.from(piece.buffer, piece.byteOffset, piece.byteLength);
    const base = this.#received;
    this.#received += chunk.length;
    const scanner = this.#scanner;
    if (this.#kept === 0) {
      scanner.setBuffer(chunk, base, 0, false);
      scanner.run();
      this.#keep();
      return;
    }
    // The carried bytes with as much of the piece behind them as the window holds: the token they
    // begin ends there (or the whole piece is carried), and the rest of the piece is scanned in place.
    let window = this.#window as Buffer;
    const kept = this.#kept;
    if (window.length < kept + Math.min(chunk.length, 4096)) window = this.#grow(kept + Math.min(chunk.length, 4096));
    const take = Math.min(chunk.length, window.length - kept);
    chunk.copy(window, kept, 0, take);
    scanner.setBuffer(window.subarray(0, kept + take), this.#keptBase, 0, false);
    scanner.run(kept - 1);
    const stoppedAt = this.#keptBase + scanner.i; // document offset
    if (stoppedAt >= base) {
      // Past the carried bytes: the rest of the piece is scanned where it lies.
      this.#kept = 0;
      scanner.setBuffer(chunk, base, stoppedAt - base, false);
      scanner.run();
      this.#keep();
      return;
    }
    // Still inside the carried token (a long name): keep it and all of this piece.
    const need = this.#received - stoppedAt; // the carried token and everything after it
    const from = stoppedAt - this.#keptBase;
    window.copyWithin(0, from, kept + take);
    let kept2 = kept + take - from;
    if (take < chunk.length) {
      if (window.length < need) window = this.#grow(need, kept2);
      chunk.copy(window, kept2, take);
      kept2 += chunk.length - take;
    }
    this.#kept = kept2;
    this.#keptBase = stoppedAt;
  }

  /** The end of the document: the last token is scanned; what the scan found. */
  end(): StreamScanned {
    const scanner = this.#scanner;
    const kept = this.#kept;
    scanner.setBuffer(kept > 0 ? (this.#window as Buffer).subarray(0, kept) : Buffer.alloc(0), kept > 0 ? this.#keptBase : this.#received, 0, true);
    scanner.run();
    return { spans: scanner.spans, sizes: scanner.sizes, members: scanner.members };
  }

  /** A window of at least `size` bytes holding the first `keep` bytes of the current one. */
  #grow(size: number, keep = this.#kept): Buffer {
    const grown = Buffer.allocUnsafeSlow(Math.max(size, 2 * (this.#window?.length ?? 0), 4096));
    this.#window?.copy(grown, 0, 0, keep);
    this.#window = grown;
    return grown;
  }

  /** After a piece was scanned in place: carry the bytes from where the scanner stopped. */
  #keep(): void {
    const scanner = this.#scanner;
    const rest = scanner.n - scanner.i;
    this.#kept = rest;
    this.#keptBase = scanner.base + scanner.i;
    if (rest === 0) return;
    const window = this.#window === undefined || this.#window.length < rest ? this.#grow(rest, 0) : this.#window;
    scanner.b.copy(window, 0, scanner.i, scanner.n);
  }
}

function scannedOf(bytes: Buffer, scanner: Scanner): Scanned {
  let text: string | undefined;
  const { spans, sizes, members, departures, departuresOverflow } = scanner;
  return {
    bytes,
    members,
    canonicalSpan: (span) => !departuresOverflow && !departures.some((at) => at >= span.start && at < span.end),
    get text(): string {
      // An ASCII body (all metadata tufoci writes is) becomes a one-byte string by a copy.
      text ??= isAscii(bytes) ? bytes.toString('latin1') : bytes.toString('utf8');
      return text;
    },
    spans,
    sizes,
  };
}

/**
 * Strict UTF-8 (native, at memory speed: simdutf), a BOM kept (the scan refuses it as an
 * unexpected character). A string is encoded first; one with an unpaired surrogate is refused.
 */
function strictBytes(input: Uint8Array | string, label: string): Buffer {
  if (typeof input === 'string') {
    if (!input.isWellFormed()) throw new StrictJsonError('LONE_SURROGATE', `${label}: unpaired UTF-16 surrogate`, { detail: { reason: 'LONE_SURROGATE' } });
    return Buffer.from(input, 'utf8');
  }
  const buf = Buffer.from(input.buffer, input.byteOffset, input.byteLength);
  if (!isUtf8(buf)) throw new StrictJsonError('BAD_JSON', `${label}: not valid UTF-8`, { detail: { reason: 'BAD_JSON' } });
  return buf;
}

/** Strictly decode UTF-8 (no BOM, no invalid sequences) and scan; builds no value. */
export function scanStrictJson(input: Uint8Array | string, options: StrictJsonOptions = {}): Scanned {
  const bytes = strictBytes(input, options.label ?? 'document');
  const scanner = new Scanner(options);
  scanner.setBuffer(bytes, 0, 0, true);
  scanner.run();
  return scannedOf(bytes, scanner);
}

/** Bytes scanned between two yields to the event loop by `scanStrictJsonAsync` (about 1 ms of work). */
const SLICE_BYTES = 256 * 1024;

/**
 * `scanStrictJson` in slices, yielding to the event loop between them, so that scanning a large
 * body never holds other requests up for more than a slice: for a service that refuses what it
 * can before the synchronous parse.
 */
export async function scanStrictJsonAsync(input: Uint8Array, options: StrictJsonOptions = {}): Promise<Scanned> {
  const bytes = strictBytes(input, options.label ?? 'document');
  const scanner = new Scanner(options);
  scanner.setBuffer(bytes, 0, 0, true);
  for (let stopAt = SLICE_BYTES; !scanner.run(stopAt); stopAt += SLICE_BYTES) {
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  return scannedOf(bytes, scanner);
}

/** Members of all objects in a parsed JSON value (iterative: the depth was bounded by the scan). */
function countMembers(value: unknown): number {
  let total = 0;
  const stack: unknown[] = [value];
  while (stack.length > 0) {
    const v = stack.pop();
    if (typeof v !== 'object' || v === null) continue;
    if (Array.isArray(v)) {
      for (const e of v) if (typeof e === 'object' && e !== null) stack.push(e);
      continue;
    }
    for (const k in v) {
      total++;
      const e = (v as Record<string, unknown>)[k];
      if (typeof e === 'object' && e !== null) stack.push(e);
    }
  }
  return total;
}

/**
 * Refuse `value` (JSON.parse of `scanned`'s text) if some object in the document repeats a
 * member name. JSON.parse keeps one member per name (and makes `__proto__` an own member like
 * any other), so the parsed value has as many members in all as the text has exactly when no
 * name repeats: one count during the scan and one walk here, instead of remembering every name
 * of every object. On a mismatch the document is scanned once more with every name checked, to
 * say where (it is the judge: a count thrown off by anything else refuses nothing).
 */
export function checkDistinctNames(scanned: Scanned, value: unknown, options: StrictJsonOptions = {}): void {
  if (countMembers(value) === scanned.members) return;
  // The scan with every name remembered is the judge (and names the place).
  const { capture: _c, maxSizes: _m, ...rest } = options;
  scanStrictJson(scanned.bytes, { ...rest, namesDepth: options.maxDepth ?? DEFAULT_MAX_DEPTH });
}

/**
 * Strictly decode, check, and parse: the names of the objects `namesDepth` deep or shallower are
 * checked during the scan, all others by checkDistinctNames on the parsed value.
 */
export function parseStrictJson(input: Uint8Array | string, options: StrictJsonOptions = {}): unknown {
  const scanned = scanStrictJson(input, { namesDepth: 1, ...options });
  const value = JSON.parse(scanned.text) as unknown;
  checkDistinctNames(scanned, value, options);
  return value;
}

/** Throws StrictJsonError unless `text` is one JSON value meeting the rules above. */
export function checkStrictJson(text: string, options: StrictJsonOptions = {}): void {
  scanStrictJson(text, options);
}
