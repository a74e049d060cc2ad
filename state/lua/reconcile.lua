-- reconcile.lua: the periodic pass over one bucket of a partition (see state_keys.h). It
-- removes what has outlived its time, and queues re-checks of long-open tickets with
-- Intercom's API (a close whose webhook never arrived would otherwise keep a user
-- suppressed for ever). The caller takes the partition's lock sd:{pN}:rk first, so all
-- replicas together sweep each partition at most once per interval.
--
-- KEYS[1] ticket index bucket sd:{pN}:k:<b> (index.lua), KEYS[2] contact link bucket
-- sd:{pN}:c:<b> (link.lua), KEYS[3] job queue sd:{pN}:iq, KEYS[4] job records sd:{pN}:ij
-- ARGV[1] now (unix seconds), ARGV[2] now (ms), ARGV[3] re-check tickets open since before
-- this (unix seconds; "" = queue none), ARGV[4] at most this many, ARGV[5] drop links last
-- used before this unix day
--
-- Returns the number of tickets queued.
local tickets, links, q, rec = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local now, cutoff, max = tonumber(ARGV[1]), tonumber(ARGV[3]), tonumber(ARGV[4])
local link_day = tonumber(ARGV[5])

-- HDEL in slices: unpack() of a very large table would overflow Lua's stack.
local function hdel(key, fields)
    for i = 1, #fields, 500 do
        redis.call('HDEL', key, unpack(fields, i, math.min(i + 499, #fields)))
    end
end

local n, drop = 0, {}
local flat = redis.call('HGETALL', tickets)
for i = 1, #flat, 2 do
    local ticket = flat[i]
    local v, del, exp = string.match(flat[i + 1], '^([^;]*);(%d+);(%d+);')
    exp = tonumber(exp)
    if not v or (exp > 0 and exp < now) then
        drop[#drop + 1] = ticket
    elseif cutoff and n < max and del == '0' then
        local s, u, k, dop = string.match(v, '^(%a)|(%-?%d+)|%-?%d+|(%a)|(%-?%d+)|')
        if s == 'o' or s == 's' then
            u = tonumber(u)
            local at = u - tonumber(dop)
            if at <= 0 then at = u end
            local id = 'r:' .. ticket
            if at < cutoff and redis.call('ZADD', q, 'NX', ARGV[2], id) == 1 then
                redis.call('HSET', rec, id, cjson.encode({t = 'reconcile', ticket = ticket,
                                                          kind = k}))
                n = n + 1
            end
        end
    end
end
hdel(tickets, drop)

drop = {}
flat = redis.call('HGETALL', links)
for i = 1, #flat, 2 do
    local d = tonumber(string.match(flat[i + 1], '^(%d+)|'))
    if not d or d < link_day then drop[#drop + 1] = flat[i] end
end
hdel(links, drop)
return n
