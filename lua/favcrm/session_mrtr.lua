-- favcrm.session_mrtr: multi-round-trip requests of favcrm.session
-- (2026-07-28, basic/patterns/mrtr; internal). favcrm.session loads it
-- (favcrm.lazy) the first time a result is input_required; it defines
-- Session:_mrtr on the Session class itself.
local json = require("favcrm.json")
local errors = require("favcrm.errors")
local era = require("favcrm.era")

local Session = require("favcrm.session")
local null = json.null

-- A modern op's result asked for input (basic/patterns/mrtr): the on_*
-- callbacks answer the server's input requests, then the op goes again
-- with a new id, the answers and the server's requestState unchanged.
-- At most era.MAX_MRTR_ROUNDS rounds, all within the op's deadline.
function Session:_mrtr(op, res)
  local function fail(msg, fields)
    return self:_finish(op, nil, errors.new("protocol", msg, fields), true)
  end
  if not era.MRTR_METHODS[op.method] then
    return fail("the server answered " .. op.method .. " with input_required, which only tools/call, "
      .. "resources/read and prompts/get may")
  end
  op.rounds = op.rounds + 1
  if op.rounds > era.MAX_MRTR_ROUNDS then
    return fail(op.method .. " still required input after " .. era.MAX_MRTR_ROUNDS .. " rounds",
      { rounds = era.MAX_MRTR_ROUNDS })
  end
  local reqs, state = res.inputRequests, res.requestState
  if reqs == null then reqs = nil end
  if state == null then state = nil end
  if (reqs ~= nil and type(reqs) ~= "table") or (state ~= nil and type(state) ~= "string")
    or (reqs == nil and state == nil) then
    return fail("the server's input_required result is malformed (inputRequests must be an object, "
      .. "requestState a string, and one of them present)")
  end
  local answers
  if reqs then
    answers = {}
    local n = 0
    for key, r in pairs(reqs) do
      n = n + 1
      if n > era.MAX_INPUT_REQUESTS then
        return fail("the server asked for more than " .. era.MAX_INPUT_REQUESTS .. " inputs at once")
      end
      if type(key) ~= "string" or type(r) ~= "table" or type(r.method) ~= "string" then
        return fail("the server's inputRequests holds an entry that is not a request")
      end
      local ok, answer, why = pcall(era.answer, self.cb, r.method, r.params)
      if not ok then
        op.callback_error = op.callback_error or answer
        return fail("the client's handler for " .. r.method .. " failed")
      end
      if answer == nil then
        return fail("the server asked for " .. r.method .. ", which this client did not declare (no on_* "
          .. "callback for it)", { input = key, why = why })
      end
      answers[key] = answer
    end
  end
  self:_detach(op)
  op.mrtr_responses = answers or false
  op.mrtr_state = state or false
  self:_encode(op)
  return self:_launch(op)
end

return Session
