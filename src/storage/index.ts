/** The storage layer's public surface. */
export type { BlobRef, ListReferrersOptions, Manifest, ManifestPut, ReferrerDescriptor, Store } from './store.ts';
export { MANIFEST_MEDIA_TYPES, OCI_MANIFEST_MEDIA_TYPE, OCI_INDEX_MEDIA_TYPE } from './store.ts';
export { StorageError, isStorageError, type StorageErrorCode, type StorageErrorDetail } from './storage-error.ts';
export { CheckedStore, checkedStore, type CheckedStoreOptions, type StoreCall, type StoreObserver, type StoreOperation } from './checked-store.ts';
export { MemoryStore } from './memory-store.ts';
export { OciLayoutStore, type OciLayoutStoreOptions } from './oci-layout-store.ts';
export { RegistryStore, type RegistryStoreOptions } from './registry-store.ts';
export type { Credentials } from './registry-auth.ts';
export { MetadataStore, MAX_ARTIFACT_MANIFEST_BYTES, type MetadataFile, type MetadataStoreOptions, type PruneOptions, type WriteResult } from './metadata-store.ts';
export { parseMetadataFileName, metadataFileName, TIMESTAMP_FILE_NAME, type MetadataFileName } from './metadata-name.ts';
export {
  ANNOTATION_FILENAME,
  ANNOTATION_ROLE,
  ANNOTATION_VERSION,
  METADATA_ARTIFACT_TYPE,
  OCI_EMPTY_MEDIA_TYPE,
  TUF_METADATA_LAYER_MEDIA_TYPE,
  buildMetadataArtifact,
  parseMetadataArtifact,
} from './artifact.ts';
export { isRepositoryName, isTag, isDigest } from './names.ts';
export { sha256Digest, EMPTY_JSON_DIGEST, EMPTY_JSON_BYTES } from './digest.ts';
export { Deadline, DeadlineExceededError, currentDeadline, formatDuration, waitingFor } from './deadline.ts';
