/**
 * The part of tufoci's tuf-js Fetchers that saves requests: the timestamp is
 * read *before* the root walk, and a root probe (`<N+1>.root.json`) is
 * answered "not found" without a request when what came with that timestamp
 * says there is no such root. A warm client whose timestamp did not change
 * then makes exactly one metadata request per refresh.
 *
 * The unmodified tuf-js Updater asks, in this order, for `<N+1>.root.json`
 * (walking on while roots are found), then `timestamp.json`, then snapshot
 * and targets (from its own directory when they are still current). Here:
 *
 * 1. At the first root probe of a walk, the subclass reads the timestamp
 *    (conditionally where the transport can: the service answers 304 to a
 *    matching `If-None-Match`; a registry manifest names the layer digest, so
 *    known bytes are not downloaded again) and returns it with the root
 *    version the server says is current, if it says one (`rootVersion`).
 * 2. The probe for root version v goes to the network unless
 *    - the server named a root version R and v > R, or
 *    - it named none, and the timestamp equals `coveredTimestamp`: one the
 *      caller has seen a *complete* root walk (ended by not-found) start
 *      after, under the root it trusts now (`completedWalk` reports it).
 *    Otherwise it is answered as a 404, what a server without that root says.
 * 3. When tuf-js then asks for `timestamp.json`, it gets the bytes read in
 *    step 1 (once), and verifies them as usual.
 *
 * Why this loses no security (docs/ARCHITECTURE.md, "Client fetch
 * efficiency"): the hint can only make the client skip a root file, which an
 * attacker on the network can already do by answering 404; or make it fetch
 * one, which tuf-js verifies. Every byte handed to tuf-js is verified by
 * tuf-js as before. Reading the timestamp before the walk is what makes an
 * unchanged timestamp meaningful: writers put the timestamp last, so every
 * root written before a timestamp is found by a walk that starts after it was
 * read; as long as that timestamp stays current, no walk can find more
 * (except a root published without a new timestamp, which the next timestamp
 * then brings in).
 *
 * Liveness: a caller that sees a refresh fail after a shortcut was taken
 * (`shortcutsTaken > 0`) should repeat it with `shortcuts: false`
 * (verify-image.ts does): every probe then goes to the network, as in the
 * standard flow.
 */
// tuf-js's error module alone (it requires nothing): the unmodified Updater recognises "no such
// file" by its DownloadHTTPError class. Its BaseFetcher is not used: it loads debug and a temp-file
// helper, and reads every file through a temporary file; `downloadFile` below does what tuf-js's
// Fetcher interface asks with the bytes in hand.
import * as fs from 'node:fs'; // fs.promises on use: node:fs/promises costs start-up time when imported
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DownloadHTTPError } from 'tuf-js/dist/error.js';

/** tuf-js's default `timestampMaxLength`: the bound for a timestamp read ahead of time. */
export const DEFAULT_TIMESTAMP_MAX_BYTES = 16_384;

export interface FetchedTimestamp {
  /** The timestamp bytes, to be handed to tuf-js unchanged. */
  bytes: Uint8Array;
  /** The root version the server says is current (a hint; never trusted for anything else). */
  rootVersion?: number;
}

export interface TimestampFirstOptions {
  /**
   * The timestamp the client already trusts (the Updater's `timestamp.json`
   * in its metadata directory), if any: used for conditional requests (the
   * bytes of a 304, or of a registry layer with the same digest). tuf-js
   * verifies them again like any other bytes.
   */
  trustedTimestamp?: () => Uint8Array | undefined | Promise<Uint8Array | undefined>;
  /**
   * A timestamp after whose reading a complete root walk (one that ended with
   * not-found) found no root above the one the client trusts now; see
   * `completedWalk`. While the server still serves exactly these bytes and
   * names no root version, root probes are skipped.
   */
  coveredTimestamp?: () => Uint8Array | undefined | Promise<Uint8Array | undefined>;
  /** Answer root probes from the hint (default true); false sends every probe to the network. */
  shortcuts?: boolean;
  /** Checks on every metadata file's bytes before tuf-js reads them (throws to refuse). */
  vet?: (fileName: string, bytes: Uint8Array) => void;
  /**
   * Where root files are read (a metadata base URL of the same scheme), when not beside the other
   * files: a namespace member's roots are its namespace's, at the anchor (engine/scope.ts).
   */
  rootBaseUrl?: string;
  /** Bound for the timestamp read ahead of tuf-js asking for it (default tuf-js's 16 KiB). */
  timestampMaxBytes?: number;
}

