/**
 * PKCS#11 keys (src/keys/pkcs11.ts) against a real SoftHSM2 token made in a
 * temporary directory: pkcs11: URI parsing (RFC 7512), ed25519 and ECDSA P-256
 * signers whose signatures node:crypto and tuf-js's models verify over the
 * token's own public key, key ids equal to those of the same key as a file,
 * serialized signing, clear refusals that never show a PIN, and the lazy load
 * of pkcs11js.
 */
import { execFile } from 'node:child_process';
import { createPublicKey, generateKeyPairSync, sign as cryptoSign, verify as cryptoVerify, type KeyObject } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify, inspect } from 'node:util';
import { Metadata, MetadataKind } from '@tufjs/models';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildRoot, buildTargets, isoExpiry, signMetadata } from '../../src/engine/index.ts';
import { computeKeyId, generateKeyFiles, loadPublicKey, loadPublicKeyFile, loadSigner, tufKeyFromPublicKey, type KeySigner } from '../../src/keys/index.ts';
import { closePkcs11, ecdsaDer, loadBinding, parsePkcs11Uri, redactPkcs11Uri } from '../../src/keys/pkcs11.ts';
import { SOFTHSM_MODULE, createSoftHsm, jwkOfPoint, type SoftHsm, type TokenKey } from '../support/softhsm.ts';

const run = promisify(execFile);
const PIN_A = '271828';
const PIN_B = '314159';
const WRONG = '999111';
const SECRETS = [PIN_A, PIN_B, WRONG];

let hsm: SoftHsm;
let pinA: string;
const keys = new Map<string, TokenKey>();
const uriA = (object: string, query = `pin-source=file:${pinA}`): string => `pkcs11:token=tufoci-a;object=${object}?${query}`;

/** The public key the token generated, from its CKA_EC_POINT by way of JWK (not through pkcs11.ts). */
function expectedKey(name: string): KeyObject {
  return createPublicKey({ key: jwkOfPoint(keys.get(name) as TokenKey), format: 'jwk' });
}

/** The KeyError a load is refused with; fails unless refused, and checks no PIN shows in it. */
async function refusal(p: Promise<unknown>): Promise<{ code: string; message: string }> {
  const e = (await p.then(
    () => expect.unreachable('expected a refusal'),
    (err: unknown) => err,
  )) as { code: string; message: string; detail: unknown };
  for (const secret of SECRETS) {
    expect(e.message).not.toContain(secret);
    expect(JSON.stringify(e.detail ?? {})).not.toContain(secret);
  }
  return e;
}

beforeAll(async () => {
  hsm = createSoftHsm();
  hsm.initToken('tufoci-a', PIN_A);
  hsm.initToken('tufoci-b', PIN_B);
  const a = await hsm.generate('tufoci-a', PIN_A, [
    { label: 'ed', id: '01', type: 'ed25519' },
    { label: 'ec', id: '02', type: 'ecdsa-p256' },
    { label: 'dup', id: '03', type: 'ed25519' },
    { label: 'dup', id: '04', type: 'ed25519' },
    { label: 'p384', id: '05', type: 'ecdsa-p384' },
    { label: 'nopub', id: '06', type: 'ed25519', without: 'public' },
    { label: 'mismatch', id: '07', type: 'ecdsa-p256', mismatch: true },
    { label: 'twin', id: '08', type: 'ed25519' },
  ]);
  const b = await hsm.generate('tufoci-b', PIN_B, [{ label: 'twin', id: '08', type: 'ed25519' }]);
  for (const k of a) keys.set(k.label, k);
  keys.set('b/twin', b[0] as TokenKey);
  pinA = hsm.pinFile('a.pin', PIN_A);
  // This process's SoftHSM reads its tokens from here (vitest runs each file in its own process).
  process.env['SOFTHSM2_CONF'] = hsm.conf;
  delete process.env['TUFOCI_PKCS11_PIN'];
  delete process.env['TUFOCI_PKCS11_MODULE'];
});
afterAll(() => {
  closePkcs11();
  hsm?.remove();
});

