--- favcrm.json: JSON for all of favcrm-lua (lua-cjson underneath), and the
-- one rule for empty arrays. lua-cjson 2.1.0 writes every empty table as
-- `{}`; JSON Schema and MCP often need `[]`. An empty table is written as
-- `[]` when it carries json.ARRAY (cjson.empty_array_mt where the installed
-- cjson has it), or when a *guide* says so: the JSON Schema of the value
-- (G.schema), a JSON Schema document (G.schemadoc), or the value as
-- json.decode gave it (G.marked).
--
--   json.decode(text)            empty arrays come back marked with ARRAY
--   json.encode(v [, guide [, indent]])   sorted keys; for people and files
--   json.wire(v)                 compact, for the network: cjson speed
--   json.mark_arrays(v, schema)  marks the empty tables a schema calls arrays
local cjson = require("cjson.safe")

local M = {}

local null = cjson.null
M.null = null

-- ------------------------------------------------------------------------
-- JSON that keeps empty arrays
-- ------------------------------------------------------------------------

--- json.ARRAY: the metatable that marks an empty table as a JSON array.
-- It is lua-cjson's `empty_array_mt` when the installed cjson has one (so
-- cjson.encode writes `[]` for it by itself), else a table of our own.
local ARRAY = cjson.empty_array_mt or { __name = "favcrm.json_array" }
M.ARRAY = ARRAY
M.HAS_EMPTY_ARRAY_MT = cjson.empty_array_mt ~= nil

-- Where cjson cannot mark empty arrays, they travel through it as this
-- string and become [] in the text. A NUL byte and a random tail make a
-- clash impossible in practice; the tail has no pattern magic characters.
local SENTINEL_TAIL = "favcrm_empty_array_" .. tostring(os.time()) .. tostring(math.random(1, 1e9))
local SENTINEL = "\0" .. SENTINEL_TAIL
local SENTINEL_JSON = '"\\u0000' .. SENTINEL_TAIL .. '"'

local function restore(v, depth)
  if v == SENTINEL then return setmetatable({}, ARRAY) end
  if type(v) ~= "table" or depth > 200 then return v end
  for k, x in pairs(v) do
    if x == SENTINEL or type(x) == "table" then v[k] = restore(x, depth + 1) end
  end
  return v
end

