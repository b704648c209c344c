/**
 * Keys in an HSM through PKCS#11: a `Signer` over a private key object in a
 * token, named by a `pkcs11:` URI (RFC 7512), e.g.
 *
 *     pkcs11:token=tufoci;object=root-1?pin-source=file:/etc/tufoci/pin
 *
 * - **Lazy.** `pkcs11js` (an optional dependency with a native part) is
 *   required only when the first `pkcs11:` key is opened; `key-files.ts`
 *   imports this module only then, so commands that use key files or no keys
 *   never load either. Not installed: a `PKCS11_UNAVAILABLE` error saying how
 *   to install it.
 * - **Keys.** ed25519 (`CKK_EC_EDWARDS`, signed with `CKM_EDDSA`) and ECDSA
 *   P-256 (`CKK_EC`, `CKM_ECDSA` over the SHA-256 digest computed here; the
 *   token's raw r‖s is re-encoded as the DER signature that TUF's
 *   `ecdsa-sha2-nistp256` and every verifier here expect). The public key is
 *   read from the token's public key object (`CKA_EC_PARAMS`, `CKA_EC_POINT`)
 *   and turned into the same TUF key JSON, and so the same key id, as a key
 *   file of that key. Every signature is checked against that public key
 *   before it is returned, so a public object that does not pair with the
 *   private key is an error here, not a refusal by every client later.
 * - **Sessions.** One module instance per module path per process
 *   (C_Initialize with OS locking), one session per token, one login per token
 *   (PKCS#11 login state is per application and token). Every operation on a
 *   session (find, login, sign) runs through that token's queue: a session
 *   does one operation at a time, and `C_SignAsync` runs on libuv's thread
 *   pool. A module that cannot use OS locking (or that someone else in this
 *   process initialized) gets one queue for all its tokens. Nothing keeps the
 *   event loop alive; the modules are finalized when the process exits
 *   (`closePkcs11`).
 * - **PINs** come from `pin-value=`, `pin-source=` (a `file:` URI or an
 *   absolute path to a file that only its owner can read) or the
 *   TUFOCI_PKCS11_PIN environment variable, in that order. No message, error
 *   detail, `util.inspect` or `JSON.stringify` of a signer shows a PIN: a URI
 *   is shown with its `pin-value` replaced by `***`.
 */
import { createHash, createPublicKey, verify as cryptoVerify, type KeyObject } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { endianness } from 'node:os';
import { isAbsolute } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isPkcs11Uri } from './key-files.ts';
import type { Signer, TufSignature } from './signer.ts';
import { KeyError, computeKeyId, tufKeyFromPublicKey, type TufKeyJson } from './tuf-key.ts';

// ---------------------------------------------------------------------------------------------
// pkcs11: URIs (RFC 7512)

export type Pkcs11ObjectType = 'public' | 'private' | 'cert' | 'secret-key' | 'data';

/** A parsed `pkcs11:` URI: every value percent-decoded (`id` as bytes, the rest as UTF-8 text). */
export interface Pkcs11Uri {
  token?: string;
  manufacturer?: string;
  model?: string;
  serial?: string;
  slotId?: bigint;
  slotDescription?: string;
  slotManufacturer?: string;
  libraryManufacturer?: string;
  libraryDescription?: string;
  libraryVersion?: { major: number; minor: number };
  object?: string;
  id?: Buffer;
  type?: Pkcs11ObjectType;
  pinValue?: string;
  pinSource?: string;
  modulePath?: string;
}

type AttrKind = 'text' | 'bytes' | 'slot' | 'version' | 'type' | 'unsupported';
interface AttrSpec {
  field?: keyof Pkcs11Uri;
  kind: AttrKind;
  part: 'path' | 'query';
}

const ATTRIBUTES: Record<string, AttrSpec> = {
  token: { field: 'token', kind: 'text', part: 'path' },
  manufacturer: { field: 'manufacturer', kind: 'text', part: 'path' },
  model: { field: 'model', kind: 'text', part: 'path' },
  serial: { field: 'serial', kind: 'text', part: 'path' },
  'slot-id': { field: 'slotId', kind: 'slot', part: 'path' },
  'slot-description': { field: 'slotDescription', kind: 'text', part: 'path' },
  'slot-manufacturer': { field: 'slotManufacturer', kind: 'text', part: 'path' },
  'library-manufacturer': { field: 'libraryManufacturer', kind: 'text', part: 'path' },
  'library-description': { field: 'libraryDescription', kind: 'text', part: 'path' },
  'library-version': { field: 'libraryVersion', kind: 'version', part: 'path' },
  object: { field: 'object', kind: 'text', part: 'path' },
  id: { field: 'id', kind: 'bytes', part: 'path' },
  type: { field: 'type', kind: 'type', part: 'path' },
  'pin-value': { field: 'pinValue', kind: 'text', part: 'query' },
  'pin-source': { field: 'pinSource', kind: 'text', part: 'query' },
  'module-path': { field: 'modulePath', kind: 'text', part: 'query' },
  'module-name': { kind: 'unsupported', part: 'query' },
};

