/**
 * The async signing seam. A `Signer` knows its key id and public key and signs
 * bytes; whether the private key sits in memory, in a file or in a KMS/HSM is
 * the implementation's business. Everything that signs metadata in tufoci
 * (the engine's online roles, the CLI's offline roles) goes through it.
 */
import { createPublicKey, generateKeyPairSync, sign as cryptoSign, type KeyObject } from 'node:crypto';
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

export function generatePrivateKey(type: KeyType): KeyObject {
  switch (type) {
    case 'ed25519':
      return generateKeyPairSync('ed25519').privateKey;
    case 'ecdsa-p256':
      return generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;
  }
}
