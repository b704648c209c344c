/**
 * Verifying uploads against the trusted state of a repository.
 *
 * Invariants (each check names its TUF client-workflow counterpart where one exists):
 * - Nothing is trusted from the upload until its signatures meet the threshold
 *   of the *trusted* delegating role, counting each distinct key once (5.3.4/5.6.3).
 * - Versions move by exactly one: below or equal to the trusted version is a
 *   rollback, above trusted + 1 a skip (5.3.5/5.6.4 are "not lower"; a writer can be stricter).
 * - An upload must be unexpired at `now` and expire within the policy maximum (5.3.10/5.6.5).
 * - A delegated upload is only trusted while every role on its delegation chain
 *   is unexpired: an expired delegator may have been superseded by one that
 *   revoked this key (freeze protection for writers).
 * - Every target lies inside the paths (or the hash bin) of every delegation on
 *   its chain; every target entry is an OCI manifest descriptor.
 * - Keys introduced by an upload (root keys, delegation keys) are of an allowed
 *   type, parse, and carry key ids equal to the hash of the key per the TUF
 *   specification: never the legacy id (legacy-keyids.ts), which stored metadata
 *   accepted before may still use.
 * - The engine reads no clock: `now` (ms since the epoch) is an argument.
 * - Each function returns a *new* RepoState; the one passed in is unchanged.
 */
import type { Metadata, Root, Targets } from '@tufjs/models';
import type { Policy, RoleClass, RolePolicy } from '../policy/policy.ts';
import { computeKeyId, parsePublicKey, type TufKeyJson } from '../keys/tuf-key.ts';
import { canonicalSignedBytes } from './canonical.ts';
import { isLegacyKeyId } from './legacy-keyids.ts';
import { NAMESPACE_FIELD, SCOPE_FIELD, anchorPrefix, isValidScope, namedNamespace, namesMember, namespaceOf, scopeCovers, scopeOf, targetPrefix } from './scope.ts';
import { EngineError } from './errors.ts';
import { MANIFEST_MEDIA_TYPES } from '../oci/media-types.ts';
import { signedToJSON } from './models.ts';
import { assertDelegatedRoleName, isValidTargetPath } from './names.ts';
import { BINS_FIELD } from './build.ts';
import { checkBoundBins } from './bound-bins.ts';
import { binsHint, expiresAt, limitsFromPolicy, parseMetadata, type Parsed } from './parse.ts';
import { asJson, authorizedIdentities, describeVerification, verifyThreshold, type KeyMap, type SignatureEntry, type VerificationResult } from './signatures.ts';
import { currentVersion, delegationChain, delegationsOf, withTargets, type DelegationEntry, type RepoState } from './state.ts';

export interface UploadContext {
  now: number;
  policy: Policy;
  /**
   * The repository the upload is for. A root must name a scope covering it (scope.ts); in a
   * namespace, target paths are `<repository>/<tag>` and top-level targets names the repository.
   * Omitted only by engine-level callers that bind no repository.
   */
  repository?: string;
}

export interface RootContext extends UploadContext {
  /** Public keys of the online signers the service holds. */
  onlineKeys: readonly TufKeyJson[];
  /** Online keys known compromised: a new root that lists any of them is refused. */
  revokedKeys?: readonly TufKeyJson[];
}

export interface TargetsUploadResult {
  state: RepoState;
  role: string;
  version: number;
  verification: VerificationResult;
}

export interface RootUploadResult {
  state: RepoState;
  version: number;
  verification: { previous: VerificationResult | undefined; current: VerificationResult };
  /** Roles whose current metadata is not signed by the keys the new root names. */
  warnings: string[];
}

export { MANIFEST_MEDIA_TYPES };

const SHA256_HEX = /^[0-9a-f]{64}$/;
const MINUTE = 60_000;

function refuseThreshold(result: VerificationResult, extra: Record<string, unknown> = {}): never {
  throw new EngineError('THRESHOLD_NOT_MET', describeVerification(result), { detail: { verification: result, ...extra } });
}

