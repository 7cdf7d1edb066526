-- favcrm.transport: the one contract, and every transport implements it.
local transport = require("favcrm.transport")
local core = require("favcrm.core")

describe("favcrm.transport", function()
  it("every transport has the session-level methods: curl, stdio, custom, resty through custom", function()
    local http = core.http_new({ user_agent = "spec", connect_timeout_ms = 1000 })
    assert.equal(http, transport.check(http))
    http:close()
    local stdio = require("favcrm.transport.stdio").new({ command = { "true" } })
    assert.equal(stdio, transport.check(stdio))
    stdio:close()
    local user = { request = function() return nil, "no network here" end }
    local custom = transport.wrap(user, {})
    assert.not_equal(user, custom)
    transport.check(custom)
    custom:close()
    local resty = require("favcrm.resty").new({ socket = function() end, sleep = function() end })
    transport.check(resty, "request")
    transport.check(transport.wrap(resty, {}))
  end)

  it("uses a session-level transport as it is", function()
    local t = { start = function() end, poll = function() return {} end, cancel = function() end,
      close = function() end }
    assert.equal(t, transport.wrap(t, {}))
  end)

  it("raises naming what is missing", function()
    assert.has_error(function() transport.check({ start = function() end }) end,
      "favcrm.transport: not a session-level transport: it has no poll() method")
    assert.has_error(function() transport.check(42, "request") end,
      "favcrm.transport: not a request-level transport: it is a number")
    assert.has_error(function() transport.wrap({}, {}) end,
      "favcrm.new: option 'transport' has no request(req) method")
  end)
end)
