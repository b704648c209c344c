/**
 * The Lua scripts of `RedisCoordinator`: every read-compare-write runs as one
 * script, so it is atomic on the server. Scripts run by SHA (EVALSHA) and
 * fall back to EVAL when the server answers NOSCRIPT (after a restart or
 * SCRIPT FLUSH).
 *
 * Numbers cross the Lua boundary as decimal strings formatted with '%.0f':
 * fences are about 1.8e15, beyond what Lua's default number-to-string
 * conversion prints exactly, but exact as doubles (below 2^53).
 */
import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';

export class RedisScript {
  readonly lua: string;
  readonly sha: string;

  constructor(lua: string) {
    this.lua = lua;
    this.sha = createHash('sha1').update(lua).digest('hex');
  }

  async run(redis: Redis, keys: readonly string[], args: ReadonlyArray<string | number>): Promise<unknown> {
    try {
      return await redis.evalsha(this.sha, keys.length, ...keys, ...args);
    } catch (error) {
      if (!(error instanceof Error) || !error.message.includes('NOSCRIPT')) throw error;
      return await redis.eval(this.lua, keys.length, ...keys, ...args);
    }
  }
}

/**
 * How long a failed acquire marks its repository as waited for: above the longest pause between
 * a waiter's tries (backoff.ts BACKOFF_MAX_MS), so a waiter that is still trying stays marked.
 */
export const WAITING_MARK_MS = 500;

/**
 * KEYS: lock, fence, waiting. ARGV: token, ttlMs, wait ('1': the caller will try again).
 * Takes the lock if free and issues fence = max(last + 1, server TIME in µs).
 * Returns the fence as a decimal string, or 0 when the lock is held (and, with
 * wait, marks the repository as waited for, for WAITING_MARK_MS).
 */
export const ACQUIRE = new RedisScript(`
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  if ARGV[3] == '1' then redis.call('SET', KEYS[3], '1', 'PX', ${WAITING_MARK_MS}) end
  return 0
end
local t = redis.call('TIME')
local floor = tonumber(t[1]) * 1000000 + tonumber(t[2])
local fence = (tonumber(redis.call('GET', KEYS[2]) or '0') or 0) + 1
if floor > fence then fence = floor end
local text = string.format('%.0f', fence)
redis.call('SET', KEYS[2], text)
return text
`);

/** KEYS: lock. ARGV: token, ttlMs. Compare-and-extend: 1 if extended. */
export const EXTEND = new RedisScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
`);

/**
 * KEYS: lock, waiting. ARGV: token, channel, repository. Compare-and-delete: 0 if not held,
 * 1 if deleted, 2 if deleted while someone was waiting: then the mark is cleared and the
 * repository published on the channel, which wakes the waiters of every instance.
 */
export const RELEASE = new RedisScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
if redis.call('DEL', KEYS[2]) == 0 then return 1 end
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 2
`);

/**
 * KEYS: lock, fence. ARGV: token, fence, minRemainingMs.
 * 0: lost (other token, no lock, or a newer fence); 1: current; 2: current
 * but less than minRemainingMs left.
 */
export const CHECK = new RedisScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if redis.call('GET', KEYS[2]) ~= ARGV[2] then return 0 end
local ttl = redis.call('PTTL', KEYS[1])
if ttl >= 0 and ttl < tonumber(ARGV[3]) then return 2 end
return 1
`);

/**
 * KEYS: head. ARGV: version, channel, message.
 * Records the version if above the recorded one and publishes; 1 if it moved.
 */
export const PUBLISH_HEAD = new RedisScript(`
local recorded = tonumber(redis.call('GET', KEYS[1]) or '-1') or -1
if recorded >= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
`);

/** KEYS: due (zset), repositories (set). ARGV: atMs, repository. Keeps the earliest time. */
export const SCHEDULE = new RedisScript(`
redis.call('ZADD', KEYS[1], 'LT', ARGV[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[2])
return 1
`);

/**
 * KEYS: due (zset repository → atMs), lease (zset repository → expiresAtMs),
 * tokens (hash repository → lease token), epoch.
 * ARGV: nowMs, limit, leaseMs, token prefix, epoch candidate.
 * Returns { epoch, repository1, token1, repository2, token2, … }: expired
 * leases first, then due repositories not under a live lease.
 */
export const CLAIM = new RedisScript(`
local now = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local deadline = string.format('%.0f', now + tonumber(ARGV[3]))
local epoch = redis.call('GET', KEYS[4])
if not epoch then
  redis.call('SET', KEYS[4], ARGV[5])
  epoch = ARGV[5]
end
local out = { epoch }
local n = 0
local function take(repository)
  n = n + 1
  local token = ARGV[4] .. '.' .. n
  local at = redis.call('ZSCORE', KEYS[1], repository)
  if at and tonumber(at) <= now then redis.call('ZREM', KEYS[1], repository) end
  redis.call('ZADD', KEYS[2], deadline, repository)
  redis.call('HSET', KEYS[3], repository, token)
  out[#out + 1] = repository
  out[#out + 1] = token
end
if limit > 0 then
  for _, repository in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, limit)) do
    take(repository)
  end
end
local skipped = 0
while n < limit do
  local batch = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', skipped, limit - n)
  if #batch == 0 then break end
  for _, repository in ipairs(batch) do
    local leased = redis.call('ZSCORE', KEYS[2], repository)
    if leased and tonumber(leased) > now then skipped = skipped + 1 else take(repository) end
  end
end
return out
`);

/**
 * KEYS: due, lease, tokens. ARGV: repository, token, nextAtMs.
 * Ends the lease if it is still this token's and schedules the next refresh
 * (keeping an earlier time); 1 if done.
 */
export const COMPLETE = new RedisScript(`
if redis.call('HGET', KEYS[3], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[1], 'LT', ARGV[3], ARGV[1])
return 1
`);

/** KEYS: epoch. ARGV: candidate. The current epoch, set to the candidate if absent. */
export const EPOCH = new RedisScript(`
local epoch = redis.call('GET', KEYS[1])
if epoch then return epoch end
redis.call('SET', KEYS[1], ARGV[1])
return ARGV[1]
`);
