--- favcrm.resty: a transport on OpenResty's cosockets (ngx.socket.tcp), so
-- an nginx handler can call FavCRM without blocking its worker:
--
--   local favcrm = require("favcrm")
--   local client = favcrm.new({ url = ..., api_key = ..., transport = require("favcrm.resty").new() })
--   local services, err = client:call("list_services")
--   client:close()
--
-- HTTP/1.1 with Content-Length or chunked bodies, TLS with verification
-- (set lua_ssl_trusted_certificate in nginx.conf), and keep-alive through
-- the cosocket pool. A client built with it belongs to the request that
-- made it (cosockets cannot outlive their request): make one per request.
--
-- What outlives the request is kept per worker (this module's upvalues):
--  * the negotiated MCP session (initialize result, session id, protocol
--    version) and the tool list, per endpoint and caller identity (URL,
--    API key, extra headers, client name, declared callbacks, protocol
--    choice), so a request
--    costs one HTTP exchange (its tools/call), not five; the session is not
--    ended (no DELETE) when the client closes. A server that forgot the
--    session (404) gets a fresh one, which the next requests share. The
--    identity is compared as a favcrm.secret: no key is ever part of a
--    table key. `shared = false` turns this off (a session per client).
--  * the cosocket pool: its name carries everything that changes a
--    connection's trust (scheme, host, port, TLS verification, the server
--    name sent and checked, the CA label), so a client that verifies never
--    gets a connection one that does not verify opened;
--  * TLS sessions per pool name, offered for resumption on new connections.
local urls = require("favcrm.url")
local core = require("favcrm.core")

local M = {}

--- A transport on OpenResty's cosockets, for `favcrm.new({ transport = ... })`.
---@class favcrm.resty.Transport
local Transport = {}
Transport.__index = Transport

--- The response `transport:request` returns.
---@class favcrm.resty.Response
---@field status integer the HTTP status
---@field headers table<string, string> lower-case name to value
local Response = {}
Response.__index = Response

-- ---- per-worker state ----------------------------------------------------------
-- entries, oldest first: {where = URL without userinfo, auth = secret|nil,
-- ident = secret (the rest of the identity), state = table}
local entries = {}
local ssl_sessions, n_ssl_sessions = {}, 0 -- pool name -> TLS session
local MAX_SSL_SESSIONS = 256
local DRAIN_MS = 50

local function forget_entry(i)
  local e = table.remove(entries, i)
  if e.auth then e.auth:close() end
  e.ident:close()
end

--- resty.reset(): forgets every shared MCP session, tool list and TLS
-- session this worker holds (the sessions are not ended on the server).
---@return nil
function M.reset()
  while #entries > 0 do forget_entry(#entries) end
  ssl_sessions, n_ssl_sessions = {}, 0
end

--- resty.shared_count() -> how many shared sessions this worker holds
---@return integer
function M.shared_count()
  return #entries
end