const ROOT_FILE = /^([1-9][0-9]{0,15})\.root\.json$/;

/** Split a metadata URL at its last slash: the base URL and the (decoded) file name. */
export function splitMetadataUrl(url: string): { base: string; fileName: string } {
  const slash = url.lastIndexOf('/');
  let fileName = url.slice(slash + 1);
  try {
    fileName = decodeURIComponent(fileName);
  } catch {
    // left as is: the subclass refuses it
  }
  return { base: url.slice(0, slash), fileName };
}

/** A positive safe integer from a header/annotation value, else undefined (hints are parsed strictly). */
export function parseVersionHint(value: string | null | undefined): number | undefined {
  if (typeof value !== 'string' || !/^[1-9][0-9]{0,15}$/.test(value)) return undefined;
  const n = Number(value);
  return Number.isSafeInteger(n) ? n : undefined;
}

export function notFound(message: string, cause?: unknown): DownloadHTTPError {
  const error = new DownloadHTTPError(message, 404);
  if (cause !== undefined) error.cause = cause;
  return error;
}

function toBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

interface Walk {
  base: string;
  timestamp: FetchedTimestamp;
  /** The bytes equal `coveredTimestamp`. */
  covered: boolean;
  /** The root version tuf-js asks for next if it continues this walk; 0 once the walk ended. */
  nextProbe: number;
  /** The walk ended with "not found" (from the network or a justified shortcut). */
  complete: boolean;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.byteLength === b.byteLength && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

export abstract class TimestampFirstFetcher {
  readonly #trusted: TimestampFirstOptions['trustedTimestamp'];
  readonly #covered: TimestampFirstOptions['coveredTimestamp'];
  readonly #shortcuts: boolean;
  readonly #timestampMax: number;
  readonly #vet: TimestampFirstOptions['vet'];
  readonly #rootBase: string | undefined;
  #walk: Walk | undefined;
  /** Root probes answered "not found" from a hint, without a request. */
  shortcutsTaken = 0;
  /**
   * The timestamp last handed to tuf-js, when it had been read before a root
   * walk that then ended with not-found: after a successful refresh that left
   * these bytes as the trusted timestamp, the caller may offer them as
   * `coveredTimestamp` next time (with the root version trusted now).
   */
  completedWalk: Uint8Array | undefined;
  /**
   * Every `<N>.root.json` handed to tuf-js, in order. tuf-js verifies each
   * before asking for the next: once a refresh succeeded, these are roots
   * reached by verified rotations (verify-image.ts records them).
   */
  readonly rootsFetched: Uint8Array[] = [];

  constructor(options: TimestampFirstOptions = {}) {
    this.#trusted = options.trustedTimestamp;
    this.#covered = options.coveredTimestamp;
    this.#shortcuts = options.shortcuts ?? true;
    this.#timestampMax = options.timestampMaxBytes ?? DEFAULT_TIMESTAMP_MAX_BYTES;
    this.#vet = options.vet;
    this.#rootBase = options.rootBaseUrl?.replace(/\/+$/, '');
  }

  /** Read `timestamp.json` at `url` (at most `maxLength` bytes), comparing with `trusted`. */
  protected abstract readTimestamp(url: string, maxLength: number, trusted: Uint8Array | undefined): Promise<FetchedTimestamp>;
  /** Read any metadata file at `url` (at most `maxLength` bytes); a missing file is DownloadHTTPError 404. */
  protected abstract readFile(url: string, maxLength: number): Promise<Uint8Array>;

