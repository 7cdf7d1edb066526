-- docs/BRIDGE.md: every host snippet parses (JSON decoded, Lua compiled),
-- and every JSON one registers `favcrm mcp serve` (no key in args).
local cjson = require("cjson")
local files = require("spec.support.files")

local text = assert(files.slurp("docs/BRIDGE.md"), "docs/BRIDGE.md is missing")

local function blocks(lang)
  local out = {}
  for body in text:gmatch("\n```" .. lang .. "\n(.-)\n```") do out[#out + 1] = body end
  return out
end

describe("docs/BRIDGE.md", function()
  it("has JSON snippets that decode and register `favcrm mcp serve`", function()
    local json = blocks("json")
    assert.is_true(#json >= 4, "JSON snippets: " .. #json)
    local healthcheck = false
    for i, body in ipairs(json) do
      local ok, doc = pcall(cjson.decode, body)
      assert(ok, "JSON snippet " .. i .. " does not parse: " .. tostring(doc))
      local s = doc.mcpServers and doc.mcpServers.favcrm
      assert(type(s) == "table", "snippet " .. i .. " has no mcpServers.favcrm")
      assert.is_truthy(s.command:match("favcrm$"))
      assert.same({ "mcp", "serve" }, { s.args[1], s.args[2] })
      for _, a in ipairs(s.args) do assert.is_nil(a:find("fav_mcp_", 1, true)) end
      if s.healthCheck then
        healthcheck = true
        assert.equal("favcrm_doctor", s.healthCheck.tool)
        assert.equal(30000, s.healthCheck.interval)
      end
    end
    assert.is_true(healthcheck, "the seed's mcp-config.json shape (healthCheck) is missing")
  end)

  it("has Lua snippets that compile", function()
    local lua = blocks("lua")
    assert.is_true(#lua >= 1)
    for i, body in ipairs(lua) do
      -- loadstring on 5.1 (whose load takes a function only)
      local fn, err = (loadstring or load)(body, "=BRIDGE.md lua snippet " .. i)
      assert(fn, err)
    end
  end)

  it("names every host the issue asks for", function()
    for _, host in ipairs({ "mcp-config.json", "Claude Desktop", "mcphub.nvim", "servers.json",
      "codecompanion.nvim" }) do
      assert.is_truthy(text:find(host, 1, true), host)
    end
  end)
end)
