-- favcrm.core exports one symbol, luaopen_favcrm_core, however it is built:
-- by `make` (which passes -fvisibility=hidden) and the way luarocks' builtin
-- type builds it (no visibility flag: the FAV_API macro must hide the rest).

-- Runs a shell command; returns success and its output. The exit status
-- travels in the output: LuaJIT's and Lua 5.1's popen close do not give it.
local function sh(cmd)
  local p = assert(io.popen("(" .. cmd .. ") 2>&1; echo \"__rc=$?\""))
  local out = p:read("*a")
  p:close()
  local rc = tonumber(out:match("__rc=(%d+)%s*$"))
  return rc == 0, (out:gsub("__rc=%d+%s*$", ""))
end

-- The dynamic symbols core.so defines, as a sorted list of names.
local function exported(so)
  local ok, out = sh("nm -D --defined-only '" .. so .. "'")
  assert(ok, "nm failed: " .. out)
  local names = {}
  for name in out:gmatch("%x+ %a ([^\n]+)") do names[#names + 1] = name end
  table.sort(names)
  return names
end

-- The names in list other than luaopen_*.
local function strays(list)
  local bad = {}
  for _, name in ipairs(list) do
    if not name:match("^luaopen_") then bad[#bad + 1] = name end
  end
  return bad
end

-- The C sources the rockspec builds favcrm.core from.
local function rockspec_sources()
  local f = assert(io.open("favcrm-scm-1.rockspec"))
  local text = f:read("*a")
  f:close()
  local block = assert(text:match('%["favcrm%.core"%]%s*=%s*{%s*sources%s*=%s*(%b{})'),
    "no sources list for favcrm.core in the rockspec")
  local srcs = {}
  for src in block:gmatch('"(csrc/[^"]+%.c)"') do srcs[#srcs + 1] = src end
  return srcs
end

-- Compiler flags for the Lua headers of the Lua running the specs.
local function lua_cflags()
  local build = os.getenv("FAVCRM_BUILD") or "build/5.4"
  local pc = build:match("luajit") and "luajit" or ("lua" .. (build:match("(%d%.%d)") or "5.4"))
  local inc = pc == "luajit" and "-I/usr/include/luajit-2.1" or ("-I/usr/include/" .. pc)
  return "$(pkg-config --cflags " .. pc .. " 2>/dev/null || echo " .. inc .. ")"
end

describe("favcrm.core symbols", function()
  local build = os.getenv("FAVCRM_BUILD") or "build/5.4"

  it("the module make built exports only luaopen_favcrm_core", function()
    local names = exported(build .. "/favcrm/core.so")
    assert.are.same({ "luaopen_favcrm_core" }, names)
  end)

  it("a build without -fvisibility=hidden (as luarocks builds it) exports only luaopen_*", function()
    local tmp = os.tmpname()
    os.remove(tmp)
    local so = tmp .. ".so"
    local cmd = table.concat({
      os.getenv("CC") or "cc", "-shared -fPIC -O0 -std=c99 -D_POSIX_C_SOURCE=200809L -Icsrc",
      lua_cflags(), "$(pkg-config --cflags libcurl libpcre2-8 2>/dev/null)",
      table.concat(rockspec_sources(), " "), "-o", so, "-lcurl -lpcre2-8",
    }, " ")
    local ok, out = sh(cmd)
    assert(ok, "the rockspec-style build failed: " .. out)
    local names = exported(so)
    os.remove(so)
    assert.are.same({}, strays(names))
    assert.are.same({ "luaopen_favcrm_core" }, names)
  end)
end)
