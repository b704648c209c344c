/**
 * verifyImage: is `<repository>:<tag>` what its owner currently publishes?
 *
 * 1. TUF, with the unmodified tuf-js Updater: metadata from the registry
 *    itself (`R/tuf`, through RegistryFetcher) or from a tufoci service, trust
 *    anchored in a pinned root; the trusted state is kept in `stateDir` so a
 *    rollback is caught across runs (or in a temporary directory: ephemeral).
 *    The target for `tag` gives the manifest digest, size and media type.
 * 2. The manifest of that digest, its size and media type checked against the
 *    target: the registry's tag, read while TUF runs, serves it when it names
 *    that digest (the store re-hashes what it reads); otherwise it is fetched
 *    by digest.
 * 3. Plain signatures on that digest (referrers) are verified against the
 *    signature policy, when one is given.
 * The registry's own tag is only compared, never trusted: if it points
 * elsewhere (an old, validly signed digest), the result says so.
 * Steps 2 and 3 establish facts that cannot change (a digest names one
 * manifest for ever; a signature verified against a policy stays verified
 * against it): `stateDir` keeps them (image-facts.ts), so a warm verify whose
 * timestamp is unchanged makes two requests, the conditional timestamp and
 * the registry's tag, sent together.
 *
 * `timeoutMs` is one deadline for all of it: every request and retry of every
 * step shares it (src/storage/deadline.ts), the request in flight is aborted
 * when it passes, and the error names what was awaited (`TIMEOUT`).
 * A saved state is used only while it descends from `trustedRoot`
 * (pin-state.ts); otherwise `STATE_NOT_FROM_PIN`, naming both roots.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TargetInfo } from './core/roles.ts';
import { paths } from '../api/routes.ts';
import { TufociError } from '../errors.ts';
import { MetadataStore } from '../storage/metadata-store.ts';
import { isStorageError } from '../storage/storage-error.ts';
import { isRepositoryName } from '../storage/names.ts';
import type { Manifest, Store } from '../storage/store.ts';
import { ImageFacts } from './image-facts.ts';
import { Deadline, formatDuration, waitingFor } from '../storage/deadline.ts';
import { checkPinnedState, describeRoot, recordVerifiedRoots, sha256Hex, type PinCheck } from './pin-state.ts';
import { RegistryFetcher, metadataBaseUrl } from './registry-fetcher.ts';
import { ServiceFetcher } from './service-fetcher.ts';
import { DEFAULT_TIMESTAMP_MAX_BYTES, type TimestampFirstFetcher } from './timestamp-first-fetcher.ts';
import { verifySignatures, type SignaturePolicy } from './signatures.ts';
import { memberVetter, metadataVetter, vetRoot } from './vet.ts';
import { SUCCESSOR_FIELD, namespaceAnchor, namespaceOf, successorOf, type Successor } from '../engine/scope.ts';
import { parseStrictJson } from '../engine/strict-json.ts';
import { CoreUpdater, VERIFIED_RECORD_FILE } from './core/updater.ts';
import { adoptSharedRoot, shareRoot } from './shared-root.ts';
import { DirectoryState, MemoryState, type StateFiles } from './state-files.ts';
import { DEFAULT_ROOT_MAX_BYTES } from './trust-store.ts';
import { CoreError } from './core/trusted-set.ts';

export type VerifyErrorCode = 'NOT_IN_TUF' | 'TUF_REFUSED' | 'MANIFEST_MISMATCH' | 'MANIFEST_UNAVAILABLE' | 'TIMEOUT' | 'STATE_NOT_FROM_PIN';
export class VerifyError extends TufociError<VerifyErrorCode> {}

export interface VerifyImageOptions {
  /** The registry holding the image (and, unless `serviceUrl`, its TUF metadata). */
  store: Store;
  repository: string;
  tag: string;
  /**
   * The root the client pins (1.root.json or later). A new `stateDir` starts from it; an existing
   * one must have started from it or reached it by verified rotations (else `STATE_NOT_FROM_PIN`).
   */
  trustedRoot: Uint8Array;
  /** Where the trusted TUF state persists between runs; omitted: ephemeral. */
  stateDir?: string;
  /** How to start a state over, named in a `STATE_NOT_FROM_PIN` refusal (default: remove `stateDir`). */
  resetHint?: string;
  /**
   * One deadline (ms) for the whole verify, shared by every request and retry (TUF metadata, the
   * manifest, signatures, the registry's tag); each request keeps its own timeout too. When it
   * passes, the request in flight is aborted and the verify fails with `TIMEOUT`. Omitted: none.
   */
  timeoutMs?: number;
  /** Read TUF metadata from this tufoci service instead of the registry. */
  serviceUrl?: string;
  /** Plain-signature policy; omitted: signatures are not checked. */
  signatures?: SignaturePolicy;
  /** Where the TUF metadata of R lives in the registry (default `R/tuf`). */
  metadataRepository?: (repository: string) => string;
  /**
   * How many new roots one run may walk (tuf-js `maxRootRotations`, default 256). A client further
   * behind stops at trusted + this many, trusts that intermediate root (persisted in `stateDir`) and
   * goes on to the timestamp with it: it verifies if the online and targets keys did not change since,
   * and is refused otherwise (or if that root has expired); the next run walks on from there.
   */
  maxRootRotations?: number;
  /**
   * The TUF client: `tufoci` (default), the client core of src/client/core (linear in every size,
   * keeps its verified state as data), or `tuf-js`, the unmodified tuf-js Updater, the reference.
   * Both read and write the same saved state. tuf-js's own size limits apply to it: @tufjs/models
   * is quadratic in the entries of one role, so it is slow beyond a few thousand targets per role.
   */
  tufClient?: TufClientName;
  /**
   * For a member of a namespace (a pinned root whose scope is a prefix): the directory where the
   * newest root verified for any member is shared (shared-root.ts), so that a rotation is walked
   * once per namespace. TrustStore.optionsFor gives one for prefix entries. Omitted: none.
   */
  namespaceStateDir?: string;
}

