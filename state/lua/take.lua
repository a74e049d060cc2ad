-- take.lua: read, then remove, one identity's state when it moves to another user
-- (a contact linked to its external_id, or merged into another contact).
--
-- KEYS[1] user hash, KEYS[2] its events list, KEYS[3] its partition's sync queue
-- ARGV[1] "read": returns {digest, field, value, ...}
--         "remove" ARGV[2]=digest ARGV[3]=user ARGV[4]="1" if synced: deletes both keys
--         if the hash still has that digest, so a change that raced with the move is not
--         lost, and queues a synced user so Customer.io learns its state is now empty.
--         Returns {"removed"} or {"changed"}.
-- The caller merges what "read" returned into the target user (apply.lua, idempotent)
-- before "remove": a crash between the two leaves the state in both places, never none.
local flat = redis.call('HGETALL', KEYS[1])
local pairs_ = {}
for i = 1, #flat, 2 do pairs_[#pairs_ + 1] = flat[i] .. '=' .. flat[i + 1] end
table.sort(pairs_)
local digest = redis.sha1hex(table.concat(pairs_, '\n'))
if ARGV[1] == 'read' then
    table.insert(flat, 1, digest)
    return flat
end
if digest ~= ARGV[2] then return {'changed'} end
redis.call('DEL', KEYS[1], KEYS[2])
if ARGV[4] == '1' then redis.call('ZADD', KEYS[3], 'NX', redis.call('TIME')[1] * 1000, ARGV[3]) end
return {'removed'}
