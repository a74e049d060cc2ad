-- ack.lua: a worker reports what happened to one leased user's Customer.io work.
--
-- KEYS[1] user hash, KEYS[2] sync queue, KEYS[3] user events, KEYS[4] window queue,
-- KEYS[5] retry set (users waiting out a backoff, see lease.lua "wake")
-- ARGV[1] user id
-- ARGV[2] now (ms)
-- ARGV[3] sync version the worker read (its identify carried that state), or "" when the
--         identify was not done (it must be retried)
-- ARGV[4] outcome: "done" (everything sent or dead-lettered), "retry", or "lost" (the
--         worker's lease ran out before it sent everything: only the finished events are
--         removed; the lease running out makes the user due again)
-- ARGV[5] retry: earliest next attempt (ms) from Retry-After, or 0
-- ARGV[6] retry: jitter factor in [0.5, 1.5)
-- ARGV[7] retry: give up after this many ms since the first failure
-- ARGV[8] when a rule window of this user next ends (ms), 0 for none
-- ARGV[9] retry: "1" to not count this attempt (delivery paused, not failed)
-- ARGV[10..] events that are finished (sent or dead-lettered), verbatim list entries
--
-- Finished events leave the list (by value, so a worker whose lease ran out and a second
-- worker cannot remove more than was sent). When nothing is left and the state did not
-- change since it was read, the user leaves the queue; otherwise it is due again: now,
-- or after a backoff of 200 ms doubling up to 5 minutes (with jitter) on retry. A user
-- that backs off is recorded in the retry set with its due time, so the worker can wake
-- it at once when Customer.io is back after an outage.
-- Returns {"done"|"queued"|"retry"|"exhausted"|"lost", attempts}.
local ukey, q, ekey, w, rset = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local uid, now, sv = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local outcome = ARGV[4]

for i = 10, #ARGV do redis.call('LREM', ekey, 1, ARGV[i]) end
local window = tonumber(ARGV[8])
if window > 0 then redis.call('ZADD', w, window, uid) else redis.call('ZREM', w, uid) end
if outcome == 'lost' then
    return {'lost', 0}
end

if outcome == 'done' then
    redis.call('HDEL', ukey, 'sa', 'sf')
    redis.call('ZREM', rset, uid)
    local cur = redis.call('HGET', ukey, 'sv') or ''
    if (sv == cur or sv == '*') and redis.call('LLEN', ekey) == 0 then
        redis.call('ZREM', q, uid)
        return {'done', 0}
    end
    redis.call('ZADD', q, now, uid)
    return {'queued', 0}
end

-- retry
local attempts = tonumber(redis.call('HGET', ukey, 'sa') or '0')
local first = tonumber(redis.call('HGET', ukey, 'sf') or '0')
if ARGV[9] ~= '1' then
    attempts = attempts + 1
    if first == 0 then first = now end
    if redis.call('EXISTS', ukey) == 1 then
        redis.call('HSET', ukey, 'sa', attempts, 'sf', first)
    end
    if now - first > tonumber(ARGV[7]) then
        redis.call('ZREM', rset, uid)
        return {'exhausted', attempts}
    end
end
local delay = 200 * 2 ^ math.max(attempts - 1, 0)
if delay > 300000 then delay = 300000 end
delay = math.floor(delay * tonumber(ARGV[6]))
local at = now + delay
if tonumber(ARGV[5]) > at then at = tonumber(ARGV[5]) end
redis.call('ZADD', q, at, uid)
redis.call('ZADD', rset, at, uid)
return {'retry', attempts}
