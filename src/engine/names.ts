/**
 * Names the engine accepts. Every TUF file becomes an OCI tag (`N.role.json`),
 * and every target path is an OCI tag of the image repository, so both are
 * restricted to the OCI tag grammar `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
 * Delegated role names stay short enough that `<10-digit version>.<role>.json`
 * still fits in 128 characters.
 */
import { EngineError } from './errors.ts';
import { isTag } from '../oci/names.ts';

export const TOP_LEVEL_ROLES = ['root', 'targets', 'snapshot', 'timestamp'] as const;
export type TopLevelRole = (typeof TOP_LEVEL_ROLES)[number];

const ROLE_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$/;

export function isTopLevelRole(name: string): name is TopLevelRole {
  return (TOP_LEVEL_ROLES as readonly string[]).includes(name);
}

export function isValidDelegatedRoleName(name: string): boolean {
  return ROLE_NAME.test(name) && !isTopLevelRole(name);
}

export function assertDelegatedRoleName(name: string): void {
  if (!isValidDelegatedRoleName(name)) {
    throw new EngineError(
      'BAD_ROLE_NAME',
      `role name "${name.slice(0, 120)}" is not allowed: use 1-100 of A-Z a-z 0-9 _ . - (not starting with . or -), and not root/targets/snapshot/timestamp`,
      { detail: { role: name.slice(0, 200) } },
    );
  }
}

/**
 * A target path: the tag, or in a namespace (scope.ts) `<repository>/<tag>` (`prefix` is then
 * `<repository>/`).
 */
export function isValidTargetPath(path: string, prefix = ''): boolean {
  return path.startsWith(prefix) && isTag(path.slice(prefix.length));
}

export { metadataFileName, parseMetadataFileName, TIMESTAMP_FILE_NAME } from '../oci/names.ts';
