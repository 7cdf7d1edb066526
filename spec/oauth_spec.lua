-- favcrm.oauth and csrc/crypto.c (issue 17 items 1-4), the parts that need
-- no authorization server: the discovery order, WWW-Authenticate parsing,
-- PKCE, JWS signatures checked by the openssl command, the token store's
-- file (0600, atomic, entries kept apart), the option checks, and the
-- unauthorized error of a plain 401 (resource_metadata). The flows against
-- real authorization servers: `make conformance` (every auth scenario) and
-- spec/integration/oauth_spec.lua (the sandbox's OAuth mode).
local core = require("favcrm.core")
local favcrm = require("favcrm")
local oauth = require("favcrm.oauth")
local files = require("spec.support.files")

local q, slurp, spit = files.q, files.slurp, files.spit
local _, tmpname = files.tmpdir("oauth")

local sh_ok = files.sh

describe("oauth discovery order", function()
  it("protected-resource metadata: the header's URL alone, else path-aware then root", function()
    assert.same({ "https://rs.example/meta.json" },
      oauth.prm_urls("https://rs.example/mcp", "https://rs.example/meta.json"))
    assert.same({ "https://rs.example/.well-known/oauth-protected-resource/mcp",
      "https://rs.example/.well-known/oauth-protected-resource" }, oauth.prm_urls("https://rs.example/mcp"))
    assert.same({ "https://rs.example/.well-known/oauth-protected-resource" }, oauth.prm_urls("https://rs.example/"))
  end)

  it("authorization-server metadata: RFC 8414, then OpenID, path-aware variants (the spec's order)", function()
    assert.same({ "https://as.example/.well-known/oauth-authorization-server",
      "https://as.example/.well-known/openid-configuration" }, oauth.as_metadata_urls("https://as.example"))
    assert.same({ "https://as.example/.well-known/oauth-authorization-server/tenant1",
      "https://as.example/.well-known/openid-configuration/tenant1",
      "https://as.example/tenant1/.well-known/openid-configuration" },
      oauth.as_metadata_urls("https://as.example/tenant1/"))
  end)

  it("WWW-Authenticate: quoted and bare parameters, escapes, any case of Bearer", function()
    local p = oauth.parse_www_authenticate('bearer error="insufficient_scope", scope="a b",'
      .. ' resource_metadata="https://x/m\\"q", realm=api')
    assert.equal("insufficient_scope", p.error)
    assert.equal("a b", p.scope)
    assert.equal('https://x/m"q', p.resource_metadata)
    assert.equal("api", p.realm)
    assert.same({}, oauth.parse_www_authenticate(nil))
    assert.equal("https://x/m", oauth.resource_metadata_of('Bearer resource_metadata="https://x/m"'))
  end)

  it("query strings: percent and plus decoding, the first value wins", function()
    local p = oauth.parse_query("http://127.0.0.1:1/cb?code=a%2Fb+c&state=s&code=second&iss=https%3A%2F%2Fas")
    assert.equal("a/b c", p.code)
    assert.equal("s", p.state)
    assert.equal("https://as", p.iss)
    assert.equal("a%20b%2F~", oauth.urlencode("a b/~"))
  end)
end)

describe("oauth PKCE and the crypto core", function()
  it("S256: challenge = base64url(sha256(verifier)), 43 characters of the unreserved set", function()
    local v, c = oauth.pkce()
    assert.equal(43, #v)
    assert.truthy(v:match("^[%w%-_]+$"))
    assert.equal(c, core.base64url(core.sha256(v)))
    -- the same challenge as the openssl command computes
    local p = io.popen("printf %s " .. q(v) .. " | openssl dgst -sha256 -binary | openssl base64 -A")
    local b64 = p:read("*a")
    p:close()
    assert.equal(c, (b64:gsub("=+%s*$", ""):gsub("%+", "-"):gsub("/", "_")))
    local v2 = oauth.pkce()
    assert.are_not.equal(v, v2)
  end)

  it("base64 and base64url of every tail length; random_bytes bounds", function()
    assert.equal("", core.base64(""))
    assert.equal("Zg==", core.base64("f"))
    assert.equal("Zm8=", core.base64("fo"))
    assert.equal("Zm9v", core.base64("foo"))
    assert.equal("-_8", core.base64url("\251\255"))
    assert.equal(16, #core.random_bytes(16))
    assert.has_error(function() core.random_bytes(0) end)
    assert.has_error(function() core.random_bytes(1025) end)
    assert.equal(core.base64("x"), core.base64(core.secret("x")))
  end)

  -- verifies a compact JWS with the openssl command and the public key
  local function openssl_verifies(jwt, pub, alg)
    local dir = tmpname("jws")
    assert(core.mkdir_p(dir, tonumber("700", 8)))
    local h, p, s = jwt:match("^([^.]+)%.([^.]+)%.([^.]+)$")
    spit(dir .. "/input", h .. "." .. p)
    local b64 = s:gsub("-", "+"):gsub("_", "/")
    b64 = b64 .. string.rep("=", (4 - #b64 % 4) % 4)
    spit(dir .. "/sig.b64", b64 .. "\n")
    assert(sh_ok("openssl base64 -d -A -in " .. q(dir .. "/sig.b64") .. " -out " .. q(dir .. "/sig.raw")))
    local sigfile = dir .. "/sig.raw"
    if alg == "ES256" then
      -- JWS carries R||S; openssl wants DER: built here from the two halves
      local raw = slurp(sigfile)
      assert.equal(64, #raw)
      local function int(x)
        x = x:gsub("^%z+", "")
        if x == "" then x = "\0" end
        if x:byte(1) >= 128 then x = "\0" .. x end
        return "\2" .. string.char(#x) .. x
      end
      local body = int(raw:sub(1, 32)) .. int(raw:sub(33))
      spit(dir .. "/sig.der", "\48" .. string.char(#body) .. body)
      sigfile = dir .. "/sig.der"
    end
    return sh_ok("openssl dgst -sha256 -verify " .. q(pub) .. " -signature " .. q(sigfile) .. " "
      .. q(dir .. "/input") .. " >/dev/null 2>&1")
  end

  local function keypair(kind)
    local dir = tmpname("key")
    assert(core.mkdir_p(dir, tonumber("700", 8)))
    local gen = kind == "ec" and "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256"
      or "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048"
    assert(sh_ok(gen .. " -out " .. q(dir .. "/key.pem") .. " 2>/dev/null"))
    assert(sh_ok("openssl pkey -in " .. q(dir .. "/key.pem") .. " -pubout -out " .. q(dir .. "/pub.pem")))
    return slurp(dir .. "/key.pem"), dir .. "/pub.pem"
  end

  for _, case in ipairs({ { "ES256", "ec" }, { "RS256", "rsa" } }) do
    local alg, kind = case[1], case[2]
    it(alg .. ": a JWS the openssl command verifies with the public key, and rejects once altered", function()
      local pem, pub = keypair(kind)
      local jwt = assert(oauth.sign_jwt({ iss = "client", sub = "client", aud = "https://as" },
        core.secret(pem), alg))
      assert.is_true(openssl_verifies(jwt, pub, alg))
      local h, p, s = jwt:match("^([^.]+)%.([^.]+)%.([^.]+)$")
      local other = oauth.sign_jwt({ iss = "someone else" }, pem, alg)
      local forged = h .. "." .. other:match("^[^.]+%.([^.]+)") .. "." .. s
      assert.is_false(openssl_verifies(forged, pub, alg))
      assert.truthy(p)
    end)
  end

  it("a key of the wrong kind, or no key, is nil and a message naming the problem", function()
    local ec = keypair("ec")
    local jwt, err = oauth.sign_jwt({}, ec, "RS256")
    assert.is_nil(jwt)
    assert.matches("RSA", err)
    jwt, err = oauth.sign_jwt({}, "not a key", "ES256")
    assert.is_nil(jwt)
    assert.matches("PEM", err)
    assert.has_error(function() core.jws_sign(ec, "HS256", "x") end)
  end)
end)

describe("oauth token store", function()
  it("one 0600 file, written atomically, entries by id kept apart; the tokens as saved", function()
    local dir = tmpname("store")
    local path = dir .. "/favcrm/oauth-tokens.json"
    local store = oauth.file_store(path)
    assert(store.save("https://as https://rs/mcp", { access_token = core.secret("AT-1"),
      refresh_token = core.secret("RT-\"1"), expires_at = 1234, scope = "a b" }))
    assert(store.save("https://as2 https://rs/mcp", { access_token = "AT-2" }))
    local st = assert(core.stat(path))
    assert.equal(tonumber("600", 8), st.mode % 512)
    local e = store.load("https://as https://rs/mcp")
    assert.equal("AT-1", e.access_token)
    assert.equal('RT-"1', e.refresh_token)
    assert.equal(1234, e.expires_at)
    assert.equal("a b", e.scope)
    assert.equal("AT-2", store.load("https://as2 https://rs/mcp").access_token)
    -- deleting one (logout) keeps the other
    assert(store.save("https://as https://rs/mcp", nil))
    assert.is_nil(store.load("https://as https://rs/mcp"))
    assert.equal("AT-2", store.load("https://as2 https://rs/mcp").access_token)
    -- no temp file left behind
    local listing = io.popen("ls -A " .. q(dir .. "/favcrm")):read("*a")
    assert.is_nil(listing:find("tmp", 1, true))
  end)

  it("a file that is not a token file is left alone (io error, nothing written)", function()
    local dir = tmpname("bad")
    assert(core.mkdir_p(dir, tonumber("700", 8)))
    spit(dir .. "/t.json", "not json")
    local s = oauth.file_store(dir .. "/t.json")
    local ok, err = s.save("id", { access_token = "x" })
    assert.is_nil(ok)
    assert.equal("io", err.code)
    assert.equal("not json", slurp(dir .. "/t.json"))
    assert.is_nil(s.load("id"))
  end)

  it("the default lives beside config.toml", function()
    local p = oauth.file_store().path()
    if p then assert.matches("/favcrm/oauth%-tokens%.json$", p) end
  end)
end)

describe("the oauth option", function()
  local function opts(o) return { url = "http://127.0.0.1:9/mcp", getenv = function() return nil end, oauth = o } end
  local good = { redirect_uri = "http://127.0.0.1:8976/callback", authorize = function() end, store = false }

  it("is exclusive with api_key, unknown to stdio, and checked field by field", function()
    local o = opts(good)
    o.api_key = "fav_mcp_x"
    assert.has_error(function() favcrm.new(o) end, "favcrm.new: options 'oauth' and 'api_key' are exclusive")
    assert.has_error(function() favcrm.new({ command = { "true" }, oauth = good }) end)
    assert.has_error(function() favcrm.new(opts({ authorize = function() end })) end)
    assert.has_error(function() favcrm.new(opts({ redirect_uri = "x", authorize = 1 })) end)
    assert.has_error(function() favcrm.new(opts({ grant = "client_credentials" })) end)
    assert.has_error(function() favcrm.new(opts({ grant = "password", client_id = "a" })) end)
    assert.has_error(function() favcrm.new(opts({ redirect_uri = "http://127.0.0.1/cb", authorize = print,
      bogus = 1 })) end, "favcrm.new: unknown field 'oauth.bogus'")
    assert.has_error(function() favcrm.new(opts({ grant = "client_credentials", client_id = "c",
      private_key_pem = "k", signing_algorithm = "HS256" })) end)
    assert.has_error(function() favcrm.new(opts({ redirect_uri = "http://127.0.0.1/cb", authorize = print,
      client_metadata_url = "http://plain/doc.json" })) end)
    assert.has_error(function() favcrm.new(opts({ redirect_uri = "http://127.0.0.1/cb", authorize = print,
      store = { load = print } })) end)
    assert.truthy(favcrm.new(opts(good)))
    assert.truthy(favcrm.new(opts({ grant = "client_credentials", client_id = "c", client_secret = "s" })))
  end)

  it("with oauth, a key from the environment or the config file is not sent", function()
    local o = opts(good)
    o.getenv = function(n) if n == "FAVCRM_API_KEY" then return "fav_mcp_fromenv0000000000000000" end end
    local c = assert(favcrm.new(o))
    assert.is_false(c:has_api_key())
    assert.is_nil(c.session.auth)
    c:close()
  end)
end)
