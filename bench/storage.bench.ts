/**
 * Storage benchmark: `node bench/storage.bench.ts` (Node 24: run it as
 * `PATH=node_modules/.bin:$PATH node bench/storage.bench.ts` or `npx node ...`).
 *
 * Part `files`: medians of writing and reading one TUF metadata file (1 KB and
 * 1 MB) through the MetadataStore on each backend (memory, OCI layout with and
 * without fsync, a real docker-registry started here on loopback), and of
 * listing 10,000 tags. Prints a table and what dominates each cost.
 *
 * Part `write-path`: the ceiling the storage puts on the service's write path.
 * (1) docker-registry's throughput and CPU cost per request, by kind (16 in
 * flight, its CPU read from /proc), and the tags/s that caps a tag at the
 * minimum registry requests the service makes for it; (2) the storage side of
 * publishing one tag alone — read timestamp.json, publish the role file and
 * the snapshot, write timestamp.json, exactly the MetadataStore calls the
 * service makes — 100 repositories in parallel, on each backend: tags/s with
 * no TUF work and no HTTP in front.
 *
 *   BENCH_PARTS=files,write-path   which parts to run (default both)
 *   BENCH_WRITE_SECONDS=10         duration of each write-path throughput run
 */
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { EMPTY_JSON_BYTES, EMPTY_JSON_DIGEST } from '../src/storage/digest.ts';
import { MemoryStore } from '../src/storage/memory-store.ts';
import { MetadataStore } from '../src/storage/metadata-store.ts';
import { OciLayoutStore } from '../src/storage/oci-layout-store.ts';
import { RegistryStore } from '../src/storage/registry-store.ts';
import { OCI_MANIFEST_MEDIA_TYPE, type Store } from '../src/storage/store.ts';
import { startRegistry } from '../test/support/registry-server.ts';

const TAGS = 10_000;

function median(samples: number[]): number {
  const sorted = [...samples].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

async function time(fn: () => Promise<unknown>): Promise<number> {
  const start = performance.now();
  await fn();
  return performance.now() - start;
}

/** JSON-shaped payload of exactly `size` bytes. */
function payload(size: number, salt: string): Uint8Array {
  const head = `{"signed":{"_type":"targets","salt":"${salt}","pad":"`;
  const tail = '"},"signatures":[]}';
  return new TextEncoder().encode(head + randomBytes(size).toString('hex').slice(0, size - head.length - tail.length) + tail);
}

interface Row {
  backend: string;
  write1k: number;
  read1k: number;
  write1m: number;
  read1m: number;
  list10k: number;
  populate10k: number;
}

/** `lister` lists with a fresh instance where the backend caches (the layout caches its parsed index.json). */
async function measure(backend: string, store: Store, iterations: { small: number; large: number }, lister: () => Store = () => store): Promise<Row> {
  const metadata = new MetadataStore({ store });
  const repo = `bench/b-${backend.replace(/[^a-z0-9]+/g, '-').replace(/-+$/, '')}`;
  let version = 0;
  const writeRead = async (size: number, n: number): Promise<{ write: number; read: number }> => {
    const writes: number[] = [];
    const reads: number[] = [];
    for (let i = 0; i < n + 2; i++) {
      const name = `${++version}.targets.json`;
      const bytes = payload(size, `${backend}-${version}`);
      const w = await time(() => metadata.writeMetadata(repo, name, bytes));
      const r = await time(() => metadata.readMetadata(repo, name, size));
      if (i >= 2) {
        writes.push(w);
        reads.push(r);
      }
    }
    return { write: median(writes), read: median(reads) };
  };
  const small = await writeRead(1024, iterations.small);
  const large = await writeRead(1024 * 1024, iterations.large);

  // 10,000 tags in one repository, written through the Store (16 in flight).
  const tagRepo = `${repo}-tags`;
  const config = await store.putBlob(tagRepo, EMPTY_JSON_BYTES);
  const manifest = (i: number): Uint8Array =>
    new TextEncoder().encode(
      JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST_MEDIA_TYPE, config: { mediaType: 'application/vnd.oci.empty.v1+json', ...config }, layers: [], annotations: { i: String(i) } }),
    );
  const populate = await time(async () => {
    let next = 0;
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (next < TAGS) {
          const i = next++;
          await store.putManifest(tagRepo, `${i}.ci.json`, manifest(i), OCI_MANIFEST_MEDIA_TYPE);
        }
      }),
    );
  });
  const lists: number[] = [];
  for (let i = 0; i < 5; i++) {
    let count = 0;
    const cold = lister();
    lists.push(await time(async () => (count = (await cold.listTags(tagRepo)).length)));
    if (count !== TAGS) throw new Error(`${backend}: listed ${count} tags, expected ${TAGS}`);
  }
  return { backend, write1k: small.write, read1k: small.read, write1m: large.write, read1m: large.read, list10k: median(lists), populate10k: populate };
}

