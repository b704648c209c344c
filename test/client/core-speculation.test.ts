/**
 * The client core's speculation (updater.ts `#prefetchPath`): with the target it will look up
 * named ahead (`expectedTarget`), a client that has just fetched a new snapshot requests the files
 * of the walk's likely path together — top-level targets, the named roles, the one hash bin the
 * target falls in — instead of one after another. A fetcher that holds every answer until the test
 * releases it shows the order without any clock: which requests were sent while none of the
 * targets files had been answered. A wrong guess costs a request, never a verdict.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DownloadHTTPError } from 'tuf-js/dist/error.js';
import { afterAll, describe, expect, it } from 'vitest';
import { CoreUpdater, type MetadataSource } from '../../src/client/core/updater.ts';
import { SimRepo, image } from '../support/engine-repo.ts';

const BASE = 'https://sim.invalid/metadata';
const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** Serves `files`; answers to targets-role files wait for `release()`. Records every request in order. */
class GatedFetcher implements MetadataSource {
  readonly requests: string[] = [];
  readonly #files: ReadonlyMap<string, Uint8Array>;
  #open = false;
  readonly #waiting: Array<() => void> = [];
  #onRequest: (() => void) | undefined;
  constructor(files: ReadonlyMap<string, Uint8Array>) {
    this.#files = files;
  }
  /** Resolves once `n` requests have been made. */
  requested(n: number): Promise<void> {
    return new Promise((resolve) => {
      const check = (): void => {
        if (this.requests.length >= n) resolve();
        else this.#onRequest = check;
      };
      check();
    });
  }
  release(): void {
    this.#open = true;
    for (const go of this.#waiting.splice(0)) go();
  }
  async downloadBytes(url: string, maxLength: number): Promise<Uint8Array> {
    const name = decodeURIComponent(url.slice(url.lastIndexOf('/') + 1));
    this.requests.push(name);
    this.#onRequest?.();
    const role = /^(?:[0-9]+\.)?(.+)\.json$/.exec(name)?.[1];
    if (!this.#open && role !== 'root' && role !== 'timestamp' && role !== 'snapshot') await new Promise<void>((go) => this.#waiting.push(go));
    const bytes = this.#files.get(name);
    if (!bytes) throw new DownloadHTTPError(`not found: ${name}`, 404);
    if (bytes.byteLength > maxLength) throw new Error(`${name} above ${maxLength}`);
    return new Uint8Array(bytes);
  }
}

function stateDir(root: Uint8Array): string {
  const dir = mkdtempSync(join(tmpdir(), 'tufoci-spec-'));
  dirs.push(dir);
  writeFileSync(join(dir, 'root.json'), root);
  return dir;
}

/** targets → ci (v*, terminating) → 16 succinct bins ci-<hex>, as `tufoci delegate add` makes them. */
async function binnedRepo(): Promise<{ repo: SimRepo; tags: string[] }> {
  const repo = new SimRepo();
  await repo.init({ delegations: [{ name: 'ci', keys: [repo.ciKey.public], threshold: 1, paths: ['v*'], terminating: true }] });
  await repo.upload('ci', await repo.targetsBytes({ version: 1, targets: {}, bins: { namePrefix: 'ci', bins: 16, keys: [repo.ciKey.public], threshold: 1 } }, [repo.ciKey]));
  const tags = Array.from({ length: 64 }, (_, i) => `v${i}`);
  const succinct = repo.targetsOf('ci').delegations?.succinctRoles;
  for (const bin of [...(succinct?.getRoles() ?? [])]) {
    const mine = tags.filter((t) => succinct?.getRoleForTarget(t) === bin);
    await repo.upload(bin, await repo.targetsBytes({ version: 1, targets: Object.fromEntries(mine.map((t, i) => [t, image(i + 1)])) }, [repo.ciKey]));
  }
  return { repo, tags };
}

describe('the client core requests the likely path together', () => {
  it('after a new snapshot, targets, ci and the bin of the expected tag are all requested before any of them is answered', async () => {
    const { repo } = await binnedRepo();
    const root = repo.files.get('1.root.json') as Uint8Array;
    const bin = repo.targetsOf('ci').delegations?.succinctRoles?.getRoleForTarget('v7') as string;
    const fetcher = new GatedFetcher(repo.files);
    const updater = new CoreUpdater({ dir: stateDir(root), metadataBaseUrl: BASE, fetcher, repository: 'sim/repo', expectedTarget: 'v7' });
    const refreshed = updater.refresh();
    // root probe, timestamp, snapshot, then the three targets files at once
    await fetcher.requested(6);
    const ahead = fetcher.requests.slice(3).map((n) => n.replace(/^[0-9]+\./, ''));
    expect(ahead.sort()).toEqual([`${bin}.json`, 'ci.json', 'targets.json'].sort());
    fetcher.release();
    await refreshed;
    const target = await updater.getTargetInfo('v7');
    expect(target?.length).toBeGreaterThan(0);
    // Each file was requested once: the walk took what was fetched ahead.
    expect(fetcher.requests.filter((n) => n.endsWith('ci.json') || n.endsWith(`${bin}.json`) || n.endsWith('targets.json'))).toHaveLength(3);
  });

  it('without an expected target, and for a state holding the roles, nothing is requested ahead', async () => {
    const { repo } = await binnedRepo();
    const root = repo.files.get('1.root.json') as Uint8Array;
    const plain = new GatedFetcher(repo.files);
    const updater = new CoreUpdater({ dir: stateDir(root), metadataBaseUrl: BASE, fetcher: plain, repository: 'sim/repo' });
    const refreshed = updater.refresh();
    await plain.requested(4);
    expect(plain.requests.slice(3).map((n) => n.replace(/^[0-9]+\./, ''))).toEqual(['targets.json']); // one at a time
    plain.release();
    await refreshed;
    expect((await updater.getTargetInfo('v7'))?.length).toBeGreaterThan(0);
  });

  it('a guess that is wrong (another tag looked up) costs requests, not the verdict', async () => {
    const { repo, tags } = await binnedRepo();
    const root = repo.files.get('1.root.json') as Uint8Array;
    const succinct = repo.targetsOf('ci').delegations?.succinctRoles;
    const other = tags.find((t) => succinct?.getRoleForTarget(t) !== succinct?.getRoleForTarget('v7')) as string;
    const fetcher = new GatedFetcher(repo.files);
    fetcher.release();
    const updater = new CoreUpdater({ dir: stateDir(root), metadataBaseUrl: BASE, fetcher, repository: 'sim/repo', expectedTarget: 'v7' });
    await updater.refresh();
    const target = await updater.getTargetInfo(other);
    expect(target?.length).toBeGreaterThan(0);
    expect(await updater.getTargetInfo('nope')).toBeUndefined();
  });
});
