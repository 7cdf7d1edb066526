-- favcrm.core http:exchange(req, wait_ms): start a transfer and wait for it
-- in one call (csrc/http.c), against the sandbox over loopback. Its answers
-- are shaped with the sandbox's test-mode faults ("status": a given
-- status, body and Content-Type, after delay_ms; "drip": the real answer,
-- its headers at once and its body a few bytes a tick).
local core = require("favcrm.core")
local cjson = require("cjson")
local sandbox = require("spec.support.sandbox")

local URL = sandbox.url()
local HEADERS = { "Content-Type: application/json", "Accept: application/json, text/event-stream" }
local ANSWER = '{"jsonrpc":"2.0","id":7,"result":{"spec":"exchange"}}'
local SLOW = tonumber(os.getenv("FAVCRM_SPEC_SLOWDOWN")) or 1

-- table.pack, which Lua 5.1 and LuaJIT lack.
local function pack(...) return { n = select("#", ...), ... } end

-- A ping with JSON-RPC id n.
local function ping(n) return '{"jsonrpc":"2.0","id":' .. n .. ',"method":"ping"}' end

-- The next ping the sandbox reads gets fault f.
local function next_ping(f)
  f.match_method = "ping"
  sandbox.fault(f)
end

-- Sends ping n through h:exchange (waiting at most 10 s) with the sandbox's
-- fault f for it; returns what exchange returned, packed.
local function exchange(h, f, n, sse)
  next_ping(f)
  return pack(h:exchange({ url = URL, body = ping(n), headers = HEADERS }, 10000 * SLOW, sse))
end

