#!/usr/bin/env node
/**
 * The `tufoci` command: one binary, one sub-command per task (see HELP).
 */
import { enableCompileCache } from 'node:module';
import { parseArgs } from 'node:util';
import { TufociError } from '../errors.ts';
import { UsageError } from './usage-error.ts';

// Node keeps what it compiled (type-stripped TypeScript included) for the next run: every command after
// the first starts from the cache (TUFOCI_NO_COMPILE_CACHE=1 turns it off).
if (!process.env['TUFOCI_NO_COMPILE_CACHE']) enableCompileCache?.();

type Command = (argv: string[]) => Promise<void>;

/** Each command's module is loaded only when that command runs: `verify` never loads the service or the owner tools. */
const COMMANDS: Record<string, () => Promise<Command>> = {
  keygen: async () => (await import('./commands/keygen.ts')).keygen,
  init: async () => (await import('./commands/owner.ts')).init,
  delegate: async () => (await import('./commands/owner.ts')).delegate,
  status: async () => (await import('./commands/status.ts')).status,
  expiring: async () => (await import('./commands/status.ts')).expiring,
  resign: async () => (await import('./commands/resign.ts')).resign,
  sign: async () => (await import('./commands/publisher.ts')).sign,
  publish: async () => (await import('./commands/publisher.ts')).publish,
  verify: async () => (await import('./commands/client.ts')).verify,
  trust: async () => (await import('./commands/client.ts')).trust,
  rotate: async () => (await import('./commands/rotate.ts')).rotate,
  migrate: async () => (await import('./commands/migrate.ts')).migrate,
  'online-keys': async () => (await import('./commands/rotate-online.ts')).onlineKeys,
  grant: async () => (await import('./commands/grant.ts')).grant,
  'sign-metadata': async () => (await import('./commands/ceremony.ts')).signMetadataCommand,
  upload: async () => (await import('./commands/ceremony.ts')).upload,
};

const HELP = `usage: tufoci <command> [options]

commands:
  serve      run the metadata service
  keygen     generate a key pair (ed25519 or ECDSA P-256)
  init       create a repository (or a namespace, <prefix>/): root and targets signed offline
  delegate   add, remove or revoke-key a delegation (e.g. to a CI key)
  resign     the next version of a targets role, same content: renew it, re-list old key ids
  status     versions, expiries and keys of a repository's roles
  sign       plain signature on an image's manifest digest, pushed as a referrer
  publish    sign an image and add its tag to a delegated role (CI)
  verify     check an image tag against TUF and its signatures
  trust      pin roots of trust per repository or prefix
  expiring   roles expiring soon across all repositories (exit 1 for offline roles)
  rotate     rotate a repository's root keys (rotate root) or online keys (rotate online)
  migrate    move a repository with a root of its own into a namespace (init <prefix>/)
  online-keys  the service's online key sets: list, usage, rotate, revoke (operators)
  grant      a one-time, short-lived grant for a CI job (publish --ephemeral)
  sign-metadata  add your signature to a ceremony directory (init|delegate|rotate root --out DIR)
  upload     send a ceremony directory once every threshold is met

keys: wherever a command takes a key file, a pkcs11: URI (RFC 7512) names a key in an HSM
instead, e.g. --root-key 'pkcs11:token=tufoci;object=root-1?pin-source=file:/run/pin'
(module: module-path=, TUFOCI_PKCS11_MODULE, else /usr/lib/softhsm/libsofthsm2.so)

run "tufoci <command> --help" for a command's options; "tufoci --version" for the version`;

const SERVE_HELP = `usage: tufoci serve [options]

Runs the TUF metadata service. With no options: OCI layout storage in ./data,
in-process coordination, online keys generated under ./data/keys (mode 0600),
an admin token in ./data/admin-token, listening on 127.0.0.1:8080.

options:
  --data DIR                 data directory (default ./data)
  --listen HOST:PORT         address to listen on (default 127.0.0.1:8080)
  --registry URL             store metadata in this OCI registry instead of ./data/oci
  --registry-username USER   registry basic/bearer credentials (or TUFOCI_REGISTRY_USERNAME)
  --registry-password PASS   (or TUFOCI_REGISTRY_PASSWORD)
  --ca-file FILE             trust the CA certificate(s) in FILE (PEM) for an HTTPS --registry,
                             next to the public roots and NODE_EXTRA_CA_CERTS
  --redis URL                coordinate instances through Redis (e.g. redis://127.0.0.1:6379)
  --policy FILE              role policy (default roles/default.json)
  --tokens FILE              bearer tokens JSON (or TUFOCI_TOKENS)
  --private-read             require a token for reads too
  --refresh-tick MS          how often to look for online roles to re-sign (default 5000)
  --cache-mb N               metadata the head cache holds, in MiB (default 256; a namespace of
                             10,000 repositories of 100 tags holds about 300)
  -h, --help                 this help`;

