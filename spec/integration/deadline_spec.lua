-- One deadline per public call (issue 14, "Time"): everything a call does
-- (initialize, tools/list, retries and their backoff, resume waits, a new
-- session after a 404, output validation) spends from its `timeout`, and
-- client:step(t) returns within t plus a small constant. Each case measures
-- with core.monotonic() and checks the call ends within its deadline + 1 s.
local favcrm = require("favcrm")
local core = require("favcrm.core")
local cjson = require("cjson")
local sandbox = require("spec.support.sandbox")

-- 2025-only machinery (sessions, the GET stream, Last-Event-ID, DELETE, the
-- faults the sandbox injects on that path): pinned to protocol = "2025-11-25",
-- and skipped, with the reason, on a sandbox that speaks 2026-07-28 only
local LEGACY = sandbox.speaks("2025") and "2025-11-25" or nil
local it25 = sandbox.speaks("2025") and it or function(name)
  pending("SKIPPED on a 2026-only sandbox (FAVCRM_SANDBOX_ERA=" .. sandbox.era .. "), 2025 machinery: " .. name)
end

local SLACK = 1 -- seconds past the deadline a call may take (LIMITS.md)
-- the longest one step(0) may take: 0.25 s (0.75 s under valgrind, where a
-- collection step of busted's heap alone can take 0.3 s); a step that
-- blocked until the 1 s deadline fails either way
local STEP0 = 0.25 * math.min(sandbox.slowdown, 3)

local function client(opts)
  opts = opts or {}
  opts.url = opts.url or sandbox.url()
  return favcrm.new(opts)
end

local function timed(fn)
  local t0 = core.monotonic()
  local a, b = fn()
  return a, b, core.monotonic() - t0
end

-- Steps an async handle until done (or `bound` seconds); returns the
-- seconds it took and the longest single step.
local function step_until(c, h, t, bound)
  local t0, longest = core.monotonic(), 0
  while not h:done() and core.monotonic() - t0 < bound do
    local s0 = core.monotonic()
    c:step(t)
    longest = math.max(longest, core.monotonic() - s0)
  end
  return core.monotonic() - t0, longest
end

before_each(function()
  sandbox.control("DELETE", "/_sandbox/fault")
end)
after_each(function()
  sandbox.control("DELETE", "/_sandbox/fault")
end)

describe("a call against a silent server", function()
  it("ends at its own timeout, not the client's (initialize and tools/list included)", function()
    sandbox.fault({ fault = "silent", count = 50 })
    local c = client({ timeout = 3 })
    local data, err, took = timed(function() return c:call("sandbox_echo", { value = 1 }, { timeout = 1 }) end)
    assert.is_nil(data)
    assert.equal("timeout", err.code)
    assert.is_true(took < 1 + SLACK, ("took %.2f s"):format(took))
    c:close()
  end)

  it("spends the same deadline on read-only retries and their backoff", function()
    local c = client({ timeout = 3 })
    assert(c:call("sandbox_progress", { steps = 0 })) -- session and tools/list ready
    -- each attempt fails slowly: restarting the timeout per attempt took 2.4 s
    sandbox.fault({ fault = "status", status = 503, delay_ms = 300, count = 2, match_tool = "sandbox_progress" })
    sandbox.fault({ fault = "silent", count = 5, match_tool = "sandbox_progress" })
    local data, err, took = timed(function() return c:call("sandbox_progress", { steps = 0 }, { timeout = 1 }) end)
    assert.is_nil(data)
    -- a backoff that would outlast the deadline is not started: the last error stands
    assert.is_true(err.code == "timeout" or err.code == "http", err.code)
    assert.is_true(took < 1 + SLACK, ("took %.2f s"):format(took))
    c:close()
  end)
end)

describe("a stream that ends with an event id and retry: 2147483647", function()
  it25("times out at the call's deadline while waiting to resume (async and blocking)", function()
    local c = client({ timeout = 3, protocol = LEGACY })
    assert(c:call("sandbox_progress", { steps = 0 }))
    sandbox.fault({ fault = "sse_truncated", event_id = "e1", retry = 2147483647, match_tool = "sandbox_progress" })
    local h = c:call_async("sandbox_progress", { steps = 0 }, { timeout = 1 })
    local took = step_until(c, h, 0.05, 5)
    assert.is_true(h:done(), "still waiting to resume after 5 s")
    local _, err = h:result()
    assert.equal("timeout", err.code)
    assert.is_true(took < 1 + SLACK, ("took %.2f s"):format(took))
    sandbox.fault({ fault = "sse_truncated", event_id = "e2", retry = 2147483647, match_tool = "sandbox_progress" })
    local data, err2, took2 = timed(function() return c:call("sandbox_progress", { steps = 0 }, { timeout = 1 }) end)
    assert.is_nil(data)
    assert.equal("timeout", err2.code)
    assert.is_true(took2 < 1 + SLACK, ("took %.2f s"):format(took2))
    c:close()
  end)
end)

describe("a 404 for a known session", function()
  it25("re-initialises inside the op: step(0) never blocks, the call ends at its deadline", function()
    local c = client({ timeout = 3, protocol = LEGACY })
    assert(c:call("sandbox_progress", { steps = 0 }))
    sandbox.fault({ fault = "session_lost", match_tool = "sandbox_progress" })
    sandbox.fault({ fault = "silent", match_method = "initialize", count = 5 })
    local h = c:call_async("sandbox_progress", { steps = 0 }, { timeout = 1 })
    local took, longest = step_until(c, h, 0, 6)
    assert.is_true(h:done())
    local _, err = h:result()
    assert.equal("timeout", err.code)
    assert.is_true(took < 1 + SLACK, ("took %.2f s"):format(took))
    assert.is_true(longest < STEP0, ("one step(0) took %.2f s"):format(longest))
    c:close()
  end)

  it25("bounds a blocking call by its timeout too", function()
    local c = client({ timeout = 3, protocol = LEGACY })
    assert(c:call("sandbox_progress", { steps = 0 }))
    sandbox.fault({ fault = "session_lost", match_tool = "sandbox_progress" })
    sandbox.fault({ fault = "silent", match_method = "initialize", count = 5 })
    local data, err, took = timed(function() return c:call("sandbox_progress", { steps = 0 }, { timeout = 1 }) end)
    assert.is_nil(data)
    assert.equal("timeout", err.code)
    assert.is_true(took < 1 + SLACK, ("took %.2f s"):format(took))
    c:close()
  end)

  it("still replays once on a fresh session when the server answers", function()
    local c = client({ timeout = 3 })
    assert(c:call("sandbox_progress", { steps = 0 }))
    sandbox.fault({ fault = "session_lost", match_tool = "sandbox_progress" })
    local h = c:call_async("sandbox_progress", { steps = 2 })
    local _, longest = step_until(c, h, 0, 6)
    assert.equal(2, (assert(h:result())).steps)
    assert.is_true(longest < STEP0, ("one step(0) took %.2f s"):format(longest))
    c:close()
  end)
end)

-- A session-level transport in Lua that answers at once: initialize,
-- tools/list with `tool`, and tools/call with `result`.
local function canned(tool, result)
  local t, queue, n = {}, {}, 0
  function t.start(_, req)
    n = n + 1
    local msg = req.body and cjson.decode(req.body)
    local body
    if msg and msg.id then
      local res
      if msg.method == "initialize" then
        res = { protocolVersion = "2025-11-25", capabilities = { tools = {} },
          serverInfo = { name = "x", version = "1" } }
      elseif msg.method == "tools/list" then
        res = { tools = { tool } }
      else
        res = result
      end
      body = cjson.encode({ jsonrpc = "2.0", id = msg.id, result = res })
    end
    queue[#queue + 1] = { type = "headers", id = n, status = body and 200 or 202,
      headers = { ["content-type"] = "application/json" } }
    queue[#queue + 1] = { type = "done", id = n, status = body and 200 or 202, body = body or "" }
    return n
  end
  function t.poll()
    local q = queue
    queue = {}
    return q
  end
  function t.cancel() end
  function t.close() end
  return t
end

describe("output validation", function()
  it("checks 40,000 items under uniqueItems within the call's deadline", function()
    local items = {}
    for i = 1, 40000 do items[i] = { id = i, name = "n" .. i } end
    local tool = { name = "big", inputSchema = { type = "object" },
      outputSchema = { type = "object", properties = { items = { type = "array", uniqueItems = true,
        items = { type = "object" } } } } }
    local c = favcrm.new({ transport = canned(tool, { structuredContent = { items = items }, content = {} }),
      -- 3 s natively; under valgrind (FAVCRM_SPEC_SLOWDOWN, set by make
      -- valgrind) the budget scales with the emulation's slowdown
      url = "http://127.0.0.1:9/mcp", max_total_timeout = 3 * sandbox.slowdown })
    local data, res = c:call("big") -- the payload and the whole result, or nil, err
    assert.is_truthy(data, tostring(res))
    assert.equal(40000, #data.items)
    c:close()
  end)

  it("grows like n log n under uniqueItems, not n^2 (4x the items, well under 16x the time)", function()
    -- a ratio within one process, so a slow machine or valgrind scales both;
    -- CPU time (os.clock), so time the process spends preempted on a loaded
    -- machine does not count (a wall-clock ratio flaked at load 8)
    local v = assert(require("favcrm.schema").compile({ type = "array", uniqueItems = true }))
    local function best_of_5(n)
      local items = {}
      for i = 1, n do items[i] = { id = i, name = "n" .. i } end
      local best = math.huge
      for _ = 1, 5 do
        collectgarbage()
        local t0 = os.clock()
        assert.is_true((v:validate(items)))
        best = math.min(best, os.clock() - t0)
      end
      return best
    end
    local small, big = best_of_5(10000), best_of_5(40000)
    assert.is_true(big < 10 * small, ("10k items %.4f s, 40k items %.4f s"):format(small, big))
  end)

  it("ends with timeout at the call's deadline when patterns hit the match limit", function()
    local strings = {}
    for i = 1, 5000 do strings[i] = string.rep("a", 30) .. "!" end
    local tool = { name = "re", inputSchema = { type = "object" },
      outputSchema = { type = "object", properties = { s = { type = "array",
        items = { anyOf = { { pattern = "^(a+)+$" }, { maxLength = 100 } } } } } } }
    local c = favcrm.new({ transport = canned(tool, { structuredContent = { s = strings }, content = {} }),
      url = "http://127.0.0.1:9/mcp", timeout = 1, max_total_timeout = 3 })
    local data, err, took = timed(function() return c:call("re") end)
    assert.is_nil(data)
    assert.equal("timeout", err.code)
    assert.is_true(took < 1 + SLACK, ("took %.2f s"):format(took))
    c:close()
  end)
end)

describe("times that are not finite, or negative", function()
  it("are refused by step, wait, new and the call options, naming the option", function()
    local c = client()
    for _, t in ipairs({ math.huge, -math.huge, 0 / 0, -1 }) do
      local ok, msg = pcall(c.step, c, t)
      assert.is_false(ok)
      assert.matches("bad argument #1 to 'step'", msg, 1, true)
    end
    assert.matches("option 'connect_timeout' must be a positive finite number",
      select(2, pcall(favcrm.new, { connect_timeout = math.huge })), 1, true)
    assert.matches("option 'max_total_timeout' must be a positive finite number",
      select(2, pcall(favcrm.new, { max_total_timeout = 0 / 0 })), 1, true)
    assert.matches("option 'timeout' must be a positive finite number of seconds, got string",
      select(2, pcall(c.call, c, "sandbox_echo", {}, { timeout = "x" })), 1, true)
    assert.matches("option 'max_total_timeout' must be a positive finite number of seconds",
      select(2, pcall(c.call_async, c, "sandbox_echo", {}, { max_total_timeout = math.huge })), 1, true)
    local _, many = pcall(c.call_many, c, { { "sandbox_echo", {} } }, { concurrency = 0 / 0 })
    assert.matches("option 'concurrency' must be a number >= 1, got nan", (many:gsub("%-nan", "nan")), 1, true)
    c:close()
  end)
end)
