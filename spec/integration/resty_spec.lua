-- favcrm.resty in a real nginx (Debian's nginx + libnginx-mod-http-lua, one
-- worker): the per-worker session, the URL forms, the TLS pool and the
-- refusal of the blocking transport. Needs the LuaJIT build:
-- `make test LUA=luajit`.
local cjson = require("cjson")
local socket = require("socket")
local sandbox = require("spec.support.sandbox")

local nginx = require("spec.support.nginx")
local MODULES, sh, free_port = nginx.MODULES, nginx.sh, nginx.free_port

local lua = os.getenv("FAVCRM_LUA_BIN") or ""
local runnable = nginx.runnable()
  and sh("command -v openssl >/dev/null 2>&1")


local function urlencode(s)
  return (s:gsub("[^%w%-_.~]", function(c) return string.format("%%%02X", c:byte()) end))
end

describe("favcrm.resty in nginx (one worker)", function()
  if not runnable then
    pending("SKIPPED: needs nginx, libnginx-mod-http-lua, openssl and the LuaJIT build (make test LUA=luajit); "
      .. "this run is " .. lua)
    return
  end

  local dir, port, tls_port, v6_port, pidfile, sandbox_hostport
  local function error_log() return nginx.error_log(dir) end

  -- GET path on the Lua server -> decoded JSON answer
  local function get(path)
    local c = socket.tcp()
    c:settimeout(20)
    assert(c:connect("127.0.0.1", port))
    c:send("GET " .. path .. " HTTP/1.0\r\nHost: x\r\n\r\n")
    local text = c:receive("*a")
    c:close()
    local body = text and text:match("\r\n\r\n(.*)$")
    local ok, v = pcall(cjson.decode, body or "")
    assert(ok and type(v) == "table", "nginx answered " .. tostring(text) .. "\nerror log:\n" .. error_log())
    return v
  end
  local function call(url, value, verify, protocol)
    return get("/call?url=" .. urlencode(url) .. "&value=" .. value .. (verify == false and "&noverify=1" or "")
      .. (protocol and ("&protocol=" .. protocol) or ""))
  end
  -- the session tests pin MCP 2025-11-25 (a 2026-07-28 server has no session)
  local it25 = sandbox.speaks("2025") and it or function(name)
    pending("SKIPPED on a 2026-only sandbox (FAVCRM_SANDBOX_ERA=" .. sandbox.era .. "), 2025 machinery: " .. name)
  end
  local it26 = sandbox.speaks("2026") and it or function(name)
    pending("SKIPPED on a 2025-only sandbox (FAVCRM_SANDBOX_ERA=" .. sandbox.era .. "), MCP 2026-07-28: " .. name)
  end
  local itdual = (sandbox.speaks("2025") and sandbox.speaks("2026")) and it or function(name)
    pending("SKIPPED: needs a sandbox that speaks both eras (FAVCRM_SANDBOX_ERA=dual; this one: "
      .. sandbox.era .. "): " .. name)
  end
  local function count(stats, what, name)
    return (stats[what] or {})[name] or 0
  end

  setup(function()
    local top = assert(os.getenv("PWD"))
    local build = assert(os.getenv("FAVCRM_BUILD"))
    dir = os.getenv("FAVCRM_SPEC_TMP") .. "/resty-nginx"
    assert(sh("rm -rf '" .. dir .. "' && mkdir -p '" .. dir .. "/logs'"))
    assert(sh("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1"
      .. " -subj /CN=localhost -addext subjectAltName=IP:127.0.0.1,DNS:localhost"
      .. " -keyout '" .. dir .. "/key.pem' -out '" .. dir .. "/cert.pem' >'" .. dir .. "/openssl.log' 2>&1"),
      "openssl could not make the certificate")
    port, tls_port, v6_port = free_port(), free_port(), free_port()
    pidfile = dir .. "/nginx.pid"
    sandbox_hostport = sandbox.url():match("^http://([^/]+)")
    local id = io.popen("id -u")
    local as_root = id:read("*l") == "0"
    id:close()
    local conf = ([[
USER
daemon on;
worker_processes 1;
pid PID;
error_log DIR/logs/error.log warn;
load_module MODULES/ndk_http_module.so;
load_module MODULES/ngx_http_lua_module.so;
env FAVCRM_API_KEY;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path DIR/tmp-body;
  proxy_temp_path DIR/tmp-proxy;
  fastcgi_temp_path DIR/tmp-fcgi;
  uwsgi_temp_path DIR/tmp-uwsgi;
  scgi_temp_path DIR/tmp-scgi;
  lua_package_path "TOP/lua/?.lua;TOP/lua/?/init.lua;/usr/share/lua/5.1/?.lua;;";
  lua_package_cpath "TOP/BUILD/?.so;/usr/lib/x86_64-linux-gnu/lua/5.1/?.so;;";
  log_format uri '$request_uri';
  server {
    listen 127.0.0.1:PORT;
    location = /call {
      content_by_lua_block {
        local favcrm = require("favcrm")
        local resty = require("favcrm.resty")
        local cjson = require("cjson")
        local client = favcrm.new({ url = ngx.unescape_uri(ngx.var.arg_url), timeout = 10,
          protocol = ngx.var.arg_protocol,
          transport = resty.new({ ssl_verify = ngx.var.arg_noverify == nil }) })
        local v, err = client:call("sandbox_echo", { value = tonumber(ngx.var.arg_value) })
        client:close()
        ngx.say(cjson.encode({ value = v, code = err and err.code, message = err and err.message,
          shared = resty.shared_count() }))
      }
    }
    location = /blocking {
      content_by_lua_block {
        local ok, err = pcall(require("favcrm").new, { url = "http://127.0.0.1:9/mcp" })
        ngx.say(require("cjson").encode({ ok = ok, message = tostring(err) }))
      }
    }
  }
  # the sandbox over TLS (a self-signed certificate nginx's Lua does not trust)
  server {
    listen 127.0.0.1:TLSPORT ssl;
    ssl_certificate DIR/cert.pem;
    ssl_certificate_key DIR/key.pem;
    location / {
      proxy_pass http://SANDBOX;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }
  }
  # the sandbox on IPv6 loopback; the URIs asked for are logged
  server {
    listen [::1]:V6PORT;
    access_log DIR/logs/v6.log uri;
    location / {
      proxy_pass http://SANDBOX;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }
  }
}
]]):gsub("USER", as_root and "user root root;" or ""):gsub("PID", pidfile):gsub("DIR", dir)
      :gsub("MODULES", MODULES):gsub("TOP", top):gsub("BUILD", build):gsub("TLSPORT", tostring(tls_port))
      :gsub("V6PORT", tostring(v6_port)):gsub("PORT", tostring(port)):gsub("SANDBOX", sandbox_hostport)
    local f = assert(io.open(dir .. "/nginx.conf", "w"))
    f:write(conf)
    f:close()
    local keyfile = dir .. "/key"
    f = assert(io.open(keyfile, "w"))
    f:write((sandbox.account()))
    f:close()
    -- the key reaches nginx through its environment, never argv
    assert(sh("FAVCRM_API_KEY=$(cat '" .. keyfile .. "') nginx -p '" .. dir .. "' -c '" .. dir
      .. "/nginx.conf' -e '" .. dir .. "/logs/error.log'"), "nginx did not start:\n" .. error_log())
    os.remove(keyfile)
    nginx.wait_listening(port, dir)
  end)

  teardown(function()
    nginx.stop(pidfile)
  end)

  it26("keeps the discovered 2026-07-28 server per worker: no initialize, one tools/list, no DELETE over 20 requests",
    function()
    local url = sandbox.url()
    local before = sandbox.stats()
    for i = 1, 20 do
      local r = call(url, i, nil, "2026-07-28")
      assert.equal(i, r.value, cjson.encode(r))
    end
    local after = sandbox.stats()
    assert.equal(0, count(after, "by_method", "initialize") - count(before, "by_method", "initialize"))
    assert.is_true(count(after, "by_method", "tools/list") - count(before, "by_method", "tools/list") <= 1)
    assert.equal(20, count(after, "by_method", "tools/call") - count(before, "by_method", "tools/call"))
    assert.equal(0, count(after, "by_http_method", "DELETE") - count(before, "by_http_method", "DELETE"))
  end)

  it25("keeps one MCP session per worker: one initialize, one tools/list, no DELETE over 20 requests", function()
    local url = sandbox.url()
    local before = sandbox.stats()
    for i = 1, 20 do
      local r = call(url, i, nil, "2025-11-25")
      assert.equal(i, r.value, cjson.encode(r))
    end
    local after = sandbox.stats()
    assert.equal(1, count(after, "by_method", "initialize") - count(before, "by_method", "initialize"))
    assert.equal(1, count(after, "by_method", "tools/list") - count(before, "by_method", "tools/list"))
    assert.equal(20, count(after, "by_method", "tools/call") - count(before, "by_method", "tools/call"))
    assert.equal(0, count(after, "by_http_method", "DELETE") - count(before, "by_http_method", "DELETE"))
  end)

  it("gives 50 concurrent requests on the shared session each its own answer", function()
    local args = {}
    for i = 1, 50 do
      args[#args + 1] = string.format("-o '%s/c-%d.json' 'http://127.0.0.1:%d/call?url=%s&value=%d'", dir, i, port,
        urlencode(sandbox.url()), 1000 + i)
    end
    assert(sh("curl -s --no-progress-meter --fail-with-body --parallel --parallel-max 50 " .. table.concat(args, " ")),
      error_log())
    for i = 1, 50 do
      local f = assert(io.open(dir .. "/c-" .. i .. ".json"))
      local r = cjson.decode(f:read("*a"))
      f:close()
      assert.equal(1000 + i, r.value, cjson.encode(r))
    end
    assert.is_nil(error_log():find("lua entry thread aborted", 1, true), error_log())
  end)

  it25("re-initialises once after the server lost the session (404)", function()
    local url = sandbox.url()
    assert.equal(1, call(url, 1, nil, "2025-11-25").value)
    sandbox.fault({ fault = "session_lost", match_tool = "sandbox_echo" })
    local before = sandbox.stats()
    for i = 2, 6 do assert.equal(i, call(url, i, nil, "2025-11-25").value) end
    local after = sandbox.stats()
    assert.equal(1, after.session_lost - before.session_lost)
    assert.equal(1, count(after, "by_method", "initialize") - count(before, "by_method", "initialize"))
  end)

  itdual("keeps a 2025-11-25 client and a 2026-07-28 client of one URL apart in a worker", function()
    -- one worker-shared state per protocol choice: a pinned 2025 client
    -- never sends a 2026 client's version header (nor the other way round)
    local url = sandbox.url()
    local before = sandbox.stats()
    for i = 1, 3 do
      local r26 = call(url, 10 * i, nil, "2026-07-28")
      assert.equal(10 * i, r26.value, cjson.encode(r26))
      local r25 = call(url, 10 * i + 1, nil, "2025-11-25")
      assert.equal(10 * i + 1, r25.value, cjson.encode(r25))
    end
    local after = sandbox.stats()
    assert.is_true(count(after, "by_method", "initialize") - count(before, "by_method", "initialize") <= 1)
    assert.equal(6, count(after, "by_method", "tools/call") - count(before, "by_method", "tools/call"))
  end)

  it("connects to the host of a URL with userinfo, takes an upper-case scheme", function()
    local host, p = sandbox_hostport:match("^(.*):(%d+)$")
    assert.equal(5, call("http://user:pw@" .. host .. ":" .. p .. "/mcp", 5).value)
    assert.equal(6, call("HTTP://" .. host .. ":" .. p .. "/mcp", 6).value)
  end)

  it("reaches [::1] and never sends a fragment", function()
    local r = call("http://[::1]:" .. v6_port .. "/mcp?from=v6#frag", 7)
    assert.equal(7, r.value, cjson.encode(r))
    local f = assert(io.open(dir .. "/logs/v6.log"))
    local log = f:read("*a")
    f:close()
    assert.matches("/mcp%?from=v6\n", log)
    assert.is_nil(log:find("frag", 1, true), log)
  end)

  it("never lets a verifying client use a connection a non-verifying one opened", function()
    local url = "https://127.0.0.1:" .. tls_port .. "/mcp"
    -- the self-signed server: fine without verification (and pooled) ...
    assert.equal(1, call(url, 1, false).value)
    assert.equal(2, call(url, 2, false).value)
    -- ... refused with it, though a trusted-looking connection sits in the pool
    local r = call(url, 3)
    assert.is_nil(r.value)
    assert.equal("tls", r.code, cjson.encode(r))
    assert.matches("TLS handshake with 127.0.0.1 failed", r.message)
    -- and the pooled one still serves the client that does not verify
    assert.equal(4, call(url, 4, false).value)
  end)

  it("refuses the blocking default transport in a request handler, with the fix in the message", function()
    local r = get("/blocking")
    assert.is_false(r.ok)
    assert.matches("favcrm.new: inside nginx (content phase) the default transport would block the worker "
      .. "for the whole call; pass transport = require(\"favcrm.resty\").new()", r.message, 1, true)
  end)
end)
