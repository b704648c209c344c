/**
 * Image references and registry access for the CLI: `<host[:port]>/<repo>:<tag>`,
 * credentials from flags, TUFOCI_REGISTRY_USERNAME/PASSWORD, or the standard
 * Docker config (`$DOCKER_CONFIG/config.json` or `~/.docker/config.json`:
 * credHelpers, credsStore, auths; see docker-credentials.ts). Loopback hosts
 * use plain HTTP unless --https; others HTTPS unless --plain-http. --ca-file
 * adds a private CA to the certificates HTTPS trusts (src/storage/tls.ts).
 */
import { readFileSync } from 'node:fs';
import { isRepositoryName, isTag } from '../storage/names.ts';
import type { Credentials } from '../storage/registry-auth.ts';
import { RegistryStore } from '../storage/registry-store.ts';
import { TlsTrustError, trustCertificates } from '../storage/tls.ts';
import { UsageError } from './common.ts';
import { DOCKER_HUB_API_HOST, DOCKER_HUB_KEY, dockerConfigKey, dockerCredentials } from './docker-credentials.ts';

export interface ImageRef {
  host: string;
  repository: string;
  tag: string;
}

export function parseImageRef(ref: string): ImageRef {
  const slash = ref.indexOf('/');
  const colon = ref.lastIndexOf(':');
  if (slash <= 0 || colon <= slash) throw new UsageError(`"${ref}" is not <registry>/<repository>:<tag>`);
  const host = ref.slice(0, slash);
  const repository = ref.slice(slash + 1, colon);
  const tag = ref.slice(colon + 1);
  if (!isRepositoryName(repository)) throw new UsageError(`"${repository}" is not an OCI repository name`);
  if (!isTag(tag)) throw new UsageError(`"${tag}" is not an OCI tag`);
  return { host, repository, tag };
}

export function isLoopbackHost(host: string): boolean {
  return /^(localhost|127\.\d+\.\d+\.\d+|\[::1\])(:\d+)?$/.test(host);
}

export interface RegistryFlags {
  'plain-http'?: boolean | undefined;
  https?: boolean | undefined;
  'ca-file'?: string | undefined;
  'registry-username'?: string | undefined;
  'registry-password'?: string | undefined;
}

/** `--ca-file FILE`: trust the CA certificate(s) in FILE (PEM) for this process's TLS connections. */
export function trustCaFile(file: string | undefined): void {
  if (file === undefined) return;
  let pem: string;
  try {
    pem = readFileSync(file, 'utf8');
  } catch (error) {
    throw new UsageError(`--ca-file ${file}: ${(error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : ((error as Error).message ?? String(error))}`);
  }
  try {
    trustCertificates(pem, `--ca-file ${file}`);
  } catch (error) {
    if (error instanceof TlsTrustError) throw new UsageError(error.message);
    throw error;
  }
}

/** TUFOCI_CREDENTIAL_HELPER_TIMEOUT (seconds) → milliseconds for credential helpers. */
function helperTimeoutMs(): number | undefined {
  const text = process.env['TUFOCI_CREDENTIAL_HELPER_TIMEOUT'];
  if (text === undefined || text === '') return undefined;
  const seconds = /^[0-9]{1,4}(\.[0-9]{1,3})?$/.test(text) ? Number(text) : NaN;
  if (!(seconds > 0 && seconds <= 3600)) throw new UsageError(`TUFOCI_CREDENTIAL_HELPER_TIMEOUT must be seconds above 0 and at most 3600, got "${text.slice(0, 40)}"`);
  return Math.round(seconds * 1000);
}

/**
 * The registry of an image reference's host, with its credentials: the flags (or
 * TUFOCI_REGISTRY_USERNAME/PASSWORD) first, else Docker's configuration
 * (docker-credentials.ts: credHelpers, credsStore, auths). HTTPS, except plain HTTP
 * for loopback hosts (unless --https) and with --plain-http.
 */
export async function registryFor(host: string, flags: RegistryFlags): Promise<RegistryStore> {
  if (flags['plain-http'] && flags.https) throw new UsageError('--plain-http and --https contradict each other');
  trustCaFile(flags['ca-file']);
  const scheme = flags.https ? 'https' : flags['plain-http'] || isLoopbackHost(host) ? 'http' : 'https';
  const username = flags['registry-username'] ?? process.env['TUFOCI_REGISTRY_USERNAME'];
  const password = flags['registry-password'] ?? process.env['TUFOCI_REGISTRY_PASSWORD'];
  const timeoutMs = helperTimeoutMs();
  const credentials: Credentials | undefined =
    username !== undefined ? { username, password: password ?? '' } : (await dockerCredentials(host, timeoutMs !== undefined ? { timeoutMs } : {}))?.credentials;
  const apiHost = dockerConfigKey(host) === DOCKER_HUB_KEY ? DOCKER_HUB_API_HOST : host;
  return new RegistryStore({ url: `${scheme}://${apiHost}`, ...(credentials ? { credentials } : {}) });
}

export const REGISTRY_OPTIONS = {
  'plain-http': { type: 'boolean' },
  https: { type: 'boolean' },
  'ca-file': { type: 'string' },
  'registry-username': { type: 'string' },
  'registry-password': { type: 'string' },
} as const;

export const REGISTRY_HELP = `  --plain-http            talk plain HTTP to the registry (loopback hosts do unless --https)
  --https                 talk HTTPS to a loopback registry too
  --ca-file FILE          trust the CA certificate(s) in FILE (PEM) for HTTPS, next to the
                          public roots and NODE_EXTRA_CA_CERTS (registry, token service, --server)
  --registry-username U   registry credentials (or TUFOCI_REGISTRY_USERNAME/PASSWORD); without
  --registry-password P   them, Docker's config.json: credHelpers, credsStore (docker-credential-*
                          helpers), auths — as docker login left them`;
