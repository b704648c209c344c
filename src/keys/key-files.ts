/**
 * Key files on disk.
 *
 * - `<name>.key`: the private key, PKCS#8 PEM, created with mode 0600. A private
 *   key file that is readable by group or others is refused when loaded.
 * - `<name>.pub`: the public key as TUF key JSON (`{keytype, scheme, keyval}`);
 *   an SPKI PEM is accepted too when reading.
 *
 * Wherever a key file is accepted, a `pkcs11:` URI naming a key in an HSM is
 * too: `loadSigner` and `loadPublicKey` dispatch on it. `pkcs11.ts` (and the
 * optional native `pkcs11js` it requires) is imported only then.
 */
import { createPrivateKey, type KeyObject } from 'node:crypto';
// node:fs/promises by `fs.promises`, read when a file is: loading it (and the readline module it
// brings) at import costs every command's start-up about 5 ms.
import * as fs from 'node:fs';
import { InMemorySigner, generatePrivateKey, type Signer } from './signer.ts';
import { KeyError, computeKeyId, parsePublicKeyText, type KeyType, type TufKeyJson } from './tuf-key.ts';

export interface WrittenKeyPair {
  privatePath: string;
  publicPath: string;
  keyid: string;
  public: TufKeyJson;
}

/** Generate a key pair and write `<base>.key` (0600, exclusive create) and `<base>.pub`. */
export async function generateKeyFiles(base: string, type: KeyType = 'ed25519', comment?: string): Promise<WrittenKeyPair> {
  const signer = new InMemorySigner(generatePrivateKey(type));
  const privatePath = `${base}.key`;
  const publicPath = `${base}.pub`;
  await writePrivateKeyFile(privatePath, signer, comment);
  await fs.promises.writeFile(publicPath, `${JSON.stringify(signer.public, null, 2)}\n`, { flag: 'wx', mode: 0o644 });
  return { privatePath, publicPath, keyid: signer.keyid, public: signer.public };
}

export async function writePrivateKeyFile(path: string, signer: InMemorySigner, comment?: string): Promise<void> {
  const header = comment ? `${comment.split('\n').map((l) => `# ${l}`).join('\n')}\n` : '';
  const handle = await fs.promises.open(path, 'wx', 0o600);
  try {
    await handle.writeFile(header + signer.exportPrivatePem());
    await handle.chmod(0o600);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** A signer whose private key was read from a key file (kept in memory after loading). */
export class FileSigner extends InMemorySigner {
  readonly path: string;
  constructor(path: string, key: KeyObject) {
    super(key);
    this.path = path;
  }
}

/** Load a private key file as a signer, refusing group/world-readable files. */
export async function loadSignerFile(path: string): Promise<FileSigner> {
  let mode: number;
  try {
    mode = fs.statSync(path).mode;
  } catch (cause) {
    throw new KeyError('KEY_FILE_MISSING', `cannot read key file ${path}`, { detail: { path }, cause });
  }
  if ((mode & 0o077) !== 0) {
    throw new KeyError(
      'KEY_FILE_PERMISSIONS',
      `key file ${path} is accessible by group or others (mode ${(mode & 0o777).toString(8)}); run: chmod 600 ${path}`,
      { detail: { path, mode: (mode & 0o777).toString(8) } },
    );
  }
  const text = fs.readFileSync(path, 'utf8'); // a key file is small: read at once, without node:fs/promises
  const pem = text.slice(text.indexOf('-----BEGIN'));
  try {
    return new FileSigner(path, createPrivateKey(pem));
  } catch (cause) {
    throw new KeyError('BAD_KEY', `key file ${path} does not hold a PKCS#8 private key`, { detail: { path }, cause });
  }
}

/** A signer loaded from a key reference; `path` is what messages show (a file path, or a pkcs11: URI without its PIN). */
export type KeySigner = Signer & { readonly path: string };

/** True when a key reference is a `pkcs11:` URI (RFC 7512) rather than a file path. */
export function isPkcs11Uri(ref: string): boolean {
  return /^pkcs11:/i.test(ref);
}

/** A private key as a signer: a key file (loadSignerFile), or a key in an HSM named by a `pkcs11:` URI. */
export async function loadSigner(ref: string): Promise<KeySigner> {
  if (isPkcs11Uri(ref)) return (await import('./pkcs11.ts')).loadPkcs11Signer(ref);
  return loadSignerFile(ref);
}

/** A public key with its key id: a public key file (loadPublicKeyFile), or the public key object a `pkcs11:` URI names. */
export async function loadPublicKey(ref: string): Promise<{ keyid: string; public: TufKeyJson }> {
  if (isPkcs11Uri(ref)) return (await import('./pkcs11.ts')).loadPkcs11PublicKey(ref);
  return loadPublicKeyFile(ref);
}

/** Load a public key file (TUF JSON or SPKI PEM) with its key id. */
export async function loadPublicKeyFile(path: string): Promise<{ keyid: string; public: TufKeyJson }> {
  let text: string;
  try {
    text = fs.readFileSync(path, 'utf8');
  } catch (cause) {
    throw new KeyError('KEY_FILE_MISSING', `cannot read public key file ${path}`, { detail: { path }, cause });
  }
  const pub = parsePublicKeyText(text);
  return { keyid: computeKeyId(pub), public: pub };
}