function checkVersion(label: string, got: number, trusted: number): void {
  if (got <= trusted) {
    throw new EngineError('VERSION_ROLLBACK', `${label} version ${got} is not above the trusted version ${trusted}`, {
      detail: { role: label, version: got, current: trusted },
    });
  }
  if (got !== trusted + 1) {
    throw new EngineError('VERSION_SKIP', `${label} version ${got} skips ahead; expected ${trusted + 1}`, {
      detail: { role: label, version: got, current: trusted, expected: trusted + 1 },
    });
  }
}

function checkExpiry(label: string, md: Metadata<Root | Targets>, now: number, rp: RolePolicy): void {
  const exp = expiresAt(md);
  if (exp <= now) {
    throw new EngineError('EXPIRED', `${label} expired at ${md.signed.expires}`, { detail: { role: label, expires: md.signed.expires } });
  }
  const limit = now + rp.expiresMaxMinutes * MINUTE;
  if (exp > limit) {
    throw new EngineError('EXPIRY_TOO_FAR', `${label} expires ${md.signed.expires}, later than the policy allows (${new Date(limit).toISOString()})`, {
      detail: { role: label, expires: md.signed.expires, maxMinutes: rp.expiresMaxMinutes },
    });
  }
}

/** Keys introduced by an upload: allowed type, parseable, key id = hash of the key. */
function checkKeys(label: string, keys: KeyMap, policy: Policy): void {
  const entries = Object.entries(keys);
  for (const [keyid, key] of entries) {
    const json: TufKeyJson =
      'keyVal' in key ? { keytype: key.keyType, scheme: key.scheme, keyval: { public: key.keyVal['public'] ?? '' } } : key;
    if (!policy.keyTypes.some((t) => t.keytype === json.keytype && t.scheme === json.scheme)) {
      throw new EngineError('UNSUPPORTED_KEY', `${label}: key ${keyid.slice(0, 12)} has type ${json.keytype}/${json.scheme}, not allowed by policy`, {
        detail: { role: label, keyid, keytype: json.keytype, scheme: json.scheme },
      });
    }
    if ('keyVal' in key && Object.keys(key.unrecognizedFields ?? {}).length > 0) {
      throw new EngineError('BAD_KEY', `${label}: key ${keyid.slice(0, 12)} carries fields other than keytype, scheme, keyval`, {
        detail: { role: label, keyid },
      });
    }
    try {
      parsePublicKey(keyid, json);
    } catch (cause) {
      throw new EngineError('BAD_KEY', `${label}: key ${keyid.slice(0, 12)} cannot be parsed`, { detail: { role: label, keyid }, cause });
    }
    const expected = computeKeyId(json);
    if (expected !== keyid) {
      // Stored metadata may still list keys under the id tufoci wrote before following the
      // specification (legacy-keyids.ts); a new upload may not, so no new wrong id is written.
      const message = isLegacyKeyId(keyid, json)
        ? `${label}: key id ${keyid} is the id tufoci wrote before it followed the TUF specification; list this key as ${expected}`
        : `${label}: key id ${keyid.slice(0, 12)} is not the SHA-256 of its key; list this key as ${expected}`;
      throw new EngineError('BAD_KEY', message, { detail: { role: label, keyid, expected } });
    }
  }
}

/** A role's key list: every key id known, threshold reachable with distinct keys, within policy. */
function checkRoleKeys(label: string, role: { keyIDs: readonly string[]; threshold: number }, keys: KeyMap, rp: RolePolicy, policy: Policy): void {
  if (role.keyIDs.length > policy.limits.maxKeysPerRole) {
    throw new EngineError('POLICY_VIOLATION', `${label} lists ${role.keyIDs.length} keys, above the limit of ${policy.limits.maxKeysPerRole}`, {
      detail: { role: label },
    });
  }
  const { byIdentity, problems } = authorizedIdentities(role, keys);
  const unknown = problems.find((p) => p.reason === 'unknown-key');
  if (unknown) {
    throw new EngineError('BAD_DELEGATION', `${label} names key ${unknown.keyid.slice(0, 12)} that is not in the key list`, {
      detail: { role: label, keyid: unknown.keyid },
    });
  }
  if (new Set(role.keyIDs).size !== role.keyIDs.length) {
    throw new EngineError('BAD_DELEGATION', `${label} lists a key id twice`, { detail: { role: label } });
  }
  if (!Number.isSafeInteger(role.threshold) || role.threshold < rp.minThreshold) {
    throw new EngineError('POLICY_VIOLATION', `${label} threshold ${role.threshold} is below the policy minimum ${rp.minThreshold}`, {
      detail: { role: label, threshold: role.threshold, minThreshold: rp.minThreshold },
    });
  }
  if (byIdentity.size < role.threshold) {
    throw new EngineError(
      'POLICY_VIOLATION',
      `${label} threshold ${role.threshold} cannot be met: only ${byIdentity.size} distinct key(s) are listed`,
      { detail: { role: label, threshold: role.threshold, distinctKeys: byIdentity.size } },
    );
  }
}

