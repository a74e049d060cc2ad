-- lease.lua: takes due users from one partition's sync queue for one worker, or wakes the
-- partition's users that are backing off.
--
-- KEYS[1] sync queue   sd:{pN}:q   (zset: user -> due time, ms)
-- KEYS[2] window queue sd:{pN}:w   (zset: user -> when one of its rule windows ends, ms)
-- KEYS[3] retry set    sd:{pN}:r   (zset: user -> the due time its last failure set, ms)
-- ARGV[1] now (ms), ARGV[2] lease length (ms), ARGV[3] max users,
-- ARGV[4] "lease" (the default) or "wake"
--
-- lease: users whose window ended are first moved to the sync queue (their attributes
-- change without any webhook: churn_risk turns false, a suppression lifts). Then up to
-- max due users are leased: their due time moves to now + lease, so no other worker takes
-- them while this one sends, and a worker that dies simply lets the lease run out. A
-- leased user leaves the retry set (it is no longer waiting out a backoff).
-- Returns the leased user ids.
--
-- wake: Customer.io is reachable again after an outage (or accepts the credentials
-- again): up to max users waiting out a backoff are made due now. A user whose due time
-- is no longer the one its failure set (a worker leased it since) is left alone.
-- Returns the number of users woken.
local q, w, r = KEYS[1], KEYS[2], KEYS[3]
local now, lease, max = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])

if ARGV[4] == 'wake' then
    local waiting = redis.call('ZRANGE', r, 0, max - 1, 'WITHSCORES')
    local n = 0
    for i = 1, #waiting, 2 do
        local u, at = waiting[i], waiting[i + 1]
        local due = redis.call('ZSCORE', q, u)
        if due and tonumber(due) == tonumber(at) and tonumber(at) > now then
            redis.call('ZADD', q, 'XX', now, u)
            n = n + 1
        end
        redis.call('ZREM', r, u)
    end
    return n
end

local ended = redis.call('ZRANGEBYSCORE', w, '-inf', now, 'LIMIT', 0, max)
for _, u in ipairs(ended) do
    redis.call('ZADD', q, 'NX', now, u)
    redis.call('ZREM', w, u)
end
local due = redis.call('ZRANGEBYSCORE', q, '-inf', now, 'LIMIT', 0, max)
for _, u in ipairs(due) do
    redis.call('ZADD', q, 'XX', now + lease, u)
end
if #due > 0 then redis.call('ZREM', r, unpack(due)) end
return due
