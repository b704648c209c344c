/**
 * Argument checks shared by every coordinator, so both implementations refuse
 * exactly the same inputs with `INVALID_ARGUMENT` before touching a backend.
 */
import { CoordError, type CoordBackend } from './coord-error.ts';
import type { JsonObject } from './coordinator.ts';

const MAX_NAME_LENGTH = 1024;

export class ArgumentChecker {
  readonly #backend: CoordBackend;

  constructor(backend: CoordBackend) {
    this.#backend = backend;
  }

  #refuse(operation: string, message: string, detail: Record<string, unknown>): never {
    throw new CoordError('INVALID_ARGUMENT', message, { detail: { backend: this.#backend, operation, ...detail } });
  }

  /** A repository name or grant id: a non-empty string of at most 1024 characters. */
  name(operation: string, field: string, value: unknown): string {
    if (typeof value !== 'string' || value.length === 0 || value.length > MAX_NAME_LENGTH) {
      this.#refuse(operation, `${field} must be a non-empty string of at most ${MAX_NAME_LENGTH} characters`, { field });
    }
    return value;
  }

  /** A duration in ms: a safe integer, at least `min`. */
  duration(operation: string, field: string, value: unknown, min: number): number {
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min) {
      this.#refuse(operation, `${field} must be an integer of at least ${min} ms`, { field, value: String(value) });
    }
    return value;
  }

  /** A point in time in epoch ms, or a timestamp version: a non-negative safe integer. */
  count(operation: string, field: string, value: unknown): number {
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
      this.#refuse(operation, `${field} must be a non-negative integer`, { field, value: String(value) });
    }
    return value;
  }

  /** A JSON-safe plain object, serialised (so both backends store the same bytes). */
  grant(operation: string, id: string, value: unknown): string {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      this.#refuse(operation, 'a grant must be a JSON object', { id });
    }
    let text: string;
    try {
      text = JSON.stringify(value);
    } catch (cause) {
      throw new CoordError('INVALID_ARGUMENT', 'a grant must be JSON-serialisable', { detail: { backend: this.#backend, operation, id }, cause });
    }
    return text;
  }
}

/** Parse a stored grant; anything but a JSON object is treated as absent by the caller. */
export function parseGrant(text: string): JsonObject | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
  // JSON.parse yields only JSON values, so an object from it is a JsonObject.
  return value as JsonObject;
}
