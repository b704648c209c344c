import { readdir } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { PolicyError, ROLES_DIR, loadPolicyDir, loadPolicyFile, parsePolicy, defaultPolicyPath } from '../../src/policy/policy.ts';

describe('roles/ policy files', () => {
  it('loads and validates every file in roles/', async () => {
    const names = (await readdir(ROLES_DIR)).filter((n) => n.endsWith('.json'));
    const policies = await loadPolicyDir();
    expect(policies).toHaveLength(names.length);
    expect(names.length).toBeGreaterThanOrEqual(2);
    for (const p of policies) {
      expect(p.roles.timestamp.expiresDefaultMinutes).toBeGreaterThan(p.refresh.timestampMarginMinutes);
      expect(p.keyTypes.length).toBeGreaterThan(0);
    }
  });

  it('names the file and the field of an error', async () => {
    const base = JSON.parse(JSON.stringify(await loadPolicyFile(defaultPolicyPath())));
    delete base.source;
    const cases: Array<[(p: Record<string, any>) => void, RegExp]> = [
      [(p) => (p['roles'].timestamp.expiresMaxMinutes = 'soon'), /roles\.timestamp\.expiresMaxMinutes: must be an integer/],
      [(p) => (p['roles'].root.expiresDefaultMinutes = p['roles'].root.expiresMaxMinutes + 1), /roles\.root\.expiresDefaultMinutes: must not exceed/],
      [(p) => (p['bins'].default = 3), /bins\.default: must be 0 or a power of two/],
      [(p) => (p['keyTypes'] = [{ keytype: 'rsa', scheme: 'rsassa-pss-sha256' }]), /keyTypes\[0\]: rsa\/rsassa-pss-sha256 is not a key type/],
      [(p) => (p['limits'].maxTargetPerRole = 5), /limits\.maxTargetPerRole: unknown field/],
      [(p) => delete p['roles'].ci, /roles\.ci: is required/],
      [(p) => (p['refresh'].timestampMarginMinutes = 100000), /refresh\.timestampMarginMinutes: must be below/],
    ];
    for (const [edit, message] of cases) {
      const p = structuredClone(base);
      edit(p);
      let error: unknown;
      try {
        parsePolicy(p, 'roles/broken.json');
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(PolicyError);
      expect((error as Error).message).toMatch(/^roles\/broken\.json: /);
      expect((error as Error).message).toMatch(message);
    }
  });

  it('refuses a file that is not JSON, naming it', async () => {
    await expect(loadPolicyFile(new URL('../../package-lock.json', import.meta.url).pathname.replace('package-lock.json', 'README.md'))).rejects.toMatchObject({
      code: 'BAD_POLICY',
    });
  });
});
