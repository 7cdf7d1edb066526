-- No message a server sends is dropped silently (issue 15): a server on the
-- official TypeScript SDK (spec/support/surface_server.mjs) sends each kind
-- (ping, a log line, progress, the three list_changed, resources/updated,
-- elicitation, sampling, roots/list) during a call and at idle, over stdio
-- and over Streamable HTTP, and each must reach its callback (or, for a
-- request, the server must get our answer). At idle the client runs as an
-- event loop does: select() on client:watch()'s descriptors, then step(0),
-- so a message must wake the loop through a descriptor (stdio's pipe too),
-- never wait for a timer.
local favcrm = require("favcrm")
local core = require("favcrm.core")
local json = require("favcrm.json")
local has_socket, socket = pcall(require, "socket")

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "spec/integration"
local SERVER = here .. "/../support/surface_server.mjs"

local KINDS = { "ping", "log", "progress", "tools_changed", "resources_changed", "prompts_changed",
  "updated", "elicit", "elicit_url", "elicit_done", "sample", "roots" }
local REQUESTS = { ping = true, elicit = true, elicit_url = true, sample = true, roots = true }

-- what reached the client's callbacks, by kind
local function recorder()
  local seen = {}
  for _, k in ipairs(KINDS) do seen[k] = 0 end
  local function hit(k) return function() seen[k] = seen[k] + 1 end end
  local opts = {
    timeout = 15,
    on_log = hit("log"),
    on_progress = hit("progress"),
    on_tools_changed = hit("tools_changed"),
    on_resources_changed = hit("resources_changed"),
    on_prompts_changed = hit("prompts_changed"),
    elicit_modes = { "form", "url" },
    on_elicit = function(p)
      if p.mode == "url" then
        seen.elicit_url = seen.elicit_url + 1
        return { action = "accept" }
      end
      seen.elicit = seen.elicit + 1
      return { action = "accept", content = { name = "Ada" } }
    end,
    on_elicit_complete = hit("elicit_done"),
    on_sample = function()
      seen.sample = seen.sample + 1
      return { role = "assistant", model = "spec", content = { type = "text", text = "ok" } }
    end,
    on_roots = function()
      seen.roots = seen.roots + 1
      return { { uri = "file:///tmp/surface", name = "surface" } }
    end,
  }
  return seen, opts, hit("updated")
end

local function fd_object(fd)
  return { getfd = function() return fd end, dirty = function() return false end }
end

-- Runs c as an event loop would until cond() holds (at most 60 wakes);
-- returns cond() and how many wakes a readable descriptor caused.
local function loop_until(c, cond)
  local by_fd = 0
  for _ = 1, 60 do
    if cond() then return true, by_fd end
    local w = c:watch()
    local rs = {}
    for _, f in ipairs(w.fds) do
      if f.read then rs[#rs + 1] = fd_object(f.fd) end
    end
    local t = w.timeout_ms
    t = (t < 0 or t > 5000) and 5 or t / 1000
    local ready = socket.select(rs, nil, t)
    if #ready > 0 then by_fd = by_fd + 1 end
    c:step(0)
  end
  return cond(), by_fd
end

-- The server's record of our answers to its requests of this kind.
local function answers(c, kind)
  local list = assert(c:call("answers", {}))
  if type(list) == "string" then list = json.decode(list) end
  local out = {}
  for _, a in ipairs(list) do
    if a.kind == kind then out[#out + 1] = a end
  end
  return out
end

local function start_http()
  local proc = assert(core.spawn({ "node", SERVER, "http" }))
  for _ = 1, 200 do
    local r = proc:poll(100)
    for _, line in ipairs(r.lines) do
      local port = line:match("^port (%d+)")
      if port then return proc, "http://127.0.0.1:" .. port .. "/mcp" end
    end
    if r.eof then break end
  end
  proc:close(500)
  error("the surface server did not start")
end

local transports = {
  { "stdio", function(opts)
    opts.command = { "node", SERVER, "stdio" }
    return favcrm.new(opts)
  end },
  { "Streamable HTTP", function(opts, url)
    opts.url = url
    return favcrm.new(opts)
  end },
}

for _, t in ipairs(transports) do
  local name, make = t[1], t[2]
  local suite = has_socket and describe or pending
  suite("every message a server sends, over " .. name, function()
    local proc, url, c, seen
    setup(function()
      if name == "Streamable HTTP" then proc, url = start_http() end
      local opts, updated
      seen, opts, updated = recorder()
      c = assert(make(opts, url))
      -- a ping has no callback: count the ones the session answers
      local answer = c.session._answer_server_request
      c.session._answer_server_request = function(s, op, msg)
        if msg.method == "ping" then seen.ping = seen.ping + 1 end
        return answer(s, op, msg)
      end
      assert(c:tools())
      assert(c:subscribe("surface://watched", updated))
    end)
    teardown(function()
      if c then c:close() end
      if proc then proc:close(1000) end
    end)

    for _, when in ipairs({ "during", "idle" }) do
      for _, kind in ipairs(KINDS) do
        it("reaches the client: " .. kind .. " " .. (when == "during" and "during a call" or "at idle"), function()
          local before = seen[kind]
          local asked = REQUESTS[kind] and #answers(c, kind)
          assert(c:call("send", { kind = kind, when = when }))
          -- a progress "at idle" goes on no call's stream while its call waits
          if when == "during" or kind == "progress" then
            assert.is_true(seen[kind] > before, kind .. " did not reach its callback during the call")
          else
            local ok, by_fd = loop_until(c, function() return seen[kind] > before end)
            assert.is_true(ok, kind .. " sent at idle never reached its callback")
            assert.is_true(by_fd >= 1, "the event loop was not woken by a descriptor from watch()")
          end
          if asked then
            -- the server got our answer (an idle one: wait for it to arrive)
            local list = answers(c, kind)
            for _ = 1, 50 do
              if #list > asked then break end
              c:step(0.05)
              list = answers(c, kind)
            end
            assert.equal(asked + 1, #list)
            assert.is_true(list[#list].ok, kind .. ": the server got an error: " .. tostring(list[#list].error))
          end
        end)
      end
    end
  end)
end

describe("a URL-mode elicitation to a client that declared form only", function()
  it("is refused with -32602 and never reaches on_elicit", function()
    local asked = 0
    local c = assert(favcrm.new({ command = { "node", SERVER, "stdio" }, timeout = 15,
      on_elicit = function() asked = asked + 1 return { action = "accept" } end }))
    assert(c:call("send", { kind = "elicit_url", when = "during" }))
    local list = answers(c, "elicit_url")
    assert.equal(1, #list)
    assert.is_false(list[1].ok)
    assert.matches("does not support elicitation mode url", list[1].error, 1, true)
    assert.equal(0, asked)
    c:close()
  end)

  it("a completion for an elicitation id it was never given is ignored", function()
    local done = 0
    local c = assert(favcrm.new({ command = { "node", SERVER, "stdio" }, timeout = 15, elicit_modes = { "url" },
      on_elicit = function() return { action = "accept" } end, on_elicit_complete = function() done = done + 1 end }))
    assert(c:call("send", { kind = "elicit_done", when = "during" }))
    assert.equal(0, done)
    assert(c:call("send", { kind = "elicit_url", when = "during" }))
    assert(c:call("send", { kind = "elicit_done", when = "during" }))
    assert(c:call("send", { kind = "elicit_done", when = "during" }))
    assert.equal(1, done)
    c:close()
  end)

  it("keeps at most 64 elicitation ids for completions, the oldest forgotten first", function()
    local s = require("favcrm.session").new({ transport = {} })
    for i = 1, 65 do s:_elicit_known("el-" .. i) end
    assert.is_false(s:_elicit_known("el-1", true))
    assert.is_true(s:_elicit_known("el-2", true))
    assert.is_false(s:_elicit_known("el-2", true))
    assert.is_true(s:_elicit_known("el-65", true))
    assert.equal(62, #s.elicit_ids.order)
  end)

  it("raises on a bad elicit_modes, naming the option", function()
    local f = function() end
    local url = "http://127.0.0.1:1/mcp"
    assert.has_error(function() favcrm.new({ url = url, on_elicit = f, elicit_modes = { "fax" } }) end,
      "favcrm.new: option 'elicit_modes' item 1 must be \"form\" or \"url\" (got fax)")
    assert.has_error(function() favcrm.new({ url = url, elicit_modes = { "url" } }) end,
      "favcrm.new: option 'elicit_modes' goes with 'on_elicit'")
    assert.has_error(function() favcrm.new({ url = url, on_elicit = f, elicit_modes = {} }) end,
      "favcrm.new: option 'elicit_modes' must name \"form\", \"url\" or both")
    assert.has_error(function() favcrm.new({ url = url, on_elicit = f, on_elicit_complete = f }) end,
      "favcrm.new: option 'on_elicit_complete' goes with elicit_modes naming \"url\"")
  end)
end)

for _, t in ipairs(transports) do
local name, make = t[1], t[2]
describe("a tool whose taskSupport is optional (favcrm.tasks), over " .. name, function()
  local c, proc, url
  setup(function()
    if name == "Streamable HTTP" then proc, url = start_http() end
  end)
  teardown(function()
    if proc then proc:close(1000) end
  end)
  before_each(function() c = assert(make({ timeout = 15 }, url)) end)
  after_each(function() c:close() end)

  local function job(args, opts)
    local data, err = c:call("job", args, opts)
    if type(data) == "string" then data = json.decode(data) end
    return data, err
  end

  it("runs plainly unless the caller asks for a task", function()
    assert.same({ job = "direct" }, (assert(job({}))))
    local data = assert(job({ ms = 50, poll = 10 }, { task = true }))
    assert.equal("completed", data.job)
    data = assert(job({ ms = 50, poll = 10 }, { task = { ttl = 60000 } }))
    assert.equal(60000, data.ttl)
  end)

  it("polls no faster than its floor when the server's pollInterval is 0", function()
    local tasks = require("favcrm.tasks")
    -- 1 s of work at a floor of MIN_POLL_INTERVAL: at most 1 / floor polls, and more than one
    local data = assert(job({ ms = 1000, poll = 0 }, { task = true }))
    assert.is_true(data.polls >= 2, "polled " .. data.polls .. " times")
    assert.is_true(data.polls <= 1 / tasks.MIN_POLL_INTERVAL + 1, "polled " .. data.polls .. " times")
  end)

  it("passes the task's progress notifications to on_progress", function()
    local seen = {}
    -- (over HTTP it comes on the standalone stream, which the task opens: half way is 0.5 s after
    -- creation, 2 s under valgrind, so that the stream is open by then)
    local function on_progress(p) seen[#seen + 1] = p end
    local ms = (tonumber(os.getenv("FAVCRM_SPEC_SLOWDOWN")) or 1) > 1 and 4000 or 1000
    local data = assert(job({ ms = ms, poll = 50 }, { task = true, on_progress = on_progress }))
    assert.equal("completed", data.job)
    assert.equal(1, #seen)
    assert.equal("half way", seen[1].message)
  end)

  it("a failed task is the tool's failure", function()
    local data, err = job({ ms = 20, poll = 10, fail = true }, { task = true })
    assert.is_nil(data)
    assert.equal("tool_error", err.code)
  end)

  it("raises on a bad task option, naming it, before anything is sent", function()
    local sent = 0
    local start = c.session.start_request
    c.session.start_request = function(...)
      sent = sent + 1
      return start(...)
    end
    assert.has_error(function() c:call("job", {}, { task = "yes" }) end,
      "bad argument #3 to 'call' (option 'task' must be a boolean or {ttl = ms}, got string)")
    assert.has_error(function() c:call("job", {}, { task = { ttl = -1 } }) end,
      "bad argument #3 to 'call' (option 'task.ttl' must be a positive number of milliseconds)")
    assert.equal(0, sent)
  end)
end)
end
