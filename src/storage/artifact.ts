/**
 * One TUF metadata file ↔ one OCI artifact (docs/FORMAT.md is the normative
 * description; keep the two in step).
 *
 * The manifest is an OCI image manifest with `artifactType`, the empty config
 * and exactly one layer holding the exact signed bytes. A file of at most
 * EMBED_MAX_BYTES is also carried in the layer descriptor itself (OCI 1.1
 * `data`, base64), so a reader needs one request for it, not two; the blob is
 * stored too, for readers and copy tools that ignore `data`. The manifest is a
 * pure function of (file name, bytes) — and, for timestamp.json only, of the
 * root version current when it was written (`io.tufoci.root-version`, a hint
 * that saves a cold client its root probe; never trusted for anything else):
 * every writer, on every backend, produces the same manifest bytes and so the
 * same manifest digest. The file name is part of the manifest, so no two tags
 * ever share a manifest, and deleting a manifest by digest removes exactly one
 * file.
 *
 * Reading is strict: the artifact type, the layer media type and the file
 * name annotation must all match what was asked for, and embedded `data` must
 * be canonical base64 of exactly the bytes the descriptor's digest and size
 * name (else the artifact is refused: a reader of `data` and a reader of the
 * blob must never see different bytes). The annotations for role, version and
 * root version are informational only; TUF verifies the bytes.
 */
import { EMPTY_JSON_DIGEST, EMPTY_JSON_BYTES, sha256Digest } from './digest.ts';
import type { MetadataFileName } from './metadata-name.ts';
import { clip, isDigest } from './names.ts';
import { OCI_MANIFEST_MEDIA_TYPE } from './store.ts';

export const METADATA_ARTIFACT_TYPE = 'application/vnd.tufoci.metadata.v1+json';
/** Docker's TUF-in-OCI layer media type (go-tuf-mirror), reused so their tooling recognises the layer. */
export const TUF_METADATA_LAYER_MEDIA_TYPE = 'application/vnd.tuf.metadata+json';
export const OCI_EMPTY_MEDIA_TYPE = 'application/vnd.oci.empty.v1+json';
/** Docker's TUF-in-OCI file name annotation. */
export const ANNOTATION_FILENAME = 'tuf.io/filename';
export const ANNOTATION_ROLE = 'io.tufoci.role';
export const ANNOTATION_VERSION = 'io.tufoci.version';
/** Lets `oras pull` write the layer out under the TUF file name. */
export const ANNOTATION_TITLE = 'org.opencontainers.image.title';
/** On timestamp.json: the root version current when it was written (a hint for clients' root walks). */
export const ANNOTATION_ROOT_VERSION = 'io.tufoci.root-version';
/** Files up to this size are embedded in their layer descriptor (`data`): the manifest stays under the 64 KiB readers allow (base64: 4/3). */
export const EMBED_MAX_BYTES = 44 * 1024;

export { EMPTY_JSON_BYTES, EMPTY_JSON_DIGEST };

export interface MetadataArtifact {
  manifest: Uint8Array;
  manifestDigest: string;
  layerDigest: string;
  layerSize: number;
}

export interface ParsedMetadataArtifact {
  layerDigest: string;
  layerSize: number;
  annotations: Record<string, string>;
  /** The layer's bytes when the descriptor carries them (`data`), checked against its digest and size. */
  data?: Uint8Array;
}

