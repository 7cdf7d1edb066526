-- Runs inside `nvim --headless` for spec/integration/nvim_plugin_spec.lua:
-- loads the plugin from the checkout (plugin/favcrm.lua on the runtimepath,
-- favcrm.core pinned to $FAVCRM_NVIM_CORE), plays the scenario named by
-- $FAVCRM_NVIM_SCENARIO, writes what happened as JSON to $FAVCRM_NVIM_OUT
-- and quits. Waits are vim.wait on a condition (the editor's loop runs
-- meanwhile), never a fixed sleep.
local top = assert(os.getenv("FAVCRM_TOP"))
package.path = top .. "/?.lua;" .. package.path
package.preload["favcrm.core"] = assert(package.loadlib(assert(os.getenv("FAVCRM_NVIM_CORE")),
  "luaopen_favcrm_core"))
vim.cmd("set rtp^=" .. vim.fn.fnameescape(top))
vim.cmd("runtime plugin/favcrm.lua")

local cjson = require("cjson")
local uv = vim.uv or vim.loop

-- The sandbox's control endpoints through curl(1): LuaSocket cannot load
-- inside Neovim (its C symbol socket_connect resolves to Neovim's own).
local sandbox = {}
local base = assert(os.getenv("FAVCRM_SANDBOX_URL")):match("^(https?://[^/]+)")
local function control(path)
  local p = assert(io.popen("curl -sf " .. base .. path))
  local body = p:read("*a")
  p:close()
  return cjson.decode(body)
end
function sandbox.stats() return control("/_sandbox/stats") end
function sandbox.outbox(to) return control("/_sandbox/outbox?to=" .. to) end

local result = {}
local function finish()
  local f = assert(io.open(assert(os.getenv("FAVCRM_NVIM_OUT")), "w"))
  f:write(cjson.encode(result))
  f:close()
  vim.cmd("qa!")
end

local function wait(ms, pred, what)
  if not vim.wait(ms, pred, 2) then error("timed out after " .. ms .. " ms waiting for " .. what, 2) end
end

local function buf_lines(buf)
  return vim.api.nvim_buf_get_lines(buf, 0, -1, false)
end

-- Runs `:FavCRM args` and waits for its User FavCRMDone; -> M.last
local commands = require("favcrm.nvim.commands")
local function favcrm(args)
  local done = false
  local id = vim.api.nvim_create_autocmd("User", { pattern = "FavCRMDone", once = true,
    callback = function() done = true end })
  vim.cmd("FavCRM " .. args)
  wait(20000, function() return done end, ":FavCRM " .. args)
  pcall(vim.api.nvim_del_autocmd, id)
  -- what the command scheduled (its messages) runs before this marker
  local flushed = false
  vim.schedule(function() flushed = true end)
  wait(5000, function() return flushed end, "the scheduled messages")
  local last = commands.last
  return { command = last.command, ok = last.ok, lines = last.buf and buf_lines(last.buf) or nil,
    name = last.buf and vim.api.nvim_buf_get_name(last.buf) or nil }
end

local function histories()
  local all = {}
  for _, h in ipairs({ "cmd", "search", "expr", "input", "debug" }) do
    for i = 1, vim.fn.histnr(h) do all[#all + 1] = vim.fn.histget(h, i) end
  end
  return all
end

local scenarios = {}

function scenarios.checkhealth()
  vim.cmd("checkhealth favcrm")
  result.lines = buf_lines(0)
end

function scenarios.commands()
  result.subcommands = vim.fn.getcompletion("FavCRM ", "cmdline")
  result.sub_lo = vim.fn.getcompletion("FavCRM lo", "cmdline")
  result.doctor = favcrm("doctor")
  result.tools = favcrm("tools")
  result.tool_completion = vim.fn.getcompletion("FavCRM call sandbox_e", "cmdline")
  result.call = favcrm('call sandbox_echo {"value": {"n": 42, "s": "a b"}}')
  result.call_unknown = favcrm("call list_servicez {}")
  result.call_badjson = favcrm("call sandbox_echo {nope")
  result.login = favcrm("login")
  result.logout = favcrm("logout")
  result.messages = vim.fn.execute("messages")
end

function scenarios.signup()
  local email = assert(os.getenv("FAVCRM_NVIM_EMAIL"))
  local answers = {
    "Sign me up. The business is a yoga studio called Stretch + Breathe in Hong Kong.",
    email,
  }
  result.prompts = {}
  vim.ui.input = function(opts, on_confirm)
    result.prompts[#result.prompts + 1] = opts.prompt
    on_confirm(table.remove(answers, 1))
  end
  -- the real inputsecret(), reading the code typed ahead as a person would
  local code_prompts = 0
  local real_inputsecret = vim.fn.inputsecret
  vim.fn.inputsecret = function(prompt)
    code_prompts = code_prompts + 1
    result.code_prompt = prompt
    for _, m in ipairs(sandbox.outbox(email)) do
      if m.code then result.code = m.code end
    end
    vim.api.nvim_feedkeys(result.code .. "\r", "t", false)
    return real_inputsecret(prompt)
  end
  local r = favcrm("signup")
  result.ok, result.lines = r.ok, r.lines
  result.code_prompts = code_prompts
  result.state = commands.signup_flow.state
  -- the history records input() lines: one typed the same way shows up
  vim.api.nvim_feedkeys("typed into input()\r", "t", false)
  result.input_seen = vim.fn.input("> ")
  result.histories = histories()
  result.messages = vim.fn.execute("messages")
  -- the saved key is what the next command uses
  result.tools_after = favcrm("tools").ok
end

function scenarios.calls()
  local favcrm_mod = require("favcrm")
  local fnvim = require("favcrm.nvim")
  local client = favcrm_mod.new()
  -- a 10 ms UI timer: its gaps while a 1.5 s call is in flight
  local last, max_gap, ticks, in_flight = nil, 0, 0, false
  local timer = uv.new_timer()
  timer:start(10, 10, function()
    local t = uv.hrtime()
    if in_flight then
      ticks = ticks + 1
      if last then max_gap = math.max(max_gap, (t - last) / 1e6) end
    end
    last = t
  end)
  local got
  in_flight = true
  local t0 = uv.hrtime()
  fnvim.call(client, "sandbox_slow", { ms = 1500 }, function(payload, err)
    got = { payload = payload, err = err == nil and "nil" or tostring(err) }
  end)
  wait(20000, function() return got ~= nil end, "sandbox_slow")
  in_flight = false
  timer:stop()
  result.slow = { slept = got.payload and got.payload.sleptMs, err = got.err, ticks = ticks,
    max_gap_ms = max_gap, elapsed_ms = (uv.hrtime() - t0) / 1e6 }

  -- a failure: payload nil, err the error object
  local failed
  fnvim.call(client, "list_servicez", {}, function(payload, err)
    failed = { payload = payload == nil and "nil" or payload, code = err and err.code }
  end)
  wait(10000, function() return failed ~= nil end, "list_servicez")
  result.failed = failed

  -- cancel: the call is in flight (the sandbox has it), then :cancel()
  local st0 = sandbox.stats()
  local before, calls0 = #st0.cancelled, st0.by_method["tools/call"] or 0
  local cancelled
  local h = fnvim.call(client, "sandbox_slow", { ms = 10000 }, function(payload, err)
    cancelled = { payload = payload == nil and "nil" or payload, code = err and err.code,
      message = err and err.message }
  end)
  wait(10000, function() return (sandbox.stats().by_method["tools/call"] or 0) > calls0 end,
    "the sandbox to receive the slow call")
  local t1 = uv.hrtime()
  result.cancel_returned = h:cancel()
  wait(5000, function() return cancelled ~= nil end, "the cancelled callback")
  wait(5000, function() return #sandbox.stats().cancelled > before end, "notifications/cancelled")
  result.cancel_ms = (uv.hrtime() - t1) / 1e6
  result.cancelled = cancelled
  result.cancel_again = h:cancel()
  client:close()
end

-- :FavCRM login against the sandbox in OAuth mode: the "browser" is curl,
-- fetching the authorization URL favcrm://login shows (approved at once in
-- test mode) and pasting the address it was sent to into vim.ui.input.
function scenarios.login()
  local oauth = assert(os.getenv("FAVCRM_NVIM_OAUTH_BASE"))
  local function oauth_control(path)
    local p = assert(io.popen("curl -sf " .. oauth .. path))
    local body = p:read("*a")
    p:close()
    return cjson.decode(body)
  end
  result.prompts = {}
  vim.ui.input = function(opts, on_confirm)
    result.prompts[#result.prompts + 1] = opts.prompt
    local shown = ""
    for _, b in ipairs(vim.api.nvim_list_bufs()) do
      if vim.api.nvim_buf_get_name(b) == "favcrm://login" then shown = table.concat(buf_lines(b), "\n") end
    end
    local auth_url = shown:match("(http://127%.0%.0%.1:%d+/authorize%?%S+)")
    result.shown_url = auth_url ~= nil
    if not auth_url then return on_confirm(nil) end
    local p = assert(io.popen("curl -s -o /dev/null -w '%{redirect_url}' '" .. auth_url:gsub("'", "") .. "'"))
    local redirect = p:read("*a")
    p:close()
    -- answered later, as an asynchronous vim.ui.input (dressing.nvim) would
    vim.defer_fn(function() on_confirm(redirect) end, 300)
  end
  if vim.ui.open then vim.ui.open = function() return nil end end -- no real browser in a spec
  -- a 10 ms UI timer while the sign-in is on: the editor must keep ticking
  local last, max_gap, ticks = nil, 0, 0
  local timer = uv.new_timer()
  timer:start(10, 10, function()
    local t = uv.hrtime()
    ticks = ticks + 1
    if last then max_gap = math.max(max_gap, (t - last) / 1e6) end
    last = t
  end)
  local t0 = uv.hrtime()
  result.login = favcrm("login")
  timer:stop()
  result.login_timer = { ticks = ticks, max_gap_ms = max_gap, elapsed_ms = (uv.hrtime() - t0) / 1e6 }
  if not result.login.ok then
    result.messages = vim.fn.execute("messages")
    return
  end
  result.file_mode = vim.fn.getfperm(require("favcrm.login").path())
  result.counts_after_login = oauth_control("/_sandbox/oauth")
  result.call = favcrm("call list_my_companies {}")
  result.logout = favcrm("logout")
  result.counts = oauth_control("/_sandbox/oauth")
  result.messages = vim.fn.execute("messages")
  result.secrets = oauth_control("/_sandbox/oauth/tokens").tokens
  local f = io.open(require("favcrm.login").path())
  result.file_after = f and f:read("*a") or ""
  if f then f:close() end
end

local guard = uv.new_timer()
guard:start(50000, 0, vim.schedule_wrap(function()
  result.error = "the scenario did not finish within 50 s"
  finish()
end))
local ok, err = xpcall(scenarios[assert(os.getenv("FAVCRM_NVIM_SCENARIO"))], debug.traceback)
if not ok then result.error = tostring(err) end
guard:stop()
finish()
