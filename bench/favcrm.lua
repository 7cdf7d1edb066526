--- bench/favcrm.lua: the favcrm client side of `make bench`.
--
--   lua5.4 bench/favcrm.lua seq  N WARMUP          N sequential client:call
--   lua5.4 bench/favcrm.lua many N WARMUP CONC     client:call_many, CONC in flight
--
-- Environment: FAVCRM_BENCH_URL, FAVCRM_BENCH_KEY (never argv), BENCH_T0_NS
-- FAVCRM_BENCH_ERA=2026: the client pinned to MCP 2026-07-28 against the
-- 2026-only sandbox of FAVCRM_BENCH_URL_2026 and FAVCRM_BENCH_KEY_2026 (the
-- entries favcrm_lua54_2026, favcrm_luajit_2026); else pinned to 2025-11-25
-- (CLOCK_MONOTONIC at spawn, from runstat). Prints one JSON line, the same
-- shape as bench/libcurl_c.c. "many" prints {"skipped": "..."} when the
-- client has no call_many yet.
local favcrm = require("favcrm")
local core = require("favcrm.core")

local mode, n, warm, conc = arg[1] or "seq", tonumber(arg[2] or 2000), tonumber(arg[3] or 200), tonumber(arg[4] or 1)
local now = core.monotonic
local t0 = tonumber(os.getenv("BENCH_T0_NS") or "")
t0 = t0 and t0 / 1e9 or now()
local modern = os.getenv("FAVCRM_BENCH_ERA") == "2026"
local name = (jit and "favcrm_luajit" or "favcrm_lua54") .. (modern and "_2026" or "")

local function die(msg)
  io.stderr:write("bench/favcrm.lua: ", tostring(msg), "\n")
  os.exit(1)
end

local suffix = modern and "_2026" or ""
local url, key = os.getenv("FAVCRM_BENCH_URL" .. suffix), os.getenv("FAVCRM_BENCH_KEY" .. suffix)
if not url or not key then
  die("FAVCRM_BENCH_URL" .. suffix .. " and FAVCRM_BENCH_KEY" .. suffix .. " must be set")
end

-- BENCH_GC=stop|generational|incremental: a profiling knob (never set by run.sh)
local gc = os.getenv("BENCH_GC")
if gc and gc ~= "" then collectgarbage(gc) end

local c = favcrm.new({ url = url, api_key = key, protocol = modern and "2026-07-28" or "2025-11-25" })

local function one()
  local payload, err = c:call("list_services")
  if payload == nil then die(err) end
  return payload
end

-- warm-up; the first result ends "startup"
local first = one()
if type(first) ~= "table" then die("list_services did not return a table") end
local startup_ms = (now() - t0) * 1e3
for _ = 2, warm do one() end

local out = { client = name, mode = mode, n = n, startup_ms = startup_ms }
if mode == "seq" then
  local lat = {}
  local c0 = os.clock()
  local ts = now()
  for i = 1, n do
    local a = now()
    one()
    lat[i] = now() - a
  end
  out.wall_s = now() - ts
  out.loop_cpu_us = (os.clock() - c0) * 1e6
  table.sort(lat)
  if n > 0 then
    out.calls_per_s = n / out.wall_s
    out.p50_ms = lat[math.floor((n - 1) / 2) + 1] * 1e3
    out.p99_ms = lat[math.floor((n - 1) * 0.99) + 1] * 1e3
  end
elseif mode == "many" then
  if type(c.call_many) ~= "function" then
    out.skipped = "client:call_many does not exist yet"
  else
    local calls = {}
    for i = 1, n do calls[i] = { "list_services", {} } end
    local c0 = os.clock()
    local ts = now()
    local results, errs = c:call_many(calls, { concurrency = conc })
    out.wall_s = now() - ts
    out.loop_cpu_us = (os.clock() - c0) * 1e6
    for i = 1, n do
      if results[i] == nil then die("call_many item " .. i .. ": " .. tostring(errs and errs[i])) end
    end
    out.concurrency = conc
    out.calls_per_s = n / out.wall_s
  end
else
  die("mode must be seq or many")
end
c:close()
-- lua-cjson is loaded here, after the measured start-up (the C program
-- prints with printf; favcrm itself loads cjson.safe)
io.write(require("cjson").encode(out), "\n")
