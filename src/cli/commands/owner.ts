/**
 * Owner commands, signed locally with offline keys: `init` (root + targets)
 * and `delegate add|remove|revoke-key` (a new targets version).
 * The service never sees these private keys.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import {
  binsFor,
  buildRoot,
  buildTargets,
  isoExpiry,
  nextTargets,
  parseMetadata,
  putDelegation,
  removeDelegation,
  revokeDelegationKey,
  listedIdOf,
  signMetadata,
} from '../../engine/index.ts';
import { loadPublicKey, loadSigner, type KeySigner, type TufKeyJson } from '../../keys/index.ts';
import { checkRelisting, signedByAny, trustedIdsOf, withRelisting } from './resign.ts';
import { defaultPolicyPath, loadPolicyFile } from '../../policy/policy.ts';
import { ServiceClientError, type ServiceClient } from '../../client/service-client.ts';
import { isNamespaceScope, namedNamespace, namespaceAnchor } from '../../engine/scope.ts';
import { SERVER_HELP, SERVER_OPTIONS, UsageError, output, parseDuration, positiveInt, serviceClient } from '../common.ts';
import { OUT_HELP, distinctKeys, initCeremonyPlan, writeCeremony } from '../ceremony-dir.ts';
import { currentTargetsByRoot, targetsCeremonyPlan } from './ceremony.ts';

export const INIT_HELP = `usage: tufoci init <repo> --root-key K [--root-key K2 --threshold 2] --targets-key K [options]
       tufoci init <repo> --root-pub P [--root-pub P2 …] [--threshold 2] --targets-pub P [--targets-threshold 2] --out DIR

Creates the TUF repository of OCI repository <repo> on the service: fetches the
service's online keys, builds root v1 and targets v1 locally, signs them with
your offline keys, uploads them. With --out DIR it uploads nothing: root v1 and
targets v1, signed by whichever private keys were given (maybe none), go to DIR
for the other keyholders (tufoci sign-metadata DIR --key K; then tufoci upload DIR).

options:
  --root-key FILE      a root private key (repeat for several)
  --threshold N        root signatures required (default 1)
  --targets-key FILE   the targets private key
  --root-pub FILE      with --out: a root public key to list; its holder signs later (repeatable)
  --targets-pub FILE   with --out: a targets public key to list (repeatable)
  --targets-threshold N  targets signatures required (default 1; above 1 needs --out)
  --root-expires D     root lifetime (default 365d)
  --targets-expires D  targets lifetime (default 90d)
  --root-out FILE      where to save the signed root for clients to pin (default 1.root.json)
${OUT_HELP}
${SERVER_HELP}`;

export async function init(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      ...SERVER_OPTIONS,
      'root-key': { type: 'string', multiple: true, default: [] },
      'root-pub': { type: 'string', multiple: true, default: [] },
      threshold: { type: 'string' },
      'targets-key': { type: 'string' },
      'targets-pub': { type: 'string', multiple: true, default: [] },
      'targets-threshold': { type: 'string' },
      'root-expires': { type: 'string' },
      'targets-expires': { type: 'string' },
      'root-out': { type: 'string' },
      out: { type: 'string' },
    },
  });
  if (values.help) return console.log(INIT_HELP);
  const [repo, ...extra] = positionals;
  if (!repo || extra.length) throw new UsageError(`init takes one repository\n\n${INIT_HELP}`);
  if (!values.out && (values['root-pub'].length || values['targets-pub'].length)) throw new UsageError('--root-pub and --targets-pub name keys that sign later: they go with --out DIR');
  if (!values['root-key'].length && !(values.out && values['root-pub'].length)) throw new UsageError(values.out ? '--root-key or --root-pub is required' : '--root-key is required');
  if (!values['targets-key'] && !(values.out && values['targets-pub'].length)) throw new UsageError(values.out ? '--targets-key or --targets-pub is required' : '--targets-key is required');
  if (values.out && values['root-out']) throw new UsageError('with --out, the root is saved in DIR (or by tufoci upload DIR --root-out FILE)');
  const threshold = positiveInt(values.threshold, '--threshold', 1);
  const targetsThreshold = positiveInt(values['targets-threshold'], '--targets-threshold', 1);
  if (threshold > values['root-key'].length + values['root-pub'].length) throw new UsageError(`--threshold ${threshold} needs at least ${threshold} --root-key${values.out ? ' or --root-pub' : ''}`);
  const rootSigners = await Promise.all(values['root-key'].map((f) => loadSigner(f)));
  const targetsSigner = values['targets-key'] === undefined ? undefined : await loadSigner(values['targets-key']);
  const rootKeys = distinctKeys([...rootSigners, ...(await Promise.all(values['root-pub'].map((f) => loadPublicKey(f))))]);
  const targetsKeys = distinctKeys([...(targetsSigner ? [targetsSigner] : []), ...(await Promise.all(values['targets-pub'].map((f) => loadPublicKey(f))))]);
  if (targetsThreshold > targetsKeys.length) throw new UsageError(`--targets-threshold ${targetsThreshold} needs at least ${targetsThreshold} targets keys${values.out ? ' (--targets-key, --targets-pub)' : ': with --out DIR, --targets-pub names the others'}`);
  // `<prefix>/`: the trust of a whole namespace, kept at its anchor (engine/scope.ts).
  const namespace = repo.endsWith('/') ? repo : undefined;
  if (namespace !== undefined && !isNamespaceScope(namespace)) throw new UsageError(`"${repo.slice(0, 200)}" is not an OCI repository name followed by /`);
  const created = namespace !== undefined ? namespaceAnchor(namespace) : repo;
  if (/\/(tags|grants)$/.test(created)) throw new UsageError(`${repo}: a repository whose name ends in /tags or /grants cannot be created on the service (its routes read those words as the tags and grants of ${repo.replace(/\/[^/]+$/, '')})`);
  const client = serviceClient(values);
  const online = await client.onlineKeys(created);
  const now = Date.now();
  const root = await signMetadata(
    buildRoot({
      version: 1,
      expires: isoExpiry(now + parseDuration(values['root-expires'] ?? '365d', '--root-expires')),
      root: { keys: rootKeys, threshold },
      targets: { keys: targetsKeys, threshold: targetsThreshold },
      snapshot: { keys: online.snapshot.map((k) => k.key), threshold: 1 },
      timestamp: { keys: online.timestamp.map((k) => k.key), threshold: 1 },
      scope: repo,
    }),
    rootSigners,
  );
  const targets = await signMetadata(
    buildTargets({
      version: 1,
      expires: isoExpiry(now + parseDuration(values['targets-expires'] ?? '90d', '--targets-expires')),
      ...(namespace !== undefined ? { member: { repository: created, namespace } } : {}),
    }),
    targetsSigner ? [targetsSigner] : [],
  );
  if (values.out) return void (await writeCeremony(values.out, initCeremonyPlan(created, client.url, root, targets), output(values.json ?? false)));
  const result = await client.create(created, root, targets);
  const rootOut = values['root-out'] ?? '1.root.json';
  writeFileSync(rootOut, root);
  const out = output(values.json ?? false);
  out.say(
    namespace !== undefined
      ? `${result.unchanged ? 'already created' : 'created'} namespace ${namespace} (kept at ${created}): root v1 (${threshold} of ${rootSigners.length} keys); repositories under it join with tufoci delegate add <repo> …`
      : `${result.unchanged ? 'already created' : 'created'} ${repo}: root v1 (${threshold} of ${rootSigners.length} keys), targets v1, timestamp v${result.timestampVersion}`,
  );
  out.say(`root saved to ${rootOut}: clients pin it (tufoci trust add ${repo} ${rootOut}, or verify --trust ${rootOut})`);
  out.result({ ...result, root: rootOut });
}

/** Fetch the current top-level targets and check the owner's own key signed it before building on it. */
async function currentTargets(client: ServiceClient, repo: string, signer: KeySigner) {
  const status = await client.status(repo);
  const t = status.roles.find((r) => r.role === 'targets');
  if (!t) throw new UsageError(`${repo} has no targets role`);
  const policy = await loadPolicyFile(defaultPolicyPath());
  const parsed = parseMetadata('targets', await client.metadata(repo, `${t.version}.targets.json`), policy.roles.targets.maxBytes);
  // Root may list the key under the id written before the key id fix: either id counts.
  if (!signedByAny(parsed, [signer], [signer.keyid, ...t.keyids]) || parsed.md.signed.version !== t.version) {
    throw new UsageError(`the service's targets v${t.version} of ${repo} is not signed by your targets key ${signer.keyid.slice(0, 12)}; refusing to build on it`);
  }
  return { current: parsed.md.signed, status, policy };
}

