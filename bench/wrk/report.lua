-- report.lua: what every bench/wrk script shares. Loaded with dofile() by the scenario
-- scripts (they find it next to themselves).
--
--   setup()  numbers the threads (thread variable "tid", 0-based) and keeps them, so
--            done() can collect per-thread counters ("count": scenario units done;
--            "t_first", "t_last": see done())
--   done()   prints one line "BENCH_JSON {...}" for bench/bench.py: requests, duration,
--            socket errors, non-2xx/3xx answers, latency percentiles (µs) and the sum of
--            the threads' "count" (webhooks, user checks) when a script keeps one
local threads = {}

-- Monotonic wall clock in µs through LuaJIT's FFI (wrk's Lua has no wall clock finer
-- than os.time()); nil when FFI is unavailable.
local has_ffi, ffi = pcall(require, "ffi")
if has_ffi then
    pcall(ffi.cdef, "typedef struct { long s; long ns; } bench_ts_t;" ..
                    "int clock_gettime(int clk, bench_ts_t *ts);")
end
function bench_now_us()
    if not has_ffi then return nil end
    local ts = ffi.new("bench_ts_t")
    ffi.C.clock_gettime(1, ts)
    return tonumber(ts.s) * 1e6 + tonumber(ts.ns) / 1e3
end

function setup(thread)
    thread:set("tid", #threads)
    threads[#threads + 1] = thread
end

-- A per-thread random seed (wrk's threads would all draw the same sequence otherwise).
function bench_seed()
    math.randomseed(os.time() * 1000 + (tid or 0) * 7919 + math.floor(os.clock() * 1e6))
    for _ = 1, 10 do math.random() end
end

-- The Authorization header for /v1/*, when the bench configured tokens.
function bench_headers(extra)
    local h = extra or {}
    local token = os.getenv("BENCH_TOKEN")
    if token and token ~= "" then h["Authorization"] = "Bearer " .. token end
    return h
end

function done(summary, latency, requests)
    -- "count": units done; "t_first"/"t_last" (µs, bench_now_us): when a thread sent
    -- its first request and got its last answer, for scripts that stop early (ONCE).
    local count, first, last = 0, nil, nil
    for _, t in ipairs(threads) do
        count = count + (tonumber(t:get("count")) or 0)
        local a, b = tonumber(t:get("t_first")), tonumber(t:get("t_last"))
        if a and (not first or a < first) then first = a end
        if b and (not last or b > last) then last = b end
    end
    local active = (first and last and last > first) and (last - first) or 0
    local e = summary.errors
    io.write(string.format(
        'BENCH_JSON {"requests":%d,"duration_us":%d,"active_us":%d,"bytes":%d,"count":%d,' ..
        '"connect_errors":%d,"read_errors":%d,"write_errors":%d,"timeouts":%d,' ..
        '"non_2xx":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d,' ..
        '"mean_us":%.1f}\n',
        summary.requests, summary.duration, active, summary.bytes, count,
        e.connect, e.read, e.write, e.timeout, e.status,
        latency:percentile(50), latency:percentile(90), latency:percentile(99),
        latency:percentile(99.9), latency.max, latency.mean))
end
