--- favcrm.oauth: OAuth 2.1 authorization for MCP servers over HTTP (the
-- authorization pages of the MCP specification, 2025-11-25 and later).
--
-- A client made with `favcrm.new{url = ..., oauth = {...}}` holds one
-- OAuth object. The session asks it for the bearer token of each request
-- (`current`: refreshed before expiry) and hands it every 401 and 403
-- (`handle`): discovery (RFC 9728 protected-resource metadata, RFC 8414 and
-- OpenID authorization-server metadata, the 2025-03-26 fallbacks), client
-- registration (pre-registered, Client ID Metadata Document, RFC 7591
-- dynamic registration), the authorization code flow with PKCE S256, state,
-- `resource` (RFC 8707) and `iss` checks (RFC 9207), step-up on 403
-- insufficient_scope, the client credentials grant, token endpoint client
-- authentication (client_secret_basic, client_secret_post, none,
-- private_key_jwt with ES256 or RS256) and refresh.
--
-- Tokens are favcrm.Secret values (masked when printed, wiped when closed,
-- protected from every error message), kept by the store (default: the
-- config folder, 0600, atomically, under a lock). Everything runs inside
-- the call's deadline except the person's wait in `authorize`, which has
-- its own limit (`authorize_timeout`, default 300 s) and moves the call's
-- deadline on by the time it took.
local core = require("favcrm.core")
local json = require("favcrm.json")
local errors = require("favcrm.errors")
local urls = require("favcrm.url")

local M = {}
local OAuth = {}
OAuth.__index = OAuth

local now = core.monotonic
-- a token this close to its expiry is refreshed before it is sent
M.REFRESH_MARGIN = 60
-- authorization attempts for one request (the first and the step-ups)
M.MAX_ATTEMPTS = 3
-- the person's wait in `authorize`, by default
M.AUTHORIZE_TIMEOUT = 300
-- the largest answer of an authorization server we read
local MAX_BODY = 1024 * 1024
local JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

local OPTIONS = {
  redirect_uri = "string", authorize = "function", client_id = "string",
  client_secret = "string|userdata", client_metadata_url = "string", scope = "string",
  grant = "string", private_key_pem = "string|userdata", signing_algorithm = "string",
  store = "boolean|table", authorize_timeout = "number", client_name = "string",
}

-- ---- small helpers ----------------------------------------------------------

local function reveal(v)
  if v ~= nil and type(v) == "userdata" then return v:reveal() end
  return v
end

local function secret(v)
  if v == nil or type(v) == "userdata" then return v end
  local s = core.secret(v)
  errors.protect(s)
  return s
end

--- oauth.urlencode(s) -> s percent-encoded for a query or a form body
-- (RFC 3986 unreserved characters kept).
---@param s string
---@return string
function M.urlencode(s)
  return (tostring(s):gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end))
end
local enc = M.urlencode

local function decode_component(s)
  s = s:gsub("+", " ")
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

--- oauth.parse_query(url) -> table of the query parameters of url (the
-- first value of each name).
---@param u string a URL or a query string
---@return table params
function M.parse_query(u)
  local q = u:match("%?([^#]*)") or (u:find("=", 1, true) and not u:find("://", 1, true) and u) or ""
  local out = {}
  for pair in q:gmatch("[^&]+") do
    local k, v = pair:match("^([^=]*)=?(.*)$")
    k = decode_component(k)
    if out[k] == nil then out[k] = decode_component(v) end
  end
  return out
end

