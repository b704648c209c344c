/**
 * The client core against the unmodified tuf-js Updater, on the same served
 * files: random mutations of a repository's second generation (bytes flipped,
 * files dropped, older files served under newer names, files re-signed
 * expired, by the wrong key, or with a version going back), seen by a cold
 * client and by one that trusted the first generation. Both must reach the
 * same verdict: the same target (or none), or a refusal.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { Updater } from 'tuf-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CoreUpdater } from '../../src/client/core/updater.ts';
import { isoExpiry, signMetadata, type RoleType } from '../../src/engine/index.ts';
import { signedFromJSON } from '../../src/engine/models.ts';
import type { InMemorySigner } from '../../src/keys/index.ts';
import { DAY, MapFetcher, SimRepo, image } from '../support/engine-repo.ts';

const BASE = 'https://sim.invalid/metadata';
const TAGS = ['v1', 'v2', 'v3', 'x1', 'nope'];

interface World {
  repo: SimRepo;
  gen1: Map<string, Uint8Array>;
  gen2: Map<string, Uint8Array>;
  /** Re-signed variants of gen2 files, by file name. */
  variants: Map<string, Uint8Array[]>;
  /** Coherent forgeries by the online keys: files served together in place of gen2's. */
  chains: Array<{ what: string; files: Map<string, Uint8Array> }>;
}

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function tempDir(root: Uint8Array): string {
  const dir = mkdtempSync(join(tmpdir(), 'tufoci-diff-'));
  dirs.push(dir);
  writeFileSync(join(dir, 'root.json'), root);
  return dir;
}

function json(bytes: Uint8Array): { signed: Record<string, unknown> } {
  return JSON.parse(new TextDecoder().decode(bytes)) as { signed: Record<string, unknown> };
}

async function resign(kind: RoleType, bytes: Uint8Array, signers: InMemorySigner[], edit: (s: Record<string, unknown>) => void): Promise<Uint8Array> {
  const signed = json(bytes).signed;
  edit(signed);
  return signMetadata(signedFromJSON(kind, signed), signers);
}

