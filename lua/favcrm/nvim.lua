--- favcrm.nvim: FavCRM calls from Neovim without freezing the editor.
--
--   local fnvim = require("favcrm.nvim")
--   local client = require("favcrm").new({ url = ..., api_key = ... })
--   local h = fnvim.call(client, "list_services", {}, function(services, err)
--     if err then return vim.notify(tostring(err), vim.log.levels.ERROR) end
--     print(#services .. " services")
--   end)
--   h:cancel()   -- the callback gets nil, err (err.code == "cancelled")
--   fnvim.run(client, function(c) return c:doctor() end, function(report) ... end)
--
-- Each call runs as an async handle of the client (client:call_async); a
-- libuv poll handle watches each socket curl uses (client:watch()) and a
-- libuv timer fires when curl or the session wants a timeout handled. Both
-- call client:step(0), which never blocks. Callbacks run on the main loop
-- through vim.schedule, so they may use the editor's API. vim.uv is used
-- where Neovim has it (0.10+), vim.loop before.
local M = {}

local drivers = setmetatable({}, { __mode = "k" })

local function uv()
  return vim.uv or vim.loop
end

-- Transfers still to finish though no handle waits for them (the
-- notifications/cancelled a cancel sends), or the standalone stream (over
-- stdio: what the server writes between calls), which is watched while it
-- is open so its messages are handled at once.
local function busy(client)
  local s = client.session
  if s == nil then return false end
  if s.listening and s:listening() then return true end
  return s.aux ~= nil and next(s.aux) ~= nil
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
    if not ok or (pending == 0 and not busy(client)) then
      stop()
      if not ok then vim.schedule(function() error(pending) end) end
      return
    end
    arm()
  end

  -- the poll handles go before curl closes their sockets: libuv aborts on
  -- a watched fd that was closed under it
  d.stop = stop
  local close = client.close
  client.close = function(self, ...)
    if self == client then stop() end
    return close(self, ...)
  end

  d.kick = function()
    if not d.active then d.active = true end
    tick()
  end
  return d
end

--- fnvim.run(client, fn, callback) -> handle: runs fn(client) as an async
-- handle (fn may call client:call, :tools, :doctor, ...) and hands what it
-- returns to callback on the main loop. handle:cancel() ends it at once:
-- callback then gets nil, err (err.code "cancelled") and the request in
-- flight is cut, the server told (notifications/cancelled).
---@param client favcrm.Client
---@param fn fun(client: favcrm.Client): any, any runs as an async handle
---@param callback fun(a: any, b: any) gets what fn returned, on the main loop
---@return table handle with :cancel([reason]), :done(), :result()
function M.run(client, fn, callback)
  if type(fn) ~= "function" then error("bad argument #2 to 'run' (function expected)", 2) end
  if type(callback) ~= "function" then error("bad argument #3 to 'run' (function expected)", 2) end
  local d = driver(client)
  local h = client:async(fn, { on_done = function(h)
    local a, b = h.value, h.err
    local raised = h.raised
    vim.schedule(function()
      -- a cancel leaves the notification to send: keep the loop going
      if h.cancelled then d.kick() end
      if raised ~= nil then error(raised, 0) end
      callback(a, b)
    end)
  end })
  d.kick()
  return h
end

--- fnvim.call(client, name, args, callback) -> handle: client:call without
-- blocking. callback(payload, err, result) runs on the main loop: on success
-- err is nil (payload is what client:call returns first, result the whole
-- MCP result); on failure payload is nil and err the error object
-- (err.code: "unauthorized", "timeout", "cancelled", ...).
---@param client favcrm.Client
---@param name string the tool's name
---@param args? table the tool's arguments
---@param callback fun(payload: any, err: table|nil, result: table|nil) runs on the main loop
---@return table handle with :cancel([reason]), :done(), :result()
function M.call(client, name, args, callback)
  if type(name) ~= "string" or name == "" then error("bad argument #2 to 'call' (tool name expected)", 2) end
  if args ~= nil and type(args) ~= "table" then error("bad argument #3 to 'call' (table expected)", 2) end
  if type(callback) ~= "function" then error("bad argument #4 to 'call' (function expected)", 2) end
  return M.run(client, function(c) return c:call(name, args) end, function(payload, second)
    if payload == nil then return callback(nil, second) end
    return callback(payload, nil, second)
  end)
end

-- lua-cjson from Neovim itself (vim.json) for favcrm.json, where no
-- lua-cjson is installed for Neovim's LuaJIT: a package searcher placed
-- last, so an installed cjson still wins.
local function cjson_from_vim()
  -- an instance of its own, with lua-cjson's usual settings (Neovim's
  -- writes {} as [] and escapes "/")
  local j = vim.json.new and vim.json.new() or vim.json
  if j ~= vim.json then
    j.encode_empty_table_as_object(true)
    j.encode_escape_forward_slash(false)
  end
  local safe = setmetatable({
    decode = function(text)
      local ok, v = pcall(j.decode, text)
      if ok then return v end
      return nil, v
    end,
    encode = function(v)
      local ok, text = pcall(j.encode, v)
      if ok then return text end
      return nil, text
    end,
  }, { __index = j })
  return { ["cjson"] = j, ["cjson.safe"] = safe }
end

--- fnvim.use_vim_json(): lets `require("cjson")` and `require("cjson.safe")`
-- fall back on Neovim's vim.json. Idempotent; plugin/favcrm.lua calls it.
---@return nil
function M.use_vim_json()
  if M.json_searcher or not vim.json then return end
  local searchers = package.loaders or package.searchers -- luacheck: ignore 143
  M.json_searcher = function(name)
    if name ~= "cjson" and name ~= "cjson.safe" then return nil end
    local mods = cjson_from_vim()
    return function() return mods[name] end
  end
  searchers[#searchers + 1] = M.json_searcher
end

return M
