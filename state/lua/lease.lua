-- lease.lua: takes due users from one partition's sync queue for one worker.
--
-- KEYS[1] sync queue   sd:{pN}:q   (zset: user -> due time, ms)
-- KEYS[2] window queue sd:{pN}:w   (zset: user -> when one of its rule windows ends, ms)
-- ARGV[1] now (ms), ARGV[2] lease length (ms), ARGV[3] max users
--
-- Users whose window ended are first moved to the sync queue (their attributes change
-- without any webhook: churn_risk turns false, a suppression lifts). Then up to max due
-- users are leased: their due time moves to now + lease, so no other worker takes them
-- while this one sends, and a worker that dies simply lets the lease run out.
-- Returns the leased user ids.
local q, w = KEYS[1], KEYS[2]
local now, lease, max = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local ended = redis.call('ZRANGEBYSCORE', w, '-inf', now, 'LIMIT', 0, max)
for _, u in ipairs(ended) do
    redis.call('ZADD', q, 'NX', now, u)
    redis.call('ZREM', w, u)
end
local due = redis.call('ZRANGEBYSCORE', q, '-inf', now, 'LIMIT', 0, max)
for _, u in ipairs(due) do
    redis.call('ZADD', q, 'XX', now + lease, u)
end
return due