/** Two generations of a repository: `roles` delegates ci (v*) and team (x*); `bins` puts tags in 4 hash bins. */
async function world(shape: 'roles' | 'bins'): Promise<World> {
  const repo = new SimRepo();
  if (shape === 'roles') {
    await repo.init({
      targets: { top: image(9) },
      delegations: [
        { name: 'ci', keys: [repo.ciKey.public], threshold: 1, paths: ['v*'], terminating: true },
        { name: 'team', keys: [repo.ciKey.public], threshold: 1, paths: ['*'] },
      ],
    });
    await repo.upload('ci', await repo.targetsBytes({ version: 1, targets: { v1: image(1) } }, [repo.ciKey]));
    await repo.upload('team', await repo.targetsBytes({ version: 1, targets: { x1: image(5), v3: image(6) } }, [repo.ciKey]));
  } else {
    await repo.init({ bins: { namePrefix: 'bin', bins: 4, keys: [repo.ciKey.public], threshold: 1 } });
    for (const bin of ['bin-0', 'bin-1', 'bin-2', 'bin-3']) {
      const mine = TAGS.filter((t) => repo.targetsOf('targets').delegations?.succinctRoles?.getRoleForTarget(t) === bin);
      await repo.upload(bin, await repo.targetsBytes({ version: 1, targets: Object.fromEntries(mine.slice(0, 1).map((t, i) => [t, image(i + 1)])) }, [repo.ciKey]));
    }
  }
  const gen1 = new Map(repo.files);
  // Generation 2: one role gains a tag, snapshot and timestamp move on.
  const role = shape === 'roles' ? 'ci' : (repo.targetsOf('targets').delegations?.succinctRoles?.getRoleForTarget('v2') as string);
  const current = repo.targetsOf(role);
  await repo.upload(role, await repo.targetsBytes({ version: current.version + 1, targets: { ...Object.fromEntries(Object.entries(current.targets).map(([p, t]) => [p, { digest: `sha256:${t.hashes['sha256']}`, size: t.length, mediaType: 'application/vnd.oci.image.manifest.v1+json' }])), v2: image(2) } }, [repo.ciKey]));
  const gen2 = new Map(repo.files);
  const variants = new Map<string, Uint8Array[]>();
  const past = isoExpiry(repo.now - DAY);
  const ts = gen2.get('timestamp.json') as Uint8Array;
  const snapName = `${repo.state.snapshot?.md.signed.version}.snapshot.json`;
  const roleName = `${repo.version(role)}.${role}.json`;
  const add = (name: string, list: Uint8Array[]): void => {
    variants.set(name, list);
  };
  add('timestamp.json', [
    await resign('timestamp', ts, [repo.timestampKey], (s) => void (s['expires'] = past)),
    await resign('timestamp', ts, [repo.snapshotKey], () => undefined),
    await resign('timestamp', ts, [repo.timestampKey], (s) => void (s['version'] = (s['version'] as number) - 1)),
    await resign('timestamp', ts, [repo.timestampKey, repo.timestampKey], (s) => void (s['version'] = (s['version'] as number) + 5)),
  ]);
  const snap = gen2.get(snapName) as Uint8Array;
  add(snapName, [
    await resign('snapshot', snap, [repo.snapshotKey], (s) => void (s['expires'] = past)),
    await resign('snapshot', snap, [repo.timestampKey], () => undefined),
    await resign('snapshot', snap, [repo.snapshotKey], (s) => void ((s['meta'] as Record<string, { version: number }>)[`${role}.json`] = { version: 1 })),
  ]);
  const r = gen2.get(roleName) as Uint8Array;
  add(roleName, [
    await resign('targets', r, [repo.ciKey], (s) => void (s['expires'] = past)),
    await resign('targets', r, [repo.targetsKey], () => undefined),
    await resign('targets', r, [repo.ciKey], (s) => void ((s['targets'] as Record<string, unknown>)['v1'] = (s['targets'] as Record<string, unknown>)['v2'])),
  ]);
  // The online keys sign a new timestamp pinning another snapshot: one that takes a role back to
  // version 1 (5.5.5), and the first generation's snapshot (5.4.3).
  const pin = (bytes: Uint8Array, version: number): Record<string, unknown> => ({ version, length: bytes.byteLength, hashes: { sha256: createHash('sha256').update(bytes).digest('hex') } });
  const snapVersion = json(snap).signed['version'] as number;
  const tsVersion = json(ts).signed['version'] as number;
  const rolledBack = await resign('snapshot', snap, [repo.snapshotKey], (s) => {
    s['version'] = snapVersion + 1;
    (s['meta'] as Record<string, unknown>)[`${role}.json`] = { version: 1 };
  });
  const chains: World['chains'] = [
    {
      what: `snapshot ${snapVersion + 1} takes ${role} back to version 1`,
      files: new Map([
        [`${snapVersion + 1}.snapshot.json`, rolledBack],
        ['timestamp.json', await resign('timestamp', ts, [repo.timestampKey], (s) => {
          s['version'] = tsVersion + 1;
          s['meta'] = { 'snapshot.json': pin(rolledBack, snapVersion + 1) };
        })],
      ]),
    },
  ];
  const oldSnapName = [...gen1.keys()].filter((n) => n.endsWith('.snapshot.json')).sort((x, y) => parseInt(y, 10) - parseInt(x, 10))[0] as string;
  const oldSnap = gen1.get(oldSnapName) as Uint8Array;
  chains.push({
    what: `a new timestamp names the older ${oldSnapName}`,
    files: new Map([['timestamp.json', await resign('timestamp', ts, [repo.timestampKey], (s) => {
      s['version'] = tsVersion + 1;
      s['meta'] = { 'snapshot.json': pin(oldSnap, parseInt(oldSnapName, 10)) };
    })]]),
  });
  return { repo, gen1, gen2, variants, chains };
}

type Mutation =
  | { kind: 'flip'; file: number; at: number; bit: number }
  | { kind: 'drop'; file: number }
  | { kind: 'older'; file: number }
  | { kind: 'variant'; file: number; which: number }
  | { kind: 'chain'; which: number };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), file: fc.nat(), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ kind: fc.constant('drop' as const), file: fc.nat() }),
  fc.record({ kind: fc.constant('older' as const), file: fc.nat() }),
  fc.record({ kind: fc.constant('variant' as const), file: fc.nat(), which: fc.nat() }),
  fc.record({ kind: fc.constant('chain' as const), which: fc.nat() }),
);

