/**
 * Canonical JSON for signatures. TUF signs the OLPC canonical form of `signed`
 * (what securesystemslib, go-tuf and tuf-js produce and check); JCS
 * (`canonicalize`, used for key ids) differs for control characters, so
 * metadata signatures use @tufjs/canonical-json, the same encoder tuf-js's
 * client verifies with.
 */
import { canonicalize } from '@tufjs/canonical-json';

export function canonicalSignedBytes(signed: unknown): Buffer {
  return Buffer.from(canonicalize(signed as Parameters<typeof canonicalize>[0]), 'utf8');
}
