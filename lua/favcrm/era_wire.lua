--- favcrm.era_wire: the part of favcrm.era a client pinned to 2025-11-25
-- never uses (internal): the `_meta` and HTTP headers of a modern request,
-- the x-mcp-header checks, the era verdicts and the modern error mapping.
-- favcrm.era loads it the first time one of these is looked up; it
-- defines them on favcrm.era's own table (`M` below), so they are called
-- as era.meta, era.classify, ... as before.
local errors = require("favcrm.errors")

local M = require("favcrm.era")

-- Methods whose request carries Mcp-Name, and the param it mirrors.
local NAME_PARAM = { ["tools/call"] = "name", ["resources/read"] = "uri", ["prompts/get"] = "name" }

-- ---- the request -------------------------------------------------------------

--- era.capabilities(cb, elicitation) -> the client capabilities the
-- callbacks give (elicitation: the session's elicitation capability, with
-- the URL mode when the application declared it).
function M.capabilities(cb, elicitation)
  local caps = {}
  if cb.elicit then caps.elicitation = elicitation or {} end
  if cb.sample then caps.sampling = {} end
  if cb.roots then caps.roots = {} end
  return caps
end

--- era.meta(session, version) -> a fresh `_meta` for one modern request.
function M.meta(s, version)
  s.client_caps = s.client_caps or M.capabilities(s.cb, s.elicit_modes and s:_elicit_caps())
  local m = {
    ["io.modelcontextprotocol/protocolVersion"] = version,
    ["io.modelcontextprotocol/clientCapabilities"] = s.client_caps,
    ["io.modelcontextprotocol/clientInfo"] = s.client_info,
  }
  -- the level set_log_level chose; with an on_log callback and none chosen,
  -- every level (a legacy server sends its log lines without being asked;
  -- a modern one only for requests that name a level)
  local level = s.log_level or (s.cb.log and "debug") or nil
  if level then m["io.modelcontextprotocol/logLevel"] = level end
  return m
end

