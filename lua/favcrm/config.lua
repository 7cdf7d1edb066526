--- favcrm.config: the config file the Rust CLI uses too
-- (`$XDG_CONFIG_HOME/favcrm/config.toml`, else `~/.config/favcrm/config.toml`,
-- with top-level `api_key` and `url`), and where the key and URL come from.
local core = require("favcrm.core")
local errors = require("favcrm.errors")
local urls = require("favcrm.url")

local M = {}

M.DEFAULT_URL = "https://api.favcrm.io/mcp"

local function env(name)
  local v = os.getenv(name)
  if v and v ~= "" then return v end
end

--- config.path() -> the config file's path, or nil, err when no home is known.
function M.path()
  local xdg = env("XDG_CONFIG_HOME")
  if xdg then return xdg .. "/favcrm/config.toml" end
  local home = env("HOME")
  if home then return home .. "/.config/favcrm/config.toml" end
  return nil, errors.new("io", "neither XDG_CONFIG_HOME nor HOME is set: no place for the config file")
end

local ESC = { b = "\b", t = "\t", n = "\n", f = "\f", r = "\r", ['"'] = '"', ["\\"] = "\\" }

local function utf8_char(cp)
  if cp < 0x80 then return string.char(cp) end
  if cp < 0x800 then return string.char(0xC0 + math.floor(cp / 64), 0x80 + cp % 64) end
  if cp < 0x10000 then
    return string.char(0xE0 + math.floor(cp / 4096), 0x80 + math.floor(cp / 64) % 64, 0x80 + cp % 64)
  end
  return string.char(0xF0 + math.floor(cp / 262144), 0x80 + math.floor(cp / 4096) % 64,
    0x80 + math.floor(cp / 64) % 64, 0x80 + cp % 64)
end

