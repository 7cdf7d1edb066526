-- Secrets never leak: a whole flow with known keys (sign-up through the CLI,
-- doctor, calls, errors of every code the sandbox can provoke, the CLI with
-- and without --json, `mcp serve`), every byte each process wrote to
-- stdout and stderr captured, every file under its HOME read: the key
-- appears in none of them but the config file. It is never in a child's
-- argv (strace sees every execve of every descendant), and in a child's
-- environment only where the user put it. The config file is 0600 and its
-- folder 0700.
local favcrm = require("favcrm")
local core = require("favcrm.core")
local cjson = require("cjson")
local sandbox = require("spec.support.sandbox")
local keys = require("spec.support.keys")

local TMP = assert(os.getenv("FAVCRM_SPEC_TMP"), "run the specs with make test")
local LUA = assert(os.getenv("FAVCRM_LUA_BIN"))
local BUILD = os.getenv("FAVCRM_BUILD") or "build/5.4"
local TOP = assert(io.popen("pwd")):read("*l")
local HOME = TMP .. "/secrets-home"     -- the CLI's HOME: every file in it is scanned
local OUT = TMP .. "/secrets-out"       -- captured output, key files (not scanned as HOME)
local CONFIG = HOME .. "/.config/favcrm/config.toml"

local sh = require("spec.support.files").sh

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

local function write(path, s, mode)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
  if mode then assert(sh("chmod " .. mode .. " " .. q(path))) end
end

local have_strace = sh("command -v strace >/dev/null 2>&1")
local secrets = {}   -- every key this spec knows: none may leak
local outputs = {}   -- every file of captured output

