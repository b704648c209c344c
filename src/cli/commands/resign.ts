/**
 * `tufoci resign`: the next version of a targets role with the same content,
 * signed with the role's own key(s): renews its expiry and repairs key ids
 * written before tufoci followed the TUF specification.
 *
 * A repository created before the fix lists ECDSA keys under their legacy ids
 * (engine/legacy-keyids.ts). The repair goes from the leaves up, so no client
 * ever meets a role it cannot verify:
 * 1. a delegated role is re-signed by its key under both ids (its delegator
 *    still lists the legacy one; the correct one is for step 2);
 * 2. its delegator is re-signed, re-listing the key under its correct id
 *    (`tufoci resign R --role targets` for top-level targets);
 * 3. root is rotated (`tufoci rotate root`), which re-lists root's keys.
 * Re-listing a key whose role is not yet signed under its correct id would
 * leave that role unverifiable; `checkRelisting` refuses that, naming step 1.
 *
 * Also shared with the other owner commands: the ids to sign under
 * (`trustedIdsOf`), and the status lines that flag legacy ids (`legacyWarnings`).
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import type { Targets } from '@tufjs/models';
import {
  asJson,
  isoExpiry,
  keyIdsOf,
  listedIdOf,
  nextTargets,
  parseMetadata,
  relistLegacyKeyIds,
  signMetadata,
  signingIds,
  verifyThreshold,
  type KeyMap,
} from '../../engine/index.ts';
import { loadSigner, repositoryBinsSigner, type Signer, type TufKeyJson } from '../../keys/index.ts';
import { defaultPolicyPath, loadPolicyFile, type Policy } from '../../policy/policy.ts';
import type { RepositoryStatus, ServiceClient } from '../../client/service-client.ts';
import { anchorPrefix } from '../../engine/scope.ts';
import { SERVER_HELP, SERVER_OPTIONS, UsageError, output, parseDuration, serviceClient } from '../common.ts';
import { writeCeremony } from '../ceremony-dir.ts';
import { currentTargetsByRoot, targetsCeremonyPlan } from './ceremony.ts';

export const RESIGN_HELP = `usage: tufoci resign <repo> --role <role> --key K [--key K2] [--expires D] [options]
       tufoci resign <repo> --role targets [--key K] --out DIR [--trust FILE] [--expires D]
       tufoci resign <prefix>/ --role targets --key K (--all-members | --members R1,R2) [--trust FILE]

Signs and uploads the next version of <role> (top-level "targets" or a
delegated role; the name prefix of hash bins re-signs every bin) with the same
tags and delegations, signed by --key (one of the role's keys; repeat to meet
its threshold). Use it to renew a role before it expires, and to repair key ids
written before tufoci followed the TUF specification (docs/OPERATIONS.md):
the role is signed under both ids of a key its delegator lists under the old
id, and any key its own delegations list under an old id is re-listed under its
correct id. It refuses to re-list a key whose role is still signed under the
old id only (that role would stop verifying): re-sign that role first.

With --out DIR (top-level targets only), nothing is uploaded: the next targets
version is written to DIR, signed by the --key given (if any), for the other
targets keyholders to sign with tufoci sign-metadata and then tufoci upload DIR
(a threshold of 2 targets keys, as roles/production.json asks).

With <prefix>/ (a namespace): the top-level targets of every member
(--all-members, as the service lists them) or of the members named
(--members), a few at a time, signed by the namespace's targets key. A
member's current targets may be signed by that key or by the one the last
rotation of the targets key replaced: this re-signs the members that tufoci
rotate root <prefix>/ --targets-key-new could not (it prints this command for
them). Exits 1 if any member failed, naming each and the command that retries
them. tufoci resign <member> --role targets accepts the replaced key too.

options:
  --role NAME      the role to re-sign
  --key FILE       a private key of the role (repeatable)
  --expires D      lifetime of the new version (default 90d for targets, 30d otherwise)
  --out DIR        write the partly signed targets to DIR instead of uploading (a new or empty directory)
  --trust FILE     with --out or <prefix>/: the root you pinned; the service's current root must descend from it
  --all-members    with <prefix>/: every member of the namespace
  --members R1,R2  with <prefix>/: these members (repeatable)
${SERVER_HELP}`;

/** The key ids the delegator of `role` lists for it (from the service's status). */
export function trustedIdsOf(status: RepositoryStatus, role: string): string[] {
  return status.roles.find((r) => r.role === role)?.keyids ?? [];
}

