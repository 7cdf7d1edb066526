--- favcrm.era_wire: the part of favcrm.era a client pinned to 2025-11-25
-- never uses (internal): the `_meta` and HTTP headers of a modern request,
-- the x-mcp-header checks (and, through favcrm.lazy, the era verdicts, the
-- modern error mapping and the answers to input requests, in
-- favcrm.era_verdicts and favcrm.era_answers). favcrm.era loads it the first time one of these is looked up; it
-- defines them on favcrm.era's own table (`M` below), so they are called
-- as era.meta, era.classify, ... as before.
local M = require("favcrm.era")
local lazy = require("favcrm.lazy")

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

-- The verdicts on a server's refusals (negotiation: supported_of, classify,
-- legacy_from; the modern error codes: map_error) and the answers to its
-- input requests (answer, normalize_answer): favcrm.era_verdicts and
-- favcrm.era_answers, loaded on first use (favcrm.lazy; a client pinned to
-- 2026-07-28 whose calls succeed never parses them).
lazy(M, "favcrm.era_verdicts", { "supported_of", "classify", "legacy_from", "map_error" })
lazy(M, "favcrm.era_answers", { "answer", "normalize_answer" })

return M
