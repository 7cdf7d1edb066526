-- favcrm.core spawn: the child process under the stdio transport.
local core = require("favcrm.core")

local function alive(pid)
  return require("spec.support.files").sh("kill -0 " .. pid .. " 2>/dev/null")
end

describe("favcrm.core spawn()", function()
  it("moves lines both ways and gives stderr apart", function()
    local p = assert(core.spawn({ "sh", "-c", 'while read l; do echo "got:$l"; echo "e:$l" >&2; done' }))
    assert(p:write("a\nb\n"))
    local lines, err = {}, ""
    while #lines < 2 or #err < 6 do
      local r = p:poll(2000)
      for _, l in ipairs(r.lines) do lines[#lines + 1] = l end
      err = err .. (r.stderr or "")
      assert.is_false(r.eof)
    end
    assert.same({ "got:a", "got:b" }, lines)
    assert.equal("e:a\ne:b\n", err)
    assert.equal(0, p:close(1000))
  end)

  it("passes env on top of the parent's environment, and can remove a name", function()
    local p = assert(core.spawn({ "sh", "-c", 'echo "$FAV_X:${HOME:+home}:${PATH:+path}"' },
      { FAV_X = "x1", HOME = false }))
    local r
    repeat r = p:poll(2000) until #r.lines > 0 or r.eof
    assert.equal("x1::path", r.lines[1])
    p:close(1000)
  end)

  it("closes stdin, then TERMs, then KILLs a child that will not end, and reaps it", function()
    local p = assert(core.spawn({ "sh", "-c", "trap '' TERM; while :; do sleep 1; done" }))
    local pid = p:pid()
    assert.is_true(alive(pid))
    local t0 = core.monotonic()
    local status = p:close(150)
    assert.is_nil(status) -- killed, not exited
    assert.is_true(core.monotonic() - t0 < 5)
    assert.is_false(alive(pid))
  end)

  it("survives writing to a child that is gone (no SIGPIPE)", function()
    local p = assert(core.spawn({ "true" }))
    local r
    repeat r = p:poll(2000) until r.eof
    for _ = 1, 50 do p:write(string.rep("x", 65536)) end
    p:poll(10)
    assert.equal(0, p:close(1000))
  end)

  it("__gc does not wait: a child that ignores TERM is killed at once and reaped later", function()
    local p = assert(core.spawn({ "sh", "-c", 'trap "" TERM; echo up; while :; do read x; done' }))
    local r = p:poll(5000)
    assert.same({ "up" }, r.lines) -- the trap is set
    local pid = p:pid()
    local function collect()
      local t0 = core.monotonic()
      collectgarbage("collect")
      collectgarbage("collect")
      return core.monotonic() - t0
    end
    -- what a collection costs here (valgrind: 0.1-0.35 s), the larger of two
    local base = math.max(collect(), collect())
    p = nil -- luacheck: ignore
    local took = collect() - base
    -- close() would have waited 200 ms, TERMed, waited 200 ms, KILLed
    assert.is_true(took < 0.3, ("__gc took %.3f s more than a collection"):format(took))
    -- the next spawn sweeps the reaper: the child ends up reaped (gone from
    -- the process table, not a zombie)
    local deadline = core.monotonic() + 5
    local gone
    repeat
      local q = assert(core.spawn({ "true" }))
      q:close(1000)
      local f = io.open("/proc/" .. pid .. "/stat")
      local stat = f and f:read("*a")
      if f then f:close() end
      gone = stat == nil or not stat:match("^%d+ %b() ") -- no such process
      if stat and stat:match("^%d+ %b() Z") then gone = false end
    until gone or core.monotonic() > deadline
    assert.is_true(gone, "child " .. pid .. " was not reaped")
  end)

  it("has __close, and a __gc that is not the waiting close()", function()
    local mt = getmetatable(assert(core.spawn({ "true" })))
    assert.is_function(mt.__close)
    assert.is_function(mt.__gc)
    assert.are_not.equal(mt.__gc, mt.__index.close) -- __gc never waits
  end)

  it("poll() and close() refuse a NaN, infinite or negative time and clamp a huge one", function()
    local p = assert(core.spawn({ "sh", "-c", "read x; echo got:$x" }))
    assert.has_error(function() p:poll(math.huge) end, "bad argument #1 to 'poll' (time must be finite)")
    assert.has_error(function() p:poll(0 / 0) end, "bad argument #1 to 'poll' (time is NaN)")
    assert.has_error(function() p:poll(-1) end, "bad argument #1 to 'poll' (time must not be negative)")
    assert.has_error(function() p:close(math.huge) end, "bad argument #1 to 'close' (time must be finite)")
    assert(p:write("x\n"))
    local r = p:poll(1e300) -- clamped; returns with the line
    assert.same({ "got:x" }, r.lines)
    assert.equal(0, p:close(1e300))
  end)

  it("returns nil, err for a program that cannot start (missing), and raises on misuse", function()
    local p, err = core.spawn({ "/nonexistent/prog" })
    assert.is_nil(p)
    assert.equal("spawn", err.code)
    assert.matches("cannot start /nonexistent/prog", err.message, 1, true)
    assert.has_error(function() core.spawn({}) end)
    assert.has_error(function() core.spawn({ 1 }) end,
      "bad argument #1 to 'spawn' (item 1 of the command is not a string)")
  end)
end)
