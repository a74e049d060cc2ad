-- ratelimit.lua: one shared budget of requests per second for every replica.
--
-- KEYS[1] sd:{rl}:<destination>   zset of the last second's requests (member -> ms)
-- ARGV[1] limit per window, ARGV[2] window (ms), ARGV[3] a unique member for this request
--
-- A sliding window over Redis's own clock (so replicas' clocks don't matter): at most
-- `limit` requests in any `window` ms. Returns 0 when this request may go now, else the
-- ms to wait before asking again.
local key, limit, window = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
if redis.call('ZCARD', key) < limit then
    redis.call('ZADD', key, now, ARGV[3])
    redis.call('PEXPIRE', key, window * 2)
    return 0
end
local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
local wait = tonumber(oldest[2]) + window - now + 1
if wait < 1 then wait = 1 end
return wait
