/**
 * One TUF metadata file ↔ one OCI artifact (docs/FORMAT.md is the normative
 * description; keep the two in step).
 *
 * The manifest is an OCI image manifest with `artifactType`, the empty config
 * and exactly one layer holding the exact signed bytes: as they are, or, for a
 * file of at least COMPRESS_MIN_BYTES, gzip-compressed (`+gzip` layer media
 * type; the layer's annotations then name the file's own sha256 and length,
 * `io.tufoci.content.digest` and `io.tufoci.content.size`). A layer of at most
 * EMBED_MAX_BYTES is also carried in the layer descriptor itself (OCI 1.1
 * `data`, base64), so a reader needs one request for it, not two; the blob is
 * stored too, for readers and copy tools that ignore `data`. The manifest is a
 * pure function of (file name, bytes) — and, for timestamp.json only, of the
 * root version current when it was written (`io.tufoci.root-version`, a hint
 * that saves a cold client its root probe; never trusted for anything else):
 * every writer of one zlib produces the same manifest bytes and so the same
 * manifest digest (a compressed layer depends on the deflate implementation;
 * nothing compares manifests of two writers: file identity is the content
 * digest). The file name is part of the manifest, so no two tags ever share a
 * manifest, and deleting a manifest by digest removes exactly one file.
 *
 * Reading is strict: the artifact type, the layer media type and the file
 * name annotation must all match what was asked for, and embedded `data` must
 * be canonical base64 of exactly the bytes the descriptor's digest and size
 * name (else the artifact is refused: a reader of `data` and a reader of the
 * blob must never see different bytes). A compressed layer must be exactly one
 * gzip member with the plain header tufoci writes (no name, comment, extra
 * field or header CRC), nothing after its trailer, a CRC and length that match,
 * and decompress — bounded by its declared content size, in time linear in its
 * bytes — to exactly the content digest and size: two conforming gzip readers
 * can never read two different files from it. The annotations for role,
 * version and root version are informational only; TUF verifies the bytes.
 */
import type { ZlibOptions } from 'node:zlib';
import { EMPTY_JSON_DIGEST, EMPTY_JSON_BYTES, sha256Digest } from './digest.ts';
import type { MetadataFileName } from './metadata-name.ts';
import { clip, isDigest } from './names.ts';
import { OCI_MANIFEST_MEDIA_TYPE } from './store.ts';

export const METADATA_ARTIFACT_TYPE = 'application/vnd.tufoci.metadata.v1+json';
/** Docker's TUF-in-OCI layer media type (go-tuf-mirror), reused so their tooling recognises the layer. */
export const TUF_METADATA_LAYER_MEDIA_TYPE = 'application/vnd.tuf.metadata+json';
/** The same file, gzip-compressed (OCI's `+gzip` suffix convention). */
export const TUF_METADATA_GZIP_LAYER_MEDIA_TYPE = 'application/vnd.tuf.metadata+json+gzip';
/** On a compressed layer: the sha256 (`sha256:<hex>`) and the length of the file it decompresses to. */
export const ANNOTATION_CONTENT_DIGEST = 'io.tufoci.content.digest';
export const ANNOTATION_CONTENT_SIZE = 'io.tufoci.content.size';
export const OCI_EMPTY_MEDIA_TYPE = 'application/vnd.oci.empty.v1+json';
/** Docker's TUF-in-OCI file name annotation. */
export const ANNOTATION_FILENAME = 'tuf.io/filename';
export const ANNOTATION_ROLE = 'io.tufoci.role';
export const ANNOTATION_VERSION = 'io.tufoci.version';
/** Lets `oras pull` write the layer out under the TUF file name. */
export const ANNOTATION_TITLE = 'org.opencontainers.image.title';
/** On timestamp.json: the root version current when it was written (a hint for clients' root walks). */
export const ANNOTATION_ROOT_VERSION = 'io.tufoci.root-version';
/**
 * Layers up to this size are embedded in their layer descriptor (`data`), which saves a request
 * and costs a third more bytes; above it the blob is cheaper. (Compressed, 16 KiB is a hash bin of
 * about 350 tags; the one file usually above it is a large repository's snapshot.)
 */
