--- favcrm.errors: the error objects every expected failure comes back as.
-- An error is a table with `code` (a short stable string), `message` (for
-- people; never holds a secret) and fields that fit the code (`status`,
-- `retry_after`, `path`, `keyword`, `upgrade_action`, `hint`, ...).
local M = {}

M.CODES = {
  invalid_arguments = true, expired_code = true, wrong_code = true,
  existing_account = true, rate_limited = true, unauthorized = true,
  plan_required = true, unknown_tool = true, tool_error = true,
  confirmation_required = true, timeout = true, network = true, tls = true,
  http = true, protocol = true, session_expired = true, too_large = true,
  cancelled = true, invalid_schema = true, io = true, not_found = true,
  no_terminal = true, config_error = true, spawn = true,
}

local mt = {}
mt.__index = mt
mt.__tostring = function(e)
  return "favcrm: " .. e.code .. ": " .. e.message
end
M.mt = mt

--- Makes an error object. `fields` (optional) are copied in.
function M.new(code, message, fields)
  if not M.CODES[code] then error("favcrm.errors.new: unknown error code '" .. tostring(code) .. "'", 2) end
  local e = { code = code, message = message }
  if fields then
    for k, v in pairs(fields) do
      if e[k] == nil then e[k] = v end
    end
  end
  return setmetatable(e, mt)
end

--- Gives a plain error table from the C core ({code=, message=, ...}) the
-- error metatable, in place, and returns it.
function M.wrap(t)
  if type(t) == "table" and getmetatable(t) == nil then
    if not M.CODES[t.code] then t.code = "io" end
    setmetatable(t, mt)
  end
  return t
end

--- True when `v` is an error object made here.
function M.is(v)
  return getmetatable(v) == mt
end

return M
