-- wrk script: POST /v1/suppression/check with IDS (default 1000) random ids out of USERS
-- (user-0 ..), campaign renewal. Thread variable "count" = user checks answered 200.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "report.lua")

local users = tonumber(os.getenv("USERS") or "100000")
local ids = tonumber(os.getenv("IDS") or "1000")
local reqs = {}
local n = 0
count = 0

function init(args)
    bench_seed()
    local headers = bench_headers({["Content-Type"] = "application/json"})
    for i = 1, 64 do
        local parts = {}
        for k = 1, ids do parts[k] = '"user-' .. math.random(0, users - 1) .. '"' end
        local body = '{"campaign":"renewal","user_ids":[' .. table.concat(parts, ",") .. ']}'
        reqs[i] = wrk.format("POST", "/v1/suppression/check", headers, body)
    end
end

function request()
    n = n % #reqs + 1
    return reqs[n]
end

function response(status, headers, body)
    if status == 200 then count = count + ids end
end
