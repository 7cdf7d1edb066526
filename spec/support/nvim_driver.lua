-- Runs inside `nvim --headless`: doctor and list_services through
-- favcrm.nvim while a timer on the same loop keeps ticking, then writes
-- what happened as JSON to $FAVCRM_NVIM_OUT and quits.
package.path = os.getenv("FAVCRM_NVIM_LUA_PATH") .. ";" .. package.path
package.cpath = os.getenv("FAVCRM_NVIM_LUA_CPATH") .. ";" .. package.cpath
local cjson = require("cjson")
local favcrm = require("favcrm")
local fnvim = require("favcrm.nvim")

local out = os.getenv("FAVCRM_NVIM_OUT")
local function finish(t)
  local f = assert(io.open(out, "w"))
  f:write(cjson.encode(t))
  f:close()
  vim.cmd("qa!")
end

local uv = vim.loop
local ticks, ticks_in_flight, in_flight = 0, 0, 0
local timer = uv.new_timer()
timer:start(5, 5, function()
  ticks = ticks + 1
  if in_flight > 0 then ticks_in_flight = ticks_in_flight + 1 end
end)
local guard = uv.new_timer()
guard:start(20000, 0, vim.schedule_wrap(function() finish({ error = "timed out after 20 s" }) end))

local client = favcrm.new({ url = os.getenv("FAVCRM_SANDBOX_URL"), api_key = os.getenv("FAVCRM_API_KEY") })
local result = {}
local function done()
  in_flight = in_flight - 1
  if in_flight == 0 then
    timer:stop()
    guard:stop()
    result.ticks, result.ticks_in_flight = ticks, ticks_in_flight
    client:close()
    finish(result)
  end
end
in_flight = 3
fnvim.run(client, function(c) return c:doctor() end, function(report)
  result.doctor_ok, result.tool_count = report.ok, report.tool_count
  result.in_main_loop = not vim.in_fast_event()
  done()
end)
fnvim.call(client, "list_services", {}, function(data, err)
  result.services = data and #data or tostring(err)
  done()
end)
fnvim.call(client, "sandbox_slow", { ms = 300 }, function(data)
  result.slept = data and data.sleptMs
  done()
end)
