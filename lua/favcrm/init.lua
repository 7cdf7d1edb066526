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

--- favcrm.new(opts) -> client, or nil, err (`config_error`) when the
-- environment or the config file names an unusable URL. Misuse raises.
-- No I/O until the first call.
---@param opts? table url, api_key, timeout, headers, transport, command, on_* callbacks, ... (README.md)
---@return favcrm.Client|nil client
---@return favcrm.Error|nil err `config_error` naming the source
function M.new(opts)
  return Client.new(opts)
end

--- favcrm.secret(text) -> a favcrm.Secret (masked when printed).
M.secret = core.secret
M.mask_key = core.mask_key
M.mask_email = core.mask_email

local default_client

--- favcrm.default() -> the module-level client, built from the environment
-- and the config file, or nil, err when they name an unusable URL.
---@return favcrm.Client|nil client
---@return favcrm.Error|nil err
function M.default()
  if default_client == nil or default_client.closed then
    local c, err = Client.new()
    if not c then return nil, err end
    default_client = c
  end
  return default_client
end

--- favcrm.reset_default(): closes and forgets the module-level client.
---@return nil
function M.reset_default()
  if default_client then default_client:close() end
  default_client = nil
end

--- favcrm.call(name, args, opts) on the default client.
---@param name string the tool's name
---@param args? table the tool's arguments
---@param opts? table client:call's options
---@return any payload
---@return table|favcrm.Error result the whole result; on failure the error
function M.call(name, args, opts)
  if type(name) ~= "string" or name == "" then
    error("bad argument #1 to 'call' (tool name expected, got " .. type(name) .. ")", 2)
  end
  local c, err = M.default()
  if not c then return nil, err end
  return c:call(name, args, opts)
end

--- favcrm.request(fields) on the default client.
---@param fields table email, organisationName, ...
---@return table|nil request
---@return favcrm.Error|nil err
function M.request(fields)
  local c, err = M.default()
  if not c then return nil, err end
  return c:request(fields)
end

--- favcrm.verify(request_or_id, code [, opts]) on the default client.
---@param req table|string the request, or its id
---@param code string the e-mailed code
---@param opts? table `save = true` writes the key to the config file
---@return table|nil workspace
---@return favcrm.Error|nil err
function M.verify(req, code, opts)
  local c, err = M.default()
  if not c then return nil, err end
  return c:verify(req, code, opts)
end

--- favcrm.doctor() on the default client.
---@return table|nil report see client:doctor()
---@return favcrm.Error|nil err when the default client cannot be built
function M.doctor()
  local c, err = M.default()
  if not c then return nil, err end
  return c:doctor()
end

--- favcrm.tools() on the default client.
---@return table[]|nil tools
---@return favcrm.Error|nil err
function M.tools()
  local c, err = M.default()
  if not c then return nil, err end
  return c:tools()
end

--- favcrm.resource_links(result) -> the resource links of a tool result
-- (its `content` items of type resource_link, each with uri, name,
-- mimeType, ...), in order; an empty list when there are none. Follow one
-- with `client:read(link.uri)` (or `client:read(link)`). favcrm.protocol,
-- which holds it, loads on first use (a program that only calls tools
-- never parses it).
---@param result table|nil the second value client:call returned (the whole tools/call result)
---@return table[] links the resource_link items
function M.resource_links(result)
  return require("favcrm.protocol").resource_links(result)
end

--- favcrm.resources() on the default client.
---@param opts? table timeout, max_total_timeout
---@return table[]|nil resources
---@return favcrm.Error|nil err
function M.resources(opts)
  local c, err = M.default()
  if not c then return nil, err end
  return c:resources(opts)
end

--- favcrm.resource_templates() on the default client.
---@param opts? table timeout, max_total_timeout
---@return table[]|nil templates
---@return favcrm.Error|nil err
function M.resource_templates(opts)
  local c, err = M.default()
  if not c then return nil, err end
  return c:resource_templates(opts)
end

--- favcrm.read(uri) on the default client.
---@param uri string|table the resource's URI, or a resource link
---@param opts? table timeout, max_total_timeout
---@return table[]|nil contents
---@return table|favcrm.Error result the whole result; on failure the error
function M.read(uri, opts)
  if type(uri) == "table" then uri = uri.uri end
  if type(uri) ~= "string" or uri == "" then
    error("bad argument #1 to 'read' (resource URI expected, got " .. type(uri) .. ")", 2)
  end
  local c, err = M.default()
  if not c then return nil, err end
  return c:read(uri, opts)
end

--- favcrm.prompts() on the default client.
---@param opts? table timeout, max_total_timeout
---@return table[]|nil prompts
---@return favcrm.Error|nil err
function M.prompts(opts)
  local c, err = M.default()
  if not c then return nil, err end
  return c:prompts(opts)
end

--- favcrm.prompt(name, args) on the default client.
---@param name string the prompt's name
---@param args? table<string, string> its arguments
---@param opts? table timeout, max_total_timeout
---@return table[]|nil messages
---@return table|favcrm.Error result the whole result; on failure the error
function M.prompt(name, args, opts)
  if type(name) ~= "string" or name == "" then
    error("bad argument #1 to 'prompt' (prompt name expected, got " .. type(name) .. ")", 2)
  end
  local c, err = M.default()
  if not c then return nil, err end
  return c:prompt(name, args, opts)
end

--- favcrm.complete(ref, argument) on the default client.
---@param ref table|string the prompt or resource template ("prompt:NAME" works)
---@param argument table name and value
---@param opts? table context, timeout, max_total_timeout
---@return string[]|nil values
---@return table|favcrm.Error completion; on failure the error
function M.complete(ref, argument, opts)
  local c, err = M.default()
  if not c then return nil, err end
  return c:complete(ref, argument, opts)
end

--- favcrm.ping() on the default client.
---@param opts? table timeout, max_total_timeout
---@return number|nil seconds
---@return favcrm.Error|nil err
function M.ping(opts)
  local c, err = M.default()
  if not c then return nil, err end
  return c:ping(opts)
end

return M
