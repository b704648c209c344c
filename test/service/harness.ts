/**
 * A service under test: memory store, in-process coordination, in-memory
 * online signers, the default policy, an admin and a scoped CI token — and a
 * SimRepo-like owner who signs root/targets/ci offline.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { Updater } from 'tuf-js';
import { InProcessCoordinator, type Coordinator } from '../../src/coord/index.ts';
import { buildRoot, buildTargets, isoExpiry, signMetadata, type ImageTarget, type TargetsSpec } from '../../src/engine/index.ts';
import { InMemorySigner } from '../../src/keys/index.ts';
import { createApp } from '../../src/service/app.ts';
import { TokenAuth, parseTokens } from '../../src/service/auth.ts';
import { createMetrics } from '../../src/service/metrics.ts';
import { RepositoryService } from '../../src/service/repository-service.ts';
import { MemoryStore, MetadataStore, type Store } from '../../src/storage/index.ts';
import { policy } from '../support/engine-repo.ts';
import { inject, type Injected } from '../support/inject.ts';

export const ADMIN = 'admin-token-0123456789abcdef';
export const CI = 'ci-token-0123456789abcdef012';
export const OTHER = 'other-token-0123456789abcdef';

export class ServiceHarness {
  now = Math.floor(Date.now() / 1000) * 1000;
  readonly store: Store;
  readonly metadata: MetadataStore;
  readonly coord: Coordinator;
  readonly online = { snapshot: InMemorySigner.generate(), timestamp: InMemorySigner.generate(), ci: InMemorySigner.generate() };
  readonly owner = { root: InMemorySigner.generate(), targets: InMemorySigner.generate() };
  readonly ci = InMemorySigner.generate();
  readonly service: RepositoryService;
  readonly app: ReturnType<typeof createApp>;
  readonly handler: ReturnType<ReturnType<typeof createApp>['callback']>;

  constructor(store: Store = new MemoryStore(), opts: { bodyTimeoutMs?: number; memberSyncWaitMs?: number } = {}) {
    this.store = store;
    this.metadata = new MetadataStore({ store });
    this.coord = new InProcessCoordinator({ now: () => this.now });
    const logger = pino({ level: 'silent' });
    this.service = new RepositoryService({
      metadata: this.metadata,
      coord: this.coord,
      signers: { snapshot: [this.online.snapshot], timestamp: [this.online.timestamp], ci: [this.online.ci] },
      policy,
      clock: () => this.now,
      logger,
      lockWaitMs: 50,
      ...(opts.memberSyncWaitMs !== undefined ? { memberSyncWaitMs: opts.memberSyncWaitMs } : {}),
    });
    const auth = new TokenAuth(
      parseTokens(
        [
          { name: 'admin', token: ADMIN, scopes: ['admin'] },
          { name: 'ci', token: CI, scopes: ['write:wabbit-networks/*'] },
          { name: 'other', token: OTHER, scopes: ['write:acme-rockets/*'] },
        ],
        'test',
      ),
    );
    const { memberSyncWaitMs: _, ...appOpts } = opts;
    this.app = createApp({ service: this.service, auth, logger, metrics: createMetrics(() => this.service.expiries()), ready: async () => undefined, maxBodyBytes: 1024 * 1024, ...appOpts });
    this.handler = this.app.callback();
  }

  expires(days: number): string {
    return isoExpiry(this.now + days * 86_400_000);
  }

  request(method: string, url: string, opts: { token?: string; body?: Uint8Array | string; headers?: Record<string, string> } = {}): Promise<Injected> {
    const headers: Record<string, string> = { ...(opts.headers ?? {}) };
    if (opts.token) headers['authorization'] = `Bearer ${opts.token}`;
    if (opts.body !== undefined && !headers['content-type']) headers['content-type'] = 'application/json';
    return inject(this.handler, { method, url, headers, ...(opts.body !== undefined ? { body: opts.body } : {}) });
  }

  async rootBytes(version = 1, signers = [this.owner.root], repo = 'wabbit-networks/net-monitor'): Promise<Uint8Array> {
    return signMetadata(
      buildRoot({
        version,
        expires: this.expires(365),
        root: { keys: [this.owner.root.public], threshold: 1 },
        targets: { keys: [this.owner.targets.public], threshold: 1 },
        snapshot: { keys: [this.online.snapshot.public], threshold: 1 },
        timestamp: { keys: [this.online.timestamp.public], threshold: 1 },
        scope: repo,
      }),
      signers,
    );
  }

  async targetsBytes(spec: Partial<TargetsSpec> & { version: number }, signers: InMemorySigner[] = [this.owner.targets]): Promise<Uint8Array> {
    return signMetadata(buildTargets({ expires: this.expires(30), ...spec }), signers);
  }

  async ciBytes(version: number, targets: Record<string, ImageTarget>, signers: InMemorySigner[] = [this.ci]): Promise<Uint8Array> {
    return this.targetsBytes({ version, targets }, signers);
  }

  async createBody(repo = 'wabbit-networks/net-monitor'): Promise<string> {
    const root = JSON.parse(new TextDecoder().decode(await this.rootBytes(1, [this.owner.root], repo)));
    const targets = JSON.parse(
      new TextDecoder().decode(
        await this.targetsBytes({ version: 1, delegations: [{ name: 'ci', keys: [this.ci.public], threshold: 1, paths: ['v*'], terminating: true }] }),
      ),
    );
    return JSON.stringify({ root, targets });
  }

  async create(repo = 'wabbit-networks/net-monitor'): Promise<Injected> {
    return this.request('POST', `/v1/repos/${repo}`, { token: ADMIN, body: await this.createBody(repo) });
  }

  /**
   * Top-level targets v2: `ci` (v*) to the owner's CI key as created, plus `release` (r*) delegated
   * to the service's CI key (service-held), and `r-owner` listed by targets itself.
   */
  async delegateRelease(repo = 'wabbit-networks/net-monitor'): Promise<Injected> {
    const targets2 = await this.targetsBytes({
      version: 2,
      targets: { 'r-owner': { digest: `sha256:${'9'.repeat(64)}`, size: 1009, mediaType: 'application/vnd.oci.image.manifest.v1+json' } },
      delegations: [
        { name: 'ci', keys: [this.ci.public], threshold: 1, paths: ['v*'], terminating: true },
        { name: 'release', keys: [this.online.ci.public], threshold: 1, paths: ['r*'] },
      ],
    });
    return this.request('PUT', `/v1/repos/${repo}/metadata/2.targets.json`, { token: ADMIN, body: targets2 });
  }

  /**
   * The unmodified tuf-js Updater, trusting 1.root.json, over HTTP from this service (a server on
   * a free loopback port for the duration of `fn`).
   */
  async withUpdater<T>(fn: (updater: Updater) => Promise<T>, repo = 'wabbit-networks/net-monitor'): Promise<T> {
    const server = createServer(this.handler);
    await new Promise<void>((res) => server.listen(0, '127.0.0.1', res));
    try {
      const port = (server.address() as { port: number }).port;
      const dir = mkdtempSync(join(tmpdir(), 'tufoci-updater-'));
      writeFileSync(join(dir, 'root.json'), await this.rootBytes());
      return await fn(new Updater({ metadataDir: dir, metadataBaseUrl: `http://127.0.0.1:${port}/v1/repos/${repo}/metadata` }));
    } finally {
      server.close();
    }
  }

  async timestampVersion(repo = 'wabbit-networks/net-monitor'): Promise<number> {
    const r = await this.request('GET', `/v1/repos/${repo}/metadata/timestamp.json`);
    return r.status === 200 ? (r.json<{ signed: { version: number } }>().signed.version) : 0;
  }
}
