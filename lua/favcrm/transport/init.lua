--- favcrm.transport: the one contract between the MCP session and the
-- things that move its bytes. Every transport implements it: the libcurl
-- one in C (core.http_new), favcrm.transport.stdio (a child process),
-- favcrm.transport.custom (wraps a user's request-level object, which is how
-- favcrm.resty and a Neovim libuv socket plug in).
--
-- # The session-level contract (what the session calls)
--
--   t:start(req) -> id | nil, message
--       req = {method = "POST"|"GET"|"DELETE", url = an http(s) URL checked
--       by favcrm.url (or stdio:PROG), headers = {"Name: value", ...},
--       body = string|nil, auth = favcrm.secret|nil (sent as Authorization:
--       Bearer; never logged), timeout_ms = the time left of the call's one
--       deadline, in whole milliseconds}. No waiting. nil, message only when
--       the request cannot even be queued (the session reports `network`).
--   t:poll(ms) -> {item, ...}: waits at most ms (0: not at all) and returns
--       what happened, in order, for any id:
--         {type="headers", id=, status=, headers={lower-case name = value}, sse=bool}
--         {type="event", id=, data=, event=, event_id=, retry=}   (SSE)
--         {type="done", id=, status=, body=, sse=, event_id=, retry=}
--         {type="done", id=, error=CODE, message=}  a failure; CODE is one of
--           favcrm.errors.CODES (network, timeout, tls, too_large, spawn,
--           invalid_arguments); the session keeps it as it is.
--       The session calls t:poll(ms, true): a transport may then merge the
--       items of one id that follow each other into one table (the C one
--       does): a headers item into the next one (which gets status, sse and
--       headers), an event into the done right after it (a done with the
--       event's data and event). A transport may ignore the flag.
--   t:exchange(req, wait_ms) (optional; the C one has it: the session
--       feature-detects it) -> id, status, body, content_type, date | id
--       | nil, message: t:start(req), then waits at most wait_ms for that
--       request to end, or for its first event (which may be a server
--       request waiting for an answer). A 2xx answer that is not SSE and has a body comes
--       back at once (nothing of it is queued); anything else (SSE, other
--       statuses, failures, an empty body, wait_ms running out) returns
--       the id alone and t:poll hands its items over as after t:start.
--       t:exchange(req, wait_ms, true) also hands over a 2xx SSE answer
--       whose stream carried one event: id, status, data, content_type,
--       date, event, event_id, retry.
--       t:exchange(req, wait_ms, true, rpc_id, date, modern): where such
--       an answer is JSON (a body whose Content-Type is application/json,
--       or one "message" event) and is the plain result of JSON-RPC
--       request rpc_id (jsonrpc "2.0", that id, no error, no method, a
--       result that is a table and, with modern, not input_required), it
--       comes back decoded: id, result [, date] (the Date only when it is
--       not the string date). Any other answer as without rpc_id. A
--       transport may ignore these arguments.
--   t:cancel(id): forgets a request (no item for it after this). Idempotent.
--   t:close(): frees everything; idempotent; also what __gc does. No I/O
--       that can block past a small bound.
--   t:fds() -> {{fd=, read=, write=}, ...}, timeout_ms (optional: for event
--       loops, see client:watch()).
--   t:sibling{max_response_bytes=} (optional; favcrm.transport.custom has
--       it) -> another session-level transport over the same connection
--       machinery, with requests and items of its own, whose close() leaves
--       t's resources alone. favcrm.oauth sends its requests through one,
--       so they go the session's way (an nginx cosocket); without it OAuth
--       uses a libcurl handle of its own (refused inside an nginx handler).
--   t.idle_stream (optional field, true for stdio): the session always
--       opens the standalone stream (a GET) after initialize, unless
--       listen = false; the transport carries on it what the server sends
--       while no request is open, and keeps it for the next request when
--       no stream is open (favcrm.transport.stdio).
--
-- # The request-level contract (what a user's Lua transport implements)
--
--   t:request{method=, url=, headers={"Name: value", ...}, body=,
--             timeout_ms=} -> response, or nil, message [, code]
--                      (code "tls" or "timeout"; otherwise network)
--   response.status (number), response.headers ({lower-case name = value})
--   response:read() -> next body chunk (string), or nil at the end, or
--                      nil, message on failure
--   response:close()            (optional: give the connection back)
--   t:sleep(ms)                 (optional: wait without blocking the host)
-- timeout_ms is the time left of the call's deadline; request() and each
-- read() must return within it. favcrm.transport.custom turns such an
-- object into a session-level transport.
local M = {}

--- A request-level transport: what a user's Lua transport implements
-- (`transport = t` in favcrm.new); favcrm.transport.custom drives it.
-- `t:request(req)` sends req = {method=, url=, headers={"Name: value", ...},
-- body=, timeout_ms=} and returns the response, or nil, message.
---@class favcrm.Transport
---@field request fun(self: favcrm.Transport, req: table): favcrm.Response?, string? sends a request
---@field sleep? fun(self: favcrm.Transport, ms: integer) waits without blocking the host

--- The answer of favcrm.Transport's request().
---@class favcrm.Response
---@field status integer the HTTP status
---@field headers table lower-case name -> value
---@field read fun(self: favcrm.Response): string?, string? next chunk; nil at the end; nil, message
---@field close? fun(self: favcrm.Response) gives the connection back

--- A session-level transport: what the session calls (core.http_new,
-- favcrm.transport.stdio, favcrm.transport.custom).
---@class favcrm.SessionTransport
---@field start fun(self: favcrm.SessionTransport, req: table): integer|nil, string|nil queues a request; its id
---@field poll fun(self: favcrm.SessionTransport, ms: integer): table[] waits at most ms; the items that happened
---@field cancel fun(self: favcrm.SessionTransport, id: integer) forgets a request
---@field close fun(self: favcrm.SessionTransport) frees everything
---@field fds? fun(self: favcrm.SessionTransport): table[], integer the sockets and timeout for an event loop

M.SESSION_METHODS = { "start", "poll", "cancel", "close" }
M.REQUEST_METHODS = { "request" }

local function missing(t, names)
  if type(t) ~= "table" and type(t) ~= "userdata" then return "it is a " .. type(t) end
  for _, name in ipairs(names) do
    local ok, f = pcall(function() return t[name] end)
    if not ok or type(f) ~= "function" then return "it has no " .. name .. "() method" end
  end
end

--- transport.is_session_level(t) -> true when t has start/poll/cancel/close
---@param t any
---@return boolean is
function M.is_session_level(t)
  return missing(t, M.SESSION_METHODS) == nil
end

--- transport.check(t [, kind]) -> t, or raises naming what is missing.
-- kind is "session" (default) or "request".
---@param t any the transport
---@param kind? string "session" (default) or "request"
---@return favcrm.SessionTransport|favcrm.Transport t
function M.check(t, kind)
  local why = missing(t, kind == "request" and M.REQUEST_METHODS or M.SESSION_METHODS)
  if why then
    error("favcrm.transport: not a " .. (kind or "session") .. "-level transport: " .. why, 2)
  end
  return t
end

--- transport.wrap(t, opts) -> a session-level transport: t itself when it
-- has the session-level methods, else t wrapped by favcrm.transport.custom
-- (which raises when t has no request method).
---@param t favcrm.SessionTransport|favcrm.Transport the transport
---@param opts? table favcrm.new's options
---@return favcrm.SessionTransport t
function M.wrap(t, opts)
  if M.is_session_level(t) then return t end
  return require("favcrm.transport.custom").new(t, opts)
end

return M
