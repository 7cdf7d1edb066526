-- The API key (issue 14, "The key"): what a child process inherits, what
-- stays in memory after close(), what a server that echoes the key gets
-- printed, and the options that could smuggle it (headers, user_agent).
local favcrm = require("favcrm")
local core = require("favcrm.core")
local errors = require("favcrm.errors")
local sandbox = require("spec.support.sandbox")
local keys = require("spec.support.keys")

local LUA = os.getenv("FAVCRM_LUA_BIN") or "lua5.4"
local TMP = os.getenv("FAVCRM_SPEC_TMP") or "/tmp"
local TOP = io.popen("pwd"):read("*l")

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local seq = 0
local function tmpname(what)
  seq = seq + 1
  return string.format("%s/key_spec.%d.%d.%s", TMP, core.getpid(), seq, what)
end

local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
  core.chmod(path, tonumber("600", 8))
end

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

-- Runs a Lua script in a child process; env is a shell prefix of
-- NAME=value words. Returns its stdout, stderr and exit status.
local function run_lua(script, env)
  local sp, out, err, rc = tmpname("lua"), tmpname("out"), tmpname("err"), tmpname("rc")
  write(sp, script)
  os.execute("cd " .. q(TOP) .. " && env " .. (env or "") .. " " .. q(LUA) .. " " .. q(sp)
    .. " >" .. q(out) .. " 2>" .. q(err) .. "; echo $? >" .. q(rc))
  local o, e, r = read(out) or "", read(err) or "", tonumber(read(rc))
  for _, p in ipairs({ sp, out, err, rc }) do os.remove(p) end
  return o, e, r
end

-- a key file the child reads with core.read_secret_file (never argv or env)
local function key_file(key)
  local p = tmpname("key")
  write(p, key .. "\n")
  return p
end

