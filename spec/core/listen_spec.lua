-- core.loopback_listen: the one-shot listener `favcrm login --oauth` waits
-- on for the browser's redirect. Real sockets over loopback (LuaSocket as
-- the browser), no sleeps: the deadline is the only wait.
local core = require("favcrm.core")
local socket = require("socket")

-- Connects and sends, without waiting for an answer (the listener is
-- not accepting yet: the kernel queues the connection).
local function queue(port, raw)
  local c = assert(socket.tcp())
  c:settimeout(5)
  assert(c:connect("127.0.0.1", port))
  assert(c:send(raw))
  return c
end

describe("favcrm.core", function()
  describe("loopback_listen()", function()
    it("binds a free port on 127.0.0.1 and reports it", function()
      local l = assert(core.loopback_listen(0))
      local port = l:port()
      assert.is_true(port > 0 and port < 65536)
      l:close()
      assert.equal(0, l:port())
    end)

    it("returns the request target of the redirect and answers it 200 with the page", function()
      local l = assert(core.loopback_listen())
      local c = queue(l:port(), "GET /callback?code=abc&state=xyz HTTP/1.1\r\nHost: x\r\n\r\n")
      local target = assert(l:accept(5000, "/callback", "<p>done"))
      assert.equal("/callback?code=abc&state=xyz", target)
      local answer = c:receive("*a")
      c:close()
      assert.truthy(answer:find("^HTTP/1.1 200 OK\r\n"))
      assert.truthy(answer:find("\r\n\r\n<p>done$"))
      l:close()
    end)

    it("answers other paths 404 and keeps waiting for the redirect", function()
      local l = assert(core.loopback_listen())
      local port = l:port()
      local c1 = queue(port, "GET /favicon.ico HTTP/1.1\r\n\r\n")
      local c2 = queue(port, "POST /callback?code=x HTTP/1.1\r\n\r\n")
      local c3 = queue(port, "GET /callbackx?code=x HTTP/1.1\r\n\r\n")
      local c4 = queue(port, "GET /callback HTTP/1.1\r\n\r\n")
      assert.equal("/callback", assert(l:accept(5000, "/callback")))
      for _, c in ipairs({ c1, c2, c3 }) do
        assert.truthy(c:receive("*a"):find("^HTTP/1.1 404"))
        c:close()
      end
      assert.truthy(c4:receive("*a"):find("^HTTP/1.1 200"))
      c4:close()
      l:close()
    end)

    it("drops a request head over 8 KiB and goes on", function()
      local l = assert(core.loopback_listen())
      local c1 = queue(l:port(), "GET /callback?code=" .. string.rep("a", 9000) .. " HTTP/1.1\r\n\r\n")
      local c2 = queue(l:port(), "GET /callback?code=ok HTTP/1.1\r\n\r\n")
      assert.equal("/callback?code=ok", assert(l:accept(5000, "/callback")))
      -- the 431 may be lost to a reset (the listener closes with bytes unread): never a 200
      local answer = c1:receive("*a") or ""
      assert.is_nil(answer:find("200 OK", 1, true))
      c1:close()
      c2:close()
      l:close()
    end)

    it("gives up at its deadline with a timeout error", function()
      local l = assert(core.loopback_listen())
      local t0 = core.monotonic()
      local target, err = l:accept(50, "/callback")
      local took = core.monotonic() - t0
      assert.is_nil(target)
      assert.equal("timeout", err.code)
      assert.truthy(err.message:find("/callback", 1, true))
      assert.is_true(took < 5, "the 50 ms deadline took " .. took .. " s")
      -- a connection that never sends its request does not hold it past the deadline
      local c = assert(socket.tcp())
      c:settimeout(5)
      assert(c:connect("127.0.0.1", l:port()))
      target, err = l:accept(50, "/callback")
      assert.is_nil(target)
      assert.equal("timeout", err.code)
      c:close()
      l:close()
    end)

    it("refuses a port in use with a network error, and misuse with an error", function()
      local l = assert(core.loopback_listen())
      local l2, err = core.loopback_listen(l:port())
      assert.is_nil(l2)
      assert.equal("network", err.code)
      assert.has_error(function() core.loopback_listen(70000) end)
      assert.has_error(function() l:accept(10, "callback") end)
      assert.has_error(function() l:accept(-1, "/callback") end)
      l:close()
      l:close() -- idempotent
      assert.has_error(function() l:accept(10, "/callback") end, "listener is closed")
    end)

  end)
end)