-- Polls h until transfer id is done (at most 10 s), adding every item to
-- got (a list, in the order poll handed them over); returns got.
local function run(h, id, got)
  got = got or {}
  local deadline = core.monotonic() + 10 * SLOW
  local done = false
  for _, item in ipairs(got) do done = done or (item.id == id and item.type == "done") end
  while not done and core.monotonic() < deadline do
    for _, item in ipairs(h:poll(1000)) do
      got[#got + 1] = item
      done = done or (item.id == id and item.type == "done")
    end
  end
  assert.is_true(done, "no done item within 10 s")
  return got
end

-- The items of got with this id, as "type" strings in order.
local function kinds(got, id)
  local out = {}
  for _, item in ipairs(got) do
    if item.id == id then out[#out + 1] = item.type end
  end
  return out
end

describe("favcrm.core http:exchange()", function()
  local h
  before_each(function()
    sandbox.control("DELETE", "/_sandbox/fault")
    h = core.http_new()
  end)
  after_each(function()
    h:close()
    sandbox.control("DELETE", "/_sandbox/fault")
  end)

  it("hands a 2xx JSON answer over at once: id, status, body, content_type, date; poll has nothing of it", function()
    local r = exchange(h,
      { fault = "status", status = 200, body = ANSWER, content_type = "application/json; charset=utf-8" }, 7)
    assert.equal(5, r.n)
    assert.is_number(r[1])
    assert.equal(200, r[2])
    assert.equal(ANSWER, r[3])
    assert.equal("application/json; charset=utf-8", r[4])
    assert.matches("^%a%a%a, %d%d %a%a%a %d%d%d%d %d%d:%d%d:%d%d GMT$", r[5])
    assert.equal(0, h:active())
    assert.same({}, h:poll(0))
    assert.is_false(h:cancel(r[1]))
    -- the handle, its header list and its buffers serve the next one
    next_ping({ fault = "status", status = 201, body = "[1]", content_type = "application/json" })
    local id2, status2, body2 = h:exchange({ url = URL, body = ping(8), headers = HEADERS }, 10000 * SLOW)
    assert.is_true(id2 > r[1])
    assert.equal(201, status2)
    assert.equal("[1]", body2)
    assert.same({}, h:poll(0))
  end)

  it("returns only the id for an SSE answer; poll then hands over its headers, event and done", function()
    local sse = "event: message\ndata: " .. ANSWER .. "\n\n"
    local r = exchange(h, { fault = "status", status = 200, body = sse, content_type = "text/event-stream" }, 7)
    assert.equal(1, r.n)
    local got = run(h, r[1])
    assert.same({ "headers", "event", "done" }, kinds(got, r[1]))
    assert.equal(200, got[1].status)
    assert.is_true(got[1].sse)
    assert.equal("text/event-stream", got[1].headers["content-type"])
    assert.equal(ANSWER, got[2].data)
    assert.equal("message", got[2].event)
    assert.is_nil(got[3].error)
  end)

  it("with sse true, hands a one-event SSE answer over at once: data, event, event_id, retry too", function()
    local sse = "id: 5\nretry: 300\nevent: message\ndata: " .. ANSWER .. "\n\n"
    local r = exchange(h, { fault = "status", status = 200, body = sse, content_type = "text/event-stream" }, 7, true)
    assert.equal(8, r.n)
    assert.is_number(r[1])
    assert.equal(200, r[2])
    assert.equal(ANSWER, r[3])
    assert.equal("text/event-stream", r[4])
    assert.is_string(r[5])
    assert.same({ "message", "5", 300 }, { r[6], r[7], r[8] })
    assert.equal(0, h:active())
    assert.same({}, h:poll(0))
    -- no id, no retry, no event type: nil, nil and "message" (SSE's default)
    r = exchange(h, { fault = "status", status = 200, body = "data: [1]\n\n", content_type = "text/event-stream" },
      8, true)
    assert.equal(8, r.n)
    assert.same({ 200, "[1]", "message" }, { r[2], r[3], r[6] })
    assert.is_nil(r[7])
    assert.is_nil(r[8])
    -- and a JSON answer as without it
    r = exchange(h, { fault = "status", status = 200, body = ANSWER, content_type = "application/json" }, 9, true)
    assert.equal(5, r.n)
    assert.equal(ANSWER, r[3])
  end)

  it("with sse true, returns only the id for an SSE answer of two events; poll then hands them over", function()
    local sse = "event: message\ndata: {\"n\":1}\n\nevent: message\ndata: " .. ANSWER .. "\n\n"
    local r = exchange(h, { fault = "status", status = 200, body = sse, content_type = "text/event-stream" }, 7, true)
    assert.equal(1, r.n)
    local got = run(h, r[1])
    assert.same({ "headers", "event", "event", "done" }, kinds(got, r[1]))
    assert.equal('{"n":1}', got[2].data)
    assert.equal(ANSWER, got[3].data)
    -- nor for a 4xx one
    r = exchange(h, { fault = "status", status = 404, body = "data: x\n\n", content_type = "text/event-stream" },
      8, true)
    assert.equal(1, r.n)
    got = run(h, r[1])
    assert.same({ "headers", "done" }, kinds(got, r[1]))
    assert.equal(404, got[2].status)
  end)

  it("returns only the id for a 4xx; poll then hands over its headers and done, body included", function()
    local r = exchange(h, { fault = "status", status = 404, body = ANSWER, content_type = "application/json" }, 7)
    assert.equal(1, r.n)
    local got = run(h, r[1])
    assert.same({ "headers", "done" }, kinds(got, r[1]))
    assert.equal(404, got[1].status)
    assert.equal(404, got[2].status)
    assert.equal(ANSWER, got[2].body)
  end)

  it("returns only the id for a 2xx with an empty body; poll then hands over its headers and done", function()
    local r = exchange(h, { fault = "status", status = 200, body = "", content_type = "application/json" }, 7)
    assert.equal(1, r.n)
    local got = run(h, r[1])
    assert.same({ "headers", "done" }, kinds(got, r[1]))
    assert.equal(200, got[2].status)
    assert.is_nil(got[2].error)
    assert.is_true(got[2].body == nil or got[2].body == "")
  end)

  it("returns only the id for a transport failure; poll then hands over the error", function()
    local r = pack(h:exchange({ url = "http://127.0.0.1:1/mcp", body = ping(1) }, 10000 * SLOW))
    assert.equal(1, r.n)
    local got = run(h, r[1])
    assert.equal("network", got[#got].error)
  end)

  it("returns only the id when wait_ms runs out; the transfer then ends through poll as if started", function()
    next_ping({ fault = "status", status = 200, body = ANSWER, content_type = "application/json", delay_ms = 300 })
    local r = pack(h:exchange({ url = URL, body = ping(7), headers = HEADERS }, 0))
    assert.equal(1, r.n)
    assert.equal(1, h:active())
    local got = run(h, r[1])
    assert.same({ "headers", "done" }, kinds(got, r[1]))
    assert.equal(200, got[2].status)
    assert.equal(ANSWER, got[2].body)
    assert.equal("application/json", got[1].headers["content-type"])
    assert.equal(0, h:active())
    -- and a later exchange is not confused by it
    next_ping({ fault = "status", status = 200, body = "{}", content_type = "application/json" })
    local id2, status2, body2 = h:exchange({ url = URL, body = ping(8), headers = HEADERS }, 10000 * SLOW)
    assert.is_true(id2 > r[1])
    assert.equal(200, status2)
    assert.equal("{}", body2)
  end)

  it("takes only its own items out of the queue: another transfer's stay, in order, for poll", function()
    -- A: started first; the sandbox holds its answer for a while
    next_ping({ fault = "status", status = 200, body = ANSWER, content_type = "application/json", delay_ms = 150 })
    local a = assert(h:start({ url = URL, body = ping(7), headers = HEADERS }))
    local got, applied = {}, #sandbox.stats().faults_applied
    local deadline = core.monotonic() + 10 * SLOW
    -- until the sandbox has read A (its fault applied): then B's is the only fault queued
    while #sandbox.stats().faults_applied == applied and core.monotonic() < deadline do
      for _, item in ipairs(h:poll(10)) do got[#got + 1] = item end
    end
    assert.is_true(#sandbox.stats().faults_applied > applied, "the sandbox never read A")
    -- B: its headers at once, its body a few bytes a tick (A's answer comes in between)
    next_ping({ fault = "drip", interval_ms = 40, bytes_per_tick = 4 })
    local b, status, body = h:exchange({ url = URL, body = ping(9), headers = HEADERS }, 10000 * SLOW)
    assert.equal(200, status)
    assert.equal(9, cjson.decode(body).id)
    got = run(h, a, got)
    assert.same({ "headers", "done" }, kinds(got, a))
    assert.same({}, kinds(got, b))
    assert.equal(ANSWER, got[#got].body)
    assert.same({}, h:poll(0))
    assert.equal(0, h:active())
  end)

  it("raises on a bad request or a bad wait_ms, naming it, and sends nothing", function()
    local before = sandbox.stats().requests
    assert.has_error(function() h:exchange({ body = ping(1) }, 10) end, "bad request field 'url' (string expected)")
    assert.has_error(function() h:exchange({ url = URL, method = "PUT" }, 10) end,
      "bad request field 'method' (POST, GET or DELETE expected)")
    assert.has_error(function() h:exchange({ url = URL, headers = { "A: b\r\nC: d" } }, 10) end,
      "bad request field 'headers' (item 1 is not a one-line string)")
    assert.has_error(function() h:exchange({ url = URL, timeout_ms = -1 }, 10) end,
      "bad option 'timeout_ms' (time must not be negative)")
    assert.has_error(function() h:exchange({ url = URL, body = ping(1) }, math.huge) end,
      "bad argument #2 to 'exchange' (time must be finite)")
    assert.has_error(function() h:exchange({ url = URL, body = ping(1) }, -1) end,
      "bad argument #2 to 'exchange' (time must not be negative)")
    assert.has_error(function() h:exchange({ url = URL, body = ping(1) }, 0 / 0) end,
      "bad argument #2 to 'exchange' (time is NaN)")
    assert.has_error(function() h:exchange("http://x") end)
    assert.equal(0, h:active())
    assert.equal(before, sandbox.stats().requests)
    h:close()
    assert.has_error(function() h:exchange({ url = URL }, 0) end, "favcrm.Http is closed")
  end)
end)
