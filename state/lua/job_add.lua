-- job_add.lua: queues one job for the Intercom worker (a Customer.io event to forward, a
-- contact look-up, a ticket to re-check), once.
--
-- KEYS[1] job queue   sd:{pN}:iq   (zset: job id -> due time, ms)
-- KEYS[2] job records sd:{pN}:ij   (hash: job id -> JSON)
-- KEYS[3] dedupe key  sd:{pN}:cw:<id> (only read when ARGV[4] > 0)
-- ARGV[1] job id ("e:<event id>", "l:<contact id>", "r:<ticket id>"; N is the partition
--         of the part after the prefix), ARGV[2] record, ARGV[3] now (ms),
-- ARGV[4] seconds to remember the dedupe key (0: no dedupe)
--
-- Returns "queued", "duplicate" (the dedupe key exists: this work was accepted before,
-- within the window) or "pending" (the same job is already waiting).
local q, rec, dd = KEYS[1], KEYS[2], KEYS[3]
local id, record, now, ttl = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
if ttl > 0 and not redis.call('SET', dd, '1', 'NX', 'EX', ttl) then
    return 'duplicate'
end
if redis.call('ZADD', q, 'NX', now, id) == 0 then
    return 'pending'
end
redis.call('HSET', rec, id, record)
return 'queued'
