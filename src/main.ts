/**
 * The composition root: builds store, coordinator, online signers, policy,
 * auth, logger and metrics, hands them to the service and the Koa app, and
 * runs the refresh scheduler. `tufoci serve` calls `startServer`; tests call
 * it too (in-process) or spawn the CLI (multi-instance).
 */
import { mkdir } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { join, resolve } from 'node:path';
import { pino, type Logger as PinoLogger } from 'pino';
import { Histogram, type Registry } from 'prom-client';
import { InProcessCoordinator, RedisCoordinator, type Coordinator } from './coord/index.ts';
import { defaultPolicyPath, loadPolicyFile, type Policy } from './policy/policy.ts';
import { createApp } from './service/app.ts';
import { withFastReads } from './service/fast-read.ts';
import { attachFastFront, type FastFront } from './service/fast-front.ts';
import { TokenAuth, loadTokens } from './service/auth.ts';
import { createMetrics } from './service/metrics.ts';
import { OnlineKeyring } from './keys/online-keyring.ts';
import { RepositoryService, type OnlineSigners } from './service/repository-service.ts';
import { MetadataStore, OciLayoutStore, RegistryStore, type Store } from './storage/index.ts';

export interface ServeOptions {
  /** Data directory (OCI layout, generated keys, admin token). Default ./data. */
  dataDir?: string;
  host?: string;
  /** 0 picks a free port. Default 8080. */
  port?: number;
  /** Registry base URL; default: the OCI layout under dataDir. */
  registry?: string;
  registryUsername?: string;
  registryPassword?: string;
  /** Redis URL; default: in-process coordination. */
  redis?: string;
  redisPrefix?: string;
  policyFile?: string;
  tokensFile?: string;
  tokensEnv?: string;
  publicRead?: boolean;
  refreshTickMs?: number;
  logLevel?: string;
  /** Injected clock (tests); default Date.now. */
  clock?: () => number;
  /** Injected online signers (KMS/HSM, tests); default key files under dataDir/keys. */
  signers?: OnlineSigners;
  logger?: PinoLogger;
  /** How long a request body may take to arrive (default 30 s): 408 BODY_TIMEOUT after. */
  bodyTimeoutMs?: number;
  /** Bytes of metadata the head cache holds (default 256 MiB). */
  cacheBytes?: number;
}

export interface RunningServer {
  url: string;
  server: Server;
  /** The connection-level read front in front of `server` (src/service/fast-front.ts). */
  fastFront: FastFront;
  service: RepositoryService;
  coord: Coordinator;
  store: Store;
  policy: Policy;
  /** Stop accepting requests, finish in-flight writes, release locks, close connections. */
  close(): Promise<void>;
}

/** A histogram of a backend's calls (what the checked store and coordinator wrappers observe). */
function backendCalls(registry: Registry, name: string, help: string): (call: { backend: string; operation: string; outcome: string; seconds: number }) => void {
  const histogram = new Histogram({
    name,
    help,
    labelNames: ['backend', 'operation', 'outcome'],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [registry],
  });
  return (call) => histogram.observe({ backend: call.backend, operation: call.operation, outcome: call.outcome }, call.seconds);
}

