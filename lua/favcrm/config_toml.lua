--- favcrm.config_toml: the TOML reader and writer behind favcrm.config
-- (config.parse, and the read-merge-write of config.save). Internal: it
-- loads on first use, so a client given its URL and key (or finding no
-- config file) never parses it.
local core = require("favcrm.core")
local errors = require("favcrm.errors")

local M = {}

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

-- A key as people write it in messages (never a value: values may be secrets).
local function show_key(parts)
  local s = table.concat(parts, ".")
  if #s > 60 then s = s:sub(1, 57) .. "..." end
  return s
end

-- A bare scalar (number, boolean, date or time), loosely checked: enough
-- to tell a value from a word that needed quotes.
local function scalar_ok(tok)
  return tok == "true" or tok == "false" or tok:match("^[%+%-]?%d[%w_%.%+%-:]*$") ~= nil
    or tok:match("^[%+%-]?inf$") ~= nil or tok:match("^[%+%-]?nan$") ~= nil
end

--- config_toml.parse(text) -> values, order, tail: config.parse without its
-- argument check (favcrm.config documents it).
---@param text string the file's text
---@return table|nil values
---@return string[]|favcrm.Error order the keys in file order; on failure the error
---@return string|nil tail
function M.parse(text)
  local s, i, line = text, 1, 1
  if s:sub(1, 3) == "\239\187\191" then i = 4 end
  local values, order, tail_at = {}, {}, nil
  local defs, current = {}, "" -- key paths ("\0"-joined) -> "value"|"table"|"implicit"|"array"

  local function fail(msg, at)
    error({ toml = true, line = at or line, msg = msg }, 0)
  end
  local function skip_ws()
    i = s:find("[^ \t]", i) or #s + 1
  end
  local function newline()
    local c = s:sub(i, i)
    if c == "\n" then i = i + 1
    elseif c == "\r" and s:sub(i + 1, i + 1) == "\n" then i = i + 2
    else return false end
    line = line + 1
    return true
  end
  local function skip_comment()
    if s:sub(i, i) == "#" then i = s:find("[\r\n]", i) or #s + 1 end
  end
  -- after a value or header: blanks, a comment, then a line end or the end.
  -- Returns the index of the line's last character.
  local function end_of_line(what)
    skip_ws()
    skip_comment()
    local last = i - 1
    if i <= #s and not newline() then fail("text after the " .. what) end
    return last
  end

  local function hex_escape(u)
    local n = u == "u" and 4 or 8
    local hex = s:sub(i, i + n - 1)
    if #hex ~= n or not hex:match("^%x+$") then fail("a \\" .. u .. " escape needs " .. n .. " hex digits") end
    local cp = tonumber(hex, 16)
    if cp > 0x10FFFF or (cp >= 0xD800 and cp <= 0xDFFF) then
      fail("a \\" .. u .. " escape outside Unicode (a code point is at most 10FFFF and not D800-DFFF)")
    end
    i = i + n
    return utf8_char(cp)
  end

  -- the body of a string, i just past the opening quote(s): quote is '"'
  -- (a basic string, with escapes) or "'" (a literal string, without)
  local function quoted(quote, multi)
    local escapes = quote == '"'
    local stop = escapes and '["\\%c]' or "['%c]"
    local three = string.rep(quote, 3)
    local out, start = {}, line
    if multi then newline() end -- a newline right after the opening quotes is trimmed
    while true do
      local j = s:find(stop, i) or #s + 1
      if j > i then out[#out + 1] = s:sub(i, j - 1) end
      i = j
      local c = s:sub(i, i)
      if c == "" then
        fail("a string that starts here does not end", start)
      elseif c == quote then
        if not multi then
          i = i + 1
          return table.concat(out)
        end
        local q = s:match("^" .. quote .. "+", i)
        if #q >= 3 then
          if #q > 5 then fail("too many quotes at the end of a " .. three .. " string") end
          out[#out + 1] = string.rep(quote, #q - 3)
          i = i + #q
          return table.concat(out)
        end
        out[#out + 1] = q
        i = i + #q
      elseif escapes and c == "\\" then
        local e = s:sub(i + 1, i + 1)
        local k = s:find("[^ \t]", i + 1) or #s + 1
        if multi and (s:sub(k, k) == "\n" or s:sub(k, k + 1) == "\r\n") then
          i = k -- a line-ending backslash: drop the line end and the blanks after it
          while true do
            skip_ws()
            if not newline() then break end
          end
        elseif ESC[e] then
          out[#out + 1] = ESC[e]
          i = i + 2
        elseif e == "u" or e == "U" then
          i = i + 2
          out[#out + 1] = hex_escape(e)
        else
          fail("an invalid escape (after \\ comes one of b t n f r \" \\ u U)")
        end
      elseif c == "\t" then
        out[#out + 1] = c
        i = i + 1
      elseif multi and (c == "\n" or s:sub(i, i + 1) == "\r\n") then
        newline()
        out[#out + 1] = "\n"
      elseif c == "\n" or c == "\r" then
        fail("a string must end on the line it starts on (use " .. three .. " for several lines)")
      else
        fail("a control character in a string" .. (escapes and " (write it as an escape)" or ""))
      end
    end
  end
  local function basic(multi) return quoted('"', multi) end
  local function literal(multi) return quoted("'", multi) end

  local function simple_key()
    local c = s:sub(i, i)
    if s:sub(i, i + 2) == '"""' or s:sub(i, i + 2) == "'''" then fail("a key cannot be a multi-line string") end
    if c == '"' then
      i = i + 1
      return basic(false)
    elseif c == "'" then
      i = i + 1
      return literal(false)
    end
    local k = s:match("^[%w_%-]+", i)
    if not k then fail("not 'key = value'") end
    i = i + #k
    return k
  end

  local function key()
    local parts = { simple_key() }
    while true do
      skip_ws()
      if s:sub(i, i) ~= "." then return parts end
      i = i + 1
      skip_ws()
      parts[#parts + 1] = simple_key()
    end
  end

  -- Records a key path defined in the table `base`; raises on a duplicate.
  local function define(base, parts, at)
    local path = base
    for n = 1, #parts - 1 do
      path = path .. "\0" .. parts[n]
      if defs[path] == "value" then
        local head = {}
        for m = 1, n do head[m] = parts[m] end
        fail("'" .. show_key(head) .. "' is already a value", at)
      end
      defs[path] = defs[path] or "implicit"
    end
    path = path .. "\0" .. parts[#parts]
    if defs[path] then fail("duplicate key '" .. show_key(parts) .. "'", at) end
    defs[path] = "value"
  end

  local value
  local function blanks_and_comments()
    while true do
      skip_ws()
      skip_comment()
      if i > #s or not newline() then return end
    end
  end
  -- After an item of an array or an inline table: ',' goes on to the next
  -- one, `close` ends it (true), anything else fails.
  local function item_end(close, what)
    local c = s:sub(i, i)
    i = i + 1
    if c == close then return true end
    if c ~= "," then fail("expected ',' or '" .. close .. "' in " .. what) end
    return false
  end
  local function array(start)
    i = i + 1
    while true do
      blanks_and_comments()
      if s:sub(i, i) == "]" then
        i = i + 1
        return
      end
      if i > #s then fail("an array that starts here does not end", start) end
      value(start)
      blanks_and_comments()
      if item_end("]", "an array") then return end
    end
  end
  local function inline_table(start)
    i = i + 1
    local seen = {}
    skip_ws()
    if s:sub(i, i) == "}" then
      i = i + 1
      return
    end
    while true do
      skip_ws()
      local parts = key()
      local kp = table.concat(parts, "\0")
      if seen[kp] then fail("duplicate key '" .. show_key(parts) .. "'") end
      seen[kp] = true
      skip_ws()
      if s:sub(i, i) ~= "=" then fail("expected '=' in an inline table") end
      i = i + 1
      skip_ws()
      value(start)
      skip_ws()
      if item_end("}", "an inline table") then return end
    end
  end
  -- A value; returns the decoded string, or nil for any other kind.
  value = function(start)
    local c, c3 = s:sub(i, i), s:sub(i, i + 2)
    if c3 == '"""' then
      i = i + 3
      return basic(true)
    elseif c == '"' then
      i = i + 1
      return basic(false)
    elseif c3 == "'''" then
      i = i + 3
      return literal(true)
    elseif c == "'" then
      i = i + 1
      return literal(false)
    elseif c == "[" then
      array(start)
    elseif c == "{" then
      inline_table(start)
    else
      local tok = s:match("^[^%s,%]}#]+", i)
      if tok and tok:match("^%d%d%d%d%-%d%d%-%d%d$") then -- a date, maybe a space, then a time
        local t = s:match("^ %d%d:[^%s,%]}#]+", i + #tok)
        if t then tok = tok .. t end
      end
      if not tok or not scalar_ok((tok:gsub(" ", "T", 1))) then
        fail(tok and "a value that is not TOML (text needs quotes)" or "no value after '='")
      end
      i = i + #tok
    end
  end

  local function header(ls)
    local at = line
    local arr = s:sub(i, i + 1) == "[["
    i = i + (arr and 2 or 1)
    skip_ws()
    local parts = key()
    skip_ws()
    local close = arr and "]]" or "]"
    if s:sub(i, i + #close - 1) ~= close then fail("a table header must end with " .. close) end
    i = i + #close
    end_of_line("table header")
    tail_at = tail_at or ls
    local path = ""
    for n = 1, #parts - 1 do
      path = path .. "\0" .. parts[n]
      if defs[path] == "value" then fail("'" .. show_key(parts) .. "' is inside a value", at) end
      defs[path] = defs[path] or "implicit"
    end
    path = path .. "\0" .. parts[#parts]
    local was = defs[path]
    if arr then
      if was and was ~= "array" then fail("duplicate table [[" .. show_key(parts) .. "]]", at) end
      for k in pairs(defs) do -- a new element: its keys start afresh
        if k:sub(1, #path + 1) == path .. "\0" then defs[k] = nil end
      end
      defs[path] = "array"
    else
      if was and was ~= "implicit" then fail("duplicate table [" .. show_key(parts) .. "]", at) end
      defs[path] = "table"
    end
    current = path
  end

  local function key_value(ls)
    local at = line
    local parts = key()
    skip_ws()
    if s:sub(i, i) ~= "=" then fail("not 'key = value'") end
    i = i + 1
    skip_ws()
    define(current, parts, at)
    local v = value(at)
    local last = end_of_line("value")
    if tail_at then return end
    local name = #parts == 1 and parts[1] or table.concat(parts, "\0")
    if type(v) == "string" and #parts == 1 then
      values[name] = v
    else
      values[name] = { raw = (s:sub(ls, last):gsub("\r\n", "\n")) }
    end
    order[#order + 1] = name
  end

  local ok, perr = pcall(function()
    while i <= #s do
      local ls = i
      skip_ws()
      skip_comment()
      local c = s:sub(i, i)
      if c == "" then break end
      if not newline() then
        if c == "[" then header(ls) else key_value(ls) end
      end
    end
  end)
  if not ok then
    if type(perr) ~= "table" or not perr.toml then error(perr, 0) end
    return nil, errors.new("config_error", "config file line " .. perr.line .. ": " .. perr.msg, { line = perr.line })
  end
  local tail = tail_at and (s:sub(tail_at):gsub("\r\n", "\n"):gsub("\n+$", "")) or ""
  return values, order, tail
end

local function quote(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    local named = { ["\b"] = "\\b", ["\t"] = "\\t", ["\n"] = "\\n", ["\f"] = "\\f", ["\r"] = "\\r",
      ['"'] = '\\"', ["\\"] = "\\\\" }
    return named[c] or string.format("\\u%04X", c:byte())
  end) .. '"'
end

-- config.save's read-merge-write, run while the lock is held; read_file is
-- config's (the whole file, or nil, config_error).
function M.save_locked(fields, path, read_file)
  local values, order, tail = {}, {}, ""
  local st = core.stat(path)
  if st then
    if st.type ~= "file" then
      return nil, errors.new("config_error", path .. " is " .. (st.type == "dir" and "a folder" or "not a regular file")
        .. ", not a config file; nothing was saved")
    end
    local text, rerr = read_file(path)
    if not text then return nil, rerr end
    local perr
    values, perr, tail = M.parse(text)
    if not values then
      return nil, errors.new("config_error", path .. ": " .. perr.message
        .. " (fix or remove the file; it was left as it was)", { line = perr.line })
    end
    order = perr
  end
  for _, k in ipairs({ "api_key", "url" }) do
    local v = fields[k]
    if v ~= nil then
      if values[k] == nil then order[#order + 1] = k end
      values[k] = v
    end
  end
  -- the file's text as a list of strings and secrets: core.write_file_atomic
  -- writes a secret quoted from its own bytes, so the key never becomes a
  -- Lua string on its way to the file
  local parts = { "# favcrm: written by favcrm-lua. Keep this file private (mode 0600).\n" }
  local seen = {}
  for _, k in ipairs(order) do
    if not seen[k] then
      seen[k] = true
      local v = values[k]
      if type(v) == "table" then
        parts[#parts + 1] = v.raw .. "\n"
      elseif v ~= false and v ~= nil then
        local name = (k:match("^[%w_%-]+$") and k or quote(k)) .. " = "
        if type(v) == "string" then
          parts[#parts + 1] = name .. quote(v) .. "\n"
        else
          parts[#parts + 1] = name
          parts[#parts + 1] = v
          parts[#parts + 1] = "\n"
        end
      end
    end
  end
  if tail ~= "" then parts[#parts + 1] = "\n" .. tail .. "\n" end
  local ok, werr = core.write_file_atomic(path, parts, tonumber("600", 8))
  if not ok then return nil, errors.wrap(werr) end
  return path
end

return M
