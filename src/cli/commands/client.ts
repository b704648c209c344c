/**
 * Client commands: `verify` (both layers) and `trust add|list|remove|reset`
 * (the local store of pinned roots, per repository or repository prefix, and
 * the saved TUF state per repository).
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { loadPublicKey } from '../../keys/key-files.ts';
import { verifyImage } from '../../client/verify-image.ts';
import { TrustStore } from '../../client/trust-store.ts';
import { isRepositoryName } from '../../storage/names.ts';
import { UsageError, output, positiveInt } from '../common.ts';
import { REGISTRY_HELP, REGISTRY_OPTIONS, parseImageRef, registryFor } from '../registry.ts';

/** Where verify keeps the trusted TUF state of a repository (`--state DIR` overrides). */
function stateDirFor(store: TrustStore, repository: string, state: string | undefined): string {
  return state ?? store.stateDirFor(repository);
}

export const TRUST_HELP = `usage: tufoci trust add <repo or prefix/> <root.json>
       tufoci trust list [--json]
       tufoci trust remove <repo or prefix/>
       tufoci trust reset <repo> [--state DIR]

Pins the root of trust for a repository, or for every repository under a
prefix ending in "/". verify uses the longest matching pin. Stored under
$TUFOCI_HOME (default ~/.config/tufoci).

verify keeps the TUF state it trusts per repository ($TUFOCI_HOME/state/<repo>,
or --state DIR) and uses it only while it descends from the current pin: the
same root, or one it reached from it by verified rotations. After pinning a
root outside that chain, "trust reset" removes the saved state, and the next
verify starts over from the pin.`;

export async function trust(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: { json: { type: 'boolean' }, state: { type: 'string' }, help: { type: 'boolean', short: 'h' } } });
  if (values.help) return console.log(TRUST_HELP);
  const [action, prefix, file, ...extra] = positionals;
  if (values.state !== undefined && action !== 'reset') throw new UsageError('--state is an option of trust reset only');
  const out = output(values.json ?? false);
  const store = new TrustStore();
  if (action === 'add' && prefix && file && !extra.length) {
    const { defaultPolicyPath, loadPolicyFile } = await import('../../policy/policy.ts'); // trust add only: verify never reads the policy
    const policy = await loadPolicyFile(defaultPolicyPath());
    const added = store.add(prefix, readFileSync(file), { maxBytes: policy.roles.root.maxBytes });
    out.say(`trusting root v${added.version} (${added.threshold} of ${added.keyids.length} keys) for ${prefix}`);
    out.result({ prefix, version: added.version });
  } else if (action === 'list' && !prefix) {
    const entries = store.list();
    for (const e of entries) out.say(`${e.prefix}  root keys ${e.keyids.map((k) => k.slice(0, 12)).join(', ')}`);
    out.result(entries);
  } else if (action === 'reset' && prefix && !file) {
    if (!isRepositoryName(prefix)) throw new UsageError(`"${prefix}" is not an OCI repository name (trust reset takes the repository whose saved state to remove)`);
    const dir = stateDirFor(store, prefix, values.state);
    const removed = TrustStore.resetState(dir);
    out.say(removed ? `removed the saved TUF state of ${prefix} (${dir}); the next verify starts from the pinned root` : `no saved TUF state of ${prefix} in ${dir}`);
    out.result({ repository: prefix, stateDir: dir, removed });
  } else if (action === 'remove' && prefix && !file) {
    store.remove(prefix);
    out.say(`removed trust for ${prefix}`);
    out.result({ removed: prefix });
  } else {
    throw new UsageError(TRUST_HELP);
  }
}

/** `tufoci verify`'s default deadline. */
export const DEFAULT_VERIFY_TIMEOUT_SECONDS = 30;

