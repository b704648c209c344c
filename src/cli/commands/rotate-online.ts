/**
 * Online key rotation and compromise, from the owner's and the operator's side.
 *
 * `tufoci rotate online <repo> --root-key K`: asks the service for the online
 * keys the repository's next root should list (the current key set, or a
 * freshly generated one when the root already lists the current set), builds
 * root N+1 with those snapshot and timestamp keys, signs it with the owner's
 * offline root keys and uploads it. The service signs with the new keys only
 * once that root is accepted; signatures by the old keys stop counting for
 * clients as soon as they update root.
 * `--all` does this for every repository the given root keys sign that is not
 * on the current set yet: after `tufoci online-keys revoke`, one command per
 * owner moves all of their repositories off the compromised key.
 *
 * `tufoci online-keys list|usage|rotate|revoke` (admin token): the operator's
 * view of the service's key sets.
 */
import { parseArgs } from 'node:util';
import { isoExpiry, listedIdOf, signMetadata } from '../../engine/index.ts';
import { loadSigner, type KeySigner } from '../../keys/index.ts';
import { defaultPolicyPath, loadPolicyFile } from '../../policy/policy.ts';
import type { ServiceClient } from '../../client/service-client.ts';
import type { NamespaceSync } from '../../api/types.ts';
import { anchorPrefix, namespaceAnchor, namespaceOf } from '../../engine/scope.ts';
import { SERVER_HELP, SERVER_OPTIONS, UsageError, output, parseDuration, serviceClient } from '../common.ts';
import { checkTargetsUnderNextRoot, currentRoot, nextRoot } from '../roots.ts';

export const ROTATE_ONLINE_HELP = `usage: tufoci rotate online <repo> --root-key K [--root-key K2] [--expires 365d] [options]
       tufoci rotate online --all --root-key K [--root-key K2] [options]

Moves a repository to new online (snapshot and timestamp) keys: the service
names the keys (generating a new set when the repository already uses the
current one), root N+1 listing them is signed with your offline root keys and
uploaded. The service signs with the new keys only after it accepts that root.
With --all, every repository whose root your keys can sign and that is not on
the service's current key set is rotated (after a compromise: run it once).

options:
  --root-key FILE   a private root key (repeat until the root threshold is met)
  --all             every repository your root keys sign that is not on the current set
  --expires D       lifetime of the new root (default 365d)
${SERVER_HELP}`;

interface Rotated {
  repository: string;
  rootVersion: number;
  set: number;
  generated: boolean;
  timestampVersion: number;
  /** A namespace's rotation (at its anchor): the members that took the new root. */
  members?: NamespaceSync;
}

async function rotateOne(client: ServiceClient, repo: string, signers: readonly KeySigner[], expiresMs: number): Promise<Rotated> {
  const policy = await loadPolicyFile(defaultPolicyPath());
  const { root: current } = await currentRoot(client, repo, policy);
  const rootRole = current.roles['root'];
  const mine = signers.filter((s) => listedIdOf(s.public, rootRole?.keyIDs ?? [])); // either id (legacy-keyids.ts)
  if (!rootRole || mine.length < rootRole.threshold) {
    throw new UsageError(`root v${current.version} of ${repo} needs ${rootRole?.threshold ?? '?'} of its root keys; your --root-key files hold ${mine.length}`);
  }
  const next = await client.nextOnlineKeys(repo);
  const online = (role: 'snapshot' | 'timestamp'): { keys: typeof next.snapshot[number]['key'][]; threshold: number } => {
    const keys = next[role].map((k) => k.key);
    if (!keys.length) throw new UsageError(`the service offers no ${role} key`);
    return { keys, threshold: 1 };
  };
  const root = nextRoot(current, isoExpiry(Date.now() + expiresMs), { snapshot: online('snapshot'), timestamp: online('timestamp') }, anchorPrefix(repo) ?? repo);
  await checkTargetsUnderNextRoot(client, repo, current, root, policy);
  const bytes = await signMetadata(root, mine, { trustedIds: rootRole.keyIDs });
  const result = await client.upload(repo, `${root.version}.root.json`, bytes);
  return {
    repository: repo,
    rootVersion: result.version,
    set: next.set.id,
    generated: next.generated,
    timestampVersion: result.timestampVersion,
    ...(result.members ? { members: result.members } : {}),
  };
}

