-- The module in a real Neovim (Debian's nvim --headless, LuaJIT inside):
-- doctor and list_services through favcrm.nvim, while a timer on the same
-- loop keeps firing. Needs the LuaJIT build: `make test LUA=luajit`.
local sandbox = require("spec.support.sandbox")
local nvim = require("spec.support.nvim")

describe("favcrm.nvim in Neovim", function()
  if nvim.skip_unless_runnable(pending) then return end

  it("runs doctor and list_services on the editor's loop without blocking it", function()
    local key = sandbox.account()
    local keyfile = os.getenv("FAVCRM_SPEC_TMP") .. "/nvim-key"
    local f = assert(io.open(keyfile, "w"))
    f:write(key)
    f:close()
    local r = nvim.run("nvim_driver.lua", "nvim-result.json", { "FAVCRM_API_KEY=$(cat '" .. keyfile .. "')" },
      function() os.remove(keyfile) end)
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