function checkRootContent(root: Metadata<Root>, ctx: RootContext): void {
  const signed = root.signed;
  if (!signed.consistentSnapshot) {
    throw new EngineError('POLICY_VIOLATION', 'root must set consistent_snapshot: true (every file is a versioned OCI tag)', {
      detail: { role: 'root' },
    });
  }
  for (const name of ['root', 'targets', 'snapshot', 'timestamp'] as const) {
    if (!signed.roles[name]) throw new EngineError('MALFORMED', `root does not define the ${name} role`, { detail: { role: 'root' } });
  }
  if (Object.keys(signed.roles).length !== 4) {
    throw new EngineError('MALFORMED', 'root defines roles other than root, targets, snapshot and timestamp', { detail: { role: 'root' } });
  }
  checkKeys('root', signed.keys, ctx.policy);
  for (const name of ['root', 'targets', 'snapshot', 'timestamp'] as const) {
    checkRoleKeys(`root.roles.${name}`, signed.roles[name] as { keyIDs: string[]; threshold: number }, signed.keys, ctx.policy.roles[name], ctx.policy);
  }
  // A root that still lists a revoked (compromised) online key would keep trusting it.
  if (ctx.revokedKeys?.length) {
    const revoked = new Set(ctx.revokedKeys.map((k) => parsePublicKey(computeKeyId(k), k).identity));
    for (const [keyid, key] of Object.entries(signed.keys)) {
      if (revoked.has(parsePublicKey(keyid, asJson(key)).identity)) {
        throw new EngineError('ONLINE_KEY_REVOKED', `root lists key ${keyid.slice(0, 12)}, an online key the service revoked as compromised; use the keys from GET /v1/online-keys`, {
          detail: { role: 'root', keyid },
        });
      }
    }
  }
  // The online roles must be signable by the keys the service holds, or the repository would freeze.
  const online = new Set<string>();
  for (const k of ctx.onlineKeys) online.add(parsePublicKey(computeKeyId(k), k).identity);
  for (const name of ['snapshot', 'timestamp'] as const) {
    const role = signed.roles[name] as { keyIDs: string[]; threshold: number };
    const { byIdentity } = authorizedIdentities(role, signed.keys);
    const held = [...byIdentity.keys()].filter((id) => online.has(id)).length;
    if (held < role.threshold) {
      throw new EngineError(
        'ONLINE_KEYS_MISSING',
        `root's ${name} role needs ${role.threshold} signature(s) but names only ${held} key(s) held by this service; use the keys from GET /v1/online-keys`,
        { detail: { role: name, threshold: role.threshold, held } },
      );
    }
  }
  checkExpiry('root', root, ctx.now, ctx.policy.roles.root);
}

/**
 * Verify a new root: version = trusted + 1, signed by a threshold of the trusted
 * root's root keys *and* of its own (5.3.4), well-formed per policy.
 * With no trusted state (repository creation) the root must be version 1 and self-signed.
 */