export type TufClientName = 'tufoci' | 'tuf-js';

/** What the TUF step found: the target, and the versions the client trusts after it. */
interface TufResult {
  target: TargetInfo | undefined;
  versions: { root: number; timestamp: number; snapshot: number };
  /** The root files this refresh verified, in order. */
  rootsVerified: readonly Uint8Array[];
}

export interface VerifiedImage {
  repository: string;
  tag: string;
  digest: string;
  mediaType: string;
  size: number;
  signers: string[];
  tuf: { root: number; timestamp: number; snapshot: number };
  /** What the registry's own tag points at, when it disagrees with TUF. */
  registryTag?: { digest: string; agrees: boolean };
}

export async function verifyImage(opts: VerifyImageOptions): Promise<VerifiedImage> {
  const ephemeral = opts.stateDir === undefined;
  // An ephemeral verify with the client core keeps its state in memory; the tuf-js Updater reads
  // and writes a directory of its own, so it gets a temporary one.
  const core = (opts.tufClient ?? 'tufoci') === 'tufoci';
  const dir = ephemeral && core ? undefined : (opts.stateDir ?? mkdtempSync(join(tmpdir(), 'tufoci-verify-')));
  const early: StateFiles = dir === undefined ? new MemoryState() : new DirectoryState(dir);
  const deadline = opts.timeoutMs !== undefined ? new Deadline(opts.timeoutMs) : undefined;
  /** One step of the verify: named, and under the deadline if there is one. */
  const step = <T>(what: string, fn: () => Promise<T>): Promise<T> => (deadline ? deadline.run(() => waitingFor(what, fn)) : fn());
  try {
    if (dir !== undefined) mkdirSync(dir, { recursive: true, mode: 0o700 });
    // The registry's own tag is read while TUF runs: only compared, never trusted, and when it
    // names the digest TUF names it is that manifest too (its bytes hash to the digest).
    const tagRead: Promise<{ manifest: Manifest } | { error: unknown }> = step(`the registry's tag ${opts.repository}:${opts.tag}`, () =>
      opts.store.getManifest(opts.repository, opts.tag, 4 * 1024 * 1024),
    ).then(
      (manifest) => ({ manifest }),
      (error: unknown) => ({ error }),
    );
    // The timestamp is read first in any case (timestamp-first-fetcher.ts): from a registry, its
    // manifest request goes out now, beside the tag's, and the local work (the pin's checks, the
    // saved state) runs while both are in flight. Neither answer is used before it is checked.
    const metadata = new MetadataStore({ store: opts.store, ...(opts.metadataRepository ? { metadataRepository: opts.metadataRepository } : {}) });
    // (Started under the deadline, so the request is bounded by it like every other.)
    if (!opts.serviceUrl && isRepositoryName(opts.repository)) void step(`the timestamp of ${opts.repository}`, async () => metadata.prefetch(opts.repository, 'timestamp.json'));
    // One turn of the event loop before the local work below, which is synchronous: node:http
    // hands a request its (pooled or new) socket and writes it from the loop, so without this
    // both requests would wait for that work instead of running beside it.
    await new Promise<void>((resolve) => setImmediate(resolve));
    // The pin is vetted like any root: strict bytes, and a scope (if named) covering this repository.
    vetRoot('the trusted root', opts.trustedRoot, opts.repository);
    // A namespace's root (its scope a prefix covering the repository): target paths are `R/<tag>`.
    // (or, once a repository with a root of its own moved into a namespace, the saved state's root: handOff)
    let namespace = namespaceOfPin(opts.trustedRoot, opts.repository) ?? namespaceOfSaved(early, opts.repository);
    // (A fresh state holds nothing to descend from the pin: it only needs the pin, and none of the
    // records below, which serve a next run that an ephemeral verify never has.)
    const stateDir = opts.stateDir;
    const pin: PinCheck = stateDir === undefined ? seedEphemeral(early, opts.trustedRoot) : checkPinnedState(stateDir, opts.trustedRoot);
    if (!pin.ok) throw stateRefusal(opts, stateDir ?? early.where, pin);
    const facts = stateDir === undefined ? ImageFacts.none() : ImageFacts.load(stateDir);
    const policy = opts.signatures;
    // The signatures of the digest the tag names, also read while TUF runs (when not known yet):
    // used only if TUF names exactly that manifest (digest, size, media type), else read again.
    const signedAsTagged = policy
      ? tagRead.then(async (t) => {
          if (!('manifest' in t)) return undefined;
          const d = { mediaType: t.manifest.mediaType, digest: t.manifest.digest, size: t.manifest.bytes.byteLength };
          if (facts.signers(d.digest, policy)) return undefined;
          return step(`the signatures of ${d.digest}`, () => verifySignatures(opts.store, opts.repository, d, policy)).then(
            (signers) => ({ descriptor: d, signers }),
            (error: unknown) => ({ descriptor: d, error }),
          );
        })
      : Promise.resolve(undefined);
    const shared = namespace !== undefined && stateDir !== undefined ? opts.namespaceStateDir : undefined;
    if (shared !== undefined && stateDir !== undefined) {
      mkdirSync(shared, { recursive: true, mode: 0o700 });
      adoptSharedRoot(stateDir, shared, opts.trustedRoot, opts.repository);
    }
    // From here on, with the client core, this verify is the directory's one writer (the pin's
    // checks and the shared root wrote theirs above): what it reads is remembered, not read again.
    const state: StateFiles = dir !== undefined && core ? new DirectoryState(dir, { cacheReads: true }) : early;
    let tuf: TufResult | undefined;
    let failure: unknown;
    try {
      tuf = await step(`TUF metadata of ${opts.repository}`, () => tufTarget(opts, state, metadata, namespace));
    } catch (error) {
      failure = error;
    }
    // A repository of its own whose newest root (verified by that refresh, whatever it found) hands
    // it over to a namespace: from now on it is verified as a member.
    const moved = namespace === undefined && !deadline?.expired ? await step(`the namespace root that succeeds ${opts.repository}'s`, () => handOff(opts, state, metadata)) : undefined;
    if (moved !== undefined) {
      namespace = moved;
      tuf = await step(`TUF metadata of ${opts.repository}`, () => tufTarget(opts, state, metadata, moved));
    } else if (!tuf) {
      throw failure;
    }
    if (shared !== undefined && stateDir !== undefined) shareRoot(stateDir, shared, opts.trustedRoot, tuf.rootsVerified);
    const target = tuf.target;
    if (!target) {
      throw new VerifyError('NOT_IN_TUF', `tag ${opts.tag} of ${opts.repository} is not signed by any trusted key`, { detail: { repository: opts.repository, tag: opts.tag } });
    }
    const sha = target.hashes['sha256'];
    const mediaType = target.custom['mediaType'];
    if (!sha || typeof mediaType !== 'string') throw new VerifyError('MANIFEST_MISMATCH', `the TUF target ${opts.tag} carries no sha256 or media type`, { detail: {} });
    const digest = `sha256:${sha}`;
    const descriptor = { mediaType, digest, size: target.length };
    const tagged = await tagRead;
    if ('error' in tagged && (!isStorageError(tagged.error) || deadline?.expired)) throw tagged.error;
    const registryTag: VerifiedImage['registryTag'] = 'manifest' in tagged ? { digest: tagged.manifest.digest, agrees: tagged.manifest.digest === digest } : undefined;
    // The manifest TUF names: the one the tag served when it is that digest, a fact this client
    // checked before (content addressing: it cannot have changed), or fetched by its digest.
    if (!facts.hasManifest(descriptor)) {
      let manifest = 'manifest' in tagged && tagged.manifest.digest === digest ? tagged.manifest : undefined;
      if (!manifest) {
        try {
          manifest = await step(`the manifest ${opts.repository}@${digest}`, () => opts.store.getManifest(opts.repository, digest, target.length));
        } catch (cause) {
          throw new VerifyError('MANIFEST_UNAVAILABLE', `the registry does not serve ${opts.repository}@${digest} as TUF names it (${cause instanceof Error ? cause.message : String(cause)})`, { detail: { digest }, cause });
        }
      }
      if (manifest.digest !== digest || manifest.bytes.byteLength !== target.length || manifest.mediaType !== mediaType) {
        throw new VerifyError('MANIFEST_MISMATCH', `${opts.repository}@${digest} does not match its TUF target (size ${manifest.bytes.byteLength} vs ${target.length}, ${manifest.mediaType} vs ${mediaType})`, { detail: { digest } });
      }
      facts.addManifest(descriptor);
    }
    let signers: string[] = [];
    if (policy) {
      const known = facts.signers(digest, policy);
      if (known) signers = known;
      else {
        const early = await signedAsTagged;
        const same = early && early.descriptor.digest === digest && early.descriptor.size === descriptor.size && early.descriptor.mediaType === descriptor.mediaType;
        if (same && 'error' in early) throw early.error;
        signers = same && 'signers' in early ? early.signers : await step(`the signatures of ${digest}`, () => verifySignatures(opts.store, opts.repository, descriptor, policy));
        facts.addSigners(digest, policy, signers);
      }
    }
    if (!ephemeral) facts.save();
    return {
      repository: opts.repository,
      tag: opts.tag,
      digest,
      mediaType,
      size: target.length,
      signers,
      tuf: tuf.versions,
      ...(registryTag ? { registryTag } : {}),
    };
  } catch (error) {
    const passed = deadline?.reason;
    if (passed) {
      const waiting = passed.waitingFor.length ? `; it was waiting for ${passed.waitingFor.join('; ')}` : '';
      throw new VerifyError('TIMEOUT', `verify of ${opts.repository}:${opts.tag} did not finish within ${formatDuration(passed.timeoutMs)}${waiting}`, {
        detail: { repository: opts.repository, tag: opts.tag, timeoutMs: passed.timeoutMs, waitingFor: passed.waitingFor },
        cause: error,
      });
    }
    throw error;
  } finally {
    deadline?.dispose();
    if (ephemeral && dir !== undefined) rmSync(dir, { recursive: true, force: true });
  }
}

