/**
 * Request heads as the connection front reads them: `scanHead` checks the bytes of one head
 * against the strict subset of HTTP/1.1 the front answers (fast-front.ts says why that subset
 * cannot be framed differently by node:http), and fills `head` with the few facts the answer
 * needs. Byte classes and header names are compared on the bytes; nothing is decoded but the
 * target and If-None-Match. This module imports nothing.
 */

/**
 * Heads longer than this are handed to node:http (whose limit is 16 KiB):
 * the front never answers a head node would refuse for its size.
 */
export const MAX_HEAD = 8 * 1024;
/** More header lines than this: handed over (node keeps 2,000 at most). */
const MAX_HEADER_LINES = 100;

// Byte classes (RFC 9110 §5.1, §5.5; RFC 9112 §3.2).
const TOKEN = 1;
const VALUE = 2; // VCHAR / SP / HTAB / obs-text
const TARGET = 4; // the only bytes allowed in an answered request target
const OWS = 8;
const CLASS = new Uint8Array(256);
for (let c = 0; c < 256; c++) {
  const ch = String.fromCharCode(c);
  const alnum = /[A-Za-z0-9]/.test(ch);
  if (alnum || "!#$%&'*+-.^_`|~".includes(ch)) CLASS[c] = (CLASS[c] as number) | TOKEN;
  if ((c >= 0x21 && c <= 0x7e) || c === 0x20 || c === 0x09 || c >= 0x80) CLASS[c] = (CLASS[c] as number) | VALUE;
  if (alnum || '._/-'.includes(ch)) CLASS[c] = (CLASS[c] as number) | TARGET;
  if (c === 0x20 || c === 0x09) CLASS[c] = (CLASS[c] as number) | OWS;
}

export const CRLFCRLF = Buffer.from('\r\n\r\n', 'latin1');
const GET_SLASH = Buffer.from('GET /', 'latin1');
const HTTP11 = Buffer.from(' HTTP/1.1\r\n', 'latin1');
const lower = (s: string): Buffer => Buffer.from(s, 'latin1');
const H_HOST = lower('host');
const H_EXPECT = lower('expect');
const H_UPGRADE = lower('upgrade');
const H_CONNECTION = lower('connection');
const H_REQUEST_ID = lower('x-request-id');
const H_IF_NONE_MATCH = lower('if-none-match');
const H_AUTHORIZATION = lower('authorization');
const H_CONTENT_LENGTH = lower('content-length');
const H_PROXY_CONNECTION = lower('proxy-connection');
const H_TRANSFER_ENCODING = lower('transfer-encoding');
const V_KEEP_ALIVE = lower('keep-alive');
const V_CLOSE = lower('close');

/** `buf[at…]` equals `lit` ignoring ASCII case (`lit` lower case letters and '-'; `buf` token bytes). */
function named(buf: Buffer, at: number, lit: Buffer): boolean {
  for (let k = 0; k < lit.length; k++) if (((buf[at + k] as number) | 0x20) !== lit[k]) return false;
  return true;
}

/** What the front needs from a head inside the subset (one scratch object: parsing is synchronous). */
export interface Head {
  target: string;
  close: boolean;
  ifNoneMatch: string | undefined;
  /** Byte range of the X-Request-Id value, or idStart = -1. */
  idStart: number;
  idEnd: number;
}
export const head: Head = { target: '', close: false, ifNoneMatch: undefined, idStart: -1, idEnd: -1 };

/** scanHead results. */
export const OUTSIDE = 0;
export const COMPLETE = 1;
export const SO_FAR = 2;

/**
 * Check the head starting at `buf[start]` against the subset, filling `head`.
 * `stop` is `end + 2` for a complete head (`end`: where its CRLFCRLF starts):
 * COMPLETE when it is inside the subset, else OUTSIDE. For bytes that are not
 * yet a complete head, `stop` is `buf.length`: SO_FAR while they can still
 * begin a head inside the subset, OUTSIDE as soon as they cannot (so that
 * node:http sees a bad head as early as it would have without the front).
 */
