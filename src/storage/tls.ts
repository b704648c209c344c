/**
 * TLS trust for the HTTP clients (registry, token service, tufoci service),
 * which all use Node's fetch.
 *
 * - Node's fetch verifies servers against Node's default CA list: its bundled
 *   roots plus `NODE_EXTRA_CA_CERTS`, which Node reads once at start-up.
 * - `trustCertificates` adds certificates (a private CA) to that default list
 *   with `tls.setDefaultCACertificates`, so every later connection of the
 *   process trusts them, in addition to the public roots. It is process-wide
 *   on purpose: Node's fetch takes no per-request CA without a dispatcher of
 *   the separate undici package, and a tufoci command or service is one
 *   process with one trust setting (`--ca-file`).
 * - `describeTlsFailure` turns a fetch failure caused by TLS (an untrusted,
 *   expired or misnamed certificate; a peer that does not speak TLS) into a
 *   sentence naming the problem and the fix. Such failures are not transient:
 *   callers do not retry them.
 */
import { X509Certificate } from 'node:crypto';

export class TlsTrustError extends Error {}

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----\r?\n[A-Za-z0-9+/=\r\n]+?-----END CERTIFICATE-----/g;

/** The certificates of a PEM file's text; refuses text without one, with a private key, or with a block that does not parse. */
export function parseCertificates(pem: string, source: string): string[] {
  if (/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(pem)) {
    throw new TlsTrustError(`${source} holds a private key: give only the CA certificate(s), and keep the key out of reach`);
  }
  const blocks = pem.match(PEM_CERTIFICATE) ?? [];
  if (blocks.length === 0) throw new TlsTrustError(`${source} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`);
  blocks.forEach((block, i) => {
    try {
      new X509Certificate(block);
    } catch (error) {
      throw new TlsTrustError(`certificate ${i + 1} of ${source} does not parse: ${error instanceof Error ? error.message : String(error)}`);
    }
  });
  return blocks;
}

const trusted = new Set<string>();

/**
 * Trust these PEM certificates for every TLS connection this process opens from now on,
 * next to Node's default CAs (bundled roots and NODE_EXTRA_CA_CERTS). Idempotent.
 */
export function trustCertificates(pem: string, source: string): number {
  const certificates = parseCertificates(pem, source).filter((c) => !trusted.has(c));
  if (certificates.length === 0) return 0;
  // Loaded only here: node:tls costs ~10 ms of start-up that commands without --ca-file need not pay.
  const tls = process.getBuiltinModule('node:tls');
  tls.setDefaultCACertificates([...tls.getCACertificates('default'), ...certificates]);
  for (const c of certificates) trusted.add(c);
  return certificates.length;
}

/** OpenSSL's verification failures and Node's host name check, as Node names them in `code`. */
const CERTIFICATE_CODES = new Set([
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'CERT_SIGNATURE_FAILURE',
  'CERT_NOT_YET_VALID',
  'CERT_HAS_EXPIRED',
  'CERT_REVOKED',
  'CERT_CHAIN_TOO_LONG',
  'INVALID_CA',
  'INVALID_PURPOSE',
  'PATH_LENGTH_EXCEEDED',
  'UNABLE_TO_DECRYPT_CERT_SIGNATURE',
  'UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY',
  'ERROR_IN_CERT_NOT_BEFORE_FIELD',
  'ERROR_IN_CERT_NOT_AFTER_FIELD',
  'HOSTNAME_MISMATCH',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/** A TLS handshake answered by something that is not TLS (plain HTTP, most often). */
const NOT_TLS_CODES = new Set(['ERR_SSL_WRONG_VERSION_NUMBER', 'ERR_SSL_PACKET_LENGTH_TOO_LONG', 'ERR_SSL_HTTP_REQUEST', 'ERR_SSL_RECORD_LAYER_FAILURE']);

function causes(error: unknown): Array<{ code: string; message: string }> {
  const out: Array<{ code: string; message: string }> = [];
  let e: unknown = error;
  for (let depth = 0; depth < 6 && typeof e === 'object' && e !== null; depth++) {
    const { code, message } = e as { code?: unknown; message?: unknown };
    if (typeof code === 'string') out.push({ code, message: typeof message === 'string' ? message : '' });
    e = (e as { cause?: unknown }).cause;
  }
  return out;
}

export interface TlsHints {
  /** How to trust a private CA. */
  ca?: string;
  /** How to talk plain HTTP to this peer, when that is what it serves. */
  plain?: string;
}

const DEFAULT_HINTS: Required<TlsHints> = {
  ca: 'trust its CA with --ca-file FILE or NODE_EXTRA_CA_CERTS=FILE',
  plain: 'tufoci talks plain HTTP to a registry only on loopback or with --plain-http',
};

/** What went wrong, when `error` (from fetch) is a TLS failure talking to `url`; undefined otherwise. */
export function describeTlsFailure(error: unknown, url: string | URL, hints: TlsHints = {}): string | undefined {
  const { ca, plain } = { ...DEFAULT_HINTS, ...hints };
  let host: string;
  try {
    host = new URL(url).host;
  } catch {
    host = String(url).slice(0, 200);
  }
  for (const { code, message } of causes(error)) {
    if (CERTIFICATE_CODES.has(code)) {
      // Node's own advice (--use-system-ca) is about its flags, not ours.
      const reason = message.replace(/;\s*if the root CA is installed locally.*$/s, '').slice(0, 300);
      return `TLS: the certificate of ${host} is not accepted: ${reason} (${code}); if it is issued by a private CA, ${ca}`;
    }
    // node:https names OpenSSL's record-layer failures EPROTO, with OpenSSL's reason in the message.
    const notTls = NOT_TLS_CODES.has(code) || (code === 'EPROTO' && /wrong version number|packet length too long|http request|record layer failure/i.test(message));
    if (notTls) {
      const name = code === 'EPROTO' ? `ERR_SSL_${(/(wrong version number|packet length too long|http request|record layer failure)/i.exec(message)?.[1] ?? 'protocol').toUpperCase().replaceAll(' ', '_')}` : code;
      return `TLS: ${host} does not answer in TLS (${name}), it may serve plain HTTP; ${plain}`;
    }
  }
  return undefined;
}