/** The files a client of generation 2 reads (the rest are history). */
function gen2Reads(w: World): string[] {
  return [...w.gen2.keys()].filter((n) => !w.gen1.has(n) || n === 'timestamp.json' || n === '2.root.json').sort();
}

function mutate(w: World, mutations: readonly Mutation[]): Map<string, Uint8Array> {
  const served = new Map(w.gen2);
  const names = gen2Reads(w);
  for (const m of mutations) {
    if (m.kind === 'chain') {
      const chain = w.chains[m.which % w.chains.length];
      for (const [n, b] of chain?.files ?? []) served.set(n, b);
      continue;
    }
    const name = names[m.file % names.length] as string;
    const bytes = served.get(name);
    if (m.kind === 'drop') served.delete(name);
    else if (m.kind === 'flip' && bytes) {
      const copy = new Uint8Array(bytes);
      const at = m.at % copy.length;
      copy[at] = (copy[at] as number) ^ (1 << m.bit);
      served.set(name, copy);
    } else if (m.kind === 'older') {
      // The first generation's file of the same role, served under this name (rollback, mix-and-match).
      const role = name.replace(/^[0-9]+\./, '');
      const old = name === 'timestamp.json' ? w.gen1.get(name) : [...w.gen1.entries()].find(([n]) => n.endsWith(`.${role}`) && n !== name)?.[1];
      if (old) served.set(name, old);
    } else if (m.kind === 'variant') {
      const list = w.variants.get(name);
      if (list?.length) served.set(name, list[m.which % list.length] as Uint8Array);
    }
  }
  return served;
}

/** One client's verdict on `tag`: the target's sha256, "none", or "refused". */
async function viaCore(files: Map<string, Uint8Array>, dir: string, tag: string): Promise<string> {
  try {
    const u = new CoreUpdater({ dir, metadataBaseUrl: BASE, fetcher: new MapFetcher(files), repository: 'sim/repo' });
    await u.refresh();
    const t = await u.getTargetInfo(tag);
    return t ? `target ${t.hashes['sha256']} ${t.length}` : 'none';
  } catch {
    return 'refused';
  }
}

async function viaTufJs(files: Map<string, Uint8Array>, dir: string, tag: string): Promise<string> {
  try {
    const u = new Updater({ metadataDir: dir, metadataBaseUrl: BASE, fetcher: new MapFetcher(files) });
    await u.refresh();
    const t = await u.getTargetInfo(tag);
    return t ? `target ${t.hashes['sha256']} ${t.length}` : 'none';
  } catch {
    return 'refused';
  }
}