--- resty.new([opts]) -> transport. opts: pool_size (default 64: size it to
-- the upstream calls one worker makes at once), keepalive_ms (default
-- 60000), ssl_verify (default true), server_name (the TLS name sent and
-- checked; default the URL's host), ca_file (a label for the
-- lua_ssl_trusted_certificate in force where this transport is used: nginx
-- decides what is trusted, the label only keeps pools of different trust
-- apart), shared (default true: share the MCP session and tool list per
-- worker, see above), max_shared (default 64 identities per worker, the
-- oldest forgotten first); socket and sleep replace ngx.socket.tcp and
-- ngx.sleep (a host with the same socket API, or the specs, which drive
-- this code with LuaSocket).
---@param opts? table `pool_size`, `keepalive_ms`, `ssl_verify`, `server_name`, `ca_file`,
--- `shared`, `max_shared`, `socket`, `sleep`
---@return favcrm.resty.Transport transport
function M.new(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("bad argument #1 to 'new' (table expected)", 2) end
  for _, k in ipairs({ "server_name", "ca_file" }) do
    if opts[k] ~= nil and (type(opts[k]) ~= "string" or opts[k]:find("[%s%c]")) then
      error("favcrm.resty.new: option '" .. k .. "' must be a string without white space", 2)
    end
  end
  return setmetatable({
    pool_size = opts.pool_size or 64,
    keepalive_ms = opts.keepalive_ms or 60000,
    ssl_verify = opts.ssl_verify ~= false,
    server_name = opts.server_name,
    ca_file = opts.ca_file or "",
    shared = opts.shared ~= false,
    max_shared = opts.max_shared or 64,
    socket = opts.socket or function() return ngx.socket.tcp() end,
    sleep_fn = opts.sleep or function(s) ngx.sleep(s) end,
  }, Transport)
end

-- A secret copy of auth (a favcrm.Secret or a string), or nil.
local function secret_copy(auth)
  if auth == nil then return nil end
  if type(auth) == "string" then return core.secret(auth) end
  return core.secret(auth:reveal())
end

--- transport:shared_state(id) -> the per-worker table the session and the
-- tool list of this identity live in, or nil when `shared` is off. id:
-- `url`, `auth` (favcrm.Secret or nil), `headers` (list), `client_name`,
-- `callbacks` (which of elicit/sample/roots are declared), `protocol` (the
-- client's opts.protocol: a client pinned to 2025-11-25 never takes over a
-- 2026-07-28 client's state, nor the other way round). Called by
-- favcrm.new; the session reads and fills the table (favcrm.session).
---@param id table
---@return table|nil state
function Transport:shared_state(id)
  if not self.shared then return nil end
  local p = urls.parse(id.url)
  if not p then return nil end
  local where = p.scheme .. "://" .. p.host .. ":" .. p.port .. p.path
  local ident = core.secret(table.concat({ id.url, table.concat(id.headers or {}, "\n"),
    tostring(id.client_name), tostring(id.callbacks), tostring(id.protocol) }, "\0"))
  local auth = id.auth
  for i = #entries, 1, -1 do
    local e = entries[i]
    if e.where == where and e.ident == ident
        and ((auth == nil and e.auth == nil) or (auth ~= nil and e.auth ~= nil and e.auth == auth)) then
      ident:close()
      return e.state
    end
  end
  while #entries >= self.max_shared do forget_entry(1) end
  local e = { where = where, auth = secret_copy(auth), ident = ident,
    state = { initialized = false, validators = {} } }
  entries[#entries + 1] = e
  return e.state
end

-- ---- HTTP/1.1 ------------------------------------------------------------------

-- The code a failed socket operation's error maps to: "timeout" for a
-- cosocket timeout (the call's deadline ran out), else nil (network).
local function code_of(err)
  if err == "timeout" then return "timeout" end
  return nil
end

-- The URL rule and parse are favcrm.url's (checked when the client was made
-- and on every redirect): userinfo is never a host, the scheme is case-blind,
-- an IPv6 host keeps its brackets (nginx's connect wants them), a fragment
-- is never sent.
function Transport:_target(url)
  if url == self._url then return self._target_cache end
  if not urls.check(url) then return nil end
  local p = urls.parse(url)
  local host, port = p.host, p.port
  local default_port = (p.scheme == "https" and port == 443) or (p.scheme == "http" and port == 80)
  local t = { scheme = p.scheme, host = host, port = port, path = p.path,
    host_header = "Host: " .. host .. (default_port and "" or (":" .. port)) }
  if p.scheme == "https" then
    t.server_name = self.server_name or host:match("^%[(.*)%]$") or host
    -- everything that changes a connection's trust is in its pool name
    t.pool = table.concat({ "https", host, port, self.ssl_verify and "verify" or "noverify",
      t.server_name, self.ca_file }, " ")
  else
    t.pool = "http " .. host .. " " .. port
  end
  self._url, self._target_cache = url, t
  return t
end

--- The pool name and connect host of a URL (for specs and logs), or nil.
---@param url string
---@return string|nil pool
---@return string|nil host
function Transport:pool_name(url)
  local t = self:_target(url)
  if not t then return nil end
  return t.pool, t.host
end

--- Waits without blocking the worker (ngx.sleep).
---@param ms number milliseconds
---@return nil
function Transport:sleep(ms)
  self.sleep_fn(ms / 1000)
end

--- transport:request(req) -> response or nil, message, code (see
-- favcrm.transport for the shape; code is "tls" for a failed handshake)
---@param req table `method`, `url`, `headers` (list of "Name: value"), `body`, `timeout_ms`
---@return favcrm.resty.Response|nil response
---@return string|nil message on failure
---@return string|nil code on failure ("tls", "timeout", or nil: network)
function Transport:request(req)
  local t = self:_target(req.url)
  if not t then return nil, "cannot parse URL " .. urls.redact(tostring(req.url)) end
  local host, port = t.host, t.port
  local sock = self.socket()
  local ms = req.timeout_ms or 60000
  sock:settimeouts(math.min(ms, 10000), ms, ms)
  local ok, err = sock:connect(host, port, { pool = t.pool, pool_size = self.pool_size })
  if not ok then return nil, "connect to " .. host .. ":" .. port .. " failed: " .. tostring(err), code_of(err) end
  if t.scheme == "https" then
    -- On a connection from the pool this returns at once (it was verified
    -- when it was opened, under the same pool name, so with the same trust);
    -- on a new one it verifies, resuming this pool's last TLS session.
    local sess
    sess, err = sock:sslhandshake(ssl_sessions[t.pool], t.server_name, self.ssl_verify)
    if not sess then
      sock:close()
      return nil, "TLS handshake with " .. host .. " failed: " .. tostring(err), "tls"
    end
    if type(sess) ~= "boolean" and ssl_sessions[t.pool] ~= sess then
      if ssl_sessions[t.pool] == nil then
        n_ssl_sessions = n_ssl_sessions + 1
        if n_ssl_sessions > MAX_SSL_SESSIONS then ssl_sessions, n_ssl_sessions = {}, 1 end
      end
      ssl_sessions[t.pool] = sess
    end
  end
  local body = req.body or ""
  local method = req.method or "POST"
  local lines = { method .. " " .. t.path .. " HTTP/1.1", t.host_header, "Connection: keep-alive" }
  for _, h in ipairs(req.headers or {}) do lines[#lines + 1] = h end
  if method ~= "GET" and method ~= "DELETE" or #body > 0 then
    lines[#lines + 1] = "Content-Length: " .. #body
  end
  local bytes
  bytes, err = sock:send(table.concat(lines, "\r\n") .. "\r\n\r\n" .. body)
  if not bytes then
    sock:close()
    return nil, "sending the request failed: " .. tostring(err), code_of(err)
  end
  local status_line
  status_line, err = sock:receive("*l")
  if not status_line then
    sock:close()
    return nil, "no answer from " .. host .. ": " .. tostring(err), code_of(err)
  end
  local status = tonumber(status_line:match("^HTTP/1%.%d (%d%d%d)"))
  if not status then
    sock:close()
    return nil, "not an HTTP answer: " .. status_line:sub(1, 60)
  end
  local headers, n = {}, 0
  while true do
    local line
    line, err = sock:receive("*l")
    if not line then
      sock:close()
      return nil, "the answer's headers were cut short: " .. tostring(err), code_of(err)
    end
    if line == "" then break end
    n = n + 1
    if n > 200 then
      sock:close()
      return nil, "too many response headers"
    end
    local name, value = line:match("^([^:]+):%s*(.-)%s*$")
    if name then
      name = name:lower()
      headers[name] = headers[name] and (headers[name] .. ", " .. value) or value
    end
  end
  local res = setmetatable({
    status = status, headers = headers, sock = sock, transport = self,
    chunked = (headers["transfer-encoding"] or ""):lower():find("chunked") ~= nil,
    left = tonumber(headers["content-length"]),
    keep = (headers.connection or ""):lower() ~= "close",
  }, Response)
  if method == "HEAD" or status == 204 or status == 304 or (not res.chunked and res.left == nil
      and (status == 202 or method == "DELETE")) then
    res.left = res.left or 0
  end
  return res
end
-- Ends the body: the connection goes back to the pool when it is clean.
function Response:_finish(clean)
  if not self.sock then return end
  if clean and self.keep then
    self.sock:setkeepalive(self.transport.keepalive_ms, self.transport.pool_size)
  else
    self.sock:close()
  end
  self.sock = nil
end

--- The next chunk of the body.
---@return string|nil chunk nil at the end, or with a message on failure
---@return string|nil message
---@return string|nil code "timeout" when the socket timed out
function Response:read()
  local sock = self.sock
  if not sock then return nil end
  if self.chunked then
    local line, err = sock:receive("*l")
    if not line then
      self:_finish(false)
      return nil, "the chunked body was cut short: " .. tostring(err), code_of(err)
    end
    local size = tonumber(line:match("^%x+"), 16)
    if not size then
      self:_finish(false)
      return nil, "bad chunk size line"
    end
    if size == 0 then
      repeat line = sock:receive("*l") until not line or line == ""
      self:_finish(line ~= nil)
      return nil
    end
    local data
    data, err = sock:receive(size)
    if not data then
      self:_finish(false)
      return nil, "the chunked body was cut short: " .. tostring(err), code_of(err)
    end
    sock:receive(2) -- CRLF after the chunk
    return data
  end
  if self.left then
    if self.left == 0 then
      self:_finish(true)
      return nil
    end
    local want = math.min(self.left, 65536)
    local data, err = sock:receive(want)
    if not data then
      self:_finish(false)
      return nil, "the body was cut short: " .. tostring(err), code_of(err)
    end
    self.left = self.left - #data
    return data
  end
  -- no length: the body ends when the server closes
  local data, err, partial = sock:receive(65536)
  if data then return data end
  if err == "closed" then
    self:_finish(false)
    if partial and #partial > 0 then return partial end
    return nil
  end
  self:_finish(false)
  return nil, "reading the body failed: " .. tostring(err), code_of(err)
end

--- Ends the body early. What is left of a body with a known end (an
-- answer stream whose last event came: its end is usually already here) is
-- read, at most 64 KiB within DRAIN_MS, so the connection goes back to the
-- pool; otherwise it is closed.
---@return nil
function Response:close()
  local sock = self.sock
  if sock and self.keep and (self.chunked or self.left) then
    sock:settimeouts(DRAIN_MS, DRAIN_MS, DRAIN_MS)
    local budget = 65536
    while self.sock and budget > 0 do
      local chunk = self:read()
      if not chunk then break end -- read() has pooled or closed it
      budget = budget - #chunk
    end
  end
  self:_finish(false)
end

return M
