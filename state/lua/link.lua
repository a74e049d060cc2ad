-- link.lua: the contact id -> user id map (Intercom contact id to external_id).
--
-- KEYS[1] sd:{pC}:c:<contact id>
-- ARGV[1] mode
--   "link" ARGV[2]=user: record the link. If state was kept under intercom:<contact id>
--          (marker "?"), returns {"migrate"} and leaves the map alone, so the caller moves
--          that state first and then calls "force"; a crash in between simply repeats it.
--          Otherwise returns {"ok", previous user or ""}.
--   "force" ARGV[2]=user: record the link unconditionally. Returns {"ok", previous or ""}.
--   "lookup": returns {"user", <user>} when linked; otherwise marks the contact "?" (its
--          state will live under intercom:<contact id>) and returns {"none"}. With
--          ARGV[4] = "1" it also queues one Intercom look-up (GET /contacts/{id}) of the
--          contact, at most once per ARGV[6] seconds (KEYS[2] remembers the last one):
--          KEYS[2] sd:{pC}:cl:<contact id>, KEYS[3] Intercom job queue sd:{pC}:iq,
--          KEYS[4] job records sd:{pC}:ij, ARGV[5] now (ms).
-- ARGV[3] TTL seconds of a link (refreshed on every use).
local key, mode, ttl = KEYS[1], ARGV[1], tonumber(ARGV[3])
local cur = redis.call('GET', key)
if mode == 'lookup' then
    if cur and cur ~= '?' then
        redis.call('EXPIRE', key, ttl)
        return {'user', cur}
    end
    redis.call('SET', key, '?', 'EX', ttl)
    if ARGV[4] == '1' and redis.call('SET', KEYS[2], 'queued', 'NX', 'EX', ARGV[6]) then
        local contact = string.match(key, ':c:(.*)$')
        local job = 'l:' .. contact
        redis.call('HSET', KEYS[4], job, cjson.encode({t = 'lookup', contact = contact}))
        redis.call('ZADD', KEYS[3], 'NX', ARGV[5], job)
        return {'none', 'queued'}
    end
    return {'none'}
end
if mode == 'link' and cur == '?' then
    return {'migrate'}
end
redis.call('SET', key, ARGV[2], 'EX', ttl)
return {'ok', (cur and cur ~= '?') and cur or ''}
