--- favcrm.tasks: task-augmented tools/call (MCP 2025-11-25, experimental).
--
-- A tool whose `execution.taskSupport` is "required" (or "optional" when
-- the caller passes `task = true`) runs as a task, on a server that
-- declares `tasks.requests.tools.call`: the tools/call carries `task` and
-- is answered with a task at once; the client polls tasks/get (at the
-- task's pollInterval), and once the task is over, or needs input
-- (`input_required`: the server's elicitation or sampling request then
-- arrives on the tasks/result stream and goes to on_elicit/on_sample as
-- any other), fetches tasks/result, which is what the tools/call would
-- have answered. Everything spends from the call's one deadline (progress
-- of the task moves it on, as for a plain call); when it passes, or the
-- caller cancels an async handle, the task is cancelled with tasks/cancel.
-- For the caller nothing changes: client:call returns the final result.
--
-- Bounds: at most MAX_POLLS tasks/get a call (after that the client waits
-- on tasks/result, which the server holds until the task is over); the wait
-- between two is the server's pollInterval kept within
-- [MIN_POLL_INTERVAL, MAX_POLL_INTERVAL] (DEFAULT_POLL_INTERVAL when it
-- gives none) and never past the deadline.
local errors = require("favcrm.errors")
local core = require("favcrm.core")

local M = {}

M.MAX_POLLS = 1000
M.MIN_POLL_INTERVAL = 0.05 -- seconds
M.DEFAULT_POLL_INTERVAL = 1
M.MAX_POLL_INTERVAL = 30
-- how long a tasks/cancel sent after a blocking call ended may take to
-- leave before the call returns (the rest is finished by later pumps)
local CANCEL_DRAIN = 0.1
local CANCEL_TIMEOUT = 5

local TERMINAL = { completed = true, failed = true, cancelled = true }

local function tasks_caps(session)
  local caps = session.server_capabilities
  local t = type(caps) == "table" and caps.tasks
  return type(t) == "table" and t or nil
end