/** Canonical base64 of exactly `size` bytes with this sha256 digest, or a reason it is not. */
export function embeddedData(data: unknown, digest: string, size: number): Uint8Array | string {
  if (typeof data !== 'string') return 'layer data is not a string';
  if (data.length !== 4 * Math.ceil(size / 3)) return 'layer data does not have the length of the layer size in base64';
  const bytes = Buffer.from(data, 'base64');
  if (bytes.toString('base64') !== data) return 'layer data is not canonical base64';
  if (bytes.byteLength !== size || sha256Digest(bytes) !== digest) return 'layer data does not match the layer digest';
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

export type ArtifactProblem = { kind: 'bad-media-type' | 'malformed' | 'wrong-file'; reason: string };

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** `signed.version` of JSON metadata bytes, when it is there and sane. */
function embeddedVersion(bytes: Uint8Array): number | undefined {
  try {
    const parsed: unknown = JSON.parse(new TextDecoder().decode(bytes));
    const version = isRecord(parsed) && isRecord(parsed['signed']) ? parsed['signed']['version'] : undefined;
    return typeof version === 'number' && Number.isSafeInteger(version) && version > 0 ? version : undefined;
  } catch {
    return undefined;
  }
}

export function buildMetadataArtifact(name: MetadataFileName, bytes: Uint8Array, options: { rootVersion?: number } = {}): MetadataArtifact {
  const layerDigest = sha256Digest(bytes);
  const version = name.version ?? embeddedVersion(bytes);
  const annotations: Record<string, string> = {
    [ANNOTATION_FILENAME]: name.fileName,
    [ANNOTATION_ROLE]: name.role,
    ...(version === undefined ? {} : { [ANNOTATION_VERSION]: String(version) }),
    ...(options.rootVersion !== undefined && name.role === 'timestamp' ? { [ANNOTATION_ROOT_VERSION]: String(options.rootVersion) } : {}),
  };
  const manifest = {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST_MEDIA_TYPE,
    artifactType: METADATA_ARTIFACT_TYPE,
    config: { mediaType: OCI_EMPTY_MEDIA_TYPE, digest: EMPTY_JSON_DIGEST, size: EMPTY_JSON_BYTES.byteLength },
    layers: [
      {
        mediaType: TUF_METADATA_LAYER_MEDIA_TYPE,
        digest: layerDigest,
        size: bytes.byteLength,
        annotations: { [ANNOTATION_TITLE]: name.fileName, [ANNOTATION_FILENAME]: name.fileName },
        ...(bytes.byteLength <= EMBED_MAX_BYTES ? { data: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64') } : {}),
      },
    ],
    annotations,
  };
  const manifestBytes = new TextEncoder().encode(JSON.stringify(manifest));
  return { manifest: manifestBytes, manifestDigest: sha256Digest(manifestBytes), layerDigest, layerSize: bytes.byteLength };
}

/** Check a manifest is the artifact of `fileName`; a problem description otherwise. */
export function parseMetadataArtifact(manifest: Uint8Array, fileName: string): ParsedMetadataArtifact | ArtifactProblem {
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(manifest));
  } catch {
    return { kind: 'malformed', reason: 'manifest is not UTF-8 JSON' };
  }
  if (!isRecord(parsed) || parsed['schemaVersion'] !== 2) return { kind: 'malformed', reason: 'not an image manifest with schemaVersion 2' };
  if (parsed['mediaType'] !== OCI_MANIFEST_MEDIA_TYPE) {
    return { kind: 'bad-media-type', reason: `manifest mediaType is not ${OCI_MANIFEST_MEDIA_TYPE}` };
  }
  if (parsed['artifactType'] !== METADATA_ARTIFACT_TYPE) {
    const found = typeof parsed['artifactType'] === 'string' ? clip(parsed['artifactType'], 100) : 'none';
    return { kind: 'bad-media-type', reason: `artifactType is ${found}, not ${METADATA_ARTIFACT_TYPE}` };
  }
  const config = parsed['config'];
  if (!isRecord(config) || config['mediaType'] !== OCI_EMPTY_MEDIA_TYPE) {
    return { kind: 'bad-media-type', reason: `config is not the empty descriptor (${OCI_EMPTY_MEDIA_TYPE})` };
  }
  const layers = parsed['layers'];
  if (!Array.isArray(layers) || layers.length !== 1) return { kind: 'malformed', reason: 'artifact must have exactly one layer' };
  const layer: unknown = layers[0];
  if (!isRecord(layer)) return { kind: 'malformed', reason: 'layer descriptor is not an object' };
  if (layer['mediaType'] !== TUF_METADATA_LAYER_MEDIA_TYPE) {
    return { kind: 'bad-media-type', reason: `layer mediaType is not ${TUF_METADATA_LAYER_MEDIA_TYPE}` };
  }
  const digest = layer['digest'];
  const size = layer['size'];
  if (typeof digest !== 'string' || !isDigest(digest)) return { kind: 'malformed', reason: 'layer digest is not sha256:<hex>' };
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) return { kind: 'malformed', reason: 'layer size is not a non-negative integer' };
  let data: Uint8Array | undefined;
  if (layer['data'] !== undefined) {
    const embedded = embeddedData(layer['data'], digest, size);
    if (typeof embedded === 'string') return { kind: 'malformed', reason: embedded };
    data = embedded;
  }
  const raw = parsed['annotations'];
  const annotations: Record<string, string> = {};
  if (isRecord(raw)) for (const [k, v] of Object.entries(raw)) if (typeof v === 'string') annotations[k] = v;
  if (annotations[ANNOTATION_FILENAME] !== fileName) {
    const found = annotations[ANNOTATION_FILENAME];
    return { kind: 'wrong-file', reason: `manifest is for ${found === undefined ? 'no file name' : `"${clip(found, 130)}"`}, not ${fileName}` };
  }
  return { layerDigest: digest, layerSize: size, annotations, ...(data ? { data } : {}) };
}

export function isArtifactProblem(value: ParsedMetadataArtifact | ArtifactProblem): value is ArtifactProblem {
  return 'kind' in value;
}