/** Does `md` carry a signature, under an id `listed` names, by one of `signers`? */
export function signedByAny(md: { signedBytes: Uint8Array; signatures: ReadonlyArray<{ keyid: string; sig: string }> }, signers: readonly Signer[], listed: readonly string[]): boolean {
  const keys: Record<string, TufKeyJson> = {};
  for (const s of signers) for (const id of signingIds(s.public, listed)) if (listed.includes(id)) keys[id] = s.public;
  return verifyThreshold('role', md.signedBytes, md.signatures, { keyIDs: Object.keys(keys), threshold: 1 }, keys).ok;
}

interface ChildDelegation {
  name: string;
  keyIDs: readonly string[];
  threshold: number;
  keys: KeyMap;
  /** Role files of this delegation (the role itself, or its bins). */
  files(status: RepositoryStatus): string[];
}

function childDelegations(t: Targets): ChildDelegation[] {
  const d = t.delegations;
  if (!d) return [];
  const out: ChildDelegation[] = Object.entries(d.roles ?? {}).map(([name, r]) => ({
    name,
    keyIDs: r.keyIDs,
    threshold: r.threshold,
    keys: d.keys,
    files: (s) => (s.roles.some((x) => x.role === name) ? [name] : []),
  }));
  const bins = d.succinctRoles;
  if (bins) {
    out.push({ name: bins.namePrefix, keyIDs: bins.keyIDs, threshold: bins.threshold, keys: d.keys, files: (s) => s.roles.map((x) => x.role).filter((r) => bins.isDelegatedRole(r)) });
  }
  return out;
}

/** The keys a delegation lists, by their correct ids (identity of the key set, whatever ids it is listed under). */
function keySet(c: ChildDelegation): string {
  return [...new Set(c.keyIDs.map((id) => (c.keys[id] ? keyIdsOf(asJson(c.keys[id])).correct : `?${id}`)))].sort().join(',');
}

/**
 * Refuse a next version of a delegating role that lists a delegated role's *same* keys under other
 * ids (a re-listing) while that role's current version is not signed under the new ids: clients
 * would stop verifying its tags. A delegation whose keys really change (a new key, a revocation)
 * is not a re-listing and is left to the owner.
 */
export async function checkRelisting(client: ServiceClient, repo: string, status: RepositoryStatus, before: Targets, after: Targets, policy: Policy): Promise<void> {
  const old = new Map(childDelegations(before).map((c) => [c.name, c]));
  const stale: Array<{ file: string; version: number; delegation: string }> = [];
  for (const c of childDelegations(after)) {
    const b = old.get(c.name);
    if (!b || b.threshold !== c.threshold || keySet(b) !== keySet(c)) continue;
    if ([...b.keyIDs].sort().join(',') === [...c.keyIDs].sort().join(',')) continue;
    for (const file of c.files(status)) {
      const version = status.roles.find((r) => r.role === file)?.version ?? 0;
      const p = parseMetadata('targets', await client.metadata(repo, `${version}.${file}.json`), Math.max(policy.roles.delegated.maxBytes, policy.roles.ci.maxBytes), file);
      if (!verifyThreshold(file, p.signedBytes, p.signatures, c, c.keys).ok) stale.push({ file, version, delegation: c.name });
    }
  }
  if (stale.length) {
    const names = [...new Set(stale.map((s) => s.delegation))];
    throw new UsageError(
      `re-listing the key(s) of ${names.join(', ')} under their correct key ids would leave ${stale.map((s) => `${s.file} v${s.version}`).join(', ')} unverifiable: ` +
        `signed under the legacy key id only. The holder of the key first runs: ${names.map((n) => `tufoci resign ${repo} --role ${n} --key <${n} key>`).join('; ')}`,
    );
  }
}

/** `edit` + every delegated key listed under a legacy id re-listed under its correct id. */
export function withRelisting(edit: (json: Record<string, unknown>) => void): (json: Record<string, unknown>) => void {
  return (json) => {
    edit(json);
    const d = json['delegations'] as Record<string, unknown> | undefined;
    if (d) relistLegacyKeyIds(d);
  };
}

export { legacyWarnings, repairCommand } from './status.ts';

/** A targets role file re-signed: its next version, same content, signed and not yet uploaded. */
export interface NextVersion {
  file: string;
  fileName: string;
  bytes: Uint8Array;
  /** Keys of the delegations it makes, re-listed from their legacy ids to their correct ones. */
  relisted: Array<{ keyid: string; expected: string }>;
  /** The key ids it is signed under. */
  signedAs: string[];
}

/** What `tufoci resign` reports per role file it uploaded. */
export interface Resigned {
  role: string;
  version: number;
  signedAs: string[];
  relisted: Array<{ keyid: string; expected: string }>;
  timestampVersion: number;
}