export function verifyRootUpload(
  state: RepoState | undefined,
  bytes: Uint8Array,
  ctx: RootContext,
  opts: Pick<TargetsOptions, 'onParsed'> = {},
): RootUploadResult {
  const parsed = parseMetadata('root', bytes, ctx.policy.roles.root.maxBytes, 'root', limitsFromPolicy(ctx.policy));
  const root = parsed.md;
  opts.onParsed?.(root.signed.version);
  let previous: VerificationResult | undefined;
  if (state) {
    const trusted = state.root.md.signed;
    checkVersion('root', root.signed.version, trusted.version);
    const trustedRole = trusted.roles['root'];
    if (!trustedRole) throw new EngineError('INCONSISTENT', 'trusted root has no root role', { detail: { role: 'root' } });
    previous = verifyThreshold('root (trusted keys)', parsed.signedBytes, parsed.signatures, trustedRole, trusted.keys);
    if (!previous.ok) refuseThreshold(previous, { which: 'trusted' });
  } else {
    checkVersion('root', root.signed.version, 0);
  }
  checkRootContent(root, ctx);
  if (ctx.repository !== undefined) checkScope(root, ctx.repository, state?.root.md);
  const ownRole = root.signed.roles['root'];
  if (!ownRole) throw new EngineError('MALFORMED', 'root does not define the root role', { detail: { role: 'root' } });
  const current = verifyThreshold('root (new keys)', parsed.signedBytes, parsed.signatures, ownRole, root.signed.keys);
  if (!current.ok) refuseThreshold(current, { which: 'new' });

  const record = { md: root, bytes };
  const warnings: string[] = [];
  let next: RepoState;
  if (state) {
    next = { ...state, root: record };
    const targets = state.targets.get('targets');
    const tRole = root.signed.roles['targets'];
    if (targets && tRole) {
      const r = verifyThreshold('targets', Buffer.from(canonicalOf(targets.md)), signaturesOf(targets.md), tRole, root.signed.keys);
      if (!r.ok) warnings.push('targets.json is not signed by the targets keys of the new root: upload a new targets version signed by them');
    }
  } else {
    next = { root: record, targets: new Map(), tombstones: new Map(), snapshot: undefined, timestamp: undefined };
  }
  return { state: next, version: root.signed.version, verification: { previous, current }, warnings };
}

/**
 * A root uploaded for `repository` names a scope covering it: the repository itself, or the
 * namespace it is in (the namespace's anchor and its members keep the namespace's root chain).
 */
function checkScope(root: Metadata<Root>, repository: string, previous: Metadata<Root> | undefined): void {
  const scope = scopeOf(root.signed);
  if (scope === undefined) {
    throw new EngineError('SCOPE_MISSING', `root ${root.signed.version} names no scope; sign it with "${SCOPE_FIELD}": "${repository}" (tufoci init and rotate root add it)`, {
      detail: { role: 'root', repository, field: SCOPE_FIELD },
    });
  }
  if (!isValidScope(scope) || !scopeCovers(scope, repository)) {
    throw new EngineError('SCOPE_MISMATCH', `root ${root.signed.version} vouches for ${JSON.stringify(scope).slice(0, 120)}, not for ${repository}`, {
      detail: { role: 'root', repository, scope: typeof scope === 'string' ? scope.slice(0, 255) : null },
    });
  }
  // A scoped chain keeps its scope: a repository's root never becomes a namespace's, nor the reverse.
  const before = previous ? scopeOf(previous.signed) : undefined;
  if (before !== undefined && before !== scope) {
    throw new EngineError('SCOPE_MISMATCH', `root ${root.signed.version} vouches for ${JSON.stringify(scope).slice(0, 120)}, but the trusted root for ${JSON.stringify(before).slice(0, 120)}; a root's scope never changes`, {
      detail: { role: 'root', repository, scope: scope.slice(0, 255), trustedScope: typeof before === 'string' ? before.slice(0, 255) : null },
    });
  }
}

/**
 * In a namespace, a member's top-level targets names the member (`x-tufoci-scope`), so that the
 * namespace's targets keys, which sign every member's, cannot have one member's served as another's.
 */
function checkTargetsScope(state: RepoState, role: string, md: Metadata<Targets>, repository: string | undefined): void {
  const ns = repository === undefined ? undefined : namespaceOf(state.root.md.signed, repository);
  if (role !== 'targets' || repository === undefined || ns === undefined) return;
  if (!namesMember(md.signed, repository, ns)) {
    const named = scopeOf(md.signed);
    const namedNs = namedNamespace(md.signed);
    const missing = named === undefined || namedNs === undefined;
    throw new EngineError(missing ? 'SCOPE_MISSING' : 'SCOPE_MISMATCH', `targets ${md.signed.version} of ${repository} must name its repository and namespace: "${SCOPE_FIELD}": "${repository}", "${NAMESPACE_FIELD}": "${ns}"${missing ? '' : ` (it names ${JSON.stringify(named).slice(0, 120)} in ${JSON.stringify(namedNs).slice(0, 120)})`}`, {
      detail: { role, repository, namespace: ns, field: SCOPE_FIELD },
    });
  }
}

