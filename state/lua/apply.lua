-- apply.lua: one notification's effect on one user, atomically.
--
-- KEYS[1] user hash      sd:{pN}:u:<user>
-- KEYS[2] sync queue     sd:{pN}:q      (zset: user -> due time in ms)
-- KEYS[3] user events    sd:{pN}:e:<user> (list of Customer.io events, oldest first)
-- ARGV[1] now, unix seconds (the service's clock, for pruning and the queue)
-- ARGV[2] dedupe id (16 hex) or "" when the caller already deduplicated
-- ARGV[3] "1" when the user is synced to Customer.io (not an intercom: id)
-- ARGV[4] the change, JSON (see state_apply.c build_change_json)
-- ARGV[5] user id
-- ARGV[6] seconds to keep a user with no open ticket (longest rule window + margin)
--
-- User hash fields:
--   t:<ticket>  "kind|state|prio|u-opened_at|u|notified_at-u|recorded_at-u", u = Intercom's
--               updated_at; the other times are stored as differences from it (usually
--               small or 0) to keep the hash small. kind c(onversation)/t(icket); state
--               o(pen)/s(noozed)/c(losed)/d(eleted)/x (this user was detached from it);
--               notified_at orders two updates within one second; recorded_at is our
--               clock, for pruning
--   n  open ticket count      pa last opened_at among priority tickets (n, pa absent: 0)
--   ca churn tag time         cu churn tag removal time
--   cs last CSAT score        ct its time        ck its ticket
--   ua latest event time      sv sync version (bumped when derived state changes)
--   d:<dedupe> time the notification was applied (kept 7 days)
--   a:<name>   an Intercom profile attribute for Customer.io, JSON-encoded
--   sa, sf     delivery attempts and first failure time (ack.lua)
--
-- Returns {status, changed, open_count}; status is "ok", "dup" or "stale".

local ukey, qkey, ekey = KEYS[1], KEYS[2], KEYS[3]
local now = tonumber(ARGV[1])
local dd = ARGV[2]
local sync = ARGV[3] == '1'
local uid = ARGV[5]
local keep = tonumber(ARGV[6])
local DEDUPE_TTL = 7 * 86400
local CLOSED_TTL = 30 * 86400

local h, old = {}, {}
local flat = redis.call('HGETALL', ukey)
for i = 1, #flat, 2 do
    h[flat[i]] = flat[i + 1]
    old[flat[i]] = flat[i + 1]
end
if dd ~= '' and h['d:' .. dd] then
    return {'dup', 0, tonumber(h.n or '0')}
end

local c = cjson.decode(ARGV[4])
local at = tonumber(c.at) or now

local function num(v) return tonumber(v) or 0 end
-- The derived facts Customer.io sees; compared after the change to tell whether to sync.
local FACTS = {'n', 'pa', 'ca', 'cu', 'cs', 'ct', 'ck'}
local function fact(f) if f == 'ck' then return h.ck or '' end return num(h[f]) end
local before = {}
for i, f in ipairs(FACTS) do before[i] = fact(f) end

local function parse_ticket(v)
    local k, s, p, o, u, nc, r =
        string.match(v, '^(%a)|(%a)|(%d)|(%-?%d+)|(%-?%d+)|(%-?%d+)|(%-?%d+)$')
    if not k then return nil end
    u = tonumber(u)
    return {k = k, s = s, p = tonumber(p), o = u - tonumber(o), u = u, nc = u + tonumber(nc),
            r = u + tonumber(r)}
end
local function fmt_ticket(t)
    return table.concat({t.k, t.s, t.p, t.u - t.o, t.u, t.nc - t.u, (t.r or now) - t.u}, '|')
end
local function is_open(s) return s == 'o' or s == 's' end
-- (u, nc) orders two versions of a ticket: Intercom's updated_at, then the notification's
-- own created_at for two updates within the same second.
local function newer(a_u, a_nc, b) return a_u > b.u or (a_u == b.u and a_nc >= b.nc) end

local events = {}
local function event(name, ts, data) events[#events + 1] = {name = name, ts = ts, data = data} end
local status = 'ok'

-- Merge another identity's state in (contact linked or merged): tickets by version, times
-- by maximum, CSAT by recency.
if c.merge then
    for f, v in pairs(c.merge) do
        if string.sub(f, 1, 2) == 't:' then
            local inc, cur = parse_ticket(v), h[f] and parse_ticket(h[f])
            if inc and (not cur or (cur.s ~= 'd' and (inc.s == 'd' or newer(inc.u, inc.nc, cur)))) then
                h[f] = v
            end
        elseif string.sub(f, 1, 2) == 'd:' then
            h[f] = h[f] or v
        end
    end
    for _, f in ipairs({'ca', 'cu', 'ua'}) do
        if num(c.merge[f]) > num(h[f]) then h[f] = c.merge[f] end
    end
    if num(c.merge.ct) > num(h.ct) then
        h.cs, h.ct, h.ck = c.merge.cs, c.merge.ct, c.merge.ck
    end
end

local t = c.t
if t then
    local f = 't:' .. t.id
    local cur = h[f] and parse_ticket(h[f])
    if cur and cur.s == 'd' then
        status = 'stale'
    elseif cur and not newer(t.u, at, cur) then
        status = 'stale'
    else
        local s = t.s
        if s == '' then s = cur and cur.s or nil end
        if s then
            local p = t.p
            if p < 0 then p = cur and cur.p or 0 end
            local o = t.o
            if o <= 0 then o = cur and cur.o or t.u end
            h[f] = fmt_ticket({k = t.k, s = s, p = p, o = o, u = t.u, nc = at, r = now})
            local kind = t.k == 't' and 'ticket' or 'conversation'
            -- Events mark transitions we witnessed: a ticket first seen closed (an
            -- admin's outbound message, or a close that overtook its open) has none.
            if not cur and is_open(s) then
                event('support_ticket_opened', o, {ticket_id = t.id, priority = p == 1,
                      category = t.cat or kind})
            end
            if s == 'c' and cur and is_open(cur.s) then
                local hrs = math.floor((t.u - o) / 36 + 0.5) / 100
                if hrs < 0 then hrs = 0 end
                event('support_ticket_resolved', t.u, {ticket_id = t.id, resolution_time_hrs = hrs})
            end
        end
        if num(t.u) > num(h.ua) then h.ua = t.u end
    end
end

if c.del then
    local f = 't:' .. c.del
    local cur = h[f] and parse_ticket(h[f])
    if cur then
        cur.s = 'd'
        cur.r = now
        h[f] = fmt_ticket(cur)
    else
        -- Deleted before we saw it: a tombstone so a late delivery cannot resurrect it.
        h[f] = fmt_ticket({k = 'c', s = 'd', p = 0, o = at, u = at, nc = at, r = now})
    end
end

if c.tags then
    for _, tg in ipairs(c.tags) do
        local tat = tonumber(tg.at) or at
        if tg.c == 1 and tat > num(h.ca) then h.ca = tat end
        if tg.tid or tg.c == 1 then
            event('support_tag_applied', tat, {tag_name = tg.n, ticket_id = tg.tid})
        end
    end
end
if c.untag and tonumber(c.untag) > num(h.cu) then h.cu = c.untag end

if c.csat then
    local s, cat = tonumber(c.csat.s), tonumber(c.csat.at)
    if cat > num(h.ct) or (cat == num(h.ct) and (tostring(s) ~= h.cs or c.csat.tid ~= h.ck)) then
        h.cs, h.ct, h.ck = tostring(s), cat, c.csat.tid
        event('csat_score_submitted', cat, {score = s, ticket_id = c.csat.tid})
    end
end

if c.synced then event('intercom_user_synced', at, c.synced) end

-- Intercom profile attributes copied to Customer.io (stored JSON-encoded, types kept).
local attrs_changed = false
if c.attrs then
    for k, v in pairs(c.attrs) do
        local enc = cjson.encode(v)
        if h['a:' .. k] ~= enc then
            h['a:' .. k] = enc
            attrs_changed = true
        end
    end
end

if num(at) > num(h.ua) and (t or c.tags or c.csat or c.untag) then h.ua = at end

-- Derived fields, pruning of old tombstones and dedupe records.
local n, pa = 0, 0
local dels = {}
for f, v in pairs(h) do
    local p2 = string.sub(f, 1, 2)
    if p2 == 't:' then
        local tk = parse_ticket(v)
        if tk then
            if is_open(tk.s) then n = n + 1 end
            if tk.p == 1 and tk.s ~= 'd' and tk.s ~= 'x' and tk.o > pa then pa = tk.o end
            -- Closed, deleted and detached entries are version tombstones: kept 30 days
            -- after we recorded them, so late deliveries still find what is newer.
            if not is_open(tk.s) and now - tk.r > CLOSED_TTL then dels[#dels + 1] = f end
        else
            dels[#dels + 1] = f
        end
    elseif p2 == 'd:' and now - num(v) > DEDUPE_TTL then
        dels[#dels + 1] = f
    end
end
for _, f in ipairs(dels) do h[f] = nil end
h.n = n > 0 and n or nil
h.pa = pa > 0 and pa or nil
if dd ~= '' then h['d:' .. dd] = now end

local facts_changed = false
for i, f in ipairs(FACTS) do
    if fact(f) ~= before[i] then facts_changed = true end
end
local changed = facts_changed or #events > 0 or attrs_changed
if changed and sync then h.sv = num(h.sv) + 1 end

-- Write back only what changed: fewer hash operations, and with effects replication a
-- much smaller AOF record than the whole hash.
local out, gone = {}, {}
for f, v in pairs(h) do
    v = tostring(v)
    if old[f] ~= v then
        out[#out + 1] = f
        out[#out + 1] = v
    end
end
for f in pairs(old) do
    if h[f] == nil then gone[#gone + 1] = f end
end
if #gone > 0 then redis.call('HDEL', ukey, unpack(gone)) end
if #out > 0 then redis.call('HSET', ukey, unpack(out)) end
if n > 0 then
    if #flat > 0 then redis.call('PERSIST', ukey) end
else
    redis.call('EXPIRE', ukey, keep)
end

if changed and sync then
    local ids = c.ids or {}
    for i, e in ipairs(events) do
        local id = ids[i]
        if id then
            redis.call('RPUSH', ekey, cjson.encode({id = id, name = e.name, ts = e.ts, data = e.data}))
        end
    end
    if #events > 0 then redis.call('EXPIRE', ekey, keep) end
    -- NX keeps an existing due time: a user already queued (maybe backing off) carries
    -- these values too, because the worker reads state when it sends.
    redis.call('ZADD', qkey, 'NX', now * 1000, uid)
end
return {status, changed and 1 or 0, n}
