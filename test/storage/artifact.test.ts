import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { deflateRawSync, gzipSync } from 'node:zlib';
import {
  ANNOTATION_ROOT_VERSION,
  COMPRESS_MIN_BYTES,
  EMBED_MAX_BYTES,
  TUF_METADATA_GZIP_LAYER_MEDIA_TYPE,
  buildMetadataArtifact,
  compressMetadata,
  decompressLayer,
  isArtifactProblem,
  parseMetadataArtifact,
} from '../../src/storage/artifact.ts';
import { sha256Digest } from '../../src/storage/digest.ts';
import { metadataFileName, parseMetadataFileName } from '../../src/storage/metadata-name.ts';

const bytes = new TextEncoder().encode('{"signatures":[],"signed":{"_type":"timestamp","version":42}}');

describe('metadata artifact (docs/FORMAT.md)', () => {
  it('is byte-for-byte the documented manifest (golden)', () => {
    const artifact = buildMetadataArtifact({ fileName: 'timestamp.json', role: 'timestamp' }, bytes);
    const layer = sha256Digest(bytes);
    expect(Buffer.from(artifact.manifest).toString()).toBe(
      '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",' +
        '"artifactType":"application/vnd.tufoci.metadata.v1+json",' +
        '"config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},' +
        `"layers":[{"mediaType":"application/vnd.tuf.metadata+json","digest":"${layer}","size":${bytes.byteLength},` +
        '"annotations":{"org.opencontainers.image.title":"timestamp.json","tuf.io/filename":"timestamp.json"},' +
        `"data":"${Buffer.from(bytes).toString('base64')}"}],` +
        '"annotations":{"tuf.io/filename":"timestamp.json","io.tufoci.role":"timestamp","io.tufoci.version":"42"}}',
    );
    expect(artifact.manifestDigest).toBe(sha256Digest(artifact.manifest));
    expect(artifact).toMatchObject({ layerDigest: layer, layerSize: bytes.byteLength });
  });

  it('carries a small file in its layer descriptor, a large one only as a blob; the timestamp names the root version it was written under', () => {
    const layerOf = (b: Uint8Array, name = { fileName: '3.ci.json', role: 'ci', version: 3 } as Parameters<typeof buildMetadataArtifact>[0], rootVersion?: number) =>
      JSON.parse(Buffer.from(buildMetadataArtifact(name, b, rootVersion !== undefined ? { rootVersion } : {}).manifest).toString()) as { layers: Array<{ data?: string }>; annotations: Record<string, string> };
    const large = new Uint8Array(EMBED_MAX_BYTES + 1).fill(0x20);
    expect(layerOf(new Uint8Array(EMBED_MAX_BYTES).fill(0x20)).layers[0]?.data).toBeDefined();
    expect(layerOf(large).layers[0]?.data).toBeUndefined();
    const parsed = parseMetadataArtifact(buildMetadataArtifact({ fileName: '3.ci.json', role: 'ci', version: 3 }, bytes).manifest, '3.ci.json');
    expect(!isArtifactProblem(parsed) && Buffer.from(parsed.data ?? []).equals(Buffer.from(bytes))).toBe(true);
    expect(layerOf(bytes, { fileName: 'timestamp.json', role: 'timestamp' }, 4).annotations[ANNOTATION_ROOT_VERSION]).toBe('4');
    expect(layerOf(bytes, { fileName: '4.root.json', role: 'root', version: 4 }, 4).annotations[ANNOTATION_ROOT_VERSION]).toBeUndefined();
  });

  it('refuses embedded data that is not canonical base64 of exactly the layer', () => {
    const { manifest } = buildMetadataArtifact({ fileName: '3.ci.json', role: 'ci', version: 3 }, bytes);
    const b64 = Buffer.from(bytes).toString('base64');
    const withData = (data: string) => new TextEncoder().encode(Buffer.from(manifest).toString().replace(`"data":"${b64}"`, `"data":${JSON.stringify(data)}`));
    const other = Buffer.from(bytes);
    other[0] = 0x20;
    for (const [data, reason] of [
      [other.toString('base64'), 'does not match the layer digest'],
      [`${b64.slice(0, -4)}\n${b64.slice(-4)}`, 'length'],
      [b64.replace(/=+$/, '').padEnd(b64.length, '.'), 'canonical'],
    ] as const) {
      expect(parseMetadataArtifact(withData(data), '3.ci.json')).toMatchObject({ kind: 'malformed', reason: expect.stringContaining(reason) });
    }
  });

  it('is a pure function of file name and bytes, and differs per file name', () => {
    const a = buildMetadataArtifact({ fileName: '3.ci.json', role: 'ci', version: 3 }, bytes);
    expect(buildMetadataArtifact({ fileName: '3.ci.json', role: 'ci', version: 3 }, Uint8Array.from(bytes)).manifestDigest).toBe(a.manifestDigest);
    expect(buildMetadataArtifact({ fileName: '4.ci.json', role: 'ci', version: 4 }, bytes).manifestDigest).not.toBe(a.manifestDigest);
  });

  it('takes the version annotation from the file name, else from signed.version, else omits it', () => {
    const annotations = (name: Parameters<typeof buildMetadataArtifact>[0], b: Uint8Array) =>
      JSON.parse(Buffer.from(buildMetadataArtifact(name, b).manifest).toString()).annotations;
    expect(annotations({ fileName: '7.snapshot.json', role: 'snapshot', version: 7 }, bytes)['io.tufoci.version']).toBe('7');
    expect(annotations({ fileName: 'timestamp.json', role: 'timestamp' }, new TextEncoder().encode('not json'))['io.tufoci.version']).toBeUndefined();
  });

  it('parses its own output and reports each kind of foreign manifest', () => {
    const { manifest } = buildMetadataArtifact({ fileName: '1.root.json', role: 'root', version: 1 }, bytes);
    const parsed = parseMetadataArtifact(manifest, '1.root.json');
    expect(isArtifactProblem(parsed)).toBe(false);
    expect(parsed).toMatchObject({ layerDigest: sha256Digest(bytes), layerSize: bytes.byteLength });
    const edit = (from: string, to: string) => new TextEncoder().encode(Buffer.from(manifest).toString().replace(from, to));
    expect(parseMetadataArtifact(manifest, '2.root.json')).toMatchObject({ kind: 'wrong-file' });
    expect(parseMetadataArtifact(edit('vnd.tufoci.metadata', 'vnd.other'), '1.root.json')).toMatchObject({ kind: 'bad-media-type' });
    expect(parseMetadataArtifact(edit('vnd.tuf.metadata+json', 'vnd.oci.image.layer.v1.tar'), '1.root.json')).toMatchObject({ kind: 'bad-media-type' });
    expect(parseMetadataArtifact(edit('vnd.oci.empty.v1+json', 'vnd.oci.image.config.v1+json'), '1.root.json')).toMatchObject({ kind: 'bad-media-type' });
    expect(parseMetadataArtifact(edit('"layers":[', '"layers":[{"mediaType":"x","digest":"sha256:00","size":1},'), '1.root.json')).toMatchObject({ kind: 'malformed' });
    expect(parseMetadataArtifact(new TextEncoder().encode('<html>'), '1.root.json')).toMatchObject({ kind: 'malformed' });
  });
});