/** The namespace a pinned root (vetted strict JSON) makes `repository` a member of, if any. */
function namespaceOfPin(root: Uint8Array, repository: string): string | undefined {
  // A namespace scope ends in "/": without `/"` in the bytes there is none (the common case, no parse).
  if (!Buffer.from(root.buffer, root.byteOffset, root.byteLength).includes('/"')) return undefined;
  const json = parseStrictJson(root, { label: 'the trusted root' }) as { signed?: Record<string, unknown> };
  return json.signed ? namespaceOf(json.signed, repository) : undefined;
}

/** An ephemeral verify's fresh state: the pin as its trusted root, nothing else. */
function seedEphemeral(state: StateFiles, pin: Uint8Array): PinCheck {
  state.write('root.json', pin);
  return { ok: true };
}

/** The namespace the saved state's trusted root makes `repository` a member of (after a hand-off), if any. */
function namespaceOfSaved(state: StateFiles, repository: string): string | undefined {
  try {
    const bytes = state.read('root.json', DEFAULT_ROOT_MAX_BYTES);
    return bytes === undefined ? undefined : namespaceOfPin(bytes, repository);
  } catch {
    return undefined;
  }
}

/**
 * After a refresh of a repository with a root of its own (whatever it found): when the root this
 * client now trusts (verified by that refresh, signed by the repository's root keys) names a successor
 * namespace root (`x-tufoci-successor`, engine/scope.ts), fetch that root from the namespace's
 * anchor, check it is the one named (sha256) and a namespace root covering the repository, and
 * start the state over from it (the pin record keeps the repository's pin: the chain descends
 * from it through the hand-off). Returns the namespace, or undefined when there is no successor.
 */