/**
 * The next version of targets role file `file` (`targets`, a delegated role or a bin) of `repo`:
 * the service's current version `version` with the same tags and delegations, a new expiry, and
 * every delegated key listed under a legacy id re-listed under its correct one, signed by
 * `signers` (under both ids of a key `trustedIds`, its delegator's listing, names by its legacy
 * id). Built only on what `vouched` accepts — by default a version one of `signers` signed: never
 * on whatever the service hands over. `vouched` answers undefined to accept, else why not.
 */
export async function signNextVersion(
  client: ServiceClient,
  repo: string,
  status: RepositoryStatus,
  spec: {
    file: string;
    version: number;
    signers: readonly Signer[];
    trustedIds: readonly string[];
    expires: string;
    policy: Policy;
    vouched?: (current: ReturnType<typeof parseMetadata<'targets'>>) => string | undefined;
  },
): Promise<NextVersion> {
  const { file, version, signers, trustedIds, policy } = spec;
  const maxBytes = file === 'targets' ? policy.roles.targets.maxBytes : Math.max(policy.roles.delegated.maxBytes, policy.roles.ci.maxBytes);
  const parsed = parseMetadata('targets', await client.metadata(repo, `${version}.${file}.json`), maxBytes, file);
  if (parsed.md.signed.version !== version) throw new UsageError(`the service's ${version}.${file}.json of ${repo} holds version ${parsed.md.signed.version}`);
  const refusal = spec.vouched ? spec.vouched(parsed) : signedByAny(parsed, signers, trustedIds) ? undefined : `the service's ${file} v${version} of ${repo} is not signed by your --key`;
  if (refusal !== undefined) throw new UsageError(`${refusal}; refusing to re-sign it`);
  let relisted: Array<{ keyid: string; expected: string }> = [];
  const next = nextTargets(parsed.md.signed, spec.expires, (json) => {
    const d = json['delegations'] as Record<string, unknown> | undefined;
    if (d) relisted = relistLegacyKeyIds(d);
  });
  await checkRelisting(client, repo, status, parsed.md.signed, next, policy);
  const bytes = await signMetadata(next, signers, { trustedIds });
  return { file, fileName: `${next.version}.${file}.json`, bytes, relisted, signedAs: parseMetadata('targets', bytes, maxBytes, file).signatures.map((s) => s.keyid) };
}

/** Upload a re-signed version; what resign reports of it. */
export async function uploadNext(client: ServiceClient, repo: string, next: NextVersion): Promise<Resigned> {
  const result = await client.upload(repo, next.fileName, next.bytes);
  return { role: next.file, version: result.version, signedAs: next.signedAs, relisted: next.relisted, timestampVersion: result.timestampVersion };
}

function say(out: ReturnType<typeof output>, repo: string, r: Resigned): void {
  out.say(`${r.role} v${r.version} of ${repo} re-signed under key id(s) ${r.signedAs.map((k) => k.slice(0, 12)).join(', ')}; timestamp v${r.timestampVersion}`);
  for (const x of r.relisted) out.say(`  re-listed key ${x.keyid.slice(0, 12)} as ${x.expected.slice(0, 12)}`);
}

