/**
 * The service's online keys (snapshot and timestamp), loaded through the async
 * Signer seam.
 *
 * Embedded default: `<dataDir>/keys/snapshot.key` and `timestamp.key`, PKCS#8
 * PEM with mode 0600, generated on first start when absent. An operator
 * supplies their own by placing key files there (or pointing
 * TUFOCI_SNAPSHOT_KEY / TUFOCI_TIMESTAMP_KEY at them); a KMS/HSM signer
 * implements `Signer` and is passed to createApp directly.
 */
import { mkdir } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { generateKeyFiles, loadSignerFile, type FileSigner } from '../keys/index.ts';

export interface OnlineKeyFiles {
  snapshot: FileSigner;
  timestamp: FileSigner;
  generated: string[];
}

export async function loadOrCreateOnlineKeys(dataDir: string, paths: { snapshot?: string; timestamp?: string } = {}): Promise<OnlineKeyFiles> {
  const dir = join(dataDir, 'keys');
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const generated: string[] = [];
  const load = async (role: 'snapshot' | 'timestamp'): Promise<FileSigner> => {
    const explicit = paths[role];
    if (explicit) return loadSignerFile(explicit);
    const base = join(dir, role);
    if (!existsSync(`${base}.key`)) {
      await generateKeyFiles(base, 'ed25519', `tufoci online ${role} key, generated on first start`);
      generated.push(`${base}.key`);
    }
    return loadSignerFile(`${base}.key`);
  };
  return { snapshot: await load('snapshot'), timestamp: await load('timestamp'), generated };
}
