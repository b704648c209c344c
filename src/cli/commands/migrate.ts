/**
 * `tufoci migrate <repo> --to <prefix>/`: move a repository with a root of its own into a
 * namespace without its clients losing trust (docs/OPERATIONS.md, "Moving a repository into a
 * namespace"). Two signatures, one commit:
 * - the repository's owner signs its last own root, which names the namespace root that succeeds
 *   it by version and SHA-256 (`x-tufoci-successor`, engine/scope.ts): tufoci clients pinned to
 *   the repository's root follow it to the namespace;
 * - the namespace's targets key signs the repository's next targets as a member's (it names the
 *   member and the namespace; delegated paths and listed tags are qualified by the repository).
 */
import { createHash } from 'node:crypto';
import { parseArgs } from 'node:util';
import { isoExpiry, listedIdOf, nextTargets, parseMetadata, signMetadata } from '../../engine/index.ts';
import { SUCCESSOR_FIELD, isNamespaceScope, memberFields, namespaceAnchor, namespaceOf, scopeCovers } from '../../engine/scope.ts';
import { loadSigner } from '../../keys/index.ts';
import { defaultPolicyPath, loadPolicyFile } from '../../policy/policy.ts';
import { SERVER_HELP, SERVER_OPTIONS, UsageError, output, parseDuration, serviceClient } from '../common.ts';
import { currentRoot, nextRoot } from '../roots.ts';

export const MIGRATE_HELP = `usage: tufoci migrate <repo> --to <prefix>/ --root-key K [--root-key K2] --targets-key T [options]

Moves <repo>, which has a root of its own, into the namespace <prefix>/ (created
with tufoci init <prefix>/): root N+1 of <repo>, signed with its root keys
(--root-key), names the namespace's current root as its successor; targets, signed
with the namespace's targets key (--targets-key), become a member's. Clients that
pin <repo>'s own root follow the hand-off; new clients trust the namespace.
CI then publishes its tags again (tags are qualified by repository in a namespace).

options:
  --to PREFIX/         the namespace
  --root-key FILE      a root key of <repo> (repeat until its root threshold is met)
  --targets-key FILE   the namespace's targets key
  --root-expires D     lifetime of <repo>'s last own root (default 365d)
  --targets-expires D  lifetime of the member targets (default 90d)
${SERVER_HELP}`;

export async function migrate(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      ...SERVER_OPTIONS,
      to: { type: 'string' },
      'root-key': { type: 'string', multiple: true, default: [] },
      'targets-key': { type: 'string' },
      'root-expires': { type: 'string' },
      'targets-expires': { type: 'string' },
    },
  });
  if (values.help) return console.log(MIGRATE_HELP);
  const [repo, ...extra] = positionals;
  if (!repo || extra.length || !values.to || !values['root-key'].length || !values['targets-key']) throw new UsageError(MIGRATE_HELP);
  const namespace = values.to;
  if (!isNamespaceScope(namespace) || !scopeCovers(namespace, repo)) throw new UsageError(`--to must be a prefix ending in / that covers ${repo}, got "${namespace.slice(0, 200)}"`);
  const client = serviceClient(values);
  const policy = await loadPolicyFile(defaultPolicyPath());
  const { root: current } = await currentRoot(client, repo, policy);
  if (namespaceOf(current, repo) !== undefined) throw new UsageError(`${repo} is already in namespace ${namespaceOf(current, repo)}`);
  const rootRole = current.roles['root'];
  const signers = await Promise.all(values['root-key'].map((f) => loadSigner(f)));
  const mine = signers.filter((s) => listedIdOf(s.public, rootRole?.keyIDs ?? []));
  if (!rootRole || mine.length < rootRole.threshold) throw new UsageError(`root v${current.version} of ${repo} needs ${rootRole?.threshold ?? '?'} of its root keys; --root-key gives ${mine.length}`);
  const targetsSigner = await loadSigner(values['targets-key']);
  // The namespace's current root, named by version and hash.
  const anchor = namespaceAnchor(namespace);
  const nsStatus = await client.status(anchor);
  const nsVersion = nsStatus.roles.find((r) => r.role === 'root')?.version;
  if (!nsVersion) throw new UsageError(`namespace ${namespace} reports no root`);
  const nsRoot = await client.metadata(anchor, `${nsVersion}.root.json`);
  const now = Date.now();
  const handOff = nextRoot(current, isoExpiry(now + parseDuration(values['root-expires'] ?? '365d', '--root-expires')), {}, repo);
  handOff.unrecognizedFields[SUCCESSOR_FIELD] = { namespace, version: nsVersion, sha256: createHash('sha256').update(nsRoot).digest('hex') };
  const rootBytes = await signMetadata(handOff, mine, { trustedIds: rootRole.keyIDs });
  // The repository's next targets, as a member's: named, and every path qualified by the repository.
  const status = await client.status(repo);
  const t = status.roles.find((r) => r.role === 'targets');
  if (!t) throw new UsageError(`${repo} has no targets role`);
  const targets = parseMetadata('targets', await client.metadata(repo, `${t.version}.targets.json`), policy.roles.targets.maxBytes).md.signed;
  const prefix = `${repo}/`;
  const member = nextTargets(targets, isoExpiry(now + parseDuration(values['targets-expires'] ?? '90d', '--targets-expires')), (json) => {
    Object.assign(json, memberFields(namespace, repo));
    const listed = json['targets'] as Record<string, unknown>;
    json['targets'] = Object.fromEntries(Object.entries(listed).map(([path, entry]) => [path.startsWith(prefix) ? path : `${prefix}${path}`, entry]));
    const roles = (json['delegations'] as { roles?: Array<{ paths?: string[] }> } | undefined)?.roles ?? [];
    for (const role of roles) if (role.paths) role.paths = role.paths.map((p) => (p.startsWith(prefix) ? p : `${prefix}${p}`));
  });
  const targetsBytes = await signMetadata(member, [targetsSigner]);
  const result = await client.migrate(repo, rootBytes, targetsBytes);
  const out = output(values.json ?? false);
  out.say(`${repo} moved into namespace ${result.namespace}: its root v${handOff.version} hands over to the namespace's root v${nsVersion}; targets v${result.version} as a member; timestamp v${result.timestampVersion}`);
  out.say(`clients pinned to ${repo}'s own root follow the hand-off; CI publishes its tags again (qualified by repository in a namespace)`);
  out.result(result);
}
