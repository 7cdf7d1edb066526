--- favcrm.mcp_serve: `favcrm mcp serve`, a stdio MCP server for clients that
-- only spawn processes (the seed's mcp-config.json). Newline-delimited
-- JSON-RPC 2.0 on stdin/stdout; logs go to stderr only.
--
--   initialize   protocol version negotiation for a 2025 host (the
--                host's when we speak it, else our newest)
--   server/discover  a 2026-07-28 host's view of the bridge
--   ping         {}
--   tools/list   the remote server's tools (through the client, so with the
--                saved or environment key) plus the local `favcrm_doctor`
--   tools/call   proxied; a remote isError result is passed through as it
--                came; local failures (network, refused key, bad arguments)
--                become isError results; an unknown tool is -32602.
--                Destructive tools are not gated here: their annotations are
--                passed on and the MCP host asks its user.
--   anything else: -32601; EOF: the requests in flight are finished, exit 0.
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
--                the host declared the capability (the bridge declares it
--                upstream only then); the bridge waits for the host's answer
--                (host_timeout, default 300 s), keeping what else the host
--                sends meanwhile for later. A 2026-07-28 host gets them as an
--                MRTR input_required result instead, and its retry carries
--                the answer upstream. URL-mode elicitation (2025-11-25) is
--                declared upstream only when the host declared it
--                (elicitation.url); its notifications/elicitation/complete
--                goes on to the host. A form-only host keeps form only.
--   resources, prompts, completion  resources/list, templates/list, read,
--                subscribe/unsubscribe (notifications/resources/updated),
--                prompts/list, prompts/get and completion/complete go
--                upstream; list_changed for tools, resources and prompts
--                comes back to the host (the bridge listens upstream).
--   cancellation host requests that go upstream run as async calls of the
--                client while the host's stdin is polled beside the
--                upstream's sockets (core.poll_fds): a notifications/cancelled
--                for one in flight cancels it (the upstream gets
--                notifications/cancelled for its own request id) and the host
--                gets no answer; one for a request not started yet drops it.
--   eras         a 2025 host initializes; a 2026-07-28 host sends _meta
--                (protocolVersion, clientCapabilities, clientInfo) on each
--                request, may call server/discover and subscriptions/listen;
--                an unknown version gets -32022 with the supported list.
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

-- the bridge encodes and decodes for people on every message: favcrm.json's
-- lazily loaded half is loaded now, so the names below are the real functions
require("favcrm.json_text")
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

M.MODERN = "2026-07-28"
--- Every version the bridge speaks: the modern one (per-request _meta) and
-- the legacy ones (the initialize handshake).
M.SUPPORTED = { M.MODERN }
for _, v in ipairs(M.PROTOCOL_VERSIONS) do M.SUPPORTED[#M.SUPPORTED + 1] = v end
local META_VERSION = "io.modelcontextprotocol/protocolVersion"
local META_CAPS = "io.modelcontextprotocol/clientCapabilities"
local META_INFO = "io.modelcontextprotocol/clientInfo"
local META_LOG = "io.modelcontextprotocol/logLevel"
local META_SUB = "io.modelcontextprotocol/subscriptionId"

M.MAX_LINE = 8 * 1024 * 1024 -- one host message line
M.MAX_BACKLOG = 1024         -- host lines kept while the bridge waits for an answer
M.MAX_INFLIGHT = 64          -- host requests running upstream at once
M.HOST_TIMEOUT = 300         -- seconds a forwarded server request waits for the host

--- M.new(client [, opts]) -> server. opts: log(text), getenv(name), version,
-- save, show_key, config_path, send(msg), read_line() (blocking), stdin_fd
-- (the host's fd: read with poll, so the upstream is served meanwhile),
-- host_timeout (seconds).
---@param client favcrm.Client the client the tools run on
---@param opts? table log, getenv, version, save, show_key, config_path, send, read_line, stdin_fd, host_timeout
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
    read_line = opts.read_line or function() return nil end, -- the host's next line (blocking)
    fd = opts.stdin_fd,
    host_timeout = opts.host_timeout or M.HOST_TIMEOUT,
    parts = {}, plen = 0, lines = {}, eof = false, -- the host's bytes read from fd
    backlog = {},   -- host lines read while waiting for an answer
    cancelled = {}, -- host request ids cancelled before they started
    inflight = {},  -- key(id) -> entry {id, h, method, modern, log_level}
    n_inflight = 0,
    finished = {},  -- entries whose handle finished, to answer
    listens = {},   -- key(id) -> a modern host's subscriptions/listen {id, filter}
    next_id = 0,
    log_level = nil,
    legacy = false, -- a host did the initialize handshake
    wired = false,
  }, Server)
  -- the upstream's log lines go to the host (when it has not set a higher level)
  client.session.cb.log = function(p) self:forward_log(p) end
  -- list_changed and resource updates: the bridge listens upstream for them
  client.session.listen_for_changes = true
  for _, kind in ipairs({ "tools", "resources", "prompts" }) do
    client.opts["on_" .. kind .. "_changed"] = function() self:forward_changed(kind) end
  end
  return self
end

local function key_of(id)
  return type(id) .. ":" .. tostring(id)
end

function Server:forward_log(p)
  if type(p) ~= "table" then return end
  local lvl = LOG_LEVELS[p.level] or 1
  local params = { level = p.level or "info", logger = p.logger, data = p.data }
  if self.legacy then
    if self.log_level and lvl < (LOG_LEVELS[self.log_level] or 0) then return end
    return self:notify("notifications/message", params)
  end
  -- a modern host gets log lines only for requests that asked for them
  -- (_meta logLevel), at that level or above
  local least
  for _, e in pairs(self.inflight) do
    local l = e.log_level and LOG_LEVELS[e.log_level]
    if l and (not least or l < least) then least = l end
  end
  if least and lvl >= least then self:notify("notifications/message", params) end
end

local CHANGED = { tools = "toolsListChanged", resources = "resourcesListChanged", prompts = "promptsListChanged" }

-- notifications/<kind>/list_changed from upstream: to a legacy host (the
-- bridge declared listChanged), and to each modern subscription that asked.
function Server:forward_changed(kind)
  local method = "notifications/" .. kind .. "/list_changed"
  if self.legacy then self:notify(method, {}) end
  for _, l in pairs(self.listens) do
    if l.filter[CHANGED[kind]] == true then self:notify(method, { _meta = { [META_SUB] = l.id } }) end
  end
end

function Server:forward_updated(p)
  local uri = type(p) == "table" and p.uri or nil
  if self.legacy and self.subscribed and self.subscribed[uri] then
    self:notify("notifications/resources/updated", { uri = uri })
  end
  for _, l in pairs(self.listens) do
    for _, u in ipairs(type(l.filter.resourceSubscriptions) == "table" and l.filter.resourceSubscriptions or {}) do
      if u == uri then
        self:notify("notifications/resources/updated", { uri = uri, _meta = { [META_SUB] = l.id } })
        break
      end
    end
  end
end

function Server:notify(method, params)
  self.send({ jsonrpc = "2.0", method = method, params = params })
end

-- Splits the bytes read into lines; a line over MAX_LINE is dropped whole
-- (it becomes a marker that handle_line answers with an error). Only the
-- new bytes are searched, and a partial line is kept as its pieces, so a
-- long line costs its length, not its length squared.
function Server:feed(chunk)
  local i = 1
  while true do
    local nl = chunk:find("\n", i, true)
    if not nl then break end
    local piece = chunk:sub(i, nl - 1)
    if self.skipping then
      self.skipping = false
    elseif self.plen + #piece > M.MAX_LINE then
      self.lines[#self.lines + 1] = false
    else
      local parts = self.parts
      parts[#parts + 1] = piece
      self.lines[#self.lines + 1] = table.concat(parts)
    end
    self.parts, self.plen = {}, 0
    i = nl + 1
  end
  if i <= #chunk and not self.skipping then
    local rest = chunk:sub(i)
    self.parts[#self.parts + 1] = rest
    self.plen = self.plen + #rest
    if self.plen > M.MAX_LINE then
      self.lines[#self.lines + 1] = false -- too long
      self.skipping, self.parts, self.plen = true, {}, 0
    end
  end
end

--- server:wait_line(timeout_s, pump [, fresh]) -> the host's next line
-- (kept lines first, unless fresh), false when timeout_s passed first (or,
-- with pump, once an upstream call finished), nil at the end of input.
-- pump: the upstream is served meanwhile (client:step), never from inside
-- a callback of the client.
function Server:wait_line(timeout, pump, fresh)
  if not fresh and #self.backlog > 0 then
    if pump then self.client:step(0) end -- the upstream moves on while kept lines are handled
    return table.remove(self.backlog, 1)
  end
  if self.fd == nil then return self.read_line() end
  local deadline = core.monotonic() + timeout
  while true do
    if #self.lines > 0 then
      local line = table.remove(self.lines, 1)
      if line == false then return "\0too long" end
      return line
    end
    if self.eof then
      if self.plen > 0 then -- a last line without its newline
        local line = table.concat(self.parts)
        self.parts, self.plen = {}, 0
        return line
      end
      return nil
    end
    local left = deadline - core.monotonic()
    if left <= 0 then return false end
    local fds, ms = { { fd = self.fd, read = true } }, math.floor(left * 1000)
    if pump then
      local w = self.client:watch()
      for _, f in ipairs(w.fds) do
        if #fds < 64 then fds[#fds + 1] = f end
      end
      if w.timeout_ms >= 0 and w.timeout_ms < ms then ms = w.timeout_ms end
      -- a socket curl opens after watch() is seen on the next turn: look
      -- again at least every 250 ms while any is open
      if #fds > 1 and ms > 250 then ms = 250 end
    end
    local ready, perr = core.poll_fds(fds, math.max(ms, 0))
    if not ready then error("favcrm mcp serve: " .. tostring(perr and perr.message)) end
    for _, i in ipairs(ready) do
      if i == 1 then
        local chunk, rerr = core.read_fd(self.fd)
        if chunk == nil then
          if rerr then self.log("reading stdin failed: " .. tostring(rerr.message)) end
          self.eof = true
        elseif chunk ~= "" then
          self:feed(chunk)
        end
      end
    end
    if pump then
      self.client:step(0)
      self:cancel_pending()
      if #self.finished > 0 then return false end
    end
  end
end

--- server:next_line() -> the host's next line: kept ones first.
function Server:next_line()
  return self:wait_line(self.host_timeout, false)
end

-- The in-flight entry whose upstream request is `op` (the one a server
-- request arrived on), else the only one in flight.
function Server:entry_for(op)
  local only, n = nil, 0
  for _, e in pairs(self.inflight) do
    if op ~= nil and e.h and e.h.waiting == op then return e end
    only, n = e, n + 1
  end
  return n == 1 and only or nil
end

-- A host notifications/cancelled for an entry waiting on a server request
-- is acted on once the pump is left (cancel_pending).
function Server:cancel_pending()
  for k, e in pairs(self.inflight) do
    if e.cancel and e.h and not e.h.finished then
      self.log(e.method .. " " .. tostring(e.id) .. " was cancelled by the host; the upstream is told")
      e.h:cancel("cancelled by the MCP host" .. (type(e.cancel) == "string" and (": " .. e.cancel) or ""))
      self.inflight[k] = nil
      self.n_inflight = self.n_inflight - 1
    end
  end
end

-- Waits for the host's next line while a callback of the client runs (no
-- pump): a cancellation is noted, other lines are kept for later. Returns
-- the line, or nil and "eof", "timeout" or "backlog".
function Server:wait_host(deadline)
  if #self.backlog >= M.MAX_BACKLOG then return nil, "backlog" end
  local left = deadline - core.monotonic()
  if left <= 0 then return nil, "timeout" end
  -- lines kept earlier were looked at already: read new ones only
  local line = self:wait_line(left, false, true)
  if line == nil then return nil, "eof" end
  if line == false then return nil, "timeout" end
  return line
end

-- Notes a host cancellation seen while waiting; true when it names `e`.
function Server:note_cancel(msg, e)
  local p = msg.params
  if type(p) ~= "table" or p.requestId == nil then return false end
  local t = self.inflight[key_of(p.requestId)]
  if t then
    t.cancel = type(p.reason) == "string" and p.reason or true
    return t == e
  end
  self.cancelled[key_of(p.requestId)] = true
  return false
end

-- Sends a request to a legacy host and waits for its answer; what else
-- comes meanwhile is kept for later (a cancellation of the waiting call is
-- noted). Returns result, or nil and the error object (or "eof",
-- "cancelled", "timeout", "backlog").
function Server:ask_host(method, params, e)
  self.next_id = self.next_id + 1
  local id = "favcrm-bridge-" .. self.next_id
  self.send({ jsonrpc = "2.0", id = id, method = method, params = params })
  local deadline = core.monotonic() + self.host_timeout
  while true do
    local line, why = self:wait_host(deadline)
    if line == nil then return nil, why end
    local msg = M.decode((line:gsub("\r$", "")))
    if type(msg) == "table" and msg.id == id and msg.method == nil then
      if msg.error ~= nil then return nil, msg.error end
      return msg.result
    end
    if type(msg) == "table" and msg.method == "notifications/cancelled" then
      if self:note_cancel(msg, e) then return nil, "cancelled" end
    else
      self.backlog[#self.backlog + 1] = line
    end
  end
end

-- MRTR for a modern host: the host's request is answered with an
-- input_required result carrying the upstream's request; the host retries
-- with inputResponses and the requestState echoed, under a new id, which
-- the entry then answers. Returns the host's answer, or nil and why.
function Server:ask_modern(method, params, e)
  self.next_id = self.next_id + 1
  local input_key = "favcrm-input-" .. self.next_id
  local state = "favcrm-bridge-" .. tostring(core.getpid()) .. "-" .. self.next_id .. "-"
    .. tostring(math.random(1, 1e9))
  local old = key_of(e.id)
  self.send({ jsonrpc = "2.0", id = e.id, result = { resultType = "input_required",
    inputRequests = { [input_key] = { method = method, params = params } }, requestState = state } })
  if self.inflight[old] == e then self.inflight[old] = nil end
  e.id = nil -- answered: a result that comes now has nobody to go to until the retry
  local deadline = core.monotonic() + self.host_timeout
  while true do
    local line, why = self:wait_host(deadline)
    if line == nil then
      e.orphan = true
      self:drop(e)
      return nil, why
    end
    local msg = M.decode((line:gsub("\r$", "")))
    local p = type(msg) == "table" and msg.params
    if type(p) == "table" and p.requestState == state and msg.id ~= nil and msg.id ~= null then
      e.id = msg.id
      self.inflight[key_of(msg.id)] = e
      local answers = type(p.inputResponses) == "table" and p.inputResponses or {}
      local a = answers[input_key]
      if a == nil then return nil, "no inputResponses for " .. input_key end
      return a
    end
    self.backlog[#self.backlog + 1] = line
  end
end

-- The elicitation modes a host's capabilities.elicitation declares, as a
-- set: {} (as before 2025-11-25) or {form = {}} is form only; {url = {}}
-- URL only; both keys, both.
local function elicit_modes(elicitation)
  if type(elicitation) ~= "table" then return { form = true } end
  local url = type(elicitation.url) == "table"
  local form = type(elicitation.form) == "table" or not url
  return { form = form or nil, url = url or nil }
end

-- The handlers the upstream session gets for the capabilities the host has.
function Server:wire_capabilities(caps)
  if type(caps) ~= "table" then caps = {} end
  local cb = self.client.session.cb
  local function forward(method, fallback)
    return function(params, op)
      local e = self:entry_for(op)
      local res, err
      if e and e.modern then
        res, err = self:ask_modern(method, params, e)
      else
        res, err = self:ask_host(method, params, e)
      end
      if res ~= nil then return res end
      self.log(method .. ": the host gave no answer (" .. (type(err) == "table" and tostring(err.message)
        or tostring(err)) .. ")")
      return fallback and fallback(err) or nil
    end
  end
  -- the upstream session is opened lazily, after this: its initialize
  -- declares exactly these
  -- URL mode (2025-11-25) only when the host declared it: the upstream then
  -- hears the same modes, and a URL elicitation's completion goes on to the host
  local modes = elicit_modes(caps.elicitation)
  local elicit = forward("elicitation/create", function(err)
    return { action = err == "cancelled" and "cancel" or "decline" }
  end)
  cb.elicit = caps.elicitation ~= nil and function(params, op)
    -- a mode the host did not declare never reaches it (the legacy session
    -- refuses it already; an MRTR input request is declined here)
    local mode = type(params) == "table" and params.mode or "form"
    if mode ~= null and not modes[mode] then return { action = "decline" } end
    return elicit(params, op)
  end or nil
  self.client.session.elicit_modes = modes
  self.client.session.client_caps = nil
  cb.elicit_complete = modes.url and function(p)
    self:notify("notifications/elicitation/complete", { elicitationId = p.elicitationId })
  end or nil
  cb.sample = caps.sampling ~= nil and forward("sampling/createMessage") or nil
  cb.roots = caps.roots ~= nil and forward("roots/list") or nil
  self.wired = true
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

M.CAPABILITIES = {
  tools = { listChanged = true },
  resources = { subscribe = true, listChanged = true },
  prompts = { listChanged = true },
  completions = {},
  logging = {},
}

function Server:instructions()
  return "FavCRM's CRM tools, proxied from " .. tostring((self.client:endpoint())) .. ". Call favcrm_doctor "
    .. "to check the connection. To sign a new business up, call register_organisation_request, then "
    .. "register_organisation_verify with the 6-digit code the owner receives by e-mail; the bridge then uses the "
    .. "new key itself (you never handle it)."
end

function Server:server_info()
  return { name = "favcrm", title = "FavCRM (favcrm-lua)", version = self.version }
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
  self.legacy = true
  if not self.wired and not self.client.session.initialized then
    self:wire_capabilities(type(params) == "table" and params.capabilities or nil)
  end
  return {
    protocolVersion = v,
    capabilities = M.CAPABILITIES,
    serverInfo = self:server_info(),
    instructions = self:instructions(),
  }
end

-- server/discover (2026-07-28): versions, capabilities, identity.
function Server:discover()
  return {
    supportedVersions = M.SUPPORTED,
    capabilities = M.CAPABILITIES,
    instructions = self:instructions(),
    _meta = { ["io.modelcontextprotocol/serverInfo"] = self:server_info() },
    ttlMs = 0, cacheScope = "private",
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

local CAPS_GUIDE = G.struct({ capabilities = G.struct({ completions = G.map(nil), logging = G.map(nil) }) })
local LIST_GUIDES = {
  ["resources/list"] = G.struct({ resources = G.list(nil) }),
  ["resources/templates/list"] = G.struct({ resourceTemplates = G.list(nil) }),
  ["prompts/list"] = G.struct({ prompts = G.list(G.struct({ arguments = G.list(nil) })) }),
  ["resources/read"] = G.struct({ contents = G.list(nil) }),
  ["prompts/get"] = G.struct({ messages = G.list(nil) }),
  ["completion/complete"] = G.struct({ completion = G.struct({ values = G.list(nil) }) }),
}
-- the methods that go upstream (run as async calls of the client)
local UPSTREAM = {
  ["tools/list"] = true, ["tools/call"] = true, ["resources/list"] = true, ["resources/templates/list"] = true,
  ["resources/read"] = true, ["resources/subscribe"] = true, ["resources/unsubscribe"] = true,
  ["prompts/list"] = true, ["prompts/get"] = true, ["completion/complete"] = true,
}

-- An upstream failure as a JSON-RPC error triple.
local function upstream_error(method, err)
  if type(err) == "table" and type(err.rpc_code) == "number" then
    local msg = tostring(err.message or ""):gsub("^the server answered with an error: ", "")
    return { err.rpc_code, msg, err.data }
  end
  return { -32603, method .. ": " .. tostring(type(err) == "table" and err.message or err) }
end

local function need_string(params, field, method)
  local v = type(params) == "table" and params[field] or nil
  if type(v) ~= "string" or v == "" then
    return nil, { -32602, method .. " needs params." .. field .. " (a string)" }
  end
  return v
end

--- server:run(method, params) -> result, guide | nil, {code, message, data}:
-- one host request that goes upstream, inside a coroutine of the client.
---@param method string the host's method
---@param params table|nil its params
---@return table|nil result
---@return table guide or the error triple
function Server:run(method, params)
  local c = self.client
  if method == "tools/list" then return self:list_tools(), TOOLS_LIST end
  if method == "tools/call" then return self:call_tool(params) end
  local g = LIST_GUIDES[method]
  local function list(fn, field)
    local items, err = fn(c)
    if items then return { [field] = items }, g end
    -- an upstream without the feature has none to list
    if type(err) == "table" and err.rpc_code == -32601 then return { [field] = {} }, g end
    return nil, upstream_error(method, err)
  end
  if method == "resources/list" then return list(c.resources, "resources") end
  if method == "resources/templates/list" then return list(c.resource_templates, "resourceTemplates") end
  if method == "prompts/list" then return list(c.prompts, "prompts") end
  if method == "resources/read" then
    local uri, perr = need_string(params, "uri", method)
    if not uri then return nil, perr end
    local _, res = c:read(uri)
    if errors.is(res) then return nil, upstream_error(method, res) end
    return res, g
  elseif method == "prompts/get" then
    local name, perr = need_string(params, "name", method)
    if not name then return nil, perr end
    local args = params.arguments
    if args ~= nil and args ~= null and type(args) ~= "table" then
      return nil, { -32602, "prompts/get: arguments must be an object" }
    end
    local _, res = c:prompt(name, args ~= null and args or nil)
    if errors.is(res) then return nil, upstream_error(method, res) end
    return res, g
  elseif method == "completion/complete" then
    local ref, arg = params and params.ref, params and params.argument
    if type(ref) ~= "table" or (ref.type ~= "ref/prompt" and ref.type ~= "ref/resource")
        or type(arg) ~= "table" or type(arg.name) ~= "string" then
      return nil, { -32602, "completion/complete needs params.ref (ref/prompt or ref/resource) and "
        .. "params.argument (name, value)" }
    end
    local ctx = params.context
    local _, comp = c:complete(ref, arg, { context = type(ctx) == "table" and ctx or nil })
    if errors.is(comp) then return nil, upstream_error(method, comp) end
    return { completion = comp }, g
  elseif method == "resources/subscribe" or method == "resources/unsubscribe" then
    local uri, perr = need_string(params, "uri", method)
    if not uri then return nil, perr end
    local ok, err
    self.subscribed = self.subscribed or {}
    if method == "resources/subscribe" then
      ok, err = c:subscribe(uri, function(p) self:forward_updated(p) end)
      if ok then self.subscribed[uri] = true end
    else
      self.subscribed[uri] = nil
      ok, err = c:unsubscribe(uri)
    end
    if not ok then return nil, upstream_error(method, err) end
    return {}
  end
  return nil, { -32601, "Method not found: " .. method }
end

-- Leaves the entry's slot (once).
function Server:drop(e)
  if e.closed then return end
  e.closed = true
  self.n_inflight = self.n_inflight - 1
  if e.id ~= nil and self.inflight[key_of(e.id)] == e then self.inflight[key_of(e.id)] = nil end
end

-- The results a 2026-07-28 host may cache (CacheableResult): the bridge's
-- vary with the key it holds, and the upstream can change them any time.
local CACHEABLE = { ["tools/list"] = true, ["prompts/list"] = true, ["resources/list"] = true,
  ["resources/read"] = true, ["resources/templates/list"] = true }

-- The answer to a modern host's request carries resultType (and, for the
-- cacheable ones, ttlMs 0 and cacheScope "private").
local function complete(result, method)
  local out = {}
  for k, v in pairs(result) do out[k] = v end
  out.resultType = "complete"
  if CACHEABLE[method] then out.ttlMs, out.cacheScope = 0, "private" end
  return out
end

--- server:start(id, method, params, meta) starts a host request upstream;
-- its answer is sent by server:flush() once it is done.
-- PUC Lua 5.1 cannot yield across pcall, and client:doctor() waits inside
-- one: there favcrm_doctor runs in the main loop, as a finished handle.
local YIELD_IN_PCALL = _VERSION ~= "Lua 5.1" or type(rawget(_G, "jit")) == "table"

function Server:start(id, method, params, meta)
  local e = { id = id, method = method, modern = meta ~= nil, log_level = meta and meta[META_LOG] }
  self.inflight[key_of(id)] = e
  self.n_inflight = self.n_inflight + 1
  if not YIELD_IN_PCALL and method == "tools/call" and type(params) == "table"
      and params.name == M.DOCTOR_TOOL.name then
    local ok, res, guide = pcall(self.run, self, method, params)
    e.h = { finished = true, value = ok and res or nil, err = ok and guide or nil, raised = not ok and res or nil }
    self.finished[#self.finished + 1] = e
    return
  end
  e.h = self.client:async(function() return self:run(method, params) end, {
    on_done = function() self.finished[#self.finished + 1] = e end,
  })
end

--- server:flush(): answers the host requests that finished.
function Server:flush()
  while #self.finished > 0 do
    local e = table.remove(self.finished, 1)
    local h = e.h
    if h.cancelled or e.orphan or e.id == nil then
      self:drop(e)
    else
      self:drop(e)
      local msg, guide
      if h.raised ~= nil then
        self.log(e.method .. " failed: " .. tostring(h.raised))
        msg = rpc_error(e.id, -32603, "Internal error while running " .. e.method)
      elseif h.value == nil then
        local t = h.err or { -32603, "no answer" }
        msg = rpc_error(e.id, t[1], t[2], t[3])
      else
        msg, guide = { jsonrpc = "2.0", id = e.id, result = e.modern and complete(h.value, e.method) or h.value }, h.err
      end
      self:write(msg, guide)
    end
  end
end

function Server:write(res, guide)
  local ok, text = pcall(M.encode, res, G.struct({ result = guide, error = RPC_ERROR }))
  if not ok then
    self.log("could not encode the answer: " .. tostring(text))
    text = M.encode(rpc_error(res.id, -32603, "Internal error: the answer could not be encoded"))
  end
  self.send_text(text)
end

-- A host notification.
function Server:notification(method, params)
  if method ~= "notifications/cancelled" or type(params) ~= "table" or params.requestId == nil then return end
  local k = key_of(params.requestId)
  local e = self.inflight[k]
  if e then
    self.log(e.method .. " " .. tostring(e.id) .. " was cancelled by the host; the upstream is told")
    self:drop(e)
    e.h:cancel("cancelled by the MCP host" .. (type(params.reason) == "string" and (": " .. params.reason) or ""))
  elseif self.listens[k] then
    self.listens[k] = nil
  else
    self.cancelled[k] = true
  end
end

-- subscriptions/listen from a modern host: acknowledged with what the
-- bridge honours; the notifications then carry its id. No answer until the
-- host cancels it (stdio) or closes.
function Server:listen(id, params)
  local want = type(params) == "table" and type(params.notifications) == "table" and params.notifications or {}
  local filter = {}
  for _, f in ipairs({ "toolsListChanged", "promptsListChanged", "resourcesListChanged" }) do
    if want[f] == true then filter[f] = true end
  end
  local uris = {}
  if type(want.resourceSubscriptions) == "table" then
    for _, u in ipairs(want.resourceSubscriptions) do
      if type(u) == "string" and u ~= "" and #uris < 256 then uris[#uris + 1] = u end
    end
    filter.resourceSubscriptions = setmetatable(uris, ARRAY)
  end
  self.listens[key_of(id)] = { id = id, filter = filter }
  self:notify("notifications/subscriptions/acknowledged", { _meta = { [META_SUB] = id }, notifications = filter })
  for _, u in ipairs(uris) do
    self.client:async(function(c)
      local ok, err = c:subscribe(u, function(p) self:forward_updated(p) end)
      if not ok then self.log("subscriptions/listen: " .. u .. ": " .. tostring(err and err.message)) end
    end)
  end
end

--- server:handle(msg) -> response table and its result guide, or nil (a
-- notification, a response, or a request that goes upstream: its answer
-- comes from server:flush()).
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
    self:notification(method, msg.params)
    return nil
  end
  if type(id) ~= "string" and type(id) ~= "number" then
    return rpc_error(null, -32600, "Invalid Request: the id must be a string or a number")
  end
  local params = msg.params
  if self.cancelled[key_of(id)] then -- cancelled before it started: no answer (MCP's cancellation rules)
    self.cancelled[key_of(id)] = nil
    self.log(method .. " " .. tostring(id) .. " was cancelled before it started; not run")
    return nil
  end
  -- a modern (2026-07-28) request carries its version and capabilities in _meta
  local meta = type(params) == "table" and type(params._meta) == "table" and params._meta or nil
  if meta and meta[META_VERSION] == nil then meta = nil end
  if meta then
    local v = meta[META_VERSION]
    if v ~= M.MODERN then
      return rpc_error(id, -32022, "Unsupported protocol version: " .. tostring(v),
        { supported = M.SUPPORTED, requested = v })
    end
    if not self.wired and not self.client.session.initialized then
      local caps = meta[META_CAPS]
      self:wire_capabilities(type(caps) == "table" and caps or nil)
      local ci = type(meta[META_INFO]) == "table" and meta[META_INFO] or {}
      self.log("a 2026-07-28 host: " .. tostring(ci.name or "a client") .. " (no initialize)")
    end
  end
  local function answer(result, guide)
    return { jsonrpc = "2.0", id = id, result = meta and complete(result) or result }, guide
  end
  if method == "initialize" then
    return answer(self:initialize(params), CAPS_GUIDE)
  elseif method == "server/discover" then
    return answer(self:discover(), CAPS_GUIDE)
  elseif method == "ping" then
    return answer({})
  elseif method == "subscriptions/listen" then
    self:listen(id, params)
    return nil
  elseif method == "logging/setLevel" then
    local lvl = type(params) == "table" and params.level
    if not LOG_LEVELS[lvl] then return rpc_error(id, -32602, "logging/setLevel: unknown level") end
    self.log_level = lvl
    return answer({})
  elseif UPSTREAM[method] then
    if self.n_inflight >= M.MAX_INFLIGHT then
      return rpc_error(id, -32603, "favcrm mcp serve: " .. M.MAX_INFLIGHT .. " requests are running already")
    end
    self:start(id, method, params, meta)
    return nil
  end
  return rpc_error(id, -32601, "Method not found: " .. method)
end

--- server:handle_line(line) -> the answer's JSON text, or nil
---@param line string one line of JSON
---@return string|nil answer
function Server:handle_line(line)
  if line == "\0too long" then
    return M.encode(rpc_error(null, -32700, "Parse error: a line longer than " .. M.MAX_LINE .. " bytes"))
  end
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

-- Moves the upstream on until every host request is answered (at the end
-- of input, or when the host's stdin cannot be polled).
function Server:settle()
  while self.n_inflight > 0 do
    self.client:step(0.05)
    self:cancel_pending()
    self:flush()
  end
  self:flush()
end

--- M.serve(client, io_t [, opts]) -> 0: reads lines from io_t.stdin until
-- EOF, answers on io_t.stdout, logs to io_t.stderr. With io_t.stdin_fd the
-- host's input is polled beside the upstream's sockets, so cancellations,
-- pings and other requests are read while a call runs, and upstream
-- notifications (list_changed, resource updates, log lines) reach the host
-- between calls.
---@param client favcrm.Client the client the tools run on
---@param io_t table stdin, stdout, stderr, stdin_fd, getenv
---@param opts? table as for M.new
---@return integer status 0
function M.serve(client, io_t, opts)
  opts = opts or {}
  local err_out = io_t.stderr
  local function send_text(text)
    io_t.stdout:write(text, "\n")
    io_t.stdout:flush()
  end
  local function send(msg)
    local ok, text = pcall(M.encode, msg)
    if not ok then return end
    send_text(text)
  end
  local server = M.new(client, {
    log = function(text) err_out:write("favcrm mcp serve: ", errors.redact(text), "\n") end,
    getenv = io_t.getenv, version = opts.version, save = opts.save, show_key = opts.show_key,
    config_path = opts.config_path, send = send, stdin_fd = io_t.stdin_fd, host_timeout = opts.host_timeout,
    read_line = function() return io_t.stdin:read("*l") end,
  })
  server.send_text = send_text
  server.log("serving on stdio; FavCRM at " .. tostring((client:endpoint())) .. " ("
    .. (client:has_api_key() and ("key from " .. tostring(client:auth_source())) or "no API key") .. ")")
  while true do
    server:flush()
    local line = server:wait_line(1, true)
    if line == nil then break end
    if line then
      local out = server:handle_line(line)
      if out then send_text(out) end
      if server.fd == nil then server:settle() end
    end
  end
  server:settle()
  server.log("stdin closed; exiting")
  return 0
end

return M
