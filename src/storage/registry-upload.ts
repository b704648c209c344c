/**
 * Blob uploads of the registry backend, on registry-http.ts:
 * - a blob of at least `chunkedUploadThreshold` bytes goes up in chunks
 *   (POST, then a PATCH per `chunkSize` bytes with `Content-Range`, checking
 *   the registry's `Range` after each, then PUT `?digest=`);
 * - a smaller one is offered as one `POST ?digest=` (OCI single-request
 *   upload); a registry that answers 202 instead (as distribution 2.8 does)
 *   gets the POST-PUT pair, and this uploader stops offering the single
 *   request; a registry that refuses a body on POST (400, 405, 415) too;
 * - upload sessions are never replayed (none of these requests is idempotent),
 *   and a registry that announces another digest than the bytes' is refused
 *   (`DIGEST_MISMATCH`).
 * It does not ask whether the blob is there first: that is the caller's call.
 */
import { discardBody } from './http-body.ts';
import type { HttpResponse } from './http-client.ts';
import { clip } from './names.ts';
import type { RegistryHttp, RequestSpec } from './registry-http.ts';

export interface RegistryUploadOptions {
  /** Blobs of at least this many bytes are uploaded in chunks (default 8 MiB). */
  chunkedUploadThreshold?: number;
  /** Bytes per PATCH of a chunked upload (default 4 MiB). */
  chunkSize?: number;
}

export class RegistryUploader {
  readonly #http: RegistryHttp;
  readonly chunkedThreshold: number;
  readonly #chunkSize: number;
  /** Whether the registry completes `POST /blobs/uploads/?digest=` with a body in one request (undefined: not asked yet). */
  #singlePostUploads: boolean | undefined;

  constructor(http: RegistryHttp, options: RegistryUploadOptions) {
    this.#http = http;
    this.chunkedThreshold = options.chunkedUploadThreshold ?? 8 * 1024 * 1024;
    this.#chunkSize = Math.max(1, options.chunkSize ?? 4 * 1024 * 1024);
  }

