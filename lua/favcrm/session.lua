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

local Session = {}
Session.__index = Session

Session.PROTOCOL_VERSION = "2025-11-25"
Session.SUPPORTED_VERSIONS = {
  ["2025-11-25"] = true, ["2025-06-18"] = true,
  ["2025-03-26"] = true, ["2024-11-05"] = true,
}

local MAX_RESUMES = 3
local MAX_REDIRECTS = 3
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
-- the fixed parts of a tools/call's JSON text (Session:_encode)
local TOOLS_CALL_HEAD = '{"jsonrpc":"2.0","id":'
local TOOLS_CALL_NAME = ',"method":' .. json.wire("tools/call") .. ',"params":{"name":'

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
  if modern then req.headers = self:_tool_headers(name, e) else req.headers = self:_headers() end
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
    e = { json = nj, headers = false, common = false, noargs = TOOLS_CALL_NAME .. nj .. ',"arguments":{}}}',
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
    if not modern then return TOOLS_CALL_HEAD .. rpc_id .. e.noargs end
    local mj = self:_meta_json(self.protocol_version or era.MODERN)
    if e.noargs_meta ~= mj then
      e.noargs_meta, e.noargs_modern = mj, TOOLS_CALL_NAME .. e.json .. ',"arguments":{},"_meta":' .. mj .. "}}"
    end
    return TOOLS_CALL_HEAD .. rpc_id .. e.noargs_modern
  end
  local aj, jerr = json.wire(args)
  if not aj then
    error("favcrm: cannot encode the request as JSON: " .. tostring(jerr), level)
  end
  local tail = "}}"
  if modern then tail = ',"_meta":' .. self:_meta_json(self.protocol_version or era.MODERN) .. "}}" end
  return TOOLS_CALL_HEAD .. rpc_id .. TOOLS_CALL_NAME .. e.json .. ',"arguments":' .. aj .. tail
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

-- The JSON-RPC error in an HTTP error body: its text, code and data.
local function rpc_error_message(body)
  local msg = body and json.decode_plain(body)
  if type(msg) == "table" and type(msg.error) == "table" and type(msg.error.message) == "string" then
    return rpc_error_text(msg.error), rpc_code_of(msg.error.code), msg.error.data
  end
end

-- Turns a non-2xx answer into the op's end (or a relaunch).
function Session:_on_http_error(op, item)
  local st = op.status or item.status
  local h = op.headers or {}
  local smsg, rpc_code, rpc_data = rpc_error_message(item.body)
  local detail = smsg and (": " .. smsg) or ""
  if st == 404 and op.sent_session and not op.replayed and not op.is_init then
    -- the server forgot our session: start a new one and replay once. The
    -- op waits for it among the ops without a transfer (its deadline still
    -- checked), so no pump blocks on the new initialize
    op.replayed = true
    local sh = self.shared
    if sh and sh.initialized and sh.session_id == op.sent_session then sh.initialized = false end
    if self.session_id == op.sent_session then
      self.session_id, self.initialized, self.protocol_version = nil, false, nil
    end
    return self:_relaunch_after_init(op, false)
  elseif st == 404 and op.sent_session then
    return self:_finish(op, nil, errors.new("session_expired",
      "the server no longer knows this session and a fresh one failed too", { status = st }))
  elseif (st == 307 or st == 308) and h.location then
    if op.redirects >= MAX_REDIRECTS then
      return self:_finish(op, nil, errors.new("http", "too many redirects", { status = st }))
    end
    op.redirects = op.redirects + 1
    local target = urls.resolve(op.url or self.url, h.location)
    local ok_url, why = urls.check(target)
    if not ok_url then
      return self:_finish(op, nil, errors.new("http", "refused a redirect: its target " .. why .. " (got "
        .. (target:match("^[%w+.-]*:") or "a relative reference") .. "...)", { status = st }))
    end
    if urls.origin(target) ~= urls.origin(self.url) then op.drop_auth = true end
    op.url = target
    return self:_launch(op)
  elseif st == 401 or st == 403 then
    -- with OAuth, Session:wait (or initialize) hands this to favcrm.oauth,
    -- which authorizes (or refreshes, or steps up) and the request is sent again
    local what
    if self.oauth then what = st == 403 and "the OAuth token may not do this" or "the server wants OAuth authorization"
    elseif st == 403 then what = "the API key may not do this"
    elseif self.auth == nil or op.drop_auth then what = "this needs an API key and none was sent"
    else what = "the server refused the API key" end
    local wa = h["www-authenticate"]
    return self:_finish(op, nil, errors.new("unauthorized", what .. detail,
      { status = st, www_authenticate = wa,
        -- where OAuth is offered (RFC 9728): an application may use the oauth option
        resource_metadata = wa and require("favcrm.oauth").resource_metadata_of(wa) or nil,
        hint = not self.oauth and ("check FAVCRM_API_KEY; if the key was revoked or leaked, revoke it in the "
          .. "FavCRM portal (Settings, MCP Keys) and issue a new one") or nil }))
  elseif op.modern and rpc_code ~= nil and self:_modern_retry(op, rpc_code, rpc_data) then
    return
  elseif op.modern and (st == 400 or st == 404 or st == 405) and not op.is_probe and not op.renegotiated
    and self.want == "auto" and not era.map_error(op.method, rpc_code, "", rpc_data)
    and rpc_code ~= -32602 then
    -- the era remembered for this origin no longer holds (the server was
    -- replaced by an older one): negotiate again, then send the op once more
    return self:_renegotiate(op)
  elseif op.modern and rpc_code ~= nil and era.map_error(op.method, rpc_code, smsg, rpc_data) then
    return self:_finish(op, nil, era.map_error(op.method, rpc_code, smsg, rpc_data, { status = st }))
  elseif op.modern and st == 400 and rpc_code == -32602 then
    return self:_finish(op, nil, errors.new("invalid_arguments", "the server refused the request" .. detail,
      { status = st, rpc_code = rpc_code, data = rpc_data }))
  elseif st == 429 then
    local ra = tonumber(h["retry-after"])
    if ra then ra = math.floor(ra) end
    return self:_finish(op, nil, errors.new("rate_limited",
      "the server is rate limiting this client" .. (ra and ("; retry in " .. ra .. " s") or "") .. detail,
      { status = st, retry_after = ra }))
  end
  return self:_finish(op, nil, errors.new("http", "HTTP " .. tostring(st) .. detail,
    { status = st, retry_after = tonumber(h["retry-after"]), rpc_code = rpc_code, data = rpc_data }))
end

-- Answers a request the server sent us inside a response stream.
function Session:_answer_server_request(op, msg)
  local m = msg.method
  local handler, result
  if m == "ping" then
    result = {}
  else
    if m == "elicitation/create" then
      handler = self.cb.elicit
      local bad_mode = handler and self:_elicit_mode_refused(msg.params)
      if bad_mode then
        return self:_send_aux({ jsonrpc = "2.0", id = msg.id, error = { code = -32602,
          message = "Invalid params: this client does not support elicitation mode " .. bad_mode } })
      end
    elseif m == "sampling/createMessage" then handler = self.cb.sample
    elseif m == "roots/list" then handler = self.cb.roots end
    if handler then
      local ok, res = pcall(handler, msg.params or {}, op) -- op: the request it came with
      if not ok then
        op.callback_error = op.callback_error or res
        return self:_send_aux({ jsonrpc = "2.0", id = msg.id,
          error = { code = -32603, message = "the client's handler failed" } })
      end
      result = res
      if m == "elicitation/create" and type(msg.params) == "table" and msg.params.mode == "url" then
        result = Session._url_elicit_result(result)
        if result.action == "accept" then self:_elicit_known(msg.params.elicitationId) end
      else
        result = era.normalize_answer(m, msg.params, result)
      end
    end
  end
  if result == nil then
    return self:_send_aux({ jsonrpc = "2.0", id = msg.id,
      error = { code = -32601, message = "Method not found: " .. tostring(m) } })
  end
  return self:_send_aux({ jsonrpc = "2.0", id = msg.id, result = result })
end

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

-- Calls fn once the initialization `gate` is over (at once if it is).
function Session._after_init(_, gate, fn)
  if gate.done then return fn() end
  gate.after[#gate.after + 1] = fn
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
      if not err then self:_listen_start() end
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

-- The era probe (versioning: Backward Compatibility): server/discover sent
-- the modern way. A DiscoverResult that lists 2026-07-28 means modern; a
-- -32022 that lists it is answered by one more probe; an HTTP 400/404/405
-- without a recognised modern error (or, over stdio, any error or no
-- answer in time) means a legacy server: the initialize handshake follows.
-- The verdict is remembered per origin (HTTP) or server process (stdio).
function Session:_probe(over, retried)
  self.protocol_version = era.MODERN -- the probe's MCP-Protocol-Version
  local stdio = self:_is_stdio()
  local op = self:start_request("server/discover", nil,
    { timeout = stdio and math.min(self.timeout, 10) or self.timeout, modern = true })
  op.is_probe = true
  self.init_op = op -- (OAuth: initialize() authorizes after its 401)
  op.on_done = function(o)
    local verdict = era.classify(o.result, o.err, stdio)
    if verdict == "retry" and not retried then return self:_probe(over, true) end
    if verdict == "modern" then
      local r = o.result
      local meta = type(r._meta) == "table" and r._meta or {}
      local info = meta["io.modelcontextprotocol/serverInfo"]
      if type(info) ~= "table" then info = type(r.serverInfo) == "table" and r.serverInfo or nil end
      local caps = type(r.capabilities) == "table" and r.capabilities or {}
      local instructions = type(r.instructions) == "string" and r.instructions or nil
      self:_set_modern(info, caps, instructions)
      era.remember(self:_era_key(), { era = "modern", info = info, caps = caps, instructions = instructions })
      return over(nil)
    end
    self.protocol_version = nil
    if verdict == "legacy" then
      era.remember(self:_era_key(), { era = "legacy" })
      return self:_legacy_init(over)
    end
    return over(o.err or errors.new("protocol", "the server's server/discover lists no protocol version "
      .. "this client speaks (" .. era.MODERN .. " or " .. era.LEGACY .. ")",
      { supported = type(o.result) == "table" and o.result.supportedVersions or nil }))
  end
  if op.done then op.on_done(op) end
end

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

-- An op's transfer is no longer its own (it is sent again): the answer
-- stream ends by itself as an auxiliary transfer.
function Session:_detach(op)
  if op.tid then
    self.ops[op.tid] = nil
    self.aux[op.tid] = "stream"
    op.tid = false
  end
end

-- A modern op met -32022: once more with a version the server lists
-- (2026-07-28 again), or, in auto mode, the legacy era when it lists only
-- those. Returns true when it took the op over.
function Session:_modern_retry(op, code, data)
  if code ~= era.UNSUPPORTED_VERSION or op.is_probe then return false end
  local supported = era.supported_of({ rpc_code = code, data = data })
  if not supported then return false end
  for _, v in ipairs(supported) do
    if v == era.MODERN and not op.version_retry then
      op.version_retry = true
      self:_detach(op)
      self:_encode(op)
      self:_launch(op)
      return true
    end
  end
  if self.want == "auto" and not op.renegotiated and era.legacy_from({ rpc_code = code, data = data }) then
    self.force_legacy = true
    self:_renegotiate(op)
    return true
  end
  return false
end

-- The era this session assumed does not hold: forget it, negotiate again
-- (the op waits among the ops without a transfer, its deadline still
-- checked), then send the op once more the way the new era wants.
function Session:_renegotiate(op)
  op.renegotiated = true
  self:_detach(op)
  era.remember(self:_era_key(), nil)
  if self.initialized then
    self.era, self.initialized, self.protocol_version, self.session_id = nil, false, nil, nil
    if self.shared then self.shared.era, self.shared.initialized = nil, false end
  end
  return self:_relaunch_after_init(op, true)
end

-- Parks op among the ops without a transfer (its deadline still checked,
-- so no pump blocks on the new initialize) until a new initialization is
-- over, then sends it once more (with `reencode`, rebuilt the way the era
-- found wants), or ends it with the initialization's error.
function Session:_relaunch_after_init(op, reencode)
  op.reinit, op.resume_at = true, math.huge
  self.resuming = self.resuming or {}
  self.resuming[op] = true
  return self:_after_init(self:_start_init(), function()
    if op.done then return end
    self.resuming[op] = nil
    op.reinit, op.resume_at = false, nil
    if not self.initialized then return self:_finish(op, nil, self.init_err) end
    if reencode then
      op.modern = self.era == "modern"
      op.mrtr_responses, op.mrtr_state = false, false
      self:_encode(op)
    end
    return self:_launch(op)
  end)
end

-- A modern op's result asked for input (basic/patterns/mrtr): the on_*
-- callbacks answer the server's input requests, then the op goes again
-- with a new id, the answers and the server's requestState unchanged.
-- At most era.MAX_MRTR_ROUNDS rounds, all within the op's deadline.
function Session:_mrtr(op, res)
  local function fail(msg, fields)
    return self:_finish(op, nil, errors.new("protocol", msg, fields), true)
  end
  if not era.MRTR_METHODS[op.method] then
    return fail("the server answered " .. op.method .. " with input_required, which only tools/call, "
      .. "resources/read and prompts/get may")
  end
  op.rounds = op.rounds + 1
  if op.rounds > era.MAX_MRTR_ROUNDS then
    return fail(op.method .. " still required input after " .. era.MAX_MRTR_ROUNDS .. " rounds",
      { rounds = era.MAX_MRTR_ROUNDS })
  end
  local reqs, state = res.inputRequests, res.requestState
  if reqs == null then reqs = nil end
  if state == null then state = nil end
  if (reqs ~= nil and type(reqs) ~= "table") or (state ~= nil and type(state) ~= "string")
    or (reqs == nil and state == nil) then
    return fail("the server's input_required result is malformed (inputRequests must be an object, "
      .. "requestState a string, and one of them present)")
  end
  local answers
  if reqs then
    answers = {}
    local n = 0
    for key, r in pairs(reqs) do
      n = n + 1
      if n > era.MAX_INPUT_REQUESTS then
        return fail("the server asked for more than " .. era.MAX_INPUT_REQUESTS .. " inputs at once")
      end
      if type(key) ~= "string" or type(r) ~= "table" or type(r.method) ~= "string" then
        return fail("the server's inputRequests holds an entry that is not a request")
      end
      local ok, answer, why = pcall(era.answer, self.cb, r.method, r.params)
      if not ok then
        op.callback_error = op.callback_error or answer
        return fail("the client's handler for " .. r.method .. " failed")
      end
      if answer == nil then
        return fail("the server asked for " .. r.method .. ", which this client did not declare (no on_* "
          .. "callback for it)", { input = key, why = why })
      end
      answers[key] = answer
    end
  end
  self:_detach(op)
  op.mrtr_responses = answers or false
  op.mrtr_state = state or false
  self:_encode(op)
  return self:_launch(op)
end

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
  self:_listen_stop()
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
--
-- After initialize the client may open a GET event stream on which the
-- server sends requests and notifications that belong to no call (an
-- elicitation a tool asks for without tying it to the call, a log line at
-- idle). It is opened when there is something to receive there: opts.listen
-- = true, or (auto) an on_elicit/on_sample/on_roots/on_log/on_*_changed
-- callback with the libcurl transport (a request-level transport, as one per
-- OpenResty request, opens none unless told); over stdio always (its
-- transport says idle_stream), unless listen = false. At most one; a 405 (and a 404, 401, 403
-- or other 4xx) means no stream: none is opened again until the next
-- initialize. A stream that ends is reopened after its SSE `retry` (default
-- LISTEN_RETRY_MS) with Last-Event-ID; a failure waits twice as long each
-- time (at most LISTEN_MAX_BACKOFF s) and after LISTEN_MAX_FAILURES in a row
-- the stream is given up. Nothing runs between calls in a blocking client:
-- what arrives is handled at the next pump (a call, step(), watch()).
-- It is not an op (no deadline, never waited on): the pump hands its items
-- to _listen_item and reopens it from _listen_tick once its timer is due.
local LISTEN_RETRY_MS = 1000
local LISTEN_MAX_BACKOFF = 30
local LISTEN_MAX_FAILURES = 8

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

--- Session:_listen_start(): opens the standalone stream when wanted (after
-- initialize). Idempotent: at most one stream.
function Session:_listen_start()
  if self.closed or not self:_wants_listen() then return end
  local l = self.listen
  if l and not l.stopped then return end
  self.listen = {
    -- the fields _on_message and _finish read on an op
    rpc_id = false, done = false, tid = false, progress_token = false, on_done = false,
    callback_error = false, method = "the standalone stream",
    status = false, headers = false, last_event_id = false,
    retry_ms = LISTEN_RETRY_MS, failures = 0, timer = false, stopped = false, opened = 0,
  }
  self:_listen_launch()
end

-- The notification filter of subscriptions/listen (modern era): the list
-- changes when something wants them, and the subscribed resources.
function Session:_listen_filter()
  local f = {}
  if self.listen_for_changes or self.listen_opt == true then
    f.toolsListChanged, f.promptsListChanged, f.resourcesListChanged = true, true, true
  end
  local uris = {}
  for uri in pairs(self.subscribed or {}) do uris[#uris + 1] = uri end
  table.sort(uris)
  if #uris > 0 then f.resourceSubscriptions = uris end
  return f
end

--- Session:_listen_restart(): the modern stream again with the current
-- filter (after subscribe/unsubscribe), or the legacy one opened if wanted.
function Session:_listen_restart()
  if self.era == "modern" then self:_listen_stop() end
  self:_listen_start()
end

-- Modern: whether the stream is a subscriptions/listen request (always over
-- HTTP; over stdio when something is subscribed to, else the transport's
-- idle stream, which carries what the server writes between calls).
function Session:_modern_listen()
  if self.era ~= "modern" then return false end
  if not self:_is_stdio() then return true end
  return (self.on_resource_updated or self.listen_for_changes) ~= nil
end

function Session:_listen_launch()
  local l = self.listen
  if self:_modern_listen() then
    -- 2026-07-28: a POST of subscriptions/listen whose response stream stays open
    local counter = self.shared or self
    counter.next_rpc = (counter.next_rpc or 0) + 1
    local params = { notifications = self:_listen_filter(), _meta = era.meta(self, era.MODERN) }
    local body = json.wire({ jsonrpc = "2.0", id = counter.next_rpc, method = "subscriptions/listen",
      params = params })
    l.status, l.headers, l.done = false, false, false
    l.ack, l.acked = { done = false }, false -- notifications/subscriptions/acknowledged
    local tid = self.transport:start({
      method = "POST", url = self.url, headers = self:_headers(era.request_headers("subscriptions/listen")),
      body = body, auth = self:_auth(), timeout_ms = self:_hard_timeout_ms(),
    })
    if not tid then return self:_listen_again(true) end
    l.tid = tid
    l.opened = l.opened + 1
    return
  end
  local h = {}
  for _, line in ipairs(self:_headers()) do
    local name = (line:match("^([^:]*):") or ""):lower()
    if name ~= "accept" and name ~= "content-type" then h[#h + 1] = line end
  end
  h[#h + 1] = "Accept: text/event-stream"
  if l.last_event_id then h[#h + 1] = "Last-Event-ID: " .. l.last_event_id end
  l.status, l.headers, l.done = false, false, false
  local tid = self.transport:start({
    method = "GET", url = self.url, headers = h, auth = self:_auth(),
    timeout_ms = self:_hard_timeout_ms(),
  })
  if not tid then return self:_listen_again(true) end
  l.tid = tid
  l.opened = l.opened + 1
end

-- Schedules the next attempt (a failure backs off), or gives up.
function Session:_listen_again(failed)
  local l = self.listen
  l.tid = false
  if l.ack and not l.ack.done then self:_signal(l.ack) end
  local delay = l.retry_ms / 1000
  if failed then
    l.failures = l.failures + 1
    if l.failures >= LISTEN_MAX_FAILURES then return self:_listen_stop() end
    delay = math.min(math.max(delay, 1) * 2 ^ (l.failures - 1), LISTEN_MAX_BACKOFF)
  end
  l.timer = { done = false, wake_at = now() + delay }
  self.timers[l.timer] = true
end

--- Session:_listen_stop(): closes the standalone stream for good (until the
-- next initialize opens another).
function Session:_listen_stop()
  local l = self.listen
  if not l then return end
  l.stopped = true
  if l.ack and not l.ack.done then self:_signal(l.ack) end
  if l.tid then pcall(self.transport.cancel, self.transport, l.tid) end
  l.tid = false
  if l.timer then self.timers[l.timer] = nil end
  l.timer = false
end

-- One transport item; false when it is not the standalone stream's.
function Session:_listen_item(item, kind)
  local l = self.listen
  if not l or not l.tid or item.id ~= l.tid then return false end
  kind = kind or item.type
  if kind == "headers" then
    l.status, l.headers = item.status, item.headers or {}
    return true
  end
  if item.event_id then l.last_event_id = item.event_id ~= "" and item.event_id or false end
  if item.retry then l.retry_ms = item.retry end
  local ok_status = l.status and l.status >= 200 and l.status < 300
  if kind == "event" then
    if not ok_status or item.event ~= "message" or item.data == "" then return true end
    l.failures = 0
    local msg = json.decode_plain(item.data)
    if msg ~= nil then self:_on_message(l, msg) end
    if l.done then self:_listen_stop() end -- _on_message ended it (a flood)
    return true
  end
  -- done
  l.tid = false
  local st = l.status or item.status
  if item.error then return self:_listen_again(true) end
  if st and st >= 200 and st < 300 then
    -- a 2xx that is not an event stream is not one we can read
    local ct = l.headers and l.headers["content-type"] or ""
    if not item.sse and not ct:lower():find("^text/event%-stream") then return self:_listen_stop() end
    return self:_listen_again(false)
  end
  if st and st >= 500 then return self:_listen_again(true) end
  -- 405: the server offers no stream; 404: the session is gone (the next
  -- call starts another, and its initialize a new stream); 4xx: refused
  return self:_listen_stop()
end

-- Reopens the stream once its timer is due (from pump).
function Session:_listen_tick()
  local l = self.listen
  if l.stopped or not l.timer or self.closed then return end
  if now() >= l.timer.wake_at then
    self.timers[l.timer] = nil
    l.timer = false
    self:_listen_launch()
  end
end

--- Session:listen_acked(budget) -> true once the server acknowledged the
-- modern subscriptions/listen stream, or nil, err (it refused or ended
-- first, or the budget ran out). True at once in the legacy era.
function Session:listen_acked(budget)
  local l = self.listen
  if self.era ~= "modern" or not l or not l.ack then return true end
  local _, err = self:wait(l.ack, budget)
  if err then return nil, err end
  if l.acked then return true end
  return nil, errors.new("protocol", "the server did not open subscriptions/listen"
    .. (l.status and (" (HTTP " .. tostring(l.status) .. ")") or ""), { status = l.status or nil })
end

--- Session:listening() -> true while the standalone stream is open or
-- about to be reopened.
function Session:listening()
  local l = self.listen
  return l ~= nil and not l.stopped and (l.tid ~= false or l.timer ~= false)
end

-- ---- URL-mode elicitation (2025-11-25, issue 15) -----------------------------
--
-- on_elicit gets form requests (params.requestedSchema) and, when the
-- application says its handler takes them (favcrm.new's elicit_modes =
-- {"form", "url"}), URL requests (params.mode = "url", url, elicitationId,
-- message): the handler shows the URL to the user (never opens it by
-- itself) and answers {action = "accept"|"decline"|"cancel"}. A request in
-- a mode not declared is refused with -32602, as the specification asks.

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

-- The ids of URL elicitations under way (accepted, or listed in a -32042
-- error): at most MAX_ELICIT_IDS, the oldest forgotten first. With
-- `take`, tells whether id is one and forgets it (its completion is
-- delivered once); without, remembers id.
local MAX_ELICIT_IDS = 64
function Session:_elicit_known(id, take)
  if type(id) ~= "string" then return false end
  local known = self.elicit_ids
  if not known then
    known = { set = {}, order = {} }
    self.elicit_ids = known
  end
  local set, order = known.set, known.order
  if take then
    if not set[id] then return false end
    set[id] = nil
    for i, v in ipairs(order) do
      if v == id then table.remove(order, i) break end
    end
    return true
  end
  if set[id] then return true end
  while #order >= MAX_ELICIT_IDS do set[table.remove(order, 1)] = nil end
  order[#order + 1] = id
  set[id] = true
  return true
end

-- The mode of an elicitation/create this client did not declare, or nil.
function Session:_elicit_mode_refused(params)
  local mode = type(params) == "table" and params.mode or "form"
  if mode == null or mode == nil then mode = "form" end
  if self.elicit_modes[mode] then return nil end
  return tostring(mode)
end

-- A handler's answer to a URL elicitation: {action = ...} and no content
-- (the data stays between the user and the server). A bare true accepts;
-- anything else that is not a table declines.
function Session._url_elicit_result(res)
  if res == true then return { action = "accept" } end
  if type(res) ~= "table" then return { action = "decline" } end
  local action = res.action
  if action ~= "accept" and action ~= "decline" and action ~= "cancel" then action = "accept" end
  return { action = action, _meta = res._meta }
end

--- Session._url_required_error(e) -> the error of a JSON-RPC error -32042
-- (URLElicitationRequiredError): code `elicitation_required`, `url` (the
-- first URL to open), `elicitations` (every {mode, url, elicitationId,
-- message} the server listed), `rpc_code`, `data`. The URL is in the
-- message too: the user opens it, then the call is retried.
function Session._url_required_error(e)
  local list = {}
  local data = type(e.data) == "table" and e.data or {}
  if type(data.elicitations) == "table" then
    for _, el in ipairs(data.elicitations) do
      if type(el) == "table" and type(el.url) == "string" then list[#list + 1] = el end
    end
  end
  local first = list[1]
  local text = rpc_error_text(e)
  if first then
    text = text .. "; open " .. first.url .. (#list > 1 and (" (and " .. (#list - 1) .. " more)") or "")
      .. ", then retry"
  end
  return errors.new("elicitation_required", "the server needs a step in the browser first: " .. text, {
    rpc_code = -32042, data = e.data, url = first and first.url or nil,
    elicitation_id = first and first.elicitationId or nil, elicitations = list })
end

return Session
