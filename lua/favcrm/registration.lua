--- favcrm.registration: client:request and client:verify, the agentic signup
-- pair (`register_organisation_request` / `register_organisation_verify`).
-- Inputs are checked against the published schema and the seeds' rules
-- before anything is sent; answers are checked before they are trusted.
local core = require("favcrm.core")
local errors = require("favcrm.errors")
local util = require("favcrm.util")
local config = require("favcrm.config")

local M = {}

--- The published input schema of register_organisation_request (FAVCRM.md).
M.REQUEST_SCHEMA = {
  ["$schema"] = "http://json-schema.org/draft-07/schema#",
  type = "object",
  required = { "organisationName", "email" },
  properties = {
    email = {
      type = "string", format = "email",
      pattern = "^(?!\\.)(?!.*\\.\\.)([A-Za-z0-9_'+\\-\\.]*)[A-Za-z0-9_+-]@"
        .. "([A-Za-z0-9][A-Za-z0-9\\-]*\\.)+[A-Za-z]{2,}$",
    },
    organisationName = { type = "string", minLength = 2, maxLength = 80 },
    industry = { type = "string",
      enum = { "beauty", "fitness", "tutoring", "retail", "hospitality", "services", "other" } },
    country = { type = "string", minLength = 2, maxLength = 2 },
    timezone = { type = "string" },
  },
}

M.INDUSTRIES = M.REQUEST_SCHEMA.properties.industry.enum

local ALIASES = {
  email = "email", organisationName = "organisationName", organisation_name = "organisationName",
  organizationName = "organisationName", organization_name = "organisationName",
  industry = "industry", country = "country", timezone = "timezone",
}

local request_validator

local function invalid(field, message, extra)
  local fields = { field = field, path = "/" .. field }
  for k, v in pairs(extra or {}) do fields[k] = v end
  return nil, errors.new("invalid_arguments", field .. ": " .. message, fields)
end

local function utf8_len(s)
  local n = 0
  for _ in s:gmatch("[^\128-\191]") do n = n + 1 end
  return n
end

--- registration.check_request(fields) -> args (ready to send) or nil, err.
-- Raises only when `fields` is not a table.
---@param fields table email, organisationName, industry, country, timezone
---@return table|nil args the arguments to send
---@return favcrm.Error|nil err `invalid_arguments` with `field`
function M.check_request(fields)
  local args = {}
  for k, v in pairs(fields) do
    local name = ALIASES[k]
    if not name then
      return invalid(tostring(k), "unknown field (expected email, organisationName, industry, country, timezone)")
    end
    if type(v) ~= "string" then
      return invalid(name, "must be a string (got " .. type(v) .. ")")
    end
    v = util.trim(v)
    if v ~= "" then args[name] = v end
  end
  if not args.organisationName then return invalid("organisationName", "is required (the business's name)") end
  if not args.email then return invalid("email", "is required (the owner's e-mail address)") end
  local e = args.email
  if not e:match("^[^@%s]+@[%w%-]+%.[%w%-%.]*%a%a$") or e:find("..", 1, true) or e:sub(1, 1) == "." then
    return invalid("email", "does not look like an e-mail address (got '" .. e .. "')")
  end
  local n = utf8_len(args.organisationName)
  if n < 2 or n > 80 then
    return invalid("organisationName", "must be 2 to 80 characters long (got " .. n .. ")")
  end
  if args.industry then
    args.industry = args.industry:lower()
    local ok = false
    for _, i in ipairs(M.INDUSTRIES) do ok = ok or i == args.industry end
    if not ok then
      return invalid("industry", "must be one of " .. table.concat(M.INDUSTRIES, ", ")
        .. " (got '" .. args.industry .. "')")
    end
  end
  if args.country then
    args.country = args.country:upper()
    if not util.is_country(args.country) then
      return invalid("country", "must be an ISO 3166-1 alpha-2 code such as HK or GB (got '"
        .. args.country .. "')")
    end
  end
  if args.timezone and util.is_timezone(args.timezone) == false then
    return invalid("timezone", "is not a time zone the tz database knows (got '" .. args.timezone
      .. "'; use a name such as Asia/Hong_Kong)")
  end
  if request_validator == nil then
    local ok, schema = pcall(require, "favcrm.schema")
    request_validator = ok and assert(schema.compile(M.REQUEST_SCHEMA)) or false
  end
  if request_validator then
    local ok, errs = request_validator:validate(args)
    if not ok then
      local first = errs[1]
      local field = (first.path or ""):match("^/([^/]+)") or "email"
      if field == "email" then
        return invalid("email", "does not look like an e-mail address (got '" .. args.email .. "')",
          { keyword = first.keyword })
      end
      return invalid(field, tostring(first.reason or first.message), { keyword = first.keyword })
    end
  end
  return args
end