function canonicalOf(md: Metadata<Targets>): Buffer {
  return canonicalSignedBytes(signedToJSON(md.signed));
}
function signaturesOf(md: Metadata<Targets>): Array<{ keyid: string; sig: string }> {
  return Object.values(md.signatures).map((s) => ({ keyid: s.keyID, sig: s.sig }));
}

/**
 * The checks every listed target of `role` must pass: a valid OCI tag inside every delegation of
 * `chain`, a manifest length, exactly one sha256, an OCI/Docker manifest media type; at most
 * `policy.limits.maxTargetsPerRole` of them.
 */
export function checkTargetEntries(role: string, targets: Targets, chain: ReturnType<typeof delegationChain>, policy: Policy, prefix = ''): void {
  const entries = Object.entries(targets.targets);
  if (entries.length > policy.limits.maxTargetsPerRole) {
    throw new EngineError('POLICY_VIOLATION', `${role} lists ${entries.length} targets, above the limit of ${policy.limits.maxTargetsPerRole}; ${binsHint(role)}`, {
      detail: { role, count: entries.length, limit: policy.limits.maxTargetsPerRole },
    });
  }
  for (const [path, t] of entries) {
    const detail = { role, target: path.slice(0, 200) };
    if (!isValidTargetPath(path, prefix)) {
      throw new EngineError('BAD_TARGET', prefix ? `${role}: target "${path.slice(0, 130)}" is not ${prefix}<tag> (in a namespace a target names its repository and an OCI tag)` : `${role}: target "${path.slice(0, 130)}" is not a valid OCI tag`, { detail });
    }
    for (const d of chain) {
      if (!d.covers(path)) {
        throw new EngineError('PATH_NOT_DELEGATED', `${role}: target "${path}" is outside the paths ${d.parent} delegates`, {
          detail: { ...detail, delegator: d.parent },
        });
      }
    }
    if (!Number.isSafeInteger(t.length) || t.length <= 0 || t.length > policy.limits.maxManifestBytes) {
      throw new EngineError('BAD_TARGET', `${role}: target "${path}" length must be 1..${policy.limits.maxManifestBytes} (the manifest size)`, {
        detail,
      });
    }
    const algs = Object.keys(t.hashes);
    const sha = t.hashes['sha256'];
    if (algs.length !== 1 || sha === undefined || !SHA256_HEX.test(sha)) {
      throw new EngineError('BAD_TARGET', `${role}: target "${path}" needs exactly hashes.sha256, 64 lowercase hex (the manifest digest)`, {
        detail,
      });
    }
    const mediaType = t.custom['mediaType'];
    if (typeof mediaType !== 'string' || !MANIFEST_MEDIA_TYPES.includes(mediaType)) {
      throw new EngineError('BAD_TARGET', `${role}: target "${path}" needs custom.mediaType, one of the OCI/Docker manifest media types`, {
        detail: { ...detail, mediaType: typeof mediaType === 'string' ? mediaType.slice(0, 100) : null },
      });
    }
  }
}

