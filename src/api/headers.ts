/**
 * HTTP names the service and its clients share, and the headers of a metadata file's answer.
 * This module imports nothing, so the client can name them without loading any of the service.
 */

/**
 * Response header of `timestamp.json` (200 and 304): the version of the root
 * in the head that timestamp belongs to. A hint for clients (src/client/
 * service-fetcher.ts): it lets them skip the `<N+1>.root.json` probe. Clients
 * never trust it for anything else (docs/ARCHITECTURE.md, "Client fetch
 * efficiency").
 */
export const ROOT_VERSION_HEADER = 'Tufoci-Root-Version';

/** Echoed on every answer (cut to MAX_REQUEST_ID_LENGTH), or generated when the request has none. */
export const REQUEST_ID_HEADER = 'X-Request-Id';
export const MAX_REQUEST_ID_LENGTH = 64;

/** Cache-Control of a versioned (immutable) metadata file. */
export const IMMUTABLE_CACHE_CONTROL = 'public, max-age=31536000, immutable';
/** max-age of `timestamp.json`, seconds, unless the service is told otherwise. */
export const DEFAULT_TIMESTAMP_MAX_AGE = 10;
/** Content-Type of a metadata file. */
export const METADATA_CONTENT_TYPE = 'application/json; charset=utf-8';

/** What metadataHeaders needs to know of a file (the head cache's entries have these fields). */
export interface MetadataFileFacts {
  bytes: { readonly byteLength: number };
  /** The quoted sha256 of the bytes. */
  etag: string;
  /** A versioned file (`<N>.<role>.json`), never replaced; `timestamp.json` is not. */
  immutable: boolean;
}

/** Where metadataHeaders writes: node's ServerResponse as it is, or an adapter. */
export interface HeaderSink {
  setHeader(name: string, value: string): unknown;
}

let cachedMaxAge = DEFAULT_TIMESTAMP_MAX_AGE;
let cachedMutable = `public, max-age=${DEFAULT_TIMESTAMP_MAX_AGE}`;

/**
 * The headers of the answer to `GET /v1/repos/<repo>/metadata/<file>`, in the order they are
 * sent, for every path that answers it (the Koa route, node:http's fast path and the connection
 * front, which prebuilds its responses with this): ETag; Cache-Control (a year and immutable for a
 * versioned file, `timestampMaxAge` seconds for `timestamp.json`); for `timestamp.json`,
 * ROOT_VERSION_HEADER when the root version of its head is known; on a 200 (not on a 304),
 * Content-Type and Content-Length. X-Request-Id, Date and the connection headers belong to the
 * transport and are not set here.
 */
export function metadataHeaders(
  out: HeaderSink,
  file: MetadataFileFacts,
  rootVersion: number | undefined,
  notModified: boolean,
  timestampMaxAge: number = DEFAULT_TIMESTAMP_MAX_AGE,
): void {
  out.setHeader('ETag', file.etag);
  if (file.immutable) {
    out.setHeader('Cache-Control', IMMUTABLE_CACHE_CONTROL);
  } else {
    if (timestampMaxAge !== cachedMaxAge) {
      cachedMaxAge = timestampMaxAge;
      cachedMutable = `public, max-age=${timestampMaxAge}`;
    }
    out.setHeader('Cache-Control', cachedMutable);
    if (rootVersion !== undefined) out.setHeader(ROOT_VERSION_HEADER, String(rootVersion));
  }
  if (notModified) return;
  out.setHeader('Content-Type', METADATA_CONTENT_TYPE);
  out.setHeader('Content-Length', String(file.bytes.byteLength));
}