export function scanHead(buf: Buffer, start: number, stop: number, complete: boolean): number {
  // Request line: "GET " target " HTTP/1.1" CRLF, target only [A-Za-z0-9._/-], starting with "/".
  for (let k = 0; k < GET_SLASH.length; k++) {
    if (start + k >= stop) return SO_FAR;
    if (buf[start + k] !== GET_SLASH[k]) return OUTSIDE;
  }
  let p = start + 4;
  while (((CLASS[buf[p] as number] as number) & TARGET) !== 0) p++;
  const targetEnd = p;
  for (let k = 0; k < HTTP11.length; k++, p++) {
    if (p >= stop) return SO_FAR;
    if (buf[p] !== HTTP11[k]) return OUTSIDE;
  }
  head.target = buf.toString('latin1', start + 4, targetEnd);
  head.close = false;
  head.ifNoneMatch = undefined;
  head.idStart = -1;
  head.idEnd = -1;
  let hosts = 0;
  let connection = false;
  let lines = 0;
  // Header lines, up to the empty line at end + 2 (complete). Scans stop at a CR, or where the bytes end.
  while (p < stop) {
    if (++lines > MAX_HEADER_LINES) return OUTSIDE;
    const nameStart = p;
    while (((CLASS[buf[p] as number] as number) & TOKEN) !== 0) p++;
    const nameLength = p - nameStart;
    if (p >= stop) return SO_FAR;
    if (nameLength === 0 && buf[p] === 0x0d && p + 1 >= stop) return SO_FAR; // the final CRLF, under way
    if (nameLength === 0 || buf[p] !== 0x3a) return OUTSIDE; // obs-fold, whitespace before ':', no name
    p++;
    while (((CLASS[buf[p] as number] as number) & OWS) !== 0) p++;
    const valueStart = p;
    let obsText = false;
    for (;;) {
      const c = buf[p] as number;
      if (((CLASS[c] as number) & VALUE) === 0) break;
      if (c >= 0x80) obsText = true;
      p++;
    }
    if (p >= stop) return SO_FAR;
    if (buf[p] !== 0x0d) return OUTSIDE; // a control byte, a bare LF
    if (p + 1 >= stop) return SO_FAR;
    if (buf[p + 1] !== 0x0a) return OUTSIDE; // a bare CR
    let valueEnd = p;
    while (valueEnd > valueStart && ((CLASS[buf[valueEnd - 1] as number] as number) & OWS) !== 0) valueEnd--;
    p += 2;
    switch (nameLength) {
      case 4:
        if (named(buf, nameStart, H_HOST)) hosts++;
        break;
      case 6:
        if (named(buf, nameStart, H_EXPECT)) return OUTSIDE;
        break;
      case 7:
        if (named(buf, nameStart, H_UPGRADE)) return OUTSIDE;
        break;
      case 10:
        if (named(buf, nameStart, H_CONNECTION)) {
          if (connection) return OUTSIDE;
          connection = true;
          const length = valueEnd - valueStart;
          if (length === V_CLOSE.length && named(buf, valueStart, V_CLOSE)) head.close = true;
          else if (!(length === V_KEEP_ALIVE.length && named(buf, valueStart, V_KEEP_ALIVE))) return OUTSIDE;
        }
        break;
      case 12:
        if (named(buf, nameStart, H_REQUEST_ID)) {
          // obs-text would be re-encoded by node:http on some paths: not echoed here.
          if (head.idStart !== -1 || obsText) return OUTSIDE;
          head.idStart = valueStart;
          head.idEnd = valueEnd;
        }
        break;
      case 13:
        if (named(buf, nameStart, H_AUTHORIZATION)) return OUTSIDE;
        if (named(buf, nameStart, H_IF_NONE_MATCH)) {
          if (head.ifNoneMatch !== undefined) return OUTSIDE;
          head.ifNoneMatch = buf.toString('latin1', valueStart, valueEnd);
        }
        break;
      case 14:
        if (named(buf, nameStart, H_CONTENT_LENGTH)) return OUTSIDE;
        break;
      case 16:
        if (named(buf, nameStart, H_PROXY_CONNECTION)) return OUTSIDE;
        break;
      case 17:
        if (named(buf, nameStart, H_TRANSFER_ENCODING)) return OUTSIDE;
        break;
    }
  }
  if (!complete) return hosts <= 1 ? SO_FAR : OUTSIDE;
  return hosts === 1 ? COMPLETE : OUTSIDE;
}