const UNRESERVED = "A-Za-z0-9\\-._~";
// RFC 7512: pk11-res-avail, plus "&" in the path and "/", "?", "|" in the query.
const PATH_VALUE = new RegExp(`^(?:[${UNRESERVED}:\\[\\]@!$'()*+,=&]|%[0-9A-Fa-f]{2})*$`);
const QUERY_VALUE = new RegExp(`^(?:[${UNRESERVED}:\\[\\]@!$'()*+,=/?|]|%[0-9A-Fa-f]{2})*$`);
const UTF8 = new TextDecoder('utf-8', { fatal: true });

export { isPkcs11Uri };

/**
 * The URI as it may be shown: the value of `pin-value`, and of anything that is not a known
 * attribute (a misspelt `pin=`, a component without `=`), replaced by `***`, wherever it stands.
 */
export function redactPkcs11Uri(text: string): string {
  if (!isPkcs11Uri(text)) return '(not a pkcs11: URI)';
  const mask = (component: string): string => {
    const eq = component.indexOf('=');
    if (eq <= 0) return component === '' ? '' : '***';
    const name = component.slice(0, eq);
    return Object.hasOwn(ATTRIBUTES, name) && name !== 'pin-value' ? component : `${name}=***`;
  };
  const rest = text.slice('pkcs11:'.length);
  const q = rest.indexOf('?');
  const path = (q < 0 ? rest : rest.slice(0, q)).split(';').map(mask).join(';');
  return `${text.slice(0, 'pkcs11:'.length)}${path}${q < 0 ? '' : `?${rest.slice(q + 1).split('&').map(mask).join('&')}`}`;
}

function badUri(text: string, why: string): KeyError {
  return new KeyError('BAD_KEY_URI', `${why} in ${redactPkcs11Uri(text)}`, { detail: { uri: redactPkcs11Uri(text) } });
}

function percentDecode(value: string): Buffer {
  const out: number[] = [];
  for (let i = 0; i < value.length; i++) {
    if (value[i] === '%') {
      out.push(Number.parseInt(value.slice(i + 1, i + 3), 16));
      i += 2;
    } else {
      out.push(value.charCodeAt(i));
    }
  }
  return Buffer.from(out);
}

/**
 * Parse a `pkcs11:` URI strictly: every attribute known (RFC 7512's, less
 * `module-name` and vendor `x-` attributes), in its part (path or query), at
 * most once, with a value of allowed characters and valid percent escapes
 * (an empty value matches an empty attribute, as RFC 7512's `serial=`).
 * Errors (`BAD_KEY_URI`) name the attribute, never its value.
 */
export function parsePkcs11Uri(text: string): Pkcs11Uri {
  if (!isPkcs11Uri(text)) throw badUri(text, 'a PKCS#11 key URI starts with "pkcs11:"');
  const rest = text.slice('pkcs11:'.length);
  const q = rest.indexOf('?');
  const parts: Array<['path' | 'query', string[]]> = [
    ['path', (q < 0 ? rest : rest.slice(0, q)).split(';')],
    ['query', q < 0 ? [] : rest.slice(q + 1).split('&')],
  ];
  const uri: Pkcs11Uri = {};
  const seen = new Set<string>();
  for (const [part, components] of parts) {
    components.forEach((component, index) => {
      if (component === '' && part === 'path' && components.length === 1) return; // "pkcs11:" or "pkcs11:?…"
      const where = `${part} attribute ${index + 1}`;
      const eq = component.indexOf('=');
      if (component === '') throw badUri(text, `empty ${where} (a stray ${part === 'path' ? '";"' : '"?" or "&"'})`);
      if (eq <= 0) throw badUri(text, `${where} is not name=value`);
      const name = component.slice(0, eq);
      const raw = component.slice(eq + 1);
      const spec = Object.hasOwn(ATTRIBUTES, name) ? ATTRIBUTES[name] : undefined;
      const shownName = JSON.stringify(name.slice(0, 40));
      if (!spec) {
        throw badUri(text, `unknown ${part} attribute ${shownName} (known: ${Object.keys(ATTRIBUTES).filter((n) => ATTRIBUTES[n]?.part === part && ATTRIBUTES[n]?.kind !== 'unsupported').join(', ')})`);
      }
      if (spec.part !== part) throw badUri(text, `"${name}" belongs in the ${spec.part}${spec.part === 'query' ? ' (after "?", separated by "&")' : ' (before "?", separated by ";")'}`);
      if (spec.kind === 'unsupported') throw badUri(text, `"${name}" is not supported; name the module file with module-path=`);
      if (seen.has(name)) throw badUri(text, `"${name}" appears twice`);
      seen.add(name);
      if (!(part === 'path' ? PATH_VALUE : QUERY_VALUE).test(raw)) {
        throw badUri(text, `the value of "${name}" has a character that must be percent-encoded, or a bad percent escape`);
      }
      const bytes = percentDecode(raw);
      const asText = (): string => {
        try {
          return UTF8.decode(bytes);
        } catch {
          throw badUri(text, `the value of "${name}" is not UTF-8`);
        }
      };
      const target = uri as Record<string, unknown>;
      const field = spec.field as string;
      switch (spec.kind) {
        case 'bytes':
          target[field] = bytes;
          break;
        case 'slot': {
          const v = asText();
          if (!/^[0-9]{1,20}$/.test(v)) throw badUri(text, '"slot-id" must be a decimal number');
          target[field] = BigInt(v);
          break;
        }
        case 'version': {
          const m = /^([0-9]{1,3})(?:\.([0-9]{1,3}))?$/.exec(asText());
          if (!m) throw badUri(text, '"library-version" must be M or M.m');
          target[field] = { major: Number(m[1]), minor: Number(m[2] ?? 0) };
          break;
        }
        case 'type': {
          const v = asText();
          if (!['public', 'private', 'cert', 'secret-key', 'data'].includes(v)) throw badUri(text, '"type" must be public, private, cert, secret-key or data');
          target[field] = v;
          break;
        }
        default:
          target[field] = asText();
      }
    });
  }
  if (uri.pinValue !== undefined && uri.pinSource !== undefined) throw badUri(text, 'both pin-value and pin-source given; give one');
  if (uri.modulePath !== undefined && !isAbsolute(uri.modulePath)) throw badUri(text, '"module-path" must be an absolute path to the module file');
  return uri;
}

