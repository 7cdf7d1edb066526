-- favcrm.url: the one URL rule (options, environment, config file,
-- redirects, the resty transport) and the URL arithmetic.
local urls = require("favcrm.url")

describe("favcrm.url", function()
  describe("check()", function()
    it("accepts http and https URLs with a host, any letter case", function()
      for _, u in ipairs({ "http://h/mcp", "https://h.example:8443/mcp?x=1", "HTTPS://H/", "http://[::1]:80/m",
        "http://u:p@h/" }) do
        assert.is_true(urls.check(u), u)
      end
    end)

    it("refuses other schemes, relative references, no host, white space", function()
      local cases = {
        { "ftp://h/", "must be an http:// or https:// URL" },
        { "file:///etc/passwd", "must be an http:// or https:// URL" },
        { "/mcp", "must be an http:// or https:// URL" },
        { "http:///mcp", "must be an http:// or https:// URL" },
        { "http://h:port/", "must be an http:// or https:// URL" },
        { "http://h/a b", "must not hold white space or control characters" },
        { 42, "must be a string" },
      }
      for _, c in ipairs(cases) do
        local ok, why = urls.check(c[1])
        assert.is_nil(ok, tostring(c[1]))
        assert.equal(c[2], why, tostring(c[1]))
      end
    end)
  end)

  it("parse() splits scheme, host, port and path", function()
    assert.same({ scheme = "https", host = "h.example", port = 443, path = "/" },
      urls.parse("HTTPS://user@H.example"))
    assert.same({ scheme = "http", host = "[::1]", port = 8080, path = "/m?q=1" },
      urls.parse("http://[::1]:8080/m?q=1#f"))
  end)

  it("origin() writes the default port, so http://h and http://h:80 are one origin", function()
    assert.equal(urls.origin("http://h/a"), urls.origin("HTTP://u@h:80/b"))
    assert.not_equal(urls.origin("http://h/"), urls.origin("https://h/"))
  end)

  it("resolve() makes a Location absolute", function()
    assert.equal("https://o/x", urls.resolve("http://h/a/b", "https://o/x"))
    assert.equal("http://o/x", urls.resolve("http://h/a/b", "//o/x"))
    assert.equal("http://h/x", urls.resolve("http://h/a/b?q", "/x"))
    assert.equal("http://h/a/x", urls.resolve("http://h/a/b?q=/z", "x"))
  end)

  it("redact() hides userinfo", function()
    assert.equal("http://***@h/", urls.redact("http://u:secret@h/"))
  end)
end)
