-- Start-up (issue 20): a program that only calls tools parses, and keeps,
-- only the Lua it needs. The modules below load on first use; this checks,
-- in a fresh process (this one has loaded everything), that require, new
-- and a tool call leave them unloaded, and that the first use loads them.
local sandbox = require("support.sandbox")

local LAZY = { "favcrm.protocol", "favcrm.tasks", "favcrm.util", "favcrm.config_toml", "favcrm.era_wire",
  "favcrm.registration", "favcrm.doctor", "favcrm.oauth", "favcrm.scheduler", "favcrm.session_listen",
  "favcrm.session_answer", "favcrm.session_http_error", "favcrm.session_negotiate", "favcrm.session_mrtr",
  "favcrm.json_text", "favcrm.config_file", "favcrm.suggest", "favcrm.cli_tools", "favcrm.cli_workspace",
  "favcrm.era_verdicts", "favcrm.era_answers" }

-- Runs `code` in a fresh interpreter (the spec run's), `input` on its
-- stdin (the API key travels there: never argv or the environment);
-- returns what it wrote (stdout and stderr).
local function fresh(code, input)
  local out = assert(os.getenv("FAVCRM_SPEC_TMP")) .. "/lazy_load.out"
  os.remove(out)
  local p = assert(io.popen(os.getenv("FAVCRM_LUA_BIN") .. " -e '" .. code .. "' >" .. out .. " 2>&1", "w"))
  p:write(input or "")
  p:close()
  local f = assert(io.open(out))
  local text = f:read("*a")
  f:close()
  return text
end

-- The child's prelude: loaded() lists the modules of LAZY it has loaded.
local PRELUDE = [[local LAZY = { "]] .. table.concat(LAZY, [[", "]]) .. [[" }
local function loaded(step)
  local t = {}
  for _, m in ipairs(LAZY) do if package.loaded[m] then t[#t + 1] = m end end
  io.write(step, ":", table.concat(t, ","), "\n")
end
]]

describe("start-up loading", function()
  it("require, new and a tool call leave the lazily loaded modules unloaded; first use loads them", function()
    local pin = sandbox.speaks("2025") and "2025-11-25" or "2026-07-28"
    local out = fresh(PRELUDE .. [[
local favcrm = require("favcrm")
loaded("require")
local c = assert(favcrm.new({ url = "]] .. sandbox.url() .. [[", api_key = io.read("*l"), protocol = "]]
      .. pin .. [[" }))
loaded("new")
assert(c:call("list_services"))
loaded("call")
assert(#favcrm.resource_links({ content = { { type = "resource_link", uri = "x:y" } } }) == 1)
assert(c:ping())
loaded("ping")
local res = c:call_many({ { "list_services" } })
assert(res[1])
loaded("many")
c:close()
io.write("ok\n")
]], sandbox.account() .. "\n")
    assert.matches("\nok\n$", out)
    assert.matches("^require:\nnew:\n", out)
    local after_call = out:match("\ncall:([^\n]*)\n")
    if pin == "2025-11-25" then
      assert.equal("", after_call)
    else
      -- a 2026-07-28 request needs the modern half of favcrm.era
      assert.equal("favcrm.era_wire", after_call)
    end
    local after_ping = out:match("\nping:([^\n]*)\n")
    assert.truthy(after_ping:find("favcrm.protocol", 1, true), out)
    assert.falsy(after_ping:find("favcrm.config_toml", 1, true), out)
    assert.falsy(after_ping:find("favcrm.scheduler", 1, true), out)
    assert.truthy(out:match("\nmany:([^\n]*)\n"):find("favcrm.scheduler", 1, true), out)
  end)

  it("config.parse and config.save load the TOML reader and writer", function()
    local dir = assert(os.getenv("FAVCRM_SPEC_TMP")) .. "/lazy_load_cfg"
    local out = fresh(PRELUDE .. [[
local config = require("favcrm.config")
loaded("require")
assert(config.resolve({ url = "http://127.0.0.1:1/mcp", api_key = "k" }))
loaded("resolve")
assert(config.parse("url = \"http://a/mcp\"\n").url == "http://a/mcp")
loaded("parse")
assert(config.save({ url = "http://b/mcp" }, "]] .. dir .. [[/config.toml"))
assert(config.load("]] .. dir .. [[/config.toml").url == "http://b/mcp")
io.write("ok\n")
]])
    assert.equal("require:\nresolve:\nparse:favcrm.config_toml\nok\n", out)
  end)
end)

describe("favcrm.lazy", function()
  it("loads the module on the first call, calls the real method, and raises for a name it does not define", function()
    local lazy = require("favcrm.lazy")
    local C, loads = {}, 0
    package.preload["favcrm_lazy_spec_mod"] = function()
      loads = loads + 1
      C.f = function(a, b) return a + b, "real" end
      return true
    end
    lazy(C, "favcrm_lazy_spec_mod", { "f", "g" })
    local stand_in = C.f
    assert.same({ 3, "real" }, { C.f(1, 2) })
    assert.are_not.equal(stand_in, C.f)
    assert.same({ 7, "real" }, { stand_in(3, 4) }) -- a stand-in kept by a caller still works
    assert.equal(1, loads)
    local ok, err = pcall(C.g)
    assert.is_false(ok)
    assert.matches("favcrm.lazy: favcrm_lazy_spec_mod does not define g", err, 1, true)
    package.preload["favcrm_lazy_spec_mod"], package.loaded["favcrm_lazy_spec_mod"] = nil, nil
  end)
end)