// ---------------------------------------------------------------------------------------------
// The pkcs11js binding, loaded on first use

/** The part of pkcs11js's PKCS11 class used here (typed locally: pkcs11js is optional). */
interface P11 {
  load(path: string): void;
  close(): void;
  C_Initialize(options?: { flags?: number }): void;
  C_Finalize(): void;
  C_GetInfo(): { manufacturerID: string; libraryDescription: string; libraryVersion: { major: number; minor: number } };
  C_GetSlotList(tokenPresent?: boolean): Buffer[];
  C_GetSlotInfo(slot: Buffer): { slotDescription: string; manufacturerID: string };
  C_GetTokenInfo(slot: Buffer): { label: string; manufacturerID: string; model: string; serialNumber: string; flags: number };
  C_OpenSession(slot: Buffer, flags: number): Buffer;
  C_Login(session: Buffer, userType: number, pin?: string): void;
  C_FindObjectsInit(session: Buffer, template: Array<{ type: number; value?: number | boolean | Buffer }>): void;
  C_FindObjects(session: Buffer, max: number): Buffer[];
  C_FindObjectsFinal(session: Buffer): void;
  C_GetAttributeValue(session: Buffer, object: Buffer, template: Array<{ type: number }>): Array<{ type: number; value?: Buffer }>;
  C_SignInit(session: Buffer, mechanism: { mechanism: number }, key: Buffer): void;
  C_SignAsync(session: Buffer, data: Buffer, out: Buffer): Promise<Buffer>;
}
interface Binding {
  PKCS11: new () => P11;
}

const PKCS11JS = 'pkcs11js';
let binding: Binding | undefined;

/** Require pkcs11js (or `specifier`, for tests), with an error that says how to get it. */
export function loadBinding(specifier = PKCS11JS): Binding {
  const req = createRequire(import.meta.url);
  try {
    req.resolve(specifier);
  } catch (cause) {
    throw new KeyError(
      'PKCS11_UNAVAILABLE',
      `pkcs11: keys need the optional dependency ${specifier}, which is not installed; run "npm install ${specifier}" (node-gyp builds it: python3, make and g++ are needed)`,
      { detail: { module: specifier }, cause },
    );
  }
  try {
    return req(specifier) as Binding;
  } catch (cause) {
    throw new KeyError('PKCS11_UNAVAILABLE', `${specifier} is installed but does not load (${(cause as Error).message.split('\n')[0]}); rebuild it with "npm rebuild ${specifier}"`, {
      detail: { module: specifier },
      cause,
    });
  }
}

// PKCS#11 constants (Cryptoki 2.40 / 3.0); numbers, so they do not depend on pkcs11js's exports.
const CKF_OS_LOCKING_OK = 0x2;
const CKF_SERIAL_SESSION = 0x4;
const CKF_LOGIN_REQUIRED = 0x4;
const CKF_PROTECTED_AUTHENTICATION_PATH = 0x100;
const CKF_TOKEN_INITIALIZED = 0x400;
const CKU_USER = 1;
const CKU_CONTEXT_SPECIFIC = 2;
const CKA_CLASS = 0x0;
const CKA_LABEL = 0x3;
const CKA_KEY_TYPE = 0x100;
const CKA_ID = 0x102;
const CKA_SIGN = 0x108;
const CKA_EC_PARAMS = 0x180;
const CKA_EC_POINT = 0x181;
const CKA_ALWAYS_AUTHENTICATE = 0x202;
const CKO_PUBLIC_KEY = 2;
const CKO_PRIVATE_KEY = 3;
const CKK_EC = 0x3;
const CKK_EC_EDWARDS = 0x40;
const CKM_ECDSA = 0x1041;
const CKM_EDDSA = 0x1057;
const CKR_CANT_LOCK = 0x0a;
const CKR_PIN_INCORRECT = 0xa0;
const CKR_PIN_INVALID = 0xa1;
const CKR_PIN_LEN_RANGE = 0xa2;
const CKR_PIN_LOCKED = 0xa4;
const CKR_USER_ALREADY_LOGGED_IN = 0x100;
const CKR_CRYPTOKI_ALREADY_INITIALIZED = 0x191;

function ckr(error: unknown): number | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'number' ? code : undefined;
}

