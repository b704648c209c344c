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
export async function currentRoot(client: ServiceClient, repo: string, policy: Policy, pinned?: Uint8Array): Promise<{ root: Root; bytes: Uint8Array }> {
  const status = await client.status(repo);
  const r = status.roles.find((x) => x.role === 'root');
  if (!r) throw new UsageError(`the service reports no root for ${repo}`);
  const max = policy.roles.root.maxBytes;
  const check = (label: string, p: ReturnType<typeof parseMetadata<'root'>>, trusted: Root): void => {
    const role = trusted.roles['root'];
    const v = role ? verifyThreshold(label, p.signedBytes, p.signatures, role, trusted.keys) : undefined;
    if (!v?.ok) throw new UsageError(`${label} of ${repo} does not verify (${v ? describeVerification(v) : 'no root role'}); refusing to build on it`);
  };
  if (pinned) {
    let trusted = parseMetadata('root', pinned, max).md.signed;
    if (trusted.version > r.version) throw new UsageError(`your pinned root is v${trusted.version} but the service's root of ${repo} is v${r.version} (rollback?); refusing to rotate`);
    for (let v = trusted.version + 1; v <= r.version; v++) {
      const p = parseMetadata('root', await client.metadata(repo, `${v}.root.json`), max);
      if (p.md.signed.version !== v) throw new UsageError(`the service's ${v}.root.json of ${repo} holds version ${p.md.signed.version}`);
      check(`root v${v} (by the keys of v${v - 1})`, p, trusted);
      check(`root v${v} (by its own keys)`, p, p.md.signed);
      trusted = p.md.signed;
    }
  }
  const bytes = await client.metadata(repo, `${r.version}.root.json`);
  const parsed = parseMetadata('root', bytes, max);
  if (parsed.md.signed.version !== r.version) throw new UsageError(`the service's ${r.version}.root.json of ${repo} holds version ${parsed.md.signed.version}`);
  check(`root v${r.version}`, parsed, parsed.md.signed);
  return { root: parsed.md.signed, bytes };
}
