/**
 * A throwaway certificate authority for TLS tests, made with Debian's
 * `openssl` in a temporary directory (never committed): a CA (P-256,
 * CA:TRUE), and server certificates it issues for chosen IP addresses and
 * DNS names. A missing openssl is a failure, never a skip.
 */
import { execFileSync } from 'node:child_process';
import { accessSync, constants, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const OPENSSL_BINARY = '/usr/bin/openssl';

export interface TestCa {
  /** The CA certificate file (PEM). */
  caFile: string;
  /** Its PEM text. */
  caPem: string;
  /** A server certificate and key issued by this CA for `names` (IPs and DNS names). */
  issue(name: string, names: { ips?: string[]; dns?: string[] }): { certificate: string; key: string };
}

function openssl(args: string[], cwd: string): void {
  execFileSync(OPENSSL_BINARY, args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

export function makeTestCa(dir: string, subject = 'tufoci test CA'): TestCa {
  try {
    accessSync(OPENSSL_BINARY, constants.X_OK);
  } catch {
    throw new Error(`openssl is not installed (${OPENSSL_BINARY} missing): run \`apt-get install openssl\` — the TLS tests make their CA with it and do not skip`);
  }
  const prefix = subject.replace(/[^A-Za-z0-9]+/g, '-');
  const caKey = join(dir, `${prefix}.key`);
  const caFile = join(dir, `${prefix}.pem`);
  openssl(
    ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', caKey, '-out', caFile, '-days', '2', '-subj', `/CN=${subject}`,
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'],
    dir,
  );
  let serial = 0;
  return {
    caFile,
    caPem: readFileSync(caFile, 'utf8'),
    issue(name, names) {
      const base = join(dir, `${prefix}-${name}-${++serial}`);
      const san = [...(names.ips ?? []).map((ip) => `IP:${ip}`), ...(names.dns ?? []).map((d) => `DNS:${d}`)].join(',');
      writeFileSync(`${base}.ext`, `subjectAltName=${san}\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n`);
      openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${base}.key`, '-out', `${base}.csr`, '-subj', `/CN=${name}`], dir);
      openssl(['x509', '-req', '-in', `${base}.csr`, '-CA', caFile, '-CAkey', caKey, '-set_serial', String(1000 + serial), '-days', '2', '-out', `${base}.pem`, '-extfile', `${base}.ext`], dir);
      return { certificate: `${base}.pem`, key: `${base}.key` };
    },
  };
}
