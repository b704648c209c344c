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
import { loadSigner, type Signer, type TufKeyJson } from '../../keys/index.ts';
import { defaultPolicyPath, loadPolicyFile, type Policy } from '../../policy/policy.ts';
import type { RepositoryStatus, ServiceClient } from '../../client/service-client.ts';
import { SERVER_HELP, SERVER_OPTIONS, UsageError, output, parseDuration, serviceClient } from '../common.ts';
import { writeCeremony } from '../ceremony-dir.ts';
import { currentTargetsByRoot, targetsCeremonyPlan } from './ceremony.ts';

export const RESIGN_HELP = `usage: tufoci resign <repo> --role <role> --key K [--key K2] [--expires D] [options]
       tufoci resign <repo> --role targets [--key K] --out DIR [--trust FILE] [--expires D]

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

options:
  --role NAME      the role to re-sign
  --key FILE       a private key of the role (repeatable)
  --expires D      lifetime of the new version (default 90d for targets, 30d otherwise)
  --out DIR        write the partly signed targets to DIR instead of uploading (a new or empty directory)
  --trust FILE     with --out: the root you pinned; the service's current root must descend from it
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

export async function resign(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { ...SERVER_OPTIONS, role: { type: 'string' }, key: { type: 'string', multiple: true }, expires: { type: 'string' }, out: { type: 'string' }, trust: { type: 'string' } },
  });
  if (values.help) return console.log(RESIGN_HELP);
  const [repo, ...extra] = positionals;
  if (!repo || extra.length) throw new UsageError(`resign takes one repository\n\n${RESIGN_HELP}`);
  if (!values.role) throw new UsageError('--role is required: the role to re-sign ("targets" or a delegated role)');
  if (values.trust && !values.out) throw new UsageError('--trust goes with --out');
  if (values.out !== undefined) return resignCeremony(repo, values.role, values.key ?? [], values.expires, values.out, values.trust, values);
  if (!values.key?.length) throw new UsageError('--key is required: a private key of the role (or, for targets, --out DIR: the keyholders sign later)');
  const role = values.role;
  const expiresMs = parseDuration(values.expires ?? (role === 'targets' ? '90d' : '30d'), '--expires');
  const signers = await Promise.all(values.key.map((f) => loadSigner(f)));
  const policy = await loadPolicyFile(defaultPolicyPath());
  const client = serviceClient(values);
  const status = await client.status(repo);

  let files = status.roles.some((r) => r.role === role) && !['root', 'snapshot', 'timestamp'].includes(role) ? [role] : [];
  if (!files.length) {
    const t = status.roles.find((r) => r.role === 'targets');
    const top = t ? parseMetadata('targets', await client.metadata(repo, `${t.version}.targets.json`), policy.roles.targets.maxBytes).md.signed : undefined;
    const bins = top?.delegations?.succinctRoles;
    if (bins?.namePrefix === role) files = status.roles.map((r) => r.role).filter((r) => bins.isDelegatedRole(r));
  }
  if (!files.length) throw new UsageError(`${repo} has no metadata for a targets role "${role}" (root, snapshot and timestamp are not re-signed this way: tufoci rotate root)`);

  const out = output(values.json ?? false);
  const results: Array<{ role: string; version: number; signedAs: string[]; relisted: Array<{ keyid: string; expected: string }>; timestampVersion: number }> = [];
  for (const file of files) {
    const current = status.roles.find((r) => r.role === file);
    if (!current) continue;
    const trusted = current.keyids;
    const strangers = signers.filter((s) => !listedIdOf(s.public, trusted));
    if (strangers.length) {
      throw new UsageError(`--key ${strangers.map((s) => `${s.path} (${s.keyid.slice(0, 12)})`).join(', ')} is not a key of ${file} of ${repo}; its keys are ${trusted.map((k) => k.slice(0, 12)).join(', ')}`);
    }
    const maxBytes = file === 'targets' ? policy.roles.targets.maxBytes : Math.max(policy.roles.delegated.maxBytes, policy.roles.ci.maxBytes);
    const parsed = parseMetadata('targets', await client.metadata(repo, `${current.version}.${file}.json`), maxBytes, file);
    if (parsed.md.signed.version !== current.version) throw new UsageError(`the service's ${current.version}.${file}.json of ${repo} holds version ${parsed.md.signed.version}`);
    // Re-sign only what these keys signed (not whatever the service hands over).
    if (!signedByAny(parsed, signers, trusted)) {
      throw new UsageError(`the service's ${file} v${current.version} of ${repo} is not signed by your --key; refusing to re-sign it`);
    }
    let relisted: Array<{ keyid: string; expected: string }> = [];
    const next = nextTargets(parsed.md.signed, isoExpiry(Date.now() + expiresMs), (json) => {
      const d = json['delegations'] as Record<string, unknown> | undefined;
      if (d) relisted = relistLegacyKeyIds(d);
    });
    await checkRelisting(client, repo, status, parsed.md.signed, next, policy);
    const bytes = await signMetadata(next, signers, { trustedIds: trusted });
    const result = await client.upload(repo, `${next.version}.${file}.json`, bytes);
    const signedAs = parseMetadata('targets', bytes, maxBytes, file).signatures.map((s) => s.keyid);
    results.push({ role: file, version: result.version, signedAs, relisted, timestampVersion: result.timestampVersion });
    out.say(`${file} v${result.version} of ${repo} re-signed under key id(s) ${signedAs.map((k) => k.slice(0, 12)).join(', ')}; timestamp v${result.timestampVersion}`);
    for (const r of relisted) out.say(`  re-listed key ${r.keyid.slice(0, 12)} as ${r.expected.slice(0, 12)}`);
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
