/**
 * `Coordinator` on a Redis server (7.x, single node; not Redis Cluster: the
 * scripts touch several keys without hash tags), through ioredis.
 *
 * Keys, all under `keyPrefix` (default `tufoci:`):
 *   lock:<repo>      lock token, PX = lock TTL
 *   fence:<repo>     last fence issued (no TTL)
 *   head:<repo>      last published timestamp version (no TTL)
 *   refresh:due      zset repository → due time (epoch ms)
 *   refresh:lease    zset repository → lease end (epoch ms)
 *   refresh:tokens   hash repository → lease token
 *   repositories     set of every repository scheduled
 *   grant:<id>       grant JSON, PX = grant TTL
 *   epoch            random marker; missing or changed = the data was lost
 * and the pub/sub channel `heads` carrying `{"repository","version"}`.
 *
 * Two connections: commands, and a subscriber opened on the first `onHead`
 * (which subscribes in the background; `ping()` waits for the subscription
 * while head listeners exist, so readiness includes cache invalidation).
 * Both reconnect forever with backoff (25 ms doubling to 1 s, plus jitter).
 * A command is sent only on a ready connection, waiting at most
 * `commandTimeoutMs` for one, and fails with `UNAVAILABLE` after that long
 * without an answer; nothing is queued or resent after a reconnect. The
 * subscriber re-subscribes itself after a reconnect (or a failed attempt)
 * and then reports `'reconnected'`; the command connection checks the epoch on every
 * reconnect (and every claim) and reports `'reset'` when it changed.
 * Connection errors go to `onError` once per outage.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis, type RedisOptions } from 'ioredis';
import { ArgumentChecker, parseGrant } from './arguments.ts';
import { acquireByPolling, Wakers } from './backoff.ts';
import { CheckedCoordinator, type CheckedCoordinatorOptions } from './checked-coordinator.ts';
import { CoordError } from './coord-error.ts';
import type { AcquireOptions, ClaimOptions, Coordinator, HeadListener, JsonObject, Lock, RefreshClaim, ResyncListener, ResyncReason } from './coordinator.ts';
import { LockHandle, type LockCheck } from './lock-handle.ts';
import { RedisReadyGate } from './redis-ready.ts';
import {
  ACQUIRE,
  CHECK,
  CLAIM,
  COMPLETE,
  EPOCH,
  EXTEND,
  PUBLISH_HEAD,
  RELEASE,
  SCHEDULE,
  type RedisScript,
} from './redis-scripts.ts';

export const DEFAULT_KEY_PREFIX = 'tufoci:';
export const DEFAULT_COMMAND_TIMEOUT_MS = 2000;
const SUBSCRIBE_RETRY_MS = 200;

export interface RedisCoordinatorOptions extends CheckedCoordinatorOptions {
  /** `redis://[user:password@]host:port[/db]`; default `redis://127.0.0.1:6379`. */
  url?: string;
  /** Further ioredis options, applied over this coordinator's defaults. */
  redis?: RedisOptions;
  /** Prefix of every key and of the channel (default `tufoci:`). */
  keyPrefix?: string;
  /** Bound on waiting for a ready connection and on each command (default 2000 ms). */
  commandTimeoutMs?: number;
  /** Connection errors (once per outage) and throwing listeners (default: `process.emitWarning`). */
  onError?: (error: unknown) => void;
}

type ConnectionRole = 'commands' | 'subscriber';

function warn(error: unknown): void {
  process.emitWarning(error instanceof Error ? error : new Error(String(error)));
}

function reconnectDelay(attempt: number): number {
  return Math.min(25 * 2 ** Math.min(attempt, 10), 1000) + Math.floor(Math.random() * 25);
}

const DECIMAL = /^(0|[1-9][0-9]{0,15})$/;

function decimal(reply: unknown): number | undefined {
  if (typeof reply === 'number' && Number.isSafeInteger(reply) && reply >= 0) return reply;
  if (typeof reply !== 'string' || !DECIMAL.test(reply)) return undefined;
  const value = Number(reply);
  return Number.isSafeInteger(value) ? value : undefined;
}

