-- `favcrm mcp serve` as an agent host meets it (issue 18): the seed's
-- provisioner flow through the official MCP TypeScript SDK client over
-- stdio against a key-less bridge, the forwarding (progress, logging,
-- elicitation, sampling, roots, cancellation) and an upstream restart during
-- a favcrm_doctor health-check loop. The host is
-- spec/support/mcp_bridge_client.mjs, run with core.spawn so the spec can
-- act on the world while the host waits ({"wait": LABEL} steps).
local cjson = require("cjson")
local core = require("favcrm.core")
local socket = require("socket")
local sandbox = require("spec.support.sandbox")
local keys = require("spec.support.keys")
local files = require("spec.support.files")

local hosts = require("spec.support.bridge")

local LUA = os.getenv("FAVCRM_LUA_BIN") or "lua5.4"
local B = hosts.new("bridge", "spec/support/mcp_bridge_client.mjs")
local tmpname, host, new_xdg, step = B.tmpname, B.host, B.new_xdg, hosts.step
local slurp, q = files.slurp, files.q

local function mode_of(path)
  local h = io.popen("stat -c %a " .. q(path))
  local m = h:read("*l")
  h:close()
  return m
end

-- the key the bridge saved, from the config file (never printed)
local function saved_key(xdg)
  local text = slurp(xdg .. "/favcrm/config.toml")
  if not text then return nil end
  return text:match('api_key%s*=%s*"(fav_mcp_[^"]+)"')
end

local INIT_LINE = '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18",'
  .. '"capabilities":{},"clientInfo":{"name":"spec","version":"1"}}}'

