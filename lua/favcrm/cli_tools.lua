-- favcrm.cli_tools: the `favcrm tool`, `favcrm resource` and `favcrm
-- prompt` commands (internal). favcrm.cli loads it (favcrm.lazy) when one
-- of them runs; it defines them on favcrm.cli's command table.
local errors = require("favcrm.errors")
local json = require("favcrm.json")
local S = require("favcrm.cli")._shared
local C, EXIT, G, wrap = S.C, S.EXIT, S.G, S.wrap

local function marks(t)
  local a = type(t.annotations) == "table" and t.annotations or {}
  local m = {}
  if a.readOnlyHint == true then m[#m + 1] = "read-only" end
  if a.destructiveHint == true then m[#m + 1] = "destructive" end
  if a.idempotentHint == true then m[#m + 1] = "idempotent" end
  if a.openWorldHint == true then m[#m + 1] = "open-world" end
  return m
end

function C.tool_list(ctx)
  local client, code = ctx:client()
  if not client then return code end
  local tools, err = client:tools()
  if not tools then return ctx:fail(err) end
  local sorted = {}
  for _, t in ipairs(tools) do sorted[#sorted + 1] = t end
  table.sort(sorted, function(a, b) return a.name < b.name end)
  if ctx.flags.json then
    local out = {}
    for _, t in ipairs(sorted) do
      local a = type(t.annotations) == "table" and t.annotations or {}
      out[#out + 1] = { name = t.name, title = t.title or a.title, description = t.description,
        readOnly = a.readOnlyHint == true, destructive = a.destructiveHint == true,
        idempotent = a.idempotentHint == true, openWorld = a.openWorldHint == true }
    end
    ctx:json_out(out, G.list(nil))
    return EXIT.ok
  end
  local rows = {}
  for _, t in ipairs(sorted) do
    local a = type(t.annotations) == "table" and t.annotations or {}
    rows[#rows + 1] = { t.name, t.title or a.title or "", table.concat(marks(t), ", ") }
  end
  ctx:table({ "NAME", "TITLE", "MARKS" }, rows, function(i, cell, r)
    if i == 3 and r[3]:find("destructive") then return ctx:paint(cell, "red") end
    return cell
  end)
  ctx:say("")
  ctx:say(#sorted .. " tools. `favcrm tool describe NAME` shows one.")
  return EXIT.ok
end

local function type_of(s)
  if type(s) ~= "table" then return "any" end
  local t = s.type
  if type(t) == "table" then t = table.concat(t, "|") end
  if t == "array" and type(s.items) == "table" and s.items.type then
    t = "array of " .. type_of(s.items)
  end
  if not t and s.enum then t = "enum" end
  return tostring(t or "any")
end

local function num(v)
  if type(v) == "number" and v % 1 == 0 and v > -1e15 and v < 1e15 then return string.format("%d", v) end
  return tostring(v or "")
end

local function constraints(s)
  local c = {}
  if type(s.enum) == "table" then
    local vals = {}
    for _, v in ipairs(s.enum) do vals[#vals + 1] = tostring(v) end
    c[#c + 1] = "one of " .. table.concat(vals, ", ")
  end
  if s.format then c[#c + 1] = "format " .. tostring(s.format) end
  if s.minLength or s.maxLength then
    c[#c + 1] = num(s.minLength or 0) .. ".." .. num(s.maxLength) .. " chars"
  end
  if s.minimum or s.maximum then c[#c + 1] = num(s.minimum) .. ".." .. num(s.maximum) end
  if s.minItems or s.maxItems then
    c[#c + 1] = num(s.minItems or 0) .. ".." .. num(s.maxItems) .. " items"
  end
  if s.pattern then c[#c + 1] = "pattern " .. tostring(s.pattern) end
  if s.default ~= nil then c[#c + 1] = "default " .. json.encode(s.default) end
  return table.concat(c, "; ")
end

-- Flattens a schema's properties into rows: path, type, required, notes.
local function schema_rows(s, prefix, rows, depth)
  if type(s) ~= "table" or depth > 6 then return rows end
  if type(s.properties) ~= "table" then return rows end
  local req = {}
  for _, r in ipairs(type(s.required) == "table" and s.required or {}) do req[r] = true end
  local names = {}
  for k in pairs(s.properties) do names[#names + 1] = k end
  table.sort(names, function(a, b)
    if (req[a] and 1 or 0) ~= (req[b] and 1 or 0) then return req[a] == true end
    return a < b
  end)
  for _, k in ipairs(names) do
    local p = s.properties[k]
    if type(p) == "table" then
      local notes = tostring(p.description or "")
      local c = constraints(p)
      if c ~= "" then notes = notes .. (notes ~= "" and " (" .. c .. ")" or c) end
      rows[#rows + 1] = { prefix .. k, type_of(p), req[k] and "yes" or "", notes }
      schema_rows(p, prefix .. k .. ".", rows, depth + 1)
      if type(p.items) == "table" then schema_rows(p.items, prefix .. k .. "[].", rows, depth + 1) end
    end
  end
  return rows
end

-- The middle of a command that asks the server one thing: the client made,
-- client[method](client, ...) called. Returns its two values and the
-- client; or nil and the exit code, when the client could not be made or
-- the request failed (the failure reported), or with --json and a `guide`
-- once the answer (the second value, or the first when there is none) is
-- printed along it.
local function ask(ctx, guide, method, ...)
  local client, code = ctx:client()
  if not client then return nil, code end
  local v, res = client[method](client, ...)
  if not v then return nil, ctx:fail(res) end
  if guide and ctx.flags.json then
    ctx:json_out(res == nil and v or res, guide)
    return nil, EXIT.ok
  end
  return v, res, client
end

function C.tool_describe(ctx, args)
  local name = args[1]
  if not name or args[2] then return ctx:fail("tool describe needs exactly one tool NAME") end
  local t, code = ask(ctx, G.struct({ inputSchema = G.schemadoc, outputSchema = G.schemadoc }), "describe", name)
  if not t then return code end
  local a = type(t.annotations) == "table" and t.annotations or {}
  ctx:say(ctx:paint(t.name, "bold") .. ((t.title or a.title) and (": " .. (t.title or a.title)) or ""))
  if t.description then ctx:say(wrap(t.description, 78, "  ")) end
  local m = marks(t)
  ctx:say("  marks: " .. (#m > 0 and table.concat(m, ", ") or "none"))
  ctx:say("")
  local rows = schema_rows(t.inputSchema, "", {}, 0)
  if #rows == 0 then
    ctx:say("Arguments: none")
  else
    ctx:say("Arguments:")
    ctx:table({ "NAME", "TYPE", "REQUIRED", "NOTES" }, rows)
  end
  local out = type(t.outputSchema) == "table" and t.outputSchema or nil
  if out then
    local data = type(out.properties) == "table" and out.properties.data or nil
    local orows = schema_rows(data or out, data and "data." or "", {}, 0)
    ctx:say("")
    ctx:say("Result: " .. (data and ("data: " .. type_of(data)) or type_of(out)))
    if #orows > 0 then ctx:table({ "NAME", "TYPE", "REQUIRED", "NOTES" }, orows) end
  end
  ctx:say("")
  ctx:say("Call it: favcrm tool call " .. t.name .. " '{...}'" .. (a.destructiveHint == true and " --yes" or ""))
  return EXIT.ok
end

function C.tool_call(ctx, args)
  local name, text = args[1], args[2]
  if not name or args[3] then return ctx:fail("tool call needs a tool NAME and, optionally, its arguments as JSON") end
  local targs = {}
  if text and text ~= "" then
    local v, derr = json.decode(text)
    if type(v) ~= "table" or getmetatable(v) == json.ARRAY or v[1] ~= nil then
      return ctx:fail("the arguments must be a JSON object, like '{\"limit\": 5}'"
        .. (derr and (" (" .. tostring(derr) .. ")") or ""))
    end
    targs = v
  end
  local client, code = ctx:client()
  if not client then return code end
  local data, res = ctx:call_tool(client, name, targs)
  if data == nil and errors.is(res) then return ctx:fail(res, res.exit) end
  local tool = client:cached_tool(name)
  local guide = json.guide.result(tool, res).child("structuredContent")
  if type(res) == "table" and type(res.structuredContent) == "table" and res.structuredContent.data ~= nil then
    guide = guide and guide.child("data")
  end
  if ctx.flags.json then
    ctx:json_out(data, guide)
  elseif type(data) == "string" then
    ctx:say(data)
  elseif data == nil then
    ctx:say("(no result)")
  else
    ctx:say(json.encode(data, guide, "  "))
  end
  return EXIT.ok
end

function C.resource_list(ctx, args)
  if args[1] then return ctx:fail("resource list takes no arguments") end
  local list, code, client = ask(ctx, nil, "resources")
  if not list then return code end
  local templates = client:resource_templates() or {}
  if ctx.flags.json then
    ctx:json_out({ resources = list, resourceTemplates = templates },
      G.struct({ resources = G.list(nil), resourceTemplates = G.list(nil) }))
    return EXIT.ok
  end
  local rows = {}
  for _, r in ipairs(list) do
    rows[#rows + 1] = { tostring(r.uri), tostring(r.title or r.name or ""), tostring(r.mimeType or "") }
  end
  for _, t in ipairs(templates) do
    rows[#rows + 1] = { tostring(t.uriTemplate), tostring(t.title or t.name or "") .. " (template)",
      tostring(t.mimeType or "") }
  end
  ctx:table({ "URI", "TITLE", "TYPE" }, rows)
  ctx:say("")
  ctx:say(#list .. " resources, " .. #templates .. " templates. `favcrm resource read URI` prints one.")
  return EXIT.ok
end

function C.resource_read(ctx, args)
  local uri = args[1]
  if not uri or args[2] then return ctx:fail("resource read needs exactly one URI") end
  local contents, code = ask(ctx, G.struct({ contents = G.list(nil) }), "read", uri)
  if not contents then return code end
  for _, part in ipairs(contents) do
    if type(part.text) == "string" then
      ctx.stdout:write(part.text, part.text:sub(-1) == "\n" and "" or "\n")
    elseif type(part.blob) == "string" then
      ctx:say("(" .. tostring(part.mimeType or "binary") .. ", " .. #part.blob
        .. " bytes of base64; --json prints it)")
    end
  end
  return EXIT.ok
end

function C.prompt_list(ctx, args)
  if args[1] then return ctx:fail("prompt list takes no arguments") end
  local list, code = ask(ctx, G.list(G.struct({ arguments = G.list(nil) })), "prompts")
  if not list then return code end
  local rows = {}
  for _, p in ipairs(list) do
    local names = {}
    for _, a in ipairs(type(p.arguments) == "table" and p.arguments or {}) do
      names[#names + 1] = tostring(a.name) .. (a.required == true and "" or "?")
    end
    rows[#rows + 1] = { tostring(p.name), tostring(p.title or p.description or ""), table.concat(names, ", ") }
  end
  ctx:table({ "NAME", "TITLE", "ARGUMENTS" }, rows)
  ctx:say("")
  ctx:say(#list .. " prompts. `favcrm prompt get NAME --arg k=v` fills one in.")
  return EXIT.ok
end

function C.prompt_get(ctx, args)
  local name = args[1]
  if not name or args[2] then return ctx:fail("prompt get needs exactly one prompt NAME") end
  local pargs = {}
  for _, kv in ipairs(ctx.flags.arg or {}) do
    local k, v = kv:match("^([^=]+)=(.*)$")
    if not k then return ctx:fail("--arg wants NAME=VALUE (got '" .. kv .. "')") end
    pargs[k] = v
  end
  local messages, res = ask(ctx, G.struct({ messages = G.list(nil) }), "prompt", name, pargs)
  if not messages then return res end
  if type(res.description) == "string" then
    ctx:say(ctx:paint(res.description, "bold"))
    ctx:say("")
  end
  for _, m in ipairs(messages) do
    local c = type(m.content) == "table" and m.content or {}
    local text = type(c.text) == "string" and c.text or ("(" .. tostring(c.type) .. " content)")
    ctx:say(tostring(m.role) .. ": " .. text)
  end
  return EXIT.ok
end

return C
