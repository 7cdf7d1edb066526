-- spec/core/secret_spec.lua: favcrm.Secret, core.mask_key, core.mask_email (csrc/secret.c)
local core = require("favcrm.core")

local KEY = "fav_mcp_0123456789abcdef"

-- The error message of calling f(...), which must fail.
local function err_of(f, ...)
  local ok, msg = pcall(f, ...)
  assert.is_false(ok)
  return tostring(msg)
end

describe("favcrm.core secret", function()
  describe("core.secret()", function()
    it("makes a userdata whose tostring is masked", function()
      local s = core.secret(KEY)
      assert.are.equal("userdata", type(s))
      assert.are.equal("fav_mcp_...cdef", tostring(s))
    end)

    it("masks 12 bytes or fewer as ****", function()
      assert.are.equal("****", tostring(core.secret("")))
      assert.are.equal("****", tostring(core.secret("a")))
      assert.are.equal("****", tostring(core.secret("abcdefghijkl")))
    end)

    it("shows the public fav_mcp_ prefix and the last 4 of more than 12 other bytes, no other byte", function()
      assert.are.equal("...jklm", tostring(core.secret("abcdefghijklm")))
      assert.are.equal("****", tostring(core.secret("fav_mcp_abcdefghijkl")))
      assert.are.equal("fav_mcp_...jklm", tostring(core.secret("fav_mcp_abcdefghijklm")))
    end)

    it("holds a copy of the bytes, NUL bytes included", function()
      local text = "fav_mcp_\0secret\0tail"
      local s = core.secret(text)
      assert.are.equal(text, s:reveal())
    end)

    it("accepts only a string", function()
      assert.has_error(function() core.secret(12345678901234) end)
      assert.has_error(function() core.secret() end)
      assert.has_error(function() core.secret({}) end)
      assert.has_error(function() core.secret(core.secret(KEY)) end)
    end)
  end)

  describe("methods", function()
    it("reveal returns the plain text", function()
      assert.are.equal(KEY, core.secret(KEY):reveal())
    end)

    it("mask is tostring", function()
      local s = core.secret(KEY)
      assert.are.equal("fav_mcp_...cdef", s:mask())
    end)

    it("is_closed tells whether close was called", function()
      local s = core.secret(KEY)
      assert.is_false(s:is_closed())
      s:close()
      assert.is_true(s:is_closed())
    end)

    it("close is idempotent and makes reveal raise 'secret is closed'", function()
      local s = core.secret(KEY)
      s:close()
      s:close()
      assert.are.equal("secret is closed", err_of(s.reveal, s))
      local msg = err_of(function() return s:reveal() end)
      assert.truthy(msg:find("secret is closed$"))
      assert.is_nil(msg:find("0123456789", 1, true))
      assert.is_nil(msg:find("fav_mcp", 1, true))
    end)

    it("shows <closed secret> for a closed secret", function()
      local s = core.secret(KEY)
      s:close()
      assert.are.equal("<closed secret>", tostring(s))
      assert.are.equal("<closed secret>", s:mask())
      assert.are.equal("<closed secret>", core.mask_key(s))
    end)

    it("exposes only its methods through __index", function()
      local s = core.secret(KEY)
      assert.are.equal("function", type(s.reveal))
      assert.are.equal("function", type(s.close))
      assert.are.equal("function", type(s.mask))
      assert.are.equal("function", type(s.is_closed))
      assert.is_nil(s.text)
      assert.is_nil(s.bytes)
      assert.is_nil(s.__index)
      assert.is_nil(s[1])
    end)

    it("refuses new fields", function()
      local s = core.secret(KEY)
      assert.has_error(function() s.text = "x" end)
    end)

    it("raises when a method gets something other than a secret", function()
      local s = core.secret(KEY)
      assert.has_error(function() s.reveal("x") end)
      assert.has_error(function() s.close({}) end)
    end)
  end)

  describe("metatable", function()
    it("is protected: getmetatable returns the string favcrm.Secret", function()
      assert.are.equal("favcrm.Secret", getmetatable(core.secret(KEY)))
    end)

    it("is compared by text, in constant time", function()
      local a, b = core.secret(KEY), core.secret(KEY)
      assert.is_true(a == b)
      assert.is_false(a == core.secret(KEY:sub(1, -2) .. "0"))
      assert.is_false(a == core.secret(KEY .. "x"))
      assert.is_false(a == core.secret(""))
      assert.is_true(a ~= core.secret("other"))
      assert.is_false(a == KEY) -- a secret never equals a string
    end)

    it("is not equal to anything once closed (but still to itself)", function()
      local a, b = core.secret(KEY), core.secret(KEY)
      b:close()
      assert.is_false(a == b)
      assert.is_true(b == b)
    end)

    it("refuses concatenation on either side, without the text in the message", function()
      local s = core.secret(KEY)
      local m1 = err_of(function() return s .. "x" end)
      local m2 = err_of(function() return "Bearer " .. s end)
      for _, m in ipairs({ m1, m2 }) do
        assert.truthy(m:find("cannot concatenate a favcrm.secret (use :reveal())", 1, true))
        assert.is_nil(m:find(KEY, 1, true))
        assert.is_nil(m:find("0123456789", 1, true))
      end
    end)

    it("refuses the length operator", function()
      local s = core.secret(KEY)
      local m = err_of(function() return #s end)
      assert.truthy(m:find("cannot take the length of a favcrm.secret (use :reveal())", 1, true))
    end)

    if _VERSION ~= "Lua 5.1" then
      it("is masked by string.format %s", function()
        assert.are.equal("key=fav_mcp_...cdef", string.format("key=%s", core.secret(KEY)))
      end)
    end

    if _VERSION == "Lua 5.4" then
      it("is closed by a to-be-closed variable", function()
        local chunk = assert(load([[
          local core, key = ...
          local keep
          do
            local s <close> = core.secret(key)
            keep = s
          end
          return keep
        ]]))
        local s = chunk(core, KEY)
        assert.is_true(s:is_closed())
        assert.are.equal("<closed secret>", tostring(s))
      end)
    end
  end)

  describe("JSON", function()
    local has_cjson, cjson = pcall(require, "cjson")

    it("cannot be encoded by lua-cjson, and the error does not hold the text", function()
      assert.is_true(has_cjson, "lua-cjson is needed for this spec")
      local ok, msg = pcall(cjson.encode, { k = core.secret(KEY) })
      assert.is_false(ok)
      msg = tostring(msg)
      assert.truthy(msg:find("userdata", 1, true))
      assert.is_nil(msg:find(KEY, 1, true))
      assert.is_nil(msg:find("0123456789", 1, true))
    end)
  end)

  describe("garbage collection", function()
    it("creates and drops many secrets without growing memory", function()
      collectgarbage()
      collectgarbage()
      local before = collectgarbage("count")
      for round = 1, 5 do
        for i = 1, 2000 do
          local s = core.secret(KEY .. i .. round)
          if i % 2 == 0 then s:close() end
        end
        collectgarbage()
        collectgarbage()
      end
      assert.is_true(collectgarbage("count") - before < 256,
        "memory grew by " .. (collectgarbage("count") - before) .. " KiB")
    end)
  end)

  describe("core.is_secret()", function()
    it("is true for a secret, open or closed, and false for anything else", function()
      local s = core.secret(KEY)
      assert.is_true(core.is_secret(s))
      s:close()
      assert.is_true(core.is_secret(s))
      assert.is_false(core.is_secret(KEY))
      assert.is_false(core.is_secret(nil))
      assert.is_false(core.is_secret(core.sse_parser()))
      assert.is_false(core.is_secret(io.stdout))
    end)
  end)

  describe("core.mask_key()", function()
    it("masks a string like tostring masks a secret", function()
      assert.are.equal("fav_mcp_...cdef", core.mask_key(KEY))
      assert.are.equal("****", core.mask_key("short"))
      assert.are.equal("****", core.mask_key(""))
    end)

    it("masks a secret", function()
      assert.are.equal("fav_mcp_...cdef", core.mask_key(core.secret(KEY)))
    end)

    it("raises on other types", function()
      assert.has_error(function() core.mask_key(nil) end)
      assert.has_error(function() core.mask_key({}) end)
      assert.has_error(function() core.mask_key(12) end)
    end)
  end)

  describe("core.mask_email()", function()
    it("keeps the first two characters of the local part then one *", function()
      assert.are.equal("yo*@example.com", core.mask_email("you@example.com"))
      assert.are.equal("ab*@x.io", core.mask_email("abc@x.io"))
      assert.are.equal("jo*@example.co.uk", core.mask_email("john.smith+crm@example.co.uk"))
    end)

    it("keeps one character of a one- or two-character local part", function()
      assert.are.equal("a*@x.io", core.mask_email("ab@x.io"))
      assert.are.equal("a*@x.io", core.mask_email("a@x.io"))
    end)

    it("writes * for an empty local part", function()
      assert.are.equal("*@x.io", core.mask_email("@x.io"))
    end)

    it("returns *** without an @", function()
      assert.are.equal("***", core.mask_email("you.example.com"))
      assert.are.equal("***", core.mask_email(""))
    end)

    it("splits at the last @ and counts UTF-8 characters", function()
      assert.are.equal("\195\169m*@x.fr", core.mask_email("\195\169mile@x.fr"))
      assert.are.equal("\195\169*@x.fr", core.mask_email("\195\169m@x.fr"))
      assert.are.equal("\"a*@x.io", core.mask_email("\"a@b\"@x.io"))
    end)

    it("raises on a non-string", function()
      assert.has_error(function() core.mask_email(nil) end)
      assert.has_error(function() core.mask_email(core.secret("a@b.c")) end)
    end)
  end)

  describe("core.secret_form()", function()
    it("percent-encodes names and values, secrets from their own bytes, into a secret", function()
      local pw = core.secret("p@ss w/rd&=")
      local f = core.secret_form({ "grant_type", "refresh_token", "refresh_token", pw, "scope", false,
        "x y", "\195\188" })
      assert.is_true(core.is_secret(f))
      assert.equal("grant_type=refresh_token&refresh_token=p%40ss%20w%2Frd%26%3D&x%20y=%C3%BC", f:reveal())
      assert.is_nil(tostring(f):find("p%40ss", 1, true)) -- printed masked
      f:close()
      assert.equal("p@ss w/rd&=", pw:reveal()) -- the value is left as it was
      assert.equal("", core.secret_form({}):reveal())
      assert.equal("a-._~Z9=", core.secret_form({ "a-._~Z9", "" }):reveal())
    end)

    it("raises on a list that is not name, value pairs", function()
      assert.has_error(function() core.secret_form("a=b") end)
      assert.error_matches(function() core.secret_form({ "a" }) end,
        "bad argument #1 to '[%w_.]*secret_form' %(a list of name, value pairs expected%)")
      assert.error_matches(function() core.secret_form({ "a", 1 }) end,
        "bad argument #1 to '[%w_.]*secret_form' %(item 2: string, favcrm.secret or false expected%)")
      assert.error_matches(function() core.secret_form({ core.secret("n"), "v" }) end,
        "bad argument #1 to '[%w_.]*secret_form' %(item 1: string expected%)")
      local closed = core.secret("x")
      closed:close()
      assert.error_matches(function() core.secret_form({ "a", closed }) end,
        "bad argument #1 to '[%w_.]*secret_form' %(item 2: string, favcrm.secret or false expected%)")
    end)
  end)

  describe("core.base64() and core.base64url()", function()
    it("give RFC 4648's test vectors (section 10), padded and unpadded url-safe", function()
      local v = { [""] = "", f = "Zg==", fo = "Zm8=", foo = "Zm9v", foob = "Zm9vYg==", fooba = "Zm9vYmE=",
        foobar = "Zm9vYmFy" }
      for text, b64 in pairs(v) do
        assert.equal(b64, core.base64(text))
        assert.equal((b64:gsub("=", "")), core.base64url(text))
      end
      assert.equal("+/8=", core.base64("\251\255"))
      assert.equal("-_8", core.base64url("\251\255"))
    end)
  end)

  describe("core.secret_basic()", function()
    it("is the Authorization: Basic line of user:password, each percent-encoded first, in a secret", function()
      local pw = core.secret("p@ss w:rd/\195\188")
      local line = core.secret_basic("client id", pw)
      assert.is_true(core.is_secret(line))
      -- RFC 6749 2.3.1: form-encode both, then base64 of "id:secret"
      assert.equal("Authorization: Basic " .. core.base64("client%20id:p%40ss%20w%3Ard%2F%C3%BC"), line:reveal())
      assert.is_nil(tostring(line):find("Basic", 1, true)) -- printed masked
      assert.equal("p@ss w:rd/\195\188", pw:reveal()) -- left as it was
      assert.equal("Authorization: Basic " .. core.base64("a:b"), core.secret_basic(core.secret("a"), "b"):reveal())
      -- every padding length
      for _, pair in ipairs({ { "", "" }, { "a", "" }, { "ab", "" }, { "abc", "de" } }) do
        assert.equal("Authorization: Basic " .. core.base64(pair[1] .. ":" .. pair[2]),
          core.secret_basic(pair[1], pair[2]):reveal())
      end
    end)

    it("raises on an argument that is neither a string nor an open secret", function()
      assert.error_matches(function() core.secret_basic(1, "x") end,
        "bad argument #1 to '[%w_.]*secret_basic' %(string or favcrm.secret expected, got number%)")
      local closed = core.secret("x")
      closed:close()
      assert.error_matches(function() core.secret_basic("id", closed) end,
        "bad argument #2 to '[%w_.]*secret_basic' %(string or favcrm.secret expected, got userdata%)")
      assert.has_error(function() core.secret_basic("id") end)
    end)
  end)

  describe("core.secret_token()", function()
    it("is base64url of n random bytes in a secret (32: a 43-character PKCE verifier)", function()
      local v = core.secret_token(32)
      assert.is_true(core.is_secret(v))
      assert.equal(43, #v:reveal())
      assert.truthy(v:reveal():match("^[%w%-_]+$"))
      assert.are_not.equal(v:reveal(), core.secret_token(32):reveal())
      -- its S256 challenge, straight from the secret's bytes
      assert.equal(core.base64url(core.sha256(v:reveal())), core.base64url(core.sha256(v)))
      for n, len in pairs({ [1] = 2, [2] = 3, [3] = 4, [4] = 6, [256] = 342 }) do
        assert.equal(len, #core.secret_token(n):reveal())
      end
    end)

    it("raises on a count outside 1..256", function()
      assert.has_error(function() core.secret_token(0) end)
      assert.has_error(function() core.secret_token(257) end)
    end)
  end)
end)