export async function resign(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      ...SERVER_OPTIONS,
      role: { type: 'string' },
      key: { type: 'string', multiple: true },
      expires: { type: 'string' },
      out: { type: 'string' },
      trust: { type: 'string' },
      'all-members': { type: 'boolean' },
      members: { type: 'string', multiple: true },
    },
  });
  if (values.help) return console.log(RESIGN_HELP);
  const [repo, ...extra] = positionals;
  if (!repo || extra.length) throw new UsageError(`resign takes one repository\n\n${RESIGN_HELP}`);
  if (!values.role) throw new UsageError('--role is required: the role to re-sign ("targets" or a delegated role)');
  if (repo.endsWith('/')) {
    // `<prefix>/`: the members of the namespace (resign-members.ts).
    if (values.out !== undefined) throw new UsageError(`--out does not go with ${repo}: re-sign one member at a time through DIR (tufoci resign <member> --role targets --out DIR)`);
    const { resignNamespace } = await import('./resign-members.ts');
    return resignNamespace(repo, values, parseDuration(values.expires ?? '90d', '--expires'), values.trust ? readFileSync(values.trust) : undefined);
  }
  if (values['all-members'] || values.members) throw new UsageError(`--all-members and --members go with a namespace (tufoci resign <prefix>/ …), not ${repo}`);
  if (values.trust && !values.out) throw new UsageError('--trust goes with --out (or with a namespace, <prefix>/)');
  if (values.out !== undefined) return resignCeremony(repo, values.role, values.key ?? [], values.expires, values.out, values.trust, values);
  if (!values.key?.length) throw new UsageError('--key is required: a private key of the role (or, for targets, --out DIR: the keyholders sign later)');
  const role = values.role;
  const expiresMs = parseDuration(values.expires ?? (role === 'targets' ? '90d' : '30d'), '--expires');
  const signers = await Promise.all(values.key.map((f) => loadSigner(f)));
  const policy = await loadPolicyFile(defaultPolicyPath());
  const client = serviceClient(values);
  const status = await client.status(repo);
  const out = output(values.json ?? false);

  if (role === 'targets' && status.namespace !== undefined && anchorPrefix(repo) === undefined) {
    // A member's targets are signed by its namespace's targets key: after a rotation of that key,
    // by the one it replaced until re-signed (resign-members.ts).
    const { memberSpec, resignMember } = await import('./resign-members.ts');
    const spec = await memberSpec(client, values, status.namespace, signers, isoExpiry(Date.now() + expiresMs), policy);
    const { repository: _, ...r } = await resignMember(client, repo, spec);
    say(out, repo, r);
    return out.result({ repository: repo, resigned: [r] });
  }

  let files = status.roles.some((r) => r.role === role) && !['root', 'snapshot', 'timestamp'].includes(role) ? [role] : [];
  if (!files.length) {
    const t = status.roles.find((r) => r.role === 'targets');
    const top = t ? parseMetadata('targets', await client.metadata(repo, `${t.version}.targets.json`), policy.roles.targets.maxBytes).md.signed : undefined;
    const bins = top?.delegations?.succinctRoles;
    if (bins?.namePrefix === role) files = status.roles.map((r) => r.role).filter((r) => bins.isDelegatedRole(r));
  }
  if (!files.length) throw new UsageError(`${repo} has no metadata for a targets role "${role}" (root, snapshot and timestamp are not re-signed this way: tufoci rotate root)`);

  const results: Resigned[] = [];
  for (const file of files) {
    const current = status.roles.find((r) => r.role === file);
    if (!current) continue;
    const trusted = current.keyids;
    // A bin of a role delegated to --key alone is signed by the key derived from it for this repository.
    const use = signers.map((s) => {
      const bins = repositoryBinsSigner(s, repo);
      return bins && listedIdOf(bins.public, trusted) ? Object.assign(bins, { path: `${s.path} (this repository's bins key)` }) : s;
    });
    const strangers = use.filter((s) => !listedIdOf(s.public, trusted));
    if (strangers.length) {
      throw new UsageError(`--key ${strangers.map((s) => `${s.path} (${s.keyid.slice(0, 12)})`).join(', ')} is not a key of ${file} of ${repo}; its keys are ${trusted.map((k) => k.slice(0, 12)).join(', ')}`);
    }
    const next = await signNextVersion(client, repo, status, { file, version: current.version, signers: use, trustedIds: trusted, expires: isoExpiry(Date.now() + expiresMs), policy });
    const r = await uploadNext(client, repo, next);
    results.push(r);
    say(out, repo, r);
  }
  out.result({ repository: repo, resigned: results });
}

/**
 * `resign --role targets --out DIR`: the next top-level targets, same content, signed by the keys
 * given (none or some), written as a ceremony directory. What it builds on is the service's
 * current targets, verified by the targets keys of its current root (no key may be at hand).
 */
async function resignCeremony(repo: string, role: string, keyRefs: readonly string[], expires: string | undefined, dir: string, trust: string | undefined, values: Parameters<typeof serviceClient>[0] & { json?: boolean | undefined }): Promise<void> {
  if (role !== 'targets') throw new UsageError(`--out re-signs the top-level targets role; "${role.slice(0, 64)}" is re-signed by its own key: tufoci resign ${repo} --role ${role.slice(0, 64)} --key <its key>`);
  const signers = await Promise.all(keyRefs.map((f) => loadSigner(f)));
  const client = serviceClient(values);
  const pinned = trust ? readFileSync(trust) : undefined;
  const { current, status, policy } = await currentTargetsByRoot(client, repo, pinned);
  const trusted = trustedIdsOf(status, 'targets');
  const strangers = signers.filter((s) => !listedIdOf(s.public, trusted));
  if (strangers.length) {
    throw new UsageError(`--key ${strangers.map((s) => `${s.path} (${s.keyid.slice(0, 12)})`).join(', ')} is not a key of targets of ${repo}; its keys are ${trusted.map((k) => k.slice(0, 12)).join(', ')}`);
  }
  const next = nextTargets(current, isoExpiry(Date.now() + parseDuration(expires ?? '90d', '--expires')), (json) => {
    const d = json['delegations'] as Record<string, unknown> | undefined;
    if (d) relistLegacyKeyIds(d);
  });
  await checkRelisting(client, repo, status, current, next, policy);
  const partly = await signMetadata(next, signers, { trustedIds: trusted });
  const plan = await targetsCeremonyPlan(client, repo, 'resign', 'resign targets', partly, pinned);
  await writeCeremony(dir, plan, output(values.json ?? false));
}