describe('pkcs11: URIs (RFC 7512)', () => {
  it('parses path and query attributes, percent-decoding text as UTF-8 and id as bytes', () => {
    expect(parsePkcs11Uri('pkcs11:token=My%20Token;object=root%2Fkey;id=%01%02%ff?pin-value=12%2634&module-path=/usr/lib/softhsm/libsofthsm2.so')).toEqual({
      token: 'My Token',
      object: 'root/key',
      id: Buffer.from([1, 2, 0xff]),
      pinValue: '12&34',
      modulePath: '/usr/lib/softhsm/libsofthsm2.so',
    });
    // RFC 7512's own example (section 3.3), an empty serial included.
    expect(
      parsePkcs11Uri('pkcs11:token=The%20Software%20PKCS%2311%20Softtoken;manufacturer=Snake%20Oil,%20Inc.;model=1.0;object=my-certificate;type=cert;id=%69%95%3E%5C%F4%BD%EC%91;serial=?pin-source=file:/etc/token_pin'),
    ).toEqual({
      token: 'The Software PKCS#11 Softtoken',
      manufacturer: 'Snake Oil, Inc.',
      model: '1.0',
      object: 'my-certificate',
      type: 'cert',
      id: Buffer.from('69953e5cf4bdec91', 'hex'),
      serial: '',
      pinSource: 'file:/etc/token_pin',
    });
    expect(parsePkcs11Uri('PKCS11:object=%C3%A9t%C3%A9;slot-id=5;library-version=2.6;type=private;slot-description=a&b')).toEqual({
      object: 'été',
      slotId: 5n,
      libraryVersion: { major: 2, minor: 6 },
      type: 'private',
      slotDescription: 'a&b',
    });
    expect(parsePkcs11Uri('pkcs11:')).toEqual({});
    expect(parsePkcs11Uri('pkcs11:?pin-source=/run/pin')).toEqual({ pinSource: '/run/pin' });
  });

  it('refuses unknown, repeated, misplaced, badly encoded or contradictory attributes, naming the attribute and never a PIN', () => {
    const cases: Array<[string, RegExp]> = [
      ['root.key', /starts with "pkcs11:"/],
      ['pkcs11:tokn=x;object=k', /unknown path attribute "tokn" \(known: token, manufacturer/],
      ['pkcs11:object=k?pin=271828', /unknown query attribute "pin"/],
      ['pkcs11:token=a;token=b;object=k', /"token" appears twice/],
      ['pkcs11:object=a/b', /value of "object" has a character that must be percent-encoded/],
      ['pkcs11:object=%zz', /bad percent escape/],
      ['pkcs11:object=ab%4', /bad percent escape/],
      ['pkcs11:object=%ff%fe', /value of "object" is not UTF-8/],
      ['pkcs11:object=k?pin-value=271828&pin-source=file:/p', /both pin-value and pin-source/],
      ['pkcs11:pin-value=271828;object=k', /"pin-value" belongs in the query/],
      ['pkcs11:object=k?token=a', /"token" belongs in the path/],
      ['pkcs11:object=k?module-path=lib/softhsm2.so', /"module-path" must be an absolute path/],
      ['pkcs11:object=k?module-name=softhsm2', /"module-name" is not supported; name the module file with module-path=/],
      ['pkcs11:object=k;;id=%01', /empty path attribute 2/],
      ['pkcs11:object=k?', /empty query attribute 1/],
      ['pkcs11:object', /path attribute 1 is not name=value/],
      ['pkcs11:slot-id=abc', /"slot-id" must be a decimal number/],
      ['pkcs11:type=secret', /"type" must be public, private/],
      ['pkcs11:object=k?pin-value=27 1828', /value of "pin-value" has a character/],
    ];
    for (const [uri, message] of cases) {
      let error: { code?: string; message: string; detail?: unknown } | undefined;
      try {
        parsePkcs11Uri(uri);
      } catch (e) {
        error = e as typeof error;
      }
      expect(error, uri).toBeDefined();
      expect(error?.code, uri).toBe('BAD_KEY_URI');
      expect(error?.message, uri).toMatch(message);
      expect(error?.message, uri).not.toMatch(/271828|27 1828/);
      expect(JSON.stringify(error?.detail), uri).not.toMatch(/271828|27 1828/);
    }
  });

  it('shows a URI with its pin-value replaced', () => {
    expect(redactPkcs11Uri('pkcs11:token=a;object=k?pin-value=271828&module-path=/m.so')).toBe('pkcs11:token=a;object=k?pin-value=***&module-path=/m.so');
    expect(redactPkcs11Uri('pkcs11:token=a;pin-value=271828;object=k')).toBe('pkcs11:token=a;pin-value=***;object=k');
    expect(redactPkcs11Uri('pkcs11:object=k;271828?pin=271828&PIN-VALUE=271828&module-path=/m.so')).toBe('pkcs11:object=k;***?pin=***&PIN-VALUE=***&module-path=/m.so');
    expect(redactPkcs11Uri('271828.key')).toBe('(not a pkcs11: URI)');
  });
});

describe('PKCS#11 signers on SoftHSM2', () => {
  it('ed25519 and ECDSA P-256 keys in the token sign; node:crypto verifies every signature over the public key the token generated, and the key id is the key file’s', async () => {
    const data = new TextEncoder().encode('{"signed":"canonical bytes"}');
    const dir = mkdtempSync(join(tmpdir(), 'tufoci-pkcs11-pub-'));
    for (const [name, keytype] of [['ed', 'ed25519'], ['ec', 'ecdsa']] as const) {
      const signer = await loadSigner(uriA(name));
      const expected = tufKeyFromPublicKey(expectedKey(name));
      expect(signer.public).toEqual(expected);
      expect(signer.public.keytype).toBe(keytype);
      expect(signer.keyid).toBe(computeKeyId(expected));
      // The same public key as a .pub file gives the same key id, and so does the URI without a PIN.
      writeFileSync(join(dir, `${name}.pub`), JSON.stringify(expected));
      expect((await loadPublicKeyFile(join(dir, `${name}.pub`))).keyid).toBe(signer.keyid);
      expect(await loadPublicKey(`pkcs11:token=tufoci-a;object=${name}`)).toEqual({ keyid: signer.keyid, public: expected });

      const { keyid, sig } = await signer.sign(data);
      expect(keyid).toBe(signer.keyid);
      const bytes = Buffer.from(sig, 'hex');
      const hash = name === 'ec' ? 'sha256' : null;
      expect(cryptoVerify(hash, data, expectedKey(name), bytes)).toBe(true);
      expect(cryptoVerify(hash, new TextEncoder().encode('{"signed":"other bytes"}'), expectedKey(name), bytes)).toBe(false);
      if (name === 'ec') {
        expect(bytes[0]).toBe(0x30); // DER, as TUF's ecdsa-sha2-nistp256 and key-file signers write it
        expect(cryptoVerify('sha256', data, { key: expectedKey(name), dsaEncoding: 'der' }, bytes)).toBe(true);
      } else {
        expect(bytes).toHaveLength(64);
      }
      expect(inspect(signer)).toBe(`Pkcs11Signer(${keytype} ${signer.keyid.slice(0, 12)} pkcs11:token=tufoci-a;object=${name}?pin-source=file:${pinA})`);
    }
  });

  it("metadata signed in the token verifies with tuf-js's models: a self-signed root (ed25519) and targets (P-256) under it", async () => {
    const root = await loadSigner(uriA('ed'));
    const targets = await loadSigner(uriA('ec'));
    const expires = isoExpiry(Date.now() + 86_400_000);
    const rootBytes = await signMetadata(
      buildRoot({ version: 1, expires, root: { keys: [root.public], threshold: 1 }, targets: { keys: [targets.public], threshold: 1 }, snapshot: { keys: [root.public], threshold: 1 }, timestamp: { keys: [root.public], threshold: 1 } }),
      [root],
    );
    const rootMd = Metadata.fromJSON(MetadataKind.Root, JSON.parse(new TextDecoder().decode(rootBytes)));
    expect(rootMd.signatures[root.keyid]).toBeDefined();
    rootMd.verifyDelegate('root', rootMd);
    const targetsMd = Metadata.fromJSON(MetadataKind.Targets, JSON.parse(new TextDecoder().decode(await signMetadata(buildTargets({ version: 1, expires }), [targets]))));
    rootMd.verifyDelegate('targets', targetsMd);
    // …and a targets file signed by the wrong token key does not.
    const wrong = Metadata.fromJSON(MetadataKind.Targets, JSON.parse(new TextDecoder().decode(await signMetadata(buildTargets({ version: 1, expires }), [root]))));
    expect(() => rootMd.verifyDelegate('targets', wrong)).toThrow();
  });

  it('signs concurrently through one session: 40 parallel signatures over two keys of one token all verify', async () => {
    const ed = await loadSigner(uriA('ed'));
    const ec = await loadSigner(uriA('ec'));
    const jobs = Array.from({ length: 40 }, (_, i) => ({ signer: i % 2 ? ec : ed, data: new TextEncoder().encode(`message ${i}`) }));
    const sigs = await Promise.all(jobs.map((j) => j.signer.sign(j.data)));
    sigs.forEach((s, i) => {
      const job = jobs[i] as (typeof jobs)[number];
      const name = job.signer === ec ? 'ec' : 'ed';
      expect(cryptoVerify(name === 'ec' ? 'sha256' : null, job.data, expectedKey(name), Buffer.from(s.sig, 'hex')), `signature ${i}`).toBe(true);
    });
  });

  it('ecdsaDer: r‖s becomes the DER node:crypto writes (leading zeros dropped, a zero byte before a high bit)', () => {
    const r = Buffer.alloc(32);
    r[31] = 1;
    const s = Buffer.alloc(32, 0x80);
    expect(ecdsaDer(Buffer.concat([r, s])).toString('hex')).toBe(`3026020101022100${'80'.repeat(32)}`);
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    for (let i = 0; i < 300; i++) {
      const data = Buffer.from(`m${i}`);
      const raw = cryptoSign('sha256', data, { key: privateKey, dsaEncoding: 'ieee-p1363' });
      const der = ecdsaDer(raw);
      expect(cryptoVerify('sha256', data, publicKey, der)).toBe(true);
      // Same signature, both encodings: DER round-trips to the raw form Node reads as ieee-p1363.
      expect(cryptoVerify('sha256', data, { key: publicKey, dsaEncoding: 'ieee-p1363' }, raw)).toBe(true);
    }
    expect(() => ecdsaDer(Buffer.alloc(63))).toThrow(/63-byte ECDSA signature/);
  });

  it('refuses with the reason: no such key, one label for two keys, a key on two tokens, another curve, no public object, a public object of another key, a type=public URI, a wrong module', async () => {
    expect(await refusal(loadSigner(uriA('nope')))).toMatchObject({ code: 'KEY_NOT_FOUND', message: expect.stringContaining('no private key object="nope" on token "tufoci-a"') });
    const noToken = await refusal(loadSigner('pkcs11:token=nope;object=ed'));
    expect(noToken).toMatchObject({ code: 'KEY_NOT_FOUND', message: expect.stringContaining(`no initialized token of ${SOFTHSM_MODULE} matches pkcs11:token=nope;object=ed; tokens: `) });
    expect(noToken.message).toMatch(/"tufoci-a" \(serial [0-9a-f]{16}\)/);
    expect(noToken.message).toMatch(/"tufoci-b" \(serial [0-9a-f]{16}\)/);
    expect(await refusal(loadSigner(uriA('dup')))).toMatchObject({ code: 'KEY_AMBIGUOUS', message: expect.stringContaining('more than one private key object="dup"') });
    expect((await loadSigner(uriA('dup', `pin-source=file:${pinA}`).replace('object=dup', 'object=dup;id=%04'))).keyid).toMatch(/^[0-9a-f]{64}$/);
    expect(await refusal(loadSigner(`pkcs11:object=twin?pin-value=${PIN_A}`))).toMatchObject({ code: 'KEY_AMBIGUOUS', message: expect.stringContaining('2 tokens of') });
    expect(await refusal(loadSigner(uriA('p384')))).toMatchObject({ code: 'UNSUPPORTED_KEY', message: expect.stringContaining('an EC key on another curve than P-256') });
    expect(await refusal(loadSigner(uriA('nopub')))).toMatchObject({ code: 'KEY_NOT_FOUND', message: expect.stringContaining('no public key object with its id 06') });
    const mismatched = await loadSigner(uriA('mismatch'));
    expect(await refusal(mismatched.sign(new Uint8Array([1, 2, 3])))).toMatchObject({ code: 'PKCS11_FAILED', message: expect.stringContaining('does not verify with the public key object read from it') });
    expect(await refusal(loadSigner('pkcs11:token=tufoci-a;object=ed;type=public'))).toMatchObject({ code: 'BAD_KEY_URI', message: expect.stringContaining('signing needs type=private') });
    expect(await refusal(loadSigner('pkcs11:token=tufoci-a'))).toMatchObject({ code: 'BAD_KEY_URI', message: expect.stringContaining('names no key') });
    expect(await refusal(loadSigner('pkcs11:object=ed?module-path=/nonexistent/libnothing.so'))).toMatchObject({ code: 'PKCS11_FAILED', message: expect.stringContaining('cannot load the PKCS#11 module /nonexistent/libnothing.so') });
  });

  it('token B: no PIN, a PIN file others can read and a wrong PIN are refused without showing the PIN; the right PIN (TUFOCI_PKCS11_PIN) logs in', async () => {
    const uri = 'pkcs11:token=tufoci-b;object=twin';
    expect(await refusal(loadSigner(uri))).toMatchObject({ code: 'PIN_REQUIRED', message: expect.stringContaining('token "tufoci-b" needs a PIN: add ?pin-source=') });
    const open = hsm.pinFile('b-open.pin', PIN_B, 0o644);
    expect(await refusal(loadSigner(`${uri}?pin-source=file:${open}`))).toMatchObject({ code: 'KEY_FILE_PERMISSIONS', message: expect.stringContaining(`chmod 600 ${open}`) });
    expect(await refusal(loadSigner(`${uri}?pin-value=${WRONG}`))).toMatchObject({ code: 'PIN_INCORRECT', message: expect.stringContaining('wrong PIN for token "tufoci-b" (CKR_PIN_INCORRECT)') });
    process.env['TUFOCI_PKCS11_PIN'] = PIN_B;
    try {
      const signer: KeySigner = await loadSigner(uri);
      expect(signer.keyid).toBe(computeKeyId(tufKeyFromPublicKey(expectedKey('b/twin'))));
      expect(signer.path).toBe(uri);
    } finally {
      delete process.env['TUFOCI_PKCS11_PIN'];
    }
    // A signer never serializes anything secret.
    const withPin = await loadSigner(`${uri}?pin-value=${PIN_B}`);
    expect(JSON.stringify(withPin)).not.toContain(PIN_B);
    expect(inspect(withPin)).not.toContain(PIN_B);
    expect(withPin.path).toBe(`${uri}?pin-value=***`);
  });

  it('closePkcs11 finalizes the module: a signer made before fails clearly, a key loaded afterwards signs', async () => {
    const before = await loadSigner(uriA('ed'));
    closePkcs11();
    expect(await refusal(before.sign(new Uint8Array([1])))).toMatchObject({ code: 'PKCS11_FAILED', message: expect.stringContaining('was closed') });
    const after = await loadSigner(uriA('ed'));
    const sig = await after.sign(new Uint8Array([1]));
    expect(cryptoVerify(null, new Uint8Array([1]), expectedKey('ed'), Buffer.from(sig.sig, 'hex'))).toBe(true);
  });
});

describe('loading pkcs11js', () => {
  it('says how to install it when it is missing', () => {
    expect(() => loadBinding('pkcs11js-not-installed')).toThrow(expect.objectContaining({ code: 'PKCS11_UNAVAILABLE', message: expect.stringContaining('npm install pkcs11js-not-installed') }));
  });

  it('a key file loads neither pkcs11.ts nor pkcs11js; the first pkcs11: key loads both, and the process exits by itself after signing', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tufoci-pkcs11-lazy-'));
    await generateKeyFiles(join(dir, 'file'));
    const script = `
      import { registerHooks } from 'node:module';
      const seen = [];
      registerHooks({ resolve(specifier, context, next) { const r = next(specifier, context); seen.push(r.url); return r; } });
      const loaded = () => seen.some((u) => /pkcs11/.test(u));
      const { loadSigner } = await import(${JSON.stringify(new URL('../../src/keys/key-files.ts', import.meta.url).href)});
      const file = await loadSigner(${JSON.stringify(join(dir, 'file.key'))});
      await file.sign(new Uint8Array([1]));
      const afterFile = loaded();
      const token = await loadSigner(${JSON.stringify(uriA('ed'))});
      await token.sign(new Uint8Array([1]));
      console.log(JSON.stringify({ afterFile, afterToken: loaded(), pkcs11js: seen.filter((u) => /pkcs11js/.test(u)).length > 0 }));
    `;
    const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], { env: { ...process.env, SOFTHSM2_CONF: hsm.conf }, timeout: 30_000 });
    expect(JSON.parse(stdout)).toEqual({ afterFile: false, afterToken: true, pkcs11js: true });
  });

  it('the default module is TUFOCI_PKCS11_MODULE, else Debian’s SoftHSM2', async () => {
    const { defaultModulePath } = await import('../../src/keys/pkcs11.ts');
    expect(defaultModulePath()).toBe(SOFTHSM_MODULE);
    process.env['TUFOCI_PKCS11_MODULE'] = '/opt/vendor/libp11.so';
    try {
      expect(defaultModulePath()).toBe('/opt/vendor/libp11.so');
    } finally {
      delete process.env['TUFOCI_PKCS11_MODULE'];
    }
  });
});