async function handOff(opts: VerifyImageOptions, state: StateFiles, metadata: MetadataStore): Promise<string | undefined> {
  let successor: Successor | undefined;
  try {
    const trusted = state.read('root.json', DEFAULT_ROOT_MAX_BYTES);
    if (trusted === undefined || !Buffer.from(trusted.buffer, trusted.byteOffset, trusted.byteLength).includes(SUCCESSOR_FIELD)) return undefined; // (the common case, without parsing)
    const json = parseStrictJson(trusted, { label: 'the trusted root' }) as { signed?: Record<string, unknown> };
    successor = json.signed ? successorOf(json.signed, opts.repository) : undefined;
  } catch {
    return undefined;
  }
  if (!successor) return undefined;
  const anchor = namespaceAnchor(successor.namespace);
  const file = `${successor.version}.root.json`;
  const bytes = opts.serviceUrl
    ? await new ServiceFetcher().downloadBytes(`${opts.serviceUrl.replace(/\/+$/, '')}${paths.metadata(anchor, file)}`, DEFAULT_ROOT_MAX_BYTES)
    : await metadata.readMetadata(anchor, file, DEFAULT_ROOT_MAX_BYTES);
  if (sha256Hex(bytes) !== successor.sha256 || namespaceOfPin(bytes, opts.repository) !== successor.namespace) {
    throw new VerifyError('TUF_REFUSED', `${opts.repository}'s root hands it over to namespace ${successor.namespace} root ${successor.version} (sha256 ${successor.sha256.slice(0, 12)}), but ${anchor} serves another file there`, {
      detail: { repository: opts.repository, successor },
    });
  }
  vetRoot('the successor namespace root', bytes, opts.repository);
  for (const name of state.names()) {
    if (name.endsWith('.json') || name === VERIFIED_RECORD_FILE || name === ROOT_WALK_FILE) state.remove(name);
  }
  state.write('root.json', bytes);
  if (opts.stateDir !== undefined) recordVerifiedRoots(opts.stateDir, [bytes]);
  return successor.namespace;
}

