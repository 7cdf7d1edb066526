--- Test helper (spec/key_spec.lua): a hostile MCP server on loopback that
-- echoes the API key it was sent back in its error messages.
--   lua echo_key_server.lua MODE   prints "port N", then serves until GET /quit
-- MODE "401": every POST gets HTTP 401 with a JSON-RPC error naming the key;
-- MODE "rpc": every POST gets HTTP 200 with a JSON-RPC error naming the key.
-- Each answer closes its connection. Accept waits at most 60 s, so a spec
-- that died cannot leave it behind for long.
local socket = require("socket")
local mode = arg[1] or "401"
local server = assert(socket.bind("127.0.0.1", 0))
server:settimeout(60)
local _, port = server:getsockname()
io.stdout:write("port ", port, "\n")
io.stdout:flush()

while true do
  local c = server:accept()
  if not c then break end
  c:settimeout(10)
  local line = c:receive("*l") or ""
  local headers = {}
  while true do
    local h = c:receive("*l")
    if not h or h == "" then break end
    local k, v = h:match("^([^:]+):%s*(.*)$")
    if k then headers[k:lower()] = v end
  end
  local body = ""
  local len = tonumber(headers["content-length"] or "0") or 0
  if len > 0 then body = c:receive(len) or "" end
  if line:find("^GET /quit") then
    c:send("HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    c:close()
    break
  end
  local key = (headers.authorization or ""):match("^Bearer%s+(.*)$") or "(none)"
  local id = body:match('"id":(%d+)') or "null"
  local text = '{"jsonrpc":"2.0","id":' .. id .. ',"error":{"code":-32001,"message":"unknown key '
    .. key .. '","data":"you sent ' .. key .. '"}}'
  local status = mode == "401" and "401 Unauthorized" or "200 OK"
  c:send("HTTP/1.1 " .. status .. "\r\nContent-Type: application/json\r\nContent-Length: " .. #text
    .. "\r\nWWW-Authenticate: Bearer error=\"invalid_token\"\r\nConnection: close\r\n\r\n" .. text)
  c:close()
end
server:close()
