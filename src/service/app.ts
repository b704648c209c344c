/**
 * The Koa app. `createApp(deps)` builds it from its dependencies; nothing is
 * read from ctx.state. Handlers parse, call the service, serialize; every
 * error becomes `{"error": {"code", "message", "detail"}}` in one middleware
 * using the table in errors.ts.
 */
import { randomUUID } from 'node:crypto';
import Koa from 'koa';
import Router from '@koa/router';
import { TufociError } from '../errors.ts';
import { computeKeyId } from '../keys/tuf-key.ts';
import type { TokenAuth } from './auth.ts';
import { ServiceError, httpStatusOf } from './errors.ts';
import type { Metrics } from './metrics.ts';
import type { Logger, RepositoryService } from './repository-service.ts';

export interface AppDeps {
  service: RepositoryService;
  auth: TokenAuth;
  logger: Logger & { debug?(obj: object, msg?: string): void };
  metrics: Metrics;
  /** Resolves when storage and coordination are reachable. */
  ready: () => Promise<void>;
  /** Max request body for uploads (default: the largest role maxBytes + 64 KiB). */
  maxBodyBytes?: number;
  /** max-age of timestamp.json responses, seconds (default 10). */
  timestampMaxAge?: number;
}

async function readBody(ctx: Koa.Context, limit: number): Promise<Uint8Array> {
  const declared = Number(ctx.get('content-length') || '0');
  if (declared > limit) throw new ServiceError('BODY_TOO_LARGE', `request body of ${declared} bytes is above the limit of ${limit}`, { detail: { limit } });
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of ctx.req) {
    size += (chunk as Buffer).byteLength;
    if (size > limit) {
      ctx.req.destroy();
      throw new ServiceError('BODY_TOO_LARGE', `request body is above the limit of ${limit} bytes`, { detail: { limit } });
    }
    chunks.push(chunk as Buffer);
  }
  return new Uint8Array(Buffer.concat(chunks, size));
}

function jsonOnly(ctx: Koa.Context): void {
  const type = ctx.get('content-type');
  if (type && !/^application\/(json|octet-stream)\b/i.test(type)) {
    throw new ServiceError('UNSUPPORTED_MEDIA_TYPE', `send application/json, not ${type.slice(0, 60)}`, { detail: { contentType: type.slice(0, 100) } });
  }
}

const encoder = new TextEncoder();