--- json.decode(text) -> value (empty arrays carry the ARRAY metatable) or nil, msg
---@param text string JSON text
---@return any value
---@return string|nil msg why the text is not JSON
function M.decode(text)
  if type(text) ~= "string" then return nil, "not a string" end
  local out, last, i, n = {}, 1, 1, #text
  while i <= n do
    local c = text:find('["%[]', i)
    if not c then break end
    if text:byte(c) == 34 then -- a string: skip it, escapes included
      local j = c + 1
      while true do
        local q = text:find('["\\]', j)
        if not q then return nil, "unterminated string" end
        if text:byte(q) == 92 then j = q + 2 else j = q + 1; break end
      end
      i = j
    else
      local close = text:match("^%[%s*%]()", c)
      if close then
        out[#out + 1] = text:sub(last, c - 1)
        out[#out + 1] = SENTINEL_JSON
        last, i = close, close
      else
        i = c + 1
      end
    end
  end
  out[#out + 1] = text:sub(last)
  local v, err = cjson.decode(table.concat(out))
  if v == nil then return nil, err end
  return restore(v, 0)
end

-- Guides: {array = bool, child = function(key) -> guide or nil}.
local G = {}
M.guide = G

--- G.list(elem): an array whose items follow elem
---@param elem table|nil the items' guide
---@return table guide
function G.list(elem)
  return { array = true, child = function() return elem end }
end

--- G.map(elem): an object whose values follow elem
---@param elem table|nil the values' guide
---@return table guide
function G.map(elem)
  return { array = false, child = function() return elem end }
end

--- G.struct(fields [, array]): an object (or array) with named children
---@param fields table name -> guide
---@param array? boolean true for an array
---@return table guide
function G.struct(fields, array)
  return { array = array == true, child = function(k) return fields[k] end }
end

--- G.marked(value): follows a value from M.decode
---@param v any a value from json.decode
---@return table|nil guide
function G.marked(v)
  if type(v) ~= "table" then return nil end
  return { array = getmetatable(v) == ARRAY, child = function(k) return G.marked(v[k]) end }
end

--- G.either(a, b): an array when either says so; children from both
---@param a table|nil a guide
---@param b table|nil a guide
---@return table|nil guide
function G.either(a, b)
  if a == nil then return b end
  if b == nil then return a end
  return { array = a.array or b.array, child = function(k) return G.either(a.child(k), b.child(k)) end }
end

local function schema_types(s)
  local t = s.type
  if type(t) == "string" then return { [t] = true } end
  local set = {}
  if type(t) == "table" then
    for _, x in ipairs(t) do set[x] = true end
    return set
  end
  for _, key in ipairs({ "anyOf", "oneOf", "allOf" }) do
    if type(s[key]) == "table" then
      for _, sub in ipairs(s[key]) do
        if type(sub) == "table" then
          for x in pairs(schema_types(sub)) do set[x] = true end
        end
      end
    end
  end
  return set
end

--- G.schema(s): a value that the JSON Schema s describes
---@param s table|nil a JSON Schema
---@return table|nil guide
function G.schema(s)
  if type(s) ~= "table" then return nil end
  local types = schema_types(s)
  local function sub(k)
    if type(k) == "number" then
      if type(s.prefixItems) == "table" and s.prefixItems[k] then return G.schema(s.prefixItems[k]) end
      if type(s.items) == "table" then
        if s.items[1] ~= nil then return G.schema(s.items[k]) end
        return G.schema(s.items)
      end
      return nil
    end
    if type(s.properties) == "table" and type(s.properties[k]) == "table" then return G.schema(s.properties[k]) end
    if type(s.additionalProperties) == "table" then return G.schema(s.additionalProperties) end
    for _, key in ipairs({ "anyOf", "oneOf", "allOf" }) do
      if type(s[key]) == "table" then
        for _, alt in ipairs(s[key]) do
          local g = G.schema(alt)
          local c = g and g.child(k)
          if c then return c end
        end
      end
    end
    return nil
  end
  return { array = types.array == true and types.object == nil, child = sub }
end

-- A JSON Schema document itself (a tool's inputSchema, outputSchema).
local SCHEMA_ARRAYS = { required = true, enum = true, type = true, allOf = true, anyOf = true, oneOf = true,
  prefixItems = true, examples = true }
local SCHEMA_MAPS = { properties = true, patternProperties = true, ["$defs"] = true, definitions = true,
  dependentSchemas = true }
local SCHEMA_ONE = { items = true, additionalProperties = true, ["not"] = true, ["if"] = true, ["then"] = true,
  ["else"] = true, contains = true, propertyNames = true, additionalItems = true, unevaluatedItems = true,
  unevaluatedProperties = true }
local schemadoc
schemadoc = {
  array = false,
  child = function(k)
    if SCHEMA_MAPS[k] then return G.map(schemadoc) end
    if SCHEMA_ONE[k] then return schemadoc end
    if k == "allOf" or k == "anyOf" or k == "oneOf" or k == "prefixItems" then return G.list(schemadoc) end
    if SCHEMA_ARRAYS[k] then return G.list(nil) end
    return nil
  end,
}
G.schemadoc = schemadoc

--- json.is_sequence(t) -> true for a non-empty table with keys 1..n only
local function is_sequence(t)
  local n = 0
  for k in pairs(t) do
    if type(k) ~= "number" or k < 1 or k % 1 ~= 0 then return false end
    n = n + 1
  end
  return n > 0 and t[n] ~= nil
end
M.is_sequence = is_sequence

-- The exact decimal text of an integral number: a 5.3+ integer as it is
-- (up to 2^63-1), a float (5.1/LuaJIT numbers, or 5.3+ floats) through %.0f,
-- which prints a double's exact value (every integer up to 2^53, and the
-- integral doubles beyond it). v is finite, integral and within +-2^63.
local math_type = math.type
local function int_text(v)
  if math_type and math_type(v) == "integer" then return string.format("%d", v) end
  return string.format("%.0f", v)
end
M.int_text = int_text

-- The shortest decimal text that reads back as the same double (0.9, not
-- 0.90000000000000002): %.15g, %.16g, then %.17g, which always round-trips.
local function float_text(v)
  for p = 15, 16 do
    local s = string.format("%." .. p .. "g", v)
    if tonumber(s) == v then return s end
  end
  return string.format("%.17g", v)
end
M.float_text = float_text

local function encode_into(v, guide, buf, indent, depth)
  local tv = type(v)
  if v == nil or v == null then
    buf[#buf + 1] = "null"
  elseif tv == "boolean" then
    buf[#buf + 1] = v and "true" or "false"
  elseif tv == "number" then
    if v ~= v or v == math.huge or v == -math.huge then
      buf[#buf + 1] = "null"
    elseif v % 1 == 0 and v >= -2 ^ 63 and v < 2 ^ 63 then
      buf[#buf + 1] = int_text(v)
    else
      buf[#buf + 1] = float_text(v)
    end
  elseif tv == "string" then
    buf[#buf + 1] = (cjson.encode(v):gsub("\\/", "/"))
  elseif tv == "table" then
    if depth > 100 then error("favcrm: JSON nested too deep", 0) end
    local nl, pad, pad_in, colon = "", "", "", ":"
    if indent then
      nl = "\n"
      pad = string.rep(indent, depth)
      pad_in = pad .. indent
      colon = ": "
    end
    if next(v) == nil then
      local as_array = getmetatable(v) == ARRAY or (guide ~= nil and guide.array)
      buf[#buf + 1] = as_array and "[]" or "{}"
    elseif is_sequence(v) then
      buf[#buf + 1] = "[" .. nl
      for i = 1, #v do
        if i > 1 then buf[#buf + 1] = "," .. nl end
        buf[#buf + 1] = pad_in
        encode_into(v[i], guide and guide.child(i), buf, indent, depth + 1)
      end
      buf[#buf + 1] = nl .. pad .. "]"
    else
      local keys = {}
      for k in pairs(v) do
        local tk = type(k)
        if tk ~= "string" and tk ~= "number" then error("favcrm: cannot encode a " .. tk .. " key as JSON", 0) end
        keys[#keys + 1] = k
      end
      table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
      buf[#buf + 1] = "{" .. nl
      for i, k in ipairs(keys) do
        if i > 1 then buf[#buf + 1] = "," .. nl end
        buf[#buf + 1] = pad_in .. (cjson.encode(tostring(k)):gsub("\\/", "/")) .. colon
        encode_into(v[k], guide and guide.child(k), buf, indent, depth + 1)
      end
      buf[#buf + 1] = nl .. pad .. "}"
    end
  else
    -- a favcrm.Secret, a function, ...: never encoded (and never shown)
    error("favcrm: cannot encode a " .. tv .. " as JSON", 0)
  end
end

--- json.encode(value [, guide [, indent]]) -> JSON text. Raises on a value JSON
-- cannot hold (a secret, a function). Keys are sorted; indent (a string)
-- pretty-prints.
---@param v any the value
---@param guide? table which empty tables are arrays
---@param indent? string pretty-prints with it
---@return string text
function M.encode(v, guide, indent)
  local buf = {}
  encode_into(v, guide, buf, indent, 0)
  return table.concat(buf)
end


--- json.array([t]) -> t (default {}) marked as a JSON array
---@param t? table the table (default {})
---@return table t
function M.array(t)
  return setmetatable(t or {}, ARRAY)
end

--- json.is_array(t) -> true when t is a table marked as a JSON array
---@param t any
---@return boolean is
function M.is_array(t)
  return type(t) == "table" and getmetatable(t) == ARRAY
end

-- True when the JSON Schema s says "array" and not "object".
local function schema_is_array(s)
  local st = s.type
  if st == "array" then return true end
  if type(st) ~= "table" then return false end
  local a, o = false, false
  for _, x in ipairs(st) do a = a or x == "array"; o = o or x == "object" end
  return a and not o
end

local function mark(value, schema, depth)
  if type(value) ~= "table" or type(schema) ~= "table" or depth > 64 then return value, false end
  if next(value) == nil then
    if schema_is_array(schema) and getmetatable(value) ~= ARRAY then return setmetatable({}, ARRAY), true end
    return value, false
  end
  local out
  local function set(k, v)
    if not out then
      out = {}
      for kk, vv in pairs(value) do out[kk] = vv end
    end
    out[k] = v
  end
  if type(schema.properties) == "table" then
    for k, sub in pairs(schema.properties) do
      if value[k] ~= nil then
        local nv, ch = mark(value[k], sub, depth + 1)
        if ch then set(k, nv) end
      end
    end
  end
  if type(schema.items) == "table" and value[1] ~= nil then
    for i, v in ipairs(value) do
      local nv, ch = mark(v, schema.items, depth + 1)
      if ch then set(i, nv) end
    end
  end
  return out or value, out ~= nil
end

--- json.mark_arrays(value, schema) -> value, changed: the empty tables the
-- JSON Schema calls arrays get json.ARRAY. The caller's tables are never
-- changed: what changes is copied (only along the changed paths).
---@param value any the value
---@param schema table|nil a JSON Schema
---@return any value
---@return boolean changed
function M.mark_arrays(value, schema)
  return mark(value, schema, 0)
end

-- lua-cjson writes numbers with 14 significant digits: 123456789012345
-- would leave as 123456789012340. An integral number from 1e14 on travels
-- through cjson as a string (INT_PREFIX .. its exact digits) and becomes
-- the bare number in the text.
local INT_TAIL = "favcrm_int_" .. tostring(os.time()) .. tostring(math.random(1, 1e9)) .. "_"
local INT_PREFIX = "\0" .. INT_TAIL
local INT_JSON = '"\\u0000' .. INT_TAIL .. '(%-?%d+)"'
local BIG = 1e14

-- Replaces, in a copy (only along the paths that change), marked empty
-- arrays by SENTINEL (when `arrays`) and integral numbers cjson would round
-- by INT_PREFIX strings; returns the value and whether anything changed
-- (1: arrays only, 2: an integer too).
local function swap(v, depth, arrays)
  local tv = type(v)
  if tv == "number" then
    if v % 1 == 0 and (v >= BIG or v <= -BIG) and v >= -2 ^ 63 and v < 2 ^ 63 then
      return INT_PREFIX .. int_text(v), 2
    end
    return v, false
  end
  if tv ~= "table" or depth > 200 then return v, false end
  if next(v) == nil then
    if arrays and getmetatable(v) == ARRAY then return SENTINEL, 1 end
    return v, false
  end
  local out, changed = nil, false
  for k, x in pairs(v) do
    local tx = type(x)
    if tx == "table" or tx == "number" then
      local nx, ch = swap(x, depth + 1, arrays)
      if ch then
        if ch == 2 or not changed then changed = ch end
        if not out then
          out = {}
          for kk, vv in pairs(v) do out[kk] = vv end
        end
        out[k] = nx
      end
    end
  end
  if out and getmetatable(v) == ARRAY then setmetatable(out, ARRAY) end
  return out or v, changed
end

--- json.wire(value) -> compact JSON text, or nil, message (a secret, a
-- function, a cycle). Marked empty arrays are written as `[]`; every
-- integer Lua holds exactly is written exactly (all 5.3+ integers, and
-- every integral double, so 2^53 on 5.1 and LuaJIT).
---@param v any the value
---@return string|nil text
---@return string|nil message
function M.wire(v)
  local swapped, changed = swap(v, 0, not M.HAS_EMPTY_ARRAY_MT)
  local text, err = cjson.encode(swapped)
  if not text then return nil, err end
  if changed then
    if not M.HAS_EMPTY_ARRAY_MT then text = text:gsub(SENTINEL_JSON, "[]") end
    if changed == 2 then text = text:gsub(INT_JSON, "%1") end
  end
  return text
end

--- json.decode_plain(text) -> value or nil, message: lua-cjson's decode,
-- for the network path (no marking of empty arrays).
M.decode_plain = cjson.decode

-- ------------------------------------------------------------------------
-- Guides for MCP messages
-- ------------------------------------------------------------------------

--- G.tool: a tool of tools/list; G.tools_list: a tools/list result
G.tool = G.struct({ inputSchema = schemadoc, outputSchema = schemadoc })
G.tools_list = G.struct({ tools = G.list(G.tool) })

--- G.result(tool, result): a tools/call result, its payload guided by
-- the tool's outputSchema and by the JSON text in content[1].
---@param tool table|nil the tool (its outputSchema)
---@param result table a tools/call result
---@return table guide
function G.result(tool, result)
  local from_text
  local c = type(result) == "table" and type(result.content) == "table" and result.content[1]
  if type(c) == "table" and c.type == "text" and type(c.text) == "string" then
    local v = M.decode(c.text)
    if v ~= nil then from_text = G.marked(v) end
  end
  local sc = G.struct({ data = from_text })
  if type(result) == "table" and type(result.structuredContent) == "table"
    and result.structuredContent.data == nil then
    sc = from_text
  end
  local by_schema = type(tool) == "table" and G.schema(tool.outputSchema) or nil
  return G.struct({ content = G.list(nil), structuredContent = G.either(by_schema, sc) })
end

return M
