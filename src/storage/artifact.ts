/**
 * One TUF metadata file ↔ one OCI artifact (docs/FORMAT.md is the normative
 * description; keep the two in step).
 *
 * The manifest is an OCI image manifest with `artifactType`, the empty config
 * and exactly one layer holding the exact signed bytes. It is a pure function
 * of (file name, bytes): every writer, on every backend, produces the same
 * manifest bytes and so the same manifest digest. The file name is part of
 * the manifest, so no two tags ever share a manifest, and deleting a manifest
 * by digest removes exactly one file.
 *
 * Reading is strict: the artifact type, the layer media type and the file
 * name annotation must all match what was asked for. The annotations for
 * role and version are informational only; TUF verifies the bytes.
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

export function buildMetadataArtifact(name: MetadataFileName, bytes: Uint8Array): MetadataArtifact {
  const layerDigest = sha256Digest(bytes);
  const version = name.version ?? embeddedVersion(bytes);
  const annotations: Record<string, string> = {
    [ANNOTATION_FILENAME]: name.fileName,
    [ANNOTATION_ROLE]: name.role,
    ...(version === undefined ? {} : { [ANNOTATION_VERSION]: String(version) }),
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
  const raw = parsed['annotations'];
  const annotations: Record<string, string> = {};
  if (isRecord(raw)) for (const [k, v] of Object.entries(raw)) if (typeof v === 'string') annotations[k] = v;
  if (annotations[ANNOTATION_FILENAME] !== fileName) {
    const found = annotations[ANNOTATION_FILENAME];
    return { kind: 'wrong-file', reason: `manifest is for ${found === undefined ? 'no file name' : `"${clip(found, 130)}"`}, not ${fileName}` };
  }
  return { layerDigest: digest, layerSize: size, annotations };
}

export function isArtifactProblem(value: ParsedMetadataArtifact | ArtifactProblem): value is ArtifactProblem {
  return 'kind' in value;
}
