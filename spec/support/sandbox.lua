--- Test helper: the sandboxes spec/support/run.sh started, and their
-- test-mode control endpoints (/_sandbox/...), reached with LuaSocket so the
-- specs never rely on the code under test to set up what they check.
local http = require("socket.http")
local ltn12 = require("ltn12")
local cjson = require("cjson")
local keys = require("spec.support.keys")

local M = {}

local function need(name)
  local v = os.getenv(name)
  if not v or v == "" then
    error(name .. " is not set: run the specs with `make test` (spec/support/run.sh)", 3)
  end
  return v
end

--- The protocol era the sandboxes speak (FAVCRM_SANDBOX_ERA, `make test
-- SANDBOX_ERA=...`): "2025" (MCP 2025-11-25 and older, sessions; the v1
-- SDK), "2026" (MCP 2026-07-28 only, `initialize` refused; the v2 SDK) or
-- "dual" (both: 2026 requests to the v2 SDK, the rest to the v1 one).
M.era = os.getenv("FAVCRM_SANDBOX_ERA") or "2025"
if M.era == "" then M.era = "2025" end

--- M.speaks(era) -> true when the sandboxes answer that era ("2025" or
-- "2026"): pin a spec with `if not sandbox.speaks("2025") then pending(...)`.
function M.speaks(era)
  if era ~= "2025" and era ~= "2026" then error("sandbox.speaks: era must be \"2025\" or \"2026\"", 2) end
  return M.era == "dual" or M.era == era
end

--- M.slowdown: how many times slower than native this run is
-- (FAVCRM_SPEC_SLOWDOWN; `make valgrind` sets 20), else 1.
M.slowdown = tonumber(os.getenv("FAVCRM_SPEC_SLOWDOWN") or "") or 1
--- M.patience(secs) -> secs, times the slowdown: for a bound that only says
-- how long a spec waits for something that should happen, never for a bound
-- the spec tests.
function M.patience(secs) return secs * M.slowdown end
--- M.stretch(x) -> x, times 4 in a slowed run: for times a spec races
-- against each other (a server's delay against the call's timeout), all
-- stretched alike so they keep their proportion.
function M.stretch(x) return M.slowdown > 1 and x * 4 or x end

function M.url() return need("FAVCRM_SANDBOX_URL") end
function M.stateless_url() return need("FAVCRM_SANDBOX_STATELESS_URL") end
function M.json_url() return need("FAVCRM_SANDBOX_JSON_URL") end
function M.outbox_dir() return need("FAVCRM_SANDBOX_OUTBOX") end
--- the sandbox in OAuth mode (--oauth): /mcp needs a bearer, it is its own authorization server
function M.oauth_url() return need("FAVCRM_SANDBOX_OAUTH_URL") end

local function base(url)
  return (url or M.url()):match("^(https?://[^/]+)")
end

--- M.control(method, path, body [, url]) -> decoded JSON answer, status
function M.control(method, path, body, url)
  local out = {}
  local payload = body and cjson.encode(body) or nil
  local _, status = http.request({
    url = base(url) .. path,
    method = method,
    headers = payload and { ["content-type"] = "application/json",
      ["content-length"] = tostring(#payload) } or nil,
    source = payload and ltn12.source.string(payload) or nil,
    sink = ltn12.sink.table(out),
  })
  local text = table.concat(out)
  local ok, decoded = pcall(cjson.decode, text)
  if status ~= 200 then
    error("sandbox control " .. method .. " " .. path .. " answered " .. tostring(status) .. ": " .. text, 2)
  end
  return ok and decoded or text, status
end

function M.stats(url) return M.control("GET", "/_sandbox/stats", nil, url) end
function M.reset(url) return M.control("POST", "/_sandbox/reset", {}, url) end
function M.fault(spec, url) return M.control("POST", "/_sandbox/fault", spec, url) end
function M.advance(seconds, url) return M.control("POST", "/_sandbox/clock", { advance = seconds }, url) end
function M.revoke(key, url) return M.control("POST", "/_sandbox/revoke", { apiKey = key }, url) end
--- M.cache({ttlMs = n, cacheScope = "private"|"public", methods = {...}}[, url]):
-- the 2026 cache fields of list/read/discover results (2026 and dual eras).
function M.cache(hints, url) return M.control("POST", "/_sandbox/cache", hints, url) end
function M.outbox(to, url)
  return M.control("GET", "/_sandbox/outbox" .. (to and ("?to=" .. to) or ""), nil, url)
end

--- M.oauth_secrets([url]) -> every access and refresh token the OAuth sandbox
-- issued, client secret it registered and code verifier it received; each is
-- remembered for run.sh's scan of the run's output.
function M.oauth_secrets(url)
  local list = M.control("GET", "/_sandbox/oauth/tokens", nil, url or M.oauth_url()).tokens
  for _, s in ipairs(list) do keys.remember(s) end
  return list
end

local n = 0
--- M.account([email][, url]) -> api key (string), email: a ready workspace.
function M.account(email, url)
  n = n + 1
  email = email or string.format("acct%d.%d.%d@example.com", os.time(), n, math.random(1, 1e6))
  local res = M.control("POST", "/_sandbox/accounts", { email = email }, url)
  keys.remember(res.apiKey)
  return res.apiKey, email, res
end

return M
