-- Hostile servers against the memory and connection bounds of
-- docs/LIMITS.md (issue 14, "Memory and connections"). Each case runs the
-- client in a child Lua process (FAVCRM_LUA_BIN) so that its peak RSS
-- (VmHWM) and its sockets are its own, and must end in a typed error
-- within the call's deadline plus 1 s with VmHWM under 64 MB.
local cjson = require("cjson")
local core = require("favcrm.core")
local favcrm = require("favcrm")
local sandbox = require("spec.support.sandbox")

-- the peak RSS every case stays under; not under AddressSanitizer (`make
-- asan`), whose shadow memory and quarantine alone pass it
local HWM_KB = (os.getenv("ASAN_OPTIONS") and math.huge or 64 * 1024)
local SLACK = 1          -- seconds past the call's deadline

-- What every child script starts with: the module, a reporter and
-- measures of its own process.
local PRELUDE = [[
local favcrm = require("favcrm")
local core = require("favcrm.core")
local cjson = require("cjson")
local function hwm_kb()
  for l in io.lines("/proc/self/status") do
    local v = l:match("^VmHWM:%s*(%d+)")
    if v then return tonumber(v) end
  end
end
local function sockets()
  local pid = io.open("/proc/self/stat"):read("*l"):match("^(%d+)")
  local p = io.popen("ls -l /proc/" .. pid .. "/fd 2>/dev/null")
  local n = 0
  for l in p:lines() do if l:find("socket:", 1, true) then n = n + 1 end end
  p:close()
  return n
end
local function report(t)
  t.hwm_kb = hwm_kb()
  io.write("REPORT ", cjson.encode(t), "\n")
  io.flush()
end
local function timed(fn)
  local t0 = core.monotonic()
  local a, b = fn()
  return a, b, core.monotonic() - t0
end
]]

local seq = 0
-- Runs src (after PRELUDE) in a child Lua; returns its report table.
local function child(src)
  seq = seq + 1
  local path = assert(os.getenv("FAVCRM_SPEC_TMP")) .. "/hostile-" .. seq .. ".lua"
  local f = assert(io.open(path, "w"))
  f:write(PRELUDE, src)
  f:close()
  -- a child that never ends (the bug it checks) is killed after 60 s
  local p = assert(io.popen("timeout -s KILL 60 " .. assert(os.getenv("FAVCRM_LUA_BIN")) .. " " .. path .. " 2>&1"))
  local out = p:read("*a")
  p:close()
  os.remove(path)
  local rep = out:match("REPORT (%b{})")
  assert(rep, "the child reported nothing; its output:\n" .. out:sub(1, 2000))
  return cjson.decode(rep), out
end

local function assert_bounded(r, deadline)
  assert.is_true(r.dt < deadline + SLACK, ("took %.2f s, deadline %g s"):format(r.dt, deadline))
  assert.is_true(r.hwm_kb < HWM_KB, ("VmHWM %d kB"):format(r.hwm_kb))
end