function checkDelegations(state: RepoState, role: string, targets: Targets, depth: number, policy: Policy): void {
  const d = targets.delegations;
  if (!d) return;
  if (depth >= policy.limits.maxDelegationDepth) {
    throw new EngineError('BAD_DELEGATION', `${role} is ${depth} levels deep and may not delegate further (limit ${policy.limits.maxDelegationDepth})`, {
      detail: { role },
    });
  }
  checkKeys(`${role}.delegations`, d.keys, policy);
  const names = Object.keys(d.roles ?? {});
  if (names.length > policy.limits.maxDelegationsPerRole) {
    throw new EngineError('POLICY_VIOLATION', `${role} delegates to ${names.length} roles, above the limit of ${policy.limits.maxDelegationsPerRole}`, {
      detail: { role },
    });
  }
  const claim = (name: string): void => {
    if (name === role) throw new EngineError('BAD_DELEGATION', `${role} delegates to itself`, { detail: { role } });
    const others = delegationsOf(state, name).filter((e) => e.parent !== role);
    if (others.length > 0) {
      throw new EngineError('BAD_DELEGATION', `"${name}" is already delegated by ${others[0]?.parent}`, { detail: { role, delegated: name } });
    }
  };
  for (const name of names) {
    try {
      assertDelegatedRoleName(name);
    } catch (e) {
      if (e instanceof EngineError) throw new EngineError('BAD_ROLE_NAME', `${role} delegates to an invalid name: ${e.message}`, { detail: e.detail, cause: e });
      throw e;
    }
    const r = d.roles?.[name];
    if (!r) continue;
    if ((r.paths === undefined) === (r.pathHashPrefixes === undefined)) {
      throw new EngineError('BAD_DELEGATION', `${role} → ${name}: exactly one of paths or path_hash_prefixes is required`, { detail: { role, delegated: name } });
    }
    checkRoleKeys(`${role} → ${name}`, r, d.keys, policy.roles.delegated, policy);
    const bins = r.unrecognizedFields?.[BINS_FIELD];
    if (bins !== undefined && (typeof bins !== 'number' || !Number.isSafeInteger(bins) || bins < 2 || bins > policy.bins.max || (bins & (bins - 1)) !== 0)) {
      throw new EngineError('BAD_DELEGATION', `${role} → ${name}: ${BINS_FIELD} must be a power of two from 2 to ${policy.bins.max}`, { detail: { role, delegated: name } });
    }
    claim(name);
  }
  const s = d.succinctRoles;
  if (s) {
    if (names.length > 0) {
      throw new EngineError('BAD_DELEGATION', `${role} mixes succinct hash bins with explicit roles`, { detail: { role } });
    }
    if (s.numberOfBins > policy.bins.max) {
      throw new EngineError('POLICY_VIOLATION', `${role} uses ${s.numberOfBins} hash bins, above the limit of ${policy.bins.max}`, {
        detail: { role, bins: s.numberOfBins },
      });
    }
    assertDelegatedRoleName(`${s.namePrefix}-${'f'.repeat(s.suffixLen)}`);
    checkRoleKeys(`${role} → ${s.namePrefix}-*`, s, d.keys, policy.roles.delegated, policy);
    for (const name of [`${s.namePrefix}-${'0'.repeat(s.suffixLen)}`]) {
      const others = delegationsOf(state, name).filter((e) => e.parent !== role);
      if (others.length > 0) {
        throw new EngineError('BAD_DELEGATION', `hash bins "${s.namePrefix}-*" collide with roles delegated by ${others[0]?.parent}`, {
          detail: { role },
        });
      }
    }
    for (const [name, list] of explicitNames(state)) {
      if (s.isDelegatedRole(name) && list.some((p) => p !== role)) {
        throw new EngineError('BAD_DELEGATION', `hash bins "${s.namePrefix}-*" collide with role "${name}"`, { detail: { role, delegated: name } });
      }
    }
  }
}

function explicitNames(state: RepoState): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const [parent, rec] of state.targets) {
    for (const name of Object.keys(rec.md.signed.delegations?.roles ?? {})) {
      const l = out.get(name);
      if (l) l.push(parent);
      else out.set(name, [parent]);
    }
  }
  return out;
}

export interface TargetsOptions {
  /** Policy class for delegated roles: "delegated" (default) or "ci" for job-scoped roles. */
  roleClass?: Extract<RoleClass, 'delegated' | 'ci'>;
  /** Called with the parsed version before any trust decision (the service checks it against the file name). */
  onParsed?: (version: number) => void;
  /**
   * `bytes` already parsed: metadata this process built and signed itself (build.ts signParts).
   * Saves parsing a file just serialized; signatures, version, expiry, paths and delegations are
   * still checked as for any upload.
   */
  parsed?: Parsed<'targets'>;
}

/**
 * Verify a new version of top-level targets or of a delegated role against the
 * trusted state, and return the state with it applied.
 */