/** The refusal of a saved state that does not descend from the pinned root. */
function stateRefusal(opts: VerifyImageOptions, dir: string, check: Exclude<PinCheck, { ok: true }>): VerifyError {
  const { pinned, startedFrom, current } = check;
  const origin = startedFrom
    ? `neither the root this state started from, ${describeRoot(startedFrom)}, nor one it reached from it by a verified rotation${current.sha256 === startedFrom.sha256 ? '' : ` (it trusts ${describeRoot(current)} now)`}`
    : `not the root it trusts, ${describeRoot(current)}, and the state has no record of the root it started from`;
  return new VerifyError(
    'STATE_NOT_FROM_PIN',
    `the saved TUF state of ${opts.repository} in ${dir} does not descend from the pinned root: pinned ${describeRoot(pinned)} is ${origin}; to start over from the pinned root, ${opts.resetHint ? `run: ${opts.resetHint}` : `remove ${dir}`}`,
    { detail: { repository: opts.repository, stateDir: dir, pinned, ...(startedFrom ? { startedFrom } : {}), current } },
  );
}

/** Whether the root this client trusts now (the saved one) names a scope, checked against `repository`. */
function trustedRootScoped(state: StateFiles, repository: string): boolean {
  return vetRoot('the saved trusted root', state.read('root.json', DEFAULT_ROOT_MAX_BYTES) ?? new Uint8Array(0), repository);
}

