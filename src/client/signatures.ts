/**
 * The plain signature layer: who signed a manifest digest.
 *
 * A signature is a DSSE envelope whose payload is the OCI descriptor of the
 * image manifest (`{mediaType, digest, size}`, payloadType
 * `application/vnd.oci.descriptor.v1+json`), signed over DSSE's PAE
 * (@sigstore/core `preAuthEncoding`) by a tufoci `Signer`. It is pushed as an
 * OCI artifact (image manifest, artifactType below, empty config, one layer =
 * the envelope) whose `subject` is the image manifest, and indexed with the
 * OCI 1.1 referrers tag schema (`sha256-<hex>` → an image index of
 * referrers), which registries without the referrers API (Debian's
 * docker-registry 2.8) serve too. Nothing names a registry host, so copies to
 * another registry stay valid.
 *
 * Reading: the OCI 1.1 referrers API first (`GET /v2/<name>/referrers/<digest>
 * ?artifactType=…`, through `Store.listReferrers`); when the backend has no
 * such API (the registry answers 404, or the Store does not implement it), the
 * tag schema. Either list is only a hint: every referrer is fetched by digest,
 * must be a signature artifact naming the image as `subject`, and its envelope
 * must verify. In the tag schema, a descriptor without `artifactType` is a
 * candidate too (its manifest decides): skopeo 1.9 cannot copy such an index
 * with `--preserve-digests` and, without it, drops that OCI 1.1 field.
 *
 * Verification counts each distinct trusted public key once, against a policy
 * "threshold of these keys" (any one: threshold 1; all of them: threshold = n).
 */
// The two modules of @sigstore/core that DSSE needs, by path: its index also loads its X.509,
// ASN.1 and RFC 3161 code (31 modules), which a verify never uses (docs/ARCHITECTURE.md, start-up).
import * as sigCrypto from '@sigstore/core/dist/crypto.js';
import * as dsse from '@sigstore/core/dist/dsse.js';
import { TufociError } from '../errors.ts';
import { computeKeyId, legacyKeyId, parsePublicKey, type TufKeyJson } from '../keys/tuf-key.ts';
import type { Signer } from '../keys/signer.ts';
// Direct modules, not the storage index: a verify loads no backend it does not use.
import { OCI_EMPTY_MEDIA_TYPE, embeddedData } from '../storage/artifact.ts';
import { EMPTY_JSON_BYTES, EMPTY_JSON_DIGEST, sha256Digest } from '../storage/digest.ts';
import { isStorageError } from '../storage/storage-error.ts';
import { OCI_INDEX_MEDIA_TYPE, OCI_MANIFEST_MEDIA_TYPE, type Store } from '../storage/store.ts';

export const SIGNATURE_ARTIFACT_TYPE = 'application/vnd.tufoci.signature.v1+json';
export const DSSE_MEDIA_TYPE = 'application/vnd.dsse.envelope.v1+json';
export const DESCRIPTOR_PAYLOAD_TYPE = 'application/vnd.oci.descriptor.v1+json';
const MAX_ENVELOPE_BYTES = 64 * 1024;
const MAX_INDEX_BYTES = 4 * 1024 * 1024;
const MAX_SIGNATURES = 64;

export type SignatureErrorCode = 'BAD_SIGNATURE' | 'NOT_SIGNED' | 'BAD_REFERRER';
export class SignatureError extends TufociError<SignatureErrorCode> {}

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
}

export interface Envelope {
  payloadType: string;
  payload: string;
  signatures: Array<{ keyid: string; sig: string }>;
}

export interface SignaturePolicy {
  keys: readonly TufKeyJson[];
  /** Distinct keys of `keys` that must have signed (default 1). */
  threshold?: number;
}

function canonicalDescriptor(d: Descriptor): Buffer {
  return Buffer.from(JSON.stringify({ digest: d.digest, mediaType: d.mediaType, size: d.size }));
}