/** A PKCS#11 error's name (CKR_…) or first line, for messages. */
function why(error: unknown): string {
  return error instanceof Error ? error.message.split('\n')[0] ?? error.name : String(error);
}

function failed(message: string, cause: unknown, detail: Record<string, unknown> = {}): KeyError {
  return new KeyError('PKCS11_FAILED', `${message}: ${why(cause)}`, { detail, cause });
}

// ---------------------------------------------------------------------------------------------
// Modules, tokens, sessions

/** Runs the functions given to it one at a time, in order. */
class Serial {
  #tail: Promise<unknown> = Promise.resolve();
  run<T>(fn: () => T | Promise<T>): Promise<T> {
    const next = this.#tail.then(fn);
    this.#tail = next.catch(() => undefined);
    return next;
  }
}

interface Module {
  readonly path: string;
  readonly p11: P11;
  /** We called C_Initialize (so we call C_Finalize). */
  readonly owned: boolean;
  /** Set when the module does not lock for several threads: every token of it shares this queue. */
  readonly shared: Serial | undefined;
  readonly tokens: Map<string, Token>;
  inflight: number;
  closed: boolean;
}

interface Token {
  readonly module: Module;
  readonly slot: Buffer;
  readonly label: string;
  readonly flags: number;
  readonly session: Buffer;
  readonly queue: Serial;
  loggedIn: boolean;
}

const modules = new Map<string, Module>();
let exitHook = false;

export function defaultModulePath(): string {
  return process.env['TUFOCI_PKCS11_MODULE'] || '/usr/lib/softhsm/libsofthsm2.so';
}

function openModule(path: string): Module {
  const open = modules.get(path);
  if (open) return open;
  binding ??= loadBinding();
  const p11 = new binding.PKCS11();
  try {
    p11.load(path);
  } catch (cause) {
    throw failed(`cannot load the PKCS#11 module ${path}`, cause, { module: path });
  }
  let owned = true;
  let locking = true;
  try {
    p11.C_Initialize({ flags: CKF_OS_LOCKING_OK });
  } catch (cause) {
    if (ckr(cause) === CKR_CRYPTOKI_ALREADY_INITIALIZED) {
      owned = false; // someone else in this process initialized it, with locking or not: one queue
      locking = false;
    } else if (ckr(cause) === CKR_CANT_LOCK) {
      locking = false;
      try {
        p11.C_Initialize();
      } catch (again) {
        throw failed(`cannot initialize the PKCS#11 module ${path}`, again, { module: path });
      }
    } else {
      throw failed(`cannot initialize the PKCS#11 module ${path}`, cause, { module: path });
    }
  }
  const m: Module = { path, p11, owned, shared: locking ? undefined : new Serial(), tokens: new Map(), inflight: 0, closed: false };
  modules.set(path, m);
  if (!exitHook) {
    exitHook = true;
    process.on('exit', closePkcs11);
  }
  return m;
}

/**
 * Finalize and unload every module this process opened (runs on process exit). Signers made
 * before stop working; keys loaded afterwards open the module again. A module with a signature
 * in flight is left alone (its thread is still in the module).
 */
export function closePkcs11(): void {
  for (const m of modules.values()) {
    m.closed = true;
    if (m.inflight > 0) continue;
    try {
      if (m.owned) m.p11.C_Finalize();
      m.p11.close();
    } catch {
      // finalizing is best effort: the process is going away or the module is already gone
    }
  }
  modules.clear();
}

const trimPadded = (s: string): string => s.replace(/[ \0]+$/, '');

function slotNumber(slot: Buffer): bigint {
  if (slot.length === 8) return endianness() === 'LE' ? slot.readBigUInt64LE() : slot.readBigUInt64BE();
  return BigInt(endianness() === 'LE' ? slot.readUInt32LE() : slot.readUInt32BE());
}

