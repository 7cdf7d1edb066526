--- examples/demo.lua: the signup conversation end to end against a local
-- sandbox, with the user's lines scripted and the code read from the
-- sandbox's outbox folder the way a person reads their mail.
--
--   lua examples/demo.lua URL OUTBOX_DIR
--
-- examples/demo.sh (`make demo`) starts the sandbox, points XDG_CONFIG_HOME
-- at a demo folder (never your own config) and runs this.
local favcrm = require("favcrm")
local signup = require("favcrm.recipes.signup")

local url, outbox = arg[1], arg[2]
if not url or not outbox then
  io.stderr:write("usage: lua examples/demo.lua URL OUTBOX_DIR (run it with `make demo`)\n")
  os.exit(2)
end

local EMAIL = "ann@example.com"
local OPENING = "Sign me up for FavCRM. The business is a yoga studio called Stretch + Breathe in Hong Kong."

-- Everything shown goes through show(), so the end can check the transcript.
local transcript = {}
local function show(text)
  transcript[#transcript + 1] = text
  io.write(text, "\n")
  io.flush()
end

local function wrap(prefix, text)
  local width, indent = 78, string.rep(" ", #prefix)
  local lines, line = {}, prefix
  for word in text:gmatch("%S+") do
    if #line + 1 + #word > width and line ~= prefix and line ~= indent then
      lines[#lines + 1] = line
      line = indent .. word
    elseif line == prefix or line == indent then
      line = line .. word
    else
      line = line .. " " .. word
    end
  end
  lines[#lines + 1] = line
  return table.concat(lines, "\n")
end

-- The newest message in the outbox addressed to `to`: its subject and body.
local function newest_mail(to)
  local p = assert(io.popen('ls -1 "' .. outbox .. '" 2>/dev/null'))
  local files = {}
  for name in p:lines() do
    if name:match("%.eml$") then files[#files + 1] = name end
  end
  p:close()
  table.sort(files)
  for i = #files, 1, -1 do
    local f = io.open(outbox .. "/" .. files[i], "rb")
    if f then
      local text = f:read("*a"):gsub("\r\n", "\n")
      f:close()
      local head, body = text:match("^(.-)\n\n(.*)$")
      if head and head:lower():find("\nto: " .. to:lower(), 1, true) then
        return head:match("\nSubject: ([^\n]*)"), body
      end
    end
  end
  return nil
end

local client = favcrm.new({ url = url, timeout = 20 })

show("FavCRM signup demo: a conversation with an agent, against a local sandbox.")
show("(The key is saved under " .. tostring(favcrm.config.path()) .. ", a demo folder.)")
show("")

-- The user's side, scripted. The code comes from the mailbox.
local script = {
  EMAIL,
  function()
    local subject, body = newest_mail(EMAIL)
    if not subject then return "I didn't get it" end
    local line = body:match("[^\n]*%d%d%d%d%d%d[^\n]*") or ""
    show("")
    show(wrap("   [mail] ", "Ann opens her inbox: \"" .. subject .. "\": " .. line))
    show("")
    local code = line:match("(%d%d%d%d%d%d)")
    return "it's " .. code:sub(1, 3) .. " " .. code:sub(4)
  end,
}

show(wrap("You:   ", OPENING))
local flow = signup.run(client, {
  message = OPENING,
  max_turns = 10,
  say = function(text) show(wrap("Agent: ", text)) end,
  ask = function()
    local next_line = table.remove(script, 1)
    if next_line == nil then return nil end
    if type(next_line) == "function" then next_line = next_line() end
    show(wrap("You:   ", next_line))
    return next_line
  end,
})

show("")
show("Behind the scenes: a new client that reads only the saved config file.")
local fresh = favcrm.new({ url = url })
local report = fresh:doctor()
show("  doctor: reachable=" .. tostring(report.reachable) .. ", tools=" .. tostring(report.tool_count)
  .. ", authenticated=" .. tostring(report.authenticated) .. ", key from " .. tostring(report.auth_source)
  .. ", plan=" .. tostring(type(report.plan) == "table" and report.plan.plan or "?")
  .. ", problems=" .. #report.problems)
local services, err = fresh:call("list_services", {})
if services then
  show("  list_services: " .. #services .. " services"
    .. (#services == 0 and " (a fresh workspace: ready and empty)" or ""))
else
  show("  list_services failed: " .. tostring(err))
end
fresh:close()
client:close()

-- The transcript must never hold the whole key.
local cfg = favcrm.config.load() or {}
local leaked = false
if cfg.api_key then
  for _, line in ipairs(transcript) do
    if line:find(cfg.api_key, 1, true) then leaked = true end
  end
end
show("")
show("Check: the saved key is " .. (cfg.api_key and favcrm.mask_key(cfg.api_key) or "missing")
  .. "; the transcript " .. (leaked and "HOLDS THE WHOLE KEY" or "holds only its masked form") .. ".")
if flow.state ~= "done" or leaked or not cfg.api_key or not services then
  io.stderr:write("demo: the conversation did not finish cleanly (state " .. flow.state .. ")\n")
  os.exit(1)
end
