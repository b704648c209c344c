/**
 * The service's HTTP API as data: what its JSON requests and answers hold (routes.ts names the
 * paths). The service builds the answers (src/service/repository-service.ts, src/service/app.ts),
 * the client and the CLI read them (src/client/service-client.ts); this module holds types only,
 * so naming them loads nothing.
 */
import type { ImageTarget } from '../engine/build.ts';
import type { LegacyKeyListing } from '../engine/legacy-keyids.ts';
import type { VerificationResult } from '../engine/signatures.ts';
import type { TufKeyJson } from '../keys/tuf-key.ts';

// ------------------------------------------------------------------ requests

/** `POST /v1/repos/<repo>`: the first root and targets, as the JSON of 1.root.json and 1.targets.json. */
export interface CreateRepositoryRequest {
  root: unknown;
  targets: unknown;
}

/** `POST /v1/repos/<repo>/tags`: tags for a role delegated to the service's CI key (default `ci`). */
export interface PublishTagsRequest {
  role?: string;
  tags: Record<string, ImageTarget>;
}

/** `POST /v1/repos/<repo>/grants`. */
export interface CreateGrantRequest {
  /** Tag patterns the job may publish. */
  paths: string[];
  /** Default 600. */
  ttlSeconds?: number;
  /** The delegated role the job role hangs under (default `ci`). */
  role?: string;
}

/** `POST /v1/repos/<repo>/grants/redeem` (with the grant token as bearer): the job's own public key. */
export interface RedeemGrantRequest {
  key: TufKeyJson;
}

/** `POST /v1/online-keys/revoke`: a key id (or its first 8+ hex digits) or a set number. */
export interface RevokeOnlineKeysRequest {
  key?: string;
  set?: number;
  reason?: string;
}

// ------------------------------------------------------------------ answers

/** Every refusal: the error's code, message and detail (the codes: src/service/errors.ts, src/engine/errors.ts). */
export interface ErrorBody {
  error: { code: string; message: string; detail: Record<string, unknown> };
}

/** `GET /v1/repos`. */
export interface RepositoriesResult {
  repositories: string[];
}

/** One online key set as the API lists it. */
export interface KeySetSummary {
  id: number;
  created: string;
  kind: 'derived' | 'shared';
  /** Key id per role (for the repository asked about, when derived). */
  keyids: Record<string, string>;
  revoked?: { at: string; reason: string };
}

export interface ListedKey {
  keyid: string;
  key: TufKeyJson;
}

/** `GET /v1/online-keys[?repository=R]`. */
export interface OnlineKeys {
  repository?: string;
  /** The online key set these keys belong to. */
  set?: number;
  snapshot: ListedKey[];
  timestamp: ListedKey[];
  /** The service's CI key (for service-held delegations such as `ci`). */
  ci?: ListedKey[];
  kind?: 'derived' | 'shared';
  /** Every key set (its key ids for the repository asked about, when derived). */
  sets?: KeySetSummary[];
}

/** `POST /v1/repos/<repo>/online-keys`: the keys the repository's next root should list. */
export interface NextOnlineKeys {
  /** A new set was generated (the repository's root already listed the current one). */
  generated: boolean;
  set: KeySetSummary;
  snapshot: ListedKey[];
  timestamp: ListedKey[];
  ci: ListedKey[];
}

/** `GET /v1/online-keys/usage` (admin). */
export interface OnlineKeyUsage {
  current: number;
  sets: KeySetSummary[];
  repositories: Array<{ repository: string; sets: number[]; onRevoked: boolean; onCurrent: boolean }>;
}

/** `POST /v1/online-keys/rotate` (admin). */
export interface RotateOnlineKeysResult {
  set: KeySetSummary;
}

/** `POST /v1/online-keys/revoke` (admin). */
export interface RevokeOnlineKeysResult {
  revoked: KeySetSummary;
  current: KeySetSummary;
  /** Repositories whose roots list the revoked set. */
  affected: string[];
}

export interface TagsResult extends UploadResult {
  tags: string[];
}

export interface UploadResult {
  repository: string;
  role: string;
  version: number;
  snapshotVersion: number;
  timestampVersion: number;
  unchanged: boolean;
  verification?: VerificationResult;
  warnings?: string[];
  /** A namespace root rotation (at its anchor): how many members took the new root, and which could not. */
  members?: NamespaceSync;
}

/** The namespace covering a repository (`GET /v1/namespace-of/<repo>`). */
export interface NamespaceInfo {
  /** The prefix, ending in `/`. */
  namespace: string;
  /** The anchor repository that keeps the namespace's root chain. */
  anchor: string;
  rootVersion: number;
}

/**
 * `GET /v1/namespace-members/<anchor>?after=<repo>&limit=<n>`: one page of the repositories under
 * the namespace's prefix, in name order, and which of them are its members.
 */
export interface NamespaceMembers {
  namespace: string;
  anchor: string;
  /** The anchor's current root version. */
  rootVersion: number;
  /** The members among this page's repositories (not the anchor, a sub-namespace's members or a repository with a root of its own). */
  members: string[];
  /** Repositories of this page whose metadata the service could not load: perhaps members, certainly not re-signable now. */
  unreadable: Array<{ repository: string; error: string }>;
  /** More repositories follow under the prefix: ask again with `after=<next>`. */
  next?: string;
}

export interface NamespaceSync {
  namespace: string;
  rootVersion: number;
  updated: number;
  failed: Array<{ repository: string; error: string }>;
  /** Members the service had not reached when it answered: they take the root in the background. */
  pending?: number;
}

export interface RoleStatus {
  role: string;
  version: number;
  expires: string;
  expiresInSeconds: number;
  keyids: string[];
  threshold: number;
  /** online: the service signs it (re-signed automatically); offline: the owner's keys; job: a CI job's short-lived key. */
  signedBy: 'online' | 'offline' | 'job';
}

export interface RepositoryStatus {
  repository: string;
  roles: RoleStatus[];
  tombstones: Array<{ role: string; version: number }>;
  /** Keys root or a delegation lists under the id tufoci wrote before following the TUF specification (docs/OPERATIONS.md). */
  legacyKeyIds: LegacyKeyListing[];
  /** The namespace whose root the repository's is (a member or the anchor), when it is in one. */
  namespace?: string;
}

export interface GrantInfo {
  token: string;
  repository: string;
  role: string;
  paths: string[];
  endsAt: number;
  expires: string;
}

export interface JobInfo {
  repository: string;
  role: string;
  jobRole: string;
  paths: string[];
  endsAt: number;
  expires: string;
  keyid: string;
}
