--- favcrm.cli: the `favcrm` command-line program (bin/favcrm is a thin
-- wrapper). Everything goes through the public API and the recipes.
--
--   local cli = require("favcrm.cli")
--   local code = cli.main({ "doctor", "--json" }, { stdout = ..., stderr = ..., stdin = ...,
--     isatty = function(fd) ... end, getenv = function(name) ... end })
--
-- Exit codes: 0 success, 1 usage (a bad command line or bad input), 2 failure,
-- 3 authentication (no key, or the key was refused), 4 rate limited.
local favcrm = require("favcrm")
local core = require("favcrm.core")
local config = require("favcrm.config")
local errors = require("favcrm.errors")
local util = require("favcrm.util")
local json = require("favcrm.json")

local G = json.guide

local M = {}

M.EXIT = { ok = 0, usage = 1, failure = 2, auth = 3, rate_limited = 4 }
local EXIT = M.EXIT

local EXIT_HELP = [[
Exit status:
  0  success
  1  usage: a bad command line or bad input (nothing was sent)
  2  failure: the server or the network said no (details on stderr)
  3  authentication: no API key, or the key was refused
  4  rate limited: wait before trying again (the wait is on stderr)]]

local GLOBAL_HELP = [[
Global options (any command):
  --url URL          the FavCRM MCP endpoint (env FAVCRM_MCP_URL; default
                     https://api.favcrm.io/mcp, or the config file's url)
  --api-key KEY      the API key (env FAVCRM_API_KEY, then the config file).
                     Prefer the environment or `favcrm login`: a key in the
                     command line is visible to other users (ps)
  --json             print exactly one JSON document on stdout
  --timeout SECONDS  how long to wait for each answer (default 60)
  --no-color         no colour (also: NO_COLOR set, or output not a terminal)
  -h, --help         help for any command
  --version          the version]]

-- Flags: name -> "value" or "bool". Globals are allowed everywhere.
local GLOBAL_FLAGS = { url = "value", ["api-key"] = "value", json = "bool", timeout = "value",
  help = "bool", version = "bool", ["no-color"] = "bool" }
local ALL_FLAGS = {
  email = "value", ["organisation-name"] = "value", industry = "value", country = "value",
  timezone = "value", ["request-id"] = "value", code = "value", ["no-save"] = "bool", ["show-key"] = "bool",
  yes = "bool", token = "value", name = "value",
}
for k, v in pairs(GLOBAL_FLAGS) do ALL_FLAGS[k] = v end
local ALIASES = { h = "help", y = "yes", V = "version", ["organization-name"] = "organisation-name" }

-- ------------------------------------------------------------------------
-- Output
-- ------------------------------------------------------------------------

local Ctx = {}
Ctx.__index = Ctx

local COLORS = { red = "31", green = "32", yellow = "33", bold = "1", dim = "2", cyan = "36" }

function Ctx:paint(text, color, stream)
  local on = stream == "stderr" and self.color_err or self.color_out
  if not on or not COLORS[color] then return text end
  return "\27[" .. COLORS[color] .. "m" .. text .. "\27[0m"
end

function Ctx:say(...)
  local parts = { ... }
  for i = 1, select("#", ...) do parts[i] = tostring(parts[i]) end
  self.stdout:write(table.concat(parts), "\n")
end

function Ctx:warn(text)
  self.stderr:write(self:paint("favcrm: warning: ", "yellow", "stderr"), errors.redact(text), "\n")
end

function Ctx:json_out(value, guide)
  self.stdout:write(json.encode(value, guide, "  "), "\n")
end

--- cli.exit_for(err) -> the exit status for an error: usage (1) for bad
-- input or configuration, auth (3) without a usable key, rate_limited (4),
-- failure (2) for the rest (cli.EXIT names them).
---@param err favcrm.Error|string|nil the error
---@return integer status
local function exit_for(err)
  local code = type(err) == "table" and err.code or nil
  if code == "invalid_arguments" or code == "usage" or code == "config_error" then return EXIT.usage end
  if code == "unauthorized" or code == "no_key" then return EXIT.auth end
  if code == "rate_limited" then return EXIT.rate_limited end
  return EXIT.failure
end
M.exit_for = exit_for

local HINTS = {
  rate_limited = "FavCRM limits how often this can be done; wait and try again (never loop)",
  expired_code = "codes live 10 minutes: run `favcrm signup request` again for a fresh one",
  wrong_code = "check the newest e-mail from FavCRM and try again",
  existing_account = "sign in to the FavCRM portal (https://app.favcrm.io), open Settings > MCP Keys, create "
    .. "a key and run `favcrm login`",
  plan_required = "this needs a paid plan: `favcrm tool call list_plan_options '{}'` lists them",
  confirmation_required = "the tool is destructive: pass --yes to go ahead",
  no_key = "run `favcrm login`, `favcrm signup`, or set FAVCRM_API_KEY",
  unknown_tool = "`favcrm tool list` shows the tools",
  timeout = "try again, or raise --timeout",
  network = "check --url / FAVCRM_MCP_URL and your network",
}

--- Reports an error (object or text) on stderr (and, with --json, as one
-- JSON document on stdout); returns the exit code.
function Ctx:fail(err, code)
  if type(err) == "string" then err = { code = "usage", message = err } end
  code = code or exit_for(err)
  local lines = { self:paint("favcrm: error: ", "red", "stderr") .. tostring(err.message or err.code) }
  if err.retry_after then
    lines[#lines + 1] = "  retry after: " .. tostring(err.retry_after) .. " seconds"
  end
  if type(err.suggestions) == "table" and #err.suggestions > 0 and not tostring(err.message):find("did you mean") then
    lines[#lines + 1] = "  did you mean: " .. table.concat(err.suggestions, ", ")
  end
  if type(err.upgrade_action) == "table" then
    local ua = err.upgrade_action
    lines[#lines + 1] = "  upgrade: " .. tostring(ua.requiredPlan or ua.plan or "") .. " "
      .. tostring(ua.tool or ua.url or "")
  end
  local hint = err.hint or HINTS[err.code]
  if hint then lines[#lines + 1] = "  hint: " .. tostring(hint) end
  if code == EXIT.usage and err.code == "usage" and self.usage_of then
    lines[#lines + 1] = "  see: favcrm " .. self.usage_of .. " --help"
  end
  -- what a server or a child sent may hold the key: errors.redact masks it
  self.stderr:write(errors.redact(table.concat(lines, "\n")), "\n")
  if self.flags and self.flags.json then
    local sugg = err.suggestions
    if type(sugg) == "table" then
      sugg = {}
      for i, s in ipairs(err.suggestions) do sugg[i] = errors.redact(s) end
    end
    self:json_out({ ok = false, error = { code = err.code, message = errors.redact(err.message),
      hint = errors.redact(hint), retryAfter = err.retry_after, field = errors.redact(err.field),
      suggestions = sugg, exit = code } },
      G.struct({ error = G.struct({ suggestions = G.list(nil) }) }))
  end
  return code
end

-- Display width of a UTF-8 string (code points; good enough for names).
local function width(s)
  local n = 0
  for _ in tostring(s):gmatch("[^\128-\191]") do n = n + 1 end
  return n
end

--- Prints rows (lists of strings) as an aligned table with a header.
function Ctx:table(header, rows, paint_col)
  local w = {}
  for i, h in ipairs(header) do w[i] = width(h) end
  for _, r in ipairs(rows) do
    for i = 1, #header do w[i] = math.max(w[i], width(r[i] or "")) end
  end
  local function line(r, head)
    local out = {}
    for i = 1, #header do
      local cell = tostring(r[i] or "")
      local padded = i < #header and (cell .. string.rep(" ", w[i] - width(cell))) or cell
      if head then padded = self:paint(padded, "bold")
      elseif paint_col then padded = paint_col(i, padded, r) end
      out[#out + 1] = padded
    end
    return (table.concat(out, "  "):gsub("%s+$", ""))
  end
  self:say(line(header, true))
  for _, r in ipairs(rows) do self:say(line(r)) end
end

local function wrap(text, cols, indent)
  indent = indent or ""
  local out, line = {}, indent
  for word in tostring(text):gmatch("%S+") do
    if #line > #indent and #line + 1 + #word > cols then
      out[#out + 1] = line
      line = indent .. word
    else
      line = line .. (#line > #indent and " " or "") .. word
    end
  end
  if #line > #indent then out[#out + 1] = line end
  return table.concat(out, "\n")
end

local function iso(t)
  return os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(t))
end

local function mmss(s)
  s = math.max(0, math.floor(s + 0.5))
  return string.format("%d:%02d", math.floor(s / 60), s % 60)
end

-- ------------------------------------------------------------------------
-- Arguments
-- ------------------------------------------------------------------------

--- cli.parse(argv) -> {flags = {}, pos = {}} or nil, message
---@param argv string[] the arguments (without the program name)
---@return table|nil parsed {flags = {}, pos = {}}
---@return string|nil message what is wrong with the command line
function M.parse(argv)
  local flags, pos = {}, {}
  local i, n = 1, #argv
  local only_pos = false
  while i <= n do
    local a = argv[i]
    if only_pos or a == "-" or a:sub(1, 1) ~= "-" then
      pos[#pos + 1] = a
    elseif a == "--" then
      only_pos = true
    else
      local name, inline = a:match("^%-%-?([^=]+)=(.*)$")
      if not name then name = a:match("^%-%-?(.+)$") end
      if a:sub(2, 2) ~= "-" and #name > 1 then return nil, "unknown option " .. a end
      name = ALIASES[name] or name
      local kind = ALL_FLAGS[name]
      if not kind then return nil, "unknown option --" .. name end
      if kind == "value" then
        if inline == nil then
          i = i + 1
          inline = argv[i]
          if inline == nil then return nil, "--" .. name .. " needs a value" end
        end
        flags[name] = inline
      else
        if inline ~= nil then return nil, "--" .. name .. " takes no value" end
        flags[name] = true
      end
    end
    i = i + 1
  end
  return { flags = flags, pos = pos }
end

-- ------------------------------------------------------------------------
-- The client
-- ------------------------------------------------------------------------

function Ctx:env(name)
  local v = self.getenv(name)
  if v ~= nil and v ~= "" then return v end
  return nil
end

--- ctx:client() -> client or nil, exit code (the error is reported). The
-- key, the URL and the timeout come from favcrm.config.resolve (through
-- favcrm.new): flags first, then the environment, then the config file.
function Ctx:client()
  if self._client then return self._client end
  local f = self.flags
  local key = self.login_key or f["api-key"]
  local opts = {
    url = f.url, api_key = key and (core.is_secret(key) and key or core.secret(key)) or nil,
    timeout = self.timeout, client_name = "favcrm-cli", getenv = self.getenv,
    labels = { url = "--url", api_key = self.login_key and "login" or "--api-key", timeout = "--timeout" },
  }
  key = nil -- luacheck: ignore 311
  local ok, client, err = pcall(favcrm.new, opts)
  if not ok then
    return nil, self:fail({ code = "usage", message = tostring(client):gsub("^[^:]*:%d+: ", "") }, EXIT.usage)
  end
  if not client then return nil, self:fail(err) end
  local cerr = client:config_problem()
  if cerr then
    self:warn("the config file could not be read (" .. tostring(cerr.message) .. "); ignoring it")
  end
  self._client = client
  return client
end

function Ctx:need_key(client)
  if client:has_api_key() then return true end
  return false, self:fail({ code = "no_key", message = "no API key is configured" }, EXIT.auth)
end

-- ------------------------------------------------------------------------
-- Commands
-- ------------------------------------------------------------------------

local C = {}

-- A client stand-in for the recipes: forwards everything to the client and
-- notes when the e-mailed code expires, so the prompt can show the time left.
local function expiry_watch(client, on_expiry)
  local proxy = {}
  return setmetatable(proxy, { __index = function(_, k)
    local v = client[k]
    if type(v) ~= "function" then return v end
    if k == "request" then
      return function(_, ...)
        local req, err = client:request(...)
        if req and req.local_expires_at then on_expiry(req.local_expires_at, req.masked_email) end
        return req, err
      end
    elseif k == "call" then
      return function(_, name, ...)
        local data, res = client:call(name, ...)
        if name == "accept_team_invite_request" and type(data) == "table" and type(data.expiresAt) == "string" then
          local at = util.parse_iso8601(data.expiresAt)
          if at then on_expiry(client:now() + (at - (client:server_time() or client:now())), data.maskedEmail) end
        end
        return data, res
      end
    end
    return function(_, ...) return v(client, ...) end
  end })
end

-- Runs a recipe's terminal driver (signup.run / team_invite.run).
function Ctx:converse(recipe, fields, what)
  if self.flags.json then return self:fail("`favcrm " .. what .. "` is a conversation; it has no --json output") end
  local client, code = self:client()
  if not client then return code end
  local expires_at
  local proxy = expiry_watch(client, function(at) expires_at = at end)
  local tty = self.isatty(0)
  local cols = 78
  local function say(text)
    if text and text ~= "" then
      self.stdout:write("\n", self:paint("FavCRM", "cyan"), "\n", wrap(text, cols, "  "), "\n")
      self.stdout:flush()
    end
  end
  local function ask()
    local prompt
    if expires_at then
      local left = expires_at - os.time()
      if left > 0 then
        prompt = "code valid " .. mmss(left) .. " more (until " .. os.date("!%H:%M UTC", math.floor(expires_at))
          .. ")> "
      else
        prompt = "code expired (ask for a new one)> "
      end
    else
      prompt = "you> "
    end
    self.stdout:write("\n", self:paint(prompt, "bold"))
    self.stdout:flush()
    local line = self.stdin:read("*l")
    if line and not tty then self.stdout:write(line, "\n") end
    return line
  end
  local ok, flow = pcall(recipe.run, proxy, { ask = ask, say = say, fields = fields })
  if not ok then return self:fail({ code = "usage", message = tostring(flow):gsub("^[^:]*:%d+: ", "") }) end
  self.stdout:write("\n")
  if flow.state == "done" then return EXIT.ok end
  if flow.state == "key_rejected" then return EXIT.auth end
  if flow.reason == "rate_limited" then return EXIT.rate_limited end
  return EXIT.failure
end

function C.signup(ctx)
  local fields = {}
  for flag, field in pairs({ email = "email", ["organisation-name"] = "organisationName", industry = "industry",
    country = "country", timezone = "timezone" }) do
    if ctx.flags[flag] then fields[field] = ctx.flags[flag] end
  end
  return ctx:converse(require("favcrm.recipes.signup"), fields, "signup")
end

function C.signup_request(ctx)
  local f = ctx.flags
  if not f.email or not f["organisation-name"] then
    return ctx:fail("signup request needs --email and --organisation-name")
  end
  local client, code = ctx:client()
  if not client then return code end
  local req, err = client:request({ email = f.email, organisationName = f["organisation-name"],
    industry = f.industry, country = f.country, timezone = f.timezone })
  if not req then return ctx:fail(err) end
  if f.json then
    ctx:json_out({ requestId = req.request_id, maskedEmail = req.masked_email, expiresAt = iso(req.expires_at),
      expiresInSeconds = req.ttl, instructions = req.instructions })
    return EXIT.ok
  end
  ctx:say(ctx:paint("A 6-digit code is on its way to " .. tostring(req.masked_email) .. ".", "green"))
  ctx:table({ "FIELD", "VALUE" }, {
    { "request id", req.request_id },
    { "sent to", tostring(req.masked_email) },
    { "expires", iso(req.expires_at) .. " (in " .. mmss(req.ttl) .. ")" },
  })
  ctx:say("")
  ctx:say("Next: favcrm signup verify --request-id " .. req.request_id .. " --code CODE")
  return EXIT.ok
end

function C.signup_verify(ctx)
  local f = ctx.flags
  if not f["request-id"] or not f.code then
    return ctx:fail("signup verify needs --request-id and --code")
  end
  local client, code = ctx:client()
  if not client then return code end
  local ws, err = client:verify(f["request-id"], f.code, { save = not f["no-save"] })
  if not ws then return ctx:fail(err) end
  local key = ws.api_key
  local shown = f["show-key"] and key:reveal() or tostring(key)
  local save_problem = ws.save_error and (ws.save_error.message or tostring(ws.save_error))
  if f.json then
    ctx:json_out({ organisationId = ws.organisation_id, companyId = ws.company_id, userId = ws.user_id,
      apiKey = shown, apiKeyShown = f["show-key"] == true, loginUrl = ws.login_url, nextSteps = ws.next_steps,
      savedTo = ws.saved_to, saveError = save_problem }, G.struct({ nextSteps = G.list(nil) }))
  else
    ctx:say(ctx:paint("The workspace is ready.", "green"))
    ctx:table({ "FIELD", "VALUE" }, {
      { "organisation", ws.organisation_id }, { "company", ws.company_id }, { "user", ws.user_id },
      { "API key", shown }, { "saved to", ws.saved_to or (f["no-save"] and "not saved (--no-save)") or "not saved" },
      { "portal", ws.login_url },
    })
    if type(ws.next_steps) == "string" and ws.next_steps ~= "" then
      ctx:say("")
      ctx:say(wrap("Next: " .. ws.next_steps, 78, ""))
    elseif type(ws.next_steps) == "table" and #ws.next_steps > 0 then
      ctx:say("")
      ctx:say("Next steps:")
      for i, s in ipairs(ws.next_steps) do ctx:say(wrap(i .. ". " .. tostring(s), 78, "  ")) end
    end
    if f["no-save"] and not f["show-key"] then
      ctx:warn("the key was not saved and FavCRM shows it only once; to use it, revoke it in the portal "
        .. "(Settings > MCP Keys) and create a new one, or run verify with --show-key next time")
    end
  end
  if save_problem then
    ctx:warn("the key could not be saved (" .. tostring(save_problem) .. "); it is shown only once: "
      .. "revoke it in the portal (Settings > MCP Keys) and create a new one")
    return EXIT.failure
  end
  return EXIT.ok
end

local function doctor_exit(report)
  if report.ok then return EXIT.ok end
  local code = EXIT.failure
  for _, p in ipairs(report.problems or {}) do
    if p.code == "rate_limited" then return EXIT.rate_limited end
    if p.code == "unauthorized" or p.check == "auth" then code = EXIT.auth end
  end
  if not report.reachable then return EXIT.failure end
  return code
end

local function brief(v)
  if type(v) ~= "table" then return tostring(v) end
  return tostring(v.message or v.code)
end

function C.doctor(ctx)
  local client, code = ctx:client()
  if not client then return code end
  local r = client:doctor()
  local exit = doctor_exit(r)
  if ctx.flags.json then
    ctx:json_out(r, G.struct({ problems = G.list(nil) }))
    return exit
  end
  local function mark(good) return good and ctx:paint("ok  ", "green") or ctx:paint("FAIL", "red") end
  local rows = {}
  rows[#rows + 1] = { mark(r.reachable), "endpoint", r.url .. " (" .. tostring(r.url_source) .. ")"
    .. (r.reachable and (", " .. tostring(r.latency_ms) .. " ms, " .. tostring(r.session) .. " session") or
      (", " .. brief(r.reachable_error))) }
  if r.server then
    rows[#rows + 1] = { "    ", "server", tostring(r.server.name) .. " " .. tostring(r.server.version)
      .. ", MCP " .. tostring(r.protocol_version) }
  end
  if r.reachable then
    rows[#rows + 1] = { mark(r.tool_count ~= nil), "tools", r.tool_count and tostring(r.tool_count)
      or brief(r.tools_error) }
  end
  local auth
  if r.authenticated then auth = "configured (key from " .. tostring(r.auth_source) .. ")"
  elseif not r.auth_source then auth = "missing: no API key"
  else auth = "key from " .. tostring(r.auth_source) .. ": " .. brief(r.current_user_error) end
  rows[#rows + 1] = { mark(r.authenticated), "auth", auth }
  local u = r.current_user
  if type(u) == "table" then
    local comp = type(u.companies) == "table" and u.companies[1] or {}
    rows[#rows + 1] = { "    ", "user", tostring(u.email) .. " (" .. tostring(u.userId) .. ", "
      .. tostring(u.role) .. ")" }
    rows[#rows + 1] = { "    ", "organisation", tostring(comp.name) .. " (" .. tostring(comp.organisationId)
      .. ", " .. tostring(comp.companyId) .. ")" }
  end
  if type(r.plan) == "table" then
    rows[#rows + 1] = { "    ", "plan", tostring(r.plan.plan) .. " (" .. tostring(r.plan.status) .. ")" }
  end
  if type(r.whatsapp) == "table" then
    rows[#rows + 1] = { "    ", "whatsapp", tostring(r.whatsapp.status or (r.whatsapp.connected and "connected"
      or "not connected")) }
  end
  ctx:table({ "    ", "CHECK", "RESULT" }, rows)
  if #r.problems > 0 then
    ctx:say("")
    ctx:say(ctx:paint(#r.problems == 1 and "1 problem:" or (#r.problems .. " problems:"), "red"))
    for _, p in ipairs(r.problems) do
      ctx:say("- " .. tostring(p.check) .. (p.code and (" (" .. p.code .. ")") or "") .. ": " .. tostring(p.message))
      if p.hint then ctx:say(wrap("hint: " .. p.hint, 78, "    ")) end
    end
  else
    ctx:say("")
    ctx:say(ctx:paint("All checks passed.", "green"))
  end
  return exit
end

local function marks(t)
  local a = type(t.annotations) == "table" and t.annotations or {}
  local m = {}
  if a.readOnlyHint == true then m[#m + 1] = "read-only" end
  if a.destructiveHint == true then m[#m + 1] = "destructive" end
  if a.idempotentHint == true then m[#m + 1] = "idempotent" end
  if a.openWorldHint == true then m[#m + 1] = "open-world" end
  return m
end

function C.tool_list(ctx)
  local client, code = ctx:client()
  if not client then return code end
  local tools, err = client:tools()
  if not tools then return ctx:fail(err) end
  local sorted = {}
  for _, t in ipairs(tools) do sorted[#sorted + 1] = t end
  table.sort(sorted, function(a, b) return a.name < b.name end)
  if ctx.flags.json then
    local out = {}
    for _, t in ipairs(sorted) do
      local a = type(t.annotations) == "table" and t.annotations or {}
      out[#out + 1] = { name = t.name, title = t.title or a.title, description = t.description,
        readOnly = a.readOnlyHint == true, destructive = a.destructiveHint == true,
        idempotent = a.idempotentHint == true, openWorld = a.openWorldHint == true }
    end
    ctx:json_out(out, G.list(nil))
    return EXIT.ok
  end
  local rows = {}
  for _, t in ipairs(sorted) do
    local a = type(t.annotations) == "table" and t.annotations or {}
    rows[#rows + 1] = { t.name, t.title or a.title or "", table.concat(marks(t), ", ") }
  end
  ctx:table({ "NAME", "TITLE", "MARKS" }, rows, function(i, cell, r)
    if i == 3 and r[3]:find("destructive") then return ctx:paint(cell, "red") end
    return cell
  end)
  ctx:say("")
  ctx:say(#sorted .. " tools. `favcrm tool describe NAME` shows one.")
  return EXIT.ok
end

local function type_of(s)
  if type(s) ~= "table" then return "any" end
  local t = s.type
  if type(t) == "table" then t = table.concat(t, "|") end
  if t == "array" and type(s.items) == "table" and s.items.type then
    t = "array of " .. type_of(s.items)
  end
  if not t and s.enum then t = "enum" end
  return tostring(t or "any")
end

local function num(v)
  if type(v) == "number" and v % 1 == 0 and v > -1e15 and v < 1e15 then return string.format("%d", v) end
  return tostring(v or "")
end

local function constraints(s)
  local c = {}
  if type(s.enum) == "table" then
    local vals = {}
    for _, v in ipairs(s.enum) do vals[#vals + 1] = tostring(v) end
    c[#c + 1] = "one of " .. table.concat(vals, ", ")
  end
  if s.format then c[#c + 1] = "format " .. tostring(s.format) end
  if s.minLength or s.maxLength then
    c[#c + 1] = num(s.minLength or 0) .. ".." .. num(s.maxLength) .. " chars"
  end
  if s.minimum or s.maximum then c[#c + 1] = num(s.minimum) .. ".." .. num(s.maximum) end
  if s.minItems or s.maxItems then
    c[#c + 1] = num(s.minItems or 0) .. ".." .. num(s.maxItems) .. " items"
  end
  if s.pattern then c[#c + 1] = "pattern " .. tostring(s.pattern) end
  if s.default ~= nil then c[#c + 1] = "default " .. json.encode(s.default) end
  return table.concat(c, "; ")
end

-- Flattens a schema's properties into rows: path, type, required, notes.
local function schema_rows(s, prefix, rows, depth)
  if type(s) ~= "table" or depth > 6 then return rows end
  if type(s.properties) ~= "table" then return rows end
  local req = {}
  for _, r in ipairs(type(s.required) == "table" and s.required or {}) do req[r] = true end
  local names = {}
  for k in pairs(s.properties) do names[#names + 1] = k end
  table.sort(names, function(a, b)
    if (req[a] and 1 or 0) ~= (req[b] and 1 or 0) then return req[a] == true end
    return a < b
  end)
  for _, k in ipairs(names) do
    local p = s.properties[k]
    if type(p) == "table" then
      local notes = tostring(p.description or "")
      local c = constraints(p)
      if c ~= "" then notes = notes .. (notes ~= "" and " (" .. c .. ")" or c) end
      rows[#rows + 1] = { prefix .. k, type_of(p), req[k] and "yes" or "", notes }
      schema_rows(p, prefix .. k .. ".", rows, depth + 1)
      if type(p.items) == "table" then schema_rows(p.items, prefix .. k .. "[].", rows, depth + 1) end
    end
  end
  return rows
end

function C.tool_describe(ctx, args)
  local name = args[1]
  if not name or args[2] then return ctx:fail("tool describe needs exactly one tool NAME") end
  local client, code = ctx:client()
  if not client then return code end
  local t, err = client:describe(name)
  if not t then return ctx:fail(err) end
  if ctx.flags.json then
    ctx:json_out(t, G.struct({ inputSchema = G.schemadoc, outputSchema = G.schemadoc }))
    return EXIT.ok
  end
  local a = type(t.annotations) == "table" and t.annotations or {}
  ctx:say(ctx:paint(t.name, "bold") .. ((t.title or a.title) and (": " .. (t.title or a.title)) or ""))
  if t.description then ctx:say(wrap(t.description, 78, "  ")) end
  local m = marks(t)
  ctx:say("  marks: " .. (#m > 0 and table.concat(m, ", ") or "none"))
  ctx:say("")
  local rows = schema_rows(t.inputSchema, "", {}, 0)
  if #rows == 0 then
    ctx:say("Arguments: none")
  else
    ctx:say("Arguments:")
    ctx:table({ "NAME", "TYPE", "REQUIRED", "NOTES" }, rows)
  end
  local out = type(t.outputSchema) == "table" and t.outputSchema or nil
  if out then
    local data = type(out.properties) == "table" and out.properties.data or nil
    local orows = schema_rows(data or out, data and "data." or "", {}, 0)
    ctx:say("")
    ctx:say("Result: " .. (data and ("data: " .. type_of(data)) or type_of(out)))
    if #orows > 0 then ctx:table({ "NAME", "TYPE", "REQUIRED", "NOTES" }, orows) end
  end
  ctx:say("")
  ctx:say("Call it: favcrm tool call " .. t.name .. " '{...}'" .. (a.destructiveHint == true and " --yes" or ""))
  return EXIT.ok
end

function C.tool_call(ctx, args)
  local name, text = args[1], args[2]
  if not name or args[3] then return ctx:fail("tool call needs a tool NAME and, optionally, its arguments as JSON") end
  local targs = {}
  if text and text ~= "" then
    local v, derr = json.decode(text)
    if type(v) ~= "table" or getmetatable(v) == json.ARRAY or v[1] ~= nil then
      return ctx:fail("the arguments must be a JSON object, like '{\"limit\": 5}'"
        .. (derr and (" (" .. tostring(derr) .. ")") or ""))
    end
    targs = v
  end
  local client, code = ctx:client()
  if not client then return code end
  local opts = {}
  if ctx.flags.yes then
    opts.confirm = true
  elseif ctx.isatty(0) and ctx.isatty(2) then
    opts.on_confirm = function(tool)
      local a = type(tool.annotations) == "table" and tool.annotations or {}
      ctx.stderr:write(ctx:paint(tool.name .. " is destructive", "red", "stderr") .. " ("
        .. tostring(tool.title or a.title or tool.name) .. "). Go ahead? [y/N] ")
      ctx.stderr:flush()
      local line = ctx.stdin:read("*l")
      return line ~= nil and line:match("^%s*[Yy]") ~= nil
    end
  end
  local data, res = client:call(name, targs, opts)
  if data == nil and errors.is(res) then
    if res.code == "confirmation_required" and not opts.confirm then
      res.message = name .. " is destructive; not called" .. (opts.on_confirm and "" or
        " (no terminal to ask on: pass --yes to go ahead)")
      return ctx:fail(res, EXIT.usage)
    end
    return ctx:fail(res)
  end
  local tool = client:cached_tool(name)
  local guide = json.guide.result(tool, res).child("structuredContent")
  if type(res) == "table" and type(res.structuredContent) == "table" and res.structuredContent.data ~= nil then
    guide = guide and guide.child("data")
  end
  if ctx.flags.json then
    ctx:json_out(data, guide)
  elseif type(data) == "string" then
    ctx:say(data)
  elseif data == nil then
    ctx:say("(no result)")
  else
    ctx:say(json.encode(data, guide, "  "))
  end
  return EXIT.ok
end

local function read_key(ctx)
  if ctx.isatty(0) then
    local secret, err = core.read_secret_line("FavCRM API key (input hidden): ")
    if not secret then return nil, err end
    if secret:reveal():match("^%s*$") then return nil, errors.new("cancelled", "no API key was typed") end
    return secret
  end
  local line = ctx.stdin:read("*l")
  if line == nil then return nil, errors.new("cancelled", "no API key on stdin") end
  line = line:gsub("^%s+", ""):gsub("%s+$", "")
  if line == "" then return nil, errors.new("cancelled", "no API key on stdin") end
  local s = core.secret(line)
  line = nil -- luacheck: ignore 311
  return s
end

function C.login(ctx, args)
  local secret
  if args[1] then
    if args[2] then return ctx:fail("login takes at most one KEY (better: none, and the key on stdin)") end
    ctx:warn("a key in the command line is visible to other users of this machine (ps, shell history); "
      .. "prefer `favcrm login` with the key on stdin or at the prompt")
    secret = core.secret(args[1])
  elseif ctx.flags["api-key"] then
    secret = core.secret(ctx.flags["api-key"])
  else
    local err
    secret, err = read_key(ctx)
    if not secret then return ctx:fail(err, EXIT.usage) end
  end
  ctx.login_key = secret
  local client, code = ctx:client()
  if not client then return code end
  local who, err = client:call("list_my_companies", {})
  if who == nil then
    if err.code == "unauthorized" then
      err.message = "FavCRM refused the key " .. tostring(secret) .. "; it was not saved"
    end
    return ctx:fail(err)
  end
  local fields = { api_key = secret }
  if ctx.flags.url then fields.url = ctx.flags.url end
  local path, serr = config.save(fields)
  if not path then return ctx:fail(serr) end
  local comp = type(who) == "table" and type(who.companies) == "table" and who.companies[1] or {}
  if ctx.flags.json then
    ctx:json_out({ ok = true, savedTo = path, apiKey = tostring(secret), userId = who.userId,
      email = who.email, organisation = comp.name })
  else
    ctx:say(ctx:paint("Logged in", "green") .. " as " .. tostring(who.email) .. " (" .. tostring(comp.name)
      .. "). The key " .. tostring(secret) .. " is saved to " .. path .. ".")
  end
  return EXIT.ok
end

function C.logout(ctx)
  local path, perr = config.path()
  if not path then return ctx:fail(perr) end
  local file = config.load() or {}
  local had = type(file.api_key) == "string" and file.api_key ~= ""
  if had then
    local ok, serr = config.save({ api_key = false })
    if not ok then return ctx:fail(serr) end
  end
  local env_key = ctx:env("FAVCRM_API_KEY") and "FAVCRM_API_KEY" or (ctx:env("FAVCRM_MCP_TOKEN") and "FAVCRM_MCP_TOKEN")
  if ctx.flags.json then
    ctx:json_out({ removed = had, path = path, environmentKey = env_key or nil })
  else
    ctx:say(had and ("Removed the API key from " .. path .. ".") or ("No API key was saved in " .. path .. "."))
    if had then
      ctx:say("The key itself still works until you revoke it in the portal (Settings > MCP Keys).")
    end
  end
  if env_key then ctx:warn(env_key .. " is still set in the environment, so a key is still configured") end
  return EXIT.ok
end

function C.whoami(ctx)
  local client, code = ctx:client()
  if not client then return code end
  local ok, kcode = ctx:need_key(client)
  if not ok then return kcode end
  local who, err = client:call("list_my_companies", {})
  if who == nil then return ctx:fail(err) end
  if ctx.flags.json then
    ctx:json_out(who, G.struct({ companies = G.list(nil) }))
    return EXIT.ok
  end
  ctx:say(tostring(who.email) .. (type(who.name) == "string" and (" (" .. who.name .. ")") or "") .. ", user "
    .. tostring(who.userId) .. ", role " .. tostring(who.role))
  local url, url_source = client:endpoint()
  ctx:say("key: " .. tostring(client:masked_api_key()) .. " from " .. tostring(client:auth_source()) .. "; endpoint: "
    .. tostring(url) .. " (" .. tostring(url_source) .. ")")
  local rows = {}
  for _, c in ipairs(type(who.companies) == "table" and who.companies or {}) do
    rows[#rows + 1] = { (c.current and "* " or "  ") .. tostring(c.name), tostring(c.companyId),
      tostring(c.organisationId), tostring(c.plan or ""), tostring(c.role or "") }
  end
  if #rows > 0 then
    ctx:say("")
    ctx:table({ "  COMPANY", "COMPANY ID", "ORGANISATION ID", "PLAN", "ROLE" }, rows)
  end
  return EXIT.ok
end

function C.config_path(ctx)
  local path, err = config.path()
  if not path then return ctx:fail(err) end
  if ctx.flags.json then
    ctx:json_out({ path = path, exists = core.stat(path) ~= nil })
  else
    ctx:say(path)
  end
  return EXIT.ok
end

function C.team_invite_accept(ctx)
  local fields = {}
  if ctx.flags.token then fields.token = ctx.flags.token end
  if ctx.flags.name then fields.name = ctx.flags.name end
  return ctx:converse(require("favcrm.recipes.team_invite"), fields, "team invite accept")
end

function C.mcp_serve(ctx)
  local client, code = ctx:client()
  if not client then return code end
  local serve = require("favcrm.mcp_serve")
  local ok, res = pcall(serve.serve, client, { stdin = ctx.stdin, stdout = ctx.stdout, stderr = ctx.stderr,
    getenv = ctx.getenv }, { version = favcrm.VERSION, save = not ctx.flags["no-save"],
    show_key = ctx.flags["show-key"] == true })
  client:close()
  if not ok then
    ctx.stderr:write("favcrm mcp serve: internal error: ", tostring(res), "\n")
    return EXIT.failure
  end
  return res
end

-- ------------------------------------------------------------------------
-- The command tree
-- ------------------------------------------------------------------------

local TREE = {
  sub = {
    signup = {
      run = C.signup, flags = { "email", "organisation-name", "industry", "country", "timezone" },
      usage = "favcrm signup [--email E] [--organisation-name N] [--industry I] [--country CC] [--timezone TZ]",
      about = "Sign a business up for FavCRM in a conversation: the program asks for what it needs, FavCRM "
        .. "e-mails a 6-digit code, you paste it (the prompt shows how long the code is still valid), and "
        .. "the new API key is saved to the config file.",
      example = "favcrm signup\nfavcrm signup --email you@example.com --organisation-name \"Stretch + Breathe\"",
      sub = {
        request = {
          run = C.signup_request, flags = { "email", "organisation-name", "industry", "country", "timezone" },
          usage = "favcrm signup request --email E --organisation-name N [--industry I] [--country CC] "
            .. "[--timezone TZ]",
          about = "Step 1 of the scripted signup: asks FavCRM to e-mail a 6-digit code (valid 10 minutes) and "
            .. "prints the request id. Industry is one of beauty, fitness, tutoring, retail, hospitality, "
            .. "services, other; country an ISO code such as HK; timezone an IANA name.",
          example = "favcrm signup request --email you@example.com --organisation-name \"Stretch + Breathe\" "
            .. "--industry fitness --country HK --timezone Asia/Hong_Kong",
        },
        verify = {
          run = C.signup_verify, flags = { "request-id", "code", "no-save", "show-key" },
          usage = "favcrm signup verify --request-id ID --code CODE [--no-save] [--show-key]",
          about = "Step 2: checks the code and creates the workspace. The API key is saved to the config file "
            .. "(mode 0600) unless --no-save, and printed masked (fav_mcp_...cdef) unless --show-key.",
          example = "favcrm signup verify --request-id signup_req_abc123 --code 123456",
        },
      },
    },
    doctor = {
      run = C.doctor, flags = {},
      usage = "favcrm doctor [--json]",
      about = "Checks the endpoint, the tools, the key, the current user, the plan and WhatsApp; prints the "
        .. "problems with hints. Exits non-zero when something is wrong (3 when the key is missing or refused).",
      example = "favcrm doctor\nfavcrm doctor --json",
    },
    tool = {
      usage = "favcrm tool list|describe|call ...",
      about = "FavCRM's typed CRM tools.",
      sub = {
        list = {
          run = C.tool_list, flags = {},
          usage = "favcrm tool list [--json]",
          about = "Lists the tools: name, title, and the read-only / destructive / idempotent / open-world marks.",
          example = "favcrm tool list",
        },
        describe = {
          run = C.tool_describe, flags = {}, args = "NAME",
          usage = "favcrm tool describe NAME [--json]",
          about = "Shows one tool: what it does, its marks, its arguments (type, required, constraints) and "
            .. "its result.",
          example = "favcrm tool describe create_service",
        },
        call = {
          run = C.tool_call, flags = { "yes" }, args = "NAME [JSON]",
          usage = "favcrm tool call NAME ['JSON'] [--yes]",
          about = "Calls a tool with its arguments as a JSON object and prints the result. Arguments are "
            .. "checked against the tool's schema first. A destructive tool asks for confirmation on a "
            .. "terminal; without a terminal it is refused (exit 1) unless --yes.",
          example = "favcrm tool call list_services '{}'\nfavcrm tool call delete_service "
            .. "'{\"serviceId\": \"svc_123\"}' --yes",
        },
      },
    },
    login = {
      run = C.login, flags = {}, args = "[KEY]",
      usage = "favcrm login < key.txt   |   favcrm login   (prompts without echo)",
      about = "Saves an API key to the config file after checking it with FavCRM (list_my_companies). The "
        .. "key is read from stdin when it is not a terminal, else from a prompt that does not echo.",
      example = "favcrm login\nprintf '%s\\n' \"$KEY\" | favcrm login",
    },
    logout = {
      run = C.logout, flags = {},
      usage = "favcrm logout",
      about = "Removes the API key from the config file (the key still works until revoked in the portal).",
      example = "favcrm logout",
    },
    whoami = {
      run = C.whoami, flags = {},
      usage = "favcrm whoami [--json]",
      about = "Shows the user and the companies the key belongs to.",
      example = "favcrm whoami",
    },
    config = {
      usage = "favcrm config path",
      about = "The config file.",
      sub = {
        path = {
          run = C.config_path, flags = {},
          usage = "favcrm config path [--json]",
          about = "Prints the config file's path ($XDG_CONFIG_HOME/favcrm/config.toml, else "
            .. "~/.config/favcrm/config.toml).",
          example = "favcrm config path",
        },
      },
    },
    team = {
      usage = "favcrm team invite accept",
      about = "Team membership.",
      sub = {
        invite = {
          usage = "favcrm team invite accept",
          about = "Team invitations.",
          sub = {
            accept = {
              run = C.team_invite_accept, flags = { "token", "name" },
              usage = "favcrm team invite accept [--token inv_...] [--name NAME]",
              about = "Accepts a team invitation in a conversation: paste the invite token, FavCRM e-mails a "
                .. "6-digit code, paste it, and your own API key is saved to the config file.",
              example = "favcrm team invite accept --token inv_abc123 --name \"Bo Chan\"",
            },
          },
        },
      },
    },
    mcp = {
      usage = "favcrm mcp serve",
      about = "MCP for clients that spawn processes.",
      sub = {
        serve = {
          run = C.mcp_serve, flags = { "no-save", "show-key" },
          usage = "favcrm mcp serve [--no-save] [--show-key]",
          about = "A stdio MCP server (newline-delimited JSON-RPC on stdin/stdout; logs on stderr) that proxies "
            .. "FavCRM's tools with the saved or environment key and adds favcrm_doctor. The signup pair "
            .. "works without a key; when a verify (signup or team invite) succeeds, the bridge uses the new key "
            .. "at once, saves it to the config file (mode 0600) unless --no-save, and hands the agent the "
            .. "result with the key masked unless --show-key. Ends with exit 0 when stdin closes. "
            .. "See docs/BRIDGE.md for host set-ups.",
          example = "{\"mcpServers\": {\"favcrm\": {\"command\": \"favcrm\", \"args\": [\"mcp\", \"serve\"]}}}",
        },
      },
    },
  },
}

local ORDER = {
  "signup", "signup request", "signup verify", "doctor", "tool list", "tool describe", "tool call", "login",
  "logout", "whoami", "config path", "team invite accept", "mcp serve",
}

local function main_help()
  local lines = { "favcrm " .. favcrm.VERSION .. ": sign up for FavCRM and use its CRM tools over MCP.", "",
    "Usage: favcrm [options] COMMAND ...", "", "Commands:" }
  for _, path in ipairs(ORDER) do
    local node = TREE
    for w in path:gmatch("%S+") do node = node.sub[w] end
    local first = node.about:match("^(.-%.)%s") or node.about
    lines[#lines + 1] = string.format("  %-20s %s", path, first)
  end
  lines[#lines + 1] = ""
  lines[#lines + 1] = GLOBAL_HELP
  lines[#lines + 1] = ""
  lines[#lines + 1] = EXIT_HELP
  lines[#lines + 1] = ""
  lines[#lines + 1] = "`favcrm COMMAND --help` for a command's options and an example."
  return table.concat(lines, "\n")
end

local function node_help(node, path)
  local lines = { "Usage: " .. node.usage, "", wrap(node.about, 78, "") }
  if node.sub then
    lines[#lines + 1] = ""
    lines[#lines + 1] = "Commands:"
    local names = {}
    for k in pairs(node.sub) do names[#names + 1] = k end
    table.sort(names)
    for _, k in ipairs(names) do
      lines[#lines + 1] = string.format("  %-20s %s", path .. " " .. k, node.sub[k].usage)
    end
  end
  if node.example then
    lines[#lines + 1] = ""
    lines[#lines + 1] = "Example:"
    for l in node.example:gmatch("[^\n]+") do lines[#lines + 1] = "  " .. l end
  end
  lines[#lines + 1] = ""
  lines[#lines + 1] = GLOBAL_HELP
  lines[#lines + 1] = ""
  lines[#lines + 1] = EXIT_HELP
  return table.concat(lines, "\n")
end

local function default_io()
  return {
    stdout = io.stdout, stderr = io.stderr, stdin = io.stdin,
    isatty = function(fd) return core.isatty(fd) end,
    getenv = os.getenv,
  }
end

--- cli.main(argv [, io_t]) -> exit code. io_t: {stdout=, stderr=, stdin=,
-- isatty=fn(fd), getenv=fn(name)}; each defaults to the process's own.
---@param argv string[] the arguments (without the program name)
---@param io_t? table stdout, stderr, stdin, isatty, getenv
---@return integer status the exit status
function M.main(argv, io_t)
  local d = default_io()
  io_t = io_t or {}
  local ctx = setmetatable({
    stdout = io_t.stdout or d.stdout, stderr = io_t.stderr or d.stderr, stdin = io_t.stdin or d.stdin,
    isatty = io_t.isatty or d.isatty, getenv = io_t.getenv or d.getenv,
  }, Ctx)
  local args = {}
  for i = 1, #(argv or {}) do args[i] = tostring(argv[i]) end
  local parsed, perr = M.parse(args)
  if not parsed then return ctx:fail(perr) end
  local f = parsed.flags
  ctx.flags = f
  local no_color = f["no-color"] or ctx.getenv("NO_COLOR") ~= nil or ctx.getenv("TERM") == "dumb"
  ctx.color_out = not no_color and ctx.isatty(1)
  ctx.color_err = not no_color and ctx.isatty(2)
  if f.timeout then
    local t = tonumber(f.timeout)
    if not t or t <= 0 or t ~= t then return ctx:fail("--timeout wants a positive number of seconds") end
    ctx.timeout = t
  end
  if f["api-key"] then
    ctx:warn("--api-key puts the key in the command line, where other users of this machine can see it "
      .. "(ps); prefer FAVCRM_API_KEY or `favcrm login`")
  end
  -- find the command
  local pos = parsed.pos
  if pos[1] == "help" then
    table.remove(pos, 1)
    f.help = true
  end
  local node, path, i = TREE, {}, 1
  while node.sub and pos[i] and node.sub[pos[i]] do
    node = node.sub[pos[i]]
    path[#path + 1] = pos[i]
    i = i + 1
  end
  local rest = {}
  for j = i, #pos do rest[#rest + 1] = pos[j] end
  local pathname = table.concat(path, " ")
  ctx.usage_of = pathname ~= "" and pathname or nil
  if f.version and #path == 0 then
    if f.json then
      ctx:json_out({ version = favcrm.VERSION, lua = jit and jit.version or _VERSION })
    else
      ctx:say("favcrm " .. favcrm.VERSION .. " (favcrm-lua; " .. (jit and jit.version or _VERSION) .. ")")
    end
    return EXIT.ok
  end
  if f.help then
    if #rest > 0 and node.sub then return ctx:fail("unknown command: " .. pathname .. " " .. rest[1]) end
    ctx:say(node == TREE and main_help() or node_help(node, pathname))
    return EXIT.ok
  end
  if node == TREE then
    if pos[1] then return ctx:fail("unknown command: " .. pos[1] .. " (see favcrm --help)") end
    ctx.stderr:write(main_help(), "\n")
    return EXIT.usage
  end
  if not node.run then
    local what = rest[1] and ("unknown command: " .. pathname .. " " .. rest[1]) or
      ("`favcrm " .. pathname .. "` needs a subcommand: " .. node.usage)
    return ctx:fail(what)
  end
  if not node.args and #rest > 0 then
    return ctx:fail("unexpected argument: " .. rest[1])
  end
  local allowed = {}
  for _, name in ipairs(node.flags or {}) do allowed[name] = true end
  for name in pairs(f) do
    if not GLOBAL_FLAGS[name] and not allowed[name] then
      return ctx:fail("--" .. name .. " is not an option of `favcrm " .. pathname .. "`")
    end
  end
  local ok, code = pcall(node.run, ctx, rest)
  if ctx._client and not ctx._client.closed then pcall(ctx._client.close, ctx._client) end
  if not ok then
    ctx.stderr:write("favcrm: internal error: ", tostring(code), "\n")
    return EXIT.failure
  end
  ctx.stdout:flush()
  return code
end

return M
