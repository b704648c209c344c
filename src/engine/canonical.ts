/**
 * Canonical JSON for signatures. TUF signs the OLPC canonical form of `signed`
 * (what securesystemslib, go-tuf and tuf-js produce and check); JCS
 * (`canonicalize`, used for key ids) differs for control characters, so
 * metadata signatures use the OLPC form, exactly as @tufjs/canonical-json
 * (the encoder tuf-js's client verifies with) produces it.
 *
 * Written here for speed, with @tufjs/canonical-json as the reference: its
 * array-of-fragments encoder was the largest cost of verifying a
 * 10,000-target upload. Strings without control characters or lone
 * surrogates encode identically under JSON.stringify and OLPC (only `"` and
 * `\` escaped), so they take V8's native path; any other string, and any
 * value OLPC cannot encode (floats, undefined), goes to the reference encoder.
 * A property test checks equality with the reference on random JSON.
 */
import { canonicalize as reference } from '@tufjs/canonical-json';

const NEEDS_REFERENCE = /[\u0000-\u001f\ud800-\udfff]/;

function encodeString(s: string): string {
  return NEEDS_REFERENCE.test(s) ? reference(s) : JSON.stringify(s);
}

function encode(value: unknown): string {
  if (typeof value === 'string') return encodeString(value);
  if (typeof value === 'number') {
    if (!Number.isInteger(value)) return reference(value as never); // throws, as the reference does
    return JSON.stringify(value);
  }
  if (typeof value === 'boolean' || value === null) return JSON.stringify(value);
  if (Array.isArray(value)) {
    let out = '[';
    for (let i = 0; i < value.length; i++) out += (i ? ',' : '') + encode(value[i]);
    return `${out}]`;
  }
  if (typeof value === 'object') {
    const obj = value as Record<string, unknown>;
    const keys = Object.keys(obj).sort();
    let out = '{';
    for (let i = 0; i < keys.length; i++) {
      const k = keys[i] as string;
      out += `${i ? ',' : ''}${encodeString(k)}:${encode(obj[k])}`;
    }
    return `${out}}`;
  }
  return reference(value as never);
}

export function canonicalJsonString(value: unknown): string {
  return encode(value);
}

export function canonicalSignedBytes(signed: unknown): Buffer {
  return Buffer.from(encode(signed), 'utf8');
}