/** The implementation behind `RedisCoordinator`'s checks: arguments are well-formed here, and it is open. */
class RedisBackend implements Coordinator {
  readonly backend = 'redis';
  readonly #prefix: string;
  readonly #timeoutMs: number;
  readonly #onError: (error: unknown) => void;
  readonly #redis: Redis;
  readonly #gate: RedisReadyGate;
  readonly #headListeners = new Set<HeadListener>();
  readonly #resyncListeners = new Set<ResyncListener>();
  readonly #locks = new Set<LockHandle>();
  readonly #outage = new Set<ConnectionRole>();
  #subscriber: { redis: Redis; gate: RedisReadyGate } | undefined;
  /** Local acquirers waiting per repository, woken by `released` messages. */
  readonly #waiting = new Wakers();
  #subscribing: Promise<void> | undefined;
  /** Subscribed on the current subscriber connection. */
  #live = false;
  /** Head messages may have been missed since the listeners began. */
  #gap = false;
  #epoch: string | undefined;
  #closed = false;
  #closing: Promise<void> | undefined;

  constructor(options: RedisCoordinatorOptions) {
    this.#prefix = options.keyPrefix ?? DEFAULT_KEY_PREFIX;
    this.#timeoutMs = new ArgumentChecker('redis').duration('constructor', 'commandTimeoutMs', options.commandTimeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS, 1);
    this.#onError = options.onError ?? warn;
    const redisOptions: RedisOptions = {
      connectionName: 'tufoci-coord',
      commandTimeout: this.#timeoutMs,
      enableOfflineQueue: false,
      autoResendUnfulfilledCommands: false,
      autoResubscribe: false,
      maxRetriesPerRequest: null,
      retryStrategy: reconnectDelay,
      ...options.redis,
    };
    this.#redis = options.url === undefined ? new Redis(redisOptions) : new Redis(options.url, redisOptions);
    this.#gate = new RedisReadyGate(this.#redis);
    this.#watch(this.#redis, 'commands', () => void this.#checkEpoch());
  }

