-- favcrm.nvim keeps watching a stdio server between calls (issue 15): a log
-- line it writes while no call is in flight reaches on_log from the
-- editor's loop at once. Needs the LuaJIT build: `make test LUA=luajit`.
local cjson = require("cjson")

local function has(prog)
  return os.execute("command -v " .. prog .. " >/dev/null 2>&1") == true
    or os.execute("command -v " .. prog .. " >/dev/null 2>&1") == 0
end

local lua = os.getenv("FAVCRM_LUA_BIN") or ""
local runnable = lua:find("luajit") and has("nvim")

describe("favcrm.nvim between calls", function()
  if not runnable then
    pending("SKIPPED: needs nvim and the LuaJIT build (make test LUA=luajit); this run is " .. lua)
    return
  end

  it("hands a stdio server's log line at idle to on_log on the editor's loop", function()
    local tmp = os.getenv("FAVCRM_SPEC_TMP")
    local top = assert(os.getenv("PWD"))
    local build = assert(os.getenv("FAVCRM_BUILD"))
    local out = tmp .. "/nvim-idle-result.json"
    os.remove(out)
    os.execute(table.concat({
      "FAVCRM_NVIM_OUT='" .. out .. "'",
      "FAVCRM_SURFACE_SERVER='" .. top .. "/spec/support/surface_server.mjs'",
      "FAVCRM_NVIM_LUA_PATH='" .. top .. "/lua/?.lua;" .. top .. "/lua/?/init.lua;/usr/share/lua/5.1/?.lua'",
      "FAVCRM_NVIM_LUA_CPATH='" .. top .. "/" .. build .. "/?.so;/usr/lib/x86_64-linux-gnu/lua/5.1/?.so'",
      "timeout 60 nvim --headless -u NONE -i NONE -n",
      "-c 'luafile " .. top .. "/spec/support/nvim_idle_driver.lua' >/dev/null 2>&1",
    }, " "))
    local rf = assert(io.open(out), "nvim wrote no result")
    local r = cjson.decode(rf:read("*a"))
    rf:close()
    assert.is_nil(r.error)
    assert.matches("^log %d+$", r.log)
    -- it came after the call was over, with nothing in flight
    assert.is_true(r.answered)
    assert.equal(0, r.pending)
  end)
end)
