/**
 * Commands are sent only on a ready connection and never queued for later
 * (ioredis's offline queue is off): a command that timed out in a queue
 * could otherwise run after reconnection, e.g. take a lock nobody waits for.
 * Callers wait here, at most `timeoutMs`, for the connection to be ready;
 * one `ready` listener serves every waiter.
 */
import type { Redis } from 'ioredis';

export class RedisReadyGate {
  readonly #redis: Redis;
  #next: Promise<void> | undefined;

  constructor(redis: Redis) {
    this.#redis = redis;
  }

  /** Resolves once the connection is ready; rejects after `timeoutMs`. */
  async wait(timeoutMs: number): Promise<void> {
    if (this.#redis.status === 'ready') return;
    this.#next ??= new Promise<void>((resolve) => {
      this.#redis.once('ready', () => {
        this.#next = undefined;
        resolve();
      });
    });
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`no ready Redis connection within ${timeoutMs} ms (status ${this.#redis.status})`)),
        timeoutMs,
      );
      timer.unref();
    });
    try {
      await Promise.race([this.#next, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }
}
