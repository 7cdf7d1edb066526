--- favcrm.session_listen: the standalone stream of favcrm.session
-- (internal). favcrm.session loads it (favcrm.lazy) the first time a stream
-- is wanted; it defines the _listen_* methods, and listen_acked, on the
-- Session class itself, so they are called as before.
local json = require("favcrm.json")
local core = require("favcrm.core")
local errors = require("favcrm.errors")
local era = require("favcrm.era")

local Session = require("favcrm.session")
local now = core.monotonic

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

return Session
