--- favcrm.nvim.commands: what `:FavCRM {subcommand}` does (plugin/favcrm.lua
-- defines the command and calls M.run). Every network step runs through
-- favcrm.nvim, so the editor never waits; results go to a scratch buffer
-- (`favcrm://doctor`, `favcrm://tools`, `favcrm://call`, `favcrm://signup`,
-- `favcrm://login`).
-- When a subcommand is over, `User FavCRMDone` fires and M.last says how
-- it went ({command =, ok =, buf =}).
local fnvim = require("favcrm.nvim")

local M = {}

M.SUBCOMMANDS = { "doctor", "signup", "tools", "call", "login", "logout" }

local state = { client = nil, tool_names = nil, loading = nil }

-- Scheduled: an error message written inside a command would be raised as
-- an exception in whatever ran the command.
local function notify(msg, level)
  vim.schedule(function() vim.notify("FavCRM: " .. msg, level or vim.log.levels.INFO) end)
end

-- The endpoint the commands talk to (environment, config file), or nil.
local function endpoint_url()
  local ok, r = pcall(require("favcrm.config").resolve, {})
  return ok and type(r) == "table" and r.url or nil
end

--- M.client() -> the client the commands share (from the environment and
-- the config file; with the OAuth grant `:FavCRM login` stored for the
-- endpoint when no key is set in the environment), made on first use and
-- after login, logout or signup.
---@return favcrm.Client
function M.client()
  if not state.client or state.client.closed then
    local opts
    local url = not os.getenv("FAVCRM_API_KEY") and not os.getenv("FAVCRM_MCP_TOKEN") and endpoint_url()
    local login = require("favcrm.login")
    if url and login.entry(url) then
      opts = { oauth = { redirect_uri = login.PASTE_REDIRECT,
        authorize = function()
          notify("the OAuth sign-in has ended; run :FavCRM login again", vim.log.levels.WARN)
          return nil
        end } }
    end
    state.client = require("favcrm").new(opts)
  end
  return state.client
end

--- M.reset(): closes the shared client and forgets the tool names.
---@return nil
function M.reset()
  if state.client then state.client:close() end
  state.client, state.tool_names, state.loading = nil, nil, nil
end

local function finished(command, ok, buf)
  M.last = { command = command, ok = ok, buf = buf }
  vim.cmd("doautocmd <nomodeline> User FavCRMDone")
end

--- M.show(name, lines [, filetype]) -> buf: the scratch buffer
-- `favcrm://name`, made or reused, holding lines, shown in a window.
---@param name string
---@param lines table
---@param filetype? string
---@return integer buf
function M.show(name, lines, filetype)
  local bufname = "favcrm://" .. name
  local buf
  for _, b in ipairs(vim.api.nvim_list_bufs()) do
    if vim.api.nvim_buf_get_name(b) == bufname then buf = b end
  end
  if not buf then
    buf = vim.api.nvim_create_buf(false, true)
    vim.api.nvim_buf_set_name(buf, bufname)
  end
  vim.api.nvim_buf_set_option(buf, "modifiable", true)
  vim.api.nvim_buf_set_lines(buf, 0, -1, false, lines)
  vim.api.nvim_buf_set_option(buf, "modifiable", false)
  vim.api.nvim_buf_set_option(buf, "modified", false)
  if filetype then vim.api.nvim_buf_set_option(buf, "filetype", filetype) end
  if vim.fn.bufwinid(buf) == -1 then
    vim.cmd("botright split")
    vim.api.nvim_win_set_buf(0, buf)
  end
  return buf
end

