--- favcrm: sign a person up for FavCRM and call its CRM tools over MCP.
--
--   local favcrm = require("favcrm")
--   local services = favcrm.call("list_services")   -- FAVCRM_API_KEY, FAVCRM_MCP_URL
--
-- Expected failures come back as `nil, err` where `err` is an error object
-- (favcrm.errors); misuse raises.
local core = require("favcrm.core")
local Client = require("favcrm.client")
local errors = require("favcrm.errors")
local config = require("favcrm.config")

local M = {
  VERSION = core.VERSION,
  errors = errors,
  config = config,
}

--- favcrm.new(opts) -> client. No I/O until the first call.
function M.new(opts)
  return Client.new(opts)
end

--- favcrm.secret(text) -> a favcrm.Secret (masked when printed).
M.secret = core.secret
M.mask_key = core.mask_key
M.mask_email = core.mask_email

local default_client

--- favcrm.default() -> the module-level client, built from the environment.
function M.default()
  if default_client == nil or default_client.closed then
    default_client = Client.new()
  end
  return default_client
end

--- favcrm.reset_default(): closes and forgets the module-level client.
function M.reset_default()
  if default_client then default_client:close() end
  default_client = nil
end

--- favcrm.call(name, args, opts) on the default client.
function M.call(name, args, opts)
  if type(name) ~= "string" or name == "" then
    error("bad argument #1 to 'call' (tool name expected, got " .. type(name) .. ")", 2)
  end
  return M.default():call(name, args, opts)
end

--- favcrm.request(fields) on the default client.
function M.request(fields)
  return M.default():request(fields)
end

--- favcrm.verify(request_or_id, code [, opts]) on the default client.
function M.verify(req, code, opts)
  return M.default():verify(req, code, opts)
end

--- favcrm.doctor() on the default client.
function M.doctor()
  return M.default():doctor()
end

--- favcrm.tools() on the default client.
function M.tools()
  return M.default():tools()
end

return M
