--- favcrm.mcp_serve: `favcrm mcp serve`, a stdio MCP server for clients that
-- only spawn processes (the seed's mcp-config.json). Newline-delimited
-- JSON-RPC 2.0 on stdin/stdout; logs go to stderr only.
--
--   initialize   protocol version negotiation (the client's when we speak
--                it, else our newest)
--   ping         {}
--   tools/list   the remote server's tools (through the client, so with the
--                saved or environment key) plus the local `favcrm_doctor`
--   tools/call   proxied; a remote isError result is passed through as it
--                came; local failures (network, refused key, bad arguments)
--                become isError results; an unknown tool is -32602.
--                Destructive tools are not gated here: their annotations are
--                passed on and the MCP host asks its user.
--   anything else: -32601; EOF: exit 0.
--
-- A bridge, not just a proxy of tools/call:
--   keys         a verify that issues a key (register_organisation_verify,
--                accept_team_invite_verify) makes the bridge take the key up
--                at once (client:set_api_key) for every later call, save it
--                to the config file (config.save: 0600, atomic) unless
--                opts.save == false (--no-save), and hand the host the
--                result with the key masked (fav_mcp_...cdef) unless
--                opts.show_key (--show-key). Their descriptions say so.
--   progress     a tools/call with params._meta.progressToken gets the
--                upstream's notifications/progress under the host's token.
--   logging      the upstream's notifications/message go to the host
--                (capability `logging`; logging/setLevel filters them here).
--   server requests  elicitation/create, sampling/createMessage and
--                roots/list from the upstream are sent on to the host when
--                the host declared the capability at initialize (the bridge
--                declares it upstream only then); the bridge waits for the
--                host's answer, keeping what else the host sends meanwhile
--                for later.
--   cancellation notifications/cancelled for a request not started yet, or
--                for the call that waits on a forwarded server request,
--                drops that request's answer (and answers the forwarded
--                request `cancel`). The client API has no way to abort a
--                call already on the wire, so such a call runs to its end
--                upstream; the host simply gets no answer.
--   outages      every tools/call and favcrm_doctor goes through the client,
--                which opens a new session when the old one is gone: a
--                restarted upstream needs no restart of the bridge.
--
-- JSON goes through favcrm.json, which keeps empty arrays as `[]` (lua-cjson
-- 2.1.0 turns every empty table into `{}`) by following a *guide*: the JSON
-- Schema of the value, or the same value decoded again with its empty arrays
-- marked (json.decode).
local json = require("favcrm.json")
local errors = require("favcrm.errors")
local config = require("favcrm.config")
local core = require("favcrm.core")

local M = {}

M.PROTOCOL_VERSIONS = { "2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05" }
M.LATEST = M.PROTOCOL_VERSIONS[1]
M.DOCTOR_FIELDS = { "mcpEndpointStatus", "authStatus", "toolCount", "organisationContext", "planStatus",
  "whatsappStatus" }

local null = json.null

--- The tools whose success hands out a new API key.
M.KEY_TOOLS = { register_organisation_verify = "signup", accept_team_invite_verify = "team invite" }

--- What the bridge adds to those tools' descriptions.
---@param save boolean whether the key is saved
---@param show boolean whether the whole key is shown
---@return string note
function M.key_note(save, show)
  return " Through `favcrm mcp serve`: on success the bridge takes the new API key up at once for every later "
    .. "call (no restart, no config edit, no Authorization header to set)"
    .. (save and ", saves it to the FavCRM config file (mode 0600)" or " (it is not saved: --no-save)")
    .. (show and ", and returns it whole (--show-key)." or ", and returns it masked (fav_mcp_...cdef), so the "
      .. "key never enters this conversation: you need not handle it.")
end

local LOG_LEVELS = { debug = 0, info = 1, notice = 2, warning = 3, error = 4, critical = 5, alert = 6,
  emergency = 7 }

-- ------------------------------------------------------------------------
-- JSON (favcrm.json owns it; these names stay for existing callers)
-- ------------------------------------------------------------------------

M.ARRAY = json.ARRAY
M.decode = json.decode
M.encode = json.encode
M.guide = json.guide
M.result_guide = json.guide.result
local ARRAY = json.ARRAY
local is_sequence = json.is_sequence
local G = json.guide
local TOOLS_LIST = G.tools_list

