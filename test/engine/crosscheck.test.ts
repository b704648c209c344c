/**
 * Independent verification: the unmodified tuf-js Updater reads what the
 * engine produced (through its Fetcher seam) and resolves targets at the top
 * level, through a delegation, and through succinct hash bins (TAP 15).
 */
import { describe, expect, it } from 'vitest';
import { binFor } from '../../src/engine/index.ts';
import { MapFetcher, SimRepo, image } from '../support/engine-repo.ts';

describe('tuf-js Updater verifies engine output', () => {
  it('finds a top-level target', async () => {
    const repo = await new SimRepo().init({ targets: { latest: image(1) } });
    const info = await repo.updater().getTargetInfo('latest');
    expect(info?.hashes['sha256']).toBe(image(1).digest.slice(7));
    expect(info?.length).toBe(image(1).size);
    expect(info?.custom['mediaType']).toBe('application/vnd.oci.image.manifest.v1+json');
  });

  it('finds a target through a delegation and follows new versions', async () => {
    const repo = await new SimRepo().init();
    await repo.upload('ci', await repo.targetsBytes({ version: 1, targets: { v1: image(1) } }, [repo.ciKey]));
    const dir = (await import('node:fs')).mkdtempSync('/tmp/tufoci-client-');
    expect((await repo.updater(dir).getTargetInfo('v1'))?.hashes['sha256']).toBe(image(1).digest.slice(7));
    await repo.upload('ci', await repo.targetsBytes({ version: 2, targets: { v1: image(2), v2: image(3) } }, [repo.ciKey]));
    const again = repo.updater(dir);
    expect((await again.getTargetInfo('v1'))?.hashes['sha256']).toBe(image(2).digest.slice(7));
    expect(await again.getTargetInfo('latest')).toBeUndefined(); // outside ci's paths, not in targets
  });

  it('resolves targets through succinct hash bins', async () => {
    const repo = new SimRepo();
    await repo.init({ delegations: undefined, bins: { namePrefix: 'bin', bins: 16, keys: [repo.ciKey.public], threshold: 1 } });
    const top = repo.targetsOf('targets');
    const tags = Array.from({ length: 40 }, (_, i) => `tag-${i}`);
    const byBin = new Map<string, string[]>();
    for (const t of tags) byBin.set(binFor(top, t), [...(byBin.get(binFor(top, t)) ?? []), t]);
    expect(byBin.size).toBeGreaterThan(4);
    for (const [bin, list] of byBin) {
      const targets = Object.fromEntries(list.map((t) => [t, image(tags.indexOf(t) + 1)]));
      await repo.upload(bin, await repo.targetsBytes({ version: 1, targets }, [repo.ciKey]));
    }
    const fetcher = new MapFetcher(repo.files);
    const updater = repo.updater(undefined, fetcher);
    for (const [i, t] of tags.entries()) {
      expect((await updater.getTargetInfo(t))?.hashes['sha256']).toBe(image(i + 1).digest.slice(7));
    }
    // A lookup touches only the bin the tag hashes to.
    const before = fetcher.requests.length;
    const fresh = repo.updater(undefined, fetcher);
    await fresh.getTargetInfo('tag-7');
    const fetched = fetcher.requests.slice(before).filter((n) => n.includes('bin-'));
    expect(fetched).toEqual([`1.${binFor(top, 'tag-7')}.json`]);
  });

  it('a target in a bin it does not hash to is refused by the engine', async () => {
    const repo = new SimRepo();
    await repo.init({ delegations: undefined, bins: { namePrefix: 'bin', bins: 4, keys: [repo.ciKey.public], threshold: 1 } });
    const top = repo.targetsOf('targets');
    const wrong = ['bin-0', 'bin-1', 'bin-2', 'bin-3'].find((b) => b !== binFor(top, 'v1')) as string;
    await expect(repo.upload(wrong, await repo.targetsBytes({ version: 1, targets: { v1: image(1) } }, [repo.ciKey]))).rejects.toMatchObject({
      code: 'PATH_NOT_DELEGATED',
    });
  });
});
