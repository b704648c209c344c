/** Size bounds shared by the backends. Every read is given one. */

/** distribution refuses manifests above 4 MiB; so do we, on read and write. */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;

/** A caller bug (not a storage failure) if a bound is not a non-negative safe integer. */
export function assertMaxBytes(maxBytes: number): void {
  if (!Number.isSafeInteger(maxBytes) || maxBytes < 0) {
    throw new RangeError(`maxBytes must be a non-negative safe integer, got ${String(maxBytes)}`);
  }
}
