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
local lazy = require("favcrm.lazy")

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

-- shared with favcrm.json_text (json.decode restores marked arrays from them)
M._SENTINEL, M._SENTINEL_JSON = SENTINEL, SENTINEL_JSON

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

-- JSON for people and files (json.encode: sorted keys, indent, guides),
-- json.decode (empty arrays kept), json.is_sequence, json.float_text and
-- the guides that follow a decoded value or a schema (G.marked, G.either,
-- G.schema, G.result): favcrm.json_text, loaded on first use (the network
-- path uses json.wire and json.decode_plain only).
lazy(M, "favcrm.json_text", { "decode", "encode", "is_sequence", "float_text" })
lazy(G, "favcrm.json_text", { "marked", "either", "schema", "result" })

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

return M