local function split_lines(text)
  local out = {}
  for line in (tostring(text) .. "\n"):gmatch("([^\n]*)\n") do out[#out + 1] = line end
  return out
end

local function error_lines(err)
  local lines = { "error: " .. tostring(type(err) == "table" and err.code or "error") }
  lines[#lines + 1] = tostring(type(err) == "table" and err.message or err)
  if type(err) == "table" and err.hint then lines[#lines + 1] = "hint: " .. err.hint end
  if type(err) == "table" and err.suggestions then
    lines[#lines + 1] = "did you mean: " .. table.concat(err.suggestions, ", ")
  end
  return lines
end

-- The shared client, or nil after telling the user why not.
local function client_or_say(command)
  local ok, c = pcall(M.client)
  if ok then return c end
  notify(tostring(c), vim.log.levels.ERROR)
  finished(command, false)
  return nil
end

-- ---------------------------------------------------------------------------

--- :FavCRM doctor
function M.doctor()
  local health = require("favcrm.health")
  local build = health.build()
  if not build.ok then
    local buf = M.show("doctor", health.lines({ build }), "markdown")
    return finished("doctor", false, buf)
  end
  local c = client_or_say("doctor")
  if not c then return end
  notify("checking " .. tostring((c:endpoint())) .. " ...")
  return fnvim.run(c, function(cl) return cl:doctor() end, function(report)
    local sections = { build }
    for _, s in ipairs(health.sections(report)) do sections[#sections + 1] = s end
    local buf = M.show("doctor", health.lines(sections), "markdown")
    finished("doctor", report.ok, buf)
  end)
end

--- :FavCRM tools
function M.tools()
  local c = client_or_say("tools")
  if not c then return end
  return fnvim.run(c, function(cl) return cl:tools() end, function(list, err)
    if not list then
      notify(tostring(err), vim.log.levels.ERROR)
      return finished("tools", false, M.show("tools", error_lines(err)))
    end
    local names, lines = {}, {}
    for _, t in ipairs(list) do
      names[#names + 1] = t.name
      local about = tostring(t.description or ""):match("^[^\n]*")
      lines[#lines + 1] = t.name .. (about ~= "" and ("  " .. about) or "")
    end
    state.tool_names = names
    finished("tools", true, M.show("tools", lines))
  end)
end

--- :FavCRM call {tool} [{json}]
function M.call(tool, json_text)
  if not tool or tool == "" then
    notify("usage: :FavCRM call {tool} [{json arguments}]", vim.log.levels.ERROR)
    return finished("call", false)
  end
  local json = require("favcrm.json")
  local args = {}
  if json_text and json_text:match("%S") then
    local v, jerr = json.decode(json_text)
    if type(v) ~= "table" then
      notify("the arguments are not a JSON object: " .. tostring(jerr or json_text), vim.log.levels.ERROR)
      return finished("call", false)
    end
    args = v
  end
  local c = client_or_say("call")
  if not c then return end
  M.pending = fnvim.call(c, tool, args, function(payload, err)
    M.pending = nil
    if err then
      notify(tool .. ": " .. tostring(err), vim.log.levels.ERROR)
      return finished("call", false, M.show("call", error_lines(err)))
    end
    local text = type(payload) == "table" and json.encode(payload, nil, "  ") or tostring(payload)
    finished("call", true, M.show("call", split_lines(text), type(payload) == "table" and "json" or nil))
  end)
  return M.pending
end

-- Shows the authorization URL (vim.ui.open where Neovim has it, 0.10+;
-- always in favcrm://login) and asks for the address the browser was sent
-- to with vim.ui.input, on the main loop (vim.schedule: the call runs in a
-- favcrm.nvim handle, driven from libuv callbacks). Meanwhile authorize
-- yields (the OAuth library resumes it every 50 ms, the editor and other
-- calls run), so an asynchronous vim.ui.input (dressing.nvim, ...) works
-- too. nil when the person cancels or lets login.WAIT seconds pass.
local function authorize_with(lines)
  return function(auth_url)
    local answered, value = false, nil
    vim.schedule(function()
      local opened = false
      if vim.ui.open then opened = pcall(vim.ui.open, auth_url) end
      lines[#lines + 1] = (opened and "Your browser was opened; if it did not open, visit:"
        or "Open this address in a browser (on any machine) and sign in to FavCRM:")
      lines[#lines + 1] = "  " .. auth_url
      lines[#lines + 1] = ""
      lines[#lines + 1] = "The browser is then sent to " .. require("favcrm.login").PASTE_REDIRECT
        .. "?code=... (the page may not load: that is expected)."
      lines[#lines + 1] = "Copy that whole address from the address bar and paste it at the prompt."
      M.show("login", lines)
      vim.cmd("redraw")
      vim.ui.input({ prompt = "Redirect address: " }, function(text)
        answered, value = true, text
      end)
    end)
    local core = require("favcrm.core")
    local deadline = core.monotonic() + require("favcrm.login").WAIT
    local co = coroutine.running()
    while not answered and core.monotonic() < deadline do
      if co then coroutine.yield() else vim.wait(50, function() return answered end, 10) end
    end
    if type(value) ~= "string" or not value:match("%S") then return nil end
    return (value:gsub("^%s+", ""):gsub("%s+$", ""))
  end
end

--- :FavCRM login: signs in with OAuth 2.1 in the browser (PKCE; the
-- redirect pasted through vim.ui.input, so it works on headless machines and
-- over ssh) and keeps the tokens in the config folder (favcrm.login), where
-- `favcrm` in a terminal finds them too. Runs as a favcrm.nvim handle: the
-- editor never waits, neither for the network nor for the person.
function M.login()
  local login = require("favcrm.login")
  local url = endpoint_url()
  if not url then
    notify("no endpoint: check FAVCRM_MCP_URL or the config file", vim.log.levels.ERROR)
    return finished("login", false)
  end
  local lines = { "FavCRM login (OAuth) for " .. url, "" }
  local okn, c = pcall(require("favcrm").new, { url = url, oauth = { redirect_uri = login.PASTE_REDIRECT,
    authorize = authorize_with(lines) } })
  if not okn then
    local msg = tostring(c)
    if msg:find("unknown option 'oauth'", 1, true) then
      msg = "this build of favcrm-lua has no OAuth support yet. Use :FavCRM signup for a new workspace, "
        .. "or set FAVCRM_API_KEY (or `favcrm login` in a terminal) for an existing one."
    end
    notify(msg, vim.log.levels.ERROR)
    return finished("login", false)
  end
  -- a new sign-in, not the grant stored before (:FavCRM logout revokes that one)
  login.forget(url)
  M.pending = fnvim.run(c, function(cl) return cl:call("list_my_companies", {}) end, function(who, err)
    M.pending = nil
    c:close()
    if who == nil then
      local msg = err and err.code == "cancelled" and "the sign-in was cancelled; nothing was saved"
        or tostring(err)
      lines[#lines + 1] = ""
      for _, l in ipairs(error_lines(err)) do lines[#lines + 1] = l end
      notify("login: " .. msg, vim.log.levels.ERROR)
      return finished("login", false, M.show("login", lines))
    end
    M.reset()
    local comp = type(who.companies) == "table" and who.companies[1] or {}
    local e = login.entry(url)
    local facts = e and login.facts(e) or {}
    lines[#lines + 1] = ""
    lines[#lines + 1] = "Logged in with OAuth as " .. tostring(who.email) .. " (" .. tostring(comp.name) .. ")."
    lines[#lines + 1] = e and ("The tokens are saved to " .. tostring(login.path()) .. " (refreshed as needed).")
      or "The tokens were not saved."
    if facts.expires_at then lines[#lines + 1] = "Access token expires " .. login.iso(facts.expires_at) .. "." end
    if facts.scopes then lines[#lines + 1] = "Scopes: " .. facts.scopes end
    notify("logged in with OAuth as " .. tostring(who.email))
    finished("login", true, M.show("login", lines))
  end)
  return M.pending
end

--- :FavCRM logout: revokes and removes the OAuth grant saved for the
-- endpoint, and removes the saved key from the config file
function M.logout()
  local config = require("favcrm.config")
  local login = require("favcrm.login")
  local path, perr = config.path()
  if not path then
    notify(tostring(perr), vim.log.levels.ERROR)
    return finished("logout", false)
  end
  local parts = {}
  local url = endpoint_url()
  local entry = url and login.entry(url)
  if entry then
    local outcome = login.revoke(url, entry, 10)
    local ok, ferr = login.forget(url)
    if not ok then
      notify(tostring(ferr), vim.log.levels.ERROR)
      return finished("logout", false)
    end
    parts[#parts + 1] = "removed the OAuth tokens for " .. url .. " ("
      .. (outcome == "revoked" and "revoked at the server"
        or outcome == "unsupported" and "the server offers no revocation; they expire by themselves"
        or ("not revoked: " .. outcome:gsub("^failed: ", ""))) .. ")."
  end
  local file = config.load() or {}
  local had = type(file.api_key) == "string" and file.api_key ~= ""
  if had then
    local ok, serr = config.save({ api_key = false })
    if not ok then
      notify(tostring(serr), vim.log.levels.ERROR)
      return finished("logout", false)
    end
  end
  M.reset()
  if had then
    parts[#parts + 1] = "removed the API key from " .. path
      .. ". The key itself works until you revoke it in the portal (Settings > MCP Keys)."
  elseif not entry then
    parts[#parts + 1] = "no API key was saved in " .. path .. "."
  end
  local msg = table.concat(parts, " ")
  local env = os.getenv("FAVCRM_API_KEY") and "FAVCRM_API_KEY" or (os.getenv("FAVCRM_MCP_TOKEN") and "FAVCRM_MCP_TOKEN")
  if env then msg = msg .. " " .. env .. " is still set in the environment, so a key is still configured." end
  notify(msg, env and vim.log.levels.WARN or vim.log.levels.INFO)
  finished("logout", true)
end

-- ---------------------------------------------------------------------------
-- :FavCRM signup: the signup recipe's conversation through vim.ui.input.

--- M.ask_code(prompt, on_answer): reads the e-mailed code with
-- inputsecret(): typed as stars, kept in no history, never echoed.
---@param prompt string
---@param on_answer fun(answer: string|nil)
---@return nil
function M.ask_code(prompt, on_answer)
  local ok, v = pcall(vim.fn.inputsecret, prompt)
  vim.cmd("redraw")
  if not ok or v == "" then return on_answer(nil) end
  return on_answer(v)
end

--- :FavCRM signup
function M.signup()
  local c = client_or_say("signup")
  if not c then return end
  local signup = require("favcrm.recipes.signup")
  local log = {}
  local buf
  local function say(who, text)
    for i, line in ipairs(split_lines(text)) do log[#log + 1] = (i == 1 and (who .. ": ") or "  ") .. line end
    log[#log + 1] = ""
    buf = M.show("signup", log, "markdown")
  end
  local turn
  local function over(f)
    M.signup_flow = f
    if f.state == "done" then M.reset() end
    finished("signup", f.state == "done", buf)
  end
  local function step(f, fn)
    fnvim.run(c, fn, function(_, err)
      if err then say("FavCRM", tostring(err)) end
      turn(f)
    end)
  end
  turn = function(f)
    say("FavCRM", f:reply())
    if f:finished() then return over(f) end
    local function answer(text)
      if text == nil then
        say("FavCRM", f:stop("no_answer"))
        return over(f)
      end
      return step(f, function()
        local ok, e = pcall(f.handle, f, text)
        if not ok then return nil, e end
      end)
    end
    if f.state == "awaiting_code" then
      -- the code: never in a history, the messages or the buffer
      vim.schedule(function()
        M.ask_code("Code from the e-mail: ", function(code)
          if code then say("you", "(the code, not shown)") end
          answer(code)
        end)
      end)
    else
      vim.schedule(function()
        vim.ui.input({ prompt = "FavCRM> " }, function(text)
          if text then say("you", text) end
          answer(text)
        end)
      end)
    end
  end
  local f
  fnvim.run(c, function(cl)
    f = signup.start(cl, {}, {})
    return f
  end, function(flow, err)
    if not flow then
      notify(tostring(err), vim.log.levels.ERROR)
      return finished("signup", false)
    end
    turn(flow)
  end)
end

-- ---------------------------------------------------------------------------

--- M.tool_names() -> the tool names known (after :FavCRM tools, or fetched
-- in the background on the first completion)
---@return table names
function M.tool_names()
  if state.tool_names then return state.tool_names end
  if not state.loading then
    local ok, c = pcall(M.client)
    if ok then
      state.loading = fnvim.run(c, function(cl) return cl:tools() end, function(list)
        state.loading = nil
        if type(list) == "table" then
          local names = {}
          for _, t in ipairs(list) do names[#names + 1] = t.name end
          state.tool_names = names
        end
      end)
    end
  end
  return {}
end

--- M.complete(arglead, cmdline) -> candidates for :FavCRM's completion
---@param arglead string
---@param cmdline string
---@return table candidates
function M.complete(arglead, cmdline)
  local words = {}
  for w in cmdline:gmatch("%S+") do words[#words + 1] = w end
  if arglead ~= "" then words[#words] = nil end -- the word being typed
  local pool
  if #words <= 1 then
    pool = M.SUBCOMMANDS
  elseif #words == 2 and words[2] == "call" then
    pool = M.tool_names()
  else
    return {}
  end
  local out = {}
  for _, v in ipairs(pool) do
    if v:sub(1, #arglead) == arglead then out[#out + 1] = v end
  end
  table.sort(out)
  return out
end

--- M.run(args): `:FavCRM {args}`
---@param args string what follows :FavCRM
---@return nil
function M.run(args)
  local sub, rest = (args or ""):match("^%s*(%S*)%s*(.-)%s*$")
  if sub == "doctor" then return M.doctor() end
  if sub == "signup" then return M.signup() end
  if sub == "tools" then return M.tools() end
  if sub == "call" then
    local tool, json_text = rest:match("^(%S*)%s*(.-)$")
    return M.call(tool, json_text)
  end
  if sub == "login" then return M.login() end
  if sub == "logout" then return M.logout() end
  notify((sub == "" and "a subcommand is needed" or ("unknown subcommand '" .. sub .. "'"))
    .. "; one of: " .. table.concat(M.SUBCOMMANDS, ", "), vim.log.levels.ERROR)
end

return M