export async function rotateOnline(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { ...SERVER_OPTIONS, 'root-key': { type: 'string', multiple: true }, all: { type: 'boolean' }, expires: { type: 'string' } },
  });
  if (values.help) return console.log(ROTATE_ONLINE_HELP);
  if (!values['root-key']?.length) throw new UsageError(`--root-key is required: the new root is signed with your offline root keys\n\n${ROTATE_ONLINE_HELP}`);
  if (values.all ? positionals.length !== 0 : positionals.length !== 1) throw new UsageError(ROTATE_ONLINE_HELP);
  const expiresMs = parseDuration(values.expires ?? '365d', '--expires');
  const signers = await Promise.all(values['root-key'].map((f) => loadSigner(f)));
  const client = serviceClient(values);
  const out = output(values.json ?? false);

  if (!values.all) {
    // `<prefix>/`: the namespace, rotated at its anchor for every member (engine/scope.ts).
    const arg = positionals[0] as string;
    const r = await rotateOne(client, arg.endsWith('/') ? namespaceAnchor(arg) : arg, signers, expiresMs);
    out.say(`${r.repository}: root v${r.rootVersion} lists online key set ${r.set}${r.generated ? ' (generated for this rotation)' : ''}; timestamp v${r.timestampVersion} signed with it`);
    if (r.members) out.say(`  ${r.members.updated} members of ${r.members.namespace} took root v${r.members.rootVersion}${r.members.pending ? `; ${r.members.pending} more take it in the background` : ''}${r.members.failed.length ? `; ${r.members.failed.length} failed (each takes it at its next refresh; POST /v1/namespace-sync/${r.repository} retries now)` : ''}`);
    out.result(r);
    return;
  }

  // --all: the repositories not on the current set whose root these keys can sign.
  const usage = await client.onlineKeyUsage();
  const policy = await loadPolicyFile(defaultPolicyPath());
  const done: Rotated[] = [];
  const skipped: Array<{ repository: string; reason: string }> = [];
  const failed: Array<{ repository: string; error: string }> = [];
  for (const u of usage.repositories) {
    if (u.onCurrent) continue;
    try {
      const { root } = await currentRoot(client, u.repository, policy);
      const ns = namespaceOf(root, u.repository);
      if (ns !== undefined && anchorPrefix(u.repository) !== ns) {
        skipped.push({ repository: u.repository, reason: `a member of namespace ${ns}: it takes the root rotated at ${namespaceAnchor(ns)}` });
        continue;
      }
      const role = root.roles['root'];
      const held = signers.filter((s) => listedIdOf(s.public, role?.keyIDs ?? [])).length;
      if (!role || held < role.threshold) {
        skipped.push({ repository: u.repository, reason: `your keys hold ${held} of ${role?.threshold ?? '?'} root signatures` });
        continue;
      }
      const r = await rotateOne(client, u.repository, signers, expiresMs);
      done.push(r);
      out.say(`${u.repository}: root v${r.rootVersion} lists online key set ${r.set}${r.members ? `; ${r.members.updated} members of ${r.members.namespace} took it, ${r.members.failed.length} failed` : ''}`);
    } catch (e) {
      failed.push({ repository: u.repository, error: e instanceof Error ? e.message : String(e) });
      out.say(`${u.repository}: FAILED ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  for (const s of skipped) out.say(`${s.repository}: skipped (${s.reason})`);
  out.say(`${done.length} rotated, ${skipped.length} skipped (other owners), ${failed.length} failed`);
  out.result({ rotated: done, skipped, failed });
  if (failed.length) process.exitCode = 1;
}

export const ONLINE_KEYS_HELP = `usage: tufoci online-keys list [--repository R] [options]
       tufoci online-keys usage [options]          (admin token)
       tufoci online-keys rotate [options]         (admin token)
       tufoci online-keys revoke <keyid|set> --reason TEXT [options]   (admin token)

The service's online key sets. Derived sets give each repository its own keys:
"list --repository R" shows R's key ids. "usage" lists which set each repository's root
names; "rotate" makes a new current set (existing repositories keep theirs
until their owners run "tufoci rotate online"); "revoke" marks a compromised
set: no new root may list it, a new current set is made, and the repositories
still on it are listed (exit 1 while any remain) so their owners can run
"tufoci rotate online --all". See docs/OPERATIONS.md.
${SERVER_HELP}`;

export async function onlineKeys(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: { ...SERVER_OPTIONS, reason: { type: 'string' }, repository: { type: 'string' } } });
  const [action, ...rest] = positionals;
  if (values.help || !action) return console.log(ONLINE_KEYS_HELP);
  const client = serviceClient(values);
  const out = output(values.json ?? false);
  const fmt = (s: { id: number; created: string; kind?: string; keyids: Record<string, string>; revoked?: { at: string; reason: string } }): string =>
    `set ${s.id} (${s.kind ?? 'shared'})  created ${s.created}  ${
      Object.entries(s.keyids)
        .map(([r, k]) => `${r} ${k.slice(0, 12)}`)
        .join(', ') || 'keys per repository (--repository R)'
    }${s.revoked ? `  REVOKED ${s.revoked.at} (${s.revoked.reason})` : ''}`;
  switch (action) {
    case 'list': {
      if (rest.length) throw new UsageError(ONLINE_KEYS_HELP);
      const keys = await client.onlineKeys(values.repository);
      out.say(`current set: ${keys.set ?? 0}`);
      for (const s of keys.sets ?? []) out.say(`  ${fmt(s)}`);
      out.result(keys);
      return;
    }
    case 'usage': {
      if (rest.length) throw new UsageError(ONLINE_KEYS_HELP);
      const u = await client.onlineKeyUsage();
      out.say(`current set: ${u.current}`);
      for (const r of u.repositories) out.say(`  ${r.repository}  set ${r.sets.join('+') || '?'}${r.onRevoked ? '  ON A REVOKED SET' : r.onCurrent ? '' : '  (older set)'}`);
      out.result(u);
      if (u.repositories.some((r) => r.onRevoked)) process.exitCode = 1;
      return;
    }
    case 'rotate': {
      if (rest.length) throw new UsageError(ONLINE_KEYS_HELP);
      const r = await client.rotateOnlineKeys();
      out.say(`new current ${fmt(r.set)}; repositories move to it with "tufoci rotate online"`);
      out.result(r);
      return;
    }
    case 'revoke': {
      const [ref, ...more] = rest;
      if (!ref || more.length) throw new UsageError(ONLINE_KEYS_HELP);
      if (!values.reason) throw new UsageError('--reason is required (it is recorded with the revocation)');
      const r = await client.revokeOnlineKeys(ref, values.reason);
      out.say(`revoked ${fmt(r.revoked)}`);
      out.say(`current ${fmt(r.current)}`);
      out.say(
        r.affected.length
          ? `${r.affected.length} repositor${r.affected.length === 1 ? 'y still lists' : 'ies still list'} it; each owner runs: tufoci rotate online --all --root-key <their root key>\n${r.affected.map((a) => `  ${a}`).join('\n')}`
          : 'no repository lists it',
      );
      out.result(r);
      if (r.affected.length) process.exitCode = 1;
      return;
    }
    default:
      throw new UsageError(`unknown action "${action}"\n\n${ONLINE_KEYS_HELP}`);
  }
}
