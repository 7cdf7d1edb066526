--- favcrm.transport.stdio: MCP over a child process's stdin and stdout
-- (newline-delimited JSON-RPC), with the same start/poll/cancel/close shape
-- as the HTTP transport, so the session cannot tell them apart: each request
-- looks like an event stream that carries its answer and then ends.
local json = require("favcrm.json")
local core = require("favcrm.core")

local Stdio = {}
Stdio.__index = Stdio

local STDERR_KEEP = 8192
local MAX_RESPONSE = 32 * 1024 * 1024

--- stdio.new{command = {prog, args...}, env = {NAME = value}, on_stderr =,
-- max_event_bytes =, max_response_bytes =, grace_ms =} -> transport, or nil, err
-- Like an HTTP event stream, an open request is charged every stdout byte
-- that arrives while it is the oldest one (the server's requests,
-- notifications and stray lines ride on it) plus its answer; past
-- max_response_bytes (default 32 MiB) it ends with too_large.
-- What the server writes while no request is open (a ping, a log line,
-- list_changed) rides on the standalone stream the session opens with a GET
-- (idle_stream), or, without one, is kept for the next request.
-- The child starts with the first request (favcrm.new does no I/O).
local function new(opts)
  return setmetatable({
    command = opts.command, env = opts.env, max_event_bytes = opts.max_event_bytes,
    max_response = opts.max_response_bytes or MAX_RESPONSE,
    charged = {}, -- transfer id -> stdout bytes charged to it
    name = opts.command[1],
    on_stderr = opts.on_stderr,
    grace_ms = opts.grace_ms or 2000,
    stderr_tail = "",
    open = {},    -- transfer id -> rpc id
    by_rpc = {},  -- tostring(rpc id) -> transfer id
    order = {},   -- open transfer ids, oldest first
    queue = {},
    next_id = 1,
    dead = nil,
    -- the server's requests and notifications that came while no request
    -- was open: carried by the standalone stream (a GET, see start) or,
    -- without one, by the next request; never dropped (bounded by
    -- max_response_bytes: past it the oldest go)
    idle = {}, idle_bytes = 0,
    listen_tid = nil,
    idle_stream = true, -- the session opens the standalone stream (session.lua _wants_listen)
  }, Stdio)
end