export function verifyTargetsUpload(
  state: RepoState,
  role: string,
  bytes: Uint8Array,
  ctx: UploadContext,
  opts: TargetsOptions = {},
): TargetsUploadResult {
  const { policy, now } = ctx;
  if (role !== 'targets') assertDelegatedRoleName(role);
  const rp = role === 'targets' ? policy.roles.targets : policy.roles[opts.roleClass ?? 'delegated'];
  if (bytes.byteLength > rp.maxBytes) {
    throw new EngineError('TOO_LARGE', `${role} metadata is ${bytes.byteLength} bytes, above the limit of ${rp.maxBytes}`, {
      detail: { role, size: bytes.byteLength, limit: rp.maxBytes },
    });
  }
  // Who may sign this role, and is that trust still current? Known from the name alone,
  // so it is settled before the upload's bytes cost anything beyond reading them.
  const chain = delegationChain(state, role, policy.limits.maxDelegationDepth);
  if (expiresAt(state.root.md) <= now) {
    throw new EngineError('DELEGATOR_EXPIRED', `trusted root expired at ${state.root.md.signed.expires}; upload a new root first`, {
      detail: { role, delegator: 'root' },
    });
  }
  for (const link of chain) {
    if (link.parent === 'root') continue;
    const parent = state.targets.get(link.parent);
    if (!parent) {
      throw new EngineError('UNKNOWN_ROLE', `${link.parent}, which delegates ${role}, has no trusted metadata`, { detail: { role, delegator: link.parent } });
    }
    if (expiresAt(parent.md) <= now) {
      throw new EngineError('DELEGATOR_EXPIRED', `${link.parent}, which delegates ${role}, expired at ${parent.md.signed.expires}`, {
        detail: { role, delegator: link.parent, expires: parent.md.signed.expires },
      });
    }
  }
  const own = chain[0];
  if (!own) throw new EngineError('UNKNOWN_ROLE', `no role delegates "${role}"`, { detail: { role } });
  // The signatures are checked before the document costs anything beyond the strict scan: first
  // their key ids (too few the delegator lists: refused unparsed), then, on the plain JSON, the
  // threshold itself, before any model is built.
  const listed = new Set(own.keyIDs);
  const keyIdsFirst = (p: { signatures: readonly SignatureEntry[]; version: number }): void => {
    opts.onParsed?.(p.version);
    if (p.signatures.filter((s) => listed.has(s.keyid)).length < own.threshold) {
      refuseThreshold(verifyThreshold(role, Buffer.alloc(0), p.signatures, own, own.keys), { role });
    }
  };
  let verification: VerificationResult | undefined;
  const thresholdFirst = (p: { signatures: readonly SignatureEntry[]; signedBytes: () => Buffer }): void => {
    verification = verifyThreshold(role, p.signedBytes(), p.signatures, own, own.keys);
    if (!verification.ok) refuseThreshold(verification, { role });
  };
  let parsed: Parsed<'targets'>;
  if (opts.parsed) {
    parsed = opts.parsed;
    const p = { signatures: parsed.signatures, signedBytes: () => parsed.signedBytes, version: parsed.md.signed.version };
    keyIdsFirst(p);
    thresholdFirst(p);
  } else {
    parsed = parseMetadata('targets', bytes, rp.maxBytes, role, limitsFromPolicy(policy), { beforeParse: keyIdsFirst, beforeModels: thresholdFirst });
  }
  const md = parsed.md;
  if (!verification?.ok) throw new EngineError('THRESHOLD_NOT_MET', `${role}: signatures were not verified`, { detail: { role } });

  checkVersion(role, md.signed.version, currentVersion(state, role));
  checkExpiry(role, md, now, rp);
  if (opts.roleClass === 'ci' && md.signed.delegations) {
    // A job-scoped key signs tags; it may not hand its (short) authority on to other keys.
    throw new EngineError('POLICY_VIOLATION', `${role} is a CI job role: it may list targets but not delegate`, { detail: { role } });
  }
  checkTargetsScope(state, role, md, ctx.repository);
  checkTargetEntries(role, md.signed, role === 'targets' ? [] : chain, policy, targetPrefix(state.root.md.signed, ctx.repository));
  checkDelegations(state, role, md.signed, chain.length - 1, policy);
  const next = withTargets(state, role, { md, bytes });
  checkBoundBins(next, role, md.signed, ctx.repository);

  return { state: retireUnverifiable(state, next, role), role, version: md.signed.version, verification };
}

