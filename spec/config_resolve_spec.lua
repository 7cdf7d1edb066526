-- favcrm.config.resolve: the one lookup chain for the key, the URL and the
-- timeout, used by favcrm.new, the CLI and doctor; and the URL check it
-- applies whatever the source.
local config = require("favcrm.config")
local favcrm = require("favcrm")

local function env_of(t)
  return function(name) return t[name] end
end

describe("favcrm.config", function()
  describe("resolve(opts, getenv)", function()
    local path
    before_each(function()
      path = assert(config.path())
      os.remove(path)
    end)
    after_each(function() os.remove(path) end)

    it("takes every value from its source in order: option, environment, config file, default", function()
      assert(config.save({ api_key = "fav_mcp_fromfile000000000000", url = "http://file.example/mcp" }))
      local e = {
        FAVCRM_API_KEY = "k1", FAVCRM_MCP_TOKEN = "k2",
        FAVCRM_MCP_URL = "http://u.example/mcp", FAVCRM_MCP_ENDPOINT = "http://e.example/mcp",
        FAVCRM_TIMEOUT_MS = "1500",
      }
      local r = assert(config.resolve({ api_key = "k0", url = "http://o.example/mcp", timeout = 3 }, env_of(e)))
      assert.same({ "k0", "option", "http://o.example/mcp", "option", 3, "option" },
        { r.api_key, r.key_source, r.url, r.url_source, r.timeout, r.timeout_source })
      r = assert(config.resolve({}, env_of(e)))
      assert.same({ "k1", "FAVCRM_API_KEY", "http://u.example/mcp", "FAVCRM_MCP_URL", 1.5, "FAVCRM_TIMEOUT_MS" },
        { r.api_key, r.key_source, r.url, r.url_source, r.timeout, r.timeout_source })
      e.FAVCRM_API_KEY, e.FAVCRM_MCP_URL = nil, ""
      r = assert(config.resolve({}, env_of(e)))
      assert.same({ "k2", "FAVCRM_MCP_TOKEN", "http://e.example/mcp", "FAVCRM_MCP_ENDPOINT" },
        { r.api_key, r.key_source, r.url, r.url_source })
      r = assert(config.resolve({}, env_of({})))
      assert.same({ "fav_mcp_fromfile000000000000", "config file", "http://file.example/mcp", "config file" },
        { r.api_key, r.key_source, r.url, r.url_source })
      assert.is_nil(r.timeout)
      os.remove(path)
      r = assert(config.resolve({}, env_of({})))
      assert.same({ config.DEFAULT_URL, "default" }, { r.url, r.url_source })
      assert.is_nil(r.api_key)
      assert.is_nil(r.key_source)
    end)

    it("names option sources with opts.labels", function()
      local r = assert(config.resolve({ url = "http://o.example/mcp", api_key = "k",
        labels = { url = "--url", api_key = "--api-key" } }, env_of({})))
      assert.equal("--url", r.url_source)
      assert.equal("--api-key", r.key_source)
    end)

    it("ignores a FAVCRM_TIMEOUT_MS that is not a positive number", function()
      assert.is_nil(assert(config.resolve({}, env_of({ FAVCRM_TIMEOUT_MS = "soon" }))).timeout)
      assert.is_nil(assert(config.resolve({}, env_of({ FAVCRM_TIMEOUT_MS = "-5" }))).timeout)
    end)

    it("gives a stdio server a name, not a URL, and checks no URL for it", function()
      local r = assert(config.resolve({ command = { "srv", "--stdio" } }, env_of({ FAVCRM_MCP_URL = "ftp://x/" })))
      assert.equal("stdio:srv", r.url)
      assert.equal("command", r.url_source)
    end)

    it("refuses a bad URL from the environment with config_error naming the variable", function()
      for _, name in ipairs({ "FAVCRM_MCP_URL", "FAVCRM_MCP_ENDPOINT" }) do
        local r, err = config.resolve({}, env_of({ [name] = "ftp://example.com/mcp" }))
        assert.is_nil(r)
        assert.equal("config_error", err.code)
        assert.equal(name, err.source)
        assert.equal(name .. " must be an http:// or https:// URL (got 'ftp://example.com/mcp')", err.message)
      end
    end)

    it("refuses a bad URL from the config file with config_error naming the file", function()
      assert(config.save({ url = "gopher://old.example/mcp" }))
      local r, err = config.resolve({}, env_of({}))
      assert.is_nil(r)
      assert.equal("config_error", err.code)
      assert.equal("config file", err.source)
      assert.equal("the config file's url (" .. path .. ") must be an http:// or https:// URL "
        .. "(got 'gopher://old.example/mcp')", err.message)
    end)

    it("refuses a bad option URL with invalid_arguments, and never shows a password in it", function()
      local r, err = config.resolve({ url = "ftp://user:hunter2@example.com/" }, env_of({}))
      assert.is_nil(r)
      assert.equal("invalid_arguments", err.code)
      assert.equal("option", err.source)
      assert.is_nil(err.message:find("hunter2", 1, true))
    end)
  end)
end)

describe("favcrm.new() and the configuration", function()
  it("fails at new() when FAVCRM_MCP_URL is not http(s), naming the variable", function()
    local c, err = favcrm.new({ getenv = env_of({ FAVCRM_MCP_URL = "ftp://example.com/mcp" }) })
    assert.is_nil(c)
    assert.equal("config_error", err.code)
    assert.equal("FAVCRM_MCP_URL", err.source)
  end)

  it("reports the sources through public accessors", function()
    local c = assert(favcrm.new({ getenv = env_of({ FAVCRM_MCP_URL = "http://127.0.0.1:1/mcp",
      FAVCRM_API_KEY = "fav_mcp_aaaaaaaaaaaaaaaaaaaaaaaa1234" }) }))
    local url, src = c:endpoint()
    assert.equal("http://127.0.0.1:1/mcp", url)
    assert.equal("FAVCRM_MCP_URL", src)
    assert.equal("FAVCRM_API_KEY", c:auth_source())
    assert.equal("http://127.0.0.1:1/mcp", c:savable_url())
    assert.is_nil(c:masked_api_key():find("aaaaaaaaaaaaaaaaaaaa", 1, true))
    c:close()
  end)

  it("never offers a stdio server's made-up URL for saving", function()
    local c = assert(favcrm.new({ command = { "true" }, getenv = env_of({}) }))
    local url, src = c:endpoint()
    assert.equal("stdio:true", url)
    assert.equal("command", src)
    assert.is_nil(c:savable_url())
    c:close()
  end)
end)
