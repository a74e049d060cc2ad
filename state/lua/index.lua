-- index.lua: ticket -> owners index, used to find a ticket's users when a delivery names
-- only the ticket (conversation.deleted) or drops a contact (*.contact.detached).
--
-- KEYS[1] sd:{pT}:k:<ticket id>   hash: "u:<user>" -> "1", "del" -> deletion time,
--                                  "v" -> newest known version "state|u|nc|kind|opened|prio"
-- KEYS[2] sd:{pT}:open            zset: "<kind>:<ticket id>" -> opened_at, the tickets whose
--                                  newest version is open (reconciliation re-checks the
--                                  old ones with Intercom's API)
-- ARGV[1] mode, ARGV[2] now, ARGV[3] TTL seconds once the ticket is closed or deleted
--   "add" ARGV[4]="1" if closed, ARGV[5]=this delivery's version ("" when it states no
--         open/closed), ARGV[6..]=owners. Returns {"deleted"} when the ticket was deleted
--         earlier (the caller deletes it for these owners too), {"newer", version} when a
--         newer version is known (a delivery that overtook this one named other contacts:
--         the caller applies that version to these owners too), else {"ok"}.
--   "delete": marks the ticket deleted. Returns {"owners", user...}, or {"already", ...}
--         when it was already marked (a redelivered delete).
--   "owners": returns {"owners", user...} (a delivery that names no contact).
--   "detach" ARGV[4..]=owners to forget.
--   "move" ARGV[4]=from, ARGV[5]=to: the ticket now belongs to `to` instead of `from`.
local key, mode, now, ttl = KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3])
local open_key = KEYS[2]
local ticket = string.match(key, ':k:(.*)$')

-- The open-ticket index entry a version implies: member and score, or nil when closed.
local function open_entry(v)
    local s, u, _, k, o = string.match(v or '', '^(%a)|(%-?%d+)|(%-?%d+)|(%a)|(%-?%d+)|')
    if s ~= 'o' and s ~= 's' then return nil end
    local at = tonumber(o)
    if not at or at <= 0 then at = tonumber(u) end
    return k .. ':' .. ticket, at
end

-- Moves the ticket's entry from what version `old` implied to what `new` implies; most
-- deliveries (replies, assignments) change neither, and then nothing is written.
local function track_open(old, new)
    local om, oa = open_entry(old)
    local nm, na = open_entry(new)
    if om == nm and oa == na then return end
    if om then redis.call('ZREM', open_key, om) end
    if nm then redis.call('ZADD', open_key, na, nm) end
end

local function version(v)
    local s, u, nc = string.match(v or '', '^(%a)|(%-?%d+)|(%-?%d+)|')
    if not s then return nil end
    return {u = tonumber(u), nc = tonumber(nc)}
end

if mode == 'add' then
    for i = 6, #ARGV do redis.call('HSET', key, 'u:' .. ARGV[i], '1') end
    if redis.call('HEXISTS', key, 'del') == 1 then
        redis.call('EXPIRE', key, ttl)
        return {'deleted'}
    end
    local cur_v = redis.call('HGET', key, 'v')
    local cur, inc = version(cur_v), version(ARGV[5])
    local result = {'ok'}
    if inc and (not cur or inc.u > cur.u or (inc.u == cur.u and inc.nc >= cur.nc)) then
        redis.call('HSET', key, 'v', ARGV[5])
        track_open(cur_v, ARGV[5])
        if ARGV[4] == '1' then redis.call('EXPIRE', key, ttl) else redis.call('PERSIST', key) end
    elseif cur then
        result = {'newer', cur_v}
    end
    return result
end

local function owners()
    local out = {}
    for _, f in ipairs(redis.call('HKEYS', key)) do
        if string.sub(f, 1, 2) == 'u:' then out[#out + 1] = string.sub(f, 3) end
    end
    return out
end

if mode == 'delete' then
    local out = owners()
    local already = redis.call('HSETNX', key, 'del', now) == 0
    redis.call('ZREM', open_key, 'c:' .. ticket, 't:' .. ticket)
    redis.call('EXPIRE', key, ttl)
    table.insert(out, 1, already and 'already' or 'owners')
    return out
end

if mode == 'owners' then
    local out = owners()
    table.insert(out, 1, 'owners')
    return out
end

if mode == 'detach' then
    for i = 4, #ARGV do redis.call('HDEL', key, 'u:' .. ARGV[i]) end
    return {'ok'}
end

if mode == 'move' then
    if redis.call('HDEL', key, 'u:' .. ARGV[4]) == 1 then
        redis.call('HSET', key, 'u:' .. ARGV[5], '1')
    end
    return {'ok'}
end
return redis.error_reply('index.lua: unknown mode ' .. tostring(mode))
