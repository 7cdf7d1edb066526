--- favcrm.session_answer: what favcrm.session does when the server asks
-- something of the client (internal): a request inside a response stream
-- (ping, elicitation/create, sampling/createMessage, roots/list), and
-- URL-mode elicitation. favcrm.session loads it (favcrm.lazy) on first
-- use; it defines its methods on the Session class itself.
local json = require("favcrm.json")
local errors = require("favcrm.errors")
local era = require("favcrm.era")

local Session = require("favcrm.session")
local null = json.null
local rpc_error_text = Session._rpc_error_text

-- Answers a request the server sent us inside a response stream.
function Session:_answer_server_request(op, msg)
  local m = msg.method
  local handler, result
  if m == "ping" then
    result = {}
  else
    if m == "elicitation/create" then
      handler = self.cb.elicit
      local bad_mode = handler and self:_elicit_mode_refused(msg.params)
      if bad_mode then
        return self:_send_aux({ jsonrpc = "2.0", id = msg.id, error = { code = -32602,
          message = "Invalid params: this client does not support elicitation mode " .. bad_mode } })
      end
    elseif m == "sampling/createMessage" then handler = self.cb.sample
    elseif m == "roots/list" then handler = self.cb.roots end
    if handler then
      local ok, res = pcall(handler, msg.params or {}, op) -- op: the request it came with
      if not ok then
        op.callback_error = op.callback_error or res
        return self:_send_aux({ jsonrpc = "2.0", id = msg.id,
          error = { code = -32603, message = "the client's handler failed" } })
      end
      result = res
      if m == "elicitation/create" and type(msg.params) == "table" and msg.params.mode == "url" then
        result = Session._url_elicit_result(result)
        if result.action == "accept" then self:_elicit_known(msg.params.elicitationId) end
      else
        result = era.normalize_answer(m, msg.params, result)
      end
    end
  end
  if result == nil then
    return self:_send_aux({ jsonrpc = "2.0", id = msg.id,
      error = { code = -32601, message = "Method not found: " .. tostring(m) } })
  end
  return self:_send_aux({ jsonrpc = "2.0", id = msg.id, result = result })
end

-- ---- URL-mode elicitation (2025-11-25, issue 15) -----------------------------
--
-- on_elicit gets form requests (params.requestedSchema) and, when the
-- application says its handler takes them (favcrm.new's elicit_modes =
-- {"form", "url"}), URL requests (params.mode = "url", url, elicitationId,
-- message): the handler shows the URL to the user (never opens it by
-- itself) and answers {action = "accept"|"decline"|"cancel"}. A request in
-- a mode not declared is refused with -32602, as the specification asks.

-- The ids of URL elicitations under way (accepted, or listed in a -32042
-- error): at most MAX_ELICIT_IDS, the oldest forgotten first. With
-- `take`, tells whether id is one and forgets it (its completion is
-- delivered once); without, remembers id.
local MAX_ELICIT_IDS = 64
function Session:_elicit_known(id, take)
  if type(id) ~= "string" then return false end
  local known = self.elicit_ids
  if not known then
    known = { set = {}, order = {} }
    self.elicit_ids = known
  end
  local set, order = known.set, known.order
  if take then
    if not set[id] then return false end
    set[id] = nil
    for i, v in ipairs(order) do
      if v == id then table.remove(order, i) break end
    end
    return true
  end
  if set[id] then return true end
  while #order >= MAX_ELICIT_IDS do set[table.remove(order, 1)] = nil end
  order[#order + 1] = id
  set[id] = true
  return true
end

-- The mode of an elicitation/create this client did not declare, or nil.
function Session:_elicit_mode_refused(params)
  local mode = type(params) == "table" and params.mode or "form"
  if mode == null or mode == nil then mode = "form" end
  if self.elicit_modes[mode] then return nil end
  return tostring(mode)
end

-- A handler's answer to a URL elicitation: {action = ...} and no content
-- (the data stays between the user and the server). A bare true accepts;
-- anything else that is not a table declines.
function Session._url_elicit_result(res)
  if res == true then return { action = "accept" } end
  if type(res) ~= "table" then return { action = "decline" } end
  local action = res.action
  if action ~= "accept" and action ~= "decline" and action ~= "cancel" then action = "accept" end
  return { action = action, _meta = res._meta }
end

--- Session._url_required_error(e) -> the error of a JSON-RPC error -32042
-- (URLElicitationRequiredError): code `elicitation_required`, `url` (the
-- first URL to open), `elicitations` (every {mode, url, elicitationId,
-- message} the server listed), `rpc_code`, `data`. The URL is in the
-- message too: the user opens it, then the call is retried.
function Session._url_required_error(e)
  local list = {}
  local data = type(e.data) == "table" and e.data or {}
  if type(data.elicitations) == "table" then
    for _, el in ipairs(data.elicitations) do
      if type(el) == "table" and type(el.url) == "string" then list[#list + 1] = el end
    end
  end
  local first = list[1]
  local text = rpc_error_text(e)
  if first then
    text = text .. "; open " .. first.url .. (#list > 1 and (" (and " .. (#list - 1) .. " more)") or "")
      .. ", then retry"
  end
  return errors.new("elicitation_required", "the server needs a step in the browser first: " .. text, {
    rpc_code = -32042, data = e.data, url = first and first.url or nil,
    elicitation_id = first and first.elicitationId or nil, elicitations = list })
end

return Session