describe('compressed metadata layers (docs/FORMAT.md §3)', () => {
  const file = new TextEncoder().encode(`{"signed":{"_type":"snapshot","meta":"${randomBytes(COMPRESS_MIN_BYTES).toString('hex')}","version":3}}`);
  const digest = sha256Digest(file);

  it('compresses a file of at least COMPRESS_MIN_BYTES that shrinks by a quarter, deterministically, and names its content in the layer', async () => {
    expect(await compressMetadata(file.subarray(0, COMPRESS_MIN_BYTES - 1))).toBeUndefined();
    expect(await compressMetadata(randomBytes(COMPRESS_MIN_BYTES * 2))).toBeUndefined(); // does not shrink
    const gz = (await compressMetadata(file)) as Uint8Array;
    expect(Buffer.from((await compressMetadata(Uint8Array.from(file))) as Uint8Array).equals(Buffer.from(gz))).toBe(true); // deterministic
    expect(gz[9]).toBe(0xff); // OS "unknown": the bytes do not depend on the writer's platform
    const artifact = buildMetadataArtifact({ fileName: '3.snapshot.json', role: 'snapshot', version: 3 }, file, { compressed: gz });
    expect(artifact).toMatchObject({ layerDigest: sha256Digest(gz), layerSize: gz.byteLength, contentDigest: digest });
    const parsed = parseMetadataArtifact(artifact.manifest, '3.snapshot.json');
    expect(parsed).toMatchObject({ compressed: true, contentDigest: digest, contentSize: file.byteLength, layerDigest: sha256Digest(gz) });
    const layer = (JSON.parse(Buffer.from(artifact.manifest).toString()) as { layers: Array<Record<string, unknown>> }).layers[0];
    expect(layer).toMatchObject({ mediaType: TUF_METADATA_GZIP_LAYER_MEDIA_TYPE, annotations: { 'io.tufoci.content.digest': digest, 'io.tufoci.content.size': String(file.byteLength) } });
    expect(Buffer.from(decompressLayer(gz, digest, file.byteLength) as Uint8Array).equals(Buffer.from(file))).toBe(true);
  });

  it('refuses a compressed layer two gzip readers could read differently, or that is not the named content', async () => {
    const gz = Buffer.from((await compressMetadata(file)) as Uint8Array);
    const deflated = deflateRawSync(file);
    const withHeader = (flags: number, extra: Buffer) => Buffer.concat([Buffer.from([0x1f, 0x8b, 8, flags, 0, 0, 0, 0, 0, 0xff]), extra, gz.subarray(10)]);
    const crcFlipped = Buffer.from(gz);
    crcFlipped[crcFlipped.length - 5] = (crcFlipped[crcFlipped.length - 5] as number) ^ 1;
    const other = new TextEncoder().encode(new TextDecoder().decode(file).replace('"version":3', '"version":4'));
    for (const [layer, reason] of [
      [Buffer.concat([gz, gz]), 'bytes after its deflate stream'], // two members: some readers stop after the first
      [Buffer.concat([gz.subarray(0, -8), Buffer.from([0]), gz.subarray(-8)]), 'bytes after its deflate stream'],
      [withHeader(8, Buffer.from('name\0')), 'header fields'],
      [Buffer.concat([Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]), deflated.subarray(0, 100), Buffer.alloc(8)]), 'not a valid deflate stream'],
      [crcFlipped, 'CRC-32'],
      [Buffer.from(file), 'not gzip'],
      [gzipSync(other), 'content digest'],
    ] as const) {
      expect(decompressLayer(layer, digest, file.byteLength)).toEqual(expect.stringContaining(reason));
    }
    // A bomb: a small layer that inflates past the size it declares stops at that size.
    const bomb = gzipSync(Buffer.alloc(64 * 1024 * 1024));
    expect(bomb.byteLength).toBeLessThan(100_000);
    expect(decompressLayer(bomb, digest, 1024)).toEqual(expect.stringContaining('more than its content size of 1024'));
  });

  it('refuses a compressed layer descriptor without its content digest and size', async () => {
    const gz = (await compressMetadata(file)) as Uint8Array;
    const { manifest } = buildMetadataArtifact({ fileName: '3.snapshot.json', role: 'snapshot', version: 3 }, file, { compressed: gz });
    const edit = (from: string, to: string) => new TextEncoder().encode(Buffer.from(manifest).toString().replace(from, to));
    expect(parseMetadataArtifact(edit('"io.tufoci.content.digest"', '"x"'), '3.snapshot.json')).toMatchObject({ kind: 'malformed', reason: expect.stringContaining('io.tufoci.content.digest') });
    expect(parseMetadataArtifact(edit(`"io.tufoci.content.size":"${file.byteLength}"`, '"io.tufoci.content.size":"01"'), '3.snapshot.json')).toMatchObject({ kind: 'malformed', reason: expect.stringContaining('io.tufoci.content.size') });
  });
});

