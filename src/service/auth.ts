/**
 * Bearer-token authentication with scopes.
 *
 * Tokens come from a JSON file or the TUFOCI_TOKENS environment variable:
 *   [{ "name": "ci", "sha256": "<hex of sha256(token)>", "scopes": ["write:wabbit-networks/*"] },
 *    { "name": "ops", "token": "<plain token>", "scopes": ["admin"] }]
 * Only SHA-256 digests are kept in memory; a presented token is hashed and
 * compared with every configured digest in constant time. Tokens are never
 * logged. Scopes: `admin` (everything), `write:<pattern>` (uploads to
 * repositories matching the pattern, `*` matching any characters), and
 * `read:<pattern>` when reads are not public.
 * A token never changes trust by itself: every upload is still verified
 * against the repository's TUF keys.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { ServiceError } from './errors.ts';

export interface TokenEntry {
  name: string;
  digest: Buffer;
  scopes: string[];
}

export type Action = 'read' | 'write' | 'admin';

export interface Principal {
  name: string;
  scopes: string[];
}

function sha256(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}

export function parseTokens(value: unknown, source: string): TokenEntry[] {
  if (!Array.isArray(value)) throw new ServiceError('BAD_REQUEST', `${source}: tokens must be a JSON array`, { detail: { source } });
  return value.map((raw: unknown, i) => {
    const e = (typeof raw === 'object' && raw !== null ? raw : {}) as Record<string, unknown>;
    const name = e['name'];
    const scopes = e['scopes'];
    if (typeof name !== 'string' || !Array.isArray(scopes) || !scopes.every((s) => typeof s === 'string' && /^(admin|(read|write):\S+)$/.test(s))) {
      throw new ServiceError('BAD_REQUEST', `${source}[${i}]: needs "name" and "scopes" (admin, write:<pattern>, read:<pattern>)`, { detail: { source, index: i } });
    }
    let digest: Buffer;
    if (typeof e['sha256'] === 'string' && /^[0-9a-f]{64}$/.test(e['sha256'])) digest = Buffer.from(e['sha256'], 'hex');
    else if (typeof e['token'] === 'string' && e['token'].length >= 16) digest = sha256(e['token']);
    else throw new ServiceError('BAD_REQUEST', `${source}[${i}]: needs "sha256" (64 hex) or "token" (16+ characters)`, { detail: { source, index: i } });
    return { name, digest, scopes: scopes as string[] };
  });
}

function globMatch(pattern: string, value: string): boolean {
  const re = new RegExp(`^${pattern.split('*').map((p) => p.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`);
  return re.test(value);
}

export class TokenAuth {
  readonly #tokens: TokenEntry[];
  readonly publicRead: boolean;

  constructor(tokens: TokenEntry[], publicRead = true) {
    this.#tokens = tokens;
    this.publicRead = publicRead;
  }

  /** The principal of an Authorization header value, or undefined (no or unknown token). */
  identify(header: string | undefined): Principal | undefined {
    if (!header) return undefined;
    const m = /^Bearer ([\x21-\x7e]{1,512})$/.exec(header);
    if (!m?.[1]) return undefined;
    const digest = sha256(m[1]);
    let found: TokenEntry | undefined;
    for (const t of this.#tokens) if (timingSafeEqual(t.digest, digest) && !found) found = t; // no early exit
    return found ? { name: found.name, scopes: found.scopes } : undefined;
  }

  /** Throw UNAUTHENTICATED / FORBIDDEN unless `header` allows `action` on `repository`. */
  authorize(header: string | undefined, action: Action, repository?: string): Principal | undefined {
    if (action === 'read' && this.publicRead) return undefined;
    const p = this.identify(header);
    if (!p) throw new ServiceError('UNAUTHENTICATED', 'a valid bearer token is required', { detail: { action } });
    if (p.scopes.includes('admin')) return p;
    const ok =
      action !== 'admin' &&
      repository !== undefined &&
      p.scopes.some((s) => {
        const [kind, pattern] = [s.slice(0, s.indexOf(':')), s.slice(s.indexOf(':') + 1)];
        return (kind === action || (action === 'read' && kind === 'write')) && globMatch(pattern, repository);
      });
    if (!ok) throw new ServiceError('FORBIDDEN', `token "${p.name}" may not ${action}${repository ? ` ${repository}` : ''}`, { detail: { action, repository } });
    return p;
  }
}

/**
 * Tokens for `tufoci serve`: TUFOCI_TOKENS (JSON) or a tokens file; with
 * neither, an admin token is generated once into `<dataDir>/admin-token`
 * (mode 0600) so the embedded default works with zero configuration.
 */
export async function loadTokens(opts: { dataDir: string; file?: string; env?: string }): Promise<{ tokens: TokenEntry[]; generatedAdminToken?: string }> {
  if (opts.env) return { tokens: parseTokens(JSON.parse(opts.env), 'TUFOCI_TOKENS') };
  if (opts.file) return { tokens: parseTokens(JSON.parse(await readFile(opts.file, 'utf8')), opts.file) };
  const path = `${opts.dataDir}/admin-token`;
  let token: string;
  let generated: string | undefined;
  if (existsSync(path)) token = (await readFile(path, 'utf8')).trim();
  else {
    // Hex: a token that began with '-' would read as an option on a command line (--token $(cat …)).
    token = randomBytes(32).toString('hex');
    await writeFile(path, `${token}\n`, { mode: 0o600, flag: 'wx' });
    generated = path;
  }
  return { tokens: parseTokens([{ name: 'admin', token, scopes: ['admin'] }], path), ...(generated ? { generatedAdminToken: generated } : {}) };
}