-- ------------------------------------------------------------------------
-- favcrm_doctor
-- ------------------------------------------------------------------------

M.DOCTOR_TOOL = {
  name = "favcrm_doctor",
  title = "FavCRM doctor",
  description = "Checks the FavCRM connection this server uses: whether the MCP endpoint answers "
    .. "(mcpEndpointStatus), whether an API key is configured and accepted (authStatus: configured, missing, "
    .. "invalid, or unverified when the endpoint could not be reached), how many tools it offers (toolCount), "
    .. "the organisation the key belongs to (organisationContext), the plan (planStatus) and the WhatsApp "
    .. "connection (whatsappStatus). Read-only; takes no arguments.",
  inputSchema = { type = "object", properties = {}, additionalProperties = false },
  outputSchema = {
    type = "object",
    required = M.DOCTOR_FIELDS,
    properties = {
      mcpEndpointStatus = { type = "string", enum = { "active", "unreachable" } },
      authStatus = { type = "string", enum = { "configured", "missing", "invalid", "unverified" } },
      toolCount = { type = "integer", minimum = 0 },
      organisationContext = {
        type = { "object", "null" },
        properties = {
          organisationId = { type = "string" }, companyId = { type = "string" }, name = { type = "string" },
          userId = { type = "string" }, role = { type = "string" },
        },
      },
      planStatus = { type = "string" },
      whatsappStatus = { type = "string" },
    },
  },
  annotations = { title = "FavCRM doctor", readOnlyHint = true, destructiveHint = false, idempotentHint = true,
    openWorldHint = false },
}

local function str(v)
  return type(v) == "string" and v ~= "" and v or nil
end

--- M.doctor_fields(report [, org_id]) -> the six fields the seed's
-- provisioner reads, from a client:doctor() report.
---@param r table a client:doctor() report
---@param org_id? string the organisation's id
---@return table fields
function M.doctor_fields(r, org_id)
  local out = {
    mcpEndpointStatus = r.reachable and "active" or "unreachable",
    toolCount = r.tool_count or 0,
    organisationContext = null,
    planStatus = "unavailable",
    whatsappStatus = "unavailable",
  }
  if r.authenticated then
    out.authStatus = "configured"
  elseif not r.auth_source then
    out.authStatus = "missing"
  elseif type(r.current_user_error) == "table" and r.current_user_error.code == "unauthorized" then
    out.authStatus = "invalid"
  else
    out.authStatus = "unverified"
  end
  local u = r.current_user
  if type(u) == "table" and type(u.companies) == "table" then
    local pick
    for _, c in ipairs(u.companies) do
      if type(c) == "table" then
        if org_id and (c.organisationId == org_id or c.companyId == org_id) then pick = c; break end
        if not pick and c.current == true then pick = c end
      end
    end
    pick = pick or (type(u.companies[1]) == "table" and u.companies[1]) or nil
    if pick then
      out.organisationContext = {
        organisationId = str(pick.organisationId), companyId = str(pick.companyId), name = str(pick.name),
        userId = str(u.userId), role = str(pick.role) or str(u.role),
      }
    end
  end
  if type(r.plan) == "table" and str(r.plan.plan) then
    out.planStatus = r.plan.plan .. ((str(r.plan.status) and r.plan.status ~= "active")
      and (" (" .. r.plan.status .. ")") or "")
  end
  local wa = r.whatsapp
  if type(wa) == "table" then
    out.whatsappStatus = str(wa.status) or (wa.connected == true and "connected") or "not_connected"
  end
  return out
end

-- ------------------------------------------------------------------------
-- The server
-- ------------------------------------------------------------------------

local Server = {}
Server.__index = Server

--- M.new(client [, opts]) -> server. opts: log(text), getenv(name), version.
---@param client favcrm.Client the client the tools run on
---@param opts? table log, getenv, version
---@return table server
function M.new(client, opts)
  opts = opts or {}
  local self = setmetatable({
    client = client,
    log = opts.log or function() end,
    getenv = opts.getenv or os.getenv,
    version = opts.version or "0",
    save = opts.save ~= false,
    show_key = opts.show_key == true,
    config_path = opts.config_path,
    send = opts.send or function() end,       -- a message to the host
    read_line = opts.read_line or function() return nil end, -- the host's next line
    backlog = {},   -- host lines read while waiting for an answer
    cancelled = {}, -- host request ids cancelled
    next_id = 0,
    log_level = nil,
  }, Server)
  -- the upstream's log lines go to the host (when it has not set a higher level)
  client.session.cb.log = function(p) self:forward_log(p) end
  return self
