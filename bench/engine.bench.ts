/**
 * Engine benchmark (issue 3). Prints medians:
 *  - verify one delegated-role upload with 10 / 1,000 / 10,000 targets;
 *  - produce snapshot + timestamp for 1 / 100 / 4,096 targets-type files;
 *  - ed25519 and ECDSA P-256 signature verifications per second with cached key objects.
 *
 *   node bench/engine.bench.ts        (or: npm run bench)
 */
import {
  buildRoot,
  buildTargets,
  binFor,
  isoExpiry,
  produceSnapshotAndTimestamp,
  signMetadata,
  verifyNewRepository,
  verifyTargetsUpload,
  verifySignature,
  type ImageTarget,
  type RepoState,
} from '../src/engine/index.ts';
import { InMemorySigner, parsePublicKey } from '../src/keys/index.ts';
import { defaultPolicyPath, loadPolicyFile } from '../src/policy/policy.ts';
import { machine, median, timeRuns } from './stats.ts';

const policy = await loadPolicyFile(defaultPolicyPath());
const now = Date.now();
const exp = (days: number): string => isoExpiry(now + days * 86_400_000);
const k = {
  root: InMemorySigner.generate(),
  targets: InMemorySigner.generate(),
  snapshot: InMemorySigner.generate(),
  timestamp: InMemorySigner.generate(),
  ci: InMemorySigner.generate(),
};
const ctx = { now, policy, onlineKeys: [k.snapshot.public, k.timestamp.public] };
const online = { now, policy, signers: { snapshot: [k.snapshot], timestamp: [k.timestamp] } };
const img = (n: number): ImageTarget => ({ digest: `sha256:${n.toString(16).padStart(64, '0')}`, size: 1000 + n, mediaType: 'application/vnd.oci.image.manifest.v1+json' });

async function repo(targets: Parameters<typeof buildTargets>[0]): Promise<RepoState> {
  const root = await signMetadata(
    buildRoot({
      version: 1,
      expires: exp(365),
      root: { keys: [k.root.public], threshold: 1 },
      targets: { keys: [k.targets.public], threshold: 1 },
      snapshot: { keys: [k.snapshot.public], threshold: 1 },
      timestamp: { keys: [k.timestamp.public], threshold: 1 },
    }),
    [k.root],
  );
  return verifyNewRepository(root, await signMetadata(buildTargets(targets), [k.targets]), ctx);
}

console.log(`tufoci engine benchmark — ${machine()}`);
const rows: Array<Record<string, string | number>> = [];

// 1. Verify one delegated-role upload.
const base = await repo({ version: 1, expires: exp(30), delegations: [{ name: 'ci', keys: [k.ci.public], threshold: 1, paths: ['*'] }] });
for (const n of [10, 1_000, 10_000]) {
  const targets = Object.fromEntries(Array.from({ length: n }, (_, i) => [`tag-${i}`, img(i)]));
  const bytes = await signMetadata(buildTargets({ version: 1, expires: exp(30), targets }), [k.ci]);
  const runs = n >= 10_000 ? 15 : 51;
  const ms = await timeRuns(() => verifyTargetsUpload(base, 'ci', bytes, ctx), runs);
  console.error(`verify ${n}: done`);
  rows.push({ benchmark: 'verify delegated upload', size: `${n} targets (${(bytes.byteLength / 1024).toFixed(0)} KiB)`, 'median ms': +median(ms).toFixed(3), runs });
}

// 2. Produce snapshot + timestamp.
for (const files of [1, 100, 4_096]) {
  let state: RepoState;
  if (files === 1) {
    state = await repo({ version: 1, expires: exp(30) });
  } else {
    const bins = 2 ** Math.ceil(Math.log2(files));
    state = await repo({ version: 1, expires: exp(30), bins: { namePrefix: 'bin', bins, keys: [k.ci.public], threshold: 1 } });
    const top = state.targets.get('targets')?.md.signed;
    if (!top) throw new Error('no targets');
    // One tag per bin, found in one pass over candidate tags.
    const tagOfBin = new Map<string, string>();
    for (let i = 0; tagOfBin.size < files - 1; i++) {
      const bin = binFor(top, `tag-${i}`);
      if (!tagOfBin.has(bin)) tagOfBin.set(bin, `tag-${i}`);
    }
    for (const [bin, tag] of tagOfBin) {
      state = verifyTargetsUpload(state, bin, await signMetadata(buildTargets({ version: 1, expires: exp(30), targets: { [tag]: img(1) } }), [k.ci]), ctx).state;
    }
  }
  const ms = await timeRuns(() => produceSnapshotAndTimestamp(state, online), files >= 4_096 ? 21 : 51);
  const out = await produceSnapshotAndTimestamp(state, online);
  rows.push({
    benchmark: 'produce snapshot+timestamp',
    size: `${files} targets files (snapshot ${(out.files[0]?.bytes.byteLength ?? 0) / 1024 >= 1 ? `${((out.files[0]?.bytes.byteLength ?? 0) / 1024).toFixed(0)} KiB` : `${out.files[0]?.bytes.byteLength} B`})`,
    'median ms': +median(ms).toFixed(3),
    runs: files >= 4_096 ? 21 : 51,
  });
}

// 3. Signature verifications per second with cached key objects.
for (const type of ['ed25519', 'ecdsa-p256'] as const) {
  const s = InMemorySigner.generate(type);
  const data = new Uint8Array(1024).fill(7);
  const sig = (await s.sign(data)).sig;
  const info = parsePublicKey(s.keyid, s.public);
  const rates: number[] = [];
  for (let round = 0; round < 5; round++) {
    let n = 0;
    const t0 = performance.now();
    while (performance.now() - t0 < 300) {
      for (let i = 0; i < 50; i++) if (verifySignature(info, data, sig)) n++;
    }
    rates.push(n / ((performance.now() - t0) / 1000));
  }
  rows.push({ benchmark: `${type} verify (1 KiB, cached key)`, size: '5 × 300 ms', 'median ms': +(1000 / median(rates)).toFixed(4), runs: `${Math.round(median(rates))} /s` });
}
console.table(rows);
