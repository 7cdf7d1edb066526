-- notifications/*/list_changed (issue 15 item 2) and, over stdio, what a
-- server writes while no call is open (issue 15 item 1): read and handled at
-- the next pump (step or call), never dropped.
local favcrm = require("favcrm")
local sandbox = require("spec.support.sandbox")

-- Pumps c until pred() holds (at most secs seconds); returns pred().
local function step_until(c, pred, secs)
  local deadline = os.time() + (secs or 5)
  while not pred() and os.time() <= deadline do c:step(0.05) end
  return pred()
end

local n = 0
local function fresh_name()
  n = n + 1
  return string.format("late_tool_%d_%d", os.time(), n)
end

local function tools_lists(url)
  return sandbox.stats(url).by_method["tools/list"] or 0
end

describe("list_changed over Streamable HTTP (sandbox)", function()
  before_each(function() sandbox.reset() end)

  it("a tool added since the last list is callable without the notification (one refetch)", function()
    local c = favcrm.new({ url = sandbox.url(), listen = false })
    assert(c:tools())
    local name = fresh_name()
    assert.is_nil(c:cached_tool(name))
    sandbox.control("POST", "/_sandbox/tools", { name = name })
    local before = tools_lists()
    local data = assert(c:call(name, { x = 1 }))
    assert.equal(name, data.tool)
    assert.equal(before + 1, tools_lists())
    assert.is_table(c:cached_tool(name))
    -- an unknown name still fails, after one refetch, with suggestions
    local none, err = c:call("no_such_tool_here")
    assert.is_nil(none)
    assert.equal("unknown_tool", err.code)
    c:close()
  end)

  it("the notification drops the cache and calls on_tools_changed; the new tool is listed", function()
    local fired = {}
    local c = favcrm.new({ url = sandbox.url(), on_tools_changed = function(cl) fired[#fired + 1] = cl end })
    assert(c:tools())
    -- on_tools_changed alone opens the standalone stream
    assert.is_true(step_until(c, function() return c.session:listening() end))
    local name = fresh_name()
    assert(step_until(c, function()
      return sandbox.control("POST", "/_sandbox/tools", { name = name, notify = true }).notified >= 1
    end, 3))
    assert.is_true(step_until(c, function() return #fired > 0 end, 5))
    assert.equal(c, fired[1])
    assert.is_nil(c.tool_cache)
    local found = false
    for _, t in ipairs(assert(c:tools())) do found = found or t.name == name end
    assert.is_true(found)
    assert.equal(name, assert(c:call(name, {})).tool)
    c:close()
  end)

  it("accepts the three callbacks as options and refuses other types", function()
    local f = function() end
    favcrm.new({ url = sandbox.url(), on_tools_changed = f, on_resources_changed = f, on_prompts_changed = f }):close()
    assert.has_error(function() favcrm.new({ url = sandbox.url(), on_prompts_changed = true }) end,
      "favcrm.new: option 'on_prompts_changed' must be a function (got boolean)")
  end)

  it("resources and prompts list_changed call their callbacks and drop their caches", function()
    local got = {}
    local c = favcrm.new({ url = sandbox.url(), listen = false,
      on_resources_changed = function() got[#got + 1] = "resources" end,
      on_prompts_changed = function() got[#got + 1] = "prompts" end })
    c.resource_cache, c.prompt_cache = {}, {}
    c.session:_on_message({}, { jsonrpc = "2.0", method = "notifications/resources/list_changed" })
    c.session:_on_message({}, { jsonrpc = "2.0", method = "notifications/prompts/list_changed" })
    assert.same({ "resources", "prompts" }, got)
    assert.is_nil(c.resource_cache)
    assert.is_nil(c.prompt_cache)
    c:close()
  end)
end)

describe("stdio: what the server writes while no call is open", function()
  local function make(opts)
    opts = opts or {}
    opts.command = { "node", "spec/support/idle_stdio_server.mjs" }
    opts.timeout = 10
    return favcrm.new(opts)
  end

  local function answers(c)
    return assert(c:call("answers", {}))
  end

  for _, when in ipairs({ "idle", "during" }) do
    it("answers a ping sent " .. when .. " a call", function()
      local c = make()
      assert(c:call("send", { kind = "ping", when = when }))
      if when == "idle" then
        -- read and answered at the next pump (step), not only at the next call
        step_until(c, function() return false end, 1)
      end
      local got = answers(c)
      assert.equal(1, #got)
      assert.equal("srv-ping-1", got[1].id)
      assert.is_true(got[1].ok)
      c:close()
    end)

    it("delivers a log line sent " .. when .. " a call to on_log", function()
      local logs = {}
      local c = make({ on_log = function(p) logs[#logs + 1] = p.data end })
      assert(c:call("send", { kind = "log", when = when }))
      if when == "idle" then assert.is_true(step_until(c, function() return #logs > 0 end, 5)) end
      assert.same({ "log 1" }, logs)
      c:close()
    end)

    it("handles tools/list_changed sent " .. when .. " a call", function()
      local fired = 0
      local c = make({ on_tools_changed = function() fired = fired + 1 end })
      assert(c:tools())
      local name = fresh_name()
      assert(c:call("send", { kind = "list_changed", when = when, add = name }))
      if when == "idle" then assert.is_true(step_until(c, function() return fired > 0 end, 5)) end
      assert.equal(1, fired)
      assert.is_nil(c.tool_cache)
      assert.equal(name, assert(c:call(name, {})).tool)
      c:close()
    end)
  end

  it("keeps what came at idle for the next call when listen = false", function()
    local logs = {}
    local c = make({ listen = false, on_log = function(p) logs[#logs + 1] = p.data end })
    assert(c:call("send", { kind = "log", when = "idle" }))
    assert(c:call("send", { kind = "ping", when = "idle" }))
    step_until(c, function() return false end, 1)
    assert.is_false(c.session:listening())
    -- the next call's stream carries the log line and the ping
    local got = answers(c)
    assert.same({ "log 1" }, logs)
    if #got == 0 then got = answers(c) end
    assert.equal(1, #got)
    assert.equal("srv-ping-2", got[1].id)
    c:close()
  end)

  it("a tool added without a notification is callable (refetch)", function()
    local c = make()
    assert(c:tools())
    local name = fresh_name()
    -- kind log: no list_changed, the tool just appears
    assert(c:call("send", { kind = "log", when = "during", add = name }))
    assert.is_table(c.tool_cache)
    assert.equal(name, assert(c:call(name, {})).tool)
    c:close()
  end)
end)
