-- wrk script: GET /v1/users/{id}/suppression?campaign=renewal over USERS ids (user-0 ..).
local users = tonumber(os.getenv("USERS") or "100000")
local campaigns = {"commercial", "expansion", "renewal", "feature_adoption"}
local n = 0

function request()
    n = n + 1
    local u = math.random(0, users - 1)
    return wrk.format("GET", "/v1/users/user-" .. u .. "/suppression?campaign=" ..
        campaigns[n % 4 + 1])
end
