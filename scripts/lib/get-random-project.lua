-- wrk script: GET /api/fed/projects/hub<N> for a random N below HUBS.
local hubs = tonumber(os.getenv("HUBS") or "10000")
local key = os.getenv("KEY")
math.randomseed(os.time())
request = function()
  local path = "/api/fed/projects/hub" .. math.random(0, hubs - 1)
  return wrk.format("GET", path, { ["X-API-Key"] = key })
end
