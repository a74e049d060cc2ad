-- link.lua: the contact id -> user id map (Intercom contact id to external_id).
--
-- KEYS[1] sd:{pC}:c:<bucket>  hash: <contact id> -> "<day>|<user>", day = the unix day of
--         the link's last use; reconcile.lua drops links unused for longer than their TTL.
--         The record is rewritten only when the user or the day changes, so the common
--         case (a known contact, already used today) writes nothing.
-- ARGV[1] mode, ARGV[2] contact id, ARGV[3] user (link, force), ARGV[4] now (unix seconds)
--   "link" ARGV[3]=user: record the link. If state was kept under intercom:<contact id>
--          (user "?"), returns {"migrate"} and leaves the map alone, so the caller moves
--          that state first and then calls "force"; a crash in between simply repeats it.
--          Otherwise returns {"ok", previous user or ""}.
--   "force" ARGV[3]=user: record the link unconditionally. Returns {"ok", previous or ""}.
--   "lookup": returns {"user", <user>} when linked; otherwise marks the contact "?" (its
--          state will live under intercom:<contact id>) and returns {"none"}. With
--          ARGV[5] = "1" it also queues one Intercom look-up (GET /contacts/{id}) of the
--          contact, at most once per ARGV[7] seconds (KEYS[2] remembers the last one):
--          KEYS[2] sd:{pC}:cl:<contact id>, KEYS[3] Intercom job queue sd:{pC}:iq,
--          KEYS[4] job records sd:{pC}:ij, ARGV[6] now (ms).
local key, mode, contact = KEYS[1], ARGV[1], ARGV[2]
local day = tostring(math.floor(tonumber(ARGV[4]) / 86400))
local raw = redis.call('HGET', key, contact)
local cur_day, cur
if raw then cur_day, cur = string.match(raw, '^(%d+)|(.*)$') end

local function set(user)
    if user ~= cur or day ~= cur_day then redis.call('HSET', key, contact, day .. '|' .. user) end
end

if mode == 'lookup' then
    if cur and cur ~= '?' then
        set(cur)
        return {'user', cur}
    end
    set('?')
    if ARGV[5] == '1' and redis.call('SET', KEYS[2], 'queued', 'NX', 'EX', ARGV[7]) then
        local job = 'l:' .. contact
        redis.call('HSET', KEYS[4], job, cjson.encode({t = 'lookup', contact = contact}))
        redis.call('ZADD', KEYS[3], 'NX', ARGV[6], job)
        return {'none', 'queued'}
    end
    return {'none'}
end
if mode == 'link' and cur == '?' then
    return {'migrate'}
end
set(ARGV[3])
return {'ok', (cur and cur ~= '?') and cur or ''}
