--- favcrm.json_text: the part of favcrm.json for people and files
-- (internal): json.encode (sorted keys, indent, guides), json.decode (empty
-- arrays come back marked), json.is_sequence, json.float_text, and the
-- guides G.marked, G.either, G.schema and G.result. favcrm.json loads it
-- (favcrm.lazy) the first time one of them is called; it defines them on
-- favcrm.json's own tables, so they are called as json.encode, ... as before.
local cjson = require("cjson.safe")

local M = require("favcrm.json")
local G = M.guide
local null, ARRAY, int_text = M.null, M.ARRAY, M.int_text
local SENTINEL, SENTINEL_JSON = M._SENTINEL, M._SENTINEL_JSON

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