async function serve(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      data: { type: 'string' },
      listen: { type: 'string' },
      registry: { type: 'string' },
      'registry-username': { type: 'string' },
      'registry-password': { type: 'string' },
      'ca-file': { type: 'string' },
      redis: { type: 'string' },
      'redis-prefix': { type: 'string' },
      policy: { type: 'string' },
      tokens: { type: 'string' },
      'private-read': { type: 'boolean' },
      'refresh-tick': { type: 'string' },
      'cache-mb': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    console.log(SERVE_HELP);
    return;
  }
  const cacheMb = values['cache-mb'];
  if (cacheMb !== undefined && !/^[1-9][0-9]{0,5}$/.test(cacheMb)) throw new UsageError(`--cache-mb must be a whole number of MiB from 1, got ${cacheMb.slice(0, 20)}`);
  const listen = values.listen ?? '127.0.0.1:8080';
  const m = /^(.*):(\d{1,5})$/.exec(listen);
  if (!m) throw new UsageError(`--listen must be HOST:PORT, got ${listen}`);
  if (values['ca-file'] !== undefined) (await import('./registry.ts')).trustCaFile(values['ca-file']); // for the whole process: registry and its token service
  const { startServer } = await import('../main.ts'); // loaded only to serve: keeps the other commands' start-up fast
  const running = await startServer({
    ...(values.data ? { dataDir: values.data } : {}),
    host: (m[1] as string).replace(/^\[|\]$/g, ''),
    port: Number(m[2]),
    ...(values.registry ? { registry: values.registry } : {}),
    ...((values['registry-username'] ?? process.env['TUFOCI_REGISTRY_USERNAME']) ? { registryUsername: values['registry-username'] ?? process.env['TUFOCI_REGISTRY_USERNAME'] } : {}),
    ...((values['registry-password'] ?? process.env['TUFOCI_REGISTRY_PASSWORD']) ? { registryPassword: values['registry-password'] ?? process.env['TUFOCI_REGISTRY_PASSWORD'] } : {}),
    ...(values.redis ? { redis: values.redis } : {}),
    ...(values['redis-prefix'] ? { redisPrefix: values['redis-prefix'] } : {}),
    ...(values.policy ? { policyFile: values.policy } : {}),
    ...(values.tokens ? { tokensFile: values.tokens } : {}),
    ...(process.env['TUFOCI_TOKENS'] ? { tokensEnv: process.env['TUFOCI_TOKENS'] } : {}),
    publicRead: !values['private-read'],
    ...(values['refresh-tick'] ? { refreshTickMs: Number(values['refresh-tick']) } : {}),
    ...(cacheMb !== undefined ? { cacheBytes: Number(cacheMb) * 1024 * 1024 } : {}),
  });
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    console.error(`tufoci: ${signal}, finishing in-flight writes…`);
    running.close().then(
      () => process.exit(0),
      (err: unknown) => {
        console.error(err);
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}


async function main(): Promise<void> {
  const [command, ...rest] = process.argv.slice(2);
  if (command === 'serve') return serve(rest);
  if (command === undefined || command === '-h' || command === '--help' || command === 'help') {
    console.log(HELP);
    return;
  }
  if (command === '--version' || command === 'version') {
    const { readFileSync } = await import('node:fs');
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
    console.log(`tufoci ${pkg.version} (Node.js ${process.version})`);
    return;
  }
  const load = Object.hasOwn(COMMANDS, command) ? COMMANDS[command] : undefined;
  if (!load) throw new UsageError(`unknown command "${command}"\n\n${HELP}`);
  return (await load())(rest);
}

main().catch((err: unknown) => {
  if (err instanceof UsageError || (err instanceof TypeError && 'code' in err && String((err as { code: unknown }).code).startsWith('ERR_PARSE_ARGS'))) {
    console.error(`tufoci: ${err.message}`);
    process.exit(2);
  }
  if (err instanceof TufociError) {
    console.error(`tufoci: ${err.message} (${err.code})`);
    process.exit(1);
  }
  const e = err as { code?: string; message?: string };
  console.error(`tufoci: ${e.code ? `${e.code}: ` : ''}${e.message ?? String(err)}`);
  process.exit(1);
});
