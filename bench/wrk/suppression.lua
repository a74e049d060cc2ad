-- wrk script: GET /v1/users/{id}/suppression?campaign=C over USERS ids (user-0 ..), the
-- four built-in campaigns in turn. Also the load for bench/ceiling (which ignores paths).
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "report.lua")

local users = tonumber(os.getenv("USERS") or "100000")
local campaigns = {"commercial", "expansion", "renewal", "feature_adoption"}
local reqs = {}
local n = 0

function init(args)
    bench_seed()
    local headers = bench_headers()
    for i = 1, 20000 do
        local u = math.random(0, users - 1)
        reqs[i] = wrk.format("GET", "/v1/users/user-" .. u .. "/suppression?campaign=" ..
            campaigns[i % 4 + 1], headers)
    end
end

function request()
    n = n % #reqs + 1
    return reqs[n]
end
