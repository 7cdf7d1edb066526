-- `favcrm mcp serve` accepts hosts of either era on stdio (issue 16, item 6):
-- a 2026-07-28 host (the official TypeScript SDK v2 client,
-- @modelcontextprotocol/client, the sandbox's copy) sends
-- no initialize, puts its version, capabilities and identity in each
-- request's _meta and may call server/discover; the bridge answers
-- statelessly, rejects an unsupported version with -32022 and its
-- `supported` list, and asks for the host's input (elicitation, sampling,
-- roots forwarded from the upstream) with MRTR input_required results. A
-- 2025 host (the same client in legacy mode) does the initialize handshake.
local cjson = require("cjson")
local sandbox = require("spec.support.sandbox")
local keys = require("spec.support.keys")
local files = require("spec.support.files")

local hosts = require("spec.support.bridge")

local LUA = os.getenv("FAVCRM_LUA_BIN") or "lua5.4"
local B = hosts.new("bridge-era", "spec/support/mcp_bridge_client_v2.mjs", { lenient = true, what = "v2 host",
  hint = " (the sandbox's npm packages installed? make test installs them)" })
local tmpname, host, new_xdg, step = B.tmpname, B.host, B.new_xdg, hosts.step
local slurp, spit, q = files.slurp, files.spit, files.q

