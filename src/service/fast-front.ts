/**
 * The connection-level read front: every connection the HTTP server accepts
 * starts here, in fast mode. Requests whose heads fall inside a strict subset
 * of HTTP/1.1 (`scanHead`) and that ask for a metadata file already in the
 * head cache are answered from it with a prebuilt response — the bytes and
 * headers of the Koa route — without node:http, Koa or request objects. The
 * first request that is not (a miss, anything else, anything unclear) hands
 * the connection to node:http for the rest of its life, from that request's
 * first byte: the bytes not yet answered are put back into the socket
 * (`socket.unshift`) and node's own connection listener takes it as if it
 * had just been accepted (the technique @httptoolkit/httpolyglot uses). The
 * front replaces that listener on the server, so it calls it directly rather
 * than re-emitting 'connection'. node:http then serves through
 * `withFastReads` (fast-read.ts) and Koa as before.
 *
 * Why this cannot desynchronise from node's parser: the front answers a
 * request only when its head is complete and consists of a `GET <target>
 * HTTP/1.1` line and header lines, all CRLF-terminated, with only the bytes
 * RFC 9112 allows there (no bare CR or LF, no obs-fold, no whitespace before a
 * colon, no control bytes), no Content-Length, Transfer-Encoding, Expect,
 * Upgrade or Proxy-Connection, a Connection of exactly `keep-alive` or
 * `close`, and one Host. Such a message has no body (RFC 9112 §6.3), so it
 * ends at the first CRLFCRLF, the one the front found; every parser that
 * accepts it ends it there too. The front never reads past that boundary,
 * never answers a request it has not seen completely, and hands over at a
 * message boundary, where llhttp starts in its initial state. Anything outside
 * the subset — including everything a lenient and a strict parser might frame
 * differently — is never interpreted here, only passed on byte for byte; an
 * incomplete head is passed on as soon as its bytes so far cannot begin a head
 * inside the subset, so node:http refuses a bad head as early as it would
 * have alone.
 *
 * No library does this: node's llhttp cannot be driven per connection from
 * JavaScript (its parser binding is internal to node:http), and node:http's
 * per-request machinery (IncomingMessage, ServerResponse, header objects) is
 * most of the cost of a small read (bench/service-read.bench.ts).
 */
import type { Server } from 'node:http';
import type { Socket } from 'node:net';
import type { TokenAuth } from './auth.ts';
import { METADATA_PATH, ROOT_VERSION_HEADER, ROUTE, cachedRootVersion, fastRequestId } from './fast-read.ts';
import type { Metrics } from './metrics.ts';
import type { RepositoryService } from './repository-service.ts';

export interface FastFrontDeps {
  service: RepositoryService;
  auth: TokenAuth;
  metrics: Metrics;
  /** max-age of timestamp.json responses, seconds (default 10, as the Koa route). */
  timestampMaxAge?: number;
}

export interface FastFront {
  /** Connections currently in fast mode. */
  readonly connections: number;
  /** Requests answered by the front; connections handed to node:http. */
  readonly stats: { answered: number; delegated: number };
}

/**
 * Heads longer than this are handed to node:http (whose limit is 16 KiB):
 * the front never answers a head node would refuse for its size.
 */
const MAX_HEAD = 8 * 1024;
/** More header lines than this: handed over (node keeps 2,000 at most). */
const MAX_HEADER_LINES = 100;
/** Echoed request ids are cut to this many bytes (as the Koa middleware does). */
const MAX_REQUEST_ID = 64;

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

const CRLFCRLF = Buffer.from('\r\n\r\n', 'latin1');
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
interface Head {
  target: string;
  close: boolean;
  ifNoneMatch: string | undefined;
  /** Byte range of the X-Request-Id value, or idStart = -1. */
  idStart: number;
  idEnd: number;
}
const head: Head = { target: '', close: false, ifNoneMatch: undefined, idStart: -1, idEnd: -1 };

/** scanHead results. */
const OUTSIDE = 0;
const COMPLETE = 1;
const SO_FAR = 2;

/**
 * Check the head starting at `buf[start]` against the subset, filling `head`.
 * `stop` is `end + 2` for a complete head (`end`: where its CRLFCRLF starts):
 * COMPLETE when it is inside the subset, else OUTSIDE. For bytes that are not
 * yet a complete head, `stop` is `buf.length`: SO_FAR while they can still
 * begin a head inside the subset, OUTSIDE as soon as they cannot (so that
 * node:http sees a bad head as early as it would have without the front).
 */
