--- favcrm.scheduler: many calls at once, and event loops. The methods
-- client:call_async, :async, :step, :pending, :call_many and :watch, and
-- the handles they return, are defined here and installed on the client
-- class the first time one of them is called (favcrm.client holds
-- stand-ins until then, favcrm.lazy; the public API is the client's).
--
-- The client keeps three tables for it: `handles` (running handles),
-- `waiters` (waitable -> handles waiting on it) and `ready` (handles to
-- resume); the session calls client:_resume_ready() (favcrm.client) after
-- each pump.
local core = require("favcrm.core")
local errors = require("favcrm.errors")

local M = {}

--- scheduler.install(Client, check_self): defines the methods on Client.
---@param Client favcrm.Client the client class (favcrm.client's metatable)
---@param check_self fun(self: any, fname: string) raises on a bad or closed self
---@return nil
function M.install(Client, check_self)
  -- ---- many calls at once, and event loops ---------------------------------
  --
  -- An async call runs the same code as client:call inside a coroutine of its
  -- own; wherever the blocking path would pump the transport it yields the op
  -- it waits for, and client:step() resumes it once that op is done. So the
  -- checks, the shared initialize and tools/list, and the error mapping are
  -- one piece of code for both paths.

  --- One call running in the background, from client:call_async or
  -- client:async; client:step() moves it on.
  ---@class favcrm.Handle
  ---@field client favcrm.Client the client it runs on
  ---@field name? string the tool's name (call_async only)
  local Handle = {}
  Handle.__index = Handle

  --- handle:done() -> true once the call has finished
  ---@return boolean done true once the call has finished
  function Handle:done()
    return self.finished == true
  end

  --- handle:result() -> payload, result | nil, err (raises what the call
  -- raised: a misuse or a callback's error). Before done(): nil, nil.
  ---@return any payload the call's payload, or nil
  ---@return table|favcrm.Error|nil result the whole result, or the error
  function Handle:result()
    if self.raised ~= nil then error(self.raised, 0) end
    return self.value, self.err
  end

  --- handle:wait([timeout_s]) -> payload, result | nil, err: steps the client
  -- until this call is done (or returns nil, err `timeout` after timeout_s).
  ---@param timeout? number seconds to wait at most (default: no bound)
  ---@return any payload the call's payload, or nil
  ---@return table|favcrm.Error|nil result the whole result, or the error
  function Handle:wait(timeout)
    if timeout ~= nil and (type(timeout) ~= "number" or timeout ~= timeout or timeout < 0 or timeout == math.huge) then
      error("bad argument #1 to 'wait' (finite number of seconds >= 0 expected, got " .. tostring(timeout) .. ")", 2)
    end
    local deadline = timeout and core.monotonic() + timeout
    while not self.finished do
      if deadline and core.monotonic() >= deadline then
        return nil, errors.new("timeout", "the call was not done within " .. timeout .. " s")
      end
      self.client:step(0.05)
    end
    return self:result()
  end

  -- Ends a request a cancelled handle started: its transfer is cut and the
  -- server is told (notifications/cancelled), as on a timeout.
  -- tools/list is left to finish: other handles may wait for the list.
  local function cut(client, op, err)
    if op.method == "tools/list" then return end
    local s = client.session
    s:_finish(op, nil, err)
    if op.rpc_id and not op.notify and not op.is_init then
      s:_send_aux({ jsonrpc = "2.0", method = "notifications/cancelled",
        params = { requestId = op.rpc_id, reason = err.message } })
    end
  end

  --- handle:cancel([reason]) -> true, or false when the call had already
  -- finished. The handle finishes at once with nil, err `cancelled` (its
  -- on_done runs); the request in flight is cut and the server gets
  -- notifications/cancelled (sent by the next client:step). The code the
  -- handle ran goes on to its end in later steps, so shared work (the tool
  -- list, initialize) is finished for the other handles; every other request
  -- it starts from then on is cut at once.
  ---@param reason? string why, sent to the server (default "cancelled by the client")
  ---@return boolean cancelled
  function Handle:cancel(reason)
    if self.finished then return false end
    if reason ~= nil and type(reason) ~= "string" then
      error("bad argument #1 to 'cancel' (string expected, got " .. type(reason) .. ")", 2)
    end
    local client = self.client
    local err = errors.new("cancelled", reason or "cancelled by the client")
    self.cancelled = err
    self.finished, self.value, self.err = true, nil, err
    client.handles[self] = nil
    local w = self.waiting
    if w and w.rpc_id and not w.done then cut(client, w, err) end
    if self.on_done then self.on_done(self) end
    return true
  end

  function Client:_resume(h, ...)
    local ok, a, b = coroutine.resume(h.co, ...)
    if h.cancelled then
      -- already finished for its caller: run the code on, quietly
      if not ok or coroutine.status(h.co) == "dead" then return end
      if a.rpc_id and not a.done then cut(self, a, h.cancelled) end
    end
    if not ok then
      h.finished, h.raised = true, a
    elseif coroutine.status(h.co) == "dead" then
      h.finished, h.value, h.err = true, a, b
    else
      -- it waits for `a` (or `b`, the timer of its deadline): resume it when
      -- either is signalled (or at once if one is), never by scanning every
      -- handle
      h.waiting, h.waiting2 = a, b
      if a.done or (b and b.done) then
        self.ready[#self.ready + 1] = h
      else
        for _, w in ipairs({ a, b }) do
          local list = self.waiters[w]
          if not list then
            list = {}
            self.waiters[w] = list
          end
          list[#list + 1] = h
        end
      end
      return
    end
    self.handles[h] = nil
    if h.on_done then h.on_done(h) end
  end

  --- client:call_async(name, args, opts) -> handle. Misuse raises at once;
  -- everything else happens in client:step(). opts.on_done(handle) is called
  -- when it finishes.
  ---@param name string the tool's name
  ---@param args? table the tool's arguments
  ---@param opts? table client:call's options, and on_done(handle)
  ---@return favcrm.Handle handle
  function Client:call_async(name, args, opts)
    check_self(self, "call_async")
    Client._check_call_opts(opts, "call_async", 2)
    if type(name) ~= "string" or name == "" then
      error("bad argument #1 to 'call_async' (tool name expected, got " .. type(name) .. ")", 2)
    end
    if args ~= nil and type(args) ~= "table" then
      error("bad argument #2 to 'call_async' (table of arguments expected, got " .. type(args) .. ")", 2)
    end
    if opts ~= nil and type(opts) ~= "table" then
      error("bad argument #3 to 'call_async' (table of options expected, got " .. type(opts) .. ")", 2)
    end
    local h = self:async(function() return self:call(name, args, opts) end, opts)
    h.name = name
    return h
  end

  --- client:async(fn [, opts]) -> handle: runs fn(client) the way call_async
  -- runs a call, so anything built on the client (doctor, tools, a recipe
  -- step) can run without blocking. opts.on_done(handle) when it finishes.
  -- On PUC Lua 5.1 the code in fn must not wait inside a pcall.
  ---@param fn fun(client: favcrm.Client): any, any the code to run
  ---@param opts? table on_done(handle)
  ---@return favcrm.Handle handle
  function Client:async(fn, opts)
    check_self(self, "async")
    if type(fn) ~= "function" then
      error("bad argument #1 to 'async' (function expected, got " .. type(fn) .. ")", 2)
    end
    local h = setmetatable({ client = self, finished = false, on_done = opts and opts.on_done }, Handle)
    h.co = coroutine.create(function() return fn(self) end)
    self.session.async_cos[h.co] = true
    self.handles[h] = true
    self:_resume(h)
    return h
  end

  --- client:step([timeout_s]) -> number of async calls still running. Moves
  -- every transfer on, waiting at most timeout_s (default 0) for the network.
  ---@param timeout? number seconds to wait at most for the network (default 0)
  ---@return integer running async calls still running
  function Client:step(timeout)
    check_self(self, "step")
    if timeout ~= nil and (type(timeout) ~= "number" or timeout ~= timeout or timeout < 0 or timeout == math.huge) then
      error("bad argument #1 to 'step' (finite number of seconds >= 0 expected, got "
        .. (type(timeout) == "number" and tostring(timeout) or type(timeout)) .. ")", 2)
    end
    self:_resume_ready()
    self.session:pump(timeout or 0)
    self:_resume_ready()
    local n = 0
    for _ in pairs(self.handles) do n = n + 1 end
    return n
  end

  --- client:pending() -> number of async calls still running
  ---@return integer running async calls still running
  function Client:pending()
    local n = 0
    for _ in pairs(self.handles) do n = n + 1 end
    return n
  end

  --- client:call_many(calls [, opts]) -> results, errs. calls is a list of
  -- {name, args[, opts]}; results[i] is the payload of call i or nil, and
  -- errs[i] its error. opts.concurrency (default 16) bounds how many are in
  -- flight at once.
  ---@param calls table[] a list of {name, args[, opts]}
  ---@param opts? table concurrency (default 16)
  ---@return table results results[i]: the payload of call i, or nil
  ---@return table errs errs[i]: the error of call i, or nil
  function Client:call_many(calls, opts)
    check_self(self, "call_many")
    if type(calls) ~= "table" then
      error("bad argument #1 to 'call_many' (list of {name, args} expected, got " .. type(calls) .. ")", 2)
    end
    opts = opts or {}
    local limit = opts.concurrency or 16
    if type(limit) ~= "number" or limit ~= limit or limit < 1 then
      error("bad argument #2 to 'call_many' (option 'concurrency' must be a number >= 1, got "
        .. (type(limit) == "number" and tostring(limit) or type(limit)) .. ")", 2)
    end
    for i, c in ipairs(calls) do
      if type(c) ~= "table" or type(c[1]) ~= "string" then
        error("bad argument #1 to 'call_many' (item " .. i .. " is not {name, args})", 2)
      end
    end
    local results, errs, running, nexti, n = {}, {}, 0, 1, #calls
    local function launch()
      while running < limit and nexti <= n do
        local i = nexti
        nexti = nexti + 1
        running = running + 1
        local c = calls[i]
        self:call_async(c[1], c[2], setmetatable({ on_done = function(h)
          running = running - 1
          if h.raised ~= nil then error(h.raised, 0) end
          results[i], errs[i] = h.value, (h.value == nil) and h.err or nil
        end }, { __index = c[3] }))
      end
    end
    launch()
    while running > 0 do
      self:step(1)
      launch()
    end
    return results, errs
  end

  --- client:watch() -> {fds = {{fd=, read=, write=}, ...}, timeout_ms = n}:
  -- the sockets an event loop should watch and when it should call step()
  -- at the latest (-1: no timer needed). See favcrm.nvim for the wiring.
  ---@return table watch {fds = {{fd=, read=, write=}, ...}, timeout_ms = n}
  function Client:watch()
    check_self(self, "watch")
    local t = self.session.transport
    local fds, timeout_ms = {}, -1
    if t.fds then fds, timeout_ms = t:fds() end
    local d = self.session:next_deadline()
    if d then
      local ms = math.max(0, math.floor((d - core.monotonic()) * 1000))
      if timeout_ms < 0 or ms < timeout_ms then timeout_ms = ms end
    end
    return { fds = fds, timeout_ms = timeout_ms }
  end
  M.Handle = Handle
end

-- Loaded on first use (favcrm.lazy): favcrm.client holds stand-ins for the
-- methods above until one is called; requiring this defines them.
local Client = require("favcrm.client")
M.install(Client, Client._check_self)

return M
