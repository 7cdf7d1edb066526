--- favcrm.login: the OAuth grants `favcrm login --oauth` and `:FavCRM login`
-- keep, shared by the CLI and the Neovim plugin. They live where favcrm.new's
-- `oauth` option keeps them by default (favcrm.oauth.file_store:
-- oauth-tokens.json beside the config file, 0600, folder 0700, written
-- atomically under a lock, one entry per issuer and resource), so a Lua
-- program with `oauth = {...}` and the command line share one sign-in.
-- This module finds the grant of an endpoint, says when it expires, revokes
-- it (RFC 7009) and forgets it. Tokens and client secrets come back as
-- favcrm.secret values; nothing here prints, logs or passes on a token.
local core = require("favcrm.core")
local errors = require("favcrm.errors")
local json = require("favcrm.json")
local oauth = require("favcrm.oauth")

local M = {}

--- Seconds the person has to sign in.
M.WAIT = 300
--- The redirect URI when the redirect is pasted (nothing listens there).
M.PASTE_REDIRECT = "http://127.0.0.1:8976/callback"

local SECRET_FIELDS = { access_token = true, refresh_token = true, client_secret = true }

--- login.path() -> the token file's path (beside the config file), or nil
-- when there is no config folder.
---@return string|nil path
function M.path()
  return oauth.file_store().path()
end

-- The whole token file as a table (id -> entry), {} when absent or unreadable.
local function read_all()
  local p = M.path()
  local f = p and io.open(p, "rb")
  if not f then return {} end
  local text = f:read(1024 * 1024) or ""
  f:close()
  local ok, v = pcall(json.decode_plain, text)
  return ok and type(v) == "table" and v or {}
end

local function norm(u)
  return type(u) == "string" and (u:gsub("[?#].*$", ""):gsub("/+$", "")) or nil
end

-- The ids of the grants stored for the MCP endpoint url (the store's id is
-- "<issuer> <resource>").
local function ids_for(url)
  local want, out = norm(url), {}
  for id, e in pairs(read_all()) do
    if type(e) == "table" and type(id) == "string"
      and (norm(e.resource) == want or norm(id:match("%s(%S+)$")) == want) then
      out[#out + 1] = id
    end
  end
  table.sort(out)
  return out
end

--- login.entry(url) -> the grant stored for the MCP endpoint url: {id =,
-- tokens = (access_token, refresh_token, client_secret as favcrm.secret
-- values; expires_at, scope, client_id, client_method, issuer,
-- resource)}, or nil.
---@param url string the MCP endpoint
---@return table|nil entry
function M.entry(url)
  local id = ids_for(url)[1]
  if not id then return nil end
  local e = read_all()[id]
  if type(e) ~= "table" or e.access_token == nil then return nil end
  local tokens = {}
  for k, v in pairs(e) do
    if SECRET_FIELDS[k] and type(v) == "string" then
      v = core.secret(v)
      errors.protect(v)
    end
    tokens[k] = v
  end
  return { id = id, tokens = tokens }
end

local function first_field(t, ...)
  for _, k in ipairs({ ... }) do
    if type(t) == "table" and t[k] ~= nil then return t[k] end
  end
end

--- login.facts(entry) -> {expires_at = unix seconds or nil, scopes = "a b"
-- or nil}: what the stored tokens say of themselves.
---@param e table an entry from login.entry
---@return table facts
function M.facts(e)
  local tk = e.tokens
  local exp = tonumber(first_field(tk, "expires_at", "expiresAt", "expiry"))
  if exp and exp > 1e11 then exp = exp / 1000 end -- milliseconds
  if not exp then
    local ein = tonumber(first_field(tk, "expires_in"))
    if ein and tonumber(e.saved_at) then exp = e.saved_at + ein end
  end
  local scope = first_field(tk, "scope", "scopes")
  if type(scope) == "table" then scope = table.concat(scope, " ") end
  return { expires_at = exp, scopes = type(scope) == "string" and scope or nil }
end

--- login.iso(t) -> t (unix seconds) as "2026-01-02T03:04:05Z", or nil for nil.
---@param t? number
---@return string|nil
function M.iso(t)
  if not t then return nil end
  return os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(t))
end

--- login.open_browser(url) -> true when xdg-open was started on url (in the
-- background; its child gets no FavCRM secret: core.spawn strips them).
---@param url string
---@return boolean started
function M.open_browser(url)
  local p = core.spawn({ "sh", "-c", 'command -v xdg-open >/dev/null 2>&1 || exit 127; '
    .. 'xdg-open "$1" </dev/null >/dev/null 2>&1 & exit 0', "favcrm-open", url }, {})
  if not p then return false end
  local status = p:close(5000)
  return status == 0
end

