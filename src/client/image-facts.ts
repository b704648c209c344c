/**
 * What a client verified about images that cannot change afterwards, kept
 * beside its TUF state so that a warm verify does not ask the registry again:
 *
 * - a manifest checked by digest: the digest names those bytes for ever, so
 *   `{digest, size, mediaType}` once checked is a fact;
 * - the signers of a digest under a signature policy (its keys and
 *   threshold): a signature verified against a key stays verified against it.
 *   Revoking a signer is a change of policy, which is another key here.
 *
 * TUF decides *which* digest a tag means on every run; these facts only spare
 * re-reading what that digest is. The file (`.tufoci-images`, not a `.json`
 * name, so no role file can collide with it) is written atomically, mode
 * 0600, only when something was added, and holds at most MAX_FACTS of each
 * kind (the oldest dropped). An unreadable or oversized file is ignored: the
 * facts are established again.
 */
import { createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { computeKeyId, type TufKeyJson } from '../keys/tuf-key.ts';
import { DirectoryState } from './state-files.ts';

export const IMAGE_FACTS_FILE = '.tufoci-images';
const MAX_FACTS = 512;
const MAX_FILE_BYTES = 512 * 1024;
const DIGEST = /^sha256:[0-9a-f]{64}$/;

interface ManifestFact {
  size: number;
  mediaType: string;
}

interface Stored {
  manifests: Record<string, ManifestFact>;
  /** `<digest> <policy id>` → key ids that signed. */
  signers: Record<string, string[]>;
}

/** One id for a signature policy: its distinct key ids, sorted, and its threshold. */
export function policyId(policy: { keys: readonly TufKeyJson[]; threshold?: number }): string {
  const ids = [...new Set(policy.keys.map((k) => computeKeyId(k)))].sort();
  return createHash('sha256').update(JSON.stringify({ ids, threshold: policy.threshold ?? 1 })).digest('hex');
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The entries of `raw` that `ok` accepts, the newest MAX_FACTS (insertion order is age). */
function kept<T>(raw: unknown, ok: (key: string, value: unknown) => value is T): Record<string, T> {
  const out: Record<string, T> = {};
  if (!isRecord(raw)) return out;
  for (const [k, v] of Object.entries(raw).slice(-MAX_FACTS)) if (ok(k, v)) out[k] = v;
  return out;
}

export class ImageFacts {
  readonly #dir: string | undefined;
  readonly #stored: Stored;
  #changed = false;

  private constructor(dir: string | undefined, stored: Stored) {
    this.#dir = dir;
    this.#stored = stored;
  }

  /** Facts known to nothing, saved nowhere: an ephemeral verify's (it has no next run to serve). */
  static none(): ImageFacts {
    return new ImageFacts(undefined, { manifests: {}, signers: {} });
  }

  static load(dir: string): ImageFacts {
    let raw: unknown;
    try {
      const file = join(dir, IMAGE_FACTS_FILE);
      if (statSync(file).size <= MAX_FILE_BYTES) raw = JSON.parse(readFileSync(file, 'utf8'));
    } catch {
      raw = undefined;
    }
    const r = isRecord(raw) ? raw : {};
    return new ImageFacts(dir, {
      manifests: kept(r['manifests'], (k, v): v is ManifestFact => DIGEST.test(k) && isRecord(v) && Number.isSafeInteger(v['size']) && typeof v['mediaType'] === 'string'),
      signers: kept(r['signers'], (k, v): v is string[] => /^sha256:[0-9a-f]{64} [0-9a-f]{64}$/.test(k) && Array.isArray(v) && v.every((x) => typeof x === 'string')),
    });
  }

  /** Whether this exact manifest (digest, size, media type) was checked before. */
  hasManifest(d: { digest: string; size: number; mediaType: string }): boolean {
    const f = this.#stored.manifests[d.digest];
    return f !== undefined && f.size === d.size && f.mediaType === d.mediaType;
  }

  addManifest(d: { digest: string; size: number; mediaType: string }): void {
    this.#set(this.#stored.manifests, d.digest, { size: d.size, mediaType: d.mediaType });
  }

  /** The signers found for `digest` under `policy` before, if any. */
  signers(digest: string, policy: { keys: readonly TufKeyJson[]; threshold?: number }): string[] | undefined {
    const found = this.#stored.signers[`${digest} ${policyId(policy)}`];
    return found ? [...found] : undefined;
  }

  addSigners(digest: string, policy: { keys: readonly TufKeyJson[]; threshold?: number }, signers: readonly string[]): void {
    this.#set(this.#stored.signers, `${digest} ${policyId(policy)}`, [...signers]);
  }

  #set<T>(map: Record<string, T>, key: string, value: T): void {
    delete map[key]; // newest last
    map[key] = value;
    const keys = Object.keys(map);
    for (const k of keys.slice(0, Math.max(0, keys.length - MAX_FACTS))) delete map[k];
    this.#changed = true;
  }

  /** Write the facts if anything was added (atomically, 0600); a failure only costs the next run a request. */
  save(): void {
    if (!this.#changed || this.#dir === undefined) return;
    try {
      new DirectoryState(this.#dir).write(IMAGE_FACTS_FILE, JSON.stringify(this.#stored));
      this.#changed = false;
    } catch {
      // the next run reads the manifest and the signatures again
    }
  }
}
