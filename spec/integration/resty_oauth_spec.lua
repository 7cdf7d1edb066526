-- OAuth inside nginx (Debian's nginx + libnginx-mod-http-lua, ONE worker):
-- a content handler whose client has `oauth = {...}` and transport =
-- favcrm.resty discovers, registers, is authorized and exchanges its code,
-- all on cosockets, so while the token request is outstanding (the
-- sandbox holds /token: POST /_sandbox/oauth {hold_token = true}) the same
-- worker serves another request. With libcurl under OAuth (before issue
-- 21's fix) the worker blocked in the token request and the second request
-- got no answer. Needs the LuaJIT build: `make test LUA=luajit`.
local cjson = require("cjson")
local socket = require("socket")
local core = require("favcrm.core")
local sandbox = require("spec.support.sandbox")
local keys = require("spec.support.keys")

local nginx = require("spec.support.nginx")
local MODULES, sh, free_port = nginx.MODULES, nginx.sh, nginx.free_port

local lua = os.getenv("FAVCRM_LUA_BIN") or ""
local URL = os.getenv("FAVCRM_SANDBOX_OAUTH_URL")
local runnable = nginx.runnable()


local function counts() return sandbox.control("GET", "/_sandbox/oauth", nil, URL) end

describe("OAuth in nginx (one worker, favcrm.resty)", function()
  if not runnable then
    pending("SKIPPED: needs nginx, libnginx-mod-http-lua and the LuaJIT build (make test LUA=luajit); this run is "
      .. lua)
    return
  end
  if not URL then
    pending("SKIPPED: FAVCRM_SANDBOX_OAUTH_URL is not set (spec/support/run.sh starts the OAuth sandbox; "
      .. "run through `make test`)")
    return
  end

  local dir, port, pidfile
  local function error_log() return nginx.error_log(dir) end

  -- sends a GET to nginx and returns the socket, the answer not read yet
  local function send(path)
    local c = socket.tcp()
    c:settimeout(20)
    assert(c:connect("127.0.0.1", port))
    assert(c:send("GET " .. path .. " HTTP/1.0\r\nHost: x\r\n\r\n"))
    return c
  end
  -- reads the answer of send(): decoded JSON, or nil, why within `timeout` s
  local function answer(c, timeout)
    c:settimeout(timeout or 20)
    local text, err = c:receive("*a")
    c:close()
    if not text then return nil, "no answer: " .. tostring(err) end
    local body = text:match("\r\n\r\n(.*)$")
    local ok, v = pcall(cjson.decode, body or "")
    if not ok or type(v) ~= "table" then return nil, "nginx answered " .. text .. "\nerror log:\n" .. error_log() end
    return v
  end

  setup(function()
    local top = assert(os.getenv("PWD"))
    local build = assert(os.getenv("FAVCRM_BUILD"))
    dir = os.getenv("FAVCRM_SPEC_TMP") .. "/resty-oauth-nginx"
    assert(sh("rm -rf '" .. dir .. "' && mkdir -p '" .. dir .. "/logs'"))
    port = free_port()
    pidfile = dir .. "/nginx.pid"
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
env FAVCRM_SANDBOX_OAUTH_URL;
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
  server {
    listen 127.0.0.1:PORT;
    # an OAuth client per request: discovery, registration, the person's
    # consent (the sandbox approves a GET of the authorization URL at once
    # in test mode: fetched here on a cosocket too), the code exchange
    location = /oauth {
      content_by_lua_block {
        local favcrm = require("favcrm")
        local resty = require("favcrm.resty")
        local cjson = require("cjson")
        local client = favcrm.new({ url = os.getenv("FAVCRM_SANDBOX_OAUTH_URL"), timeout = 20,
          getenv = function() return nil end,
          transport = resty.new({ shared = false }),
          oauth = { redirect_uri = "http://127.0.0.1:8976/callback", store = false,
            authorize = function(u)
              local res, err = resty.new():request({ method = "GET", url = u, headers = {}, timeout_ms = 10000 })
              if not res then error("authorize: " .. tostring(err)) end
              local loc = res.headers.location
              res:close()
              return loc
            end } })
        local v, err = client:call("sandbox_echo", { value = tonumber(ngx.var.arg_value) })
        local kind = client.oauth.http_kind
        client:close()
        ngx.say(cjson.encode({ value = v, code = err and err.code, message = err and err.message,
          oauth_transport = kind }))
      }
    }
    # the client credentials grant: the secret read from a 0600 file
    location = /cc {
      content_by_lua_block {
        local favcrm = require("favcrm")
        local core = require("favcrm.core")
        local cjson = require("cjson")
        local secret = assert(core.read_secret_file(ngx.var.arg_secret_file))
        local client = favcrm.new({ url = os.getenv("FAVCRM_SANDBOX_OAUTH_URL"), timeout = 20,
          getenv = function() return nil end,
          transport = require("favcrm.resty").new({ shared = false }),
          oauth = { grant = "client_credentials", client_id = ngx.var.arg_client_id, client_secret = secret,
            store = false } })
        local v, err = client:call("sandbox_echo", { value = tonumber(ngx.var.arg_value) })
        local kind = client.oauth.http_kind
        client:close()
        secret:close()
        ngx.say(cjson.encode({ value = v, code = err and err.code, message = err and err.message,
          oauth_transport = kind }))
      }
    }
    location = /ping {
      content_by_lua_block { ngx.say('{"pong":true}') }
    }
  }
}
]]):gsub("USER", as_root and "user root root;" or ""):gsub("PID", pidfile):gsub("DIR", dir)
      :gsub("MODULES", MODULES):gsub("TOP", top):gsub("BUILD", build):gsub("PORT", tostring(port))
    local f = assert(io.open(dir .. "/nginx.conf", "w"))
    f:write(conf)
    f:close()
    assert(sh("nginx -p '" .. dir .. "' -c '" .. dir .. "/nginx.conf' -e '" .. dir .. "/logs/error.log'"),
      "nginx did not start:\n" .. error_log())
    nginx.wait_listening(port, dir)
  end)

  teardown(function()
    sandbox.control("POST", "/_sandbox/oauth", { hold_token = false }, URL)
    nginx.stop(pidfile)
  end)

  before_each(function() sandbox.reset(URL) end)
  after_each(function()
    -- whatever happened, nothing stays held, and every token issued joins
    -- the run's secrets scan (none may appear in any output or log)
    sandbox.control("POST", "/_sandbox/oauth", { hold_token = false }, URL)
    for _, t in ipairs(sandbox.oauth_secrets(URL)) do keys.remember(t) end
  end)

  it("authorizes a content handler's client and calls a tool, OAuth's requests on cosockets", function()
    local r = assert(answer(send("/oauth?value=7")))
    assert.equal(7, r.value, cjson.encode(r))
    assert.equal("lua", r.oauth_transport)
    local k = counts()
    assert.equal(1, k.registrations)
    assert.equal(1, k.code_exchanges)
    assert.is_nil(error_log():find("lua entry thread aborted", 1, true), error_log())
  end)

  it("gets a client credentials token in a handler and calls a tool, on cosockets", function()
    local body = cjson.encode({ redirect_uris = { "http://127.0.0.1:8976/callback" }, client_name = "cc",
      grant_types = { "client_credentials" }, token_endpoint_auth_method = "client_secret_post" })
    local got = {}
    local _, st = require("socket.http").request({ url = URL:match("^(https?://[^/]+)") .. "/register",
      method = "POST", headers = { ["content-type"] = "application/json", ["content-length"] = tostring(#body) },
      source = require("ltn12").source.string(body), sink = require("ltn12").sink.table(got) })
    assert.equal(201, st)
    local reg = cjson.decode(table.concat(got))
    keys.remember(reg.client_secret)
    local sf = dir .. "/cc-secret"
    local f = assert(io.open(sf, "w"))
    f:write(reg.client_secret, "\n")
    f:close()
    core.chmod(sf, tonumber("600", 8))
    local r = assert(answer(send("/cc?value=9&client_id=" .. reg.client_id .. "&secret_file=" .. sf)))
    os.remove(sf)
    assert.equal(9, r.value, cjson.encode(r))
    assert.equal("lua", r.oauth_transport)
    assert.equal(1, counts().client_credentials)
  end)

  it("serves another request on the same worker while the token request is outstanding", function()
    sandbox.control("POST", "/_sandbox/oauth", { hold_token = true }, URL)
    local a = send("/oauth?value=8")
    -- wait (bounded) until the handler's token request reaches the sandbox
    -- and is held there
    local deadline = core.monotonic() + 15
    while (counts().token_held or 0) < 1 do
      assert(core.monotonic() < deadline, "the token request never arrived:\n" .. error_log())
      socket.select(nil, nil, 0.02)
    end
    -- the worker is free: /ping is answered while /oauth waits for /token
    local pong, why = answer(send("/ping"), 5)
    local held = counts().token_held
    sandbox.control("POST", "/_sandbox/oauth", { hold_token = false }, URL)
    local r = assert(answer(a))
    assert.is_nil(why, "the worker did not serve /ping while the token request was held (it blocked)")
    assert.same({ pong = true }, pong)
    assert.equal(1, held) -- still held when /ping was answered
    assert.equal(8, r.value, cjson.encode(r))
    assert.equal("lua", r.oauth_transport)
    assert.equal(1, counts().code_exchanges)
  end)
end)