const ms = (v: number): string => (v < 1 ? v.toFixed(3) : v < 100 ? v.toFixed(2) : v.toFixed(0)).padStart(9);

const PARTS = (process.env['BENCH_PARTS'] ?? 'files,write-path').split(',').map((p) => p.trim());
const WRITE_SECONDS = Number(process.env['BENCH_WRITE_SECONDS'] ?? 10);

/** utime + stime of a process, in ms (Linux /proc; USER_HZ = 100). */
function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

/** Run `fn(i)` `count` times, `inFlight` at once; wall ms. */
async function concurrently(count: number, inFlight: number, fn: (i: number) => Promise<unknown>): Promise<number> {
  let next = 0;
  return time(() => Promise.all(Array.from({ length: inFlight }, async () => { while (next < count) await fn(next++); })));
}

async function writePath(dir: string): Promise<void> {
  const registry = await startRegistry();
  try {
    // (1) What docker-registry does per request, by kind.
    const url = registry.url;
    const repo = 'cap/tuf';
    const remote = new RegistryStore({ url });
    const metadata = new MetadataStore({ store: remote });
    const seed = await metadata.writeMetadata('cap', 'timestamp.json', new TextEncoder().encode('{"signed":{"version":1}}'));
    const send = async (method: string, path: string, init: RequestInit = {}, ok = [200]): Promise<Response> => {
      const r = await fetch(`${url}${path}`, { method, ...init });
      await r.arrayBuffer();
      if (!ok.includes(r.status)) throw new Error(`${method} ${path}: HTTP ${r.status}`);
      return r;
    };
    const accept = { Accept: OCI_MANIFEST_MEDIA_TYPE };
    const manifests: Uint8Array[] = [];
    for (let i = 0; i < 1500; i++) {
      const layer = await remote.putBlob(repo, payload(600, `cap-${i}`));
      manifests.push(new TextEncoder().encode(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST_MEDIA_TYPE, config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: EMPTY_JSON_DIGEST, size: 2 }, layers: [{ mediaType: 'application/octet-stream', ...layer }] })));
    }
    const kinds: Array<{ kind: string; requests: number; count: number; fn: (i: number) => Promise<unknown> }> = [
      { kind: 'GET /v2/ (trivial)', requests: 1, count: 3000, fn: () => send('GET', '/v2/') },
      { kind: 'GET manifest, If-None-Match → 304', requests: 1, count: 3000, fn: () => send('GET', `/v2/${repo}/manifests/timestamp.json`, { headers: { ...accept, 'If-None-Match': `"${seed.manifestDigest}"` } }, [304]) },
      { kind: 'GET manifest (200)', requests: 1, count: 3000, fn: () => send('GET', `/v2/${repo}/manifests/timestamp.json`, { headers: accept }) },
      { kind: 'HEAD blob', requests: 1, count: 3000, fn: () => send('HEAD', `/v2/${repo}/blobs/${seed.layerDigest}`) },
      {
        kind: 'blob upload (POST + PUT)',
        requests: 2,
        count: 1000,
        fn: async (i) => {
          const bytes = payload(600, `upload-${i}`);
          const start = await send('POST', `/v2/${repo}/blobs/uploads/`, {}, [202]);
          const location = new URL(start.headers.get('location') ?? '', url);
          location.searchParams.set('digest', `sha256:${createHash('sha256').update(bytes).digest('hex')}`);
          await fetch(location, { method: 'PUT', body: bytes, headers: { 'Content-Type': 'application/octet-stream' } }).then(async (r) => {
            await r.arrayBuffer();
            if (r.status !== 201) throw new Error(`PUT upload: HTTP ${r.status}`);
          });
        },
      },
      { kind: 'PUT manifest, new tag', requests: 1, count: 1000, fn: (i) => send('PUT', `/v2/${repo}/manifests/${i + 2}.ci.json`, { body: manifests[i], headers: { 'Content-Type': OCI_MANIFEST_MEDIA_TYPE } }, [201]) },
      { kind: 'PUT manifest, moving tag', requests: 1, count: 500, fn: (i) => send('PUT', `/v2/${repo}/manifests/timestamp.json`, { body: manifests[1000 + i], headers: { 'Content-Type': OCI_MANIFEST_MEDIA_TYPE } }, [201]) },
    ];
    const cost = new Map<string, number>();
    const rows: Array<Record<string, string | number>> = [];
    for (const k of kinds) {
      const cpu0 = cpuMs(registry.pid);
      const wall = await concurrently(k.count, 16, k.fn);
      const cpu = (cpuMs(registry.pid) - cpu0) / k.count;
      cost.set(k.kind, cpu);
      rows.push({ request: k.kind, 'ops/s': Math.round((k.count / wall) * 1000), 'requests/s': Math.round(((k.count * k.requests) / wall) * 1000), 'registry CPU ms/op': +cpu.toFixed(2) });
    }
    console.log(`\ndocker-registry 2.8 (filesystem storage) on loopback, 16 requests in flight (${process.version}, ${(await import('node:os')).cpus().length} cores)`);
    console.table(rows);
    const perTag = (cost.get('GET manifest, If-None-Match → 304') ?? 0) + 3 * (cost.get('blob upload (POST + PUT)') ?? 0) + 2 * (cost.get('PUT manifest, new tag') ?? 0) + (cost.get('PUT manifest, moving tag') ?? 0);
    const trivial = cost.get('GET /v2/ (trivial)') ?? 0;
    console.log(
      `A tag costs the registry at least 10 requests: 1 conditional GET of timestamp.json, 3 blob uploads of 2 requests (role file, snapshot, timestamp;` +
        ` distribution 2.8 has no single-request upload) and 3 manifest PUTs: ${perTag.toFixed(1)} ms of registry CPU, so 2 cores cap the registry at` +
        ` ${Math.round(2000 / perTag)} tags/s even with nothing else running; were all 10 requests as cheap as GET /v2/ (${trivial.toFixed(2)} ms),` +
        ` ${Math.round(2000 / (10 * trivial))} tags/s. 300 tags/s would need ${((300 * perTag) / 1000).toFixed(1)} cores for the registry alone.`,
    );

    // (2) The storage side of one tag, 100 repositories in parallel.
    const stores: Array<[string, () => Store]> = [
      ['memory', () => new MemoryStore()],
      ['oci-layout (fsync)', () => new OciLayoutStore({ root: join(dir, 'write-path-fsync') })],
      ['oci-layout (no fsync)', () => new OciLayoutStore({ root: join(dir, 'write-path-nofsync'), fsync: false })],
      ['registry (docker-registry 2.8)', () => new RegistryStore({ url })],
    ];
    const table: Array<Record<string, string | number>> = [];
    for (const [name, make] of stores) {
      const meta = new MetadataStore({ store: make() });
      const repos = Array.from({ length: 100 }, (_, i) => `wp-${name.replace(/[^a-z0-9]+/g, '-').replace(/-+$/, '')}/r${i}`);
      for (const r of repos) await meta.writeMetadata(r, 'timestamp.json', payload(700, `${r}-ts-0`));
      let tags = 0;
      const end = performance.now() + WRITE_SECONDS * 1000;
      const wall = await time(() =>
        Promise.all(
          repos.map(async (r) => {
            for (let v = 1; performance.now() < end; v++) {
              await meta.readMetadata(r, 'timestamp.json', 1 << 20);
              await meta.publish(r, [{ fileName: `${v}.ci.json`, bytes: payload(1200 + 40 * v, `${r}-ci-${v}`) }, { fileName: `${v}.snapshot.json`, bytes: payload(600, `${r}-snap-${v}`) }], { replaceable: new Set([`${v}.ci.json`, `${v}.snapshot.json`]) });
              await meta.writeMetadata(r, 'timestamp.json', payload(700, `${r}-ts-${v}`));
              tags++;
            }
          }),
        ),
      );
      table.push({ backend: name, 'tags/s': Math.round((tags / wall) * 1000) });
    }
    console.log(`\nThe storage side of a tag alone (read timestamp.json, publish role file + snapshot, write timestamp.json), 100 repositories in parallel, ${WRITE_SECONDS} s each:`);
    console.table(table);
  } finally {
    await registry.stop();
  }
}