-- Lua text of count(): how many copies of the secret whose halves are the
-- globals-to-be A and B the child's memory holds (/proc/self/mem, every
-- readable region of /proc/self/maps); the secret is never built whole.
local SCAN = [[
      local function count()
        local n = 0
        local maps = assert(io.open("/proc/self/maps"))
        local regions = {}
        for line in maps:lines() do
          local s, e, perm, name = line:match("^(%x+)-(%x+) (%S+) %S+ %S+ %S+%s*(.*)$")
          if s and perm:sub(1, 1) == "r" and name ~= "[vvar]" and name ~= "[vsyscall]" and name ~= "[vvar_vclock]" then
            regions[#regions + 1] = { tonumber(s, 16), tonumber(e, 16) }
          end
        end
        maps:close()
        local mem = assert(io.open("/proc/self/mem", "rb"))
        local CH, OV = 1024 * 1024, #A + #B
        for _, r in ipairs(regions) do
          local at = r[1]
          while at < r[2] do
            local len = math.min(CH + OV, r[2] - at)
            local data
            if mem:seek("set", at) then data = mem:read(len) end
            if not data then break end
            local i = 1
            while true do
              local p = data:find(A, i, true)
              if not p or p > CH then break end
              if data:sub(p + #A, p + #A + #B - 1) == B then n = n + 1 end
              i = p + 1
            end
            at = at + CH
          end
        end
        mem:close()
        return n
      end
]]

describe("the API key", function()
  describe("a stdio server's environment", function()
    local script = [[
      local favcrm = require("favcrm")
      local core = require("favcrm.core")
      local key = assert(core.read_secret_file(arg and os.getenv("KEY_FILE")))
      local function run(env)
        local seen = {}
        local sh = "env >&2; echo \"key=$FAVCRM_API_KEY\" >&2; exit 3"
        local c = assert(favcrm.new({ command = { "sh", "-c", sh }, env = env, timeout = 5,
          on_stderr = function(chunk) seen[#seen + 1] = chunk end }))
        local _, err = c:call("anything", {}, { validate = false })
        c:close()
        local text = table.concat(seen)
        -- the key is compared without ever building it: by its mask and a marker
        local has = text:find("FAVCRM_API_KEY=fav_mcp_", 1, true) ~= nil
        local tok = text:find("FAVCRM_MCP_TOKEN=", 1, true) ~= nil
        local other = text:find("FAVCRM_SOME_SECRET=", 1, true) ~= nil
        local url = text:find("FAVCRM_MCP_URL=http://example.test", 1, true) ~= nil
        local masked = tostring(err.message):find(tostring(key), 1, true) ~= nil
        print(string.format("inherited=%s token=%s other=%s url=%s code=%s masked=%s", tostring(has),
          tostring(tok), tostring(other), tostring(url), tostring(err.code), tostring(masked)))
        io.stderr:write(err.message, "\n")
      end
      run(nil)
      run({ FAVCRM_API_KEY = key:reveal() })
    ]]

    it("holds no FAVCRM_* secret unless the caller passes it in env", function()
      local key = sandbox.account()
      local kf = key_file(key)
      -- the parent's environment holds the key (as a user's shell would)
      local out, err = run_lua(script, "KEY_FILE=" .. q(kf) .. " FAVCRM_API_KEY=\"$(cat " .. q(kf) .. ")\""
        .. " FAVCRM_MCP_TOKEN=\"$(cat " .. q(kf) .. ")\" FAVCRM_SOME_SECRET=x FAVCRM_MCP_URL=http://example.test")
      os.remove(kf)
      local lines = {}
      for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
      assert.equal("inherited=false token=false other=false url=true code=network masked=false", lines[1], err)
      -- passed on purpose: the child gets it; the message built from its
      -- stderr still shows only the mask
      assert.equal("inherited=true token=false other=false url=true code=network masked=true", lines[2], err)
      assert.is_nil(err:find(key, 1, true))
    end)
  end)

  describe("in memory after close() and collection", function()
    -- The child reads the key from a file into a secret (C), calls the
    -- sandbox, closes, collects, and counts the key in its own memory
    -- (/proc/self/mem, every readable region of /proc/self/maps). The key to
    -- look for comes in two halves (KEY_A, KEY_B) and is never built whole.
    local script = [[
      local core = require("favcrm.core")
      local favcrm = require("favcrm")
      local A, B = os.getenv("KEY_A"), os.getenv("KEY_B")
]] .. SCAN .. [[
      local key = assert(core.read_secret_file(os.getenv("KEY_FILE")))
      local c = assert(favcrm.new({ url = os.getenv("FAVCRM_SANDBOX_URL"), api_key = key, timeout = 10 }))
      for i = 1, 5 do assert(c:call("sandbox_echo", { value = i })) end
      assert(c:tools())
      local during = count()
      c:close()
      key:close()
      c, key = nil, nil
      for _ = 1, 3 do collectgarbage("collect") end
      print(string.format("during=%d after=%d", during, count()))
    ]]

    it("holds 0 copies of the key", function()
      if os.getenv("ASAN_OPTIONS") then
        -- ASan maps terabytes of shadow memory: a scan of every readable
        -- region cannot finish; make test runs this scan on every Lua
        pending("SKIPPED under ASan: its shadow memory is too large to scan (make test runs the scan)")
        return
      end
      local key = sandbox.account()
      local kf = key_file(key)
      local half = math.floor(#key / 2)
      local out, err, rc = run_lua(script, "KEY_FILE=" .. q(kf) .. " KEY_A=" .. q(key:sub(1, half))
        .. " KEY_B=" .. q(key:sub(half + 1)))
      os.remove(kf)
      assert.equal(0, rc, err)
      local during, after = out:match("during=(%d+) after=(%d+)")
      assert.is_truthy(during, out .. err)
      -- the scanner works: while the client is open the secret holds it
      assert.is_true(tonumber(during) >= 1, out)
      io.stderr:write("[memory scan ", LUA, ": ", out:gsub("\n", ""), "]\n")
      assert.equal(0, tonumber(after), out)
    end)
  end)

  describe("an OAuth client secret in memory after close() and collection", function()
    -- The child reads a pre-registered client's secret (client_secret_post)
    -- from a file into a secret, is authorized (its token request carries
    -- the secret in the form body), refreshes (again), closes, collects and
    -- counts the secret in its memory. Over libcurl the form body is built
    -- in C into a wiped secret (core.secret_form): no Lua string holds it.
    local script = [[
      local core = require("favcrm.core")
      local favcrm = require("favcrm")
      local A, B = os.getenv("KEY_A"), os.getenv("KEY_B")
]] .. SCAN .. [[
      local function approve(u)
        local http = core.http_new({})
        local tid = assert(http:start({ method = "GET", url = u, headers = {}, timeout_ms = 10000 }))
        local location
        local deadline = core.monotonic() + 10
        while core.monotonic() < deadline do
          for _, item in ipairs(http:poll(1000)) do
            if item.id == tid and item.type == "headers" then location = item.headers.location end
            if item.id == tid and item.type == "done" then
              http:close()
              return location
            end
          end
        end
        http:close()
      end
      local cs = assert(core.read_secret_file(os.getenv("KEY_FILE")))
      local c = assert(favcrm.new({ url = os.getenv("FAVCRM_SANDBOX_OAUTH_URL"), timeout = 20,
        getenv = function() return nil end,
        oauth = { client_id = os.getenv("CLIENT_ID"), client_secret = cs, store = false,
          redirect_uri = "http://127.0.0.1:8976/callback", authorize = approve } }))
      assert(c:tools())
      c.oauth.tokens.expires_at = os.time() + 5 -- within the refresh margin: refreshed
      assert(c:call("list_services", {}))
      assert(c.oauth.refreshes == 1 and c.oauth.client.method == "client_secret_post")
      local during = count()
      c:close()
      cs:close()
      c, cs = nil, nil
      for _ = 1, 3 do collectgarbage("collect") end
      print(string.format("during=%d after=%d", during, count()))
    ]]

    it("holds 0 copies of the client secret", function()
      if os.getenv("ASAN_OPTIONS") then
        pending("SKIPPED under ASan: its shadow memory is too large to scan (make test runs the scan)")
        return
      end
      local url = os.getenv("FAVCRM_SANDBOX_OAUTH_URL")
      if not url then
        pending("SKIPPED: FAVCRM_SANDBOX_OAUTH_URL is not set (run through `make test`)")
        return
      end
      sandbox.reset(url)
      -- a client registered with a secret (RFC 7591), over LuaSocket
      local cjson = require("cjson")
      local body = cjson.encode({ redirect_uris = { "http://127.0.0.1:8976/callback" },
        token_endpoint_auth_method = "client_secret_post", client_name = "key_spec" })
      local got = {}
      local _, st = require("socket.http").request({ url = url:match("^(https?://[^/]+)") .. "/register",
        method = "POST", headers = { ["content-type"] = "application/json", ["content-length"] = tostring(#body) },
        source = require("ltn12").source.string(body), sink = require("ltn12").sink.table(got) })
      local ok, reg = pcall(cjson.decode, table.concat(got))
      assert.equal(201, st)
      assert.is_true(ok and type(reg) == "table" and type(reg.client_secret) == "string")
      keys.remember(reg.client_secret)
      local kf = key_file(reg.client_secret)
      local half = math.floor(#reg.client_secret / 2)
      local out, err, rc = run_lua(script, "KEY_FILE=" .. q(kf) .. " CLIENT_ID=" .. q(reg.client_id)
        .. " KEY_A=" .. q(reg.client_secret:sub(1, half)) .. " KEY_B=" .. q(reg.client_secret:sub(half + 1)))
      os.remove(kf)
      assert.equal(0, rc, err)
      local during, after = out:match("during=(%d+) after=(%d+)")
      assert.is_truthy(during, out .. err)
      assert.is_true(tonumber(during) >= 1, out)
      io.stderr:write("[OAuth client secret memory scan ", LUA, ": ", out:gsub("\n", ""), "]\n")
      assert.equal(0, tonumber(after), out)
    end)
  end)

  describe("a server that echoes the key", function()
    local function echo_server(mode)
      local p = assert(io.popen("cd " .. q(TOP) .. " && " .. q(LUA) .. " spec/support/echo_key_server.lua " .. mode))
      local port = assert(p:read("*l"):match("^port (%d+)$"))
      local url = "http://127.0.0.1:" .. port .. "/mcp"
      return url, function()
        local s = require("socket").connect("127.0.0.1", tonumber(port))
        if s then
          s:send("GET /quit HTTP/1.1\r\nHost: x\r\n\r\n")
          s:receive("*a")
          s:close()
        end
        p:close()
      end
    end

    local function assert_masked(text, key, where)
      assert.is_nil(text:find(key, 1, true), where .. " holds the key: " .. text)
    end

    for _, mode in ipairs({ "401", "rpc" }) do
      it("does not get it into err.message, err.data or hints (" .. mode .. ")", function()
        local url, stop = echo_server(mode)
        local key = sandbox.account()
        local other = "sk_live_" .. string.format("%d%d", os.time(), math.random(1e8, 9e8)) .. "abcdefgh"
        keys.remember(other)
        for _, k in ipairs({ key, other }) do
          local c = assert(favcrm.new({ url = url, api_key = k, timeout = 5 }))
          local _, err = c:call("list_services", {}, { validate = false })
          c:close()
          assert.is_table(err)
          assert.equal(mode == "401" and "unauthorized" or "protocol", err.code)
          assert_masked(err.message, k, "err.message")
          assert_masked(tostring(err), k, "tostring(err)")
          assert_masked(tostring(err.data), k, "err.data")
          assert_masked(tostring(err.hint), k, "err.hint")
          assert.is_truthy(err.message:find("unknown key", 1, true), err.message)
        end
        stop()
      end)
    end

    it("does not get it onto the CLI's stderr or into its --json output", function()
      local url, stop = echo_server("rpc")
      local key = sandbox.account()
      local kf = key_file(key)
      local base = tmpname("cli")
      os.execute("cd " .. q(TOP) .. " && env FAVCRM_MCP_URL=" .. q(url) .. " FAVCRM_API_KEY=\"$(cat " .. q(kf)
        .. ")\" NO_COLOR=1 " .. q(LUA) .. " bin/favcrm tool list --json >" .. q(base .. ".out") .. " 2>"
        .. q(base .. ".err"))
      os.remove(kf)
      stop()
      local out, err = read(base .. ".out") or "", read(base .. ".err") or ""
      os.remove(base .. ".out")
      os.remove(base .. ".err")
      assert_masked(out, key, "stdout")
      assert_masked(err, key, "stderr")
      assert.is_truthy(out:find('"ok": false', 1, true), out)
      assert.is_truthy(out:find("fav_mcp_...", 1, true), out)
      assert.is_truthy(err:find("fav_mcp_...", 1, true), err)
    end)

    it("errors.redact masks protected secrets and anything shaped like a key", function()
      local s = core.secret("plainsecretvalue1234")
      errors.protect(s)
      local e = errors.new("tool_error", "got plainsecretvalue1234 and fav_mcp_abcdefghijklmnop1234",
        { hint = "try fav_mcp_zzzzzzzzzzzzzzzzwxyz", data = "plainsecretvalue1234" })
      assert.equal("got ...1234 and fav_mcp_...1234", e.message)
      assert.equal("try fav_mcp_...wxyz", e.hint)
      assert.equal("...1234", e.data)
      s:close()
      -- a closed secret is no longer looked for; the masked form is left alone
      assert.equal("fav_mcp_...cdef", errors.redact("fav_mcp_...cdef"))
    end)
  end)

  describe("options that could carry it", function()
    it("refuses Authorization in the list form of headers", function()
      for _, h in ipairs({ "Authorization: Bearer fav_mcp_x", "authorization:Bearer x", "AUTHORIZATION : x" }) do
        local ok, err = pcall(favcrm.new, { url = sandbox.url(), headers = { h } })
        assert.is_false(ok)
        assert.matches("'headers'", err)
        assert.is_nil(err:find("fav_mcp_x", 1, true))
      end
      local ok, err = pcall(favcrm.new, { url = sandbox.url(), headers = { "X-A: 1\r\nAuthorization: x" } })
      assert.is_false(ok)
      assert.matches("'headers'", err)
      -- a proper list item still goes through
      assert(favcrm.new({ url = sandbox.url(), headers = { "X-Trace: 1" } })):close()
    end)

    it("refuses a user_agent with CR or LF", function()
      for _, ua in ipairs({ "a\r\nAuthorization: Bearer x", "a\nX: y", "a\rb" }) do
        local ok, err = pcall(favcrm.new, { url = sandbox.url(), user_agent = ua })
        assert.is_false(ok)
        assert.matches("'user_agent'", err)
      end
    end)

    it("the client keeps the key only as a secret", function()
      local key = sandbox.account()
      local c = assert(favcrm.new({ url = sandbox.url(), api_key = key }))
      assert.is_true(core.is_secret(c.opts.api_key))
      c:close()
    end)
  end)

  describe("OAuth tokens (favcrm.login, the grant `favcrm login --oauth` keeps)", function()
    it("are stored 0600, come back as secrets, leave no trace in errors, and are revoked and forgotten", function()
      local login = require("favcrm.login")
      local http = require("socket.http")
      local url = sandbox.oauth_url()
      sandbox.reset(url)
      login.forget(url)
      -- the person: the authorization URL fetched (approved at once), the redirect handed back
      local function authorize(u)
        local _, status, h = http.request({ url = u, redirect = false })
        assert.equal(302, status)
        return h.location
      end
      local c = assert(favcrm.new({ url = url, oauth = { redirect_uri = login.PASTE_REDIRECT,
        authorize = authorize } }))
      assert(c:call("list_my_companies", {}))
      c:close()
      local secrets = sandbox.oauth_secrets(url)
      assert.is_true(#secrets >= 3)
      local e = assert(login.entry(url))
      for _, f in ipairs({ "access_token", "refresh_token" }) do
        assert.is_true(core.is_secret(e.tokens[f]), f .. " is not a favcrm.secret")
        local shown = tostring(e.tokens[f])
        for _, sec in ipairs(secrets) do assert.is_nil(shown:find(sec, 1, true), f .. " prints in clear") end
      end
      assert.equal(tonumber("600", 8), core.stat(login.path()).mode % 512)
      assert.equal("revoked", login.revoke(url, e, 10))
      -- a revoked grant: the call fails (no new sign-in: authorize says no) without a token in the error
      local c2 = assert(favcrm.new({ url = url, oauth = { redirect_uri = login.PASTE_REDIRECT,
        authorize = function() return nil end } }))
      local ok, err = c2:call("list_my_companies", {})
      c2:close()
      assert.is_nil(ok)
      local text = tostring(err) .. " " .. tostring(err.message) .. " " .. tostring(err.hint)
      for _, sec in ipairs(sandbox.oauth_secrets(url)) do
        assert.is_nil(text:find(sec, 1, true), "a token in the error: " .. text)
      end
      assert(login.forget(url))
      assert.is_nil(login.entry(url))
    end)
  end)

  describe("core dumps", function()
    it("are off while a secret is open, back after, with an opt-out", function()
      local allowed = core.core_dumps()
      assert.is_false(allowed)
      local s = core.secret("fav_mcp_abcdefabcdefabcdef")
      local _, blocked = core.core_dumps()
      assert.is_true(blocked)
      core.core_dumps(true)
      assert.is_false(select(2, core.core_dumps()))
      core.core_dumps(false)
      assert.is_true(select(2, core.core_dumps()))
      s:close()
      collectgarbage()
      -- other specs' secrets may still be alive; this one's close is counted
      local out = run_lua([[
        local core = require("favcrm.core")
        local s = core.secret("fav_mcp_abcdefabcdefabcdef")
        local a = select(2, core.core_dumps())
        s:close()
        print(tostring(a) .. " " .. tostring(select(2, core.core_dumps())))
      ]])
      assert.equal("true false\n", out)
      out = run_lua([[
        local core = require("favcrm.core")
        local s = core.secret("fav_mcp_abcdefabcdefabcdef")
        print(tostring(select(2, core.core_dumps())))
        s:close()
      ]], "FAVCRM_ALLOW_CORE_DUMPS=1")
      assert.equal("false\n", out)
    end)
  end)
end)
