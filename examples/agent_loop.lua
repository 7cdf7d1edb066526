--- examples/agent_loop.lua: a minimal agent loop that wires the signup
-- recipe to a chat on stdin/stdout.
--
-- From a checkout, after `make demo` (or `make`, `make sandbox-deps`), with
-- the sandbox running in another terminal (`node sandbox/server.mjs --test`:
-- it prints its URL and the outbox folder where the code arrives):
--
--   FAVCRM_MCP_URL=http://127.0.0.1:8765/mcp LUA_PATH='lua/?.lua;lua/?/init.lua;;' \
--     LUA_CPATH='build/5.4/?.so;;' lua5.4 examples/agent_loop.lua
--
-- After `luarocks make` the LUA_PATH and LUA_CPATH settings are not needed.
--
-- Type as the user; the "agent" answers. Once signed up, "services" lists
-- the workspace's services and "delete service svc_..." goes through the
-- safe_call recipe (which asks you to confirm). "quit" ends the loop.
--
-- The conversation state lives in a snapshot (a plain table, no secret) that
-- is written to a file after every turn, as a stateless web handler would
-- keep it in its session store: stop the script mid-signup and run it again,
-- and it carries on where it was.
local favcrm = require("favcrm")
local cjson = require("cjson.safe")
local signup = require("favcrm.recipes.signup")
local safe_call = require("favcrm.recipes.safe_call")

local STATE_FILE = os.getenv("FAVCRM_AGENT_STATE") or "favcrm-agent-state.json"

local client = favcrm.new()

local function load_snapshot()
  local f = io.open(STATE_FILE, "rb")
  if not f then return nil end
  local snap = cjson.decode(f:read("*a"))
  f:close()
  return type(snap) == "table" and snap or nil
end

local function save_snapshot(flow)
  local f = assert(io.open(STATE_FILE, "wb"))
  f:write(assert(cjson.encode(flow:snapshot())))
  f:close()
end

local function agent(text)
  io.write("Agent: ", text, "\n")
end

local function user()
  io.write("You:   ")
  io.flush()
  return io.read("*l")
end

-- In a real agent an LLM reads each user message and decides what to do.
-- The recipes are what its tool calls land on:
--   * a tool "favcrm_signup" with {message} → flow:handle(message); the
--     reply goes back to the model as the tool result, and the model passes
--     it on (it should not reword the parts about codes and keys);
--   * a tool "favcrm_call" with {name, args} → safe_call.run(...), with
--     confirm wired to "ask the user and wait for their next message";
--   * the snapshot is the tool's memory between turns: keep it beside the
--     chat history, never the API key (the client holds that).
-- Here a few keywords stand in for the model.
local snap = load_snapshot()
local flow
if snap and snap.kind == "signup" then
  flow = signup.resume(client, snap)
  agent("(resuming) " .. flow:reply())
elseif client:has_api_key() then
  agent("You're already set up with FavCRM. Try \"services\", or \"quit\".")
else
  flow = signup.start(client, {})
  agent(flow:reply())
end

for _ = 1, 200 do -- bounded, like every loop here
  local line = user()
  if line == nil or line:match("^%s*quit%s*$") then break end
  if flow and not flow:finished() then
    -- LLM: the user is mid-signup, so the message goes to the signup tool.
    agent(flow:handle(line))
    save_snapshot(flow)
  elseif line:find("services") and not line:find("delete") then
    -- LLM: a read tool call.
    local list, err = safe_call.run(client, "list_services", {})
    if list then
      agent(#list == 0 and "No services yet: your workspace is ready for its first one."
        or ("You have " .. #list .. " services."))
    else
      agent("That didn't work: " .. err.message)
    end
  elseif line:find("delete service") then
    -- LLM: a destructive tool call; the confirm callback is the user's say-so.
    local id = line:match("(svc_%w+)")
    local _, err = safe_call.run(client, "delete_service", { serviceId = id or "" }, {
      confirm = function(_, _, summary)
        agent(summary .. " Shall I go ahead? (yes/no)")
        local answer = user() or ""
        return answer:lower():match("^%s*y") ~= nil
      end,
    })
    agent(err and ("Not done: " .. err.message) or "Deleted.")
  elseif flow then
    agent(flow:handle(line))
    save_snapshot(flow)
  else
    agent("I can list your services or delete one; say \"quit\" to stop.")
  end
end

if flow and flow:finished() then os.remove(STATE_FILE) end
client:close()
