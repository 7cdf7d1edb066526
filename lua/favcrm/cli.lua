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
local login = require("favcrm.login")
local lazy = require("favcrm.lazy")

local G = json.guide

local M = {}

M.EXIT = { ok = 0, usage = 1, failure = 2, auth = 3, rate_limited = 4 }
local EXIT = M.EXIT

local EXIT_HELP = {
  { "0", "success" },
  { "1", "usage: a bad command line or bad input (nothing was sent)" },
  { "2", "failure: the server or the network said no (details on stderr)" },
  { "3", "authentication: no API key, or the key was refused" },
  { "4", "rate limited: wait before trying again (the wait is on stderr)" },
  { "130", "interrupted (Ctrl-C): the call in flight was cancelled" },
}

local GLOBAL_HELP = {
  { "--url URL", "the FavCRM MCP endpoint (env FAVCRM_MCP_URL; default https://api.favcrm.io/mcp, or the "
    .. "config file's url)" },
  { "--api-key KEY", "the API key (env FAVCRM_API_KEY, then the config file). Prefer the environment or "
    .. "`favcrm login`: a key in the command line is visible to other users (ps)" },
  { "--json", "print exactly one JSON document on stdout" },
  { "--timeout SECONDS", "how long to wait for each answer (default 60)" },
  { "--no-color", "no colour (also: NO_COLOR set, or output not a terminal)" },
  { "-h, --help", "help for any command" },
  { "--version", "the version" },
}

-- Flags: name -> "value" or "bool". Globals are allowed everywhere.
local GLOBAL_FLAGS = { url = "value", ["api-key"] = "value", json = "bool", timeout = "value",
  help = "bool", version = "bool", ["no-color"] = "bool" }