local function know(key)
  secrets[#secrets + 1] = key
  keys.remember(key)
end

local function assert_no_secret(text, where)
  for _, key in ipairs(secrets) do
    assert.is_nil(text:find(key, 1, true), "a key appears in " .. where)
    -- not even its middle (a partial mask would still leak)
    assert.is_nil(text:find(key:sub(9, -5), 1, true), "part of a key appears in " .. where)
  end
end

local n = 0
--- Runs the CLI (bin/favcrm args...) with the spec's HOME; `key` (when
-- given) reaches it through the environment, read from a 0600 file by the
-- shell, so no argv ever holds it. Returns stdout, stderr, exit status.
local function cli(args, opts)
  opts = opts or {}
  n = n + 1
  local base = OUT .. "/run" .. n
  local argv = {}
  for i, a in ipairs(args) do argv[i] = q(a) end
  local env = "HOME=" .. q(HOME) .. " XDG_CONFIG_HOME=" .. q(HOME .. "/.config")
    .. " FAVCRM_MCP_URL=" .. q(opts.url or sandbox.url()) .. " FAVCRM_BUILD=" .. q(BUILD) .. " NO_COLOR=1"
  if opts.env then env = env .. " " .. opts.env end
  if opts.key then
    write(base .. ".key", opts.key, "600")
    env = env .. " FAVCRM_API_KEY=\"$(cat " .. q(base .. ".key") .. ")\""
  else
    env = env .. " FAVCRM_API_KEY="
  end
  local prog = q(LUA) .. " " .. q(TOP .. "/bin/favcrm") .. " " .. table.concat(argv, " ")
  if have_strace then
    -- -f: every descendant; envp is not printed (no -v), argv is, whole (-s);
    -- --seccomp-bpf: only execve stops the traced processes (a filter they
    -- all inherit), not every system call
    prog = "strace -f --seccomp-bpf -qq -e trace=execve -s 65536 -o " .. q(base .. ".strace") .. " " .. prog
  end
  write(base .. ".in", opts.stdin or "")
  local cmd = "cd " .. q(TOP) .. " && env " .. env:gsub("FAVCRM_API_KEY=\"", "FAVCRM_API_KEY=\"", 1)
    .. " " .. prog .. " <" .. q(base .. ".in") .. " >" .. q(base .. ".out") .. " 2>" .. q(base .. ".err")
    .. "; echo $? >" .. q(base .. ".rc")
  sh(cmd)
  os.remove(base .. ".key")
  local out, err = read(base .. ".out") or "", read(base .. ".err") or ""
  outputs[#outputs + 1] = base .. ".out"
  outputs[#outputs + 1] = base .. ".err"
  assert_no_secret(out, "stdout of favcrm " .. table.concat(args, " "))
  assert_no_secret(err, "stderr of favcrm " .. table.concat(args, " "))
  if have_strace then
    local trace = read(base .. ".strace") or ""
    assert.is_truthy(trace:find("execve(", 1, true), "strace saw no execve")
    assert_no_secret(trace, "the argv of a process started for favcrm " .. table.concat(args, " "))
  end
  return out, err, tonumber(read(base .. ".rc"))
end

-- Every file under dir, recursively.
local function files_under(dir)
  local list = {}
  local p = assert(io.popen("find " .. q(dir) .. " -type f 2>/dev/null"))
  for line in p:lines() do list[#list + 1] = line end
  p:close()
  return list
end

local function mode_of(path)
  local p = assert(io.popen("stat -c %a " .. q(path)))
  local m = p:read("*l")
  p:close()
  return m
end

describe("secrets", function()
  local key, revoked, email

  setup(function()
    assert(sh("rm -rf " .. q(HOME) .. " " .. q(OUT) .. " && mkdir -p " .. q(HOME) .. " " .. q(OUT)))
  end)

  after_each(function()
    sandbox.control("DELETE", "/_sandbox/fault")
  end)

  describe("the CLI", function()
    it("signs up (request, e-mailed code, verify) and saves the key 0600 in a 0700 folder", function()
      email = string.format("secrets.%d.%d@example.com", os.time(), math.random(1, 1e6))
      local out, err, rc = cli({ "signup", "request", "--email", email, "--organisation-name", "Secret Studio",
        "--industry", "fitness", "--country", "HK", "--timezone", "Asia/Hong_Kong", "--json" })
      assert.equal(0, rc, err)
      local req = cjson.decode(out)
      assert.is_string(req.requestId)
      local mail = sandbox.outbox(email)
      local code = assert(mail[#mail], "no e-mail").code
      out, err, rc = cli({ "signup", "verify", "--request-id", req.requestId, "--code", code, "--json" })
      assert.equal(0, rc, err)
      -- the key is in the config file only; the spec reads it from there
      local text = assert(read(CONFIG), "no config file at " .. CONFIG)
      key = assert(text:match('api_key%s*=%s*"(fav_mcp_[^"]+)"'), "no api_key in the config file")
      know(key)
      assert_no_secret(out, "signup verify --json")
      assert.equal("600", mode_of(CONFIG))
      assert.equal("700", mode_of(HOME .. "/.config/favcrm"))
    end)

    it("runs doctor, whoami, tool list/describe/call with and without --json", function()
      assert.is_string(key)
      for _, args in ipairs({
        { "doctor" }, { "doctor", "--json" }, { "whoami" }, { "whoami", "--json" },
        { "tool", "list" }, { "tool", "list", "--json" }, { "tool", "describe", "create_contact" },
        { "tool", "call", "list_services", "{}" }, { "tool", "call", "list_services", "{}", "--json" },
        { "tool", "call", "create_contact", '{"name": "Ada"}', "--json" }, { "config", "path" },
      }) do
        local out, err, rc = cli(args) -- the key from the config file
        assert.equal(0, rc, table.concat(args, " ") .. " (config key): " .. err .. out)
        if args[1] == "tool" and args[2] == "list" then assert.matches("list_services", out, 1, true) end
        if args[#args] == "--json" then assert.is_not_nil(cjson.decode(out)) end
        out, err, rc = cli(args, { key = key }) -- the key from the environment
        assert.equal(0, rc, table.concat(args, " ") .. " (env key): " .. err .. out)
        assert.is_true(#out > 0)
      end
      if have_strace then
        -- the trace really saw the CLI start
        assert.matches("bin/favcrm", read(OUT .. "/run" .. n .. ".strace"), 1, true)
      end
    end)

    it("prints no key in errors of every code it can meet, with and without --json", function()
      revoked = sandbox.account()
      know(revoked)
      sandbox.revoke(revoked)
      local dead = "http://127.0.0.1:" .. (function()
        local s = assert(require("socket").bind("127.0.0.1", 0))
        local _, p = s:getsockname()
        s:close()
        return p
      end)() .. "/mcp"
      local cases = {
        { { "tool", "call", "list_services", "{}" }, { key = revoked } },                     -- unauthorized
        { { "doctor" }, { key = revoked } },
        { { "whoami" }, { key = revoked } },
        { { "tool", "call", "create_contact", '{"nmae": 1}' }, { key = key } },               -- invalid_arguments
        { { "tool", "call", "list_service", "{}" }, { key = key } },                          -- unknown_tool
        { { "tool", "call", "delete_contact", '{"contactId": "ct_x"}' }, { key = key } },     -- confirmation
        { { "tool", "call", "get_contact", '{"contactId": "ct_missing"}' }, { key = key } },  -- tool_error / not_found
        { { "tool", "call", "list_services", "{}" }, { key = key, url = dead } },             -- network
        { { "doctor" }, { key = key, url = dead } },
        { { "tool", "call", "sandbox_slow", '{"ms": 3000}', "--timeout", "0.3" }, { key = key } }, -- timeout
        { { "signup", "verify", "--request-id", "signup_req_nope", "--code", "000000" }, { key = key } },
      }
      local faults = {
        { fault = "status", status = 429, retry_after = 30 },   -- rate_limited
        { fault = "status", status = 500 },                     -- http
        { fault = "invalid_json" },                             -- protocol
        { fault = "huge_body", bytes = 40 * 1024 * 1024 },      -- too_large
        { fault = "redirect", status = 307, location = "file:///etc/passwd" },
      }
      for _, json in ipairs({ false, true }) do
        for _, c in ipairs(cases) do
          local args = { table.unpack and table.unpack(c[1]) or unpack(c[1]) } -- luacheck: ignore
          if json then args[#args + 1] = "--json" end
          local out, err, rc = cli(args, c[2])
          assert.is_true(rc ~= 0, table.concat(args, " ") .. " succeeded: " .. out)
          assert.is_true(#err > 0 or #out > 0)
        end
        for _, f in ipairs(faults) do
          f.match_tool = "list_services"
          f.count = 3
          sandbox.fault(f)
          local args = { "tool", "call", "list_services", "{}" }
          if json then args[#args + 1] = "--json" end
          local _, _, rc = cli(args, { key = key })
          assert.is_true(rc ~= 0)
          sandbox.control("DELETE", "/_sandbox/fault")
        end
      end
    end)

    it("logs in from stdin and out again without printing the key", function()
      local _, err, rc = cli({ "logout" })
      assert.equal(0, rc, err)
      assert.is_nil((read(CONFIG) or ""):find(key, 1, true))
      _, err, rc = cli({ "login" }, { stdin = key .. "\n" })
      assert.equal(0, rc, err)
      assert.is_truthy(read(CONFIG):find(key, 1, true))
      assert.equal("600", mode_of(CONFIG))
      -- a refused key is not saved
      _, _, rc = cli({ "login" }, { stdin = revoked .. "\n" })
      assert.equal(3, rc)
      assert.is_nil(read(CONFIG):find(revoked, 1, true))
    end)

    it("leaves the key in no file under HOME but the config file", function()
      local files = files_under(HOME)
      assert.is_true(#files >= 1)
      for _, path in ipairs(files) do
        if path ~= CONFIG then assert_no_secret(read(path) or "", path) end
      end
      assert.equal("600", mode_of(CONFIG))
      assert.equal("700", mode_of(HOME .. "/.config/favcrm"))
    end)

    it("argv checks ran under strace", function()
      assert.is_true(have_strace, "strace is not installed (apt-get install strace): the argv of the CLI's "
        .. "descendants was not checked")
    end)
  end)

  describe("the CLI with OAuth", function()
    local url, bin, skip
    local OAUTH_FILE = HOME .. "/.config/favcrm/oauth-tokens.json"

    setup(function()
      url = sandbox.oauth_url()
      local okn, nerr = pcall(favcrm.new, { url = url, oauth = { redirect_uri = "http://127.0.0.1:8976/callback",
        authorize = function() end, store = false } })
      if not okn and tostring(nerr):find("unknown option 'oauth'", 1, true) then
        skip = "favcrm.new has no 'oauth' option in this build (issue 17's OAuth client, branch wip-oauth)"
      end
      -- a browser stand-in: notes its argv and environment, then follows the
      -- authorization URL (approved at once) to the CLI's loopback listener
      bin = OUT .. "/bin"
      assert(sh("mkdir -p " .. q(bin)))
      write(bin .. "/xdg-open", "#!/bin/sh\nenv > " .. q(OUT .. "/browser.env") .. "\nprintf '%s\\n' \"$@\" > "
        .. q(OUT .. "/browser.argv") .. "\n"
        -- (a browser is not built with the sanitizers: under `make asan` the
        -- runtime LD_PRELOADed into curl deadlocked it)
        .. "unset LD_PRELOAD ASAN_OPTIONS UBSAN_OPTIONS\n"
        .. "exec curl -s -L -o /dev/null --max-time 20 \"$1\"\n", "755")
    end)

    -- every token, client secret and code verifier the OAuth sandbox saw is a secret too
    local function learn()
      for _, s in ipairs(sandbox.oauth_secrets(url)) do know(s) end
      for _, path in ipairs(outputs) do assert_no_secret(read(path) or "", path) end
      for _, f in ipairs(files_under(OUT)) do
        if f:match("%.strace$") or f:match("browser%.") then assert_no_secret(read(f) or "", f) end
      end
    end

    it("logs in through the browser and the loopback listener, calls, runs doctor and logs out", function()
      if skip then pending(skip) return end
      sandbox.reset(url)
      local env = "PATH=" .. q(bin .. ":" .. os.getenv("PATH"))
      local out, err, rc = cli({ "login", "--oauth" }, { url = url, env = env })
      assert.equal(0, rc, err)
      assert.truthy(out:find("Logged in with OAuth", 1, true), out)
      assert.truthy(read(OUT .. "/browser.argv"):find("/authorize?", 1, true), "the browser was not opened")
      learn()
      assert.equal("600", mode_of(OAUTH_FILE))
      assert.equal("700", mode_of(HOME .. "/.config/favcrm"))
      out, err, rc = cli({ "--json", "tool", "call", "list_my_companies", "{}" }, { url = url })
      assert.equal(0, rc, err)
      assert.truthy(out:find("oauth-owner@example.com", 1, true), out)
      out, err, rc = cli({ "--json", "doctor" }, { url = url })
      assert.equal(0, rc, err)
      local doc = cjson.decode(out)
      assert.equal("oauth", doc.authMethod)
      assert.truthy(tostring(doc.tokenScopes):find("%f[%w]mcp%f[%W]"), tostring(doc.tokenScopes))
      assert.is_string(doc.tokenExpiresAt)
      sandbox.advance(16 * 60, url) -- the access token expires: the next call refreshes
      out, err, rc = cli({ "whoami" }, { url = url })
      assert.equal(0, rc, err)
      assert.truthy(out:find("oauth-owner@example.com", 1, true), out)
      learn()
      for _, path in ipairs(files_under(HOME)) do
        if path ~= OAUTH_FILE and path ~= CONFIG then assert_no_secret(read(path) or "", path) end
      end
      out, err, rc = cli({ "--json", "logout" }, { url = url })
      assert.equal(0, rc, err)
      assert.equal("revoked", cjson.decode(out).oauthRevocation)
      assert.is_nil((read(OAUTH_FILE) or ""):find("fav_o", 1, true))
      learn()
    end)
  end)

  describe("mcp serve as a stdio child", function()
    it("has the key in its environment only, never in argv, stdout or stderr", function()
      assert.is_string(key)
      local stderr = {}
      local c = favcrm.new({
        command = { LUA, TOP .. "/bin/favcrm", "mcp", "serve" },
        env = { FAVCRM_API_KEY = key, FAVCRM_MCP_URL = sandbox.url(), HOME = OUT .. "/serve-home",
          XDG_CONFIG_HOME = OUT .. "/serve-home/.config", FAVCRM_BUILD = BUILD },
        on_stderr = function(s) stderr[#stderr + 1] = s end,
        timeout = 20,
      })
      local doctor = assert(c:call("favcrm_doctor", {}))
      assert.equal("configured", doctor.authStatus)
      assert.same({}, (c:call("list_services")))
      local _, err = c:call("create_contact", { nmae = 1 }, { validate = false })
      assert.is_table(err)
      assert_no_secret(tostring(err), "an error from mcp serve")
      assert_no_secret(cjson.encode(err.result or {}), "an error result from mcp serve")
      local pid = c.session.transport.proc:pid()
      local cmdline = assert(read("/proc/" .. pid .. "/cmdline"))
      assert.is_truthy(cmdline:find("mcp", 1, true))
      assert_no_secret(cmdline, "the argv of mcp serve")
      local environ = read("/proc/" .. pid .. "/environ")
      if environ then
        -- it is there because the user asked (env = {FAVCRM_API_KEY = ...})
        assert.is_truthy(environ:find("FAVCRM_API_KEY=" .. key, 1, true))
      end
      c:close()
      assert_no_secret(table.concat(stderr), "the stderr of mcp serve")
      for _, path in ipairs(files_under(OUT .. "/serve-home")) do
        assert_no_secret(read(path) or "", path)
      end
    end)

    it("passes no key to a stdio child unless asked", function()
      local probe = OUT .. "/probe.sh"
      write(probe, "#!/bin/sh\ntr '\\0' '\\n' </proc/$$/environ >&2\nexit 1\n", "700")
      local seen = {}
      -- the parent process has a key set in its client, but not in its env
      local c = favcrm.new({ command = { probe }, on_stderr = function(s) seen[#seen + 1] = s end,
        api_key = key, timeout = 5 })
      local _, err = c:call("anything")
      assert.equal("network", err.code)
      c:close()
      local env = table.concat(seen)
      assert.is_truthy(env:find("HOME=", 1, true))
      assert_no_secret(env, "the environment of a stdio child nobody gave the key")
      assert_no_secret(tostring(err), "the error of a stdio child")
    end)
  end)

  describe("in process", function()
    it("keeps the key out of every error object and of tostring/JSON", function()
      assert.is_string(key)
      local s = core.secret(key)
      assert.equal("fav_mcp_..." .. key:sub(-4), tostring(s))
      assert.has_error(function() cjson.encode({ s }) end)
      local errs = {}
      local c = favcrm.new({ url = sandbox.url(), api_key = key, timeout = 2 })
      local r = c:request({ email = "bad" })
      errs[#errs + 1] = select(2, c:request({ email = "bad" })) or r
      errs[#errs + 1] = select(2, c:call("list_service"))
      errs[#errs + 1] = select(2, c:call("delete_contact", { contactId = "ct_x" }))
      errs[#errs + 1] = select(2, c:call("sandbox_slow", { ms = 3000 }, { timeout = 0.2 }))
      for _, f in ipairs({ { fault = "status", status = 429, retry_after = 9 }, { fault = "status", status = 503 },
        { fault = "invalid_json" }, { fault = "session_lost" } }) do
        f.match_tool = "list_services"
        f.count = 3
        sandbox.fault(f)
        errs[#errs + 1] = select(2, c:call("list_services"))
        sandbox.control("DELETE", "/_sandbox/fault")
      end
      local rc = favcrm.new({ url = sandbox.url(), api_key = revoked, timeout = 2 })
      errs[#errs + 1] = select(2, rc:call("list_services"))
      rc:close()
      local report = c:doctor()
      c:close()
      local codes = {}
      for _, e in ipairs(errs) do
        if type(e) == "table" then
          codes[#codes + 1] = e.code
          assert_no_secret(tostring(e), "an error object (" .. tostring(e.code) .. ")")
          local ok, text = pcall(cjson.encode, e)
          if ok then assert_no_secret(text, "an error object as JSON") end
        end
      end
      assert.is_true(#codes >= 7, "only " .. #codes .. " errors: " .. table.concat(codes, ","))
      assert_no_secret(cjson.encode(report), "the doctor report")
      for _, path in ipairs(outputs) do assert_no_secret(read(path) or "", path) end
    end)
  end)
end)