async function main(): Promise<void> {
  if (!PARTS.includes('files')) {
    const dir = await mkdtemp(join(tmpdir(), 'tufoci-bench-'));
    try {
      if (PARTS.includes('write-path')) await writePath(dir);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    return;
  }
  const rows: Row[] = [];
  const dir = await mkdtemp(join(tmpdir(), 'tufoci-bench-'));
  const registry = await startRegistry();
  try {
    rows.push(await measure('memory', new MemoryStore(), { small: 50, large: 15 }));
    const layoutStore = new OciLayoutStore({ root: join(dir, 'fsync') });
    rows.push(await measure('oci-layout', layoutStore, { small: 30, large: 10 }, () => new OciLayoutStore({ root: join(dir, 'fsync') })));
    rows.push(await measure('oci-layout (no fsync)', new OciLayoutStore({ root: join(dir, 'nofsync'), fsync: false }), { small: 30, large: 10 }, () => new OciLayoutStore({ root: join(dir, 'nofsync') })));
    const warm: number[] = [];
    for (let i = 0; i < 5; i++) warm.push(await time(() => layoutStore.listTags('bench/b-oci-layout-tags')));
    const remote = new RegistryStore({ url: registry.url });
    rows.push(await measure('registry (docker-registry 2.8)', remote, { small: 30, large: 10 }));
    const pings: number[] = [];
    for (let i = 0; i < 30; i++) pings.push(await time(() => remote.ping()));
    const rtt = median(pings);
    // Per-request cost on the registry, to see where a metadata write goes.
    const ops = { head: [] as number[], upload: [] as number[], putManifest: [] as number[], getManifest: [] as number[], getBlob: [] as number[] };
    const opsRepo = 'bench/ops';
    const cfg = await remote.putBlob(opsRepo, EMPTY_JSON_BYTES);
    for (let i = 0; i < 20; i++) {
      const blob = payload(1024, `ops-${i}`);
      ops.upload.push(await time(() => remote.putBlob(opsRepo, blob)));
      const ref = await remote.putBlob(opsRepo, blob);
      ops.head.push(await time(() => remote.hasBlob(opsRepo, ref.digest)));
      const m = new TextEncoder().encode(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST_MEDIA_TYPE, config: { mediaType: 'application/vnd.oci.empty.v1+json', ...cfg }, layers: [{ mediaType: 'application/octet-stream', ...ref }] }));
      ops.putManifest.push(await time(() => remote.putManifest(opsRepo, `t${i}`, m, OCI_MANIFEST_MEDIA_TYPE)));
      ops.getManifest.push(await time(() => remote.getManifest(opsRepo, `t${i}`, 65536)));
      ops.getBlob.push(await time(() => remote.getBlob(opsRepo, ref.digest, 4096)));
    }

    console.log(`\nStorage benchmark — medians in ms (${process.version}, ${(await import('node:os')).cpus().length} cores)\n`);
    console.log(`${'backend'.padEnd(32)}${'write 1KB'.padStart(9)} ${'read 1KB'.padStart(9)} ${'write 1MB'.padStart(9)} ${'read 1MB'.padStart(9)} ${'list 10k'.padStart(9)}   populate 10k tags`);
    for (const r of rows) {
      console.log(`${r.backend.padEnd(32)}${ms(r.write1k)} ${ms(r.read1k)} ${ms(r.write1m)} ${ms(r.read1m)} ${ms(r.list10k)}   ${(r.populate10k / 1000).toFixed(1)} s`);
    }
    const layout = rows[1]!;
    const noSync = rows[2]!;
    const reg = rows[3]!;
    console.log('\nWhat dominates:');
    console.log(
      `- oci-layout writes: fsync. A write is 3 atomic file replacements (layer, manifest, index.json), each fsyncing file and directory; ` +
        `without fsync a 1 KB write takes ${noSync.write1k.toFixed(2)} ms instead of ${layout.write1k.toFixed(2)} ms.`,
    );
    const m = (k: keyof typeof ops): string => median(ops[k]).toFixed(1);
    console.log(
      `- registry: the registry's own work per request, not the network. A 1 KB write is 6 requests (GET manifest for the immutability check, ` +
        `HEAD+POST+PUT layer, HEAD config, PUT manifest), a read 2 (GET manifest, GET blob). Loopback GET /v2/ costs ${rtt.toFixed(2)} ms, but ` +
        `distribution's filesystem driver makes a new-blob upload cost ${m('upload')} ms, a manifest PUT ${m('putManifest')} ms, ` +
        `a manifest GET ${m('getManifest')} ms, a blob GET ${m('getBlob')} ms and a HEAD ${m('head')} ms (link files and directories on disk).`,
    );
    console.log(
      `- 1 MB: hashing and copying (sha256 of 1 MB ≈ ${(await time(async () => (await import('node:crypto')).createHash('sha256').update(randomBytes(1 << 20)).digest())).toFixed(1)} ms, ` +
        `done on write and again on every read), plus for the registry the HTTP body transfer.`,
    );
    console.log(
      `- listing 10k tags: the layout parses one ~1.3 MB index.json (the table's figure, a fresh instance; ${median(warm).toFixed(2)} ms when the parsed index is cached and unchanged); ` +
        `the registry (distribution 2.8 ignores ?n= and answers one page) reads 10k tag directories from disk.`,
    );
  } finally {
    await registry.stop();
  }
  try {
    if (PARTS.includes('write-path')) await writePath(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
