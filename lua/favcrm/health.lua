--- favcrm.health: `:checkhealth favcrm`. Checks that the C module loads
-- (the build hook ran), then runs client:doctor() and reports each finding
-- with its hint: the key source, reachability, auth, plan, clock skew and
-- anything else doctor found. `:FavCRM doctor` shows the same report.
--
-- Neovim 0.10+ has vim.health.start/ok/warn/error; 0.8-0.9 vim.health.report_*;
-- 0.7 require("health").report_*. Every one is used where it is found.
local M = {}

local BUILD_ADVICE = {
  "run the build hook in the plugin folder: make nvim",
  "lazy.nvim: build = \"make nvim\"; packer: run = \"make nvim\" (then :Lazy build favcrm-lua or :PackerSync)",
  "the build needs a C compiler, LuaJIT headers, libcurl and PCRE2 headers "
    .. "(Debian: sudo apt-get install build-essential libluajit-5.1-dev libcurl4-openssl-dev libpcre2-dev)",
}

local SIGNUP_ADVICE = ":FavCRM signup creates a workspace and saves its key"

-- Where favcrm.core was (or would be) loaded from.
local function core_path()
  if package.preload["favcrm.core"] then return "package.preload" end
  local found = vim.api.nvim_get_runtime_file("lua/favcrm/core.so", false)[1]
  if found then return found end
  return package.searchpath and package.searchpath("favcrm.core", package.cpath) or nil
end