/** Roles `role` delegates to that have metadata in `state` (named delegations and stored hash bins). */
function childrenOf(state: RepoState, role: string): string[] {
  const d = state.targets.get(role)?.md.signed.delegations;
  if (!d) return [];
  const out = Object.keys(d.roles ?? {});
  const bins = d.succinctRoles;
  if (bins) for (const name of state.targets.keys()) if (bins.isDelegatedRole(name)) out.push(name);
  return out;
}

/** The same parent, keys and threshold: metadata that verified under one verifies under the other. */
function sameAuthority(a: DelegationEntry, b: DelegationEntry): boolean {
  if (a.parent !== b.parent || a.threshold !== b.threshold || a.keyIDs.length !== b.keyIDs.length) return false;
  return a.keyIDs.every((id, i) => {
    const ka = a.keys[id];
    const kb = b.keys[id];
    return id === b.keyIDs[i] && ka !== undefined && kb !== undefined && JSON.stringify(asJson(ka)) === JSON.stringify(asJson(kb));
  });
}

/**
 * After `from` changed, the roles below it whose delegation is gone, or now names keys that did
 * not sign their current metadata, become tombstones, exactly as loading the repository from
 * storage makes them (load.ts): listed in the snapshot at their version, no longer consulted.
 * Roles whose delegation is unchanged are not re-verified.
 */
function retireUnverifiable(before: RepoState, after: RepoState, from: string): RepoState {
  const retired = new Map<string, number>();
  const visited = new Set<string>([from]);
  const queue = [...childrenOf(before, from), ...childrenOf(after, from)]; // dropped delegations too
  while (queue.length > 0) {
    const role = queue.shift() as string;
    if (visited.has(role)) continue;
    visited.add(role);
    const rec = after.targets.get(role);
    if (!rec) continue;
    const now = delegationsOf(after, role).filter((d) => !retired.has(d.parent));
    const entry = now.length === 1 ? now[0] : undefined;
    const was = delegationsOf(before, role);
    const ok =
      entry !== undefined &&
      ((was.length === 1 && sameAuthority(was[0] as DelegationEntry, entry)) || verifyThreshold(role, canonicalOf(rec.md), signaturesOf(rec.md), entry, entry.keys).ok);
    if (!ok) retired.set(role, rec.md.signed.version);
    queue.push(...childrenOf(after, role));
  }
  if (retired.size === 0) return after;
  const targets = new Map(after.targets);
  const tombstones = new Map(after.tombstones);
  for (const [role, version] of retired) {
    targets.delete(role);
    tombstones.set(role, version);
  }
  return { ...after, targets, tombstones };
}

/** Create a repository from owner-signed 1.root.json and 1.targets.json. */
export function verifyNewRepository(rootBytes: Uint8Array, targetsBytes: Uint8Array, ctx: RootContext): RepoState {
  const { state } = verifyRootUpload(undefined, rootBytes, ctx);
  return verifyTargetsUpload(state, 'targets', targetsBytes, ctx).state;
}

/**
 * Create member `repository` of a namespace (scope.ts): its root is the namespace's current root
 * (`namespaceRoot`, verified by the anchor's loader), its 1.targets.json is signed by the
 * namespace's targets keys and names the member. The member's root files are copies of the
 * anchor's, so its TUF repository stands on its own (a mirror copy of `R/tuf` verifies).
 */
export function verifyNewMember(namespaceRoot: RepoState['root'], targetsBytes: Uint8Array, ctx: UploadContext & { repository: string }): RepoState {
  const prefix = namespaceOf(namespaceRoot.md.signed, ctx.repository);
  if (prefix === undefined || anchorPrefix(ctx.repository) !== undefined) {
    throw new EngineError('SCOPE_MISMATCH', `root ${namespaceRoot.md.signed.version} is not a namespace root covering ${ctx.repository}`, {
      detail: { role: 'root', repository: ctx.repository, scope: String(scopeOf(namespaceRoot.md.signed) ?? '').slice(0, 255) },
    });
  }
  const state: RepoState = { root: namespaceRoot, targets: new Map(), tombstones: new Map(), snapshot: undefined, timestamp: undefined };
  return verifyTargetsUpload(state, 'targets', targetsBytes, ctx).state;
}
