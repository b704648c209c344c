/**
 * Roots as the owner's commands build on them: the service's current root, checked (against its
 * own keys, and along the chain from a pinned root), and the next root built from it. Shared by
 * `tufoci rotate root`, `tufoci rotate online` and the signing ceremonies.
 */
import type { Key, Root } from '@tufjs/models';
import { buildRoot, describeVerification, parseMetadata, verifyThreshold, type RoleKeys } from '../engine/index.ts';
import { scopeOf } from '../engine/scope.ts';
import type { TufKeyJson } from '../keys/index.ts';
import type { Policy } from '../policy/policy.ts';
import type { ServiceClient } from '../client/service-client.ts';
import { UsageError } from './usage-error.ts';

/** A TUF key as @tufjs/models holds it → the key JSON the builders take. */
export function keyJson(key: Key): TufKeyJson {
  return { keytype: key.keyType, scheme: key.scheme, keyval: { public: key.keyVal['public'] ?? '' } };
}

/** A role of `root` as its keys and threshold. */
export function roleKeysOf(root: Root, role: 'root' | 'targets' | 'snapshot' | 'timestamp'): RoleKeys {
  const r = root.roles[role];
  if (!r) throw new UsageError(`root v${root.version} defines no ${role} role`);
  return {
    keys: r.keyIDs.map((id) => {
      const k = root.keys[id];
      if (!k) throw new UsageError(`root v${root.version} lists key ${id.slice(0, 12)} for ${role} but does not define it`);
      return keyJson(k);
    }),
    threshold: r.threshold,
  };
}

/**
 * The next root: `current` with version + 1, a new expiry, and the roles in `changes` replaced.
 * It names `scope` (the repository), or the scope `current` names: a root older than scope
 * binding acquires it at its next rotation.
 */
export function nextRoot(current: Root, expires: string, changes: Partial<Record<'root' | 'targets' | 'snapshot' | 'timestamp', RoleKeys>>, scope?: string): Root {
  const kept = scopeOf(current);
  return buildRoot({
    version: current.version + 1,
    expires,
    ...(scope !== undefined ? { scope } : typeof kept === 'string' ? { scope: kept } : {}),
    root: changes.root ?? roleKeysOf(current, 'root'),
    targets: changes.targets ?? roleKeysOf(current, 'targets'),
    snapshot: changes.snapshot ?? roleKeysOf(current, 'snapshot'),
    timestamp: changes.timestamp ?? roleKeysOf(current, 'timestamp'),
  });
}

/**
 * Root N+1 re-lists the targets keys under other ids than root N (a root written before the key id
 * fix, re-listed under the correct ids): the current targets must already be signed under the new
 * ids, or clients that take root N+1 refuse it. `tufoci resign R --role targets` signs it under both.
 */
export async function checkTargetsUnderNextRoot(client: ServiceClient, repo: string, current: Root, next: Root, policy: Policy): Promise<void> {
  const before = current.roles['targets'];
  const after = next.roles['targets'];
  if (!before || !after || [...before.keyIDs].sort().join(',') === [...after.keyIDs].sort().join(',')) return;
  const status = await client.status(repo);
  const t = status.roles.find((r) => r.role === 'targets');
  if (!t) return;
  const p = parseMetadata('targets', await client.metadata(repo, `${t.version}.targets.json`), policy.roles.targets.maxBytes);
  if (verifyThreshold('targets', p.signedBytes, p.signatures, after, next.keys).ok) return;
  throw new UsageError(
    `root v${next.version} lists the targets key under its correct key id, but targets v${t.version} of ${repo} is signed under the legacy key id only: clients taking root v${next.version} would refuse it. ` +
      `First run: tufoci resign ${repo} --role targets --key <targets key>`,
  );
}

/**
 * The service's current root, checked: parses, is the version the status
 * names, is signed by a threshold of its own root keys, and — with a pinned
 * root — is reached from it by a chain each step of which is signed by a
 * threshold of the previous root's keys and of its own.
 */
