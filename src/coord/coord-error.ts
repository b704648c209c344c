/**
 * Typed refusals of the coordination layer. The constructor is the base
 * `TufociError`'s (code, message, { detail, cause }). Errors raised by a
 * coordinator name the backend and the operation in `detail`, and the
 * repository or grant id when there is one; a transport error (ioredis)
 * stays in `cause` as an object.
 */
import { TufociError } from '../errors.ts';

export type CoordBackend = 'in-process' | 'redis';

export type CoordErrorCode =
  | 'UNAVAILABLE' // the backend did not answer (connection down, command timeout) or answered garbage
  | 'LOCK_LOST' // the writer lock is no longer held under this lock's token
  | 'BUSY' // another holder kept the writer lock for the whole wait (HTTP 409 + Retry-After)
  | 'INVALID_ARGUMENT' // empty name, negative or non-integer time/TTL, non-object grant
  | 'CLOSED'; // the coordinator was closed

export interface CoordErrorDetail {
  backend?: CoordBackend;
  operation?: string;
  repository?: string;
  [key: string]: unknown;
}

export interface CoordErrorOptions {
  detail?: CoordErrorDetail;
  cause?: unknown;
}

export class CoordError extends TufociError<CoordErrorCode> {
  declare readonly detail: CoordErrorDetail;

  constructor(code: CoordErrorCode, message: string, options: CoordErrorOptions = {}) {
    super(code, message, options);
  }
}

export function isCoordError(value: unknown, code?: CoordErrorCode): value is CoordError {
  return value instanceof CoordError && (code === undefined || value.code === code);
}
