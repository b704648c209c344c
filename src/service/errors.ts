/**
 * Domain errors → HTTP, in one table.
 *
 * Every error the service can answer with is a TufociError with a code; this
 * table gives its status. Handlers never pick statuses; the error middleware
 * looks the code up here and answers `{"error": {"code", "message", "detail"}}`.
 * Unknown errors are 500 with a generic message (the details go to the log only).
 */
import { TufociError } from '../errors.ts';

export type ServiceErrorCode =
  | 'UNAUTHENTICATED'
  | 'FORBIDDEN'
  | 'BAD_REQUEST'
  | 'BODY_TOO_LARGE'
  | 'BODY_TIMEOUT'
  | 'UNSUPPORTED_MEDIA_TYPE'
  | 'NOT_FOUND'
  | 'METHOD_NOT_ALLOWED'
  | 'REPO_NOT_FOUND'
  | 'REPO_EXISTS'
  | 'VERSION_TAKEN'
  | 'NAME_MISMATCH'
  | 'SHUTTING_DOWN'
  | 'TOO_MANY_KEY_SETS'
  | 'GRANT_INVALID'
  | 'GRANT_EXPIRED'
  | 'GRANT_USED'
  | 'GRANT_SCOPE'
  | 'NOT_SERVICE_HELD'
  | 'TAG_SHADOWED'
  | 'NAMESPACE_ROOT'
  | 'NO_NAMESPACE'
  | 'IN_NAMESPACE';

export class ServiceError extends TufociError<ServiceErrorCode> {}

type Table = Readonly<Record<string, number>>;

/** One table per layer (by error class), code → HTTP status. */
export const HTTP_STATUS: Readonly<Record<string, Table>> = {
  ServiceError: {
    UNAUTHENTICATED: 401,
    FORBIDDEN: 403,
    BAD_REQUEST: 400,
    BODY_TOO_LARGE: 413,
    BODY_TIMEOUT: 408,
    UNSUPPORTED_MEDIA_TYPE: 415,
    NOT_FOUND: 404,
    METHOD_NOT_ALLOWED: 405,
    REPO_NOT_FOUND: 404,
    REPO_EXISTS: 409,
    VERSION_TAKEN: 409,
    NAME_MISMATCH: 400,
    SHUTTING_DOWN: 503,
    TOO_MANY_KEY_SETS: 409,
    GRANT_INVALID: 401,
    GRANT_EXPIRED: 401,
    GRANT_USED: 409,
    GRANT_SCOPE: 403,
    NOT_SERVICE_HELD: 409,
    TAG_SHADOWED: 409,
    NAMESPACE_ROOT: 409,
    NO_NAMESPACE: 404,
    IN_NAMESPACE: 409,
  },
  EngineError: {
    TOO_LARGE: 413,
    MALFORMED: 400,
    DUPLICATE_KEY: 400,
    NOT_INTEGER: 400,
    LONE_SURROGATE: 400,
    TOO_DEEP: 400,
    TOO_MANY_MEMBERS: 400,
    BAD_DATE: 400,
    NOT_CANONICAL: 400,
    WRONG_TYPE: 400,
    UNSUPPORTED_SPEC_VERSION: 400,
    THRESHOLD_NOT_MET: 403,
    VERSION_ROLLBACK: 409,
    VERSION_SKIP: 409,
    EXPIRED: 422,
    EXPIRY_TOO_FAR: 422,
    DELEGATOR_EXPIRED: 409,
    PATH_NOT_DELEGATED: 403,
    BAD_TARGET: 422,
    UNSUPPORTED_KEY: 422,
    BAD_KEY: 422,
    UNKNOWN_ROLE: 404,
    BAD_ROLE_NAME: 400,
    BAD_DELEGATION: 422,
    POLICY_VIOLATION: 422,
    ONLINE_KEYS_MISSING: 422,
    ONLINE_KEY_REVOKED: 422,
    SCOPE_MISSING: 422,
    SCOPE_MISMATCH: 422,
    SIGNER_MISSING: 500,
    INCONSISTENT: 500,
    NO_SNAPSHOT: 500,
  },
  StorageError: {
    NOT_FOUND: 404,
    INVALID_NAME: 400,
    CONFLICT: 409,
    TOO_LARGE: 502,
    UNAVAILABLE: 503,
    DIGEST_MISMATCH: 502,
    BAD_MEDIA_TYPE: 502,
    UNAUTHORIZED: 502,
    PROTOCOL: 502,
    INVALID_MANIFEST: 502,
    UNSUPPORTED: 501,
  },
  CoordError: {
    BUSY: 409,
    UNAVAILABLE: 503,
    LOCK_LOST: 503,
  },
  StrictJsonError: {
    BAD_JSON: 400,
    DUPLICATE_KEY: 400,
    NOT_INTEGER: 400,
    LONE_SURROGATE: 400,
    TOO_DEEP: 400,
    TOO_MANY_MEMBERS: 400,
  },
  KeyError: {
    BAD_KEY: 422,
    UNSUPPORTED_KEY: 422,
    BAD_KEYRING: 400,
    TOO_MANY_KEY_SETS: 409,
    KEY_SET_NOT_FOUND: 404,
    BUSY: 409,
  },
};

export function httpStatusOf(error: unknown): number {
  if (error instanceof TufociError) return HTTP_STATUS[error.name]?.[error.code] ?? 500;
  return 500;
}
