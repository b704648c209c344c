/**
 * The read fast path: `GET /v1/repos/<repo>/metadata/<file>` for a file that
 * is already in the head cache is answered here, before Koa, with the same
 * bytes and headers the Koa route sends (metadataHeaders in src/api/headers.ts;
 * 304 on If-None-Match). Everything else — a cache miss, private reads, other routes,
 * errors — goes to the Koa app unchanged. Koa's middleware stack and router
 * were a quarter of the CPU of a timestamp read (bench/service-read.bench.ts).
 * In `startServer` connections first meet the connection-level front
 * (fast-front.ts), which answers the same reads without node:http; this
 * listener serves them on connections the front has handed to node:http.
 */
import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import type { TokenAuth } from './auth.ts';
import type { Metrics } from './metrics.ts';
import type { RepositoryService } from './repository-service.ts';
import { MAX_REQUEST_ID_LENGTH, REQUEST_ID_HEADER, metadataHeaders } from '../api/headers.ts';
import { METADATA_PATH, ROUTES } from '../api/routes.ts';

/**
 * The root version of `repository`'s cached head, from the cache alone (no I/O, synchronous, so it
 * belongs to the same head as a file just read from it); undefined when the head is not cached.
 * (A namespace member's is its namespace's root, which it does not serve itself: the hint tells
 * its clients which root to expect at the anchor.)
 */
export function cachedRootVersion(service: RepositoryService, repository: string): number | undefined {
  return service.cachedRootVersion(repository);
}

/** The metrics label of the metadata route, as the Koa router reports it. */
export const ROUTE = ROUTES.metadata;

const requestIdPrefix = `${process.pid.toString(36)}-`;
let requestIds = 0;

/** A generated X-Request-Id for a request answered by a fast path (one sequence per process). */
export function fastRequestId(): string {
  return requestIdPrefix + (++requestIds).toString(36);
}

export function withFastReads(
  deps: { service: RepositoryService; auth: TokenAuth; metrics: Metrics; timestampMaxAge?: number },
  fallback: RequestListener,
): RequestListener {
  const { service, auth, metrics, timestampMaxAge } = deps;
  const ok = metrics.requests.labels('GET', ROUTE, '200');
  const notModified = metrics.requests.labels('GET', ROUTE, '304');
  return (req: IncomingMessage, res: ServerResponse) => {
    const url = req.url;
    if (req.method === 'GET' && auth.publicRead && url !== undefined && url.startsWith('/v1/repos/')) {
      const m = METADATA_PATH.exec(url);
      if (m) {
        let repository: string | undefined;
        try {
          repository = decodeURIComponent(m[1] as string);
        } catch {
          repository = undefined;
        }
        const file = repository === undefined ? undefined : service.cachedFile(repository, m[2] as string);
        if (file) {
          const requestId = req.headers['x-request-id'];
          res.setHeader(REQUEST_ID_HEADER, typeof requestId === 'string' ? requestId.slice(0, MAX_REQUEST_ID_LENGTH) : fastRequestId());
          const rootVersion = file.immutable ? undefined : cachedRootVersion(service, repository as string);
          const isNotModified = req.headers['if-none-match'] === file.etag;
          metadataHeaders(res, file, rootVersion, isNotModified, timestampMaxAge);
          if (isNotModified) {
            res.statusCode = 304;
            res.end();
            notModified.inc();
            return;
          }
          res.statusCode = 200;
          res.end(file.bytes);
          ok.inc();
          return;
        }
      }
    }
    fallback(req, res);
  };
}
