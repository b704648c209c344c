/**
 * The Debian packages tufoci's integration tests and demo start as real
 * servers or tools (docker-registry, redis-server, skopeo) or use as an
 * independent oracle (python3-securesystemslib), and installing the missing
 * ones: with apt-get when running as root on Debian, otherwise a clear
 * message with the command to run. Shared by `npm test` (scripts/test.ts) and
 * `npm run demo` (src/demo/seed-demo.ts). Nothing is ever skipped silently.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

export interface SystemPackage {
  pkg: string;
  /** A file the package installs (its binary, or a library's module): present means installed. */
  bin: string;
}

export const DOCKER_REGISTRY: SystemPackage = { pkg: 'docker-registry', bin: '/usr/bin/docker-registry' };
export const REDIS_SERVER: SystemPackage = { pkg: 'redis-server', bin: '/usr/bin/redis-server' };
export const SKOPEO: SystemPackage = { pkg: 'skopeo', bin: '/usr/bin/skopeo' };
/** The real docker-credential-pass (test/cli/registry-credentials.test.ts), over pass and gpg; openssl makes the TLS tests' CA. */
export const DOCKER_CREDENTIAL_PASS: SystemPackage = { pkg: 'golang-docker-credential-helpers', bin: '/usr/bin/docker-credential-pass' };
export const PASS: SystemPackage = { pkg: 'pass', bin: '/usr/bin/pass' };
export const GNUPG: SystemPackage = { pkg: 'gnupg', bin: '/usr/bin/gpg-agent' };
export const OPENSSL: SystemPackage = { pkg: 'openssl', bin: '/usr/bin/openssl' };
/** SoftHSM2 (softhsm2-util and /usr/lib/softhsm/libsofthsm2.so): the PKCS#11 token of test/keys/pkcs11.test.ts and test/cli/pkcs11.test.ts. */
export const SOFTHSM2: SystemPackage = { pkg: 'softhsm2', bin: '/usr/bin/softhsm2-util' };
/** securesystemslib for Debian's /usr/bin/python3: the oracle of test/oracles/securesystemslib.test.ts. */
export const PYTHON3_SECURESYSTEMSLIB: SystemPackage = {
  pkg: 'python3-securesystemslib',
  bin: '/usr/lib/python3/dist-packages/securesystemslib/__init__.py',
};

export type EnsureResult = { ok: true; installed: string[] } | { ok: false; message: string };

/**
 * Make sure every package's binary exists; install the missing ones with
 * `apt-get update && apt-get install` when root, printing what it does.
 * `purpose` completes "… for <purpose>" / "<purpose> need(s) …" in messages.
 */
export function ensureSystemPackages(packages: readonly SystemPackage[], purpose: string): EnsureResult {
  const missing = packages.filter((p) => !existsSync(p.bin)).map((p) => p.pkg);
  if (missing.length === 0) return { ok: true, installed: [] };
  const cmd = `apt-get install -y ${missing.join(' ')}`;
  if (process.getuid?.() !== 0 || !existsSync('/usr/bin/apt-get')) {
    return { ok: false, message: `${purpose} need ${missing.join(', ')}; install with: sudo apt-get update && sudo ${cmd}` };
  }
  console.log(`installing ${missing.join(', ')} (apt-get) for ${purpose}…`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  for (const args of [['update', '-qq'], ['install', '-y', '-qq', '--no-install-recommends', ...missing]]) {
    const r = spawnSync('apt-get', args, { stdio: 'inherit', env });
    if (r.status !== 0) return { ok: false, message: `apt-get ${args.join(' ')} failed (exit ${r.status})` };
  }
  const still = packages.filter((p) => !existsSync(p.bin));
  if (still.length) return { ok: false, message: `after apt-get install, ${still.map((p) => p.bin).join(', ')} still missing` };
  return { ok: true, installed: missing };
}
