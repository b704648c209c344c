/**
 * The Koa app. `createApp(deps)` builds it from its dependencies; nothing is
 * read from ctx.state. Handlers parse, call the service, serialize; every
 * error becomes `{"error": {"code", "message", "detail"}}` in one middleware
 * using the table in errors.ts.
 */
import { isUtf8 } from 'node:buffer';
import { randomUUID } from 'node:crypto';
import Koa from 'koa';
import Router from '@koa/router';
import { TufociError } from '../errors.ts';
import { computeKeyId, isTufKeyJson, type TufKeyJson } from '../keys/tuf-key.ts';
import { isRepositoryName } from '../storage/names.ts';
import { parseMetadataFileName } from '../engine/names.ts';
import { StrictJsonError, StrictJsonStream, parseStrictJson, type StreamScanned } from '../engine/strict-json.ts';
import type { ImageTarget } from '../engine/build.ts';
import type { KeySetInfo } from '../keys/online-keyring.ts';
import type { TokenAuth } from './auth.ts';
import { NAMESPACE_ANCHOR, anchorPrefix } from '../engine/scope.ts';
import { ServiceError, httpStatusOf } from './errors.ts';
import { metadataHeaders } from '../api/headers.ts';
import { ROUTES } from '../api/routes.ts';
import { cachedRootVersion } from './fast-read.ts';
import type { Metrics } from './metrics.ts';
import { GRANT_PREFIX, type JobGrant, type Logger, type RepositoryService } from './repository-service.ts';

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
  /** How long a request body may take to arrive (default DEFAULT_BODY_TIMEOUT_MS): 408 BODY_TIMEOUT after. */
  bodyTimeoutMs?: number;
}

/**
 * A repository creation sent to a name whose last component is one of the routes' words
 * (`POST /v1/repos/acme/tags` is the tags of `acme`): said in the refusal, since the name cannot
 * be created through this API.
 */
function shadowedCreate(body: Record<string, unknown>, repo: string, word: string): string {
  return body['targets'] !== undefined ? ` (a repository named ${repo}/${word} cannot be created: the service reads POST /v1/repos/${repo}/${word} as the ${word} of ${repo})` : '';
}

/** The body deadline createApp set for this request. */
function bodyTimeoutOf(ctx: Koa.Context): number {
  return (ctx.state as { bodyTimeoutMs?: number }).bodyTimeoutMs ?? DEFAULT_BODY_TIMEOUT_MS;
}

/** Bytes of a body `onPiece` checks between two yields to the event loop (about half a millisecond of scanning). */
const PIECE_SLICE_BYTES = 128 * 1024;

/** How long a request body may take to arrive, from the first byte read (default of `bodyTimeoutMs`). */
export const DEFAULT_BODY_TIMEOUT_MS = 30_000;

/**
 * A body declared above the limit but at most this many times it is still read (and discarded)
 * after the 413, so that the client, still sending it, reads the answer: a server that closes on a
 * client mid-upload resets the connection, and the client sees the reset instead of the refusal
 * (HTTP/1.1's "lingering close" problem). Past this, the connection is closed at once.
 */
const DRAIN_DECLARED_FACTOR = 16;
/** `ctx.state` key: this refused request's body is to be drained, not cut off. */
const DRAIN_BODY = 'tufociDrainBody';

/**
 * The request body, at most `limit` bytes, within `timeoutMs`. A body that does not arrive in
 * time, one found larger than it declared room for, or one `onPiece` refuses (it sees each piece
 * as it is read, and throws to refuse), is refused at once with `Connection: close`: the rest is
 * never read (node:http closes the connection after the answer instead of draining it). A body
 * *declared* above the limit is refused before a byte of it is read; up to DRAIN_DECLARED_FACTOR
 * times the limit, node:http then reads the declared rest to discard it (bounded by the declared
 * length and the server's request timeout), so that the refusal reaches the client.
 */
