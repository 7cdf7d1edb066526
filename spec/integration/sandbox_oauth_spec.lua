-- The sandbox's OAuth authorization server mode (sandbox/lib/oauth.mjs), as
-- the specs of `favcrm login --oauth` and of the OAuth client rely on it:
-- FavCRM's behaviour (PKCE S256 only, dynamic registration, rotating refresh
-- tokens, 15-minute access tokens on the sandbox clock, revocation) and the
-- counts its control endpoint reports. Spoken to with LuaSocket, so nothing
-- here depends on the client under test.
local http = require("socket.http")
local ltn12 = require("ltn12")
local cjson = require("cjson")
local sandbox = require("spec.support.sandbox")
local keys = require("spec.support.keys")

local URL = sandbox.oauth_url()
local ORIGIN = URL:match("^(https?://[^/]+)")
local REDIRECT = "http://127.0.0.1:8976/callback"

local function esc(s)
  return (tostring(s):gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end))
end

local function form(t)
  local parts = {}
  for k, v in pairs(t) do parts[#parts + 1] = esc(k) .. "=" .. esc(v) end
  return table.concat(parts, "&")
end

-- One HTTP exchange: status, decoded JSON body (or the text), headers.
local function req(method, url, body, headers)
  local out = {}
  headers = headers or {}
  if body then headers["content-length"] = tostring(#body) end
  local _, status, h = http.request({ url = url, method = method, redirect = false, headers = headers,
    source = body and ltn12.source.string(body) or nil, sink = ltn12.sink.table(out) })
  local text = table.concat(out)
  local ok, decoded = pcall(cjson.decode, text)
  return status, ok and decoded or text, h or {}
end

local function post_form(path, t)
  return req("POST", ORIGIN .. path, form(t), { ["content-type"] = "application/x-www-form-urlencoded" })
end

-- One MCP request with this bearer: initialize for a 2025 sandbox, the
-- stateless server/discover of MCP 2026-07-28 for a 2026-only one.
local function mcp(token)
  local body, headers
  if sandbox.speaks("2025") then
    body = cjson.encode({ jsonrpc = "2.0", id = 1, method = "initialize", params = {
      protocolVersion = "2025-11-25", capabilities = {}, clientInfo = { name = "spec", version = "1" } } })
    headers = {}
  else
    body = cjson.encode({ jsonrpc = "2.0", id = 1, method = "server/discover", params = { _meta = {
      ["io.modelcontextprotocol/protocolVersion"] = "2026-07-28",
      ["io.modelcontextprotocol/clientCapabilities"] = {},
      ["io.modelcontextprotocol/clientInfo"] = { name = "spec", version = "1" } } } })
    headers = { ["mcp-protocol-version"] = "2026-07-28", ["mcp-method"] = "server/discover" }
  end
  headers["content-type"] = "application/json"
  headers.accept = "application/json, text/event-stream"
  headers.authorization = token and ("Bearer " .. token) or nil
  return req("POST", URL, body, headers)
end

-- base64url(sha256(v)) through openssl (a test dependency: .ci/deps.sh)
local function s256(v)
  local p = assert(io.popen("printf %s '" .. v .. "' | openssl dgst -sha256 -binary | base64"))
  local b = p:read("*a"):gsub("%s", "")
  p:close()
  return (b:gsub("+", "-"):gsub("/", "_"):gsub("=", ""))
end

local seq = 0
local function verifier()
  seq = seq + 1
  return string.format("spec-verifier-%d-%d-%s", os.time(), seq, string.rep("x", 40))
end

local function register()
  local st, c = req("POST", ORIGIN .. "/register", cjson.encode({ redirect_uris = { REDIRECT },
    token_endpoint_auth_method = "none", client_name = "spec" }), { ["content-type"] = "application/json" })
  assert.equal(201, st)
  return c.client_id
end

local function query(u, name)
  local v = u:match("[?&]" .. name .. "=([^&#]*)")
  return v and (v:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

-- The authorization request, approved at once in test mode: the Location.
local function authorize(client_id, v, extra)
  local q = { response_type = "code", client_id = client_id, redirect_uri = REDIRECT, state = "st8",
    code_challenge = s256(v), code_challenge_method = "S256", resource = URL }
  for k, x in pairs(extra or {}) do q[k] = x end
  local st, _, h = req("GET", ORIGIN .. "/authorize?" .. form(q))
  assert.equal(302, st)
  return h.location
end

local function grant()
  local id, v = register(), verifier()
  local loc = authorize(id, v)
  local st, t = post_form("/token", { grant_type = "authorization_code", code = query(loc, "code"),
    code_verifier = v, client_id = id, redirect_uri = REDIRECT, resource = URL })
  assert.equal(200, st, cjson.encode(t))
  keys.remember(t.access_token)
  keys.remember(t.refresh_token)
  return t, id
end

local function counts() return sandbox.control("GET", "/_sandbox/oauth", nil, URL) end

describe("the sandbox in OAuth mode", function()
  before_each(function() sandbox.reset(URL) end)

  it("answers /mcp without a token 401 with resource_metadata, and publishes both metadata documents", function()
    local st, _, h = mcp(nil)
    assert.equal(401, st)
    local www = h["www-authenticate"]
    assert.truthy(www:find('^Bearer '))
    assert.equal(ORIGIN .. "/.well-known/oauth-protected-resource/mcp", www:match('resource_metadata="([^"]+)"'))
    local _, prm = req("GET", ORIGIN .. "/.well-known/oauth-protected-resource/mcp")
    assert.equal(URL, prm.resource)
    assert.same({ ORIGIN .. "/" }, prm.authorization_servers)
    local _, as = req("GET", ORIGIN .. "/.well-known/oauth-authorization-server")
    assert.equal(ORIGIN .. "/", as.issuer)
    assert.same({ "S256" }, as.code_challenge_methods_supported)
    assert.equal(ORIGIN .. "/register", as.registration_endpoint)
    assert.equal(ORIGIN .. "/revoke", as.revocation_endpoint)
  end)

  it("refuses PKCE plain and a wrong verifier; a code works once", function()
    local id, v = register(), verifier()
    local loc = authorize(id, v, { code_challenge_method = "plain", code_challenge = v })
    assert.truthy(loc:find("^" .. REDIRECT:gsub("%p", "%%%0") .. "%?"))
    assert.equal("invalid_request", query(loc, "error"))
    loc = authorize(id, v)
    assert.equal("st8", query(loc, "state"))
    assert.equal(ORIGIN .. "/", query(loc, "iss"))
    local code = query(loc, "code")
    local st, body = post_form("/token", { grant_type = "authorization_code", code = code,
      code_verifier = verifier(), client_id = id, redirect_uri = REDIRECT })
    assert.equal(400, st)
    assert.equal("invalid_grant", body.error)
    st, body = post_form("/token", { grant_type = "authorization_code", code = code, code_verifier = v,
      client_id = id, redirect_uri = REDIRECT, resource = URL })
    assert.equal(200, st)
    keys.remember(body.access_token)
    keys.remember(body.refresh_token)
    assert.equal(900, body.expires_in)
    assert.equal("mcp", body.scope)
    st = post_form("/token", { grant_type = "authorization_code", code = code, code_verifier = v,
      client_id = id, redirect_uri = REDIRECT })
    assert.equal(400, st)
    local c = counts()
    assert.equal(1, c.tokens_issued)
    assert.equal(1, c.code_exchanges)
    assert.equal(1, c.registrations)
  end)

  it("expires access tokens after 15 minutes of the sandbox clock and rotates refresh tokens", function()
    local t, id = grant()
    assert.equal(200, (mcp(t.access_token)))
    sandbox.advance(14 * 60, URL)
    assert.equal(200, (mcp(t.access_token)))
    sandbox.advance(61, URL)
    local st, _, h = mcp(t.access_token)
    assert.equal(401, st)
    assert.truthy(h["www-authenticate"]:find("expired", 1, true))
    local st2, t2 = post_form("/token", { grant_type = "refresh_token", refresh_token = t.refresh_token,
      client_id = id })
    assert.equal(200, st2)
    keys.remember(t2.access_token)
    keys.remember(t2.refresh_token)
    assert.are_not.equal(t.refresh_token, t2.refresh_token)
    assert.equal(200, (mcp(t2.access_token)))
    assert.equal(1, counts().refreshes)
    -- the old refresh token again: refused, and the grant it belongs to ends
    local st3, body = post_form("/token", { grant_type = "refresh_token", refresh_token = t.refresh_token,
      client_id = id })
    assert.equal(400, st3)
    assert.equal("invalid_grant", body.error)
    local c = counts()
    assert.equal(1, c.refreshes)
    assert.equal(1, c.refresh_reuse_refused)
    assert.equal(401, (mcp(t2.access_token)))
    assert.equal(400, (post_form("/token", { grant_type = "refresh_token", refresh_token = t2.refresh_token,
      client_id = id })))
  end)

  it("revokes a grant through /revoke, and refuses authorizations when told to", function()
    local t, id = grant()
    local st = post_form("/revoke", { token = t.refresh_token, token_type_hint = "refresh_token", client_id = id })
    assert.equal(200, st)
    assert.equal(401, (mcp(t.access_token)))
    assert.equal(1, counts().revocations)
    sandbox.control("POST", "/_sandbox/oauth", { deny = 1 }, URL)
    local loc = authorize(register(), verifier())
    assert.equal("access_denied", query(loc, "error"))
    assert.equal(1, counts().denied)
    assert.truthy(query(authorize(register(), verifier()), "code"))
  end)

  it("still takes an API key on /mcp, and lists what it issued for leak scans", function()
    local key = sandbox.account(nil, URL)
    assert.equal(200, (mcp(key)))
    local t = grant()
    local all = sandbox.oauth_secrets(URL)
    local seen = {}
    for _, s in ipairs(all) do seen[s] = true end
    assert.is_true(seen[t.access_token] and seen[t.refresh_token])
  end)
end)