export function createApp(deps: AppDeps): Koa {
  const { service, auth, logger, metrics } = deps;
  const policy = service.policy;
  const maxRole = Math.max(...Object.values(policy.roles).map((r) => r.maxBytes));
  const maxBody = deps.maxBodyBytes ?? 2 * maxRole + 64 * 1024;
  const tsMaxAge = deps.timestampMaxAge ?? 10;
  const app = new Koa({ proxy: false });
  const router = new Router();

  // Errors → JSON, request ids, metrics. One middleware, one table.
  app.use(async (ctx, next) => {
    const started = process.hrtime.bigint();
    const requestId = (ctx.get('x-request-id') || randomUUID()).slice(0, 64);
    ctx.set('X-Request-Id', requestId);
    try {
      await next();
      if (ctx.status === 404 && ctx.body === undefined) {
        throw new ServiceError('NOT_FOUND', `no route for ${ctx.method} ${ctx.path.slice(0, 200)}`, { detail: { path: ctx.path.slice(0, 200) } });
      }
    } catch (error) {
      const status = httpStatusOf(error);
      ctx.status = status;
      if (error instanceof TufociError && status < 500) {
        ctx.body = { error: error.toJSON() };
        if (error.code === 'BUSY') ctx.set('Retry-After', String((error.detail['retryAfterSeconds'] as number | undefined) ?? 1));
      } else if (error instanceof TufociError) {
        ctx.body = { error: error.toJSON() };
        logger.error({ requestId, err: error, code: error.code }, 'request failed');
      } else {
        ctx.body = { error: { code: 'INTERNAL', message: 'internal error', detail: { requestId } } };
        logger.error({ requestId, err: error }, 'unexpected error');
      }
    } finally {
      const route = String((ctx as Koa.Context & { _matchedRoute?: unknown })._matchedRoute ?? 'unmatched');
      metrics.requests.inc({ method: ctx.method, route, status: String(ctx.status) });
      metrics.latency.observe({ method: ctx.method, route }, Number(process.hrtime.bigint() - started) / 1e9);
    }
  });

  router.get('/healthz', (ctx) => {
    ctx.body = { ok: true };
  });

  router.get('/readyz', async (ctx) => {
    try {
      await deps.ready();
      ctx.body = { ready: true };
    } catch (error) {
      ctx.status = 503;
      ctx.body = { error: { code: 'NOT_READY', message: 'storage or coordination unreachable', detail: { cause: error instanceof TufociError ? error.code : 'unknown' } } };
    }
  });

  router.get('/metrics', async (ctx) => {
    ctx.type = metrics.registry.contentType;
    ctx.body = await metrics.registry.metrics();
  });

  router.get('/v1/online-keys', (ctx) => {
    const keys = service.onlineKeys();
    ctx.body = {
      snapshot: keys.snapshot.map((k) => ({ keyid: computeKeyId(k), key: k })),
      timestamp: keys.timestamp.map((k) => ({ keyid: computeKeyId(k), key: k })),
    };
  });

  router.get('/v1/repos', async (ctx) => {
    auth.authorize(ctx.get('authorization') || undefined, 'read', '*');
    ctx.body = { repositories: await service.repositories() };
  });

  router.get('/v1/repos/*repo/metadata/:file', async (ctx) => {
    const repo = ctx.params['repo'] as string;
    auth.authorize(ctx.get('authorization') || undefined, 'read', repo);
    const file = await service.read(repo, ctx.params['file'] as string);
    ctx.set('ETag', file.etag);
    ctx.set('Cache-Control', file.immutable ? 'public, max-age=31536000, immutable' : `public, max-age=${tsMaxAge}`);
    if (ctx.get('if-none-match') === file.etag) {
      ctx.status = 304;
      return;
    }
    ctx.type = 'application/json';
    ctx.body = Buffer.from(file.bytes.buffer, file.bytes.byteOffset, file.bytes.byteLength);
  });

  router.get('/v1/repos/*repo/status', async (ctx) => {
    const repo = ctx.params['repo'] as string;
    auth.authorize(ctx.get('authorization') || undefined, 'read', repo);
    ctx.body = await service.status(repo);
  });

  router.put('/v1/repos/*repo/metadata/:file', async (ctx) => {
    const repo = ctx.params['repo'] as string;
    auth.authorize(ctx.get('authorization') || undefined, 'write', repo);
    jsonOnly(ctx);
    const body = await readBody(ctx, maxBody);
    try {
      const result = await service.upload(repo, ctx.params['file'] as string, body);
      metrics.uploads.inc({ kind: 'role', outcome: 'ok' });
      ctx.status = result.unchanged ? 200 : 201;
      ctx.body = result;
    } catch (error) {
      metrics.uploads.inc({ kind: 'role', outcome: error instanceof TufociError ? error.code : 'INTERNAL' });
      throw error;
    }
  });

  router.post('/v1/repos/*repo', async (ctx) => {
    const repo = ctx.params['repo'] as string;
    auth.authorize(ctx.get('authorization') || undefined, 'write', repo);
    jsonOnly(ctx);
    const body = await readBody(ctx, maxBody);
    let parsed: unknown;
    try {
      parsed = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(body));
    } catch (cause) {
      throw new ServiceError('BAD_REQUEST', 'body must be JSON {"root": <1.root.json>, "targets": <1.targets.json>}', { cause });
    }
    const obj = (typeof parsed === 'object' && parsed !== null ? parsed : {}) as Record<string, unknown>;
    if (typeof obj['root'] !== 'object' || obj['root'] === null || typeof obj['targets'] !== 'object' || obj['targets'] === null) {
      throw new ServiceError('BAD_REQUEST', 'body must be JSON {"root": <1.root.json>, "targets": <1.targets.json>}', { detail: {} });
    }
    try {
      const result = await service.create(repo, encoder.encode(JSON.stringify(obj['root'])), encoder.encode(JSON.stringify(obj['targets'])));
      metrics.uploads.inc({ kind: 'create', outcome: 'ok' });
      ctx.status = result.unchanged ? 200 : 201;
      ctx.body = result;
    } catch (error) {
      metrics.uploads.inc({ kind: 'create', outcome: error instanceof TufociError ? error.code : 'INTERNAL' });
      throw error;
    }
  });

  app.use(router.routes());
  app.use(router.allowedMethods());
  return app;
}
