-- The official JSON-Schema-Test-Suite (draft7 and draft2020-12) through
-- favcrm.schema. The suite's data is in spec/fixtures/json-schema-test-suite
-- (MIT licensed; its LICENSE and SOURCE.md say where it comes from).
local cjson = require("cjson")
local schema = require("favcrm.schema")

local function repo_root()
  local src = debug.getinfo(1, "S").source:sub(2)
  return src:match("^(.*)/spec/integration/[^/]*$") or "."
end

local SUITE = repo_root() .. "/spec/fixtures/json-schema-test-suite"

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

local function list_json(dir)
  local names = {}
  local ok, lfs = pcall(require, "lfs")
  if ok then
    for name in lfs.dir(dir) do
      if name:match("%.json$") then names[#names + 1] = name end
    end
  else
    local p = assert(io.popen('ls -1 "' .. dir .. '"'))
    for name in p:lines() do
      if name:match("%.json$") then names[#names + 1] = name end
    end
    p:close()
  end
  table.sort(names)
  return names
end

-- Remote references of the suite (http://localhost:1234/...) come from its
-- remotes/ folder on disk, through opts.resolve_remote.
-- The official metaschemas come from spec/fixtures/metaschemas.
local META = repo_root() .. "/spec/fixtures/metaschemas/"
local function resolve_remote(uri)
  local rel = uri:match("^http://localhost:1234/([^#]*)")
  local text
  if rel then
    text = read(SUITE .. "/remotes/" .. rel)
  elseif uri:match("^https?://json%-schema%.org/draft%-07/schema#?$") then
    text = read(META .. "draft-07.json")
  else
    local m = uri:match("^https://json%-schema%.org/draft/2020%-12/(.-)#?$")
    if m == "schema" or (m and m:match("^meta/[%w-]+$")) then text = read(META .. "2020-12/" .. m .. ".json") end
  end
  return text and cjson.decode(text) or nil
end

-- Cases the validator does not support yet. They still run: each must
-- still fail (so the list cannot go stale) and counts as failed in the
-- per-draft tally.
local UNSUPPORTED = {
  ["vocabulary.json / schema that uses custom metaschema with with no validation vocabulary / "
    .. "no validation: invalid number, but it still validates"] =
    "custom $vocabulary metaschemas that switch the validation vocabulary off",
}

-- The only cases left out: a decoded JSON {} and [] are the same Lua value
-- (an empty table), so a test that needs one to differ from the other
-- cannot pass. Keyed "file / group / test".
local EMPTY_TABLE = "Lua tables cannot tell {} from []: an empty table is both an array and an object"
local SKIP = {
  ["contains.json / contains keyword validation / not array is valid"] = EMPTY_TABLE,
  ["minProperties.json / minProperties validation / ignores arrays"] = EMPTY_TABLE,
  ["required.json / required validation / ignores arrays"] = EMPTY_TABLE,
  ["required.json / required properties whose names are Javascript object property names / ignores arrays"] =
    EMPTY_TABLE,
  ["type.json / object type matches objects / an array is not an object"] = EMPTY_TABLE,
  ["type.json / array type matches arrays / an object is not an array"] = EMPTY_TABLE,
}

local ASSERTED_FORMATS = { "date-time", "date", "email", "hostname", "ipv4", "ipv6", "regex", "time",
  "uri-reference", "uri", "uuid" }

-- Runs one case; returns true when the validator agrees with the suite.
local function run_case(validator, case)
  local ok, res = pcall(validator.validate, validator, case.data)
  if not ok then return false, "validate raised: " .. tostring(res) end
  if res ~= case.valid then
    return false, ("expected %s, got %s"):format(case.valid and "valid" or "invalid", res and "valid" or "invalid")
  end
  return true
end

-- check must agree with validate on every case: the same verdict, and on
-- failure the path, keyword and reason of validate's first record.
-- Returns nil when they agree, else what differs.
local function check_agrees(validator, data)
  local vok, errs = validator:validate(data)
  local cok, path, keyword, reason = validator:check(data)
  if cok ~= vok then
    return ("check says %s, validate %s"):format(tostring(cok), tostring(vok))
  end
  if vok then
    if path ~= nil or keyword ~= nil or reason ~= nil then return "check returned more than true" end
    return nil
  end
  local first = errs[1]
  if type(path) ~= "string" or type(keyword) ~= "string" or type(reason) ~= "string" then
    return ("check's failure is not three strings: %s, %s, %s"):format(type(path), type(keyword), type(reason))
  end
  -- validate's fallback record (nothing recorded) has no reason field
  local want_reason = first.reason or "is not allowed"
  if path ~= first.path or keyword ~= first.keyword or reason ~= want_reason then
    return ("check: %q %q %q; validate's first record: %q %q %q"):format(path, keyword, reason,
      first.path, first.keyword, tostring(first.reason))
  end
  return nil
end

local function suite_files(draft, sub, names)
  local dir = SUITE .. "/tests/" .. draft .. (sub and ("/" .. sub) or "")
  local files = {}
  for _, name in ipairs(names or list_json(dir)) do
    local text = read(dir .. "/" .. name)
    if text then files[#files + 1] = { name = name, groups = cjson.decode(text) } end
  end
  return files
end

-- Declares one `it` per case and returns the tally table it fills in.
local function declare(draft, files, opts)
  local tally = { passed = 0, total = 0, skipped = 0 }
  for _, file in ipairs(files) do
    describe(file.name, function()
      for _, group in ipairs(file.groups) do
        for _, case in ipairs(group.tests) do
          local name = file.name .. " / " .. group.description .. " / " .. case.description
          if SKIP[name] and opts.skippable then
            tally.skipped = tally.skipped + 1
          else
            tally.total = tally.total + 1
            it(group.description .. " / " .. case.description, function()
              -- draft7's files carry no $schema: the folder says the dialect
              local o = { resolve_remote = resolve_remote, formats = opts.formats,
                draft = draft == "draft7" and "draft7" or nil }
              local v, err = schema.compile(group.schema, o)
              local ok, why
              if v then ok, why = run_case(v, case) else why = "compile failed: " .. tostring(err and err.message) end
              if v then
                local differs = check_agrees(v, case.data)
                assert(differs == nil, draft .. " " .. name .. ": check and validate disagree: " .. tostring(differs))
              end
              if UNSUPPORTED[name] then
                assert(not ok, name .. " passes now: take it off the UNSUPPORTED list")
                return
              end
              assert(ok, draft .. " " .. name .. ": " .. tostring(why))
              tally.passed = tally.passed + 1
            end)
          end
        end
      end
    end)
  end
  return tally
end

local function summary(label, tally, ratio)
  it(("passes at least %d%% of %s"):format(math.floor(ratio * 100 + 0.5), label), function()
    print(("\n%s: %d/%d passed (%d skipped as {} vs [])"):format(label, tally.passed, tally.total, tally.skipped))
    assert.is_true(tally.total > 0, "no cases found under " .. SUITE)
    assert.is_true(tally.passed >= ratio * tally.total,
      ("%s: only %d/%d passed"):format(label, tally.passed, tally.total))
  end)
end

describe("favcrm.schema against the JSON-Schema-Test-Suite", function()
  it("finds the suite (" .. SUITE .. ")", function()
    assert.is_truthy(read(SUITE .. "/tests/draft7/type.json"),
      "spec/fixtures/json-schema-test-suite is missing from the checkout")
  end)

  for _, draft in ipairs({ "draft7", "draft2020-12" }) do
    describe(draft, function()
      -- format is an annotation by default in 2020-12's suite; draft7's
      -- required files do not depend on it either way
      local tally = declare(draft, suite_files(draft), { skippable = true, formats = false })
      summary(draft, tally, 0.98)
    end)
    describe(draft .. " optional/format (asserted formats)", function()
      local names = {}
      for _, f in ipairs(ASSERTED_FORMATS) do
        if read(SUITE .. "/tests/" .. draft .. "/optional/format/" .. f .. ".json") then
          names[#names + 1] = f .. ".json"
        end
      end
      local tally = declare(draft, suite_files(draft, "optional/format", names), { formats = true })
      summary(draft .. " optional/format", tally, 0.95)
    end)
  end
end)
