/**
 * The connection front's answers: the whole response to a metadata GET, status line to body, the
 * bytes node:http and the Koa route would send (headers from metadataHeaders, src/api/headers.ts).
 * For a keep-alive request the part after the X-Request-Id value is prebuilt once per file, root
 * version and second (the Date header), for 200 and 304, and reused; a request only adds its id.
 */
import type { Server } from 'node:http';
import { MAX_REQUEST_ID_LENGTH, REQUEST_ID_HEADER, metadataHeaders, type HeaderSink } from '../api/headers.ts';
import { METADATA_PATH } from '../api/routes.ts';
import { head } from './fast-front-head.ts';
import { ROUTE, cachedRootVersion, fastRequestId } from './fast-read.ts';
import type { Metrics } from './metrics.ts';
import type { RepositoryService } from './repository-service.ts';

const START_200 = Buffer.from(`HTTP/1.1 200 OK\r\n${REQUEST_ID_HEADER}: `, 'latin1');
const START_304 = Buffer.from(`HTTP/1.1 304 Not Modified\r\n${REQUEST_ID_HEADER}: `, 'latin1');

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

type CachedFile = NonNullable<ReturnType<RepositoryService['cachedFile']>>;

/** Header lines as text, in the order set. */
class HeaderLines implements HeaderSink {
  text = '';
  setHeader(name: string, value: string): void {
    this.text += `${name}: ${value}\r\n`;
  }
}

export interface FrontResponses {
  /** The response to the request scanned into `head` (its bytes in `buf`), or undefined when the front does not answer it. */
  respond(buf: Buffer, now: number): Buffer | undefined;
}

export function frontResponses(server: Server, deps: { service: RepositoryService; metrics: Metrics; timestampMaxAge?: number | undefined }): FrontResponses {
  const { service, metrics, timestampMaxAge } = deps;
  const okCount = metrics.requests.labels('GET', ROUTE, '200');
  const notModifiedCount = metrics.requests.labels('GET', ROUTE, '304');
  const tails = new WeakMap<Uint8Array, Tails>();

  const connectionHeaders = (keepAlive: boolean): string => {
    if (!keepAlive) return 'Connection: close\r\n';
    const timeout = server.keepAliveTimeout;
    return timeout ? `Connection: keep-alive\r\nKeep-Alive: timeout=${Math.floor(timeout / 1000)}\r\n` : 'Connection: keep-alive\r\n';
  };
  /** Everything after the X-Request-Id value: the end of its line, the route's headers, Date, the connection's, the body. */
  const buildTail = (file: CachedFile, rootVersion: number | undefined, date: string, keepAlive: boolean, notModified: boolean): Buffer => {
    const lines = new HeaderLines();
    metadataHeaders(lines, file, rootVersion, notModified, timestampMaxAge);
    const s = `\r\n${lines.text}Date: ${date}\r\n${connectionHeaders(keepAlive)}\r\n`;
    if (notModified) return Buffer.from(s, 'latin1');
    const headLength = Buffer.byteLength(s, 'latin1');
    const out = Buffer.allocUnsafe(headLength + file.bytes.byteLength);
    out.write(s, 0, 'latin1');
    out.set(file.bytes, headLength);
    return out;
  };

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
      const idLength = Math.min(head.idEnd - head.idStart, MAX_REQUEST_ID_LENGTH);
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
    return out;
  };
  return { respond };
}
