-- favcrm.mcp_serve and `favcrm mcp serve`: JSON that keeps empty arrays, the
-- favcrm_doctor fields, raw JSON-RPC over a real process's stdio, and the
-- official MCP TypeScript SDK client (Client + StdioClientTransport) talking
-- to it (spec/support/mcp_stdio_client.mjs).
local cjson = require("cjson")
local serve = require("favcrm.mcp_serve")
local sandbox = require("spec.support.sandbox")

local LUA = os.getenv("FAVCRM_LUA_BIN") or "lua5.4"
local files = require("spec.support.files")
local _, tmpname = files.tmpdir("mcp")
local q, slurp, spit = files.q, files.slurp, files.spit

local xdg

-- The shell prefix: endpoint, config folder, and the key (from a file, never argv).
local function prefix(key)
  local pre = "cd " .. q(os.getenv("PWD") or ".") .. " && FAVCRM_MCP_URL=" .. q(sandbox.url())
    .. " XDG_CONFIG_HOME=" .. q(xdg)
  if key then
    local kf = tmpname("key")
    spit(kf, key)
    pre = pre .. " FAVCRM_API_KEY=\"$(cat " .. q(kf) .. ")\""
  end
  return pre
end

-- serve(lines [, key]) -> exit code, list of decoded answers, stdout, stderr
local function serve_lines(lines, key)
  local input, out, err, rc = tmpname("in"), tmpname("out"), tmpname("err"), tmpname("rc")
  spit(input, table.concat(lines, "\n") .. "\n")
  os.execute("sh -c " .. q(prefix(key) .. " " .. LUA .. " bin/favcrm mcp serve <" .. q(input) .. " >" .. q(out)
    .. " 2>" .. q(err) .. "; echo $? >" .. q(rc)))
  local text = slurp(out) or ""
  local answers = {}
  for line in text:gmatch("[^\n]+") do answers[#answers + 1] = cjson.decode(line) end
  return tonumber(slurp(rc)), answers, text, slurp(err) or ""
end

-- sdk(steps [, key]) -> the node script's JSON report
local function sdk(steps, key)
  local out, err = tmpname("sdk-out"), tmpname("sdk-err")
  os.execute("sh -c " .. q(prefix(key) .. " node spec/support/mcp_stdio_client.mjs " .. q(LUA) .. " "
    .. q(cjson.encode(steps)) .. " >" .. q(out) .. " 2>" .. q(err)))
  local text = slurp(out) or ""
  local ok, doc = pcall(cjson.decode, text)
  assert(ok and type(doc) == "table", "the SDK client printed no JSON: " .. text .. (slurp(err) or ""))
  assert(doc.fatal == nil, tostring(doc.fatal))
  return doc
end

local function by_id(answers)
  local t = {}
  for _, a in ipairs(answers) do
    if a.id ~= nil and a.id ~= cjson.null then t[a.id] = a end
  end
  return t
end

local function rpc(id, method, params)
  return cjson.encode({ jsonrpc = "2.0", id = id, method = method, params = params })
end

local INIT = '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18",'
  .. '"capabilities":{},"clientInfo":{"name":"spec","version":"1"}}}'

describe("favcrm.mcp_serve", function()
  before_each(function()
    sandbox.reset()
    xdg = tmpname("xdg")
    os.execute("mkdir -p " .. q(xdg))
  end)

  describe("encode() and decode()", function()
    it("keeps empty arrays and empty objects apart", function()
      local v = assert(serve.decode('{"a": [], "b": {}, "c": [ ], "s": "[]", "d": [[], {"e": []}]}'))
      assert.equal('{"a":[],"b":{},"c":[],"d":[[],{"e":[]}],"s":"[]"}', serve.encode(v))
    end)

    it("follows a JSON Schema guide for values decoded elsewhere", function()
      local G = serve.guide
      local schema = { type = "object", properties = { list = { type = "array" }, map = { type = "object" } } }
      assert.equal('{"list":[],"map":{}}', serve.encode({ list = {}, map = {} }, G.schema(schema)))
      local tool = { type = "object", properties = {}, required = {} }
      assert.equal('{"properties":{},"required":[],"type":"object"}', serve.encode(tool, G.schemadoc))
    end)

    it("refuses to encode a secret", function()
      local core = require("favcrm.core")
      local ok, err = pcall(serve.encode, { k = core.secret("fav_mcp_abcdefabcdefabcdef") })
      assert.is_false(ok)
      assert.is_nil(tostring(err):find("abcdefabcdef", 1, true))
    end)
  end)

  describe("doctor_fields()", function()
    it("maps a doctor report onto exactly the provisioner's six fields", function()
      local f = serve.doctor_fields({
        reachable = true, tool_count = 47, authenticated = true, auth_source = "FAVCRM_API_KEY",
        current_user = { userId = "usr_1", role = "owner", companies = {
          { companyId = "co_1", organisationId = "org_1", name = "One", current = true } } },
        plan = { plan = "free", status = "active" }, whatsapp = { connected = false, status = "not_connected" },
      })
      assert.same({ mcpEndpointStatus = "active", authStatus = "configured", toolCount = 47,
        organisationContext = { organisationId = "org_1", companyId = "co_1", name = "One", userId = "usr_1",
          role = "owner" }, planStatus = "free", whatsappStatus = "not_connected" }, f)
      local keys = {}
      for k in pairs(f) do keys[#keys + 1] = k end
      table.sort(keys)
      local want = {}
      for _, k in ipairs(serve.DOCTOR_FIELDS) do want[#want + 1] = k end
      table.sort(want)
      assert.same(want, keys)
    end)

    it("says missing, invalid, unverified and unreachable", function()
      assert.equal("missing", serve.doctor_fields({ reachable = true }).authStatus)
      assert.equal("invalid", serve.doctor_fields({ reachable = true, auth_source = "config file",
        current_user_error = { code = "unauthorized" } }).authStatus)
      local down = serve.doctor_fields({ reachable = false, auth_source = "FAVCRM_API_KEY" })
      assert.equal("unverified", down.authStatus)
      assert.equal("unreachable", down.mcpEndpointStatus)
      assert.equal(0, down.toolCount)
      assert.equal(cjson.null, down.organisationContext)
    end)
  end)

  describe("favcrm mcp serve (raw JSON-RPC over a real process)", function()
    it("negotiates the protocol version, answers ping, ignores notifications, -32601 for the rest", function()
      local code, answers, text, err = serve_lines({
        INIT,
        '{"jsonrpc":"2.0","method":"notifications/initialized"}',
        rpc(2, "ping"),
        rpc(3, "tasks/list"),
        rpc(4, "initialize", { protocolVersion = "1999-01-01", capabilities = {}, clientInfo = { name = "old" } }),
        rpc(5, "initialize", { protocolVersion = "2024-11-05", capabilities = {}, clientInfo = { name = "old" } }),
        "this is not json",
        "",
        '{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":9}}',
      })
      assert.equal(0, code)
      assert.equal(6, #answers, text)
      local a = by_id(answers)
      assert.equal("2025-06-18", a[1].result.protocolVersion)
      assert.equal("favcrm", a[1].result.serverInfo.name)
      -- list_changed, resources, prompts and completion are forwarded from upstream
      assert.is_true(a[1].result.capabilities.tools.listChanged)
      assert.is_true(a[1].result.capabilities.resources.subscribe)
      assert.equal('{"id":2,"jsonrpc":"2.0","result":{}}', text:match("[^\n]*\"id\":2[^\n]*"))
      assert.equal(-32601, a[3].error.code)
      assert.equal("2025-11-25", a[4].result.protocolVersion)
      assert.equal("2024-11-05", a[5].result.protocolVersion)
      assert.equal(-32700, answers[6].error.code)
      assert.is_truthy(err:find("stdin closed", 1, true))
    end)

    it("lists the remote tools plus favcrm_doctor, empty arrays intact", function()
      local code, answers, text = serve_lines({ INIT, rpc(2, "tools/list") })
      assert.equal(0, code)
      local tools = by_id(answers)[2].result.tools
      local names = {}
      for _, t in ipairs(tools) do names[t.name] = t end
      assert.is_truthy(names.favcrm_doctor)
      assert.is_truthy(names.list_services)
      assert.is_true(names.list_services.annotations.readOnlyHint)
      assert.is_true(names.delete_service.annotations.destructiveHint)
      assert.is_truthy(text:find('"required":[]', 1, true))
      assert.is_nil(text:find('"required":{}', 1, true))
    end)

    it("proxies tools/call with the key; isError passes through; unknown tools are -32602", function()
      local key = sandbox.account()
      local code, answers, text, err = serve_lines({
        INIT,
        rpc(2, "tools/call", { name = "list_services", arguments = {} }),
        rpc(3, "tools/call", { name = "get_service", arguments = { serviceId = "svc_nothere" } }),
        rpc(4, "tools/call", { name = "list_servics", arguments = {} }),
        rpc(5, "tools/call", { name = "favcrm_doctor", arguments = {} }),
      }, key)
      assert.equal(0, code)
      local a = by_id(answers)
      assert.is_truthy(text:find('"structuredContent":{"data":[]}', 1, true), text)
      assert.is_true(a[3].result.isError)
      assert.is_truthy(a[3].result.content[1].text:find("svc_nothere", 1, true))
      assert.equal(-32602, a[4].error.code)
      assert.same({ "list_services" }, { a[4].error.data.suggestions[1] })
      local d = a[5].result.structuredContent
      assert.equal("active", d.mcpEndpointStatus)
      assert.equal("configured", d.authStatus)
      assert.same(d, cjson.decode(a[5].result.content[1].text))
      assert.is_nil(text:find(key, 1, true))
      assert.is_nil(err:find(key, 1, true))
    end)

    it("exits 0 at once on an empty stdin", function()
      local code, answers = serve_lines({})
      assert.equal(0, code)
      assert.equal(0, #answers)
    end)
  end)

  describe("with the official MCP TypeScript SDK client over stdio", function()
    it("calls favcrm_doctor, list_services and the registration pair", function()
      local key = sandbox.account("sdk-owner@example.com")
      local doc = sdk({ { list = true }, { call = "favcrm_doctor" }, { call = "list_services" } }, key)
      assert.equal("favcrm", doc.serverVersion.name)
      local listed = {}
      for _, t in ipairs(doc.steps[1].list) do listed[t.name] = t end
      assert.is_true(listed.favcrm_doctor.hasOutputSchema)
      assert.is_truthy(listed.register_organisation_request)
      local d = doc.steps[2].structuredContent
      assert.is_false(doc.steps[2].isError)
      assert.equal("active", d.mcpEndpointStatus)
      assert.equal("configured", d.authStatus)
      assert.is_true(d.toolCount > 40)
      assert.equal("Sandbox Studio", d.organisationContext.name)
      assert.is_truthy(d.organisationContext.organisationId:match("^org_"))
      assert.equal("free", d.planStatus)
      assert.equal("not_connected", d.whatsappStatus)
      assert.is_false(doc.steps[3].isError)
      assert.same({ data = {} }, doc.steps[3].structuredContent)

      -- no key at all: the doctor says so, the registration pair still works
      local anon = sdk({
        { list = true },
        { call = "favcrm_doctor" },
        { call = "list_services" },
        { call = "register_organisation_request", arguments = { email = "sdk@example.com",
          organisationName = "SDK Studio", country = "HK" } },
        { call = "register_organisation_verify", arguments = { requestId = "$last.requestId",
          code = "$outbox:sdk@example.com" } },
      })
      assert.equal("missing", anon.steps[2].structuredContent.authStatus)
      assert.equal(cjson.null, anon.steps[2].structuredContent.organisationContext)
      assert.is_true(anon.steps[3].isError)
      assert.is_truthy(anon.steps[3].text:find("API key", 1, true))
      assert.is_false(anon.steps[4].isError)
      assert.is_truthy(anon.steps[4].structuredContent.data.maskedEmail:find("*@example.com", 1, true))
      local ws = anon.steps[5].structuredContent.data
      assert.is_false(anon.steps[5].isError)
      assert.is_truthy(ws.organisationId:match("^org_"))
      assert.is_truthy(ws.apiKey:match("^fav_mcp_%.%.%.%(%d+%)$"))
    end)
  end)
end)