function selectToken(m: Module, uri: Pkcs11Uri, shown: string): Token {
  const { p11 } = m;
  if (uri.libraryManufacturer !== undefined || uri.libraryDescription !== undefined || uri.libraryVersion !== undefined) {
    const info = p11.C_GetInfo();
    const ok =
      (uri.libraryManufacturer === undefined || trimPadded(info.manufacturerID) === uri.libraryManufacturer) &&
      (uri.libraryDescription === undefined || trimPadded(info.libraryDescription) === uri.libraryDescription) &&
      (uri.libraryVersion === undefined || (info.libraryVersion.major === uri.libraryVersion.major && info.libraryVersion.minor === uri.libraryVersion.minor));
    if (!ok) {
      throw new KeyError('KEY_NOT_FOUND', `the PKCS#11 module ${m.path} is ${trimPadded(info.manufacturerID)} ${trimPadded(info.libraryDescription)} ${info.libraryVersion.major}.${info.libraryVersion.minor}, not the library ${shown} names`, {
        detail: { uri: shown, module: m.path },
      });
    }
  }
  const candidates: Array<{ slot: Buffer; label: string; serial: string; flags: number }> = [];
  const available: string[] = [];
  let slots: Buffer[];
  try {
    slots = p11.C_GetSlotList(true);
  } catch (cause) {
    throw failed(`cannot list the slots of ${m.path}`, cause, { module: m.path });
  }
  for (const slot of slots) {
    const info = p11.C_GetTokenInfo(slot);
    if ((info.flags & CKF_TOKEN_INITIALIZED) === 0) continue;
    const label = trimPadded(info.label);
    const serial = trimPadded(info.serialNumber);
    available.push(`"${label}" (serial ${serial})`);
    if (uri.token !== undefined && label !== uri.token) continue;
    if (uri.serial !== undefined && serial !== uri.serial) continue;
    if (uri.manufacturer !== undefined && trimPadded(info.manufacturerID) !== uri.manufacturer) continue;
    if (uri.model !== undefined && trimPadded(info.model) !== uri.model) continue;
    if (uri.slotId !== undefined && slotNumber(slot) !== uri.slotId) continue;
    if (uri.slotDescription !== undefined || uri.slotManufacturer !== undefined) {
      const s = p11.C_GetSlotInfo(slot);
      if (uri.slotDescription !== undefined && trimPadded(s.slotDescription) !== uri.slotDescription) continue;
      if (uri.slotManufacturer !== undefined && trimPadded(s.manufacturerID) !== uri.slotManufacturer) continue;
    }
    candidates.push({ slot, label, serial, flags: info.flags });
  }
  const detail = { uri: shown, module: m.path, tokens: available };
  if (candidates.length === 0) {
    throw new KeyError('KEY_NOT_FOUND', `no initialized token of ${m.path} matches ${shown}; tokens: ${available.join(', ') || 'none'}`, { detail });
  }
  if (candidates.length > 1) {
    throw new KeyError('KEY_AMBIGUOUS', `${candidates.length} tokens of ${m.path} match ${shown} (${candidates.map((c) => `"${c.label}" serial ${c.serial}`).join(', ')}); name one with token= or serial=`, { detail });
  }
  const c = candidates[0] as (typeof candidates)[number];
  const cacheKey = c.slot.toString('hex');
  const known = m.tokens.get(cacheKey);
  if (known) return known;
  let session: Buffer;
  try {
    session = p11.C_OpenSession(c.slot, CKF_SERIAL_SESSION);
  } catch (cause) {
    throw failed(`cannot open a session with token "${c.label}"`, cause, { uri: shown });
  }
  const token: Token = { module: m, slot: c.slot, label: c.label, flags: c.flags, session, queue: m.shared ?? new Serial(), loggedIn: false };
  m.tokens.set(cacheKey, token);
  return token;
}

type PinSource = () => string | undefined;

function pinSourceOf(uri: Pkcs11Uri): PinSource {
  return () => {
    if (uri.pinValue !== undefined) return uri.pinValue;
    if (uri.pinSource !== undefined) return readPinFile(uri.pinSource);
    return process.env['TUFOCI_PKCS11_PIN'] || undefined;
  };
}

function readPinFile(source: string): string {
  let path: string;
  if (/^file:/i.test(source)) {
    try {
      path = fileURLToPath(source);
    } catch (cause) {
      throw new KeyError('BAD_KEY_URI', `pin-source ${source} is not a usable file: URI`, { detail: { pinSource: source }, cause });
    }
  } else if (isAbsolute(source)) {
    path = source;
  } else {
    throw new KeyError('BAD_KEY_URI', `pin-source must be a file: URI or an absolute path, got ${source}`, { detail: { pinSource: source } });
  }
  let mode: number;
  try {
    mode = statSync(path).mode;
  } catch (cause) {
    throw new KeyError('KEY_FILE_MISSING', `cannot read PIN file ${path}`, { detail: { path }, cause });
  }
  if ((mode & 0o077) !== 0) {
    throw new KeyError('KEY_FILE_PERMISSIONS', `PIN file ${path} is accessible by group or others (mode ${(mode & 0o777).toString(8)}); run: chmod 600 ${path}`, {
      detail: { path, mode: (mode & 0o777).toString(8) },
    });
  }
  const pin = readFileSync(path, 'utf8').replace(/\r?\n$/, '');
  if (pin === '') throw new KeyError('PIN_REQUIRED', `PIN file ${path} is empty`, { detail: { path } });
  return pin;
}

function login(token: Token, pin: PinSource, shown: string, userType = CKU_USER): void {
  if (userType === CKU_USER && (token.loggedIn || (token.flags & CKF_LOGIN_REQUIRED) === 0)) return;
  const detail = { uri: shown, token: token.label };
  const value = pin();
  if (value === undefined && (token.flags & CKF_PROTECTED_AUTHENTICATION_PATH) === 0) {
    throw new KeyError('PIN_REQUIRED', `token "${token.label}" needs a PIN: add ?pin-source=file:/path/to/pin (or pin-value=) to ${shown}, or set TUFOCI_PKCS11_PIN`, { detail });
  }
  try {
    if (value === undefined) token.module.p11.C_Login(token.session, userType);
    else token.module.p11.C_Login(token.session, userType, value);
  } catch (cause) {
    const code = ckr(cause);
    if (code === CKR_USER_ALREADY_LOGGED_IN) {
      // logged in already (by this application, through another session): fine
    } else if (code === CKR_PIN_INCORRECT || code === CKR_PIN_INVALID || code === CKR_PIN_LEN_RANGE) {
      throw new KeyError('PIN_INCORRECT', `wrong PIN for token "${token.label}" (${why(cause)}); tokens lock after a few wrong PINs`, { detail, cause });
    } else if (code === CKR_PIN_LOCKED) {
      throw new KeyError('PIN_INCORRECT', `the user PIN of token "${token.label}" is locked (CKR_PIN_LOCKED); its security officer must reset it`, { detail, cause });
    } else {
      throw failed(`cannot log in to token "${token.label}"`, cause, detail);
    }
  }
  if (userType === CKU_USER) token.loggedIn = true;
}

