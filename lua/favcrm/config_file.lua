-- favcrm.config_file: reading, checking and writing the config file
-- (internal). favcrm.config's load, save, permission_problem and
-- file_mode_problem check their arguments and call these (their contracts
-- are written there); this module loads the first time one is called.
local core = require("favcrm.core")
local errors = require("favcrm.errors")
local config = require("favcrm.config")

local F = {}

local MAX_FILE = 1024 * 1024 -- a config file larger than this is refused

-- The whole file, or nil, config_error (with the system's reason).
local function read_file(path)
  local f, msg = io.open(path, "rb")
  if not f then return nil, errors.new("config_error", "cannot read the config file: " .. tostring(msg)) end
  local s, rmsg = f:read(MAX_FILE + 1)
  f:close()
  if s == nil and rmsg then
    return nil, errors.new("config_error", "cannot read the config file " .. path .. ": " .. tostring(rmsg))
  end
  s = s or ""
  if #s > MAX_FILE then
    return nil, errors.new("config_error", "the config file " .. path .. " is larger than 1 MiB; it was not used")
  end
  return s
end

local function folder_of(path)
  local dir = path:match("^(.*)/[^/]*$")
  if dir == nil then return "." end
  if dir == "" then return "/" end
  return dir
end

-- bit `b` (a power of two) of n
local function bit(n, b) return math.floor(n / b) % 2 == 1 end

-- config.permission_problem
function F.permission_problem(path)
  if path == nil then path = config.path() end
  if type(path) ~= "string" then return nil end
  local euid = core.geteuid()
  local dir = folder_of(path)
  local function check(p, what, fix_mode)
    local st = core.stat(p)
    if not st then return nil end
    if st.uid ~= euid then
      local fix = "chown " .. euid .. " " .. p
      return errors.new("config_error", string.format(
        "the config %s %s is owned by another user (uid %d, this program runs as uid %d), so it was not used;"
        .. " if it is yours, run: %s (or remove it)", what, p, st.uid, euid, fix),
        { path = p, hint = "if it is yours, run: " .. fix .. "; else remove it" })
    end
    if bit(st.mode, 16) or bit(st.mode, 2) then -- group or others may write
      local fix = string.format("chmod %s %s", fix_mode, p)
      return errors.new("config_error", string.format(
        "the config %s %s has mode %o: other users can write it, so it was not used; run: %s",
        what, p, st.mode, fix), { path = p, hint = "run: " .. fix })
    end
  end
  return check(dir, "folder", "700") or check(path, "file", "600")
end

-- config.load, its path checked
function F.load(path)
  local err
  if not path then
    path, err = config.path()
    if not path then return nil, err end
  end
  local st, serr = core.stat(path)
  if not st then
    if serr.code == "not_found" then return {} end
    return nil, errors.new("config_error", "cannot read the config file: " .. tostring(serr.message))
  end
  if st.type == "dir" then
    return nil, errors.new("config_error", path .. " is a folder, not a config file")
  elseif st.type ~= "file" then
    return nil, errors.new("config_error", path .. " is not a regular file")
  end
  local perm = F.permission_problem(path)
  if perm then return nil, perm end
  local text, rerr = read_file(path)
  if not text then return nil, rerr end
  local values, perr = config.parse(text)
  if not values then
    perr.message = path .. ": " .. perr.message
    return nil, perr
  end
  local out = {}
  for k, v in pairs(values) do
    if type(v) == "string" then out[k] = v end
  end
  return out
end

-- config.save, its arguments checked (lock_timeout: seconds)
function F.save(fields, path, lock_timeout)
  local err
  if not path then
    path, err = config.path()
    if not path then return nil, err end
  end
  local dir = folder_of(path)
  local ok, merr = core.mkdir_p(dir, tonumber("700", 8))
  if not ok then return nil, errors.wrap(merr) end
  local perm = F.permission_problem(path)
  if perm then
    perm.message = perm.message:gsub(", so it was not used;", "; nothing was saved;")
    return nil, perm
  end
  local save_locked = require("favcrm.config_toml").save_locked -- loaded before the lock is taken
  local lock, lerr = core.lock_file(dir .. "/." .. path:match("[^/]*$") .. ".lock", lock_timeout)
  if not lock then
    if lerr.code == "timeout" then
      return nil, errors.new("timeout", "another process kept the config file " .. path
        .. " locked for " .. lock_timeout .. " s; nothing was saved")
    end
    return nil, errors.wrap(lerr)
  end
  local okc, res, serr = pcall(save_locked, fields, path, read_file)
  lock:unlock()
  if not okc then error(res, 0) end
  return res, serr
end

-- config.file_mode_problem
function F.file_mode_problem(path)
  path = path or config.path()
  if not path then return nil end
  local st = core.stat(path)
  if st and st.mode % 64 ~= 0 then
    return string.format("the config file %s has mode %o: others can read it; run chmod 600 on it",
      path, st.mode)
  end
end

return F
