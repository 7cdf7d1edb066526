-- The module in a real Neovim (Debian's nvim --headless, LuaJIT inside):
-- doctor and list_services through favcrm.nvim, while a timer on the same
-- loop keeps firing. Needs the LuaJIT build: `make test LUA=luajit`.
local cjson = require("cjson")
local sandbox = require("spec.support.sandbox")

local function has(prog)
  return os.execute("command -v " .. prog .. " >/dev/null 2>&1") == true
    or os.execute("command -v " .. prog .. " >/dev/null 2>&1") == 0
end

local lua = os.getenv("FAVCRM_LUA_BIN") or ""
local runnable = lua:find("luajit") and has("nvim")

describe("favcrm.nvim in Neovim", function()
  if not runnable then
    pending("SKIPPED: needs nvim and the LuaJIT build (make test LUA=luajit); this run is " .. lua)
    return
  end

  it("runs doctor and list_services on the editor's loop without blocking it", function()
    local key = sandbox.account()
    local tmp = os.getenv("FAVCRM_SPEC_TMP")
    local top = assert(os.getenv("PWD"))
    local build = assert(os.getenv("FAVCRM_BUILD"))
    local out = tmp .. "/nvim-result.json"
    local keyfile = tmp .. "/nvim-key"
    local f = assert(io.open(keyfile, "w"))
    f:write(key)
    f:close()
    os.remove(out)
    local cmd = table.concat({
      "FAVCRM_API_KEY=$(cat '" .. keyfile .. "')",
      "FAVCRM_NVIM_OUT='" .. out .. "'",
      "FAVCRM_NVIM_LUA_PATH='" .. top .. "/lua/?.lua;" .. top .. "/lua/?/init.lua;/usr/share/lua/5.1/?.lua'",
      "FAVCRM_NVIM_LUA_CPATH='" .. top .. "/" .. build .. "/?.so;/usr/lib/x86_64-linux-gnu/lua/5.1/?.so'",
      "timeout 60 nvim --headless -u NONE -i NONE -n",
      "-c 'luafile " .. top .. "/spec/support/nvim_driver.lua' >/dev/null 2>&1",
    }, " ")
    os.execute(cmd)
    os.remove(keyfile)
    local rf = assert(io.open(out), "nvim wrote no result")
    local r = cjson.decode(rf:read("*a"))
    rf:close()
    assert.is_nil(r.error)
    assert.is_true(r.doctor_ok)
    assert.is_true(r.tool_count >= 25)
    assert.equal(0, r.services)
    assert.equal(300, r.slept)
    assert.is_true(r.in_main_loop)
    -- the 5 ms timer kept firing while the calls were in flight
    assert.is_true(r.ticks_in_flight >= 10, "timer ticks while in flight: " .. tostring(r.ticks_in_flight))
  end)
end)
