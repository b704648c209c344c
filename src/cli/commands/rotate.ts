/**
 * `tufoci rotate root`: the owner's root rotation, signed locally with offline
 * keys. Root N+1 is built from the service's root N (targets, snapshot and
 * timestamp roles kept unless a flag changes them), signed by a threshold of
 * N's root keys *and* every new root key, checked locally against both, and
 * uploaded as `N+1.root.json`; the service verifies it again, then re-signs
 * snapshot and timestamp. Clients that pinned any earlier root walk the chain.
 *
 * With `--targets-key-new` the targets key changes in the same rotation and
 * top-level targets is re-signed by the new key. Given the current targets key
 * too (`--targets-key`), targets N+1 is signed by both and uploaded *before*
 * the root, so it verifies under either root: clients never see a gap.
 *
 * At a namespace's anchor (`rotate root P/`) the targets key signs every
 * member's targets too: with a new one, each member's targets is re-signed in
 * the same order (resign-members.ts). With the old key, before the root (the
 * service verifies a member's upload under the root the member is under, N
 * then; clients take N+1 next), and a member that fails stops the rotation
 * before the root, so no member is left unverifiable. Without it, after the
 * root (each member first takes N+1), and a member that fails is reported with
 * the `tufoci resign P/ --members …` line that re-signs it; exit 1.
 *
 * `tufoci rotate online` lives in rotate-online.ts; what both build on (the
 * checked current root, the next root) in ../roots.ts.
 */
import { writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { anchorPrefix, namespaceAnchor } from '../../engine/scope.ts';
import {
  describeVerification,
  isoExpiry,
  listedIdOf,
  nextTargets,
  parseMetadata,
  signMetadata,
  verifyThreshold,
} from '../../engine/index.ts';
import { loadPublicKey, loadSigner, type Signer, type TufKeyJson } from '../../keys/index.ts';
import { defaultPolicyPath, loadPolicyFile } from '../../policy/policy.ts';
import type { UploadResult } from '../../client/service-client.ts';
import { SERVER_HELP, SERVER_OPTIONS, UsageError, output, parseDuration, positiveInt, serviceClient } from '../common.ts';
import { rotateOnline } from './rotate-online.ts';
import { checkTargetsUnderNextRoot, currentRoot, nextRoot, targetsKeysOf } from '../roots.ts';
import { namespaceMembers } from '../namespace-members.ts';
import { reportFailures, resignMembers, syncOnce, type MemberFailure, type MemberResigned, type MemberTargetsSpec } from './resign-members.ts';
import { checkRelisting, withRelisting } from './resign.ts';
import { OUT_HELP, rootCeremonyPlan, writeCeremony } from '../ceremony-dir.ts';

/** Where the root builders live; named here too for the callers that know them as rotate's. */
export { checkTargetsUnderNextRoot, currentRoot, keyJson, nextRoot, roleKeysOf } from '../roots.ts';

export const ROTATE_HELP = `usage: tufoci rotate root <repo> --old-key K --new-key K [options]
       tufoci rotate online <repo> [options]

  root     sign and upload the next root with new root keys (offline keys)
  online   move a repository to the service's next online keys

run "tufoci rotate root --help" (or online) for the options`;

export const ROTATE_ROOT_HELP = `usage: tufoci rotate root <repo> --old-key K [--old-key K2] --new-key K [--new-key K2]
                         [--threshold N] [--expires 365d] [options]

Builds root N+1 of <repo> from the service's current root N: the root role
gets the new keys and threshold; the targets, snapshot and timestamp roles stay
as they are (unless --targets-key-new). It is signed by the old keys (a
threshold of N's root keys) and by every new key, checked locally against both,
and uploaded. Clients that pinned an earlier root follow the chain.
To keep a key, pass it as both --old-key and --new-key.

options:
  --old-key FILE           a private root key of root N (repeat until N's threshold is met)
  --new-key FILE           a private root key of root N+1 (repeat; each one signs)
  --new-pub FILE           a public key to list in N+1's root role that does not sign now
  --threshold N            signatures root N+1 requires (default: N's threshold)
  --expires D              lifetime of root N+1 (default 365d)
  --trust FILE             a root you pinned earlier: the chain from it to N is verified first
  --targets-key-new FILE   also replace the targets key: the new private targets key
                           (repeatable); top-level targets is re-signed with it (of a
                           namespace <prefix>/: every member's too; exit 1 if any fails)
  --targets-threshold N    targets signatures root N+1 requires (default 1)
  --targets-key FILE       with --targets-key-new: the current private targets key; targets
                           is then signed by both and uploaded first (no gap for clients;
                           of a namespace, a member that fails stops it before the root).
                           Without it (key lost) the root goes first and clients refuse
                           targets until the re-signed targets lands moments later
  --targets-expires D      lifetime of the re-signed targets (default 90d)
  --root-out FILE          save the signed root N+1 here (to pin it, or for the record)
${OUT_HELP}
                           (--old-key and --new-key then sign what they can; --new-pub
                           names the other new keys; not with --targets-key-new)
${SERVER_HELP}`;

/** Dispatcher: `tufoci rotate root|online …`. */
export async function rotate(argv: string[]): Promise<void> {
  const [what, ...rest] = argv;
  switch (what) {
    case 'root':
      return rotateRoot(rest);
    case 'online':
      return rotateOnline(rest);
    case undefined:
    case '-h':
    case '--help':
      console.log(ROTATE_HELP);
      return;
    default:
      throw new UsageError(`unknown rotation "${what}"\n\n${ROTATE_HELP}`);
  }
}

/** Signers without repeats (a kept key passed as old and new signs once). */
function distinct(signers: readonly Signer[]): Signer[] {
  const seen = new Set<string>();
  return signers.filter((s) => !seen.has(s.keyid) && seen.add(s.keyid));
}

export async function rotateRoot(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      ...SERVER_OPTIONS,
      'old-key': { type: 'string', multiple: true, default: [] },
      'new-key': { type: 'string', multiple: true, default: [] },
      'new-pub': { type: 'string', multiple: true },
      threshold: { type: 'string' },
      expires: { type: 'string' },
      trust: { type: 'string' },
      'targets-key-new': { type: 'string', multiple: true },
      'targets-threshold': { type: 'string' },
      'targets-key': { type: 'string', multiple: true },
      'targets-expires': { type: 'string' },
      'root-out': { type: 'string' },
      out: { type: 'string' },
    },
  });
  if (values.help) return console.log(ROTATE_ROOT_HELP);
  const [arg, ...extra] = positionals;
  if (!arg || extra.length) throw new UsageError(`rotate root takes one repository\n\n${ROTATE_ROOT_HELP}`);
  // `<prefix>/`: the namespace's root, rotated at its anchor for every member (engine/scope.ts).
  const repo = arg.endsWith('/') ? namespaceAnchor(arg) : arg;
  if (!values['old-key'].length && !values.out) throw new UsageError('--old-key is required: a threshold of the current root keys must sign the new root');
  if (!values['new-key'].length && !(values.out && values['new-pub']?.length)) throw new UsageError(values.out ? '--new-key or --new-pub is required: the keys of the new root' : '--new-key is required: every key of the new root that signs now');
  if (values.out && (values['targets-key-new']?.length || values['root-out'])) {
    throw new UsageError(values['root-out'] ? 'with --out, the root is saved in DIR (or by tufoci upload DIR --root-out FILE)' : '--targets-key-new does not go with --out: rotate the root keys through DIR, then the targets key in a second rotation');
  }
  if (values['targets-key']?.length && !values['targets-key-new']?.length) throw new UsageError('--targets-key is only used with --targets-key-new');
  const expiresMs = parseDuration(values.expires ?? '365d', '--expires');
  const targetsExpiresMs = parseDuration(values['targets-expires'] ?? '90d', '--targets-expires');

  const oldSigners = await Promise.all(values['old-key'].map((f) => loadSigner(f)));
  const newSigners = await Promise.all(values['new-key'].map((f) => loadSigner(f)));
  const newPubs = await Promise.all((values['new-pub'] ?? []).map((f) => loadPublicKey(f)));
  const newTargetsSigners = await Promise.all((values['targets-key-new'] ?? []).map((f) => loadSigner(f)));
  const oldTargetsSigners = await Promise.all((values['targets-key'] ?? []).map((f) => loadSigner(f)));
  const pinned = values.trust ? await readFile(values.trust) : undefined;

  const policy = await loadPolicyFile(defaultPolicyPath());
  const client = serviceClient(values);
  const { root: current } = await currentRoot(client, repo, policy, pinned);
  const N = current.version;

  // The old keys must be root keys of root N, enough of them to meet its threshold.
  const oldRole = current.roles['root'];
  if (!oldRole) throw new UsageError(`root v${N} of ${repo} defines no root role`);
  // A root written before the key id fix lists its keys under their legacy ids: either id counts.
  const strangers = oldSigners.filter((s) => !listedIdOf(s.public, oldRole.keyIDs));
  if (strangers.length) {
    throw new UsageError(
      `--old-key ${strangers.map((s) => `${s.path} (${s.keyid.slice(0, 12)})`).join(', ')} is not a root key of root v${N} of ${repo}; its root keys are ${oldRole.keyIDs.map((k) => k.slice(0, 12)).join(', ')}`,
    );
  }
  const oldDistinct = distinct(oldSigners);
  if (!values.out && oldDistinct.length < oldRole.threshold) {
    throw new UsageError(`root v${N} of ${repo} requires ${oldRole.threshold} root signatures; ${oldDistinct.length} --old-key given`);
  }

  // Root N+1's root role: the new signing keys plus any listed-only public keys.
  const newKeys: TufKeyJson[] = [];
  const newIds = new Set<string>();
  for (const k of [...distinct(newSigners).map((s) => ({ keyid: s.keyid, public: s.public })), ...newPubs]) {
    if (!newIds.has(k.keyid)) {
      newIds.add(k.keyid);
      newKeys.push(k.public);
    }
  }
  const threshold = positiveInt(values.threshold, '--threshold', Math.min(oldRole.threshold, newKeys.length));
  if (threshold > newKeys.length) throw new UsageError(`--threshold ${threshold} needs at least ${threshold} new root keys; ${newKeys.length} given`);
  if (!values.out && threshold > distinct(newSigners).length) {
    throw new UsageError(`root v${N + 1} must be signed by ${threshold} of its own keys; only ${distinct(newSigners).length} --new-key given (--new-pub keys do not sign)`);
  }

  const changes: Parameters<typeof nextRoot>[2] = { root: { keys: newKeys, threshold } };
  let targetsThreshold = 0;
  if (newTargetsSigners.length) {
    targetsThreshold = positiveInt(values['targets-threshold'], '--targets-threshold', 1);
    const keys = distinct(newTargetsSigners).map((s) => s.public);
    if (targetsThreshold > keys.length) throw new UsageError(`--targets-threshold ${targetsThreshold} needs at least ${targetsThreshold} --targets-key-new`);
    changes.targets = { keys, threshold: targetsThreshold };
  } else if (values['targets-threshold'] !== undefined) {
    throw new UsageError('--targets-threshold is only used with --targets-key-new');
  }

  const now = Date.now();
  const next = nextRoot(current, isoExpiry(now + expiresMs), changes, anchorPrefix(repo) ?? repo);
  // Old keys root N lists under a legacy id sign under it too, so root N's threshold counts them.
  const bytes = await signMetadata(next, distinct([...oldDistinct, ...newSigners]), { trustedIds: oldRole.keyIDs });
  if (values.out) {
    await checkTargetsUnderNextRoot(client, repo, current, next, policy);
    return void (await writeCeremony(values.out, rootCeremonyPlan(repo, client.url, current, bytes), output(values.json ?? false)));
  }

  // Verify locally what the service and every client will verify.
  const parsed = parseMetadata('root', bytes, policy.roles.root.maxBytes);
  const byOld = verifyThreshold(`root v${N + 1} (by the keys of v${N})`, parsed.signedBytes, parsed.signatures, oldRole, current.keys);
  const byNew = verifyThreshold(`root v${N + 1} (by its own keys)`, parsed.signedBytes, parsed.signatures, parsed.md.signed.roles['root'] as { keyIDs: string[]; threshold: number }, parsed.md.signed.keys);
  for (const v of [byOld, byNew]) if (!v.ok) throw new UsageError(`${describeVerification(v)}: refusing to upload`);
  if (!newTargetsSigners.length) await checkTargetsUnderNextRoot(client, repo, current, next, policy);

  // Targets re-signed for a new targets key (see the file comment for the order).
  let targetsBytes: Uint8Array | undefined;
  let targetsFile = '';
  if (newTargetsSigners.length) {
    const status = await client.status(repo);
    const t = status.roles.find((r) => r.role === 'targets');
    if (!t) throw new UsageError(`${repo} has no targets role`);
    const parsedTargets = parseMetadata('targets', await client.metadata(repo, `${t.version}.targets.json`), policy.roles.targets.maxBytes);
    const currentTargets = parsedTargets.md.signed;
    if (currentTargets.version !== t.version) throw new UsageError(`the service's ${t.version}.targets.json of ${repo} holds version ${currentTargets.version}`);
    const oldTargetsRole = current.roles['targets'];
    // Re-sign only what root N's targets keys signed (not whatever the service hands over).
    const vt = oldTargetsRole ? verifyThreshold(`targets v${t.version}`, parsedTargets.signedBytes, parsedTargets.signatures, oldTargetsRole, current.keys) : undefined;
    if (!vt?.ok) {
      throw new UsageError(`the service's targets v${t.version} of ${repo} is not signed by the targets keys of root v${N} (${vt ? describeVerification(vt) : 'no targets role'}); refusing to re-sign it`);
    }
    if (oldTargetsSigners.length) {
      const outsiders = oldTargetsSigners.filter((s) => !listedIdOf(s.public, oldTargetsRole?.keyIDs ?? []));
      if (outsiders.length) throw new UsageError(`--targets-key ${outsiders.map((s) => s.path).join(', ')} is not a targets key of root v${N} of ${repo}`);
      if (distinct(oldTargetsSigners).length < (oldTargetsRole?.threshold ?? 1)) {
        throw new UsageError(`root v${N} requires ${oldTargetsRole?.threshold} targets signatures; ${distinct(oldTargetsSigners).length} --targets-key given`);
      }
    }
    const nt = nextTargets(currentTargets, isoExpiry(now + targetsExpiresMs), withRelisting(() => {}));
    await checkRelisting(client, repo, status, currentTargets, nt, policy);
    targetsBytes = await signMetadata(nt, distinct([...oldTargetsSigners, ...newTargetsSigners]), { trustedIds: oldTargetsRole?.keyIDs ?? [] });
    targetsFile = `${nt.version}.targets.json`;
  }

  // A namespace's targets key signs every member's targets too: each is re-signed, in the same
  // order as the anchor's (resign-members.ts; docs/ARCHITECTURE.md "Namespaces"). Listed before
  // anything is uploaded.
  const namespace = newTargetsSigners.length ? anchorPrefix(repo) : undefined;
  const listing = namespace !== undefined ? await namespaceMembers(values, repo) : undefined;
  const membersSpec = (rootVersion: number, signers: readonly Signer[], trustedIds: readonly string[]): MemberTargetsSpec => ({
    namespace: namespace as string,
    rootVersion,
    signers,
    trustedIds,
    vouchers: [targetsKeysOf(current)].filter((k) => k !== undefined),
    expires: isoExpiry(now + targetsExpiresMs),
    policy,
    sync: syncOnce(values, namespace as string),
  });
  const unreadable: MemberFailure[] = (listing?.unreadable ?? []).map((u) => ({ repository: u.repository, error: `the service cannot read it: ${u.error}` }));

  const out = output(values.json ?? false);
  let targetsResult: UploadResult | undefined;
  let members: { resigned: MemberResigned[]; failed: MemberFailure[] } | undefined;
  if (targetsBytes && oldTargetsSigners.length) {
    targetsResult = await client.upload(repo, targetsFile, targetsBytes);
    out.say(`targets v${targetsResult.version} of ${repo} signed by the old and the new targets keys`);
    if (listing) {
      // Before the root: signed by both keys, each member's targets verifies under root N (which
      // the service checks it against now) and under N+1 (which clients take next).
      members = await resignMembers(client, listing.members, membersSpec(N, distinct([...oldTargetsSigners, ...newTargetsSigners]), current.roles['targets']?.keyIDs ?? []));
      const failed = [...members.failed, ...unreadable];
      if (failed.length) {
        out.say(`root v${N + 1} NOT uploaded: ${failed.length} member(s) of ${namespace} could not be re-signed, and would not verify under it:`);
        for (const f of failed) out.say(`  ${f.repository}: ${f.error}`);
        out.say(`every member still verifies under root v${N} (the ${members.resigned.length} re-signed are signed by the old and the new targets keys, valid under either root).`);
        out.say(`fix them and run this rotation again; or leave out --targets-key: the root then goes first, and the members that fail after it are named with the command that re-signs them`);
        out.result({ repository: repo, rotated: false, previousVersion: N, memberTargets: { namespace, resigned: members.resigned.length, failed } });
        process.exitCode = 1;
        return;
      }
    }
  }
  const result = await client.upload(repo, `${N + 1}.root.json`, bytes);
  if (targetsBytes && !oldTargetsSigners.length) {
    targetsResult = await client.upload(repo, targetsFile, targetsBytes);
    out.say(`targets v${targetsResult.version} of ${repo} re-signed by the new targets key`);
    // After the root (the old key is not at hand): verified under root N+1, which each member takes first.
    if (listing) members = await resignMembers(client, listing.members, membersSpec(N + 1, newTargetsSigners, next.roles['targets']?.keyIDs ?? []));
  }
  if (values['root-out']) writeFileSync(values['root-out'], bytes);

  const rootRole = parsed.md.signed.roles['root'] as { keyIDs: string[]; threshold: number };
  const lastTimestamp = Math.max(result.timestampVersion, targetsResult?.timestampVersion ?? 0);
  out.say(
    `${result.unchanged ? 'already rotated' : 'rotated'} ${repo}: root v${N} → v${result.version} (${rootRole.threshold} of ${rootRole.keyIDs.length} keys: ${rootRole.keyIDs.map((k) => k.slice(0, 12)).join(', ')}); timestamp v${lastTimestamp}`,
  );
  for (const w of result.warnings ?? []) out.say(`warning: ${w}`);
  if (result.members) {
    const m = result.members;
    out.say(`${m.updated} members of namespace ${m.namespace} took root v${m.rootVersion}${m.pending ? `; ${m.pending} more take it in the background` : ''}${m.failed.length ? `; ${m.failed.length} failed: ${m.failed.map((f) => f.repository).join(', ')}` : ''}`);
    if (m.pending || m.failed.length) out.say(`  (each member also takes it at its next refresh; POST /v1/namespace-sync/${repo} waits until all have)`);
  }
  let memberTargets: { namespace: string; resigned: number; failed: MemberFailure[]; retry?: string } | undefined;
  if (members && namespace !== undefined) {
    const failed = [...members.failed, ...unreadable].sort((a, b) => (a.repository < b.repository ? -1 : 1));
    out.say(`re-signed targets of ${members.resigned.length} member(s) of ${namespace} with the new targets key${oldTargetsSigners.length ? ` (before root v${N + 1}, with the old one too)` : ''}`);
    const retry = reportFailures(out, namespace, failed, newTargetsSigners, values.server);
    memberTargets = { namespace, resigned: members.resigned.length, failed, ...(retry ? { retry } : {}) };
    if (failed.length) process.exitCode = 1;
  }
  if (values['root-out']) out.say(`root v${result.version} saved to ${values['root-out']}`);
  out.result({
    ...result,
    previousVersion: N,
    root: { keyids: rootRole.keyIDs, threshold: rootRole.threshold },
    ...(targetsResult ? { targets: { version: targetsResult.version, keyids: parsed.md.signed.roles['targets']?.keyIDs ?? [], threshold: targetsThreshold } } : {}),
    ...(memberTargets ? { memberTargets } : {}),
    timestampVersion: lastTimestamp,
    ...(values['root-out'] ? { rootOut: values['root-out'] } : {}),
  });
}