/** The namespace `repo` would join: it does not exist on the service and a namespace covers it. */
async function joiningNamespace(client: ServiceClient, repo: string): Promise<string | undefined> {
  try {
    await client.status(repo);
    return undefined;
  } catch (e) {
    if (!(e instanceof ServiceClientError) || e.code !== 'REPO_NOT_FOUND') throw e;
  }
  try {
    return (await client.namespaceOf(repo)).namespace;
  } catch (e) {
    if (e instanceof ServiceClientError && e.code === 'NO_NAMESPACE') return undefined;
    throw e;
  }
}

/** What `delegate add` plans hash bins for when not told (--expected-tags). */
const DEFAULT_EXPECTED_TAGS = 1000;

export const DELEGATE_HELP = `usage: tufoci delegate add <repo> <role> --key ci.pub [--key k2.pub] [--paths 'v*'] [--threshold N]
                        [--expected-tags N] [--bins N] [--terminating] [--expires 90d] --targets-key K
       tufoci delegate add <repo> ci --online [--paths 'v*'] --targets-key K
       tufoci delegate remove <repo> <role> --targets-key K
       tufoci delegate revoke-key <repo> <role> --key old.pub --targets-key K
       tufoci delegate … [--targets-key K] --out DIR [--trust FILE]

Signs and uploads the next version of top-level targets with the delegation
added, removed, or one of its keys revoked. The role spreads its tags over
succinct hash bins (TAP 15) of its own, \`<role>-<hex>\`, so that a client reads
only the one bin a tag is in (signed, for a role of one ed25519 key file, by a
key tufoci publish derives from it for this repository, so that the snapshot
needs no hash per bin; else by the role's keys): --expected-tags (default
${DEFAULT_EXPECTED_TAGS}; 0 with --online) picks how many (the count that makes a cold client
download the least; up to 64 tags, none); tufoci publish (or, for --online, the
service) creates them and moves tags the role already lists into them. A role
with bins cannot delegate to job roles, so grants need --expected-tags 0. With --bins N, top-level targets itself delegates to N
bins named <role>-<hex>, replacing every other delegation. With --online
the role is delegated to the service's CI key instead of --key: CI jobs then
publish under it with short-lived keys of their own (tufoci grant, publish
--ephemeral; see docs/SECURITY.md for the trade-off).
With --out DIR the new targets version goes to DIR instead, signed by
--targets-key if given, for the other targets keyholders (tufoci sign-metadata
DIR --key K; then tufoci upload DIR). It then builds on the current targets as
verified by the targets keys of the service's root (checked from your pinned
root with --trust FILE).
${OUT_HELP}
${SERVER_HELP}`;

