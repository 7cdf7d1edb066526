-- Many calls at once (client:call_many) and the non-blocking form
-- (client:call_async / client:step / handles) against the sandbox.
local favcrm = require("favcrm")
local sandbox = require("spec.support.sandbox")

local function client(opts)
  opts = opts or {}
  opts.url = opts.url or sandbox.url()
  return favcrm.new(opts)
end

-- Wraps a client's transport to record how many transfers were in flight.
local function count_in_flight(c)
  local real = c.session.transport
  local stats = { max = 0, now = 0 }
  local live = {}
  c.session.transport = setmetatable({
    start = function(_, req)
      local id, err = real:start(req)
      if id then
        live[id] = true
        stats.now = stats.now + 1
        if stats.now > stats.max then stats.max = stats.now end
      end
      return id, err
    end,
    poll = function(_, ms)
      local items = real:poll(ms)
      for _, it in ipairs(items) do
        if it.type == "done" and live[it.id] then
          live[it.id] = nil
          stats.now = stats.now - 1
        end
      end
      return items
    end,
    cancel = function(_, id)
      if live[id] then live[id] = nil; stats.now = stats.now - 1 end
      return real:cancel(id)
    end,
  }, { __index = function(_, k) return function(_, ...) return real[k](real, ...) end end })
  return stats
end

describe("client:call_many()", function()
  it("returns every result in the order of the calls", function()
    local c = client()
    local calls = {}
    for i = 1, 40 do calls[i] = { "sandbox_echo", { value = i } } end
    local results, errs = c:call_many(calls, { concurrency = 8 })
    for i = 1, 40 do
      assert.equal(i, results[i])
      assert.is_nil(errs[i])
    end
    c:close()
  end)

  it("gives a failing call its own error and the others their results", function()
    local c = client()
    local results, errs = c:call_many({
      { "sandbox_echo", { value = "a" } },
      { "no_such_tool", {} },
      { "sandbox_echo", { value = "c" } },
      { "sandbox_echo", { wrong = true } },
    })
    assert.equal("a", results[1])
    assert.is_nil(results[2])
    assert.equal("unknown_tool", errs[2].code)
    assert.equal("c", results[3])
    assert.equal("invalid_arguments", errs[4].code)
    c:close()
  end)

  it("keeps at most opts.concurrency requests in flight", function()
    local c = client()
    assert(c:tools())
    local stats = count_in_flight(c)
    local calls = {}
    for i = 1, 24 do calls[i] = { "sandbox_slow", { ms = 30 } } end
    local results = c:call_many(calls, { concurrency = 4 })
    assert.equal(24, #results)
    assert.is_true(stats.max >= 2, "never more than one in flight")
    -- the calls' own requests, plus at most one answer stream finishing
    assert.is_true(stats.max <= 4 + 1, "max in flight " .. stats.max)
    c:close()
  end)

  it("rejects a malformed list by position", function()
    local c = client()
    assert.has_error(function() c:call_many({ { "x" }, "y" }) end,
      "bad argument #1 to 'call_many' (item 2 is not {name, args})")
    assert.has_error(function() c:call_many({}, { concurrency = 0 }) end,
      "bad argument #2 to 'call_many' (option 'concurrency' must be a number >= 1, got 0)")
    c:close()
  end)
end)

describe("client:call_async() and client:step()", function()
  it("returns a handle at once and finishes it through step()", function()
    local c = client()
    assert(c:tools())
    -- (200 ms; 4x under valgrind, where one step's own work is ~20x slower)
    local ms = sandbox.stretch(200)
    local h = c:call_async("sandbox_slow", { ms = ms })
    assert.is_false(h:done())
    local steps = 0
    while not h:done() do
      c:step(0.01)
      steps = steps + 1
    end
    -- each step came back within its 10 ms: the loop went round many times
    assert.is_true(steps >= 5, "only " .. steps .. " steps")
    local data = h:result()
    assert.equal(ms, data.sleptMs)
    c:close()
  end)

  it("runs the first call's initialize and tools/list without blocking, shared by all", function()
    local c = client()
    sandbox.control("POST", "/_sandbox/stats/reset", {})
    local hs = {}
    for i = 1, 5 do hs[i] = c:call_async("sandbox_echo", { value = i }) end
    for i = 1, 5 do assert.is_false(hs[i]:done()) end
    for i = 1, 5 do assert.equal(i, (hs[i]:wait(10))) end
    local st = sandbox.stats()
    -- one initialize (2025), or none at all (2026-07-28: stateless)
    assert.equal(c.session.era == "legacy" and 1 or nil, st.by_method.initialize)
    assert.equal(1, st.by_method["tools/list"])
    c:close()
  end)

  it("tells an event loop which sockets to watch while a call is in flight", function()
    local c = client()
    assert(c:tools())
    local h = c:call_async("sandbox_slow", { ms = 100 })
    c:step(0)
    local w = c:watch()
    assert.is_true(#w.fds >= 1)
    assert.is_number(w.fds[1].fd)
    assert.is_number(w.timeout_ms)
    assert.is_true(w.timeout_ms <= 60000)
    h:wait(5)
    c:close()
  end)

  it("raises misuse at once", function()
    local c = client()
    assert.has_error(function() c:call_async(1) end,
      "bad argument #1 to 'call_async' (tool name expected, got number)")
    c:close()
  end)
end)

describe("handle:cancel()", function()
  -- steps the client until the sandbox has seen n tools/call requests
  local function until_called(c, n)
    for _ = 1, 500 do
      c:step(0.01)
      if (sandbox.stats().by_method["tools/call"] or 0) >= n then return end
    end
    error("the sandbox never saw the call")
  end

  it("finishes the handle with `cancelled`, cuts the request and tells the server", function()
    local c = client()
    assert(c:tools())
    sandbox.control("POST", "/_sandbox/stats/reset", {})
    local done_with
    local h = c:call_async("sandbox_slow", { ms = 5000 }, { on_done = function(hd) done_with = hd end })
    local other = c:call_async("sandbox_slow", { ms = 50 })
    until_called(c, 2)
    assert.is_true(h:cancel("the user pressed <C-c>"))
    assert.is_true(h:done())
    assert.equal(h, done_with)
    local data, err = h:result()
    assert.is_nil(data)
    assert.equal("cancelled", err.code)
    assert.equal("the user pressed <C-c>", err.message)
    assert.is_false(h:cancel())
    assert.equal(50, (other:wait(10)).sleptMs)
    c:close() -- lets the notification finish
    local st = sandbox.stats()
    assert.equal(1, #st.cancelled)
  end)

  it("cancels a call still waiting for initialize; the shared start-up finishes for the others", function()
    local c = client()
    sandbox.control("POST", "/_sandbox/stats/reset", {})
    local h = c:call_async("sandbox_echo", { value = 1 })
    local other = c:call_async("sandbox_echo", { value = 2 })
    assert.is_true(h:cancel())
    assert.equal("cancelled", select(2, h:result()).code)
    assert.equal(2, (other:wait(10)))
    assert.equal(3, (c:call("sandbox_echo", { value = 3 })))
    c:close()
    local st = sandbox.stats()
    -- the cancelled handle's own tools/call was cut before it went out
    assert.equal(2, st.by_method["tools/call"])
    assert.equal(1, st.by_method["tools/list"])
  end)

  it("raises on a reason that is not a string", function()
    local c = client()
    local h = c:call_async("sandbox_echo", { value = 1 })
    assert.has_error(function() h:cancel(1) end, "bad argument #1 to 'cancel' (string expected, got number)")
    h:wait(10)
    c:close()
  end)
end)
