--- Test helper: LuaSocket dressed as an OpenResty cosocket (the subset
-- favcrm.resty uses), so favcrm.resty's HTTP/1.1 code runs in plain Lua.
local socket = require("socket")

local Sock = {}
Sock.__index = Sock

local function new()
  return setmetatable({ s = socket.tcp(), reused = 0 }, Sock)
end

function Sock:settimeouts(connect_ms, send_ms, read_ms)
  self.timeout = math.max(connect_ms, send_ms, read_ms) / 1000
  self.s:settimeout(self.timeout)
end
-- nginx wants an IPv6 literal in brackets; LuaSocket wants it bare
function Sock:connect(host, port)
  local v6 = host:match("^%[(.*)%]$")
  if v6 then
    self.s = socket.tcp6()
    self.s:settimeout(self.timeout)
  end
  return self.s:connect(v6 or host, port)
end
function Sock:getreusedtimes() return self.reused end
function Sock.sslhandshake() return nil, "no TLS in this shim" end
function Sock:send(data) return self.s:send(data) end
function Sock:receive(pattern) return self.s:receive(pattern) end
function Sock:setkeepalive()
  self.kept = true
  self.s:close()
  return 1
end
function Sock:close() return self.s:close() end

return { new = new, sleep = socket.sleep }
