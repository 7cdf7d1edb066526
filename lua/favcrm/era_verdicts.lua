-- favcrm.era_verdicts: what a 2026-07-28 server's refusals mean (internal):
-- the negotiation verdicts (era.supported_of, era.classify,
-- era.legacy_from) and the modern JSON-RPC error codes (era.map_error).
-- favcrm.era_wire loads it (favcrm.lazy) the first time one is called; it
-- defines them on favcrm.era's own table, so they are called as before.
local errors = require("favcrm.errors")

local M = require("favcrm.era")

-- ---- negotiation verdicts ------------------------------------------------------

local function listed(list, v)
  if type(list) ~= "table" then return false end
  for _, x in ipairs(list) do
    if x == v then return true end
  end
  return false
end

local function first_legacy(list)
  if type(list) ~= "table" then return nil end
  for _, x in ipairs(list) do
    if M.LEGACY_VERSIONS[x] then return x end
  end
end

--- era.supported_of(err) -> the `supported` list of an
-- UnsupportedProtocolVersionError, or nil.
function M.supported_of(err)
  if type(err) ~= "table" or err.rpc_code ~= M.UNSUPPORTED_VERSION then return nil end
  local d = err.data
  if type(d) == "table" and type(d.supported) == "table" then return d.supported end
end

--- era.classify(result, err, stdio) -> verdict of a server/discover probe:
-- "modern" (speak 2026-07-28), "retry" (a -32022 that lists it: once
-- more), "legacy" (fall back to initialize) or "error" (surface err).
function M.classify(result, err, stdio)
  if result ~= nil then
    if type(result) == "table" and type(result.supportedVersions) == "table" then
      if listed(result.supportedVersions, M.MODERN) then return "modern" end
      if first_legacy(result.supportedVersions) then return "legacy" end
      return "error"
    end
    return "legacy" -- an answer that is no DiscoverResult: a server of old
  end
  local supported = M.supported_of(err)
  if supported then
    if listed(supported, M.MODERN) then return "retry" end
    if first_legacy(supported) then return "legacy" end
    return "error"
  end
  local code = type(err) == "table" and err.code
  if code == "unauthorized" or code == "rate_limited" or code == "tls" or code == "too_large" then
    return "error"
  end
  if stdio then
    -- stdio: any other error, or no answer in time, is a legacy server
    if err.rpc_code == M.HEADER_MISMATCH or err.rpc_code == M.MISSING_CAPABILITY then return "error" end
    if code == "network" or code == "spawn" then return "error" end
    return "legacy"
  end
  local st = err.status
  if st == 400 or st == 404 or st == 405 then
    -- a modern server explains with a modern error; anything else is old
    if err.rpc_code == M.HEADER_MISMATCH or err.rpc_code == M.MISSING_CAPABILITY then return "error" end
    return "legacy"
  end
  if code == "protocol" and err.rpc_code ~= nil and not st then
    -- a JSON-RPC error in a 200 answer (-32601 and the like): a legacy server
    return "legacy"
  end
  return "error"
end

--- era.legacy_from(err) -> the legacy version a -32022 names, or nil.
function M.legacy_from(err)
  return first_legacy(M.supported_of(err))
end

-- ---- errors ---------------------------------------------------------------------

--- era.map_error(method, code, text, data, fields) -> a favcrm error for a
-- modern JSON-RPC error code, or nil when the generic mapping applies.
function M.map_error(method, code, text, data, fields)
  fields = fields or {}
  fields.rpc_code, fields.data = code, data
  if code == M.HEADER_MISMATCH then
    fields.header_mismatch = true
    return errors.new("protocol", "the server says the request's MCP headers do not match its body "
      .. "(HeaderMismatch): " .. text, fields)
  elseif code == M.MISSING_CAPABILITY then
    local need = type(data) == "table" and data.requiredCapabilities or nil
    local names = {}
    if type(need) == "table" then
      for k in pairs(need) do
        if type(k) == "string" then names[#names + 1] = k end
      end
      for _, k in ipairs(need) do
        if type(k) == "string" then names[#names + 1] = k end
      end
      table.sort(names)
    end
    fields.required_capabilities = names
    fields.hint = "the server needs a client capability: pass the on_elicit, on_sample or on_roots "
      .. "callback it needs to favcrm.new"
    return errors.new("protocol", "the server needs a client capability this client did not declare"
      .. (#names > 0 and (" (" .. table.concat(names, ", ") .. ")") or "") .. ": " .. text, fields)
  elseif code == M.UNSUPPORTED_VERSION then
    local s = type(data) == "table" and data.supported
    fields.supported = type(s) == "table" and s or nil
    local list = {}
    if type(s) == "table" then
      for _, v in ipairs(s) do list[#list + 1] = tostring(v) end
    end
    return errors.new("protocol", "the server does not speak the protocol version this client sent"
      .. (#list > 0 and ("; it speaks " .. table.concat(list, ", ")) or "") .. ": " .. text, fields)
  elseif (code == -32602 or code == -32002) and method == "resources/read" then
    return errors.new("not_found", "the server has no such resource: " .. text, fields)
  elseif code == -32601 then
    return errors.new("protocol", "the server does not implement " .. tostring(method) .. ": " .. text, fields)
  end
end

return M
