/**
 * Child process of test/support/softhsm.ts: generates key pairs inside a
 * SoftHSM2 token with pkcs11js (C_GenerateKeyPair), so the key material never
 * exists outside the token, and prints each public key's CKA_EC_POINT as the
 * token returns it. Run as `node softhsm-keygen.ts '<json request>'` with
 * SOFTHSM2_CONF set; a child process so that the test process never shares the
 * module's state (C_Initialize / C_Finalize) with the code under test.
 *
 * Request: { module, token, pin, keys: [{ label, id (hex), type, without?: 'public', mismatch?: true }] }
 * - without 'public': the public key object is destroyed afterwards.
 * - mismatch: the key's public object is replaced by the public object of another key pair.
 */
import { createRequire } from 'node:module';

interface Spec {
  label: string;
  id: string;
  type: 'ed25519' | 'ecdsa-p256' | 'ecdsa-p384';
  without?: 'public';
  mismatch?: boolean;
}
interface Request {
  module: string;
  token: string;
  pin: string;
  keys: Spec[];
}

type Attr = { type: number; value?: number | boolean | string | Buffer };
interface P11 {
  load(path: string): void;
  C_Initialize(): void;
  C_Finalize(): void;
  close(): void;
  C_GetSlotList(present: boolean): Buffer[];
  C_GetTokenInfo(slot: Buffer): { label: string };
  C_OpenSession(slot: Buffer, flags: number): Buffer;
  C_Login(session: Buffer, user: number, pin: string): void;
  C_GenerateKeyPair(session: Buffer, mech: { mechanism: number }, pub: Attr[], priv: Attr[]): { publicKey: Buffer; privateKey: Buffer };
  C_GetAttributeValue(session: Buffer, obj: Buffer, t: Attr[]): Array<{ type: number; value: Buffer }>;
  C_SetAttributeValue(session: Buffer, obj: Buffer, t: Attr[]): void;
  C_DestroyObject(session: Buffer, obj: Buffer): void;
}

const req = JSON.parse(process.argv[2] as string) as Request;
const { PKCS11 } = createRequire(import.meta.url)('pkcs11js') as { PKCS11: new () => P11 };

const CKA_TOKEN = 0x1, CKA_PRIVATE = 0x2, CKA_LABEL = 0x3, CKA_ID = 0x102, CKA_SENSITIVE = 0x103;
const CKA_SIGN = 0x108, CKA_VERIFY = 0x10a, CKA_EXTRACTABLE = 0x162, CKA_EC_PARAMS = 0x180, CKA_EC_POINT = 0x181;
const CKM_EC_KEY_PAIR_GEN = 0x1040, CKM_EC_EDWARDS_KEY_PAIR_GEN = 0x1055;
const CKF_RW_SESSION = 0x2, CKF_SERIAL_SESSION = 0x4, CKU_USER = 1;

const PARAMS: Record<Spec['type'], { mech: number; params: string }> = {
  ed25519: { mech: CKM_EC_EDWARDS_KEY_PAIR_GEN, params: '06032b6570' },
  'ecdsa-p256': { mech: CKM_EC_KEY_PAIR_GEN, params: '06082a8648ce3d030107' },
  'ecdsa-p384': { mech: CKM_EC_KEY_PAIR_GEN, params: '06052b81040022' },
};

const p11 = new PKCS11();
p11.load(req.module);
p11.C_Initialize();
try {
  const slot = p11.C_GetSlotList(true).find((s) => p11.C_GetTokenInfo(s).label.trimEnd() === req.token);
  if (!slot) throw new Error(`no token ${req.token}`);
  const session = p11.C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION);
  p11.C_Login(session, CKU_USER, req.pin);
  const generate = (label: string, id: Buffer, type: Spec['type']) => {
    const { mech, params } = PARAMS[type];
    const common = [{ type: CKA_TOKEN, value: true }, { type: CKA_LABEL, value: Buffer.from(label) }, { type: CKA_ID, value: id }];
    return p11.C_GenerateKeyPair(
      session,
      { mechanism: mech },
      [...common, { type: CKA_PRIVATE, value: false }, { type: CKA_VERIFY, value: true }, { type: CKA_EC_PARAMS, value: Buffer.from(params, 'hex') }],
      [...common, { type: CKA_PRIVATE, value: true }, { type: CKA_SENSITIVE, value: true }, { type: CKA_EXTRACTABLE, value: false }, { type: CKA_SIGN, value: true }],
    );
  };
  const out: Array<{ label: string; id: string; type: string; point: string }> = [];
  for (const k of req.keys) {
    const id = Buffer.from(k.id, 'hex');
    const pair = generate(k.label, id, k.type);
    let pub = pair.publicKey;
    if (k.mismatch) {
      const other = generate(`${k.label}-other`, Buffer.from(`${k.id}ff`, 'hex'), k.type);
      p11.C_DestroyObject(session, pair.publicKey);
      p11.C_DestroyObject(session, other.privateKey);
      p11.C_SetAttributeValue(session, other.publicKey, [{ type: CKA_LABEL, value: Buffer.from(k.label) }, { type: CKA_ID, value: id }]);
      pub = other.publicKey;
    }
    const point = (p11.C_GetAttributeValue(session, pub, [{ type: CKA_EC_POINT }])[0] as { value: Buffer }).value.toString('hex');
    if (k.without === 'public') p11.C_DestroyObject(session, pub);
    out.push({ label: k.label, id: k.id, type: k.type, point });
  }
  process.stdout.write(`${JSON.stringify(out)}\n`);
} finally {
  p11.C_Finalize();
  p11.close();
}