local function form(fields, order)
  local parts = {}
  for _, k in ipairs(order) do
    local v = fields[k]
    if v ~= nil then parts[#parts + 1] = enc(k) .. "=" .. enc(reveal(v)) end
  end
  return table.concat(parts, "&")
end

-- The same form as a favcrm.Secret (core.secret_form): built in C from
-- the fields as they are, so a secret among them (client_secret,
-- refresh_token, code_verifier, client_assertion) never becomes a Lua
-- string. For the libcurl transport, which takes a secret body.
local function secret_form(fields, order)
  local list = {}
  for _, k in ipairs(order) do
    local v = fields[k]
    if v ~= nil then list[#list + 1] = k; list[#list + 1] = v end
  end
  return core.secret_form(list)
end

--- oauth.parse_www_authenticate(header) -> table of the Bearer challenge's
-- parameters (resource_metadata, scope, error, ...), or {}.
---@param h string|nil the WWW-Authenticate header
---@return table params
function M.parse_www_authenticate(h)
  local out = {}
  if type(h) ~= "string" then return out end
  local rest = h:match("[Bb][Ee][Aa][Rr][Ee][Rr]%s+(.*)$") or h
  local i = 1
  while i <= #rest do
    local k, eq = rest:match("^[%s,]*([%w_%-]+)%s*()=", i)
    if not k then break end
    local pos = eq + 1
    while rest:sub(pos, pos):find("%s") do pos = pos + 1 end
    local v
    if rest:sub(pos, pos) == '"' then
      local buf, j = {}, pos + 1
      while j <= #rest do
        local c = rest:sub(j, j)
        if c == "\\" then buf[#buf + 1] = rest:sub(j + 1, j + 1); j = j + 2
        elseif c == '"' then break
        else buf[#buf + 1] = c; j = j + 1 end
      end
      v, i = table.concat(buf), j + 1
    else
      local e = rest:find("[,%s]", pos) or (#rest + 1)
      v, i = rest:sub(pos, e - 1), e
    end
    out[k:lower()] = v
  end
  return out
end

--- oauth.pkce() -> verifier, challenge: a code verifier of 43 characters
-- from 32 CSPRNG bytes, and its S256 challenge (RFC 7636).
---@return string verifier
---@return string challenge
function M.pkce()
  local verifier = core.base64url(core.random_bytes(32))
  return verifier, core.base64url(core.sha256(verifier))
end

--- oauth.sign_jwt(claims, pem, alg) -> compact JWS, or nil, message.
-- alg: "ES256" (default) or "RS256".
---@param claims table the payload
---@param pem string|userdata the private key (PEM; a favcrm.secret is fine)
---@param alg? string "ES256" or "RS256"
---@return string|nil jwt
---@return string|nil message
function M.sign_jwt(claims, pem, alg)
  alg = alg or "ES256"
  local input = core.base64url(json.wire({ alg = alg, typ = "JWT" })) .. "." .. core.base64url(json.wire(claims))
  local sig, err = core.jws_sign(pem, alg, input)
  if not sig then return nil, err end
  return input .. "." .. core.base64url(sig)
end

-- Strips one trailing slash (for comparing issuers and resources).
local function trim(u) return (u:gsub("/$", "")) end

-- The URL of the well-known document `name` for `base` (path-aware: the
-- well-known segment goes between the origin and the path, RFC 8414 3.1).
local function well_known(base, name, path_after)
  local o = base:match("^(%a[%w+.-]*://[^/?#]*)")
  local p = base:sub(#o + 1):gsub("[?#].*$", ""):gsub("/$", "")
  if path_after then return o .. p .. "/.well-known/" .. name end
  return o .. "/.well-known/" .. name .. p, p
end

--- oauth.prm_urls(server_url, header_url) -> the protected-resource
-- metadata URLs to try, in the specification's order: the
-- WWW-Authenticate `resource_metadata`, else the path-aware well-known
-- URL, then the root one.
---@param server_url string the MCP endpoint
---@param header_url? string resource_metadata from WWW-Authenticate
---@return string[] urls
function M.prm_urls(server_url, header_url)
  if header_url then return { header_url } end
  local u, p = well_known(server_url, "oauth-protected-resource")
  local list = { u }
  if p ~= "" then list[2] = (well_known(server_url:match("^(%a[%w+.-]*://[^/?#]*)"), "oauth-protected-resource")) end
  return list
end

--- oauth.as_metadata_urls(issuer) -> the authorization-server metadata
-- URLs to try for an issuer, in the specification's order (RFC 8414, then
-- OpenID Connect discovery, path-aware variants first).
---@param issuer string the authorization server's URL
---@return string[] urls
function M.as_metadata_urls(issuer)
  local a, p = well_known(issuer, "oauth-authorization-server")
  if p == "" then return { a, (well_known(issuer, "openid-configuration")) } end
  return { a, (well_known(issuer, "openid-configuration")), (well_known(issuer, "openid-configuration", true)) }
end

-- The unauthorized error of a failed step.
local function fail(reason, message, fields)
  fields = fields or {}
  fields.reason = reason
  return errors.new("unauthorized", message, fields)
end

-- ---- construction -----------------------------------------------------------

--- oauth.check_options(o, level): raises on a malformed `oauth` option.
---@param o table the option
---@param level? integer error level
function M.check_options(o, level)
  level = (level or 1) + 1
  if type(o) ~= "table" then error("favcrm.new: option 'oauth' must be a table", level) end
  for k, v in pairs(o) do
    local want = OPTIONS[k]
    if not want then error("favcrm.new: unknown field 'oauth." .. tostring(k) .. "'", level) end
    local ok = false
    for t in want:gmatch("[^|]+") do if type(v) == t then ok = true end end
    if not ok or (type(v) == "userdata" and not core.is_secret(v)) then
      local what = want:gsub("|", " or "):gsub("userdata", "favcrm.secret")
      error("favcrm.new: option 'oauth." .. k .. "' must be a " .. what .. " (got " .. type(v) .. ")", level)
    end
  end
  local grant = o.grant or "authorization_code"
  if grant ~= "authorization_code" and grant ~= "client_credentials" then
    error("favcrm.new: option 'oauth.grant' must be \"authorization_code\" or \"client_credentials\"", level)
  end
  if grant == "authorization_code" then
    if not o.redirect_uri or not o.authorize then
      error("favcrm.new: option 'oauth' needs redirect_uri and authorize for the authorization code grant", level)
    end
    local p = urls.parse(o.redirect_uri)
    if not p and not o.redirect_uri:find("^%a[%w+.-]*:") then
      error("favcrm.new: option 'oauth.redirect_uri' must be an absolute URI", level)
    end
  else
    if not o.client_id or not (o.client_secret or o.private_key_pem) then
      error("favcrm.new: the client_credentials grant needs oauth.client_id and oauth.client_secret "
        .. "or oauth.private_key_pem", level)
    end
  end
  if o.signing_algorithm and o.signing_algorithm ~= "ES256" and o.signing_algorithm ~= "RS256" then
    error("favcrm.new: option 'oauth.signing_algorithm' must be \"ES256\" or \"RS256\"", level)
  end
  if o.client_metadata_url and (urls.parse(o.client_metadata_url) or {}).scheme ~= "https" then
    error("favcrm.new: option 'oauth.client_metadata_url' must be an https:// URL", level)
  end
  if type(o.store) == "table" and (type(o.store.load) ~= "function" or type(o.store.save) ~= "function") then
    error("favcrm.new: option 'oauth.store' must be false or a table with load and save functions", level)
  end
  if o.store == true then error("favcrm.new: option 'oauth.store' must be false, nil or {load=, save=}", level) end
  if o.authorize_timeout and not (o.authorize_timeout > 0 and o.authorize_timeout < math.huge) then
    error("favcrm.new: option 'oauth.authorize_timeout' must be a positive number of seconds", level)
  end
end

--- oauth.new(o, ctx) -> the client's OAuth state. o: the `oauth` option
-- (checked); ctx: url (the MCP endpoint), http (options for core.http_new:
-- user_agent, ca_file, connect_timeout_ms), client_name, session (set later).
---@param o table the `oauth` option
---@param ctx table url, http, client_name
---@return table oauth
function M.new(o, ctx)
  M.check_options(o, 2)
  local store = o.store
  if store == nil then store = M.file_store() end
  local self = setmetatable({
    o = o,
    url = ctx.url,
    http_opts = ctx.http or {},
    client_name = o.client_name or ctx.client_name or "favcrm-lua",
    grant = o.grant or "authorization_code",
    store = store or nil,
    tokens = nil,     -- {access_token=secret, refresh_token=secret, expires_at, scope, ...}
    disc = nil,       -- discovery: {prm, resource, issuer, meta}
    client = nil,     -- {client_id, client_secret, method}
    scope = nil,      -- the scope last requested
    busy = nil,       -- a waitable while a flow is under way (single flight)
    refreshes = 0,    -- how many refresh grants were made (doctor, specs)
    authorizations = 0,
    client_secret = secret(o.client_secret),
    private_key = secret(o.private_key_pem),
  }, OAuth)
  return self
end

-- ---- HTTP to the authorization server ---------------------------------------

-- The transport OAuth's requests go over, made at the first one: the
-- client's own kind. A session over a Lua transport (favcrm.resty, any
-- `transport` object favcrm.transport.custom wraps, or a session-level one
-- that offers sibling()) lends a sibling of it: the same object, so the
-- same sockets, TLS verification and host event loop (an nginx worker
-- never blocks), with requests and items of its own. Otherwise a libcurl
-- handle of OAuth's own (the default transport's options), or nil, err
-- inside an nginx request handler, where libcurl would block the worker.
-- Either way: no redirect followed, at most MAX_BODY read.
function OAuth:_transport()
  if self.http then return self.http end
  local st = self.session and self.session.transport
  if type(st) == "table" and type(st.sibling) == "function" then
    self.http = st:sibling({ max_response_bytes = MAX_BODY })
    self.http_kind = "lua"
    return self.http
  end
  local ngx_ = rawget(_G, "ngx")
  local phase = type(st) == "table" and type(ngx_) == "table" and type(ngx_.get_phase) == "function"
    and ngx_.get_phase()
  if phase and phase ~= "init" and phase ~= "init_worker" then
    return nil, errors.new("config_error", "favcrm.oauth: the client's transport offers no sibling(), and the "
      .. "libcurl fallback would block the nginx worker (" .. tostring(phase) .. " phase); use "
      .. "favcrm.resty or a request-level transport")
  end
  local h = self.http_opts
  self.http = core.http_new({ user_agent = h.user_agent, ca_file = h.ca_file,
    connect_timeout_ms = h.connect_timeout_ms, max_response_bytes = MAX_BODY })
  self.http_kind = "libcurl"
  return self.http
end

-- One request on OAuth's transport (above), waited for at most until the
-- budget's deadline. -> {status, headers, body} or nil, err.
function OAuth:_http(req, budget)
  local _, terr = self:_transport()
  if terr then return nil, terr end
  local left = math.min(budget.deadline, budget.hard) - now()
  if left <= 0 then return nil, errors.new("timeout", "the call's deadline passed during authorization") end
  local tid, serr = self.http:start({ method = req.method or "GET", url = req.url, headers = req.headers or {},
    body = req.body, auth = req.auth, timeout_ms = math.max(1, math.floor(left * 1000)) })
  if not tid then
    return nil, errors.new("network", "could not start a request to " .. req.url .. ": " .. tostring(serr))
  end
  local res = { status = 0, headers = {} }
  while true do
    left = math.min(budget.deadline, budget.hard) - now()
    if left <= 0 then
      self.http:cancel(tid)
      return nil, errors.new("timeout", "the authorization server did not answer within the call's timeout of "
        .. tostring(budget.timeout) .. " s")
    end
    for _, item in ipairs(self.http:poll(math.max(1, math.floor(left * 1000)))) do
      if item.id == tid then
        if item.type == "headers" then
          res.status, res.headers = item.status, item.headers or {}
        elseif item.type == "done" then
          if item.error then
            return nil, errors.wrap({ code = item.error, message = "a request to " .. req.url .. " failed: "
              .. tostring(item.message) })
          end
          res.status = res.status ~= 0 and res.status or item.status
          res.body = item.body
          return res
        end
      end
    end
  end
end

local function json_of(res)
  if not res or not res.body then return nil end
  local ok, v = pcall(json.decode_plain, res.body)
  if ok and type(v) == "table" then return v end
end

-- GET a JSON document: the table, or nil, status-or-err.
function OAuth:_get_json(u, budget)
  local res, err = self:_http({ url = u,
    headers = { "Accept: application/json", "MCP-Protocol-Version: "
      .. tostring(self.session and self.session.protocol_version or "2025-11-25") } }, budget)
  if not res then return nil, err end
  if res.status < 200 or res.status >= 300 then return nil, res.status end
  local doc = json_of(res)
  if not doc then return nil, res.status end
  return doc
end

-- ---- discovery ----------------------------------------------------------------

local function is_loopback_host(h)
  return h == "localhost" or h == "[::1]" or h:match("^127%.%d+%.%d+%.%d+$") ~= nil
end

-- True when the metadata's resource identifies this server's URL (same
-- origin, and the URL's path is the resource's path or below it).
local function resource_covers(resource, server_url)
  if type(resource) ~= "string" then return false end
  local r, s = urls.parse(resource), urls.parse(server_url)
  if not r or not s then return false end
  if r.scheme ~= s.scheme or r.host ~= s.host or r.port ~= s.port then return false end
  local rp, sp = trim(r.path:gsub("%?.*$", "")), trim(s.path:gsub("%?.*$", ""))
  return sp == rp or sp:sub(1, #rp + 1) == rp .. "/"
end

--- OAuth:discover(challenge, budget [, fresh]) -> discovery, or nil, err.
-- Cached until a challenge names other resource metadata; `fresh` (a 401)
-- reads the protected-resource metadata again, and when it names another
-- authorization server (a migration) the client registration and the
-- tokens of the old one are dropped: nothing of it goes to the new one.
function OAuth:discover(challenge, budget, fresh)
  local rm = challenge.resource_metadata
  local old = self.disc
  if old and not fresh and (rm == nil or rm == old.prm_url) then return old end
  local d = { resource = trim(self.url):gsub("[?#].*$", "") }
  if d.resource == "" then d.resource = self.url end
  for _, u in ipairs(M.prm_urls(self.url, rm)) do
    local doc, why = self:_get_json(u, budget)
    if doc then d.prm, d.prm_url = doc, u; break end
    if type(why) == "table" and why.code == "timeout" then return nil, why end
  end
  local as_url
  if d.prm then
    if d.prm.resource ~= nil then
      if not resource_covers(d.prm.resource, self.url) then
        return nil, fail("discovery_failed", "the protected-resource metadata names the resource '"
          .. tostring(d.prm.resource) .. "', which is not this server (" .. self.url .. "); not authorizing",
          { resource = d.prm.resource })
      end
      d.resource = d.prm.resource
    end
    local list = d.prm.authorization_servers
    as_url = type(list) == "table" and type(list[1]) == "string" and list[1] or nil
    if not as_url then
      return nil, fail("discovery_failed", "the protected-resource metadata at " .. d.prm_url
        .. " names no authorization server")
    end
  else
    -- 2025-03-26: the authorization server is at the MCP server's origin
    as_url = self.url:match("^(%a[%w+.-]*://[^/?#]*)")
    d.legacy = true
  end
  d.issuer = as_url
  if old and old.as_url == as_url and old.meta then
    old.prm, old.prm_url, old.resource = d.prm, d.prm_url, d.resource
    return old -- the same authorization server: its metadata as read before
  end
  d.as_url = as_url
  if old then
    -- another authorization server: register there afresh (SEP-2352)
    self.client, self.tokens, self.disc = nil, nil, nil
  end
  for _, u in ipairs(M.as_metadata_urls(as_url)) do
    local doc, why = self:_get_json(u, budget)
    if doc then d.meta, d.meta_url = doc, u; break end
    if type(why) == "table" and why.code == "timeout" then return nil, why end
  end
  if d.meta then
    if type(d.meta.issuer) ~= "string" or trim(d.meta.issuer) ~= trim(as_url) then
      return nil, fail("issuer_mismatch", "the authorization server's metadata at " .. d.meta_url
        .. " names the issuer '" .. tostring(d.meta.issuer) .. "', not " .. as_url)
    end
    d.issuer = d.meta.issuer
  elseif d.legacy then
    -- 2025-03-26: default endpoints at the server's origin
    d.meta = { issuer = as_url, authorization_endpoint = as_url .. "/authorize", token_endpoint = as_url .. "/token",
      registration_endpoint = as_url .. "/register", fallback = true }
  else
    return nil, fail("discovery_failed", "no authorization-server metadata for " .. as_url
      .. " (tried RFC 8414 and OpenID discovery)")
  end
  -- the endpoints: https, or http on a loopback address (tests, local servers)
  for _, k in ipairs({ "authorization_endpoint", "token_endpoint", "registration_endpoint" }) do
    local u = d.meta[k]
    if u ~= nil then
      local p = type(u) == "string" and urls.parse(u)
      if not p or not (p.scheme == "https" or (p.scheme == "http" and is_loopback_host(p.host))) then
        return nil, fail("discovery_failed", "the authorization server's " .. k .. " is not an https:// URL (got "
          .. tostring(u):sub(1, 100) .. ")")
      end
    end
  end
  self.disc = d
  self.id = d.issuer .. " " .. d.resource
  return d
end

-- ---- the store ------------------------------------------------------------------

local SAVED = { "access_token", "refresh_token", "expires_at", "scope", "token_type", "client_id",
  "client_secret", "client_method", "issuer", "resource" }
local SECRET_FIELDS = { access_token = true, refresh_token = true, client_secret = true }

--- oauth.file_store([path]) -> the default store: one JSON file (0600) in
-- the config folder (`oauth-tokens.json` beside config.toml; favcrm.login,
-- the CLI and Neovim read the same), written atomically under a lock:
-- `{ID: {access_token, refresh_token, expires_at, scope, token_type,
-- client_id, client_secret, client_method, issuer, resource}, ...}`, each
-- entry keyed by its id ("<issuer> <resource>"). Secrets go to the file
-- from their own bytes; a file that is not a token file is left alone.
---@param path? string the file (default <config folder>/oauth-tokens.json)
---@return table store {load = fn(id), save = fn(id, tokens), path = fn()}
function M.file_store(path)
  local function where()
    if path then return path end
    local cfg = require("favcrm.config").path()
    if not cfg then return nil end
    return (cfg:gsub("[^/]*$", "")) .. "oauth-tokens.json"
  end
  -- the file's table ({} when there is none), or nil, err when it is not ours
  local function read_all(p)
    local f = io.open(p, "rb")
    if not f then return {} end
    local text = f:read(MAX_BODY + 1) or ""
    f:close()
    local ok, v = pcall(json.decode_plain, text)
    if #text > MAX_BODY or not ok or type(v) ~= "table" then
      return nil, errors.new("io", "the OAuth token file " .. p .. " is unreadable; remove it and authorize again")
    end
    return v
  end
  local store = {}
  function store.path() return where() end
  function store.load(id)
    local p = where()
    if not p then return nil end
    local all = read_all(p)
    local e = all and all[id]
    if type(e) ~= "table" then return nil end
    return e
  end
  function store.save(id, tokens)
    local p = where()
    if not p then return nil, errors.new("io", "no config folder (neither XDG_CONFIG_HOME nor HOME is set)") end
    local dir = p:match("^(.*)/[^/]*$") or "."
    local ok, merr = core.mkdir_p(dir, tonumber("700", 8))
    if not ok then return nil, errors.wrap(merr) end
    local lock, lerr = core.lock_file(dir .. "/.oauth-tokens.json.lock", 10)
    if not lock then return nil, errors.wrap(lerr) end
    local okc, res, werr = pcall(function()
      local all, rerr = read_all(p)
      if not all then return nil, rerr end
      all[id] = nil
      -- the file as parts: the secrets go in as they are (wiped once written)
      local parts, sep = { "{" }, ""
      for k, e in pairs(all) do
        if type(k) == "string" and type(e) == "table" then
          parts[#parts + 1] = sep .. json.wire(k) .. ":" .. json.wire(e)
          sep = ","
        end
      end
      if tokens then
        parts[#parts + 1] = sep .. json.wire(id) .. ":{"
        local s2 = ""
        for _, f in ipairs(SAVED) do
          local v = tokens[f]
          if v ~= nil then
            parts[#parts + 1] = s2 .. json.wire(f) .. ":"
            s2 = ","
            -- a secret is written quoted by the C side (TOML basic = JSON here)
            parts[#parts + 1] = type(v) == "userdata" and v or json.wire(v)
          end
        end
        parts[#parts + 1] = "}"
      end
      parts[#parts + 1] = "}\n"
      local wok, e2 = core.write_file_atomic(p, parts, tonumber("600", 8))
      if not wok then return nil, errors.wrap(e2) end
      return true
    end)
    lock:unlock()
    if not okc then error(res, 0) end
    return res, werr
  end
  return store
end

function OAuth:_load()
  if not self.store or not self.id then return end
  local ok, e = pcall(self.store.load, self.id)
  if not ok or type(e) ~= "table" or e.access_token == nil then return end
  local t = {}
  for _, f in ipairs(SAVED) do
    local v = e[f]
    if SECRET_FIELDS[f] and type(v) == "string" then v = secret(v) end
    t[f] = v
  end
  if t.client_id and not self.client then
    self.client = { client_id = t.client_id, client_secret = t.client_secret, method = t.client_method }
  end
  self.tokens = t
end

function OAuth:_save()
  if not self.store or not self.id then return end
  local t = self.tokens
  if t then
    local c = self.client or {}
    t.client_id, t.client_secret, t.client_method = c.client_id, c.client_secret, c.method
    t.issuer, t.resource = self.disc and self.disc.issuer, self.disc and self.disc.resource
  end
  pcall(self.store.save, self.id, t)
end

-- ---- registration and client authentication --------------------------------

local function has(list, v)
  if type(list) ~= "table" then return false end
  for _, x in ipairs(list) do if x == v then return true end end
  return false
end

local function is_loopback(u)
  local p = urls.parse(u)
  if not p then return true end -- a custom scheme: a native app
  return p.host == "localhost" or p.host == "127.0.0.1" or p.host == "[::1]"
end

--- OAuth:register(disc, budget) -> client {client_id, client_secret, method}
-- or nil, err: pre-registered, else a Client ID Metadata Document, else
-- dynamic registration.
function OAuth:register(d, budget)
  if self.client then return self.client end
  local o, meta = self.o, d.meta
  if o.client_id then
    local method
    if self.private_key then method = "private_key_jwt"
    elseif self.client_secret then
      local sup = meta.token_endpoint_auth_methods_supported
      method = (sup == nil or has(sup, "client_secret_basic")) and "client_secret_basic"
        or has(sup, "client_secret_post") and "client_secret_post" or "client_secret_basic"
    else method = "none" end
    self.client = { client_id = o.client_id, client_secret = self.client_secret, method = method }
    return self.client
  end
  if o.client_metadata_url and meta.client_id_metadata_document_supported == true then
    self.client = { client_id = o.client_metadata_url, method = self.private_key and "private_key_jwt" or "none" }
    return self.client
  end
  if type(meta.registration_endpoint) ~= "string" then
    return nil, fail("registration_failed", "the authorization server " .. d.issuer .. " offers no dynamic "
      .. "registration and no client_id was given (oauth.client_id, or oauth.client_metadata_url where "
      .. "the server supports Client ID Metadata Documents)")
  end
  local sup = meta.token_endpoint_auth_methods_supported
  local method = (sup == nil or has(sup, "none")) and "none"
    or has(sup, "client_secret_basic") and "client_secret_basic"
    or has(sup, "client_secret_post") and "client_secret_post" or "none"
  local body = json.wire({
    client_name = self.client_name,
    redirect_uris = json.array({ o.redirect_uri }),
    grant_types = json.array({ "authorization_code", "refresh_token" }),
    response_types = json.array({ "code" }),
    token_endpoint_auth_method = method,
    application_type = is_loopback(o.redirect_uri) and "native" or "web",
  })
  local res, err = self:_http({ method = "POST", url = meta.registration_endpoint, body = body,
    headers = { "Content-Type: application/json", "Accept: application/json" } }, budget)
  if not res then return nil, err end
  local doc = json_of(res)
  if res.status < 200 or res.status >= 300 or not doc or type(doc.client_id) ~= "string" then
    return nil, fail("registration_failed", "dynamic client registration at " .. meta.registration_endpoint
      .. " failed (HTTP " .. tostring(res.status) .. (doc and doc.error and (": " .. tostring(doc.error)) or "") .. ")",
      { status = res.status })
  end
  local cs = secret(doc.client_secret)
  self.client = { client_id = doc.client_id, client_secret = cs,
    method = doc.token_endpoint_auth_method or (cs and "client_secret_basic" or "none") }
  return self.client
end

-- Adds the client's authentication to a token request (fields, headers).
function OAuth:_client_auth(fields, headers, d)
  local c = self.client
  local m = c.method
  if m == "client_secret_basic" and c.client_secret then
    if self.http_kind == "libcurl" then
      -- built in C into a secret (wiped after the request): the client
      -- secret never becomes a Lua string
      headers[#headers + 1] = core.secret_basic(c.client_id, c.client_secret)
    else
      -- a Lua transport takes header lines as strings (docs/LIMITS.md)
      local pair = enc(c.client_id) .. ":" .. enc(reveal(c.client_secret))
      headers[#headers + 1] = "Authorization: Basic " .. core.base64(pair)
    end
  elseif m == "client_secret_post" and c.client_secret then
    fields.client_id, fields.client_secret = c.client_id, c.client_secret
  elseif m == "private_key_jwt" and self.private_key then
    local t = os.time()
    local jwt, err = M.sign_jwt({ iss = c.client_id, sub = c.client_id, aud = d.issuer,
      iat = t, exp = t + 300, jti = core.base64url(core.random_bytes(16)) },
      self.private_key, self.o.signing_algorithm or "ES256")
    if not jwt then return nil, fail("token_failed", "private_key_jwt: " .. tostring(err)) end
    fields.client_id = c.client_id
    fields.client_assertion_type, fields.client_assertion = JWT_BEARER, secret(jwt)
  else
    fields.client_id = c.client_id
  end
  return true
end

local TOKEN_ORDER = { "grant_type", "code", "redirect_uri", "code_verifier", "refresh_token", "client_id",
  "client_secret", "client_assertion_type", "client_assertion", "scope", "resource" }

-- A token request: fields -> the token table, or nil, err (reason given).
function OAuth:_token_request(d, fields, reason, budget)
  local headers = { "Content-Type: application/x-www-form-urlencoded", "Accept: application/json" }
  -- the transport first: how the client authenticates depends on its kind
  local _, terr = self:_transport()
  if terr then return nil, terr end
  local ok, aerr = self:_client_auth(fields, headers, d)
  if not ok then return nil, aerr end
  fields.resource = d.resource
  -- over libcurl the body is a secret (wiped after the request); a Lua
  -- transport takes a string (docs/LIMITS.md)
  local body = self.http_kind == "libcurl" and secret_form(fields, TOKEN_ORDER) or form(fields, TOKEN_ORDER)
  local res, err = self:_http({ method = "POST", url = d.meta.token_endpoint, headers = headers, body = body },
    budget)
  if type(body) == "userdata" then body:close() end
  for _, line in ipairs(headers) do
    if type(line) == "userdata" then line:close() end
  end
  if fields.client_assertion then fields.client_assertion:close() end
  if not res then return nil, err end
  local doc = json_of(res)
  if res.status < 200 or res.status >= 300 or not doc or type(doc.access_token) ~= "string" then
    local e = doc and type(doc.error) == "string" and doc.error or nil
    return nil, fail(reason, "the token endpoint refused the " .. fields.grant_type:gsub("_", " ") .. " grant (HTTP "
      .. tostring(res.status) .. (e and (": " .. e) or "") .. ")", { status = res.status, oauth_error = e })
  end
  local t = {
    access_token = secret(doc.access_token),
    refresh_token = secret(doc.refresh_token),
    token_type = doc.token_type,
    scope = type(doc.scope) == "string" and doc.scope or fields.scope,
    expires_at = tonumber(doc.expires_in) and (os.time() + math.floor(tonumber(doc.expires_in))) or nil,
  }
  return t
end

-- ---- the flows --------------------------------------------------------------------

-- Scope for an authorization: the option, else the challenge's, else the
-- metadata's scopes_supported, else none; a step-up adds the challenged
-- scope to the one asked for before.
function OAuth:_pick_scope(challenge, d, step_up)
  local scope = self:_base_scope(challenge, d, step_up)
  if self.grant ~= "authorization_code" then return scope end
  -- offline_access (SEP-2207): asked for where the authorization server
  -- lists it (this client wants refresh tokens), never where it does not
  local sup = d.meta and d.meta.scopes_supported
  local words, has_offline = {}, false
  for w in (scope or ""):gmatch("%S+") do
    if w == "offline_access" then has_offline = true
    else words[#words + 1] = w end
  end
  if has(sup, "offline_access") and (has_offline or #words > 0) then words[#words + 1] = "offline_access" end
  if #words == 0 then return nil end
  return table.concat(words, " ")
end

function OAuth:_base_scope(challenge, d, step_up)
  if self.o.scope then return self.o.scope end
  local s = challenge.scope
  if s and step_up and self.scope then
    local seen, list = {}, {}
    for w in (self.scope .. " " .. s):gmatch("%S+") do
      if not seen[w] then seen[w] = true; list[#list + 1] = w end
    end
    return table.concat(list, " ")
  end
  if s and s ~= "" then return s end
  local sup = d.prm and d.prm.scopes_supported
  if type(sup) == "table" and sup[1] then return table.concat(sup, " ") end
  return nil
end

-- Calls the person's `authorize` outside the call's deadline: the budget
-- is moved on by the time it took.
function OAuth:_ask(u, budget)
  local t0 = now()
  local limit = self.o.authorize_timeout or M.AUTHORIZE_TIMEOUT
  local function late()
    return errors.new("timeout", "the authorization was not completed within " .. limit .. " s")
  end
  local res
  local sess, co = self.session, coroutine.running()
  if sess and co and sess.async_cos[co] then
    -- inside an async handle (call_async, Neovim): authorize runs as a
    -- coroutine of its own and may coroutine.yield() while the person
    -- decides; the handle sleeps 50 ms between resumes, so the event loop
    -- (client:step) runs meanwhile
    local sub = coroutine.create(self.o.authorize)
    local ok, r = coroutine.resume(sub, u)
    while ok and coroutine.status(sub) ~= "dead" do
      if now() - t0 > limit then
        local took = now() - t0
        budget.deadline, budget.hard = budget.deadline + took, budget.hard + took
        return nil, late()
      end
      sess:sleep(0.05)
      ok, r = coroutine.resume(sub)
    end
    if not ok then error(r, 0) end
    res = r
  else
    res = self.o.authorize(u)
  end
  local took = now() - t0
  budget.deadline, budget.hard = budget.deadline + took, budget.hard + took
  if took > limit then return nil, late() end
  if res == nil or res == false then
    return nil, errors.new("cancelled", "the authorization was cancelled", { reason = "consent_denied" })
  end
  if type(res) ~= "string" then
    error("favcrm: oauth.authorize must return the redirected URL (a string) or nil, got " .. type(res), 0)
  end
  return res
end

-- The authorization code flow -> tokens or nil, err.
function OAuth:_authorization_code(d, scope, budget)
  local meta = d.meta
  if not meta.fallback and not has(meta.code_challenge_methods_supported, "S256") then
    return nil, fail("token_failed", "the authorization server " .. d.issuer .. " does not advertise PKCE S256 "
      .. "(code_challenge_methods_supported); not authorizing")
  end
  if type(meta.authorization_endpoint) ~= "string" or type(meta.token_endpoint) ~= "string" then
    return nil, fail("discovery_failed", "the authorization server's metadata lacks its endpoints")
  end
  -- the verifier as a favcrm.Secret (core.secret_token): never a Lua string
  -- over libcurl, wiped once the code is exchanged
  local verifier = core.secret_token(32)
  local challenge = core.base64url(core.sha256(verifier))
  local state = core.base64url(core.random_bytes(16))
  local q = {
    response_type = "code", client_id = self.client.client_id, redirect_uri = self.o.redirect_uri,
    code_challenge = challenge, code_challenge_method = "S256", state = state, scope = scope,
    resource = d.resource,
  }
  local ep = meta.authorization_endpoint
  local u = ep .. (ep:find("?", 1, true) and "&" or "?") .. form(q, { "response_type", "client_id", "redirect_uri",
    "code_challenge", "code_challenge_method", "state", "scope", "resource" })
  self.authorizations = self.authorizations + 1
  local back, aerr = self:_ask(u, budget)
  if not back then verifier:close(); return nil, aerr end
  local t, terr = self:_exchange_code(d, back, state, verifier, scope, budget)
  verifier:close()
  return t, terr
end

-- The authorization response `back` (the redirected URL) -> the tokens of
-- its code, or nil, err.
function OAuth:_exchange_code(d, back, state, verifier, scope, budget)
  local meta = d.meta
  local p = M.parse_query(back)
  if p.error then
    return nil, fail("consent_denied", "the authorization server answered " .. tostring(p.error)
      .. (p.error_description and (": " .. p.error_description) or ""), { oauth_error = p.error })
  end
  if p.state ~= state then
    return nil, fail("consent_denied", "the redirect's state does not match the one sent (a forged or stale redirect)")
  end
  if p.iss ~= nil then
    if p.iss ~= meta.issuer then
      return nil, fail("issuer_mismatch", "the redirect's iss '" .. tostring(p.iss) .. "' is not the issuer "
        .. tostring(meta.issuer))
    end
  elseif meta.authorization_response_iss_parameter_supported == true then
    return nil, fail("issuer_mismatch", "the authorization server promises iss in its redirect, and there is none")
  end
  if not p.code or p.code == "" then
    return nil, fail("consent_denied", "the redirect carries no authorization code")
  end
  self.scope = scope
  return self:_token_request(d, { grant_type = "authorization_code", code = p.code,
    redirect_uri = self.o.redirect_uri, code_verifier = verifier }, "token_failed", budget)
end

--- OAuth:refresh(budget) -> true or nil, err: a refresh grant with the
-- stored refresh token (used once: a rotated one replaces it at once).
function OAuth:refresh(budget)
  local t = self.tokens
  if not t or not t.refresh_token or not self.disc or not self.client then
    return nil, fail("refresh_failed", "no refresh token")
  end
  local rt = t.refresh_token
  t.refresh_token = nil -- never sent twice, whatever happens
  self.refreshes = self.refreshes + 1
  local nt, err = self:_token_request(self.disc, { grant_type = "refresh_token", refresh_token = rt },
    "refresh_failed", budget)
  if not nt then
    -- the refresh token is not tried again (the server may have rotated it
    -- before the answer was lost); a refused grant takes the access token
    -- with it, otherwise that one serves until the server refuses it
    rt:close()
    if err.oauth_error == "invalid_grant" then
      if t.access_token then t.access_token:close() end
      self.tokens = nil
    end
    self:_save()
    return nil, err
  end
  if nt.refresh_token == nil then
    nt.refresh_token = rt -- a server that does not rotate: the same one again
  else
    rt:close()
  end
  if t.access_token then t.access_token:close() end -- replaced: wiped
  self.tokens = nt
  self:_save()
  return true
end

-- Gets new tokens for challenge: refresh, else the grant's flow.
function OAuth:_obtain(challenge, d, budget, step_up)
  if not self.tokens and not step_up then
    self:_load()
    local t = self.tokens
    if t and challenge.sent == nil and (t.expires_at == nil or os.time() + M.REFRESH_MARGIN < t.expires_at) then
      return true -- a stored token that is still good: retry with it
    end
  end
  if self.tokens and not step_up and challenge.sent ~= nil and self.tokens.access_token ~= challenge.sent then
    return true -- another call already got a newer token: retry with it
  end
  if self.tokens and self.tokens.refresh_token and not step_up then
    local ok = self:refresh(budget)
    if ok then return true end
  end
  local ok, err = self:register(d, budget)
  if not ok then return nil, err end
  local t
  local scope = self:_pick_scope(challenge, d, step_up)
  if self.grant == "client_credentials" then
    self.scope = scope
    t, err = self:_token_request(d, { grant_type = "client_credentials", scope = scope }, "token_failed", budget)
  else
    t, err = self:_authorization_code(d, scope, budget)
  end
  if not t then return nil, err end
  local old = self.tokens
  if old and old.access_token then old.access_token:close() end
  if old and old.refresh_token then old.refresh_token:close() end
  self.tokens = t
  self:_save()
  return true
end

--- OAuth:current(budget) -> the access token to send (a favcrm.Secret) or
-- nil; refreshes one that expires within REFRESH_MARGIN seconds first.
function OAuth:current(budget)
  local t = self.tokens
  if not t then return nil end
  if t.expires_at and t.refresh_token and os.time() + M.REFRESH_MARGIN >= t.expires_at and budget and not self.busy then
    self:refresh(budget)
    t = self.tokens
  end
  return t and t.access_token
end

--- OAuth:handle(status, www_authenticate, sent, attempts, budget) -> true
-- (retry the request with the new token) or nil, err. status: 401 or 403;
-- sent: the token the refused request carried; attempts: how many
-- authorizations this request has had.
function OAuth:handle(status, header, sent, attempts, budget)
  local ch = M.parse_www_authenticate(header)
  ch.sent = sent
  if status == 403 and ch.error ~= "insufficient_scope" then
    return nil, errors.new("unauthorized", "the server refused this request (HTTP 403"
      .. (ch.error and (": " .. ch.error) or "") .. ")", { status = 403, www_authenticate = header })
  end
  if attempts >= M.MAX_ATTEMPTS then
    return nil, fail("scope_retry_limit", "the server still refuses after " .. attempts
      .. " authorizations (HTTP " .. status .. (ch.scope and (", scope " .. ch.scope) or "") .. ")",
      { status = status, www_authenticate = header })
  end
  -- single flight: while one call's flow waits for the person (a yielding
  -- authorize in a coroutine), the others wait for its outcome and retry
  local busy = self.busy
  if busy and (busy.co == nil or coroutine.status(busy.co) == "dead") then busy = nil end -- it raised
  if busy and self.session and busy.co ~= coroutine.running() then
    local _, werr = self.session:wait(busy, budget)
    if werr then return nil, werr end
    return true
  end
  local d, err = self:discover(ch, budget, status == 401)
  if not d then return nil, err end
  busy = { done = false, co = coroutine.running() }
  self.busy = busy
  local ok, oerr = self:_obtain(ch, d, budget, status == 403)
  self.busy = nil
  if self.session then self.session:_signal(busy) else busy.done = true end
  return ok, oerr
end

--- OAuth:forget(): drops the tokens held and stored (logout).
function OAuth:forget()
  self.tokens = nil
  if self.id then self:_save() end
end

--- OAuth:close(): frees OAuth's transport (a borrowed Lua transport's
-- object stays open: the session's).
function OAuth:close()
  if self.http then pcall(self.http.close, self.http); self.http, self.http_kind = nil, nil end
end

--- oauth.resource_metadata_of(header, url) -> the protected-resource
-- metadata URL a 401 points to (WWW-Authenticate resource_metadata), or nil.
---@param header string|nil WWW-Authenticate
---@return string|nil url
function M.resource_metadata_of(header)
  return M.parse_www_authenticate(header).resource_metadata
end

M.OAuth = OAuth
return M
