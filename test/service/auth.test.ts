/** The admin token the embedded default generates can be passed on any command line. */
import { mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadTokens } from '../../src/service/auth.ts';

describe('the generated admin token', () => {
  it('is 64 hex characters, never one that reads as an option (a leading -), written 0600 and read back', async () => {
    for (let i = 0; i < 64; i++) {
      const dataDir = mkdtempSync(join(tmpdir(), 'tufoci-token-'));
      const first = await loadTokens({ dataDir });
      const written = readFileSync(join(dataDir, 'admin-token'), 'utf8').trim();
      expect(written).toMatch(/^[0-9a-f]{64}$/);
      expect(statSync(join(dataDir, 'admin-token')).mode & 0o777).toBe(0o600);
      expect(first.generatedAdminToken).toBe(join(dataDir, 'admin-token'));
      const again = await loadTokens({ dataDir });
      expect(again.generatedAdminToken).toBeUndefined();
      expect(again.tokens[0]).toMatchObject({ name: 'admin' });
    }
  });
});
