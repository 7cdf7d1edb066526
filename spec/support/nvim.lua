--- Test helper: a real Neovim (nvim --headless, LuaJIT inside) running one
-- of spec/support's driver scripts with the checkout's favcrm on its paths,
-- shared by spec/integration/nvim_spec.lua and nvim_idle_spec.lua.
local cjson = require("cjson")

local M = {}

local function has(prog)
  local r = os.execute("command -v " .. prog .. " >/dev/null 2>&1")
  return r == true or r == 0
end

local lua = os.getenv("FAVCRM_LUA_BIN") or ""

--- M.runnable: the run is on the LuaJIT build and nvim is installed
M.runnable = lua:find("luajit") and has("nvim") and true or false

--- M.skip_unless_runnable(pending) -> true when the caller's describe must
-- return (it then calls busted's pending(), saying why)
function M.skip_unless_runnable(pending)
  if M.runnable then return false end
  pending("SKIPPED: needs nvim and the LuaJIT build (make test LUA=luajit); this run is " .. lua)
  return true
end

--- M.run(driver, result_name, env [, after]) -> the JSON the driver wrote,
-- decoded. driver: a file of spec/support; result_name: the result file's
-- name in $FAVCRM_SPEC_TMP (the driver gets its path as FAVCRM_NVIM_OUT);
-- env: further "NAME=value" shell words (already quoted); after(): called
-- as soon as Neovim is done, before the result is read. Neovim gets 60 s.
function M.run(driver, result_name, env, after)
  local tmp = os.getenv("FAVCRM_SPEC_TMP")
  local top = assert(os.getenv("PWD"))
  local build = assert(os.getenv("FAVCRM_BUILD"))
  local out = tmp .. "/" .. result_name
  os.remove(out)
  local words = {}
  for _, w in ipairs(env or {}) do words[#words + 1] = w end
  for _, w in ipairs({
    "FAVCRM_NVIM_OUT='" .. out .. "'",
    "FAVCRM_NVIM_LUA_PATH='" .. top .. "/lua/?.lua;" .. top .. "/lua/?/init.lua;/usr/share/lua/5.1/?.lua'",
    "FAVCRM_NVIM_LUA_CPATH='" .. top .. "/" .. build .. "/?.so;/usr/lib/x86_64-linux-gnu/lua/5.1/?.so'",
    "timeout 60 nvim --headless -u NONE -i NONE -n",
    "-c 'luafile " .. top .. "/spec/support/" .. driver .. "' >/dev/null 2>&1",
  }) do words[#words + 1] = w end
  os.execute(table.concat(words, " "))
  if after then after() end
  local rf = assert(io.open(out), "nvim wrote no result")
  local r = cjson.decode(rf:read("*a"))
  rf:close()
  return r
end

return M
