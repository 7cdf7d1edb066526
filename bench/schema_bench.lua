-- Validations per second of favcrm.schema on the running Lua.
--   lua5.4 bench/schema_bench.lua [seconds]       -> "case<TAB>per-second" lines
--   lua5.4 bench/schema_bench.lua --emit FILE     -> the cases as JSON (for schema_ajv.mjs)
--   lua5.4 bench/schema_bench.lua --count CASE N [validate]
--                                                 -> N validations of CASE (for callgrind)
-- Each case is timed with `v:check(data)` (the verdict and the first
-- failure's path, keyword and reason: what ajv's default mode, without
-- allErrors, gives), the row named after the case; then with
-- `v:validate(data)` (a fresh list of error records), the row
-- CASE_validate, informational: the goal is read from the check rows.
local cjson = require("cjson")
local schema = require("favcrm.schema")

local EMAIL_PATTERN = "^(?!\\.)(?!.*\\.\\.)([A-Za-z0-9_'+\\-\\.]*)[A-Za-z0-9_+-]@"
  .. "([A-Za-z0-9][A-Za-z0-9\\-]*\\.)+[A-Za-z]{2,}$"

local favcrm = {
  ["$schema"] = "http://json-schema.org/draft-07/schema#",
  type = "object",
  required = { "organisationName", "email" },
  properties = {
    email = { type = "string", format = "email", pattern = EMAIL_PATTERN },
    organisationName = { type = "string", minLength = 2, maxLength = 80 },
    industry = { type = "string",
      enum = { "beauty", "fitness", "tutoring", "retail", "hospitality", "services", "other" } },
    country = { type = "string", minLength = 2, maxLength = 2 },
    timezone = { type = "string" },
  },
}

-- 50 declared properties over three levels: 20 at the top, 15 in
-- `profile`, 15 in each item of `contacts`.
local function scalar_props(prefix, n, required)
  local props, inst = {}, {}
  for i = 1, n do
    local name = prefix .. i
    local k = i % 5
    if k == 0 then
      props[name] = { type = "string", minLength = 1, maxLength = 40 }; inst[name] = "value number " .. i
    elseif k == 1 then
      props[name] = { type = "integer", minimum = 0, maximum = 1000 }; inst[name] = i * 7
    elseif k == 2 then
      props[name] = { type = "string", enum = { "alpha", "beta", "gamma", "delta" } }; inst[name] = "gamma"
    elseif k == 3 then
      props[name] = { type = "boolean" }; inst[name] = (i % 2 == 0)
    else
      props[name] = { type = "number", exclusiveMinimum = 0 }; inst[name] = i + 0.5
    end
    if i <= 5 then required[#required + 1] = name end
  end
  return props, inst
end

local top_req, prof_req, item_req = {}, {}, {}
local top_props, nested_valid = scalar_props("field", 18, top_req)
local prof_props, prof_inst = scalar_props("p", 15, prof_req)
local item_props, item_inst = scalar_props("c", 15, item_req)
top_props.profile = { type = "object", required = prof_req, properties = prof_props, additionalProperties = false }
top_props.contacts = { type = "array", maxItems = 10,
  items = { type = "object", required = item_req, properties = item_props, additionalProperties = false } }
local nested = { type = "object", required = top_req, properties = top_props }
nested_valid.profile = prof_inst
nested_valid.contacts = { item_inst, item_inst, item_inst }

local cases = {
  { name = "favcrm_valid", schema = favcrm,
    data = { organisationName = "Glow Studio", email = "owner@glow-studio.example.com", industry = "beauty",
      country = "HK", timezone = "Asia/Hong_Kong" } },
  { name = "favcrm_invalid", schema = favcrm,
    data = { organisationName = "Glow Studio", email = "owner..x@glow-studio.example.com", industry = "beauty",
      country = "HK", timezone = "Asia/Hong_Kong" } },
  { name = "nested50_valid", schema = nested, data = nested_valid },
}

if arg[1] == "--emit" then
  local out = {}
  for i, c in ipairs(cases) do
    out[i] = { name = c.name, schema = c.schema, data = c.data, valid = c.name:match("_valid$") ~= nil }
  end
  local f = assert(io.open(assert(arg[2], "--emit needs a file"), "w"))
  f:write(cjson.encode(out))
  f:close()
  return
end

if arg[1] == "--count" then
  -- `--count CASE N`: exactly N validations of CASE after 1000 of warm-up,
  -- for callgrind (run with N and with 0, subtract, divide by N).
  local name, n = assert(arg[2], "--count needs a case"), assert(tonumber(arg[3]), "--count needs N")
  for _, c in ipairs(cases) do
    if c.name == name then
      local v = assert(schema.compile(c.schema))
      if arg[4] == "validate" then
        for _ = 1, 1000 do v:validate(c.data) end
        for _ = 1, n do v:validate(c.data) end
      else
        for _ = 1, 1000 do v:check(c.data) end
        for _ = 1, n do v:check(c.data) end
      end
      return
    end
  end
  error("no case " .. name)
end

local seconds = tonumber(arg[1]) or 1
local clock = os.clock

-- validations per second of f(v, data), CPU-timed
local function rate(f, v, data)
  local n, batch, t0 = 0, 1000, clock()
  local elapsed
  repeat
    for _ = 1, batch do f(v, data) end
    n = n + batch
    elapsed = clock() - t0
  until elapsed >= seconds
  return n / elapsed
end

local rows = {}
for _, c in ipairs(cases) do
  local v = assert(schema.compile(c.schema))
  local expect = c.name:match("_valid$") ~= nil
  assert(v:validate(c.data) == expect, c.name .. ": unexpected result")
  assert(v:check(c.data) == expect, c.name .. ": unexpected check result")
  io.write(("%s\t%.0f\n"):format(c.name, rate(v.check, v, c.data)))
  rows[#rows + 1] = { c.name .. "_validate", rate(v.validate, v, c.data) }
end
for _, r in ipairs(rows) do io.write(("%s\t%.0f\n"):format(r[1], r[2])) end
