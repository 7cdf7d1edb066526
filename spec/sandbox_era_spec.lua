-- The sandbox's protocol era (issue 16, item 5): spec/support/run.sh starts
-- the sandboxes in the era FAVCRM_SANDBOX_ERA names (`make test
-- SANDBOX_ERA=2025|2026|dual`), and spec/support/sandbox.lua reports it as
-- sandbox.era. Checked over raw loopback HTTP (LuaSocket), not with the
-- client, so it holds in every era whatever the client speaks.
local http = require("socket.http")
local ltn12 = require("ltn12")
local cjson = require("cjson")
local sandbox = require("spec.support.sandbox")

local V26 = "2026-07-28"

local function post(body, headers)
  local payload = cjson.encode(body)
  local h = { ["content-type"] = "application/json", ["accept"] = "application/json, text/event-stream",
    ["content-length"] = tostring(#payload) }
  for k, v in pairs(headers or {}) do h[k] = v end
  local out = {}
  local _, status, rh = http.request({ url = sandbox.url(), method = "POST", headers = h,
    source = ltn12.source.string(payload), sink = ltn12.sink.table(out) })
  return status, table.concat(out), rh
end

-- the JSON-RPC message with an id in a JSON or SSE body
local function rpc(text)
  if text:sub(1, 1) == "{" then return cjson.decode(text) end
  local last
  for line in text:gmatch("[^\n]+") do
    local data = line:match("^data: (.+)$")
    if data then
      local m = cjson.decode(data)
      if m.id ~= nil then last = m end
    end
  end
  return last
end

local function envelope()
  return { ["io.modelcontextprotocol/protocolVersion"] = V26,
    ["io.modelcontextprotocol/clientCapabilities"] = {},
    ["io.modelcontextprotocol/clientInfo"] = { name = "sandbox_era_spec", version = "1" } }
end

local initialize = { jsonrpc = "2.0", id = 1, method = "initialize", params = {
  protocolVersion = "2025-11-25", capabilities = {}, clientInfo = { name = "sandbox_era_spec", version = "1" } } }

describe("the sandbox era", function()
  it("is one of 2025, 2026, dual, and the sandbox says the same", function()
    assert.is_true(sandbox.era == "2025" or sandbox.era == "2026" or sandbox.era == "dual")
    local health = sandbox.control("GET", "/healthz")
    assert.equal(sandbox.era, health.era)
    assert.equal(sandbox.era, sandbox.stats().era)
    assert.has_error(function() sandbox.speaks("2024") end)
  end)

  it("answers initialize as its era says (2026-only: 400 -32022 naming 2026-07-28)", function()
    local status, text, headers = post(initialize)
    if sandbox.speaks("2025") then
      assert.equal(200, status)
      assert.is_string(headers["mcp-session-id"])
    else
      assert.equal(400, status)
      local msg = cjson.decode(text)
      assert.equal(-32022, msg.error.code)
      assert.same({ V26 }, msg.error.data.supported)
    end
  end)

  it("answers a 2026-07-28 request as its era says (2025-only: the 2025 transport refuses it)", function()
    local status, text = post({ jsonrpc = "2.0", id = 2, method = "server/discover", params = { _meta = envelope() } },
      { ["mcp-protocol-version"] = V26, ["mcp-method"] = "server/discover" })
    if sandbox.speaks("2026") then
      assert.equal(200, status)
      local msg = rpc(text)
      assert.same({ V26 }, msg.result.supportedVersions)
      assert.equal("favcrm-sandbox", msg.result._meta["io.modelcontextprotocol/serverInfo"].name)
    else
      assert.equal(400, status) -- the v1 SDK: an unknown MCP-Protocol-Version header
    end
  end)

  it("sets the 2026 cache fields with sandbox.cache (2026 and dual)", function()
    if not sandbox.speaks("2026") then
      pending("the sandbox speaks only 2025 (FAVCRM_SANDBOX_ERA=" .. sandbox.era .. "): no cache fields")
      return
    end
    sandbox.cache({ ttlMs = 5000, cacheScope = "public", methods = { "tools/list" } })
    local _, text = post({ jsonrpc = "2.0", id = 5, method = "tools/list", params = { _meta = envelope() } },
      { ["mcp-protocol-version"] = V26, ["mcp-method"] = "tools/list" })
    local r = rpc(text).result
    sandbox.cache({ ttlMs = 0 }) -- the SDK's default again (0, private) for the specs after this one
    assert.equal(5000, r.ttlMs)
    assert.equal("public", r.cacheScope)
  end)

  it("serves the MRTR round of sandbox_elicit in 2026 (input_required, then the retry completes)", function()
    if not sandbox.speaks("2026") then
      pending("the sandbox speaks only 2025 (FAVCRM_SANDBOX_ERA=" .. sandbox.era .. "): no multi-round-trip requests")
      return
    end
    local caps = { elicitation = { form = {} } }
    local meta = envelope()
    meta["io.modelcontextprotocol/clientCapabilities"] = caps
    local h = { ["mcp-protocol-version"] = V26, ["mcp-method"] = "tools/call", ["mcp-name"] = "sandbox_elicit" }
    local _, text = post({ jsonrpc = "2.0", id = 3, method = "tools/call",
      params = { name = "sandbox_elicit", arguments = { message = "name?" }, _meta = meta } }, h)
    local first = rpc(text).result
    assert.equal("input_required", first.resultType)
    assert.equal("elicitation/create", first.inputRequests.elicit.method)
    local _, text2 = post({ jsonrpc = "2.0", id = 4, method = "tools/call",
      params = { name = "sandbox_elicit", arguments = { message = "name?" }, _meta = meta,
        inputResponses = { elicit = { action = "accept", content = { name = "Lua" } } },
        requestState = first.requestState } }, h)
    local done = rpc(text2).result
    assert.equal("complete", done.resultType)
    assert.equal("Lua", done.structuredContent.data.content.name)
  end)
end)
