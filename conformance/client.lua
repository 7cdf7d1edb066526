-- The client under test of the official MCP conformance suite (client mode):
--   conformance client --command "lua5.4 conformance/client.lua" --scenario NAME
-- The suite starts a test server per scenario, appends its URL to the
-- command and names the scenario in MCP_CONFORMANCE_SCENARIO. This program
-- does what the scenario expects through favcrm-lua's public API only
-- (favcrm.new, client:tools(), client:call(), the on_* callbacks), the way
-- the suite's own TypeScript everything-client does with the official SDK.
-- No FavCRM API key: the environment and the config file are not read.
-- Exit status 0 when the flow ran; the suite's checks decide pass/fail.
local favcrm = require("favcrm")

local url = arg[1]
local scenario = os.getenv("MCP_CONFORMANCE_SCENARIO") or ""
if not url then
  io.stderr:write("usage: MCP_CONFORMANCE_SCENARIO=NAME lua conformance/client.lua SERVER_URL\n")
  os.exit(2)
end

local function log(...)
  local parts = {}
  for i = 1, select("#", ...) do parts[#parts + 1] = tostring((select(i, ...))) end
  io.stderr:write("[client] ", table.concat(parts, " "), "\n")
end

local function check(v, err)
  if v == nil then
    log("FAILED:", err and (err.code .. ": " .. tostring(err.message)) or "?")
    os.exit(1)
  end
  return v
end

-- a client that sees only the option given here (no FAVCRM_* variables, no config file)
local function new_client(opts)
  opts = opts or {}
  opts.url = url
  opts.getenv = function() return nil end
  opts.timeout = opts.timeout or 20
  return check(favcrm.new(opts))
end

local handlers = {}

-- initialize, tools_call: list the tools and call the first with {a=2, b=3}
local function basic()
  local c = new_client()
  local tools = check(c:tools())
  log("tools:", #tools)
  if tools[1] then
    -- the arguments are the suite's, not the tool's: no local validation
    local _, res = c:call(tools[1].name, { a = 2, b = 3 }, { validate = false, confirm = true })
    log("called", tools[1].name, res and (res.code or "ok") or "?")
  end
  c:close()
end
handlers["initialize"] = basic
handlers["tools_call"] = basic

-- json-schema-ref-no-deref: list the tools only (a network $ref must not be fetched)
handlers["json-schema-ref-no-deref"] = function()
  local c = new_client()
  check(c:tools())
  c:close()
end

-- json-schema-2020-12-preservation: echo the focal tool's inputSchema as we hold it
handlers["json-schema-2020-12-preservation"] = function()
  local c = new_client()
  check(c:tools())
  local focal = check(c:describe("json_schema_2020_12_tool"))
  check(c:call("json_schema_echo", { schema = focal.inputSchema }, { confirm = true }))
  c:close()
end

-- elicitation-sep1034-client-defaults: accept with no content; the library
-- fills the requested schema's defaults (SEP-1034)
handlers["elicitation-sep1034-client-defaults"] = function()
  local c = new_client({
    on_elicit = function(params)
      log("elicitation:", params.message)
      return { action = "accept", content = {} }
    end,
  })
  check(c:tools())
  check(c:call("test_client_elicitation_defaults", {}, { confirm = true }))
  c:close()
end

-- sse-retry: the call's stream is closed before the answer; the client
-- reconnects (GET, Last-Event-ID) after the stream's retry delay
handlers["sse-retry"] = function()
  local c = new_client()
  check(c:tools())
  check(c:call("test_reconnection", {}, { confirm = true }))
  c:close()
end

-- ---- 2026-07-28 scenarios (issue 16): the client negotiates the era itself ----

-- the scenario's context (MCP_CONFORMANCE_CONTEXT: JSON, e.g. the tool calls to make)
local function context()
  local text = os.getenv("MCP_CONFORMANCE_CONTEXT")
  local ctx = text and require("favcrm.json").decode_plain(text)
  return type(ctx) == "table" and ctx or {}
end

-- request-metadata: every request carries _meta and the version header; the
-- first is refused with -32022, and the client retries with a listed version
handlers["request-metadata"] = function()
  local c = new_client({
    on_elicit = function() return { action = "decline" } end,
    on_sample = function() return nil end,
    on_roots = function() return {} end,
  })
  check(c:tools())
  c:close()
end

-- sep-2322-client-request-state: multi-round-trip tool calls (input_required)
handlers["sep-2322-client-request-state"] = function()
  local c = new_client({
    on_elicit = function(params)
      log("elicitation:", params.message)
      return { action = "accept", content = { confirmed = true } }
    end,
  })
  check(c:tools())
  for _, name in ipairs({ "test_mrtr_echo_state", "test_mrtr_unrelated", "test_mrtr_no_state",
      "test_mrtr_no_result_type" }) do
    local _, res = c:call(name, {}, { confirm = true })
    log("called", name, res and (res.code or "ok") or "?")
  end
  c:close()
end

-- http-standard-headers: Mcp-Method on every POST, Mcp-Name on tools/call,
-- resources/read and prompts/get
handlers["http-standard-headers"] = function()
  local c = new_client()
  for _, t in ipairs(check(c:tools())) do
    check(c:call(t.name, {}, { confirm = true, validate = false }))
  end
  for _, r in ipairs(check(c:resources())) do check(c:read(r.uri)) end
  for _, p in ipairs(check(c:prompts())) do check(c:prompt(p.name)) end
  c:close()
end

-- http-custom-headers: the calls the scenario names, x-mcp-header arguments
-- mirrored as Mcp-Param-{Name} (null values omitted, unsafe ones base64)
handlers["http-custom-headers"] = function()
  local c = new_client()
  check(c:tools())
  for _, tc in ipairs(context().toolCalls or {}) do
    local _, res = c:call(tc.name, tc.arguments, { confirm = true, validate = false })
    log("called", tc.name, res and (res.code or "ok") or "?")
  end
  c:close()
end

-- http-invalid-tool-headers: tools with invalid x-mcp-header annotations are
-- left out of tools(); the valid one is called (every tool listed is)
handlers["http-invalid-tool-headers"] = function()
  local c = new_client()
  for _, t in ipairs(check(c:tools())) do
    local _, res = c:call(t.name, { region = "us-west1" }, { confirm = true, validate = false })
    log("called", t.name, res and (res.code or "ok") or "?")
  end
  c:close()
end

-- auth/*: the flow with the `oauth` option. The suite's authorization
-- server approves at once: `authorize` follows the authorization URL with
-- one GET (no redirect followed) and gives back the Location it answers
-- with. MCP_CONFORMANCE_CONTEXT carries pre-registered credentials
-- (client_id, client_secret, private_key_pem, signing_algorithm) for the
-- scenarios that use them; tokens are not stored (store = false).
local function follow_once(auth_url)
  local core = require("favcrm.core")
  local http = core.http_new({})
  local tid = assert(http:start({ method = "GET", url = auth_url, headers = {}, timeout_ms = 10000 }))
  local location
  local deadline = core.monotonic() + 10
  while core.monotonic() < deadline do
    for _, item in ipairs(http:poll(1000)) do
      if item.id == tid and item.type == "headers" then location = item.headers and item.headers.location end
      if item.id == tid and item.type == "done" then
        http:close()
        log("authorize: HTTP", item.status, location and "redirect" or "no redirect")
        return location
      end
    end
  end
  http:close()
  return nil
end

local function auth_flow()
  local ctx = context()
  local o = {
    redirect_uri = "http://localhost:3000/callback",
    authorize = follow_once,
    client_metadata_url = "https://conformance-test.local/client-metadata.json",
    store = false,
  }
  if type(ctx.client_id) == "string" then o.client_id = ctx.client_id end
  if type(ctx.client_secret) == "string" then o.client_secret = ctx.client_secret end
  if type(ctx.private_key_pem) == "string" then
    o.private_key_pem = ctx.private_key_pem
    o.signing_algorithm = ctx.signing_algorithm
  end
  if scenario:find("^auth/client%-credentials") then
    o.grant = "client_credentials"
    o.redirect_uri, o.authorize = nil, nil
  end
  local c = new_client({ oauth = o })
  local tools = check(c:tools())
  log("tools:", #tools)
  if tools[1] then
    local _, res = c:call(tools[1].name, {}, { validate = false, confirm = true })
    log("called", tools[1].name, res and (res.code and (res.code .. " " .. tostring(res.reason)) or "ok") or "?")
  end
  c:close()
end

local h = handlers[scenario] or (scenario:find("^auth/") and auth_flow)
if not h then
  log("no handler for scenario '" .. scenario .. "'")
  os.exit(3)
end
h()
log("done:", scenario)
os.exit(0)
