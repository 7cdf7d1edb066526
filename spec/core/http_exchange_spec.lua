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

  describe("with rpc_id (the JSON-RPC mode)", function()
    -- Sends ping n through h:exchange in the JSON-RPC mode for rpc_id
    -- (default n), the sandbox answering with fault f.
    local function rpc(f, n, opts)
      opts = opts or {}
      next_ping(f)
      return pack(h:exchange({ url = URL, body = ping(n), headers = HEADERS }, 10000 * SLOW, true, opts.id or n,
        opts.date, opts.modern))
    end
    local function answer(body, ct) return { fault = "status", status = 200, body = body, content_type = ct } end
    local function json(body) return answer(body, "application/json") end
    local function sse(body) return answer(body, "text/event-stream") end

    it("hands over the plain result of our request decoded: id, result, date; nothing else built or queued", function()
      local r = rpc(json(ANSWER), 7)
      assert.equal(3, r.n)
      assert.is_number(r[1])
      assert.same({ spec = "exchange" }, r[2])
      assert.matches("^%a%a%a, %d%d %a%a%a %d%d%d%d %d%d:%d%d:%d%d GMT$", r[3])
      assert.same({}, h:poll(0))
      assert.equal(0, h:active())
      -- the Date only when it is not the one passed in (the next second's is)
      local r2 = rpc(answer(ANSWER, "Application/JSON; charset=utf-8"), 7, { date = r[3] })
      assert.same({ spec = "exchange" }, r2[2])
      if r2.n == 3 then assert.is_true(r2[3] ~= r[3], "the Date passed in came back") else assert.equal(2, r2.n) end
      local r3 = rpc(json(ANSWER), 7, { date = "Thu, 01 Jan 1970 00:00:00 GMT" })
      assert.equal(3, r3.n)
      assert.matches("GMT$", r3[3])
      -- and a one-event SSE answer, its stream's event id and retry dropped
      local r4 = rpc(sse("id: 5\nretry: 300\nevent: message\ndata: " .. ANSWER .. "\n\n"), 7)
      assert.equal(3, r4.n)
      assert.same({ spec = "exchange" }, r4[2])
      local r5 = rpc(sse("data: " .. ANSWER .. "\n\n"), 7)
      assert.same({ spec = "exchange" }, r5[2])
      assert.same({}, h:poll(0))
      assert.equal(0, h:active())
    end)

    it("hands any other answer over as without it: another id, an error, a notification, not JSON", function()
      local others = {
        json('{"jsonrpc":"2.0","id":8,"result":{}}'),
        json('{"jsonrpc":"2.0","id":"7","result":{}}'),
        json('{"jsonrpc":"2.0","id":7,"error":{"code":-32602,"message":"no such tool"}}'),
        json('{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"x"}}'),
        json('{"id":7,"result":{}}'),
        json('{"jsonrpc":"2.0","id":7,"result":"text"}'),
        json('{"jsonrpc":"2.0","id":7,"result":{"cut'),
        { fault = "status", status = 200, body = ANSWER, content_type = "text/plain" },
        { fault = "status", status = 200, body = ANSWER, content_type = "text/json" },
      }
      for i, f in ipairs(others) do
        local r = rpc(f, 7)
        assert.equal(5, r.n, "answer " .. i)
        assert.equal(200, r[2])
        assert.equal(f.body, r[3])
        assert.equal(f.content_type, r[4])
        assert.is_string(r[5])
      end
      -- an event of another type; a notification as the one event
      local r = rpc(sse("event: other\ndata: " .. ANSWER .. "\n\n"), 7)
      assert.equal(8, r.n)
      assert.same({ ANSWER, "other" }, { r[3], r[6] })
      local note = '{"jsonrpc":"2.0","method":"notifications/progress","params":{}}'
      r = rpc(sse("id: 3\nevent: message\ndata: " .. note .. "\n\n"), 7)
      assert.equal(8, r.n)
      assert.same({ note, "message", "3" }, { r[3], r[6], r[7] })
      -- a notification first, then the answer: a stream of two events, for poll
      r = rpc(sse("event: message\ndata: " .. note .. "\n\nevent: message\ndata: " .. ANSWER .. "\n\n"), 7)
      assert.equal(1, r.n)
      local got = run(h, r[1])
      assert.same({ "headers", "event", "event", "done" }, kinds(got, r[1]))
      assert.equal(ANSWER, got[3].data)
      -- a 4xx carrying our id: for poll, as ever
      r = rpc({ fault = "status", status = 400, body = ANSWER, content_type = "application/json" }, 7)
      assert.equal(1, r.n)
      got = run(h, r[1])
      assert.equal(ANSWER, got[#got].body)
      assert.same({}, h:poll(0))
    end)

    it("takes input_required (2026) only when not modern", function()
      local ir = '{"jsonrpc":"2.0","id":7,"result":{"resultType":"input_required","inputRequests":{},'
        .. '"requestState":"s"}}'
      local r = rpc(json(ir), 7, { modern = true })
      assert.equal(5, r.n)
      assert.equal(ir, r[3])
      local done = '{"jsonrpc":"2.0","id":7,"result":{"resultType":"complete","content":[]}}'
      r = rpc(json(done), 7, { modern = true })
      assert.equal(3, r.n)
      assert.same({ resultType = "complete", content = {} }, r[2])
      r = rpc(json(ir), 7)
      assert.equal(3, r.n)
      assert.equal("input_required", r[2].resultType)
    end)

    it("leaves what the decoder does not take (past its limits) to the caller, as without it", function()
      local deep = '{"jsonrpc":"2.0","id":7,"result":{"a":' .. string.rep("[", 80) .. string.rep("]", 80) .. "}}"
      local r = rpc(json(deep), 7)
      assert.equal(5, r.n)
      assert.equal(deep, r[3])
      assert.equal(7, cjson.decode(r[3]).id)
      local items = {}
      for i = 1, 1500 do items[i] = i end
      local wide = '{"jsonrpc":"2.0","id":7,"result":{"a":' .. cjson.encode(items) .. "}}"
      r = rpc(json(wide), 7)
      assert.equal(5, r.n)
      assert.equal(wide, r[3])
      -- a body over max_response_bytes: only the id; poll reports it
      local small = core.http_new({ max_response_bytes = 64 })
      next_ping(json(wide))
      local id, st = small:exchange({ url = URL, body = ping(7), headers = HEADERS }, 10000 * SLOW, true, 7)
      assert.is_number(id)
      assert.is_nil(st)
      local got = run(small, id)
      assert.equal("too_large", got[#got].error)
      small:close()
    end)
  end)

  it("raises on a bad request or a bad wait_ms, naming it, and sends nothing", function()
    local before = sandbox.stats().requests
    assert.has_error(function() h:exchange({ body = ping(1) }, 10) end, "bad request field 'url' (string expected)")
    assert.has_error(function() h:exchange({ url = URL, method = "PUT" }, 10) end,
      "bad request field 'method' (POST, GET or DELETE expected)")
    assert.has_error(function() h:exchange({ url = URL, headers = { "A: b\r\nC: d" } }, 10) end,
      "bad request field 'headers' (item 1 is not a one-line string or favcrm.secret)")
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
