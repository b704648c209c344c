/**
 * `tufoci/service`: what embedding the metadata service needs. `startServer` is what
 * `tufoci serve` runs (store, coordinator, online keys, policy, auth, logger, metrics, the fast
 * read paths); `createApp` is the Koa application alone, for a server of your own.
 *
 * ```ts
 * import { startServer } from 'tufoci/service';
 * const server = await startServer({ dataDir: './data', port: 8080 });
 * ```
 */
export { startServer } from '../main.ts';
export type { ServeOptions, RunningServer } from '../main.ts';
export { createApp, DEFAULT_BODY_TIMEOUT_MS } from './app.ts';
export type { AppDeps } from './app.ts';
export { RepositoryService, GRANT_PREFIX } from './repository-service.ts';
export type {
  RepositoryServiceDeps,
  Logger,
  OnlineSigners,
  ServedFile,
  UploadResult,
  TagsResult,
  RoleStatus,
  RepositoryStatus,
  GrantInfo,
  JobInfo,
  JobGrant,
} from './repository-service.ts';
export { TokenAuth, loadTokens, parseTokens } from './auth.ts';
export type { TokenEntry, Action, Principal } from './auth.ts';
export { OnlineKeyring, ONLINE_ROLES } from '../keys/online-keyring.ts';
export type { OnlineKeyringOptions, OnlineRole, KeySetInfo } from '../keys/online-keyring.ts';
export { createMetrics } from './metrics.ts';
export type { Metrics } from './metrics.ts';
export { withFastReads } from './fast-read.ts';
export { attachFastFront } from './fast-front.ts';
export type { FastFront, FastFrontDeps } from './fast-front.ts';
export { ServiceError, httpStatusOf } from './errors.ts';
export type { ServiceErrorCode } from './errors.ts';
export { MemoryStore, OciLayoutStore, RegistryStore, MetadataStore, StorageError, isStorageError } from '../storage/index.ts';
export type { Store, OciLayoutStoreOptions, RegistryStoreOptions, MetadataStoreOptions, Credentials } from '../storage/index.ts';
export { InProcessCoordinator, RedisCoordinator, createCoordinator, CoordError, isCoordError } from '../coord/index.ts';
export type { Coordinator, CoordinatorConfig, InProcessCoordinatorOptions, RedisCoordinatorOptions } from '../coord/index.ts';
export { loadPolicyFile, loadPolicyDir, parsePolicy, defaultPolicyPath, PolicyError } from '../policy/policy.ts';
export type { Policy, RolePolicy, RoleClass } from '../policy/policy.ts';
export { InMemorySigner } from '../keys/signer.ts';
export type { Signer, TufSignature } from '../keys/signer.ts';
