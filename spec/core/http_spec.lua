-- favcrm.core http_new(): the C HTTP object (csrc/http.c) on its own,
-- against the sandbox over loopback (FAVCRM_SANDBOX_URL).
local core = require("favcrm.core")

local URL = assert(os.getenv("FAVCRM_SANDBOX_URL"), "run through spec/support/run.sh")

local PING = '{"jsonrpc":"2.0","id":1,"method":"ping"}'
local HEADERS = { "Content-Type: application/json", "Accept: application/json, text/event-stream" }

-- Polls h until transfer id is done (at most 10 s); returns its items by type.
local function run(h, id)
  local got, deadline = { headers = {}, event = {} }, core.monotonic() + 10
  repeat
    for _, item in ipairs(h:poll(1000)) do
      assert.equal(id, item.id)
      if item.type == "done" then got.done = item
      else table.insert(got[item.type], item) end
    end
  until got.done or core.monotonic() > deadline
  assert.is_table(got.done, "no done item within 10 s")
  return got
end

describe("favcrm.core http_new()", function()
  local h
  before_each(function() h = core.http_new() end)
  after_each(function() h:close() end)

  describe("request", function()
    it("POSTs a body and hands back headers then done", function()
      local id = assert(h:start({ url = URL, body = PING, headers = HEADERS }))
      assert.equal(1, h:active())
      local got = run(h, id)
      assert.equal(1, #got.headers)
      assert.is_number(got.headers[1].status)
      assert.is_table(got.headers[1].headers)
      assert.is_nil(got.done.error)
      assert.equal(got.headers[1].status, got.done.status)
      assert.equal(0, h:active())
    end)

    it("poll(ms, true) hands a transfer's headers, last event and end over merged, the same parts", function()
      -- the parts of one transfer, as {kind = fields}, from merged or plain items
      local function parts(merged)
        local id = assert(h:start({ url = URL, body = PING, headers = HEADERS }))
        local got, deadline = { events = {} }, core.monotonic() + 10
        repeat
          for _, item in ipairs(h:poll(1000, merged)) do
            assert.equal(id, item.id)
            if item.type == "headers" then
              assert.is_nil(got.headers, "a second headers part")
              got.headers, got.status = item.headers, item.status
            else
              if item.headers ~= nil then
                assert.is_true(merged, "a plain " .. item.type .. " item with headers")
                assert.is_nil(got.headers, "a second headers part")
                got.headers, got.status = item.headers, item.status
              end
              if item.type == "event" or (item.type == "done" and item.data ~= nil) then
                assert.is_true(item.type == "event" or merged, "a plain done item with data")
                got.events[#got.events + 1] = { data = item.data, event = item.event }
              end
              if item.type == "done" then
                got.done = { status = item.status, sse = item.sse, body = item.body, error = item.error }
              end
            end
          end
        until got.done or core.monotonic() > deadline
        assert.is_table(got.done, "no done item within 10 s")
        got.headers.date = nil -- the one part that may differ between two answers
        return got
      end
      local plain, merged = parts(false), parts(true)
      assert.is_table(merged.headers)
      assert.same(plain.headers, merged.headers)
      assert.equal(plain.status, merged.status)
      assert.same(plain.done, merged.done)
      assert.equal(#plain.events, #merged.events)
      for i, e in ipairs(plain.events) do
        assert.equal(e.event, merged.events[i].event)
        -- the same answer but for the id the sandbox may have put in an event's data
        assert.equal(#e.data, #merged.events[i].data)
      end
    end)

    it("ends a transfer to a closed port with error 'network'", function()
      local id = assert(h:start({ url = "http://127.0.0.1:1/mcp", body = PING }))
      local got = run(h, id)
      assert.equal("network", got.done.error)
      assert.is_string(got.done.message)
    end)

    it("ends a transfer to a malformed URL with error 'invalid_arguments'", function()
      local id = assert(h:start({ url = "http://[::1/mcp", body = PING }))
      local got = run(h, id)
      assert.equal("invalid_arguments", got.done.error)
    end)

    it("cancels a transfer silently and says false for an unknown id", function()
      local id = assert(h:start({ url = URL, body = PING, headers = HEADERS }))
      assert.is_true(h:cancel(id))
      assert.is_false(h:cancel(id))
      assert.same({}, h:poll(0))
      assert.equal(0, h:active())
    end)

    it("raises on a bad request", function()
      assert.has_error(function() h:start({ body = PING }) end, "bad request field 'url' (string expected)")
      assert.has_error(function() h:start({ url = URL, method = "PUT" }) end,
        "bad request field 'method' (POST, GET or DELETE expected)")
      assert.has_error(function() h:start({ url = URL, headers = { "A: b\r\nC: d" } }) end,
        "bad request field 'headers' (item 1 is not a one-line string or favcrm.secret)")
    end)
  end)

  describe("request header lists", function()
    it("still checks every line while a kept list holds the lines of an earlier request", function()
      run(h, assert(h:start({ url = URL, body = PING, headers = HEADERS, extra_headers = { "X-A: 1" } })))
      -- the same lines but for one: not that list
      assert.has_error(function()
        h:start({ url = URL, body = PING, headers = HEADERS, extra_headers = { "X-A: 1\r\nX-B: 2" } })
      end, "bad request field 'extra_headers' (item 1 is not a one-line string or favcrm.secret)")
      -- an item that is not a line, where the kept list has no line there
      run(h, assert(h:start({ url = URL, body = PING, headers = HEADERS })))
      assert.has_error(function()
        h:start({ url = URL, body = PING, headers = HEADERS, extra_headers = { true } })
      end, "bad request field 'extra_headers' (item 1 is not a one-line string or favcrm.secret)")
      assert.has_error(function()
        h:start({ url = URL, body = PING, headers = HEADERS, extra_headers = { {} } })
      end, "bad request field 'extra_headers' (item 1 is not a one-line string or favcrm.secret)")
      -- not a table, where the kept list has no lines of that field
      run(h, assert(h:start({ url = URL, body = PING, headers = HEADERS })))
      assert.has_error(function()
        h:start({ url = URL, body = PING, headers = HEADERS, extra_headers = "X-A: 1" })
      end, "bad request field 'extra_headers' (table expected)")
      assert.equal(0, h:active())
      -- and the kept list still serves
      assert.is_nil(run(h, assert(h:start({ url = URL, body = PING, headers = HEADERS }))).done.error)
    end)

    it("takes a favcrm.secret as a line (sent from its bytes), and refuses a bad or closed one", function()
      local accept = "Accept: application/json, text/event-stream"
      -- a call of an authenticated tool without credentials is refused
      -- (401); with the account's key in a secret Authorization line it is
      -- answered
      local sandbox = require("spec.support.sandbox")
      local hs = { "Content-Type: application/json", "Accept: application/json, text/event-stream" }
      local call
      if sandbox.speaks("2025") then
        local init = '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25",'
          .. '"capabilities":{},"clientInfo":{"name":"spec","version":"1"}}}'
        local got = run(h, assert(h:start({ url = URL, body = init, headers = hs })))
        local sid = got.headers[1].headers["mcp-session-id"]
        assert.is_string(sid)
        hs[#hs + 1] = "Mcp-Session-Id: " .. sid
        hs[#hs + 1] = "MCP-Protocol-Version: 2025-11-25"
        call = '{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"list_services","arguments":{}}}'
      else -- 2026-07-28: no session; the request carries its envelope
        for _, l in ipairs({ "MCP-Protocol-Version: 2026-07-28", "Mcp-Method: tools/call",
          "Mcp-Name: list_services" }) do
          hs[#hs + 1] = l
        end
        call = '{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"list_services","arguments":{},'
          .. '"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28",'
          .. '"io.modelcontextprotocol/clientInfo":{"name":"spec","version":"1"},'
          .. '"io.modelcontextprotocol/clientCapabilities":{}}}}'
      end
      assert.equal(401, run(h, assert(h:start({ url = URL, body = call, headers = hs }))).done.status)
      local text = "Authorization: Bearer " .. sandbox.account()
      local line = core.secret(text)
      for _ = 1, 2 do -- (a list with a secret line is never kept: built again)
        local got = run(h, assert(h:start({ url = URL, body = call, headers = hs, extra_headers = { line } })))
        assert.equal(200, got.done.status)
      end
      assert.equal(text, line:reveal()) -- left as it was
      assert.has_error(function()
        h:start({ url = URL, body = PING, headers = { accept, core.secret("X-A: 1\r\nX-B: 2") } })
      end, "bad request field 'headers' (item 2 is not a one-line string or favcrm.secret)")
      line:close()
      assert.has_error(function()
        h:start({ url = URL, body = PING, headers = { accept }, extra_headers = { line } })
      end, "bad request field 'extra_headers' (item 1 is not a one-line string or favcrm.secret)")
      assert.equal(0, h:active())
    end)
  end)

  describe("close()", function()
    it("is idempotent, frees transfers in flight, and a closed object raises when used", function()
      assert(h:start({ url = URL, body = PING, headers = HEADERS }))
      assert.equal("favcrm.Http (open)", tostring(h))
      h:close()
      h:close()
      assert.equal("favcrm.Http (closed)", tostring(h))
      assert.has_error(function() h:poll(0) end, "favcrm.Http is closed")
      assert.has_error(function() h:start({ url = URL }) end, "favcrm.Http is closed")
    end)

    it("is __gc and __close too", function()
      local mt = getmetatable(h)
      for _, mm in ipairs({ "__gc", "__close" }) do
        local o = core.http_new()
        mt[mm](o)
        mt[mm](o)
        assert.equal("favcrm.Http (closed)", tostring(o))
      end
    end)
  end)

  describe("times", function()
    it("poll() refuses a NaN, infinite or negative wait, naming the argument", function()
      assert.has_error(function() h:poll(math.huge) end, "bad argument #1 to 'poll' (time must be finite)")
      assert.has_error(function() h:poll(-math.huge) end, "bad argument #1 to 'poll' (time must be finite)")
      assert.has_error(function() h:poll(-1) end, "bad argument #1 to 'poll' (time must not be negative)")
      assert.has_error(function() h:poll(0 / 0) end, "bad argument #1 to 'poll' (time is NaN)")
    end)

    it("poll() clamps a huge finite wait and still returns as soon as something happens", function()
      local id = assert(h:start({ url = URL, body = PING, headers = HEADERS }))
      local t0 = core.monotonic()
      local items = h:poll(1e300)
      assert.is_true(core.monotonic() - t0 < 10)
      assert.is_true(#items >= 1)
      assert.equal(id, items[1].id)
      if items[#items].type ~= "done" then run(h, id) end
    end)

    it("http_new() refuses a NaN, infinite or negative connect_timeout_ms and clamps a huge one", function()
      assert.has_error(function() core.http_new({ connect_timeout_ms = math.huge }) end,
        "bad option 'connect_timeout_ms' (time must be finite)")
      assert.has_error(function() core.http_new({ connect_timeout_ms = -5 }) end,
        "bad option 'connect_timeout_ms' (time must not be negative)")
      assert.has_error(function() core.http_new({ connect_timeout_ms = 0 / 0 }) end,
        "bad option 'connect_timeout_ms' (time is NaN)")
      assert.has_error(function() core.http_new({ connect_timeout_ms = "soon" }) end,
        "bad option 'connect_timeout_ms' (number expected, got string)")
      local big = core.http_new({ connect_timeout_ms = 1e300 })
      local id = assert(big:start({ url = URL, body = PING, headers = HEADERS }))
      assert.is_nil(run(big, id).done.error)
      big:close()
    end)

    it("start() refuses a bad timeout_ms and clamps a huge one", function()
      assert.has_error(function() h:start({ url = URL, timeout_ms = math.huge }) end,
        "bad option 'timeout_ms' (time must be finite)")
      assert.has_error(function() h:start({ url = URL, timeout_ms = 0 / 0 }) end,
        "bad option 'timeout_ms' (time is NaN)")
      assert.has_error(function() h:start({ url = URL, timeout_ms = -1 }) end,
        "bad option 'timeout_ms' (time must not be negative)")
      local id = assert(h:start({ url = URL, body = PING, headers = HEADERS, timeout_ms = 1e300 }))
      assert.is_nil(run(h, id).done.error)
    end)

    it("sends through a proxy the environment names, and straight without one", function()
      -- the environment is the process's: a child each way
      local lua = os.getenv("FAVCRM_LUA_BIN") or "lua5.4"
      local script = [[
        local core = require("favcrm.core")
        local h = core.http_new({ user_agent = "spec" })
        local items, done = {}, nil
        local id = assert(h:start({ url = os.getenv("SPEC_URL"), body = os.getenv("SPEC_BODY"),
          headers = { "Content-Type: application/json" } }))
        repeat
          for _, it in ipairs(h:poll(1000)) do if it.id == id and it.type == "done" then done = it end end
        until done
        io.write(done.error or "ok")
      ]]
      local function q(v) return "'" .. v:gsub("'", "'\\''") .. "'" end
      local function child(env)
        local p = assert(io.popen(env .. " SPEC_URL=" .. q(URL) .. " SPEC_BODY=" .. q(PING) .. " " .. q(lua)
          .. " -e " .. q(script)))
        local out = p:read("*a")
        p:close()
        return out
      end
      local closed = "http://127.0.0.1:1" -- a proxy that is not there
      assert.equal("ok", child("env -u http_proxy -u HTTP_PROXY -u all_proxy -u ALL_PROXY -u no_proxy -u NO_PROXY"))
      assert.equal("network", child("env -u no_proxy -u NO_PROXY http_proxy=" .. closed))
      assert.equal("network", child("env -u no_proxy -u NO_PROXY -u http_proxy ALL_PROXY=" .. closed))
    end)

    it("ends a transfer with no answer within timeout_ms with error 'timeout', and fds() waits no longer", function()
      -- a listener that never accepts: the kernel takes the connection and
      -- the request, and no answer ever comes
      local l = assert(core.loopback_listen(0))
      local url = "http://127.0.0.1:" .. l:port() .. "/mcp"
      local id = assert(h:start({ url = url, body = PING, headers = HEADERS, timeout_ms = 300 }))
      local other = assert(h:start({ url = url, body = PING, headers = HEADERS, timeout_ms = 600000 }))
      local _, wait = h:fds()
      assert.is_true(wait >= 0 and wait <= 301, "fds() timer " .. tostring(wait))
      local items = h:poll(600000) -- returns when the first one times out
      assert.equal(1, #items)
      assert.equal(id, items[1].id)
      assert.equal("done", items[1].type)
      assert.equal("timeout", items[1].error)
      assert.equal("Timeout was reached", items[1].message)
      assert.equal(1, h:active())
      assert.is_true(h:cancel(other))
      l:close()
    end)

    it("refuses a size option that is not a finite number >= 0", function()
      assert.has_error(function() core.http_new({ max_event_bytes = math.huge }) end,
        "bad option 'max_event_bytes' (must be a finite number >= 0)")
      assert.has_error(function() core.http_new({ max_response_bytes = 0 / 0 }) end,
        "bad option 'max_response_bytes' (must be a finite number >= 0)")
      assert.has_error(function() core.http_new({ max_connections = -1 }) end,
        "bad option 'max_connections' (must be a finite number >= 0)")
      core.http_new({ max_response_bytes = 1e300 }):close() -- clamped
    end)
  end)

  it("uses core.MAX_EVENT_BYTES (8 MiB) as the one max_event_bytes default", function()
    assert.equal(8 * 1024 * 1024, core.MAX_EVENT_BYTES)
  end)
end)