/** The version of a file the Updater persisted as trusted (its own files, written after verification); 0 if none. */
function versionOf(state: StateFiles, role: string): number {
  try {
    const bytes = state.read(`${role}.json`, role === 'root' ? DEFAULT_ROOT_MAX_BYTES : Number.MAX_SAFE_INTEGER);
    return bytes === undefined ? 0 : (JSON.parse(new TextDecoder().decode(bytes)) as { signed: { version: number } }).signed.version;
  } catch {
    return 0;
  }
}

/**
 * Where this client records that the trusted timestamp was read before a
 * complete root walk (timestamp-first-fetcher.ts): `{"timestamp": <sha256 hex
 * of timestamp.json>, "root": <root version trusted then>}`. Not a `.json`
 * name, so it can never collide with a role file tuf-js persists.
 */
const ROOT_WALK_FILE = '.tufoci-root-walk';

/** A small state file's text, or undefined. */
function readSmall(state: StateFiles, name: string): string | undefined {
  const bytes = state.read(name, 1024);
  return bytes === undefined ? undefined : new TextDecoder().decode(bytes);
}

/** TUF step: refresh the chosen client (the core, or the unmodified tuf-js Updater) and look the tag up. */
async function tufTarget(opts: VerifyImageOptions, state: StateFiles, metadata: MetadataStore, namespace: string | undefined): Promise<TufResult> {
  const targetPath = namespace !== undefined ? `${opts.repository}/${opts.tag}` : opts.tag;
  const urlOf = (repository: string): string =>
    opts.serviceUrl ? `${opts.serviceUrl.replace(/\/+$/, '')}${paths.metadata(repository, '').replace(/\/$/, '')}` : metadataBaseUrl(repository);
  const metadataUrl = urlOf(opts.repository);
  // The timestamp this client already trusts (what the Updater persisted): for conditional reads.
  const trustedTimestamp = (): Uint8Array | undefined => state.read('timestamp.json', DEFAULT_TIMESTAMP_MAX_BYTES);
  // The same bytes, when a complete root walk under the root trusted now started after they were read.
  const coveredTimestamp = (): Uint8Array | undefined => {
    try {
      const text = readSmall(state, ROOT_WALK_FILE);
      if (text === undefined) return undefined;
      const walk = JSON.parse(text) as { timestamp?: unknown; root?: unknown };
      const ts = trustedTimestamp();
      return ts && walk.root === versionOf(state, 'root') && walk.timestamp === sha256Hex(ts) ? ts : undefined;
    } catch {
      return undefined;
    }
  };
  const attempt = async (shortcuts: boolean): Promise<TufResult> => {
    const core = (opts.tufClient ?? 'tufoci') === 'tufoci';
    // The core reads every file strictly and checks each root's scope itself; tuf-js needs the vetter.
    const vet = core ? (namespace !== undefined ? memberVetter(opts.repository, namespace) : undefined) : metadataVetter(opts.repository, trustedRootScoped(state, opts.repository), namespace);
    const options = { trustedTimestamp, coveredTimestamp, shortcuts, ...(vet ? { vet } : {}) };
    // A member's roots are its namespace's, read at the anchor (a migrated member's own URL keeps its own chain).
    const rootsAt = namespace !== undefined ? { rootBaseUrl: urlOf(namespaceAnchor(namespace)) } : {};
    const fetcher: TimestampFirstFetcher = opts.serviceUrl ? new ServiceFetcher({ ...options, ...rootsAt }) : new RegistryFetcher({ metadata, ...options, ...rootsAt });
    let result: TufResult;
    let roots: readonly Uint8Array[];
    try {
      if (core) {
        const updater = new CoreUpdater({
          state,
          metadataBaseUrl: metadataUrl,
          fetcher,
          repository: opts.repository,
          expectedTarget: targetPath, // the roles its lookup reads are requested together
          saveRecord: opts.stateDir !== undefined,
          ...(opts.maxRootRotations !== undefined ? { maxRootRotations: opts.maxRootRotations } : {}),
        });
        await updater.refresh();
        const target = await updater.getTargetInfo(targetPath);
        const set = updater.trusted;
        roots = updater.rootsVerified;
        result = { target, versions: { root: set.root.version, timestamp: set.timestamp?.version ?? 0, snapshot: set.snapshot?.version ?? 0 }, rootsVerified: roots };
      } else {
        const { Updater } = await import('tuf-js'); // only this client loads the Updater
        const updater = new Updater({
          metadataDir: (state as DirectoryState).dir, // the tuf-js Updater has a directory (verifyImage)
          metadataBaseUrl: metadataUrl,
          fetcher,
          ...(opts.maxRootRotations !== undefined ? { config: { maxRootRotations: opts.maxRootRotations } } : {}),
        });
        await updater.refresh();
        const target = await updater.getTargetInfo(targetPath);
        roots = fetcher.rootsFetched;
        result = { target, versions: { root: versionOf(state, 'root'), timestamp: versionOf(state, 'timestamp'), snapshot: versionOf(state, 'snapshot') }, rootsVerified: roots };
      }
    } catch (cause) {
      // A refresh that skipped a root probe on a hint and then failed is repeated the
      // standard way (every probe sent): a hint can never be why a client is stuck.
      if (shortcuts && fetcher.shortcutsTaken > 0) return attempt(false);
      // A delegated role the trusted snapshot does not list (a hash bin nobody published into
      // yet) holds no tag: no trusted metadata names this one.
      // (The core says so by code; tuf-js's store by this message.)
      const role =
        cause instanceof CoreError && cause.code === 'MISSING' && typeof cause.detail['role'] === 'string'
          ? cause.detail['role']
          : /^Missing (\S+)\.json in snapshot$/.exec(cause instanceof Error ? cause.message : '')?.[1];
      if (role !== undefined && role !== 'targets') {
        throw new VerifyError('NOT_IN_TUF', `tag ${opts.tag} of ${opts.repository} is not signed by any trusted key (the role it would be in, ${role}, has no metadata yet)`, {
          detail: { repository: opts.repository, tag: opts.tag, role },
          cause,
        });
      }
      throw new VerifyError('TUF_REFUSED', `TUF metadata of ${opts.repository} refused: ${describeTufError(cause)}`, { detail: { repository: opts.repository }, cause });
    }
    // Nor why a tag is not found: a repository whose own chain goes on to a root the hint hid (one
    // handing it over to a namespace, whose timestamps name the namespace's root version) is
    // looked at again with every probe sent.
    if (!result.target && shortcuts && fetcher.shortcutsTaken > 0 && namespace === undefined) return attempt(false);
    // The refresh succeeded, so the client verified every root it was handed: they descend from the pin.
    try {
      if (opts.stateDir !== undefined) recordVerifiedRoots(opts.stateDir, roots);
    } catch {
      // without the record, re-pinning to these roots is refused (safe) until the next run records them
    }
    const walked = fetcher.completedWalk;
    const trusted = trustedTimestamp();
    try {
      if (opts.stateDir === undefined) {
        // ephemeral: no next run to skip a root probe
      } else if (walked && trusted && Buffer.from(walked).equals(Buffer.from(trusted))) {
        const record = JSON.stringify({ timestamp: sha256Hex(trusted), root: result.versions.root });
        if (readSmall(state, ROOT_WALK_FILE) !== record) state.write(ROOT_WALK_FILE, record);
      } else {
        state.remove(ROOT_WALK_FILE);
      }
    } catch {
      // only an optimisation: without the record the next run probes for roots
    }
    return result;
  };
  return attempt(true);
}

/** tuf-js error → a sentence a person understands. */
function describeTufError(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  const name = e instanceof Error ? e.constructor.name : '';
  const m = /New (\w+) version (\d+) is less than current version (\d+)/.exec(msg) ?? /(\w+) version (\d+) is less than current version (\d+)/i.exec(msg);
  if (m) return `the store serves ${m[1]?.toLowerCase()} ${m[2]}, the client already trusts ${m[3]} (rollback)`;
  if (name === 'ExpiredMetadataError' || /expired/i.test(msg)) return `${msg} (freeze: metadata past its expiry)`;
  // tuf-js's own words stay in the message (tests and logs match them); a reader gets the meaning first.
  const sig = /(\S+) was signed by (\d+)\/(\d+) keys/.exec(msg);
  if (sig) {
    return `${sig[1]} is signed by ${sig[2]} of the ${sig[3]} key(s) the trusted metadata requires: forged, from another repository, or signed by a revoked key [${msg}]`;
  }
  if (/Expected (length|hash)|hash mismatch/i.test(msg)) return `a file does not match the length or hash its trusted parent pins (mix-and-match or tampering) [${msg}]`;
  return msg;
}
