-- reconcile.lua: queues re-checks of one partition's long-open tickets, at most once per
-- interval for all replicas together.
--
-- KEYS[1] open tickets sd:{pN}:open (zset "<kind>:<ticket>" -> opened_at, see index.lua)
-- KEYS[2] lock sd:{pN}:rk, KEYS[3] job queue sd:{pN}:iq, KEYS[4] job records sd:{pN}:ij
-- ARGV[1] now (ms), ARGV[2] interval (ms), ARGV[3] opened before this (unix seconds),
-- ARGV[4] max tickets
--
-- Returns the number of tickets queued, or -1 when another worker scanned this partition
-- within the interval.
local open, lock, q, rec = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
if not redis.call('SET', lock, '1', 'NX', 'PX', ARGV[2]) then
    return -1
end
local old = redis.call('ZRANGEBYSCORE', open, '-inf', ARGV[3], 'LIMIT', 0, tonumber(ARGV[4]))
local n = 0
for _, m in ipairs(old) do
    local kind, ticket = string.match(m, '^(%a):(.*)$')
    if kind then
        local id = 'r:' .. ticket
        if redis.call('ZADD', q, 'NX', ARGV[1], id) == 1 then
            redis.call('HSET', rec, id, cjson.encode({t = 'reconcile', ticket = ticket,
                                                      kind = kind}))
            n = n + 1
        end
    end
end
return n
