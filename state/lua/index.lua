-- index.lua: the ticket index. Finds a ticket's users when a delivery names only the
-- ticket (conversation.deleted) or drops a contact (*.contact.detached), carries the
-- ticket's newest version to owners named by different deliveries, and tells
-- reconcile.lua which tickets are open.
--
-- KEYS[1] sd:{pT}:k:<bucket>  hash, one field per ticket of the bucket:
--     <ticket id> -> "<version>;<deleted at>;<expires at>;<owners>"
--   version     "state|u|nc-u|kind|u-opened_at|prio" (u = Intercom's updated_at, nc = the
--               notification's created_at): the full version with the two times that
--               usually equal u stored as differences, so a record stays short enough for
--               Redis's compact hash encoding; "" until a delivery states open or closed
--   deleted at  0, or when the ticket was deleted
--   expires at  0 while the ticket is open; once closed or deleted, the record is kept
--               until then (a late delete still finds the owners), and reconcile.lua
--               removes it after; an expired record reads as absent
--   owners      user ids separated by NUL (user ids never contain NUL)
-- ARGV[1] mode, ARGV[2] now, ARGV[3] TTL seconds once closed or deleted, ARGV[4] ticket id
--   "add" ARGV[5]="1" if closed, ARGV[6]=this delivery's version "s|u|nc|kind|opened|prio"
--         ("" when it states no open/closed), ARGV[7..]=owners. Returns {"deleted"} when
--         the ticket was deleted earlier (the caller deletes it for these owners too),
--         {"newer", version} (in the same full form) when a newer version is known (a
--         delivery that overtook this one named other contacts: the caller applies that
--         version to these owners too), else {"ok"}.
--   "delete": marks the ticket deleted. Returns {"owners", user...}, or {"already", ...}
--         when it was already marked (a redelivered delete).
--   "owners": returns {"owners", user...} (a delivery that names no contact).
--   "detach" ARGV[5..]=owners to forget.
--   "move" ARGV[5]=from, ARGV[6]=to: the ticket now belongs to `to` instead of `from`.
local key, mode, now, ttl, ticket = KEYS[1], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]

local VERSION = '^(%a)|(%-?%d+)|(%-?%d+)|(%a)|(%-?%d+)|(%-?%d+)$'

local function split_owners(s)
    local out, i = {}, 1
    while i <= #s do
        local j = string.find(s, '\0', i, true)
        if not j then j = #s + 1 end
        out[#out + 1] = string.sub(s, i, j - 1)
        i = j + 1
    end
    return out
end

-- The ticket's record as a table, and the stored string (nil when absent or expired).
local function load()
    local raw = redis.call('HGET', key, ticket)
    if raw then
        local v, del, exp, own = string.match(raw, '^([^;]*);(%d+);(%d+);(.*)$')
        exp = tonumber(exp)
        if v and (exp == 0 or exp >= now) then
            return {v = v, del = tonumber(del), exp = exp, owners = split_owners(own)}, raw
        end
    end
    return {v = '', del = 0, exp = 0, owners = {}}, raw
end

local function save(r, raw)
    if not raw and r.v == '' and r.del == 0 and #r.owners == 0 then return end
    local s = r.v .. ';' .. r.del .. ';' .. r.exp .. ';' .. table.concat(r.owners, '\0')
    if s ~= raw then redis.call('HSET', key, ticket, s) end
end

local function add_owner(r, uid)
    for _, o in ipairs(r.owners) do if o == uid then return end end
    r.owners[#r.owners + 1] = uid
end

local function remove_owner(r, uid)
    for i, o in ipairs(r.owners) do
        if o == uid then
            table.remove(r.owners, i)
            return true
        end
    end
    return false
end

-- Full form "s|u|nc|k|o|p" -> table; stored form -> table; table -> each form.
local function parse_full(v)
    local s, u, nc, k, o, p = string.match(v, VERSION)
    if not s then return nil end
    return {s = s, u = tonumber(u), nc = tonumber(nc), k = k, o = tonumber(o), p = p}
end
local function parse_stored(v)
    local s, u, dnc, k, dop, p = string.match(v, VERSION)
    if not s then return nil end
    u = tonumber(u)
    return {s = s, u = u, nc = u + tonumber(dnc), k = k, o = u - tonumber(dop), p = p}
end
local function full(t) return table.concat({t.s, t.u, t.nc, t.k, t.o, t.p}, '|') end
local function stored(t) return table.concat({t.s, t.u, t.nc - t.u, t.k, t.u - t.o, t.p}, '|') end

if mode == 'add' then
    local r, raw = load()
    for i = 7, #ARGV do add_owner(r, ARGV[i]) end
    if r.del > 0 then
        r.exp = now + ttl
        save(r, raw)
        return {'deleted'}
    end
    local cur, inc = parse_stored(r.v), parse_full(ARGV[6])
    local result = {'ok'}
    if inc and (not cur or inc.u > cur.u or (inc.u == cur.u and inc.nc >= cur.nc)) then
        r.v = stored(inc)
        r.exp = ARGV[5] == '1' and now + ttl or 0
    elseif cur then
        result = {'newer', full(cur)}
    end
    save(r, raw)
    return result
end

if mode == 'delete' then
    local r, raw = load()
    local already = r.del > 0
    if not already then r.del = now end
    r.exp = now + ttl
    -- Unlike other records, a deletion is kept even with no owners: a redelivered delete
    -- is then still recognised.
    local s = r.v .. ';' .. r.del .. ';' .. r.exp .. ';' .. table.concat(r.owners, '\0')
    if s ~= raw then redis.call('HSET', key, ticket, s) end
    local out = {already and 'already' or 'owners'}
    for _, o in ipairs(r.owners) do out[#out + 1] = o end
    return out
end

if mode == 'owners' then
    local r = load()
    local out = {'owners'}
    for _, o in ipairs(r.owners) do out[#out + 1] = o end
    return out
end

if mode == 'detach' then
    local r, raw = load()
    for i = 5, #ARGV do remove_owner(r, ARGV[i]) end
    save(r, raw)
    return {'ok'}
end

if mode == 'move' then
    local r, raw = load()
    if remove_owner(r, ARGV[5]) then
        add_owner(r, ARGV[6])
        save(r, raw)
    end
    return {'ok'}
end
return redis.error_reply('index.lua: unknown mode ' .. tostring(mode))
