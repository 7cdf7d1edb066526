-- spec/support/nginx.lua: what the specs that run Debian's nginx with
-- lua-nginx-module share (nginx_spec, resty_spec, resty_oauth_spec; tls_spec,
-- which runs plain nginx in the foreground, its helpers and wait):
-- whether it can run here, a free port, its error log, the bounded wait
-- until the daemonised nginx listens, and stopping it.
local socket = require("socket")
local core = require("favcrm.core")

local M = {}

--- Where Debian keeps the dynamic modules (ndk, lua).
M.MODULES = "/usr/lib/nginx/modules"

local function exists(path)
  local f = io.open(path)
  if f then f:close() end
  return f ~= nil
end
M.exists = exists

--- sh(cmd) -> true when the command exited 0 (5.1 and 5.2+ alike).
M.sh = require("spec.support.files").sh

--- runnable() -> true when this run is LuaJIT's and nginx with the lua
-- module is installed.
function M.runnable()
  local lua = os.getenv("FAVCRM_LUA_BIN") or ""
  return lua:find("luajit") ~= nil and exists("/usr/sbin/nginx") and exists(M.MODULES .. "/ngx_http_lua_module.so")
end

--- free_port() -> a loopback port nobody listens on at this moment.
function M.free_port()
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return tonumber(port)
end

--- error_log(dir) -> the text of dir/logs/error.log ("" when absent).
function M.error_log(dir)
  local log = io.open(dir .. "/logs/error.log")
  local text = log and log:read("*a") or ""
  if log then log:close() end
  return text
end

--- wait_listening(port, dir [, proc]): waits (at most 10 s) until port
-- takes connections, else fails with dir's error log. A daemonised nginx
-- answers after its start command returned; with proc (a core.spawn
-- handle of an nginx in the foreground) the wait also ends, failing, when
-- that process exits.
function M.wait_listening(port, dir, proc)
  local deadline = core.monotonic() + 10
  while true do
    local c = socket.tcp()
    c:settimeout(0.2)
    local ok = c:connect("127.0.0.1", port)
    c:close()
    if ok then return end
    local gone = proc and proc:poll(50).eof
    assert(not gone and core.monotonic() < deadline, "nginx did not start listening:\n" .. M.error_log(dir))
    if not proc then socket.select(nil, nil, 0.05) end
  end
end

--- stop(pidfile): sends nginx (the pid in pidfile, if any) SIGTERM.
function M.stop(pidfile)
  local f = pidfile and io.open(pidfile)
  if f then
    local pid = f:read("*l")
    f:close()
    if pid and pid:match("^%d+$") then os.execute("kill " .. pid .. " 2>/dev/null") end
  end
end

return M
