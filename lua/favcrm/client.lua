--- favcrm.client: the client object behind favcrm.new (DESIGN.md layer 2).
local json = require("favcrm.json")
local core = require("favcrm.core")
local errors = require("favcrm.errors")
local Session = require("favcrm.session")
local config = require("favcrm.config")
local urls = require("favcrm.url")
local era = require("favcrm.era")
local lazy = require("favcrm.lazy")
-- favcrm.util and favcrm.tasks load on first use (a client that only calls
-- tools parses, and keeps, less Lua at start-up): `util` and `tasks` stand
-- in for them until a field is first read; favcrm.protocol likewise (below)
local function on_first_use(name)
  return setmetatable({}, { __index = function(t, k)
    local m = require(name)
    setmetatable(t, { __index = m })
    return m[k]
  end })
end
local util = on_first_use("favcrm.util")
local tasks = on_first_use("favcrm.tasks")

--- A connection to a FavCRM MCP server, from `favcrm.new`: tool calls,
-- the signup pair, doctor, and (favcrm.scheduler) many calls at once.
-- Expected failures come back as `nil, err` (a `favcrm.Error`); misuse raises.
-- Also a to-be-closed value (`local c <close> = favcrm.new()`).
---@class favcrm.Client
---@field url string where calls go (for a stdio server, `stdio:PROG`); read-only
---@field closed? boolean true once `close()` ran
local Client = {}
-- the options (and annotations) of a call that has none: never written to
local NO_OPTS = setmetatable({}, { __newindex = function() error("favcrm: NO_OPTS is read-only", 2) end })
-- the arguments of a call made without any: read, encoded as {}, never
-- handed to the application (on_confirm gets a table of its own); the
-- session knows it too (its body needs no encoding)
local NO_ARGS = Session.NO_ARGS
Client.__index = Client

local VERSION = core.VERSION

-- option name -> expected Lua type(s)
local OPTIONS = {
  url = "string", api_key = "string|userdata", timeout = "number",
  connect_timeout = "number", max_total_timeout = "number",
  max_response_bytes = "number", max_event_bytes = "number",
  ca_file = "string", headers = "table", user_agent = "string",
  on_elicit = "function", on_sample = "function", on_roots = "function",
  on_progress = "function", on_log = "function", on_confirm = "function",
  transport = "table|userdata", validate = "boolean", client_name = "string",
  clock = "function", max_retry_wait = "number", command = "table", env = "table", on_stderr = "function",
  getenv = "function", labels = "table", listen = "boolean",
  on_tools_changed = "function", on_resources_changed = "function", on_prompts_changed = "function",
  oauth = "table",
  protocol = "string",
  elicit_modes = "table", on_elicit_complete = "function",
}

-- opts.elicit_modes ({"form"}, {"url"} or {"form", "url"}): the
-- elicitation modes on_elicit handles, as a set; misuse raises.
local function elicit_modes(opts)
  local list = opts.elicit_modes
  if opts.on_elicit_complete then
    local url = false
    for _, m in ipairs(list or {}) do url = url or m == "url" end
    if not url then error("favcrm.new: option 'on_elicit_complete' goes with elicit_modes naming \"url\"", 4) end
  end
  if list == nil then return nil end
  if not opts.on_elicit then
    error("favcrm.new: option 'elicit_modes' goes with 'on_elicit'", 4)
  end
  local set = {}
  for i, m in ipairs(list) do
    if m ~= "form" and m ~= "url" then
      error("favcrm.new: option 'elicit_modes' item " .. i .. " must be \"form\" or \"url\" (got "
        .. tostring(m) .. ")", 4)
    end
    set[m] = true
  end
  if next(set) == nil then error("favcrm.new: option 'elicit_modes' must name \"form\", \"url\" or both", 4) end
  return set
end

local function check_opts(opts)
  if opts == nil then return {} end
  if type(opts) ~= "table" then
    error("bad argument #1 to 'new' (table expected, got " .. type(opts) .. ")", 3)
  end
  for k, v in pairs(opts) do
    local want = OPTIONS[k]
    if not want then
      error("favcrm.new: unknown option '" .. tostring(k) .. "'", 3)
    end
    local ok = false
    for t in want:gmatch("[^|]+") do
      if type(v) == t then ok = true end
    end
    if not ok then
      error("favcrm.new: option '" .. k .. "' must be a " .. want:gsub("|", " or ")
        .. " (got " .. type(v) .. ")", 3)
    end
    if want == "number" and (v ~= v or v < 0 or v == math.huge or (v == 0 and k ~= "max_retry_wait")) then
      error("favcrm.new: option '" .. k .. "' must be a positive finite number (got " .. tostring(v) .. ")", 3)
    end
  end
  era.check_option(opts.protocol, 3)
  if opts.user_agent and opts.user_agent:find("[%c]") then
    -- a CR or LF would start a header of the caller's choosing
    error("favcrm.new: option 'user_agent' holds a line break or another control character", 3)
  end
  if opts.api_key ~= nil and type(opts.api_key) == "userdata" and not core.is_secret(opts.api_key) then
    error("favcrm.new: option 'api_key' must be a string or a favcrm.secret", 3)
  end
  if opts.url then
    local ok, why = urls.check(opts.url)
    if not ok then
      error("favcrm.new: option 'url' " .. why .. " (got '" .. urls.redact(opts.url) .. "')", 3)
    end
  end
  return opts