-- Base64 (RFC 4648, with padding) of a byte string.
local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function base64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local c1 = math.floor(n / 262144) % 64
    local c2 = math.floor(n / 4096) % 64
    local c3 = math.floor(n / 64) % 64
    local c4 = n % 64
    out[#out + 1] = B64:sub(c1 + 1, c1 + 1) .. B64:sub(c2 + 1, c2 + 1)
      .. (b and B64:sub(c3 + 1, c3 + 1) or "=") .. (c and B64:sub(c4 + 1, c4 + 1) or "=")
  end
  return table.concat(out)
end
M.base64 = base64

--- era.header_value(v) -> the header text of a string, integer or boolean
-- value (streamable-http: Value Encoding): plain when it is visible ASCII
-- and spaces with no space at either end and not the sentinel's shape,
-- else `=?base64?...?=`. The empty string is sent encoded too (some HTTP
-- stacks drop a header with an empty value).
function M.header_value(v)
  local tv = type(v)
  if tv == "boolean" then return v and "true" or "false" end
  if tv == "number" then
    if v % 1 == 0 and v > -2 ^ 53 and v < 2 ^ 53 then return string.format("%d", v) end
    return nil
  end
  if tv ~= "string" then return nil end
  if v ~= "" and not v:find("[^\32-\126]") and not v:find("^%s") and not v:find("%s$")
    and not (v:sub(1, 9) == "=?base64?" and v:sub(-2) == "?=") then
    return v
  end
  return "=?base64?" .. base64(v) .. "?="
end

--- era.request_headers(method, params) -> the headers a modern POST carries
-- besides the common ones: Mcp-Method and, for tools/call, resources/read
-- and prompts/get, Mcp-Name.
function M.request_headers(method, params)
  local h = { "Mcp-Method: " .. method }
  local key = NAME_PARAM[method]
  if key and type(params) == "table" then
    local v = M.header_value(params[key])
    if v then h[2] = "Mcp-Name: " .. v end
  end
  return h
end

-- ---- x-mcp-header (server/tools, streamable-http: Custom Headers) --------------

local TCHAR = "^[%w!#$%%&'*+%-.^_`|~]+$"
local PRIMITIVE = { string = true, integer = true, boolean = true }

-- Finds every x-mcp-header in a schema; `path` is the chain of property
-- names when the place is statically reachable (only `properties` steps),
-- else false. Calls fn(name, subschema, path).
local function walk(schema, path, fn, depth)
  if type(schema) ~= "table" or depth > 32 then return end
  for k, v in pairs(schema) do
    if k == "x-mcp-header" then
      fn(v, schema, path)
    elseif k == "properties" and type(v) == "table" then
      for pname, sub in pairs(v) do
        local p = false
        if path and type(pname) == "string" then
          p = {}
          for i, x in ipairs(path) do p[i] = x end
          p[#p + 1] = pname
        end
        walk(sub, p, fn, depth + 1)
      end
    elseif type(v) == "table" and k ~= "enum" and k ~= "const" and k ~= "default" and k ~= "examples" then
      -- items, oneOf, $defs, if/then/else, ...: not statically reachable
      walk(v, false, fn, depth + 1)
    end
  end
end

--- era.tool_headers(tool) -> list of {name =, path =} (the header of each
-- annotated property), or nil, reason when an annotation breaks the rules
-- (the tool is then left out of tools/list).
function M.tool_headers(tool)
  local list, seen, why = {}, {}, nil
  walk(type(tool) == "table" and tool.inputSchema or nil, {}, function(name, sub, path)
    if why then return end
    if type(name) ~= "string" or name == "" then
      why = "an x-mcp-header is empty or not a string"
    elseif not name:find(TCHAR) then
      why = "x-mcp-header \"" .. name .. "\" is not an HTTP field-name token"
    elseif seen[name:lower()] then
      why = "x-mcp-header \"" .. name .. "\" is used twice (case-insensitively)"
    elseif not path or #path == 0 then
      why = "x-mcp-header \"" .. name .. "\" is not on a property reachable through properties alone"
    elseif not PRIMITIVE[sub.type] then
      why = "x-mcp-header \"" .. name .. "\" is on a property of type "
        .. (type(sub.type) == "string" and sub.type or "(not one type)")
        .. " (only string, integer and boolean may be)"
    else
      seen[name:lower()] = true
      list[#list + 1] = { name = name, path = path }
    end
  end, 0)
  if why then return nil, why end
  table.sort(list, function(a, b) return a.name < b.name end)
  return list
end

--- era.param_headers(headers, args) -> "Mcp-Param-{Name}: value" lines for
-- the arguments present (null and absent values send no header).
function M.param_headers(headers, args)
  local out = {}
  for _, h in ipairs(headers or {}) do
    local v = args
    for _, step in ipairs(h.path) do
      if type(v) ~= "table" then v = nil break end
      v = v[step]
    end
    local text = M.header_value(v)
    if text then out[#out + 1] = "Mcp-Param-" .. h.name .. ": " .. text end
  end
  return out
end

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

-- ---- MRTR: the answers to a server's input requests --------------------------------

--- era.answer(cb, method, params) -> result, or nil, why ("none": no
-- callback for it; a callback that raises propagates). The same shaping as
-- the legacy server requests (elicitation defaults, roots as a list).
function M.answer(cb, method, params)
  params = type(params) == "table" and params or {}
  local handler
  if method == "elicitation/create" then handler = cb.elicit
  elseif method == "sampling/createMessage" then handler = cb.sample
  elseif method == "roots/list" then handler = cb.roots end
  if not handler then return nil, "none" end
  local result = M.normalize_answer(method, params, handler(params))
  if result == nil then return nil, "none" end
  return result
end

--- era.normalize_answer(method, params, result) -> what an on_elicit (form
-- mode) or on_roots handler's return value means as the answer to the
-- server's `method`: a bare table is accepted content (its missing fields
-- take the requestedSchema's defaults, SEP-1034; no table declines), a
-- bare list is the roots. Other methods' results stay as they are.
function M.normalize_answer(method, params, result)
  if method == "elicitation/create" then
    result = type(result) == "table" and result or { action = "decline" }
    if result.action == nil then result = { action = "accept", content = result } end
    if result.action == "accept" then
      result.content = result.content or {}
      local schema = type(params) == "table" and params.requestedSchema
      if type(schema) == "table" and type(schema.properties) == "table" then
        for k, p in pairs(schema.properties) do
          if result.content[k] == nil and type(p) == "table" and p.default ~= nil then
            result.content[k] = p.default
          end
        end
      end
      if next(result.content) == nil then result.content = nil end
    end
  elseif method == "roots/list" and type(result) == "table" and result.roots == nil then
    result = { roots = result }
  end
  return result
end

return M