export async function signDescriptor(descriptor: Descriptor, signers: readonly Signer[]): Promise<Envelope> {
  const payload = canonicalDescriptor(descriptor);
  const pae = dsse.preAuthEncoding(DESCRIPTOR_PAYLOAD_TYPE, payload);
  const signatures = [];
  for (const s of signers) {
    const sig = await s.sign(pae);
    signatures.push({ keyid: sig.keyid, sig: Buffer.from(sig.sig, 'hex').toString('base64') });
  }
  return { payloadType: DESCRIPTOR_PAYLOAD_TYPE, payload: payload.toString('base64'), signatures };
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Verify one envelope for `expected`; returns the key ids (one per distinct trusted key) that signed. */
export function verifyEnvelope(bytes: Uint8Array, expected: Descriptor, trusted: readonly TufKeyJson[]): string[] {
  if (bytes.byteLength > MAX_ENVELOPE_BYTES) throw new SignatureError('BAD_SIGNATURE', 'signature envelope too large', { detail: { size: bytes.byteLength } });
  let env: unknown;
  try {
    env = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (cause) {
    throw new SignatureError('BAD_SIGNATURE', 'signature envelope is not JSON', { cause });
  }
  if (!isRecord(env) || env['payloadType'] !== DESCRIPTOR_PAYLOAD_TYPE || typeof env['payload'] !== 'string' || !Array.isArray(env['signatures'])) {
    throw new SignatureError('BAD_SIGNATURE', `not a DSSE envelope of ${DESCRIPTOR_PAYLOAD_TYPE}`, { detail: {} });
  }
  const payload = Buffer.from(env['payload'], 'base64');
  let d: unknown;
  try {
    d = JSON.parse(payload.toString('utf8'));
  } catch (cause) {
    throw new SignatureError('BAD_SIGNATURE', 'signature payload is not a descriptor', { cause });
  }
  if (!isRecord(d) || d['digest'] !== expected.digest || d['size'] !== expected.size || d['mediaType'] !== expected.mediaType) {
    throw new SignatureError('BAD_SIGNATURE', `signature is for another manifest than ${expected.digest}`, { detail: { expected: expected.digest } });
  }
  const pae = dsse.preAuthEncoding(DESCRIPTOR_PAYLOAD_TYPE, payload);
  // Envelopes signed before the key id fix name ECDSA keys by their legacy id: accept either id of a trusted key.
  const byId = new Map(trusted.flatMap((k) => [computeKeyId(k), legacyKeyId(k)].map((id) => [id, parsePublicKey(computeKeyId(k), k)] as const)));
  const counted = new Map<string, string>(); // identity → keyid
  for (const s of (env['signatures'] as unknown[]).slice(0, MAX_SIGNATURES)) {
    if (!isRecord(s) || typeof s['keyid'] !== 'string' || typeof s['sig'] !== 'string') continue;
    const info = byId.get(s['keyid']);
    if (!info || counted.has(info.identity)) continue;
    const ok = sigCrypto.verify(pae, info.keyObject, Buffer.from(s['sig'], 'base64'), info.hash ?? undefined);
    if (ok) counted.set(info.identity, s['keyid']);
  }
  return [...counted.values()];
}

/** The referrers tag schema: `sha256-<hex>`. */
export function referrersTag(digest: string): string {
  return digest.replace(':', '-');
}

/** Push a signature envelope as a referrer of `subject` in `repository`. */
export async function pushSignature(store: Store, repository: string, subject: Descriptor, envelope: Envelope): Promise<Descriptor> {
  const envBytes = new TextEncoder().encode(JSON.stringify(envelope));
  await store.putBlob(repository, EMPTY_JSON_BYTES);
  const layer = await store.putBlob(repository, envBytes);
  // The envelope rides in its layer descriptor (OCI 1.1 `data`), the manifest in its descriptor in
  // the referrers index: a reader needs the index alone. Blob and manifest are stored as well.
  const manifest = new TextEncoder().encode(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST_MEDIA_TYPE,
      artifactType: SIGNATURE_ARTIFACT_TYPE,
      config: { mediaType: OCI_EMPTY_MEDIA_TYPE, digest: EMPTY_JSON_DIGEST, size: 2 },
      layers: [{ mediaType: DSSE_MEDIA_TYPE, digest: layer.digest, size: layer.size, data: Buffer.from(envBytes).toString('base64') }],
      subject: { mediaType: subject.mediaType, digest: subject.digest, size: subject.size },
    }),
  );
  const digest = sha256Digest(manifest);
  await store.putManifest(repository, digest, manifest, OCI_MANIFEST_MEDIA_TYPE);
  const desc: Descriptor & { artifactType: string } = { mediaType: OCI_MANIFEST_MEDIA_TYPE, digest, size: manifest.byteLength, artifactType: SIGNATURE_ARTIFACT_TYPE };
  const listed: Descriptor & { artifactType: string; data: string } = { ...desc, data: Buffer.from(manifest).toString('base64') };
  // Referrers tag schema: read-modify-write the index at sha256-<hex>.
  const tag = referrersTag(subject.digest);
  const manifests = await listReferrerDescriptors(store, repository, subject.digest);
  if (!manifests.some((m) => m.digest === digest)) manifests.push(listed);
  const index = new TextEncoder().encode(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX_MEDIA_TYPE, manifests }));
  await store.putManifest(repository, tag, index, OCI_INDEX_MEDIA_TYPE);
  return desc;
}