end

local function header_list(h)
  local list = {}
  for k, v in pairs(h or {}) do
    if type(k) == "number" then
      -- the list form, {"Name: value", ...}: the same checks as the map form
      local name = type(v) == "string" and v:match("^([^:]*):") or nil
      if not name or name:find("^%s*$") or name:find("[%c%s]") or v:find("[\r\n%z]") then
        error("favcrm.new: option 'headers' item " .. tostring(k)
          .. " must be one line \"Name: value\" (a name without spaces, no line break)", 4)
      end
      if name:lower() == "authorization" then
        error("favcrm.new: do not pass Authorization in 'headers'; use the 'api_key' option", 4)
      end
      list[#list + 1] = v
    else
      if type(k) ~= "string" or type(v) ~= "string" then
        error("favcrm.new: option 'headers' must map header names to strings", 4)
      end
      if k:lower() == "authorization" then
        error("favcrm.new: do not pass Authorization in 'headers'; use the 'api_key' option", 4)
      end
      if k:find("[\r\n:]") or v:find("[\r\n]") then
        error("favcrm.new: header '" .. k .. "' holds a line break or a colon", 4)
      end
      list[#list + 1] = k .. ": " .. v
    end
  end
  table.sort(list)
  return list
end

--- Client.new(opts) -> client, or nil, err when the configuration found
-- outside opts is unusable (a bad URL in the environment or the config
-- file: `config_error` naming the source). No I/O; the session starts with
-- the first call. opts.getenv replaces os.getenv; opts.labels names the
-- sources of option values (e.g. {url = "--url"}), see config.resolve.
---@param opts? table favcrm.new's options (url, api_key, timeout, headers, transport, command, on_*, ...)
---@return favcrm.Client|nil client
---@return favcrm.Error|nil err `config_error` (or `invalid_arguments`) naming the source
function Client.new(opts)
  opts = check_opts(opts)
  local modes = elicit_modes(opts)
  if opts.command then
    if opts.transport or opts.url then
      error("favcrm.new: option 'command' cannot go with 'url' or 'transport'", 3)
    end
    if type(opts.command[1]) ~= "string" then
      error("favcrm.new: option 'command' must be a list like {\"prog\", \"arg\"}", 3)
    end
  elseif opts.env or opts.on_stderr then
    error("favcrm.new: options 'env' and 'on_stderr' go with 'command'", 3)
  end
  if opts.oauth then
    -- OAuth (favcrm.oauth) replaces the API key: never both, and no key
    -- from the environment or the config file is sent
    if opts.api_key ~= nil then error("favcrm.new: options 'oauth' and 'api_key' are exclusive", 3) end
    if opts.command then error("favcrm.new: option 'oauth' is for HTTP servers; stdio has no OAuth", 3) end
    require("favcrm.oauth").check_options(opts.oauth, 3)
  end
  -- Inside nginx the libcurl and stdio transports would hold the worker
  -- (every request it serves) for the whole call: refused outside the
  -- phases that run before it serves (init, init_worker).
  local ngx_ = rawget(_G, "ngx")
  local phase = not opts.transport and type(ngx_) == "table" and type(ngx_.get_phase) == "function"
    and ngx_.get_phase()
  if phase and phase ~= "init" and phase ~= "init_worker" then
    error("favcrm.new: inside nginx (" .. tostring(phase) .. " phase) the default transport would block "
      .. "the worker for the whole call; pass transport = require(\"favcrm.resty\").new()", 3)
  end
  local resolved, rerr = config.resolve(opts, opts.getenv)
  if not resolved then return nil, rerr end
  local url, key, key_source = resolved.url, resolved.api_key, resolved.key_source
  if opts.oauth then key, key_source = nil, "oauth" end
  if type(key) == "string" then key = core.secret(key) end
  errors.protect(key)
  if type(opts.api_key) == "string" then
    -- keep no plain copy: the client's options hold the secret instead
    local copy = {}
    for k, v in pairs(opts) do copy[k] = v end
    copy.api_key = key
    opts = copy
  end
  -- short: libcurl formats every request header byte by byte (~90
  -- instructions a byte, on every request)
  local ua = opts.user_agent or ("favcrm-lua/" .. VERSION .. " " .. (jit and "luajit" or _VERSION:gsub("^Lua ", "lua")))
  local transport
  if opts.command then
    transport = require("favcrm.transport.stdio").new({ command = opts.command, env = opts.env,
      on_stderr = opts.on_stderr, max_event_bytes = opts.max_event_bytes,
      max_response_bytes = opts.max_response_bytes })
  end
  if opts.transport then
    -- session-level transports are used as they are; a user's object with
    -- request() is wrapped (favcrm.transport says what each must do)
    transport = require("favcrm.transport").wrap(opts.transport, opts)
  end
  transport = transport or core.http_new({
    user_agent = ua,
    ca_file = opts.ca_file,
    connect_timeout_ms = math.floor((opts.connect_timeout or 10) * 1000),
    max_response_bytes = opts.max_response_bytes and math.floor(opts.max_response_bytes),
    max_event_bytes = opts.max_event_bytes and math.floor(opts.max_event_bytes),
  })
  local self = setmetatable({
    url = url,
    url_source = resolved.url_source,
    config_error = resolved.config_error,
    clock = opts.clock or os.time,
    key_source = key_source,
    opts = opts,
    validate = opts.validate ~= false,
    tool_cache = nil,
    validators = {},
    handles = {},
    waiters = {},  -- waitable -> handles waiting on it
    ready = {},    -- handles to resume
    param_headers = setmetatable({}, { __mode = "k" }), -- tool -> its x-mcp-header list (modern)
    rejected_tools = {}, -- name -> why it was left out of tools() (modern)
  }, Client)
  -- a transport that keeps sessions per process (favcrm.resty) gives the
  -- state shared by clients of this endpoint and identity
  local ut = opts.transport
  local shared = type(ut) == "table" and type(ut.shared_state) == "function" and ut:shared_state({
    url = url, auth = key, headers = header_list(opts.headers), client_name = opts.client_name,
    protocol = opts.protocol or "auto",
    callbacks = (opts.on_elicit and "e" or "")
      .. (modes and modes.url and "u" or "") .. (opts.on_sample and "s" or "") .. (opts.on_roots and "r" or ""),
  }) or nil
  if shared then
    self.shared, self.validators = shared, shared.validators
    self.tool_cache = shared.tools
  end
  local oauth = opts.oauth and require("favcrm.oauth").new(opts.oauth, {
    url = url, client_name = opts.client_name,
    http = { user_agent = ua, ca_file = opts.ca_file,
      connect_timeout_ms = math.floor((opts.connect_timeout or 10) * 1000) },
  }) or nil
  self.oauth = oauth
  self.session = Session.new({
    shared = shared, oauth = oauth,
    transport = transport, url = url, auth = key, headers = header_list(opts.headers),
    timeout = resolved.timeout, max_total_timeout = opts.max_total_timeout,
    client_info = { name = opts.client_name or "favcrm-lua", version = VERSION },
    on_elicit = opts.on_elicit, on_sample = opts.on_sample, on_roots = opts.on_roots,
    elicit_modes = modes, on_elicit_complete = opts.on_elicit_complete,
    on_progress = opts.on_progress, on_log = opts.on_log, listen = opts.listen,
    protocol = opts.protocol,
    listen_for_changes = (opts.on_tools_changed or opts.on_resources_changed or opts.on_prompts_changed)
      and true or nil,
  })
  if oauth then oauth.session = self.session end
  self.session.on_list_changed = function(kind) self:_list_changed(kind) end
  self.session.after_pump = function() self:_resume_ready() end
  self.session.forget = function(w) self.waiters[w] = nil end
  return self
end

-- notifications/<kind>/list_changed (kind: "tools", "resources" or
-- "prompts"): the cached list is dropped (the next use fetches it again)
-- and opts.on_<kind>_changed is called; an error it raises is ignored.
function Client:_list_changed(kind)
  if kind == "tools" then
    self.tool_cache, self.validators = nil, {}
    if self.shared then self.shared.tools, self.shared.validators = nil, self.validators end
  else
    -- the resources/prompts API keeps its lists in <kind>_cache
    self[kind:sub(1, -2) .. "_cache"] = nil
  end
  local cb = self.opts["on_" .. kind .. "_changed"]
  if cb then pcall(cb, self) end
end

-- The options of one call that are times (seconds): each, when given, a
-- finite number > 0 (max_retry_wait may be 0). Misuse raises, naming it.
local CALL_TIMES = { "timeout", "max_total_timeout", "max_retry_wait" }
local function check_call_opts(opts, fname, level)
  if opts == nil then return end
  for _, k in ipairs(CALL_TIMES) do
    local v = opts[k]
    if v ~= nil and (type(v) ~= "number" or v ~= v or v < 0 or v == math.huge
        or (v == 0 and k ~= "max_retry_wait")) then
      error("bad argument #3 to '" .. fname .. "' (option '" .. k
        .. "' must be a positive finite number of seconds, got "
        .. (type(v) == "number" and tostring(v) or type(v)) .. ")", level + 1)
    end
  end
end
Client._check_call_opts = check_call_opts

local function check_self(self, fname)
  if getmetatable(self) ~= Client then
    error("bad self to '" .. fname .. "' (use client:" .. fname .. "(...), not client." .. fname .. "(...))", 3)
  end
  if self.closed then error("favcrm: the client is closed", 3) end
end

--- client:set_api_key(key): the key (string or favcrm.secret) for later calls.
---@param key string|favcrm.Secret the API key
---@param source? string where it came from, for auth_source() (default "option")
---@return nil
function Client:set_api_key(key, source)
  check_self(self, "set_api_key")
  if type(key) == "string" then key = core.secret(key)
  elseif not core.is_secret(key) then
    error("bad argument #1 to 'set_api_key' (string or favcrm.secret expected, got " .. type(key) .. ")", 2)
  end
  errors.protect(key)
  self.session.auth = key
  self.key_source = source or "option"
  if self.shared then
    -- the shared session and tools belong to the old identity: start afresh
    local s = self.session
    if s.session_id == self.shared.session_id then s.session_id, s.initialized, s.protocol_version = nil, false, nil end
    s.shared, self.shared, self.tool_cache, self.validators = nil, nil, nil, {}
  end
end

--- client:now() -> the client's clock (epoch seconds; opts.clock or os.time)
---@return number now epoch seconds
function Client:now()
  return self.clock()
end

--- client:server_time() -> the server's clock now (from the last HTTP Date
-- header, advanced by the local time since), or nil before any answer.
---@return number|nil time the server's epoch seconds, nil before any answer
function Client:server_time()
  local s = self.session
  if not s.last_date_header then return nil end
  local t = util.parse_http_date(s.last_date_header)
  if not t then return nil end
  return t + (os.time() - s.last_date_at)
end

--- client:endpoint() -> url, source: where calls go and where that came
-- from ("option", "--url", "FAVCRM_MCP_URL", "config file", "default", or
-- "command" for a stdio server, whose url is only a name: "stdio:PROG").
---@return string url where calls go
---@return string source where the URL came from
function Client:endpoint()
  return self.url, self.url_source
end

--- client:savable_url() -> the URL to write into the config file, or nil
-- when the client does not talk to a URL (a stdio server).
---@return string|nil url the URL to save, nil for a stdio server
function Client:savable_url()
  if self.url_source == "command" then return nil end
  return self.url
end

--- client:auth_source() -> where the API key came from ("option",
-- "FAVCRM_API_KEY", "config file", "login", "signup", ...), or nil.
---@return string|nil source where the key came from, nil without a key
function Client:auth_source()
  if self.session.auth == nil then return nil end
  return self.key_source
end

--- client:masked_api_key() -> the key as printed (`fav_mcp_...cdef`), or nil
---@return string|nil masked the masked key, nil without a key
function Client:masked_api_key()
  local k = self.session.auth
  return k ~= nil and tostring(k) or nil
end

--- client:config_problem() -> the error met reading the config file (it
-- was skipped), or nil.
---@return favcrm.Error|nil err the `config_error` met reading the config file
function Client:config_problem()
  return self.config_error
end

--- client:has_api_key() -> boolean
---@return boolean has true when a key is set
function Client:has_api_key()
  return self.session.auth ~= nil
end

--- client:tools() -> list of tool tables (all pages), cached for the session.
---@param opts? table `refresh = true` fetches the list again
---@return table[]|nil tools the tools (tables with name, description, inputSchema, ...)
---@return favcrm.Error|nil err
function Client:tools(opts)
  check_self(self, "tools")
  check_call_opts(opts, "tools", 2)
  return self:_tools(opts and opts.refresh, self.session:budget(opts and opts.timeout, opts and opts.max_total_timeout))
end

-- client:tools() within a call's budget (Session:budget).
function Client:_tools(refresh, budget)
  local c = self.tool_cache
  -- a modern server's ttlMs (> 0) bounds how long the list is fresh
  if c and c.expires and core.monotonic() >= c.expires then refresh = true end
  if c and not refresh then return c.list end
  if self.tools_loading then
    -- another flow is fetching the list: wait for it and share it
    local loading = self.tools_loading
    local _, werr = self.session:wait(loading, budget)
    if werr then return nil, werr end
    if self.tool_cache then return self.tool_cache.list end
    return nil, loading.err
  end
  local loading = { done = false }
  self.tools_loading = loading
  local list, err = self:_fetch_tools(budget)
  self.tools_loading = nil
  loading.err = err
  self.session:_signal(loading)
  return list, err
end

function Client:_fetch_tools(budget)
  local list, byname, cursor, pages = {}, {}, nil, 0
  local ttl
  repeat
    pages = pages + 1
    if pages > 1000 then
      return nil, errors.new("protocol", "tools/list never ended (over 1000 pages)")
    end
    local res, err = self.session:request("tools/list", cursor and { cursor = cursor } or nil, { budget = budget })
    if not res then return nil, err end
    if type(res.tools) ~= "table" then
      return nil, errors.new("protocol", "tools/list answered without a tools array")
    end
    local modern = self.session.era == "modern"
    for _, t in ipairs(res.tools) do
      if type(t) == "table" and type(t.name) == "string" then
        local keep = true
        if modern then
          -- 2026-07-28: a tool whose x-mcp-header annotations break the
          -- rules is left out (server/tools); the others stay usable
          local hdrs, why = era.tool_headers(t)
          if hdrs then
            self.param_headers[t] = hdrs[1] ~= nil and hdrs
          else
            keep = false
            self.rejected_tools[t.name] = why
            local log = self.opts.on_log
            if log then
              pcall(log, { level = "warning", logger = "favcrm",
                data = "left out the tool '" .. t.name .. "': " .. why })
            end
          end
        end
        if keep then
          list[#list + 1] = t
          byname[t.name] = t
        end
      end
    end
    if pages == 1 and type(res.ttlMs) == "number" then ttl = res.ttlMs end
    cursor = res.nextCursor
    if cursor == json.null then cursor = nil end
  until cursor == nil
  self.tool_cache = { list = list, byname = byname,
    expires = ttl and ttl > 0 and core.monotonic() + ttl / 1000 or nil }
  if self.shared then self.shared.tools = self.tool_cache end
  return list
end

--- client:cached_tool(name) -> the tool table from the cached tools/list,
-- or nil (no I/O: nil before the list was fetched or for an unknown name).
---@param name string the tool's name
---@return table|nil tool the tool table, nil when not cached
function Client:cached_tool(name)
  return self.tool_cache and self.tool_cache.byname[name] or nil
end

--- client:describe(name) -> the tool table or nil, err (`unknown_tool`).
---@param name string the tool's name
---@return table|nil tool the tool table
---@return favcrm.Error|nil err `unknown_tool` (with `suggestions`), or the error of tools/list
function Client:describe(name)
  check_self(self, "describe")
  if type(name) ~= "string" then
    error("bad argument #1 to 'describe' (tool name expected, got " .. type(name) .. ")", 2)
  end
  return self:_describe(name, self.session:budget())
end

function Client:_describe(name, budget)
  local stale = self.tool_cache ~= nil
  local list, err = self:_tools(false, budget)
  if not list then return nil, err end
  local t = self.tool_cache.byname[name]
  if t then return t end
  if stale then
    -- listed before this call: the tool may have appeared since (a server
    -- without list_changed, or its notification not read yet): refetch once
    list, err = self:_tools(true, budget)
    if not list then return nil, err end
    t = self.tool_cache.byname[name]
    if t then return t end
  end
  -- the names nearest it (favcrm.suggest loads the first time a name is unknown)
  local near = require("favcrm.suggest").nearest(name, list)
  return nil, errors.new("unknown_tool", "the server has no tool named '" .. name .. "'"
    .. (#near > 0 and ("; did you mean " .. table.concat(near, ", ") .. "?") or ""),
    { tool = name, suggestions = near })
end

local function payload_of(result)
  local sc = result.structuredContent
  if type(sc) == "table" then
    if sc.data ~= nil then return sc.data end
    return sc
  end
  local c = type(result.content) == "table" and result.content[1]
  if type(c) == "table" and c.type == "text" and type(c.text) == "string" then
    local v = json.decode_plain(c.text)
    if v ~= nil then return v end
    return c.text
  end
  return nil
end
Client.payload_of = payload_of

local TOOL_CODES = {
  expired_code = true, wrong_code = true, existing_account = true, rate_limited = true,
  unauthorized = true, plan_required = true, invalid_arguments = true,
  confirmation_required = true, not_found = true,
}

-- Turns an isError result into an error object.
local function tool_failure(name, result)
  local text
  local c = type(result.content) == "table" and result.content[1]
  if type(c) == "table" and type(c.text) == "string" then text = c.text end
  local sc = type(result.structuredContent) == "table" and result.structuredContent or {}
  local meta = type(result._meta) == "table" and result._meta or {}
  -- FavCRM's error details: structuredContent.error, or _meta["favcrm/error"]
  -- for tools whose structuredContent is reserved for their outputSchema
  local e = (type(sc.error) == "table" and sc.error)
    or (type(meta["favcrm/error"]) == "table" and meta["favcrm/error"]) or {}
  local code = TOOL_CODES[e.code] and e.code or "tool_error"
  local fields = { tool = name, server_code = e.code, result = result }
  for k, v in pairs(e) do
    if k ~= "code" and k ~= "message" then fields[k] = v end
  end
  -- lua-cjson decodes every number as a float on 5.3+: counts are integers
  local function int(v)
    v = tonumber(v)
    return v and math.floor(v)
  end
  if e.retryAfter then fields.retry_after = int(e.retryAfter) end
  if e.upgradeAction then fields.upgrade_action = e.upgradeAction end
  if e.attemptsLeft then fields.attempts_left = int(e.attemptsLeft) end
  return errors.new(code, (type(e.message) == "string" and e.message) or text
    or ("the tool " .. name .. " failed"), fields)
end

-- The compiled validator of a tool's inputSchema or outputSchema, cached
-- for the session (false: none, or it did not compile).
function Client:_validator(tool, which)
  local cache = self.validators[which]
  local known = cache and cache[tool]
  if known ~= nil then return known or nil end
  if not cache then
    cache = setmetatable({}, { __mode = "k" })
    self.validators[which] = cache
  end
  local v = cache[tool]
  if v == nil then
    v = false
    local ok, schema = pcall(require, "favcrm.schema")
    local s = tool[which]
    if ok and type(s) == "table" then
      local compiled = schema.compile(s)
      if compiled then v = compiled end
    end
    cache[tool] = v
  end
  return v or nil
end

-- 2026-07-28: the arguments marked x-mcp-header go out as Mcp-Param-{Name}
-- (nil: none, or a legacy session). self.param_headers[tool] is the tool's
-- list, or false for a tool that has none (a call then need not come here).
local function param_headers(self, session, tool, args)
  if session.era ~= "modern" then return nil end
  local h = self.param_headers[tool]
  if h == nil then
    h = era.tool_headers(tool) or false -- a list shared across clients (favcrm.resty)
    if h and h[1] == nil then h = false end
    self.param_headers[tool] = h
  end
  if not h then return nil end
  return era.param_headers(h, args)
end

-- What a call needs of a tool, worked out once per tool table (kept beside
-- the validators, and dropped with them): its validators, whether it is
-- destructive or read-only, and whether its inputSchema took no arguments.
function Client:_plan(tool)
  local plans = self.validators.plans
  local p = plans and plans[tool]
  if p then return p end
  if not plans then
    plans = setmetatable({}, { __mode = "k" })
    self.validators.plans = plans
  end
  local ann = type(tool.annotations) == "table" and tool.annotations or NO_OPTS
  -- vin, vout: nil until first needed (then the validator, or false)
  p = { vin = nil, vout = nil, vout_check = false, destructive = ann.destructiveHint == true,
    read_only = ann.readOnlyHint == true, empty_ok = false }
  plans[tool] = p
  return p
end

-- The options of a validation within the call's budget: one table per
-- client, refilled (the validator reads it and keeps nothing).
function Client:_validate_opts(budget)
  local o = self._vopts
  if not o then
    o = {}
    self._vopts = o
  end
  local d, h = budget.deadline, budget.hard
  o.deadline = d < h and d or h
  return o
end

local function first_error(errs)
  local e = errs and errs[1] or {}
  return e
end

--- client:call(name, args, opts) -> payload, result | nil, err
-- Validates args against the tool's inputSchema, asks before a destructive
-- tool, retries read-only tools after a 5xx or a dropped connection.
---@param name string the tool's name
---@param args? table the tool's arguments (default {})
---@param opts? table confirm, on_confirm, validate, timeout, max_total_timeout, max_retry_wait, on_progress, task
---@return any payload structuredContent.data, else structuredContent, else the text parsed as JSON, else the text
---@return table|favcrm.Error result the whole tools/call result; on failure the error
function Client:call(name, args, opts)
  if getmetatable(self) ~= Client or self.closed then check_self(self, "call") end
  if type(name) ~= "string" or name == "" then
    error("bad argument #1 to 'call' (tool name expected, got " .. type(name) .. ")", 2)
  end
  if args ~= nil and type(args) ~= "table" then
    error("bad argument #2 to 'call' (table of arguments expected, got " .. type(args) .. ")", 2)
  end
  if opts ~= nil then
    if type(opts) ~= "table" then
      error("bad argument #3 to 'call' (table of options expected, got " .. type(opts) .. ")", 2)
    end
    check_call_opts(opts, "call", 2)
    if opts.task ~= nil then tasks.check(opts.task, 3) end
  else
    opts = NO_OPTS
  end
  args = args or NO_ARGS
  -- the call's one deadline: everything below spends from it
  local session = self.session
  local budget = session:budget(opts.timeout, opts.max_total_timeout)
  -- a cached list with no ttl answers at once (else _describe decides)
  local c = self.tool_cache
  local tool = c and not c.expires and c.byname[name]
  if not tool then
    local err
    tool, err = self:_describe(name, budget)
    if not tool then return nil, err end
  end
  local plans = self.validators.plans
  local plan = plans and plans[tool] or self:_plan(tool)
  if plan.destructive and opts.confirm ~= true then
    local confirm = opts.on_confirm or self.opts.on_confirm
    if not (confirm and confirm(tool, args ~= NO_ARGS and args or {}) == true) then
      local ann = tool.annotations
      return nil, errors.new("confirmation_required", name .. " is destructive (" .. (ann.title or name)
        .. "); pass opts.confirm = true or an on_confirm callback that returns true", { tool = name })
    end
  end
  local validate = self.validate and opts.validate ~= false
  local v = validate and plan.vin
  if v == nil then
    v = self:_validator(tool, "inputSchema") or false
    plan.vin = v
  end
  -- no arguments are checked once per validator: the shared empty table
  -- never changes, nor does the schema
  if v and (args ~= NO_ARGS or not plan.empty_ok) then
    -- check says yes or no and builds nothing; the full report only on no
    if not v:check(args, self:_validate_opts(budget)) then
      local ok, errs = v:validate(args, self:_validate_opts(budget))
      if not ok then
        local e = first_error(errs)
        if e.keyword == "timeout" then
          return nil, errors.new("timeout", name .. ": checking the arguments did not finish within the call's "
            .. "timeout of " .. budget.timeout .. " s", { tool = name })
        end
        local path = e.path or ""
        return nil, errors.new("invalid_arguments",
          name .. ": " .. (path ~= "" and path or "/") .. ": " .. tostring(e.reason or e.message),
          { tool = name, path = path, keyword = e.keyword, errors = errs })
      end
    elseif args == NO_ARGS then
      plan.empty_ok = true
    end
  end
  -- empty tables the inputSchema calls arrays go out as []
  local marked = args
  if args ~= NO_ARGS and next(args) ~= nil then marked = json.mark_arrays(args, tool.inputSchema) end
  if not session.initialized then
    local ok_init, ierr = session:initialize(budget)
    if not ok_init then return nil, ierr end
  end
  local on_progress, ph = opts.on_progress, nil
  if session.era == "modern" and self.param_headers[tool] ~= false then
    ph = param_headers(self, session, tool, args)
  end
  -- a tool that runs as a task (favcrm.tasks): created, polled, fetched
  -- (only when the server takes tasks at all)
  local caps = session.server_capabilities
  local as_task = type(caps) == "table" and caps.tasks ~= nil and tasks.wanted(session, tool, opts)
  -- Read-only tools are retried (at most twice, with backoff) after a 5xx
  -- or a dropped connection; writes never are. A 429 is waited out only when
  -- its Retry-After fits opts.max_retry_wait (default 0: reported at once).
  local read_only = plan.read_only
  local result, rerr
  if as_task then
    result, rerr = tasks.call(session, { name = name, arguments = marked }, budget, opts)
  else
    result, rerr = session:call_tool(name, marked, budget, on_progress, read_only, ph)
  end
  if not result then
    local tries, waited, refetched = 0, false, false
    while true do
      local transient = rerr.code == "network"
        or (rerr.code == "http" and (rerr.status == 500 or rerr.status == 502 or rerr.status == 503))
      -- a wait that would outlast the deadline is not started: the error stands
      if transient and read_only and tries < 2 and 0.25 * 2 ^ tries < session.left(budget) then
        tries = tries + 1
        session:sleep(0.25 * 2 ^ (tries - 1))
      elseif rerr.header_mismatch and not refetched then
        -- HeaderMismatch: the tool's schema may have changed; list the tools
        -- again and send the call once more (streamable-http: Client Behavior)
        refetched = true
        local fresh = self:_tools(true, budget)
        tool = fresh and self.tool_cache.byname[name]
        if not tool then break end
        plan = self:_plan(tool)
        ph = param_headers(self, session, tool, args)
      elseif rerr.code == "rate_limited" and not waited and rerr.retry_after
        and rerr.retry_after <= (opts.max_retry_wait or self.opts.max_retry_wait or 0)
        and rerr.retry_after < session.left(budget) then
        waited = true
        session:sleep(rerr.retry_after)
      else
        break
      end
      if as_task then
        result, rerr = tasks.call(session, { name = name, arguments = marked }, budget, opts)
      else
        result, rerr = session:call_tool(name, marked, budget, on_progress, read_only, ph)
      end
      if result then break end
    end
    if tries > 0 and rerr then rerr.retries = tries end
    if not result then
      if rerr.code == "invalid_arguments" and rerr.rpc_code == -32602 and tostring(rerr.message):find("not found") then
        return nil, errors.new("unknown_tool", "the server has no tool named '" .. name .. "'", { tool = name })
      end
      return nil, rerr
    end
  end
  if result.isError == true then return nil, tool_failure(name, result) end
  local sc = result.structuredContent
  if type(sc) == "table" then
    v = validate and plan.vout
    if v == nil then
      v = self:_validator(tool, "outputSchema") or false
      plan.vout, plan.vout_check = v, v and v.check
    end
    if v and not plan.vout_check(v, sc, self:_validate_opts(budget)) then
      local ok, errs = v:validate(sc, self:_validate_opts(budget))
      if not ok then
        local e = first_error(errs)
        if e.keyword == "timeout" then
          return nil, errors.new("timeout", name .. ": checking the result against the tool's outputSchema did not "
            .. "finish within the call's timeout of " .. budget.timeout .. " s", { tool = name })
        end
        return nil, errors.new("protocol", name .. ": the result does not match the tool's outputSchema at "
          .. (e.path ~= "" and e.path or "/") .. ": " .. tostring(e.reason or e.message),
          { tool = name, path = e.path })
      end
    end
    if sc.data ~= nil then return sc.data, result end
    return sc, result
  end
  return payload_of(result), result
end

-- Many calls at once and event loops (call_async, async, step, pending,
-- call_many, watch) live in favcrm.scheduler, loaded the first time one of
-- them is called (favcrm.lazy); a client that only calls tools never
-- parses it. After each pump the session resumes the async handles whose
-- waits are over (client:_resume_ready, below): none, until there are some.
Client._check_self = check_self
lazy(Client, "favcrm.scheduler", { "_resume", "call_async", "async", "step", "pending", "call_many", "watch" })

function Client:_resume_ready()
  local s = self.session
  while true do
    local sig = s.signaled
    if #sig > 0 then
      -- two lists take turns (no new table per pump)
      s.signaled = self._sig_spare or {}
      self._sig_spare = nil
      for _, w in ipairs(sig) do
        local list = self.waiters[w]
        if list then
          self.waiters[w] = nil
          for _, h in ipairs(list) do self.ready[#self.ready + 1] = h end
        end
      end
      for i = #sig, 1, -1 do sig[i] = nil end
      self._sig_spare = sig
    end
    if #self.ready == 0 then return end
    local ready = self.ready
    self.ready = {}
    for _, h in ipairs(ready) do
      if h.waiting and (h.waiting.done or (h.waiting2 and h.waiting2.done)) then
        h.waiting, h.waiting2 = nil, nil
        self:_resume(h)
      end
    end
  end
end

-- Resources, prompts, completion, the log level and ping (favcrm.protocol):
-- installed on Client when one of them is first called (a client that only
-- calls tools never loads it), by favcrm.lazy's stand-ins (they tail-call
-- the real method: no frame of their own, so the errors it raises still
-- point at the caller).
lazy(Client, "favcrm.protocol", { "resources", "resource_templates", "read", "subscribe", "unsubscribe",
  "prompts", "prompt", "complete", "set_log_level", "ping" })

-- favcrm.registration and favcrm.doctor load on first use (a client that
-- only calls tools never needs them: less memory)

--- client:request(fields) -> request or nil, err (see favcrm.registration)
---@param fields table email, organisationName, ... (see favcrm.registration)
---@return table|nil request the pending signup request
---@return favcrm.Error|nil err
function Client:request(fields)
  check_self(self, "request")
  return require("favcrm.registration").request(self, fields)
end

--- client:verify(request_or_id, code [, opts]) -> workspace or nil, err
---@param req table|string the request from request(), or its id
---@param code string the e-mailed code ("123 456" works too)
---@param opts? table `save = true` writes the key to the config file
---@return table|nil workspace the new workspace (its key in a favcrm.Secret)
---@return favcrm.Error|nil err
function Client:verify(req, code, opts)
  check_self(self, "verify")
  return require("favcrm.registration").verify(self, req, code, opts)
end

--- client:doctor() -> report (never raises)
---@return table report url, reachable, latency_ms, authenticated, ok, problems, ...
function Client:doctor()
  check_self(self, "doctor")
  return require("favcrm.doctor").doctor(self)
end

--- client:close(): ends the session (DELETE) and frees everything. Idempotent.
---@return nil
function Client:close()
  if getmetatable(self) ~= Client then error("bad self to 'close'", 2) end
  if self.closed then return end
  self.closed = true
  self.session:close()
  if self.oauth then self.oauth:close() end
end
Client.__close = Client.close
Client.__gc = function(self)
  -- no network from a finaliser: just free the transport
  if not self.closed and self.session then
    self.closed = true
    pcall(self.session.transport.close, self.session.transport)
  end
end

return Client