local function code_for(email, url)
  local mails = sandbox.outbox(email, url)
  return assert(mails[#mails] and mails[#mails].code, "no code e-mailed to " .. email)
end

describe("favcrm mcp serve as an agent host meets it", function()
  before_each(function() sandbox.reset() end)

  it("carries the seed's provisioner flow to a working key-less bridge; the agent never gets the key", function()
    local xdg = new_xdg()
    local email = "provisioner@example.com"
    local report, received = host({ steps = {
      { list = true },
      { call = "favcrm_doctor" },
      { call = "register_organisation_request", arguments = { email = email, organisationName = "Bridge Studio",
        industry = "fitness", country = "HK", timezone = "Asia/Hong_Kong" } },
      { wait = "code" },
      { call = "register_organisation_verify", arguments = { requestId = "$last.requestId", code = "$var:code" } },
      { call = "favcrm_doctor" },
      { call = "list_services" },
    } }, { FAVCRM_MCP_URL = sandbox.url(), XDG_CONFIG_HOME = xdg }, function(label)
      assert.equal("code", label)
      return code_for(email)
    end)
    local key = saved_key(xdg)
    assert.is_string(key, "the bridge saved no key")
    keys.remember(key)
    assert.equal("600", mode_of(xdg .. "/favcrm/config.toml"))

    local listed = {}
    for _, t in ipairs(report.steps[1].list) do listed[t.name] = t end
    assert.is_truthy(listed.register_organisation_verify.description:find("masked (fav_mcp_...cdef)", 1, true))
    assert.is_truthy(listed.accept_team_invite_verify.description:find("takes the new API key up", 1, true))

    assert.equal("missing", step(report, "favcrm_doctor").structuredContent.authStatus)
    local v = step(report, "register_organisation_verify")
    assert.is_false(v.isError)
    local masked = v.structuredContent.data.apiKey
    assert.equal(core.mask_key(key), masked)
    assert.equal("fav_mcp_", masked:sub(1, 8))
    assert.is_truthy(table.concat(v.texts, "\n"):find("took the new API key up", 1, true))

    local d = step(report, "favcrm_doctor", 2).structuredContent
    for _, f in ipairs({ "mcpEndpointStatus", "authStatus", "toolCount", "organisationContext", "planStatus",
      "whatsappStatus" }) do
      assert.is_not_nil(d[f], f)
    end
    assert.equal("active", d.mcpEndpointStatus)
    assert.equal("configured", d.authStatus)
    assert.is_true(d.toolCount > 40)
    assert.equal("Bridge Studio", d.organisationContext.name)
    assert.equal(v.structuredContent.data.organisationId, d.organisationContext.organisationId)
    assert.equal("free", d.planStatus)
    assert.equal("not_connected", d.whatsappStatus)

    local ls = step(report, "list_services")
    assert.is_false(ls.isError)
    assert.same({ data = {} }, ls.structuredContent)

    -- nothing the agent received holds the whole key; the bridge's log neither
    assert.is_nil(received:find(key, 1, true))
    assert.is_nil(cjson.encode(report):find(key, 1, true))
    assert.is_truthy(received:find(masked, 1, true))
    assert.is_nil(report.stderr:find(key, 1, true))
  end)

  it("--no-save keeps the key in the process only; --show-key hands it over whole", function()
    local xdg = new_xdg()
    local email = "nosave@example.com"
    local report, received = host({ serveArgs = { "--no-save", "--show-key" }, steps = {
      { list = true },
      { call = "register_organisation_request", arguments = { email = email, organisationName = "No Save Co" } },
      { wait = "code" },
      { call = "register_organisation_verify", arguments = { requestId = "$last.requestId", code = "$var:code" } },
      { call = "favcrm_doctor" },
    } }, { FAVCRM_MCP_URL = sandbox.url(), XDG_CONFIG_HOME = xdg }, function() return code_for(email) end)
    local key = step(report, "register_organisation_verify").structuredContent.data.apiKey
    keys.remember(key)
    assert.is_nil(saved_key(xdg))
    assert.equal(32 + 8, #key)
    assert.is_truthy(received:find(key, 1, true))
    assert.equal("configured", step(report, "favcrm_doctor").structuredContent.authStatus)
    local listed = {}
    for _, t in ipairs(report.steps[1].list) do listed[t.name] = t end
    assert.is_truthy(listed.register_organisation_verify.description:find("--no-save", 1, true))
    assert.is_truthy(listed.register_organisation_verify.description:find("returns it whole", 1, true))
  end)

  it("a team invite accepted through the bridge is taken up the same way", function()
    local owner = sandbox.account("inviter@example.com")
    local xdg = new_xdg()
    -- the owner's bridge creates the invite (the owner's key from the environment, never argv)
    local kf = tmpname("kf")
    files.spit(kf, owner)
    local inv = host({ steps = {
      { call = "create_team_member_invite", arguments = { email = "staff@example.com", name = "Sam", role = "staff" } },
    } }, { FAVCRM_MCP_URL = sandbox.url(), XDG_CONFIG_HOME = new_xdg(), FAVCRM_API_KEY = owner })
    local token = step(inv, "create_team_member_invite").structuredContent.data.inviteToken
    assert.is_string(token)
    local report, received = host({ steps = {
      { call = "accept_team_invite_request", arguments = { token = token } },
      { wait = "code" },
      { call = "accept_team_invite_verify", arguments = { token = token, code = "$var:code" } },
      { call = "favcrm_doctor" },
    } }, { FAVCRM_MCP_URL = sandbox.url(), XDG_CONFIG_HOME = xdg }, function() return code_for("staff@example.com") end)
    local key = saved_key(xdg)
    assert.is_string(key)
    keys.remember(key)
    assert.is_nil(received:find(key, 1, true))
    local a = step(report, "accept_team_invite_verify")
    assert.is_false(a.isError, tostring(a.texts and a.texts[1]))
    assert.equal(core.mask_key(key), a.structuredContent.data.apiKey)
    local d = step(report, "favcrm_doctor").structuredContent
    assert.equal("configured", d.authStatus)
    assert.equal("Sandbox Studio", d.organisationContext.name)
    assert.equal("staff", d.organisationContext.role)
  end)

  it("forwards progress, log messages, elicitation, sampling and roots to a host that declares them", function()
    local report = host({ capabilities = { elicitation = {}, sampling = {}, roots = {} }, steps = {
      { call = "sandbox_progress", arguments = { steps = 3, delay_ms = 100 }, progress = true },
      { call = "sandbox_elicit", arguments = { message = "Your name?" } },
      { call = "sandbox_sample", arguments = { prompt = "hello" } },
      { call = "sandbox_roots" },
      { setLevel = "error" },
      { call = "sandbox_progress", arguments = { steps = 1 } },
    } }, { FAVCRM_MCP_URL = sandbox.url(), XDG_CONFIG_HOME = new_xdg() })
    assert.same({}, report.serverCapabilities.logging)
    local p = report.steps[1]
    assert.is_false(p.isError)
    -- the SDK drops a progress notification that reaches it in the same
    -- read as the result (it dispatches notifications a microtask later,
    -- after the result has removed the handler): the last step may be lost
    assert.is_true(#p.progress >= 2, "progress seen: " .. #p.progress)
    assert.same({ progress = 1, total = 3, message = "step 1 of 3" }, p.progress[1])
    assert.same({ progress = 2, total = 3, message = "step 2 of 3" }, p.progress[2])
    assert.is_true(type(p.structuredContent.data.progressToken) == "string" or
      type(p.structuredContent.data.progressToken) == "number")
    assert.equal(1, #report.logs) -- the second sandbox_progress ran after setLevel error
    assert.equal("favcrm-sandbox", report.logs[1].logger)
    assert.equal(3, report.logs[1].data.steps)
    local e = step(report, "sandbox_elicit")
    assert.is_false(e.isError)
    assert.same({ action = "accept", content = { name = "Grace", confirm = true, plan = "starter" } },
      e.structuredContent.data)
    local s = step(report, "sandbox_sample")
    assert.is_false(s.isError)
    assert.equal("sampled: hello", s.structuredContent.data.content.text)
    local r = step(report, "sandbox_roots")
    assert.is_false(r.isError)
    assert.equal("file:///work/project", r.structuredContent.data.roots[1].uri)
    local methods = {}
    for _, m in ipairs(report.serverRequests) do methods[#methods + 1] = m.method end
    assert.same({ "elicitation/create", "sampling/createMessage", "roots/list" }, methods)
  end)

  it("does not claim capabilities the host lacks: the upstream hears none", function()
    local report = host({ steps = {
      { call = "sandbox_elicit", arguments = { message = "Your name?" } },
      { call = "sandbox_roots" },
    } }, { FAVCRM_MCP_URL = sandbox.url(), XDG_CONFIG_HOME = new_xdg() })
    assert.is_true(step(report, "sandbox_elicit").isError)
    assert.is_truthy(step(report, "sandbox_elicit").texts[1]:find("elicitation", 1, true))
    assert.is_true(step(report, "sandbox_roots").isError)
    assert.equal(0, #report.serverRequests)
  end)

  it("drops a call the host cancelled before it started (raw JSON-RPC)", function()
    local input, out = tmpname("in"), tmpname("out")
    files.spit(input, table.concat({
      '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},'
        .. '"clientInfo":{"name":"spec","version":"1"}}}',
      '{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":2,"reason":"changed my mind"}}',
      '{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"sandbox_progress","arguments":{"steps":1}}}',
      '{"jsonrpc":"2.0","id":3,"method":"ping"}',
    }, "\n") .. "\n")
    os.execute("sh -c " .. q("FAVCRM_MCP_URL=" .. q(sandbox.url()) .. " XDG_CONFIG_HOME=" .. q(new_xdg()) .. " "
      .. LUA .. " bin/favcrm mcp serve <" .. q(input) .. " >" .. q(out) .. " 2>/dev/null"))
    local ids = {}
    for line in (slurp(out) or ""):gmatch("[^\n]+") do ids[#ids + 1] = cjson.decode(line).id end
    assert.same({ 1, 3 }, ids)
    assert.is_not.equal("sandbox_progress", sandbox.stats().last_tool_name)
  end)

  it("forwards a host's cancellation of a call in flight upstream; the host gets no late result", function()
    local report, received = host({ steps = {
      { call = "sandbox_progress", arguments = { steps = 40, delay_ms = 100 }, progress = true,
        abortOnProgress = true },
      { call = "sandbox_progress", arguments = { steps = 1 } },
      { call = "favcrm_doctor" },
    } }, { FAVCRM_MCP_URL = sandbox.url(), XDG_CONFIG_HOME = new_xdg() })
    local aborted = report.steps[1]
    assert.is_string(aborted.thrown, "the aborted call returned a result")
    -- the host's request id of the aborted call, and its cancellation
    local cancelled_id
    for _, m in ipairs(report.sent) do
      if m.method == "notifications/cancelled" then cancelled_id = m.params.requestId end
    end
    assert.is_not_nil(cancelled_id, "the SDK sent no notifications/cancelled")
    -- the upstream heard notifications/cancelled for its own request id
    local st = sandbox.stats()
    -- (a 2026-07-28 upstream records a closed request stream as cancelled:
    -- the bridge's subscriptions/listen stream, closed when it exits, too)
    local listens = (st.by_method or {})["subscriptions/listen"] or 0
    assert.equal(1 + math.min(listens, 1), #st.cancelled, cjson.encode(st.cancelled))
    -- the later calls were answered, the cancelled one never
    assert.is_false(report.steps[2].isError)
    assert.equal("active", report.steps[3].structuredContent.mcpEndpointStatus)
    for line in received:gmatch("[^\n]+") do
      local m = cjson.decode(line)
      if m.id == cancelled_id and m.method == nil then error("a late answer to the cancelled call: " .. line) end
    end
    -- the call stopped early: far fewer than its 40 steps were reported
    local progress = 0
    for line in received:gmatch("[^\n]+") do
      if line:find('"notifications/progress"', 1, true) then progress = progress + 1 end
    end
    assert.is_true(progress < 20, "progress notifications: " .. progress)
  end)

  it("forwards resources, templates, reads, subscriptions, prompts and completion", function()
    local key = sandbox.account("resources@example.com")
    local report = host({ steps = {
      { rpc = "resources/list" },
      { rpc = "resources/templates/list" },
      { rpc = "resources/read", params = { uri = "favcrm://guide" } },
      { rpc = "resources/read", params = { uri = "favcrm://nope" } },
      { rpc = "resources/subscribe", params = { uri = "favcrm://session/activity" } },
      { call = "list_services" },
      { awaitNotification = "notifications/resources/updated" },
      { rpc = "resources/unsubscribe", params = { uri = "favcrm://session/activity" } },
      { rpc = "prompts/list" },
      { rpc = "prompts/get", params = { name = "signup", arguments = { industry = "fitness" } } },
      { rpc = "completion/complete", params = { ref = { type = "ref/prompt", name = "signup" },
        argument = { name = "industry", value = "fit" } } },
    } }, { FAVCRM_MCP_URL = sandbox.url(), XDG_CONFIG_HOME = new_xdg(), FAVCRM_API_KEY = key })
    local caps = report.serverCapabilities
    assert.is_true(caps.resources.subscribe)
    assert.is_true(caps.tools.listChanged)
    local function rpc_step(method, nth) return step(report, method, nth, "rpc") end
    local uris = {}
    for _, r in ipairs(rpc_step("resources/list").result.resources) do uris[r.uri] = true end
    assert.is_true(uris["favcrm://guide"] and uris["favcrm://session/activity"])
    local templates = rpc_step("resources/templates/list").result.resourceTemplates
    assert.equal("favcrm://schemas/{tool}", templates[1].uriTemplate)
    local guide = rpc_step("resources/read").result.contents[1]
    assert.equal("text/markdown", guide.mimeType)
    assert.is_truthy(guide.text:find("FavCRM", 1, true))
    local missing = rpc_step("resources/read", 2)
    -- resource not found: -32002 in 2025-11-25, -32602 in 2026-07-28 (the
    -- bridge's upstream client negotiates 2026 wherever the sandbox speaks it)
    assert.equal(sandbox.speaks("2026") and -32602 or -32002, missing.code)
    assert.is_truthy(missing.thrown:find("favcrm://nope", 1, true))
    assert.same({}, rpc_step("resources/subscribe").result)
    local updated
    for _, n in ipairs(report.notifications) do
      if n.method == "notifications/resources/updated" then updated = n.params end
    end
    assert.equal("favcrm://session/activity", updated and updated.uri)
    local names = {}
    for _, p in ipairs(rpc_step("prompts/list").result.prompts) do names[p.name] = true end
    assert.is_true(names.signup)
    local msgs = rpc_step("prompts/get").result.messages
    assert.is_true(#msgs >= 1)
    assert.is_truthy(cjson.encode(msgs):find("fitness", 1, true))
    assert.same({ "fitness" }, rpc_step("completion/complete").result.completion.values)
  end)

  it("forwards tools/list_changed from the upstream to the host between calls", function()
    local report = host({ steps = {
      { list = true },
      { wait = "add" },
      { awaitNotification = "notifications/tools/list_changed" },
      { list = true },
    } }, { FAVCRM_MCP_URL = sandbox.url(), XDG_CONFIG_HOME = new_xdg() }, function(label)
      assert.equal("add", label)
      local r = sandbox.control("POST", "/_sandbox/tools", { name = "bridge_runtime_tool", notify = true })
      assert.is_true(r.notified >= 1, "no open session upstream to notify")
    end)
    local function has(list)
      for _, t in ipairs(list) do if t.name == "bridge_runtime_tool" then return true end end
      return false
    end
    assert.is_false(has(report.steps[1].list))
    assert.is_true(report.steps[3].seen)
    assert.is_true(has(report.steps[4].list))
  end)

  it("forwards each kind of list_changed (tools, resources, prompts) to the host between calls", function()
    local steps = { { rpc = "resources/list" } }
    for _, kind in ipairs({ "resources", "prompts", "tools" }) do
      steps[#steps + 1] = { wait = kind }
      steps[#steps + 1] = { awaitNotification = "notifications/" .. kind .. "/list_changed" }
      steps[#steps + 1] = { rpc = kind .. "/list" }
    end
    local report = host({ steps = steps }, { FAVCRM_MCP_URL = sandbox.url(), XDG_CONFIG_HOME = new_xdg() },
      function(kind)
        local r = sandbox.control("POST", "/_sandbox/list_changed", { kind = kind })
        assert.equal(kind, r.kind)
        assert.is_true(r.notified >= 1, "no open session upstream to notify")
      end)
    -- each notification came after the call before it and before the next
    local heard = {}
    for _, n in ipairs(report.notifications) do heard[#heard + 1] = n.method end
    assert.same({ "notifications/resources/list_changed", "notifications/prompts/list_changed",
      "notifications/tools/list_changed" }, heard)
    for i, kind in ipairs({ "resources", "prompts", "tools" }) do
      local awaited, listed = report.steps[3 * i], report.steps[3 * i + 1]
      assert.equal("notifications/" .. kind .. "/list_changed", awaited.awaited)
      assert.is_true(awaited.seen, kind)
      assert.is_nil(listed.thrown, listed.thrown)
      assert.is_table(listed.result[kind], kind)
    end
  end)

  it("passes URL-mode elicitation and its completion through to a host that declares URL mode", function()
    local url = "https://example.com/connect/bridge"
    local modern = sandbox.speaks("2026")
    local steps = { { call = "sandbox_elicit_url", arguments = { url = url, elicitationId = "el-bridge-1" } } }
    if not modern then steps[2] = { awaitNotification = "notifications/elicitation/complete" } end
    steps[#steps + 1] = { call = "sandbox_elicit", arguments = { message = "Your name?" } }
    local report = host({ capabilities = { elicitation = { form = {}, url = {} } }, steps = steps },
      { FAVCRM_MCP_URL = sandbox.url(), XDG_CONFIG_HOME = new_xdg() })
    local e = step(report, "sandbox_elicit_url")
    assert.is_false(e.isError, e.texts and e.texts[1])
    assert.same({ action = "accept", elicitationId = "el-bridge-1" }, e.structuredContent.data)
    local asked = report.serverRequests[1]
    assert.same({ method = "elicitation/create", mode = "url", url = url, elicitationId = "el-bridge-1",
      message = "Open the link to finish." }, asked)
    -- its completion: 2025-11-25 only (2026-07-28 has no such notification;
    -- the bridge's upstream client negotiates 2026 wherever the sandbox speaks it)
    local done
    for _, n in ipairs(report.notifications) do
      if n.method == "notifications/elicitation/complete" then done = n.params end
    end
    if modern then
      assert.is_nil(done)
    else
      assert.is_true(report.steps[2].seen)
      assert.equal("el-bridge-1", done.elicitationId)
    end
    -- form mode still works beside it
    assert.is_false(step(report, "sandbox_elicit").isError)
    assert.equal("form", report.serverRequests[2].mode)
  end)

  it("keeps a host without URL mode on form only: the upstream is not told of URL mode", function()
    local report = host({ capabilities = { elicitation = {} }, steps = {
      { call = "sandbox_elicit_url", arguments = { url = "https://example.com/connect/form-only" } },
      { call = "sandbox_elicit", arguments = { message = "Your name?" } },
    } }, { FAVCRM_MCP_URL = sandbox.url(), XDG_CONFIG_HOME = new_xdg() })
    local e = step(report, "sandbox_elicit_url")
    assert.is_true(e.isError)
    assert.is_truthy(e.texts[1]:find("elicitation", 1, true), e.texts[1])
    assert.is_false(step(report, "sandbox_elicit").isError)
    -- the host never saw the URL request
    assert.equal(1, #report.serverRequests)
    assert.equal("form", report.serverRequests[1].mode)
  end)

  describe("its limits (docs/LIMITS.md)", function()
    -- a bridge process on the module, with opts the CLI does not expose
    local function bridge(opts)
      local code = "local favcrm = require('favcrm'); local serve = require('favcrm.mcp_serve'); "
        .. "local c = assert(favcrm.new({ url = os.getenv('FAVCRM_MCP_URL') })); "
        .. "os.exit(serve.serve(c, { stdin = io.stdin, stdout = io.stdout, stderr = io.stderr, stdin_fd = 0 }, "
        .. opts .. "))"
      return assert(core.spawn({ LUA, "-e", code }, { FAVCRM_MCP_URL = sandbox.url(), XDG_CONFIG_HOME = new_xdg() }))
    end
    -- reads lines until want(msg) is true (within 60 s); lines read past
    -- the one wanted are kept for the next read_until
    local kept = setmetatable({}, { __mode = "k" })
    local function read_until(p, want)
      kept[p] = kept[p] or {}
      local deadline = core.monotonic() + 60
      while core.monotonic() < deadline do
        while #kept[p] > 0 do
          local m = cjson.decode(table.remove(kept[p], 1))
          if want(m) then return m end
        end
        local r = p:poll(20000)
        for _, line in ipairs(r.lines) do kept[p][#kept[p] + 1] = line end
        if #r.lines == 0 and (r.exited or r.eof) then break end
      end
      error("the bridge never sent what was awaited")
    end

    it("answers a host line over 8 MiB with a parse error and goes on", function()
      local p = bridge("{}")
      p:write(INIT_LINE .. "\n" .. '{"jsonrpc":"2.0","id":7,"method":"ping","params":{"pad":"'
        .. string.rep("x", 8 * 1024 * 1024 + 10) .. '"}}\n' .. '{"jsonrpc":"2.0","id":8,"method":"ping"}\n')
      local e = read_until(p, function(m) return m.error ~= nil end)
      assert.equal(-32700, e.error.code)
      assert.is_truthy(e.error.message:find("longer than", 1, true))
      assert.equal(8, read_until(p, function(m) return m.id == 8 end).id)
      p:close(2000)
    end)

    it("runs at most 64 host requests upstream at once: one more gets -32603 at once", function()
      local p = bridge("{}")
      local lines = { INIT_LINE }
      for id = 2, 66 do
        lines[#lines + 1] = cjson.encode({ jsonrpc = "2.0", id = id, method = "tools/call",
          params = { name = "sandbox_slow", arguments = { ms = 60000 } } })
      end
      p:write(table.concat(lines, "\n") .. "\n")
      local e = read_until(p, function(m) return m.error ~= nil end)
      assert.equal(66, e.id)
      assert.equal(-32603, e.error.code)
      assert.is_truthy(e.error.message:find("64 requests", 1, true))
      p:close(0)
    end)

    it("stops waiting for a host answer once 1,024 other lines are kept", function()
      local p = bridge("{}")
      p:write('{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18",'
        .. '"capabilities":{"elicitation":{}},"clientInfo":{"name":"chatty","version":"1"}}}\n'
        .. '{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"sandbox_elicit",'
        .. '"arguments":{"message":"anyone?"}}}\n')
      read_until(p, function(m) return m.method == "elicitation/create" end)
      local pings = {}
      for id = 3, 1100 do pings[#pings + 1] = '{"jsonrpc":"2.0","id":' .. id .. ',"method":"ping"}' end
      p:write(table.concat(pings, "\n") .. "\n")
      -- the call ends declined; the kept pings are answered too
      local done, answered = nil, 0
      read_until(p, function(m)
        if m.id == 2 then done = m elseif m.result then answered = answered + 1 end
        return done ~= nil and answered == 1098
      end)
      assert.is_truthy(cjson.encode(done.result):find("decline", 1, true))
      p:close(2000)
    end)

    it("gives up on a host that does not answer a forwarded request within host_timeout", function()
      local p = bridge("{ host_timeout = 0.5 }")
      p:write('{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18",'
        .. '"capabilities":{"elicitation":{}},"clientInfo":{"name":"silent","version":"1"}}}\n'
        .. '{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"sandbox_elicit",'
        .. '"arguments":{"message":"anyone?"}}}\n')
      local ask = read_until(p, function(m) return m.method == "elicitation/create" end)
      assert.equal("anyone?", ask.params.message)
      -- no answer: the upstream hears decline, the call ends
      local done = read_until(p, function(m) return m.id == 2 end)
      assert.is_truthy(cjson.encode(done.result):find("decline", 1, true))
      p:close(2000)
    end)
  end)

  describe("an upstream restart during a favcrm_doctor health-check loop", function()
    local function free_port()
      local s = assert(socket.bind("127.0.0.1", 0))
      local _, port = s:getsockname()
      s:close()
      return port
    end
    -- starts `node sandbox/server.mjs --port N --test`; ready once it printed its two lines
    local function start(port, outbox)
      local p = assert(core.spawn({ "node", "sandbox/server.mjs", "--port", tostring(port), "--test", "--quiet",
        "--outbox", outbox }))
      local got = {}
      while #got < 2 do
        local r = p:poll(30000)
        for _, l in ipairs(r.lines) do got[#got + 1] = l end
        assert(not r.exited and (#got >= 2 or #r.lines > 0 or not r.eof),
          "the second sandbox did not start: " .. tostring(r.stderr))
      end
      local url = got[1]:match("(http://%S+)")
      assert.equal("http://127.0.0.1:" .. port .. "/mcp", url)
      return p, url
    end

    it("reports the outage and turns green again without a bridge restart", function()
      local port = free_port()
      local outbox = tmpname("outbox2")
      local sb, url = start(port, outbox)
      local xdg = new_xdg()
      local key = sandbox.account("health@example.com", url)
      local ok, err = pcall(function()
        local report = host({ steps = {
          { call = "favcrm_doctor" },
          { call = "list_services" },
          { wait = "kill" },
          { call = "favcrm_doctor" },
          { call = "list_services" },
          { call = "favcrm_doctor" },
          { wait = "restart" },
          { call = "favcrm_doctor" },
          { call = "register_organisation_request", arguments = { email = "again@example.com",
            organisationName = "Back Again" } },
          { wait = "code" },
          { call = "register_organisation_verify", arguments = { requestId = "$last.requestId", code = "$var:code" } },
          { call = "favcrm_doctor" },
          { call = "list_services" },
        } }, { FAVCRM_MCP_URL = url, XDG_CONFIG_HOME = xdg, FAVCRM_API_KEY = key }, function(label)
          if label == "kill" then
            sb:close(0) -- SIGTERM, reaped
          elseif label == "restart" then
            sb = start(port, outbox)
          elseif label == "code" then
            return code_for("again@example.com", url)
          end
        end)
        local d1 = step(report, "favcrm_doctor", 1).structuredContent
        assert.equal("active", d1.mcpEndpointStatus)
        assert.equal("configured", d1.authStatus)
        assert.is_false(step(report, "list_services", 1).isError)
        -- down: the health check says so, calls fail as tool errors, the bridge lives on
        for n = 2, 3 do
          local d = step(report, "favcrm_doctor", n).structuredContent
          assert.equal("unreachable", d.mcpEndpointStatus)
          assert.equal("unverified", d.authStatus)
          assert.equal(0, d.toolCount)
        end
        local down = step(report, "list_services", 2)
        assert.is_true(down.isError)
        -- back (a fresh sandbox: it forgot the old key, so the agent provisions again)
        local d4 = step(report, "favcrm_doctor", 4).structuredContent
        assert.equal("active", d4.mcpEndpointStatus)
        assert.is_true(d4.toolCount > 40)
        assert.equal("invalid", d4.authStatus)
        local d5 = step(report, "favcrm_doctor", 5).structuredContent
        assert.equal("active", d5.mcpEndpointStatus)
        assert.equal("configured", d5.authStatus)
        assert.equal("Back Again", d5.organisationContext.name)
        assert.is_false(step(report, "list_services", 3).isError)
        local k2 = saved_key(xdg)
        keys.remember(k2)
      end)
      sb:close(0)
      assert(ok, err)
    end)
  end)
end)