export const VERIFY_HELP = `usage: tufoci verify <registry>/<repo>:<tag> [--trust root.json] [options]

Checks that the tag is what its owner currently publishes: TUF (no rollback,
freeze or mix-and-match; metadata from the registry's <repo>/tuf, or from
--server), the manifest by the digest TUF names, and — with --sig-key — plain
signatures on that digest. Prints the digest and exits 0, or explains and
exits 1.

options:
  --trust FILE           pinned root (default: the trust store, see tufoci trust)
  --server URL           read TUF metadata from a tufoci service instead of the registry
  --sig-key FILE         a public key whose signature counts: a file or a pkcs11: URI (repeatable)
  --sig-threshold N      distinct --sig-key signatures required (default 1)
  --state DIR            trusted TUF state kept between runs (default $TUFOCI_HOME/state/<repo>);
                         used only while it descends from the pinned root (else refused:
                         tufoci trust reset <repo> starts it over)
  --ephemeral            keep no state: trust only the pinned root
  --timeout SECONDS      one deadline for the whole verify, every request and retry
                         included (default ${DEFAULT_VERIFY_TIMEOUT_SECONDS})
  --tuf-client NAME      tufoci (default: tufoci's client core, linear in every size) or
                         tuf-js (the unmodified tuf-js Updater, the reference; @tufjs/models
                         parses a role in time quadratic in its targets: slow beyond a few
                         thousand per role)
  --json                 print the result as JSON
${REGISTRY_HELP}`;

/** Seconds → milliseconds for --timeout: a positive number of seconds, at most an hour. */
function parseTimeout(text: string | undefined): number {
  if (text === undefined) return DEFAULT_VERIFY_TIMEOUT_SECONDS * 1000;
  const seconds = /^[0-9]{1,4}(\.[0-9]{1,3})?$/.test(text) ? Number(text) : NaN;
  if (!(seconds > 0 && seconds <= 3600)) throw new UsageError(`--timeout must be a number of seconds above 0 and at most 3600, got "${text}"`);
  return Math.round(seconds * 1000);
}

export async function verify(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      ...REGISTRY_OPTIONS,
      trust: { type: 'string' },
      server: { type: 'string' },
      'sig-key': { type: 'string', multiple: true },
      'sig-threshold': { type: 'string' },
      state: { type: 'string' },
      ephemeral: { type: 'boolean' },
      timeout: { type: 'string' },
      'tuf-client': { type: 'string' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) return console.log(VERIFY_HELP);
  const tufClient = values['tuf-client'] ?? 'tufoci';
  if (tufClient !== 'tufoci' && tufClient !== 'tuf-js') throw new UsageError(`--tuf-client must be tufoci or tuf-js, got "${tufClient.slice(0, 40)}"`);
  const timeoutMs = parseTimeout(values.timeout);
  const [ref, ...extra] = positionals;
  if (!ref || extra.length) throw new UsageError(VERIFY_HELP);
  const image = parseImageRef(ref);
  const store = new TrustStore();
  // Which pin answers is never left implicit: the longest matching trust entry, named in the output.
  const entry = values.trust ? undefined : store.entryFor(image.repository);
  const root = values.trust ? readFileSync(values.trust) : store.rootFor(image.repository);
  if (!root) throw new UsageError(`no root of trust for ${image.repository}: pass --trust root.json or run tufoci trust add`);
  const namespaceStateDir = entry?.prefix.endsWith('/') && !values.state ? store.namespaceStateDirFor(entry.prefix) : undefined;
  const keys = await Promise.all((values['sig-key'] ?? []).map((f) => loadPublicKey(f)));
  const stateDir = values.ephemeral ? undefined : stateDirFor(store, image.repository, values.state);
  const result = await verifyImage({
    store: await registryFor(image.host, values),
    repository: image.repository,
    tag: image.tag,
    trustedRoot: root,
    ...(stateDir ? { stateDir, resetHint: `tufoci trust reset ${image.repository}${values.state ? ` --state ${values.state}` : ''}` } : {}),
    timeoutMs,
    tufClient,
    ...(namespaceStateDir ? { namespaceStateDir } : {}),
    ...(values.server ? { serviceUrl: values.server } : {}),
    ...(keys.length ? { signatures: { keys: keys.map((k) => k.public), threshold: positiveInt(values['sig-threshold'], '--sig-threshold', 1) } } : {}),
  });
  const out = output(values.json ?? false);
  out.say(result.digest);
  if (result.signers.length) out.say(`  signed by ${result.signers.map((k) => k.slice(0, 12)).join(', ')}`);
  out.say(`  TUF: root v${result.tuf.root}, snapshot v${result.tuf.snapshot}, timestamp v${result.tuf.timestamp}${entry ? `; trusted through ${entry.prefix}` : ''}`);
  if (result.registryTag && !result.registryTag.agrees) {
    console.error(`warning: the registry's tag ${image.tag} points at ${result.registryTag.digest}, not the digest TUF trusts; use the digest above`);
  }
  out.result({ ...result, ...(entry ? { trustedBy: entry.prefix } : {}) });
}
