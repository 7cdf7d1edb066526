-- The module in a real nginx with lua-nginx-module (Debian's packages): a
-- location whose handler calls the sandbox through favcrm.resty, hit by 50
-- concurrent requests. Needs the LuaJIT build: `make test LUA=luajit`.
local cjson = require("cjson")
local socket = require("socket")
local sandbox = require("spec.support.sandbox")

local nginx = require("spec.support.nginx")
local MODULES, free_port = nginx.MODULES, nginx.free_port

local lua = os.getenv("FAVCRM_LUA_BIN") or ""
local runnable = nginx.runnable()


describe("favcrm.resty in nginx", function()
  if not runnable then
    pending("SKIPPED: needs nginx, libnginx-mod-http-lua and the LuaJIT build (make test LUA=luajit); this run is "
      .. lua)
    return
  end

  local dir, port, pidfile
  setup(function()
    local top = assert(os.getenv("PWD"))
    local build = assert(os.getenv("FAVCRM_BUILD"))
    dir = os.getenv("FAVCRM_SPEC_TMP") .. "/nginx"
    os.execute("mkdir -p '" .. dir .. "/logs'")
    port = free_port()
    pidfile = dir .. "/nginx.pid"
    -- Started by root, nginx runs its workers as nobody, who cannot read a
    -- checkout under a 0700 home folder: the workers run as root then.
    local id = io.popen("id -u")
    local as_root = id:read("*l") == "0"
    id:close()
    local conf = ([[
USER
daemon on;
worker_processes 2;
pid PID;
error_log DIR/logs/error.log warn;
load_module MODULES/ndk_http_module.so;
load_module MODULES/ngx_http_lua_module.so;
env FAVCRM_API_KEY;
env FAVCRM_SANDBOX_URL;
events { worker_connections 512; }
http {
  access_log off;
  client_body_temp_path DIR/tmp-body;
  proxy_temp_path DIR/tmp-proxy;
  fastcgi_temp_path DIR/tmp-fcgi;
  uwsgi_temp_path DIR/tmp-uwsgi;
  scgi_temp_path DIR/tmp-scgi;
  lua_package_path "TOP/lua/?.lua;TOP/lua/?/init.lua;/usr/share/lua/5.1/?.lua;;";
  lua_package_cpath "TOP/BUILD/?.so;/usr/lib/x86_64-linux-gnu/lua/5.1/?.so;;";
  server {
    listen 127.0.0.1:PORT;
    location /crm {
      content_by_lua_block {
        local favcrm = require("favcrm")
        local cjson = require("cjson")
        local client = favcrm.new({ url = os.getenv("FAVCRM_SANDBOX_URL"),
          transport = require("favcrm.resty").new() })
        local services, err = client:call("list_services")
        local echo = client:call("sandbox_echo", { value = tonumber(ngx.var.arg_i) })
        client:close()
        ngx.say(cjson.encode({ i = echo, services = services and #services or tostring(err) }))
      }
    }
  }
}
]]):gsub("USER", as_root and "user root root;" or ""):gsub("PID", pidfile):gsub("DIR", dir)
      :gsub("MODULES", MODULES):gsub("TOP", top)
      :gsub("BUILD", build):gsub("PORT", tostring(port))
    local f = assert(io.open(dir .. "/nginx.conf", "w"))
    f:write(conf)
    f:close()
    local keyfile = dir .. "/key"
    f = assert(io.open(keyfile, "w"))
    f:write((sandbox.account()))
    f:close()
    -- the key reaches nginx through its environment, never argv
    assert(nginx.sh("FAVCRM_API_KEY=$(cat '" .. keyfile .. "') nginx -p '" .. dir .. "' -c '" .. dir
      .. "/nginx.conf' -e '" .. dir .. "/logs/error.log'"), "nginx did not start")
    os.remove(keyfile)
    -- nginx daemonised: wait (bounded) until its port takes connections
    local up = false
    for _ = 1, 100 do
      local c = socket.tcp()
      c:settimeout(0.1)
      if c:connect("127.0.0.1", port) then
        c:close()
        up = true
        break
      end
      c:close()
      socket.select(nil, nil, 0.05)
    end
    assert(up, "nginx did not start listening")
  end)

  teardown(function()
    nginx.stop(pidfile)
  end)

  it("answers 50 concurrent requests, each through its own cosocket client", function()
    local urls = {}
    for i = 1, 50 do
      urls[#urls + 1] = string.format("-o '%s/out-%d.json' 'http://127.0.0.1:%d/crm?i=%d'", dir, i, port, i)
    end
    local function error_log() return nginx.error_log(dir) end
    local ok = os.execute("curl -s --no-progress-meter --fail-with-body --parallel --parallel-max 50 "
      .. table.concat(urls, " "))
    assert(ok == true or ok == 0, "curl failed against nginx; nginx's error log:\n" .. error_log())
    for i = 1, 50 do
      local f = assert(io.open(dir .. "/out-" .. i .. ".json"))
      local body = f:read("*a")
      f:close()
      local r = cjson.decode(body)
      assert.same({ i = i, services = 0 }, r, "answer " .. i .. ": " .. body .. "\nnginx's error log:\n" .. error_log())
    end
    local text = error_log()
    assert.is_nil(text:find("lua entry thread aborted", 1, true), text)
  end)
end)
