/**
 * The top-level targets of a namespace's members, re-signed with the namespace's targets key:
 * `tufoci resign P/ --role targets --key K --all-members` (or `--members R1,R2`), `tufoci resign
 * <member> --role targets`, and the step of `tufoci rotate root P/ --targets-key-new` that keeps
 * every member verifying under the new root (rotate.ts decides when it runs: before the root when
 * the old targets key signs too, after it otherwise; docs/ARCHITECTURE.md "Namespaces").
 *
 * Each member's next targets is resign's (signNextVersion: same content, new expiry), built only
 * on a current version that a threshold of the namespace's targets keys signed: those its current
 * root names, or those the last rotation of the targets key replaced (targetsKeysOfChain), so that
 * a member left behind by a rotation is re-signed under the new key, and nothing else is. Members
 * are re-signed a few at a time; one that fails is reported with the command that retries it, and
 * the others go on.
 */
import { describeVerification, isoExpiry, listedIdOf, verifyThreshold } from '../../engine/index.ts';
import { anchorPrefix, namespaceAnchor } from '../../engine/scope.ts';
import { loadSigner, type KeySigner, type Signer } from '../../keys/index.ts';
import { defaultPolicyPath, loadPolicyFile, type Policy } from '../../policy/policy.ts';
import type { ServiceClient } from '../../client/service-client.ts';
import { isRepositoryName } from '../../storage/names.ts';
import { mapLimit } from '../../util/map-limit.ts';
import { UsageError, output, serviceClient } from '../common.ts';
import { namespaceMembers } from '../namespace-members.ts';
import { targetsKeysOfChain, type TargetsKeys } from '../roots.ts';
import { signNextVersion, uploadNext, type Resigned } from './resign.ts';

/** Members re-signed at once. */
export const MEMBER_CONCURRENCY = 8;

/** How long a namespace sync round may take before the CLI stops waiting for it (10,000 members take about a minute). */
const SYNC_TIMEOUT_MS = 10 * 60_000;

export interface MemberResigned extends Resigned {
  repository: string;
}

export interface MemberFailure {
  repository: string;
  error: string;
}

/** What every member's re-signing needs: the same for all members of one run. */
export interface MemberTargetsSpec {
  namespace: string;
  /** The namespace's root version the members must be under (its current one). */
  rootVersion: number;
  /** Sign each next targets: the targets keys (before a root that replaces them: the old and the new). */
  signers: readonly Signer[];
  /** The key ids the root the members are under lists for targets (a key listed by its legacy id signs under both). */
  trustedIds: readonly string[];
  /** Targets keys a member's current targets may be signed by (a threshold of one set). */
  vouchers: readonly TargetsKeys[];
  expires: string;
  policy: Policy;
  /** Bring every member up to the anchor's root (POST /v1/namespace-sync/<anchor>): called once at most, when a member is behind. */
  sync: () => Promise<void>;
}

/** `spec.sync` for `client`: one sync round of the namespace, shared by every member that needs it. */
export function syncOnce(values: { server?: string | undefined; token?: string | undefined }, namespace: string): () => Promise<void> {
  let running: Promise<void> | undefined;
  return () => (running ??= serviceClient(values, { timeoutMs: SYNC_TIMEOUT_MS }).syncNamespace(namespaceAnchor(namespace)).then(() => undefined));
}