  #key(kind: string, name?: string): string {
    return name === undefined ? `${this.#prefix}${kind}` : `${this.#prefix}${kind}:${name}`;
  }

  #watch(redis: Redis, role: ConnectionRole, onReady: () => void): void {
    redis.on('error', (cause: Error) => {
      if (this.#closed || this.#outage.has(role)) return;
      this.#outage.add(role);
      this.#onError(
        new CoordError('UNAVAILABLE', `the Redis ${role} connection failed; reconnecting`, { detail: { backend: 'redis', operation: 'connect', connection: role }, cause }),
      );
    });
    redis.on('ready', () => {
      this.#outage.delete(role);
      if (!this.#closed) onReady();
    });
  }

  /** Closed while an `acquire` was waiting. */
  #open(operation: string): void {
    if (this.#closed) throw new CoordError('CLOSED', 'the coordinator is closed', { detail: { backend: 'redis', operation } });
  }

  /** Run one exchange on a ready connection; any failure becomes `UNAVAILABLE`. */
  async #exec<T>(
    operation: string,
    detail: Record<string, unknown>,
    command: (redis: Redis) => Promise<T>,
    connection: { redis: Redis; gate: RedisReadyGate } = { redis: this.#redis, gate: this.#gate },
  ): Promise<T> {
    try {
      await connection.gate.wait(this.#timeoutMs);
      return await command(connection.redis);
    } catch (cause) {
      throw new CoordError('UNAVAILABLE', `Redis did not complete ${operation}`, { detail: { backend: 'redis', operation, ...detail }, cause });
    }
  }

  #script(operation: string, detail: Record<string, unknown>, script: RedisScript, keys: string[], args: Array<string | number>): Promise<unknown> {
    return this.#exec(operation, detail, (redis) => script.run(redis, keys, args));
  }

  #unexpected(operation: string, reply: unknown, detail: Record<string, unknown> = {}): CoordError {
    return new CoordError('UNAVAILABLE', `Redis answered ${operation} with an unexpected reply`, {
      detail: { backend: 'redis', operation, reply: typeof reply === 'string' ? reply.slice(0, 100) : typeof reply, ...detail },
    });
  }

  // --- writer lock -------------------------------------------------------

  async acquire(repository: string, options: AcquireOptions): Promise<Lock | undefined> {
    // Waiters are woken by a release that found the repository marked as waited for (RELEASE
    // publishes it on the `released` channel; every instance's subscriber wakes its own waiters).
    return acquireByPolling(options, () => this.#open('acquire'), () => this.#tryAcquire(repository, options.ttlMs, options.waitMs > 0), this.#waiting.on(repository));
  }

  async #tryAcquire(repository: string, ttlMs: number, waiting: boolean): Promise<LockHandle | undefined> {
    const lockKey = this.#key('lock', repository);
    const fenceKey = this.#key('fence', repository);
    const waitingKey = this.#key('waiting', repository);
    const token = randomBytes(16).toString('hex');
    const detail = { repository };
    const startedAt = performance.now();
    const reply = await this.#script('acquire', detail, ACQUIRE, [lockKey, fenceKey, waitingKey], [token, ttlMs, waiting ? '1' : '0']);
    if (reply === 0) return undefined;
    const fence = decimal(reply);
    if (fence === undefined || fence === 0) throw this.#unexpected('acquire', reply, detail);
    const fenceText = String(fence);
    const handle = new LockHandle({
      backend: 'redis',
      repository,
      fence,
      timing: { startedAt, ttlMs },
      onEnd: (ended) => this.#locks.delete(ended),
      ops: {
        extend: async (ms) => (await this.#script('extend', detail, EXTEND, [lockKey], [token, ms])) === 1,
        check: async (minRemainingMs): Promise<LockCheck> => {
          const state = await this.#script('isCurrent', detail, CHECK, [lockKey, fenceKey], [token, fenceText, minRemainingMs]);
          return state === 1 ? 'current' : state === 2 ? 'short' : 'lost';
        },
        release: async () => {
          const released = await this.#script('release', detail, RELEASE, [lockKey, waitingKey], [token, this.#key('released'), repository]);
          return released === 2 ? 'waiters' : released === 1;
        },
      },
    });
    this.#locks.add(handle);
    return handle;
  }

  // --- heads -------------------------------------------------------------

  async publishHead(repository: string, version: number): Promise<boolean> {
    const message = JSON.stringify({ repository, version });
    const reply = await this.#script('publishHead', { repository }, PUBLISH_HEAD, [this.#key('head', repository)], [
      version,
      this.#key('heads'),
      message,
    ]);
    return reply === 1;
  }

  async getHead(repository: string): Promise<number | undefined> {
    const reply = await this.#exec('getHead', { repository }, (redis) => redis.call('GET', this.#key('head', repository)));
    if (reply === null) return undefined;
    const version = decimal(reply);
    if (version === undefined) throw this.#unexpected('getHead', reply, { repository });
    return version;
  }

  onHead(listener: HeadListener): () => void {
    const entry: HeadListener = (repository, version) => listener(repository, version);
    this.#headListeners.add(entry);
    this.#subscribe().catch(() => undefined); // retried in the background; ping() reports it
    return () => {
      this.#headListeners.delete(entry);
    };
  }

  /**
   * Make the subscription live (memoised while in flight). A failed attempt
   * is retried every 200 ms while head listeners exist, and right away when
   * the subscriber connection becomes ready. When the subscription goes live
   * after a gap (the connection dropped while subscribed, or an attempt
   * failed), resync listeners hear `'reconnected'`.
   */
  #subscribe(): Promise<void> {
    if (this.#live) return Promise.resolve();
    if (this.#subscribing !== undefined) return this.#subscribing;
    const connection = this.#subscriber ?? this.#openSubscriber();
    this.#subscribing = this.#exec('subscribe', {}, (redis) => redis.subscribe(this.#key('heads'), this.#key('released')), connection).then(
      () => {
        this.#subscribing = undefined;
        this.#live = true;
        if (this.#gap) {
          this.#gap = false;
          this.#resync('reconnected');
        }
      },
      (error: unknown) => {
        this.#subscribing = undefined;
        this.#gap = true;
        if (!this.#closed && this.#headListeners.size > 0) {
          setTimeout(() => {
            if (!this.#closed) this.#subscribe().catch(() => undefined);
          }, SUBSCRIBE_RETRY_MS).unref();
        }
        throw error;
      },
    );
    return this.#subscribing;
  }

  #openSubscriber(): { redis: Redis; gate: RedisReadyGate } {
    const redis = this.#redis.duplicate({ connectionName: 'tufoci-coord-sub' });
    const subscriber = { redis, gate: new RedisReadyGate(redis) };
    this.#subscriber = subscriber;
    redis.on('message', (channel: string, message: string) => {
      if (channel === this.#key('heads')) this.#deliver(message);
      else if (channel === this.#key('released')) this.#waiting.wake(message);
    });
    redis.on('close', () => {
      if (!this.#live) return;
      this.#live = false;
      this.#gap = true;
    });
    this.#watch(redis, 'subscriber', () => {
      if (this.#headListeners.size > 0) this.#subscribe().catch(() => undefined);
    });
    return subscriber;
  }

  #deliver(message: string): void {
    let parsed: unknown;
    try {
      parsed = JSON.parse(message);
    } catch {
      parsed = undefined;
    }
    const head = typeof parsed === 'object' && parsed !== null ? (parsed as Record<string, unknown>) : {};
    const { repository, version } = head;
    if (typeof repository !== 'string' || repository.length === 0 || typeof version !== 'number' || !Number.isSafeInteger(version) || version < 0) {
      this.#onError(this.#unexpected('head message', message));
      return;
    }
    for (const listener of this.#headListeners) {
      try {
        listener(repository, version);
      } catch (error) {
        this.#onError(error);
      }
    }
  }

  onResync(listener: ResyncListener): () => void {
    const entry: ResyncListener = (reason) => listener(reason);
    this.#resyncListeners.add(entry);
    return () => {
      this.#resyncListeners.delete(entry);
    };
  }

  #resync(reason: ResyncReason): void {
    if (this.#closed) return;
    for (const listener of this.#resyncListeners) {
      try {
        listener(reason);
      } catch (error) {
        this.#onError(error);
      }
    }
  }

  async #checkEpoch(): Promise<void> {
    try {
      const reply = await this.#script('epoch', {}, EPOCH, [this.#key('epoch')], [randomUUID()]);
      if (typeof reply !== 'string') throw this.#unexpected('epoch', reply);
      this.#observeEpoch(reply);
    } catch (error) {
      if (!this.#closed) this.#onError(error);
    }
  }

  #observeEpoch(epoch: string): void {
    const previous = this.#epoch;
    this.#epoch = epoch;
    if (previous !== undefined && previous !== epoch) this.#resync('reset');
  }

  // --- refresh schedule --------------------------------------------------

  async scheduleRefresh(repository: string, atMs: number): Promise<void> {
    await this.#script('scheduleRefresh', { repository }, SCHEDULE, [this.#key('refresh:due'), this.#key('repositories')], [atMs, repository]);
  }

  async claimDueRefreshes(nowMs: number, options: ClaimOptions): Promise<RefreshClaim[]> {
    const { limit, leaseMs } = options;
    const reply = await this.#script(
      'claimDueRefreshes',
      {},
      CLAIM,
      [this.#key('refresh:due'), this.#key('refresh:lease'), this.#key('refresh:tokens'), this.#key('epoch')],
      [nowMs, limit, leaseMs, randomBytes(12).toString('hex'), randomUUID()],
    );
    if (!Array.isArray(reply) || reply.length % 2 !== 1 || !reply.every((item) => typeof item === 'string')) {
      throw this.#unexpected('claimDueRefreshes', reply);
    }
    const items = reply as string[];
    const claims: RefreshClaim[] = [];
    for (let i = 1; i + 1 < items.length; i += 2) {
      claims.push({ repository: items[i]!, lease: { token: items[i + 1]!, expiresAtMs: nowMs + leaseMs } });
    }
    this.#observeEpoch(items[0]!);
    return claims;
  }

  async completeRefresh(claim: RefreshClaim, nextAtMs: number): Promise<boolean> {
    const { repository, lease: { token } } = claim;
    const reply = await this.#script(
      'completeRefresh',
      { repository },
      COMPLETE,
      [this.#key('refresh:due'), this.#key('refresh:lease'), this.#key('refresh:tokens')],
      [repository, token, nextAtMs],
    );
    return reply === 1;
  }

  async knownRepositories(): Promise<string[]> {
    const reply = await this.#exec('knownRepositories', {}, (redis) => redis.call('SMEMBERS', this.#key('repositories')));
    if (!Array.isArray(reply) || !reply.every((item) => typeof item === 'string')) throw this.#unexpected('knownRepositories', reply);
    return (reply as string[]).sort();
  }

  // --- grants ------------------------------------------------------------

  async putGrant(id: string, value: JsonObject, ttlMs: number): Promise<boolean> {
    const text = JSON.stringify(value);
    const reply = await this.#exec('putGrant', { id }, (redis) => redis.call('SET', this.#key('grant', id), text, 'PX', ttlMs, 'NX'));
    return reply === 'OK';
  }

  async takeGrant(id: string): Promise<JsonObject | undefined> {
    return this.#grant('takeGrant', id, await this.#exec('takeGrant', { id }, (redis) => redis.call('GETDEL', this.#key('grant', id))));
  }

  async peekGrant(id: string): Promise<JsonObject | undefined> {
    return this.#grant('peekGrant', id, await this.#exec('peekGrant', { id }, (redis) => redis.call('GET', this.#key('grant', id))));
  }

  #grant(operation: string, id: string, reply: unknown): JsonObject | undefined {
    if (reply === null) return undefined;
    const value = typeof reply === 'string' ? parseGrant(reply) : undefined;
    if (value === undefined) throw this.#unexpected(operation, reply, { id });
    return value;
  }

  // --- lifecycle -----------------------------------------------------------

  async ping(): Promise<void> {
    const reply = await this.#exec('ping', {}, (redis) => redis.call('PING'));
    if (reply !== 'PONG') throw this.#unexpected('ping', reply);
    if (this.#headListeners.size > 0) await this.#subscribe();
  }

  close(): Promise<void> {
    this.#closing ??= this.#shutdown();
    return this.#closing;
  }

  async #shutdown(): Promise<void> {
    this.#closed = true;
    const held = [...this.#locks];
    for (const handle of held) handle.lose('closed');
    await Promise.allSettled(held.map((handle) => handle.release()));
    this.#headListeners.clear();
    this.#resyncListeners.clear();
    const connections = [this.#redis];
    if (this.#subscriber !== undefined) connections.push(this.#subscriber.redis);
    await Promise.all(connections.map((redis) => this.#quit(redis)));
  }

  /** QUIT, or drop the socket when the server does not answer in time. */
  async #quit(redis: Redis): Promise<void> {
    if (redis.status === 'ready') {
      const quit = redis.quit().then(
        () => true,
        () => false,
      );
      const answered = await Promise.race([quit, sleep(this.#timeoutMs, false, { ref: false })]);
      if (answered) return;
    }
    redis.disconnect();
  }
}

export class RedisCoordinator extends CheckedCoordinator {
  constructor(options: RedisCoordinatorOptions = {}) {
    super(new RedisBackend(options), options);
  }
}
