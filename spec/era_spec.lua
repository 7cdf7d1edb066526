-- MCP 2026-07-28 as a client (issue 16; lua/favcrm/era.lua and the era gate
-- of lua/favcrm/session.lua): negotiation and fallback, the per-origin
-- cache, the request headers, x-mcp-header checks, multi-round-trip
-- requests and their bound, the modern error codes, the per-request log
-- level, ttlMs, subscriptions/listen, stdio. The server is
-- spec/support/era_server.mjs (node:http, scripted per rule); the official
-- v2 server is exercised by the whole suite with SANDBOX_ERA=2026.
local favcrm = require("favcrm")
local era = require("favcrm.era")
local core = require("favcrm.core")
local cjson = require("cjson")
local http = require("socket.http")
local ltn12 = require("ltn12")

local proc, base

local function control(path, body)
  local out = {}
  local get = path == "/_era/log"
  local payload = body and cjson.encode(body) or "{}"
  local _, status = http.request({
    url = base .. path, method = get and "GET" or "POST",
    headers = not get and { ["content-type"] = "application/json", ["content-length"] = tostring(#payload) } or nil,
    source = not get and ltn12.source.string(payload) or nil,
    sink = ltn12.sink.table(out),
  })
  assert(status == 200, "era server control " .. path .. " answered " .. tostring(status))
  return cjson.decode(table.concat(out))
end

-- the requests the server saw, optionally only those of one method
local function seen(method)
  local out = {}
  for _, r in ipairs(control("/_era/log")) do
    if method == nil or r.method == method then out[#out + 1] = r end
  end
  return out
end

local function methods()
  local out = {}
  for _, r in ipairs(seen()) do out[#out + 1] = r.method or r.http end
  return out
end

local function client(path, opts)
  opts = opts or {}
  opts.url = base .. path
  opts.getenv = function() return nil end
  opts.timeout = opts.timeout or 10
  return assert(favcrm.new(opts))
end

setup(function()
  proc = assert(io.popen("exec node spec/support/era_server.mjs --lifetime 600", "r"))
  base = assert(proc:read("*l"), "the era server did not start")
end)

teardown(function()
  pcall(control, "/_era/exit")
  if proc then proc:close() end
end)

before_each(function()
  control("/_era/reset")
  era.forget_all()
end)

describe("the protocol option", function()
  it("accepts auto and the two revisions, and refuses anything else naming the option", function()
    for _, v in ipairs({ "auto", "2026-07-28", "2025-11-25" }) do
      assert(favcrm.new({ url = "http://127.0.0.1:9/mcp", protocol = v, getenv = function() end })):close()
    end
    local ok, err = pcall(favcrm.new, { url = "http://127.0.0.1:9/mcp", protocol = "2024-11-05" })
    assert.is_false(ok)
    assert.matches("option 'protocol'", err)
    ok, err = pcall(favcrm.new, { url = "http://127.0.0.1:9/mcp", protocol = 2026 })
    assert.is_false(ok)
    assert.matches("option 'protocol'", err)
  end)
end)

describe("version negotiation over HTTP", function()
  it("speaks 2026-07-28 to a modern server: server/discover, then stateless requests", function()
    local c = client("/modern")
    assert(c:tools())
    assert.same({ "server/discover", "tools/list" }, methods())
    local r = seen("tools/list")[1]
    local meta = r.params._meta
    assert.equal("2026-07-28", meta["io.modelcontextprotocol/protocolVersion"])
    assert.equal("favcrm-lua", meta["io.modelcontextprotocol/clientInfo"].name)
    assert.is_table(meta["io.modelcontextprotocol/clientCapabilities"])
    assert.equal("2026-07-28", r.headers["mcp-protocol-version"])
    assert.equal("tools/list", r.headers["mcp-method"])
    assert.is_nil(r.headers["mcp-session-id"])
    assert.equal("modern", c.session.era)
    assert.equal("era-server", c.session.server_info.name)
    c:close()
    -- no DELETE, no GET stream: nothing but the two POSTs
    assert.equal(2, #seen())
  end)

  it("falls back to initialize when the probe meets a 400 that is no modern error", function()
    local c = client("/legacy")
    assert(c:tools())
    assert.same({ "server/discover", "initialize", "notifications/initialized", "tools/list" }, methods())
    assert.equal("legacy", c.session.era)
    assert.equal("2025-11-25", c.session.protocol_version)
    assert.is_nil(seen("tools/list")[1].params and seen("tools/list")[1].params._meta)
    c:close()
  end)

  it("falls back to initialize when -32022 lists only 2025 versions", function()
    local c = client("/only2025")
    assert(c:tools())
    assert.same({ "server/discover", "initialize", "notifications/initialized", "tools/list" }, methods())
    assert.equal("legacy", c.session.era)
    c:close()
  end)

  it("pinned, sends no probe", function()
    local c = client("/legacy", { protocol = "2025-11-25" })
    assert(c:tools())
    assert.same({ "initialize", "notifications/initialized", "tools/list" }, methods())
    c:close()
    control("/_era/reset")
    c = client("/modern", { protocol = "2026-07-28" })
    assert(c:tools())
    assert.same({ "tools/list" }, methods())
    c:close()
  end)

  it("pinned to 2026-07-28, fails against a legacy server with the server's reason", function()
    local c = client("/legacy", { protocol = "2026-07-28" })
    local list, err = c:tools()
    assert.is_nil(list)
    assert.equal("http", err.code)
    assert.equal(400, err.status)
    assert.same({ "tools/list" }, methods())
    c:close()
  end)

  it("remembers the outcome per origin: the next client sends no probe", function()
    local c = client("/modern")
    assert(c:tools())
    c:close()
    local c2 = client("/modern")
    assert(c2:tools())
    assert.equal(1, #seen("server/discover"))
    assert.equal(2, #seen("tools/list"))
    c2:close()
  end)

  it("forgets a remembered outcome after CACHE_TTL: the next client probes again", function()
    local clock, t = era.clock, 1000
    era.clock = function() return t end
    local ok, err = pcall(function()
      local c = client("/modern")
      assert(c:tools())
      c:close()
      t = t + era.CACHE_TTL - 1
      local c2 = client("/modern")
      assert(c2:tools())
      c2:close()
      assert.equal(1, #seen("server/discover"))
      t = t + 2
      local c3 = client("/modern")
      assert(c3:tools())
      c3:close()
      assert.equal(2, #seen("server/discover"))
    end)
    era.clock = clock
    assert(ok, err)
  end)

  it("negotiates again when a remembered modern server turned legacy, and the call goes through", function()
    local c = client("/flip")
    assert(c:tools())
    c:close()
    control("/_era/flip")
    local c2 = client("/flip")
    local payload = assert(c2:call("echo", {}, { validate = false }))
    assert.is_true(payload.legacy)
    assert.equal("legacy", c2.session.era)
    assert.equal(2, #seen("server/discover"))
    assert.equal(1, #seen("initialize"))
    c2:close()
  end)
end)

describe("the request headers", function()
  it("mirror Mcp-Name and the x-mcp-header arguments, base64 when not header-safe, none for null", function()
    local c = client("/modern")
    local p = assert(c:call("echo", { region = "us-west1", n = 42, text = "not mirrored" }))
    assert.equal("tools/call", p.headers["mcp-method"])
    assert.equal("echo", p.headers["mcp-name"])
    assert.equal("us-west1", p.headers["mcp-param-region"])
    assert.equal("42", p.headers["mcp-param-n"])
    assert.is_nil(p.headers["mcp-param-text"])
    p = assert(c:call("echo", { region = " Hello, \228\184\150 " }))
    assert.equal("=?base64?" .. era.base64(" Hello, \228\184\150 ") .. "?=", p.headers["mcp-param-region"])
    p = assert(c:call("echo", { region = cjson.null }, { validate = false }))
    assert.is_nil(p.headers["mcp-param-region"])
    c:close()
  end)

  it("after a -32020 HeaderMismatch, list the tools again and send the call once more", function()
    local c = client("/modern")
    assert(c:tools())
    control("/_era/rename", { header = "Zone" }) -- the tool's schema changes on the server
    local p = assert(c:call("echo", { region = "eu" }))
    assert.equal("eu", p.headers["mcp-param-zone"])
    assert.equal(2, #seen("tools/list"))
    assert.equal(2, #seen("tools/call"))
    c:close()
  end)

  it("encode values as the revision's table says", function()
    assert.equal("us-west1", era.header_value("us-west1"))
    assert.equal("us west 1", era.header_value("us west 1"))
    assert.equal("=?base64?SGVsbG8sIOS4lueVjA==?=", era.header_value("Hello, \228\184\150\231\149\140"))
    assert.equal("=?base64?IHBhZGRlZCA=?=", era.header_value(" padded "))
    assert.equal("=?base64?bGluZTEKbGluZTI=?=", era.header_value("line1\nline2"))
    assert.equal("=?base64?PT9iYXNlNjQ/bGl0ZXJhbD89?=", era.header_value("=?base64?literal?="))
    assert.equal("true", era.header_value(true))
    assert.equal("-7", era.header_value(-7))
    assert.is_nil(era.header_value(1.5))
  end)

  it("leave out the tools whose x-mcp-header annotations break the rules", function()
    local c = client("/modern")
    local names = {}
    for _, t in ipairs(assert(c:tools())) do names[#names + 1] = t.name end
    table.sort(names)
    assert.same({ "ask", "ask_forever", "echo", "flaky_read", "flaky_write", "needs_sampling" }, names)
    assert.matches("number", c.rejected_tools.bad_header)
    assert.matches("reachable", c.rejected_tools.nested_in_items)
    c:close()
  end)

  it("reject each kind of bad annotation", function()
    local function why(props)
      local _, reason = era.tool_headers({ inputSchema = { type = "object", properties = props } })
      return reason
    end
    assert.is_nil(why({ a = { type = "string", ["x-mcp-header"] = "A" } }))
    assert.matches("empty", why({ a = { type = "string", ["x-mcp-header"] = "" } }))
    assert.matches("token", why({ a = { type = "string", ["x-mcp-header"] = "My Region" } }))
    assert.matches("token", why({ a = { type = "string", ["x-mcp-header"] = "R\195\169gion" } }))
    assert.matches("twice", why({ a = { type = "string", ["x-mcp-header"] = "A" },
      b = { type = "string", ["x-mcp-header"] = "a" } }))
    assert.matches("object", why({ a = { type = "object", ["x-mcp-header"] = "A" } }))
  end)
end)

describe("multi-round-trip requests", function()
  it("answer the server's input requests with the callbacks and retry with a new id and the state", function()
    local asked = 0
    local c = client("/modern", { on_elicit = function(p)
      asked = asked + 1
      assert.equal("Confirm?", p.message)
      return { action = "accept", content = {} }
    end })
    local p = assert(c:call("ask", {}))
    assert.equal(1, asked)
    local calls = seen("tools/call")
    assert.equal(2, #calls)
    assert.are_not.equal(calls[1].id, calls[2].id)
    assert.equal(string.format("state-%d", calls[1].id), p.requestState)
    assert.equal("accept", p.inputResponses.confirm.action)
    assert.is_true(p.inputResponses.confirm.content.ok) -- the schema's default
    assert.is_nil(calls[1].params.requestState)
    -- the capability was declared
    assert.is_table(calls[1].params._meta["io.modelcontextprotocol/clientCapabilities"].elicitation)
    c:close()
  end)

  it("are bounded: a server that always wants more input ends the call", function()
    local c = client("/modern", { on_elicit = function() return { action = "accept", content = {} } end })
    local p, err = c:call("ask_forever", {})
    assert.is_nil(p)
    assert.equal("protocol", err.code)
    assert.matches("rounds", err.message)
    assert.equal(era.MAX_MRTR_ROUNDS + 1, #seen("tools/call"))
    c:close()
  end)

  it("spend from the call's one deadline: slow answers end it with timeout before the round limit", function()
    local c = client("/modern", { on_elicit = function()
      local t0 = core.monotonic()
      repeat until core.monotonic() - t0 > 0.1 -- a user who takes a while
      return { action = "accept", content = {} }
    end })
    assert(c:tools())
    local p, err = c:call("ask_forever", {}, { timeout = 0.5 })
    assert.is_nil(p)
    assert.equal("timeout", err.code)
    assert.is_true(#seen("tools/call") < era.MAX_MRTR_ROUNDS + 1)
    c:close()
  end)

  it("end with a clear error when no callback can answer", function()
    local c = client("/modern")
    local p, err = c:call("ask", {})
    assert.is_nil(p)
    assert.equal("protocol", err.code)
    assert.matches("elicitation/create", err.message)
    assert.equal(1, #seen("tools/call"))
    c:close()
  end)
end)

describe("a broken response stream (no resumption in 2026-07-28)", function()
  it("sends a read-only call again as a new request; any other call ends with protocol", function()
    local c = client("/modern")
    local p = assert(c:call("flaky_read", {}))
    local calls = seen("tools/call")
    assert.equal(2, #calls)
    assert.are_not.equal(calls[1].id, calls[2].id)
    assert.equal(calls[2].id, p.id)
    assert.is_nil(calls[2].headers["last-event-id"])
    local w, err = c:call("flaky_write", {})
    assert.is_nil(w)
    assert.equal("protocol", err.code)
    assert.equal(3, #seen("tools/call"))
    c:close()
  end)
end)

describe("the modern error codes", function()
  it("-32021 names the missing capability; -32602 on resources/read is not_found", function()
    local c = client("/modern")
    local p, err = c:call("needs_sampling", {})
    assert.is_nil(p)
    assert.equal("protocol", err.code)
    assert.equal(-32021, err.rpc_code)
    assert.same({ "sampling" }, err.required_capabilities)
    local contents, rerr = c:read("file:///nope")
    assert.is_nil(contents)
    assert.equal("not_found", rerr.code)
    c:close()
  end)
end)

describe("per-request state of the modern era", function()
  it("set_log_level sends no logging/setLevel: the level rides in each request's _meta", function()
    local c = client("/modern")
    assert(c:set_log_level("warning"))
    local p = assert(c:call("echo", {}))
    assert.equal("warning", p.logLevel)
    assert.equal(0, #seen("logging/setLevel"))
    c:close()
  end)

  it("ttlMs bounds how long the tool list is fresh", function()
    control("/_era/ttl", { ttlMs = 600000 })
    local c = client("/modern")
    assert(c:tools())
    assert(c:tools())
    assert.equal(1, #seen("tools/list"))
    c:close()
    control("/_era/ttl", { ttlMs = 1 })
    c = client("/modern")
    assert(c:tools())
    local t0 = core.monotonic()
    repeat until core.monotonic() - t0 > 0.002 -- past the 1 ms
    assert(c:tools())
    assert.equal(3, #seen("tools/list"))
    c:close()
  end)

  it("subscribe opens subscriptions/listen with the resource in its filter", function()
    local c = client("/modern")
    local got
    assert(c:subscribe("file:///a.txt", function(p) got = p end))
    local deadline = core.monotonic() + 5
    while not got and core.monotonic() < deadline do c.session:pump(0.1) end
    assert.equal("file:///a.txt", got and got.uri)
    local l = seen("subscriptions/listen")
    assert.equal(1, #l)
    assert.same({ "file:///a.txt" }, l[1].params.notifications.resourceSubscriptions)
    assert.equal(0, #seen("resources/subscribe"))
    c:close()
  end)

  it("doctor reports the version in use", function()
    local c = client("/modern")
    local r = c:doctor()
    assert.equal("2026-07-28", r.protocol_version)
    assert.equal("modern", r.era)
    c:close()
    local c2 = client("/legacy")
    r = c2:doctor()
    assert.equal("2025-11-25", r.protocol_version)
    c2:close()
  end)
end)

describe("over stdio", function()
  it("probes with server/discover and speaks 2026-07-28 to a modern server, MRTR included", function()
    local c = assert(favcrm.new({ command = { "node", "spec/support/era_server.mjs", "--stdio" },
      getenv = function() end, timeout = 10,
      on_elicit = function() return { action = "accept", content = {} } end }))
    assert(c:tools())
    assert.equal("modern", c.session.era)
    local p = assert(c:call("ask", {}))
    assert.equal("accept", p.inputResponses.confirm.action)
    c:close()
  end)

  it("subscribe sends subscriptions/listen on the pipe; its notifications reach the handler", function()
    local c = assert(favcrm.new({ command = { "node", "spec/support/era_server.mjs", "--stdio" },
      getenv = function() end, timeout = 10 }))
    local got
    assert(c:subscribe("file:///b.txt", function(p) got = p end))
    local deadline = core.monotonic() + 5
    while not got and core.monotonic() < deadline do c.session:pump(0.1) end
    assert.equal("file:///b.txt", got and got.uri)
    c:close()
  end)

  it("falls back to initialize when the probe gets an error that is no modern one", function()
    local c = assert(favcrm.new({ command = { "node", "spec/support/idle_stdio_server.mjs" },
      getenv = function() end, timeout = 10 }))
    assert(c:tools())
    assert.equal("legacy", c.session.era)
    c:close()
  end)
end)
