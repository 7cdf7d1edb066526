--- favcrm.login: the OAuth grants `favcrm login --oauth` and `:FavCRM login`
-- keep, shared by the CLI and the Neovim plugin. One file in the config
-- folder (oauth-tokens.json: 0600, its folder 0700, written atomically under
-- a lock) holds one grant per MCP endpoint URL, handed to favcrm.new's
-- `oauth.store`; tokens and client secrets come back as favcrm.secret
-- values. `logout` revokes a grant (RFC 7009) and forgets it. Nothing here
-- prints, logs or passes on a token.
local core = require("favcrm.core")
local config = require("favcrm.config")
local errors = require("favcrm.errors")
local json = require("favcrm.json")

local M = {}

--- The token file's name, in the config folder.
M.FILE = "oauth-tokens.json"
--- Seconds the person has to sign in.
M.WAIT = 300
--- The redirect URI when the redirect is pasted (nothing listens there).
M.PASTE_REDIRECT = "http://127.0.0.1:8976/callback"
local OAUTH_FILE = M.FILE

--- login.path() -> the token file's path (beside the config file), or nil, err.
---@return string|nil path
---@return favcrm.Error|nil err
function M.path()
  local p, err = config.path()
  if not p then return nil, err end
  return (p:match("^(.*)/[^/]*$") or ".") .. "/" .. OAUTH_FILE
end

-- Secrets in a token table become {["$secret"] = text} in the file and
-- favcrm.secret values again when read.
local function oauth_pack(v, depth)
  if core.is_secret(v) then return { ["$secret"] = v:reveal() } end
  if type(v) ~= "table" or depth > 8 then return v end
  local out = {}
  for k, x in pairs(v) do
    if type(k) == "string" or type(k) == "number" then out[k] = oauth_pack(x, depth + 1) end
  end
  return out
end

local SECRET_FIELDS = { access_token = true, refresh_token = true, client_secret = true, id_token = true }

local function oauth_unpack(v, depth, key)
  if type(v) ~= "table" then
    if type(v) == "string" and SECRET_FIELDS[key] then return core.secret(v) end
    return v
  end
  if type(v["$secret"]) == "string" then return core.secret(v["$secret"]) end
  if depth > 8 then return v end
  local out = {}
  for k, x in pairs(v) do out[k] = oauth_unpack(x, depth + 1, k) end
  return out
end

local function oauth_read()
  local path, err = M.path()
  if not path then return nil, err end
  local f = io.open(path, "rb")
  if not f then return { entries = {} }, nil, path end
  local text = f:read(1024 * 1024 + 1) or ""
  f:close()
  local t = #text <= 1024 * 1024 and json.decode(text)
  if type(t) ~= "table" or type(t.entries) ~= "table" then
    return nil, errors.new("config_error", "the OAuth token file " .. path .. " is unreadable; "
      .. "remove it and run `favcrm login --oauth` again"), path
  end
  return t, nil, path
end

-- change(entries) edits the table of entries; the file is rewritten under a lock.
local function oauth_update(change)
  local path, err = M.path()
  if not path then return nil, err end
  local dir = path:match("^(.*)/[^/]*$") or "."
  local ok, merr = core.mkdir_p(dir, tonumber("700", 8))
  if not ok then return nil, errors.wrap(merr) end
  local lock, lerr = core.lock_file(dir .. "/." .. OAUTH_FILE .. ".lock", 10)
  if not lock then return nil, errors.wrap(lerr) end
  local okc, res, uerr = pcall(function()
    local t, rerr = oauth_read()
    if not t then t = { entries = {} } end
    local _ = rerr
    change(t.entries)
    local text = json.encode({ version = 1, entries = t.entries })
    local wok, werr = core.write_file_atomic(path, text, tonumber("600", 8))
    text = nil -- luacheck: ignore 311
    if not wok then return nil, errors.wrap(werr) end
    return path
  end)
  lock:unlock()
  if not okc then error(res, 0) end
  return res, uerr
end

local function same_id(a, b)
  if type(a) == "table" or type(b) == "table" then
    return json.encode(oauth_pack(a, 0)) == json.encode(oauth_pack(b, 0))
  end
  return a == b
end

--- login.store(url) -> the `store` of favcrm.new's oauth option ({load=,
-- save=}) keeping one grant for the MCP endpoint url in the token file.
-- save raises when the file cannot be written.
---@param url string the MCP endpoint
---@return table store {load = fn(id), save = fn(id, tokens)}
function M.store(url)
  return {
    load = function(id)
      local t = oauth_read()
      local e = t and t.entries[url]
      if type(e) == "table" and same_id(e.id, id) and type(e.tokens) == "table" then
        return oauth_unpack(e.tokens, 0)
      end
      return nil
    end,
    save = function(id, tokens)
      local path, err = oauth_update(function(entries)
        if tokens then
          entries[url] = { id = oauth_pack(id, 0), tokens = oauth_pack(tokens, 0), saved_at = os.time() }
        else
          entries[url] = nil
        end
      end)
      if not path then error(err, 0) end
      return true
    end,
  }
end

--- login.entry(url) -> the grant stored for url: {id =, tokens = (secrets
-- as favcrm.secret values), saved_at = unix seconds}, or nil.
---@param url string the MCP endpoint
---@return table|nil entry
function M.entry(url)
  local t = oauth_read()
  local e = t and t.entries[url]
  if type(e) ~= "table" or type(e.tokens) ~= "table" then return nil end
  return { id = e.id, tokens = oauth_unpack(e.tokens, 0), saved_at = e.saved_at }
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
local function http_once(method, url, body, timeout)
  local h = core.http_new({ connect_timeout_ms = math.floor(timeout * 1000) })
  local id = h:start({ method = method, url = url, body = body, timeout_ms = math.floor(timeout * 1000),
    headers = body and { "Content-Type: application/x-www-form-urlencoded", "Accept: application/json" }
      or { "Accept: application/json" } })
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
    local done = 0
    for _, which in ipairs({ "refresh_token", "access_token" }) do
      local tok = first_field(tk, which)
      if tok then
        local fields = { { "token", reveal(tok) }, { "token_type_hint", which }, { "client_id", client_id } }
        if secret then fields[#fields + 1] = { "client_secret", reveal(secret) } end
        local body = form(fields)
        local st, err = http_once("POST", ep, body, timeout)
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


--- login.forget(url) -> path, or nil, err: removes the grant stored for url.
---@param url string the MCP endpoint
---@return string|nil path the token file
---@return favcrm.Error|nil err
function M.forget(url)
  return oauth_update(function(entries) entries[url] = nil end)
end

return M
