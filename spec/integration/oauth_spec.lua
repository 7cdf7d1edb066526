-- OAuth 2.1 against a real authorization server (issue 17 items 1-4): the
-- sandbox's OAuth mode (sandbox/lib/oauth.mjs on the SDK's mcpAuthRouter:
-- dynamic registration, PKCE S256, rotating refresh tokens that are refused
-- when reused, 15-minute tokens on the sandbox clock, auto-approval in test
-- mode). The conformance suite's auth scenarios run in `make conformance`.
local favcrm = require("favcrm")
local core = require("favcrm.core")
local sandbox = require("spec.support.sandbox")
local keys = require("spec.support.keys")

local URL = os.getenv("FAVCRM_SANDBOX_OAUTH_URL")

-- authorize: one GET of the authorization URL, the Location it answers
-- with (the sandbox in test mode approves at once); counts the calls
local function approver(counter)
  return function(auth_url)
    counter.n = (counter.n or 0) + 1
    counter.last = auth_url
    local http = core.http_new({})
    local tid = assert(http:start({ method = "GET", url = auth_url, headers = {}, timeout_ms = 10000 }))
    local location
    local deadline = core.monotonic() + 10
    while core.monotonic() < deadline do
      for _, item in ipairs(http:poll(1000)) do
        if item.id == tid and item.type == "headers" then location = item.headers.location end
        if item.id == tid and item.type == "done" then
          http:close()
          return location
        end
      end
    end
    http:close()
  end
end

-- an in-memory store (the pinned {load=, save=} form)
local function memory_store()
  local kept, saves = {}, { n = 0 }
  return { load = function(id) return kept[id] end,
    save = function(id, t) saves.n = saves.n + 1; kept[id] = t end }, kept, saves
end

local function oauth_client(o, extra)
  local opts = { url = URL, getenv = function() return nil end, timeout = 20, oauth = o }
  for k, v in pairs(extra or {}) do opts[k] = v end
  return assert(favcrm.new(opts))
end

local function counts() return (sandbox.control("GET", "/_sandbox/oauth", nil, URL)) end

