--- favcrm.url: the one place that says whether a URL may be an MCP endpoint,
-- whatever it came from (an option, the environment, the config file, a
-- redirect's Location), and the URL arithmetic the session and the
-- transports need (parse, origin, resolve a relative reference).
--
-- The rule: an absolute http:// or https:// URL (scheme case-insensitive)
-- with a host, and no white space or control character anywhere. The C
-- transport limits libcurl to http and https as a second line of defence.
local M = {}

--- url.parse(u) -> {scheme=, host=, port=, path=} or nil. scheme is lower
-- case; userinfo is dropped; an IPv6 host keeps its brackets; port is a
-- number (80 or 443 when absent); path includes the query ("/" when empty).
---@param u string the URL
---@return table|nil parts scheme, host, port, path
function M.parse(u)
  if type(u) ~= "string" then return nil end
  local scheme, authority, rest = u:match("^(%a[%w+.-]*)://([^/?#]*)(.*)$")
  if not scheme then return nil end
  scheme = scheme:lower()
  local hostport = authority:gsub("^.*@", "")
  local host, port = hostport:match("^(%[[%x:.]+%])(.*)$")
  if not host then host, port = hostport:match("^([^:]*)(.*)$") end
  if port ~= "" then
    port = port:match("^:(%d+)$")
    if not port then return nil end
  end
  port = tonumber(port) or (scheme == "https" and 443 or 80)
  local path = rest:gsub("#.*$", "")
  if path == "" or path:sub(1, 1) == "?" then path = "/" .. path end
  return { scheme = scheme, host = host:lower(), port = port, path = path }
end

--- url.redact(u) -> u with any userinfo (user:password@) replaced by `***@`,
-- fit for a message.
---@param u string the URL
---@return string redacted
function M.redact(u)
  return (tostring(u):gsub("^(%a[%w+.-]*://)[^/?#]*@", "%1***@"))
end

--- url.check(u) -> true, or nil, reason (a phrase like "must be an http://
-- or https:// URL"). The caller puts the source and its own code around it.
---@param u any the value to check
---@return true|nil ok
---@return string|nil reason
function M.check(u)
  if type(u) ~= "string" then return nil, "must be a string" end
  local p = M.parse(u)
  if not p or (p.scheme ~= "http" and p.scheme ~= "https") or p.host == "" then
    return nil, "must be an http:// or https:// URL"
  end
  if u:find("[%s%c]") then return nil, "must not hold white space or control characters" end
  return true
end

--- url.origin(u) -> "scheme://host:port" (the port always written), or nil
---@param u string the URL
---@return string|nil origin
function M.origin(u)
  local p = M.parse(u)
  if not p then return nil end
  return p.scheme .. "://" .. p.host .. ":" .. p.port
end

--- url.resolve(base, ref) -> ref made absolute against base (RFC 3986
-- enough for a Location header: absolute, scheme-relative, absolute path,
-- relative path).
---@param base string an absolute URL
---@param ref string the reference (a Location header)
---@return string|nil url
function M.resolve(base, ref)
  if ref:find("^%a[%w+.-]*://") then return ref end
  if ref:sub(1, 2) == "//" then return base:match("^(%a[%w+.-]*:)") .. ref end
  local o = base:match("^(%a[%w+.-]*://[^/?#]*)")
  if ref:sub(1, 1) == "/" then return o .. ref end
  return (base:gsub("[?#].*$", ""):gsub("[^/]*$", "")) .. ref
end

return M