local ALL_FLAGS = {
  email = "value", ["organisation-name"] = "value", industry = "value", country = "value",
  timezone = "value", ["request-id"] = "value", code = "value", ["no-save"] = "bool", ["show-key"] = "bool",
  yes = "bool", token = "value", name = "value",
  -- ["module"], not module =: LDoc takes a bare `module` for the old module() call
  tool = "value", quota = "value", ["module"] = "value", delta = "value", ["plan-code"] = "value",
  ["plan-id"] = "value",
  ["billing-cycle"] = "value", ["return-url"] = "value", confirm = "bool", role = "value",
  ["expires-in-hours"] = "value", mode = "value", ["ttl-minutes"] = "value", from = "value", to = "value",
  status = "value", limit = "value", ["inactive-days"] = "value", ["tier-id"] = "value",
  arg = "value", -- repeatable: prompt get --arg k=v (flags.arg is a list)
  oauth = "bool", ["no-browser"] = "bool",
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
  if self.oauth_expired and (err.code == "cancelled" or err.code == "unauthorized") then
    err = { code = "unauthorized", message = "the OAuth sign-in for this server has ended (the server refused "
      .. "the stored grant)", hint = "run `favcrm login --oauth` again" }
    code = EXIT.auth
  end
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

-- Words of text in lines of at most cols columns (a longer word gets a line
-- of its own); the first line starts with first (default indent), the rest with indent.
local function wrap(text, cols, indent, first)
  indent = indent or ""
  first = first or indent
  local out, line, lead = {}, first, #first
  for word in tostring(text):gmatch("%S+") do
    if #line > lead and #line + 1 + #word > cols then
      out[#out + 1] = line
      line, lead = indent .. word, #indent
    else
      line = line .. (#line > lead and " " or "") .. word
    end
  end
  if #line > lead or #out == 0 then out[#out + 1] = line end
  return table.concat(out, "\n")
end

-- Two columns: names padded to w, descriptions wrapped under each other.
local function two_columns(items, cols, w)
  local lines = {}
  for _, it in ipairs(items) do
    local name = "  " .. it[1]
    if #name + 1 > w then
      lines[#lines + 1] = name
      lines[#lines + 1] = wrap(it[2], cols, string.rep(" ", w))
    else
      lines[#lines + 1] = wrap(it[2], cols, string.rep(" ", w), name .. string.rep(" ", w - #name))
    end
  end
  return table.concat(lines, "\n")
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
      if not kind then return nil, "unknown option " .. a:match("^[^=]*") end
      if kind == "value" then
        if inline == nil then
          i = i + 1
          inline = argv[i]
          if inline == nil then return nil, "--" .. name .. " needs a value" end
        end
        if name == "arg" then -- repeatable: a list
          local list = type(flags.arg) == "table" and flags.arg or {}
          list[#list + 1] = inline
          inline = list
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
-- OAuth: `login --oauth`, `logout`, and the stored tokens the other
-- commands use. The tokens live in the config folder (oauth-tokens.json,
-- 0600, written atomically, one entry per MCP URL) through the `store`
-- option of favcrm.new's `oauth`; nothing here prints a token.
-- ------------------------------------------------------------------------

local OAUTH_WAIT, OAUTH_PASTE_REDIRECT = login.WAIT, login.PASTE_REDIRECT
local oauth_path, oauth_entry, oauth_facts = login.path, login.entry, login.facts
local oauth_revoke, iso_or_nil = login.revoke, login.iso

-- The URL this run talks to (flags, environment, config file), or nil, err.
function Ctx:target_url()
  local r, err = config.resolve({ url = self.flags.url, labels = { url = "--url" } }, self.getenv)
  if not r then return nil, err end
  return r.url, nil, r
end

-- Notes for the person (stderr under --json, so stdout stays one document).
function Ctx:note(text)
  if self.flags.json then self.stderr:write(text, "\n") else self:say(text) end
end

-- The oauth option for this run, or nil. interactive: this is `login --oauth`
-- (authorize may ask); otherwise a new sign-in is needed only when the
-- stored grant has ended, and that is reported instead of asked.
function Ctx:oauth_option(interactive)
  if not interactive then
    return {
      redirect_uri = OAUTH_PASTE_REDIRECT,
      authorize = function()
        self.oauth_expired = true
        return nil
      end,
    }
  end
  local listener, lerr
  if not self.flags["no-browser"] then
    listener, lerr = core.loopback_listen(0)
    if not listener then
      self:warn("cannot listen on a loopback port (" .. tostring(lerr and lerr.message)
        .. "); paste the redirect address instead")
    end
  end
  self.oauth_listener = listener
  local redirect = listener and ("http://127.0.0.1:" .. listener:port() .. "/callback") or OAUTH_PASTE_REDIRECT
  return {
    redirect_uri = redirect,
    authorize = function(auth_url)
      if listener then
        local opened = login.open_browser(auth_url)
        self:note(opened and "Opening your browser to sign in to FavCRM. If it does not open, visit:"
          or "Open this address in a browser to sign in to FavCRM:")
        self:note("  " .. auth_url)
        self:note("Waiting for the browser to come back (up to " .. math.floor(OAUTH_WAIT / 60)
          .. " minutes; Ctrl-C stops).")
        local deadline = core.monotonic() + OAUTH_WAIT
        while true do
          local left = deadline - core.monotonic()
          if left <= 0 then return nil end
          -- short slices, so Ctrl-C (handled between Lua instructions) is felt
          local target, err = listener:accept(math.min(left, 0.5) * 1000, "/callback",
            "<!doctype html><meta charset=\"utf-8\"><title>favcrm</title>"
            .. "<p>favcrm received the answer: you can close this window and go back to the terminal.")
          if target then
            listener:close()
            return "http://127.0.0.1:" .. listener:port() .. target
          end
          if err.code ~= "timeout" then
            self:warn("the loopback listener failed: " .. tostring(err.message))
            return nil
          end
        end
      end
      self:note("Open this address in a browser (on any machine) and sign in to FavCRM:")
      self:note("  " .. auth_url)
      self:note("The browser is then sent to " .. OAUTH_PASTE_REDIRECT .. "?code=... (that page may not load: "
        .. "that is expected). Copy that whole address from the address bar and paste it here.")
      if self.flags.json then self.stderr:write("redirect address> ") else self.stdout:write("redirect address> ") end
      self.stdout:flush()
      local line = self.stdin:read("*l")
      if line == nil then return nil end
      line = line:gsub("^%s+", ""):gsub("%s+$", "")
      if line == "" then return nil end
      return line
    end,
  }
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
  -- OAuth: `login --oauth`, or tokens stored for this URL when no key is
  -- given in the command line or the environment
  if self.oauth_login then
    opts.oauth = self:oauth_option(true)
    self.auth_method = "oauth"
  elseif not key and not self:env("FAVCRM_API_KEY") and not self:env("FAVCRM_MCP_TOKEN") then
    local url = self:target_url()
    if url and oauth_entry(url) then
      opts.oauth = self:oauth_option(false)
      self.auth_method, self.oauth_url = "oauth", url
    end
  end
  key = nil -- luacheck: ignore 311
  local ok, client, err = pcall(favcrm.new, opts)
  if not ok then
    local msg = tostring(client):gsub("^[^:]*:%d+: ", "")
    if opts.oauth and msg:find("unknown option 'oauth'", 1, true) then
      msg = "this build of favcrm-lua has no OAuth support (favcrm.new has no 'oauth' option)"
    end
    return nil, self:fail({ code = "usage", message = msg }, EXIT.usage)
  end
  if not client then return nil, self:fail(err) end
  local cerr = client:config_problem()
  if cerr then
    self:warn("the config file could not be read (" .. tostring(cerr.message) .. "); ignoring it")
  end
  self._client = client
  return client
end

M.EXIT.interrupted = 130

-- After Ctrl-C (the Lua interpreter's "interrupted!" error): each request
-- still in flight is ended and the server told (notifications/cancelled, as
-- the session does on a timeout; the session belongs to another module, so
-- this reaches into it here). Returns 130.
function Ctx:interrupted()
  if self.in_call then pcall(self.in_call) end
  local s = self._client and self._client.session
  local n = 0
  if type(s) == "table" and type(s.ops) == "table" then
    pcall(function()
      local live = {}
      for _, op in pairs(s.ops) do
        if not op.done and op.rpc_id and not op.notify and not op.is_init then live[#live + 1] = op end
      end
      for _, op in ipairs(live) do
        s:_finish(op, nil, errors.new("cancelled", "interrupted"))
        s:_send_aux({ jsonrpc = "2.0", method = "notifications/cancelled",
          params = { requestId = op.rpc_id, reason = "interrupted by the user (Ctrl-C)" } })
        n = n + 1
      end
      if n > 0 then s:drain(2000) end
    end)
  end
  self.stderr:write("\n", self:paint("favcrm: interrupted", "yellow", "stderr"),
    n > 0 and "; the call was cancelled" or "", "\n")
  if self.flags and self.flags.json then
    self:json_out({ ok = false, error = { code = "cancelled", message = "interrupted (Ctrl-C)", exit = 130 } })
  end
  return EXIT.interrupted
end

function Ctx:need_key(client)
  if client:has_api_key() or self.auth_method == "oauth" then return true end
  return false, self:fail({ code = "no_key", message = "no API key is configured" }, EXIT.auth)
end

-- The client of a command that needs a key (Ctx:client, Ctx:need_key):
-- -> client, or nil and the exit code (the failure already said).
function Ctx:keyed_client()
  local client, code = self:client()
  if not client then return nil, code end
  local ok, kcode = self:need_key(client)
  if not ok then return nil, kcode end
  return client
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
      apiKeySavedTo = ws.saved_to, saveError = save_problem, nextCommand = "favcrm whoami" },
      G.struct({ nextSteps = G.list(nil) }))
  else
    ctx:say(ctx:paint("The workspace is ready.", "green"))
    ctx:table({ "FIELD", "VALUE" }, {
      { "organisation", ws.organisation_id }, { "company", ws.company_id }, { "user", ws.user_id },
      { "API key", shown }, { "saved to", ws.saved_to or (f["no-save"] and "not saved (--no-save)") or "not saved" },
      { "portal", ws.login_url },
    })
    -- the server's nextSteps speak to an agent ("Set Authorization: Bearer
    -- <apiKey> ..."); a person gets commands (--json keeps the server's text)
    ctx:say("")
    if ws.saved_to then
      ctx:say("Next: favcrm whoami (the saved key is used from now on), then favcrm tool list.")
    else
      ctx:say("Next: export FAVCRM_API_KEY=... (or `favcrm login`), then favcrm whoami.")
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

local function camel(k)
  return (k:gsub("_(%l)", string.upper))
end

-- The report as the Rust CLI's `--json doctor` has it: camelCase keys, each
-- failed check's message under its own `...Error` key (`error` when the
-- endpoint cannot be reached), the tools' answers as they came; our extras
-- (latency, session, problems with codes and hints, ...) in camelCase beside.
local function doctor_json(r)
  local out = {}
  for k, v in pairs(r) do
    if k:match("_error$") and type(v) == "table" then
      out[camel(k)] = v.message or v.code
      out[camel(k) .. "Code"] = v.code
    else
      out[camel(k)] = v
    end
  end
  if not r.reachable and type(r.reachable_error) == "table" then
    out.error = r.reachable_error.message or r.reachable_error.code
  end
  return out
end

-- Adds the auth method (api_key, oauth, none) and, for OAuth, the stored
-- token's expiry and scopes to a doctor report. A doctor that asks only for
-- an API key gets its answer about the user from the OAuth grant instead.
local function doctor_auth(ctx, client, r)
  if ctx.auth_method ~= "oauth" then
    r.auth_method = client:has_api_key() and "api_key" or "none"
    return
  end
  r.auth_method = "oauth"
  local e = oauth_entry(ctx.oauth_url)
  local facts = e and oauth_facts(e) or {}
  r.token_expires_at = iso_or_nil(facts.expires_at)
  r.token_expires_in_s = facts.expires_at and math.floor(facts.expires_at - os.time()) or nil
  r.token_scopes = facts.scopes
  r.token_file = oauth_path()
  r.auth_source = "oauth (" .. tostring(r.token_file) .. ")"
  local kept, asked_key = {}, false
  for _, p in ipairs(r.problems) do
    if p.check == "auth" and not r.authenticated then asked_key = true else kept[#kept + 1] = p end
  end
  if not asked_key then return end
  r.problems = kept
  local companies, cerr = client:call("list_my_companies")
  if companies ~= nil then
    r.authenticated, r.current_user = true, companies
  else
    r.current_user_error = { code = cerr.code, message = cerr.message }
    r.problems[#r.problems + 1] = { check = "auth", code = cerr.code, message = cerr.message,
      hint = "run `favcrm login --oauth` again" }
  end
  r.ok = #r.problems == 0
end

function C.doctor(ctx)
  local client, code = ctx:client()
  if not client then return code end
  local r = client:doctor()
  doctor_auth(ctx, client, r)
  local exit = doctor_exit(r)
  if ctx.flags.json then
    ctx:json_out(doctor_json(r), G.struct({ problems = G.list(nil) }))
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
  if r.auth_method == "oauth" then
    auth = "OAuth" .. (r.authenticated and "" or (": " .. brief(r.current_user_error)))
    if r.token_expires_at then
      local left = r.token_expires_in_s or 0
      auth = auth .. ", access token " .. (left > 0 and ("expires " .. r.token_expires_at .. " (in "
        .. mmss(left) .. ")") or ("expired " .. r.token_expires_at .. " (refreshed on the next call)"))
    end
    if r.token_scopes then auth = auth .. ", scopes: " .. r.token_scopes end
  elseif r.authenticated then auth = "configured (key from " .. tostring(r.auth_source) .. ")"
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
  if ctx.flags.oauth then return C.login_oauth(ctx, args) end
  if ctx.flags["no-browser"] then return ctx:fail("--no-browser goes with --oauth") end
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

function C.login_oauth(ctx, args)
  if args[1] or ctx.flags["api-key"] then
    return ctx:fail("`favcrm login --oauth` takes no key: it signs in through the browser")
  end
  local url, uerr = ctx:target_url()
  if not url then return ctx:fail(uerr) end
  -- a new sign-in, not the grant stored before (`favcrm logout` revokes that one)
  local fok, ferr = login.forget(url)
  if not fok and ferr then return ctx:fail(ferr) end
  ctx.oauth_login = url
  local client, code = ctx:client()
  if not client then return code end
  local who, err = client:call("list_my_companies", {})
  if ctx.oauth_listener then ctx.oauth_listener:close() end
  if who == nil then
    if err.code == "cancelled" then
      err.message = "the sign-in was cancelled or timed out; nothing was saved"
    end
    return ctx:fail(err)
  end
  local e = oauth_entry(url)
  local path = oauth_path()
  local facts = e and oauth_facts(e) or {}
  local comp = type(who) == "table" and type(who.companies) == "table" and who.companies[1] or {}
  if ctx.flags.json then
    ctx:json_out({ ok = true, authMethod = "oauth", savedTo = e and path or nil, userId = who.userId,
      email = who.email, organisation = comp.name, tokenExpiresAt = iso_or_nil(facts.expires_at),
      scopes = facts.scopes })
  else
    ctx:say(ctx:paint("Logged in", "green") .. " with OAuth as " .. tostring(who.email) .. " ("
      .. tostring(comp.name) .. "). "
      .. (e and ("The tokens are saved to " .. tostring(path) .. " (refreshed as needed).")
        or "The tokens were not saved (the server's grant could not be stored)."))
    local file = config.load() or {}
    if type(file.api_key) == "string" and file.api_key ~= "" then
      ctx:say("The API key saved in the config file is no longer used for " .. url
        .. " (`favcrm logout` removes both).")
    end
  end
  return EXIT.ok
end

function C.logout(ctx)
  local path, perr = config.path()
  if not path then return ctx:fail(perr) end
  -- OAuth first: revoke where the server supports it, then forget the tokens
  local url = ctx:target_url()
  local entry = url and oauth_entry(url)
  local revocation
  if entry then
    revocation = oauth_revoke(url, entry, ctx.timeout or 10)
    local ok, oerr = login.forget(url)
    if not ok then return ctx:fail(oerr) end
  end
  local file = config.load() or {}
  local had = type(file.api_key) == "string" and file.api_key ~= ""
  if had then
    local ok, serr = config.save({ api_key = false })
    if not ok then return ctx:fail(serr) end
  end
  local env_key = ctx:env("FAVCRM_API_KEY") and "FAVCRM_API_KEY" or (ctx:env("FAVCRM_MCP_TOKEN") and "FAVCRM_MCP_TOKEN")
  if ctx.flags.json then
    ctx:json_out({ removed = had, path = path, environmentKey = env_key or nil,
      oauthRemoved = entry and true or false, oauthRevocation = revocation })
  else
    if entry then
      ctx:say("Removed the OAuth tokens for " .. url .. " from " .. tostring(oauth_path()) .. " ("
        .. (revocation == "revoked" and "revoked at the server"
          or revocation == "unsupported" and "the server offers no revocation; they expire by themselves"
          or ("not revoked: " .. tostring(revocation):gsub("^failed: ", ""))) .. ").")
    end
    if had or not entry then
      ctx:say(had and ("Removed the API key from " .. path .. ".") or ("No API key was saved in " .. path .. "."))
    end
    if had then
      ctx:say("The key itself still works until you revoke it in the portal (Settings > MCP Keys).")
    end
  end
  if env_key then ctx:warn(env_key .. " is still set in the environment, so a key is still configured") end
  return EXIT.ok
end

function C.whoami(ctx)
  local client, code = ctx:keyed_client()
  if not client then return code end
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
  local io_t = { stdin = ctx.stdin, stdout = ctx.stdout, stderr = ctx.stderr, getenv = ctx.getenv,
    stdin_fd = ctx.stdin == io.stdin and 0 or nil } -- polled: the host is heard while a call runs
  local ok, res = pcall(serve.serve, client, io_t, { version = favcrm.VERSION, save = not ctx.flags["no-save"],
    show_key = ctx.flags["show-key"] == true })
  client:close()
  if not ok then
    ctx.stderr:write("favcrm mcp serve: internal error: ", tostring(res), "\n")
    return EXIT.failure
  end
  return res
end

-- ------------------------------------------------------------------------
-- The Rust CLI's commands: one tool each (plan, team invite, whatsapp,
-- orgs, members, bookings, invoices, dashboard). --json prints the tool's
-- payload as the Rust CLI does; a person gets a table.
-- ------------------------------------------------------------------------

local function is_list(v)
  return type(v) == "table" and (getmetatable(v) == json.ARRAY or json.is_sequence(v))
end

local function cell(v)
  if v == nil or v == json.null then return "" end
  if type(v) == "table" then
    if is_list(v) and #v == 0 then return "" end
    return json.encode(v)
  end
  if type(v) == "number" then return json.encode(v) end
  return tostring(v)
end

-- Columns first in a table, when the rows have them.
local FIRST = { id = 1, name = 2, number = 3, status = 4 }

-- The rows a result holds: the result itself when it is a list, else its
-- first list under items/results/rows/data (as the Rust CLI picks them).
local function rows_of(v)
  if is_list(v) then return v end
  if type(v) ~= "table" then return nil end
  for _, k in ipairs({ "items", "results", "rows", "data" }) do
    if is_list(v[k]) or (type(v[k]) == "table" and next(v[k]) == nil and getmetatable(v[k]) == json.ARRAY) then
      return v[k]
    end
  end
  return nil
end

local function flatten(v, prefix, out, depth)
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = tostring(k) end
  table.sort(keys)
  for _, k in ipairs(keys) do
    local val = v[k]
    if type(val) == "table" and not is_list(val) and next(val) ~= nil and depth < 2 then
      flatten(val, prefix .. k .. ".", out, depth + 1)
    else
      out[#out + 1] = { prefix .. k, cell(val) }
    end
  end
  return out
end

-- Prints a tool's result for a person: rows as a table, an object as
-- FIELD/VALUE lines, anything else as text.
function Ctx:show(v)
  if type(v) == "table" and next(v) == nil then return self:say("(no rows)") end
  local rows = rows_of(v)
  if rows then
    if #rows == 0 then return self:say("(no rows)") end
    if type(rows[1]) ~= "table" or is_list(rows[1]) then
      for _, r in ipairs(rows) do self:say(cell(r)) end
      return
    end
    local cols = {}
    for k, val in pairs(rows[1]) do
      if type(val) ~= "table" or (is_list(val) and #val == 0) then cols[#cols + 1] = k end
    end
    table.sort(cols, function(a, b)
      local fa, fb = FIRST[a] or 99, FIRST[b] or 99
      if fa ~= fb then return fa < fb end
      return a < b
    end)
    while #cols > 8 do table.remove(cols) end
    local header, out = {}, {}
    for i, c in ipairs(cols) do header[i] = c:gsub("(%l)(%u)", "%1 %2"):upper() end
    for _, r in ipairs(rows) do
      local line = {}
      for i, c in ipairs(cols) do line[i] = type(r) == "table" and cell(r[c]) or "" end
      out[#out + 1] = line
    end
    self:table(header, out)
    if type(v) == "table" and v ~= rows and type(v.total) == "number" then
      self:say(#rows .. " of " .. cell(v.total))
    end
    return
  end
  if type(v) == "table" then
    local fields = flatten(v, "", {}, 0)
    if #fields == 0 then return self:say("(empty)") end
    return self:table({ "FIELD", "VALUE" }, fields)
  end
  if v == nil or v == json.null then return self:say("(no result)") end
  self:say(cell(v))
end

-- The JSON guide for a tool's payload (keeps [] and {} apart as the server sent them).
local function payload_guide(client, name, res)
  local guide = json.guide.result(client:cached_tool(name), res).child("structuredContent")
  if type(res) == "table" and type(res.structuredContent) == "table" and res.structuredContent.data ~= nil then
    guide = guide and guide.child("data")
  end
  return guide
end

-- Progress on stderr while a call runs, when stderr is a terminal: one line,
-- rewritten in place, cleared when the call ends.
function Ctx:progress_for(name)
  if not self.isatty(2) then return nil, function() end end
  local shown = false
  local function on_progress(p)
    local text = "favcrm: " .. name .. ": "
    if type(p.progress) == "number" then
      text = text .. cell(p.progress) .. (type(p.total) == "number" and ("/" .. cell(p.total)) or "")
    end
    if type(p.message) == "string" and p.message ~= "" then text = text .. " " .. errors.redact(p.message) end
    self.stderr:write("\r\27[K", self:paint(text:sub(1, 200), "dim", "stderr"))
    self.stderr:flush()
    shown = true
  end
  return on_progress, function()
    if shown then
      self.stderr:write("\r\27[K")
      self.stderr:flush()
    end
  end
end

-- client:call with the CLI's confirmation (--yes, or a question on a
-- terminal) and progress on a terminal.
function Ctx:call_tool(client, name, args)
  local opts = {}
  if self.flags.yes then
    opts.confirm = true
  elseif self.isatty(0) and self.isatty(2) then
    opts.on_confirm = function(tool)
      local a = type(tool.annotations) == "table" and tool.annotations or {}
      self.stderr:write(self:paint(tool.name .. " is destructive", "red", "stderr") .. " ("
        .. tostring(tool.title or a.title or tool.name) .. "). Go ahead? [y/N] ")
      self.stderr:flush()
      local line = self.stdin:read("*l")
      return line ~= nil and line:match("^%s*[Yy]") ~= nil
    end
  end
  local done
  opts.on_progress, done = self:progress_for(name)
  self.in_call = done
  local data, res = client:call(name, args, opts)
  self.in_call = nil
  done()
  if data == nil and errors.is(res) and res.code == "confirmation_required" and res.server_code == nil then
    res.message = name .. " is destructive; not called" .. (opts.on_confirm and "" or
      " (no terminal to ask on: pass --yes to go ahead)")
    res.exit = EXIT.usage
  end
  return data, res
end

-- Runs one tool for a command. o: no_auth (the tool needs no key),
-- render(ctx, data) for a person, after(data, client) -> data (both outputs),
-- failed(err) -> err (adjusts an error before it is reported).
function Ctx:run_tool(name, args, o)
  o = o or {}
  local client, code = self:client()
  if not client then return code end
  if not o.no_auth then
    local ok, kcode = self:need_key(client)
    if not ok then return kcode end
  end
  local data, res = self:call_tool(client, name, args)
  if data == nil and errors.is(res) then
    if o.failed then res = o.failed(res) or res end
    return self:fail(res, res.exit)
  end
  local guide = payload_guide(client, name, res)
  local exit = EXIT.ok
  if o.after then data, exit = o.after(data, client) exit = exit or EXIT.ok end
  if self.flags.json then
    self:json_out(data, guide)
  elseif o.render then
    o.render(self, data)
  else
    self:show(data)
  end
  return exit
end

-- The workspace commands (one tool each: plan, team invite, whatsapp, orgs,
-- members, bookings, invoices, dashboard) and the tool, resource and prompt
-- commands live in favcrm.cli_workspace and favcrm.cli_tools, loaded when
-- one of them runs (favcrm.lazy); they reach what they share with this
-- file through M._shared.
M._shared = { C = C, EXIT = EXIT, G = G, cell = cell, is_list = is_list, wrap = wrap }
lazy(C, "favcrm.cli_workspace", {
  "plan_status", "plan_check", "plan_options", "plan_upgrade", "plan_portal", "team_invite_create",
  "team_invite_accept_request", "team_invite_accept_verify", "whatsapp_status", "whatsapp_connect",
  "orgs_list", "orgs_switch", "dashboard", "members_search", "bookings_list", "bookings_stats",
  "invoices_list", "invoices_stats", "members_get", "bookings_get", "bookings_cancel", "bookings_complete",
  "bookings_confirm", "invoices_get", "invoices_send", "invoices_void" })
lazy(C, "favcrm.cli_tools", {
  "tool_list", "tool_describe", "tool_call", "resource_list", "resource_read", "prompt_list", "prompt_get" })

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
    resource = {
      usage = "favcrm resource list|read ...",
      about = "The server's resources (the platform guide, the published schemas, ...).",
      sub = {
        list = {
          run = C.resource_list, flags = {},
          usage = "favcrm resource list [--json]",
          about = "Lists the resources and resource templates: URI, title, media type.",
          example = "favcrm resource list",
        },
        read = {
          run = C.resource_read, flags = {}, args = "URI",
          usage = "favcrm resource read URI [--json]",
          about = "Prints a resource's text (--json: the whole resources/read result).",
          example = "favcrm resource read favcrm://guide",
        },
      },
    },
    prompt = {
      usage = "favcrm prompt list|get ...",
      about = "The server's prompts (conversation starters such as signup).",
      sub = {
        list = {
          run = C.prompt_list, flags = {},
          usage = "favcrm prompt list [--json]",
          about = "Lists the prompts: name, title, arguments (NAME? is optional).",
          example = "favcrm prompt list",
        },
        get = {
          run = C.prompt_get, flags = { "arg" }, args = "NAME",
          usage = "favcrm prompt get NAME [--arg NAME=VALUE ...] [--json]",
          about = "Fills a prompt in with its arguments (--arg, repeatable) and prints its messages.",
          example = "favcrm prompt get signup --arg industry=fitness",
        },
      },
    },
    login = {
      run = C.login, flags = { "oauth", "no-browser" }, args = "[KEY]",
      usage = "favcrm login < key.txt   |   favcrm login   (prompts without echo)   |   "
        .. "favcrm login --oauth [--no-browser]",
      about = "Saves an API key to the config file after checking it with FavCRM (list_my_companies). The "
        .. "key is read from stdin when it is not a terminal, else from a prompt that does not echo. "
        .. "With --oauth, signs in through the browser instead (OAuth 2.1 with PKCE): the browser opens "
        .. "(xdg-open; else the address is printed) and comes back to a one-time listener on a loopback "
        .. "port; with --no-browser (headless machines) the address is printed and you paste the address "
        .. "the browser was sent to. The tokens are saved (0600) in the config folder and refreshed as needed.",
      example = "favcrm login\nprintf '%s\\n' \"$KEY\" | favcrm login\nfavcrm login --oauth\n"
        .. "favcrm login --oauth --no-browser",
    },
    logout = {
      run = C.logout, flags = {},
      usage = "favcrm logout",
      about = "Removes the API key from the config file (the key still works until revoked in the portal) "
        .. "and the OAuth tokens saved for this URL, revoking them first where the server supports it.",
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
      usage = "favcrm team invite create|accept|accept-request|accept-verify ...",
      about = "Team membership.",
      sub = {
        invite = {
          usage = "favcrm team invite create|accept|accept-request|accept-verify ...",
          about = "Team invitations: an owner or manager creates one; the invitee accepts it (in a conversation, "
            .. "or in two scripted steps).",
          sub = {
            create = {
              run = C.team_invite_create, flags = { "email", "name", "role", "expires-in-hours" },
              usage = "favcrm team invite create --email E [--name N] [--role staff|manager] [--expires-in-hours H]",
              about = "Creates a one-time invite token for a teammate (create_team_member_invite); FavCRM "
                .. "e-mails it to them. The role defaults to staff.",
              example = "favcrm team invite create --email bo@example.com --name \"Bo Chan\" --role manager",
            },
            accept = {
              run = C.team_invite_accept, flags = { "token", "name" },
              usage = "favcrm team invite accept [--token inv_...] [--name NAME]",
              about = "Accepts a team invitation in a conversation: paste the invite token, FavCRM e-mails a "
                .. "6-digit code, paste it, and your own API key is saved to the config file.",
              example = "favcrm team invite accept --token inv_abc123 --name \"Bo Chan\"",
            },
            ["accept-request"] = {
              run = C.team_invite_accept_request, flags = { "token" },
              usage = "favcrm team invite accept-request --token inv_...",
              about = "Step 1 of the scripted acceptance: FavCRM e-mails a 6-digit code (valid 10 minutes) to "
                .. "the invited address. Needs no API key.",
              example = "favcrm team invite accept-request --token inv_abc123",
            },
            ["accept-verify"] = {
              run = C.team_invite_accept_verify, flags = { "token", "code", "name", "no-save", "show-key" },
              usage = "favcrm team invite accept-verify --token inv_... --code CODE [--name N] [--no-save] "
                .. "[--show-key]",
              about = "Step 2: checks the code and returns your own API key, saved to the config file (mode "
                .. "0600) unless --no-save and printed masked unless --show-key (--json too).",
              example = "favcrm team invite accept-verify --token inv_abc123 --code 123456",
            },
          },
        },
      },
    },
    plan = {
      usage = "favcrm plan status|check|options|upgrade|portal ...",
      about = "The plan, its quotas and billing.",
      sub = {
        status = {
          run = C.plan_status, flags = {},
          usage = "favcrm plan status [--json]",
          about = "Shows the current plan, its payment state, modules and quota usage (get_plan_status).",
          example = "favcrm plan status",
        },
        check = {
          run = C.plan_check, flags = { "tool", "quota", "module", "delta" },
          usage = "favcrm plan check [--tool NAME] [--quota CODE] [--module CODE] [--delta N]",
          about = "Asks whether a planned operation fits the plan (check_plan_operation): a tool, a quota "
            .. "with the planned increment (--delta, default 1) or a module. Exits 0 either way; the answer "
            .. "says allowed or not, with the plan needed.",
          example = "favcrm plan check --tool create_campaign\nfavcrm plan check --quota contacts --delta 200",
        },
        options = {
          run = C.plan_options, flags = {},
          usage = "favcrm plan options [--json]",
          about = "Lists the plans the workspace can move to (list_plan_options).",
          example = "favcrm plan options",
        },
        upgrade = {
          run = C.plan_upgrade, flags = { "plan-code", "plan-id", "billing-cycle", "return-url", "confirm" },
          usage = "favcrm plan upgrade --plan-code CODE|--plan-id ID [--billing-cycle monthly|yearly] "
            .. "[--return-url URL] [--confirm]",
          about = "Creates a Stripe checkout link for a higher plan (create_plan_upgrade_link). It starts a "
            .. "paid checkout, so nothing is created without --confirm (exit 1).",
          example = "favcrm plan upgrade --plan-code favcrm-lite --confirm",
        },
        portal = {
          run = C.plan_portal, flags = { "return-url", "confirm" },
          usage = "favcrm plan portal [--return-url URL] [--confirm]",
          about = "Creates a Stripe billing portal link for the current paid plan (create_plan_upgrade_link "
            .. "with the current plan's code). Needs --confirm.",
          example = "favcrm plan portal --confirm",
        },
      },
    },
    whatsapp = {
      usage = "favcrm whatsapp status|connect ...",
      about = "The WhatsApp Business connection.",
      sub = {
        status = {
          run = C.whatsapp_status, flags = {},
          usage = "favcrm whatsapp status [--json]",
          about = "Shows whether a WhatsApp Business number is connected (get_whatsapp_connection_status).",
          example = "favcrm whatsapp status",
        },
        connect = {
          run = C.whatsapp_connect, flags = { "mode", "ttl-minutes" },
          usage = "favcrm whatsapp connect [--mode cloud-api|coexistence] [--ttl-minutes M]",
          about = "Creates a browser link to Meta's Embedded Signup (create_whatsapp_connect_link). cloud-api "
            .. "(the default) puts a number on the Cloud API; coexistence keeps the WhatsApp Business app on "
            .. "the same number.",
          example = "favcrm whatsapp connect --mode coexistence --ttl-minutes 60",
        },
      },
    },
    orgs = {
      usage = "favcrm orgs list|switch ...",
      about = "The companies (organisations) the key's user belongs to.",
      sub = {
        list = {
          run = C.orgs_list, flags = {},
          usage = "favcrm orgs list [--json]",
          about = "Lists the user's companies; * marks the active one (list_my_companies).",
          example = "favcrm orgs list",
        },
        switch = {
          run = C.orgs_switch, flags = {}, args = "COMPANY_ID",
          usage = "favcrm orgs switch COMPANY_ID",
          about = "Makes another of the user's companies the active one (switch_company).",
          example = "favcrm orgs switch co_abc123",
        },
      },
    },
    dashboard = {
      run = C.dashboard, flags = {},
      usage = "favcrm dashboard [--json]",
      about = "Today's headline numbers for the active company (get_dashboard_stats).",
      example = "favcrm dashboard",
    },
    members = {
      usage = "favcrm members search|get ...",
      about = "Members (customers with a loyalty account).",
      sub = {
        search = {
          run = C.members_search, flags = { "inactive-days", "tier-id", "limit" }, args = "[QUERY]",
          usage = "favcrm members search [QUERY] [--inactive-days N] [--tier-id ID] [--limit N]",
          about = "Searches members by name, e-mail or phone, or filters them by inactivity and tier "
            .. "(search_members). Without a filter it lists them (20 by default).",
          example = "favcrm members search ada\nfavcrm members search --inactive-days 90 --limit 50",
        },
        get = {
          run = C.members_get, flags = {}, args = "ACCOUNT_ID",
          usage = "favcrm members get ACCOUNT_ID",
          about = "Shows one member's full profile (get_member_profile).",
          example = "favcrm members get mem_abc123",
        },
      },
    },
    bookings = {
      usage = "favcrm bookings list|get|stats|cancel|complete|confirm ...",
      about = "Bookings.",
      sub = {
        list = {
          run = C.bookings_list, flags = { "from", "to", "status", "limit" },
          usage = "favcrm bookings list [--from DATE] [--to DATE] [--status S] [--limit N]",
          about = "Lists bookings (list_bookings): --from/--to are ISO dates or times, --status one of "
            .. "pending, confirmed, completed, cancelled, no_show.",
          example = "favcrm bookings list --from 2026-05-01 --to 2026-06-01 --status confirmed",
        },
        get = {
          run = C.bookings_get, flags = {}, args = "BOOKING_ID",
          usage = "favcrm bookings get BOOKING_ID",
          about = "Shows one booking (get_booking_detail).",
          example = "favcrm bookings get bkg_abc123",
        },
        stats = {
          run = C.bookings_stats, flags = {},
          usage = "favcrm bookings stats [--json]",
          about = "Booking counts for the active company (get_booking_stats).",
          example = "favcrm bookings stats",
        },
        cancel = {
          run = C.bookings_cancel, flags = { "yes" }, args = "BOOKING_ID",
          usage = "favcrm bookings cancel BOOKING_ID [--yes]",
          about = "Cancels a booking (cancel_booking, destructive): asks on a terminal; without one it needs "
            .. "--yes.",
          example = "favcrm bookings cancel bkg_abc123 --yes",
        },
        complete = {
          run = C.bookings_complete, flags = {}, args = "BOOKING_ID",
          usage = "favcrm bookings complete BOOKING_ID",
          about = "Marks a booking completed (complete_booking).",
          example = "favcrm bookings complete bkg_abc123",
        },
        confirm = {
          run = C.bookings_confirm, flags = {}, args = "BOOKING_ID",
          usage = "favcrm bookings confirm BOOKING_ID",
          about = "Confirms a pending booking (confirm_booking).",
          example = "favcrm bookings confirm bkg_abc123",
        },
      },
    },
    invoices = {
      usage = "favcrm invoices list|get|send|void|stats ...",
      about = "Invoices.",
      sub = {
        list = {
          run = C.invoices_list, flags = { "status", "limit" },
          usage = "favcrm invoices list [--status S] [--limit N]",
          about = "Lists invoices (list_invoices); --status is draft, open, sent, paid, void or overdue.",
          example = "favcrm invoices list --status overdue",
        },
        get = {
          run = C.invoices_get, flags = {}, args = "INVOICE_ID",
          usage = "favcrm invoices get INVOICE_ID",
          about = "Shows one invoice (get_invoice).",
          example = "favcrm invoices get invc_abc123",
        },
        send = {
          run = C.invoices_send, flags = {}, args = "INVOICE_ID",
          usage = "favcrm invoices send INVOICE_ID",
          about = "Marks an invoice sent (mark_invoice_sent).",
          example = "favcrm invoices send invc_abc123",
        },
        void = {
          run = C.invoices_void, flags = { "yes" }, args = "INVOICE_ID",
          usage = "favcrm invoices void INVOICE_ID [--yes]",
          about = "Voids an invoice (void_invoice, destructive): asks on a terminal; without one it needs --yes.",
          example = "favcrm invoices void invc_abc123 --yes",
        },
        stats = {
          run = C.invoices_stats, flags = {},
          usage = "favcrm invoices stats [--json]",
          about = "Invoice counts and totals by status (get_invoice_stats).",
          example = "favcrm invoices stats",
        },
      },
    },
    completion = {
      run = function(ctx, rest) return C.completion(ctx, rest) end, flags = {}, args = "SHELL",
      usage = "favcrm completion bash|zsh|fish",
      about = "Prints a completion script for bash, zsh or fish, made from the command table.",
      example = "source <(favcrm completion bash)\nfavcrm completion zsh > \"${fpath[1]}/_favcrm\"\n"
        .. "favcrm completion fish > ~/.config/fish/completions/favcrm.fish",
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
  "signup", "signup request", "signup verify", "doctor", "tool list", "tool describe", "tool call", "resource list",
  "resource read", "prompt list", "prompt get", "login",
  "logout", "whoami", "config path", "orgs list", "orgs switch", "dashboard", "members search", "members get",
  "bookings list", "bookings get", "bookings stats", "bookings cancel", "bookings complete", "bookings confirm",
  "invoices list", "invoices get", "invoices send", "invoices void", "invoices stats", "plan status", "plan check",
  "plan options", "plan upgrade", "plan portal", "whatsapp status", "whatsapp connect", "team invite create",
  "team invite accept", "team invite accept-request", "team invite accept-verify", "mcp serve", "completion",
}

local function footer(lines, cols)
  lines[#lines + 1] = ""
  lines[#lines + 1] = "Global options (any command):"
  lines[#lines + 1] = two_columns(GLOBAL_HELP, cols, 21)
  lines[#lines + 1] = ""
  lines[#lines + 1] = "Exit status:"
  lines[#lines + 1] = two_columns(EXIT_HELP, cols, 7)
end

local function main_help(cols)
  local lines = { wrap("favcrm " .. favcrm.VERSION .. ": sign up for FavCRM and use its CRM tools over MCP.", cols),
    "", "Usage: favcrm [options] COMMAND ...", "", "Commands:" }
  local items = {}
  for _, path in ipairs(ORDER) do
    local node = TREE
    for w in path:gmatch("%S+") do node = node.sub[w] end
    items[#items + 1] = { path, node.about:match("^(.-%.)%s") or node.about }
  end
  lines[#lines + 1] = two_columns(items, cols, 29)
  footer(lines, cols)
  lines[#lines + 1] = ""
  lines[#lines + 1] = wrap("`favcrm COMMAND --help` for a command's options and an example; `favcrm completion "
    .. "bash|zsh|fish` prints a completion script.", cols)
  return table.concat(lines, "\n")
end

local function node_help(node, cols)
  local lines = { wrap(node.usage, cols, "    ", "Usage: "), "", wrap(node.about, cols, "") }
  if node.sub then
    lines[#lines + 1] = ""
    lines[#lines + 1] = "Commands:"
    local names = {}
    for k in pairs(node.sub) do names[#names + 1] = k end
    table.sort(names)
    for _, k in ipairs(names) do
      lines[#lines + 1] = wrap(node.sub[k].usage, cols, "      ", "  ")
    end
  end
  if node.example then
    lines[#lines + 1] = ""
    lines[#lines + 1] = "Example:"
    for l in node.example:gmatch("[^\n]+") do lines[#lines + 1] = "  " .. l end
  end
  footer(lines, cols)
  return table.concat(lines, "\n")
end

-- The terminal's width for help: COLUMNS, else `tput cols` when stdout is a
-- terminal, else 80 (at least 40).
function Ctx:columns()
  local n = tonumber(self:env("COLUMNS") or "")
  if not n and self.isatty(1) then
    local p = io.popen("tput cols 2>/dev/null")
    if p then
      n = tonumber((p:read("*a") or ""):match("%d+"))
      p:close()
    end
  end
  n = math.floor(n or 80)
  if n < 40 then n = 40 end
  return n
end

-- ------------------------------------------------------------------------
-- Completion scripts, made from the command table
-- ------------------------------------------------------------------------

local VALUES = {
  role = { "staff", "manager" }, mode = { "cloud-api", "coexistence" }, ["billing-cycle"] = { "monthly", "yearly" },
  industry = { "beauty", "fitness", "tutoring", "retail", "hospitality", "services", "other" },
}

--- Every command path ("" for the top) with its subcommands and options
-- ({path =, subs = {...}, flags = {"--x", ...}}): what the completion
-- scripts are made from (cli.command_paths).
---@return table[] paths
local function command_paths()
  local out = {}
  local function walk(node, path)
    local subs, flags = {}, {}
    for k in pairs(node.sub or {}) do subs[#subs + 1] = k end
    table.sort(subs)
    if path == "" then subs[#subs + 1] = "help" end
    for _, f in ipairs(node.flags or {}) do flags[#flags + 1] = "--" .. f end
    table.sort(flags)
    if path == "completion" then subs = { "bash", "zsh", "fish" } end
    out[#out + 1] = { path = path, subs = subs, flags = flags }
    for _, k in ipairs(subs) do
      if node.sub and node.sub[k] then walk(node.sub[k], path == "" and k or (path .. " " .. k)) end
    end
  end
  walk(TREE, "")
  return out
end

local function global_flags()
  local g = {}
  for k in pairs(GLOBAL_FLAGS) do g[#g + 1] = "--" .. k end
  table.sort(g)
  return g
end

local function value_flags()
  local v = {}
  for k, kind in pairs(ALL_FLAGS) do if kind == "value" then v[#v + 1] = "--" .. k end end
  table.sort(v)
  return v
end

local function completion_bash()
  local L = { "# bash completion for favcrm (favcrm completion bash); source it, or save it as",
    "# /etc/bash_completion.d/favcrm", "_favcrm() {",
    "  local cur=\"${COMP_WORDS[COMP_CWORD]}\" prev=\"${COMP_WORDS[COMP_CWORD-1]}\" cmdpath=\"\" w i",
    "  for ((i = 1; i < COMP_CWORD; i++)); do", "    w=\"${COMP_WORDS[i]}\"",
    "    case \"$w\" in -*) continue ;; esac",
    "    case \"${COMP_WORDS[i-1]}\" in " .. table.concat(value_flags(), "|") .. ") continue ;; esac",
    "    cmdpath=\"${cmdpath:+$cmdpath }$w\"", "  done", "  case \"$prev\" in" }
  local names = {}
  for k in pairs(VALUES) do names[#names + 1] = k end
  table.sort(names)
  for _, k in ipairs(names) do
    L[#L + 1] = "    --" .. k .. ") COMPREPLY=($(compgen -W \"" .. table.concat(VALUES[k], " ")
      .. "\" -- \"$cur\")); return ;;"
  end
  L[#L + 1] = "    " .. table.concat(value_flags(), "|") .. ") COMPREPLY=(); return ;;"
  L[#L + 1] = "  esac"
  L[#L + 1] = "  local subs=\"\" flags=\"" .. table.concat(global_flags(), " ") .. "\""
  L[#L + 1] = "  case \"$cmdpath\" in"
  for _, c in ipairs(command_paths()) do
    L[#L + 1] = "    \"" .. c.path .. "\") subs=\"" .. table.concat(c.subs, " ") .. "\"; flags=\"$flags "
      .. table.concat(c.flags, " ") .. "\" ;;"
  end
  L[#L + 1] = "  esac"
  L[#L + 1] = "  if [[ \"$cur\" == -* ]]; then"
  L[#L + 1] = "    COMPREPLY=($(compgen -W \"$flags\" -- \"$cur\"))"
  L[#L + 1] = "  else"
  L[#L + 1] = "    COMPREPLY=($(compgen -W \"$subs\" -- \"$cur\"))"
  L[#L + 1] = "  fi"
  L[#L + 1] = "}"
  L[#L + 1] = "complete -F _favcrm favcrm"
  return table.concat(L, "\n")
end

local function completion_zsh()
  local L = { "#compdef favcrm", "# zsh completion for favcrm (favcrm completion zsh): save it as _favcrm in a",
    "# folder of $fpath, or source it after compinit.", "_favcrm() {",
    "  local cmdpath=\"\" w i prev=${words[CURRENT-1]}", "  local -a subs flags",
    "  for ((i = 2; i < CURRENT; i++)); do", "    w=${words[i]}", "    [[ $w == -* ]] && continue",
    "    case ${words[i-1]} in (" .. table.concat(value_flags(), "|") .. ") continue ;; esac",
    "    cmdpath=\"${cmdpath:+$cmdpath }$w\"", "  done", "  case $prev in" }
  local names = {}
  for k in pairs(VALUES) do names[#names + 1] = k end
  table.sort(names)
  for _, k in ipairs(names) do
    L[#L + 1] = "    (--" .. k .. ") compadd -- " .. table.concat(VALUES[k], " ") .. "; return ;;"
  end
  L[#L + 1] = "    (" .. table.concat(value_flags(), "|") .. ") _default; return ;;"
  L[#L + 1] = "  esac"
  L[#L + 1] = "  flags=(" .. table.concat(global_flags(), " ") .. ")"
  L[#L + 1] = "  case $cmdpath in"
  for _, c in ipairs(command_paths()) do
    L[#L + 1] = "    (\"" .. c.path .. "\") subs=(" .. table.concat(c.subs, " ") .. "); flags+=("
      .. table.concat(c.flags, " ") .. ") ;;"
  end
  L[#L + 1] = "  esac"
  L[#L + 1] = "  if [[ ${words[CURRENT]} == -* ]]; then compadd -- $flags; else compadd -- $subs; fi"
  L[#L + 1] = "}"
  L[#L + 1] = "if [[ ${funcstack[1]} == _favcrm ]]; then _favcrm \"$@\"; else compdef _favcrm favcrm; fi"
  return table.concat(L, "\n")
end

local function completion_fish()
  local L = { "# fish completion for favcrm (favcrm completion fish): save it as",
    "# ~/.config/fish/completions/favcrm.fish", "function __favcrm_path",
    "    set -l toks (commandline -opc)", "    set -e toks[1]", "    set -l out", "    set -l skip 0",
    "    for t in $toks", "        if test $skip = 1", "            set skip 0", "            continue", "        end",
    "        switch $t", "            case " .. table.concat(value_flags(), " "), "                set skip 1",
    "                continue", "            case '-*'", "                continue", "        end",
    "        set out $out $t", "    end", "    echo (string join ' ' -- $out)", "end",
    -- "(...)" inside double quotes is literal before fish 3.4: compare through a variable
    "function __favcrm_at", "    set -l p (__favcrm_path)", "    test \"$p\" = \"$argv[1]\"", "end",
    "complete -c favcrm -f" }
  for _, g in ipairs(global_flags()) do
    L[#L + 1] = "complete -c favcrm -l " .. g:sub(3) .. (ALL_FLAGS[g:sub(3)] == "value" and " -r" or "")
  end
  for _, c in ipairs(command_paths()) do
    local cond = "-n '__favcrm_at \"" .. c.path .. "\"'"
    if #c.subs > 0 then L[#L + 1] = "complete -c favcrm " .. cond .. " -a '" .. table.concat(c.subs, " ") .. "'" end
    for _, f in ipairs(c.flags) do
      local name = f:sub(3)
      local line = "complete -c favcrm " .. cond .. " -l " .. name
      if VALUES[name] then line = line .. " -x -a '" .. table.concat(VALUES[name], " ") .. "'"
      elseif ALL_FLAGS[name] == "value" then line = line .. " -r" end
      L[#L + 1] = line
    end
  end
  return table.concat(L, "\n")
end

-- cli.command_paths(): command_paths above, for the completion specs
M.command_paths = command_paths

function C.completion(ctx, rest)
  local shell = rest[1]
  local make = ({ bash = completion_bash, zsh = completion_zsh, fish = completion_fish })[shell or ""]
  if not make or rest[2] then return ctx:fail("completion needs one SHELL: bash, zsh or fish") end
  ctx:say(make())
  return EXIT.ok
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
    ctx:say(node == TREE and main_help(ctx:columns()) or node_help(node, ctx:columns()))
    return EXIT.ok
  end
  if node == TREE then
    if pos[1] then return ctx:fail("unknown command: " .. pos[1] .. " (see favcrm --help)") end
    ctx.stderr:write(main_help(ctx:columns()), "\n")
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
  if not ok and tostring(code):find("interrupted!", 1, true) then
    code, ok = ctx:interrupted(), true
  end
  if ctx._client and not ctx._client.closed then pcall(ctx._client.close, ctx._client) end
  if not ok then
    ctx.stderr:write("favcrm: internal error: ", tostring(code), "\n")
    return EXIT.failure
  end
  ctx.stdout:flush()
  return code
end

return M
