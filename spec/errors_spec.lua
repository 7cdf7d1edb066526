-- favcrm.errors: one list of codes, the same in errors.lua and
-- docs/ERRORS.md, covering every code the Lua code and the C core produce.
local errors = require("favcrm.errors")

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

local function files(cmd)
  local list = {}
  local p = assert(io.popen(cmd))
  for line in p:lines() do list[#list + 1] = line end
  p:close()
  return list
end

describe("favcrm.errors", function()
  it("lists the same codes with the same meanings as docs/ERRORS.md", function()
    local doc = read("docs/ERRORS.md"):match("| code | meaning |.-\n\n")
    local seen = {}
    for code, meaning in doc:gmatch("\n| `([%w_]+)` | ([^\n]-) |") do
      assert.equal(errors.CODES[code], meaning, code)
      seen[code] = true
    end
    for code in pairs(errors.CODES) do assert.is_true(seen[code], code .. " is not in docs/ERRORS.md") end
  end)

  it("lists every code that lua/, bin/favcrm and csrc/ produce", function()
    local used = {}
    local function note(code, where) used[code] = used[code] or where end
    for _, path in ipairs(files("find lua -name '*.lua'; echo bin/favcrm")) do
      local text = read(path)
      for c in text:gmatch('errors%.new%(%s*"([%w_]+)"') do note(c, path) end
      for c in text:gmatch('[^%w_]code%s*=%s*"([%w_]+)"') do note(c, path) end
      for c in text:gmatch('[^%w_]error%s*=%s*"([%w_]+)"') do note(c, path) end
    end
    for _, path in ipairs(files("ls csrc/*.c")) do
      local text = read(path)
      for c in text:gmatch('lua_pushliteral%(L, "([%w_]+)"%);%s*lua_setfield%(L, %-2, "code"%)') do note(c, path) end
      for c in text:gmatch('lua_pushliteral%(L, "([%w_]+)"%);%s*lua_setfield%(L, %-2, "error"%)') do note(c, path) end
      for c in text:gmatch('[%w_]*err[%w_]*%(L, "([%w_]+)"') do note(c, path) end
    end
    local ignore = { value = true, bool = true } -- cli.lua's flag kinds (`code = "value"`)
    for code, where in pairs(used) do
      if not ignore[code] then assert.is_truthy(errors.CODES[code], code .. " (" .. where .. ") is not listed") end
    end
    assert.is_truthy(used.invalid_schema)
    assert.is_truthy(used.usage)
  end)

  describe("new()", function()
    it("makes an error object with the fields copied in", function()
      local e = errors.new("timeout", "too slow", { status = 1 })
      assert.is_true(errors.is(e))
      assert.equal("favcrm: timeout: too slow", tostring(e))
      assert.equal(1, e.status)
    end)

    it("raises on a code that is not in the list", function()
      assert.has_error(function() errors.new("oops", "x") end, "favcrm.errors.new: unknown error code 'oops'")
    end)
  end)

  describe("wrap()", function()
    it("gives a C error table the metatable and keeps a listed code", function()
      local e = errors.wrap({ code = "tls", message = "bad certificate" })
      assert.is_true(errors.is(e))
      assert.equal("tls", e.code)
      assert.equal("bad certificate", e.message)
      assert.is_nil(e.unlisted)
    end)

    it("keeps an unlisted code as it came and says it is a bug, never rewriting it to io", function()
      local e = errors.wrap({ code = "weird", message = "something" })
      assert.is_true(errors.is(e))
      assert.equal("weird", e.code)
      assert.is_true(e.unlisted)
      assert.equal("something (unlisted error code 'weird': a bug in favcrm-lua, please report it)", e.message)
    end)
  end)
end)