  async #local(read: TimestampFirstOptions['trustedTimestamp']): Promise<Uint8Array | undefined> {
    try {
      const bytes = await read?.();
      return bytes && bytes.byteLength <= this.#timestampMax ? bytes : undefined;
    } catch {
      return undefined; // no usable cache: behave as a cold client
    }
  }

  /**
   * Every metadata file goes through `vet` (when given) before tuf-js sees it: the caller's checks
   * on bytes as served (strict JSON, calendar dates, the root's scope). A refusal throws there.
   */
  async downloadBytes(url: string, maxLength: number): Promise<Buffer> {
    const bytes = await this.#downloadUnvetted(url, maxLength);
    const { fileName } = splitMetadataUrl(url);
    this.#vet?.(fileName, bytes);
    if (ROOT_FILE.test(fileName)) this.rootsFetched.push(bytes);
    return bytes;
  }

  async #downloadUnvetted(url: string, maxLength: number): Promise<Buffer> {
    const { base, fileName } = splitMetadataUrl(url);
    const root = ROOT_FILE.exec(fileName);
    if (root) return toBuffer(await this.#rootProbe(this.#rootBase !== undefined ? `${this.#rootBase}/${fileName}` : url, base, Number(root[1]), maxLength));
    const walk = this.#walk;
    this.#walk = undefined;
    if (fileName === 'timestamp.json') {
      this.completedWalk = undefined;
      // (Above tuf-js's bound, read again with it: the subclass reports the error as usual.)
      if (walk && walk.base === base && walk.timestamp.bytes.byteLength <= maxLength) {
        if (walk.complete) this.completedWalk = walk.timestamp.bytes;
        return toBuffer(walk.timestamp.bytes);
      }
      return toBuffer((await this.readTimestamp(url, maxLength, await this.#local(this.#trusted))).bytes);
    }
    return toBuffer(await this.readFile(url, maxLength));
  }

  async #rootProbe(url: string, base: string, version: number, maxLength: number): Promise<Uint8Array> {
    let walk = this.#walk;
    if (!walk || walk.base !== base || walk.nextProbe !== version) {
      // A new walk: read the timestamp first. If that fails, fall back to the
      // standard order (probe now, timestamp when tuf-js asks) so errors show
      // up where tuf-js expects them.
      this.#walk = undefined;
      try {
        const timestamp = await this.readTimestamp(`${base}/timestamp.json`, this.#timestampMax, await this.#local(this.#trusted));
        const covered = await this.#local(this.#covered);
        walk = { base, timestamp, covered: covered !== undefined && sameBytes(covered, timestamp.bytes), nextProbe: version, complete: false };
        this.#walk = walk;
      } catch {
        return this.readFile(url, maxLength);
      }
    }
    const { rootVersion } = walk.timestamp;
    const mayExist = rootVersion !== undefined ? version <= rootVersion : !walk.covered;
    walk.nextProbe = 0;
    if (this.#shortcuts && !mayExist) {
      this.shortcutsTaken++;
      walk.complete = true;
      throw notFound(`${version}.root.json: ${rootVersion !== undefined ? `the server's current root is version ${rootVersion}` : 'the timestamp has not changed since the last complete root walk'} (no request made)`);
    }
    try {
      const bytes = await this.readFile(url, maxLength);
      walk.nextProbe = version + 1;
      return bytes;
    } catch (error) {
      if (error instanceof DownloadHTTPError && (error.statusCode === 404 || error.statusCode === 403)) walk.complete = true;
      throw error;
    }
  }

  /**
   * tuf-js's `Fetcher.downloadFile` (targets): the bytes, bounded by `maxLength` as they are read,
   * in a temporary file (mode 0600) for `handler`, removed after it returns.
   */
  async downloadFile<T>(url: string, maxLength: number, handler: (file: string) => Promise<T>): Promise<T> {
    const bytes = await this.readFile(url, maxLength);
    const dir = await fs.promises.mkdtemp(join(tmpdir(), 'tufoci-download-'));
    try {
      const file = join(dir, 'file');
      await fs.promises.writeFile(file, bytes, { mode: 0o600 });
      return await handler(file);
    } finally {
      await fs.promises.rm(dir, { recursive: true, force: true });
    }
  }
}
