-- favcrm.json: encode/decode for all of favcrm-lua, and the one rule for
-- empty arrays.
local json = require("favcrm.json")
local core = require("favcrm.core")

local G = json.guide

describe("favcrm.json", function()
  describe("decode()", function()
    it("marks empty arrays, at any depth, and leaves empty objects and strings alone", function()
      local v = assert(json.decode('{"a": [], "b": {}, "s": "[]", "n": [[], {"e": [ ]}], "q": "x\\"[]"}'))
      assert.is_true(json.is_array(v.a))
      assert.is_false(json.is_array(v.b))
      assert.equal("[]", v.s)
      assert.equal('x"[]', v.q)
      assert.is_true(json.is_array(v.n[1]))
      assert.is_true(json.is_array(v.n[2].e))
    end)

    it("returns nil and a message for text that is not JSON", function()
      local v, err = json.decode("{not json")
      assert.is_nil(v)
      assert.is_string(err)
      assert.same({ nil, "not a string" }, { json.decode(42) })
      assert.is_nil((json.decode('"unterminated')))
    end)
  end)

  describe("encode()", function()
    it("round-trips empty arrays, nested, with keys sorted", function()
      local text = '{"a":[],"b":{},"c":[[],{"d":[],"e":{}}],"s":"[]"}'
      assert.equal(text, json.encode(assert(json.decode(text))))
    end)

    it("writes marked tables and tables a guide calls arrays as []", function()
      assert.equal('{"a":[],"b":{}}', json.encode({ a = json.array(), b = {} }))
      local schema = { type = "object", properties = { list = { type = "array" }, map = { type = "object" } } }
      assert.equal('{"list":[],"map":{}}', json.encode({ list = {}, map = {} }, G.schema(schema)))
      assert.equal('{"properties":{},"required":[],"type":"object"}',
        json.encode({ type = "object", properties = {}, required = {} }, G.schemadoc))
    end)

    it("pretty-prints with an indent", function()
      assert.equal('{\n  "a": [\n    1,\n    2\n  ],\n  "b": []\n}',
        json.encode({ a = { 1, 2 }, b = json.array() }, nil, "  "))
    end)

    it("refuses a secret without showing it", function()
      local ok, err = pcall(json.encode, { k = core.secret("fav_mcp_abcdefabcdefabcdef") })
      assert.is_false(ok)
      assert.is_nil(tostring(err):find("abcdefabcdef", 1, true))
    end)
  end)

  describe("mark_arrays()", function()
    local schema = { type = "object", properties = {
      tags = { type = "array" }, meta = { type = "object" }, either = { type = { "array", "null" } },
      rows = { type = "array", items = { type = "object", properties = { ids = { type = "array" } } } },
    } }

    it("marks the empty tables the schema calls arrays, nested in objects and items", function()
      local args = { tags = {}, meta = {}, either = {}, rows = { { ids = {} }, { ids = { 1 } } } }
      local out, changed = json.mark_arrays(args, schema)
      assert.is_true(changed)
      assert.is_true(json.is_array(out.tags))
      assert.is_true(json.is_array(out.either))
      assert.is_false(json.is_array(out.meta))
      assert.is_true(json.is_array(out.rows[1].ids))
      assert.equal('{"either":[],"meta":{},"rows":[{"ids":[]},{"ids":[1]}],"tags":[]}',
        json.encode(json.decode(json.wire(out))))
    end)

    it("never changes the caller's tables", function()
      local args = { tags = {}, rows = { { ids = {} } } }
      json.mark_arrays(args, schema)
      assert.is_nil(getmetatable(args.tags))
      assert.is_nil(getmetatable(args.rows[1].ids))
      assert.equal('{"rows":[{"ids":{}}],"tags":{}}', json.encode(json.decode(json.wire(args))))
    end)

    it("returns the same table when nothing is to be marked", function()
      local args = { meta = {} }
      local out, changed = json.mark_arrays(args, schema)
      assert.equal(args, out)
      assert.is_false(changed)
    end)
  end)

  describe("wire()", function()
    it("writes compact JSON, marked empty arrays as [], and strings that look like markers as they are", function()
      local text = assert(json.wire({ a = json.array(), s = "[]" }))
      local back = assert(json.decode(text))
      assert.is_true(json.is_array(back.a))
      assert.equal("[]", back.s)
    end)

    it("returns nil and a message for a value JSON cannot hold", function()
      local text, err = json.wire({ f = function() end })
      assert.is_nil(text)
      assert.is_string(err)
    end)

    -- lua-cjson prints 14 significant digits: 123456789012345 left as
    -- 123456789012340 (issue 14).
    it("writes every integer Lua holds exactly as its exact digits", function()
      local cases = {
        { 123456789012345, "123456789012345" }, { -123456789012345, "-123456789012345" },
        { 99999999999999, "99999999999999" }, { 2 ^ 53, "9007199254740992" }, { -2 ^ 53, "-9007199254740992" },
        { 1e15, "1000000000000000" }, { 2 ^ 63, nil },
      }
      if math.type then -- 5.3+: 64-bit integers
        cases[#cases + 1] = { math.maxinteger, "9223372036854775807" }
        cases[#cases + 1] = { math.mininteger, "-9223372036854775808" }
        cases[#cases + 1] = { 9007199254740993, "9007199254740993" }
        cases[#cases + 1] = { 1234567890123456789, "1234567890123456789" }
      end
      for _, c in ipairs(cases) do
        local text = assert(json.wire({ n = c[1], list = { c[1] }, e = json.array() }))
        if c[2] then
          assert.matches('"n":' .. c[2]:gsub("%-", "%%-") .. "[,}]", text)
          assert.matches("%[" .. c[2]:gsub("%-", "%%-") .. "%]", text)
          assert.equal(c[2], json.encode(c[1]))
        end
        assert.matches('"e":%[%]', text)
      end
      -- nothing else changes: small integers, fractions, strings shaped like the marker
      assert.equal('[1,-2,0.5,"123456789012345"]', json.wire({ 1, -2, 0.5, "123456789012345" }))
    end)

    it("leaves the caller's table untouched", function()
      local v = { n = 123456789012345, sub = { m = 2 ^ 53 } }
      assert(json.wire(v))
      assert.equal(123456789012345, v.n)
      assert.equal(2 ^ 53, v.sub.m)
    end)
  end)

  describe("on the wire (sandbox)", function()
    local favcrm = require("favcrm")
    local sandbox = require("spec.support.sandbox")

    it("a 15-digit integer and 2^53 reach the server exactly", function()
      local c = favcrm.new({ url = sandbox.url(), api_key = sandbox.account(), timeout = 10 })
      for _, n in ipairs({ 123456789012345, -123456789012345, 2 ^ 53 - 1, 2 ^ 53 }) do
        local data = assert(c:call("sandbox_echo", { value = n }))
        -- the server echoes what it parsed; JSON numbers there are doubles too
        assert.equal(string.format("%.0f", n), string.format("%.0f", data))
      end
      c:close()
    end)

    it("a JSON-RPC error code comes back as an integer; -32602 is invalid_arguments", function()
      local c = favcrm.new({ url = sandbox.url(), api_key = sandbox.account(), timeout = 10 })
      local res, err = c.session:request("tools/call", { name = "no_such_tool_here", arguments = {} })
      assert.is_nil(res)
      assert.equal("invalid_arguments", err.code)
      assert.equal(-32602, err.rpc_code)
      if math.type then assert.equal("integer", math.type(err.rpc_code)) end
      assert.equal("-32602", tostring(err.rpc_code))
      -- the client still turns an unknown tool into unknown_tool
      local _, uerr = c:call("no_such_tool_here", {}, { validate = false })
      assert.equal("unknown_tool", uerr.code)
      c:close()
    end)
  end)
end)