function describeObject(uri: Pkcs11Uri): string {
  const parts: string[] = [];
  if (uri.object !== undefined) parts.push(`object=${JSON.stringify(uri.object)}`);
  if (uri.id !== undefined) parts.push(`id=${uri.id.toString('hex')}`);
  return parts.join(' ');
}

function findObjects(token: Token, template: Array<{ type: number; value?: number | boolean | Buffer }>): Buffer[] {
  const { p11 } = token.module;
  p11.C_FindObjectsInit(token.session, template);
  try {
    return p11.C_FindObjects(token.session, 2);
  } finally {
    p11.C_FindObjectsFinal(token.session);
  }
}

function attributes(token: Token, object: Buffer, types: number[]): Map<number, Buffer> {
  const out = new Map<number, Buffer>();
  for (const a of token.module.p11.C_GetAttributeValue(token.session, object, types.map((type) => ({ type })))) out.set(a.type, a.value ?? Buffer.alloc(0));
  return out;
}

function ulong(value: Buffer | undefined): number {
  if (!value || value.length === 0) return -1;
  if (value.length === 8) return Number(endianness() === 'LE' ? value.readBigUInt64LE() : value.readBigUInt64BE());
  return endianness() === 'LE' ? value.readUInt32LE() : value.readUInt32BE();
}

const hex = (s: string): Buffer => Buffer.from(s, 'hex');
const P256_PARAMS = hex('06082a8648ce3d030107');
const ED25519_PARAMS = [hex('06032b6570'), hex('130c656477617264733235353139')]; // OID 1.3.101.112, or PrintableString "edwards25519"
const P256_SPKI_PREFIX = hex('3059301306072a8648ce3d020106082a8648ce3d030107034200');
const ED25519_SPKI_PREFIX = hex('302a300506032b6570032100');

interface TokenKey {
  kind: 'ed25519' | 'ecdsa-p256';
  keyObject: KeyObject;
  json: TufKeyJson;
}

/** The public key of a CKA_EC_POINT: a DER OCTET STRING around the point (or, from some tokens, the bare point). */
function pointContent(point: Buffer, length: number): Buffer | undefined {
  if (point.length === length + 2 && point[0] === 0x04 && point[1] === length) return point.subarray(2);
  if (point.length === length) return point;
  return undefined;
}

function tokenPublicKey(keyType: number, params: Buffer, point: Buffer, shown: string): TokenKey {
  let spki: Buffer | undefined;
  let kind: TokenKey['kind'] | undefined;
  if (keyType === CKK_EC_EDWARDS && ED25519_PARAMS.some((p) => p.equals(params))) {
    const raw = pointContent(point, 32);
    if (raw) spki = Buffer.concat([ED25519_SPKI_PREFIX, raw]);
    kind = 'ed25519';
  } else if (keyType === CKK_EC && params.equals(P256_PARAMS)) {
    const raw = pointContent(point, 65);
    if (raw && raw[0] === 0x04) spki = Buffer.concat([P256_SPKI_PREFIX, raw]);
    kind = 'ecdsa-p256';
  } else {
    const what = keyType === CKK_EC ? 'an EC key on another curve than P-256' : keyType === CKK_EC_EDWARDS ? 'an Edwards key other than Ed25519' : `key type 0x${keyType.toString(16)}`;
    throw new KeyError('UNSUPPORTED_KEY', `${shown} is ${what}; tufoci signs with ed25519 or ECDSA P-256 keys`, { detail: { uri: shown, keyType } });
  }
  if (!spki) throw new KeyError('BAD_KEY', `the public key object of ${shown} has a CKA_EC_POINT tufoci cannot read (${point.length} bytes)`, { detail: { uri: shown } });
  let keyObject: KeyObject;
  try {
    keyObject = createPublicKey({ key: spki, format: 'der', type: 'spki' });
  } catch (cause) {
    throw new KeyError('BAD_KEY', `the public key object of ${shown} does not hold a valid ${kind} key`, { detail: { uri: shown }, cause });
  }
  return { kind, keyObject, json: tufKeyFromPublicKey(keyObject) };
}

function keyName(uri: Pkcs11Uri, shown: string): void {
  if (uri.object === undefined && uri.id === undefined) {
    throw new KeyError('BAD_KEY_URI', `${shown} names no key: add object=<label> and/or id=<percent-encoded id>`, { detail: { uri: shown } });
  }
}

function nameTemplate(uri: Pkcs11Uri, objectClass: number): Array<{ type: number; value: number | Buffer }> {
  const t: Array<{ type: number; value: number | Buffer }> = [{ type: CKA_CLASS, value: objectClass }];
  if (uri.object !== undefined) t.push({ type: CKA_LABEL, value: Buffer.from(uri.object, 'utf8') });
  if (uri.id !== undefined) t.push({ type: CKA_ID, value: uri.id });
  return t;
}

