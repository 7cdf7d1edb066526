-- .ci/doccheck.lua: fails when a public function has no LuaLS doc comment.
--
--   lua5.4 .ci/doccheck.lua [--root DIR] [--pending FILE] [--list]
--
-- Run by `make docs` (and so by CI). Plain Lua 5.1-5.4, no modules.
--
-- What is public. The names README.md and docs/*.md show a user, read from
-- inline code (`...`) and from ```lua fenced blocks (other fences, sh and
-- json, are skipped):
--   * `favcrm.a.b` (also `favcrm.config.path/load/save`, a slash list): the
--     longest prefix that is a module (lua/favcrm/a.lua, lua/favcrm/a/init.lua,
--     or a types/ meta file's `---@meta a`) is the module; one name after it
--     is a function of that module table. A module named whole
--     (`favcrm.recipes.signup`) makes every function of its table public.
--   * `require("favcrm.x")` names module favcrm.x; `require("favcrm.x").f`
--     names its function f.
--   * `alias.f(` for the short names of ALIASES below (`signup.start(`).
--   * `recv:m(`: method m of the class RECEIVERS maps recv to (`client` is
--     favcrm.Client, `flow` favcrm.recipes.Flow, ...). A class named this way
--     makes every one of its methods public. An unknown receiver is an error:
--     add it to RECEIVERS, so a new doc section cannot slip past the check.
-- Names starting with "_" are private and never public.
--
-- Where a class lives: a `---@class Name` comment directly above `local V =`
-- (indented too, inside a function) binds V in that file to Name; so does a
-- `---@param V favcrm.Name` of a function (a capitalised favcrm class: its
-- methods may be defined on a parameter, as favcrm.scheduler's
-- install(Client) does). Methods are `function V:m(...)`, also indented
-- (defined inside a function); module functions are
-- `function M.f(...)`, `M.f = function(...)`, `M.f = local_function` or
-- `M.f = mod.g` where `mod = require("favcrm.x")` (then favcrm.x's g must
-- be documented), with M the name the file returns. A class may also name a
-- method as `---@field m fun(...)` (an interface such as a transport).
-- A module value that is not a function (`M.CODES = {...}`) is public only
-- when the docs name it (`favcrm.errors.CODES`), and then needs just a
-- description line above it.
--
-- Documented means: the comment block right above the definition has a
-- description line (`--- text`), at least one `---@` annotation, and a
-- `---@param` for each parameter (`self` excepted, `...` included). LDoc's
-- own `@type`, `@alias` and `@module` are refused in `---@` form: LDoc would
-- read them as its own tags (config.ld explains the translation).
--
-- The pending file (default .ci/doc-pending.txt; empty now, kept for the
-- next restructuring) lists names still to do,
-- one per line (`favcrm.Client:call`, `favcrm.config.load`), and source
-- files whose LDoc warnings are tolerated (a line with a "/"). Pending names
-- are reported but do not fail; a pending name that is now documented is
-- reported as stale. Exit status: 0 clean, 1 undocumented or unknown names.
-- --list prints every public name with its state.

local RECEIVERS = {
  client = "favcrm.Client", c = "favcrm.Client",
  h = "favcrm.Handle",
  flow = "favcrm.recipes.Flow",
  ["ws.api_key"] = "favcrm.Secret", secret = "favcrm.Secret", s = "favcrm.Secret",
  v = "favcrm.Validator", validator = "favcrm.Validator",
  t = "favcrm.Transport",
}

local ALIASES = {
  signup = "favcrm.recipes.signup", team_invite = "favcrm.recipes.team_invite",
  safe_call = "favcrm.recipes.safe_call", schema = "favcrm.schema", fnvim = "favcrm.nvim",
}

local root, pending_path, list_all = ".", nil, false
do
  local i = 1
  while i <= #arg do
    local a = arg[i]
    if a == "--root" then root = arg[i + 1]; i = i + 1
    elseif a == "--pending" then pending_path = arg[i + 1]; i = i + 1
    elseif a == "--list" then list_all = true
    else io.stderr:write("doccheck: unknown argument ", a, "\n"); os.exit(2) end
    i = i + 1
  end
end
pending_path = pending_path or (root .. "/.ci/doc-pending.txt")

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

local function lines_of(text)
  local t = {}
  for l in (text .. "\n"):gmatch("([^\n]*)\n") do t[#t + 1] = l end
  return t
end

local function ls(cmd)
  local t = {}
  local p = io.popen(cmd)
  for l in p:lines() do t[#t + 1] = l end
  p:close()
  table.sort(t)
  return t
end

local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

-- ---------------------------------------------------------------- sources
local modules = {}   -- name -> { file=, var=, defs = { name -> def }, values = { name -> def } }
local classes = {}   -- name -> { file=, var=, defs = { name -> def }, fields = { name -> def } }
local problems = {}

local function block_above(lines, n)
  local b = {}
  local i = n - 1
  while i >= 1 and lines[i]:match("^%s*%-%-") do
    table.insert(b, 1, lines[i])
    i = i - 1
  end
  return b
end

local function module_name(rel, text)
  local meta = text:match("%-%-%-@meta%s+([%w_.]+)")
  if meta then return meta end
  local m = rel:match("^lua/(.+)%.lua$")
  if not m then return nil end
  m = m:gsub("/init$", ""):gsub("/", ".")
  return m
end

local sources = ls("cd " .. q(root) .. " && find lua types -name '*.lua' 2>/dev/null")
for _, rel in ipairs(sources) do
  local text = read(root .. "/" .. rel)
  local L = lines_of(text)
  local F = { lines = L, bind = {}, localfn = {}, requires = {} }
  local mvar
  for n, l in ipairs(L) do
    local r = l:match("^return%s+([%a_][%w_]*)%s*$")
    if r then mvar = r end
    local cls = l:match("^%s*%-%-%-@class%s+([%w_.]+)")
    if cls then
      local j = n + 1
      local fields = {}
      while L[j] and L[j]:match("^%s*%-%-") do
        local f, ty = L[j]:match("^%s*%-%-%-@field%s+([%w_]+)%??%s+(%S+)")
        if f then fields[f] = { line = j, fun = ty:match("^fun") ~= nil, file = rel } end
        j = j + 1
      end
      local v = L[j] and L[j]:match("^%s*local%s+([%a_][%w_]*)%s*=")
      classes[cls] = classes[cls] or { defs = {}, fields = {} }
      classes[cls].file, classes[cls].fields = rel, fields
      if v then classes[cls].var = v; F.bind[v] = cls end
    end
    if l:match("^%s*local%s+function") or l:match("^%s*function") then
      for _, b in ipairs(block_above(L, n)) do
        local pv, pc = b:match("^%s*%-%-%-@param%s+([%a_][%w_]*)%s+(favcrm%.[%w_.]*%u[%w_]*)%s*")
        if pv and pc:match("%.%u[%w_]*$") then F.bind[pv] = pc end
      end
    end
    local lf, lp = l:match("^local%s+function%s+([%a_][%w_]*)%s*%(([^)]*)%)")
    if lf then F.localfn[lf] = { line = n, params = lp } end
    local rl, rm = l:match("^local%s+([%a_][%w_]*)%s*=%s*require%s*%(?%s*[\"']([%w_.]+)[\"']%s*%)?%s*$")
    if rl then F.requires[rl] = rm end
  end
  local mname = module_name(rel, text)
  if mname and mvar then
    modules[mname] = { file = rel, var = mvar, defs = {}, values = {} }
  end
  -- definitions
  for n, l in ipairs(L) do
    local owner, sep, name, params = l:match("^function%s+([%a_][%w_]*)([.:])([%a_][%w_]*)%s*%(([^)]*)%)")
    local def, value
    if not owner then
      -- a method defined inside a function (on a bound local or parameter)
      owner, name, params = l:match("^%s+function%s+([%a_][%w_]*):([%a_][%w_]*)%s*%(([^)]*)%)")
      if owner and not F.bind[owner] then owner = nil end
      sep = ":"
    end
    if owner then
      def = { file = rel, line = n, params = params, method = sep == ":" }
    else
      local rhs
      owner, name, rhs = l:match("^([%a_][%w_]*)%.([%a_][%w_]*)%s*=%s*(.-)%s*$")
      if owner then
        local fp = rhs:match("^function%s*%(([^)]*)%)")
        local lfn = F.localfn[rhs]
        local am, af = rhs:match("^([%a_][%w_]*)%.([%a_][%w_]*)$")
        if fp then def = { file = rel, line = n, params = fp }
        elseif lfn then def = { file = rel, line = lfn.line, params = lfn.params }
        elseif am and F.requires[am] then
          def = { file = rel, line = n, alias = F.requires[am] .. "." .. af, params = "" }
        elseif rhs:match("^{") or rhs:match("^[\"'%d]") or rhs == "true" or rhs == "false" then
          def, value = { file = rel, line = n, params = "", value = true }, true
        end
      end
    end
    if def and not name:match("^_") then
      def.block = block_above(L, def.line)
      if mname and owner == mvar and not def.method then
        if value then modules[mname].values[name] = def else modules[mname].defs[name] = def end
      end
      local cls = F.bind[owner]
      if cls and def.method then classes[cls].defs[name] = def end
    end
  end
end

-- `M.x = mod.y` is a function only when mod's y is one
for _, m in pairs(modules) do
  for name, def in pairs(m.defs) do
    if def.alias then
      local mod, fn = def.alias:match("^(.+)%.([^.]+)$")
      if modules[mod] and not modules[mod].defs[fn] then m.defs[name] = nil end
    end
  end
end

-- why a definition is not documented, or nil when it is
local function undocumented(def, seen)
  if def.alias then
    local mod, fn = def.alias:match("^(.+)%.([^.]+)$")
    local m = modules[mod]
    local target = m and m.defs[fn]
    if not target then return "alias of " .. def.alias .. ", which has no documented definition" end
    seen = seen or {}
    if seen[def.alias] then return "alias loop" end
    seen[def.alias] = true
    local why = undocumented(target, seen)
    return why and ("alias of " .. def.alias .. ": " .. why) or nil
  end
  if def.fun ~= nil then return nil end -- a ---@field name fun(...) of a class
  local desc, tags, documented = false, false, {}
  for _, l in ipairs(def.block) do
    local tag, rest = l:match("^%s*%-%-%-@(%a+)%s*(.*)$")
    if tag then
      tags = true
      if tag == "type" or tag == "alias" or tag == "module" then
        return "---@" .. tag .. " is an LDoc tag too; LDoc would misread it"
      end
      if tag == "param" then documented[(rest:match("^([%w_.]+)"))] = true end
    elseif l:match("^%s*%-%-%-?%s*%S") and not l:match("^%s*%-%-%-%-") then
      desc = true
    end
  end
  if not desc then return "no description comment above it" end
  if def.value then return nil end -- a table or constant: the description is enough
  if not tags then return "no ---@ annotation (---@param/---@return)" end
  for p in def.params:gmatch("[^,%s]+") do
    if p ~= "self" and not documented[p] then return "parameter '" .. p .. "' has no ---@param" end
  end
  return nil
end

-- ---------------------------------------------------------------- the docs
local public = {}   -- canonical name -> { where = "README.md:12", kind = }
local order = {}
local named_modules, named_classes = {}, {}

local function add(name, where)
  if name:match("[.:]_[%w_]*$") then return end
  if not public[name] then
    public[name] = { where = where }
    order[#order + 1] = name
  end
end

local function split_dotted(dotted, where)
  -- longest module prefix
  local parts = {}
  for p in dotted:gmatch("[^.]+") do parts[#parts + 1] = p end
  for k = #parts, 1, -1 do
    local m = table.concat(parts, ".", 1, k)
    if modules[m] then
      local parent = k == #parts and modules[table.concat(parts, ".", 1, k - 1)]
      if parent and parent.defs[parts[k]] then
        add(m, where); return  -- `favcrm.doctor`: the function wins over the module
      end
      if k == #parts then named_modules[m] = named_modules[m] or where; return end
      if k == #parts - 1 then add(m .. "." .. parts[#parts], where); return end
      break
    end
  end
  problems[#problems + 1] = where .. ": `" .. dotted .. "` is neither a module nor a function of one"
end

local function scan_code(code, where)
  -- favcrm.a.b and slash lists
  local pos = 1
  while true do
    local s, e = code:find("favcrm%.[%w_][%w_./]*", pos)
    if not s then break end
    pos = e + 1
    local before = s > 1 and code:sub(s - 1, s - 1) or ""
    if not before:match("[%w_./\"'-]") then
      local tok = code:sub(s, e):gsub("[./]+$", "")
      local head, alts = tok:match("^(.-)%.([%w_]+/[%w_/]+)$")
      if head then
        for a in alts:gmatch("[%w_]+") do split_dotted(head .. "." .. a, where) end
      elseif not tok:find("/") then
        split_dotted(tok, where)
      end
    end
  end
  for m, rest in code:gmatch("require%s*%(?%s*[\"'](favcrm[%w_.]*)[\"']%s*%)?([.%w_]*)") do
    local f = rest:match("^%.([%a_][%w_]*)")
    split_dotted(m, where)
    if f then split_dotted(m .. "." .. f, where) end
  end
  for a, f in code:gmatch("%f[%w_]([%a_][%w_]*)%.([%a_][%w_]*)%s*%(") do
    if ALIASES[a] then add(ALIASES[a] .. "." .. f, where) end
  end
  for recv, m in code:gmatch("([%a_][%w_.]*):([%a_][%w_]*)%s*%(") do
    if not recv:match("^require") then
      local cls = RECEIVERS[recv]
      if cls then
        named_classes[cls] = named_classes[cls] or where
        add(cls .. ":" .. m, where)
      else
        problems[#problems + 1] = where .. ": `" .. recv .. ":" .. m .. "(`: unknown receiver '" .. recv
          .. "' (add it to RECEIVERS in .ci/doccheck.lua)"
      end
    end
  end
end

local docs = { "README.md" }
for _, d in ipairs(ls("cd " .. q(root) .. " && ls docs/*.md 2>/dev/null")) do docs[#docs + 1] = d end
for _, doc in ipairs(docs) do
  local text = read(root .. "/" .. doc)
  if text then
    local L = lines_of(text)
    local fence
    for n, l in ipairs(L) do
      local where = doc .. ":" .. n
      local f = l:match("^%s*```%s*(%w*)")
      if f then
        if fence then fence = nil else fence = f end
      elseif fence then
        if fence == "lua" then scan_code(l, where) end
      else
        for span in l:gmatch("`([^`]+)`") do scan_code(span, where) end
      end
    end
  end
end

-- everything of a named module or class
for m, where in pairs(named_modules) do
  for f in pairs(modules[m].defs) do add(m .. "." .. f, where .. " (module " .. m .. ")") end
end
for c, where in pairs(named_classes) do
  local cl = classes[c]
  if cl then
    for f in pairs(cl.defs) do add(c .. ":" .. f, where .. " (class " .. c .. ")") end
  end
end

-- ---------------------------------------------------------------- verdicts
local pending, pending_files = {}, {}
do
  local text = read(pending_path)
  if text then
    for l in text:gmatch("[^\n]+") do
      l = l:gsub("#.*", ""):match("^%s*(.-)%s*$")
      if l ~= "" then
        if l:find("/") then pending_files[l] = true else pending[l] = true end
      end
    end
  end
end

table.sort(order)
local bad, waiting, stale, ok = {}, {}, {}, 0
for _, name in ipairs(order) do
  local info = public[name]
  local why, at
  local cls, meth = name:match("^(.+):([%w_]+)$")
  local def
  if cls then
    local cl = classes[cls]
    if not cl then why = "class " .. cls .. " not found (no ---@class " .. cls .. " above its local)"
    else def = cl.defs[meth] or cl.fields[meth] end
  else
    local mod, fn = name:match("^(.+)%.([%w_]+)$")
    def = modules[mod] and (modules[mod].defs[fn] or modules[mod].values[fn])
  end
  if not why then
    if not def then why = "not found in the sources"
    else
      at = def.file .. ":" .. def.line
      why = undocumented(def)
    end
  end
  info.state = why and (pending[name] and "pending" or "UNDOCUMENTED") or "ok"
  info.why, info.at = why, at
  if not why then
    ok = ok + 1
    if pending[name] then stale[#stale + 1] = name end
  elseif pending[name] then waiting[#waiting + 1] = name
  else bad[#bad + 1] = name end
end
for name in pairs(pending) do
  if not public[name] then stale[#stale + 1] = name .. " (no longer public)" end
end
table.sort(stale)

local function show(name)
  local i = public[name]
  return string.format("  %-44s %s%s\n      named at %s", name, i.why or "documented",
    i.at and (" [" .. i.at .. "]") or "", i.where)
end

if list_all then
  for _, name in ipairs(order) do print(string.format("%-12s %s", public[name].state, name)) end
end
for _, p in ipairs(problems) do io.stderr:write("doccheck: ", p, "\n") end
if #waiting > 0 then
  print("doccheck: " .. #waiting .. " public functions still to document (listed in "
    .. pending_path:gsub("^%./", "") .. "):")
  for _, n in ipairs(waiting) do print("  " .. n .. "  -- " .. public[n].why) end
end
if #stale > 0 then
  print("doccheck: documented now, remove from the pending list:")
  for _, n in ipairs(stale) do print("  " .. n) end
end
if #bad > 0 then
  io.stderr:write("doccheck: " .. #bad .. " undocumented public functions:\n")
  for _, n in ipairs(bad) do io.stderr:write(show(n), "\n") end
end
do
  local fl = {}
  for f in pairs(pending_files) do fl[#fl + 1] = f end
  table.sort(fl)
  if #fl > 0 then print("doccheck: LDoc warnings tolerated in (pending): " .. table.concat(fl, ", ")) end
end
print(string.format("doccheck: %d public functions, %d documented, %d pending, %d undocumented%s",
  #order, ok, #waiting, #bad, #problems > 0 and (", " .. #problems .. " problems in the docs") or ""))
os.exit((#bad > 0 or #problems > 0) and 1 or 0)