function nonNegativeInt(text: string, flag: string): number {
  if (!/^[0-9]{1,9}$/.test(text)) throw new UsageError(`${flag} must be a whole number, got ${text.slice(0, 20)}`);
  return Number(text);
}

export async function delegate(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      ...SERVER_OPTIONS,
      key: { type: 'string', multiple: true },
      paths: { type: 'string', multiple: true },
      threshold: { type: 'string' },
      bins: { type: 'string' },
      'expected-tags': { type: 'string' },
      terminating: { type: 'boolean' },
      online: { type: 'boolean' },
      expires: { type: 'string' },
      'targets-key': { type: 'string' },
      out: { type: 'string' },
      trust: { type: 'string' },
    },
  });
  if (values.help) return console.log(DELEGATE_HELP);
  const [action, repo, role, ...extra] = positionals;
  if (!action || !repo || !role || extra.length || !['add', 'remove', 'revoke-key'].includes(action)) throw new UsageError(DELEGATE_HELP);
  if (!values['targets-key'] && !values.out) throw new UsageError('--targets-key is required (or --out DIR: the targets keyholders sign later)');
  if (values.trust && !values.out) throw new UsageError('--trust goes with --out');
  const signer = values['targets-key'] === undefined ? undefined : await loadSigner(values['targets-key']);
  const client = serviceClient(values);
  const pinned = values.trust ? readFileSync(values.trust) : undefined;
  // With --out, what is built on is recognised by the current root's targets keys (no key may be at hand).
  // A repository a namespace covers joins it with its first targets version (engine/scope.ts).
  const joining = await joiningNamespace(client, repo);
  if (joining && (values.out !== undefined || signer === undefined || action !== 'add')) throw new UsageError(`${repo} does not exist yet: it joins namespace ${joining} with delegate add --targets-key K (not --out)`);
  const { current, status: repoStatus, policy } = joining
    ? { current: buildTargets({ version: 0, expires: isoExpiry(0), member: { repository: repo, namespace: joining } }), status: undefined, policy: await loadPolicyFile(defaultPolicyPath()) }
    : values.out !== undefined || signer === undefined
      ? await currentTargetsByRoot(client, repo, pinned)
      : await currentTargets(client, repo, signer);
  // In a namespace a target path names its repository: so do the delegated path patterns.
  const prefix = namedNamespace(current) !== undefined ? `${repo}/` : '';
  const expires = isoExpiry(Date.now() + parseDuration(values.expires ?? '90d', '--expires'));
  let keys = await Promise.all((values.key ?? []).map((f) => loadPublicKey(f)));
  if (values.online) {
    if (action !== 'add' || keys.length || values.bins !== undefined) throw new UsageError('--online goes with delegate add, without --key or --bins');
    const ci = (await client.onlineKeys(repo)).ci ?? [];
    if (!ci.length) throw new UsageError(`the service at ${client.url} offers no CI key`);
    keys = ci.map((k) => ({ keyid: k.keyid, public: k.key }));
  }
  let next;
  if (action === 'add') {
    if (keys.length === 0) throw new UsageError('delegate add needs --key (or --online)');
    const threshold = positiveInt(values.threshold, '--threshold', 1);
    if (values.bins !== undefined) {
      const bins = positiveInt(values.bins, '--bins', 2);
      next = nextTargets(current, expires, withRelisting((json) => {
        const existing = json['delegations'] as { roles?: unknown[] } | undefined;
        if (existing?.roles?.length) throw new UsageError(`targets of ${repo} already delegates to named roles; hash bins replace all delegations`);
        const built = buildTargets({ version: 1, expires, bins: { namePrefix: role, bins, keys: keys.map((k) => k.public), threshold } });
        json['delegations'] = (built.toJSON() as Record<string, unknown>)['delegations'];
      }));
    } else {
      // A role the service holds gets bins only when asked: its grants delegate job roles, which hash bins cannot.
      const expected = values['expected-tags'] === undefined ? (values.online ? 0 : DEFAULT_EXPECTED_TAGS) : nonNegativeInt(values['expected-tags'], '--expected-tags');
      const bins = binsFor(expected, policy.bins.max);
      next = nextTargets(current, expires, withRelisting((json) =>
        putDelegation(json, { name: role, keys: keys.map((k) => k.public), threshold, paths: (values.paths ?? ['*']).map((p) => `${prefix}${p}`), terminating: values.terminating ?? false, bins }),
      ));
    }
  } else if (action === 'remove') {
    next = nextTargets(current, expires, withRelisting((json) => {
      if (!removeDelegation(json, role)) throw new UsageError(`targets of ${repo} does not delegate "${role}"`);
    }));
  } else {
    if (keys.length !== 1) throw new UsageError('delegate revoke-key needs exactly one --key');
    const key = keys[0] as { keyid: string; public: TufKeyJson };
    next = nextTargets(current, expires, withRelisting((json) => {
      // The key may be listed under the id written before the key id fix.
      const listed = (json['delegations'] as { roles?: Array<{ name: string; keyids: string[] }> } | undefined)?.roles?.find((r) => r.name === role)?.keyids ?? [];
      const keyid = listedIdOf(key.public, listed) ?? key.keyid;
      if (!revokeDelegationKey(json, role, keyid)) throw new UsageError(`"${role}" of ${repo} has no key ${key.keyid.slice(0, 12)}`);
    }));
  }
  if (joining) {
    const result = await client.createMember(repo, await signMetadata(next, [signer as KeySigner]));
    const out = output(values.json ?? false);
    out.say(`${repo} joined namespace ${result.namespace}: targets v1 delegates ${role}; timestamp v${result.timestampVersion}`);
    return out.result(result);
  }
  if (!repoStatus) throw new UsageError(`${repo}: no status`); // (set whenever not joining)
  // A delegated role whose keys are only re-listed (same keys, correct ids) must already verify under them.
  await checkRelisting(client, repo, repoStatus, current, next, policy);
  if (values.out !== undefined || signer === undefined) {
    const partly = await signMetadata(next, signer ? [signer] : [], { trustedIds: trustedIdsOf(repoStatus, 'targets') });
    const plan = await targetsCeremonyPlan(client, repo, `delegate ${action}` as 'delegate add', `delegate ${action} ${role}`, partly, pinned);
    return void (await writeCeremony(values.out as string /* set: checked above */, plan, output(values.json ?? false)));
  }
  const bytes = await signMetadata(next, [signer], { trustedIds: trustedIdsOf(repoStatus, 'targets') });
  const result = await client.upload(repo, `${next.version}.targets.json`, bytes);
  const out = output(values.json ?? false);
  out.say(`targets v${result.version} of ${repo}: ${action} ${role}; timestamp v${result.timestampVersion}`);
  out.result(result);
}

export { STATUS_HELP, EXPIRING_HELP, status, expiring } from './status.ts';