describe('client core and tuf-js reach the same verdict', () => {
  const worlds = new Map<string, World>();
  beforeAll(async () => {
    worlds.set('roles', await world('roles'));
    worlds.set('bins', await world('bins'));
  });

  it('on the unmodified repository, cold and warm, for every tag', async () => {
    for (const w of worlds.values()) {
      const root = w.gen1.get('1.root.json') as Uint8Array;
      for (const tag of TAGS) {
        const a = tempDir(root);
        const b = tempDir(root);
        expect(await viaCore(w.gen1, a, tag)).toBe(await viaTufJs(w.gen1, b, tag));
        const core = await viaCore(w.gen2, a, tag);
        expect(core).toBe(await viaTufJs(w.gen2, b, tag));
        if (tag !== 'nope') expect(core).toMatch(/^target|^none$/);
      }
      // The new tag of generation 2 is found by both.
      expect(await viaCore(w.gen2, tempDir(root), 'v2')).toMatch(/^target /);
    }
  });

  it('a signature written in upper-case hex is the same signature for both (the specification fixes no case; tuf-js, python-tuf and go-tuf decode either)', async () => {
    for (const w of worlds.values()) {
      const root = w.gen1.get('1.root.json') as Uint8Array;
      const served = new Map(w.gen2);
      // The timestamp: the one file no other file pins by hash, so its signatures can be rewritten alone.
      for (const name of ['timestamp.json']) {
        const doc = JSON.parse(new TextDecoder().decode(served.get(name))) as { signatures: Array<{ keyid: string; sig: string }> };
        for (const s of doc.signatures) s.sig = s.sig.toUpperCase();
        served.set(name, new TextEncoder().encode(JSON.stringify(doc)));
      }
      for (const tag of ['v1', 'v2']) {
        const core = await viaCore(served, tempDir(root), tag);
        expect(core, tag).toBe(await viaTufJs(served, tempDir(root), tag));
        expect(core, tag).toMatch(/^target /);
      }
    }
  });

  it('a signature entry that names no key (not a key id, no hex) counts for nothing in both, and the file stands by its other signatures', async () => {
    for (const w of worlds.values()) {
      const root = w.gen1.get('1.root.json') as Uint8Array;
      for (const junk of [{ keyid: 'not-a-key-id', sig: 'abcd' }, { keyid: 'ab'.repeat(32), sig: 'not hex' }, { keyid: 'AB'.repeat(32), sig: 'ABCD' }]) {
        const served = new Map(w.gen2);
        const doc = JSON.parse(new TextDecoder().decode(served.get('timestamp.json'))) as { signatures: unknown[] };
        doc.signatures.push(junk);
        served.set('timestamp.json', new TextEncoder().encode(JSON.stringify(doc)));
        const core = await viaCore(served, tempDir(root), 'v1');
        expect(core, JSON.stringify(junk)).toBe(await viaTufJs(served, tempDir(root), 'v1'));
        expect(core, JSON.stringify(junk)).toMatch(/^target /);
      }
    }
  });

  it('for every single forged or older file and every coherent forgery, cold and warm, every tag', async () => {
    let refused = 0;
    let cases = 0;
    for (const [shape, w] of worlds) {
      const root = w.gen1.get('1.root.json') as Uint8Array;
      const overlays: Array<{ what: string; files: Map<string, Uint8Array> }> = [...w.chains];
      for (const [name, list] of w.variants) list.forEach((bytes, i) => overlays.push({ what: `${name} variant ${i}`, files: new Map([[name, bytes]]) }));
      for (const name of gen2Reads(w)) overlays.push({ what: `${name} from generation 1`, files: mutate(w, [{ kind: 'older', file: gen2Reads(w).indexOf(name) }]) });
      for (const o of overlays) {
        const served = new Map([...w.gen2, ...o.files]);
        for (const warm of [false, true]) {
          for (const tag of TAGS) {
            const a = tempDir(root);
            const b = tempDir(root);
            if (warm) await Promise.all([viaCore(w.gen1, a, tag), viaTufJs(w.gen1, b, tag)]);
            const core = await viaCore(served, a, tag);
            expect(core, `${shape} ${warm ? 'warm' : 'cold'} ${tag}: ${o.what}`).toBe(await viaTufJs(served, b, tag));
            cases++;
            if (core === 'refused') refused++;
          }
        }
      }
    }
    // The forgeries are refused in most cases (not all: a forged bin or role does not matter to a tag elsewhere).
    expect(refused).toBeGreaterThan(cases / 2);
  });

  it('under random mutations of what the repository serves', async () => {
    await fc.assert(
      fc.asyncProperty(fc.constantFrom('roles', 'bins'), fc.boolean(), fc.array(mutation, { minLength: 1, maxLength: 3 }), fc.constantFrom(...TAGS), async (shape, warm, mutations, tag) => {
        const w = worlds.get(shape) as World;
        const root = w.gen1.get('1.root.json') as Uint8Array;
        const a = tempDir(root);
        const b = tempDir(root);
        if (warm) {
          expect(await viaCore(w.gen1, a, tag)).toBe(await viaTufJs(w.gen1, b, tag));
        }
        const served = mutate(w, mutations);
        const core = await viaCore(served, a, tag);
        const reference = await viaTufJs(served, b, tag);
        expect(core, `${shape} ${warm ? 'warm' : 'cold'} ${tag} ${JSON.stringify(mutations)}`).toBe(reference);
      }),
      { numRuns: 150 },
    );
  });
});