async function readBody(ctx: Koa.Context, limit: number, timeoutMs: number, onPiece?: (piece: Buffer) => void): Promise<Uint8Array> {
  const refuse = (error: ServiceError): never => {
    ctx.set('Connection', 'close');
    throw error;
  };
  const declared = Number(ctx.get('content-length') || '0');
  if (declared > limit) {
    const error = new ServiceError('BODY_TOO_LARGE', `request body of ${declared} bytes is above the limit of ${limit}`, { detail: { limit } });
    if (declared > limit * DRAIN_DECLARED_FACTOR) refuse(error);
    ctx.state[DRAIN_BODY] = true; // the error handler leaves the connection open: node:http drains it
    throw error;
  }
  const chunks: Buffer[] = [];
  let size = 0;
  let sinceYield = 0;
  const req = ctx.req;
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new ServiceError('BODY_TIMEOUT', `the request body did not arrive within ${timeoutMs / 1000} s`, { detail: { timeoutMs, received: size } })), timeoutMs);
  });
  late.catch(() => {}); // observed below; never an unhandled rejection
  const iterator = req[Symbol.asyncIterator]();
  try {
    for (;;) {
      const next = await Promise.race([iterator.next(), late]);
      if (next.done) break;
      const chunk = next.value as Buffer;
      size += chunk.byteLength;
      if (size > limit) refuse(new ServiceError('BODY_TOO_LARGE', `request body is above the limit of ${limit} bytes`, { detail: { limit } }));
      chunks.push(chunk);
      if (onPiece) {
        onPiece(chunk);
        // libuv reads up to 32 pieces of a busy socket in one go and the stream hands them over in
        // one turn of the loop: yield after each slice of checked bytes, so that no body holds
        // other requests up for more than one (the stream applies backpressure meanwhile).
        sinceYield += chunk.byteLength;
        if (sinceYield >= PIECE_SLICE_BYTES) {
          sinceYield = 0;
          await new Promise<void>((resolve) => setImmediate(resolve));
        }
      }
    }
  } catch (error) {
    if (error instanceof TufociError) {
      req.pause(); // read no more of it
      refuse(error);
    }
    throw error;
  } finally {
    clearTimeout(timer);
  }
  return new Uint8Array(Buffer.concat(chunks, size));
}

function jsonOnly(ctx: Koa.Context): void {
  const type = ctx.get('content-type');
  if (type && !/^application\/(json|octet-stream)\b/i.test(type)) {
    throw new ServiceError('UNSUPPORTED_MEDIA_TYPE', `send application/json, not ${type.slice(0, 60)}`, { detail: { contentType: type.slice(0, 100) } });
  }
}

/** Request bodies are small objects: a few fields, each at most this many members below. */
const BODY_MEMBERS: readonly number[] = [16, 64];

/**
 * The request body as a JSON object; `shape` names the expected body in the refusal. `maxMembers`
 * bounds each object's members by depth (strict-json.ts): a wide object where the API expects
 * a small one is refused during the scan, before anything is parsed.
 */