-- Parses a TOML basic or literal string at the start of s; returns the value
-- and the rest, or nil.
local function toml_string(s)
  if s:sub(1, 1) == "'" then
    local v, rest = s:match("^'([^']*)'(.*)$")
    return v, rest
  end
  if s:sub(1, 1) ~= '"' then return nil end
  local out, i = {}, 2
  while i <= #s do
    local c = s:sub(i, i)
    if c == '"' then return table.concat(out), s:sub(i + 1) end
    if c == "\\" then
      local e = s:sub(i + 1, i + 1)
      if ESC[e] then
        out[#out + 1] = ESC[e]
        i = i + 2
      elseif e == "u" or e == "U" then
        local n = e == "u" and 4 or 8
        local hex = s:sub(i + 2, i + 1 + n)
        if not hex:match("^%x+$") or #hex ~= n then return nil end
        out[#out + 1] = utf8_char(tonumber(hex, 16))
        i = i + 2 + n
      else
        return nil
      end
    else
      out[#out + 1] = c
      i = i + 1
    end
  end
  return nil
end

--- config.parse(text) -> table of the top-level string keys (other values
-- and tables are kept as raw lines so a save writes them back untouched).
function M.parse(text)
  local values, order, lineno, section, tail = {}, {}, 0, nil, {}
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    lineno = lineno + 1
    local l = line:gsub("^%s+", ""):gsub("\r$", "")
    if section or l:sub(1, 1) == "[" then
      section = true
      tail[#tail + 1] = line
    elseif l ~= "" and l:sub(1, 1) ~= "#" and not section then
      local key, rest = l:match("^([%w_-]+)%s*=%s*(.*)$")
      if not key then
        return nil, errors.new("invalid_arguments", "config file line " .. lineno .. ": not 'key = value'",
          { line = lineno })
      end
      local v, after = toml_string(rest)
      if v ~= nil then
        after = after:gsub("^%s+", "")
        if after ~= "" and after:sub(1, 1) ~= "#" then
          return nil, errors.new("invalid_arguments", "config file line " .. lineno .. ": text after the value",
            { line = lineno })
        end
        values[key] = v
      else
        values[key] = { raw = line }
      end
      order[#order + 1] = key
    end
  end
  while tail[#tail] == "" do tail[#tail] = nil end
  return values, order, table.concat(tail, "\n")
end

local function read_file(path)
  local f, msg = io.open(path, "rb")
  if not f then return nil, msg end
  local s = f:read("*a")
  f:close()
  return s
end

--- config.load([path]) -> {api_key=, url=, ...} (an empty table when there
-- is no file), or nil, err when the file is unreadable or malformed.
function M.load(path)
  if path ~= nil and type(path) ~= "string" then
    error("bad argument #1 to 'load' (string expected, got " .. type(path) .. ")", 2)
  end
  local err
  if not path then
    path, err = M.path()
    if not path then return nil, err end
  end
  local st = core.stat(path)
  if not st then return {} end
  local text, msg = read_file(path)
  if not text then return nil, errors.new("io", "cannot read the config file: " .. tostring(msg)) end
  local values, perr = M.parse(text)
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

local function quote(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    local named = { ["\b"] = "\\b", ["\t"] = "\\t", ["\n"] = "\\n", ["\f"] = "\\f", ["\r"] = "\\r",
      ['"'] = '\\"', ["\\"] = "\\\\" }
    return named[c] or string.format("\\u%04X", c:byte())
  end) .. '"'
end

--- config.save{api_key=, url=}[, path]: merges into the file (other keys
-- and sections kept), written to a temp file in the same folder, fsynced,
-- mode 0600, renamed into place; the folder is created 0700. `api_key` may
-- be a favcrm.secret or a string; `false` removes a key. Returns the path,
-- or nil, err.
function M.save(fields, path)
  if type(fields) ~= "table" then
    error("bad argument #1 to 'save' (table expected, got " .. type(fields) .. ")", 2)
  end
  for k, v in pairs(fields) do
    if k ~= "api_key" and k ~= "url" then
      error("bad argument #1 to 'save' (unknown field '" .. tostring(k) .. "')", 2)
    end
    if not (v == false or type(v) == "string" or (k == "api_key" and core.is_secret(v))) then
      error("bad argument #1 to 'save' (field '" .. k .. "' must be a string"
        .. (k == "api_key" and " or a favcrm.secret" or "") .. ")", 2)
    end
  end
  if path ~= nil and type(path) ~= "string" then
    error("bad argument #2 to 'save' (string expected, got " .. type(path) .. ")", 2)
  end
  local err
  if not path then
    path, err = M.path()
    if not path then return nil, err end
  end
  local dir = path:match("^(.*)/[^/]*$")
  if dir and dir ~= "" then
    local ok, merr = core.mkdir_p(dir, tonumber("700", 8))
    if not ok then return nil, errors.wrap(merr) end
  end
  local values, order, tail = {}, {}, ""
  if core.stat(path) then
    local text, msg = read_file(path)
    if not text then return nil, errors.new("io", "cannot read the config file: " .. tostring(msg)) end
    values, order, tail = M.parse(text)
    if not values then
      return nil, errors.new("invalid_arguments", path .. ": " .. order.message
        .. " (fix or remove the file; it was left as it was)")
    end
  end
  for _, k in ipairs({ "api_key", "url" }) do
    local v = fields[k]
    if v ~= nil then
      if values[k] == nil then order[#order + 1] = k end
      values[k] = v
    end
  end
  local lines = { "# favcrm: written by favcrm-lua. Keep this file private (mode 0600)." }
  local seen = {}
  for _, k in ipairs(order) do
    if not seen[k] then
      seen[k] = true
      local v = values[k]
      if type(v) == "table" then
        lines[#lines + 1] = v.raw
      elseif v ~= false and v ~= nil then
        local s = type(v) == "string" and v or v:reveal()
        lines[#lines + 1] = k .. " = " .. quote(s)
      end
    end
  end
  local text = table.concat(lines, "\n") .. "\n" .. (tail ~= "" and ("\n" .. tail .. "\n") or "")
  local ok, werr = core.write_file_atomic(path, text, tonumber("600", 8))
  if not ok then return nil, errors.wrap(werr) end
  return path
end

--- config.file_mode_problem([path]) -> a message when the config file can
-- be read or written by others, else nil.
function M.file_mode_problem(path)
  path = path or M.path()
  if not path then return nil end
  local st = core.stat(path)
  if st and st.mode % 64 ~= 0 then
    return string.format("the config file %s has mode %o: others can read it; run chmod 600 on it",
      path, st.mode)
  end
end

--- config.resolve([opts [, getenv]]) -> r, or nil, err when the URL is bad.
-- The one lookup chain for the key, the URL and the timeout; the client,
-- the CLI and doctor all use it.
--   key: opts.api_key, FAVCRM_API_KEY, FAVCRM_MCP_TOKEN, the config file
--   URL: opts.url, FAVCRM_MCP_URL, FAVCRM_MCP_ENDPOINT, the config file,
--        the hosted endpoint (config.DEFAULT_URL)
--   timeout: opts.timeout, FAVCRM_TIMEOUT_MS
-- r = {api_key=, key_source=, url=, url_source=, timeout=, timeout_source=,
-- config_error=}. A source is "option" (or opts.labels.url / .api_key /
-- .timeout, e.g. "--url"), the variable's name, "config file" or "default".
-- With opts.command (a stdio server) url is "stdio:PROG" and url_source
-- "command": a name for messages, not a URL, and never saved.
-- `getenv` (default os.getenv) reads the environment. A malformed config
-- file is reported in `config_error` and skipped. The URL is checked by
-- favcrm.url.check whatever its source; a bad one gives nil and an error:
-- `invalid_arguments` when it came from opts, else `config_error`, with
-- `source` naming where it came from.
function M.resolve(opts, getenv)
  opts = opts or {}
  getenv = getenv or os.getenv
  local labels = opts.labels or {}
  local function getvar(name)
    local v = getenv(name)
    if v ~= nil and v ~= "" then return v end
  end
  local r = {}
  local file, ferr
  local function cfg()
    if file == nil and ferr == nil then
      file, ferr = M.load()
      if not file then file = {} end
    end
    return file
  end
  -- each value: the option, then the environment in order, then the file
  local function pick(key, names, file_key, default)
    if opts[key] ~= nil then return opts[key], labels[key] or "option" end
    for _, name in ipairs(names) do
      if getvar(name) then return getvar(name), name end
    end
    local v = file_key and cfg()[file_key]
    if v and v ~= "" then return v, "config file" end
    if default then return default, "default" end
  end
  r.api_key, r.key_source = pick("api_key", { "FAVCRM_API_KEY", "FAVCRM_MCP_TOKEN" }, "api_key")
  if opts.command ~= nil then
    -- a stdio server has no URL: this name is for messages, never saved
    r.url, r.url_source = "stdio:" .. tostring(opts.command[1]), "command"
  else
    r.url, r.url_source = pick("url", { "FAVCRM_MCP_URL", "FAVCRM_MCP_ENDPOINT" }, "url", M.DEFAULT_URL)
  end
  local t, tsrc = pick("timeout", { "FAVCRM_TIMEOUT_MS" })
  if tsrc == "FAVCRM_TIMEOUT_MS" then
    local ms = tonumber(t)
    if ms and ms > 0 then r.timeout, r.timeout_source = ms / 1000, tsrc end
  elseif t ~= nil then
    r.timeout, r.timeout_source = t, tsrc
  end
  r.config_error = ferr
  local ok, why = true, nil
  if r.url_source ~= "command" then ok, why = urls.check(r.url) end
  if not ok then
    local from = r.url_source
    if from == "config file" then
      from = "the config file's url" .. (M.path() and (" (" .. M.path() .. ")") or "")
    end
    return nil, errors.new(opts.url ~= nil and "invalid_arguments" or "config_error",
      from .. " " .. why .. " (got '" .. urls.redact(r.url) .. "')", { source = r.url_source, field = "url" })
  end
  return r
end

return M