-- a request-level Lua transport (favcrm.resty's HTTP/1.1 on LuaSocket
-- dressed as a cosocket) that notes every request it is given
local function recording_transport(log)
  local resty = require("favcrm.resty")
  local shim = require("spec.support.luasocket_cosocket")
  local inner = resty.new({ socket = shim.new, sleep = shim.sleep })
  return {
    request = function(_, req)
      log[#log + 1] = req.method .. " " .. req.url:gsub("^%a+://[^/]+", "")
      return inner:request(req)
    end,
    sleep = function(_, ms) return inner:sleep(ms) end,
    close = function() log.closed = (log.closed or 0) + 1 end,
  }
end

local function seen(log, line)
  for _, l in ipairs(log) do if l == line then return true end end
  return false
end

local describe_oauth = URL and describe or pending
if not URL then
  pending("OAuth integration: FAVCRM_SANDBOX_OAUTH_URL is not set (spec/support/run.sh starts the sandbox "
    .. "with --oauth; run through `make test`)")
end

describe_oauth("OAuth against the sandbox's authorization server", function()
  before_each(function() sandbox.reset(URL) end)
  -- every token the server issued joins the run's secrets scan
  -- (spec/support/run.sh: none may appear in any output or log)
  after_each(function()
    local list = sandbox.control("GET", "/_sandbox/oauth/tokens", nil, URL)
    for _, t in ipairs(type(list) == "table" and list.tokens or {}) do
      keys.remember(type(t) == "table" and (t.token or t.value) or t)
    end
  end)

  it("a 401 without the oauth option is unauthorized with resource_metadata (OAuth is offered)", function()
    local c = assert(favcrm.new({ url = URL, getenv = function() return nil end, timeout = 10 }))
    local res, err = c:tools()
    assert.is_nil(res)
    assert.equal("unauthorized", err.code)
    assert.equal(401, err.status)
    assert.equal(URL:match("^(https?://[^/]+)") .. "/.well-known/oauth-protected-resource/mcp", err.resource_metadata)
    c:close()
  end)

  it("discovery, dynamic registration, PKCE S256, state, resource and iss; the store gets the tokens", function()
    local asked = {}
    local store, kept = memory_store()
    local c = oauth_client({ redirect_uri = "http://127.0.0.1:8976/callback", authorize = approver(asked),
      store = store })
    local tools = assert(c:tools())
    assert.truthy(#tools > 0)
    assert.equal(1, asked.n)
    local q = require("favcrm.oauth").parse_query(asked.last)
    assert.equal("S256", q.code_challenge_method)
    assert.equal(43, #q.code_challenge)
    assert.truthy(q.state and #q.state >= 16)
    assert.equal(URL, q.resource)
    assert.equal("mcp offline_access", q.scope) -- scopes_supported, no scope in the challenge
    local k = counts()
    assert.equal(1, k.registrations)
    assert.equal(1, k.authorizations)
    -- kept under "issuer resource"
    local id, entry = next(kept)
    assert.matches(" " .. URL:gsub("%p", "%%%0") .. "$", id)
    assert.truthy(core.is_secret(entry.access_token))
    -- printed masked, never as its text
    assert.is_nil(tostring(entry.access_token):find(entry.access_token:reveal(), 1, true))
    -- a second client with the same store asks nobody: the stored token is used
    local asked2 = {}
    local c2 = oauth_client({ redirect_uri = "http://127.0.0.1:8976/callback", authorize = approver(asked2),
      store = store })
    assert(c2:tools())
    assert.is_nil(asked2.n)
    c:close()
    c2:close()
  end)

  it("the default store: oauth-tokens.json in the config folder, 0600; a later client asks nobody", function()
    local asked = {}
    local c = oauth_client({ redirect_uri = "http://127.0.0.1:8976/callback", authorize = approver(asked) })
    assert(c:tools())
    c:close()
    local path = require("favcrm.oauth").file_store().path()
    local st = assert(core.stat(path))
    assert.equal(tonumber("600", 8), st.mode % 512)
    local c2 = oauth_client({ redirect_uri = "http://127.0.0.1:8976/callback", authorize = approver(asked) })
    assert(c2:tools())
    c2:close()
    assert.equal(1, asked.n)
    assert.equal(1, counts().authorizations)
    -- one entry, keyed "<issuer> <resource>"
    local doc = require("cjson").decode(require("spec.support.files").slurp(path))
    local id = next(doc)
    assert.matches(" " .. URL:gsub("%p", "%%%0") .. "$", id)
    os.remove(path)
  end)

  it("authorize returning nil is cancelled; the call's deadline does not count the person's wait", function()
    local c = oauth_client({ redirect_uri = "http://127.0.0.1:8976/callback", store = false,
      authorize = function() return nil end })
    local res, err = c:tools()
    assert.is_nil(res)
    assert.equal("cancelled", err.code)
    c:close()
    -- a person slower than the call's timeout: the call still succeeds
    -- (the flow's own work spends the timeout: 4x under valgrind)
    local inner, timeout = approver({}), sandbox.stretch(1)
    local slow = oauth_client({ redirect_uri = "http://127.0.0.1:8976/callback", store = false,
      authorize = function(u)
        local t = core.monotonic() + timeout + 0.5
        while core.monotonic() < t do core.http_new({}):poll(50) end
        return inner(u)
      end }, { timeout = timeout })
    assert(slow:tools())
    slow:close()
  end)

  it("in call_async, authorize may coroutine.yield() while the person decides; other calls run meanwhile", function()
    local yields, approve = 0, approver({})
    local c = oauth_client({ redirect_uri = "http://127.0.0.1:8976/callback", store = false,
      authorize = function(u)
        for _ = 1, 3 do
          coroutine.yield()
          yields = yields + 1
        end
        return approve(u)
      end })
    local h = c:call_async("list_services", {})
    local res, err = h:wait(20)
    assert.is_nil(err and err.message)
    assert.truthy(res)
    assert.equal(3, yields)
    assert.equal(1, counts().authorizations)
    c:close()
  end)

  it("a denied consent is unauthorized, reason consent_denied", function()
    sandbox.control("POST", "/_sandbox/oauth", { deny = 1 }, URL)
    local c = oauth_client({ redirect_uri = "http://127.0.0.1:8976/callback", store = false,
      authorize = approver({}) })
    local res, err = c:tools()
    assert.is_nil(res)
    assert.equal("unauthorized", err.code)
    assert.equal("consent_denied", err.reason)
    c:close()
  end)

  it("expired on the server: concurrent calls get 401 and exactly one refresh serves them all", function()
    local asked = {}
    local c = oauth_client({ redirect_uri = "http://127.0.0.1:8976/callback", authorize = approver(asked),
      store = false })
    assert(c:tools())
    sandbox.advance(16 * 60, URL) -- past the 15-minute access token
    local calls = {}
    for i = 1, 8 do calls[i] = { "list_services", {} } end
    local results, errs = c:call_many(calls, { concurrency = 8 })
    for i = 1, 8 do assert.is_nil(errs[i] and errs[i].message, "call " .. i) ; assert.truthy(results[i]) end
    local k = counts()
    assert.equal(1, k.refreshes)
    assert.equal(0, k.refresh_reuse_refused)
    assert.equal(1, asked.n) -- no new authorization
    c:close()
  end)

  it("about to expire on the client: refreshed once before the calls go out", function()
    local c = oauth_client({ redirect_uri = "http://127.0.0.1:8976/callback", authorize = approver({}),
      store = false })
    assert(c:tools())
    c.oauth.tokens.expires_at = os.time() + 5 -- within the refresh margin
    local calls = {}
    for i = 1, 8 do calls[i] = { "list_services", {} } end
    local results, errs = c:call_many(calls, { concurrency = 8 })
    for i = 1, 8 do assert.is_nil(errs[i] and errs[i].message); assert.truthy(results[i]) end
    local k = counts()
    assert.equal(1, k.refreshes)
    assert.equal(0, k.bearer_refused - 1) -- only the very first call's 401
    c:close()
  end)

  it("a Lua transport carries OAuth's requests too: discovery, registration, token, refresh", function()
    local log = {}
    local c = oauth_client({ redirect_uri = "http://127.0.0.1:8976/callback", authorize = approver({}),
      store = false }, { transport = recording_transport(log) })
    assert(c:tools())
    assert.equal("lua", c.oauth.http_kind)
    local path = URL:gsub("^%a+://[^/]+", "")
    for _, line in ipairs({ "POST " .. path, "GET /.well-known/oauth-protected-resource" .. path,
      "GET /.well-known/oauth-authorization-server", "POST /register", "POST /token" }) do
      assert.is_true(seen(log, line), line .. " not among " .. table.concat(log, ", "))
    end
    local k = counts()
    assert.equal(1, k.registrations)
    assert.equal(1, k.code_exchanges)
    -- a refresh goes the same way
    local n = #log
    sandbox.advance(16 * 60, URL)
    assert(c:call("list_services", {}))
    assert.equal(1, counts().refreshes)
    local after = {}
    for i = n + 1, #log do after[#after + 1] = log[i] end
    assert.is_true(seen(after, "POST /token"), table.concat(after, ", "))
    -- OAuth's transport borrows the object: closing the client closes it once
    c:close()
    assert.equal(1, log.closed)
  end)

  it("the token request spends the call's one deadline: timeout, over a Lua transport and over libcurl", function()
    for _, lua_transport in ipairs({ true, false }) do
      sandbox.reset(URL)
      sandbox.control("POST", "/_sandbox/oauth", { hold_token = true }, URL)
      local log = {}
      local c = oauth_client({ redirect_uri = "http://127.0.0.1:8976/callback", authorize = approver({}),
        store = false }, { timeout = sandbox.stretch(2),
        transport = lua_transport and recording_transport(log) or nil })
      local res, err = c:tools()
      local held = counts().token_held
      sandbox.control("POST", "/_sandbox/oauth", { hold_token = false }, URL)
      assert.is_nil(res)
      assert.equal("timeout", err.code, tostring(err))
      assert.equal(1, held)
      assert.equal(lua_transport and "lua" or "libcurl", c.oauth.http_kind)
      if lua_transport then assert.is_true(seen(log, "POST /token"), table.concat(log, ", ")) end
      c:close()
    end
  end)

  -- a client registered with a secret (RFC 7591) that authenticates with
  -- `method`, over LuaSocket: -> the registration
  local function register_cc(method)
    local cjson = require("cjson")
    local body = cjson.encode({ redirect_uris = { "http://127.0.0.1:8976/callback" }, client_name = "cc",
      grant_types = { "client_credentials" }, token_endpoint_auth_method = method })
    local got = {}
    local _, st = require("socket.http").request({ url = URL:match("^(https?://[^/]+)") .. "/register",
      method = "POST", headers = { ["content-type"] = "application/json", ["content-length"] = tostring(#body) },
      source = require("ltn12").source.string(body), sink = require("ltn12").sink.table(got) })
    assert.equal(201, st)
    local reg = cjson.decode(table.concat(got))
    keys.remember(reg.client_secret)
    return reg
  end

  for _, method in ipairs({ "client_secret_post", "client_secret_basic" }) do
    it("the client credentials grant (" .. method .. "), over libcurl and over a Lua transport", function()
      -- a pre-registered client takes client_secret_basic where the
      -- metadata lists it (the SDK's lists client_secret_post and none)
      local methods = method == "client_secret_basic" and { method, "client_secret_post" } or {}
      sandbox.control("POST", "/_sandbox/oauth", { auth_methods = methods }, URL)
      finally(function() sandbox.control("POST", "/_sandbox/oauth", { auth_methods = {} }, URL) end)
      local reg = register_cc(method)
      for _, lua_transport in ipairs({ false, true }) do
        local log = {}
        local before = counts().client_credentials or 0
        local c = oauth_client({ grant = "client_credentials", client_id = reg.client_id,
          client_secret = core.secret(reg.client_secret), store = false },
          { transport = lua_transport and recording_transport(log) or nil })
        assert(c:tools())
        assert(c:call("list_services", {}))
        assert.equal(lua_transport and "lua" or "libcurl", c.oauth.http_kind)
        assert.equal(method, c.oauth.client.method)
        if lua_transport then assert.is_true(seen(log, "POST /token"), table.concat(log, ", ")) end
        local k = counts()
        assert.equal(before + 1, k.client_credentials)
        assert.equal(0, k.authorizations)
        c:close()
      end
      -- a wrong secret: refused, and the secret is in no message
      local refused = counts().client_credentials_refused or 0
      local c = oauth_client({ grant = "client_credentials", client_id = reg.client_id,
        client_secret = core.secret("wrong-" .. reg.client_secret), store = false })
      local res, err = c:tools()
      assert.is_nil(res)
      assert.equal("unauthorized", err.code)
      assert.equal("token_failed", err.reason)
      assert.equal("invalid_client", err.oauth_error)
      assert.is_nil(tostring(err):find(reg.client_secret, 1, true))
      assert.equal(refused + 1, counts().client_credentials_refused)
      c:close()
    end)
  end

  it("a refused refresh (the grant is gone) falls back to a new authorization", function()
    local asked = {}
    local c = oauth_client({ redirect_uri = "http://127.0.0.1:8976/callback", authorize = approver(asked),
      store = false })
    assert(c:tools())
    sandbox.advance(31 * 86400, URL) -- past the 30-day refresh token too
    assert(c:call("list_services", {}))
    assert.equal(2, asked.n)
    assert.equal(1, counts().refresh_refused)
    c:close()
  end)
end)
