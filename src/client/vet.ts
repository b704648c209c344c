/**
 * Checks on metadata bytes as a store serves them, before tuf-js reads them.
 *
 * tuf-js parses with JSON.parse and dates with Date.parse, so on its own it
 * would accept a file that other TUF clients read differently (duplicate
 * member names, `3.0`, `2027-02-30`) and it knows nothing of tufoci's scope
 * binding. A hostile registry can serve any bytes, so the client applies the
 * same rules as the service's upload path (engine/strict-json.ts,
 * engine/parse.ts `parseExpires`, engine/scope.ts):
 * - every metadata file: the strict JSON reader and a real calendar `expires`;
 * - every root (the pin, the saved one, each one fetched): a scope, when named,
 *   must cover the repository being verified. A root without a scope (written
 *   before scope binding) is accepted only while every root trusted so far
 *   lacks one too: once a chain is scoped it can never lose its scope.
 */
import { parseMetadataFileName } from '../engine/names.ts';
import { parseExpires } from '../engine/envelope.ts';
import { NAMESPACE_FIELD, SCOPE_FIELD, isValidScope, scopeCovers } from '../engine/scope.ts';
import { parseStrictJson } from '../engine/strict-json.ts';
import { TufociError } from '../errors.ts';

export type VetErrorCode = 'AMBIGUOUS_METADATA' | 'SCOPE_MISMATCH';
export class VetError extends TufociError<VetErrorCode> {}

function signedOf(json: unknown): Record<string, unknown> | undefined {
  const signed = typeof json === 'object' && json !== null ? (json as Record<string, unknown>)['signed'] : undefined;
  return typeof signed === 'object' && signed !== null && !Array.isArray(signed) ? (signed as Record<string, unknown>) : undefined;
}

/** Strict JSON and a real `expires`; returns the `signed` object when there is one. */
function vetBytes(label: string, bytes: Uint8Array): Record<string, unknown> | undefined {
  let json: unknown;
  try {
    json = parseStrictJson(bytes, { label });
  } catch (cause) {
    throw new VetError('AMBIGUOUS_METADATA', `${cause instanceof Error ? cause.message : String(cause)}: refused, TUF clients could read these bytes differently`, {
      detail: { file: label },
      cause,
    });
  }
  const signed = signedOf(json);
  const expires = signed?.['expires'];
  if (typeof expires === 'string' && Number.isNaN(parseExpires(expires))) {
    throw new VetError('AMBIGUOUS_METADATA', `${label}: expires ${JSON.stringify(expires.slice(0, 40))} is not a real UTC instant: refused`, { detail: { file: label } });
  }
  return signed;
}

/** Whether a root names a scope; refuses one that does not cover `repository`. */
function vetRootScope(label: string, signed: Record<string, unknown> | undefined, repository: string): boolean {
  const scope = signed?.[SCOPE_FIELD];
  if (scope === undefined) return false;
  if (!isValidScope(scope) || !scopeCovers(scope, repository)) {
    throw new VetError('SCOPE_MISMATCH', `${label} vouches for ${JSON.stringify(scope).slice(0, 120)}, not for ${repository}: another repository's trust served as this one's`, {
      detail: { file: label, scope: typeof scope === 'string' ? scope.slice(0, 255) : null, repository },
    });
  }
  return true;
}

/** A root's bytes (the pin, the saved one): strict, and its scope (if named) covering `repository`; whether it names one. */
export function vetRoot(label: string, bytes: Uint8Array, repository: string): boolean {
  return vetRootScope(label, vetBytes(label, bytes), repository);
}

/**
 * The vetter for one refresh of `repository`, starting from a trusted root
 * that `scoped` says names a scope (or not).
 */
export function metadataVetter(repository: string, scoped: boolean, namespace?: string): (fileName: string, bytes: Uint8Array) => void {
  const scopes = rootScopeChain(repository, scoped);
  return (fileName, bytes) => {
    const signed = vetBytes(fileName, bytes);
    const role = parseMetadataFileName(fileName)?.role;
    if (namespace !== undefined) vetMemberScope(fileName, role, signed, repository, namespace);
    if (role !== 'root') return;
    scopes(fileName, signed);
  };
}

/** Roles that name the member they are for, in a namespace (scope.ts). */
const MEMBER_NAMED = new Set(['timestamp', 'snapshot', 'targets']);

/**
 * In a namespace, one set of online keys signs every member's timestamp and snapshot and one set
 * of targets keys every member's top-level targets: each names its member (`x-tufoci-scope`),
 * and a file naming another (or none) is another member's served as this one's.
 */
function vetMemberScope(label: string, role: string | undefined, signed: Record<string, unknown> | undefined, repository: string, namespace: string): void {
  if (role === undefined || !MEMBER_NAMED.has(role)) return;
  const named = signed?.[SCOPE_FIELD];
  if (named !== repository) {
    throw new VetError('SCOPE_MISMATCH', `${label} is for ${named === undefined ? 'no named repository' : JSON.stringify(named).slice(0, 120)}, not for ${repository}: another namespace member's metadata served as this one's`, {
      detail: { file: label, scope: typeof named === 'string' ? named.slice(0, 255) : null, repository },
    });
  }
  const ns = signed?.[NAMESPACE_FIELD];
  if (ns !== namespace) {
    throw new VetError('SCOPE_MISMATCH', `${label} is ${repository}'s in namespace ${ns === undefined ? '(none named)' : JSON.stringify(ns).slice(0, 120)}, not in ${namespace}, the namespace whose root this client trusts: another scope's metadata served as this one's`, {
      detail: { file: label, namespace: typeof ns === 'string' ? ns.slice(0, 255) : null, trusted: namespace, repository },
    });
  }
}

/**
 * For the client core, which reads every file strictly and checks root scopes itself: in a
 * namespace, the member check alone, on the files that name their member.
 */
export function memberVetter(repository: string, namespace: string): (fileName: string, bytes: Uint8Array) => void {
  return (fileName, bytes) => {
    const role = parseMetadataFileName(fileName)?.role;
    if (role === undefined || !MEMBER_NAMED.has(role)) return;
    vetMemberScope(fileName, role, vetBytes(fileName, bytes), repository, namespace);
  };
}

/**
 * The scope rule along one root walk of `repository`, starting from a trusted root that `scoped`
 * says names a scope: each next root's scope (if named) must cover the repository, and once a
 * root names one, every later root must too. Call it with each root's `signed` object, in order.
 */
export function rootScopeChain(repository: string, scoped: boolean): (label: string, signed: Record<string, unknown> | undefined) => void {
  let requireScope = scoped;
  return (label, signed) => {
    const has = vetRootScope(label, signed, repository);
    if (!has && requireScope) {
      throw new VetError('SCOPE_MISMATCH', `${label} names no scope, but the root trusted before it is bound to ${repository}: refused (a scope is never dropped)`, {
        detail: { file: label, repository },
      });
    }
    requireScope ||= has;
  };
}
