/**
 * Root metadata as tufoci wrote it before its key ids followed the
 * specification: every key listed (and every signature named) under
 * `legacyKeyId` (SHA-256 of the RFC 8785 form), signed again by the root keys.
 * The oracle tests show independent implementations tell these ids apart.
 */
import { canonicalSignedBytes } from '../../src/engine/canonical.ts';
import { legacyKeyId, type Signer, type TufKeyJson } from '../../src/keys/index.ts';

export async function relistUnderLegacyIds(rootBytes: Uint8Array, rootSigners: readonly Signer[]): Promise<Uint8Array> {
  const md = JSON.parse(new TextDecoder().decode(rootBytes)) as {
    signed: { keys: Record<string, TufKeyJson>; roles: Record<string, { keyids: string[] }> };
    signatures: Array<{ keyid: string; sig: string }>;
  };
  const legacy = new Map(Object.entries(md.signed.keys).map(([id, k]) => [id, legacyKeyId(k)]));
  const renamed = (id: string): string => legacy.get(id) ?? id;
  md.signed.keys = Object.fromEntries(Object.entries(md.signed.keys).map(([id, k]) => [renamed(id), k]));
  for (const role of Object.values(md.signed.roles)) role.keyids = role.keyids.map(renamed);
  const bytes = canonicalSignedBytes(md.signed);
  md.signatures = await Promise.all(rootSigners.map(async (s) => ({ keyid: renamed(s.keyid), sig: (await s.sign(bytes)).sig })));
  return new TextEncoder().encode(JSON.stringify(md));
}
