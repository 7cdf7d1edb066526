-- bin/favcrm in a real terminal (tmux): the `favcrm signup` conversation with
-- the code's time left in the prompt, the destructive-tool confirmation, and
-- `favcrm login`'s no-echo prompt, Ctrl-C during a slow call, progress on a
-- terminal. Keys reach tmux only through a file
-- (load-buffer), never through argv.
local sandbox = require("spec.support.sandbox")
local keys = require("spec.support.keys")

local LUA = os.getenv("FAVCRM_LUA_BIN") or "lua5.4"
local files = require("spec.support.files")
local _, tmpname = files.tmpdir("tmux")
local q, slurp, spit = files.q, files.slurp, files.spit

local socket, xdg
-- the session the pane runs in: a new name per start(), made before the
-- previous one is killed, so the tmux server never runs out of sessions
-- between two commands (killing its last session makes it exit; a
-- precaution: no new-session was seen to fail right after, in 300 tries)
local session, sessions = nil, 0

-- true when the tmux command succeeded (files.sh: on Lua 5.1 and LuaJIT
-- os.execute's status number would pass any assert)
local function tmux(args)
  return files.sh("tmux -L " .. q(socket) .. " " .. args .. " >/dev/null 2>&1")
end

local function capture(escapes)
  local p = io.popen("tmux -L " .. q(socket) .. " capture-pane -p -J " .. (escapes and "-e " or "")
    .. "-S -200 -t " .. session .. " 2>/dev/null")
  local s = p:read("*a")
  p:close()
  return s
end

local running = "" -- the favcrm command the pane runs (start)

-- Polls the pane until `text` shows (bounded: about 15 seconds); returns the pane.
local function wait_for(text, plain)
  local last, t0 = "", os.time()
  for _ = 1, 150 do
    last = capture()
    -- the program wraps its sentences: compare with the line breaks squeezed out
    if last:gsub("%s+", " "):find(text, 1, plain ~= false) then return last end
    os.execute("sleep 0.1")
  end
  error("timed out (" .. os.difftime(os.time(), t0) .. " s) waiting for [" .. text .. "] from `favcrm "
    .. running .. "` (tmux session " .. tostring(session) .. ": "
    .. (tmux("has-session -t " .. tostring(session)) and "running" or "gone") .. "); the pane shows:\n" .. last)
end

local function start(args, key, url)
  local pre = "cd " .. q(os.getenv("PWD") or ".") .. " && FAVCRM_MCP_URL=" .. q(url or sandbox.url())
    .. " XDG_CONFIG_HOME=" .. q(xdg)
  if key then
    local kf = tmpname("key")
    spit(kf, key)
    pre = pre .. " FAVCRM_API_KEY=\"$(cat " .. q(kf) .. ")\""
  end
  running = args
  local cmd = pre .. " " .. LUA .. " bin/favcrm " .. args .. "; echo \"EXIT=$?\"; sleep 60"
  local previous = session
  sessions = sessions + 1
  session = "favcrm" .. sessions
  assert(tmux("new-session -d -s " .. session .. " -x 100 -y 50 " .. q(cmd)))
  if previous then tmux("kill-session -t " .. previous) end
end

-- keys to the pane: tmux's own key names (Enter, C-c), several in a row
local function keys_to_pane(names)
  assert(tmux("send-keys -t " .. session .. " " .. names))
end

-- a file's text pasted into the pane through a tmux buffer (not argv), then Enter
local function paste_file(path)
  assert(tmux("load-buffer -b p " .. q(path)))
  assert(tmux("paste-buffer -d -b p -t " .. session))
  keys_to_pane("Enter")
end

local function type_line(text)
  assert(tmux("send-keys -t " .. session .. " -l " .. q(text)))
  keys_to_pane("Enter")
end

local function code_for(to)
  for _ = 1, 100 do
    local mails = sandbox.outbox(to)
    if mails[#mails] and mails[#mails].code then return mails[#mails].code end
    os.execute("sleep 0.1")
  end
  error("no code e-mailed to " .. to)
end

local function saved_key()
  local text = slurp(xdg .. "/favcrm/config.toml")
  return text and text:match('api_key = "([^"]+)"')
end

describe("favcrm in a terminal (tmux)", function()
  it("has tmux (Debian package tmux; make test installs it)", function()
    local ok = os.execute("command -v tmux >/dev/null 2>&1")
    assert.is_true(ok == true or ok == 0, "tmux is not installed: apt-get install tmux")
  end)

  before_each(function()
    sandbox.reset()
    xdg = tmpname("xdg")
    socket = "favcrm-spec-" .. xdg:match("[^/]+$")
    session = nil -- (a new tmux server: the socket is new)
    os.execute("mkdir -p " .. q(xdg))
  end)

  after_each(function()
    tmux("kill-server")
  end)

  it("signs up in a conversation, with the code's time left in the prompt", function()
    start("signup")
    wait_for("What's the business called")
    wait_for("you> ")
    local pane = capture(true)
    assert.is_truthy(pane:find("\27[", 1, true), "no colour on a terminal")
    type_line("Sign me up. The business is a yoga studio called Lotus Flow in Hong Kong")
    wait_for("Which e-mail address")
    type_line("lotus@example.com")
    wait_for("6-digit code")
    pane = wait_for("code valid %d+:%d%d more %(until %d%d:%d%d UTC%)> ", false)
    assert.is_truthy(pane:find("lo*@example.com", 1, true))
    type_line("I didn't get it")
    wait_for("spam")
    type_line("the code is " .. code_for("lotus@example.com"))
    pane = wait_for("EXIT=")
    assert.is_truthy(pane:find("You're all set", 1, true), pane)
    assert.is_truthy(pane:find("EXIT=0", 1, true), pane)
    local key = saved_key()
    keys.remember(key)
    assert.is_truthy(key:match("^fav_mcp_"))
    assert.is_nil(pane:find(key, 1, true))
    assert.is_truthy(pane:find("fav_mcp_..." .. key:sub(-4), 1, true))
  end)

  it("asks before a destructive tool on a terminal, and does nothing on no", function()
    local key = sandbox.account()
    local favcrm = require("favcrm")
    local c = favcrm.new({ url = sandbox.url(), api_key = key })
    local svc = assert(c:call("create_service", { name = "Yoga", durationMinutes = 60 }))
    start("tool call delete_service '{\"serviceId\": \"" .. svc.id .. "\"}'", key)
    wait_for("Go ahead? [y/N]")
    type_line("n")
    local pane = wait_for("EXIT=")
    assert.is_truthy(pane:find("EXIT=1", 1, true), pane)
    assert.equal(1, #assert(c:call("list_services", {})))
    start("tool call delete_service '{\"serviceId\": \"" .. svc.id .. "\"}'", key)
    wait_for("Go ahead? [y/N]")
    type_line("y")
    pane = wait_for("EXIT=")
    assert.is_truthy(pane:find("EXIT=0", 1, true), pane)
    assert.equal(0, #assert(c:call("list_services", {})))
    c:close()
  end)

  it("logs in with a prompt that does not echo the key", function()
    local key = sandbox.account("hal@example.com")
    start("login")
    wait_for("input hidden")
    local kf = tmpname("key")
    spit(kf, key)
    paste_file(kf)
    local pane = wait_for("EXIT=")
    assert.is_truthy(pane:find("EXIT=0", 1, true), pane)
    assert.is_truthy(pane:find("hal@example.com", 1, true))
    assert.is_nil(pane:find(key, 1, true), "the key was echoed")
    assert.equal(key, saved_key())
  end)

  it("logs in with OAuth on a headless machine (--no-browser: the redirect pasted), then calls and logs out",
    function()
      local url = sandbox.oauth_url()
      local favcrm = require("favcrm")
      local okn, nerr = pcall(favcrm.new, { url = url, oauth = { redirect_uri = "http://127.0.0.1:8976/callback",
        authorize = function() end, store = false } })
      if not okn and tostring(nerr):find("unknown option 'oauth'", 1, true) then
        pending("favcrm.new has no 'oauth' option in this build (issue 17's OAuth client, branch wip-oauth)")
        return
      end
      sandbox.reset(url)
      start("login --oauth --no-browser", nil, url)
      local pane = wait_for("redirect address> ")
      local auth_url = pane:gsub("%s+", " "):match("(http://127%.0%.0%.1:%d+/authorize%?%S+)")
      assert.is_string(auth_url, pane)
      -- the browser: the sandbox approves at once (test mode) and redirects
      local http = require("socket.http")
      local _, status, h = http.request({ url = auth_url, redirect = false })
      assert.equal(302, status)
      local redirect = h.location
      assert.truthy(redirect:find("^http://127%.0%.0%.1:8976/callback%?"), redirect)
      assert.truthy(redirect:find("[?&]code="), redirect)
      -- pasted through a tmux buffer (a file), not argv
      local rf = tmpname("redirect")
      spit(rf, redirect)
      paste_file(rf)
      pane = wait_for("EXIT=")
      local panes = { pane }
      assert.is_truthy(pane:find("EXIT=0", 1, true), pane)
      assert.is_truthy(pane:find("Logged in with OAuth as oauth-owner@example.com", 1, true), pane)
      local file = xdg .. "/favcrm/oauth-tokens.json"
      local st = io.popen("stat -c %a " .. q(file)):read("*l")
      assert.equal("600", st)
      local counts = sandbox.control("GET", "/_sandbox/oauth", nil, url)
      assert.equal(1, counts.tokens_issued)
      -- a tool call with the stored token, in the same terminal
      start("whoami", nil, url)
      pane = wait_for("EXIT=")
      panes[#panes + 1] = pane
      assert.is_truthy(pane:find("EXIT=0", 1, true), pane)
      assert.is_truthy(pane:find("oauth-owner@example.com", 1, true), pane)
      assert.equal(1, sandbox.control("GET", "/_sandbox/oauth", nil, url).tokens_issued, "signed in again")
      start("logout", nil, url)
      pane = wait_for("EXIT=")
      panes[#panes + 1] = pane
      assert.is_truthy(pane:find("EXIT=0", 1, true), pane)
      assert.is_truthy(pane:find("revoked at the server", 1, true), pane)
      assert.is_nil((slurp(file) or ""):find("fav_o", 1, true), "tokens left in " .. file)
      assert.is_true(sandbox.control("GET", "/_sandbox/oauth", nil, url).revocations >= 1)
      -- no token, client secret or code verifier reached the terminal
      local secrets = sandbox.oauth_secrets(url)
      assert.is_true(#secrets >= 3) -- access and refresh token, code verifier
      for _, secret in ipairs(secrets) do
        for _, p in ipairs(panes) do
          assert.is_nil(p:find(secret, 1, true), "a secret of the OAuth grant reached the terminal")
        end
      end
    end)

  it("Ctrl-C during a slow call cancels it (notifications/cancelled) and exits 130, quietly", function()
    sandbox.control("POST", "/_sandbox/stats/reset", {})
    start("tool call sandbox_slow '{\"ms\": 30000}'")
    -- the call is on the wire once the sandbox counts it
    local sent = false
    for _ = 1, 150 do
      local st = sandbox.stats()
      if st.last_tool_name == "sandbox_slow" then sent = true break end
      os.execute("sleep 0.1")
    end
    assert.is_true(sent, "the slow call never reached the sandbox")
    keys_to_pane("C-c")
    local pane = wait_for("EXIT=")
    assert.is_truthy(pane:find("EXIT=130", 1, true), pane)
    assert.is_truthy(pane:find("favcrm: interrupted; the call was cancelled", 1, true), pane)
    assert.is_nil(pane:find("internal error", 1, true), pane)
    assert.is_nil(pane:find("interrupted!", 1, true), pane)
    local cancelled
    for _ = 1, 50 do
      cancelled = sandbox.stats().cancelled
      if #cancelled > 0 then break end
      os.execute("sleep 0.1")
    end
    assert.equal(1, #cancelled, "no notifications/cancelled reached the sandbox")
  end)

  it("shows progress on stderr while a call runs, and clears it at the end", function()
    start("tool call sandbox_progress '{\"steps\": 8, \"delay_ms\": 400}'")
    wait_for("favcrm: sandbox_progress: %d/8", false)
    local pane = wait_for("EXIT=")
    assert.is_truthy(pane:find("EXIT=0", 1, true), pane)
    assert.is_truthy(pane:find('"steps": 8', 1, true), pane)
    assert.is_nil(pane:find("sandbox_progress: 8/8", 1, true), "the progress line was left behind:\n" .. pane)
  end)

  it("prints no progress when stderr is not a terminal", function()
    start("tool call sandbox_progress '{\"steps\": 3, \"delay_ms\": 50}' 2>/dev/null")
    local pane = wait_for("EXIT=")
    assert.is_truthy(pane:find("EXIT=0", 1, true), pane)
    assert.is_nil(pane:find("sandbox_progress:", 1, true), pane)
  end)
end)
