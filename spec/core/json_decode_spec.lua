-- favcrm.core json_decode(text): the tools/call fast path for lua-cjson's
-- decode (csrc/json_decode.c). Where it answers, it must give exactly what
-- cjson.decode gives (types included); where it declines it returns nil and
-- the caller asks cjson. Checked by difference over a corpus, over random
-- JSON written by cjson.encode, and over the answers the sandbox really sends.
local core = require("favcrm.core")
local cjson = require("cjson")
local favcrm = require("favcrm")
local sandbox = require("spec.support.sandbox")

local mtype = math.type -- nil on 5.1, 5.2 and LuaJIT: every number is a double there

-- Describes the first difference between a and b (values, Lua types, number
-- subtypes, metatables, cjson.null identity), or returns nil when they match.
local function diff(a, b, path)
  path = path or "$"
  if type(a) ~= type(b) then return path .. ": " .. type(a) .. " vs " .. type(b) end
  if type(a) == "number" then
    if mtype and mtype(a) ~= mtype(b) then return path .. ": " .. mtype(a) .. " vs " .. mtype(b) end
    if a ~= b and not (a ~= a and b ~= b) then return path .. ": " .. tostring(a) .. " vs " .. tostring(b) end
    if a == 0 and 1 / a ~= 1 / b then return path .. ": signed zero" end
    return nil
  end
  if type(a) ~= "table" then
    if a ~= b then return path .. ": " .. tostring(a) .. " vs " .. tostring(b) end
    return nil
  end
  if getmetatable(a) ~= getmetatable(b) then return path .. ": metatables differ" end
  for k, v in pairs(a) do
    if type(k) ~= "string" and type(k) ~= "number" then return path .. ": odd key type" end
    local d = diff(v, rawget(b, k), path .. "." .. tostring(k))
    if d then return d end
  end
  for k in pairs(b) do
    if rawget(a, k) == nil then return path .. ": key " .. tostring(k) .. " only in cjson's" end
  end
  return nil
end

-- Asserts that json_decode(text) equals cjson.decode(text) when it answers;
-- returns true when it answered.
local function same(text)
  local fast = core.json_decode(text)
  if fast == nil then return false end
  local ok, slow = pcall(cjson.decode, text)
  assert(ok, "json_decode accepted what cjson refuses: " .. text:sub(1, 200))
  local d = diff(fast, slow)
  assert(d == nil, (d or "") .. " in " .. text:sub(1, 200))
  return true
end

