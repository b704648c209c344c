/**
 * Differential verification: every call runs verifyImage twice, through
 * tufoci's client core and through the unmodified tuf-js Updater, and fails
 * the test unless both reach the same verdict (the same digest and TUF
 * versions, or a refusal with the same code). What the caller gets back (or
 * sees thrown) is the core's, the default client's.
 *
 * State: a test's `stateDir` is the core's; the tuf-js run keeps its own
 * shadow directory for the same `stateDir`, so each client carries its own
 * state across the test's calls, starting from the same pin.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TargetInfo as TargetFile } from '../../src/client/core/roles.ts';
import type { Updater } from 'tuf-js';
import { CoreUpdater } from '../../src/client/core/updater.ts';
import { verifyImage as verifyWith, VerifyError, type VerifiedImage, type VerifyImageOptions } from '../../src/client/verify-image.ts';
import { MapFetcher } from './engine-repo.ts';

const shadows = new Map<string, string>();
process.once('exit', () => {
  for (const dir of shadows.values()) rmSync(dir, { recursive: true, force: true });
});

function shadowOf(stateDir: string): string {
  let dir = shadows.get(stateDir);
  if (!dir) {
    dir = mkdtempSync(join(tmpdir(), 'tufoci-tufjs-shadow-'));
    shadows.set(stateDir, dir);
  }
  return dir;
}

type Outcome = { ok: true; value: VerifiedImage } | { ok: false; error: unknown };

async function settle(p: Promise<VerifiedImage>): Promise<Outcome> {
  try {
    return { ok: true, value: await p };
  } catch (error) {
    return { ok: false, error };
  }
}

function verdict(o: Outcome): string {
  if (o.ok) return `ok ${o.value.digest} root ${o.value.tuf.root} timestamp ${o.value.tuf.timestamp} snapshot ${o.value.tuf.snapshot}`;
  const e = o.error;
  return e instanceof VerifyError ? `refused ${e.code}` : `error ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`;
}

/**
 * Where the two refuse for the same reason in different words, found by these tests and checked
 * against the specification (docs/ARCHITECTURE.md, "Two clients, one verdict"):
 * - a tag whose delegated role (an unpublished hash bin) the trusted snapshot does not list: the
 *   specification has no file to read, so no trusted role names the tag. The core says
 *   NOT_IN_TUF; tuf-js 6 reads `length` of the missing snapshot entry before it checks for it and
 *   fails with a TypeError (a refusal too).
 */
function sameRefusal(core: Outcome, reference: Outcome): boolean {
  if (core.ok || reference.ok) return false;
  const c = core.error;
  const r = reference.error;
  return (
    c instanceof VerifyError &&
    c.code === 'NOT_IN_TUF' &&
    typeof c.detail['role'] === 'string' &&
    r instanceof VerifyError &&
    r.code === 'TUF_REFUSED' &&
    r.cause instanceof TypeError &&
    /reading 'length'/.test(r.cause.message)
  );
}

/** verifyImage through both clients; throws if they disagree, else behaves as the core did. */
export async function verifyBothClients(opts: VerifyImageOptions): Promise<VerifiedImage> {
  const core = await settle(verifyWith({ ...opts, tufClient: 'tufoci' }));
  const reference = await settle(verifyWith({ ...opts, tufClient: 'tuf-js', ...(opts.stateDir !== undefined ? { stateDir: shadowOf(opts.stateDir) } : {}) }));
  const a = verdict(core);
  const b = verdict(reference);
  if (a !== b && !sameRefusal(core, reference)) {
    const why = (o: Outcome): string => (o.ok ? a : o.error instanceof Error ? o.error.message : String(o.error));
    throw new Error(`the client core and tuf-js disagree on ${opts.repository}:${opts.tag}\n  core:   ${a} (${why(core)})\n  tuf-js: ${b} (${why(reference)})`);
  }
  if (!core.ok) throw core.error;
  return core.value;
}

/**
 * The engine tests' client: the unmodified tuf-js Updater and tufoci's client core side by side
 * over the same files, each with its own state directory, every answer compared. `refresh` and
 * `getTargetInfo` behave as tuf-js's (what the tests were written against) and throw if the core
 * disagrees: both refresh or both refuse; both find the same target entry or none.
 */
export class DualUpdater {
  readonly #reference: Updater;
  readonly #core: CoreUpdater;
  #refreshed = false;

  constructor(reference: Updater, core: CoreUpdater) {
    this.#reference = reference;
    this.#core = core;
  }

  static over(root: Uint8Array, files: ReadonlyMap<string, Uint8Array>, reference: Updater): DualUpdater {
    const dir = mkdtempSync(join(tmpdir(), 'tufoci-core-shadow-'));
    shadows.set(dir, dir);
    writeFileSync(join(dir, 'root.json'), root);
    const scope = (JSON.parse(new TextDecoder().decode(root)) as { signed: Record<string, unknown> }).signed['x-tufoci-scope'];
    const repository = typeof scope === 'string' ? scope.replace(/\/$/, '/sim') : 'sim/repository';
    return new DualUpdater(reference, new CoreUpdater({ dir, metadataBaseUrl: 'https://sim.invalid/metadata', fetcher: new MapFetcher(files), repository }));
  }

  async refresh(): Promise<void> {
    const [a, b] = await Promise.allSettled([this.#reference.refresh(), this.#core.refresh()]);
    this.#refreshed = true;
    if ((a.status === 'fulfilled') !== (b.status === 'fulfilled')) {
      const why = (r: PromiseSettledResult<void>): string => (r.status === 'fulfilled' ? 'refreshed' : `refused (${r.reason instanceof Error ? r.reason.message : String(r.reason)})`);
      throw new Error(`the client core and tuf-js disagree on a refresh: core ${why(b)}, tuf-js ${why(a)}`);
    }
    if (a.status === 'rejected') throw a.reason;
  }

  async getTargetInfo(path: string): Promise<TargetFile | undefined> {
    if (!this.#refreshed) await this.refresh();
    const [a, b] = await Promise.allSettled([this.#reference.getTargetInfo(path), this.#core.getTargetInfo(path)]);
    const show = (r: PromiseSettledResult<TargetFile | undefined>): string =>
      r.status === 'rejected' ? `refused (${r.reason instanceof Error ? r.reason.message : String(r.reason)})` : JSON.stringify(r.value?.toJSON() ?? null);
    if ((a.status === 'fulfilled') !== (b.status === 'fulfilled') || (a.status === 'fulfilled' && show(a) !== show(b))) {
      throw new Error(`the client core and tuf-js disagree on ${path}: core ${show(b)}, tuf-js ${show(a)}`);
    }
    if (a.status === 'rejected') throw a.reason;
    return a.value;
  }
}
