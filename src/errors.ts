/**
 * The one error shape of tufoci.
 *
 * Every refusal the project raises is a `TufociError` (or a subclass) with a
 * string `code` from a closed union, a human `message`, a JSON-safe `detail`
 * object naming what was wrong (role, version, key id, repository, reference),
 * and the original `cause` kept as an object, never stringified into the message.
 * Mapping to HTTP statuses or CLI exit codes happens in one table at the edge
 * (service / cli), not here.
 */
export type Detail = Record<string, unknown>;

export interface TufociErrorOptions {
  detail?: Detail;
  cause?: unknown;
}

export class TufociError<C extends string = string> extends Error {
  readonly code: C;
  readonly detail: Detail;

  constructor(code: C, message: string, options: TufociErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.detail = options.detail ?? {};
    this.name = new.target.name;
  }

  toJSON(): { code: C; message: string; detail: Detail } {
    return { code: this.code, message: this.message, detail: this.detail };
  }
}

/** Narrow an unknown thrown value to a TufociError of a given class. */
export function isTufociError(value: unknown): value is TufociError {
  return value instanceof TufociError;
}
