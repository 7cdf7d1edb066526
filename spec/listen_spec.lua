-- The standalone GET stream of Streamable HTTP (issue 15; session.lua
-- _listen_*): opened after initialize when the client has something to
-- receive, never otherwise, tolerated as absent (405), closed by close().
-- The conformance suite's elicitation-sep1034-client-defaults runs the
-- server-request-at-idle case end to end (make conformance).
local core = require("favcrm.core")
local favcrm = require("favcrm")
local Session = require("favcrm.session")
local sandbox = require("spec.support.sandbox")

-- 2025-only machinery (sessions, the GET stream, Last-Event-ID, DELETE, the
-- faults the sandbox injects on that path): pinned to protocol = "2025-11-25",
-- and skipped, with the reason, on a sandbox that speaks 2026-07-28 only
local LEGACY = sandbox.speaks("2025") and "2025-11-25" or nil
local it25 = sandbox.speaks("2025") and it or function(name)
  pending("SKIPPED on a 2026-only sandbox (FAVCRM_SANDBOX_ERA=" .. sandbox.era .. "), 2025 machinery: " .. name)
end

local function new_session(opts)
  opts = opts or {}
  return Session.new({
    transport = core.http_new({ connect_timeout_ms = 2000 }),
    url = opts.url or sandbox.url(),
    timeout = 5, max_total_timeout = 10,
    client_info = { name = "listen-spec", version = "0" },
    on_log = opts.on_log, listen = opts.listen, protocol = LEGACY,
  })
end

local function gets(url)
  return sandbox.stats(url).by_http_method.GET or 0
end

describe("the standalone stream", function()
  before_each(function() sandbox.reset() end)

  it("is not opened when nothing would arrive there", function()
    local s = new_session()
    assert(s:request("tools/list", {}))
    s:pump(0.2)
    assert.is_false(s:listening())
    assert.equal(0, gets())
    s:close()
  end)

  it25("is opened once after initialize for an on_log callback, and closed by close()", function()
    local s = new_session({ on_log = function() end })
    assert(s:request("tools/list", {}))
    assert(s:request("tools/list", {}))
    s:pump(0.2)
    assert.is_true(s:listening())
    assert.equal(1, gets())
    local h = sandbox.stats().last_headers
    assert.equal(s.session_id, h["mcp-session-id"])
    s:close()
    assert.is_false(s:listening())
  end)

  it("is opened with listen = true and never with listen = false", function()
    local c = assert(favcrm.new({ url = sandbox.url(), listen = true, getenv = function() end }))
    assert(c:tools())
    c.session:pump(0.2)
    assert.is_true(c.session:listening())
    c:close()
    sandbox.reset()
    c = assert(favcrm.new({ url = sandbox.url(), listen = false, on_log = function() end,
      getenv = function() end }))
    assert(c:tools())
    c.session:pump(0.2)
    assert.is_false(c.session:listening())
    assert.equal(0, gets())
    c:close()
  end)

  it25("is given up on a server without one (stateless: 405), and calls go on", function()
    local url = sandbox.stateless_url()
    local s = new_session({ url = url, listen = true })
    assert(s:request("tools/list", {}))
    s:pump(0.3)
    assert.is_false(s:listening())
    assert(s:request("tools/list", {}))
    s:pump(0.3)
    assert.is_false(s:listening())
    s:close()
  end)

  it("is refused as an option of the wrong type", function()
    assert.has_error(function() favcrm.new({ url = sandbox.url(), listen = "yes" }) end)
  end)
end)
