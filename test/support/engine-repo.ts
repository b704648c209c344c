/**
 * A repository simulator for engine tests: in-memory signers, the default
 * policy, a fixed clock, every file the engine produced kept by name (the way
 * a registry keeps tags), and a tuf-js Fetcher over those files.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BaseFetcher, Updater, type Fetcher } from 'tuf-js';
import { DownloadHTTPError } from 'tuf-js/dist/error.js';
import { InMemorySigner, type KeyType } from '../../src/keys/index.ts';
import {
  buildRoot,
  buildTargets,
  isoExpiry,
  metadataFileName,
  produceSnapshotAndTimestamp,
  signMetadata,
  verifyNewRepository,
  verifyTargetsUpload,
  type ImageTarget,
  type RepoState,
  type TargetsSpec,
} from '../../src/engine/index.ts';
import { loadPolicyFile, defaultPolicyPath, type Policy } from '../../src/policy/policy.ts';
import type { Targets } from '@tufjs/models';
import { DualUpdater } from './differential.ts';

// tuf-js checks expiry against the real clock, so the simulated clock starts at the real time.
export const NOW = Math.floor(Date.now() / 1000) * 1000;
export const DAY = 86_400_000;
export const policy: Policy = await loadPolicyFile(defaultPolicyPath());

export function image(n: number, mediaType = 'application/vnd.oci.image.manifest.v1+json'): ImageTarget {
  const hex = n.toString(16).padStart(64, '0');
  return { digest: `sha256:${hex}`, size: 500 + n, mediaType };
}

export function signer(type: KeyType = 'ed25519'): InMemorySigner {
  return InMemorySigner.generate(type);
}

export class SimRepo {
  now = NOW;
  readonly root1 = signer();
  readonly root2 = signer();
  readonly targetsKey = signer();
  readonly snapshotKey = signer();
  readonly timestampKey = signer();
  readonly ciKey = signer();
  state!: RepoState;
  /** Every file ever written, by file name (timestamp.json overwritten). */
  readonly files = new Map<string, Uint8Array>();

  get ctx(): { now: number; policy: Policy; onlineKeys: InMemorySigner['public'][] } {
    return { now: this.now, policy, onlineKeys: [this.snapshotKey.public, this.timestampKey.public] };
  }

  get online(): { now: number; policy: Policy; signers: { snapshot: InMemorySigner[]; timestamp: InMemorySigner[] } } {
    return { now: this.now, policy, signers: { snapshot: [this.snapshotKey], timestamp: [this.timestampKey] } };
  }

  expires(days: number): string {
    return isoExpiry(this.now + days * DAY);
  }

  async rootBytes(version = 1, signers: InMemorySigner[] = [this.root1], keys: InMemorySigner[] = [this.root1], threshold = 1): Promise<Uint8Array> {
    return signMetadata(
      buildRoot({
        version,
        expires: this.expires(365),
        root: { keys: keys.map((k) => k.public), threshold },
        targets: { keys: [this.targetsKey.public], threshold: 1 },
        snapshot: { keys: [this.snapshotKey.public], threshold: 1 },
        timestamp: { keys: [this.timestampKey.public], threshold: 1 },
      }),
      signers,
    );
  }

  async targetsBytes(spec: Partial<TargetsSpec> & { version: number }, signers: InMemorySigner[] = [this.targetsKey]): Promise<Uint8Array> {
    return signMetadata(buildTargets({ expires: this.expires(30), ...spec }), signers);
  }

  /** root v1 + targets v1 delegating `ci` (paths v*) to ciKey, published with snapshot/timestamp. */
  async init(targets: Partial<TargetsSpec> = {}): Promise<this> {
    const root = await this.rootBytes();
    const t = await this.targetsBytes({
      version: 1,
      delegations: [{ name: 'ci', keys: [this.ciKey.public], threshold: 1, paths: ['v*'], terminating: true }],
      ...targets,
    });
    this.state = verifyNewRepository(root, t, this.ctx);
    this.files.set('1.root.json', root);
    this.files.set('1.targets.json', t);
    await this.publish();
    return this;
  }

  async publish(): Promise<void> {
    const out = await produceSnapshotAndTimestamp(this.state, this.online);
    this.state = out.state;
    for (const f of out.files) this.files.set(f.name, f.bytes);
  }

  async upload(role: string, bytes: Uint8Array): Promise<void> {
    this.state = verifyTargetsUpload(this.state, role, bytes, this.ctx).state;
    this.files.set(metadataFileName(role, this.state.targets.get(role)?.md.signed.version), bytes);
    await this.publish();
  }

  version(role: string): number {
    return this.state.targets.get(role)?.md.signed.version ?? 0;
  }

  targetsOf(role: string): Targets {
    const r = this.state.targets.get(role);
    if (!r) throw new Error(`no ${role}`);
    return r.md.signed;
  }

  /**
   * A client over this repository's files, trusting 1.root.json: the unmodified tuf-js Updater
   * (in `dir`, through `fetcher`) and tufoci's client core beside it, every answer compared
   * (differential.ts DualUpdater); it answers as tuf-js does.
   */
  updater(dir = mkdtempSync(join(tmpdir(), 'tufoci-client-')), fetcher: Fetcher = new MapFetcher(this.files)): DualUpdater {
    const root = this.files.get('1.root.json');
    if (!root) throw new Error('no root');
    writeFileSync(join(dir, 'root.json'), root);
    return DualUpdater.over(root, this.files, new Updater({ metadataDir: dir, metadataBaseUrl: 'https://sim.invalid/metadata', fetcher }));
  }
}

/** tuf-js Fetcher over a map of file name → bytes; missing files are HTTP 404. */
export class MapFetcher extends BaseFetcher {
  readonly files: ReadonlyMap<string, Uint8Array>;
  readonly requests: string[] = [];
  constructor(files: ReadonlyMap<string, Uint8Array>) {
    super();
    this.files = files;
  }
  override async fetch(url: string): Promise<ReadableStream<Uint8Array<ArrayBuffer>>> {
    const name = decodeURIComponent(url.slice(url.lastIndexOf('/') + 1));
    this.requests.push(name);
    const bytes = this.files.get(name);
    if (!bytes) throw new DownloadHTTPError(`not found: ${name}`, 404);
    const copy = new Uint8Array(bytes);
    return new ReadableStream({
      start(c) {
        c.enqueue(copy);
        c.close();
      },
    });
  }
}
