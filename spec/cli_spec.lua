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
  local prog = " bin/favcrm "
  if opts.batch then prog = " spec/support/cli_batch.lua " .. q(opts.batch[1]) .. " " .. q(opts.batch[2]) end
  local cmd = table.concat(pre, " ") .. " " .. LUA .. prog .. table.concat(parts, " ")
    .. " <" .. q(stdin) .. " >" .. q(out) .. " 2>" .. q(err) .. "; echo $? >" .. q(rc)
  os.execute("sh -c " .. q(cmd))
  return tonumber(slurp(rc)), slurp(out) or "", slurp(err) or ""
end

-- run_each(list) -> { { code =, stdout =, stderr = }, ... }, the process's
-- own stdout: each argument list of `list` through favcrm.cli's main, one
-- after another in ONE process started as run() starts bin/favcrm (its
-- environment, stdin /dev/null), by spec/support/cli_batch.lua: for
-- commands that need no process of their own.
local function run_each(list)
  local input, output = tmpname("batch-in"), tmpname("batch-out")
  spit(input, cjson.encode(list))
  local code, out, err = run({}, { batch = { input, output } })
  assert(code == 0, "cli_batch.lua failed (" .. tostring(code) .. "): " .. err .. out)
  local results = assert(slurp(output), "cli_batch.lua wrote no results")
  return cjson.decode(results), out
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
        "login", "logout", "whoami", "config path", "team invite accept", "mcp serve", "plan status", "plan check",
        "plan options", "plan upgrade", "plan portal", "team invite create", "team invite accept-request",
        "team invite accept-verify", "whatsapp status", "whatsapp connect", "orgs list", "orgs switch",
        "members search", "members get", "bookings list", "bookings cancel", "invoices list", "invoices void",
        "dashboard", "completion", "resource list", "resource read", "prompt list", "prompt get" }) do
        has(out, c)
      end
      assert.is_truthy(out:find("\n  3%s+authentication"), out)
      assert.is_truthy(out:find("\n  4%s+rate limited"), out)
      assert.is_truthy(out:find("\n  130%s+interrupted"), out)
    end)

    it("has --help with an example on every command", function()
      local commands = { { "signup" }, { "signup", "request" }, { "signup", "verify" }, { "doctor" },
        { "tool", "list" }, { "tool", "describe" }, { "tool", "call" }, { "login" }, { "logout" }, { "whoami" },
        { "config", "path" }, { "team", "invite", "accept" }, { "mcp", "serve" }, { "plan", "status" },
        { "plan", "check" }, { "plan", "options" }, { "plan", "upgrade" }, { "plan", "portal" },
        { "team", "invite", "create" }, { "team", "invite", "accept-request" }, { "team", "invite", "accept-verify" },
        { "whatsapp", "status" }, { "whatsapp", "connect" }, { "orgs", "list" }, { "orgs", "switch" },
        { "dashboard" }, { "members", "search" }, { "members", "get" }, { "bookings", "list" },
        { "bookings", "get" }, { "bookings", "stats" }, { "bookings", "cancel" }, { "bookings", "complete" },
        { "bookings", "confirm" }, { "invoices", "list" }, { "invoices", "get" }, { "invoices", "send" },
        { "invoices", "void" }, { "invoices", "stats" }, { "completion" }, { "resource", "list" },
        { "resource", "read" }, { "prompt", "list" }, { "prompt", "get" } }
      for _, c in ipairs(commands) do c[#c + 1] = "--help" end
      -- in one process (run_each): --help needs no process of its own
      local results = run_each(commands)
      assert.equal(#commands, #results)
      for i, c in ipairs(commands) do
        local code, out = results[i].code, results[i].stdout
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
      -- in one process (run_each), which itself prints nothing on stdout
      local results, batch_out = run_each(cases)
      assert.equal("", batch_out)
      assert.equal(#cases, #results)
      for i, args in ipairs(cases) do
        local code, out, err = results[i].code, results[i].stdout, results[i].stderr
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
      assert.is_true(r.toolCount > 0)
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

  describe("resource, prompt", function()
    it("resource list shows the resources and the template; --json has both lists", function()
      local code, out = run({ "resource", "list" })
      assert.equal(0, code)
      has(out, "favcrm://guide")
      has(out, "favcrm://schemas/register_organisation_request")
      has(out, "favcrm://schemas/{tool}")
      local jcode, jout = run({ "resource", "list", "--json" })
      assert.equal(0, jcode)
      local r = cjson.decode(jout)
      assert.is_true(#r.resources >= 3)
      assert.equal("favcrm://schemas/{tool}", r.resourceTemplates[1].uriTemplate)
    end)

    it("resource read prints the text; --json the whole result; an unknown URI fails (2)", function()
      local code, out = run({ "resource", "read", "favcrm://guide" })
      assert.equal(0, code)
      has(out, "# FavCRM platform guide")
      local jcode, jout = run({ "resource", "read", "favcrm://schemas/register_organisation_request", "--json" })
      assert.equal(0, jcode)
      local schema = cjson.decode(cjson.decode(jout).contents[1].text)
      assert.equal("object", schema.type)
      assert.is_table(schema.properties.organisationName)
      local ncode, _, nerr = run({ "resource", "read", "favcrm://nope" })
      assert.equal(2, ncode)
      has(nerr, "Resource not found")
      local ucode, _, uerr = run({ "resource", "read" })
      assert.equal(1, ucode)
      has(uerr, "needs exactly one URI")
    end)

    it("prompt list and prompt get NAME --arg k=v (repeatable)", function()
      local code, out = run({ "prompt", "list" })
      assert.equal(0, code)
      has(out, "signup")
      has(out, "industry, email?")
      local gcode, gout = run({ "prompt", "get", "signup", "--arg", "industry=fitness", "--arg=email=ada@example.com" })
      assert.equal(0, gcode, gout)
      has(gout, "user: Help me sign up my fitness business")
      has(gout, "ada@example.com")
      local jcode, jout = run({ "prompt", "get", "signup", "--arg", "industry=retail", "--json" })
      assert.equal(0, jcode)
      assert.equal("user", cjson.decode(jout).messages[1].role)
    end)

    it("prompt get: a bad --arg is a usage error; a value the server refuses is invalid_arguments", function()
      local code, _, err = run({ "prompt", "get", "signup", "--arg", "industry" })
      assert.equal(1, code)
      has(err, "--arg wants NAME=VALUE")
      local scode, _, serr = run({ "prompt", "get", "signup", "--arg", "industry=mining" })
      assert.equal(1, scode)
      has(serr, "industry must be one of")
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

    it("refuses --no-browser without --oauth, and a key with --oauth (exit 1, nothing sent)", function()
      local code, _, err = run({ "login", "--no-browser" })
      assert.equal(1, code)
      has(err, "--no-browser goes with --oauth")
      code, _, err = run({ "login", "--oauth", "fav_mcp_notakey" })
      assert.equal(1, code)
      has(err, "takes no key")
    end)

    it("login --oauth --no-browser: an empty answer cancels (exit 2), nothing saved", function()
      local url = sandbox.oauth_url()
      sandbox.reset(url)
      local code, out, err = run({ "login", "--oauth", "--no-browser" }, { url = url, stdin = "\n" })
      assert.equal(2, code, err)
      has(out, "/authorize?")
      has(out, "redirect address> ")
      has(err, "cancelled")
      assert.is_nil(slurp(xdg .. "/favcrm/oauth-tokens.json") and
        slurp(xdg .. "/favcrm/oauth-tokens.json"):find("fav_o", 1, true))
      assert.equal(0, sandbox.control("GET", "/_sandbox/oauth", nil, url).tokens_issued)
    end)

    it("login --oauth --no-browser --json: the address and prompt on stderr, one document on stdout", function()
      local url = sandbox.oauth_url()
      sandbox.reset(url)
      -- the answer is pasted once the address is known: a pipe, fed after the sandbox saw the authorization
      local out, err, rc = tmpname("out"), tmpname("err"), tmpname("rc")
      local cmd = "cd " .. q(os.getenv("PWD") or ".") .. " && FAVCRM_MCP_URL=" .. q(url) .. " XDG_CONFIG_HOME="
        .. q(xdg) .. " " .. LUA .. " bin/favcrm --json login --oauth --no-browser >" .. q(out) .. " 2>" .. q(err)
        .. "; echo $? >" .. q(rc)
      local p = assert(io.popen("sh -c " .. q(cmd), "w"))
      local auth_url
      for _ = 1, 150 do
        auth_url = (slurp(err) or ""):match("(http://127%.0%.0%.1:%d+/authorize%?%S+)")
        if auth_url and (slurp(err) or ""):find("redirect address> ", 1, true) then break end
        os.execute("sleep 0.1")
      end
      assert.is_string(auth_url, slurp(err))
      local _, status, h = require("socket.http").request({ url = auth_url, redirect = false })
      assert.equal(302, status)
      p:write(h.location, "\n")
      p:close()
      assert.equal(0, tonumber(slurp(rc)), slurp(err))
      local doc = cjson.decode(slurp(out))
      assert.equal("oauth", doc.authMethod)
      assert.equal("oauth-owner@example.com", doc.email)
      assert.is_string(doc.tokenExpiresAt)
      for _, secret in ipairs(sandbox.oauth_secrets(url)) do
        no_key(secret, slurp(out), slurp(err))
      end
      assert.equal(0, (run({ "logout" }, { url = url })))
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

  -- The Rust CLI's commands: each runs bin/favcrm against the sandbox and
  -- checks the tool it called (the sandbox's stats) and the output.
  local function last_call()
    local st = sandbox.stats()
    return st.last_tool_name, st.last_tool_arguments
  end

  local function json_of(out)
    local ok, v = pcall(cjson.decode, out)
    assert(ok, "not one JSON document:\n" .. out)
    return v
  end

  describe("plan", function()
    it("status, options: the plan's tools, a table for a person and the payload with --json", function()
      local key = sandbox.account()
      local code, out, err = run({ "plan", "status" }, { key = key })
      assert.equal(0, code, err)
      has(out, "Plan: free (active)")
      has(out, "QUOTA")
      has(out, "contacts")
      assert.equal("get_plan_status", (last_call()))
      local jcode, jout = run({ "--json", "plan", "status" }, { key = key })
      assert.equal(0, jcode)
      local p = json_of(jout)
      assert.equal("free", p.plan)
      assert.equal(500, p.limits.contacts)
      code, out = run({ "plan", "options" }, { key = key })
      assert.equal(0, code)
      has(out, "* Free")
      has(out, "favcrm-lite")
      jcode, jout = run({ "plan", "options", "--json" }, { key = key })
      assert.equal(0, jcode)
      local opts = json_of(jout)
      assert.equal(3, #opts)
      assert.equal("favcrm-lite", opts[2].planCode)
      no_key(key, out, jout, err)
    end)

    it("check: --tool, --quota with --delta, --module; exit 0 either way; 1 without a subject", function()
      local key = sandbox.account()
      local code, out, err = run({ "plan", "check", "--tool", "create_campaign" }, { key = key })
      assert.equal(0, code, err)
      has(out, "Not allowed on the free plan; it needs starter.")
      has(out, "favcrm plan upgrade --plan-code favcrm-lite --confirm")
      local name, args = last_call()
      assert.equal("check_plan_operation", name)
      assert.same({ toolName = "create_campaign", delta = 1 }, args)
      local jcode, jout = run({ "plan", "check", "--quota", "contacts", "--delta", "600", "--module", "bookings",
        "--json" }, { key = key })
      assert.equal(0, jcode)
      local r = json_of(jout)
      assert.is_false(r.allowed)
      assert.equal("starter", r.requiredPlan)
      _, args = last_call()
      assert.same({ quotaCode = "contacts", moduleCode = "bookings", delta = 600 }, args)
      code, out = run({ "plan", "check", "--tool", "list_services" }, { key = key })
      assert.equal(0, code)
      has(out, "Allowed on the free plan.")
      assert.equal(1, (run({ "plan", "check" }, { key = key })))
      assert.equal(1, (run({ "plan", "check", "--tool", "x", "--delta", "0" }, { key = key })))
      assert.equal(3, (run({ "plan", "status" })))
    end)

    it("upgrade: nothing without --confirm (exit 1); with it a checkout link; the Rust CLI's arguments", function()
      local key = sandbox.account()
      local code, out, err = run({ "plan", "upgrade", "--plan-code", "favcrm-lite" }, { key = key })
      assert.equal(1, code)
      assert.equal("", out)
      has(err, "--confirm")
      local _, args = last_call()
      assert.same({ planCode = "favcrm-lite", billingCycle = "monthly", confirm = false }, args)
      code, out, err = run({ "plan", "upgrade", "--plan-id", "plan_growth", "--billing-cycle", "yearly",
        "--return-url", "https://example.com/back", "--confirm" }, { key = key })
      assert.equal(0, code, err)
      has(out, "Checkout: https://checkout.stripe.com/")
      _, args = last_call()
      assert.same({ planId = "plan_growth", billingCycle = "yearly", returnUrl = "https://example.com/back",
        confirm = true }, args)
      local jcode, jout = run({ "plan", "upgrade", "--plan-code", "favcrm-lite", "--confirm", "--json" }, { key = key })
      assert.equal(0, jcode)
      assert.equal("checkout", json_of(jout).kind)
      assert.equal(1, (run({ "plan", "upgrade", "--confirm" }, { key = key })))
      assert.equal(1, (run({ "plan", "upgrade", "--plan-code", "x", "--billing-cycle", "weekly" }, { key = key })))
    end)

    it("portal: a billing portal link for the current paid plan; the free plan has none (exit 2)", function()
      local key = sandbox.account()
      local code, _, err = run({ "plan", "portal", "--confirm" }, { key = key })
      assert.equal(2, code)
      has(err, "favcrm plan upgrade")
      sandbox.control("POST", "/_sandbox/plan", { apiKey = key, plan = "starter" })
      code, _, err = run({ "plan", "portal" }, { key = key })
      assert.equal(1, code)
      has(err, "--confirm")
      local out
      code, out, err = run({ "plan", "portal", "--confirm", "--return-url", "https://example.com/b" }, { key = key })
      assert.equal(0, code, err)
      has(out, "Billing portal: https://billing.stripe.com/")
      local name, args = last_call()
      assert.equal("create_plan_upgrade_link", name)
      assert.same({ planCode = "favcrm-lite", returnUrl = "https://example.com/b", confirm = true }, args)
    end)
  end)

  describe("team invite create / accept-request / accept-verify", function()
    it("creates an invitation; the invitee requests a code and verifies; the key is saved and masked", function()
      local okey = sandbox.account("boss@example.com")
      local code, out, err = run({ "team", "invite", "create", "--email", "dee@example.com", "--name", "Dee",
        "--role", "manager", "--expires-in-hours", "48", "--json" }, { key = okey })
      assert.equal(0, code, err)
      local inv = json_of(out)
      assert.is_truthy(inv.inviteToken:match("^inv_"))
      assert.equal("manager", inv.role)
      local _, args = last_call()
      assert.same({ email = "dee@example.com", name = "Dee", role = "manager", expiresInHours = 48 }, args)
      assert.equal(1, (run({ "team", "invite", "create", "--email", "x@example.com", "--role", "owner" },
        { key = okey })))
      -- the invitee has no key
      code, out, err = run({ "team", "invite", "accept-request", "--token", inv.inviteToken })
      assert.equal(0, code, err)
      has(out, "de*@example.com")
      has(out, "favcrm team invite accept-verify --token " .. inv.inviteToken)
      local c = code_for("dee@example.com", "invite-code")
      code, out, err = run({ "team", "invite", "accept-verify", "--token", inv.inviteToken, "--code", c })
      assert.equal(0, code, err)
      local key = saved_key()
      keys.remember(key)
      assert.is_truthy(key:match("^fav_mcp_"))
      no_key(key, out, err)
      has(out, "fav_mcp_..." .. key:sub(-4))
      has(out, config_file())
      has(out, "Next: favcrm whoami")
      assert.is_nil(out:find("Authorization", 1, true))
      local wcode, wout = run({ "whoami" })
      assert.equal(0, wcode)
      has(wout, "dee@example.com")
    end)

    it("accept-verify --json: the Rust CLI's keys, the whole key only with --show-key; --no-save", function()
      local okey = sandbox.account("boss2@example.com")
      local owner = favcrm.new({ url = sandbox.url(), api_key = okey })
      local inv = assert(owner:call("create_team_member_invite", { email = "eve@example.com" }))
      owner:close()
      assert.equal(0, (run({ "team", "invite", "accept-request", "--token", inv.inviteToken })))
      local c = code_for("eve@example.com", "invite-code")
      local code, out, err = run({ "team", "invite", "accept-verify", "--token", inv.inviteToken, "--code", c,
        "--no-save", "--show-key", "--json" })
      assert.equal(0, code, err)
      local r = json_of(out)
      keys.remember(r.apiKey)
      assert.is_truthy(r.apiKey:match("^fav_mcp_%w+"))
      assert.is_true(r.apiKeyShown)
      assert.is_nil(r.apiKeySavedTo)
      assert.is_truthy(r.userId and r.companyId and r.organisationId)
      assert.is_nil(saved_key())
      assert.equal(2, (run({ "team", "invite", "accept-verify", "--token", inv.inviteToken, "--code", c })))
      assert.equal(1, (run({ "team", "invite", "accept-verify", "--token", inv.inviteToken })))
    end)
  end)

  describe("whatsapp", function()
    it("status and connect (--mode cloud-api|coexistence, --ttl-minutes)", function()
      local key = sandbox.account()
      local code, out, err = run({ "whatsapp", "status" }, { key = key })
      assert.equal(0, code, err)
      has(out, "not_connected")
      assert.equal("get_whatsapp_connection_status", (last_call()))
      code, out, err = run({ "whatsapp", "connect" }, { key = key })
      assert.equal(0, code, err)
      has(out, "https://app.favcrm.io/whatsapp/connect/")
      local _, args = last_call()
      assert.same({ onboardingMode = "cloud_api" }, args)
      local jcode, jout = run({ "whatsapp", "connect", "--mode", "coexistence", "--ttl-minutes", "60", "--json" },
        { key = key })
      assert.equal(0, jcode)
      assert.equal("coexistence", json_of(jout).onboardingMode)
      _, args = last_call()
      assert.same({ onboardingMode = "coexistence", ttlMinutes = 60 }, args)
      assert.equal(1, (run({ "whatsapp", "connect", "--mode", "sms" }, { key = key })))
      assert.equal(1, (run({ "whatsapp", "connect", "--ttl-minutes", "soon" }, { key = key })))
    end)
  end)

  describe("orgs, dashboard", function()
    it("lists the companies, switches to one (exit 2 for another's), and shows the dashboard", function()
      local key, _, acct = sandbox.account()
      local code, out, err = run({ "orgs", "list" }, { key = key })
      assert.equal(0, code, err)
      has(out, "* Sandbox Studio")
      has(out, acct.companyId)
      local jcode, jout = run({ "orgs", "list", "--json" }, { key = key })
      assert.equal(0, jcode)
      assert.equal(acct.companyId, json_of(jout).companies[1].companyId)
      code, out, err = run({ "orgs", "switch", acct.companyId }, { key = key })
      assert.equal(0, code, err)
      has(out, "switched")
      local _, args = last_call()
      assert.same({ companyId = acct.companyId }, args)
      code, _, err = run({ "orgs", "switch", "co_someoneelse" }, { key = key })
      assert.equal(2, code)
      has(err, "not a member")
      assert.equal(1, (run({ "orgs", "switch" }, { key = key })))
      code, out = run({ "dashboard" }, { key = key })
      assert.equal(0, code)
      has(out, "bookingsToday")
      jcode, jout = run({ "dashboard", "--json" }, { key = key })
      assert.equal(0, jcode)
      local d = json_of(jout)
      assert.equal(0, d.members)
      assert.equal(acct.companyId, d.companyId)
    end)
  end)

  describe("members, bookings, invoices", function()
    it("members search (query and filters) and get", function()
      local key = sandbox.account()
      local c = favcrm.new({ url = sandbox.url(), api_key = key })
      local ada = assert(c:call("create_account", { name = "Ada Lovelace", email = "ada@example.com" }))
      assert(c:call("create_account", { name = "Bo Chan" }))
      c:close()
      local code, out, err = run({ "members", "search", "ada" }, { key = key })
      assert.equal(0, code, err)
      has(out, "Ada Lovelace")
      assert.is_nil(out:find("Bo Chan", 1, true))
      local _, args = last_call()
      assert.same({ search = "ada" }, args)
      local jcode, jout = run({ "members", "search", "--limit", "5", "--json" }, { key = key })
      assert.equal(0, jcode)
      assert.equal(2, #json_of(jout))
      _, args = last_call()
      assert.same({ limit = 5 }, args)
      run({ "members", "search", "--inactive-days", "30", "--tier-id", "tier_x" }, { key = key })
      _, args = last_call()
      assert.same({ inactiveDays = 30, tierId = "tier_x" }, args)
      code, out = run({ "members", "get", ada.id }, { key = key })
      assert.equal(0, code)
      has(out, "ada@example.com")
      assert.equal(2, (run({ "members", "get", "mem_nobody" }, { key = key })))
      code, out = run({ "members", "search", "zzz" }, { key = key })
      assert.equal(0, code)
      has(out, "(no rows)")
    end)

    it("bookings list/get/stats/confirm/complete/cancel (cancel is destructive: --yes)", function()
      local key = sandbox.account()
      local c = favcrm.new({ url = sandbox.url(), api_key = key })
      local svc = assert(c:call("create_service", { name = "Yoga", durationMinutes = 60 }))
      local bk = assert(c:call("create_booking", { serviceId = svc.id, start = "2031-05-01T10:00:00Z",
        customerName = "Ada" }))
      local bk2 = assert(c:call("create_booking", { serviceId = svc.id, start = "2031-05-02T10:00:00Z",
        customerName = "Bo" }))
      c:close()
      local code, out, err = run({ "bookings", "list", "--from", "2031-05-01", "--to", "2031-05-02", "--status",
        "confirmed", "--limit", "10" }, { key = key })
      assert.equal(0, code, err)
      has(out, bk.id)
      assert.is_nil(out:find(bk2.id, 1, true))
      local _, args = last_call()
      assert.same({ from = "2031-05-01", to = "2031-05-02", status = "confirmed", limit = 10 }, args)
      code, out = run({ "bookings", "get", bk.id }, { key = key })
      assert.equal(0, code)
      has(out, "Yoga")
      local jcode, jout = run({ "bookings", "stats", "--json" }, { key = key })
      assert.equal(0, jcode)
      assert.equal(2, json_of(jout).total)
      code, _, err = run({ "bookings", "confirm", bk.id }, { key = key })
      assert.equal(2, code)
      has(err, "confirmed")
      code, out = run({ "bookings", "complete", bk.id, "--json" }, { key = key })
      assert.equal(0, code)
      assert.equal("completed", json_of(out).status)
      code, out, err = run({ "bookings", "cancel", bk2.id }, { key = key })
      assert.equal(1, code)
      assert.equal("", out)
      has(err, "--yes")
      code = run({ "bookings", "cancel", bk2.id, "--yes" }, { key = key })
      assert.equal(0, code)
      assert.equal("cancel_booking", (last_call()))
    end)

    it("invoices list/get/send/stats/void (void is destructive: --yes); amounts print as written", function()
      local key = sandbox.account()
      local c = favcrm.new({ url = sandbox.url(), api_key = key })
      local inv = assert(c:call("create_invoice", { customerName = "Ada", items = { { description = "Class",
        quantity = 3, unitPrice = 0.3 } } }))
      c:close()
      local code, out, err = run({ "invoices", "list", "--status", "draft", "--limit", "5" }, { key = key })
      assert.equal(0, code, err)
      has(out, inv.number)
      local _, args = last_call()
      assert.same({ status = "draft", limit = 5 }, args)
      local jcode, jout = run({ "invoices", "get", inv.id, "--json" }, { key = key })
      assert.equal(0, jcode)
      has(jout, '"total": 0.9')
      assert.is_nil(jout:find("0.9000", 1, true))
      code, out = run({ "invoices", "send", inv.id, "--json" }, { key = key })
      assert.equal(0, code)
      assert.equal("sent", json_of(out).status)
      jcode, jout = run({ "invoices", "stats", "--json" }, { key = key })
      assert.equal(0, jcode)
      assert.equal(1, json_of(jout).byStatus.sent.count)
      assert.equal(1, (run({ "invoices", "void", inv.id }, { key = key })))
      code, out = run({ "invoices", "void", inv.id, "--yes", "--json" }, { key = key })
      assert.equal(0, code)
      assert.equal("void", json_of(out).status)
      assert.equal(3, (run({ "invoices", "list" })))
    end)
  end)

  describe("the Rust CLI's --json doctor shape, and the small things", function()
    it("--json doctor: toolCount, authSource, currentUser, plan, whatsapp; failures as ...Error", function()
      local key = sandbox.account()
      local code, out = run({ "--json", "doctor" }, { key = key })
      assert.equal(0, code)
      local r = json_of(out)
      assert.is_true(r.reachable)
      assert.is_true(r.authenticated)
      assert.equal("FAVCRM_API_KEY", r.authSource)
      assert.is_true(r.toolCount > 30)
      assert.is_truthy(r.currentUser.userId)
      assert.equal("free", r.plan.plan)
      assert.is_false(r.whatsapp.connected)
      assert.is_nil(r.tool_count)
      assert.is_nil(r.auth_source)
      sandbox.revoke(key)
      code, out = run({ "doctor", "--json" }, { key = key })
      assert.equal(3, code)
      r = json_of(out)
      assert.equal("string", type(r.currentUserError))
      assert.equal("unauthorized", r.currentUserErrorCode)
      code, out = run({ "doctor", "--json" }, { url = "http://127.0.0.1:9/mcp" })
      assert.equal(2, code)
      r = json_of(out)
      assert.is_false(r.reachable)
      assert.equal("string", type(r.error))
    end)

    it("the doctor's hint for a missing key names commands, not Lua functions", function()
      local code, out = run({ "doctor" })
      assert.equal(3, code)
      has(out, "favcrm signup")
      assert.is_nil(out:find("favcrm.request", 1, true))
    end)

    it("reports a short unknown option as it was typed", function()
      local code, out, err = run({ "-x" })
      assert.equal(1, code)
      assert.equal("", out)
      has(err, "unknown option -x")
      assert.is_nil(err:find("--x", 1, true))
      code, _, err = run({ "doctor", "--frob=1" })
      assert.equal(1, code)
      has(err, "unknown option --frob")
    end)

    it("--json prints the shortest number that reads back (0.9, not 0.90000000000000002)", function()
      local code, out = run({ "--json", "tool", "call", "sandbox_echo", '{"value": [0.9, 0.1, 1e300, 3]}' })
      assert.equal(0, code)
      assert.same({ 0.9, 0.1, 1e300, 3 }, json_of(out))
      has(out, "0.9")
      assert.is_nil(out:find("0.9000", 1, true))
      assert.is_nil(out:find("0.1000", 1, true))
    end)

    it("wraps --help to COLUMNS (80 when unset and not a terminal)", function()
      for _, cols in ipairs({ 60, 100 }) do
        for _, args in ipairs({ { "--help" }, { "team", "invite", "accept-verify", "--help" } }) do
          local code, out = run(args, { env = { COLUMNS = tostring(cols) } })
          assert.equal(0, code)
          local in_example = false
          -- one match a line on every Lua ("[^\n]*" also yields empty matches on 5.1/LuaJIT)
          for line in (out .. "\n"):gmatch("([^\n]*)\n") do
            if line == "Example:" then in_example = true elseif line == "" then in_example = false end
            if not in_example and not line:match("^%s*%S+,?$") then
              assert.is_true(#line <= cols, cols .. " columns, but: [" .. line .. "]")
            end
          end
        end
      end
      local _, out = run({ "--help" })
      local widest = 0
      for line in out:gmatch("[^\n]*") do widest = math.max(widest, #line) end
      assert.is_true(widest <= 80 and widest > 60, "widest line " .. widest)
    end)

    it("prints completion scripts for bash, zsh and fish from the command table", function()
      local code, out = run({ "completion", "bash" })
      assert.equal(0, code)
      has(out, "complete -F _favcrm favcrm")
      local f = tmpname("bash")
      spit(f, out)
      local function complete(line)
        local words = {}
        for w in line:gmatch("%S+") do words[#words + 1] = w end
        if line:sub(-1) == " " then words[#words + 1] = "" end
        local qs = {}
        for i, w in ipairs(words) do qs[i] = q(w) end
        local p = io.popen("bash -c " .. q("source " .. q(f) .. "; COMP_WORDS=(" .. table.concat(qs, " ")
          .. "); COMP_CWORD=" .. (#words - 1) .. "; _favcrm; echo \"${COMPREPLY[*]}\""))
        local r = p:read("*l")
        p:close()
        return r or ""
      end
      assert.equal("plan", complete("favcrm pl"))
      assert.equal("check options portal status upgrade", complete("favcrm plan "))
      has(complete("favcrm --json team invite "), "accept-verify")
      has(complete("favcrm plan upgrade --"), "--plan-code")
      has(complete("favcrm plan upgrade --"), "--json")
      assert.equal("coexistence", complete("favcrm whatsapp connect --mode co"))
      assert.equal("staff", complete("favcrm --url http://x team invite create --role st"))
      assert.equal("bash zsh fish", complete("favcrm completion "))
      for _, sh in ipairs({ "zsh", "fish" }) do
        local scode, sout = run({ "completion", sh })
        assert.equal(0, scode)
        has(sout, "accept-verify")
        has(sout, "plan-code")
      end
      local _, zsh = run({ "completion", "zsh" })
      has(zsh, "#compdef favcrm")
      if files.sh("command -v zsh >/dev/null 2>&1") then
        local zf = tmpname("zsh")
        spit(zf, zsh)
        assert.is_true(files.sh("zsh -n " .. q(zf)))
      end
      assert.equal(1, (run({ "completion", "tcsh" })))
    end)

    it("signup verify shows a person commands, not the server's agent-facing Authorization text", function()
      local _, out = run({ "signup", "request", "--email", "fay@example.com", "--organisation-name", "Fay Fitness",
        "--json" })
      local req = json_of(out)
      local code, vout, verr = run({ "signup", "verify", "--request-id", req.requestId, "--code",
        (code_for("fay@example.com")) })
      assert.equal(0, code, verr)
      keys.remember(saved_key())
      assert.is_nil(vout:find("Authorization", 1, true))
      assert.is_nil(vout:find("Bearer", 1, true))
      has(vout, "favcrm whoami")
    end)
  end)
end)
