-- job_ack.lua: a worker reports what happened to one leased Intercom job.
--
-- KEYS[1] job queue sd:{pN}:iq, KEYS[2] job records sd:{pN}:ij,
-- KEYS[3] attempts sd:{pN}:ia (hash: job id -> "attempts|first failure ms")
-- ARGV[1] job id, ARGV[2] "done" or "retry", ARGV[3] now (ms)
-- ARGV[4] retry: earliest next attempt (ms, from X-RateLimit-Reset or a probe), or 0
-- ARGV[5] retry: jitter factor in [0.5, 1.5)
-- ARGV[6] retry: give up after this many ms since the first failure
-- ARGV[7] retry: "1" to not count this attempt (rate limited or paused, not failed)
--
-- The same retry policy as ack.lua (200 ms doubling to 5 minutes, with jitter).
-- Returns "done", "retry" or "exhausted" (the caller dead-letters the job, then acks
-- it as done).
local q, rec, att = KEYS[1], KEYS[2], KEYS[3]
local id, outcome, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
if outcome == 'done' then
    redis.call('ZREM', q, id)
    redis.call('HDEL', rec, id)
    redis.call('HDEL', att, id)
    return 'done'
end
if redis.call('HEXISTS', rec, id) == 0 then
    return 'done' -- another worker finished it after this one's lease ran out
end
local a, f = string.match(redis.call('HGET', att, id) or '', '^(%d+)|(%d+)$')
local attempts, first = tonumber(a) or 0, tonumber(f) or 0
if ARGV[7] ~= '1' then
    attempts = attempts + 1
    if first == 0 then first = now end
    redis.call('HSET', att, id, attempts .. '|' .. first)
    if now - first > tonumber(ARGV[6]) then
        return 'exhausted'
    end
end
local delay = 200 * 2 ^ math.max(attempts - 1, 0)
if delay > 300000 then delay = 300000 end
delay = math.floor(delay * tonumber(ARGV[5]))
local at = now + delay
if tonumber(ARGV[4]) > at then at = tonumber(ARGV[4]) end
redis.call('ZADD', q, at, id)
return 'retry'