end

function Server:forward_log(p)
  if type(p) ~= "table" then return end
  local lvl = LOG_LEVELS[p.level] or 1
  if self.log_level and lvl < (LOG_LEVELS[self.log_level] or 0) then return end
  self:notify("notifications/message", { level = p.level or "info", logger = p.logger, data = p.data })
end

function Server:notify(method, params)
  self.send({ jsonrpc = "2.0", method = method, params = params })
end

--- server:next_line() -> the host's next line: kept ones first.
function Server:next_line()
  local l = table.remove(self.backlog, 1)
  if l ~= nil then return l end
  return self.read_line()
end

-- Sends a request to the host and waits for its answer; what else comes
-- meanwhile is kept for later (a cancellation of the waiting call is noted).
-- Returns result, or nil and the error object (or "eof"/"cancelled").
function Server:ask_host(method, params)
  self.next_id = self.next_id + 1
  local id = "favcrm-bridge-" .. self.next_id
  self.send({ jsonrpc = "2.0", id = id, method = method, params = params })
  while true do
    local line = self.read_line()
    if line == nil then return nil, "eof" end
    local msg = M.decode((line:gsub("\r$", "")))
    if type(msg) == "table" and msg.id == id and msg.method == nil then
      if msg.error ~= nil then return nil, msg.error end
      return msg.result
    end
    if type(msg) == "table" and msg.method == "notifications/cancelled" and type(msg.params) == "table" then
      self.cancelled[msg.params.requestId] = true
      if self.current_id ~= nil and msg.params.requestId == self.current_id then return nil, "cancelled" end
    else
      self.backlog[#self.backlog + 1] = line
    end
  end
end

-- The handlers the upstream session gets for the capabilities the host has.
function Server:wire_capabilities(caps)
  if type(caps) ~= "table" then caps = {} end
  local cb = self.client.session.cb
  local function forward(method, fallback)
    return function(params)
      local res, err = self:ask_host(method, params)
      if res ~= nil then return res end
      self.log(method .. ": the host gave no answer (" .. (type(err) == "table" and tostring(err.message)
        or tostring(err)) .. ")")
      return fallback and fallback(err) or nil
    end
  end
  -- the upstream session is opened lazily, after this: its initialize
  -- declares exactly these
  cb.elicit = caps.elicitation ~= nil and forward("elicitation/create", function(err)
    return { action = err == "cancelled" and "cancel" or "decline" }
  end) or nil
  cb.sample = caps.sampling ~= nil and forward("sampling/createMessage") or nil
  cb.roots = caps.roots ~= nil and forward("roots/list") or nil
end

local RPC_ERROR = G.struct({ data = G.struct({ suggestions = G.list(nil) }) })

local function rpc_error(id, code, message, data)
  return { jsonrpc = "2.0", id = id, error = { code = code, message = message, data = data } }
end

local function error_result(err)
  local msg = tostring(err.message or err.code)
  if err.hint then msg = msg .. " (" .. tostring(err.hint) .. ")" end
  local e = { code = err.code, message = err.message, hint = err.hint, retryAfter = err.retry_after,
    field = err.field, path = err.path, suggestions = err.suggestions, upgradeAction = err.upgrade_action }
  return { isError = true, content = { { type = "text", text = msg } }, structuredContent = { error = e } }
end

--- M.error_for_schema(tool, result) -> result: an isError result of a tool
-- with an outputSchema loses its structuredContent (MCP clients such as the
-- official SDK validate any structuredContent against the outputSchema, and
-- an error payload never matches); the payload is kept as a second text item.
---@param tool table the tool (its outputSchema)
---@param result table an isError tools/call result
---@return table result
function M.error_for_schema(tool, result)
  if type(tool) ~= "table" or type(tool.outputSchema) ~= "table" or result.structuredContent == nil then
    return result
  end
  local content = {}
  for i, c in ipairs(type(result.content) == "table" and result.content or {}) do content[i] = c end
  local ok, text = pcall(M.encode, result.structuredContent)
  if ok then content[#content + 1] = { type = "text", text = text } end
  local out = {}
  for k, v in pairs(result) do out[k] = v end
  out.structuredContent = nil
  out.content = content
  return out
end

function Server:initialize(params)
  local asked = type(params) == "table" and params.protocolVersion or nil
  local v = M.LATEST
  for _, p in ipairs(M.PROTOCOL_VERSIONS) do
    if p == asked then v = p end
  end
  local ci = type(params) == "table" and type(params.clientInfo) == "table" and params.clientInfo or {}
  self.log("initialize from " .. tostring(ci.name or "a client") .. " (protocol " .. tostring(asked)
    .. ", answered " .. v .. ")")
  if not self.client.session.initialized then
    self:wire_capabilities(type(params) == "table" and params.capabilities or nil)
  end
  return {
    protocolVersion = v,
    capabilities = { tools = { listChanged = false }, logging = {} },
    serverInfo = { name = "favcrm", title = "FavCRM (favcrm-lua)", version = self.version },
    instructions = "FavCRM's CRM tools, proxied from " .. tostring((self.client:endpoint())) .. ". Call favcrm_doctor "
      .. "to check the connection. To sign a new business up, call register_organisation_request, then "
      .. "register_organisation_verify with the 6-digit code the owner receives by e-mail; the bridge then uses the "
      .. "new key itself (you never handle it).",
  }
end

function Server:list_tools()
  local remote, err = self.client:tools({ refresh = true })
  local tools = { M.DOCTOR_TOOL }
  if remote then
    for _, t in ipairs(remote) do
      if t.name ~= M.DOCTOR_TOOL.name then
        if M.KEY_TOOLS[t.name] then
          local c = {}
          for k, val in pairs(t) do c[k] = val end
          c.description = tostring(t.description or "") .. M.key_note(self.save, self.show_key)
          t = c
        end
        tools[#tools + 1] = t
      end
    end
  else
    self.log("tools/list: the FavCRM server could not be reached (" .. tostring(err and err.message)
      .. "); listing favcrm_doctor only")
  end
  return { tools = tools }
end

function Server:doctor()
  local report = self.client:doctor()
  local fields = M.doctor_fields(report, str(self.getenv("FAVCRM_ORG_ID")))
  for _, p in ipairs(report.problems or {}) do
    self.log("favcrm_doctor: " .. tostring(p.check) .. ": " .. tostring(p.message))
  end
  return {
    content = { { type = "text", text = M.encode(fields, G.schema(M.DOCTOR_TOOL.outputSchema)) } },
    structuredContent = fields,
  }
end

-- Returns the result table and its guide, or nil and a JSON-RPC error.
function Server:call_tool(params)
  if type(params) ~= "table" or type(params.name) ~= "string" or params.name == "" then
    return nil, { -32602, "tools/call needs params.name (a tool name)" }
  end
  local name, args = params.name, params.arguments
  if args == nil or args == null then args = {} end
  if type(args) ~= "table" or getmetatable(args) == ARRAY or is_sequence(args) then
    return nil, { -32602, "tools/call: arguments must be an object" }
  end
  if name == M.DOCTOR_TOOL.name then
    local res = self:doctor()
    return res, M.result_guide(M.DOCTOR_TOOL, res)
  end
  local meta = type(params._meta) == "table" and params._meta or nil
  local token = meta and meta.progressToken
  local on_progress
  if type(token) == "string" or type(token) == "number" then
    on_progress = function(p)
      self:notify("notifications/progress", { progressToken = token, progress = p.progress, total = p.total,
        message = p.message })
    end
  end
  local data, res = self.client:call(name, args, { confirm = true, on_progress = on_progress })
  local tool = self.client:cached_tool(name)
  if data ~= nil and M.KEY_TOOLS[name] then res = self:take_key(name, res) end
  if data == nil and errors.is(res) then
    local err = res
    if err.code == "unknown_tool" then
      local near = type(err.suggestions) == "table" and #err.suggestions > 0 and err.suggestions or nil
      return nil, { -32602, err.message, { tool = name, suggestions = near } }
    end
    local result
    if type(err.result) == "table" and err.result.isError == true then
      result = err.result
    else
      self.log("tools/call " .. name .. ": " .. tostring(err.code) .. ": " .. tostring(err.message))
      result = error_result(err)
    end
    return M.error_for_schema(tool, result), M.result_guide(nil, result)
  end
  return res, M.result_guide(tool, res)
end

-- Replaces every copy of `whole` inside the strings of v (deeply) with `by`.
local function replace_all(v, whole, by)
  if type(v) == "string" then
    local out, i = {}, 1
    while true do
      local a, b = v:find(whole, i, true)
      if not a then break end
      out[#out + 1] = v:sub(i, a - 1)
      out[#out + 1] = by
      i = b + 1
    end
    if i == 1 then return v end
    out[#out + 1] = v:sub(i)
    return table.concat(out)
  elseif type(v) == "table" then
    local c = setmetatable({}, getmetatable(v))
    for k, x in pairs(v) do c[k] = replace_all(x, whole, by) end
    return c
  end
  return v
end

--- server:take_key(name, result) -> result: a successful verify's key is
-- taken up, saved (unless save = false) and masked (unless show_key).
---@param name string the tool that succeeded
---@param res table its tools/call result
---@return table result what the host gets
function Server:take_key(name, res)
  local sc = type(res) == "table" and res.structuredContent or nil
  local d = type(sc) == "table" and (type(sc.data) == "table" and sc.data or sc) or nil
  local key = d and d.apiKey
  if type(key) ~= "string" and type(res.content) == "table" and type(res.content[1]) == "table" then
    local parsed = M.decode(tostring(res.content[1].text or ""))
    if type(parsed) == "table" then
      local pd = type(parsed.data) == "table" and parsed.data or parsed
      key = pd.apiKey
    end
  end
  if type(key) ~= "string" or key:sub(1, 8) ~= "fav_mcp_" or #key < 16 then
    self.log(name .. " succeeded without an API key (fav_mcp_...) in its result")
    return res
  end
  local secret = core.secret(key)
  errors.protect(secret)
  self.client:set_api_key(secret, M.KEY_TOOLS[name])
  local notes = { "favcrm mcp serve took the new API key up: every later call in this session uses it." }
  if self.save then
    local path, serr = config.save({ api_key = secret, url = self.client:savable_url() }, self.config_path)
    if path then
      notes[#notes + 1] = "It was saved to " .. path .. " (mode 0600); later sessions use it too."
      self.log(name .. ": the new key is in use and saved to " .. path)
    else
      notes[#notes + 1] = "It could not be saved (" .. tostring(serr and serr.message) .. "): it is used in this "
        .. "session only."
      self.log(name .. ": the new key is in use; saving it failed: " .. tostring(serr and serr.message))
    end
  else
    notes[#notes + 1] = "It was not saved (--no-save): it is used in this session only."
    self.log(name .. ": the new key is in use (not saved: --no-save)")
  end
  if not self.show_key then
    res = replace_all(res, key, core.mask_key(secret))
    notes[#notes + 1] = "The key is shown masked; you need not store it or set any Authorization header."
  end
  key = nil -- luacheck: ignore 311
  local content = {}
  for i, c in ipairs(type(res.content) == "table" and res.content or {}) do content[i] = c end
  content[#content + 1] = { type = "text", text = table.concat(notes, " ") }
  local out = {}
  for k, v in pairs(res) do out[k] = v end
  out.content = content
  return out
end

--- server:handle(msg) -> response table and its result guide, or nil (a
-- notification or a response needs no answer).
---@param msg table a decoded JSON-RPC message
---@return table|nil response
---@return table|nil guide the result's JSON guide
function Server:handle(msg)
  if type(msg) ~= "table" or getmetatable(msg) == ARRAY then
    return rpc_error(null, -32600, "Invalid Request: a JSON-RPC message is an object")
  end
  local id, method = msg.id, msg.method
  if type(method) ~= "string" then
    if id ~= nil and (msg.result ~= nil or msg.error ~= nil) then return nil end -- a response: not ours
    return rpc_error(id == nil and null or id, -32600, "Invalid Request: no method")
  end
  if id == nil then -- a notification: nothing to say
    if method == "notifications/cancelled" and type(msg.params) == "table" and msg.params.requestId ~= nil then
      self.cancelled[msg.params.requestId] = true
    end
    return nil
  end
  if type(id) ~= "string" and type(id) ~= "number" then
    return rpc_error(null, -32600, "Invalid Request: the id must be a string or a number")
  end
  local params = msg.params
  if self.cancelled[id] then -- cancelled before it started: no answer (MCP's cancellation rules)
    self.cancelled[id] = nil
    self.log(method .. " " .. tostring(id) .. " was cancelled before it started; not run")
    return nil
  end
  if method == "initialize" then
    return { jsonrpc = "2.0", id = id, result = self:initialize(params) }
  elseif method == "ping" then
    return { jsonrpc = "2.0", id = id, result = {} }
  elseif method == "tools/list" then
    return { jsonrpc = "2.0", id = id, result = self:list_tools() }, TOOLS_LIST
  elseif method == "logging/setLevel" then
    local lvl = type(params) == "table" and params.level
    if not LOG_LEVELS[lvl] then return rpc_error(id, -32602, "logging/setLevel: unknown level") end
    self.log_level = lvl
    return { jsonrpc = "2.0", id = id, result = {} }
  elseif method == "tools/call" then
    self.current_id = id
    local ok, res, guide = pcall(self.call_tool, self, params)
    self.current_id = nil
    if self.cancelled[id] then
      self.cancelled[id] = nil
      self.log("tools/call " .. tostring(id) .. " was cancelled by the host; its answer is dropped")
      return nil
    end
    if not ok then
      self.log("tools/call failed: " .. tostring(res))
      return rpc_error(id, -32603, "Internal error while calling the tool")
    end
    if res == nil then return rpc_error(id, guide[1], guide[2], guide[3]) end
    return { jsonrpc = "2.0", id = id, result = res }, guide
  end
  return rpc_error(id, -32601, "Method not found: " .. method)
end

--- server:handle_line(line) -> the answer's JSON text, or nil
---@param line string one line of JSON
---@return string|nil answer
function Server:handle_line(line)
  line = line:gsub("\r$", "")
  if line:match("^%s*$") then return nil end
  local msg = M.decode(line)
  if msg == nil then
    return M.encode(rpc_error(null, -32700, "Parse error: the line is not JSON"))
  end
  local function one(m)
    local res, guide = self:handle(m)
    if res == nil then return nil end
    local ok, text = pcall(M.encode, res, G.struct({ result = guide, error = RPC_ERROR }))
    if not ok then
      self.log("could not encode the answer: " .. tostring(text))
      text = M.encode(rpc_error(res.id, -32603, "Internal error: the answer could not be encoded"))
    end
    return text
  end
  if type(msg) == "table" and getmetatable(msg) ~= ARRAY and is_sequence(msg) then
    local out = {}
    for _, m in ipairs(msg) do out[#out + 1] = one(m) end
    if #out == 0 then return nil end
    return "[" .. table.concat(out, ",") .. "]"
  end
  if getmetatable(msg) == ARRAY then
    return M.encode(rpc_error(null, -32600, "Invalid Request: an empty batch"))
  end
  return one(msg)
end

--- M.serve(client, io_t [, opts]) -> 0: reads lines from io_t.stdin until
-- EOF, answers on io_t.stdout, logs to io_t.stderr.
---@param client favcrm.Client the client the tools run on
---@param io_t table stdin, stdout, stderr
---@param opts? table as for M.new
---@return integer status 0
function M.serve(client, io_t, opts)
  opts = opts or {}
  local err_out = io_t.stderr
  local function send(msg)
    local ok, text = pcall(M.encode, msg)
    if not ok then return end
    io_t.stdout:write(text, "\n")
    io_t.stdout:flush()
  end
  local server = M.new(client, {
    log = function(text) err_out:write("favcrm mcp serve: ", errors.redact(text), "\n") end,
    getenv = io_t.getenv, version = opts.version, save = opts.save, show_key = opts.show_key,
    config_path = opts.config_path, send = send,
    read_line = function() return io_t.stdin:read("*l") end,
  })
  server.log("serving on stdio; FavCRM at " .. tostring((client:endpoint())) .. " ("
    .. (client:has_api_key() and ("key from " .. tostring(client:auth_source())) or "no API key") .. ")")
  while true do
    local line = server:next_line()
    if line == nil then break end
    local out = server:handle_line(line)
    if out then
      io_t.stdout:write(out, "\n")
      io_t.stdout:flush()
    end
  end
  server.log("stdin closed; exiting")
  return 0
end

return M