/** Re-sign member `repository`'s top-level targets: its next version, signed by `spec.signers`, uploaded. */
export async function resignMember(client: ServiceClient, repository: string, spec: MemberTargetsSpec): Promise<MemberResigned> {
  let status = await client.status(repository);
  if (status.namespace !== spec.namespace || anchorPrefix(repository) !== undefined) throw new UsageError(`${repository} is not a member of namespace ${spec.namespace}`);
  const rootOf = (): number => status.roles.find((r) => r.role === 'root')?.version ?? 0;
  if (rootOf() < spec.rootVersion) {
    // Its next targets is verified under the root its head is under: it must have taken the current one.
    let syncFailed = '';
    await spec.sync().catch((e: unknown) => void (syncFailed = `; the namespace sync failed: ${e instanceof Error ? e.message : String(e)}`));
    status = await client.status(repository);
    if (rootOf() < spec.rootVersion) {
      throw new UsageError(
        `${repository} is still under root v${rootOf()} of namespace ${spec.namespace}, not v${spec.rootVersion}${syncFailed}: it takes it at its next refresh (or POST /v1/namespace-sync/${namespaceAnchor(spec.namespace)}), then retry`,
      );
    }
  }
  // A member whose targets no longer verify under the current root holds them as a tombstone (at that version).
  const version = status.roles.find((r) => r.role === 'targets')?.version ?? status.tombstones.find((t) => t.role === 'targets')?.version;
  if (version === undefined) throw new UsageError(`${repository} has no top-level targets`);
  const next = await signNextVersion(client, repository, status, {
    file: 'targets',
    version,
    signers: spec.signers,
    trustedIds: spec.trustedIds,
    expires: spec.expires,
    policy: spec.policy,
    vouched: (current) => {
      const checks = spec.vouchers.map((v) => ({ v, result: verifyThreshold(`targets v${version}`, current.signedBytes, current.signatures, v.role, v.keys) }));
      if (checks.some((c) => c.result.ok)) return undefined;
      return `targets v${version} of ${repository} is not signed by the targets keys of ${checks.map((c) => `${c.v.label} (${describeVerification(c.result)})`).join(' nor of ')} of namespace ${spec.namespace}`;
    },
  });
  return { repository, ...(await uploadNext(client, repository, next)) };
}

/** Re-sign every member of `members`, MEMBER_CONCURRENCY at a time; `onEach` hears of each as it ends. */
export async function resignMembers(
  client: ServiceClient,
  members: readonly string[],
  spec: MemberTargetsSpec,
  onEach: (outcome: { resigned: MemberResigned } | { failed: MemberFailure }) => void = () => {},
): Promise<{ resigned: MemberResigned[]; failed: MemberFailure[] }> {
  const resigned: MemberResigned[] = [];
  const failed: MemberFailure[] = [];
  await mapLimit(members, MEMBER_CONCURRENCY, async (repository) => {
    try {
      const r = await resignMember(client, repository, spec);
      resigned.push(r);
      onEach({ resigned: r });
    } catch (error) {
      const f = { repository, error: error instanceof Error ? error.message : String(error) };
      failed.push(f);
      onEach({ failed: f });
    }
  });
  const byName = (a: { repository: string }, b: { repository: string }): number => (a.repository < b.repository ? -1 : a.repository > b.repository ? 1 : 0);
  return { resigned: resigned.sort(byName), failed: failed.sort(byName) };
}

