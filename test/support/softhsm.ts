/**
 * A real SoftHSM2 (Debian `softhsm2`) for tests: a config and a token
 * directory in a fresh temporary directory (SOFTHSM2_CONF points at it, so no
 * test touches the machine's tokens), tokens initialized with softhsm2-util,
 * key pairs generated inside a token through pkcs11js (C_GenerateKeyPair) in a
 * child process (softhsm-keygen.ts). PINs are test values that live only in
 * that directory and in the test. A missing softhsm2 is a failure, never a skip.
 *
 * SoftHSM reads its tokens when the module is initialized: make every token
 * and key before the first key is loaded in a process.
 */
import { execFile, execFileSync } from 'node:child_process';
import { accessSync, constants, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

export const SOFTHSM_MODULE = '/usr/lib/softhsm/libsofthsm2.so';
export const SOFTHSM_UTIL = '/usr/bin/softhsm2-util';
const KEYGEN = new URL('./softhsm-keygen.ts', import.meta.url).pathname;
const run = promisify(execFile);

export type TokenKeyType = 'ed25519' | 'ecdsa-p256' | 'ecdsa-p384';

export interface TokenKeySpec {
  label: string;
  /** CKA_ID, hex. */
  id: string;
  type: TokenKeyType;
  /** Destroy the public key object after generating the pair. */
  without?: 'public';
  /** Give the key the public key object of another key pair. */
  mismatch?: boolean;
}

export interface TokenKey {
  label: string;
  id: string;
  type: TokenKeyType;
  /** The public key's CKA_EC_POINT as the token returned it, hex. */
  point: string;
}

export interface SoftHsm {
  readonly dir: string;
  /** The SOFTHSM2_CONF file. */
  readonly conf: string;
  /** Environment for child processes: SOFTHSM2_CONF. */
  readonly env: { SOFTHSM2_CONF: string };
  /** Initialize a token in the first free slot. */
  initToken(label: string, pin: string, soPin?: string): void;
  /** Generate key pairs inside the token. */
  generate(token: string, pin: string, keys: TokenKeySpec[]): Promise<TokenKey[]>;
  /** Write a PIN file (mode 0600 unless told) in the temporary directory; its path. */
  pinFile(name: string, pin: string, mode?: number): string;
  remove(): void;
}

export function assertSoftHsm(): void {
  for (const file of [SOFTHSM_UTIL, SOFTHSM_MODULE]) {
    try {
      accessSync(file, constants.R_OK);
    } catch {
      throw new Error(`SoftHSM2 is not installed (${file} missing): run \`apt-get install softhsm2\` — the PKCS#11 tests need a real token and do not skip`);
    }
  }
}

export function createSoftHsm(): SoftHsm {
  assertSoftHsm();
  const dir = mkdtempSync(join(tmpdir(), 'tufoci-softhsm-'));
  const tokens = join(dir, 'tokens');
  mkdirSync(tokens, { mode: 0o700 });
  const conf = join(dir, 'softhsm2.conf');
  writeFileSync(conf, `directories.tokendir = ${tokens}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n`);
  const env = { SOFTHSM2_CONF: conf };
  return {
    dir,
    conf,
    env,
    initToken(label, pin, soPin = `so-${pin}`) {
      execFileSync(SOFTHSM_UTIL, ['--init-token', '--free', '--label', label, '--so-pin', soPin, '--pin', pin], { env: { ...process.env, ...env }, stdio: 'pipe' });
    },
    async generate(token, pin, keys) {
      const request = JSON.stringify({ module: SOFTHSM_MODULE, token, pin, keys });
      const { stdout } = await run(process.execPath, [KEYGEN, request], { env: { ...process.env, ...env } });
      return JSON.parse(stdout) as TokenKey[];
    },
    pinFile(name, pin, mode = 0o600) {
      const path = join(dir, name);
      writeFileSync(path, `${pin}\n`, { mode });
      return path;
    },
    remove() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The public key a token key's CKA_EC_POINT holds, as JWK (built here independently of src/keys/pkcs11.ts). */
export function jwkOfPoint(key: TokenKey): { kty: string; crv: string; x: string; y?: string } {
  const der = Buffer.from(key.point, 'hex');
  if (der[0] !== 0x04 || der[1] !== der.length - 2) throw new Error(`CKA_EC_POINT of ${key.label} is not a DER OCTET STRING`);
  const point = der.subarray(2);
  if (key.type === 'ed25519') return { kty: 'OKP', crv: 'Ed25519', x: point.toString('base64url') };
  const size = key.type === 'ecdsa-p256' ? 32 : 48;
  return { kty: 'EC', crv: key.type === 'ecdsa-p256' ? 'P-256' : 'P-384', x: point.subarray(1, 1 + size).toString('base64url'), y: point.subarray(1 + size).toString('base64url') };
}