function exactlyOne(found: Buffer[], what: string, token: Token, uri: Pkcs11Uri, shown: string): Buffer {
  const detail = { uri: shown, token: token.label };
  if (found.length === 0) throw new KeyError('KEY_NOT_FOUND', `no ${what} ${describeObject(uri)} on token "${token.label}" (${shown})`, { detail });
  if (found.length > 1) {
    throw new KeyError('KEY_AMBIGUOUS', `more than one ${what} ${describeObject(uri)} on token "${token.label}" (${shown}); make the URI name exactly one (add id= or object=)`, { detail });
  }
  return found[0] as Buffer;
}

/** The public key object that pairs with a private key: the same CKA_ID (or, without one, the same label). */
function pairedPublic(token: Token, uri: Pkcs11Uri, privateId: Buffer, privateLabel: Buffer, shown: string): Buffer {
  const template: Array<{ type: number; value: number | Buffer }> = [{ type: CKA_CLASS, value: CKO_PUBLIC_KEY }];
  if (privateId.length > 0) template.push({ type: CKA_ID, value: privateId });
  else template.push({ type: CKA_LABEL, value: privateLabel });
  const found = findObjects(token, template);
  const detail = { uri: shown, token: token.label };
  const by = privateId.length > 0 ? `id ${privateId.toString('hex')}` : `label ${JSON.stringify(privateLabel.toString('utf8'))}`;
  if (found.length === 0) {
    throw new KeyError('KEY_NOT_FOUND', `token "${token.label}" has the private key ${describeObject(uri)} but no public key object with its ${by}; tufoci reads the public key (CKA_EC_POINT) from the token`, { detail });
  }
  if (found.length > 1) throw new KeyError('KEY_AMBIGUOUS', `token "${token.label}" has more than one public key object with ${by} (${shown})`, { detail });
  return found[0] as Buffer;
}

function readPublic(token: Token, object: Buffer, shown: string): TokenKey {
  const a = attributes(token, object, [CKA_KEY_TYPE, CKA_EC_PARAMS, CKA_EC_POINT]);
  return tokenPublicKey(ulong(a.get(CKA_KEY_TYPE)), a.get(CKA_EC_PARAMS) ?? Buffer.alloc(0), a.get(CKA_EC_POINT) ?? Buffer.alloc(0), shown);
}

async function tokenOf(uri: Pkcs11Uri, shown: string): Promise<Token> {
  const m = openModule(uri.modulePath ?? defaultModulePath());
  // Listing slots is a module call, not a session one: serialized only for a module without locking.
  return m.shared ? m.shared.run(() => selectToken(m, uri, shown)) : selectToken(m, uri, shown);
}

/** A key that would be useful in a message as `path` (its URI without the PIN). */
export class Pkcs11Signer implements Signer {
  readonly keyid: string;
  readonly public: TufKeyJson;
  /** The URI the key was loaded from, PIN redacted (what messages show, like a key file's path). */
  readonly path: string;
  readonly #token: Token;
  readonly #key: Buffer;
  readonly #kind: TokenKey['kind'];
  readonly #keyObject: KeyObject;
  readonly #perSignaturePin: PinSource | undefined;

  constructor(token: Token, key: Buffer, pub: TokenKey, shown: string, perSignaturePin: PinSource | undefined) {
    this.#token = token;
    this.#key = key;
    this.#kind = pub.kind;
    this.#keyObject = pub.keyObject;
    this.#perSignaturePin = perSignaturePin;
    this.public = pub.json;
    this.keyid = computeKeyId(pub.json);
    this.path = shown;
  }

