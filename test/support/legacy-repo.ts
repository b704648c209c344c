/**
 * Repositories as tufoci wrote them before its key ids followed the TUF
 * specification: every key listed under `legacyKeyId` (the SHA-256 of the key's
 * RFC 8785 form, which differs from the specification's id for every ECDSA PEM
 * key) and every signature carrying that id. Uploads refuse such ids now, so
 * these files are built here and stored directly through the storage layer, the
 * way an old repository sits in a registry or an OCI layout.
 */
import type { Root, Targets } from '@tufjs/models';
import {
  binFor,
  buildRoot,
  buildTargets,
  metadataFileName,
  parseMetadata,
  produceSnapshotAndTimestamp,
  signMetadata,
  type ImageTarget,
  type RepoState,
  type RoleRecord,
} from '../../src/engine/index.ts';
import { signedFromJSON, signedToJSON } from '../../src/engine/models.ts';
import { legacyKeyId, type Signer, type TufKeyJson } from '../../src/keys/index.ts';
import type { Policy } from '../../src/policy/policy.ts';
import { MetadataStore, type Store } from '../../src/storage/index.ts';

/** `signer` as it signed before the fix: under the legacy id of its key. */
export function asLegacySigner(signer: Signer): Signer {
  const keyid = legacyKeyId(signer.public);
  return {
    keyid,
    public: signer.public,
    sign: async (data) => ({ keyid, sig: (await signer.sign(data)).sig }),
  };
}

type Json = Record<string, unknown>;

/** Rename every key of `keys` to its legacy id, in the key map and in every role's `keyids`. */
function renameToLegacy(keys: Record<string, TufKeyJson>, roles: Array<{ keyids: string[] }>): void {
  const renamed = new Map<string, string>();
  for (const [id, key] of Object.entries(keys)) {
    const legacy = legacyKeyId(key);
    delete keys[id];
    keys[legacy] = key;
    renamed.set(id, legacy);
  }
  for (const role of roles) role.keyids = role.keyids.map((id) => renamed.get(id) ?? id);
}

/** The root `buildRoot` makes, with every key listed under its legacy id. */
export function legacyRoot(spec: Parameters<typeof buildRoot>[0]): Root {
  const json = signedToJSON(buildRoot(spec)) as Json & { keys: Record<string, TufKeyJson>; roles: Record<string, { keyids: string[] }> };
  renameToLegacy(json.keys, Object.values(json.roles));
  return signedFromJSON('root', json as never) as Root;
}

/** The targets `buildTargets` makes, with every delegated key listed under its legacy id. */
export function legacyTargets(spec: Parameters<typeof buildTargets>[0]): Targets {
  const json = signedToJSON(buildTargets(spec)) as Json & {
    delegations?: { keys: Record<string, TufKeyJson>; roles?: Array<{ keyids: string[] }>; succinct_roles?: { keyids: string[] } };
  };
  const d = json.delegations;
  if (d) renameToLegacy(d.keys, [...(d.roles ?? []), ...(d.succinct_roles ? [d.succinct_roles] : [])]);
  return signedFromJSON('targets', json as never) as Targets;
}

export interface LegacyDelegation {
  name: string;
  key: Signer;
  paths: string[];
  terminating?: boolean;
  /** The tags version 1 of the role lists. */
  tags: Record<string, ImageTarget>;
}

export interface LegacyBins {
  namePrefix: string;
  /** Number of bins, a power of two ≥ 2. */
  count: number;
  key: Signer;
  /** Each tag goes into version 1 of its bin. */
  tags: Record<string, ImageTarget>;
}

export interface LegacySpec {
  now: number;
  policy: Policy;
  rootKeys: readonly Signer[];
  targetsKey: Signer;
  online: { snapshot: Signer; timestamp: Signer };
  delegations: readonly LegacyDelegation[];
  /** Hash bins instead of `delegations` (top-level targets delegates to one or the other). */
  bins?: LegacyBins;
  rootExpiresDays?: number;
}

