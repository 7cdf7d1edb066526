-- The rockspec: `luarocks make` installs a module that loads from outside
-- the repository, and every Lua file of lua/ is in it.
-- Runs a shell command; returns success and its output. The exit status
-- travels in the output: LuaJIT's and Lua 5.1's popen close do not give it.
local function sh(cmd)
  local p = assert(io.popen("(" .. cmd .. ") 2>&1; echo \"__rc=$?\""))
  local out = p:read("*a")
  p:close()
  local rc = tonumber(out:match("__rc=(%d+)%s*$"))
  return rc == 0, (out:gsub("__rc=%d+%s*$", ""))
end

local function version_of_lua()
  local bin = os.getenv("FAVCRM_LUA_BIN") or "lua5.4"
  if bin == "luajit" then return "5.1", bin end
  return bin:match("(%d%.%d)$") or "5.4", bin
end

describe("favcrm-scm-1.rockspec", function()
  it("lists every Lua module under lua/favcrm", function()
    local f = assert(io.open("favcrm-scm-1.rockspec"))
    local spec = f:read("*a")
    f:close()
    local p = assert(io.popen("cd lua && find favcrm -name '*.lua' | sort"))
    local missing = {}
    for file in p:lines() do
      local mod = file:gsub("%.lua$", ""):gsub("/init$", ""):gsub("/", ".")
      if not spec:find('["' .. mod .. '"] = "lua/' .. file .. '"', 1, true) then
        missing[#missing + 1] = mod
      end
    end
    p:close()
    assert.same({}, missing)
  end)

  it("builds and installs with luarocks make, and loads from outside the repository", function()
    local tmp = assert(os.getenv("FAVCRM_SPEC_TMP")) .. "/luarocks"
    local luaver, bin = version_of_lua()
    assert(sh("rm -rf " .. tmp .. " && mkdir -p " .. tmp .. "/src"))
    assert(sh("git ls-files -z | xargs -0 tar cf - | tar xf - -C " .. tmp .. "/src"))
    local cfg = assert(io.open(tmp .. "/config.lua", "w"))
    -- lua-cjson comes from Debian here, where luarocks cannot see it
    cfg:write('rocks_trees = { { name = "t", root = "' .. tmp .. '/tree" } }\n',
      'rocks_provided = { ["lua-cjson"] = "2.1.0-1" }\n')
    cfg:close()
    -- the spec runner's LUA_PATH points into the checkout: not here
    local env = "env -u LUA_PATH -u LUA_CPATH LUAROCKS_CONFIG=" .. tmp .. "/config.lua "
    local ok, out = sh("cd " .. tmp .. "/src && " .. env .. "luarocks --lua-version=" .. luaver
      .. " make --tree=" .. tmp .. "/tree")
    assert(ok, out)
    local _, paths = sh(env .. "luarocks --lua-version=" .. luaver .. " path --tree=" .. tmp .. "/tree")
    local ok2, printed = sh("cd / && unset LUA_PATH LUA_CPATH; " .. paths:gsub("\n", "; ") .. " " .. bin
      .. [[ -e 'local f = require("favcrm"); io.write(f.VERSION, " ", debug.getinfo(f.new, "S").source)']])
    assert(ok2, printed)
    assert.matches("^%d+%.%d+%.%d+ @" .. tmp:gsub("%p", "%%%0") .. "/tree/share/lua/", printed)
  end)
end)