  async sign(data: Uint8Array): Promise<TufSignature> {
    const message = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    const ecdsa = this.#kind === 'ecdsa-p256';
    const input = ecdsa ? createHash('sha256').update(message).digest() : message;
    const token = this.#token;
    const raw = await token.queue.run(async () => {
      const m = token.module;
      if (m.closed) throw new KeyError('PKCS11_FAILED', `the PKCS#11 module of ${this.path} was closed (closePkcs11); load the key again`, { detail: { uri: this.path } });
      m.inflight++;
      try {
        m.p11.C_SignInit(token.session, { mechanism: ecdsa ? CKM_ECDSA : CKM_EDDSA }, this.#key);
        if (this.#perSignaturePin) login(token, this.#perSignaturePin, this.path, CKU_CONTEXT_SPECIFIC);
        return await m.p11.C_SignAsync(token.session, input, Buffer.alloc(256));
      } catch (cause) {
        if (cause instanceof KeyError) throw cause;
        throw failed(`signing with ${this.path} failed`, cause, { uri: this.path });
      } finally {
        m.inflight--;
      }
    });
    const sig = ecdsa ? ecdsaDer(raw, this.path) : Buffer.from(raw);
    if (!cryptoVerify(ecdsa ? 'sha256' : null, message, this.#keyObject, sig)) {
      throw new KeyError('PKCS11_FAILED', `the signature token "${token.label}" made with ${this.path} does not verify with the public key object read from it (is that object the key's pair?)`, {
        detail: { uri: this.path, keyid: this.keyid },
      });
    }
    return { keyid: this.keyid, sig: sig.toString('hex') };
  }

  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return `Pkcs11Signer(${this.public.keytype} ${this.keyid.slice(0, 12)} ${this.path})`;
  }

  toJSON(): { keyid: string; public: TufKeyJson; uri: string } {
    return { keyid: this.keyid, public: this.public, uri: this.path };
  }
}

/** An ECDSA signature as PKCS#11 returns it (r‖s, 32 bytes each for P-256) in DER (SEQUENCE of two INTEGERs). */
export function ecdsaDer(raw: Uint8Array, shown = 'the token'): Buffer {
  if (raw.length !== 64) throw new KeyError('PKCS11_FAILED', `${shown} returned a ${raw.length}-byte ECDSA signature; P-256 gives 64 (r‖s)`, { detail: { length: raw.length } });
  const integer = (half: Uint8Array): Buffer => {
    let i = 0;
    while (i < half.length - 1 && half[i] === 0) i++;
    let v = Buffer.from(half.subarray(i));
    if ((v[0] as number) & 0x80) v = Buffer.concat([Buffer.from([0]), v]);
    return Buffer.concat([Buffer.from([0x02, v.length]), v]);
  };
  const body = Buffer.concat([integer(raw.subarray(0, 32)), integer(raw.subarray(32))]);
  return Buffer.concat([Buffer.from([0x30, body.length]), body]);
}

/** Open the private key a `pkcs11:` URI names as a Signer (logging in to its token once). */
export async function loadPkcs11Signer(ref: string): Promise<Pkcs11Signer> {
  const uri = parsePkcs11Uri(ref);
  const shown = redactPkcs11Uri(ref);
  keyName(uri, shown);
  if (uri.type !== undefined && uri.type !== 'private') throw new KeyError('BAD_KEY_URI', `${shown} names a ${uri.type} object; signing needs type=private (or no type)`, { detail: { uri: shown } });
  const pin = pinSourceOf(uri);
  const token = await tokenOf(uri, shown);
  return token.queue.run(() => {
    if (token.module.closed) throw new KeyError('PKCS11_FAILED', `the PKCS#11 module of ${shown} was closed`, { detail: { uri: shown } });
    login(token, pin, shown);
    try {
      const key = exactlyOne(findObjects(token, nameTemplate(uri, CKO_PRIVATE_KEY)), 'private key', token, uri, shown);
      const a = attributes(token, key, [CKA_KEY_TYPE, CKA_ID, CKA_LABEL, CKA_SIGN]);
      if (a.get(CKA_SIGN)?.[0] === 0) {
        throw new KeyError('BAD_KEY', `the private key ${shown} may not sign (CKA_SIGN is false)`, { detail: { uri: shown } });
      }
      const pub = readPublic(token, pairedPublic(token, uri, a.get(CKA_ID) ?? Buffer.alloc(0), a.get(CKA_LABEL) ?? Buffer.alloc(0), shown), shown);
      const privateType = ulong(a.get(CKA_KEY_TYPE));
      if (privateType !== (pub.kind === 'ed25519' ? CKK_EC_EDWARDS : CKK_EC)) {
        throw new KeyError('BAD_KEY', `the private key ${shown} and its public key object are of different key types`, { detail: { uri: shown } });
      }
      let always = false;
      try {
        always = (attributes(token, key, [CKA_ALWAYS_AUTHENTICATE]).get(CKA_ALWAYS_AUTHENTICATE)?.[0] ?? 0) !== 0;
      } catch {
        // a token without CKA_ALWAYS_AUTHENTICATE: the login above covers every signature
      }
      return new Pkcs11Signer(token, key, pub, shown, always ? pin : undefined);
    } catch (cause) {
      if (cause instanceof KeyError) throw cause;
      throw failed(`cannot read the key ${shown}`, cause, { uri: shown });
    }
  });
}

/** The public key of a `pkcs11:` URI (its public key object; a PIN only if the token hides it before login). */
export async function loadPkcs11PublicKey(ref: string): Promise<{ keyid: string; public: TufKeyJson }> {
  const uri = parsePkcs11Uri(ref);
  const shown = redactPkcs11Uri(ref);
  keyName(uri, shown);
  if (uri.type !== undefined && uri.type !== 'public' && uri.type !== 'private') {
    throw new KeyError('BAD_KEY_URI', `${shown} names a ${uri.type} object; a public key needs type=public (or no type)`, { detail: { uri: shown } });
  }
  const pin = pinSourceOf(uri);
  const token = await tokenOf(uri, shown);
  return token.queue.run(() => {
    try {
      let found = findObjects(token, nameTemplate(uri, CKO_PUBLIC_KEY));
      if (found.length === 0 && !token.loggedIn && (token.flags & CKF_LOGIN_REQUIRED) !== 0 && pin() !== undefined) {
        login(token, pin, shown); // some tokens show public objects only after login
        found = findObjects(token, nameTemplate(uri, CKO_PUBLIC_KEY));
      }
      const pub = readPublic(token, exactlyOne(found, 'public key', token, uri, shown), shown);
      return { keyid: computeKeyId(pub.json), public: pub.json };
    } catch (cause) {
      if (cause instanceof KeyError) throw cause;
      throw failed(`cannot read the public key ${shown}`, cause, { uri: shown });
    }
  });
}
