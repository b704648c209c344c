/**
 * The generic (not TUF-specific) reading of a manifest a store is asked to
 * keep: is it JSON of the media type it claims, and which content does it
 * reference. Backends without a server to do it (memory, OCI layout) use this
 * to refuse what a registry would refuse, so all backends keep one contract.
 */
import { sha256Digest } from './digest.ts';
import { MAX_MANIFEST_BYTES } from './limits.ts';
import { isDigest } from './names.ts';
import type { StorageErrorCode } from './storage-error.ts';
import { MANIFEST_MEDIA_TYPES, OCI_INDEX_MEDIA_TYPE, DOCKER_MANIFEST_LIST_MEDIA_TYPE } from './store.ts';

export interface ManifestRefs {
  /** Blobs (config, layers) the manifest references. */
  blobs: string[];
  /** Child manifests an index references. */
  manifests: string[];
}

export type ManifestCheck = { ok: true; refs: ManifestRefs } | { ok: false; reason: string; badMediaType?: boolean };

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function descriptorDigests(value: unknown, field: string): string[] | string {
  if (!Array.isArray(value)) return `"${field}" is not an array`;
  const out: string[] = [];
  for (const entry of value) {
    if (!isRecord(entry) || typeof entry['digest'] !== 'string' || !isDigest(entry['digest'])) {
      return `"${field}" holds a descriptor without a sha256 digest`;
    }
    if (typeof entry['mediaType'] !== 'string' || !Number.isSafeInteger(entry['size'])) {
      return `"${field}" holds a descriptor without mediaType or size`;
    }
    out.push(entry['digest']);
  }
  return out;
}

export function checkManifest(bytes: Uint8Array, mediaType: string): ManifestCheck {
  if (!MANIFEST_MEDIA_TYPES.includes(mediaType)) {
    return { ok: false, reason: `media type "${mediaType.slice(0, 100)}" is not a manifest media type`, badMediaType: true };
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch {
    return { ok: false, reason: 'manifest is not UTF-8 JSON' };
  }
  if (!isRecord(parsed)) return { ok: false, reason: 'manifest is not a JSON object' };
  if (parsed['schemaVersion'] !== 2) return { ok: false, reason: 'manifest schemaVersion is not 2' };
  if (parsed['mediaType'] !== undefined && parsed['mediaType'] !== mediaType) {
    return { ok: false, reason: `manifest mediaType field differs from "${mediaType}"`, badMediaType: true };
  }
  if (mediaType === OCI_INDEX_MEDIA_TYPE || mediaType === DOCKER_MANIFEST_LIST_MEDIA_TYPE) {
    const manifests = descriptorDigests(parsed['manifests'], 'manifests');
    if (typeof manifests === 'string') return { ok: false, reason: manifests };
    return { ok: true, refs: { blobs: [], manifests } };
  }
  const config = descriptorDigests([parsed['config']], 'config');
  if (typeof config === 'string') return { ok: false, reason: config };
  const layers = descriptorDigests(parsed['layers'] ?? [], 'layers');
  if (typeof layers === 'string') return { ok: false, reason: layers };
  return { ok: true, refs: { blobs: [...config, ...layers], manifests: [] } };
}

/**
 * What every store checks before it stores a manifest (the caller has checked the reference's
 * syntax): the digest a digest reference names, the size bound, the media type and JSON shape.
 * `fail` builds the store's own error.
 */
export function checkManifestPut(
  reference: string,
  bytes: Uint8Array,
  mediaType: string,
  fail: (code: StorageErrorCode, message: string) => Error,
): { digest: string; refs: ManifestRefs } {
  const digest = sha256Digest(bytes);
  if (isDigest(reference) && reference !== digest) throw fail('DIGEST_MISMATCH', `manifest put as ${reference} hashes to ${digest}`);
  if (bytes.byteLength > MAX_MANIFEST_BYTES) throw fail('TOO_LARGE', `manifest ${reference} is ${bytes.byteLength} bytes, above ${MAX_MANIFEST_BYTES}`);
  const check = checkManifest(bytes, mediaType);
  if (!check.ok) throw fail(check.badMediaType ? 'BAD_MEDIA_TYPE' : 'INVALID_MANIFEST', `manifest ${reference}: ${check.reason}`);
  return { digest, refs: check.refs };
}
