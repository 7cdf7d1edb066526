--- Test helper: every API key a spec sees is remembered here, so that
-- spec/support/run.sh can scan the whole run's output and logs for it
-- afterwards (and fail the run if any key shows up anywhere).
local M = {}

function M.remember(key)
  local dir = os.getenv("FAVCRM_SPEC_TMP")
  if not dir or type(key) ~= "string" or key == "" then return end
  local f = assert(io.open(dir .. "/keys.seen", "a"))
  f:write(key, "\n")
  f:close()
end

return M
