--- Test helper: temp files under the spec run's folder, shell quoting, and
-- whole-file reads and writes, shared by the specs that run processes.
local M = {}

--- M.tmpdir(name) -> a folder under $FAVCRM_SPEC_TMP (made), and a
-- function what -> a fresh path in it.
function M.tmpdir(name)
  local dir = (os.getenv("FAVCRM_SPEC_TMP") or "/tmp") .. "/" .. name
  os.execute("mkdir -p '" .. dir .. "'")
  local n = 0
  return dir, function(what)
    n = n + 1
    return string.format("%s/%s-%d-%d", dir, what, os.time(), n)
  end
end

--- M.q(s) -> s quoted for sh
function M.q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

--- M.sh(cmd) -> true when the shell command exited 0. (os.execute gives a
-- status number on Lua 5.1 and LuaJIT, 0 or not, which assert() and `if`
-- would both take for success; true or nil on 5.2+.)
function M.sh(cmd)
  local r = os.execute(cmd)
  return r == true or r == 0
end

--- M.slurp(path) -> the file's bytes, or nil when it cannot be read
function M.slurp(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

--- M.spit(path, text): writes text to path (raises on failure)
function M.spit(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

return M