--- tasks.check(task, level): raises when a call's opts.task is not nil, a
-- boolean or {ttl = ms} (ttl a positive finite number), naming it.
---@param task any the call's opts.task
---@param level integer the error level (the caller's caller: 3 from client:call)
---@return nil
function M.check(task, level)
  if task == nil or type(task) == "boolean" then return end
  if type(task) ~= "table" then
    error("bad argument #3 to 'call' (option 'task' must be a boolean or {ttl = ms}, got " .. type(task) .. ")", level)
  end
  local ttl = task.ttl
  if ttl ~= nil and (type(ttl) ~= "number" or ttl ~= ttl or ttl <= 0 or ttl == math.huge) then
    error("bad argument #3 to 'call' (option 'task.ttl' must be a positive number of milliseconds)", level)
  end
end

--- tasks.wanted(session, tool, opts) -> true when this call runs as a task:
-- the server takes task-augmented tools/call and the tool requires it
-- (unless opts.task == false is asked, which the server then refuses), or
-- allows it and opts.task is true or {ttl = ms}. Call after initialize
-- (and after tasks.check).
---@param session table the client's favcrm.session
---@param tool table the tool (from tools/list)
---@param opts table the call's options (task = true|false|{ttl = ms})
---@return boolean as_task
function M.wanted(session, tool, opts)
  local want = opts.task
  local t = tasks_caps(session)
  local req = t and type(t.requests) == "table" and t.requests
  local tools = req and type(req.tools) == "table" and req.tools
  if not (tools and tools.call ~= nil) then return false end
  local ex = type(tool.execution) == "table" and tool.execution or {}
  if ex.taskSupport == "required" then return want ~= false end
  if ex.taskSupport == "optional" then return want == true or type(want) == "table" end
  return false
end

local function in_async(session)
  local co = coroutine.running()
  return co ~= nil and session.async_cos[co] ~= nil
end

-- Asks the server to cancel task `id` (when it takes tasks/cancel). Nobody
-- waits for the answer: a blocking caller lets it leave for CANCEL_DRAIN.
local function cancel(session, id)
  local t = tasks_caps(session)
  if not (t and t.cancel ~= nil) or session.closed then return end
  local op = session:start_request("tasks/cancel", { taskId = id }, { timeout = CANCEL_TIMEOUT })
  if in_async(session) then return end
  local stop = core.monotonic() + CANCEL_DRAIN
  while not op.done and core.monotonic() < stop do
    session:pump(math.max(0, stop - core.monotonic()))
    if session.after_pump then session.after_pump() else session.signaled = {} end
  end
end

-- A task's messages (its progress, a request it needs answered) may come
-- on any stream, the standalone one too: over HTTP (the libcurl transport)
-- it is opened for the task unless the application said listen = false.
local function listen_for_task(session)
  if session.listen_opt ~= nil or type(session.transport) ~= "userdata" or session:listening() then return end
  session.listen_opt = true
  session:_listen_start()
  session.listen_opt = nil
end

local function ends_task(err)
  return err.code == "timeout" or err.code == "cancelled"
end

-- Waits `seconds` (never past the budget); a cancelled async handle is
-- noticed at the next request it starts.
local function pause(session, budget, seconds)
  local left = session.left(budget)
  if left <= 0 then return end
  session:sleep(math.min(seconds, left))
end

local function interval_of(task)
  local ms = tonumber(task.pollInterval)
  if not ms or ms ~= ms then return M.DEFAULT_POLL_INTERVAL end
  return math.max(M.MIN_POLL_INTERVAL, math.min(M.MAX_POLL_INTERVAL, ms / 1000))
end

--- tasks.call(session, params, budget, opts) -> result or nil, err: one
-- tools/call (params: name, arguments) run as a task within budget
-- (Session:budget); result is the tools/call result tasks/result gave. A
-- server that answers the tools/call with a plain result (it ran the call
-- at once) gives that result.
---@param session table the client's favcrm.session
---@param params table the tools/call params (name, arguments)
---@param budget table the call's Session:budget
---@param opts table the call's options (task, on_progress)
---@return table|nil result the tools/call result
---@return favcrm.Error|nil err
function M.call(session, params, budget, opts)
  local p = {}
  for k, v in pairs(params) do p[k] = v end
  p.task = type(opts.task) == "table" and opts.task.ttl and { ttl = math.floor(opts.task.ttl) } or {}
  local op = session:start_request("tools/call", p, { budget = budget, on_progress = opts.on_progress })
  local token = op.progress_token
  local created, err = session:wait(op)
  if not created then return nil, err end
  local task = created.task
  if type(task) ~= "table" then
    if created.content ~= nil or created.structuredContent ~= nil then return created end
    return nil, errors.new("protocol", "the server answered a task-augmented tools/call without a task")
  end
  local id = task.taskId
  if type(id) ~= "string" or id == "" then
    return nil, errors.new("protocol", "the server created a task without a taskId")
  end
  listen_for_task(session)
  -- the progress token stays valid for the task's lifetime: its
  -- notifications reach on_progress and move the deadline on
  local watcher
  if token then
    watcher = { done = false, timeout = budget.timeout, hard_deadline = budget.hard, deadline = budget.deadline,
      budget = budget, on_progress = op.on_progress }
    session.by_token[token] = watcher
  end
  local function over(res, e)
    if watcher then
      watcher.done = true
      if session.by_token[token] == watcher then session.by_token[token] = nil end
    end
    if e and ends_task(e) then cancel(session, id) end
    return res, e
  end
  local polls = 0
  while not TERMINAL[task.status] and task.status ~= "input_required" and polls < M.MAX_POLLS do
    pause(session, budget, interval_of(task))
    if session.left(budget) <= 0 then
      return over(nil, errors.new("timeout", "the task " .. id .. " of " .. tostring(params.name)
        .. " did not finish within the call's timeout of " .. budget.timeout .. " s", { task_id = id }))
    end
    polls = polls + 1
    local t, gerr = session:wait(session:start_request("tasks/get", { taskId = id }, { budget = budget }))
    if not t then return over(nil, gerr) end
    if type(t) ~= "table" or type(t.status) ~= "string" then
      return over(nil, errors.new("protocol", "tasks/get answered without a task status", { task_id = id }))
    end
    task = t
  end
  -- over, or it needs input (which comes on this stream), or polled enough:
  -- tasks/result is held by the server until the task is over
  local res, rerr = session:wait(session:start_request("tasks/result", { taskId = id }, { budget = budget }))
  return over(res, rerr)
end

return M