local function messages(text)
  local out = {}
  for line in text:gmatch("[^\n]+") do out[#out + 1] = cjson.decode(line) end
  return out
end

describe("favcrm mcp serve with hosts of either era (stdio)", function()
  before_each(function() sandbox.reset() end)

  it("serves a 2026-07-28 host statelessly: server/discover, _meta on every request, no initialize", function()
    local email = "modern@example.com"
    local xdg = new_xdg()
    local report, received = host({ mode = "2026-07-28", steps = {
      { list = true },
      { call = "favcrm_doctor" },
      { call = "register_organisation_request", arguments = { email = email, organisationName = "Modern Studio" } },
      { wait = "code" },
      { call = "register_organisation_verify", arguments = { requestId = "$last", code = "$var:code" } },
      { call = "favcrm_doctor" },
    } }, { FAVCRM_MCP_URL = sandbox.url(), XDG_CONFIG_HOME = xdg }, function()
      local mails = sandbox.outbox(email)
      return mails[#mails].code
    end)
    assert.equal("modern", report.era)
    assert.equal("2026-07-28", report.protocolVersion)
    local versions = table.concat(report.discover.supportedVersions, " ")
    assert.is_truthy(versions:find("2026-07-28", 1, true))
    assert.is_truthy(versions:find("2025-11-25", 1, true))
    assert.equal("favcrm", report.discover._meta["io.modelcontextprotocol/serverInfo"].name)
    assert.is_true(report.discover.capabilities.tools.listChanged)
    -- the host never initialized; each of its requests carried the version in _meta
    local methods = {}
    for _, m in ipairs(report.sent) do
      if m.method and m.id ~= nil then
        methods[#methods + 1] = m.method
        assert.equal("2026-07-28", m.params._meta["io.modelcontextprotocol/protocolVersion"], m.method)
      end
      assert.is_not.equal("initialize", m.method)
    end
    -- (the SDK probes with server/discover on a sibling process of the same command)
    assert.equal("tools/list", methods[1])
    -- answers carry resultType; tools/list is a cacheable result
    for _, m in ipairs(messages(received)) do
      if m.result ~= nil then assert.equal("complete", m.result.resultType) end
      if m.result and m.result.tools then
        assert.equal(0, m.result.ttlMs)
        assert.equal("private", m.result.cacheScope)
      end
    end
    local names = {}
    for _, t in ipairs(report.steps[1].list) do names[t.name] = true end
    assert.is_true(names.favcrm_doctor and names.register_organisation_verify)
    assert.equal("missing", step(report, "favcrm_doctor").structuredContent.authStatus)
    -- the key flow is era-blind: taken up, masked, saved
    local v = step(report, "register_organisation_verify")
    assert.is_false(v.isError, tostring(v.texts and v.texts[1]) .. tostring(v.thrown))
    local text = slurp(xdg .. "/favcrm/config.toml") or ""
    local key = text:match('api_key%s*=%s*"(fav_mcp_[^"]+)"')
    assert.is_string(key)
    keys.remember(key)
    assert.is_nil(received:find(key, 1, true))
    assert.equal("configured", step(report, "favcrm_doctor", 2).structuredContent.authStatus)
  end)

  it("asks a 2026-07-28 host for elicitation, sampling and roots with input_required results (MRTR)", function()
    local report, received = host({ mode = "auto", capabilities = { elicitation = {}, sampling = {}, roots = {} },
      steps = {
        { call = "sandbox_elicit", arguments = { message = "Your name?" } },
        { call = "sandbox_sample", arguments = { prompt = "hello" } },
        { call = "sandbox_roots" },
      } }, { FAVCRM_MCP_URL = sandbox.url(), XDG_CONFIG_HOME = new_xdg() })
    assert.equal("modern", report.era)
    local e = step(report, "sandbox_elicit")
    assert.is_false(e.isError, tostring(e.thrown))
    assert.same({ action = "accept", content = { name = "Grace", confirm = true, plan = "starter" } },
      e.structuredContent.data)
    assert.equal("sampled: hello", step(report, "sandbox_sample").structuredContent.data.content.text)
    assert.equal("file:///work/project", step(report, "sandbox_roots").structuredContent.data.roots[1].uri)
    -- the bridge sent the host no request of its own: three input_required results instead
    local asked = {}
    for _, m in ipairs(messages(received)) do
      assert.is_true(m.method == nil or m.id == nil, "a server request to a 2026 host: " .. tostring(m.method))
      if m.result and m.result.resultType == "input_required" then
        for _, r in pairs(m.result.inputRequests) do asked[#asked + 1] = r.method end
        assert.is_string(m.result.requestState)
      end
    end
    assert.same({ "elicitation/create", "sampling/createMessage", "roots/list" }, asked)
    -- each retry echoed the requestState under a new id
    local retries = 0
    for _, m in ipairs(report.sent) do
      if m.method == "tools/call" and m.params.requestState then
        retries = retries + 1
        assert.is_table(m.params.inputResponses)
      end
    end
    assert.equal(3, retries)
  end)

  it("forwards tools/list_changed to a 2026-07-28 host's subscriptions/listen", function()
    local report = host({ mode = "2026-07-28", steps = {
      { list = true },
      { listen = { toolsListChanged = true } },
      { wait = "add" },
      { awaitNotification = "notifications/tools/list_changed" },
      { list = true },
    } }, { FAVCRM_MCP_URL = sandbox.url(), XDG_CONFIG_HOME = new_xdg() }, function()
      local r = sandbox.control("POST", "/_sandbox/tools", { name = "era_runtime_tool", notify = true })
      assert.is_true(r.notified >= 1, "no open session upstream to notify")
    end)
    assert.is_true(report.steps[2].listened, tostring(report.steps[2].thrown))
    assert.is_true(report.steps[4].seen)
    local names = {}
    for _, t in ipairs(report.steps[5].list) do names[t.name] = true end
    assert.is_true(names.era_runtime_tool)
  end)

  it("serves a 2025 host (the v2 client in legacy mode) through initialize", function()
    local report = host({ mode = "legacy", capabilities = { elicitation = {} }, steps = {
      { call = "favcrm_doctor" },
      { call = "sandbox_elicit", arguments = { message = "Your name?" } },
    } }, { FAVCRM_MCP_URL = sandbox.url(), XDG_CONFIG_HOME = new_xdg() })
    assert.is_not.equal("modern", report.era)
    assert.equal("initialize", report.sent[1].method)
    assert.equal("active", step(report, "favcrm_doctor").structuredContent.mcpEndpointStatus)
    assert.equal("accept", step(report, "sandbox_elicit").structuredContent.data.action)
    assert.same({ "elicitation/create" }, { report.serverRequests[1].method })
  end)

  it("rejects an unsupported version with -32022 and the supported list (raw JSON-RPC)", function()
    local input, out = tmpname("in"), tmpname("out")
    local function meta(v)
      return { ["io.modelcontextprotocol/protocolVersion"] = v, ["io.modelcontextprotocol/clientCapabilities"] = {},
        ["io.modelcontextprotocol/clientInfo"] = { name = "raw", version = "1" } }
    end
    spit(input, table.concat({
      cjson.encode({ jsonrpc = "2.0", id = 1, method = "tools/list", params = { _meta = meta("1999-01-01") } }),
      cjson.encode({ jsonrpc = "2.0", id = 2, method = "server/discover", params = { _meta = meta("2026-07-28") } }),
      cjson.encode({ jsonrpc = "2.0", id = 3, method = "tools/call", params = { name = "favcrm_doctor",
        arguments = {}, _meta = meta("2026-07-28") } }),
    }, "\n") .. "\n")
    os.execute("sh -c " .. q("FAVCRM_MCP_URL=" .. q(sandbox.url()) .. " XDG_CONFIG_HOME=" .. q(new_xdg()) .. " "
      .. LUA .. " bin/favcrm mcp serve <" .. q(input) .. " >" .. q(out) .. " 2>/dev/null"))
    local a = {}
    for _, m in ipairs(messages(slurp(out) or "")) do a[m.id] = m end
    assert.equal(-32022, a[1].error.code)
    assert.equal("1999-01-01", a[1].error.data.requested)
    assert.equal("2026-07-28", a[1].error.data.supported[1])
    assert.equal("complete", a[2].result.resultType)
    assert.equal("2026-07-28", a[2].result.supportedVersions[1])
    assert.equal("complete", a[3].result.resultType)
    assert.equal("active", a[3].result.structuredContent.mcpEndpointStatus)
  end)
end)
