-- Every ```lua block of README.md and examples/README.md, and the command in
-- examples/agent_loop.lua's header, runs as written against the sandbox.
-- A block runs in its own Lua process with FAVCRM_MCP_URL pointing at the
-- sandbox (as the README says to set it) and a throw-away config folder; the
-- blocks that call tools get FAVCRM_API_KEY for a ready workspace. A block
-- that asks for the e-mailed code reads it from its stdin: the spec types
-- the code found in the sandbox's outbox, as the person would; "(yes/no)"
-- is answered "yes".
local core = require("favcrm.core")
local sandbox = require("spec.support.sandbox")
local files = require("spec.support.files")

local LUA = os.getenv("FAVCRM_LUA_BIN") or "lua5.4"
local BUILD = os.getenv("FAVCRM_BUILD") or "build/5.4"
local _, tmpname = files.tmpdir("docs-examples")

-- The ```lua blocks of a Markdown file: { {line =, code =}, ... }
local function lua_blocks(path)
  local text = assert(files.slurp(path), path)
  local blocks, cur, n = {}, nil, 0
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    if cur then
      if line:match("^```%s*$") then
        blocks[#blocks + 1] = cur
        cur = nil
      else
        cur.code = cur.code .. line .. "\n"
      end
    elseif line:match("^```lua%s*$") then
      cur = { line = n, code = "" }
    end
  end
  assert(cur == nil, path .. ": a ```lua block is not closed")
  return blocks
end

-- The newest code e-mailed to `to`.
local function code_for(to)
  local mails = sandbox.outbox(to)
  for i = #mails, 1, -1 do
    if mails[i].code then return mails[i].code end
  end
  error("no code was e-mailed to " .. to)
end

-- Runs argv with env on top of ours; answers prompts; returns the exit
-- status and the lines it printed (stdout and stderr).
local function converse(argv, env, email)
  local p = assert(core.spawn(argv, env))
  local lines, stderr = {}, ""
  local deadline = core.monotonic() + 60
  while true do
    assert(core.monotonic() < deadline, "no end after 60 s; it printed:\n" .. table.concat(lines, "\n"))
    local r = p:poll(1000)
    stderr = stderr .. (r.stderr or "")
    for _, l in ipairs(r.lines) do
      lines[#lines + 1] = l
      if l:find("Code%?") or l:find("e%-mailed a 6%-digit code") then
        assert(p:write(code_for(assert(email, "a block asks for a code but names no e-mail")) .. "\n"))
      elseif l:find("%(yes/no%)") then
        assert(p:write("yes\n"))
      end
    end
    if r.eof then break end
  end
  local status = p:close(5000)
  if stderr ~= "" then
    for l in stderr:gmatch("[^\n]+") do lines[#lines + 1] = "stderr: " .. l end
  end
  return status, lines
end

local function env_for(block_code)
  local home = tmpname("home")
  assert(files.sh("mkdir -p " .. files.q(home)))
  local env = { FAVCRM_MCP_URL = sandbox.url(), HOME = home, XDG_CONFIG_HOME = home .. "/.config",
    LUA_PATH = os.getenv("LUA_PATH"), LUA_CPATH = os.getenv("LUA_CPATH") }
  local signs_up = block_code:find("request(", 1, true) or block_code:find("signup.start", 1, true)
  if not signs_up then env.FAVCRM_API_KEY = (sandbox.account()) end
  return env, block_code:match("[%w._-]+@example%.com")
end

-- What each block must print (a pattern over its whole output), keyed by
-- a piece of its code.
local EXPECT = {
  { 'client:call("list_services")', "^0 services\n$" },
  { "client:verify(req", "Code sent to yo%*+@example%.com.-fav_mcp_%.%.%.%w%w%w%w\n$" },
  { "client:call_many", "^2\tnil\t0\t%-?%d+\n$" },
  { "signup.start", "^need_fields\t.-e%-mailed a 6%-digit code.-\nYou're all set" },
  { "safe_call.run", "%(yes/no%)\ntrue\tnil\n$" },
}

local function expectation(code)
  for _, e in ipairs(EXPECT) do
    if code:find(e[1], 1, true) then return e[2] end
  end
end

for _, doc in ipairs({ "README.md", "examples/README.md" }) do
  describe(doc, function()
    local blocks = lua_blocks(doc)
    it("has Lua blocks, and the spec knows what each must print", function()
      assert.is_true(#blocks > 0)
      for _, b in ipairs(blocks) do
        assert.is_truthy(expectation(b.code), doc .. ":" .. b.line .. ": no expectation for this block in "
          .. "spec/integration/docs_examples_spec.lua")
      end
    end)
    for _, b in ipairs(blocks) do
      it("runs the block at line " .. b.line .. " as written", function()
        sandbox.reset()
        local path = tmpname("block") .. ".lua"
        files.spit(path, b.code)
        local env, email = env_for(b.code)
        -- stdout line-buffered, as on the terminal the blocks are written for
        -- (Lua 5.1 and LuaJIT would otherwise hold "Code?" back from a pipe)
        local status, lines = converse({ LUA, "-e", "io.stdout:setvbuf('line')", path }, env, email)
        local out = table.concat(lines, "\n") .. "\n"
        assert.equal(0, status, doc .. ":" .. b.line .. " failed; it printed:\n" .. out)
        assert.matches(expectation(b.code), out)
        if env.FAVCRM_API_KEY then
          assert.is_nil(out:find(env.FAVCRM_API_KEY, 1, true), "the key was printed")
        end
      end)
    end
  end)
end

describe("examples/agent_loop.lua", function()
  it("runs with the command its header gives, through a whole signup and a tool call", function()
    sandbox.reset()
    local header = assert(files.slurp("examples/agent_loop.lua")):match("^(.-)\nlocal ")
    -- the command: the comment lines from "FAVCRM_MCP_URL=" to the one naming the script
    local cmd = header:match("\n%-%-%s+(FAVCRM_MCP_URL=.-examples/agent_loop%.lua)")
    assert.is_truthy(cmd, "the header gives no command")
    cmd = cmd:gsub("\\\n%-%-%s*", " ")
    -- this run's sandbox, Lua and build in place of the header's defaults
    cmd = cmd:gsub("http://127%.0%.0%.1:8765/mcp", sandbox.url()):gsub("build/5%.4", BUILD)
      :gsub("lua5%.4 examples", LUA .. " examples")
    local home = tmpname("home")
    assert(files.sh("mkdir -p " .. files.q(home)))
    local p = assert(core.spawn({ "sh", "-c", cmd }, { LUA_PATH = false, LUA_CPATH = false, HOME = home,
      XDG_CONFIG_HOME = home .. "/.config", FAVCRM_AGENT_STATE = home .. "/state.json" }))
    local said = {}
    local script = {
      { "e%-mail", "Sign me up. My yoga studio is called Stretch + Breathe in Hong Kong, dee@example.com" },
      { "e%-mailed a 6%-digit code", function() return code_for("dee@example.com") end },
      { "all set", "services" },
      { "No services yet", "quit" },
    }
    local step, deadline = 1, core.monotonic() + 60
    while true do
      assert(core.monotonic() < deadline, "no end after 60 s:\n" .. table.concat(said, "\n"))
      local r = p:poll(1000)
      for _, l in ipairs(r.lines) do
        said[#said + 1] = l
        local s = script[step]
        if s and l:find(s[1]) then
          local answer = type(s[2]) == "function" and s[2]() or s[2]
          assert(p:write(answer .. "\n"))
          step = step + 1
        end
      end
      if r.eof then break end
    end
    local status = p:close(5000)
    assert.equal(0, status, table.concat(said, "\n"))
    assert.equal(#script + 1, step, "the conversation stopped early:\n" .. table.concat(said, "\n"))
  end)
end)
