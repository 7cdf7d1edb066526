-- favcrm.config: the config file shared with the Rust CLI, and where the
-- key and the URL come from.
local config = require("favcrm.config")
local core = require("favcrm.core")

local tmp = os.getenv("FAVCRM_SPEC_TMP")

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

local function write(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

describe("favcrm.config", function()
  describe("path()", function()
    it("is under XDG_CONFIG_HOME when it is set (as the spec runner sets it)", function()
      assert.equal(os.getenv("XDG_CONFIG_HOME") .. "/favcrm/config.toml", config.path())
    end)
  end)

  describe("parse()", function()
    it("reads basic and literal strings, escapes, comments and keeps sections aside", function()
      local v, order, tail = config.parse(table.concat({
        "# a comment",
        'api_key = "fav_mcp_abc\\u0041\\"q\\""  # trailing comment',
        "url = 'https://example.com/mcp'",
        "retries = 3",
        "",
        "[profile.work]",
        'api_key = "other"',
      }, "\n"))
      assert.equal('fav_mcp_abcA"q"', v.api_key)
      assert.equal("https://example.com/mcp", v.url)
      assert.same({ raw = "retries = 3" }, v.retries)
      assert.same({ "api_key", "url", "retries" }, order)
      assert.equal('[profile.work]\napi_key = "other"', tail)
    end)

    it("reports a malformed line by number", function()
      local v, err = config.parse('url = "x"\nnot a pair\n')
      assert.is_nil(v)
      assert.equal("config file line 2: not 'key = value'", err.message)
    end)
  end)

  describe("save()", function()
    local path
    before_each(function()
      path = tmp .. "/cfg-" .. math.random(1, 1e9) .. "/sub/config.toml"
    end)

    it("creates the folder 0700 and the file 0600, whatever the umask", function()
      assert.equal(path, config.save({ api_key = core.secret("fav_mcp_0123456789abcdef"), url = "http://x/mcp" }, path))
      assert.equal(tonumber("600", 8), core.stat(path).mode)
      assert.equal(tonumber("700", 8), core.stat(path:match("^(.*)/")).mode)
      assert.same({ api_key = "fav_mcp_0123456789abcdef", url = "http://x/mcp" }, config.load(path))
    end)

    it("keeps other keys and sections, and replaces only what it is given", function()
      core.mkdir_p(path:match("^(.*)/"))
      write(path, 'url = "http://old/mcp"\ntheme = "dark"\n\n[profile.x]\na = "b"\n')
      assert(config.save({ api_key = "fav_mcp_new0000000000000000" }, path))
      local text = read(path)
      assert.matches('url = "http://old/mcp"', text, 1, true)
      assert.matches("theme = \"dark\"", text, 1, true)
      assert.matches('api_key = "fav_mcp_new0000000000000000"', text, 1, true)
      assert.matches('[profile.x]\na = "b"', text, 1, true)
      assert(config.save({ api_key = false }, path))
      assert.is_nil(config.load(path).api_key)
    end)

    it("leaves a malformed file as it was and says so", function()
      core.mkdir_p(path:match("^(.*)/"))
      write(path, "garbage here\n")
      local ok, err = config.save({ url = "http://x/mcp" }, path)
      assert.is_nil(ok)
      assert.equal("config_error", err.code)
      assert.equal("garbage here\n", read(path))
    end)

    it("rejects unknown fields and bad types", function()
      assert.has_error(function() config.save({ token = "x" }, path) end,
        "bad argument #1 to 'save' (unknown field 'token')")
      assert.has_error(function() config.save({ url = 5 }, path) end,
        "bad argument #1 to 'save' (field 'url' must be a string)")
    end)

    it("leaves the old file or the new one, never a broken one, when killed halfway", function()
      core.mkdir_p(path:match("^(.*)/"))
      local a = { api_key = "fav_mcp_" .. string.rep("a", 32), url = "http://a/" .. string.rep("a", 4000) }
      local b = { api_key = "fav_mcp_" .. string.rep("b", 32), url = "http://b/" .. string.rep("b", 4000) }
      assert(config.save(a, path))
      local lua = os.getenv("FAVCRM_LUA_BIN")
      local script = tmp .. "/saver.lua"
      write(script, string.format([[
        local config = require("favcrm.config")
        local a = { url = %q }
        local b = { url = %q }
        for i = 1, 1e9 do assert(config.save(i %% 2 == 0 and a or b, %q)) end
      ]], a.url, b.url, path))
      for i = 1, 12 do
        -- kill -9 the saver at a different moment each round
        os.execute(string.format("timeout -s KILL 0.%02d %s %s >/dev/null 2>&1", 5 + i * 7, lua, script))
        local got = assert(config.load(path))
        assert.is_true(got.url == a.url or got.url == b.url, "a torn config file")
        assert.equal(a.api_key, got.api_key)
      end
      local p = io.popen("ls -A " .. path:match("^(.*)/"))
      local listing = p:read("*a")
      p:close()
      -- at most the killed writers' temp files and the lock file, never a second config
      for name in listing:gmatch("[^\n]+") do
        assert.is_true(name == "config.toml" or name == ".config.toml.lock"
          or name:find("^%.config%.toml%.tmp") ~= nil, name)
      end
    end)
  end)

  describe("resolve()", function()
    it("takes the key from the option, then FAVCRM_API_KEY, then FAVCRM_MCP_TOKEN, then the file", function()
      local lua = os.getenv("FAVCRM_LUA_BIN")
      local path = config.path()
      assert(config.save({ api_key = "fav_mcp_fromfile000000000000", url = "http://file/mcp" }))
      local function run(envs)
        local p = io.popen(envs .. " " .. lua .. [[ -e 'local r = require("favcrm.config").resolve()
          io.write(r.key_source, " ", r.url_source, " ", r.url)']])
        local out = p:read("*a")
        p:close()
        return out
      end
      assert.equal("config file config file http://file/mcp", run(""))
      assert.equal("FAVCRM_MCP_TOKEN FAVCRM_MCP_ENDPOINT http://e/mcp",
        run("FAVCRM_MCP_TOKEN=t FAVCRM_MCP_ENDPOINT=http://e/mcp"))
      assert.equal("FAVCRM_API_KEY FAVCRM_MCP_URL http://u/mcp",
        run("FAVCRM_API_KEY=k FAVCRM_MCP_TOKEN=t FAVCRM_MCP_URL=http://u/mcp FAVCRM_MCP_ENDPOINT=http://e/mcp"))
      local r = config.resolve({ api_key = "x", url = "http://o/mcp" })
      assert.equal("option", r.key_source)
      assert.equal("option", r.url_source)
      os.remove(path)
      assert.equal("default", config.resolve().url_source)
      assert.equal(config.DEFAULT_URL, config.resolve().url)
    end)

    it("reads FAVCRM_TIMEOUT_MS as the default timeout", function()
      local lua = os.getenv("FAVCRM_LUA_BIN")
      local p = io.popen("FAVCRM_TIMEOUT_MS=2500 " .. lua
        .. [[ -e 'io.write(require("favcrm.config").resolve().timeout)']])
      local out = p:read("*a")
      p:close()
      assert.equal(2.5, tonumber(out))
    end)
  end)
end)