local function hints(...)
  local out = {}
  for i = 1, select("#", ...) do
    local h = select(i, ...)
    if type(h) == "string" and h ~= "" then out[#out + 1] = h end
  end
  return out
end

local function problems_by_check(report)
  local by = {}
  for _, p in ipairs(report.problems or {}) do
    by[p.check] = by[p.check] or {}
    table.insert(by[p.check], p)
  end
  return by
end

local function text(p)
  if p.code then return p.code .. ": " .. tostring(p.message) end
  return tostring(p.message)
end

--- health.build() -> section: does favcrm.core load into this Neovim?
---@return table section {title =, items = {{kind, message, advice}}, ok =}
function M.build()
  local items = {}
  local sec = { title = "favcrm: build", items = items }
  if not jit then
    items[#items + 1] = { "warn", "this Neovim runs PUC Lua " .. _VERSION .. ", not LuaJIT",
      { "the build hook builds for PUC Lua 5.1 then (make nvim picks it from nvim --version)" } }
  end
  local ok, core = pcall(require, "favcrm.core")
  if not ok then
    items[#items + 1] = { "error", "favcrm.core (the C module) does not load: "
      .. tostring(core):gsub("\n.*", ""), BUILD_ADVICE }
    return sec
  end
  sec.ok = true
  items[#items + 1] = { "ok", "favcrm.core loads (" .. tostring(core_path() or "preloaded")
    .. (core.VERSION and (", version " .. core.VERSION) or "") .. ")" }
  local jok = pcall(require, "cjson.safe")
  if not jok then
    items[#items + 1] = { "error", "no lua-cjson: neither an installed one nor Neovim's vim.json",
      { "install lua-cjson for LuaJIT (Debian: lua-cjson), or use Neovim 0.6 or newer" } }
    sec.ok = false
  end
  return sec
end

--- health.sections(report) -> list of sections for a doctor report
---@param report table what client:doctor() returned
---@return table sections {{title =, items = {{kind, message, advice}}}, ...}
function M.sections(report)
  local by = problems_by_check(report)
  local used = {}
  local function take(check)
    used[check] = true
    return by[check] or {}
  end
  local out = {}

  local key = { title = "favcrm: API key", items = {} }
  for _, p in ipairs(take("auth")) do
    key.items[#key.items + 1] = { "warn", p.message, hints(p.hint, SIGNUP_ADVICE) }
  end
  if report.auth_source then
    key.items[#key.items + 1] = { "ok", "key from " .. tostring(report.auth_source) }
  elseif #key.items == 0 then
    key.items[#key.items + 1] = { "warn", "no API key is configured",
      hints("set FAVCRM_API_KEY, or save a key with `favcrm login`", SIGNUP_ADVICE) }
  end
  for _, p in ipairs(take("config_file")) do key.items[#key.items + 1] = { "error", text(p), hints(p.hint) } end
  for _, p in ipairs(take("config_permissions")) do
    key.items[#key.items + 1] = { "error", text(p), hints(p.hint) }
  end
  out[#out + 1] = key

  local server = { title = "favcrm: server", items = {} }
  for _, p in ipairs(take("reachable")) do
    server.items[#server.items + 1] = { "error", tostring(report.url) .. " is not reachable: " .. text(p),
      hints(p.hint) }
  end
  if report.reachable then
    local info = report.server or {}
    server.items[#server.items + 1] = { "ok", "reachable: " .. tostring(report.url)
      .. (report.url_source and (" (from " .. tostring(report.url_source) .. ")") or "")
      .. ", " .. tostring(info.name or "server") .. " " .. tostring(info.version or "")
      .. ", MCP " .. tostring(report.protocol_version) .. ", session " .. tostring(report.session)
      .. (report.latency_ms and (", " .. report.latency_ms .. " ms") or "") }
  end
  for _, p in ipairs(take("tools")) do server.items[#server.items + 1] = { "error", text(p), hints(p.hint) } end
  if report.tool_count then
    server.items[#server.items + 1] = { "ok", report.tool_count .. " tools" }
  end
  out[#out + 1] = server

  if report.reachable then
    local acct = { title = "favcrm: account", items = {} }
    for _, p in ipairs(take("current_user")) do
      acct.items[#acct.items + 1] = { "error", "the key does not work: " .. text(p), hints(p.hint, SIGNUP_ADVICE) }
    end
    if report.authenticated then acct.items[#acct.items + 1] = { "ok", "authenticated" } end
    for _, p in ipairs(take("plan")) do acct.items[#acct.items + 1] = { "warn", "plan: " .. text(p), hints(p.hint) } end
    if type(report.plan) == "table" then
      local plan = report.plan.plan or report.plan.name or report.plan.status
      acct.items[#acct.items + 1] = { "ok", "plan: " .. tostring(plan or "known") }
    end
    for _, p in ipairs(take("whatsapp")) do
      acct.items[#acct.items + 1] = { "warn", "WhatsApp: " .. text(p), hints(p.hint) }
    end
    if #acct.items == 0 then acct.items[1] = { "info", "not checked: no API key" } end
    out[#out + 1] = acct

    local clock = { title = "favcrm: clock", items = {} }
    for _, p in ipairs(take("clock")) do clock.items[#clock.items + 1] = { "warn", text(p), hints(p.hint) } end
    if #clock.items == 0 then
      clock.items[1] = report.clock_skew_s and { "ok", "clock skew " .. report.clock_skew_s .. " s" }
        or { "info", "the server sent no time; clock skew not known" }
    end
    out[#out + 1] = clock
  end

  local other = { title = "favcrm: other", items = {} }
  for _, p in ipairs(report.problems or {}) do
    if not used[p.check] then other.items[#other.items + 1] = { "error", p.check .. ": " .. text(p), hints(p.hint) } end
  end
  if #other.items > 0 then out[#out + 1] = other end
  return out
end

--- health.run() -> sections: the build check, then doctor (blocking) on a
-- fresh client from the environment and the config file.
---@return table sections
function M.run()
  local build = M.build()
  if not build.ok then return { build } end
  local ok, client = pcall(function() return require("favcrm").new() end)
  if not ok then
    return { build, { title = "favcrm: client", items = { { "error", tostring(client), {} } } } }
  end
  local report = client:doctor()
  client:close()
  local out = { build }
  for _, s in ipairs(M.sections(report)) do out[#out + 1] = s end
  return out
end

--- health.lines(sections) -> lines of text, as :FavCRM doctor shows them
---@param sections table what health.sections() or health.run() returned
---@return table lines
function M.lines(sections)
  local label = { ok = "OK", warn = "WARNING", ["error"] = "ERROR", info = "INFO" }
  local out = {}
  for _, s in ipairs(sections) do
    out[#out + 1] = "## " .. s.title
    for _, it in ipairs(s.items) do
      out[#out + 1] = "  - " .. label[it[1]] .. " " .. it[2]
      for _, a in ipairs(it[3] or {}) do out[#out + 1] = "    - ADVICE: " .. a end
    end
    out[#out + 1] = ""
  end
  return out
end

-- The report functions of this Neovim.
local function reporter()
  local h = vim.health
  if h and h.start then return h end
  local old = (h and h.report_start) and h or require("health")
  return { start = old.report_start, ok = old.report_ok, warn = old.report_warn,
    error = old.report_error, info = old.report_info }
end

--- health.check(): what :checkhealth favcrm runs
---@return nil
function M.check()
  local r = reporter()
  for _, s in ipairs(M.run()) do
    r.start(s.title)
    for _, it in ipairs(s.items) do
      local kind, msg, advice = it[1], it[2], it[3]
      if kind == "ok" or kind == "info" then
        r[kind](msg)
      else
        r[kind](msg, advice or {})
      end
    end
  end
end

return M
