-- __gc, close and __close under pressure: every C object of favcrm.core
-- (clients and their HTTP handles, validators, secrets, SSE parsers, child
-- processes) made and dropped in tight loops with full collections in
-- between, closed and not closed, in flight and idle. Under `make asan` and
-- `make valgrind` this is where a double free or a use after free shows.
local favcrm = require("favcrm")
local core = require("favcrm.core")
local schema = require("favcrm.schema")
local sandbox = require("spec.support.sandbox")

local function full_gc()
  -- LuaJIT: a compiled trace holds the closures it called as constants
  -- (a client's after_pump, say), and with them the last client that ran
  -- through it, until the trace goes: a fixed few objects, not growth, but
  -- whether one is pinned depends on what got hot (1 run in 4 kept a stdio
  -- client's three pipes). Flushed here so what is counted is growth.
  if jit then jit.flush() end
  collectgarbage("collect")
  collectgarbage("collect")
end

-- Open file descriptors of this process (Linux), or nil elsewhere.
local function fd_count()
  local p = io.popen("ls /proc/" .. core.getpid() .. "/fd 2>/dev/null | wc -l")
  if not p then return nil end
  local n = tonumber(p:read("*a"))
  p:close()
  return n
end

-- fn() runs n times with a full collection after every `every` of them
-- (default 1: after each) and at the end; the number of open descriptors may
-- not grow by more than `slack`. A full collection costs time in proportion
-- to the whole heap (busted's, a few MB by this point of a suite run, ~20x
-- more under valgrind), not to what was dropped, so the loops of in-memory
-- objects (hundreds of them) collect in batches: every object is still
-- dropped, finalized and freed by a full collection, n times over, with
-- n / every collections each followed by fresh objects, and a leak of one
-- descriptor (or anything else) per object still adds up to n.
local function churn(n, fn, slack, every)
  every = every or 1
  full_gc()
  local before = fd_count()
  for i = 1, n do
    fn(i)
    if i % every == 0 then full_gc() end
  end
  full_gc()
  local after = fd_count()
  if before and after then
    assert.is_true(after <= before + (slack or 2),
      "descriptors grew from " .. before .. " to " .. after)
  end
end

describe("garbage collection", function()
  after_each(function()
    sandbox.control("DELETE", "/_sandbox/fault")
  end)

  describe("clients", function()
    it("survive favcrm.new + close in a loop", function()
      churn(20, function()
        local c = favcrm.new({ url = sandbox.url(), timeout = 5 })
        c:close()
        c:close()
      end)
    end)

    it("are freed when dropped without close, idle or after a call", function()
      churn(10, function(i)
        local c = favcrm.new({ url = sandbox.url(), timeout = 5 })
        if i % 2 == 0 then assert.equal(i, (c:call("sandbox_echo", { value = i }))) end
        -- dropped: the transport's own __gc frees the curl handles
        c = nil -- luacheck: ignore
      end, 4)
    end)

    it("are freed when dropped with a transfer in flight", function()
      churn(5, function()
        local c = favcrm.new({ url = sandbox.url(), timeout = 5 })
        assert(c:tools())
        local h = c:call_async("sandbox_slow", { ms = 2000 })
        c:step(0.05)
        assert.is_false(h:done())
        h, c = nil, nil -- luacheck: ignore
      end, 4)
    end)

    it("run many calls with a collection between each", function()
      local c = favcrm.new({ url = sandbox.url(), timeout = 5 })
      for i = 1, 30 do
        assert.equal(i, (c:call("sandbox_echo", { value = i })))
        collectgarbage("step", 0)
        if i % 5 == 0 then full_gc() end
      end
      c:close()
    end)

    it("keep working with an aggressive collector", function()
      local pause = collectgarbage("setpause", 10)
      local mul = collectgarbage("setstepmul", 1000)
      finally(function()
        collectgarbage("setpause", pause)
        collectgarbage("setstepmul", mul)
      end)
      local c = favcrm.new({ url = sandbox.url(), timeout = 5 })
      local results = c:call_many({
        { "sandbox_echo", { value = "a" } }, { "sandbox_echo", { value = "b" } },
        { "sandbox_progress", { steps = 3, delay_ms = 5 } }, { "sandbox_echo", { value = { 1, 2, 3 } } },
      })
      assert.equal("a", results[1])
      assert.equal("b", results[2])
      assert.equal(3, results[3].steps)
      assert.same({ 1, 2, 3 }, results[4])
      c:close()
    end)
  end)

  describe("HTTP handles", function()
    it("close, __gc and double close in every order", function()
      churn(50, function(i)
        local h = core.http_new({ max_response_bytes = 1024 })
        if i % 3 == 0 then h:close() h:close()
        elseif i % 3 == 1 then h:close() end
        -- i % 3 == 2: left to __gc
      end, nil, 5)
    end)

    it("are freed with transfers started, polled halfway, or cancelled", function()
      local url = sandbox.url()
      churn(20, function(i)
        local h = core.http_new()
        local id = assert(h:start({ method = "GET", url = url:gsub("/mcp$", "/healthz") }))
        if i % 4 == 1 then h:poll(5) end
        if i % 4 == 2 then h:cancel(id) end
        if i % 4 == 3 then
          local done
          for _ = 1, 100 do
            for _, item in ipairs(h:poll(50)) do if item.type == "done" then done = item end end
            if done then break end
          end
          assert.equal(200, done.status)
          h:close()
        end
      end, 4)
    end)

    it("raise a clear error when used after close", function()
      local h = core.http_new()
      h:close()
      assert.has_error(function() h:poll(0) end, "favcrm.Http is closed")
      full_gc()
    end)
  end)

  describe("validators", function()
    it("are compiled, used and dropped in a loop", function()
      local s = {
        type = "object", required = { "email" },
        properties = {
          email = { type = "string", pattern = "^(?=[^@]+@)[^@\\s]+@[^@\\s]+\\.[a-z]+$" },
          tags = { type = "array", items = { type = "string", maxLength = 4 } },
          n = { anyOf = { { type = "integer" }, { type = "null" } } },
        },
        additionalProperties = false,
      }
      churn(200, function(i)
        local v = assert(schema.compile(s, { all_errors = i % 2 == 0 }))
        assert.is_true((v:validate({ email = "a@b.io", tags = { "x" } })))
        local ok, errs = v:validate({ email = "nope", tags = { "toolong" }, extra = 1 })
        assert.is_false(ok)
        assert.is_table(errs)
      end, nil, 20)
    end)

    it("survive a failed compile and a collection while errors are held", function()
      local held = {}
      for i = 1, 100 do
        local v, err = schema.compile({ type = "object", properties = { x = { pattern = "(" } } })
        assert.is_nil(v)
        assert.equal("invalid_schema", err.code)
        local ok = schema.compile({ ["$ref"] = "#/$defs/a", ["$defs"] = { a = { ["$ref"] = "#/$defs/a" } } })
        held[i % 10] = ok
        if i % 7 == 0 then full_gc() end
      end
      assert.is_not_nil(next(held))
      held = nil -- luacheck: ignore
      full_gc()
    end)

    it("close, __gc and double close in every order; a closed one raises when used", function()
      churn(60, function(i)
        local v = assert(core.schema_compile({ type = "string", pattern = "^a" }))
        assert.is_true((v:validate("abc")))
        if i % 3 == 0 then v:close() v:close()
        elseif i % 3 == 1 then v:close() end
        -- i % 3 == 2: left to __gc
        if i % 3 ~= 2 then
          assert.matches("favcrm.Validator %(closed%)", tostring(v))
          assert.has_error(function() v:validate("abc") end,
            "attempt to use a closed or unfinished validator")
        end
      end, nil, 6)
    end)

    it("have __close and __gc that close them like close()", function()
      for _, mm in ipairs({ "__close", "__gc" }) do
        local v = assert(core.schema_compile({ type = "string" }))
        local f = getmetatable(v)[mm]
        assert.is_function(f)
        f(v)
        f(v)
        assert.matches("favcrm.Validator %(closed%)", tostring(v))
        v:close()
      end
    end)
  end)

  describe("secrets", function()
    it("are made, read, closed and dropped in a loop", function()
      churn(500, function(i)
        local s = core.secret("fav_mcp_gc" .. string.rep("x", i % 40) .. i)
        assert.matches("^fav_mcp_", s:reveal())
        assert.is_string(tostring(s))
        if i % 2 == 0 then s:close() s:close() assert.is_true(s:is_closed()) end
      end, nil, 25)
    end)
  end)

  describe("SSE parsers", function()
    it("are dropped with a half-read event, closed, or reset", function()
      churn(200, function(i)
        local p = core.sse_parser(64 * 1024)
        local events = assert(p:feed("id: " .. i .. "\nevent: message\ndata: {\"n\":" .. i .. "}\n\ndata: half"))
        assert.equal(1, #events)
        assert.equal(tostring(i), events[1].id)
        if i % 3 == 0 then p:close() p:close()
        elseif i % 3 == 1 then p:reset() end
      end, nil, 20)
    end)
  end)

  describe("child processes", function()
    it("are reaped when closed or dropped", function()
      churn(6, function(i)
        local p = assert(core.spawn({ "sh", "-c", "cat" }))
        assert(p:write("hello\n"))
        if i % 2 == 0 then p:close(500) p:close(500) end
        -- odd: left to __gc (closes stdin, cat ends)
      end, 2)
    end)

    it("stdio clients are freed when dropped", function()
      local everything = os.getenv("FAVCRM_EVERYTHING_BIN")
      churn(2, function(i)
        local c = favcrm.new({ command = { "node", everything, "stdio" }, timeout = 10 })
        assert(c:tools())
        if i == 1 then c:close() end
      end, 2)
    end)
  end)
end)