export async function startServer(opts: ServeOptions = {}): Promise<RunningServer> {
  const dataDir = resolve(opts.dataDir ?? 'data');
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const logger =
    opts.logger ??
    pino({
      level: opts.logLevel ?? process.env['TUFOCI_LOG_LEVEL'] ?? 'info',
      redact: { paths: ['req.headers.authorization', 'token', '*.token', 'password', '*.password'], censor: '[redacted]' },
    });
  const clock = opts.clock ?? Date.now;
  const policy = await loadPolicyFile(opts.policyFile ?? defaultPolicyPath());

  // The service's expiries are read only when /metrics is scraped, after `service` exists.
  const metrics = createMetrics(() => service.expiries());
  const storeCalls = { observe: backendCalls(metrics.registry, 'tufoci_storage_call_duration_seconds', 'Storage backend calls by operation and outcome (error code or "ok")') };
  const coordCalls = { observe: backendCalls(metrics.registry, 'tufoci_coordinator_call_duration_seconds', 'Coordinator calls by operation and outcome (error code or "ok")') };

  const store: Store = opts.registry
    ? new RegistryStore({
        url: opts.registry,
        ...(opts.registryUsername !== undefined ? { credentials: { username: opts.registryUsername, password: opts.registryPassword ?? '' } } : {}),
        ...storeCalls,
      })
    : new OciLayoutStore({ root: join(dataDir, 'oci'), ...storeCalls });
  const metadata = new MetadataStore({ store });
  const coord: Coordinator = opts.redis
    ? new RedisCoordinator({ url: opts.redis, ...(opts.redisPrefix ? { keyPrefix: opts.redisPrefix } : {}), ...coordCalls })
    : new InProcessCoordinator({ now: clock, ...coordCalls });

  let keyring: OnlineKeyring;
  if (opts.signers) {
    keyring = OnlineKeyring.fromSigners(opts.signers, clock);
  } else {
    const env = (name: string): string | undefined => process.env[name] || undefined;
    const paths = { snapshot: env('TUFOCI_SNAPSHOT_KEY'), timestamp: env('TUFOCI_TIMESTAMP_KEY'), ci: env('TUFOCI_CI_KEY') };
    keyring = await OnlineKeyring.open({
      dir: join(dataDir, 'keys'),
      paths: Object.fromEntries(Object.entries(paths).filter(([, v]) => v !== undefined)) as Record<string, string>,
      now: clock,
    });
    for (const path of keyring.generated) logger.info({ path }, 'generated an online key (mode 0600)');
  }
  const { tokens, generatedAdminToken } = await loadTokens({
    dataDir,
    ...(opts.tokensFile ? { file: opts.tokensFile } : {}),
    ...(opts.tokensEnv ? { env: opts.tokensEnv } : {}),
  });
  if (generatedAdminToken) logger.info({ path: generatedAdminToken }, 'generated an admin token (mode 0600); send it as "Authorization: Bearer <token>"');
  const auth = new TokenAuth(tokens, opts.publicRead ?? true);

  const service = new RepositoryService({ metadata, coord, keyring, policy, clock, logger, ...(opts.cacheBytes !== undefined ? { cacheBytes: opts.cacheBytes } : {}) });
  const app = createApp({
    service,
    auth,
    logger,
    metrics,
    ready: async () => {
      await store.ping();
      await coord.ping();
    },
    ...(opts.bodyTimeoutMs !== undefined ? { bodyTimeoutMs: opts.bodyTimeoutMs } : {}),
  });

  // Put every stored repository on the refresh schedule (the coordinator may be new or wiped).
  const tracking = metadata
    .listRepositories()
    .then((repos) => Promise.all(repos.map((r) => service.track(r).catch((err: unknown) => logger.warn({ repository: r, err }, 'repository not tracked')))))
    .catch((err: unknown) => logger.warn({ err }, 'could not list stored repositories; refresh starts with the next write to each'));

  // Refresh scheduler: every instance ticks; the coordinator hands each due repository to exactly one.
  let ticking: Promise<unknown> = Promise.resolve();
  const tick = setInterval(() => {
    ticking = service.refreshDue().catch((err: unknown) => logger.error({ err }, 'refresh tick failed'));
  }, opts.refreshTickMs ?? 5_000);
  tick.unref();

  // Reads of cached metadata are answered per connection by the front; whatever it does not answer goes,
  // with the rest of its connection, to node:http: withFastReads, then Koa.
  const server = createServer(withFastReads({ service, auth, metrics }, app.callback()));
  const fastFront = attachFastFront(server, { service, auth, metrics });
  server.listen(opts.port ?? 8080, opts.host ?? '127.0.0.1');
  await new Promise<void>((res, rej) => {
    server.once('listening', res);
    server.once('error', rej);
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : opts.port;
  const url = `http://${opts.host ?? '127.0.0.1'}:${port}`;
  logger.info({ url, storage: opts.registry ?? join(dataDir, 'oci'), coordination: opts.redis ? 'redis' : 'in-process' }, 'tufoci serving');

  let closed = false;
  return {
    url,
    server,
    fastFront,
    service,
    coord,
    store,
    policy,
    async close() {
      if (closed) return;
      closed = true;
      clearInterval(tick);
      const stopped = new Promise<void>((res) => server.close(() => res()));
      server.closeIdleConnections();
      await service.close();
      await ticking;
      await tracking;
      await coord.close();
      await stopped;
    },
  };
}