function scanHead(buf: Buffer, start: number, stop: number, complete: boolean): number {
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

// Responses node:http writes itself when it gives up on a connection (lib/_http_server.js).
const BAD_REQUEST = Buffer.from('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n', 'latin1');
const REQUEST_TIMEOUT = Buffer.from('HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n\r\n', 'latin1');
const START_200 = Buffer.from('HTTP/1.1 200 OK\r\nX-Request-Id: ', 'latin1');
const START_304 = Buffer.from('HTTP/1.1 304 Not Modified\r\nX-Request-Id: ', 'latin1');

/** What follows the X-Request-Id value in a keep-alive response, for one file, root version and Date. */
interface Tails {
  date: string;
  etag: string;
  immutable: boolean;
  rootVersion: number | undefined;
  ok: Buffer;
  notModified: Buffer;
}

let dateValue = '';
let dateUntil = 0;
/** The Date header value, computed once per second (as node:http does). */
function httpDate(now: number): string {
  if (now >= dateUntil) {
    dateValue = new Date(now).toUTCString();
    dateUntil = now - (now % 1000) + 1000;
  }
  return dateValue;
}

/**
 * Put the front before `server`'s own connection handling. `server` keeps
 * owning the listening socket, node's connection tracking, timeouts and
 * close semantics; its `closeIdleConnections`/`closeAllConnections` (and so
 * `close()`) also end the connections still in fast mode.
 */
export function attachFastFront(server: Server, deps: FastFrontDeps): FastFront {
  const { service, auth, metrics } = deps;
  const tsCache = `public, max-age=${deps.timestampMaxAge ?? 10}`;
  const okCount = metrics.requests.labels('GET', ROUTE, '200');
  const notModifiedCount = metrics.requests.labels('GET', ROUTE, '304');
  const nodeListeners = server.listeners('connection') as Array<(socket: Socket) => void>;
  if (nodeListeners.length === 0) throw new Error('attachFastFront: the server has no connection listener to hand connections to');
  server.removeAllListeners('connection');
  const live = new Set<Connection>();
  const stats = { answered: 0, delegated: 0 };
  const tails = new WeakMap<Uint8Array, Tails>();
  const options = server as Server & { httpAllowHalfOpen?: boolean; keepAliveTimeoutBuffer?: number };

  const connectionHeaders = (keepAlive: boolean): string => {
    if (!keepAlive) return 'Connection: close\r\n';
    const timeout = server.keepAliveTimeout;
    return timeout ? `Connection: keep-alive\r\nKeep-Alive: timeout=${Math.floor(timeout / 1000)}\r\n` : 'Connection: keep-alive\r\n';
  };
  const buildTail = (file: { bytes: Uint8Array; etag: string; immutable: boolean }, rootVersion: number | undefined, date: string, keepAlive: boolean, notModified: boolean): Buffer => {
    let s = `\r\nETag: ${file.etag}\r\nCache-Control: ${file.immutable ? 'public, max-age=31536000, immutable' : tsCache}\r\n`;
    if (rootVersion !== undefined) s += `${ROOT_VERSION_HEADER}: ${rootVersion}\r\n`;
    if (notModified) return Buffer.from(`${s}Date: ${date}\r\n${connectionHeaders(keepAlive)}\r\n`, 'latin1');
    s += `Content-Type: application/json; charset=utf-8\r\nContent-Length: ${file.bytes.byteLength}\r\nDate: ${date}\r\n${connectionHeaders(keepAlive)}\r\n`;
    const headLength = Buffer.byteLength(s, 'latin1');
    const out = Buffer.allocUnsafe(headLength + file.bytes.byteLength);
    out.write(s, 0, 'latin1');
    out.set(file.bytes, headLength);
    return out;
  };

  /** The response to the request in `head` (read from `buf`), or undefined when it is not answered here. */
  const respond = (buf: Buffer, now: number): Buffer | undefined => {
    const m = METADATA_PATH.exec(head.target);
    if (!m) return undefined;
    const repository = m[1] as string;
    const file = service.cachedFile(repository, m[2] as string);
    if (!file) return undefined;
    const rootVersion = file.immutable ? undefined : cachedRootVersion(service, repository);
    const notModified = head.ifNoneMatch === file.etag;
    const date = httpDate(now);
    let tail: Buffer;
    if (head.close) {
      tail = buildTail(file, rootVersion, date, false, notModified);
    } else {
      let t = tails.get(file.bytes);
      if (!t || t.date !== date || t.rootVersion !== rootVersion || t.etag !== file.etag || t.immutable !== file.immutable) {
        t = {
          date,
          etag: file.etag,
          immutable: file.immutable,
          rootVersion,
          ok: buildTail(file, rootVersion, date, true, false),
          notModified: buildTail(file, rootVersion, date, true, true),
        };
        tails.set(file.bytes, t);
      }
      tail = notModified ? t.notModified : t.ok;
    }
    const start = notModified ? START_304 : START_200;
    let out: Buffer;
    if (head.idStart !== -1) {
      const idLength = Math.min(head.idEnd - head.idStart, MAX_REQUEST_ID);
      out = Buffer.allocUnsafe(start.length + idLength + tail.length);
      start.copy(out, 0);
      buf.copy(out, start.length, head.idStart, head.idStart + idLength);
      tail.copy(out, start.length + idLength);
    } else {
      const id = fastRequestId();
      out = Buffer.allocUnsafe(start.length + id.length + tail.length);
      start.copy(out, 0);
      out.write(id, start.length, 'latin1');
      tail.copy(out, start.length + id.length);
    }
    if (notModified) notModifiedCount.inc();
    else okCount.inc();
    stats.answered++;
    return out;
  };

  class Connection {
    readonly socket: Socket;
    /** Unanswered bytes: a partial head, or requests waiting for the client to read. */
    pending: Buffer | undefined;
    answered = 0;
    /** Waiting for 'drain' before reading on. */
    waiting = false;
    ended = false;
    done = false;
    headersTimer: NodeJS.Timeout | undefined;
    readonly onData = (chunk: Buffer): void => this.safely(chunk);
    readonly onDrain = (): void => {
      this.waiting = false;
      this.safely(undefined);
      if (!this.done && !this.waiting) this.socket.resume();
    };
    readonly onEnd = (): void => {
      this.ended = true;
      if (!this.waiting) this.safely(undefined);
    };
    readonly onError = (): void => {
      // ECONNRESET and the like: the socket is destroyed; nothing to answer.
    };
    readonly onTimeout = (): void => {
      this.socket.destroy();
    };
    readonly onClose = (): void => this.finish();
    readonly onHeadersTimeout = (): void => {
      this.headersTimer = undefined;
      if (this.done) return;
      this.finish();
      this.socket.write(REQUEST_TIMEOUT);
      this.socket.destroySoon();
    };

    constructor(socket: Socket) {
      this.socket = socket;
      socket.on('data', this.onData);
      socket.on('end', this.onEnd);
      socket.on('error', this.onError);
      socket.on('close', this.onClose);
      socket.on('timeout', this.onTimeout);
      this.armHeadersTimer();
    }

    /** node:http's headersTimeout: a head must be complete this long after it started (here: after the connection or its first byte). */
    armHeadersTimer(): void {
      const ms = server.headersTimeout;
      if (ms > 0 && this.headersTimer === undefined) {
        this.headersTimer = setTimeout(this.onHeadersTimeout, ms);
        this.headersTimer.unref();
      }
    }

    clearHeadersTimer(): void {
      if (this.headersTimer !== undefined) {
        clearTimeout(this.headersTimer);
        this.headersTimer = undefined;
      }
    }

    /**
     * Leave fast mode (handed over, closing or closed): no more reading or timers of ours. A closing
     * socket keeps our idle timeout and error listener until it is gone.
     */
    finish(): void {
      if (this.done) return;
      this.done = true;
      live.delete(this);
      this.clearHeadersTimer();
      const s = this.socket;
      s.removeListener('data', this.onData);
      s.removeListener('end', this.onEnd);
      s.removeListener('close', this.onClose);
      s.removeListener('drain', this.onDrain);
    }

    /** Hand the connection to node:http from the first byte of `rest`. */
    delegate(rest: Buffer | undefined): void {
      this.finish();
      const s = this.socket;
      s.removeListener('timeout', this.onTimeout);
      s.removeListener('error', this.onError);
      if (this.answered > 0) s.setTimeout(0);
      stats.delegated++;
      // node's listener subscribes to 'data' first, so that bytes put back reach its parser in order;
      // it consumes the handle (parser.consume), after which new reads go to llhttp directly.
      for (const listener of nodeListeners) listener.call(server, s);
      if (this.ended) {
        // The client's end was read while answers waited for it to read (backpressure): a stream
        // takes nothing back after 'end', so node's parser gets the bytes, then the end, directly.
        if (rest !== undefined && rest.length > 0) s.emit('data', rest);
        s.emit('end');
        return;
      }
      if (rest !== undefined && rest.length > 0) s.unshift(rest);
      if (s.readableFlowing === false) s.resume(); // paused by us for backpressure
    }

    /** Close a connection in fast mode: at once when nothing is being written, else once it is. */
    close(all: boolean): void {
      const s = this.socket;
      this.finish();
      if (all || s.writableLength === 0) s.destroy();
      else {
        s.pause();
        s.destroySoon();
      }
    }

    safely(chunk: Buffer | undefined): void {
      try {
        this.feed(chunk);
      } catch {
        // A bug here must not take the process down (this runs in a socket event): drop the connection.
        this.finish();
        this.socket.destroy();
      }
    }

    /** Answer what `chunk` (after anything pending) completes, up to the first request the front does not answer. */
    feed(chunk: Buffer | undefined): void {
      if (this.done) return;
      let buf: Buffer;
      let scanFrom = 0; // where the first CRLFCRLF can start (a partial head had none)
      if (this.pending === undefined) {
        if (chunk === undefined) {
          if (this.ended) this.endAnswered();
          return;
        }
        buf = chunk;
      } else {
        if (chunk !== undefined && !this.waiting) scanFrom = Math.max(0, this.pending.length - 3);
        buf = chunk === undefined ? this.pending : Buffer.concat([this.pending, chunk]);
        this.pending = undefined;
      }
      if (this.waiting) {
        this.pending = buf;
        return;
      }
      const s = this.socket;
      const now = Date.now();
      let start = 0;
      let corked = false;
      while (start < buf.length) {
        const end = buf.indexOf(CRLFCRLF, start === 0 ? scanFrom : start);
        if (end === -1) {
          // Not a complete head yet: wait for the rest (under node's headers timeout) while it can still
          // be one the front answers; else node:http takes it now (431 for a long one, 400 for a bad one…).
          if (buf.length - start > MAX_HEAD || scanHead(buf, start, buf.length, false) === OUTSIDE) break;
          this.pending = start === 0 ? buf : Buffer.from(buf.subarray(start));
          this.armHeadersTimer();
          if (corked) s.uncork();
          if (this.ended) this.endPartial();
          return;
        }
        if (end + 4 - start > MAX_HEAD || scanHead(buf, start, end + 2, true) !== COMPLETE) break;
        const response = respond(buf, now);
        if (response === undefined) break;
        this.answered++;
        this.clearHeadersTimer();
        start = end + 4;
        if (head.close) {
          this.finish();
          s.write(response);
          if (corked) s.uncork();
          s.destroySoon(); // as node:http: what comes after a `Connection: close` request is not read
          return;
        }
        if (!corked && start < buf.length) {
          s.cork(); // pipelined: one write for the batch
          corked = true;
        }
        if (this.answered === 1) {
          // Between requests node:http allows keepAliveTimeout (+ its buffer) of silence.
          const idle = server.keepAliveTimeout;
          if (idle > 0) s.setTimeout(idle + (options.keepAliveTimeoutBuffer ?? 1000));
        }
        if (!s.write(response)) {
          // Backpressure: read on when the client has taken what was written.
          if (start < buf.length) this.pending = Buffer.from(buf.subarray(start));
          this.waiting = true;
          s.pause();
          s.once('drain', this.onDrain);
          if (corked) s.uncork();
          return;
        }
      }
      if (corked) s.uncork();
      if (start < buf.length) {
        this.delegate(start === 0 ? buf : buf.subarray(start));
        return;
      }
      if (this.ended) this.endAnswered();
    }

    /** The client ended its side after complete requests: end ours once the answers are out (as node:http). */
    endAnswered(): void {
      this.finish();
      this.socket.end();
    }

    /** The client ended its side in the middle of a head: node:http answers 400 and closes. */
    endPartial(): void {
      this.finish();
      this.socket.write(BAD_REQUEST);
      this.socket.destroySoon();
    }
  }

  // Node's settings the front cannot honour leave every connection to node:http.
  const frontApplies = (): boolean => auth.publicRead && !server.maxRequestsPerSocket && !server.timeout && !options.httpAllowHalfOpen;

  server.on('connection', (socket: Socket) => {
    if (socket.destroyed) return;
    if (!frontApplies()) {
      stats.delegated++;
      for (const listener of nodeListeners) listener.call(server, socket);
      return;
    }
    live.add(new Connection(socket));
  });

  const closeIdle = server.closeIdleConnections.bind(server);
  const closeAll = server.closeAllConnections.bind(server);
  server.closeIdleConnections = (): void => {
    closeIdle();
    for (const c of [...live]) c.close(false);
  };
  server.closeAllConnections = (): void => {
    closeAll();
    for (const c of [...live]) c.close(true);
  };

  return {
    get connections() {
      return live.size;
    },
    stats,
  };
}
