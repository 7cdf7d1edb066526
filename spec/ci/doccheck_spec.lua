-- .ci/doccheck.lua: the API reference's checker. It fails on a public
-- function (named in README.md or docs/*.md) without LuaLS annotations, and
-- passes on this repository (with its pending list).
local function sh(cmd)
  local p = assert(io.popen("(" .. cmd .. ") 2>&1; echo \"__rc=$?\""))
  local out = p:read("*a")
  p:close()
  local rc = tonumber(out:match("__rc=(%d+)%s*$"))
  return rc, (out:gsub("__rc=%d+%s*$", ""))
end

local LUA = os.getenv("FAVCRM_LUA_BIN") or "lua5.4"

local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

-- A small tree: a README naming favcrm.greet and obj methods, one module.
local function tree(module_src)
  local dir = os.tmpname()
  os.remove(dir)
  assert(sh("mkdir -p " .. dir .. "/lua/favcrm " .. dir .. "/docs " .. dir .. "/.ci") == 0)
  write(dir .. "/README.md", "# x\n\n`favcrm.greet(name)` says hello; `client:close()` ends.\n\n"
    .. "```lua\nlocal h = favcrm.greet(\"a\")\n```\n")
  write(dir .. "/lua/favcrm/init.lua", module_src)
  write(dir .. "/lua/favcrm/client.lua", table.concat({
    "--- A client.",
    "---@class favcrm.Client",
    "local Client = {}",
    "--- Ends the client.",
    "---@return nil",
    "function Client:close() end",
    "return Client", "" }, "\n"))
  return dir
end

local DOCUMENTED = table.concat({
  "local M = {}",
  "--- Says hello.",
  "---@param name string who",
  "---@return string greeting",
  "function M.greet(name) return 'hi ' .. name end",
  "return M", "" }, "\n")

describe(".ci/doccheck.lua", function()
  local dirs = {}
  after_each(function()
    for _, d in ipairs(dirs) do sh("rm -rf " .. d) end
    dirs = {}
  end)

  it("passes on this repository", function()
    local rc, out = sh(LUA .. " .ci/doccheck.lua")
    assert.are.equal(0, rc, out)
    assert.matches("0 undocumented", out)
  end)

  it("passes on a tree whose public functions are annotated", function()
    local d = tree(DOCUMENTED); dirs[#dirs + 1] = d
    local rc, out = sh(LUA .. " .ci/doccheck.lua --root " .. d)
    assert.are.equal(0, rc, out)
    assert.matches("2 public functions, 2 documented", out)
  end)

  it("fails on an undocumented public function and names it", function()
    local d = tree("local M = {}\n-- says hello\nfunction M.greet(name) return name end\nreturn M\n")
    dirs[#dirs + 1] = d
    local rc, out = sh(LUA .. " .ci/doccheck.lua --root " .. d)
    assert.are.equal(1, rc, out)
    assert.matches("favcrm.greet", out)
    assert.matches("1 undocumented", out)
  end)

  it("fails on a parameter without ---@param", function()
    local d = tree("local M = {}\n--- Says hello.\n---@return string\nfunction M.greet(name) return name end\n"
      .. "return M\n")
    dirs[#dirs + 1] = d
    local rc, out = sh(LUA .. " .ci/doccheck.lua --root " .. d)
    assert.are.equal(1, rc, out)
    assert.matches("parameter 'name' has no %-%-%-@param", out)
  end)

  it("lets a pending name pass, and reports a pending name that is done", function()
    local d = tree("local M = {}\nfunction M.greet(name) return name end\nreturn M\n")
    dirs[#dirs + 1] = d
    write(d .. "/.ci/doc-pending.txt", "# to do\nfavcrm.greet\n")
    local rc, out = sh(LUA .. " .ci/doccheck.lua --root " .. d)
    assert.are.equal(0, rc, out)
    assert.matches("1 pending", out)
    write(d .. "/lua/favcrm/init.lua", DOCUMENTED)
    rc, out = sh(LUA .. " .ci/doccheck.lua --root " .. d)
    assert.are.equal(0, rc, out)
    assert.matches("remove from the pending list", out)
  end)

  it("finds methods defined inside a function on a ---@param-bound class", function()
    local d = tree(DOCUMENTED); dirs[#dirs + 1] = d
    write(d .. "/docs/X.md", "`client:step(0)` and `h:done()`\n")
    local function sched(step_doc)
      return table.concat({
        "local M = {}",
        "--- Installs the methods.",
        "---@param Client favcrm.Client the class",
        "---@return nil",
        "function M.install(Client)",
        "  --- A running call.",
        "  ---@class favcrm.Handle",
        "  local Handle = {}",
        "  --- Whether it finished.",
        "  ---@return boolean",
        "  function Handle:done() return true end",
        step_doc,
        "  function Client:step(timeout) return timeout, Handle end",
        "end",
        "return M", "" }, "\n")
    end
    write(d .. "/lua/favcrm/scheduler.lua", sched("  -- steps"))
    local rc, out = sh(LUA .. " .ci/doccheck.lua --root " .. d)
    assert.are.equal(1, rc, out)
    assert.matches("favcrm.Client:step", out)
    assert.matches("scheduler.lua:13", out)
    write(d .. "/lua/favcrm/scheduler.lua", sched("  --- Steps.\n  ---@param timeout? number s"))
    rc, out = sh(LUA .. " .ci/doccheck.lua --root " .. d)
    assert.are.equal(0, rc, out)
    assert.matches("4 public functions, 4 documented", out)
  end)

  it("needs a description on a module value the docs name", function()
    local d = tree(DOCUMENTED); dirs[#dirs + 1] = d
    write(d .. "/docs/X.md", "`favcrm.CODES` lists them\n")
    local src = DOCUMENTED:gsub("return M", "M.CODES = {\n  a = 1,\n}\nreturn M")
    write(d .. "/lua/favcrm/init.lua", src)
    local rc, out = sh(LUA .. " .ci/doccheck.lua --root " .. d)
    assert.are.equal(1, rc, out)
    assert.matches("favcrm.CODES%s+no description", out)
    write(d .. "/lua/favcrm/init.lua", (src:gsub("M.CODES", "--- The codes.\nM.CODES")))
    rc, out = sh(LUA .. " .ci/doccheck.lua --root " .. d)
    assert.are.equal(0, rc, out)
    assert.matches("3 public functions, 3 documented", out)
  end)

  it("fails on a receiver it does not know", function()
    local d = tree(DOCUMENTED); dirs[#dirs + 1] = d
    write(d .. "/docs/X.md", "`gadget:spin()`\n")
    local rc, out = sh(LUA .. " .ci/doccheck.lua --root " .. d)
    assert.are.equal(1, rc, out)
    assert.matches("unknown receiver 'gadget'", out)
  end)
end)