-- An HTTP exchange for logout's revocation (discovery and /revoke):
-- status, body or nil, err. Everything within timeout seconds.
local function http_once(method, url, body, timeout, auth)
  local h = core.http_new({ connect_timeout_ms = math.floor(timeout * 1000) })
  local headers = body and { "Content-Type: application/x-www-form-urlencoded", "Accept: application/json" }
    or { "Accept: application/json" }
  if auth then headers[#headers + 1] = "Authorization: " .. auth end
  local id = h:start({ method = method, url = url, body = body, timeout_ms = math.floor(timeout * 1000),
    headers = headers })
  headers = nil -- luacheck: ignore 311
  local deadline = core.monotonic() + timeout
  local chunks, status = {}, nil
  while core.monotonic() < deadline do
    for _, it in ipairs(h:poll(100)) do
      if it.id == id then
        if it.type == "headers" then status = it.status
        elseif it.type == "event" then chunks[#chunks + 1] = it.data
        elseif it.type == "done" then
          h:close()
          if it.error then return nil, errors.new(it.error, tostring(it.message)) end
          chunks[#chunks + 1] = it.body
          return it.status or status, table.concat(chunks)
        end
      end
    end
  end
  h:close()
  return nil, errors.new("timeout", "no answer from " .. url .. " within " .. timeout .. " s")
end

local function form(t)
  local parts = {}
  for _, kv in ipairs(t) do
    parts[#parts + 1] = kv[1] .. "=" .. tostring(kv[2]):gsub("[^%w%-%._~]", function(c)
      return string.format("%%%02X", c:byte())
    end)
  end
  return table.concat(parts, "&")
end

-- The revocation endpoint for a stored grant: the one it names, else the
-- authorization server's metadata (its issuer, else the protected resource
-- metadata of url).
local function revocation_endpoint(url, tk, timeout)
  local ep = first_field(tk, "revocation_endpoint")
  if type(ep) == "string" then return ep end
  local issuer = first_field(tk, "issuer", "authorization_server")
  if type(issuer) ~= "string" then
    local origin, path = url:match("^(https?://[^/]+)(.*)$")
    if not origin then return nil end
    path = path:gsub("[?#].*$", ""):gsub("/$", "")
    for _, u in ipairs({ origin .. "/.well-known/oauth-protected-resource" .. path,
      origin .. "/.well-known/oauth-protected-resource" }) do
      local st, body = http_once("GET", u, nil, timeout)
      local meta = st == 200 and json.decode(body)
      if type(meta) == "table" and type(meta.authorization_servers) == "table" then
        issuer = meta.authorization_servers[1]
        break
      end
    end
  end
  if type(issuer) ~= "string" then return nil end
  local origin, path = issuer:match("^(https?://[^/]+)(.*)$")
  if not origin then return nil end
  path = path:gsub("/$", "")
  for _, u in ipairs({ origin .. "/.well-known/oauth-authorization-server" .. path,
    origin .. "/.well-known/openid-configuration" .. path,
    issuer:gsub("/$", "") .. "/.well-known/openid-configuration" }) do
    local st, body = http_once("GET", u, nil, timeout)
    local meta = st == 200 and json.decode(body)
    if type(meta) == "table" and meta.issuer then
      return type(meta.revocation_endpoint) == "string" and meta.revocation_endpoint or false
    end
  end
  return nil
end

local function reveal(v)
  if core.is_secret(v) then return v:reveal() end
  return v
end

--- login.revoke(url, entry, timeout) -> "revoked", "unsupported" or
-- "failed: <why>" (never with a token in it): revokes the stored grant at
-- the authorization server's revocation endpoint (RFC 7009) where it has one.
---@param url string the MCP endpoint
---@param e table an entry from login.entry
---@param timeout number seconds for each HTTP exchange
---@return string outcome
function M.revoke(url, e, timeout)
  local tk = e.tokens
  local client_id = first_field(tk, "client_id") or first_field(first_field(tk, "client"), "client_id")
  local ok, res = pcall(function()
    local ep = revocation_endpoint(url, tk, timeout)
    if ep == false then return "unsupported" end
    if not ep then return "failed: the authorization server's metadata could not be found" end
    if type(client_id) ~= "string" then return "failed: the stored grant names no client_id" end
    local secret = first_field(tk, "client_secret") or first_field(first_field(tk, "client"), "client_secret")
    local basic = secret and tk.client_method == "client_secret_basic"
    local done = 0
    for _, which in ipairs({ "refresh_token", "access_token" }) do
      local tok = first_field(tk, which)
      if tok then
        local fields = { { "token", reveal(tok) }, { "token_type_hint", which } }
        local auth
        if basic then
          auth = "Basic " .. core.base64(oauth.urlencode(client_id) .. ":" .. oauth.urlencode(reveal(secret)))
        else
          fields[#fields + 1] = { "client_id", client_id }
          if secret then fields[#fields + 1] = { "client_secret", reveal(secret) } end
        end
        local body = form(fields)
        local st, err = http_once("POST", ep, body, timeout, auth)
        auth = nil -- luacheck: ignore 311
        body = nil -- luacheck: ignore 311
        if st == 200 then done = done + 1
        elseif not st then return "failed: " .. tostring(err and err.message)
        else return "failed: the revocation endpoint answered HTTP " .. tostring(st) end
      end
    end
    return done > 0 and "revoked" or "failed: no token to revoke"
  end)
  if not ok then return "failed: " .. errors.redact(tostring(res)) end
  return res
end


--- login.forget(url) -> path, or nil, err: removes the grants stored for url.
---@param url string the MCP endpoint
---@return string|nil path the token file
---@return favcrm.Error|nil err
function M.forget(url)
  local store = oauth.file_store()
  for _, id in ipairs(ids_for(url)) do
    local ok, err = store.save(id, nil)
    if not ok then return nil, err end
  end
  return store.path()
end

return M