async function listReferrerDescriptors(store: Store, repository: string, digest: string): Promise<Array<Descriptor & { artifactType?: string; data?: unknown }>> {
  try {
    const m = await store.getManifest(repository, referrersTag(digest), MAX_INDEX_BYTES);
    const index: unknown = JSON.parse(new TextDecoder().decode(m.bytes));
    const list = isRecord(index) && Array.isArray(index['manifests']) ? index['manifests'] : [];
    return list.filter((d): d is Descriptor & { artifactType?: string; data?: unknown } => isRecord(d) && typeof d['digest'] === 'string' && typeof d['size'] === 'number' && typeof d['mediaType'] === 'string');
  } catch (e) {
    if (isStorageError(e, 'NOT_FOUND')) return [];
    throw e;
  }
}

/** Stores whose registry answered that it has no referrers API: not asked again. */
const NO_REFERRERS_API = new WeakSet<Store>();

export interface SignatureReferrers {
  /** Where the list came from: the OCI 1.1 referrers API or the `sha256-<hex>` tag. */
  source: 'referrers-api' | 'tag-schema';
  /** Descriptors of (candidate) signature artifacts, at most 64, not yet verified. */
  referrers: Array<Descriptor & { artifactType?: string; data?: unknown }>;
}

/** The signature artifacts the `sha256-<hex>` tag lists for `digest` (none when there is no such tag). */
async function fromTagSchema(store: Store, repository: string, digest: string): Promise<SignatureReferrers> {
  const indexed = await listReferrerDescriptors(store, repository, digest);
  // Descriptors whose artifactType a copy tool dropped are candidates; the manifest's own artifactType decides.
  return { source: 'tag-schema', referrers: indexed.filter((d) => d.artifactType === SIGNATURE_ARTIFACT_TYPE || d.artifactType === undefined).slice(0, MAX_SIGNATURES) };
}

/** The signature artifacts the OCI 1.1 referrers API lists, or undefined when the store has no such API. */
async function fromReferrersApi(store: Store, repository: string, digest: string): Promise<SignatureReferrers | undefined> {
  if (!store.listReferrers || NO_REFERRERS_API.has(store)) return undefined;
  try {
    const list = await store.listReferrers(repository, digest, { artifactType: SIGNATURE_ARTIFACT_TYPE, maxBytes: MAX_INDEX_BYTES, maxCount: 1000 });
    return { source: 'referrers-api', referrers: list.filter((d) => d.artifactType === SIGNATURE_ARTIFACT_TYPE).slice(0, MAX_SIGNATURES) };
  } catch (e) {
    if (!isStorageError(e, 'UNSUPPORTED')) throw e;
    NO_REFERRERS_API.add(store);
    return undefined;
  }
}

/**
 * The signature artifacts referring to `digest`: from the referrers API when
 * the store has one, else (`UNSUPPORTED`, or no `listReferrers`) from the tag
 * schema. Bounded: 4 MiB per response, 64 signatures.
 */
