--- favcrm.doctor: client:doctor(), the workspace check the Rust CLI's
-- `favcrm doctor` does, and more. It never raises: every failing sub-check
-- fills its own `*_error` entry and the rest still runs.
local core = require("favcrm.core")
local config = require("favcrm.config")

local M = {}

local HINTS = {
  network = "check the URL and your network; FAVCRM_MCP_URL sets the endpoint",
  tls = "the server's certificate could not be verified; pass ca_file for a private CA",
  timeout = "the server did not answer in time; try again, or raise the timeout (FAVCRM_TIMEOUT_MS)",
  unauthorized = "the API key was refused: if it was revoked or leaked, revoke it in the FavCRM portal "
    .. "(Settings, MCP Keys) and issue a new one, then set FAVCRM_API_KEY or run the signup again",
  rate_limited = "the server is rate limiting this client; wait before trying again",
  http = "the server answered with an HTTP error; check the URL",
  protocol = "the server did not speak MCP as expected; check the URL points at an MCP endpoint",
  plan_required = "this needs a paid plan; see list_plan_options",
}

local function brief(err)
  if type(err) ~= "table" then return { code = "protocol", message = tostring(err) } end
  return { code = err.code, message = err.message, status = err.status }
end

--- client:doctor() -> report (never raises; see README for the fields)
-- Behind `client:doctor`.
---@param self favcrm.Client
---@return table report `ok`, `problems`, `reachable`, `authenticated`, ...
function M.doctor(self)
  local url, url_source = self:endpoint()
  local r = {
    url = url,
    url_source = url_source,
    reachable = false,
    authenticated = false,
    auth_source = self:auth_source(),
    problems = {},
  }
  local function problem(what, err, hint)
    r.problems[#r.problems + 1] = {
      check = what,
      code = type(err) == "table" and err.code or nil,
      message = type(err) == "table" and err.message or tostring(err),
      hint = hint or (type(err) == "table" and (err.hint or HINTS[err.code])) or nil,
    }
  end
  local ok, crash = pcall(function()
    local s = self.session
    local t0 = core.monotonic()
    local okinit, ierr = s:initialize()
    if not okinit then
      r.reachable_error = brief(ierr)
      problem("reachable", ierr)
      return
    end
    local t1 = core.monotonic()
    local pong, perr = s:request("ping", nil, { timeout = 10 })
    if pong then
      r.latency_ms = math.floor((core.monotonic() - t1) * 1000 * 10 + 0.5) / 10
    else
      r.latency_ms = math.floor((t1 - t0) * 1000 * 10 + 0.5) / 10
      r.ping_error = brief(perr)
      -- a session opened earlier says nothing about now: a server gone
      -- since (connection refused, no answer) is unreachable
      if type(perr) == "table" and (perr.code == "network" or perr.code == "timeout" or perr.code == "tls") then
        r.reachable_error = brief(perr)
        problem("reachable", perr)
        return
      end
    end
    r.reachable = true
    local info = s.server_info or {}
    r.server = { name = info.name, version = info.version }
    r.protocol_version = s.protocol_version
    r.era = s.era -- "modern" (2026-07-28, stateless) or "legacy" (initialize, a session)
    r.session = s.session_id and "kept" or "stateless"
    local server_now = self:server_time()
    if server_now then
      r.clock_skew_s = math.floor(os.time() - server_now + 0.5)
      if math.abs(r.clock_skew_s) > 120 then
        problem("clock", "this machine's clock is " .. r.clock_skew_s .. " s off the server's",
          "set the system clock (NTP); code expiry is computed from the server's clock, so signup still works")
      end
    end
    local tools, terr = self:tools({ refresh = true })
    if tools then
      r.tool_count = #tools
    else
      r.tools_error = brief(terr)
      problem("tools", terr)
    end
    if not self:has_api_key() and not self.oauth then -- an OAuth client authorizes on the call
      problem("auth", "no API key is configured",
        "sign up with `favcrm signup`, save a key with `favcrm login`, or set FAVCRM_API_KEY")
      return
    end
    local companies, cerr = self:call("list_my_companies")
    if companies ~= nil then
      r.authenticated = true
      r.current_user = companies
    else
      r.current_user_error = brief(cerr)
      problem("current_user", cerr)
      if cerr.code == "unauthorized" then return end
    end
    local plan, plerr = self:call("get_plan_status")
    if plan ~= nil then r.plan = plan else r.plan_error = brief(plerr); problem("plan", plerr) end
    local wa, werr = self:call("get_whatsapp_connection_status")
    if wa ~= nil then r.whatsapp = wa else r.whatsapp_error = brief(werr); problem("whatsapp", werr) end
  end)
  if not ok then
    r.internal_error = { code = "protocol", message = tostring(crash) }
    problem("internal", tostring(crash), "this is a bug in favcrm-lua; please report it")
  end
  -- a config folder or file others can write or own: refused by config.load,
  -- reported here whether or not this client needed the file
  local okperm, perm = pcall(config.permission_problem)
  if okperm and perm then
    problem("config_permissions", perm, perm.hint)
  else
    local okp, mode_problem = pcall(config.file_mode_problem)
    if okp and mode_problem then
      problem("config_file", mode_problem, "run: chmod 600 " .. tostring(config.path()))
    end
  end
  local cerr = self:config_problem()
  if cerr and not (okperm and perm and type(cerr) == "table" and cerr.message == perm.message) then
    problem("config_file", cerr, type(cerr) == "table" and cerr.hint or "fix or remove the config file")
  end
  r.ok = #r.problems == 0
  return r
end

return M