export interface LegacyRepository {
  state: RepoState;
  /** Every file, by file name, in the order they are published (timestamp last). */
  files: Map<string, Uint8Array>;
  /** The root clients pinned before the fix. */
  root1: Uint8Array;
}

const DAY = 86_400_000;
const iso = (ms: number): string => new Date(Math.floor(ms / 1000) * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');

/**
 * Version 1 of every file of a repository created before the fix: root, top-level targets
 * delegating to `delegations`, each delegated role listing its tags, snapshot and timestamp,
 * all listing and signed under legacy key ids.
 */
export async function buildLegacyRepository(spec: LegacySpec): Promise<LegacyRepository> {
  const { now, policy } = spec;
  const root = legacyRoot({
    version: 1,
    expires: iso(now + (spec.rootExpiresDays ?? 365) * DAY),
    root: { keys: spec.rootKeys.map((k) => k.public), threshold: spec.rootKeys.length },
    targets: { keys: [spec.targetsKey.public], threshold: 1 },
    snapshot: { keys: [spec.online.snapshot.public], threshold: 1 },
    timestamp: { keys: [spec.online.timestamp.public], threshold: 1 },
  });
  const root1 = await signMetadata(root, spec.rootKeys.map(asLegacySigner));
  const targets = legacyTargets({
    version: 1,
    expires: iso(now + 90 * DAY),
    delegations: spec.delegations.map((d) => ({ name: d.name, keys: [d.key.public], threshold: 1, paths: d.paths, terminating: d.terminating ?? false })),
    ...(spec.bins ? { bins: { namePrefix: spec.bins.namePrefix, bins: spec.bins.count, keys: [spec.bins.key.public], threshold: 1 } } : {}),
  });
  const targetsBytes = await signMetadata(targets, [asLegacySigner(spec.targetsKey)]);
  const records = new Map<string, RoleRecord<Targets>>();
  const files = new Map<string, Uint8Array>([['1.root.json', root1]]);
  const record = (role: string, bytes: Uint8Array): void => {
    records.set(role, { md: parseMetadata('targets', bytes, policy.roles.targets.maxBytes, role).md, bytes });
    files.set(metadataFileName(role, 1), bytes);
  };
  record('targets', targetsBytes);
  for (const d of spec.delegations) {
    record(d.name, await signMetadata(buildTargets({ version: 1, expires: iso(now + 30 * DAY), targets: d.tags }), [asLegacySigner(d.key)]));
  }
  if (spec.bins) {
    const byBin = new Map<string, Record<string, ImageTarget>>();
    for (const [tag, t] of Object.entries(spec.bins.tags)) {
      const bin = binFor(targets, tag);
      byBin.set(bin, { ...byBin.get(bin), [tag]: t });
    }
    for (const [bin, tags] of byBin) record(bin, await signMetadata(buildTargets({ version: 1, expires: iso(now + 30 * DAY), targets: tags }), [asLegacySigner(spec.bins.key)]));
  }
  const base: RepoState = {
    root: { md: parseMetadata('root', root1, policy.roles.root.maxBytes).md, bytes: root1 },
    targets: records,
    tombstones: new Map(),
    snapshot: undefined,
    timestamp: undefined,
  };
  const online = await produceSnapshotAndTimestamp(base, {
    now,
    policy,
    signers: { snapshot: [asLegacySigner(spec.online.snapshot)], timestamp: [asLegacySigner(spec.online.timestamp)] },
  });
  for (const f of online.files) files.set(f.name, f.bytes);
  return { state: online.state, files, root1 };
}

/** Write a legacy repository into `store` for `repository`, as the service of before left it. */
export async function storeLegacyRepository(store: Store, repository: string, repo: LegacyRepository): Promise<void> {
  const metadata = new MetadataStore({ store });
  await metadata.publish(repository, [...repo.files].map(([fileName, bytes]) => ({ fileName, bytes })));
}
