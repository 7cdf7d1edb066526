-- favcrm.new{transport = t}: a transport written in Lua carries the bytes,
-- the session, SSE parsing and validation stay ours. favcrm.resty's HTTP/1.1
-- code runs here on LuaSocket dressed as a cosocket, against the sandbox.
local favcrm = require("favcrm")
local resty = require("favcrm.resty")
local shim = require("spec.support.luasocket_cosocket")
local sandbox = require("spec.support.sandbox")

local function client(opts)
  opts = opts or {}
  opts.url = opts.url or sandbox.url()
  opts.transport = resty.new({ socket = shim.new, sleep = shim.sleep })
  return favcrm.new(opts)
end

describe("favcrm.resty over a Lua socket", function()
  it("calls list_services with the key (event-stream answers, chunked bodies)", function()
    local key = sandbox.account()
    local c = client({ api_key = key })
    local data, result = c:call("list_services")
    assert.same({}, data)
    assert.is_table(result.structuredContent)
    assert.is_true(sandbox.stats().last_headers.authorization_present)
    c:close()
  end)

  it("reads plain JSON answers with Content-Length", function()
    local c = client({ url = sandbox.json_url() })
    assert.equal("hi", (assert(c:call("sandbox_echo", { value = "hi" }))))
    c:close()
  end)

  it("carries progress notifications and answers the server's requests mid-stream", function()
    local progress = {}
    local c = client({
      on_progress = function(p) progress[#progress + 1] = p.progress end,
      on_elicit = function() return { action = "accept", content = { confirm = true } } end,
    })
    assert.equal(2, (assert(c:call("sandbox_progress", { steps = 2, delay_ms = 5 }))).steps)
    assert.same({ 1, 2 }, progress)
    local e = assert(c:call("sandbox_elicit", { message = "ok?" }))
    assert.equal("Ada", e.content.name)
    c:close()
  end)

  it("maps 401 and connection failures to their codes", function()
    local c = client({ api_key = "fav_mcp_unknown000000000000000000000000" })
    local _, err = c:call("list_services")
    assert.equal("unauthorized", err.code)
    c:close()
    local c2 = client({ url = "http://127.0.0.1:9/mcp" })
    local _, err2 = c2:call("list_services")
    assert.equal("network", err2.code)
    assert.matches("connect to 127.0.0.1:9 failed", err2.message, 1, true)
    c2:close()
  end)

  it("rejects a transport without request()", function()
    assert.has_error(function() favcrm.new({ transport = {} }) end,
      "favcrm.new: option 'transport' has no request(req) method")
  end)
end)
