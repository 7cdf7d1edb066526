-- TLS: Debian's nginx on loopback with a self-signed certificate made for
-- this run, proxying to the sandbox over plain HTTP (unbuffered, so event
-- streams flow). Verification is on by default and fails with code `tls`;
-- the certificate given as ca_file makes it pass; nothing turns it off.
local favcrm = require("favcrm")
local core = require("favcrm.core")
local sandbox = require("spec.support.sandbox")
local nginx = require("spec.support.nginx")

local NGINX = "/usr/sbin/nginx"

local exists, sh, free_port = nginx.exists, nginx.sh, nginx.free_port

local have_openssl = sh("command -v openssl >/dev/null 2>&1")

describe("TLS through nginx", function()
  if not exists(NGINX) or not have_openssl then
    it("has nginx and openssl (Debian packages nginx, openssl; make test installs them)", function()
      error("needs " .. NGINX .. " (apt-get install nginx) and the openssl command (apt-get install openssl); "
        .. (exists(NGINX) and "openssl is missing" or "nginx is missing"))
    end)
    return
  end

  local dir, port, proc, url
  setup(function()
    dir = assert(os.getenv("FAVCRM_SPEC_TMP")) .. "/tls"
    assert(sh("rm -rf '" .. dir .. "' && mkdir -p '" .. dir .. "/logs'"))
    -- a certificate for 127.0.0.1 and localhost, valid for a day
    assert(sh("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1"
      .. " -subj /CN=localhost -addext subjectAltName=IP:127.0.0.1,DNS:localhost"
      .. " -keyout '" .. dir .. "/key.pem' -out '" .. dir .. "/cert.pem' >'" .. dir .. "/openssl.log' 2>&1"),
      "openssl could not make the certificate")
    port = free_port()
    local upstream = sandbox.url():match("^http://([^/]+)")
    local conf = ([[
daemon off;
master_process off;
worker_processes 1;
pid DIR/nginx.pid;
error_log DIR/logs/error.log warn;
events { worker_connections 64; }
http {
  access_log DIR/logs/access.log;
  client_body_temp_path DIR/tmp-body;
  proxy_temp_path DIR/tmp-proxy;
  fastcgi_temp_path DIR/tmp-fcgi;
  uwsgi_temp_path DIR/tmp-uwsgi;
  scgi_temp_path DIR/tmp-scgi;
  server {
    listen 127.0.0.1:PORT ssl;
    server_name localhost;
    ssl_certificate DIR/cert.pem;
    ssl_certificate_key DIR/key.pem;
    location / {
      proxy_pass http://UPSTREAM;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
      proxy_buffering off;
      proxy_request_buffering off;
      proxy_read_timeout 60s;
    }
  }
}
]]):gsub("DIR", dir):gsub("PORT", tostring(port)):gsub("UPSTREAM", upstream)
    local f = assert(io.open(dir .. "/nginx.conf", "w"))
    f:write(conf)
    f:close()
    proc = assert(core.spawn({ NGINX, "-p", dir, "-c", dir .. "/nginx.conf", "-e", dir .. "/logs/error.log" }))
    nginx.wait_listening(port, dir, proc)
    url = "https://127.0.0.1:" .. port .. "/mcp"
  end)

  teardown(function()
    if proc then
      proc:kill()
      proc:close(2000)
    end
  end)

  it("refuses the self-signed certificate by default with code tls", function()
    -- (the patience: each new client reads the system's CA bundle, slow under valgrind)
    local c = favcrm.new({ url = url, timeout = sandbox.patience(5) })
    local data, err = c:call("sandbox_echo", { value = 1 })
    assert.is_nil(data)
    assert.equal("tls", err.code, tostring(err))
    assert.is_string(err.message)
    c:close()
  end)

  it("refuses it for localhost too (verification is not only by IP)", function()
    local c = favcrm.new({ url = "https://localhost:" .. port .. "/mcp", timeout = sandbox.patience(5) })
    local data, err = c:call("sandbox_echo", { value = 1 })
    assert.is_nil(data)
    assert.equal("tls", err.code, tostring(err))
    c:close()
  end)

  it("accepts it with ca_file, over JSON and over event streams", function()
    local key = sandbox.account()
    local progress = 0
    local c = favcrm.new({ url = url, ca_file = dir .. "/cert.pem", api_key = key, timeout = 10,
      on_progress = function() progress = progress + 1 end })
    assert.same({}, (c:call("list_services")))
    assert.equal("over tls", (c:call("sandbox_echo", { value = "over tls" })))
    local data = assert(c:call("sandbox_progress", { steps = 3, delay_ms = 10 }))
    assert.equal(3, data.steps)
    assert.equal(3, progress)
    c:close()
  end)

  it("checks the name: the right CA for the wrong host name is still tls", function()
    -- 127.0.0.2 is loopback too but not in the certificate
    local c = favcrm.new({ url = "https://127.0.0.2:" .. port .. "/mcp", ca_file = dir .. "/cert.pem", timeout = 5 })
    local data, err = c:call("sandbox_echo", { value = 1 })
    assert.is_nil(data)
    assert.is_truthy(err.code == "tls" or err.code == "network", tostring(err))
    c:close()
  end)

  it("reports a ca_file that does not exist as tls", function()
    local c = favcrm.new({ url = url, ca_file = dir .. "/missing.pem", timeout = 5 })
    local data, err = c:call("sandbox_echo", { value = 1 })
    assert.is_nil(data)
    assert.equal("tls", err.code, tostring(err))
    c:close()
  end)

  it("has no option that turns verification off", function()
    assert.has_error(function() favcrm.new({ url = url, insecure = true }) end,
      "favcrm.new: unknown option 'insecure'")
    assert.has_error(function() favcrm.new({ url = url, ssl_verify = false }) end,
      "favcrm.new: unknown option 'ssl_verify'")
    assert.has_error(function() favcrm.new({ url = url, verify = false }) end,
      "favcrm.new: unknown option 'verify'")
  end)

  it("doctor reports the TLS failure without a way around it", function()
    local c = favcrm.new({ url = url, timeout = 5 })
    local report = c:doctor()
    assert.is_table(report)
    local text = require("cjson").encode(report)
    assert.is_nil(text:lower():find("insecure", 1, true))
    c:close()
  end)
end)