/** A word of a command line, quoted for a POSIX shell when it needs to be. */
function shellWord(word: string): string {
  return /^[A-Za-z0-9_./:@%+=,-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

/** The command that re-signs the targets of `failed` members of `namespace` with the keys `signers` were loaded from. */
export function retryCommand(namespace: string, failed: readonly string[], signers: readonly KeySigner[], server: string | undefined): string {
  const words = ['tufoci', 'resign', namespace, '--role', 'targets', ...signers.flatMap((s) => ['--key', s.path]), '--members', failed.join(',')];
  if (server !== undefined) words.push('--server', server);
  return words.map(shellWord).join(' ');
}

/** Report `failed` members (none: nothing) with the command that retries them. */
export function reportFailures(out: ReturnType<typeof output>, namespace: string, failed: readonly MemberFailure[], signers: readonly KeySigner[], server: string | undefined): string | undefined {
  if (!failed.length) return undefined;
  const retry = retryCommand(namespace, failed.map((f) => f.repository), signers, server);
  out.say(`${failed.length} member(s) of ${namespace} failed:`);
  for (const f of failed) out.say(`  ${f.repository}: ${f.error}`);
  out.say(`re-sign them with: ${retry}`);
  return retry;
}

/**
 * What re-signing members of `namespace` with `signers` builds on: the namespace's current root,
 * checked along its chain (from `pinned`, else from the service's first root), whose targets keys
 * `signers` must be, and the targets keys a member's current targets may be signed by.
 */
export async function memberSpec(
  client: ServiceClient,
  values: { server?: string | undefined; token?: string | undefined },
  namespace: string,
  signers: readonly KeySigner[],
  expires: string,
  policy: Policy,
  pinned?: Uint8Array,
): Promise<MemberTargetsSpec> {
  const anchor = namespaceAnchor(namespace);
  const { root, keys } = await targetsKeysOfChain(client, anchor, policy, pinned);
  const listed = keys[0]?.role.keyIDs ?? [];
  const strangers = signers.filter((s) => !listedIdOf(s.public, listed));
  if (strangers.length) {
    throw new UsageError(
      `--key ${strangers.map((s) => `${s.path} (${s.keyid.slice(0, 12)})`).join(', ')} is not a targets key of root v${root.version} of namespace ${namespace}; its targets keys are ${listed.map((k) => k.slice(0, 12)).join(', ')}`,
    );
  }
  return { namespace, rootVersion: root.version, signers, trustedIds: listed, vouchers: keys, expires, policy, sync: syncOnce(values, namespace) };
}

/**
 * `tufoci resign P/ --role targets --key K (--all-members | --members R1,R2)`: every member's (or
 * the named members') top-level targets re-signed. Exit 1 when any member failed.
 */
export async function resignNamespace(
  prefix: string,
  values: { server?: string | undefined; token?: string | undefined; json?: boolean | undefined; role?: string | undefined; key?: string[] | undefined; 'all-members'?: boolean | undefined; members?: string[] | undefined },
  expiresMs: number,
  pinned: Uint8Array | undefined,
): Promise<void> {
  const anchor = namespaceAnchor(prefix); // validates the prefix
  if (values.role !== 'targets') throw new UsageError(`resign ${prefix} re-signs the members' top-level targets: --role targets (a member's delegated roles are re-signed by their own keys, one member at a time)`);
  if (!values.key?.length) throw new UsageError('--key is required: the namespace\'s targets key (repeat to meet its threshold)');
  const named = (values.members ?? []).flatMap((m) => m.split(',')).filter((m) => m !== '');
  if ((values['all-members'] ?? false) === named.length > 0) throw new UsageError(`resign ${prefix} takes --all-members or --members R1,R2 (repositories under ${prefix}), one of them`);
  for (const m of named) {
    if (!m.startsWith(prefix) || m === anchor || !isRepositoryName(m)) throw new UsageError(`--members: "${m.slice(0, 200)}" is not a repository under ${prefix}`);
  }
  const signers = await Promise.all(values.key.map((f) => loadSigner(f)));
  const policy = await loadPolicyFile(defaultPolicyPath());
  const client = serviceClient(values);
  const out = output(values.json ?? false);
  const spec = await memberSpec(client, values, prefix, signers, isoExpiry(Date.now() + expiresMs), policy, pinned);
  const listing = named.length ? undefined : await namespaceMembers(values, anchor);
  const members = listing?.members ?? [...new Set(named)];
  const unreadable: MemberFailure[] = (listing?.unreadable ?? []).map((u) => ({ repository: u.repository, error: `the service cannot read it: ${u.error}` }));
  const { resigned, failed } = await resignMembers(client, members, spec, (o) => {
    if ('resigned' in o) out.say(`targets v${o.resigned.version} of ${o.resigned.repository} re-signed; timestamp v${o.resigned.timestampVersion}`);
  });
  const allFailed = [...failed, ...unreadable].sort((a, b) => (a.repository < b.repository ? -1 : 1));
  out.say(`re-signed targets of ${resigned.length} member(s) of ${prefix} with ${signers.map((s) => s.keyid.slice(0, 12)).join(', ')}`);
  const retry = reportFailures(out, prefix, allFailed, signers, values.server);
  out.result({ namespace: prefix, rootVersion: spec.rootVersion, resigned, failed: allFailed, ...(retry ? { retry } : {}) });
  if (allFailed.length) process.exitCode = 1;
}
