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
---@return string|nil path
---@return favcrm.Error|nil err
function M.path()
  local xdg = env("XDG_CONFIG_HOME")
  if xdg then return xdg .. "/favcrm/config.toml" end
  local home = env("HOME")
  if home then return home .. "/.config/favcrm/config.toml" end
  return nil, errors.new("io", "neither XDG_CONFIG_HOME nor HOME is set: no place for the config file")
end

--- config.parse(text) -> values, order, tail: a TOML 1.0 reader for the
-- config file. `values` holds the top-level keys: strings decoded (basic,
-- literal and multi-line, any escape), other values as `{raw = text}` so a
-- save writes them back untouched; `order` lists the top-level keys as
-- they came; `tail` is the text from the first table header on (kept
-- as it is, but checked). A UTF-8 byte order mark and CRLF line ends are
-- accepted. Malformed TOML (an invalid escape or code point, a duplicate
-- key or table, a word without quotes, ...) gives nil, err with code
-- `config_error`, `line`, and a message naming the line, never a value.
---@param text string the file's text
---@return table|nil values
---@return string[]|favcrm.Error order the keys in file order; on failure the error
---@return string|nil tail
function M.parse(text)
  if type(text) ~= "string" then
    error("bad argument #1 to 'parse' (string expected, got " .. type(text) .. ")", 2)
  end
  return require("favcrm.config_toml").parse(text)
end

-- Reading, checking and writing the file: favcrm.config_file, loaded on
-- first use (a client given its URL and key never reads the file). The
-- functions below check their arguments (misuse raises here) and hand the
-- rest over.

--- config.permission_problem([path]) -> nil, or a config_error (with a
-- `hint` holding the fix) when the config folder or file can be written
-- by other users (group or others) or is owned by a user other than the
-- effective one. load() and save() refuse such a file: whoever can write
-- it can choose where the key is sent. A file others can only read is
-- reported by file_mode_problem() instead (the Rust CLI writes 0644).
---@param path? string the file (default config.path())
---@return favcrm.Error|nil err
function M.permission_problem(path)
  return require("favcrm.config_file").permission_problem(path)
end

--- config.load([path]) -> {api_key=, url=, ...} (an empty table when there
-- is no file), or nil, err (code `config_error`) when the file is
-- unreadable, malformed, a folder, or writable by (or owned by) another
-- user; the message says what is wrong, never a value.
---@param path? string the file (default config.path())
---@return table|nil values api_key, url, ... (strings)
---@return favcrm.Error|nil err
function M.load(path)
  if path ~= nil and type(path) ~= "string" then
    error("bad argument #1 to 'load' (string expected, got " .. type(path) .. ")", 2)
  end
  return require("favcrm.config_file").load(path)
end

--- config.save{api_key=, url=}[, path[, opts]]: merges into the file (other
-- keys and sections kept), written to a temp file in the same folder,
-- fsynced, mode 0600, renamed into place; the folder is created 0700.
-- `api_key` may be a favcrm.secret or a string; `false` removes a key.
-- Concurrent saves (other processes too) are serialised by an fcntl lock
-- on `.<name>.lock` beside the file, and each re-reads the file under the
-- lock, so saves of different fields all survive; opts.lock_timeout (s,
-- default 10) bounds the wait. A folder or file others can write or own is
-- refused (see permission_problem). Returns the path, or nil, err.
---@param fields table api_key (string, favcrm.Secret or false), url (string or false), ...
---@param path? string the file (default config.path())
---@param opts? table lock_timeout (seconds, default 10)
---@return string|nil path the file written
---@return favcrm.Error|nil err
function M.save(fields, path, opts)
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
  if opts ~= nil and type(opts) ~= "table" then
    error("bad argument #3 to 'save' (table expected, got " .. type(opts) .. ")", 2)
  end
  local lock_timeout = opts and opts.lock_timeout or 10
  if type(lock_timeout) ~= "number" or not (lock_timeout >= 0 and lock_timeout <= 86400) then
    error("bad argument #3 to 'save' (lock_timeout must be a number of seconds within 0..86400)", 2)
  end
  return require("favcrm.config_file").save(fields, path, lock_timeout)
end

--- config.file_mode_problem([path]) -> a message when the config file can
-- be read or written by others, else nil.
---@param path? string the file (default config.path())
---@return string|nil message
function M.file_mode_problem(path)
  return require("favcrm.config_file").file_mode_problem(path)
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
---@param opts? table api_key, url, timeout, command, labels (the options of favcrm.new)
---@param getenv? fun(name: string): string|nil reads the environment (default os.getenv)
---@return table|nil r api_key, key_source, url, url_source, timeout, timeout_source, config_error
---@return favcrm.Error|nil err
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
