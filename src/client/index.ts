/**
 * `tufoci`: the client library. Verify an image tag against TUF and its signatures, keep pinned
 * roots and verified state, read from a registry, an OCI layout (a mirror copy) or the service.
 *
 * ```ts
 * import { RegistryStore, TrustStore, verifyImage } from 'tufoci';
 * const store = new RegistryStore({ url: 'https://registry.example' });
 * const repository = 'wabbit-networks/net-monitor';
 * const image = await verifyImage({ store, repository, tag: 'v1', ...new TrustStore().optionsFor(repository) });
 * console.log(image.digest);
 * ```
 *
 * This entry loads none of the service (koa, @koa/router, ioredis, pino, prom-client):
 * test/package/lean-entry.test.ts holds it to that. The service is `tufoci/service`.
 */
export { verifyImage, VerifyError } from './verify-image.ts';
export type { VerifyImageOptions, VerifiedImage, VerifyErrorCode, TufClientName } from './verify-image.ts';
export { TrustStore, TrustStoreError, defaultTrustDir, DEFAULT_ROOT_MAX_BYTES } from './trust-store.ts';
export type { TrustEntry, AddedTrust, TrustStoreErrorCode } from './trust-store.ts';
export { CoreUpdater, VERIFIED_RECORD_FILE } from './core/updater.ts';
export type { CoreUpdaterOptions, MetadataSource } from './core/updater.ts';
export { TrustedSet, CoreError, DEFAULT_CORE_LIMITS } from './core/trusted-set.ts';
export type { CoreErrorCode, CoreLimits, TargetInfo, VerifiedRoot, VerifiedTimestamp, VerifiedSnapshot, VerifiedTargets } from './core/trusted-set.ts';
export { verifySignatures, verifyEnvelope, listSignatures, SignatureError } from './signatures.ts';
export type { Descriptor, Envelope, SignaturePolicy, SignatureErrorCode, SignatureReferrers } from './signatures.ts';
export { VetError } from './vet.ts';
export type { VetErrorCode } from './vet.ts';
export { ServiceClient, ServiceClientError } from './service-client.ts';
export type { ServiceClientOptions } from './service-client.ts';
export { RegistryStore } from '../storage/registry-store.ts';
export type { RegistryStoreOptions } from '../storage/registry-store.ts';
export type { Credentials } from '../storage/registry-auth.ts';
export { OciLayoutStore } from '../storage/oci-layout-store.ts';
export type { OciLayoutStoreOptions } from '../storage/oci-layout-store.ts';
export type { Store, Manifest, BlobRef } from '../storage/store.ts';
export { StorageError, isStorageError } from '../storage/storage-error.ts';
export type { StorageErrorCode, StorageErrorDetail } from '../storage/storage-error.ts';
export { loadPublicKeyFile } from '../keys/key-files.ts';
export { computeKeyId, parsePublicKeyText, KeyError } from '../keys/tuf-key.ts';
export type { TufKeyJson, KeyType, KeyErrorCode } from '../keys/tuf-key.ts';
export { TufociError, isTufociError } from '../errors.ts';
export type { Detail } from '../errors.ts';
