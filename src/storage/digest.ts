/** Content addressing: the one hash the storage layer computes and compares. */
import { createHash } from 'node:crypto';

export function sha256Digest(bytes: Uint8Array): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

/** The empty JSON object `{}` used as the config of every artifact (OCI image-spec 1.1). */
export const EMPTY_JSON_BYTES: Uint8Array = new TextEncoder().encode('{}');
export const EMPTY_JSON_DIGEST = 'sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a';
