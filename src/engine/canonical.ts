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

/**
 * A copy of `value` whose objects have their keys inserted in sorted order, or
 * undefined when it holds something only the full encoder handles (a
 * non-integer number, undefined, a non-plain value).
 */
function sortedCopy(value: unknown): unknown {
  if (typeof value === 'string' || typeof value === 'boolean' || value === null) return value;
  if (typeof value === 'number') return Number.isInteger(value) ? value : undefined;
  if (Array.isArray(value)) {
    const out = new Array<unknown>(value.length);
    for (let i = 0; i < value.length; i++) {
      const v = sortedCopy(value[i]);
      if (v === undefined) return undefined;
      out[i] = v;
    }
    return out;
  }
  if (typeof value === 'object') {
    const obj = value as Record<string, unknown>;
    const keys = Object.keys(obj).sort();
    const out = Object.create(null) as Record<string, unknown>; // so "__proto__" is an ordinary key
    for (const k of keys) {
      // Integer-like keys would be re-ordered by the engine's property order: full encoder.
      if (k.length > 0 && k.length < 11 && /^(?:0|[1-9][0-9]*)$/.test(k)) return undefined;
      const v = sortedCopy(obj[k]);
      if (v === undefined) return undefined;
      out[k] = v;
    }
    return out;
  }
  return undefined;
}

/** JSON.stringify escapes these where OLPC writes the character itself (it escapes only `"` and `\`). */
const STRINGIFY_ONLY_ESCAPE = /\\[bfnrtu]/;

export function canonicalJsonString(value: unknown): string {
  // Fast path: V8's native serializer over a key-sorted copy writes the same text as OLPC
  // whenever it escaped nothing but `"` and `\` (checked on its output; a false alarm
  // from a literal backslash before one of those letters only costs the slow path).
  const sorted = sortedCopy(value);
  if (sorted !== undefined) {
    const text = JSON.stringify(sorted);
    if (!STRINGIFY_ONLY_ESCAPE.test(text)) return text;
  }
  return encode(value);
}

export function canonicalSignedBytes(signed: unknown): Buffer {
  return Buffer.from(canonicalJsonString(signed), 'utf8');
}
