/**
 * The scope a TUF repository vouches for, bound into its signed root.
 *
 * Root metadata names no repository, so when one owner signs the roots of
 * two repositories with the same key, a registry could serve repository A's
 * root chain (and with it A's timestamp, snapshot and targets) as B's. tufoci
 * writes the scope into every root's `signed` object:
 *
 *   "x-tufoci-scope": "wabbit-networks/net-monitor"   one repository
 *   "x-tufoci-scope": "wabbit-networks/"              a namespace prefix
 *
 * A scope ending in `/` covers every repository name below that prefix;
 * any other scope covers exactly that repository name. The field is signed
 * with the rest of the root, so it cannot be changed without the root keys.
 * TUF clients that do not know the field keep it as an unrecognized field
 * (it is part of the canonical bytes they verify) and ignore it; tufoci's
 * service and client check it (docs/FORMAT.md, "Scope").
 */
export const SCOPE_FIELD = 'x-tufoci-scope';

const NAME = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$/;

/** A well-formed scope: an OCI repository name, or one followed by `/` (a namespace). */
export function isValidScope(scope: unknown): scope is string {
  if (typeof scope !== 'string' || scope.length === 0 || scope.length > 255) return false;
  return NAME.test(scope.endsWith('/') ? scope.slice(0, -1) : scope);
}

/** Does `scope` vouch for repository `repository`? */
export function scopeCovers(scope: string, repository: string): boolean {
  return scope.endsWith('/') ? repository.startsWith(scope) && repository.length > scope.length : scope === repository;
}

/** The scope a root's `signed` object (plain JSON or model fields) names; undefined when it names none. */
export function scopeOf(signed: { [SCOPE_FIELD]?: unknown } | { unrecognizedFields?: Record<string, unknown> } | Record<string, unknown>): unknown {
  const direct = (signed as Record<string, unknown>)[SCOPE_FIELD];
  if (direct !== undefined) return direct;
  return (signed as { unrecognizedFields?: Record<string, unknown> }).unrecognizedFields?.[SCOPE_FIELD];
}