describe('metadata file names', () => {
  it('parses versioned names and timestamp.json', () => {
    expect(parseMetadataFileName('1.root.json')).toEqual({ fileName: '1.root.json', role: 'root', version: 1 });
    expect(parseMetadataFileName('12.ci.release-2.json')).toEqual({ fileName: '12.ci.release-2.json', role: 'ci.release-2', version: 12 });
    expect(parseMetadataFileName('3.7.json')).toEqual({ fileName: '3.7.json', role: '7', version: 3 });
    expect(parseMetadataFileName('timestamp.json')).toEqual({ fileName: 'timestamp.json', role: 'timestamp' });
    expect(metadataFileName('ci', 3)).toBe('3.ci.json');
    expect(metadataFileName('timestamp')).toBe('timestamp.json');
  });

  it('refuses everything else', () => {
    for (const bad of ['root.json', 'snapshot.json', '0.root.json', '007.root.json', '1.timestamp.json', '1..json', '1.-x.json', '1.a/b.json', '1.a b.json', '99999999999999999.root.json', `1.${'x'.repeat(124)}.json`, '1.root.JSON']) {
      expect(parseMetadataFileName(bad), bad).toBeUndefined();
    }
    expect(parseMetadataFileName(`1.${'x'.repeat(121)}.json`)).toBeDefined(); // exactly 128 characters
  });
});
