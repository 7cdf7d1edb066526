--- favcrm.nvim: FavCRM calls from Neovim without freezing the editor.
--
--   local fnvim = require("favcrm.nvim")
--   local client = require("favcrm").new({ url = ..., api_key = ... })
--   fnvim.call(client, "list_services", {}, function(data, err) ... end)
--   fnvim.run(client, function(c) return c:doctor() end, function(report) ... end)
--
-- Each call runs as an async handle of the client (client:call_async); a
-- libuv poll handle watches each socket curl uses (client:watch()) and a
-- libuv timer fires when curl or the session wants a timeout handled. Both
-- call client:step(0), which never blocks. Callbacks run on the main loop
-- through vim.schedule, so they may use the editor's API.
local M = {}

local drivers = setmetatable({}, { __mode = "k" })

local function uv()
  return vim.loop or vim.uv
end

-- One driver per client: keeps the poll handles in step with the sockets.
local function driver(client)
  local d = drivers[client]
  if d then return d end
  d = { polls = {}, timer = uv().new_timer(), active = false }
  drivers[client] = d

  local tick
  local function stop()
    d.active = false
    d.timer:stop()
    for fd, p in pairs(d.polls) do
      p:stop()
      p:close()
      d.polls[fd] = nil
    end
  end

  local function arm()
    local w = client:watch()
    local seen = {}
    for _, f in ipairs(w.fds) do
      seen[f.fd] = true
      local p = d.polls[f.fd]
      if not p then
        p = uv().new_poll(f.fd)
        d.polls[f.fd] = p
      end
      local ev = (f.read and "r" or "") .. (f.write and "w" or "")
      if ev == "" then ev = "r" end
      p:start(ev, function() tick() end)
    end
    for fd, p in pairs(d.polls) do
      if not seen[fd] then
        p:stop()
        p:close()
        d.polls[fd] = nil
      end
    end
    -- curl's own timer, capped so a quiet stream is still checked
    local ms = w.timeout_ms
    if ms < 0 or ms > 200 then ms = 200 end
    d.timer:stop()
    d.timer:start(math.max(ms, 1), 0, function() tick() end)
  end

  tick = function()
    if client.closed then return stop() end
    local ok, pending = pcall(client.step, client, 0)
    if not ok or pending == 0 then
      stop()
      if not ok then vim.schedule(function() error(pending) end) end
      return
    end
    arm()
  end

  d.kick = function()
    if not d.active then d.active = true end
    tick()
  end
  return d
end

--- fnvim.run(client, fn, callback): runs fn(client) as an async handle
-- (fn may call client:call, :tools, :doctor, ...) and hands what it
-- returns to callback on the main loop.
---@param client favcrm.Client
---@param fn fun(client: favcrm.Client): any, any runs as an async handle
---@param callback fun(a: any, b: any) gets what fn returned, on the main loop
---@return nil
function M.run(client, fn, callback)
  if type(fn) ~= "function" then error("bad argument #2 to 'run' (function expected)", 2) end
  if type(callback) ~= "function" then error("bad argument #3 to 'run' (function expected)", 2) end
  client:async(fn, { on_done = function(h)
    local a, b = h.value, h.err
    local raised = h.raised
    vim.schedule(function()
      if raised ~= nil then error(raised, 0) end
      callback(a, b)
    end)
  end })
  driver(client).kick()
end

--- fnvim.call(client, name, args, callback): client:call without blocking;
-- callback(data, err_or_result) runs on the main loop.
---@param client favcrm.Client
---@param name string the tool's name
---@param args? table the tool's arguments
---@param callback fun(data: any, err_or_result: any) runs on the main loop
---@return nil
function M.call(client, name, args, callback)
  if type(callback) ~= "function" then error("bad argument #4 to 'call' (function expected)", 2) end
  return M.run(client, function(c) return c:call(name, args) end, callback)
end

return M