local function push(self, item)
  self.queue[#self.queue + 1] = item
end

local function forget(self, tid)
  local rpc = self.open[tid]
  if rpc == nil then return end
  self.open[tid] = nil
  self.by_rpc[rpc] = nil
  self.charged[tid] = nil
  for i, t in ipairs(self.order) do
    if t == tid then table.remove(self.order, i) break end
  end
end

local SSE_HEADERS = { ["content-type"] = "text/event-stream" }

-- Hands the lines kept while nothing was open to transfer tid.
local function flush_idle(self, tid)
  for _, line in ipairs(self.idle) do
    push(self, { type = "event", id = tid, data = line, event = "message" })
  end
  self.idle, self.idle_bytes = {}, 0
end

function Stdio:_ensure()
  if self.proc or self.dead then return end
  local proc, err = core.spawn(self.command, self.env, self.max_event_bytes)
  if proc then
    self.proc = proc
  else
    -- never started: `spawn` (whatever code the C core gave it)
    self.dead, self.dead_code = tostring(err and err.message or err), "spawn"
  end
end

function Stdio:start(req)
  self:_ensure()
  local tid = self.next_id
  self.next_id = tid + 1
  if req.method == "GET" and not self.dead and not self.listen_tid then
    -- the standalone stream: what the server sends while no request is open
    self.listen_tid = tid
    push(self, { type = "headers", id = tid, status = 200, sse = true, headers = SSE_HEADERS })
    flush_idle(self, tid)
    return tid
  end
  if req.method ~= "POST" then
    -- no session to end and no stream to resume over stdio
    push(self, { type = "headers", id = tid, status = req.method == "DELETE" and 200 or 405, headers = {} })
    push(self, { type = "done", id = tid, status = req.method == "DELETE" and 200 or 405 })
    return tid
  end
  if self.dead then
    push(self, { type = "done", id = tid, error = self.dead_code or "network", message = self.dead })
    return tid
  end
  local msg = json.decode_plain(req.body or "")
  if type(msg) ~= "table" then return nil, "the request body is not JSON" end
  local ok, werr = self.proc:write(req.body .. "\n")
  if not ok then
    local why = type(werr) == "table" and werr.message or werr
    push(self, { type = "done", id = tid, error = "network", message = tostring(why) })
    return tid
  end
  if msg.method ~= nil and msg.id ~= nil then
    local key = tostring(msg.id)
    self.open[tid] = key
    self.by_rpc[key] = tid
    self.order[#self.order + 1] = tid
    push(self, { type = "headers", id = tid, status = 200, sse = true, headers = SSE_HEADERS })
    if #self.idle > 0 then flush_idle(self, tid) end
  else
    -- a notification or our answer to a server request: accepted
    push(self, { type = "headers", id = tid, status = 202, headers = {} })
    push(self, { type = "done", id = tid, status = 202 })
  end
  return tid
end

-- Charges n bytes to open request tid; true when that ended it (too_large).
function Stdio:_charge(tid, n)
  local total = (self.charged[tid] or 0) + n + 1
  if total <= self.max_response then
    self.charged[tid] = total
    return false
  end
  push(self, { type = "done", id = tid, error = "too_large",
    message = "the server wrote more than max_response_bytes (" .. self.max_response .. ") during one request" })
  forget(self, tid)
  return true
end

function Stdio:_line(line)
  local msg = json.decode_plain(line)
  if type(msg) ~= "table" or msg.method ~= nil or msg.id == nil then
    -- not an answer: charged to the oldest open request, which carries it
    local tid = self.order[1]
    if tid and self:_charge(tid, #line) then return end
  end
  if type(msg) ~= "table" then return end -- not JSON-RPC: ignored, as the spec allows logging only on stderr
  if msg.method == nil and msg.id ~= nil then
    local tid = self.by_rpc[tostring(msg.id)]
    if tid and self:_charge(tid, #line) then return end
    if tid then
      push(self, { type = "event", id = tid, data = line, event = "message" })
      push(self, { type = "done", id = tid, status = 200, sse = true })
      forget(self, tid)
    end
    return
  end
  -- a server request or notification: carried by the oldest open request,
  -- else by the standalone stream, else kept for the next one
  local tid = self.order[1] or self.listen_tid
  if tid then
    push(self, { type = "event", id = tid, data = line, event = "message" })
    return
  end
  self.idle[#self.idle + 1] = line
  self.idle_bytes = self.idle_bytes + #line
  while self.idle_bytes > self.max_response and #self.idle > 1 do
    self.idle_bytes = self.idle_bytes - #table.remove(self.idle, 1)
  end
end

function Stdio:_died(r)
  if not r.exited then
    -- its output is closed: it is ending; reap it (bounded) to say how
    local status = self.proc:close(500)
    r = { status = status, signal = status == nil and "?" or nil }
  end
  local how = r.signal and ("killed by signal " .. r.signal)
    or (r.status and ("exit status " .. r.status)) or "closed its output"
  local tail = self.stderr_tail:gsub("%s+$", ""):sub(-512)
  self.dead = "the server process " .. self.name .. " ended (" .. how .. ")"
    .. (tail ~= "" and (": " .. tail) or "")
  for _, tid in ipairs(self.order) do
    push(self, { type = "done", id = tid, error = "network", message = self.dead })
    self.open[tid] = nil
  end
  self.order, self.by_rpc = {}, {}
  if self.listen_tid then
    -- the standalone stream ends for good (410 Gone: not reopened)
    push(self, { type = "headers", id = self.listen_tid, status = 410, headers = {} })
    push(self, { type = "done", id = self.listen_tid, status = 410 })
    self.listen_tid = nil
  end
end

function Stdio:poll(ms)
  if #self.queue == 0 and not self.dead and self.proc then
    local r = self.proc:poll(ms or 0)
    if r.stderr then
      if self.on_stderr then self.on_stderr(r.stderr) end
      self.stderr_tail = (self.stderr_tail .. r.stderr):sub(-STDERR_KEEP)
    end
    for _, line in ipairs(r.lines) do self:_line(line) end
    if r.too_large then
      for _, tid in ipairs(self.order) do
        push(self, { type = "done", id = tid, error = "too_large", message = "a message over max_event_bytes" })
      end
      self.order, self.by_rpc, self.open = {}, {}, {}
    end
    if r.eof then self:_died(r) end
  end
  local q = self.queue
  self.queue = {}
  return q
end

function Stdio:cancel(tid)
  if tid == self.listen_tid then
    self.listen_tid = nil
    return true
  end
  local was = self.open[tid] ~= nil
  forget(self, tid)
  return was
end

function Stdio:fds()
  if not self.proc then return {}, -1 end
  return self.proc:fds(), -1
end

--- The last stderr bytes the server wrote (bounded).
function Stdio:stderr()
  return self.stderr_tail
end

function Stdio:close()
  if self.closed then return end
  self.closed = true
  if self.proc then self.proc:close(self.grace_ms) end
end

return { new = new }
