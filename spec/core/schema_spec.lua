-- favcrm.schema: the API of the compiled JSON Schema validator.
local cjson = require("cjson")
local schema = require("favcrm.schema")

local EMAIL_PATTERN = "^(?!\\.)(?!.*\\.\\.)([A-Za-z0-9_'+\\-\\.]*)[A-Za-z0-9_+-]@"
  .. "([A-Za-z0-9][A-Za-z0-9\\-]*\\.)+[A-Za-z]{2,}$"

-- register_organisation_request's published input schema (FAVCRM.md).
local function request_schema()
  return {
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
end

local function valid_request()
  return { organisationName = "Glow Studio", email = "you@example.com", industry = "beauty",
    country = "HK", timezone = "Asia/Hong_Kong" }
end

-- Strips the "file:line: " a Lua error(msg, 2) adds.
local function error_text(fn)
  local ok, err = pcall(fn)
  assert.is_false(ok)
  return (tostring(err):gsub("^[^:]*:%d+: ", ""))
end

describe("favcrm.schema", function()
  describe("compile()", function()
    it("returns a favcrm.Validator for a table, a JSON string or a boolean", function()
      local v = assert(schema.compile(request_schema()))
      assert.matches("^favcrm%.Validator", tostring(v))
      assert.is_true((schema.compile('{"type":"string"}')):validate("x"))
      assert.is_true((schema.compile(true)):validate(42))
      assert.is_false((schema.compile(false)):validate(42))
    end)

    it("rejects a non-table schema with a clear error", function()
      assert.equals("bad argument #1 to 'compile' (table or JSON string expected, got number)",
        error_text(function() schema.compile(42) end))
      assert.equals("bad argument #1 to 'compile' (table or JSON string expected, got nil)",
        error_text(function() schema.compile() end))
    end)

    it("rejects options that are not a table, and unknown drafts", function()
      assert.equals("bad argument #2 to 'compile' (table of options expected, got string)",
        error_text(function() schema.compile({}, "all") end))
      assert.equals("bad argument #2 to 'compile' (opts.draft must be \"draft7\" or \"2020-12\", got draft4)",
        error_text(function() schema.compile({}, { draft = "draft4" }) end))
    end)

    it("rejects an unknown type name with the schema path", function()
      local v, err = schema.compile({ properties = { age = { type = "intger" } } })
      assert.is_nil(v)
      assert.equals("invalid_schema", err.code)
      assert.equals("/properties/age/type", err.schema_path)
      assert.equals('invalid schema at /properties/age/type: unknown type "intger"', err.message)
      assert.equals('favcrm: invalid_schema: invalid schema at /properties/age/type: unknown type "intger"',
        tostring(err))
    end)

    it("rejects a bad regex at compile time", function()
      local v, err = schema.compile({ properties = { email = { type = "string", pattern = "([a-z]" } } })
      assert.is_nil(v)
      assert.equals("invalid_schema", err.code)
      assert.equals("/properties/email/pattern", err.schema_path)
      assert.matches('^invalid schema at /properties/email/pattern: invalid regular expression "%(%[a%-z%]": ',
        err.message)
    end)

    it("rejects an unresolvable $ref", function()
      local v, err = schema.compile({ properties = { a = { ["$ref"] = "#/$defs/missing" } } })
      assert.is_nil(v)
      assert.equals("/properties/a/$ref", err.schema_path)
      assert.equals('invalid schema at /properties/a/$ref: $ref "#/$defs/missing" points to nothing', err.message)
      v, err = schema.compile({ ["$ref"] = "https://elsewhere.example/s.json" })
      assert.is_nil(v)
      assert.equals('invalid schema at /$ref: cannot resolve $ref "https://elsewhere.example/s.json"', err.message)
    end)

    it("rejects bad keyword values", function()
      local _, err = schema.compile({ minLength = -1 })
      assert.equals("invalid schema at /minLength: minLength must be a non-negative integer", err.message)
      _, err = schema.compile({ required = "email" })
      assert.equals("invalid schema at /required: required must be an array of strings", err.message)
      _, err = schema.compile({ multipleOf = 0 })
      assert.equals("invalid schema at /multipleOf: multipleOf must be greater than 0", err.message)
      _, err = schema.compile({ anyOf = {} })
      assert.equals("invalid schema at /anyOf: anyOf must not be empty", err.message)
    end)

    it("rejects a JSON string that does not parse", function()
      local v, err = schema.compile("{not json")
      assert.is_nil(v)
      assert.equals("invalid_schema", err.code)
      assert.matches("^invalid schema at /: not valid JSON", err.message)
    end)

    it("loads remote references through opts.remotes and opts.resolve_remote", function()
      local s = { properties = { n = { ["$ref"] = "https://example.test/int.json" } } }
      local v = assert(schema.compile(s, { remotes = { ["https://example.test/int.json"] = { type = "integer" } } }))
      assert.is_true(v:validate({ n = 3 }))
      assert.is_false(v:validate({ n = "3" }))
      local asked
      v = assert(schema.compile(s, { resolve_remote = function(uri) asked = uri; return { type = "string" } end }))
      assert.equals("https://example.test/int.json", asked)
      assert.is_true(v:validate({ n = "3" }))
    end)
  end)

  describe("validate() on the register_organisation_request schema", function()
    local v = assert(schema.compile(request_schema()))

    it("accepts a complete request, and a minimal one", function()
      assert.is_true(v:validate(valid_request()))
      assert.is_true(v({ organisationName = "Yo", email = "o'neil+crm@mail.example.co.uk" }))
    end)

    it("reports a missing required property at the object", function()
      local ok, errs = v:validate({ organisationName = "Glow Studio" })
      assert.is_false(ok)
      assert.equals(1, #errs)
      assert.same({ path = "", keyword = "required", schema_path = "/required", property = "email",
        message = '/: missing required property "email"', reason = 'missing required property "email"' }, errs[1])
    end)

    it("rejects a too short organisation name", function()
      local r = valid_request()
      r.organisationName = "G"
      local ok, errs = v:validate(r)
      assert.is_false(ok)
      assert.equals("/organisationName", errs[1].path)
      assert.equals("minLength", errs[1].keyword)
      assert.equals("/properties/organisationName/minLength", errs[1].schema_path)
      assert.equals("/organisationName: must be at least 2 characters long", errs[1].message)
    end)

    it("counts characters, not bytes", function()
      local r = valid_request()
      r.organisationName = "é"         -- 2 bytes, 1 character
      assert.is_false(v:validate(r))
      r.organisationName = "éé"
      assert.is_true(v:validate(r))
      r.country = "ÅÄ"                  -- 4 bytes, 2 characters
      assert.is_true(v:validate(r))
    end)

    it("rejects e-mails the FavCRM pattern refuses (look-aheads through PCRE2)", function()
      -- format is checked before the pattern (the cheap check first), and
      -- the e-mail format refuses most of these too: formats off, so that
      -- the pattern alone decides here
      local pv = assert(schema.compile(request_schema(), { formats = false }))
      for _, bad in ipairs({ ".you@example.com", "you..me@example.com", "you@example.c", "you.@example.com" }) do
        local r = valid_request()
        r.email = bad
        local ok, errs = pv:validate(r)
        assert.is_false(ok, bad)
        assert.equals("/email", errs[1].path)
        assert.equals("pattern", errs[1].keyword, bad)
        assert.equals("/properties/email/pattern", errs[1].schema_path)
        assert.equals("/email: does not match the pattern " .. EMAIL_PATTERN, errs[1].message)
        local cok, path, keyword, reason = pv:check(r)
        assert.is_false(cok, bad)
        assert.equals("/email", path)
        assert.equals("pattern", keyword)
        assert.equals("does not match the pattern " .. EMAIL_PATTERN, reason)
      end
      -- with formats on: the first failure is the format where it refuses
      -- the address (no regex run), the pattern where only the pattern does
      for bad, kw in pairs({ [".you@example.com"] = "format", ["you..me@example.com"] = "format",
        ["you@example.c"] = "pattern", ["you.@example.com"] = "format" }) do
        local r = valid_request()
        r.email = bad
        local ok, errs = v:validate(r)
        assert.is_false(ok, bad)
        assert.equals(kw, errs[1].keyword, bad)
        assert.equals("/properties/email/" .. kw, errs[1].schema_path, bad)
        local cok, path, keyword = v:check(r)
        assert.is_false(cok, bad)
        assert.equals("/email", path, bad)
        assert.equals(kw, keyword, bad)
      end
    end)

    it("rejects an industry outside the enum", function()
      local r = valid_request()
      r.industry = "cars"
      local ok, errs = v:validate(r)
      assert.is_false(ok)
      assert.equals('/industry: must be one of: "beauty", "fitness", "tutoring", "retail", "hospitality", '
        .. '"services", "other"', errs[1].message)
    end)

    it("rejects a country that is not exactly 2 characters, and a non-string timezone", function()
      local r = valid_request()
      r.country = "HKG"
      local _, errs = v:validate(r)
      assert.equals("/country: must be at most 2 characters long", errs[1].message)
      r = valid_request()
      r.timezone = 8
      _, errs = v:validate(r)
      assert.equals("/timezone: must be string, got integer", errs[1].message)
    end)

    it("returns only the first error by default", function()
      local ok, errs = v:validate({ organisationName = "G", email = "nope", country = 1 })
      assert.is_false(ok)
      assert.equals(1, #errs)
    end)

    it("collects every error with all_errors", function()
      local all = assert(schema.compile(request_schema(), { all_errors = true }))
      local ok, errs = all:validate({ organisationName = "G", country = "HKG", industry = "cars" })
      assert.is_false(ok)
      local seen = {}
      for _, e in ipairs(errs) do seen[#seen + 1] = e.message end
      table.sort(seen)
      assert.same({
        '/: missing required property "email"',
        '/country: must be at most 2 characters long',
        '/industry: must be one of: "beauty", "fitness", "tutoring", "retail", "hospitality", "services", "other"',
        '/organisationName: must be at least 2 characters long',
      }, seen)
    end)

    it("rejects a non-object request", function()
      local ok, errs = v:validate("you@example.com")
      assert.is_false(ok)
      assert.equals("/: must be object, got string", errs[1].message)
    end)
  end)

  describe("validate()", function()
    it("reports a string's first failure in keyword order, the same as the first of all_errors", function()
      -- lengths, then format (hand-written), then the PCRE2 pattern: JSON
      -- Schema does not order keywords, and the cheap check goes first. The
      -- fast path for scalar schemas records the first failure itself, and
      -- must agree with the full walk (and check with validate)
      local s = { type = "object", properties = { e = { type = "string", format = "email", pattern = "^[a-z@.]+$" } } }
      local first, all = assert(schema.compile(s)), assert(schema.compile(s, { all_errors = true }))
      local ok, errs = first:validate({ e = "NOT AN EMAIL" })
      assert.is_false(ok)
      assert.same({ { path = "/e", keyword = "format", schema_path = "/properties/e/format",
        message = "/e: must be a valid e-mail address", reason = "must be a valid e-mail address" } }, errs)
      assert.same({ false, "/e", "format", "must be a valid e-mail address" }, { first:check({ e = "NOT AN EMAIL" }) })
      local _, every = all:validate({ e = "NOT AN EMAIL" })
      assert.same(errs[1], every[1])
      assert.equals("pattern", every[2].keyword)
      assert.equals(2, #every)
      _, errs = first:validate({ e = "nope" }) -- passes the pattern, fails the format
      assert.same({ { path = "/e", keyword = "format", schema_path = "/properties/e/format",
        message = "/e: must be a valid e-mail address", reason = "must be a valid e-mail address" } }, errs)
      _, errs = first:validate({ e = "A@b.co" }) -- passes the format, fails the pattern
      assert.same({ { path = "/e", keyword = "pattern", schema_path = "/properties/e/pattern",
        message = "/e: does not match the pattern ^[a-z@.]+$",
        reason = "does not match the pattern ^[a-z@.]+$" } }, errs)
      assert.same({ false, "/e", "pattern", "does not match the pattern ^[a-z@.]+$" },
        { first:check({ e = "A@b.co" }) })
      assert.is_true((first:validate({ e = "a@b.co" })))
      assert.same({ true }, { first:check({ e = "a@b.co" }) })
    end)

    it("points into nested arrays with JSON Pointers", function()
      local v = assert(schema.compile({
        type = "object",
        properties = { contacts = { type = "array", items = {
          type = "object", required = { "email" },
          properties = { email = { type = "string", format = "email" } } } } },
      }))
      local ok, errs = v:validate({ contacts = { { email = "a@b.co" }, { email = "c@d.io" }, { email = "nope" } } })
      assert.is_false(ok)
      assert.equals("/contacts/2/email", errs[1].path)
      assert.equals("format", errs[1].keyword)
      assert.equals("/properties/contacts/items/properties/email/format", errs[1].schema_path)
      assert.equals("/contacts/2/email: must be a valid e-mail address", errs[1].message)
      ok, errs = v:validate({ contacts = { { email = "a@b.co" }, {} } })
      assert.is_false(ok)
      assert.equals("/contacts/1", errs[1].path)
      assert.equals('/contacts/1: missing required property "email"', errs[1].message)
    end)

    it("escapes ~ and / in paths", function()
      local v = assert(schema.compile({ additionalProperties = { type = "integer" } }))
      local _, errs = v:validate({ ["a/b~c"] = "x" })
      assert.equals("/a~1b~0c", errs[1].path)
    end)

    it("check() returns the first failure as strings: array indices, escapes, deadline, misuse", function()
      local v = assert(schema.compile({
        type = "object",
        properties = { contacts = { type = "array", items = {
          type = "object", required = { "email" },
          properties = { email = { type = "string", format = "email" } } } } },
        additionalProperties = { type = "integer" },
      }))
      assert.same({ true }, { v:check({ contacts = { { email = "a@b.co" } } }) })
      assert.same({ false, "/contacts/2/email", "format", "must be a valid e-mail address" },
        { v:check({ contacts = { { email = "a@b.co" }, { email = "c@d.io" }, { email = "nope" } } }) })
      assert.same({ false, "/contacts/1", "required", 'missing required property "email"' },
        { v:check({ contacts = { { email = "a@b.co" }, {} } }) })
      assert.same({ false, "/a~1b~0c", "type", "must be integer, got string" }, { v:check({ ["a/b~c"] = "x" }) })
      assert.same({ false, "", "false", "is not allowed" }, { assert(schema.compile(false)):check(1) })
      -- opts.deadline as validate's (a deadline already past is read every
      -- 256 units of work: this small instance finishes before)
      assert.same({ true }, { v:check({ contacts = { { email = "a@b.co" } } }, { deadline = -1 }) })
      assert.has_error(function() v:check(1, { deadline = "soon" }) end,
        "bad option 'deadline' (finite number of seconds expected)")
      assert.has_error(function() v.check({}, 1) end)
      v:close()
      assert.has_error(function() v:check(1) end, "attempt to use a closed or unfinished validator")
    end)

    it("looks an object's required properties up first, then the others, each group by name", function()
      -- the first failure of an instance with several: "b" and "d" are
      -- required, so "/b" is checked before "/a" and "/c"; validate names
      -- the same first failure as check
      local v = assert(schema.compile({ type = "object", required = { "d", "b" },
        properties = { a = { type = "integer" }, b = { type = "integer" }, c = { type = "integer" },
          d = { type = "integer" } } }))
      local bad = { a = "x", b = "x", c = "x", d = "x" }
      assert.same({ false, "/b", "type", "must be integer, got string" }, { v:check(bad) })
      local ok, errs = v:validate(bad)
      assert.is_false(ok)
      assert.equals("/b", errs[1].path)
      bad.b = 1
      assert.same({ false, "/d", "type", "must be integer, got string" }, { v:check(bad) })
      bad.d = 1
      assert.same({ false, "/a", "type", "must be integer, got string" }, { v:check(bad) })
      bad.a = 1
      assert.same({ false, "/c", "type", "must be integer, got string" }, { v:check(bad) })
      bad.c = 1
      assert.same({ true }, { v:check(bad) })
    end)

    it("check() returns each call's own path and reason, long ones and repeated ones alike", function()
      -- check keeps the last path and reason it returned and returns them
      -- again when they are the same: a different failure must never get
      -- the previous one's strings
      local long = string.rep("n", 120)
      local inner = { type = "object", properties = { [long] = { type = "integer" } } }
      local s = { type = "object", properties = {
        a = { type = "object", properties = { b = { type = "integer" } } },
        list = { type = "array", items = { type = "integer" } },
        deep = { type = "object", properties = { [long] = { type = "object", properties = {
          [long] = { type = "object", properties = { [long] = inner } } } } } },
        e = { enum = { string.rep("x", 100), string.rep("y", 100), string.rep("z", 100) } },
        f = { enum = { string.rep("p", 100), string.rep("q", 100), string.rep("r", 100) } },
      } }
      local v = assert(schema.compile(s))
      for _ = 1, 2 do -- twice: the second round returns the kept strings
        assert.same({ false, "/a/b", "type", "must be integer, got string" }, { v:check({ a = { b = "x" } }) })
        assert.same({ false, "/a/b", "type", "must be integer, got boolean" }, { v:check({ a = { b = true } }) })
        assert.same({ false, "/list/0", "type", "must be integer, got string" }, { v:check({ list = { "x" } }) })
        assert.same({ false, "/list/1", "type", "must be integer, got string" }, { v:check({ list = { 1, "x" } }) })
        local deep = {}
        deep[long] = {}
        deep[long][long] = {}
        deep[long][long][long] = {}
        deep[long][long][long][long] = "x"
        local p = "/deep/" .. long .. "/" .. long .. "/" .. long .. "/" .. long
        assert.same({ false, p, "type", "must be integer, got string" }, { v:check({ deep = deep }) })
        local ok, path, kw, why = v:check({ e = "w" })
        assert.same({ false, "/e", "enum" }, { ok, path, kw })
        assert.equals("must be one of: \"" .. string.rep("x", 100) .. "\", \"" .. string.rep("y", 100) .. "\", \""
          .. string.rep("z", 100) .. "\"", why)
        ok, path, kw, why = v:check({ f = "w" })
        assert.same({ false, "/f", "enum" }, { ok, path, kw })
        assert.equals("must be one of: \"" .. string.rep("p", 100) .. "\", \"" .. string.rep("q", 100) .. "\", \""
          .. string.rep("r", 100) .. "\"", why)
        -- a key of the instance (not a declared name) in the path
        local w = assert(schema.compile({ type = "object", additionalProperties = { type = "integer" } }))
        assert.same({ false, "/k1", "type", "must be integer, got string" }, { w:check({ k1 = "x" }) })
        assert.same({ false, "/k2", "type", "must be integer, got string" }, { w:check({ k2 = "x" }) })
      end
      -- the depth limit (a fatal error) in check
      local d = assert(schema.compile({ type = "object", properties = { a = { ["$ref"] = "#" } } }, { max_depth = 3 }))
      local inst = { a = { a = { a = { a = {} } } } }
      local _, errs = d:validate(inst)
      assert.same({ false, "/a/a/a", "depth", errs[1].reason }, { d:check(inst) })
      assert.same({ false, "/a/a/a", "depth", errs[1].reason }, { d:check(inst) })
    end)

    it("asserts formats by default and treats them as annotations with formats=false", function()
      local s = { type = "string", format = "date-time" }
      assert.is_false((schema.compile(s)):validate("yesterday"))
      assert.is_true((schema.compile(s)):validate("2026-02-28T10:00:00Z"))
      assert.is_true((schema.compile(s, { formats = false })):validate("yesterday"))
      assert.is_true((schema.compile({ format = "x-unknown" })):validate("anything"))
    end)

    it("fails invalid UTF-8 with a clear error instead of crashing", function()
      local v = assert(schema.compile({ type = "string", minLength = 1, pattern = "^a" }))
      local ok, errs = v:validate("a\255\254")
      assert.is_false(ok)
      assert.equals("utf8", errs[1].keyword)
      assert.equals("/: invalid UTF-8 in string", errs[1].message)
      assert.is_false(v:validate("a\237\160\128"))  -- an encoded surrogate
      assert.is_false(v:validate("a\192\175"))      -- an overlong "/"
      assert.is_true(v:validate("a\240\159\152\128"))
      -- long strings are read a word at a time: a bad byte at the end,
      -- in the overlapping tail, and in the middle
      assert.equals("utf8", select(3, v:check("abcdefghijklmnop\255")))
      assert.equals("utf8", select(3, v:check("abcdefghij\255klm")))
      assert.equals("utf8", select(3, v:check("abcd\255efghijklmnopqrstu")))
      -- and counted in code points
      local len = assert(schema.compile({ type = "string", minLength = 17, maxLength = 17 }))
      assert.is_true(len:validate("abcdefghijklmnop\195\169"))   -- 16 + 1 code points in 18 bytes
      assert.is_false(len:validate("abcdefghijklmnopq\195\169")) -- 18 code points
      assert.is_true(len:validate("abcdefghijklmnopq"))           -- 17 ASCII bytes
      assert.is_false(len:validate("abcdefghijklmnop"))           -- 16
      assert.is_false(len:validate("abcdefgh"))                   -- 8
    end)

    it("treats cjson.null as null, integral floats as integers, and 1 == 1.0", function()
      assert.is_true((schema.compile({ type = "null" })):validate(cjson.null))
      assert.is_true((schema.compile({ type = "integer" })):validate(2.0))
      assert.is_false((schema.compile({ type = "integer" })):validate(2.5))
      assert.is_true((schema.compile({ enum = { 1, "a" } })):validate(1.0))
      assert.is_true((schema.compile({ const = { a = { 1, 2 } } })):validate({ a = { 1.0, 2 } }))
      local ok, errs = (schema.compile({ uniqueItems = true })):validate({ 1, 2, 1.0 })
      assert.is_false(ok)
      assert.equals("/: must not contain duplicate items (items 0 and 2 are equal)", errs[1].message)
    end)

    it("accepts an empty table as both array and object", function()
      assert.is_true((schema.compile({ type = "array" })):validate({}))
      assert.is_true((schema.compile({ type = "object" })):validate({}))
      assert.is_false((schema.compile({ type = "array" })):validate({ a = 1 }))
      assert.is_false((schema.compile({ type = "object" })):validate({ 1, 2 }))
    end)

    it("rejects Lua values JSON cannot hold", function()
      local ok, errs = (schema.compile({})):validate(print)
      assert.is_false(ok)
      assert.equals("/: is a Lua function, not a JSON value", errs[1].message)
    end)

    it("walks an additionalProperties: false object by its keys' identity, and still names any other key", function()
      -- a short key equal to a declared name is that name's own (interned)
      -- string; a long declared name, a number key, an undeclared key and
      -- a key JSON cannot hold take the general way
      local long = string.rep("k", 60)
      local props = { short = { type = "integer" }, [long] = { type = "string" }, ["7"] = { type = "boolean" } }
      local v = assert(schema.compile({ type = "object", properties = props, additionalProperties = false }))
      local inst = { short = 1, ["7"] = true }
      inst[string.rep("k", 30) .. string.rep("k", 30)] = "made at run time"
      assert.same({ true }, { v:check(inst) })
      assert.is_true((v:validate(inst)))
      inst[long] = 5
      assert.same({ false, "/" .. long, "type", "must be string, got integer" }, { v:check(inst) })
      inst[long] = "x"
      inst.short = "one"
      assert.same({ false, "/short", "type", "must be integer, got string" }, { v:check(inst) })
      inst.short = 1
      inst[7] = "no" -- a number key: the name "7" in JSON
      local _, errs = v:validate(inst)
      assert.same({ false, "/7", "type", "must be boolean, got string" }, { v:check(inst) })
      assert.same({ "/7", "type" }, { errs[1].path, errs[1].keyword })
      inst[7] = nil
      inst.sh = 2
      assert.same({ false, "/sh", "additionalProperties", 'property "sh" is not allowed' }, { v:check(inst) })
      inst.sh = nil
      inst[true] = 1
      assert.same({ false, "", "type", "has a key of type boolean, which JSON cannot hold" }, { v:check(inst) })
    end)

    it("reports additional properties by name", function()
      local v = assert(schema.compile({ properties = { a = {} }, additionalProperties = false }))
      local ok, errs = v:validate({ a = 1, b = 2 })
      assert.is_false(ok)
      assert.same({ path = "/b", keyword = "additionalProperties", schema_path = "/additionalProperties",
        property = "b", message = '/b: property "b" is not allowed', reason = 'property "b" is not allowed' },
        errs[1])
    end)

    it("finds what else an additionalProperties: false object holds, whatever it is", function()
      -- objects of declared keys only are checked by lookups and a key count
      -- where the Lua has table.nkeys (LuaJIT); anything else there must
      -- still be found and named, as the walk of every key does
      local v = assert(schema.compile({ type = "object", required = { "a" },
        properties = { a = { type = "integer" }, b = { type = "string" }, ["1"] = { type = "string" } },
        additionalProperties = false }))
      assert.is_true(v:validate({ a = 1 }))
      assert.is_true(v:validate({ a = 1, b = "x", ["1"] = "y" }))
      local cases = {
        { { a = 1, c = 2 }, "/c" },
        { { a = 1, b = "x", c = false }, "/c" },
        { { a = 1, [2] = "y" }, "/2" },                 -- a number key, not a declared name
        { { a = 1, [true] = "y" }, nil },               -- a key JSON cannot hold
      }
      for i, case in ipairs(cases) do
        local ok, errs = v:validate(case[1])
        assert.is_false(ok, "case " .. i)
        if case[2] then
          assert.same({ path = case[2], keyword = "additionalProperties", schema_path = "/additionalProperties",
            property = case[2]:sub(2), message = case[2] .. ': property "' .. case[2]:sub(2) .. '" is not allowed',
            reason = 'property "' .. case[2]:sub(2) .. '" is not allowed' }, errs[1], "case " .. i)
        else
          assert.equals("type", errs[1].keyword, "case " .. i)
        end
      end
      -- a name only in required is no declared property: holding it is holding something else
      local r = assert(schema.compile({ required = { "x" }, properties = { a = {} }, additionalProperties = false }))
      local ok, errs = r:validate({ x = 1 })
      assert.is_false(ok)
      assert.equals("/x", errs[1].path)
      -- a declared property that fails is reported as before
      ok, errs = v:validate({ a = "one" })
      assert.is_false(ok)
      assert.equals("/a: must be integer, got string", errs[1].message)
    end)

    it("checks string enums of any length and size", function()
      local long = ("x"):rep(41) -- longer than the strings Lua interns
      local members = { "a", long }
      for i = 1, 20 do members[#members + 1] = "m" .. i end -- more than are checked by pointer
      for _, enum in ipairs({ { "a", "bb" }, { "a", long }, members }) do
        local v = assert(schema.compile({ type = "object", properties = { e = { type = "string", enum = enum } } }))
        for _, m in ipairs(enum) do
          assert.is_true(v:validate({ e = (m .. "#"):sub(1, -2) }), m) -- an equal string built anew
        end
        for _, bad in ipairs({ "c", long .. "y", ("x"):rep(40), "" }) do
          local ok, errs = v:validate({ e = bad })
          assert.is_false(ok, bad)
          assert.equals("enum", errs[1].keyword)
        end
        assert.is_false((v:validate({ e = 1 })))
      end
    end)

    it("applies draft-07 rules from $schema and 2020-12 rules by default", function()
      local tuple = { items = { { type = "integer" } }, additionalItems = false }
      local d7 = { ["$schema"] = "http://json-schema.org/draft-07/schema#" }
      for k, val in pairs(tuple) do d7[k] = val end
      assert.is_false((schema.compile(d7)):validate({ 1, 2 }))
      assert.is_true((schema.compile({ prefixItems = { { type = "integer" } }, items = false })):validate({ 1 }))
      assert.is_false((schema.compile({ prefixItems = { { type = "integer" } }, items = false })):validate({ 1, 2 }))
      -- draft-07 ignores siblings of $ref; 2020-12 applies them
      local s = { ["$defs"] = { n = { type = "number" } }, ["$ref"] = "#/$defs/n", maximum = 5 }
      assert.is_false((schema.compile(s)):validate(9))
      assert.is_true((schema.compile(s, { draft = "draft7" })):validate(9))
    end)

    it("stops at the depth limit with a clear error", function()
      local v = assert(schema.compile({ ["$defs"] = { node = { type = "object",
        additionalProperties = { ["$ref"] = "#/$defs/node" } } }, ["$ref"] = "#/$defs/node" }, { max_depth = 50 }))
      local t = {}
      local cur = t
      for _ = 1, 60 do cur.x = {}; cur = cur.x end
      local ok, errs = v:validate(t)
      assert.is_false(ok)
      assert.equals("depth", errs[1].keyword)
      assert.equals(string.rep("/x", 50), errs[1].path)
      assert.equals(string.rep("/x", 50) .. ": exceeds the maximum depth of 50", errs[1].message)
      cur = t
      for _ = 1, 20 do cur = cur.x end
      cur.x = nil
      assert.is_true(v:validate(t))
    end)

    it("detects a $ref cycle that makes no progress", function()
      local v = assert(schema.compile({ ["$defs"] = { a = { ["$ref"] = "#/$defs/b" }, b = { ["$ref"] = "#/$defs/a" } },
        ["$ref"] = "#/$defs/a" }))
      local ok, errs = v:validate(1)
      assert.is_false(ok)
      assert.equals("$ref", errs[1].keyword)
      assert.equals('/: $ref cycle without progress: "#/$defs/a" leads back to itself on the same value',
        errs[1].message)
      -- the same cycle under `not` is still an error, not a pass
      v = assert(schema.compile({ ["not"] = { ["$ref"] = "#" } }))
      ok, errs = v:validate(1)
      assert.is_false(ok)
      assert.equals("$ref", errs[1].keyword)
    end)

    it("follows recursive $ref that makes progress", function()
      local v = assert(schema.compile({ type = "object", properties = { child = { ["$ref"] = "#" },
        name = { type = "string" } } }))
      assert.is_true(v:validate({ name = "a", child = { name = "b", child = { name = "c" } } }))
      local ok, errs = v:validate({ name = "a", child = { child = { name = 3 } } })
      assert.is_false(ok)
      assert.equals("/child/child/name", errs[1].path)
    end)

    it("checks $dynamicRef against the dynamic scope", function()
      local tree = { ["$id"] = "https://example.test/tree", ["$dynamicAnchor"] = "node", type = "object",
        properties = { children = { type = "array", items = { ["$dynamicRef"] = "#node" } } } }
      local strict = { ["$id"] = "https://example.test/strict", ["$dynamicAnchor"] = "node",
        ["$ref"] = "tree", unevaluatedProperties = false }
      local v = assert(schema.compile(strict, { remotes = { ["https://example.test/tree"] = tree } }))
      assert.is_true(v:validate({ children = { { children = {} } } }))
      local ok, errs = v:validate({ children = { { daat = 1 } } })
      assert.is_false(ok)
      assert.equals("/children/0/daat", errs[1].path)
    end)

    it("can be called directly and reused", function()
      local v = assert(schema.compile({ type = "integer", minimum = 1 }))
      for i = 1, 100 do assert.is_true(v(i)) end
      local ok, errs = v(0)
      assert.is_false(ok)
      assert.equals("/: must be >= 1", errs[1].message)
    end)
  end)

  describe("memory", function()
    it("survives compiling, validating and dropping validators under a full GC", function()
      local s = request_schema()
      for i = 1, 200 do
        local v = assert(schema.compile(s, { all_errors = (i % 2 == 0) }))
        assert.is_true(v:validate(valid_request()))
        assert.is_false(v:validate({ email = "x" }))
        local bad = schema.compile({ properties = { a = { pattern = "(" } } })
        assert.is_nil(bad)
        v = nil  -- luacheck: ignore 311
        if i % 20 == 0 then collectgarbage() end
      end
      collectgarbage()
      collectgarbage()
      local before = collectgarbage("count")
      for _ = 1, 200 do
        local v = schema.compile(s)
        v:validate(valid_request())
      end
      collectgarbage()
      collectgarbage()
      assert.is_true(collectgarbage("count") < before + 256, "Lua heap grew by more than 256 KiB")
    end)
  end)
end)

describe("favcrm.schema's PCRE2", function()
  -- PCRE2 is loaded with the first regex (issue 20's RSS): a child process,
  -- since this one may have compiled patterns already.
  it("is mapped only once a schema needs a pattern", function()
    local f = io.open("/proc/self/maps")
    if not f then pending("no /proc/self/maps here (not Linux): cannot see the mappings") return end
    f:close()
    local lua = os.getenv("FAVCRM_LUA_BIN") or "lua5.4"
    local script = [[
      local schema = require("favcrm.schema")
      local function mapped()
        local fh = io.open("/proc/self/maps"); local m = fh:read("*a"); fh:close()
        return m:find("libpcre2%-8", 1, false) ~= nil
      end
      assert(schema.compile({ type = "object", properties = { a = { type = "string" } } }))
      io.write(tostring(mapped()), " ")
      local v = assert(schema.compile({ type = "string", pattern = "^a+$" }))
      io.write(tostring(mapped()), " ", tostring(v:check("aaa")), " ", tostring(v:check("b")))
    ]]
    local tmp = os.tmpname()
    local sf = assert(io.open(tmp, "w"))
    sf:write(script)
    sf:close()
    local p = assert(io.popen(lua .. " " .. tmp .. " 2>&1"))
    local out = p:read("*a")
    p:close()
    os.remove(tmp)
    assert.are.equal("false true true false", out)
  end)
end)
