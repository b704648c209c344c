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
export function scopeOf(signed: SignedObject): unknown {
  return signedField(signed, SCOPE_FIELD);
}

/** A `signed` object as plain JSON, or as a model whose extension fields are `unrecognizedFields`. */
type SignedObject = { [SCOPE_FIELD]?: unknown } | { unrecognizedFields?: Record<string, unknown> } | Record<string, unknown>;

/** An extension field (`x-tufoci-…`) of a `signed` object, plain JSON or model. */
function signedField(signed: SignedObject, name: string): unknown {
  const direct = (signed as Record<string, unknown>)[name];
  if (direct !== undefined) return direct;
  return (signed as { unrecognizedFields?: Record<string, unknown> }).unrecognizedFields?.[name];
}

/**
 * Namespaces (docs/FORMAT.md §13). A root whose scope is a prefix `P/` is the root of the
 * namespace P: one root for every repository under P. The namespace itself is kept as the TUF
 * repository of its anchor, the reserved repository name `P/tufoci-namespace` (its root chain is
 * the namespace's); every member repository R under P has a TUF repository of its own in `R/tuf`
 * (its own timestamp, snapshot and targets, so that members never share a writer and a client
 * reads only R's files) and no root files: its roots are the namespace's, read at the anchor, so
 * that one rotation is one write for every member.
 *
 * Inside a namespace:
 * - a target path is the repository name and the tag, `R/<tag>`, so that one member's targets can
 *   never answer for another member's tag, even in a client that knows nothing of tufoci;
 * - R's top-level targets, snapshot and timestamp carry `"x-tufoci-scope": "R"` and
 *   `"x-tufoci-namespace": "P/"` (signed), which tufoci's client checks against the repository it
 *   verifies and the scope of the root it trusts, before it trusts them (the same keys may sign
 *   for a namespace and a sub-namespace);
 * - the online keys are the namespace's (derived for `P/`), since one root lists them.
 */
export const NAMESPACE_ANCHOR = 'tufoci-namespace';

/** The field naming the namespace in a member's targets, snapshot and timestamp. */
export const NAMESPACE_FIELD = 'x-tufoci-namespace';

/** The fields a member's targets, snapshot and timestamp carry. */
export function memberFields(namespace: string, repository: string): Record<string, string> {
  return { [NAMESPACE_FIELD]: namespace, [SCOPE_FIELD]: repository };
}

/** The namespace a member file's `signed` object names (undefined when none). */
export function namedNamespace(signed: SignedObject): unknown {
  return signedField(signed, NAMESPACE_FIELD);
}

/** Whether a member file's `signed` object names `repository` and `namespace` (memberFields). */
export function namesMember(signed: SignedObject, repository: string, namespace: string): boolean {
  return signedField(signed, SCOPE_FIELD) === repository && signedField(signed, NAMESPACE_FIELD) === namespace;
}

/** A well-formed namespace scope (a prefix ending in `/`). */
export function isNamespaceScope(scope: unknown): scope is string {
  return isValidScope(scope) && scope.endsWith('/');
}

/** The anchor repository that keeps namespace `prefix`'s root chain. */
export function namespaceAnchor(prefix: string): string {
  return `${prefix}${NAMESPACE_ANCHOR}`;
}

/** Whether `repository` is a namespace's anchor; its namespace prefix if so. */
export function anchorPrefix(repository: string): string | undefined {
  const i = repository.lastIndexOf('/');
  return i > 0 && repository.slice(i + 1) === NAMESPACE_ANCHOR ? repository.slice(0, i + 1) : undefined;
}

/** The namespace prefix a root (its `signed` object) makes `repository` part of, or undefined (a repository of its own). */
export function namespaceOf(rootSigned: SignedObject, repository: string): string | undefined {
  const scope = scopeOf(rootSigned);
  return isNamespaceScope(scope) && scopeCovers(scope, repository) ? scope : undefined;
}

/** The prefix every target path of `repository` carries: `R/` in a namespace, none otherwise. */
export function targetPrefix(rootSigned: SignedObject, repository: string | undefined): string {
  return repository !== undefined && namespaceOf(rootSigned, repository) !== undefined ? `${repository}/` : '';
}

/** Whose online keys sign `repository`'s snapshot and timestamp: its namespace's, else its own. */
export function onlineKeyOwner(rootSigned: SignedObject, repository: string): string {
  return namespaceOf(rootSigned, repository) ?? repository;
}

/**
 * Moving a repository with a root of its own into a namespace (docs/OPERATIONS.md): its owner
 * signs one last root of the repository's own chain naming the namespace root that succeeds it,
 *
 *   "x-tufoci-successor": { "namespace": "wabbit-networks/", "version": 3, "sha256": "<hex>" }
 *
 * (the root file `3.root.json` of the namespace's anchor, by its SHA-256). Signed by the
 * repository's root keys like any rotation, it is the repository owner's word that the
 * namespace's root now vouches for the repository: tufoci's clients pinned to the repository's
 * own root take it, fetch that namespace root by hash and go on as members.
 */
export const SUCCESSOR_FIELD = 'x-tufoci-successor';

export interface Successor {
  namespace: string;
  version: number;
  sha256: string;
}

/** The successor a root (its `signed` object) names for `repository`; undefined when none; throws when malformed. */
export function successorOf(rootSigned: SignedObject, repository: string): Successor | undefined {
  const raw = signedField(rootSigned, SUCCESSOR_FIELD);
  if (raw === undefined) return undefined;
  const s = raw as Partial<Successor>;
  if (
    typeof raw !== 'object' ||
    raw === null ||
    Object.keys(raw).length !== 3 ||
    !isNamespaceScope(s.namespace) ||
    !scopeCovers(s.namespace, repository) ||
    !Number.isSafeInteger(s.version) ||
    (s.version as number) < 1 ||
    typeof s.sha256 !== 'string' ||
    !/^[0-9a-f]{64}$/.test(s.sha256)
  ) {
    throw new TypeError(`${SUCCESSOR_FIELD} must be {"namespace": "<prefix>/" covering ${repository}, "version": <root version>, "sha256": "<64 hex>"}`);
  }
  return { namespace: s.namespace, version: s.version as number, sha256: s.sha256 };
}

/** The namespace `repository` is a member of under this root (its anchor is not a member), or undefined. */
export function memberOf(rootSigned: SignedObject, repository: string): string | undefined {
  const ns = namespaceOf(rootSigned, repository);
  return ns !== undefined && anchorPrefix(repository) !== ns ? ns : undefined;
}
