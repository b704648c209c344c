/** precheckMetadata (sliced, yielding) refuses what parseMetadata refuses before its parse, with the same code. */
import { describe, expect, it } from 'vitest';
import { EngineError } from '../../src/engine/errors.ts';
import { parseMetadata, precheckMetadata } from '../../src/engine/parse.ts';
import { SimRepo, image } from '../support/engine-repo.ts';

function syncCode(bytes: Uint8Array): string {
  try {
    parseMetadata('targets', bytes, 4 * 1024 * 1024, 'ci');
    return 'OK';
  } catch (e) {
    return e instanceof EngineError ? e.code : String(e);
  }
}

describe('precheckMetadata', () => {
  it('agrees with parseMetadata on the checks before the parse, and lets a valid file through', async () => {
    const repo = await new SimRepo().init();
    const valid = new TextDecoder().decode(await repo.targetsBytes({ version: 2, targets: { v1: image(1) } }, [repo.ciKey]));
    const many = `{${Array.from({ length: 100_001 }, (_, k) => `"t${k}":{}`).join(',')}}`;
    const cases: Array<[string, string]> = [
      [valid, 'OK'],
      [valid.replace('"version":2', '"version":2.0'), 'NOT_INTEGER'],
      [valid.replace('"signed":{', '"signed":{"version":1,'), 'DUPLICATE_KEY'],
      [valid.replace(/"expires":"[^"]*"/, '"expires":"2027-02-30T00:00:00Z"'), 'BAD_DATE'],
      [valid.replace('"_type":"targets"', '"_type":"root"'), 'WRONG_TYPE'],
      [valid.replace(/"targets":\{.*\}\}$/, `"targets":${many}}}`), 'POLICY_VIOLATION'],
      [valid.slice(0, -2), 'MALFORMED'],
      [`[${valid}]`, 'MALFORMED'],
      [`${'['.repeat(1000)}${']'.repeat(1000)}`, 'TOO_DEEP'],
    ];
    for (const [text, code] of cases) {
      const bytes = new TextEncoder().encode(text);
      expect(syncCode(bytes), code).toBe(code);
      const pre = await precheckMetadata('targets', bytes, 4 * 1024 * 1024, 'ci').then(
        () => 'OK',
        (e: unknown) => (e instanceof EngineError ? e.code : String(e)),
      );
      expect(pre, code).toBe(code);
    }
  });
});
