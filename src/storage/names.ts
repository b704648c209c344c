/**
 * The OCI distribution grammars the storage layer enforces before any I/O:
 * repository names, tags and digests. Refusing bad names early keeps paths on
 * disk and URLs on the wire free of anything a name could smuggle in
 * (`..`, `%2F`, `?`, uppercase that some registries fold).
 */
import { StorageError } from './storage-error.ts';

/** distribution-spec: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*` */
const REPOSITORY = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$/;
/** distribution allows 255 characters for the whole name (it rejects longer ones). */
export const MAX_REPOSITORY_LENGTH = 255;
/** distribution-spec: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}` */
/** Only sha256 is supported: it is the one algorithm every registry and TUF client here shares. */
const DIGEST = /^sha256:[a-f0-9]{64}$/;

export function isRepositoryName(name: string): boolean {
  return name.length <= MAX_REPOSITORY_LENGTH && REPOSITORY.test(name);
}

export { isTag } from '../oci/names.ts';
import { isTag } from '../oci/names.ts';

export function isDigest(reference: string): boolean {
  return DIGEST.test(reference);
}

/** Cut a name for use in an error message or detail: it may be attacker-sized. */
export function clip(value: string, max = 200): string {
  return value.length <= max ? value : `${value.slice(0, max)}…`;
}

export function assertRepositoryName(backend: string, repository: string): void {
  if (!isRepositoryName(repository)) {
    throw new StorageError(
      'INVALID_NAME',
      `repository name "${clip(repository)}" is not a valid OCI repository name (lowercase a-z 0-9 separated by . _ __ - or /, at most ${MAX_REPOSITORY_LENGTH} characters)`,
      { backend, repository: clip(repository), reference: '' },
    );
  }
}

export function assertTag(backend: string, repository: string, tag: string): void {
  if (!isTag(tag)) {
    throw new StorageError(
      'INVALID_NAME',
      `tag "${clip(tag)}" in ${repository} is not a valid OCI tag ([A-Za-z0-9_][A-Za-z0-9._-]{0,127})`,
      { backend, repository, reference: clip(tag) },
    );
  }
}

export function assertDigest(backend: string, repository: string, digest: string): void {
  if (!isDigest(digest)) {
    throw new StorageError(
      'INVALID_NAME',
      `digest "${clip(digest)}" in ${repository} is not a sha256 digest (sha256:<64 lowercase hex>)`,
      { backend, repository, reference: clip(digest) },
    );
  }
}

/** A manifest reference is a tag or a digest. */
export function assertReference(backend: string, repository: string, reference: string): void {
  if (!isTag(reference) && !isDigest(reference)) {
    throw new StorageError(
      'INVALID_NAME',
      `reference "${clip(reference)}" in ${repository} is neither an OCI tag nor a sha256 digest`,
      { backend, repository, reference: clip(reference) },
    );
  }
}
