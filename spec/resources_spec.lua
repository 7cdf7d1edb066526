-- Resources, prompts, completion, the log level and ping (issue 15, item 3):
-- client:resources/resource_templates/read/subscribe/unsubscribe,
-- client:prompts/prompt/complete/set_log_level/ping, favcrm.resource_links
-- and the module-level twins, against the sandbox (lib/resources.mjs) and
-- the MCP project's server-everything over stdio and Streamable HTTP.
local favcrm = require("favcrm")
local cjson = require("cjson")
local core = require("favcrm.core")
local sandbox = require("spec.support.sandbox")

local function by(list, key)
  local out = {}
  for _, x in ipairs(list) do out[x[key]] = x end
  return out
end

describe("resources and prompts against the sandbox", function()
  local c
  before_each(function() c = assert(favcrm.new({ url = sandbox.url() })) end)
  after_each(function() c:close() end)

  it("lists the resources (the guide, the registration schemas) and the schema template", function()
    local list = by(assert(c:resources()), "uri")
    assert.equal("text/markdown", list["favcrm://guide"].mimeType)
    assert.is_table(list["favcrm://schemas/register_organisation_request"])
    assert.is_table(list["favcrm://schemas/register_organisation_verify"])
    local t = assert(c:resource_templates())
    assert.equal("favcrm://schemas/{tool}", t[1].uriTemplate)
  end)

  it("reads a resource: the contents list and the whole result", function()
    local contents, result = assert(c:read("favcrm://guide"))
    assert.equal("favcrm://guide", contents[1].uri)
    assert.matches("# FavCRM platform guide", contents[1].text, 1, true)
    assert.equal(contents, result.contents)
    local schema = cjson.decode((assert(c:read("favcrm://schemas/register_organisation_request")))[1].text)
    assert.same({ "organisationName", "email" }, schema.required)
    -- through the template: any tool's schema
    local any = cjson.decode((assert(c:read("favcrm://schemas/list_services")))[1].text)
    assert.equal("object", any.type)
  end)

  it("an unknown resource is nil, err (2025: the server's -32002; 2026-07-28: -32602, not_found)", function()
    local contents, err = c:read("favcrm://nope")
    assert.is_nil(contents)
    if c.session.era == "modern" then
      assert.equal("not_found", err.code)
      assert.equal(-32602, err.rpc_code)
    else
      assert.equal("protocol", err.code)
      assert.equal(-32002, err.rpc_code)
    end
  end)

  it("follows a tool result's resource links in one line", function()
    local _, result = assert(c:call("query_favcrm_platform", { question = "how do I sign up?" }))
    local links = favcrm.resource_links(result)
    assert.equal(2, #links)
    assert.equal("favcrm://guide", links[1].uri)
    assert.matches("platform guide", (assert(c:read(links[1].uri)))[1].text, 1, true)
    assert.equal("object", cjson.decode((assert(c:read(links[2])))[1].text).type) -- a link works too
    assert.same({}, favcrm.resource_links(nil))
    assert.same({}, favcrm.resource_links({ content = { { type = "text", text = "x" } } }))
  end)

  -- 2026-07-28: the update comes on the subscriptions/listen stream, which
  -- need not deliver it before the call's own answer: the next pumps do
  local function pump_until(cond)
    local deadline = core.monotonic() + 5
    while not cond() and core.monotonic() < deadline do c:step(0.1) end
  end

  it("delivers notifications/resources/updated to the subscriber while a call pumps; unsubscribe stops it", function()
    local seen = {}
    assert.is_true(assert(c:subscribe("favcrm://session/activity", function(p) seen[#seen + 1] = p.uri end)))
    assert(c:call("query_favcrm_platform", { question = "bookings" }))
    if c.session.era == "modern" then pump_until(function() return #seen > 0 end) end
    assert.same({ "favcrm://session/activity" }, seen)
    local activity = cjson.decode((assert(c:read("favcrm://session/activity")))[1].text)
    if c.session.era == "modern" then
      -- no session in 2026-07-28: the sandbox's activity spans every client
      assert.equal("query_favcrm_platform", activity.calls[#activity.calls])
    else
      assert.same({ "query_favcrm_platform" }, activity.calls)
    end
    assert.is_true(assert(c:unsubscribe("favcrm://session/activity")))
    assert(c:call("query_favcrm_platform", { question = "bookings" }))
    if c.session.era == "modern" then
      -- the stream was opened again without the uri: acknowledged, no update
      assert(c.session:listen_acked(c.session:budget(5)))
      c:step(0.2)
    end
    assert.equal(1, #seen)
  end)

  it("an error in the subscriber's function is raised from the call that pumped it", function()
    assert(c:subscribe("favcrm://session/activity", function() error("subscriber broke") end))
    local ok, err = pcall(c.call, c, "query_favcrm_platform", { question = "x" })
    if ok and c.session.era == "modern" then
      -- 2026-07-28: raised by the pump that read it from the listen stream
      ok, err = pcall(pump_until, function() return false end)
    end
    assert.is_false(ok)
    assert.matches("subscriber broke", tostring(err), 1, true)
  end)

  it("lists prompts, fills one in, and completes its argument", function()
    local p = by(assert(c:prompts()), "name").signup
    assert.is_table(p)
    assert.equal("industry", p.arguments[1].name)
    local messages, result = assert(c:prompt("signup", { industry = "fitness", email = "ada@example.com" }))
    assert.equal("user", messages[1].role)
    assert.matches("fitness business", messages[1].content.text, 1, true)
    assert.matches("ada@example.com", messages[1].content.text, 1, true)
    assert.equal("Sign up a fitness business for FavCRM", result.description)
    assert.same({ "tutoring" }, (assert(c:complete("prompt:signup", { name = "industry", value = "tu" }))))
    local values, completion = assert(c:complete({ type = "ref/prompt", name = "signup" },
      { name = "industry", value = "" }))
    assert.equal(7, #values)
    assert.is_false(completion.hasMore)
    local tools = assert(c:complete("resource:favcrm://schemas/{tool}", { name = "tool", value = "register_" }))
    assert.same({ "register_organisation_request", "register_organisation_verify" }, tools)
  end)

  it("a prompt the server refuses is nil, err", function()
    local m, err = c:prompt("signup", { industry = "mining" })
    assert.is_nil(m)
    assert.equal("invalid_arguments", err.code)
    local m2, err2 = c:prompt("nope")
    assert.is_nil(m2)
    assert.equal(-32602, err2.rpc_code)
  end)

  it("sets the log level and pings", function()
    assert.is_true(assert(c:set_log_level("warning")))
    local t = assert(c:ping())
    assert.is_number(t)
    assert.is_true(t >= 0)
  end)

  it("raises on misuse, naming the argument", function()
    assert.has_error(function() c:read(5) end, "bad argument #1 to 'read' (resource URI expected, got number)")
    assert.has_error(function() c:subscribe("favcrm://guide") end,
      "bad argument #2 to 'subscribe' (function expected, got nil)")
    assert.has_error(function() c:prompt(nil) end, "bad argument #1 to 'prompt' (prompt name expected, got nil)")
    assert.has_error(function() c:prompt("signup", "x") end,
      "bad argument #2 to 'prompt' (table of arguments expected, got string)")
    assert.has_error(function() c:complete("signup", { name = "x" }) end)
    assert.has_error(function() c:complete("prompt:signup", nil) end)
    assert.has_error(function() c:set_log_level("loud") end)
    assert.has_error(function() c.ping({}) end)
    assert.has_error(function() favcrm.read(nil) end)
  end)

  it("has module-level twins on the default client (FAVCRM_MCP_URL, in a child process)", function()
    local script = os.getenv("FAVCRM_SPEC_TMP") .. "/twins.lua"
    local f = assert(io.open(script, "w"))
    f:write([[
local favcrm = require("favcrm")
local out = {
  #assert(favcrm.resources()) >= 3,
  #assert(favcrm.resource_templates()) == 1,
  (assert(favcrm.read("favcrm://guide")))[1].text:find("platform guide", 1, true) ~= nil,
  (assert(favcrm.prompts()))[1].name == "signup",
  (assert(favcrm.prompt("signup", { industry = "retail" })))[1].role == "user",
  (assert(favcrm.complete("prompt:signup", { name = "industry", value = "re" })))[1] == "retail",
  type(assert(favcrm.ping())) == "number",
  not pcall(favcrm.read, nil),
}
for i, v in ipairs(out) do io.write(i, "=", tostring(v), " ") end
favcrm.reset_default()
]])
    f:close()
    local p = io.popen(string.format("FAVCRM_MCP_URL='%s' %s '%s' 2>&1", sandbox.url(),
      os.getenv("FAVCRM_LUA_BIN") or "lua5.4", script))
    local out = p:read("*a")
    p:close()
    assert.equal("1=true 2=true 3=true 4=true 5=true 6=true 7=true 8=true ", out)
  end)
end)

local transports = {
  { "stdio", function(opts)
    opts.command = { "node", assert(os.getenv("FAVCRM_EVERYTHING_BIN")), "stdio" }
    return favcrm.new(opts)
  end },
  { "Streamable HTTP", function(opts)
    opts.url = assert(os.getenv("FAVCRM_EVERYTHING_URL"))
    return favcrm.new(opts)
  end },
}

for _, t in ipairs(transports) do
  local name, make = t[1], t[2]
  describe("resources and prompts against server-everything over " .. name, function()
    local c
    before_each(function() c = assert(make({})) end)
    after_each(function() c:close() end)

    it("lists resources (all pages) and templates, and reads one", function()
      local list = assert(c:resources())
      assert.is_true(#list >= 3)
      local doc = by(list, "uri")["demo://resource/static/document/architecture.md"]
      assert.is_table(doc)
      local contents = assert(c:read(doc.uri))
      assert.equal("text/markdown", contents[1].mimeType)
      assert.is_string(contents[1].text)
      local tl = by(assert(c:resource_templates()), "uriTemplate")
      assert.is_table(tl["demo://resource/dynamic/text/{resourceId}"])
      local dyn = assert(c:read("demo://resource/dynamic/text/1"))
      assert.is_string(dyn[1].text)
    end)

    it("follows the resource links of get-resource-links", function()
      local _, result = assert(c:call("get-resource-links", { count = 2 }))
      local links = favcrm.resource_links(result)
      assert.equal(2, #links)
      local contents = assert(c:read(links[1].uri))
      assert.equal(links[1].uri, contents[1].uri)
    end)

    it("subscribes and unsubscribes", function()
      assert.is_true(assert(c:subscribe("demo://resource/static/document/features.md", function() end)))
      assert.is_true(assert(c:unsubscribe("demo://resource/static/document/features.md")))
    end)

    it("lists prompts, gets one with arguments, completes an argument", function()
      local ps = by(assert(c:prompts()), "name")
      assert.is_table(ps["args-prompt"])
      local messages = assert(c:prompt("args-prompt", { city = "Hong Kong" }))
      assert.matches("Hong Kong", cjson.encode(messages), 1, true)
      local values = assert(c:complete("prompt:completable-prompt", { name = "department", value = "" }))
      assert.is_true(#values >= 1)
      local first = values[1]
      local narrowed = assert(c:complete("prompt:completable-prompt", { name = "department", value = first:sub(1, 2) }))
      for _, v in ipairs(narrowed) do assert.equal(first:sub(1, 2):lower(), v:sub(1, 2):lower()) end
    end)

    it("sets the log level and pings", function()
      assert.is_true(assert(c:set_log_level("error")))
      assert.is_number(assert(c:ping()))
    end)
  end)
end
