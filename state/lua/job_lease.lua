-- job_lease.lua: takes due jobs from one partition's Intercom job queue for one worker.
--
-- KEYS[1] job queue sd:{pN}:iq, KEYS[2] job records sd:{pN}:ij
-- ARGV[1] now (ms), ARGV[2] lease length (ms), ARGV[3] max jobs
--
-- As lease.lua does for users: each due job's time moves to now + lease, so no other
-- worker takes it while this one works, and a worker that dies lets the lease run out.
-- A queued id without a record (cannot happen unless edited by hand) is dropped.
-- Returns {id1, record1, id2, record2, ...}.
local q, rec = KEYS[1], KEYS[2]
local now, lease, max = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local due = redis.call('ZRANGEBYSCORE', q, '-inf', now, 'LIMIT', 0, max)
local out = {}
for _, id in ipairs(due) do
    local r = redis.call('HGET', rec, id)
    if r then
        redis.call('ZADD', q, 'XX', now + lease, id)
        out[#out + 1] = id
        out[#out + 1] = r
    else
        redis.call('ZREM', q, id)
    end
end
return out
