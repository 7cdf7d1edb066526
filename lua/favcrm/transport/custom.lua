--- favcrm.transport.custom: carries the session over a transport written
-- in Lua (an OpenResty cosocket, a Neovim libuv socket, ...). The session,
-- the SSE parsing and the validation stay ours; the user's object only moves
-- bytes. It implements the session-level contract of favcrm.transport over
-- the request-level one (written out there; in short):
--
--   t:request{method=, url=, headers={"Name: value", ...}, body=,
--             timeout_ms=} -> response, or nil, message [, code]
--                      (code "tls" or "timeout"; otherwise network)
--   response.status (number), response.headers ({lower-case name = value})
--   response:read() -> next body chunk (string), or nil at the end, or
--                      nil, message [, "timeout"] on failure
--   response:close()            (optional: give the connection back)
--   t:sleep(ms)                 (optional: wait without blocking the host)
--
-- A request's `headers` carry `Authorization: Bearer ...` when a key is set:
-- a Lua transport sees the key as plain text, so it must not log headers.
local core = require("favcrm.core")

local Custom = {}
Custom.__index = Custom

--- custom.new(t, opts) -> a session-level transport that drives the
-- request-level object t (raises when t has no request method).
---@param t favcrm.Transport the user's transport
---@param opts? table favcrm.new's options
---@return favcrm.SessionTransport transport
local function make(t, opts)
  return setmetatable({
    t = t,
    max_event = opts.max_event_bytes or core.MAX_EVENT_BYTES,
    max_response = opts.max_response_bytes or 32 * 1024 * 1024,
    open = {},   -- id -> {res=, parser=, body={}, size=}
    order = {},  -- open ids, oldest first
    queue = {},
    next_id = 1,
  }, Custom)
end

local function new(t, opts)
  if type(t) ~= "table" and type(t) ~= "userdata" then
    error("favcrm.new: option 'transport' must be an object with a request method", 3)
  end
  if type(t.request) ~= "function" then
    error("favcrm.new: option 'transport' has no request(req) method", 3)
  end
  return make(t, opts or {})
end

--- custom:sibling([opts]) -> another session-level transport over the same
-- request-level object, with requests and items of its own: favcrm.oauth
-- sends its requests to the authorization server through one, so they go
-- the way the session's do (an OpenResty cosocket, a libuv socket) and
-- never take the session's items. Closing it leaves the object open.
-- opts: max_response_bytes, max_event_bytes (default: this one's).
---@param opts? table
---@return favcrm.SessionTransport transport
function Custom:sibling(opts)
  opts = opts or {}
  local s = make(self.t, { max_event_bytes = opts.max_event_bytes or self.max_event,
    max_response_bytes = opts.max_response_bytes or self.max_response })
  s.borrowed = true
  return s
end

local function push(self, item)
  self.queue[#self.queue + 1] = item
end

local function forget(self, id)
  local o = self.open[id]
  if not o then return end
  self.open[id] = nil
  for i, x in ipairs(self.order) do
    if x == id then table.remove(self.order, i) break end
  end
  if o.parser then o.parser:close() end
  if o.res and o.res.close then pcall(o.res.close, o.res) end
end

function Custom:start(req)
  local id = self.next_id
  self.next_id = id + 1
  local headers = {}
  for i, h in ipairs(req.headers or {}) do headers[i] = h end
  if req.auth ~= nil then
    local key = type(req.auth) == "string" and req.auth or req.auth:reveal()
    headers[#headers + 1] = "Authorization: Bearer " .. key
  end
  local ok, res, err, code = pcall(self.t.request, self.t, {
    method = req.method or "POST", url = req.url, headers = headers,
    body = req.body, timeout_ms = req.timeout_ms,
  })
  if not ok then
    push(self, { type = "done", id = id, error = "network", message = "the transport raised an error" })
    return id
  end
  if not res then
    -- a third result "tls" or "timeout" names the failure; anything else is network
    code = (code == "tls" or code == "timeout") and code or "network"
    push(self, { type = "done", id = id, error = code, message = tostring(err or "request failed") })
    return id
  end
  local h = res.headers or {}
  local ct = (h["content-type"] or ""):lower()
  local sse = ct:find("^text/event%-stream") ~= nil
  push(self, { type = "headers", id = id, status = res.status, sse = sse, headers = h })
  local o = { res = res, body = {}, size = 0, sse = sse, status = res.status }
  if sse and res.status >= 200 and res.status < 300 then o.parser = core.sse_parser(self.max_event) end
  self.open[id] = o
  self.order[#self.order + 1] = id
  return id
end

-- Reads one chunk of one open response and queues what it yields.
function Custom:_read(id)
  local o = self.open[id]
  local ok, chunk, err, code = pcall(o.res.read, o.res)
  if not ok then chunk, err, code = nil, "the transport raised an error while reading", nil end
  if chunk == nil then
    forget(self, id)
    if err then
      push(self, { type = "done", id = id, status = o.status, sse = o.sse,
        error = code == "timeout" and "timeout" or "network", message = tostring(err) })
    else
      push(self, { type = "done", id = id, status = o.status, sse = o.sse,
        body = (not o.sse) and table.concat(o.body) or nil })
    end
    return
  end
  o.size = o.size + #chunk
  if o.size > self.max_response then
    forget(self, id)
    push(self, { type = "done", id = id, status = o.status, error = "too_large",
      message = "response body over max_response_bytes" })
    return
  end
  if o.parser then
    local events = o.parser:feed(chunk)
    if not events then
      forget(self, id)
      push(self, { type = "done", id = id, status = o.status, error = "too_large",
        message = "one SSE event over max_event_bytes" })
      return
    end
    for _, ev in ipairs(events) do
      push(self, { type = "event", id = id, data = ev.data, event = ev.event,
        event_id = ev.id, retry = ev.retry })
    end
  elseif o.sse then
    -- an error status with an event-stream type: the body is not needed
    return
  else
    o.body[#o.body + 1] = chunk
  end
end

function Custom:poll(ms)
  if #self.queue == 0 then
    if #self.order > 0 then
      -- one chunk from each open response; a blocking read yields to the
      -- host's event loop (an OpenResty cosocket) rather than blocking it
      local ids = {}
      for i, id in ipairs(self.order) do ids[i] = id end
      for _, id in ipairs(ids) do
        if self.open[id] then self:_read(id) end
      end
    elseif ms and ms > 0 and self.t.sleep then
      self.t:sleep(ms)
    end
  end
  local q = self.queue
  self.queue = {}
  return q
end

function Custom:cancel(id)
  local was = self.open[id] ~= nil
  forget(self, id)
  return was
end

function Custom.fds()
  return {}, -1
end

function Custom:close()
  -- forget() edits self.order: go through a copy
  local ids = {}
  for i, id in ipairs(self.order) do ids[i] = id end
  for _, id in ipairs(ids) do forget(self, id) end
  if self.t.close and not self.borrowed then pcall(self.t.close, self.t) end
end

return { new = new }
