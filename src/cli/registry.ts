/**
 * Image references and registry access for the CLI: `<host[:port]>/<repo>:<tag>`,
 * credentials from flags, TUFOCI_REGISTRY_USERNAME/PASSWORD, or the standard
 * Docker config (`$DOCKER_CONFIG/config.json` or `~/.docker/config.json`,
 * `auths.<host>.auth` = base64 "user:password"). Loopback hosts use plain
 * HTTP; others HTTPS unless --plain-http.
 */
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { isRepositoryName, isTag } from '../storage/names.ts';
import type { Credentials } from '../storage/registry-auth.ts';
import { RegistryStore } from '../storage/registry-store.ts';
import { UsageError } from './common.ts';

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

function dockerCredentials(host: string): Credentials | undefined {
  const path = join(process.env['DOCKER_CONFIG'] ?? join(homedir(), '.docker'), 'config.json');
  if (!existsSync(path)) return undefined;
  try {
    const config = JSON.parse(readFileSync(path, 'utf8')) as { auths?: Record<string, { auth?: string }> };
    const auth = config.auths?.[host]?.auth ?? config.auths?.[`https://${host}`]?.auth;
    if (!auth) return undefined;
    const text = Buffer.from(auth, 'base64').toString('utf8');
    const i = text.indexOf(':');
    return i > 0 ? { username: text.slice(0, i), password: text.slice(i + 1) } : undefined;
  } catch {
    throw new UsageError(`${path} is not valid JSON`);
  }
}

export function registryFor(host: string, flags: { 'plain-http'?: boolean | undefined; 'registry-username'?: string | undefined; 'registry-password'?: string | undefined }): RegistryStore {
  const loopback = /^(localhost|127\.\d+\.\d+\.\d+|\[::1\])(:\d+)?$/.test(host);
  const scheme = flags['plain-http'] || loopback ? 'http' : 'https';
  const username = flags['registry-username'] ?? process.env['TUFOCI_REGISTRY_USERNAME'];
  const password = flags['registry-password'] ?? process.env['TUFOCI_REGISTRY_PASSWORD'];
  const credentials = username !== undefined ? { username, password: password ?? '' } : dockerCredentials(host);
  return new RegistryStore({ url: `${scheme}://${host}`, ...(credentials ? { credentials } : {}) });
}

export const REGISTRY_OPTIONS = {
  'plain-http': { type: 'boolean' },
  'registry-username': { type: 'string' },
  'registry-password': { type: 'string' },
} as const;

export const REGISTRY_HELP = `  --plain-http            talk HTTP to the registry (loopback hosts always do)
  --registry-username U   registry credentials (or TUFOCI_REGISTRY_USERNAME/PASSWORD,
  --registry-password P   or ~/.docker/config.json auths)`;