describe("hostile servers: memory and connections", function()
  after_each(function()
    sandbox.control("DELETE", "/_sandbox/fault")
  end)

  it("20,000 server requests in one answer: protocol within the deadline, few connections", function()
    local url = sandbox.url()
    sandbox.fault({ fault = "server_request_flood", count = 20000, method = "ping", wait_ms = 5000,
      match_tool = "sandbox_echo" })
    local before = sandbox.stats().connections
    local r = child(([[
local c = assert(favcrm.new({ url = %q, timeout = 2, max_total_timeout = 4 }))
assert(c:tools())
local data, err, dt = timed(function() return c:call("sandbox_echo", { value = 1 }) end)
local socks = sockets()
c:close()
report({ code = err and err.code, message = err and err.message, data = data, dt = dt, sockets = socks })
]]):format(url))
    local opened = sandbox.stats().connections - before
    assert.is_nil(r.data)
    assert.is_truthy(r.code == "protocol" or r.code == "too_large", tostring(r.code) .. ": " .. tostring(r.message))
    assert_bounded(r, 2)
    -- the answer stream, our answers (at most 4 at once) and the sandbox
    -- controls of this spec: not one connection per answer
    assert.is_true(opened <= 12, "connections opened: " .. opened)
    -- (12 like the bound above: a socket being closed may still be counted)
    assert.is_true(r.sockets <= 12, "sockets at the end of the call: " .. r.sockets)
  end)

  it("a few server requests are still all answered, in order, and the call succeeds", function()
    -- (5 s; 20 s under valgrind, where answering 200 pings is ~20x slower)
    local bound = sandbox.stretch(5)
    local c = assert(favcrm.new({ url = sandbox.url(), timeout = bound }))
    assert(c:tools())
    local before = #sandbox.stats().server_request_answers
    sandbox.fault({ fault = "server_request_flood", count = 200, method = "ping", wait_ms = 1500,
      match_tool = "sandbox_echo" })
    local t0 = core.monotonic()
    local data, err = c:call("sandbox_echo", { value = "after the pings" })
    assert.equal("after the pings", data, tostring(err))
    assert.is_true(core.monotonic() - t0 < bound)
    -- the answers still queued go out now: drain returns once none is in
    -- flight or queued (usually at once: they went out while the server
    -- held the call), at most in 30 s (it was 3 s, and once, under valgrind
    -- on a heavily loaded machine, 77 of the 200 had arrived by then)
    c.session:drain(30000)
    local answers = sandbox.stats().server_request_answers
    assert.equal(200, #answers - before)
    for i = before + 1, #answers do
      assert.is_table(answers[i].result)
    end
    c:close()
  end)

  it("a stdio server writing lines non-stop: too_large, the client's memory bounded", function()
    local script = assert(os.getenv("FAVCRM_SPEC_TMP")) .. "/flooding-server.lua"
    local f = assert(io.open(script, "w"))
    f:write([[
local cjson = require("cjson")
local function send(t) io.stdout:write(cjson.encode(t), "\n"); io.stdout:flush() end
for line in io.lines() do
  local m = cjson.decode(line)
  if m.method == "initialize" then
    send({ jsonrpc = "2.0", id = m.id, result = { protocolVersion = m.params.protocolVersion,
      capabilities = { tools = { listChanged = false } }, serverInfo = { name = "flood", version = "1" } } })
  elseif m.method == "tools/list" then
    send({ jsonrpc = "2.0", id = m.id, result = { tools = { { name = "flood", inputSchema = { type = "object" } } } } })
  elseif m.method == "tools/call" then
    local note = cjson.encode({ jsonrpc = "2.0", method = "notifications/message",
      params = { level = "info", data = string.rep("n", 200) } }) .. "\n"
    local junk = string.rep("not json ", 100) .. "\n"
    local chunk = string.rep(note .. junk, 50)
    while true do io.stdout:write(chunk) end
  end
end
]])
    f:close()
    local r = child(([[
local c = assert(favcrm.new({ command = { %q, %q }, timeout = 8, max_total_timeout = 8,
  protocol = "2025-11-25" })) -- a scripted 2025 server: server/discover goes unanswered
assert(c:tools())
local data, err, dt = timed(function() return c:call("flood", {}) end)
report({ code = err and err.code, message = err and err.message, data = data, dt = dt })
c.session.transport.proc:kill(9)
c:close()
]]):format(os.getenv("FAVCRM_LUA_BIN"), script))
    os.remove(script)
    assert.is_nil(r.data)
    assert.equal("too_large", r.code, tostring(r.message))
    assert.matches("max_response_bytes", r.message, 1, true)
    assert_bounded(r, 8)
  end)

  it("256 KiB of response headers: too_large (the cap is 64 KiB)", function()
    local c = assert(favcrm.new({ url = sandbox.url(), timeout = 2 }))
    assert(c:tools())
    sandbox.fault({ fault = "huge_headers", bytes = 256 * 1024, match_tool = "sandbox_echo" })
    local t0 = core.monotonic()
    local data, err = c:call("sandbox_echo", { value = 1 })
    assert.is_nil(data)
    assert.equal("too_large", err.code, tostring(err))
    assert.matches("64 KiB", err.message, 1, true)
    assert.is_true(core.monotonic() - t0 < 2 + SLACK)
    -- 60 KiB of them is within the cap
    sandbox.fault({ fault = "huge_headers", bytes = 60 * 1024, match_tool = "sandbox_echo" })
    assert.equal(2, (c:call("sandbox_echo", { value = 2 })))
    c:close()
  end)

  it("an idle client keeps at most 64 connections, and call_many at 64 reuses them", function()
    local url = sandbox.url()
    local r = child(([[
local c = assert(favcrm.new({ url = %q, timeout = 10 }))
assert(c:tools())
local function batch(n, conc)
  local calls = {}
  for i = 1, n do calls[i] = { "sandbox_echo", { value = i } } end
  local res, errs = c:call_many(calls, { concurrency = conc })
  for i = 1, n do assert(res[i] == i, tostring(errs[i])) end
end
batch(100, 100)
local sbx = require("spec.support.sandbox")
-- the connections curl closes may reach the server a moment after our
-- next request: ask again (at most 5 s) until it has seen them close
local st, idle
local until_t = core.monotonic() + 5
repeat
  st = sbx.stats()
  idle = st.connections_open - 1 -- the stats request itself
until idle <= 64 or core.monotonic() > until_t
batch(64, 64)
local opened = sbx.stats().connections - st.connections - 1
report({ idle = idle, opened = opened, sockets = sockets() })
c:close()
]]):format(url))
    -- the server counts every open connection: one of another client may
    -- not be seen closed yet (the bug this catches kept 128)
    assert.is_true(r.idle <= 65, "idle sockets: " .. r.idle)
    assert.is_true(r.idle >= 32, "idle sockets: " .. r.idle)
    assert.equal(0, r.opened)
    assert.is_true(r.hwm_kb < HWM_KB)
  end)
end)

