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
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { verifyImage as verifyWith, VerifyError, type VerifiedImage, type VerifyImageOptions } from '../../src/client/verify-image.ts';

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

/** verifyImage through both clients; throws if they disagree, else behaves as the core did. */
export async function verifyBothClients(opts: VerifyImageOptions): Promise<VerifiedImage> {
  const core = await settle(verifyWith({ ...opts, tufClient: 'tufoci' }));
  const reference = await settle(verifyWith({ ...opts, tufClient: 'tuf-js', ...(opts.stateDir !== undefined ? { stateDir: shadowOf(opts.stateDir) } : {}) }));
  const a = verdict(core);
  const b = verdict(reference);
  if (a !== b) {
    const why = (o: Outcome): string => (o.ok ? a : o.error instanceof Error ? o.error.message : String(o.error));
    throw new Error(`the client core and tuf-js disagree on ${opts.repository}:${opts.tag}\n  core:   ${a} (${why(core)})\n  tuf-js: ${b} (${why(reference)})`);
  }
  if (!core.ok) throw core.error;
  return core.value;
}