async function readJson(ctx: Koa.Context, limit: number, shape = 'a JSON object', maxMembers: readonly number[] = BODY_MEMBERS): Promise<Record<string, unknown>> {
  jsonOnly(ctx);
  const body = await readBody(ctx, limit, bodyTimeoutOf(ctx));
  let parsed: unknown;
  try {
    // The strict reader: duplicate names, floats, deep nesting and wide objects are refused by name, in linear time.
    parsed = parseStrictJson(body, { label: 'request body', maxMembers });
  } catch (cause) {
    if (cause instanceof StrictJsonError && cause.code !== 'BAD_JSON') throw cause;
    throw new ServiceError('BAD_REQUEST', `body must be ${shape}`, { cause, detail: {} });
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new ServiceError('BAD_REQUEST', `body must be ${shape}`, { detail: {} });
  return parsed as Record<string, unknown>;
}

/**
 * The request body as a JSON object whose `members` are JSON objects, each returned as the exact
 * bytes the client sent for it: found by the strict scan, never parsed and re-serialized here
 * (the engine parses each one once, bounded by its role's limits).
 */
async function readJsonMembers(ctx: Koa.Context, limit: number, members: readonly string[], shape: string, optional: readonly string[] = []): Promise<Array<Uint8Array | undefined>> {
  jsonOnly(ctx);
  // Scanned as it is read (names checked in the envelope; the engine's strict read of each member
  // checks its own): a body that must be refused is refused at the first piece that shows it.
  const stream = new StrictJsonStream({ label: 'request body', capture: new Set(members), namesDepth: 1, maxMembers: [16, Number.POSITIVE_INFINITY] });
  const refusal = (cause: unknown): unknown =>
    cause instanceof StrictJsonError && cause.code === 'BAD_JSON' ? new ServiceError('BAD_REQUEST', `body must be ${shape}`, { cause, detail: {} }) : cause;
  let body: Uint8Array;
  let spans: StreamScanned['spans'];
  try {
    body = await readBody(ctx, limit, bodyTimeoutOf(ctx), (piece) => {
      try {
        stream.push(piece);
      } catch (cause) {
        throw refusal(cause);
      }
    });
    spans = stream.end().spans;
  } catch (cause) {
    throw refusal(cause);
  }
  if (!isUtf8(body)) throw new ServiceError('BAD_REQUEST', `body must be ${shape} in UTF-8`, { detail: {} });
  return members.map((name) => {
    const span = spans.get(name);
    if (!span && optional.includes(name)) return undefined;
    if (!span || body[span.start] !== 0x7b) throw new ServiceError('BAD_REQUEST', `body must be ${shape}`, { detail: { member: name } });
    return body.slice(span.start, span.end); // a copy of the exact bytes sent
  });
}

/** Repositories one page of `GET /v1/namespace-members/<anchor>` looks at, by default and at most. */
export const NAMESPACE_MEMBERS_DEFAULT_LIMIT = 100;
export const NAMESPACE_MEMBERS_MAX_LIMIT = 1000;

/** The bearer token when it is a grant token. */
function grantToken(ctx: Koa.Context): string | undefined {
  const m = /^Bearer\s+(\S{1,200})$/i.exec(ctx.get('authorization'));
  return m?.[1]?.startsWith(GRANT_PREFIX) ? m[1] : undefined;
}

function setSummary(set: KeySetInfo): Record<string, unknown> {
  return {
    id: set.id,
    created: set.created,
    kind: set.kind,
    keyids: Object.fromEntries(Object.entries(set.keys).flatMap(([role, k]) => (k ? [[role, k.keyid]] : []))),
    ...(set.revoked ? { revoked: set.revoked } : {}),
  };
}

function keyList(set: KeySetInfo, role: 'snapshot' | 'timestamp' | 'ci'): Array<{ keyid: string; key: TufKeyJson }> {
  const k = set.keys[role];
  return k ? [{ keyid: k.keyid, key: k.key }] : [];
}

export function createApp(deps: AppDeps): Koa {
  const { service, auth, logger, metrics } = deps;
  const policy = service.policy;
  const maxRole = Math.max(...Object.values(policy.roles).map((r) => r.maxBytes));
  const maxBody = deps.maxBodyBytes ?? 2 * maxRole + 64 * 1024;
  const tsMaxAge = deps.timestampMaxAge ?? 10;
  const bodyTimeoutMs = deps.bodyTimeoutMs ?? DEFAULT_BODY_TIMEOUT_MS;
  const app = new Koa({ proxy: false });
  const router = new Router();
  // Koa reports errors of the response stream here (a client gone mid-request, a framing error):
  // into the structured log, never Koa's default stack printer on stderr.
  app.on('error', (err: unknown) => {
    const e = err as { code?: unknown; message?: unknown };
    logger.warn({ code: typeof e.code === 'string' ? e.code : undefined, message: String(e.message ?? err).slice(0, 200) }, 'connection error');
  });

  // Errors → JSON, request ids, metrics. One middleware, one table.
  app.use(async (ctx, next) => {
    const started = process.hrtime.bigint();
    const requestId = (ctx.get('x-request-id') || randomUUID()).slice(0, 64);
    (ctx.state as { bodyTimeoutMs?: number }).bodyTimeoutMs = bodyTimeoutMs;
    ctx.set('X-Request-Id', requestId);
    try {
      await next();
      if (ctx.status === 404 && ctx.body === undefined) {
        throw new ServiceError('NOT_FOUND', `no route for ${ctx.method} ${ctx.path.slice(0, 200)}`, { detail: { path: ctx.path.slice(0, 200) } });
      }
      if ((ctx.status === 405 || ctx.status === 501) && ctx.body === undefined) {
        // The router's answer to a method the route does not take (405) or no route knows (501); it keeps its Allow header.
        const allow = ctx.response.get('Allow');
        const method = ctx.method.slice(0, 20);
        throw new ServiceError('METHOD_NOT_ALLOWED', `${method} is not allowed on ${ctx.path.slice(0, 200)}${allow ? ` (allowed: ${allow})` : ''}`, {
          detail: { method, path: ctx.path.slice(0, 200), allowed: allow ? allow.split(/,\s*/) : [] },
        });
      }
    } catch (error) {
      const status = httpStatusOf(error);
      ctx.status = status;
      // Refused before its body was read (a 401 on an upload): close rather than read the rest,
      // unless it is a body declared too large by a bounded amount (readBody).
      if (!ctx.req.complete && ctx.state[DRAIN_BODY] !== true) ctx.set('Connection', 'close');
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

  router.get(ROUTES.health, (ctx) => {
    ctx.body = { ok: true };
  });

  router.get(ROUTES.ready, async (ctx) => {
    try {
      await deps.ready();
      ctx.body = { ready: true };
    } catch (error) {
      ctx.status = 503;
      ctx.body = { error: { code: 'NOT_READY', message: 'storage or coordination unreachable', detail: { cause: error instanceof TufociError ? error.code : 'unknown' } } };
    }
  });

  router.get(ROUTES.metrics, async (ctx) => {
    ctx.type = metrics.registry.contentType;
    ctx.body = await metrics.registry.metrics();
  });

  router.get(ROUTES.onlineKeys, (ctx) => {
    // Derived key sets give every repository its own keys: ask with ?repository=<repo>.
    const repository = typeof ctx.query['repository'] === 'string' ? ctx.query['repository'] : undefined;
    const keys = service.onlineKeys(repository);
    ctx.body = {
      ...(repository !== undefined ? { repository } : {}),
      set: keys.set,
      kind: keys.kind,
      snapshot: keys.snapshot.map((k) => ({ keyid: computeKeyId(k), key: k })),
      timestamp: keys.timestamp.map((k) => ({ keyid: computeKeyId(k), key: k })),
      ci: keys.ci.map((k) => ({ keyid: computeKeyId(k), key: k })),
      sets: service.keyring.sets(repository).map(setSummary),
    };
  });

  // Operators: which repositories list which online key set; rotate; revoke a compromised set.
  router.get(ROUTES.onlineKeyUsage, async (ctx) => {
    auth.authorize(ctx.get('authorization') || undefined, 'admin');
    ctx.body = { current: service.keyring.current().id, sets: service.keyring.sets().map(setSummary), repositories: await service.onlineKeyUsage() };
  });

  router.post(ROUTES.rotateOnlineKeys, async (ctx) => {
    auth.authorize(ctx.get('authorization') || undefined, 'admin');
    const set = await service.keyring.rotate();
    ctx.status = 201;
    ctx.body = { set: setSummary(set) };
  });

  router.post(ROUTES.revokeOnlineKeys, async (ctx) => {
    auth.authorize(ctx.get('authorization') || undefined, 'admin');
    const body = await readJson(ctx, 16 * 1024);
    const ref = body['key'] ?? body['set'];
    if (typeof ref !== 'string' && typeof ref !== 'number') throw new ServiceError('BAD_REQUEST', 'body must be JSON {"key": "<keyid or its first 8+ hex digits>" | "set": <number>, "reason": "…"}', { detail: {} });
    const reason = typeof body['reason'] === 'string' ? body['reason'] : 'compromised';
    const r = await service.revokeOnlineKeys(String(ref), reason);
    ctx.body = { revoked: setSummary(r.revoked), current: setSummary(r.current), affected: r.affected };
  });

  router.get(ROUTES.repositories, async (ctx) => {
    auth.authorize(ctx.get('authorization') || undefined, 'read', '*');
    ctx.body = { repositories: await service.repositories() };
  });

  router.get(ROUTES.metadata, async (ctx) => {
    const repo = ctx.params['repo'] as string;
    auth.authorize(ctx.get('authorization') || undefined, 'read', repo);
    const file = await service.read(repo, ctx.params['file'] as string);
    // The root version is read synchronously from the head just served (or a newer one): a hint for clients.
    const rootVersion = file.immutable ? undefined : cachedRootVersion(service, repo);
    const notModified = ctx.get('if-none-match') === file.etag;
    metadataHeaders({ setHeader: (name, value) => ctx.set(name, value) }, file, rootVersion, notModified, tsMaxAge);
    if (notModified) {
      ctx.status = 304;
      return;
    }
    ctx.body = Buffer.from(file.bytes.buffer, file.bytes.byteOffset, file.bytes.byteLength);
  });

  router.get(ROUTES.namespace, async (ctx) => {
    const repo = ctx.params['repo'] as string;
    auth.authorize(ctx.get('authorization') || undefined, 'read', repo);
    const found = await service.namespaceFor(repo);
    if (!found) throw new ServiceError('NO_NAMESPACE', `no namespace covers ${repo}`, { detail: { repository: repo } });
    ctx.body = found;
  });

  /** Run one write, counted in tufoci_uploads by kind and outcome (ok, or the refusal's code). */
  const counted = async <T>(kind: string, write: () => Promise<T>): Promise<T> => {
    try {
      const result = await write();
      metrics.uploads.inc({ kind, outcome: 'ok' });
      return result;
    } catch (error) {
      metrics.uploads.inc({ kind, outcome: error instanceof TufociError ? error.code : 'INTERNAL' });
      throw error;
    }
  };

  router.post(ROUTES.migrate, async (ctx) => {
    const repo = ctx.params['repo'] as string;
    auth.authorize(ctx.get('authorization') || undefined, 'write', repo);
    const shape = 'JSON {"root": <next root, naming its successor namespace root>, "targets": <next targets, as a member of that namespace>}';
    const [root, targets] = (await readJsonMembers(ctx, maxBody, ['root', 'targets'], shape)) as [Uint8Array, Uint8Array];
    ctx.body = await counted('migrate', () => service.migrate(repo, root, targets));
    ctx.status = 201;
  });

  router.post(ROUTES.syncNamespace, async (ctx) => {
    const repo = ctx.params['repo'] as string;
    auth.authorize(ctx.get('authorization') || undefined, 'write', repo);
    const ns = anchorPrefix(repo);
    if (ns === undefined) throw new ServiceError('BAD_REQUEST', `${repo} is not a namespace anchor (<prefix>/${NAMESPACE_ANCHOR})`, { detail: { repository: repo } });
    ctx.body = await service.syncNamespace(ns);
  });

  // Owners' tools: the members of a namespace, a page at a time (re-signing each one's targets).
  router.get(ROUTES.namespaceMembers, async (ctx) => {
    const repo = ctx.params['repo'] as string;
    // It names every repository of the namespace: a write token for its anchor (also where reads are public).
    auth.authorize(ctx.get('authorization') || undefined, 'write', repo);
    const ns = anchorPrefix(repo);
    if (ns === undefined) throw new ServiceError('BAD_REQUEST', `${repo} is not a namespace anchor (<prefix>/${NAMESPACE_ANCHOR})`, { detail: { repository: repo } });
    const shape = `?after=<a repository under ${ns}>&limit=<1 to ${NAMESPACE_MEMBERS_MAX_LIMIT}>`;
    const unknown = Object.keys(ctx.query).filter((k) => k !== 'after' && k !== 'limit');
    if (unknown.length) throw new ServiceError('BAD_REQUEST', `unknown query parameter ${unknown[0]?.slice(0, 40)}: the query is ${shape}`, { detail: { parameter: unknown[0]?.slice(0, 100) } });
    const { after, limit } = ctx.query;
    if (Array.isArray(after) || Array.isArray(limit)) throw new ServiceError('BAD_REQUEST', `after and limit are given once: the query is ${shape}`, { detail: {} });
    if (after !== undefined && !(after.startsWith(ns) && isRepositoryName(after))) {
      throw new ServiceError('BAD_REQUEST', `after must be a repository name under ${ns}, got ${after.slice(0, 120)}`, { detail: { after: after.slice(0, 200) } });
    }
    if (limit !== undefined && !(/^[1-9][0-9]{0,4}$/.test(limit) && Number(limit) <= NAMESPACE_MEMBERS_MAX_LIMIT)) {
      throw new ServiceError('BAD_REQUEST', `limit must be a whole number from 1 to ${NAMESPACE_MEMBERS_MAX_LIMIT}, got ${limit.slice(0, 20)}`, { detail: { limit: limit.slice(0, 40) } });
    }
    ctx.body = await service.namespaceMembers(ns, { ...(after !== undefined ? { after } : {}), limit: limit === undefined ? NAMESPACE_MEMBERS_DEFAULT_LIMIT : Number(limit) });
  });

  router.get(ROUTES.status, async (ctx) => {
    const repo = ctx.params['repo'] as string;
    auth.authorize(ctx.get('authorization') || undefined, 'read', repo);
    ctx.body = await service.status(repo);
  });

  router.put(ROUTES.metadata, async (ctx) => {
    const repo = ctx.params['repo'] as string;
    const fileName = ctx.params['file'] as string;
    // A CI job's grant token authorizes exactly its job role, while the grant lasts.
    const token = grantToken(ctx);
    let roleClass: 'delegated' | 'ci' = 'delegated';
    let job: JobGrant | undefined;
    if (token) {
      job = await service.jobFor(token);
      if (!job) throw new ServiceError('GRANT_EXPIRED', 'this grant has ended or was never redeemed: the job key can publish nothing more', { detail: { repository: repo } });
      if (job.repository !== repo || parseMetadataFileName(fileName)?.role !== job.jobRole) {
        throw new ServiceError('GRANT_SCOPE', `this grant allows uploads of ${job.jobRole} in ${job.repository} only`, { detail: { repository: repo, jobRole: job.jobRole } });
      }
      roleClass = 'ci';
    } else {
      auth.authorize(ctx.get('authorization') || undefined, 'write', repo);
    }
    jsonOnly(ctx);
    // Bounded by the role's own size limit: a file above it is refused before it is read.
    const name = parseMetadataFileName(fileName);
    const roleLimit = name?.role === 'root' ? policy.roles.root.maxBytes : name?.role === 'targets' ? policy.roles.targets.maxBytes : Math.max(policy.roles.delegated.maxBytes, policy.roles.ci.maxBytes);
    // A large upload is prechecked piece by piece as it is read: a hostile one is refused at the
    // first piece that shows it must be, and the rest of it is never read.
    const declared = ctx.get('content-length') ? Number(ctx.get('content-length')) : undefined;
    const precheck = service.uploadPrecheck(fileName, roleClass, declared);
    let body: Uint8Array;
    try {
      body = await readBody(ctx, Math.min(maxBody, roleLimit), bodyTimeoutOf(ctx), precheck && ((piece) => precheck.push(piece)));
      precheck?.finish(body);
    } catch (error) {
      metrics.uploads.inc({ kind: 'role', outcome: error instanceof TufociError ? error.code : 'INTERNAL' });
      throw error;
    }
    const result = await counted('role', () => service.upload(repo, fileName, body, roleClass, job, precheck !== undefined));
    ctx.status = result.unchanged ? 200 : 201;
    ctx.body = result;
  });

  // Owners: the online keys the repository's next root should list (`tufoci rotate online`).
  router.post(ROUTES.nextOnlineKeys, async (ctx) => {
    const repo = ctx.params['repo'] as string;
    auth.authorize(ctx.get('authorization') || undefined, 'write', repo);
    const { set, generated } = await service.nextOnlineKeys(repo); // keys for this repository
    ctx.status = generated ? 201 : 200;
    ctx.body = { generated, set: setSummary(set), snapshot: keyList(set, 'snapshot'), timestamp: keyList(set, 'timestamp'), ci: keyList(set, 'ci') };
  });

  // Job-scoped CI keys: an operator or owner issues a grant; a CI job redeems it with its own key.
  router.post(ROUTES.redeemGrant, async (ctx) => {
    const repo = ctx.params['repo'] as string;
    const token = grantToken(ctx);
    if (!token) throw new ServiceError('GRANT_INVALID', `send the grant as "Authorization: Bearer ${GRANT_PREFIX}…"`, { detail: {} });
    const body = await readJson(ctx, 16 * 1024);
    const key = body['key'];
    if (!isTufKeyJson(key)) throw new ServiceError('BAD_REQUEST', 'body must be JSON {"key": <TUF public key: keytype, scheme, keyval.public>}', { detail: {} });
    const job = await service.redeemGrant(repo, token, key);
    ctx.status = 201;
    ctx.body = job;
  });

  router.post(ROUTES.grants, async (ctx) => {
    const repo = ctx.params['repo'] as string;
    auth.authorize(ctx.get('authorization') || undefined, 'write', repo);
    const body = await readJson(ctx, 16 * 1024);
    const paths = body['paths'];
    const ttl = body['ttlSeconds'] ?? 600;
    if (!Array.isArray(paths) || typeof ttl !== 'number' || (body['role'] !== undefined && typeof body['role'] !== 'string')) {
      throw new ServiceError('BAD_REQUEST', `body must be JSON {"paths": ["v1.*"], "ttlSeconds": 600, "role": "ci"}${shadowedCreate(body, repo, 'grants')}`, { detail: {} });
    }
    const grant = await service.createGrant(repo, { paths: paths as string[], ttlMs: Math.round(ttl * 1000), ...(typeof body['role'] === 'string' ? { role: body['role'] } : {}) });
    ctx.status = 201;
    ctx.set('Cache-Control', 'no-store');
    ctx.body = grant;
  });

  // Service-signed tags: publish into a role the owner delegated to the service's CI key.
  router.post(ROUTES.tags, async (ctx) => {
    const repo = ctx.params['repo'] as string;
    auth.authorize(ctx.get('authorization') || undefined, 'write', repo);
    const shape = 'JSON {"role": "ci", "tags": {"<tag>": {"digest": "sha256:<hex>", "size": <manifest bytes>, "mediaType": "<manifest media type>"}}}';
    // {"role", "tags": {<tag>: {digest, size, mediaType}}}: only the tag map may be wide.
    const body = await readJson(ctx, maxBody, shape, [16, policy.limits.maxTargetsPerRole, 16]);
    const role = body['role'] ?? 'ci';
    const tags = body['tags'];
    if (typeof role !== 'string' || typeof tags !== 'object' || tags === null || Array.isArray(tags)) {
      throw new ServiceError('BAD_REQUEST', `body must be ${shape}${shadowedCreate(body, repo, 'tags')}`, { detail: {} });
    }
    const targets: Record<string, ImageTarget> = {};
    for (const [tag, t] of Object.entries(tags as Record<string, unknown>)) {
      const o = (typeof t === 'object' && t !== null ? t : {}) as Record<string, unknown>;
      if (typeof o['digest'] !== 'string' || typeof o['size'] !== 'number' || typeof o['mediaType'] !== 'string') {
        throw new ServiceError('BAD_REQUEST', `tag "${tag.slice(0, 130)}": body must be ${shape}`, { detail: { tag: tag.slice(0, 200) } });
      }
      targets[tag] = { digest: o['digest'], size: o['size'], mediaType: o['mediaType'] };
    }
    ctx.body = await counted('tags', () => service.publishTags(repo, role, targets));
    ctx.status = 201;
  });

  router.post(ROUTES.repository, async (ctx) => {
    const repo = ctx.params['repo'] as string;
    auth.authorize(ctx.get('authorization') || undefined, 'write', repo);
    const shape = 'JSON {"root": <1.root.json>, "targets": <1.targets.json>} (or, to join the namespace covering the repository, {"targets": <1.targets.json>})';
    const [root, targets] = (await readJsonMembers(ctx, maxBody, ['root', 'targets'], shape, ['root'])) as [Uint8Array | undefined, Uint8Array];
    const result = await counted('create', () => (root === undefined ? service.createMember(repo, targets) : service.create(repo, root, targets)));
    ctx.status = result.unchanged ? 200 : 201;
    ctx.body = result;
  });

  app.use(router.routes());
  app.use(router.allowedMethods());
  return app;
}
