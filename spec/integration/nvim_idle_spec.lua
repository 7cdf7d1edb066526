-- favcrm.nvim keeps watching a stdio server between calls (issue 15): a log
-- line it writes while no call is in flight reaches on_log from the
-- editor's loop at once. Needs the LuaJIT build: `make test LUA=luajit`.
local nvim = require("spec.support.nvim")

describe("favcrm.nvim between calls", function()
  if nvim.skip_unless_runnable(pending) then return end

  it("hands a stdio server's log line at idle to on_log on the editor's loop", function()
    local top = assert(os.getenv("PWD"))
    local r = nvim.run("nvim_idle_driver.lua", "nvim-idle-result.json",
      { "FAVCRM_SURFACE_SERVER='" .. top .. "/spec/support/surface_server.mjs'" })
    assert.is_nil(r.error)
    assert.matches("^log %d+$", r.log)
    -- it came after the call was over, with nothing in flight
    assert.is_true(r.answered)
    assert.equal(0, r.pending)
  end)
end)
