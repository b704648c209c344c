/**
 * Per-repository online keys derived from one master secret.
 *
 * TUF metadata does not name its repository: if two repositories trusted the same
 * timestamp/snapshot keys, a registry could serve repository X's timestamp and snapshot under R,
 * and a client would walk R's older targets files under a fresh timestamp (a cross-repository
 * mix-and-match that rolls R back). Distinct keys make that signature check fail. A derived key
 * set therefore holds one 256-bit master secret, and the key of role `r` for repository `R` is the
 * ed25519 key whose seed is HMAC-SHA256(master, "tufoci online key v1" ‖ r ‖ R): nothing per
 * repository is stored, and everyone holding the master derives the same keys.
 *
 * Written by hand (HMAC and the PKCS#8 wrapping of the seed): no maintained library derives TUF keys.
 */
import { createHmac, createPrivateKey, randomBytes } from 'node:crypto';
import { open, readFile, stat } from 'node:fs/promises';
import { ED25519_PKCS8_PREFIX, InMemorySigner, type Signer } from './signer.ts';
import { KeyError } from './tuf-key.ts';

export const ONLINE_ROLES = ['snapshot', 'timestamp', 'ci'] as const;
export type OnlineRole = (typeof ONLINE_ROLES)[number];


/** A fresh master secret. */
export function newMaster(): Buffer {
  return randomBytes(32);
}

/** The online key of `role` for `repository` under `master`. */
export function deriveSigner(master: Buffer, role: OnlineRole, repository: string): Signer {
  const seed = createHmac('sha256', master).update(`tufoci online key v1\0${role}\0${repository}`).digest();
  return new InMemorySigner(createPrivateKey({ key: Buffer.concat([ED25519_PKCS8_PREFIX, seed]), format: 'der', type: 'pkcs8' }));
}

/** Every online key of `repository` under `master`. */
export function deriveSigners(master: Buffer, repository: string): Record<OnlineRole, Signer> {
  return { snapshot: deriveSigner(master, 'snapshot', repository), timestamp: deriveSigner(master, 'timestamp', repository), ci: deriveSigner(master, 'ci', repository) };
}

/** Read a master secret file (64 hex digits; `#` lines are comments), refusing one group or others can read. */
export async function readMaster(path: string): Promise<Buffer> {
  const st = await stat(path);
  if ((st.mode & 0o077) !== 0) {
    throw new KeyError('KEY_FILE_PERMISSIONS', `${path} is readable by group or others; run: chmod 600 ${path}`, { detail: { path } });
  }
  const hex = (await readFile(path, 'utf8')).split('\n').filter((l) => l && !l.startsWith('#'))[0] ?? '';
  if (!/^[0-9a-f]{64}$/.test(hex)) throw new KeyError('BAD_KEY', `${path} does not hold a 64-hex-digit master secret`, { detail: { path } });
  return Buffer.from(hex, 'hex');
}

/** Create a new master secret file (mode 0600, exclusive: an existing file is never replaced) for set `id`. */
export async function writeMaster(path: string, id: number): Promise<void> {
  const handle = await open(path, 'wx', 0o600);
  try {
    await handle.writeFile(`# tufoci online key master secret, set ${id}. Every repository's online keys derive from it: keep it secret.\n${newMaster().toString('hex')}\n`);
    await handle.sync();
  } finally {
    await handle.close();
  }
}