export async function listSignatures(store: Store, repository: string, digest: string): Promise<SignatureReferrers> {
  return (await fromReferrersApi(store, repository, digest)) ?? fromTagSchema(store, repository, digest);
}

/** The bytes a descriptor carries (`data`) when they are exactly what its digest and size name. */
function carried(d: { digest: string; size: number; data?: unknown }): Uint8Array | undefined {
  if (d.data === undefined) return undefined;
  const bytes = embeddedData(d.data, d.digest, d.size);
  return typeof bytes === 'string' ? undefined : bytes;
}

/** The key ids of trusted keys that signed `subject` in the signature artifact `ref` (none if it is not one). */
async function signersIn(store: Store, repository: string, subject: Descriptor, ref: Descriptor & { data?: unknown }, policy: SignaturePolicy): Promise<string[]> {
  try {
    const bytes = ref.size <= MAX_ENVELOPE_BYTES ? (carried(ref) ?? (await store.getManifest(repository, ref.digest, MAX_ENVELOPE_BYTES)).bytes) : undefined;
    if (!bytes) return [];
    const man: unknown = JSON.parse(new TextDecoder().decode(bytes));
    const layer = isRecord(man) && Array.isArray(man['layers']) ? man['layers'][0] : undefined;
    const subj = isRecord(man) ? man['subject'] : undefined;
    if (!isRecord(man) || man['artifactType'] !== SIGNATURE_ARTIFACT_TYPE) return [];
    if (!isRecord(layer) || typeof layer['digest'] !== 'string' || typeof layer['size'] !== 'number' || !isRecord(subj) || subj['digest'] !== subject.digest) return [];
    const env = carried({ digest: layer['digest'], size: layer['size'], data: layer['data'] }) ?? (await store.getBlob(repository, layer['digest'], MAX_ENVELOPE_BYTES));
    return verifyEnvelope(env, subject, policy.keys);
  } catch (e) {
    if (e instanceof SignatureError || isStorageError(e) || e instanceof SyntaxError) return []; // one bad referrer does not hide good ones
    throw e;
  }
}

/**
 * Verify the plain signatures of `subject` in `repository` against a policy.
 * Returns the key ids (one per distinct key) whose valid signature counted.
 *
 * The `sha256-<hex>` tag is read first: tufoci writes every signature there, with the signature
 * manifest and its envelope carried in the index (OCI 1.1 `data`), so one request usually
 * settles it. Only when its signatures do not reach the threshold is the referrers API asked
 * as well (signatures other tools pushed to a registry that has one). Each listed descriptor is
 * a hint: the manifest (carried, or fetched by digest) must be a signature artifact naming the
 * subject, and its envelope must verify.
 */
export async function verifySignatures(store: Store, repository: string, subject: Descriptor, policy: SignaturePolicy): Promise<string[]> {
  const threshold = policy.threshold ?? 1;
  const signers = new Set<string>();
  const identityOf = (id: string): string => {
    const k = policy.keys.find((key) => computeKeyId(key) === id || legacyKeyId(key) === id);
    return k ? parsePublicKey(id, k).identity : id;
  };
  const identities = new Set<string>();
  const seen = new Set<string>();
  const collect = async (list: SignatureReferrers['referrers']): Promise<void> => {
    for (const ref of list) {
      if (seen.has(ref.digest)) continue;
      seen.add(ref.digest);
      for (const k of await signersIn(store, repository, subject, ref, policy)) {
        signers.add(k);
        identities.add(identityOf(k)); // each key counted once, even across envelopes
      }
    }
  };
  await collect((await fromTagSchema(store, repository, subject.digest)).referrers);
  if (identities.size < threshold) {
    const api = await fromReferrersApi(store, repository, subject.digest);
    if (api) await collect(api.referrers);
  }
  if (identities.size < threshold) {
    throw new SignatureError('NOT_SIGNED', `${subject.digest} is signed by ${identities.size} of the ${threshold} trusted key(s) required`, {
      detail: { digest: subject.digest, signed: [...signers], threshold },
    });
  }
  return [...signers];
}
