--- favcrm.session: the MCP session over a transport (DESIGN.md layer 3).
-- Protocol decisions live here; bytes, sockets and SSE framing live in the
-- transport (csrc/http.c, transport/stdio.lua, transport/custom.lua): the
-- contract they all implement is written once in favcrm.transport
-- (lua/favcrm/transport/init.lua).
--
-- Every request is an "op" pumped by `Session:pump`, so one blocking call,
-- many calls at once and an event loop all share the same machinery.
local json = require("favcrm.json")
local core = require("favcrm.core")
local errors = require("favcrm.errors")
local urls = require("favcrm.url")
local era = require("favcrm.era")
local lazy = require("favcrm.lazy")

local Session = {}
Session.__index = Session

Session.PROTOCOL_VERSION = "2025-11-25"
Session.SUPPORTED_VERSIONS = {
  ["2025-11-25"] = true, ["2025-06-18"] = true,
  ["2025-03-26"] = true, ["2024-11-05"] = true,
}

local MAX_RESUMES = 3
local DRAIN_MS = 1000
-- Our answers to server requests and our notifications: at most
-- AUX_IN_FLIGHT on the wire at once (each holds a pooled connection), the
-- rest wait in order; a server whose requests outrun AUX_QUEUE waiting
-- answers is flooding us, and the call that carried them ends (protocol).
local AUX_IN_FLIGHT = 4
local AUX_QUEUE = 256
-- after a blocking call times out, how long its notifications/cancelled
-- may take to leave (the rest is finished by later pumps or close())
local CANCEL_DRAIN_MS = 100

local now = core.monotonic
local null = json.null
local NO_OPTS = {}

-- What an op's fields are until set (Session:start_request stores only
-- those it needs; reading any other gives its default here).
local OP_DEFAULTS = {
  progress_token = false, on_progress = false, resumes = 0, redirects = 0,
  notify = false, replayed = false, retry_ms = 1000,
  last_event_id = false, resume_at = false, http_method = false, extra_headers = false,
  full_headers = false, url = false, drop_auth = false, is_init = false, on_done = false,
  callback_error = false, reinit = false, auth_tries = 0,
  -- the 2026-07-28 era (favcrm.era)
  plain = false, -- a tools/call whose params are exactly {name = string, arguments = table}
  modern = false, param_headers = false, reissue = false, rounds = 0, mrtr_responses = false,
  mrtr_state = false, version_retry = false, renegotiated = false, is_probe = false,
}
local OP = { __index = OP_DEFAULTS }
-- A plain tools/call's text: TOOLS_CALL_HEAD, the name, the arguments (and
-- _meta), then the id last, where LuaJIT's string hash (which samples a
-- long string's first, middle and last bytes) tells one request from the
-- next: with the id at the front, every body of a length hashed alike and
-- each new one was compared with all those not yet collected.
local TOOLS_CALL_HEAD = '{"jsonrpc":"2.0","method":' .. json.wire("tools/call") .. ',"params":{"name":'
local ID_TAIL = '},"id":'

Session._origin = urls.origin
-- the arguments of a tools/call made without any (client.lua): never
-- written to, so its body needs no encoding
local NO_ARGS = {}
Session.NO_ARGS = NO_ARGS

