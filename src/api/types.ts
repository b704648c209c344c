/**
 * The service's HTTP API as data: what its JSON answers hold. The service builds them
 * (src/service/repository-service.ts), the client and the CLI read them
 * (src/client/service-client.ts); this module holds types only, so naming them loads nothing.
 */
import type { LegacyKeyListing } from '../engine/legacy-keyids.ts';
import type { VerificationResult } from '../engine/signatures.ts';

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
