/**
 * The contract of tufoci's metadata fetchers, run over each of them (fetcher-contract.test.ts):
 * the RegistryFetcher over a real docker-registry, and the ServiceFetcher over an HTTP server
 * that answers metadata GETs with the service's own header function (src/api metadataHeaders).
 * What both must do, for tuf-js's Updater and for tufoci's client core alike:
 *
 * - a stored file comes back as its exact bytes, bounded by the length asked for;
 * - a missing file is tuf-js's "not found" (DownloadHTTPError 404), and nothing else is: an
 *   unreachable backend fails as itself, never as "no newer root";
 * - a file above the bound is refused as tuf-js's length error;
 * - the unmodified tuf-js Updater and the client core refresh through it and find top-level and
 *   delegated targets;
 * - a client whose timestamp did not change makes one request in all, for the timestamp (a 304
 *   from the service; the artifact manifest from a registry, whose layer is then not downloaded),
 *   and no root probe;
 * - a new root is still found: a hint can skip a probe only while no newer root exists.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DownloadHTTPError, DownloadLengthMismatchError } from 'tuf-js/dist/error.js';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { CoreUpdater } from '../../src/client/core/updater.ts';
import type { TimestampFirstFetcher, TimestampFirstOptions } from '../../src/client/timestamp-first-fetcher.ts';
import { buildTufRepo, removeClientDirs, updaterFor, type TufRepo } from '../support/tuf-repo.ts';

export const CONTRACT_REPO = 'wabbit-networks/net-monitor';

/** One backend with one fetcher kind in front of it. */
export interface FetcherWorld {
  /** The `metadataBaseUrl` of CONTRACT_REPO for this fetcher. */
  readonly baseUrl: string;
  /** Store these files (timestamp.json among them, replaced), with `rootVersion` as the current root's version (the hint the backend gives). */
  publish(files: ReadonlyMap<string, Uint8Array>, rootVersion: number): Promise<void>;
  fetcher(options?: TimestampFirstOptions): TimestampFirstFetcher;
  /** A fetcher of this kind whose backend does not answer (a closed loopback port), and its base URL. */
  unreachable(): Promise<{ fetcher: TimestampFirstFetcher; baseUrl: string }>;
  /** The metadata file names requested of the backend since the last reset, in order. */
  requested(): string[];
  reset(): void;
  close(): Promise<void>;
}

async function failure(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => undefined,
    (e: unknown) => e,
  );
}

export function fetcherContract(name: string, start: () => Promise<FetcherWorld>): void {
  describe(`fetcher contract: ${name}`, () => {
    let repo: TufRepo;
    let w: FetcherWorld;
    const dirs: string[] = [];
    beforeAll(async () => {
      repo = await buildTufRepo();
      w = await start();
      // Root 1 only at first: the rotation case publishes 2.root.json itself.
      await w.publish(new Map([...repo.files].filter(([f]) => f !== '2.root.json')), 1);
    });
    afterAll(async () => {
      await w?.close();
      removeClientDirs();
      for (const d of dirs) rmSync(d, { recursive: true, force: true });
    });
    beforeEach(() => w.reset());

    it('hands back a stored file as its exact bytes', async () => {
      const bytes = await w.fetcher().downloadBytes(`${w.baseUrl}/1.targets.json`, 1 << 20);
      expect(Buffer.from(bytes).equals(Buffer.from(repo.files.get('1.targets.json')!))).toBe(true);
    });

    it("answers a missing file as tuf-js's not found, and an unreachable backend as itself", async () => {
      const missing = await failure(w.fetcher().downloadBytes(`${w.baseUrl}/7.root.json`, 1 << 20));
      expect(missing).toBeInstanceOf(DownloadHTTPError);
      expect((missing as DownloadHTTPError).statusCode).toBe(404);
      const down = await w.unreachable();
      const error = await failure(down.fetcher.downloadBytes(`${down.baseUrl}/2.root.json`, 1 << 20));
      expect(error).toBeInstanceOf(Error);
      expect(error instanceof DownloadHTTPError && (error.statusCode === 404 || error.statusCode === 403)).toBe(false);
    });

    it("refuses a file above the bound with tuf-js's length error", async () => {
      const error = await failure(w.fetcher().downloadBytes(`${w.baseUrl}/1.targets.json`, 100));
      expect(error).toBeInstanceOf(DownloadLengthMismatchError);
    });

    it('the unmodified tuf-js Updater refreshes through it and finds top-level and delegated targets', async () => {
      const updater = updaterFor(repo, w.baseUrl, w.fetcher());
      await updater.refresh();
      expect((await updater.getTargetInfo('v1'))?.hashes['sha256']).toBe(repo.targets['v1']!.digest.slice(7));
      expect((await updater.getTargetInfo('v2'))?.hashes['sha256']).toBe(repo.targets['v2']!.digest.slice(7));
      expect(await updater.getTargetInfo('v3')).toBeUndefined();
    });

    it('so does the client core; run again with the timestamp unchanged, it makes one request (the timestamp) and no root probe', async () => {
      const dir = mkdtempSync(join(tmpdir(), 'tufoci-contract-'));
      dirs.push(dir);
      writeFileSync(join(dir, 'root.json'), repo.files.get('1.root.json')!);
      const trusted = (): Uint8Array | undefined => {
        try {
          return new Uint8Array(readFileSync(join(dir, 'timestamp.json')));
        } catch {
          return undefined;
        }
      };
      const core = () => new CoreUpdater({ dir, metadataBaseUrl: w.baseUrl, fetcher: w.fetcher({ trustedTimestamp: trusted }), repository: CONTRACT_REPO });
      const cold = core();
      await cold.refresh();
      expect((await cold.getTargetInfo('v2'))?.length).toBe(repo.targets['v2']!.size);
      expect(w.requested()).toContain('timestamp.json');
      w.reset();
      const warm = core();
      await warm.refresh();
      expect((await warm.getTargetInfo('v2'))?.length).toBe(repo.targets['v2']!.size);
      expect(w.requested()).toEqual(['timestamp.json']);
    });

    it('a new root is found through the same fetcher, then the next timestamp read needs no probe again', async () => {
      await w.publish(new Map([['2.root.json', repo.files.get('2.root.json')!], ['timestamp.json', repo.files.get('timestamp.json')!]]), 2);
      w.reset();
      const updater = updaterFor(repo, w.baseUrl, w.fetcher());
      await updater.refresh();
      const asked = w.requested();
      expect(asked).toContain('2.root.json');
      expect(asked).toContain('timestamp.json');
      expect(asked).not.toContain('3.root.json'); // the hint names root 2: no probe beyond it
    });
  });
}