  /** Upload a blob (no existence check): chunked above the threshold, else one request where the registry allows it, else POST then PUT. */
  async upload(repository: string, digest: string, bytes: Uint8Array): Promise<void> {
    if (bytes.byteLength >= this.chunkedThreshold) {
      let location = await this.#startUpload(repository, digest);
      for (let start = 0; start < bytes.byteLength; start += this.#chunkSize) {
        const chunk = bytes.subarray(start, Math.min(start + this.#chunkSize, bytes.byteLength));
        location = await this.#patchChunk(repository, digest, location, chunk, start);
      }
      await this.#finishUpload(repository, digest, location, undefined);
    } else if (this.#singlePostUploads !== false && bytes.byteLength >= 2) {
      const session = await this.#singlePost(repository, digest, bytes);
      if (session !== undefined) await this.#finishUpload(repository, digest, session.location, session.received ? undefined : bytes);
    } else {
      await this.#finishUpload(repository, digest, await this.#startUpload(repository, digest), bytes);
    }
  }

  /**
   * `POST /blobs/uploads/?digest=` with the whole blob (OCI single-request
   * upload). Answers undefined when the registry stored it, or the upload
   * session it opened instead (202), saying whether it kept the body (its
   * Range covers all of it; a blob of at least 2 bytes keeps "0-0" unambiguous).
   */
  async #singlePost(repository: string, digest: string, bytes: Uint8Array): Promise<{ location: string; received: boolean } | undefined> {
    const spec: RequestSpec = {
      method: 'POST',
      url: this.#http.url(`/v2/${repository}/blobs/uploads/?digest=${encodeURIComponent(digest)}`),
      repository,
      reference: digest,
      idempotent: false,
      access: 'push',
      body: bytes,
      headers: { 'Content-Type': 'application/octet-stream' },
    };
    const response = await this.#http.request(spec);
    if (response.status === 201) {
      await discardBody(response);
      this.#singlePostUploads = true;
      const announced = response.headers.get('docker-content-digest');
      if (announced !== null && announced !== digest) {
        throw this.#http.fail('DIGEST_MISMATCH', `upload of ${digest} to ${repository}: registry stored ${clip(announced, 80)}`, repository, digest, { announced: clip(announced, 80) });
      }
      return undefined;
    }
    if (response.status === 202) {
      await discardBody(response);
      this.#singlePostUploads = false;
      const range = response.headers.get('range');
      const received = range !== null && new RegExp(`^(?:bytes=)?0-${bytes.byteLength - 1}$`).test(range);
      return { location: this.#uploadLocation(response, spec.url, spec), received };
    }
    if (this.#singlePostUploads === undefined && [400, 405, 415].includes(response.status)) {
      // A registry that refuses a body on POST: fall back to POST then PUT from now on.
      await discardBody(response);
      this.#singlePostUploads = false;
      return { location: await this.#startUpload(repository, digest), received: false };
    }
    throw await this.#http.unexpected(response, spec, 'uploading blob');
  }

  #uploadLocation(response: HttpResponse, requestUrl: string, spec: RequestSpec): string {
    const location = response.headers.get('location');
    if (location === null) {
      throw this.#http.fail('PROTOCOL', `upload of ${spec.reference} to ${spec.repository}: HTTP ${response.status} without Location`, spec.repository, spec.reference);
    }
    return new URL(location, requestUrl).href;
  }

  async #startUpload(repository: string, digest: string): Promise<string> {
    const spec: RequestSpec = { method: 'POST', url: this.#http.url(`/v2/${repository}/blobs/uploads/`), repository, reference: digest, idempotent: false, access: 'push' };
    const response = await this.#http.request(spec);
    if (response.status !== 202) throw await this.#http.unexpected(response, spec, 'starting upload of blob');
    await discardBody(response);
    return this.#uploadLocation(response, spec.url, spec);
  }

  async #patchChunk(repository: string, digest: string, location: string, chunk: Uint8Array, start: number): Promise<string> {
    const end = start + chunk.byteLength - 1;
    const spec: RequestSpec = {
      method: 'PATCH',
      url: location,
      repository,
      reference: digest,
      idempotent: false,
      access: 'push',
      body: chunk,
      headers: { 'Content-Type': 'application/octet-stream', 'Content-Range': `${start}-${end}` },
    };
    const response = await this.#http.request(spec);
    if (response.status !== 202) throw await this.#http.unexpected(response, spec, 'uploading a chunk of blob');
    await discardBody(response);
    const range = response.headers.get('range');
    const m = range === null ? null : /^(?:bytes=)?0-([0-9]+)$/.exec(range);
    if (range !== null && (!m || Number(m[1]) !== end)) {
      throw this.#http.fail('PROTOCOL', `chunked upload of ${digest} to ${repository}: registry has range ${clip(range, 60)}, expected 0-${end}`, repository, digest);
    }
    return this.#uploadLocation(response, location, spec);
  }

  async #finishUpload(repository: string, digest: string, location: string, body: Uint8Array | undefined): Promise<void> {
    const url = `${location}${location.includes('?') ? '&' : '?'}digest=${encodeURIComponent(digest)}`;
    const spec: RequestSpec = {
      method: 'PUT',
      url,
      repository,
      reference: digest,
      idempotent: false,
      access: 'push',
      ...(body !== undefined ? { body } : {}),
      headers: { 'Content-Type': 'application/octet-stream' },
    };
    const response = await this.#http.request(spec);
    if (response.status !== 201) throw await this.#http.unexpected(response, spec, 'completing upload of blob');
    await discardBody(response);
    const announced = response.headers.get('docker-content-digest');
    if (announced !== null && announced !== digest) {
      throw this.#http.fail('DIGEST_MISMATCH', `upload of ${digest} to ${repository}: registry stored ${clip(announced, 80)}`, repository, digest, { announced: clip(announced, 80) });
    }
  }
}
