--- bench/profile.lua: where the Lua side of client:call spends its VM time.
--
--   FAVCRM_BENCH_URL=... FAVCRM_BENCH_KEY=... \
--   LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='build/5.4/?.so;;' \
--   lua5.4 bench/profile.lua [N] [EVERY] [CONC]
--
-- Runs N sequential client:call("list_services") (or, with CONC, one
-- client:call_many of N calls with CONC in flight) after a warm-up, under a
-- count hook that fires every EVERY Lua VM instructions and charges the
-- sample to the running Lua function (self) and to every Lua function on
-- the stack (inclusive). C functions are charged to their Lua caller, so
-- this is the VM's share only; perf or callgrind give the C side (see
-- bench/README.md). Set BENCH_GC=stop to see what the collector costs.
local favcrm = require("favcrm")

local n, every, conc = tonumber(arg[1] or 3000), tonumber(arg[2] or 97), tonumber(arg[3])
local url, key = os.getenv("FAVCRM_BENCH_URL"), os.getenv("FAVCRM_BENCH_KEY")
assert(url and key, "FAVCRM_BENCH_URL and FAVCRM_BENCH_KEY must be set")

-- FAVCRM_BENCH_ERA=2026: pinned to 2026-07-28 (a 2026 sandbox), as bench/favcrm.lua
local protocol = os.getenv("FAVCRM_BENCH_ERA") == "2026" and "2026-07-28" or nil
local c = favcrm.new({ url = url, api_key = key, protocol = protocol })
for _ = 1, 100 do assert(c:call("list_services")) end
if os.getenv("BENCH_GC") == "stop" then collectgarbage("stop") end

local self_count, incl_count, total = {}, {}, 0 -- counts in VM instructions
local getinfo = debug.getinfo
local function where(info)
  local name = info.name or "?"
  return string.format("%s:%d %s", info.short_src, info.linedefined, name)
end
local hook
local next_gap = 0
local function rearm()
  -- a random gap, so samples do not alias with a call's fixed instruction count
  next_gap = math.random(1, 2 * every - 1)
  debug.sethook(hook, "", next_gap)
end
function hook()
  total = total + next_gap
  local info = getinfo(2, "Sn")
  if not info then return rearm() end
  local k = where(info)
  self_count[k] = (self_count[k] or 0) + next_gap
  local seen, level = {}, 2
  while true do
    local f = getinfo(level, "Sn")
    if not f then break end
    if f.what == "Lua" or f.what == "main" then
      local kk = where(f)
      if not seen[kk] then
        seen[kk] = true
        incl_count[kk] = (incl_count[kk] or 0) + next_gap
      end
    end
    level = level + 1
  end
  rearm()
end

local t0 = os.clock()
local batch = {}
for i = 1, conc and n or 0 do batch[i] = { "list_services", {} } end
rearm()
if conc then
  local res, errs = c:call_many(batch, { concurrency = conc })
  for i = 1, n do if res[i] == nil then error(tostring(errs[i])) end end
else
  for _ = 1, n do
    local p, err = c:call("list_services")
    if not p then error(tostring(err)) end
  end
end
debug.sethook()
local cpu = os.clock() - t0
c:close()

local function top(t, title, limit)
  local list = {}
  for k, v in pairs(t) do list[#list + 1] = { k, v } end
  table.sort(list, function(a, b) return a[2] > b[2] end)
  print(title)
  for i = 1, math.min(limit, #list) do
    print(string.format("  %5.1f%%  %8.0f VM instr/call  %s", 100 * list[i][2] / total,
      list[i][2] / n, list[i][1]))
  end
end
print(string.format("%d calls, %.1f us CPU/call under the hook, ~%.0f Lua VM instructions per call",
  n, cpu * 1e6 / n, total / n))
top(self_count, "self (the function running when the hook fired):", 25)
top(incl_count, "inclusive (the function anywhere on the stack):", 25)