--- Session.new(opts): no I/O. opts.transport is required; the rest are
-- those of favcrm.new that concern the protocol.
function Session.new(opts)
  local self = setmetatable({
    transport = opts.transport,
    url = opts.url,
    auth = opts.auth,             -- favcrm.Secret, string or nil
    oauth = opts.oauth,           -- favcrm.oauth state, or nil (then auth is nil)
    extra_headers = opts.headers or {},
    timeout = opts.timeout or 60,
    max_total_timeout = opts.max_total_timeout or 600,
    client_info = opts.client_info,
    listen_opt = opts.listen,     -- nil (auto), true or false: the standalone stream
    listen = nil,                 -- that stream's state (see _listen_start)
    listen_for_changes = opts.listen_for_changes, -- an on_*_changed callback wants the stream (auto)
    cb = {
      elicit = opts.on_elicit, sample = opts.on_sample, roots = opts.on_roots,
      progress = opts.on_progress, log = opts.on_log,
      elicit_complete = opts.on_elicit_complete,
    },
    -- the elicitation modes on_elicit handles: {form = true, url = true}
    -- (favcrm.new's elicit_modes; default form only)
    elicit_modes = opts.elicit_modes or { form = true },
    session_id = nil,
    protocol_version = nil,
    server_info = nil,
    server_capabilities = nil,
    initialized = false,
    next_rpc = 0,
    ops = {},        -- transfer id -> op
    aux = {},        -- transfer id -> true (answers and notifications we sent)
    aux_sending = 0, -- how many of those are "send" (see _send_aux)
    aux_queue = {},  -- bodies waiting for one of them to end, oldest first
    by_token = {},   -- progress token -> op
    async_cos = setmetatable({}, { __mode = "k" }), -- coroutines of async handles
    timers = {},     -- pseudo-ops that are done at wake_at (Session:sleep)
    signaled = {},   -- waitables done since the owner last looked (see _signal)
    last_date_header = nil, -- the last HTTP Date header seen ...
    last_date_at = nil,     -- ... and the local time then
    shared = opts.shared,   -- state kept across sessions (favcrm.resty), or nil
    -- the era (issue 16, favcrm.era): "auto", "2026-07-28" or "2025-11-25"
    -- asked for; "modern" or "legacy" once known (by the gate of _start_init)
    want = opts.protocol or "auto",
    era = nil,
    log_level = nil,  -- modern: the per-request io.modelcontextprotocol/logLevel
  }, Session)
  local sh = opts.shared
  if sh and sh.era == "modern" and self.want ~= era.LEGACY then
    self:_set_modern(sh.server_info, sh.server_capabilities, sh.instructions)
  elseif sh and sh.initialized then
    -- a session this process negotiated before: no initialize round trip
    self.session_id, self.protocol_version = sh.session_id, sh.protocol_version
    self.server_info, self.server_capabilities = sh.server_info, sh.server_capabilities
    self.instructions, self.initialized = sh.instructions, true
    self.era = "legacy"
  end
  return self
end

-- The key under which the era of this server is remembered: the origin
-- (HTTP), or the transport itself (stdio: its server process).
function Session:_era_key()
  local t = self.transport
  if type(t) == "table" and t.idle_stream == true then return t end
  return self.url and urls.origin(self.url) or nil
end

-- The server speaks 2026-07-28: stateless requests from now on.
function Session:_set_modern(info, caps, instructions)
  self.era, self.protocol_version, self.session_id = "modern", era.MODERN, nil
  self.server_info = info or self.server_info
  self.server_capabilities = caps or self.server_capabilities
  self.instructions = instructions or self.instructions
  self.initialized = true
  local sh = self.shared
  if sh then
    sh.era, sh.protocol_version = "modern", era.MODERN
    sh.server_info, sh.server_capabilities, sh.instructions = self.server_info, self.server_capabilities,
      self.instructions
  end
end

-- Over stdio (a transport with idle_stream) there are no HTTP headers.
function Session:_is_stdio()
  local t = self.transport
  return type(t) == "table" and t.idle_stream == true
end

-- The headers every request carries.
function Session:_headers(extra)
  -- the common list is built once per (version, session id) pair
  local pv, sid = self.protocol_version, self.session_id
  local h = self._hcache
  if not h or self._hpv ~= pv or self._hsid ~= sid then
    h = {
      "Content-Type: application/json",
      "Accept: application/json, text/event-stream",
    }
    if pv then h[#h + 1] = "MCP-Protocol-Version: " .. pv end
    if sid then h[#h + 1] = "Mcp-Session-Id: " .. sid end
    for _, line in ipairs(self.extra_headers) do h[#h + 1] = line end
    self._hcache, self._hpv, self._hsid = h, pv, sid
  end
  if extra then
    local copy = {}
    for i, line in ipairs(h) do copy[i] = line end
    for _, line in ipairs(extra) do copy[#copy + 1] = line end
    return copy
  end
  return h
end

-- The bearer token a request carries: the OAuth access token (refreshed
-- first when it is about to expire, within `budget`), else the API key.
function Session:_auth(budget)
  if self.oauth then return self.oauth:current(budget) end
  return self.auth
end

function Session:_hard_timeout_ms()
  return math.floor((self.max_total_timeout + 5) * 1000)
end

--- Session:budget(timeout, max_total_timeout) -> the one deadline of a
-- public call: {timeout, deadline, hard}. Everything the call does (its
-- initialize, tools/list, retries and their waits, resumes, validation)
-- spends from it; progress of its requests moves `deadline` on, never past
-- `hard`.
function Session:budget(timeout, max_total)
  local t = now()
  timeout = timeout or self.timeout
  return { timeout = timeout, deadline = t + timeout, hard = t + (max_total or self.max_total_timeout) }
end

--- Session.left(budget) -> seconds left (<= 0: over)
function Session.left(b)
  return math.min(b.deadline, b.hard) - now()
end

-- Sends a message we do not wait for (a notification, or our answer to a
-- server request). Its outcome only matters as far as the transport goes.
-- At most AUX_IN_FLIGHT are sent at once; the others wait in aux_queue.
function Session:_send_aux(msg)
  -- modern HTTP: closing the response stream is the cancellation
  if self.era == "modern" and msg.method == "notifications/cancelled" and not self:_is_stdio() then
    return true
  end
  local body = json.wire(msg)
  if self.aux_sending >= AUX_IN_FLIGHT then
    local q = self.aux_queue
    q[#q + 1] = body
    return true
  end
  return self:_start_aux(body)
end

function Session:_start_aux(body)
  local tid, err = self.transport:start({
    method = "POST", url = self.url, headers = self:_headers(), body = body,
    auth = self:_auth(), timeout_ms = 10000,
  })
  if tid then
    self.aux[tid] = "send"
    self.aux_sending = self.aux_sending + 1
  end
  return tid, err
end

-- An auxiliary transfer ended: forget it, and send the next waiting body.
function Session:_aux_done(tid)
  local kind = self.aux[tid]
  self.aux[tid] = nil
  if kind ~= "send" then return end
  self.aux_sending = self.aux_sending - 1
  local q = self.aux_queue
  if q[1] ~= nil and self.aux_sending < AUX_IN_FLIGHT then
    self:_start_aux(table.remove(q, 1))
  end
end

-- Starts (or restarts) the op's HTTP exchange.
-- The table a request is described in: the C transport reads it and keeps
-- nothing of it, so one per session is refilled; a Lua transport gets a
-- table of its own each time.
function Session:_request_table()
  local req = self._req
  if not req or self._req_for ~= self.transport then
    req = {}
    if type(self.transport) == "userdata" then self._req, self._req_for = req, self.transport end
  end
  return req
end

function Session:_launch(op)
  local req = self:_request_table()
  local auth = self:_auth(op.budget)
  if op.drop_auth then auth = nil end -- never to another origin
  req.method = op.http_method or "POST"
  req.url = op.url or self.url
  req.headers = op.full_headers and self:_tool_headers(op.full_headers) or self:_headers(op.extra_headers)
  req.body = op.body
  req.auth = auth
  -- the time left, and a second more, so our own deadline ends it first
  req.timeout_ms = math.max(1, math.floor((op.hard_deadline - now()) * 1000) + 1000)
  op.sent_auth = auth or false
  op.sent_session = self.session_id
  if op.got_headers or op.status then op.status, op.headers, op.got_headers = nil, nil, false end
  local tid, err = self.transport:start(req)
  req.auth, req.body = nil, nil -- the kept table holds no token and no body
  if not tid then
    return self:_finish(op, nil, errors.new("network", "could not start the request: " .. tostring(err)))
  end
  op.tid = tid
  self.ops[tid] = op
end

--- Session:start_request(method, params, opts) -> op. No waiting.
-- opts: timeout, max_total_timeout, on_progress, notify (no id), budget
-- (Session:budget, shared by the requests of one public call: it replaces
-- timeout and max_total_timeout), param_headers (modern: the
-- Mcp-Param-{Name} lines of a tools/call), reissue (modern: a read-only
-- call a broken stream may send again), modern (the era probe).
function Session:start_request(method, params, opts)
  local op = self:_new_op(method, params, opts or NO_OPTS)
  self:_encode(op)
  self:_launch(op)
  return op
end

--- Session:call_tool(name, args, budget, on_progress, reissue, param_headers)
-- -> result | nil, err: a plain tools/call (the op's params exactly name
-- and arguments; the other values as start_request's opts), sent and
-- waited for. The hot path: with nothing else in flight (no op, no
-- auxiliary transfer, timer, resume or listening stream), no progress
-- wanted, no Mcp-Param headers and not inside an async handle, the answer
-- comes back through the transport's exchange (the C transport's
-- http:exchange: a 2xx body, or a stream that carried one event, with no
-- op, item or header table); a plain JSON-RPC result is returned from
-- there. Anything else (a stream with more events, or one still open after
-- its first, an HTTP error, a JSON-RPC error, an answer that is not our
-- result) is handed to the usual op machinery where it stands, so it is
-- treated exactly as start_request + wait treats it.
function Session:call_tool(name, args, b, on_progress, reissue, ph)
  local tr = self.transport
  -- the transport's exchange, looked up once per transport
  local xchg = self._xfn
  if self._xtr ~= tr then
    xchg = tr.exchange or false
    self._xtr, self._xfn = tr, xchg
  end
  local cos = self.async_cos
  if not xchg or next(self.ops) ~= nil or next(self.aux) ~= nil or next(self.timers) ~= nil
    or (self.resuming and next(self.resuming) ~= nil) or self.listen or on_progress or self.cb.progress
    or ph or (next(cos) ~= nil and cos[coroutine.running() or cos] ~= nil) then
    return self:wait(self:start_request("tools/call", { name = name, arguments = args },
      { budget = b, on_progress = on_progress, plain = true, reissue = reissue, param_headers = ph }))
  end
  local counter = self.shared or self
  local rpc_id = (counter.next_rpc or 0) + 1
  counter.next_rpc = rpc_id
  local modern = self.era == "modern"
  local e = self:_tool_entry(name)
  local body = self:_plain_body(rpc_id, name, args, modern, 4, e)
  local req = self._req
  if not req or self._req_for ~= tr then req = self:_request_table() end
  local auth = self.auth
  if self.oauth then auth = self.oauth:current(b) end
  req.method, req.url, req.body, req.auth = "POST", self.url, body, auth
  local headers = self:_headers()
  if modern then
    if e.common ~= headers then self:_tool_headers(name, e) end
    headers = e.headers
  end
  req.headers = headers
  local t, hard = now(), b.hard
  local d = b.deadline
  if hard < d then d = hard end
  -- the time left, and a second more, so our own deadline ends it first
  -- (both in ms; the transport takes fractions)
  local ms = (hard - t) * 1000 + 1000
  if ms < 1 then ms = 1 end
  req.timeout_ms = ms
  local wait = (d - t) * 1000
  if wait < 0 then wait = 0 end
  local tid, st, rbody, ct, date, ev, evid, retry = xchg(tr, req, wait, true, rpc_id, self.last_date_header, modern)
  req.auth, req.body = nil, nil -- the kept table holds no token and no body
  local op
  if tid then
    if st then
      if type(st) == "table" then
        -- with rpc_id, the C transport decoded our plain JSON-RPC result:
        -- tid, result [, date] (the Date only when it is not last_date_header)
        if rbody and rbody ~= self.last_date_header then self.last_date_header, self.last_date_at = rbody, os.time() end
        return st
      end
      if date and date ~= self.last_date_header then self.last_date_header, self.last_date_at = date, os.time() end
      if ev == "message"
        or (not ev and (ct == "application/json" or (ct and ct:lower():find("^application/json")))) then
        local msg = type(rbody) == "string" and core.json_decode(rbody) or json.decode_plain(rbody)
        if type(msg) == "table" and msg.id == rpc_id and msg.jsonrpc == "2.0" and msg.error == nil
          and msg.method == nil then
          local res = msg.result
          if type(res) == "table" and not (modern and res.resultType == "input_required") then return res end
        end
      end
    end
    -- the usual path takes over from here
    op = self:_new_op("tools/call", { name = name, arguments = args },
      { budget = b, plain = true, reissue = reissue })
    op.rpc_id, op.body, op.tid = rpc_id, body, tid
    op.sent_auth, op.sent_session = auth or false, self.session_id
    if modern then op.full_headers = name end
    self.ops[tid] = op
    if st then
      -- the answer exchange handed over, as poll would have handed it
      local item = { type = "done", id = tid, status = st, sse = ev ~= nil, event_id = evid, retry = retry,
        headers = { ["content-type"] = ct, date = date } }
      if ev then item.data, item.event = rbody, ev else item.body = rbody end
      self:_take_all({ item })
    end
  else
    op = self:_new_op("tools/call", { name = name, arguments = args },
      { budget = b, plain = true, reissue = reissue })
    op.rpc_id, op.body = rpc_id, body
    self:_finish(op, nil, errors.new("network", "could not start the request: " .. tostring(st)))
  end
  return self:wait(op)
end

-- A new op (not sent yet): see start_request for opts.
function Session:_new_op(method, params, opts)
  local b = opts.budget or self:budget(opts.timeout, opts.max_total_timeout)
  -- the fields every op gets on the way (sized once, never resized); the
  -- rest start as OP_DEFAULTS says and are stored only when they change
  local op = setmetatable({
    rpc_id = false, method = method, body = false, params = params,
    timeout = b.timeout, deadline = b.deadline, hard_deadline = b.hard, budget = b,
    done = false, tid = false, status = false, headers = false, got_headers = false,
    sent_auth = false, sent_session = false, result = nil,
  }, OP)
  if opts.on_progress then op.on_progress = opts.on_progress end
  if opts.notify then op.notify = true end
  if opts.modern or self.era == "modern" then op.modern = true end
  if opts.param_headers then op.param_headers = opts.param_headers end
  if opts.reissue then op.reissue = true end
  if opts.plain and method == "tools/call" then op.plain = true end
  return op
end

-- The JSON of a modern request's _meta (protocol version, capabilities,
-- client info, log level): encoded once, again only when one of them changes.
function Session:_meta_json(pv)
  local caps = self.client_caps
  local level = self.log_level or (self.cb.log and "debug") or nil
  local c = self._mcache
  if c and caps and c.pv == pv and c.caps == caps and c.info == self.client_info and c.level == level then
    return c.json
  end
  local meta = era.meta(self, pv)
  local text = json.wire(meta)
  self._mcache = { pv = pv, caps = self.client_caps, info = self.client_info, level = level, json = text }
  return text
end

-- What a plain tools/call of `name` reuses, kept per session for at most
-- TOOL_CACHE_MAX names: the name as JSON text and (modern) the request's
-- header list without Mcp-Param headers (the common headers, Mcp-Method and
-- Mcp-Name), rebuilt when the common headers change.
local TOOL_CACHE_MAX = 256
function Session:_tool_entry(name)
  local c = self._tcache
  if not c then
    c = { n = 0, by = {} }
    self._tcache = c
  end
  local e = c.by[name]
  if not e then
    local nj = json.wire(name)
    e = { json = nj, headers = false, common = false, noargs = TOOLS_CALL_HEAD .. nj .. ',"arguments":{}' .. ID_TAIL,
      noargs_meta = false, noargs_modern = false }
    if c.n < TOOL_CACHE_MAX then
      c.by[name] = e
      c.n = c.n + 1
    end
  end
  return e
end

function Session:_tool_headers(name, e)
  e = e or self:_tool_entry(name)
  local common = self:_headers()
  if e.common ~= common then
    local h = {}
    for i, line in ipairs(common) do h[i] = line end
    for _, line in ipairs(era.request_headers("tools/call", { name = name })) do h[#h + 1] = line end
    e.headers, e.common = h, common
  end
  return e.headers
end

-- The body of a plain tools/call: the fixed envelope (and in the modern era
-- the request's _meta, encoded once per session) spliced around the
-- arguments' JSON. Arguments that cannot be encoded raise, at `level`.
function Session:_plain_body(rpc_id, name, args, modern, level, e)
  e = e or self:_tool_entry(name)
  if args == NO_ARGS or (next(args) == nil and getmetatable(args) == nil) then
    -- no arguments: everything after the id is the same every time (in the
    -- modern era, while the request's _meta is)
    if not modern then return e.noargs .. rpc_id .. "}" end
    local mj = self:_meta_json(self.protocol_version or era.MODERN)
    if e.noargs_meta ~= mj then
      e.noargs_meta, e.noargs_modern = mj, TOOLS_CALL_HEAD .. e.json .. ',"arguments":{},"_meta":' .. mj .. ID_TAIL
    end
    return e.noargs_modern .. rpc_id .. "}"
  end
  local aj, jerr = json.wire(args)
  if not aj then
    error("favcrm: cannot encode the request as JSON: " .. tostring(jerr), level)
  end
  local tail = ID_TAIL
  if modern then tail = ',"_meta":' .. self:_meta_json(self.protocol_version or era.MODERN) .. ID_TAIL end
  return TOOLS_CALL_HEAD .. e.json .. ',"arguments":' .. aj .. tail .. rpc_id .. "}"
end

-- (Re)builds the op's message: a new JSON-RPC id, and in the modern era the
-- request's _meta, its MRTR answers and its headers.
function Session:_encode(op)
  if not op.notify then
    -- ids are unique per MCP session, which clients may share (opts.shared)
    local counter = self.shared or self
    counter.next_rpc = (counter.next_rpc or 0) + 1
    op.rpc_id = counter.next_rpc
  end
  local method, params = op.method, op.params
  if op.progress_token then
    self.by_token[op.progress_token] = nil
    op.progress_token = false
  end
  local rpc_id = op.rpc_id
  -- the hot path, a plain tools/call with no progress token and no MRTR
  -- answers: the fixed envelope (and in the modern era the _meta, encoded
  -- once per session) spliced around the arguments' JSON
  if op.plain and rpc_id and not (op.on_progress or self.cb.progress)
    and not op.mrtr_responses and not op.mrtr_state then
    local name = params.name
    do
      if op.modern then
        local ph = op.param_headers
        if ph and ph[1] ~= nil then
          local h = era.request_headers(method, params)
          for _, line in ipairs(ph) do h[#h + 1] = line end
          op.extra_headers, op.full_headers = h, false
        else
          op.extra_headers, op.full_headers = false, name
        end
      elseif op.extra_headers or op.full_headers then
        op.extra_headers, op.full_headers = false, false
      end
      op.body = self:_plain_body(rpc_id, name, params.arguments, op.modern, 5)
      return
    end
  end
  if op.modern then
    method = era.ALIAS[method] or method
    local p = {}
    if type(params) == "table" then
      for k, v in pairs(params) do p[k] = v end
    end
    local meta = era.meta(self, self.protocol_version or era.MODERN)
    if type(p._meta) == "table" then
      for k, v in pairs(p._meta) do
        if meta[k] == nil then meta[k] = v end
      end
    end
    p._meta = meta
    if op.mrtr_responses then p.inputResponses = op.mrtr_responses end
    if op.mrtr_state then p.requestState = op.mrtr_state end
    params = p
    local h = era.request_headers(method, p)
    for _, line in ipairs(op.param_headers or {}) do h[#h + 1] = line end
    op.extra_headers = h
  else
    op.extra_headers = false
  end
  if op.full_headers then op.full_headers = false end
  local msg = { jsonrpc = "2.0", id = rpc_id or nil, method = method, params = params }
  if rpc_id and (op.on_progress or self.cb.progress) then
    local token = "p" .. rpc_id
    msg.params = msg.params or {}
    msg.params._meta = msg.params._meta or {}
    msg.params._meta.progressToken = token
    op.progress_token = token
    self.by_token[token] = op
  end
  local body, jerr = json.wire(msg)
  if not body then
    error("favcrm: cannot encode the request as JSON: " .. tostring(jerr), 4)
  end
  op.body = body
end

-- Marks a waitable (an op, a timer, a gate) done and tells whoever waits.
function Session:_signal(w)
  w.done = true
  local sg = self.signaled
  sg[#sg + 1] = w
end

-- Ends an op. With `keep`, its transfer (an answer stream that is about to
-- end by itself) runs on as an auxiliary one so the connection stays
-- reusable; otherwise it is cut.
function Session:_finish(op, result, err, keep)
  if op.done then return end
  self:_signal(op)
  op.result, op.err = result, err
  if op.progress_token then self.by_token[op.progress_token] = nil end
  if op.tid then
    self.ops[op.tid] = nil
    -- a resumed GET stream may stay open after our answer: cut it
    if keep and op.http_method ~= "GET" then self.aux[op.tid] = "stream" else self.transport:cancel(op.tid) end
    op.tid = nil
  end
  if op.on_done then op.on_done(op) end
end

-- Records an op's response headers as they arrive. A non-2xx status is
-- acted on at "done", once the body (which may explain it) is in.
function Session:_on_headers(op, item)
  op.status, op.headers, op.got_headers = item.status, item.headers, true
  local h = item.headers or {}
  -- the local time the Date was first seen (the one nearest its second)
  local date = h.date
  if date and date ~= self.last_date_header then self.last_date_header, self.last_date_at = date, os.time() end
  local st = item.status
  if op.is_init and st >= 200 and st < 300 then
    local sid = h["mcp-session-id"]
    if sid and sid ~= "" then self.session_id = sid end
  end
end

-- A JSON-RPC error's message with its `data` when that is text (the
-- server's own explanation, as "crypto is not defined" from a sandbox on a
-- Node too old for its SDK), the data cut to 300 bytes.
local function rpc_error_text(e)
  local text = tostring(e.message or "unknown")
  if type(e.data) == "string" and e.data ~= "" and e.data ~= text then
    text = text .. " (" .. (#e.data > 300 and e.data:sub(1, 300) .. "..." or e.data) .. ")"
  end
  return text
end

-- A JSON-RPC error code as an integer (lua-cjson decodes -32602 as the
-- float -32602.0 on 5.3+); anything else as it came.
local function rpc_code_of(c)
  if type(c) == "number" and c % 1 == 0 and c >= -2 ^ 53 and c <= 2 ^ 53 then
    return math.tointeger and math.tointeger(c) or c
  end
  return c
end
Session._rpc_code_of = rpc_code_of
Session._rpc_error_text = rpc_error_text

-- A non-2xx answer (Session:_on_http_error): favcrm.session_http_error,
-- loaded on first use (a call that succeeds never parses it).
lazy(Session, "favcrm.session_http_error", { "_on_http_error" })

-- The requests a server sends inside a response stream
-- (Session:_answer_server_request) and URL-mode elicitation:
-- favcrm.session_answer, loaded on first use.
lazy(Session, "favcrm.session_answer", { "_answer_server_request", "_elicit_known", "_elicit_mode_refused",
  "_url_elicit_result", "_url_required_error" })

local LIST_CHANGED = {
  ["notifications/tools/list_changed"] = "tools",
  ["notifications/resources/list_changed"] = "resources",
  ["notifications/prompts/list_changed"] = "prompts",
}

-- Dispatches one JSON-RPC message that arrived on an op's stream.
function Session:_on_message(op, msg)
  if type(msg) ~= "table" then return end
  if msg[1] ~= nil then -- a batch
    for _, m in ipairs(msg) do self:_on_message(op, m) end
    return
  end
  if msg.method ~= nil and msg.id ~= nil and msg.id ~= null then
    if #self.aux_queue >= AUX_QUEUE then
      self.aux_queue = {} -- answers to the stream being cut: moot
      return self:_finish(op, nil, errors.new("protocol", "the server sent requests faster than they can be "
        .. "answered (" .. AUX_QUEUE .. " answers waiting)"))
    end
    return self:_answer_server_request(op, msg)
  end
  if msg.method ~= nil then
    local p = type(msg.params) == "table" and msg.params or {}
    if msg.method == "notifications/progress" then
      local target = self.by_token[p.progressToken]
      if target and not target.done then
        target.deadline = math.min(now() + target.timeout, target.hard_deadline)
        target.budget.deadline = target.deadline
        local cb = target.on_progress or self.cb.progress
        if cb then cb(p) end
      end
    elseif msg.method == "notifications/message" then
      -- a server's log line: the key it may echo is masked (errors.redact)
      if type(p.data) == "string" then p.data = errors.redact(p.data) end
      if self.cb.log then self.cb.log(p) end
    elseif msg.method == "notifications/subscriptions/acknowledged" then
      -- the modern stream is open (subscriptions/listen): a subscribe waits for it
      if op.ack and not op.ack.done then
        op.acked = true
        self:_signal(op.ack)
      end
    elseif msg.method == "notifications/elicitation/complete" then
      -- a URL-mode elicitation finished out of band (on_elicit_complete),
      -- once, for an id this client was given (others are ignored)
      local h = self.cb.elicit_complete
      if h and self:_elicit_known(p.elicitationId, true) then
        local ok, herr = pcall(h, p)
        if not ok then op.callback_error = op.callback_error or herr end
      end
    elseif msg.method == "notifications/resources/updated" then
      -- a subscribed resource changed (client:subscribe): its handler runs
      -- here, within the pump; an error in it is raised from the wait
      local h = self.on_resource_updated
      if h then
        local ok, herr = pcall(h, p)
        if not ok then op.callback_error = op.callback_error or herr end
      end
    else
      -- notifications/{tools,resources,prompts}/list_changed: the owner's
      -- hook (client:_list_changed) drops its caches and calls its callbacks
      local kind = LIST_CHANGED[msg.method]
      if kind and self.on_list_changed then self.on_list_changed(kind, p) end
    end
    return
  end
  if msg.id == op.rpc_id and (msg.result ~= nil or msg.error ~= nil) then
    if msg.jsonrpc ~= "2.0" then
      return self:_finish(op, nil, errors.new("protocol", "the answer is not JSON-RPC 2.0 (no \"jsonrpc\": \"2.0\")"))
    end
    if msg.error ~= nil then
      local e = type(msg.error) == "table" and msg.error or {}
      local code = rpc_code_of(e.code)
      if code == -32042 then
        local uerr = Session._url_required_error(e)
        for _, el in ipairs(uerr.elicitations) do self:_elicit_known(el.elicitationId) end
        return self:_finish(op, nil, uerr, true)
      end
      if op.modern then
        if self:_modern_retry(op, code, e.data) then return end
        local mapped = era.map_error(op.method, code, rpc_error_text(e), e.data)
        if mapped then return self:_finish(op, nil, mapped, true) end
      end
      -- -32602 "Invalid params": the server refused the arguments
      return self:_finish(op, nil, errors.new(code == -32602 and "invalid_arguments" or "protocol",
        "the server answered with an error: " .. rpc_error_text(e),
        { rpc_code = code, data = e.data }), true)
    end
    local res = msg.result
    if op.modern and type(res) == "table" and res.resultType == "input_required" then
      return self:_mrtr(op, res)
    end
    return self:_finish(op, res, nil, true)
  end
  -- an answer to something else: ignored (a stray or duplicate id)
end

-- One item of the op's transfer (kind: which part of a merged item; by
-- default the item's type).
function Session:_on_item(op, item, kind)
  kind = kind or item.type
  if kind == "headers" then
    return self:_on_headers(op, item)
  elseif kind == "event" then
    if item.event_id then op.last_event_id = item.event_id ~= "" and item.event_id or nil end
    if item.retry then op.retry_ms = item.retry end
    if not (op.status and op.status >= 200 and op.status < 300) then return end
    if item.event ~= "message" or item.data == "" then return end -- priming events carry no data
    local msg = json.decode_plain(item.data)
    if msg == nil then
      return self:_finish(op, nil, errors.new("protocol", "an SSE event held invalid JSON"))
    end
    return self:_on_message(op, msg)
  end
  -- done
  self.ops[op.tid] = nil
  op.tid = nil
  if item.event_id then op.last_event_id = item.event_id ~= "" and item.event_id or nil end
  if item.retry then op.retry_ms = item.retry end
  if item.error then
    -- the transport's code, kept as it is (errors.wrap flags one not in the list)
    return self:_finish(op, nil, errors.wrap({ code = item.error,
      message = (item.error == "too_large" and "the answer was too large: " or "the request failed: ")
        .. tostring(item.message) }))
  end
  local st = op.status or item.status
  if not st or st < 200 or st >= 300 then return self:_on_http_error(op, item) end
  if op.notify then return self:_finish(op, true, nil) end
  if item.sse or (op.headers and (op.headers["content-type"] or ""):find("^text/event%-stream")) then
    -- the stream ended without our answer: resume from the last event id
    if op.last_event_id and op.resumes < MAX_RESUMES and self.session_id and not op.modern then
      op.resumes = op.resumes + 1
      op.resume_at = now() + op.retry_ms / 1000
      return
    end
    if op.modern and op.resumes < MAX_RESUMES and (op.reissue or era.REISSUE[op.method]) then
      -- no resumption in the modern era: a read-only request goes again,
      -- as a new request with a new id (streamable-http, changelog item 9)
      op.resumes = op.resumes + 1
      self:_encode(op)
      return self:_launch(op)
    end
    return self:_finish(op, nil, errors.new("protocol",
      "the server's event stream ended before the answer arrived"))
  end
  local ct = op.headers and op.headers["content-type"] or ""
  if st == 202 or (item.body == nil or item.body == "") then
    return self:_finish(op, nil, errors.new("protocol", "the server sent no answer (HTTP " .. st .. ")"))
  end
  if not (ct:find("^application/json") or ct:lower():find("^application/json")) then
    return self:_finish(op, nil, errors.new("protocol",
      "unexpected Content-Type '" .. ct .. "' (expected JSON or an event stream)"))
  end
  local msg = json.decode_plain(item.body)
  if msg == nil then
    return self:_finish(op, nil, errors.new("protocol", "the server's answer is not valid JSON"))
  end
  self:_on_message(op, msg)
  if not op.done and not op.tid and not op.reinit then
    return self:_finish(op, nil, errors.new("protocol", "the server's answer did not carry our request id"))
  end
end

function Session:_timeout(op)
  local rpc_id = op.rpc_id
  self:_finish(op, nil, errors.new("timeout",
    "no answer to " .. op.method .. " within " .. op.timeout .. " s"))
  if rpc_id and not op.notify and not op.is_probe then
    self:_send_aux({ jsonrpc = "2.0", method = "notifications/cancelled",
      params = { requestId = rpc_id, reason = "timeout" } })
  end
end

function Session:_fire_timers(t)
  -- collected first, as in pump: a woken flow may add a timer
  local due, ndue = {}, 0
  for tm in pairs(self.timers) do
    if t >= tm.wake_at then
      ndue = ndue + 1
      due[ndue] = tm
    end
  end
  for i = 1, ndue do
    local tm = due[i]
    self.timers[tm] = nil
    self:_signal(tm)
  end
end

--- Session:sleep(seconds): waits without blocking other flows (an async
-- handle yields; a blocking caller pumps the transport meanwhile).
function Session:sleep(seconds)
  local tm = { done = false, wake_at = now() + seconds }
  self.timers[tm] = true
  self:wait(tm)
end

-- Every op waiting without a transfer (to resume, or for a new session)
-- whose deadline has come: timed out.
function Session:_expire_idle(t)
  local resuming = self.resuming
  if not resuming then return end
  local late, nlate = {}, 0
  for op in pairs(resuming) do
    if not op.done and t >= math.min(op.deadline, op.hard_deadline) then
      nlate = nlate + 1
      late[nlate] = op
    end
  end
  for i = 1, nlate do self:_timeout(late[i]) end
end

--- Session:next_deadline() -> the monotonic time by which pump() should
-- run again (a timeout or a reconnect), or nil.
function Session:next_deadline()
  local soonest
  for _, op in pairs(self.ops) do
    local d = math.min(op.deadline, op.hard_deadline)
    if not soonest or d < soonest then soonest = d end
  end
  if self.resuming then
    for op in pairs(self.resuming) do
      local d = math.min(op.resume_at or math.huge, op.deadline, op.hard_deadline)
      if not soonest or d < soonest then soonest = d end
    end
  end
  for tm in pairs(self.timers) do
    if not soonest or tm.wake_at < soonest then soonest = tm.wake_at end
  end
  return soonest
end

--- Session:pump(max_wait_s): advances every op and auxiliary transfer for
-- at most max_wait_s seconds (0: do what is ready and return).
function Session:pump(max_wait)
  local t = now()
  local wait = max_wait or 0
  -- deadlines, resumes (and how long poll may wait, when no op is over)
  local soonest, over = t + wait, false
  for _, op in pairs(self.ops) do
    local d, hd = op.deadline, op.hard_deadline
    if hd < d then d = hd end
    if t >= d then
      over = true
      break
    end
    if d < soonest then soonest = d end
  end
  if over then
    -- collected first: timing an op out may start another (its on_done, the
    -- notifications/cancelled over stdio), and a key added to self.ops while
    -- pairs walks it stops the walk with "invalid key to 'next'"
    local late, nlate = {}, 0
    for _, op in pairs(self.ops) do
      if op.deadline and t >= math.min(op.deadline, op.hard_deadline) then
        nlate = nlate + 1
        late[nlate] = op
      end
    end
    for i = 1, nlate do self:_timeout(late[i]) end
  end
  local resuming = self.resuming
  if resuming then
    self:_expire_idle(t)
    for op in pairs(resuming) do
      if op.done then resuming[op] = nil end
    end
  end
  local timers = self.timers
  if next(timers) ~= nil then self:_fire_timers(t) end
  if over or resuming then
    -- ops may have ended or started since: the wait is worked out again
    soonest = t + wait
    for _, op in pairs(self.ops) do
      local d, hd = op.deadline, op.hard_deadline
      if d < soonest then soonest = d end
      if hd < soonest then soonest = hd end
    end
  end
  for tm in pairs(timers) do
    soonest = math.min(soonest, tm.wake_at)
  end
  if resuming then
    for op in pairs(resuming) do
      soonest = math.min(soonest, op.resume_at or math.huge, op.deadline, op.hard_deadline)
    end
  end
  local ms = math.max(0, math.floor((soonest - t) * 1000 + 0.5))
  -- merged: the C transport hands a transfer's headers, last event and
  -- end over in one table where they follow each other (a Lua transport
  -- ignores the flag); each part is taken in the order it came
  self:_take_all(self.transport:poll(ms, true))
  if next(self.timers) ~= nil then self:_fire_timers(now()) end
  local l = self.listen
  if l then
    self:_listen_tick()
    if l.callback_error and self.era == "modern" then
      -- a handler that failed on the subscriptions/listen stream: raised
      -- from the call (or step) that pumped it, as one on a call's stream
      local e = l.callback_error
      l.callback_error = false
      error(e, 0)
    end
  end
  -- reconnects that are due
  if self.resuming then
    local t2 = now()
    for op in pairs(self.resuming) do
      if op.done then
        self.resuming[op] = nil
      elseif t2 >= op.resume_at then
        self.resuming[op] = nil
        op.resume_at = nil
        op.http_method = "GET"
        op.extra_headers, op.full_headers = { "Last-Event-ID: " .. op.last_event_id }, false
        self:_launch(op)
      end
    end
  end
end

-- The items of one poll, merged ones taken part by part in the order the
-- parts came.
function Session:_take_all(items)
  for _, item in ipairs(items) do
    local ty = item.type
    if item.headers ~= nil and ty ~= "headers" then self:_take(item, "headers") end
    if item.data ~= nil and ty == "done" then self:_take(item, "event") end
    self:_take(item, ty)
  end
end

-- One item (or, kind naming it, one part of a merged item) of a transfer:
-- to its op, to the auxiliary transfers, or to the standalone stream.
function Session:_take(item, kind)
  local op = self.ops[item.id]
  if op then
    self:_on_item(op, item, kind)
    if op.resume_at and not op.done and not op.tid and not op.reinit then
      self.resuming = self.resuming or {}
      self.resuming[op] = true
    end
  elseif self.aux[item.id] and kind == "done" then
    self:_aux_done(item.id)
  elseif self.listen then
    self:_listen_item(item, kind)
  end
end

-- Waits for every auxiliary transfer (answers, notifications) to finish,
-- for at most ms milliseconds.
function Session:drain(ms)
  local deadline = now() + (ms or DRAIN_MS) / 1000
  while next(self.aux) ~= nil and now() < deadline do
    local items = self.transport:poll(math.max(1, math.floor((deadline - now()) * 1000)))
    for _, item in ipairs(items) do
      if item.type == "done" then self:_aux_done(item.id) end
      local op = self.ops[item.id]
      if op then self:_on_item(op, item)
      elseif self.listen then self:_listen_item(item) end
    end
  end
end

--- Session:wait(op [, budget]): pumps until op is done; returns result or
-- nil, err. With a budget, a waitable that is not an op (a gate, a timer)
-- is waited for at most until the budget's deadline (an op has its own).
-- An op refused with 401/403 while OAuth is on: favcrm.oauth gets new
-- tokens (or says why not) and the op is sent again. -> true when relaunched.
function Session:_oauth_retry(op)
  local e = op.err
  if not (self.oauth and op.method and not op.is_init and e and e.code == "unauthorized"
    and e.status and e.reason == nil and not op.drop_auth) then return false end
  local ok, aerr = self.oauth:handle(e.status, e.www_authenticate, op.sent_auth or nil, op.auth_tries, op.budget)
  op.auth_tries = op.auth_tries + 1
  if not ok then
    op.err = aerr
    return false
  end
  -- the person's wait moved the budget on
  op.deadline, op.hard_deadline = op.budget.deadline, op.budget.hard
  op.done, op.result, op.err = false, nil, nil
  if op.progress_token then self.by_token[op.progress_token] = op end
  self:_launch(op)
  return true
end

function Session:wait(op, budget)
  -- no async handle, no need to ask (coroutine.running ends a LuaJIT trace)
  local co = next(self.async_cos) ~= nil and coroutine.running() or nil
  local async = co and self.async_cos[co]
  local tm
  if budget and not op.done and not op.method then
    tm = { done = false, wake_at = math.min(budget.deadline, budget.hard) }
    self.timers[tm] = true
  end
  repeat
    if async then
      -- inside an async handle: the client's step() resumes us when op (or
      -- the budget's timer) is done
      while not op.done and not (tm and tm.done) do coroutine.yield(op, tm) end
    else
      while not op.done and not (tm and tm.done) do
        self:pump(1)
        if self.after_pump then self.after_pump() else self.signaled = {} end
      end
    end
  until not (op.done and self.oauth and op.err and self:_oauth_retry(op))
  if tm then
    self.timers[tm] = nil
    if self.forget then self.forget(tm) end
    if not op.done then
      return nil, errors.new("timeout", "the call did not finish within its timeout of " .. budget.timeout .. " s")
    end
  end
  if op.callback_error then error(op.callback_error, 0) end
  -- our notifications/cancelled gets a moment to leave (a blocking call only)
  if op.err and op.err.code == "timeout" and not async then self:drain(CANCEL_DRAIN_MS) end
  return op.result, op.err
end

-- Starts the initialization (or joins the one under way); returns its gate
-- ({done}), without waiting.
function Session:_start_init()
  local gate = self.init_gate
  if self.initialized then return { done = true, after = {} } end
  if not gate then
    -- one initialization, shared by every flow that needs it; it is over
    -- (gate.done) once the era is known (favcrm.era) and, for a legacy
    -- server, once it has taken notifications/initialized too, because
    -- some servers only finish setting up a session then
    gate = { done = false, after = {} }
    self.init_gate, self.init_err = gate, nil
    local function over(err)
      if err then self.init_err = err else self.initialized = true end
      local sh = self.shared
      if not err and sh and not sh.initialized and self.era ~= "modern" then
        sh.session_id, sh.protocol_version = self.session_id, self.protocol_version
        sh.server_info, sh.server_capabilities = self.server_info, self.server_capabilities
        sh.instructions, sh.initialized = self.instructions, true
      end
      self:_signal(gate)
      self.init_gate = nil
      if not err and self:_wants_listen() then self:_listen_start() end
      for _, fn in ipairs(gate.after) do fn() end
    end
    -- the era: pinned by opts.protocol, remembered for this origin (or
    -- stdio server process), or probed with server/discover
    local want = self.want
    local verdict = want == "auto" and not self.force_legacy and era.cached(self:_era_key()) or nil
    if want == era.MODERN or (verdict and verdict.era == "modern") then
      self:_set_modern(verdict and verdict.info, verdict and verdict.caps, verdict and verdict.instructions)
      over(nil)
    elseif want == era.LEGACY or self.force_legacy or (verdict and verdict.era == "legacy") then
      self:_legacy_init(over)
    else
      self:_probe(over, false)
    end
  end
  return gate
end

-- The era probe (server/discover, when the era is neither pinned nor
-- remembered), and what sends an op again when the era or the session it
-- assumed no longer holds: favcrm.session_negotiate, loaded on first use.
lazy(Session, "favcrm.session_negotiate", { "_probe", "_after_init", "_detach", "_modern_retry",
  "_renegotiate", "_relaunch_after_init" })

-- The legacy handshake: initialize, then notifications/initialized.
function Session:_legacy_init(over)
  self.era = "legacy"
  local caps = {}
  if self.cb.elicit then caps.elicitation = self:_elicit_caps() end
  if self.cb.sample then caps.sampling = {} end
  if self.cb.roots then caps.roots = { listChanged = false } end
  local op = self:start_request("initialize", {
    protocolVersion = Session.PROTOCOL_VERSION,
    capabilities = caps,
    clientInfo = self.client_info,
  }, { timeout = self.timeout })
  op.is_init = true
  self.init_op = op -- (OAuth: initialize() authorizes after its 401)
  op.on_done = function(o)
    local res = o.result
    if not res then return over(o.err) end
    local v = res.protocolVersion
    if not Session.SUPPORTED_VERSIONS[v] then
      return over(errors.new("protocol", "the server speaks MCP protocol version " .. tostring(v)
        .. ", which this client does not support", { server_version = v }))
    end
    self.protocol_version = v
    self.server_info = res.serverInfo
    self.server_capabilities = res.capabilities
    self.instructions = res.instructions
    local n = self:start_request("notifications/initialized", nil, { notify = true, timeout = self.timeout })
    n.on_done = function(no) over(no.err) end
    if n.done then n.on_done(n) end
  end
  if op.done then op.on_done(op) end
end

-- A modern op's input_required result (multi-round-trip requests):
-- favcrm.session_mrtr, loaded on first use.
lazy(Session, "favcrm.session_mrtr", { "_mrtr" })

--- Session:initialize([budget]) -> true or nil, err. Idempotent. The
-- initialization runs on the client's timeout; a caller waits for it at
-- most until its budget's deadline.
function Session:initialize(budget)
  if self.initialized then return true end
  local tries = 0
  while true do
    local gate = self:_start_init()
    local _, err = self:wait(gate, budget)
    if err then return nil, err end
    if self.initialized then return true end
    local e, op = self.init_err, self.init_op
    -- OAuth: a 401 on initialize is authorized like any request's
    if not (self.oauth and e and e.code == "unauthorized" and e.status and e.reason == nil and op) then
      return nil, e
    end
    local b = budget or self:budget()
    local ok, aerr = self.oauth:handle(e.status, e.www_authenticate, op.sent_auth or nil, tries, b)
    tries = tries + 1
    if not ok then return nil, aerr end
  end
end

--- Session:request(method, params, opts) -> result or nil, err (blocking).
-- opts.budget (Session:budget) bounds the initialize too.
function Session:request(method, params, opts)
  local ok, err = self:initialize(opts and opts.budget)
  if not ok then return nil, err end
  return self:wait(self:start_request(method, params, opts))
end

--- Session:close(): ends the session on the server (DELETE; 405 is fine),
-- unless it is the one shared through opts.shared, and frees the
-- transport. Never raises; idempotent.
function Session:close()
  if self.closed then return end
  self.closed = true
  if self.listen then self:_listen_stop() end
  for tid in pairs(self.ops) do pcall(self.transport.cancel, self.transport, tid) end
  self.ops = {}
  -- answer streams that outlive their answer are cut; notifications and
  -- answers we sent may finish (bounded below)
  for tid, kind in pairs(self.aux) do
    if kind == "stream" then
      pcall(self.transport.cancel, self.transport, tid)
      self.aux[tid] = nil
    end
  end
  local sh = self.shared
  if self.session_id and not (sh and sh.initialized and sh.session_id == self.session_id) then
    -- (a shared session lives on for the next clients)
    local ok, tid = pcall(self.transport.start, self.transport, {
      method = "DELETE", url = self.url, headers = self:_headers(), auth = self:_auth(),
      timeout_ms = 2000,
    })
    if ok and tid then self.aux[tid] = true end
  end
  pcall(self.drain, self, 2000)
  self.session_id = nil
  pcall(self.transport.close, self.transport)
end

-- ---- the standalone stream (Streamable HTTP, issue 15) ----------------------
-- Whether one is wanted (asked after every initialize) and whether one is
-- open stay here; the stream itself (opening, reading, reopening, closing:
-- the _listen_* methods) is favcrm.session_listen, loaded the first time
-- one is wanted.

-- Whether the standalone stream is wanted (favcrm.session_listen says when).
function Session:_wants_listen()
  if self.listen_opt ~= nil then return self.listen_opt == true end
  local cb = self.cb
  -- stdio: always (what the server writes between calls is read there)
  if type(self.transport) == "table" and self.transport.idle_stream == true then return true end
  if self.era == "modern" then
    -- modern: subscriptions/listen carries change notifications only (the
    -- server's input requests come in results, its log lines with a call)
    return type(self.transport) == "userdata" and (self.on_resource_updated or self.listen_for_changes) ~= nil
  end
  return type(self.transport) == "userdata"
    and (cb.elicit or cb.sample or cb.roots or cb.log or self.on_resource_updated
      or self.listen_for_changes) ~= nil
end

lazy(Session, "favcrm.session_listen", { "_listen_start", "_listen_filter", "_listen_restart", "_modern_listen",
  "_listen_launch", "_listen_again", "_listen_stop", "_listen_item", "_listen_tick", "listen_acked" })

--- Session:listening() -> true while the standalone stream is open or
-- about to be reopened.
function Session:listening()
  local l = self.listen
  return l ~= nil and not l.stopped and (l.tid ~= false or l.timer ~= false)
end

-- ---- URL-mode elicitation (2025-11-25, issue 15): favcrm.session_answer ---

-- The elicitation capability: {} (form only, as before 2025-11-25, which
-- every server reads as form) or the modes named.
function Session:_elicit_caps()
  local m = self.elicit_modes
  if m.url then
    local caps = { url = {} }
    if m.form then caps.form = {} end
    return caps
  end
  return {}
end

return Session
