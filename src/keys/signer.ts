/**
 * The async signing seam. A `Signer` knows its key id and public key and signs
 * bytes; whether the private key sits in memory, in a file or in a KMS/HSM is
 * the implementation's business. Everything that signs metadata in tufoci
 * (the engine's online roles, the CLI's offline roles) goes through it.
 */
import { createHmac, createPrivateKey, createPublicKey, generateKeyPairSync, sign as cryptoSign, type KeyObject } from 'node:crypto';
import { computeKeyId, tufKeyFromPublicKey, type KeyType, type TufKeyJson } from './tuf-key.ts';

export interface TufSignature {
  keyid: string;
  sig: string;
}

export interface Signer {
  readonly keyid: string;
  readonly public: TufKeyJson;
  /** Sign the exact bytes given (the canonical form of `signed`). */
  sign(data: Uint8Array): Promise<TufSignature>;
}

/** PKCS#8 DER prefix of an ed25519 private key; the 32-byte seed follows. */
export const ED25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');

/** A signer over a Node private KeyObject held in memory. */
export class InMemorySigner implements Signer {
  readonly keyid: string;
  readonly public: TufKeyJson;
  readonly #key: KeyObject;
  readonly #hash: 'sha256' | null;

  constructor(privateKey: KeyObject) {
    if (privateKey.type !== 'private') throw new TypeError('InMemorySigner needs a private key');
    this.#key = privateKey;
    this.public = tufKeyFromPublicKey(createPublicKey(privateKey));
    this.keyid = computeKeyId(this.public);
    this.#hash = this.public.keytype === 'ed25519' ? null : 'sha256';
  }

  static generate(type: KeyType = 'ed25519'): InMemorySigner {
    return new InMemorySigner(generatePrivateKey(type));
  }

  async sign(data: Uint8Array): Promise<TufSignature> {
    return { keyid: this.keyid, sig: cryptoSign(this.#hash, data, this.#key).toString('hex') };
  }

  /**
   * An ed25519 key derived from this one for `purpose` (its seed is HMAC-SHA256 of this key's seed
   * and the purpose): whoever holds this key derives the same key, nobody else can, and nothing
   * more is stored. Used for the hash bins of one repository (engine/bound-bins.ts). Undefined for
   * a key that is not ed25519.
   */
  derive(purpose: string): InMemorySigner | undefined {
    if (this.public.keytype !== 'ed25519') return undefined;
    const seed = Buffer.from(String(this.#key.export({ format: 'jwk' }).d), 'base64url');
    const derived = createHmac('sha256', seed).update(`tufoci derived key v1\0${purpose}`).digest();
    seed.fill(0);
    return new InMemorySigner(createPrivateKey({ key: Buffer.concat([ED25519_PKCS8_PREFIX, derived]), format: 'der', type: 'pkcs8' }));
  }

  /** PKCS#8 PEM of the private key, for writing a key file. */
  exportPrivatePem(): string {
    return this.#key.export({ type: 'pkcs8', format: 'pem' }).toString();
  }

  /** Do not leak key material through util.inspect / console.log. */
  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return `InMemorySigner(${this.public.keytype} ${this.keyid.slice(0, 12)})`;
  }

  toJSON(): { keyid: string; public: TufKeyJson } {
    return { keyid: this.keyid, public: this.public };
  }
}

/**
 * The key that signs `repository`'s hash bins of a role delegated to `signer` alone: derived from
 * it for that repository (engine/bound-bins.ts), when it can be (an ed25519 key in memory or in a
 * key file; not a key in an HSM).
 */
export function repositoryBinsSigner(signer: Signer, repository: string): InMemorySigner | undefined {
  return signer instanceof InMemorySigner ? signer.derive(`bins\0${repository}`) : undefined;
}

export function generatePrivateKey(type: KeyType): KeyObject {
  switch (type) {
    case 'ed25519':
      return generateKeyPairSync('ed25519').privateKey;
    case 'ecdsa-p256':
      return generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;
  }
}
