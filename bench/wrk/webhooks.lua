-- wrk script: POSTs pre-signed Intercom notifications from the file named by the
-- WEBHOOKS environment variable (lines "<signature>\t<body>", see bench/gen_webhooks.py),
-- each thread starting at a different offset, cycling through the file.
local reqs = {}
local idx = 0

function setup(thread)
    thread:set("offset", math.random(1, 1000000))
end

function init(args)
    local path = os.getenv("WEBHOOKS") or "bench/out/webhooks.txt"
    for line in io.lines(path) do
        local sig, body = line:match("^(%S+)\t(.*)$")
        if sig then
            reqs[#reqs + 1] = wrk.format("POST", "/webhooks/intercom",
                {["Content-Type"] = "application/json", ["X-Hub-Signature"] = sig}, body)
        end
    end
    idx = (offset or 0) % #reqs
end

function request()
    idx = idx % #reqs + 1
    return reqs[idx]
end
