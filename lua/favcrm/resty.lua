--- favcrm.resty: a transport on OpenResty's cosockets (ngx.socket.tcp), so
-- an nginx handler can call FavCRM without blocking its worker:
--
--   local favcrm = require("favcrm")
--   local client = favcrm.new({ url = ..., api_key = ..., transport = require("favcrm.resty").new() })
--   local services, err = client:call("list_services")
--
-- HTTP/1.1 with Content-Length or chunked bodies, TLS with verification
-- (set lua_ssl_trusted_certificate in nginx.conf), and keep-alive through
-- the cosocket pool. A client built with it belongs to the request that
-- made it (cosockets cannot outlive their request): make one per request.
local urls = require("favcrm.url")

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

--- resty.new([opts]) -> transport. opts: pool_size (default 32),
-- keepalive_ms (default 60000), ssl_verify (default true); socket and
-- sleep replace ngx.socket.tcp and ngx.sleep (a host with the same socket
-- API, or the specs, which drive this code with LuaSocket).
---@param opts? table `pool_size`, `keepalive_ms`, `ssl_verify`, `socket`, `sleep`
---@return favcrm.resty.Transport transport
function M.new(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("bad argument #1 to 'new' (table expected)", 2) end
  return setmetatable({
    pool_size = opts.pool_size or 32,
    keepalive_ms = opts.keepalive_ms or 60000,
    ssl_verify = opts.ssl_verify ~= false,
    socket = opts.socket or function() return ngx.socket.tcp() end,
    sleep_fn = opts.sleep or function(s) ngx.sleep(s) end,
  }, Transport)
end

-- The URL rule is favcrm.url's (checked when the client was made and on
-- every redirect); a bracketed IPv6 host is not supported here.
local function parse_url(url)
  if not urls.check(url) then return nil end
  local p = urls.parse(url)
  if p.host:sub(1, 1) == "[" then return nil end
  return p.scheme, p.host, p.port, p.path
end

--- Waits without blocking the worker (ngx.sleep).
---@param ms number milliseconds
---@return nil
function Transport:sleep(ms)
  self.sleep_fn(ms / 1000)
end

--- transport:request(req) -> response or nil, message (see
-- favcrm.transport.custom for the shape)
---@param req table `method`, `url`, `headers` (list of "Name: value"), `body`, `timeout_ms`
---@return favcrm.resty.Response|nil response
---@return string|nil message on failure
function Transport:request(req)
  local scheme, host, port, path = parse_url(req.url)
  if not scheme then return nil, "cannot parse URL " .. tostring(req.url) end
  local sock = self.socket()
  local t = req.timeout_ms or 60000
  sock:settimeouts(math.min(t, 10000), t, t)
  local pool = scheme .. ":" .. host .. ":" .. port
  local ok, err = sock:connect(host, port, { pool = pool, pool_size = self.pool_size })
  if not ok then return nil, "connect to " .. host .. ":" .. port .. " failed: " .. tostring(err) end
  if scheme == "https" and sock:getreusedtimes() == 0 then
    ok, err = sock:sslhandshake(nil, host, self.ssl_verify)
    if not ok then
      sock:close()
      return nil, "TLS handshake with " .. host .. " failed: " .. tostring(err)
    end
  end
  local body = req.body or ""
  local lines = { (req.method or "POST") .. " " .. path .. " HTTP/1.1",
    "Host: " .. host .. ((port == 80 or port == 443) and "" or (":" .. port)),
    "Connection: keep-alive" }
  for _, h in ipairs(req.headers or {}) do lines[#lines + 1] = h end
  if req.method ~= "GET" and req.method ~= "DELETE" or #body > 0 then
    lines[#lines + 1] = "Content-Length: " .. #body
  end
  local bytes
  bytes, err = sock:send(table.concat(lines, "\r\n") .. "\r\n\r\n" .. body)
  if not bytes then
    sock:close()
    return nil, "sending the request failed: " .. tostring(err)
  end
  local status_line
  status_line, err = sock:receive("*l")
  if not status_line then
    sock:close()
    return nil, "no answer from " .. host .. ": " .. tostring(err)
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
      return nil, "the answer's headers were cut short: " .. tostring(err)
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
  if req.method == "HEAD" or status == 204 or status == 304 or (not res.chunked and res.left == nil
      and (status == 202 or req.method == "DELETE")) then
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
function Response:read()
  local sock = self.sock
  if not sock then return nil end
  if self.chunked then
    local line, err = sock:receive("*l")
    if not line then
      self:_finish(false)
      return nil, "the chunked body was cut short: " .. tostring(err)
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
      return nil, "the chunked body was cut short: " .. tostring(err)
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
      return nil, "the body was cut short: " .. tostring(err)
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
  return nil, "reading the body failed: " .. tostring(err)
end

--- Ends the body early; the connection is closed, not pooled.
---@return nil
function Response:close()
  self:_finish(false)
end

return M
