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
    local values = { "hello", 1, 2.5, -3e40, "caf\195\169 \"q\" \\ \n \240\159\152\128",
      { a = { 1, { b = false } } } }
    -- the calls' results: through the session's general path (its transport's
    -- exchange without the JSON-RPC mode: the session decodes the answers
    -- with json_decode), then through the C transport's JSON-RPC mode
    local general, direct = {}, {}
    local ok, err = pcall(function()
      for round = 1, 2 do
        local c = assert(favcrm.new({ url = sandbox.url(), api_key = sandbox.account(), timeout = 10 }))
        local out = round == 1 and general or direct
        local real = c.session.transport
        if round == 1 then
          c.session.transport = setmetatable({
            exchange = function(_, req, wait_ms, sse) return real:exchange(req, wait_ms, sse) end,
          }, { __index = function(_, k) return function(_, ...) return real[k](real, ...) end end })
        end
        out[#out + 1] = select(2, assert(c:call("list_services")))
        for _, v in ipairs(values) do
          out[#out + 1] = select(2, assert(c:call("sandbox_echo", { value = v })))
        end
        c.session.transport = real
        c:close()
        if round == 1 then core.json_decode = original end
      end
    end)
    core.json_decode = original
    assert(ok, err)
    assert.is_true(#seen >= 7, "the fast path saw " .. #seen .. " answers")
    for _, text in ipairs(seen) do
      assert.is_true(same(text), "declined a sandbox answer: " .. text:sub(1, 200))
      -- and the JSON-RPC mode takes the same answer's result, the same
      local msg = cjson.decode(text)
      local res = core.json_rpc_result(text, msg.id)
      assert.is_table(res, "the JSON-RPC mode declined: " .. text:sub(1, 200))
      local d = diff(res, msg.result)
      assert(d == nil, (d or "") .. " in " .. text:sub(1, 200))
    end
    assert.equal(#values + 1, #direct)
    for i = 1, #general do
      local d = diff(direct[i], general[i])
      assert(d == nil, "call " .. i .. ": " .. tostring(d))
    end
  end)
end)

-- What Session:call_tool decided for a decoded answer before the JSON-RPC
-- mode of http:exchange: its result when it is the plain result of request
-- id, else nil.
local function general(text, id, modern)
  local msg = core.json_decode(text)
  if msg == nil then msg = require("cjson.safe").decode(text) end
  if type(msg) == "table" and msg.id == id and msg.jsonrpc == "2.0" and msg.error == nil and msg.method == nil then
    local res = msg.result
    if type(res) == "table" and not (modern and res.resultType == "input_required") then return res end
  end
  return nil
end

-- Asserts that json_rpc_result(text, id, modern) is nil where the general
-- path takes no result, and the general path's result where it answers;
-- returns true when it answered.
local function same_rpc(text, id, modern)
  local fast = core.json_rpc_result(text, id, modern)
  local slow = general(text, id, modern)
  if fast == nil then return false end
  assert(slow ~= nil, "json_rpc_result took what the general path does not: " .. text:sub(1, 200))
  local d = diff(fast, slow)
  assert(d == nil, (d or "") .. " in " .. text:sub(1, 200))
  return true
end

describe("favcrm.core json_rpc_result()", function()
  it("takes the plain result of our request, as the general path would", function()
    local taken = {
      '{"jsonrpc":"2.0","id":7,"result":{}}', '{"jsonrpc":"2.0","id":7,"result":[]}',
      '{"result":{"a":[1,{"b":null}]},"jsonrpc":"2.0","id":7}',
      ' { "id" : 7 , "jsonrpc" : "2.0" , "result" : {"x":"y"} } ',
      '{"jsonrpc":"2.0","id":7.0,"result":{}}', '{"jsonrpc":"2.0","id":7e0,"result":{}}',
      '{"jsonrpc":"2.0","id":7,"result":{"a":1},"result":{"b":2}}', '{"jsonrpc":"2.0","id":7,"id":7,"result":[1]}',
      '{"jsonrpc":"2.0","id":7,"result":{},"other":[1,{"x":null}],"_meta":{}}',
      '{"jsonrpc":"2.0","id":7,"result":{"resultType":"complete","content":[{"type":"text","text":"[]"}]}}',
      '{"jsonrpc":"2.0","id":7,"result":{"k\\u0065y":"v\\n","s":"caf\195\169"}}',
      '{"jsonrpc":"2.0","id":7,"result":{"resultType":"input_required","resultType":"complete"}}',
      '{"jsonrpc":"2.0","id":7,"result":{"a":{"resultType":"input_required"}}}',
      '{"jsonrpc":"2.0","id":7,"result":[{"resultType":"input_required"}]}',
      '{"jsonrpc":"2.0","id":7,"x":{"resultType":"input_required"},"result":{"resultType":"inputRequired"}}',
      '{"jsonrpc":"2.0","id":7,"result":{"resultType":"input_required"},"result":{}}',
    }
    for _, text in ipairs(taken) do
      assert.is_true(same_rpc(text, 7, true), "declined: " .. text)
    end
    -- not input_required unless modern
    assert.is_true(same_rpc('{"jsonrpc":"2.0","id":7,"result":{"resultType":"input_required"}}', 7, false))
  end)

  it("declines every other answer (nil), never raising for it", function()
    local declined = {
      '{"jsonrpc":"2.0","id":8,"result":{}}', '{"jsonrpc":"2.0","id":"7","result":{}}',
      '{"jsonrpc":"2.0","result":{}}', '{"id":7,"result":{}}', '{"jsonrpc":"1.0","id":7,"result":{}}',
      '{"jsonrpc":"2.0","id":7}', '{"jsonrpc":"2.0","id":7,"result":"x"}', '{"jsonrpc":"2.0","id":7,"result":1}',
      '{"jsonrpc":"2.0","id":7,"result":null}', '{"jsonrpc":"2.0","id":7,"result":{},"error":null}',
      '{"jsonrpc":"2.0","id":7,"error":{"code":-32602,"message":"no"}}',
      '{"jsonrpc":"2.0","id":7,"method":"ping","result":{}}',
      '{"jsonrpc":"2.0","method":"notifications/message","params":{}}',
      '{"jsonrpc":"2.0","id":7,"result":{"resultType":"input_required","inputRequests":{}}}',
      '{"jsonrpc":"2.0","id":7,"result":{"result\\u0054ype":"input_required"}}',
      '{"jsonrpc":"2.0","id":7,"result":{"resultType":"complete","resultType":"input_required"}}',
      '{"jsonrpc":"2.0","id":7,"result":{},"result":{"resultType":"input_required"}}',
      '{"jsonrpc":"2.0","id":7,"id":8,"result":{}}', '{"jsonrpc":"2.0","id":8,"id":7,"result":{}}',
      '{"jsonrpc":"2.0","jsonrpc":"1.0","id":7,"result":{}}', '{"jsonrpc":"2.0","id":7,"result":{},"result":5}',
      '[{"jsonrpc":"2.0","id":7,"result":{}}]', '{"jsonrpc":"2.0","id":7,"result":{}}x',
      '{"jsonrpc":"2.0","id":7,"result":{}',
      '{"jsonrpc":"2.0","id":7,"result":{}}\0', '{"jsonrpc":"2.0","id":7,"result":{"a":1,}}', '', 'null',
      '{"jsonrpc":"2.0","id":7,"result":' .. string.rep("[", 70) .. string.rep("]", 70) .. '}',
      '{"jsonrpc":"2\\u002e0","id":7,"result":{}}', '{"\\u0065rror":1,"jsonrpc":"2.0","id":7,"result":{}}',
    }
    for _, text in ipairs(declined) do
      assert.is_nil(core.json_rpc_result(text, 7, true), "answered: " .. text)
      same_rpc(text, 7, true)
    end
    assert.has_error(function() core.json_rpc_result({}, 7) end)
    assert.has_error(function() core.json_rpc_result("{}") end)
  end)

  it("matches the general path on random answers", function()
    math.randomseed(21)
    local function rvalue(depth, tbl)
      local r = tbl and math.random(5, 6) or math.random(1, depth > 3 and 4 or 6)
      if r == 1 then return math.random(-5, 5)
      elseif r == 2 then return ({ "a", "2.0", "", "input_required" })[math.random(4)]
      elseif r == 3 then return cjson.null elseif r == 4 then return math.random(2) == 1 end
      local t = {}
      if r == 5 then
        for i = 1, math.random(0, 3) do t[i] = rvalue(depth + 1) end
      else
        for _ = 1, math.random(0, 3) do
          t[({ "resultType", "content", "type", "x" })[math.random(4)]] = rvalue(depth + 1)
        end
      end
      return t
    end
    local function pick(list) return list[math.random(#list)] end
    local function result() return '"result":' .. cjson.encode(rvalue(1, math.random(5) > 1)) end
    local extras = {
      function() return '"jsonrpc":' .. pick({ '"2.0"', '"1.0"', '2', '"2\\u002e0"' }) end,
      function() return '"id":' .. pick({ "7", "7.0", "8", '"7"', "null", "7e0" }) end,
      result,
      function() return '"error":' .. pick({ "null", '{"code":1,"message":"m"}' }) end,
      function() return '"method":"ping"' end,
      function() return '"other":' .. cjson.encode(rvalue(0)) end,
      function() return '"\\u0069d":7' end,
    }
    local answered = 0
    for _ = 1, 3000 do
      -- mostly a plain answer, sometimes one field off, plus a few others
      local parts = { '"jsonrpc":' .. (math.random(8) == 1 and pick({ '"1.0"', '"2.0 "' }) or '"2.0"'),
        '"id":' .. (math.random(8) == 1 and pick({ "8", '"7"' }) or pick({ "7", "7.0", "7e0" })), result() }
      for _ = 1, math.random(0, 2) do parts[#parts + 1] = pick(extras)() end
      for i = #parts, 2, -1 do
        local j = math.random(i)
        parts[i], parts[j] = parts[j], parts[i]
      end
      local text = "{" .. table.concat(parts, ",") .. "}"
      if same_rpc(text, 7, math.random(2) == 1) then answered = answered + 1 end
    end
    assert.is_true(answered > 500, "answered only " .. answered)
  end)
end)
