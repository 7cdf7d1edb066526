-- bin/favcrm and favcrm.cli: every command run as a real process
-- ($FAVCRM_LUA_BIN bin/favcrm ...) against the sandbox, with its exit code;
-- a few in-process checks of cli.main (colour, NO_COLOR, parsing).
local cjson = require("cjson")
local favcrm = require("favcrm")
local cli = require("favcrm.cli")
local sandbox = require("spec.support.sandbox")
local keys = require("spec.support.keys")

local LUA = os.getenv("FAVCRM_LUA_BIN") or "lua5.4"
local files = require("spec.support.files")
local _, tmpname = files.tmpdir("cli")
local q, slurp, spit = files.q, files.slurp, files.spit

-- A fresh config folder per test, so saved keys never leak between tests.
local xdg

-- run(args, opts) -> code, stdout, stderr. opts.key: an API key handed over
-- through a file and the environment (never argv); opts.stdin: text;
-- opts.env: extra NAME=value (no secrets); opts.url: the endpoint.
local function run(args, opts)
  opts = opts or {}
  local out, err, rc = tmpname("out"), tmpname("err"), tmpname("rc")
  local pre = { "cd " .. q(os.getenv("PWD") or ".") .. " &&" }
  if opts.key then
    local kf = tmpname("key")
    spit(kf, opts.key)
    pre[#pre + 1] = "FAVCRM_API_KEY=\"$(cat " .. q(kf) .. ")\""
  end
  pre[#pre + 1] = "FAVCRM_MCP_URL=" .. q(opts.url or sandbox.url())
  pre[#pre + 1] = "XDG_CONFIG_HOME=" .. q(xdg)
  for k, v in pairs(opts.env or {}) do pre[#pre + 1] = k .. "=" .. q(v) end
  local stdin = "/dev/null"
  if opts.stdin then
    stdin = tmpname("in")
    spit(stdin, opts.stdin)
  end
  local parts = {}
  for _, a in ipairs(args) do parts[#parts + 1] = q(a) end
  local cmd = table.concat(pre, " ") .. " " .. LUA .. " bin/favcrm " .. table.concat(parts, " ")
    .. " <" .. q(stdin) .. " >" .. q(out) .. " 2>" .. q(err) .. "; echo $? >" .. q(rc)
  os.execute("sh -c " .. q(cmd))
  return tonumber(slurp(rc)), slurp(out) or "", slurp(err) or ""
end

-- Runs a conversation: lines are written to the program's stdin one by one;
-- a function line is called first (it returns the text, e.g. the e-mailed code).
local function converse(args, lines)
  local out, err, rc = tmpname("out"), tmpname("err"), tmpname("rc")
  local pre = "cd " .. q(os.getenv("PWD") or ".") .. " && FAVCRM_MCP_URL=" .. q(sandbox.url())
    .. " XDG_CONFIG_HOME=" .. q(xdg)
  local parts = {}
  for _, a in ipairs(args) do parts[#parts + 1] = q(a) end
  local cmd = "(" .. pre .. " " .. LUA .. " bin/favcrm " .. table.concat(parts, " ") .. " >" .. q(out)
    .. " 2>" .. q(err) .. "; echo $? >" .. q(rc) .. ")"
  local p = assert(io.popen("sh -c " .. q(cmd), "w"))
  for _, l in ipairs(lines) do
    if type(l) == "function" then l = l() end
    p:write(l, "\n")
    p:flush()
  end
  p:close()
  return tonumber(slurp(rc)), slurp(out) or "", slurp(err) or ""
end

local function sleep(s) os.execute("sleep " .. s) end

-- The newest code e-mailed to `to` (polls the outbox, bounded).
local function code_for(to, kind)
  for _ = 1, 100 do
    local mails = sandbox.outbox(to)
    for i = #mails, 1, -1 do
      if mails[i].code and (not kind or mails[i].kind == kind) then return mails[i].code, mails[i] end
    end
    sleep(0.1)
  end
  error("no code e-mailed to " .. to)
end

local function has(text, phrase)
  assert.is_truthy(text:find(phrase, 1, true), "expected [" .. phrase .. "] in:\n" .. text)
end

local function no_key(key, ...)
  for i = 1, select("#", ...) do
    local text = select(i, ...)
    assert.is_nil(text:find(key, 1, true), "the whole API key was printed")
  end
end

local function config_file() return xdg .. "/favcrm/config.toml" end

local function saved_key()
  local text = slurp(config_file())
  return text and text:match('api_key = "([^"]+)"')
end

describe("favcrm (the command-line program)", function()
  before_each(function()
    sandbox.reset()
    xdg = tmpname("xdg")
    os.execute("mkdir -p " .. q(xdg))
  end)

  describe("global options", function()
    it("prints the version with --version and exits 0", function()
      local code, out = run({ "--version" })
      assert.equal(0, code)
      has(out, "favcrm " .. favcrm.VERSION)
      local jcode, jout = run({ "--version", "--json" })
      assert.equal(0, jcode)
      assert.equal(favcrm.VERSION, cjson.decode(jout).version)
    end)

    it("documents every command and the exit codes in --help", function()
      local code, out = run({ "--help" })
      assert.equal(0, code)
      for _, c in ipairs({ "signup request", "signup verify", "doctor", "tool list", "tool describe", "tool call",
        "login", "logout", "whoami", "config path", "team invite accept", "mcp serve" }) do
        has(out, c)
      end
      has(out, "3  authentication")
      has(out, "4  rate limited")
    end)

    it("has --help with an example on every command", function()
      for _, c in ipairs({ { "signup" }, { "signup", "request" }, { "signup", "verify" }, { "doctor" },
        { "tool", "list" }, { "tool", "describe" }, { "tool", "call" }, { "login" }, { "logout" }, { "whoami" },
        { "config", "path" }, { "team", "invite", "accept" }, { "mcp", "serve" } }) do
        c[#c + 1] = "--help"
        local code, out = run(c)
        assert.equal(0, code, table.concat(c, " "))
        has(out, "Usage: favcrm " .. c[1])
        has(out, "Example:")
        has(out, "Exit status:")
      end
      local code, out = run({ "help", "tool", "call" })
      assert.equal(0, code)
      has(out, "--yes")
    end)

    it("exits 1 on a bad command line, with the error on stderr and nothing on stdout", function()
      local cases = {
        {}, { "frobnicate" }, { "doctor", "--bogus" }, { "doctor", "--email", "x@example.com" },
        { "--timeout", "soon", "doctor" }, { "tool" }, { "tool", "describe" }, { "signup", "request" },
        { "signup", "verify", "--request-id", "signup_req_x" }, { "--url", "ftp://example.com/mcp", "doctor" },
        { "tool", "call", "list_services", "[1, 2]" }, { "tool", "call", "list_services", "{not json" },
      }
      for _, args in ipairs(cases) do
        local code, out, err = run(args)
        assert.equal(1, code, table.concat(args, " "))
        assert.equal("", out, table.concat(args, " "))
        assert.is_truthy(err ~= "", table.concat(args, " "))
      end
    end)

    it("warns that --api-key is visible to other users, and never prints the key", function()
      local bogus = "fav_mcp_bogusbogusbogusbogus1234"
      local code, out, err = run({ "--api-key", bogus, "whoami" })
      assert.equal(3, code)
      has(err, "other users")
      no_key(bogus, out, err)
    end)

    it("prints exactly one JSON document with --json, also on failure", function()
      local code, out, err = run({ "whoami", "--json" })
      assert.equal(3, code)
      local doc = cjson.decode(out)
      assert.equal(false, doc.ok)
      assert.equal("no_key", doc.error.code)
      has(err, "no API key")
    end)

    it("takes --timeout", function()
      local key = sandbox.account()
      local code = run({ "--timeout", "20", "whoami" }, { key = key })
      assert.equal(0, code)
    end)
  end)

  describe("colour", function()
    local function capture()
      local buf = {}
      return { write = function(self, ...) for _, s in ipairs({ ... }) do buf[#buf + 1] = s end return self end,
        flush = function() end, text = function() return table.concat(buf) end }
    end
    local function main(args, env)
      local out, err = capture(), capture()
      local code = cli.main(args, { stdout = out, stderr = err, stdin = io.stdin,
        isatty = function() return true end, getenv = function(name) return env[name] end })
      return code, out.text(), err.text()
    end

    it("colours only on a terminal, and never with NO_COLOR", function()
      local env = { FAVCRM_MCP_URL = sandbox.url() }
      local code, out = main({ "tool", "list", "--url", sandbox.url() }, env)
      assert.equal(0, code)
      assert.is_truthy(out:find("\27[", 1, true))
      env.NO_COLOR = "1"
      code, out = main({ "tool", "list", "--url", sandbox.url() }, env)
      assert.equal(0, code)
      assert.is_nil(out:find("\27[", 1, true))
      local _, _, err = main({ "frobnicate" }, env)
      assert.is_nil(err:find("\27[", 1, true))
      local _, pout = run({ "tool", "list" })
      assert.is_nil(pout:find("\27[", 1, true)) -- a file is not a terminal
    end)

    it("parses --flag=value, short flags and --", function()
      local p = assert(cli.parse({ "--url=http://x/mcp", "-y", "tool", "call", "--", "--odd" }))
      assert.equal("http://x/mcp", p.flags.url)
      assert.is_true(p.flags.yes)
      assert.same({ "tool", "call", "--odd" }, p.pos)
      assert.is_nil((cli.parse({ "--nope" })))
    end)
  end)

  describe("config path", function()
    it("prints the config file's path", function()
      local code, out = run({ "config", "path" })
      assert.equal(0, code)
      assert.equal(config_file() .. "\n", out)
      local jcode, jout = run({ "config", "path", "--json" })
      assert.equal(0, jcode)
      assert.equal(config_file(), cjson.decode(jout).path)
    end)
  end)

  describe("doctor", function()
    it("exits 3 with the problem and its hint when no key is configured", function()
      local code, out = run({ "doctor" })
      assert.equal(3, code)
      has(out, "missing: no API key")
      has(out, "hint:")
      has(out, "1 problem")
    end)

    it("exits 0 with a readable report when all is well, and --json is the report", function()
      local key = sandbox.account()
      local code, out, err = run({ "doctor" }, { key = key })
      assert.equal(0, code, err)
      has(out, "CHECK")
      has(out, "configured (key from FAVCRM_API_KEY)")
      has(out, "All checks passed.")
      no_key(key, out, err)
      local jcode, jout = run({ "doctor", "--json" }, { key = key })
      assert.equal(0, jcode)
      local r = cjson.decode(jout)
      assert.is_true(r.ok)
      assert.is_true(r.tool_count > 0)
      assert.is_truthy(jout:find('"problems": []', 1, true))
    end)

    it("exits 3 when the key was revoked", function()
      local key = sandbox.account()
      sandbox.revoke(key)
      local code, out, err = run({ "doctor" }, { key = key })
      assert.equal(3, code)
      has(out, "unauthorized")
      no_key(key, out, err)
    end)

    it("exits 2 when the endpoint is unreachable", function()
      local code, out = run({ "doctor", "--timeout", "5" }, { url = "http://127.0.0.1:1/mcp" })
      assert.equal(2, code)
      has(out, "FAIL")
    end)
  end)

  describe("tool", function()
    it("lists the tools in an aligned table with their marks", function()
      local code, out = run({ "tool", "list" })
      assert.equal(0, code)
      local header = out:match("^[^\n]+")
      local title_col = header:find("TITLE", 1, true)
      local line = out:match("\n(delete_service[^\n]*)")
      assert.equal(title_col, line:find("Delete service", 1, true))
      has(line, "destructive")
      has(out:match("\n(list_services[^\n]*)"), "read-only")
      local jcode, jout = run({ "tool", "list", "--json" })
      assert.equal(0, jcode)
      local found
      for _, t in ipairs(cjson.decode(jout)) do
        if t.name == "list_services" then found = t end
      end
      assert.is_true(found.readOnly)
      assert.is_false(found.destructive)
    end)

    it("describes a tool readably, and suggests names for a typo (exit 2)", function()
      local code, out = run({ "tool", "describe", "create_service" })
      assert.equal(0, code)
      has(out, "Arguments:")
      has(out, "durationMinutes")
      has(out, "integer  yes")
      local jcode, jout = run({ "tool", "describe", "list_services", "--json" })
      assert.equal(0, jcode)
      assert.equal("list_services", cjson.decode(jout).name)
      local bcode, _, berr = run({ "tool", "describe", "list_servics" })
      assert.equal(2, bcode)
      has(berr, "list_services")
    end)

    it("calls a tool; a fresh workspace's empty list prints as []", function()
      local key = sandbox.account()
      local code, out, err = run({ "tool", "call", "list_services", "{}" }, { key = key })
      assert.equal(0, code, err)
      assert.equal("[]\n", out)
      local jcode, jout = run({ "tool", "call", "list_services", "--json" }, { key = key })
      assert.equal(0, jcode)
      assert.equal("[]\n", jout)
    end)

    it("exits 3 without a key, 1 on arguments the schema rejects, 2 on a tool error", function()
      assert.equal(3, (run({ "tool", "call", "list_services", "{}" })))
      local key = sandbox.account()
      local code, _, err = run({ "tool", "call", "create_service", '{"name": "Yoga"}' }, { key = key })
      assert.equal(1, code)
      has(err, "durationMinutes")
      local c2, _, e2 = run({ "tool", "call", "get_service", '{"serviceId": "svc_nothere"}' }, { key = key })
      assert.equal(2, c2)
      assert.is_truthy(e2:find("svc_nothere", 1, true))
    end)

    it("refuses a destructive tool without a terminal unless --yes", function()
      local key = sandbox.account()
      local code, out = run({ "tool", "call", "create_service", '{"name": "Yoga", "durationMinutes": 60}',
        "--json" }, { key = key })
      assert.equal(0, code)
      local id = cjson.decode(out).id
      assert.is_truthy(id)
      local args = cjson.encode({ serviceId = id })
      local rcode, rout, rerr = run({ "tool", "call", "delete_service", args }, { key = key })
      assert.equal(1, rcode)
      assert.equal("", rout)
      has(rerr, "--yes")
      local _, still = run({ "tool", "call", "list_services", "--json" }, { key = key })
      assert.equal(1, #cjson.decode(still))
      local ycode, _, yerr = run({ "tool", "call", "delete_service", args, "--yes" }, { key = key })
      assert.equal(0, ycode, yerr)
      local _, gone = run({ "tool", "call", "list_services" }, { key = key })
      assert.equal("[]\n", gone)
    end)
  end)

  describe("signup request / verify", function()
    it("exits 1 on bad input and sends nothing", function()
      local before = sandbox.stats().by_method["tools/call:register_organisation_request"] or 0
      local code, _, err = run({ "signup", "request", "--email", "not-an-address", "--organisation-name", "Yo" })
      assert.equal(1, code)
      has(err, "email")
      local c2, _, e2 = run({ "signup", "request", "--email", "a@example.com", "--organisation-name", "Yo",
        "--industry", "mining" })
      assert.equal(1, c2)
      has(e2, "industry")
      assert.equal(before, sandbox.stats().by_method["tools/call:register_organisation_request"] or 0)
    end)

    it("requests a code, refuses a wrong one (exit 2), verifies, saves and masks the key", function()
      local code, out, err = run({ "signup", "request", "--email", "ann@example.com", "--organisation-name",
        "Stretch + Breathe", "--industry", "fitness", "--country", "HK", "--json" })
      assert.equal(0, code, err)
      local req = cjson.decode(out)
      assert.equal("an*@example.com", req.maskedEmail)
      assert.is_truthy(req.requestId:match("^signup_req_"))
      assert.is_true(req.expiresInSeconds > 500)
      local c = code_for("ann@example.com")
      local wrong = c == "000000" and "111111" or "000000"
      local wcode, _, werr = run({ "signup", "verify", "--request-id", req.requestId, "--code", wrong })
      assert.equal(2, wcode)
      has(werr, "not correct")
      local vcode, vout, verr = run({ "signup", "verify", "--request-id", req.requestId, "--code", c })
      assert.equal(0, vcode, verr)
      local key = saved_key()
      keys.remember(key)
      assert.is_truthy(key:match("^fav_mcp_"))
      no_key(key, vout, verr)
      has(vout, "fav_mcp_..." .. key:sub(-4))
      has(vout, config_file())
      local mode = io.popen("stat -c %a " .. q(config_file())):read("*l")
      assert.equal("600", mode)
      -- the saved key works
      local wc, wout = run({ "whoami" })
      assert.equal(0, wc)
      has(wout, "ann@example.com")
    end)

    it("shows the whole key only with --show-key, and --no-save leaves the config alone", function()
      local _, out = run({ "signup", "request", "--email", "cy@example.com", "--organisation-name", "Cy Cafe",
        "--json" })
      local req = cjson.decode(out)
      local vcode, vout, verr = run({ "signup", "verify", "--request-id", req.requestId, "--code",
        code_for("cy@example.com"), "--no-save", "--show-key", "--json" })
      assert.equal(0, vcode, verr)
      local ws = cjson.decode(vout)
      keys.remember(ws.apiKey)
      assert.is_truthy(ws.apiKey:match("^fav_mcp_[%w_%-]+$"))
      assert.is_true(#ws.apiKey > 20)
      assert.is_nil(slurp(config_file()))
      no_key(ws.apiKey, verr)
    end)

    it("exits 2 for an existing account", function()
      sandbox.account("dee@example.com")
      local code, out, err = run({ "signup", "request", "--email", "dee@example.com", "--organisation-name",
        "Dee Nails" })
      assert.equal(2, code)
      assert.equal("", out)
      has(err, "MCP Keys")
    end)

    it("exits 4 when rate limited, saying when to retry", function()
      local last_code, last_err, _
      for i = 1, 4 do
        last_code, _, last_err = run({ "signup", "request", "--email", "rl" .. i .. "@example.com",
          "--organisation-name", "Rate Ltd" })
      end
      assert.equal(4, last_code)
      has(last_err, "retry after")
      sandbox.reset()
    end)
  end)

  describe("signup (the conversation, stdin not a terminal)", function()
    it("asks, sends the code, shows the time left, verifies and saves the key", function()
      local code, out, err = converse({ "signup", "--email", "eve@example.com", "--organisation-name",
        "Eve Tutoring", "--country", "GB" }, { function() return code_for("eve@example.com") end })
      assert.equal(0, code, err)
      has(out, "6-digit code")
      assert.is_truthy(out:find("code valid %d+:%d%d more"), out)
      has(out, "You're all set")
      local key = saved_key()
      keys.remember(key)
      no_key(key, out, err)
    end)

    it("exits 2 when the person stops answering", function()
      local code, out = converse({ "signup" }, {})
      assert.equal(2, code)
      has(out, "What's the business called")
    end)
  end)

  describe("login, whoami, logout", function()
    it("checks a key from stdin, saves it, and whoami uses it", function()
      local key = sandbox.account("fay@example.com")
      local code, out, err = run({ "login" }, { stdin = key .. "\n" })
      assert.equal(0, code, err)
      has(out, "fay@example.com")
      no_key(key, out, err)
      assert.equal(key, saved_key())
      local wcode, wout, werr = run({ "whoami" })
      assert.equal(0, wcode)
      has(wout, "fay@example.com")
      has(wout, "from config file")
      no_key(key, wout, werr)
      local jcode, jout = run({ "whoami", "--json" })
      assert.equal(0, jcode)
      assert.equal("fay@example.com", cjson.decode(jout).email)
      local lcode, lout = run({ "logout" })
      assert.equal(0, lcode)
      has(lout, "Removed the API key")
      assert.is_nil(saved_key())
      assert.equal(3, (run({ "whoami" })))
      local l2, l2out = run({ "logout" })
      assert.equal(0, l2)
      has(l2out, "No API key was saved")
    end)

    it("exits 3 and saves nothing when the key is refused", function()
      local bogus = "fav_mcp_notarealkey0000000000000000"
      keys.remember(bogus)
      local code, out, err = run({ "login" }, { stdin = bogus .. "\n" })
      assert.equal(3, code)
      has(err, "refused")
      no_key(bogus, out, err)
      assert.is_nil(saved_key())
    end)

    it("exits 1 when stdin holds no key", function()
      assert.equal(1, (run({ "login" }, { stdin = "" })))
      assert.equal(1, (run({ "login" }, { stdin = "\n" })))
    end)
  end)

  describe("team invite accept", function()
    it("accepts an invitation in a conversation and saves the member's key", function()
      local okey = sandbox.account("owner@example.com")
      local owner = favcrm.new({ url = sandbox.url(), api_key = okey })
      local inv = assert(owner:call("create_team_member_invite", { email = "gus@example.com", name = "Gus" }))
      owner:close()
      local code, out, err = converse({ "team", "invite", "accept", "--token", inv.inviteToken },
        { function() return code_for("gus@example.com", "invite-code") end })
      assert.equal(0, code, err .. out)
      has(out, "Welcome to the team")
      local key = saved_key()
      keys.remember(key)
      no_key(key, out, err)
      local wcode, wout = run({ "whoami" })
      assert.equal(0, wcode)
      has(wout, "gus@example.com")
    end)

    it("exits 2 for an unknown invitation", function()
      local code, out = converse({ "team", "invite", "accept", "--token", "inv_doesnotexist" }, {})
      assert.equal(2, code)
      has(out, "doesn't recognise")
    end)
  end)
end)
