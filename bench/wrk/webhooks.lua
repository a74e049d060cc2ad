-- wrk script: POSTs pre-signed Intercom notifications from the file named by WEBHOOKS
-- (lines "<signature>\t<body>", see bench/gen_webhooks.py).
--
-- With WRK_THREADS=N each thread loads only its share of the lines (line i goes to thread
-- i mod N), so a large file is held once, not N times. With ONCE=1 every line is sent
-- exactly once: a thread that has sent its share stops once the answers to all of them
-- are in (its connections ask GET /healthz meanwhile), and records when ("t_last"). wrk
-- itself still runs until -d or SIGINT: bench/bench.py interrupts it once every
-- notification is answered, and takes the time from t_first/t_last.
-- Otherwise each thread cycles through its share from a random offset.
-- Thread variable "count" = notifications answered (any status).
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "report.lua")

local reqs = {}
local idx = 0
local once = os.getenv("ONCE") == "1"
local health
-- wrk calls request() once on thread 0 before any connection opens, only to count the
-- requests in the string (script_verify_request); that call must not use up a line.
local verifying
count = 0
t_first, t_last = nil, nil

function init(args)
    bench_seed()
    local path = os.getenv("WEBHOOKS") or "bench/out/webhooks.txt"
    local nthreads = tonumber(os.getenv("WRK_THREADS") or "1")
    local mine = tid or 0
    local i = 0
    for line in io.lines(path) do
        if i % nthreads == mine then
            local tab = line:find("\t", 1, true)
            if tab then
                reqs[#reqs + 1] = wrk.format("POST", "/webhooks/intercom",
                    {["Content-Type"] = "application/json",
                     ["User-Agent"] = "intercom-parrot-service-client/1.0",
                     ["X-Hub-Signature"] = line:sub(1, tab - 1)}, line:sub(tab + 1))
            end
        end
        i = i + 1
    end
    health = wrk.format("GET", "/healthz")
    verifying = (tid or 0) == 0
    if not once and #reqs > 0 then idx = math.random(0, #reqs - 1) end
end

function request()
    if verifying then
        verifying = false
        return health
    end
    if idx == 0 then t_first = bench_now_us() end
    if once then
        if idx < #reqs then
            idx = idx + 1
            return reqs[idx]
        end
        return health
    end
    idx = idx % #reqs + 1
    return reqs[idx]
end

function response(status, headers, body)
    -- /healthz answers {"status":"ok"}; everything else here answers a notification.
    if not (body and body:find('"ok"', 1, true)) then count = count + 1 end
    if once and count >= #reqs and not t_last then
        t_last = bench_now_us()
        wrk.thread:stop()
    end
end
