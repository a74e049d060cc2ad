-- index.lua: ticket -> owners index, used to find a ticket's users when a delivery names
-- only the ticket (conversation.deleted) or drops a contact (*.contact.detached).
--
-- KEYS[1] sd:{pT}:k:<ticket id>   hash: "u:<user>" -> "1", "del" -> deletion time
-- ARGV[1] mode, ARGV[2] now, ARGV[3] TTL seconds once the ticket is closed or deleted
--   "add" ARGV[4]="1" if closed, ARGV[5..]=owners. Returns {"deleted"} when the ticket was
--         deleted earlier (the caller then deletes it for these owners too), else {"ok"}.
--   "delete": marks the ticket deleted. Returns {"owners", user...}.
--   "owners": returns {"owners", user...} (a delivery that names no contact).
--   "detach" ARGV[4..]=owners to forget.
--   "move" ARGV[4]=from, ARGV[5]=to: the ticket now belongs to `to` instead of `from`.
local key, mode, now, ttl = KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3])

if mode == 'add' then
    for i = 5, #ARGV do redis.call('HSET', key, 'u:' .. ARGV[i], '1') end
    if redis.call('HEXISTS', key, 'del') == 1 then
        redis.call('EXPIRE', key, ttl)
        return {'deleted'}
    end
    if ARGV[4] == '1' then redis.call('EXPIRE', key, ttl) else redis.call('PERSIST', key) end
    return {'ok'}
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
    redis.call('HSET', key, 'del', now)
    redis.call('EXPIRE', key, ttl)
    table.insert(out, 1, 'owners')
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
