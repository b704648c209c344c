import { chmod, mkdtemp, readFile, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash, createPublicKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { canonicalize } from '@tufjs/canonical-json';
import { describe, expect, it } from 'vitest';
import {
  InMemorySigner,
  KeyError,
  repositoryBinsSigner,
  computeKeyId,
  legacyKeyId,
  generateKeyFiles,
  loadPublicKeyFile,
  loadSignerFile,
  parsePublicKey,
  parsePublicKeyText,
} from '../../src/keys/index.ts';
import { verifySignature } from '../../src/engine/signatures.ts';

const dir = await mkdtemp(join(tmpdir(), 'tufoci-keys-'));

describe('key generation and ids', () => {
  for (const type of ['ed25519', 'ecdsa-p256'] as const) {
    it(`${type}: key id is sha256 of the OLPC canonical key JSON (the TUF reference encoder), and signatures verify`, async () => {
      const s = InMemorySigner.generate(type);
      const expected = createHash('sha256').update(canonicalize({ keytype: s.public.keytype, scheme: s.public.scheme, keyval: s.public.keyval })).digest('hex');
      expect(s.keyid).toBe(expected);
      expect(s.public.scheme).toBe(type === 'ed25519' ? 'ed25519' : 'ecdsa-sha2-nistp256');
      const data = new TextEncoder().encode('hello');
      const sig = await s.sign(data);
      const info = parsePublicKey(s.keyid, s.public);
      expect(verifySignature(info, data, sig.sig)).toBe(true);
      expect(verifySignature(info, new TextEncoder().encode('hellO'), sig.sig)).toBe(false);
    });
  }

  it('an ECDSA key id is the one securesystemslib computes (newlines in the PEM are hashed raw, not escaped)', () => {
    const key = JSON.parse(readFileSync('fixtures/keys/ci-p256.pub', 'utf8'));
    // sha256(securesystemslib.formats.encode_canonical(key)), computed with Debian's python3-securesystemslib 0.26
    expect(computeKeyId(key)).toBe('7d5a49cd0d8b70487e3c928af0fdfd2c6b963ee649377c741c6e061e6acbc58a');
    expect(legacyKeyId(key)).toBe('55d8676295410272f258883e44bfa899746631dc14416b6c05182ba77c0e76ad');
  });

  it('ed25519 public keys are the 64-hex raw key, P-256 an SPKI PEM', () => {
    expect(InMemorySigner.generate('ed25519').public.keyval.public).toMatch(/^[0-9a-f]{64}$/);
    expect(InMemorySigner.generate('ecdsa-p256').public.keyval.public).toMatch(/^-----BEGIN PUBLIC KEY-----/);
  });

  it('the same key in PEM or TUF JSON has one identity', () => {
    const s = InMemorySigner.generate('ed25519');
    const pem = parsePublicKey(s.keyid, s.public).keyObject.export({ type: 'spki', format: 'pem' }).toString();
    const fromPem = parsePublicKeyText(pem);
    expect(fromPem).toEqual(s.public);
    expect(parsePublicKey('x'.repeat(64), fromPem).identity).toBe(parsePublicKey(s.keyid, s.public).identity);
  });

  it('refuses unsupported key types and garbage keys with typed errors', () => {
    expect(() => parsePublicKey('a', { keytype: 'rsa', scheme: 'rsassa-pss-sha256', keyval: { public: 'x' } })).toThrow(KeyError);
    expect(() => parsePublicKey('a', { keytype: 'ed25519', scheme: 'ed25519', keyval: { public: 'zz' } })).toThrow(/cannot be parsed/);
    const p256 = InMemorySigner.generate('ecdsa-p256');
    expect(() => parsePublicKey('b', { ...p256.public, keytype: 'ed25519', scheme: 'ed25519' })).toThrow(KeyError);
  });

  it('does not print private key material when inspected', async () => {
    const s = InMemorySigner.generate();
    const { inspect } = await import('node:util');
    expect(inspect(s)).not.toContain('PRIVATE');
    expect(JSON.stringify(s)).not.toContain('PRIVATE');
  });
});

describe('key files', () => {
  it('writes a 0600 PKCS#8 private key and a TUF JSON public key that load back', async () => {
    const w = await generateKeyFiles(join(dir, 'owner'), 'ecdsa-p256');
    expect((await stat(w.privatePath)).mode & 0o777).toBe(0o600);
    expect(await readFile(w.privatePath, 'utf8')).toContain('-----BEGIN PRIVATE KEY-----');
    const signer = await loadSignerFile(w.privatePath);
    expect(signer.keyid).toBe(w.keyid);
    expect(signer.path).toBe(w.privatePath);
    const pub = await loadPublicKeyFile(w.publicPath);
    expect(pub.keyid).toBe(w.keyid);
    expect(computeKeyId(pub.public)).toBe(w.keyid);
    expect(createPublicKey(pub.public.keyval.public).asymmetricKeyType).toBe('ec');
  });

  it('refuses a private key file readable by group or others', async () => {
    const w = await generateKeyFiles(join(dir, 'leaky'));
    await chmod(w.privatePath, 0o644);
    await expect(loadSignerFile(w.privatePath)).rejects.toMatchObject({ code: 'KEY_FILE_PERMISSIONS', message: expect.stringContaining('chmod 600') });
    await chmod(w.privatePath, 0o640);
    await expect(loadSignerFile(w.privatePath)).rejects.toMatchObject({ code: 'KEY_FILE_PERMISSIONS' });
  });

  it('never overwrites an existing key', async () => {
    await generateKeyFiles(join(dir, 'once'));
    await expect(generateKeyFiles(join(dir, 'once'))).rejects.toMatchObject({ code: 'EEXIST' });
  });

  it('gives a clear error for a missing key file', async () => {
    await expect(loadSignerFile(join(dir, 'nope.key'))).rejects.toMatchObject({ code: 'KEY_FILE_MISSING' });
  });
});

describe('keys derived per repository (the hash bins key)', () => {
  // An independent implementation of the derivation: Python's hmac and the cryptography package
  // (Debian's python3-cryptography, which securesystemslib uses), from the parent's PEM.
  const PYTHON_DERIVE = [
    'import hmac, hashlib, sys',
    'from cryptography.hazmat.primitives import serialization as s',
    'from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey',
    'key = s.load_pem_private_key(sys.stdin.buffer.read(), password=None)',
    'seed = key.private_bytes(s.Encoding.Raw, s.PrivateFormat.Raw, s.NoEncryption())',
    'derived = hmac.new(seed, b"tufoci derived key v1\\0" + bytes.fromhex(sys.argv[1]), hashlib.sha256).digest()',
    'print(Ed25519PrivateKey.from_private_bytes(derived).public_key().public_bytes(s.Encoding.Raw, s.PublicFormat.Raw).hex())',
  ].join('\n');

  it('derives the same key for the same repository, another for another, none from an ECDSA key; Python derives the same public key', () => {
    const parent = InMemorySigner.generate('ed25519');
    const a = repositoryBinsSigner(parent, 'acme/a') as InMemorySigner;
    expect(repositoryBinsSigner(parent, 'acme/a')?.keyid).toBe(a.keyid);
    expect(repositoryBinsSigner(parent, 'acme/b')?.keyid).not.toBe(a.keyid);
    expect(repositoryBinsSigner(InMemorySigner.generate('ed25519'), 'acme/a')?.keyid).not.toBe(a.keyid);
    expect(a.keyid).not.toBe(parent.keyid);
    expect(repositoryBinsSigner(InMemorySigner.generate('ecdsa-p256'), 'acme/a')).toBeUndefined();
    const python = execFileSync('/usr/bin/python3', ['-c', PYTHON_DERIVE, Buffer.from('bins\0acme/a').toString('hex')], { input: parent.exportPrivatePem() }).toString().trim();
    expect(a.public.keyval.public).toBe(python);
  });
});