export async function currentRoot(client: ServiceClient, repo: string, policy: Policy, pinned?: Uint8Array): Promise<{ root: Root; bytes: Uint8Array; chain: Root[] }> {
  const status = await client.status(repo);
  const r = status.roles.find((x) => x.role === 'root');
  if (!r) throw new UsageError(`the service reports no root for ${repo}`);
  const max = policy.roles.root.maxBytes;
  const check = (label: string, p: ReturnType<typeof parseMetadata<'root'>>, trusted: Root): void => {
    const role = trusted.roles['root'];
    const v = role ? verifyThreshold(label, p.signedBytes, p.signatures, role, trusted.keys) : undefined;
    if (!v?.ok) throw new UsageError(`${label} of ${repo} does not verify (${v ? describeVerification(v) : 'no root role'}); refusing to build on it`);
  };
  // The pinned root and every root checked after it, oldest first (the pinned root alone when it is current).
  const chain: Root[] = [];
  if (pinned) {
    let trusted = parseMetadata('root', pinned, max).md.signed;
    chain.push(trusted);
    if (trusted.version > r.version) throw new UsageError(`your pinned root is v${trusted.version} but the service's root of ${repo} is v${r.version} (rollback?); refusing to rotate`);
    for (let v = trusted.version + 1; v <= r.version; v++) {
      const p = parseMetadata('root', await client.metadata(repo, `${v}.root.json`), max);
      if (p.md.signed.version !== v) throw new UsageError(`the service's ${v}.root.json of ${repo} holds version ${p.md.signed.version}`);
      check(`root v${v} (by the keys of v${v - 1})`, p, trusted);
      check(`root v${v} (by its own keys)`, p, p.md.signed);
      trusted = p.md.signed;
      chain.push(trusted);
    }
  }
  const bytes = await client.metadata(repo, `${r.version}.root.json`);
  const parsed = parseMetadata('root', bytes, max);
  if (parsed.md.signed.version !== r.version) throw new UsageError(`the service's ${r.version}.root.json of ${repo} holds version ${parsed.md.signed.version}`);
  check(`root v${r.version}`, parsed, parsed.md.signed);
  return { root: parsed.md.signed, bytes, chain };
}

/** A targets key set a root of the chain names: what verifies a targets version signed under it. */
export interface TargetsKeys {
  /** The root that names it (`root v3`). */
  label: string;
  role: { keyIDs: string[]; threshold: number };
  keys: Root['keys'];
}

export function targetsKeysOf(root: Root): TargetsKeys | undefined {
  const role = root.roles['targets'];
  return role ? { label: `root v${root.version}`, role: { keyIDs: [...role.keyIDs], threshold: role.threshold }, keys: root.keys } : undefined;
}

function sameKeys(a: TargetsKeys, b: TargetsKeys): boolean {
  return a.role.threshold === b.role.threshold && [...a.role.keyIDs].sort().join(',') === [...b.role.keyIDs].sort().join(',');
}

/**
 * `repo`'s current root, checked along the chain from `pinned` (default: the service's own
 * 1.root.json, the trust `tufoci rotate` without --trust gives the service's current root), and
 * the targets keys it names, then — when an earlier root of that chain named others — those of
 * the newest such root: the keys the last rotation of the targets key replaced, which still sign
 * any targets version not re-signed since. Older key sets are not returned: a version signed only
 * by them was already unverifiable before that rotation.
 */
export async function targetsKeysOfChain(client: ServiceClient, repo: string, policy: Policy, pinned?: Uint8Array): Promise<{ root: Root; keys: TargetsKeys[] }> {
  const { root, chain } = await currentRoot(client, repo, policy, pinned ?? (await client.metadata(repo, '1.root.json')));
  const newest = targetsKeysOf(root);
  if (!newest) throw new UsageError(`root v${root.version} of ${repo} defines no targets role`);
  for (let i = chain.length - 2; i >= 0; i--) {
    const earlier = targetsKeysOf(chain[i] as Root);
    if (earlier && !sameKeys(earlier, newest)) return { root, keys: [newest, earlier] };
  }
  return { root, keys: [newest] };
}

