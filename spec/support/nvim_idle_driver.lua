-- Runs inside `nvim --headless` (spec/integration/nvim_idle_spec.lua): a
-- stdio server (spec/support/surface_server.mjs) writes a log line 200 ms
-- after a call through favcrm.nvim answered, while no call is in flight;
-- on_log must get it from the editor's loop. Writes what happened as JSON
-- to $FAVCRM_NVIM_OUT and quits.
package.path = os.getenv("FAVCRM_NVIM_LUA_PATH") .. ";" .. package.path
package.cpath = os.getenv("FAVCRM_NVIM_LUA_CPATH") .. ";" .. package.cpath
local cjson = require("cjson")
local favcrm = require("favcrm")
local fnvim = require("favcrm.nvim")

local out = os.getenv("FAVCRM_NVIM_OUT")
local client, guard
local function finish(t)
  guard:stop()
  if client then client:close() end
  local f = assert(io.open(out, "w"))
  f:write(cjson.encode(t))
  f:close()
  vim.cmd("qa!")
end
guard = vim.loop.new_timer()
guard:start(20000, 0, vim.schedule_wrap(function() finish({ error = "no log line within 20 s" }) end))

local answered = false
client = favcrm.new({ command = { "node", os.getenv("FAVCRM_SURFACE_SERVER"), "stdio" }, timeout = 15,
  on_log = function(p)
    local pending = client:pending()
    vim.schedule(function() finish({ log = p.data, answered = answered, pending = pending }) end)
  end })
fnvim.call(client, "send", { kind = "log", when = "idle" }, function(_, err)
  if err then return finish({ error = tostring(err) }) end
  answered = true
end)
