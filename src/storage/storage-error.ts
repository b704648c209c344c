/**
 * Typed refusals of the storage layer. Every backend raises only
 * `StorageError`; `detail` always names the backend, the repository and the
 * reference (tag, digest, or file name) involved, so a caller can say exactly
 * what failed where. The transport error (fetch failure, errno, registry error
 * body) stays in `cause` as an object.
 */
import { TufociError, type TufociErrorOptions } from '../errors.ts';

export type StorageErrorCode =
  | 'NOT_FOUND' // no such blob, manifest, tag or repository
  | 'CONFLICT' // a versioned (immutable) file already holds different bytes
  | 'TOO_LARGE' // a body exceeds the caller's bound
  | 'UNAVAILABLE' // network failure, timeout, 5xx/429 after retries, I/O error
  | 'DIGEST_MISMATCH' // content does not hash to the digest it was fetched or announced by
  | 'BAD_MEDIA_TYPE' // a content type or descriptor media type that is not the expected one
  | 'UNAUTHORIZED' // 401/403 after the auth flow, or a failed token exchange
  | 'PROTOCOL' // the peer broke the distribution API: garbage JSON, bad headers, redirect loop
  | 'INVALID_NAME' // repository, tag, digest or metadata file name outside its grammar
  | 'INVALID_MANIFEST' // a manifest put that is not JSON of its media type, or references missing content
  | 'UNSUPPORTED'; // the backend cannot do this operation (e.g. delete a tag on distribution 2.x)

export interface StorageErrorDetail {
  backend: string;
  repository: string;
  reference: string;
  [key: string]: unknown;
}

export class StorageError extends TufociError<StorageErrorCode> {
  declare readonly detail: StorageErrorDetail;

  constructor(
    code: StorageErrorCode,
    message: string,
    detail: StorageErrorDetail,
    options: Omit<TufociErrorOptions, 'detail'> = {},
  ) {
    super(code, message, { ...options, detail });
  }
}

export function isStorageError(value: unknown, code?: StorageErrorCode): value is StorageError {
  return value instanceof StorageError && (code === undefined || value.code === code);
}
