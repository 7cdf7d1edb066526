-- favcrm.era_answers: the answers to a server's input requests (internal):
-- era.answer and era.normalize_answer, for 2026-07-28 multi-round-trip
-- requests and the legacy server requests alike. favcrm.era_wire loads it
-- (favcrm.lazy) the first time one is called; it defines them on
-- favcrm.era's own table, so they are called as before.
local M = require("favcrm.era")

-- ---- MRTR: the answers to a server's input requests --------------------------------

--- era.answer(cb, method, params) -> result, or nil, why ("none": no
-- callback for it; a callback that raises propagates). The same shaping as
-- the legacy server requests (elicitation defaults, roots as a list).
function M.answer(cb, method, params)
  params = type(params) == "table" and params or {}
  local handler
  if method == "elicitation/create" then handler = cb.elicit
  elseif method == "sampling/createMessage" then handler = cb.sample
  elseif method == "roots/list" then handler = cb.roots end
  if not handler then return nil, "none" end
  local result = M.normalize_answer(method, params, handler(params))
  if result == nil then return nil, "none" end
  return result
end

--- era.normalize_answer(method, params, result) -> what an on_elicit (form
-- mode) or on_roots handler's return value means as the answer to the
-- server's `method`: a bare table is accepted content (its missing fields
-- take the requestedSchema's defaults, SEP-1034; no table declines), a
-- bare list is the roots. Other methods' results stay as they are.
function M.normalize_answer(method, params, result)
  if method == "elicitation/create" then
    result = type(result) == "table" and result or { action = "decline" }
    if result.action == nil then result = { action = "accept", content = result } end
    if result.action == "accept" then
      result.content = result.content or {}
      local schema = type(params) == "table" and params.requestedSchema
      if type(schema) == "table" and type(schema.properties) == "table" then
        for k, p in pairs(schema.properties) do
          if result.content[k] == nil and type(p) == "table" and p.default ~= nil then
            result.content[k] = p.default
          end
        end
      end
      if next(result.content) == nil then result.content = nil end
    end
  elseif method == "roots/list" and type(result) == "table" and result.roots == nil then
    result = { roots = result }
  end
  return result
end

return M