--- client:request(fields) -> request or nil, err
-- Behind `client:request`.
---@param self favcrm.Client
---@param fields table the signup fields
---@return table|nil request `request_id`, `masked_email`, `expires_at`, `ttl`, ...
---@return favcrm.Error|nil err
function M.request(self, fields)
  if type(fields) ~= "table" then
    error("bad argument #1 to 'request' (table of fields expected, got " .. type(fields) .. ")", 2)
  end
  local args, err = M.check_request(fields)
  if not args then return nil, err end
  local data, res = self:call("register_organisation_request", args)
  if data == nil then return nil, res end
  if type(data) ~= "table" or type(data.requestId) ~= "string" or type(data.expiresAt) ~= "string" then
    return nil, errors.new("protocol", "register_organisation_request answered without requestId and expiresAt")
  end
  local expires_at = util.parse_iso8601(data.expiresAt)
  if not expires_at then
    return nil, errors.new("protocol", "register_organisation_request answered an expiresAt that is not "
      .. "ISO-8601: " .. data.expiresAt)
  end
  local now = self:now()
  local server_now = self:server_time() or now
  local ttl = math.floor(expires_at - server_now)
  if ttl <= 0 then
    return nil, errors.new("expired_code", "the code expired before it could be used; ask for a new one",
      { request_id = data.requestId })
  end
  return {
    request_id = data.requestId,
    masked_email = data.maskedEmail,
    expires_at = expires_at,
    ttl = ttl,
    local_expires_at = now + ttl,
    instructions = data.instructions,
    raw = data,
  }
end

--- registration.normalise_code(code) -> "123456" or nil, err
---@param code string|number what the user typed (`123 456`)
---@return string|nil code six digits
---@return favcrm.Error|nil err
function M.normalise_code(code)
  if type(code) == "number" and code == math.floor(code) and code >= 0 then
    code = string.format("%06d", code)
  end
  if type(code) ~= "string" then
    return invalid("code", "must be the 6-digit code from the e-mail (got " .. type(code) .. ")")
  end
  local c = code:gsub("[%s%-]", "")
  if not c:match("^%d%d%d%d%d%d$") then
    return invalid("code", "must be the 6 digits from the e-mail, like 123456 or 123 456")
  end
  return c
end

local function url_like(s)
  return type(s) == "string" and s:match("^https?://[%w%-%.]+") ~= nil
end

--- client:verify(request_or_id, code [, opts]) -> workspace or nil, err
-- opts.save: write the key to the config file; opts.store(secret,
-- workspace): hand it to the caller's store instead.
-- Behind `client:verify`.
---@param self favcrm.Client
---@param req table|string the request (from `client:request`) or its id
---@param code string|number the e-mailed code
---@param opts? table `save`, `store`
---@return table|nil workspace with `api_key` a favcrm.Secret
---@return favcrm.Error|nil err
function M.verify(self, req, code, opts)
  local id = type(req) == "table" and req.request_id or req
  if type(id) ~= "string" or id == "" then
    error("bad argument #1 to 'verify' (request or request id expected, got " .. type(req) .. ")", 2)
  end
  if opts ~= nil and type(opts) ~= "table" then
    error("bad argument #3 to 'verify' (table of options expected, got " .. type(opts) .. ")", 2)
  end
  opts = opts or {}
  if opts.store ~= nil and type(opts.store) ~= "function" then
    error("bad argument #3 to 'verify' (option 'store' must be a function)", 2)
  end
  local c, err = M.normalise_code(code)
  if not c then return nil, err end
  if type(req) == "table" and req.local_expires_at and self:now() >= req.local_expires_at then
    return nil, errors.new("expired_code", "the code has expired (codes live 10 minutes); ask for a new one",
      { request_id = id })
  end
  local data, res = self:call("register_organisation_verify", { requestId = id, code = c })
  if data == nil then return nil, res end
  if type(data) ~= "table" then
    return nil, errors.new("protocol", "register_organisation_verify answered no workspace")
  end
  local key = data.apiKey
  data.apiKey = nil
  for _, f in ipairs({ "organisationId", "companyId", "userId" }) do
    if type(data[f]) ~= "string" or data[f] == "" then
      return nil, errors.new("protocol", "register_organisation_verify answered without " .. f)
    end
  end
  if type(key) ~= "string" or key:sub(1, 8) ~= "fav_mcp_" or #key < 16 then
    return nil, errors.new("protocol", "register_organisation_verify answered no valid API key (fav_mcp_...)")
  end
  if not url_like(data.loginUrl) then
    return nil, errors.new("protocol", "register_organisation_verify answered a loginUrl that is not a URL")
  end
  local secret = core.secret(key)
  key = nil -- luacheck: ignore 311
  local ws = {
    organisation_id = data.organisationId,
    company_id = data.companyId,
    user_id = data.userId,
    api_key = secret,
    login_url = data.loginUrl,
    next_steps = data.nextSteps,
  }
  self:set_api_key(secret, "signup")
  if opts.store then
    -- the key is shown once: a failing store must not lose the workspace
    local okc, ok, serr = pcall(opts.store, secret, ws)
    if not okc then
      ws.store_error = errors.new("io", "the store callback raised an error")
    elseif not ok then
      ws.store_error = serr or errors.new("io", "the store callback failed")
    end
  elseif opts.save then
    local path, serr = config.save({ api_key = secret, url = self:savable_url() }, opts.config_path)
    if path then ws.saved_to = path else ws.save_error = serr end
  end
  return ws
end

return M