describe("favcrm.core json_decode()", function()
  it("answers what cjson.decode answers, types included", function()
    local corpus = {
      '{}', '[]', '[[]]', '{"a":{}}', '{"a":[]}', 'null', 'true', 'false', '0', '-0', '1', '-1', '7',
      '123456789012345', '1234567890123456', '12345678901234567890', '-9007199254740993', '1.5', '-2.25e3',
      '1e400', '-1e400', '1e-400', '5e-324', '0.1', '1E+2', '1e-2', '3.141592653589793238462643',
      '"x"', '""', '"a\\"b\\\\c\\/d\\b\\f\\n\\r\\t"', '"\\u0041\\u00e9\\u20ac\\uD83D\\ude00"',
      '"\\u0000z"', '"caf\195\169 \240\159\152\128"', '"\255\254 raw bytes"', '"tab\there"',
      '{"a":1,"b":[1,2,{"c":null}],"d":"e"}', '{"a":1,"a":2}', '{"a":[1],"a":{"b":2}}',
      '  {\n\t"sp" : [ 1 , 2 ] \r}  ', '[null,null,1]', '{"":0}', '{"1":"one","2":"two"}',
      '{"jsonrpc":"2.0","id":12,"result":{"content":[{"type":"text","text":"{\\"ok\\":true}"}],'
        .. '"structuredContent":{"data":{"ok":true,"n":3.5}},"isError":false}}',
    }
    for _, text in ipairs(corpus) do
      assert.is_true(same(text), "declined: " .. text)
    end
    assert.equal(cjson.null, core.json_decode("[null]")[1])
    if mtype then assert.equal("float", mtype(core.json_decode("[1]")[1])) end
  end)

  it("declines (nil) what it does not handle, and never raises for it", function()
    local declined = {
      '', ' ', '[', '{', '[1,]', '{"a":1,}', '{"a"}', '{1:2}', '[1 2]', '01', '+1', '0x10', '.5', '1.', '1e',
      '-', 'inf', 'nan', 'Infinity', 'tru', 'nul', '"abc', '"\\x"', '"\\u12"', '"\\uZZZZ"', '"\\ud800"',
      '"\\ude00"', '"\\ud800\\u0041"', '[1]x', '[1]\0', '"a\0b"', '\0', '\f1', '{"a":1}}', "'a'",
    }
    for _, text in ipairs(declined) do
      assert.is_nil(core.json_decode(text), "answered: " .. text)
    end
    assert.has_error(function() core.json_decode({}) end)
  end)

  it("decodes nesting up to 64 deep and declines deeper", function()
    local at = string.rep("[", 64) .. "1" .. string.rep("]", 64)
    assert.is_true(same(at))
    local obj = string.rep('{"a":', 64) .. "1" .. string.rep("}", 64)
    assert.is_true(same(obj))
    assert.is_nil(core.json_decode(string.rep("[", 65) .. "1" .. string.rep("]", 65)))
    assert.is_nil(core.json_decode(string.rep("[", 100000)))
  end)

  it("builds big containers or declines them (bounded stack)", function()
    local items = {}
    for i = 1, 999 do items[i] = i end
    assert.is_true(same(cjson.encode(items)))
    for i = 1000, 5000 do items[i] = i end
    local text = cjson.encode(items)
    assert.is_nil(core.json_decode(text))
    assert.equal(5000, #cjson.decode(text))
  end)

  it("matches cjson on random JSON that cjson.encode wrote", function()
    math.randomseed(20)
    local function rstr()
      local t = {}
      for i = 1, math.random(0, 12) do t[i] = string.char(math.random(0, 255)) end
      return table.concat(t)
    end
    local function rnum()
      local r = math.random(1, 5)
      if r == 1 then return math.random(-1000, 1000) end
      if r == 2 then return (math.random() - 0.5) * 10 ^ math.random(-30, 30) end
      if r == 3 then return math.random(0, 2 ^ 30) * 2 ^ 23 end
      if r == 4 then return 0 end
      return math.random()
    end
    local function rval(depth)
      local r = math.random(1, depth > 5 and 5 or 8)
      if r == 1 then return rnum() elseif r == 2 then return rstr() elseif r == 3 then return math.random(2) == 1
      elseif r == 4 then return cjson.null elseif r == 5 then return rstr() end
      local t = {}
      if r == 6 then
        for i = 1, math.random(0, 6) do t[i] = rval(depth + 1) end
      else
        for _ = 1, math.random(0, 6) do t[rstr()] = rval(depth + 1) end
      end
      return t
    end
    local answered = 0
    for _ = 1, 2000 do
      local ok, text = pcall(cjson.encode, rval(0))
      if ok and same(text) then answered = answered + 1 end
    end
    assert.is_true(answered > 1900, "answered only " .. answered)
  end)

  it("matches cjson on the answers the sandbox sends to tools/call", function()
    local seen, original = {}, core.json_decode
    core.json_decode = function(text)
      seen[#seen + 1] = text
      return original(text)
    end
    local ok, err = pcall(function()
      local c = assert(favcrm.new({ url = sandbox.url(), api_key = sandbox.account(), timeout = 10 }))
      assert(c:call("list_services"))
      local values = { "hello", 1, 2.5, -3e40, "caf\195\169 \"q\" \\ \n \240\159\152\128",
        { a = { 1, { b = false } } } }
      for _, v in ipairs(values) do
        assert(c:call("sandbox_echo", { value = v }))
      end
      c:close()
    end)
    core.json_decode = original
    assert(ok, err)
    assert.is_true(#seen >= 7, "the fast path saw " .. #seen .. " answers")
    for _, text in ipairs(seen) do
      assert.is_true(same(text), "declined a sandbox answer: " .. text:sub(1, 200))
    end
  end)
end)