export const EMBED_MAX_BYTES = 16 * 1024;
/** Files of at least this size are stored compressed (when that saves a quarter or more). */
export const COMPRESS_MIN_BYTES = 8 * 1024;
/** Fastest deflate: metadata is mostly hex digests, and level 9 saves under 2 % for 2–3× the CPU on the write path. */
const GZIP_OPTIONS: ZlibOptions = { level: 1 };
/** The gzip header's OS byte, fixed to "unknown" so that the bytes do not depend on the writer's platform. */
const GZIP_OS_UNKNOWN = 0xff;
/**
 * node:zlib, loaded on first use: loading it costs a CLI start-up about 1.6 ms, and a warm verify
 * (or any command that reads only small files) never compresses or decompresses.
 */
const zlib = (): typeof import('node:zlib') => process.getBuiltinModule('node:zlib');

export { EMPTY_JSON_BYTES, EMPTY_JSON_DIGEST };

export interface MetadataArtifact {
  manifest: Uint8Array;
  manifestDigest: string;
  /** The stored layer: the file's bytes, or their gzip form (`layer`). */
  layerDigest: string;
  layerSize: number;
  /** The layer's bytes when they are not the file's own (compressed); the blob to store. */
  layer?: Uint8Array;
  /** sha256 of the file's own bytes (= layerDigest unless compressed): the file's identity. */
  contentDigest: string;
}

export interface ParsedMetadataArtifact {
  layerDigest: string;
  layerSize: number;
  /** Whether the layer is the gzip form of the file. */
  compressed: boolean;
  /** The file's own sha256 and length (= the layer's unless compressed). */
  contentDigest: string;
  contentSize: number;
  annotations: Record<string, string>;
  /** The layer's bytes when the descriptor carries them (`data`), checked against its digest and size. */
  data?: Uint8Array;
}

/**
 * The gzip form of a metadata file, when it should be stored so: the file is at least
 * COMPRESS_MIN_BYTES and compresses to at most three quarters. Compression runs on libuv's
 * thread pool, off the event loop (a service commit compresses its larger roles and snapshot).
 */
export async function compressMetadata(bytes: Uint8Array): Promise<Uint8Array | undefined> {
  if (bytes.byteLength < COMPRESS_MIN_BYTES) return undefined;
  const gz = await new Promise<Buffer>((resolve, reject) => zlib().gzip(bytes, GZIP_OPTIONS, (error, out) => (error ? reject(error) : resolve(out))));
  return worthIt(bytes, gz);
}

function worthIt(bytes: Uint8Array, gz: Buffer): Uint8Array | undefined {
  if (gz.byteLength * 4 > bytes.byteLength * 3) return undefined;
  gz[9] = GZIP_OS_UNKNOWN;
  return new Uint8Array(gz.buffer, gz.byteOffset, gz.byteLength);
}

/**
 * The file inside a compressed layer, or a reason to refuse it: one gzip member with the plain
 * 10-byte header (deflate, no flags), the deflate stream ending exactly at the 8-byte trailer, CRC-32
 * and length matching, at most `contentSize` bytes out (zlib stops there: time linear in the
 * input), and exactly `contentSize` bytes with `contentDigest`.
 */
