--- favcrm.protocol: the MCP surface beside tools: resources (list,
-- templates, read, subscribe), prompts (list, get), completion, the
-- server's log level and ping. The methods are installed on the client
-- class when this loads, the first time one of them is called (favcrm.client
-- holds stand-ins until then, favcrm.lazy; the public API is the client's);
-- the module also holds favcrm.resource_links.
--
-- House style: expected failures (the network, the server refusing, a
-- server without the feature: `protocol` with `rpc_code` -32601) come back
-- as `nil, err`; misuse raises naming the argument.
local json = require("favcrm.json")
local errors = require("favcrm.errors")

local M = {}

local LOG_LEVELS = {
  debug = true, info = true, notice = true, warning = true, error = true,
  critical = true, alert = true, emergency = true,
}

local function bad(n, fname, what, v)
  error("bad argument #" .. n .. " to '" .. fname .. "' (" .. what .. " expected, got " .. type(v) .. ")", 3)
end

local function check_opts(opts, n, fname)
  if opts ~= nil and type(opts) ~= "table" then bad(n, fname, "table of options", opts) end
end

local function nonnull(v)
  if v == json.null then return nil end
  return v
end

--- favcrm.resource_links(result) -> the resource links of a tool result
-- (its `content` items of type resource_link, each with uri, name,
-- mimeType, ...), in order; an empty list when there are none. Follow one
-- with `client:read(link.uri)` (or `client:read(link)`).
---@param result table|nil the second value client:call returned (the whole tools/call result)
---@return table[] links the resource_link items
function M.resource_links(result)
  local out = {}
  local content = type(result) == "table" and result.content or nil
  if type(content) ~= "table" then return out end
  for _, item in ipairs(content) do
    if type(item) == "table" and item.type == "resource_link" and type(item.uri) == "string" then
      out[#out + 1] = item
    end
  end
  return out
end

--- protocol.install(Client, check_self): defines the methods on Client.
---@param Client favcrm.Client the client class (favcrm.client's metatable)
---@param check_self fun(self: any, fname: string) raises on a bad or closed self
---@return nil
function M.install(Client, check_self)
  -- One request within one budget (opts.timeout, opts.max_total_timeout).
  local function request(self, method, params, opts)
    local s = self.session
    local budget = s:budget(opts and opts.timeout, opts and opts.max_total_timeout)
    return s:request(method, params, { budget = budget })
  end

  -- Every page of a paginated list (resources/list, prompts/list, ...).
  local function all_pages(self, method, key, opts)
    local s = self.session
    local budget = s:budget(opts and opts.timeout, opts and opts.max_total_timeout)
    local list, cursor, pages = {}, nil, 0
    repeat
      pages = pages + 1
      if pages > 1000 then
        return nil, errors.new("protocol", method .. " never ended (over 1000 pages)")
      end
      local res, err = s:request(method, cursor and { cursor = cursor } or nil, { budget = budget })
      if not res then return nil, err end
      if type(res[key]) ~= "table" then
        return nil, errors.new("protocol", method .. " answered without a " .. key .. " array")
      end
      for _, item in ipairs(res[key]) do
        if type(item) == "table" then list[#list + 1] = item end
      end
      cursor = nonnull(res.nextCursor)
    until cursor == nil
    return list
  end

  --- client:resources([opts]) -> the server's resources (all pages of
  -- resources/list): tables with uri, name, title, description, mimeType.
  ---@param opts? table timeout, max_total_timeout
  ---@return table[]|nil resources the resources
  ---@return favcrm.Error|nil err
  function Client:resources(opts)
    check_self(self, "resources")
    check_opts(opts, 1, "resources")
    return all_pages(self, "resources/list", "resources", opts)
  end

  --- client:resource_templates([opts]) -> the server's resource templates
  -- (all pages of resources/templates/list): tables with uriTemplate, name, ...
  ---@param opts? table timeout, max_total_timeout
  ---@return table[]|nil templates the resource templates
  ---@return favcrm.Error|nil err
  function Client:resource_templates(opts)
    check_self(self, "resource_templates")
    check_opts(opts, 1, "resource_templates")
    return all_pages(self, "resources/templates/list", "resourceTemplates", opts)
  end

  --- client:read(uri [, opts]) -> contents, result: reads a resource
  -- (resources/read). contents is the list of its parts (uri, mimeType,
  -- text or base64 blob); a resource link (favcrm.resource_links) may be
  -- passed for its uri.
  ---@param uri string|table the resource's URI, or a resource link
  ---@param opts? table timeout, max_total_timeout
  ---@return table[]|nil contents the parts of the resource
  ---@return table|favcrm.Error result the whole resources/read result; on failure the error
  function Client:read(uri, opts)
    check_self(self, "read")
    if type(uri) == "table" then uri = uri.uri end
    if type(uri) ~= "string" or uri == "" then bad(1, "read", "resource URI", uri) end
    check_opts(opts, 2, "read")
    local res, err = request(self, "resources/read", { uri = uri }, opts)
    if not res then return nil, err end
    if type(res.contents) ~= "table" then
      return nil, errors.new("protocol", "resources/read answered without a contents array", { uri = uri })
    end
    return res.contents, res
  end

  --- client:subscribe(uri, fn) -> true, or nil, err: asks the server to
  -- report changes to a resource (resources/subscribe). Each
  -- notifications/resources/updated for it calls fn(params) (params.uri,
  -- ...) when the session pumps: during a call, `step()`, `watch()`, or
  -- from the standalone stream, which a subscription opens over HTTP.
  ---@param uri string the resource's URI
  ---@param fn fun(params: table) called with the notification's params
  ---@return boolean|nil ok true once the server accepted
  ---@return favcrm.Error|nil err
  function Client:subscribe(uri, fn)
    check_self(self, "subscribe")
    if type(uri) ~= "string" or uri == "" then bad(1, "subscribe", "resource URI", uri) end
    if type(fn) ~= "function" then bad(2, "subscribe", "function", fn) end
    local s = self.session
    local ok, ierr = s:initialize(s:budget())
    if not ok then return nil, ierr end
    if s.era == "modern" then
      -- 2026-07-28: no resources/subscribe; the uri joins the filter of
      -- subscriptions/listen (the stream is opened again with it)
      s.subscribed = s.subscribed or {}
      s.subscribed[uri] = true
    else
      local res, err = request(self, "resources/subscribe", { uri = uri })
      if not res then return nil, err end
    end
    self.subscriptions = self.subscriptions or {}
    self.subscriptions[uri] = fn
    local subs = self.subscriptions
    self.session.on_resource_updated = function(p)
      local h = subs[p.uri]
      if h then h(p) end
    end
    -- over HTTP, updates outside a call come on the standalone stream
    -- (modern: the subscriptions/listen stream)
    if s.era == "modern" then
      -- the subscription holds once the server acknowledged the stream
      s:_listen_restart()
      local acked, aerr = s:listen_acked(s:budget())
      if not acked then return nil, aerr end
    elseif s.initialized and type(s._listen_start) == "function" then s:_listen_start() end
    return true
  end

  --- client:unsubscribe(uri) -> true, or nil, err: stops the reports
  -- client:subscribe asked for (resources/unsubscribe); the handler is
  -- dropped even when the server's answer fails.
  ---@param uri string the resource's URI
  ---@return boolean|nil ok true once the server accepted
  ---@return favcrm.Error|nil err
  function Client:unsubscribe(uri)
    check_self(self, "unsubscribe")
    if type(uri) ~= "string" or uri == "" then bad(1, "unsubscribe", "resource URI", uri) end
    if self.subscriptions then
      self.subscriptions[uri] = nil
      if next(self.subscriptions) == nil then
        self.subscriptions = nil
        self.session.on_resource_updated = nil
      end
    end
    local s = self.session
    if s.era == "modern" then
      if s.subscribed then s.subscribed[uri] = nil end
      s:_listen_restart()
      return true
    end
    local res, err = request(self, "resources/unsubscribe", { uri = uri })
    if not res then return nil, err end
    return true
  end

  --- client:prompts([opts]) -> the server's prompts (all pages of
  -- prompts/list): tables with name, title, description, arguments.
  ---@param opts? table timeout, max_total_timeout
  ---@return table[]|nil prompts the prompts
  ---@return favcrm.Error|nil err
  function Client:prompts(opts)
    check_self(self, "prompts")
    check_opts(opts, 1, "prompts")
    return all_pages(self, "prompts/list", "prompts", opts)
  end

  --- client:prompt(name [, args [, opts]]) -> messages, result: a prompt
  -- filled in with its arguments (prompts/get; values are strings).
  ---@param name string the prompt's name
  ---@param args? table<string, string> the prompt's arguments
  ---@param opts? table timeout, max_total_timeout
  ---@return table[]|nil messages the messages (role, content)
  ---@return table|favcrm.Error result the whole prompts/get result (description, messages); on failure the error
  function Client:prompt(name, args, opts)
    check_self(self, "prompt")
    if type(name) ~= "string" or name == "" then bad(1, "prompt", "prompt name", name) end
    if args ~= nil and type(args) ~= "table" then bad(2, "prompt", "table of arguments", args) end
    check_opts(opts, 3, "prompt")
    local sargs
    if args and next(args) ~= nil then
      sargs = {}
      for k, v in pairs(args) do
        if type(k) ~= "string" then error("bad argument #2 to 'prompt' (argument names must be strings)", 2) end
        sargs[k] = tostring(v)
      end
    end
    local res, err = request(self, "prompts/get", { name = name, arguments = sargs }, opts)
    if not res then return nil, err end
    if type(res.messages) ~= "table" then
      return nil, errors.new("protocol", "prompts/get answered without a messages array", { prompt = name })
    end
    return res.messages, res
  end

  --- client:complete(ref, argument [, opts]) -> values, completion: the
  -- server's suggestions for an argument (completion/complete). ref is
  -- `{type = "ref/prompt", name = ...}` or `{type = "ref/resource", uri = ...}`
  -- (a string "prompt:NAME" or "resource:URI" is short for them); argument
  -- is `{name = ..., value = ...}`; opts.context = {arguments = {...}} gives
  -- the values already chosen.
  ---@param ref table|string the prompt or resource template the argument belongs to
  ---@param argument table name and value (the text typed so far)
  ---@param opts? table context, timeout, max_total_timeout
  ---@return string[]|nil values the suggestions
  ---@return table|favcrm.Error completion values, total, hasMore; on failure the error
  function Client:complete(ref, argument, opts)
    check_self(self, "complete")
    if type(ref) == "string" then
      local kind, rest = ref:match("^(%a+):(.+)$")
      if kind == "prompt" then ref = { type = "ref/prompt", name = rest }
      elseif kind == "resource" then ref = { type = "ref/resource", uri = rest }
      else error("bad argument #1 to 'complete' (\"prompt:NAME\" or \"resource:URI\" expected, got \""
        .. ref .. "\")", 2) end
    end
    if type(ref) ~= "table" or (ref.type ~= "ref/prompt" and ref.type ~= "ref/resource") then
      bad(1, "complete", "reference {type = \"ref/prompt\"|\"ref/resource\", ...}", ref)
    end
    if type(argument) ~= "table" or type(argument.name) ~= "string" then
      bad(2, "complete", "argument {name = ..., value = ...}", argument)
    end
    check_opts(opts, 3, "complete")
    local params = { ref = ref, argument = { name = argument.name, value = tostring(argument.value or "") } }
    if opts and opts.context ~= nil then params.context = opts.context end
    local res, err = request(self, "completion/complete", params, opts)
    if not res then return nil, err end
    local c = type(res.completion) == "table" and res.completion or nil
    if not c or type(c.values) ~= "table" then
      return nil, errors.new("protocol", "completion/complete answered without completion.values")
    end
    return c.values, c
  end

  --- client:set_log_level(level) -> true, or nil, err: the least severe
  -- level of the log messages the server sends (logging/setLevel); they
  -- reach on_log.
  ---@param level string debug, info, notice, warning, error, critical, alert or emergency
  ---@return boolean|nil ok true once the server accepted
  ---@return favcrm.Error|nil err
  function Client:set_log_level(level)
    check_self(self, "set_log_level")
    if not LOG_LEVELS[level] then
      error("bad argument #1 to 'set_log_level' (a log level such as \"info\" or \"warning\" expected, got "
        .. (type(level) == "string" and ("\"" .. level .. "\"") or type(level)) .. ")", 2)
    end
    local s = self.session
    local ok, ierr = s:initialize(s:budget())
    if not ok then return nil, ierr end
    if s.era == "modern" then
      -- 2026-07-28: no logging/setLevel; every request carries the level
      -- in _meta (io.modelcontextprotocol/logLevel)
      s.log_level = level
      return true
    end
    local res, err = request(self, "logging/setLevel", { level = level })
    if not res then return nil, err end
    return true
  end

  --- client:ping([opts]) -> seconds, or nil, err: checks that the server
  -- answers (ping) and how long the answer took.
  ---@param opts? table timeout, max_total_timeout
  ---@return number|nil seconds the round trip (after the session started)
  ---@return favcrm.Error|nil err
  function Client:ping(opts)
    check_self(self, "ping")
    check_opts(opts, 1, "ping")
    local s = self.session
    local budget = s:budget(opts and opts.timeout, opts and opts.max_total_timeout)
    local ok, ierr = s:initialize(budget)
    if not ok then return nil, ierr end
    local clock = require("favcrm.core").monotonic
    local t0 = clock()
    local res, err = s:request("ping", nil, { budget = budget })
    if not res then return nil, err end
    return math.max(clock() - t0, 0)
  end
end

-- Loaded on first use: defines the methods above on favcrm.client's class,
-- over its stand-ins.
local Client = require("favcrm.client")
M.install(Client, Client._check_self)

return M
