/**
 * Client commands: `verify` (both layers) and `trust add|list|remove` (the
 * local store of pinned roots, per repository or repository prefix).
 */
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { parseMetadata } from '../../engine/index.ts';
import { loadPublicKeyFile } from '../../keys/index.ts';
import { defaultPolicyPath, loadPolicyFile } from '../../policy/policy.ts';
import { verifyImage } from '../../client/verify-image.ts';
import { UsageError, output, positiveInt } from '../common.ts';
import { REGISTRY_HELP, REGISTRY_OPTIONS, parseImageRef, registryFor } from '../registry.ts';

function configDir(): string {
  return process.env['TUFOCI_HOME'] ?? join(process.env['XDG_CONFIG_HOME'] ?? join(homedir(), '.config'), 'tufoci');
}

interface TrustEntry {
  prefix: string;
  root: string;
  keyids: string[];
}

function trustFile(): string {
  return join(configDir(), 'trust.json');
}

function readTrust(): TrustEntry[] {
  if (!existsSync(trustFile())) return [];
  return JSON.parse(readFileSync(trustFile(), 'utf8')) as TrustEntry[];
}

/** The pinned root for a repository: the longest matching prefix. */
export function trustedRootFor(repository: string): Uint8Array | undefined {
  const match = readTrust()
    .filter((e) => repository === e.prefix || (e.prefix.endsWith('/') && repository.startsWith(e.prefix)))
    .sort((a, b) => b.prefix.length - a.prefix.length)[0];
  return match ? readFileSync(join(configDir(), match.root)) : undefined;
}

export const TRUST_HELP = `usage: tufoci trust add <repo or prefix/> <root.json>
       tufoci trust list [--json]
       tufoci trust remove <repo or prefix/>

Pins the root of trust for a repository, or for every repository under a
prefix ending in "/". verify uses the longest matching pin. Stored under
$TUFOCI_HOME (default ~/.config/tufoci).`;

export async function trust(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: { json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } });
  if (values.help) return console.log(TRUST_HELP);
  const [action, prefix, file, ...extra] = positionals;
  const out = output(values.json ?? false);
  const entries = readTrust();
  const save = (list: TrustEntry[]): void => {
    mkdirSync(configDir(), { recursive: true, mode: 0o700 });
    writeFileSync(trustFile(), `${JSON.stringify(list, null, 2)}\n`);
  };
  if (action === 'add' && prefix && file && !extra.length) {
    const policy = await loadPolicyFile(defaultPolicyPath());
    const root = parseMetadata('root', readFileSync(file), policy.roles.root.maxBytes); // a malformed root is refused here
    const rootRole = root.md.signed.roles['root'];
    const name = `roots/${prefix.replace(/[^A-Za-z0-9._-]/g, '_')}.root.json`;
    mkdirSync(join(configDir(), 'roots'), { recursive: true, mode: 0o700 });
    copyFileSync(file, join(configDir(), name));
    save([...entries.filter((e) => e.prefix !== prefix), { prefix, root: name, keyids: rootRole?.keyIDs ?? [] }]);
    out.say(`trusting root v${root.md.signed.version} (${rootRole?.threshold} of ${rootRole?.keyIDs.length} keys) for ${prefix}`);
    out.result({ prefix, version: root.md.signed.version });
  } else if (action === 'list' && !prefix) {
    for (const e of entries) out.say(`${e.prefix}  root keys ${e.keyids.map((k) => k.slice(0, 12)).join(', ')}`);
    out.result(entries);
  } else if (action === 'remove' && prefix && !file) {
    if (!entries.some((e) => e.prefix === prefix)) throw new UsageError(`no trust entry for ${prefix}`);
    save(entries.filter((e) => e.prefix !== prefix));
    out.say(`removed trust for ${prefix}`);
    out.result({ removed: prefix });
  } else {
    throw new UsageError(TRUST_HELP);
  }
}

export const VERIFY_HELP = `usage: tufoci verify <registry>/<repo>:<tag> [--trust root.json] [options]

Checks that the tag is what its owner currently publishes: TUF (no rollback,
freeze or mix-and-match; metadata from the registry's <repo>/tuf, or from
--server), the manifest by the digest TUF names, and — with --sig-key — plain
signatures on that digest. Prints the digest and exits 0, or explains and
exits 1.

options:
  --trust FILE           pinned root (default: the trust store, see tufoci trust)
  --server URL           read TUF metadata from a tufoci service instead of the registry
  --sig-key FILE         a public key whose signature counts (repeatable)
  --sig-threshold N      distinct --sig-key signatures required (default 1)
  --state DIR            trusted TUF state kept between runs (default $TUFOCI_HOME/state/<repo>)
  --ephemeral            keep no state: trust only the pinned root
  --json                 print the result as JSON
${REGISTRY_HELP}`;

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
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) return console.log(VERIFY_HELP);
  const [ref, ...extra] = positionals;
  if (!ref || extra.length) throw new UsageError(VERIFY_HELP);
  const image = parseImageRef(ref);
  const root = values.trust ? readFileSync(values.trust) : trustedRootFor(image.repository);
  if (!root) throw new UsageError(`no root of trust for ${image.repository}: pass --trust root.json or run tufoci trust add`);
  const keys = await Promise.all((values['sig-key'] ?? []).map((f) => loadPublicKeyFile(f)));
  const stateDir = values.ephemeral ? undefined : (values.state ?? join(configDir(), 'state', image.repository));
  const result = await verifyImage({
    store: registryFor(image.host, values),
    repository: image.repository,
    tag: image.tag,
    trustedRoot: root,
    ...(stateDir ? { stateDir } : {}),
    ...(values.server ? { serviceUrl: values.server } : {}),
    ...(keys.length ? { signatures: { keys: keys.map((k) => k.public), threshold: positiveInt(values['sig-threshold'], '--sig-threshold', 1) } } : {}),
  });
  const out = output(values.json ?? false);
  out.say(result.digest);
  if (result.signers.length) out.say(`  signed by ${result.signers.map((k) => k.slice(0, 12)).join(', ')}`);
  out.say(`  TUF: root v${result.tuf.root}, snapshot v${result.tuf.snapshot}, timestamp v${result.tuf.timestamp}`);
  if (result.registryTag && !result.registryTag.agrees) {
    console.error(`warning: the registry's tag ${image.tag} points at ${result.registryTag.digest}, not the digest TUF trusts; use the digest above`);
  }
  out.result(result);
}