export function decompressLayer(layer: Uint8Array, contentDigest: string, contentSize: number): Uint8Array | string {
  if (layer.byteLength < 18 || layer[0] !== 0x1f || layer[1] !== 0x8b || layer[2] !== 8) return 'compressed layer is not gzip (deflate)';
  if (layer[3] !== 0) return 'compressed layer has gzip header fields tufoci does not write (name, comment, extra or header CRC)';
  const body = layer.subarray(10, layer.byteLength - 8);
  let out: Buffer;
  let consumed: number;
  try {
    const result = zlib().inflateRawSync(body, { maxOutputLength: Math.max(contentSize, 1), info: true }) as unknown as { buffer: Buffer; engine: { bytesWritten: number } };
    out = result.buffer;
    consumed = result.engine.bytesWritten;
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    return code === 'ERR_BUFFER_TOO_LARGE' ? `compressed layer decompresses to more than its content size of ${contentSize} bytes` : 'compressed layer is not a valid deflate stream';
  }
  if (consumed !== body.byteLength) return 'compressed layer has bytes after its deflate stream (more than one gzip member, or trailing data)';
  const trailer = Buffer.from(layer.buffer, layer.byteOffset + layer.byteLength - 8, 8);
  if (trailer.readUInt32LE(0) !== zlib().crc32(out) || trailer.readUInt32LE(4) !== out.byteLength % 2 ** 32) return 'compressed layer fails its gzip CRC-32 or length check';
  if (out.byteLength !== contentSize || sha256Digest(out) !== contentDigest) return 'compressed layer does not decompress to its content digest and size';
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
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

/**
 * The artifact of one file. `compressed` is its gzip form from compressMetadata, when it is to be stored so; without it the layer is the file itself.
 */
export function buildMetadataArtifact(name: MetadataFileName, bytes: Uint8Array, options: { rootVersion?: number; compressed?: Uint8Array } = {}): MetadataArtifact {
  const contentDigest = sha256Digest(bytes);
  const layer = options.compressed ?? bytes;
  const layerDigest = options.compressed ? sha256Digest(layer) : contentDigest;
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
        mediaType: options.compressed ? TUF_METADATA_GZIP_LAYER_MEDIA_TYPE : TUF_METADATA_LAYER_MEDIA_TYPE,
        digest: layerDigest,
        size: layer.byteLength,
        annotations: {
          [ANNOTATION_TITLE]: name.fileName,
          [ANNOTATION_FILENAME]: name.fileName,
          ...(options.compressed ? { [ANNOTATION_CONTENT_DIGEST]: contentDigest, [ANNOTATION_CONTENT_SIZE]: String(bytes.byteLength) } : {}),
        },
        ...(layer.byteLength <= EMBED_MAX_BYTES ? { data: Buffer.from(layer.buffer, layer.byteOffset, layer.byteLength).toString('base64') } : {}),
      },
    ],
    annotations,
  };
  const manifestBytes = new TextEncoder().encode(JSON.stringify(manifest));
  return {
    manifest: manifestBytes,
    manifestDigest: sha256Digest(manifestBytes),
    layerDigest,
    layerSize: layer.byteLength,
    contentDigest,
    ...(options.compressed ? { layer } : {}),
  };
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
  const compressed = layer['mediaType'] === TUF_METADATA_GZIP_LAYER_MEDIA_TYPE;
  if (!compressed && layer['mediaType'] !== TUF_METADATA_LAYER_MEDIA_TYPE) {
    return { kind: 'bad-media-type', reason: `layer mediaType is neither ${TUF_METADATA_LAYER_MEDIA_TYPE} nor ${TUF_METADATA_GZIP_LAYER_MEDIA_TYPE}` };
  }
  const digest = layer['digest'];
  const size = layer['size'];
  if (typeof digest !== 'string' || !isDigest(digest)) return { kind: 'malformed', reason: 'layer digest is not sha256:<hex>' };
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) return { kind: 'malformed', reason: 'layer size is not a non-negative integer' };
  let contentDigest = digest;
  let contentSize = size;
  if (compressed) {
    const layerAnnotations = layer['annotations'];
    const cd = isRecord(layerAnnotations) ? layerAnnotations[ANNOTATION_CONTENT_DIGEST] : undefined;
    const cs = isRecord(layerAnnotations) ? layerAnnotations[ANNOTATION_CONTENT_SIZE] : undefined;
    if (typeof cd !== 'string' || !isDigest(cd)) return { kind: 'malformed', reason: `compressed layer has no ${ANNOTATION_CONTENT_DIGEST} of sha256:<hex>` };
    if (typeof cs !== 'string' || !/^(0|[1-9][0-9]{0,14})$/.test(cs)) return { kind: 'malformed', reason: `compressed layer has no ${ANNOTATION_CONTENT_SIZE} of a decimal length` };
    contentDigest = cd;
    contentSize = Number(cs);
  }
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
  return { layerDigest: digest, layerSize: size, compressed, contentDigest, contentSize, annotations, ...(data ? { data } : {}) };
}

export function isArtifactProblem(value: ParsedMetadataArtifact | ArtifactProblem): value is ArtifactProblem {
  return 'kind' in value;
}
