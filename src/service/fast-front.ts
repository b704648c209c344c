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
 * Three modules: fast-front-head.ts reads a head's bytes against the subset,
 * fast-front-responses.ts builds the answers (prebuilt per file and second),
 * and this one owns the connections: reading, pipelining, backpressure,
 * node's timeouts, and the hand-over.
 *
 * No library does this: node's llhttp cannot be driven per connection from
 * JavaScript (its parser binding is internal to node:http), and node:http's
 * per-request machinery (IncomingMessage, ServerResponse, header objects) is
 * most of the cost of a small read (bench/service-read.bench.ts).
 */
import type { Server } from 'node:http';
import type { Socket } from 'node:net';
import type { TokenAuth } from './auth.ts';
import { COMPLETE, CRLFCRLF, MAX_HEAD, OUTSIDE, head, scanHead } from './fast-front-head.ts';
import { frontResponses } from './fast-front-responses.ts';
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
  /**
   * Calls `listener` with the socket each time a connection in fast mode stops reading because its
   * client does not take its answers (backpressure). For tests and diagnostics; returns its remover.
   */
  onPause(listener: (socket: Socket) => void): () => void;
}

// Responses node:http writes itself when it gives up on a connection (lib/_http_server.js).
const BAD_REQUEST = Buffer.from('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n', 'latin1');
const REQUEST_TIMEOUT = Buffer.from('HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n\r\n', 'latin1');

/**
 * Put the front before `server`'s own connection handling. `server` keeps
 * owning the listening socket, node's connection tracking, timeouts and
 * close semantics; its `closeIdleConnections`/`closeAllConnections` (and so
 * `close()`) also end the connections still in fast mode.
 */
export function attachFastFront(server: Server, deps: FastFrontDeps): FastFront {
  const { auth } = deps;
  const responses = frontResponses(server, deps);
  const nodeListeners = server.listeners('connection') as Array<(socket: Socket) => void>;
  if (nodeListeners.length === 0) throw new Error('attachFastFront: the server has no connection listener to hand connections to');
  server.removeAllListeners('connection');
  const live = new Set<Connection>();
  const stats = { answered: 0, delegated: 0 };
  const pauseListeners = new Set<(socket: Socket) => void>();
  const options = server as Server & { httpAllowHalfOpen?: boolean; keepAliveTimeoutBuffer?: number };

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
        const response = responses.respond(buf, now);
        if (response === undefined) break;
        stats.answered++;
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
          for (const listener of pauseListeners) listener(s);
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
    onPause(listener) {
      pauseListeners.add(listener);
      return () => pauseListeners.delete(listener);
    },
  };
}
