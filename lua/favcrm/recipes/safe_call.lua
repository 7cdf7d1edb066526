--- favcrm.recipes.safe_call: a tool call the way a careful operator makes it.
--
--   local safe_call = require("favcrm.recipes.safe_call")
--   local data, result_or_err = safe_call.run(client, "delete_service", { serviceId = id }, {
--     confirm = function(tool, args, summary) return ask_user(summary .. " OK?") end,
--     report_issues = false,  -- true only when the user agreed to report failures
--   })
--
-- Steps:
--   1. describe the tool (an unknown name fails with unknown_tool and the
--      server's near matches in err.suggestions);
--   2. for a write (not readOnlyHint), preflight with check_plan_operation;
--      a refusal becomes err.code "plan_required" with err.upgrade_action and
--      a message that says which plan is needed and where to upgrade;
--   3. for a destructive tool (destructiveHint), look the target up (get_<thing>
--      when the server has it), build a summary ("Delete service: Hatha Yoga
--      (svc_...). This can't be undone.") and ask opts.confirm(tool, args,
--      summary); anything but true fails with confirmation_required and
--      nothing is sent;
--   4. call the tool; when it fails unexpectedly (tool_error, protocol or http)
--      and opts.report_issues is true, file report_agent_issue (tool name,
--      error code and message; never the argument values) and put the
--      issue id in err.issue_id.
-- Returns payload, result (as client:call) or nil, err.
local errors = require("favcrm.errors")

local M = {}

local OPTIONS = { confirm = "function", report_issues = "boolean", timeout = "number" }

-- Failures that say something about the request or the account, not about
-- FavCRM: never reported.
M.EXPECTED = {
  invalid_arguments = true, unauthorized = true, rate_limited = true, plan_required = true,
  confirmation_required = true, not_found = true, cancelled = true, expired_code = true,
  wrong_code = true, existing_account = true, unknown_tool = true, timeout = true, network = true,
  tls = true, session_expired = true, too_large = true,
}
-- Server-side tool error codes that are business rules, not faults.
M.EXPECTED_SERVER_CODES = { conflict = true, whatsapp_not_connected = true }

local function short(v)
  local s = tostring(v)
  if #s > 60 then s = s:sub(1, 57) .. "..." end
  return s
end

-- "serviceId=svc_1, reason=..." for the scalar arguments, ids first.
local function args_text(args, skip)
  local keys = {}
  for k, v in pairs(args) do
    if type(k) == "string" and k ~= skip and (type(v) == "string" or type(v) == "number" or type(v) == "boolean") then
      keys[#keys + 1] = k
    end
  end
  table.sort(keys, function(a, b)
    local ia, ib = a:match("Id$") ~= nil, b:match("Id$") ~= nil
    if ia ~= ib then return ia end
    return a < b
  end)
  local out = {}
  for _, k in ipairs(keys) do out[#out + 1] = k .. "=" .. short(args[k]) end
  return table.concat(out, ", ")
end

-- Finds the target of a destructive call: the <noun>Id argument and the
-- get_<noun> tool that reads it. Returns the target's record, or nil; or
-- nil, err when the target does not exist.
local function lookup_target(client, tool, args)
  local noun = tool.name:match("^%a+_(.+)$")
  if not noun then return nil end
  local id_field = noun:gsub("_(%a)", function(c) return c:upper() end) .. "Id"
  local id = args[id_field]
  if type(id) ~= "string" then return nil end
  local getter = client:describe("get_" .. noun)
  if not getter then return nil end
  local rec, err = client:call("get_" .. noun, { [id_field] = id })
  if rec == nil then
    if err.code == "not_found" then return nil, err end
    return nil
  end
  return rec, id, id_field
end

local function label_of(rec)
  if type(rec) ~= "table" then return nil end
  for _, k in ipairs({ "name", "title", "customerName", "number", "email", "serviceName" }) do
    if type(rec[k]) == "string" and rec[k] ~= "" then return rec[k] end
  end
  return nil
end

--- safe_call.summary(tool, args [, target, id, id_field]) -> the sentence
-- shown to the user: the tool's title, the target (its name and id when it
-- was looked up) and the other arguments.
---@param tool table the tool (from `client:describe`)
---@param args? table the call's arguments
---@param target? table the record the call acts on, when looked up
---@param id? string|number that record's id
---@param id_field? string the argument that holds the id
---@return string sentence
function M.summary(tool, args, target, id, id_field)
  local ann = type(tool.annotations) == "table" and tool.annotations or {}
  local title = ann.title or tool.title or tool.name
  local what = label_of(target)
  local text = title .. " (" .. tool.name .. ")"
  if what then
    text = text .. ": " .. what .. " (" .. tostring(id) .. ")"
  else
    id_field = nil
  end
  local rest = args_text(args, id_field)
  if rest ~= "" then text = text .. " with " .. rest end
  text = text .. "."
  if ann.destructiveHint == true then text = text .. " This can't be undone." end
  if ann.openWorldHint == true then text = text .. " It reaches outside FavCRM (messages or payments)." end
  return text
end

--- safe_call.plan_message(name, check) -> the words for a plan refusal
---@param name string the tool's name
---@param check table the plan check (`plan_required` details)
---@return string words
function M.plan_message(name, check)
  local ua = type(check.upgradeAction) == "table" and check.upgradeAction or {}
  local need = check.requiredPlan or (type(ua.arguments) == "table" and ua.arguments.plan) or "a higher"
  local text = name .. " needs the " .. tostring(need) .. " plan"
    .. (check.plan and (" (this workspace is on the " .. tostring(check.plan) .. " plan)") or "") .. "."
  if type(ua.reason) == "string" and not ua.reason:find(name, 1, true) then
    text = text .. " Reason: " .. ua.reason .. "."
  end
  if type(ua.url) == "string" then
    text = text .. " To upgrade, open " .. ua.url
  else
    text = text .. " To upgrade, open the portal's billing settings"
  end
  if type(ua.tool) == "string" then
    text = text .. ", or ask me to create an upgrade link (" .. ua.tool .. "; you'll be asked to confirm the payment)"
  end
  return text .. ". Nothing was changed."
end

local function plan_error(name, check)
  local ua = type(check.upgradeAction) == "table" and check.upgradeAction or check.upgrade_action
  return errors.new("plan_required", M.plan_message(name, {
    upgradeAction = ua, requiredPlan = check.requiredPlan, plan = check.plan,
  }), { tool = name, upgrade_action = ua, required_plan = check.requiredPlan, plan = check.plan })
end

local function unexpected(err)
  if M.EXPECTED[err.code] then return false end
  if err.code == "tool_error" and M.EXPECTED_SERVER_CODES[err.server_code] then return false end
  return true
end

local function report(client, name, err)
  local details = "The tool " .. name .. " failed with " .. tostring(err.code)
    .. (err.server_code and (" (" .. tostring(err.server_code) .. ")") or "")
    .. (err.status and (", HTTP " .. tostring(err.status)) or "") .. ": " .. tostring(err.message)
  local issue = client:call("report_agent_issue", {
    summary = ("Tool " .. name .. " failed unexpectedly"):sub(1, 300),
    details = details:sub(1, 10000), tool = name, severity = "medium",
  })
  if type(issue) == "table" then return issue.issueId end
  return nil
end

--- safe_call.run(client, name, args, opts) -> payload, result | nil, err
---@param client favcrm.Client
---@param name string the tool's name
---@param args? table the tool's arguments
---@param opts? table `confirm`, `on_confirm`, and the options of `client:call`
---@return any|nil payload the call's payload
---@return table|favcrm.Error result the whole result, or the error
function M.run(client, name, args, opts)
  if type(client) ~= "table" or type(client.call) ~= "function" then
    error("bad argument #1 to 'safe_call.run' (favcrm client expected, got " .. type(client) .. ")", 2)
  end
  if type(name) ~= "string" or name == "" then
    error("bad argument #2 to 'safe_call.run' (tool name expected, got " .. type(name) .. ")", 2)
  end
  if args ~= nil and type(args) ~= "table" then
    error("bad argument #3 to 'safe_call.run' (table of arguments expected, got " .. type(args) .. ")", 2)
  end
  opts = opts or {}
  if type(opts) ~= "table" then
    error("bad argument #4 to 'safe_call.run' (table of options expected, got " .. type(opts) .. ")", 2)
  end
  for k, v in pairs(opts) do
    if not OPTIONS[k] then error("safe_call.run: unknown option '" .. tostring(k) .. "'", 2) end
    if type(v) ~= OPTIONS[k] then error("safe_call.run: option '" .. k .. "' must be a " .. OPTIONS[k], 2) end
  end
  args = args or {}

  local tool, err = client:describe(name)
  if not tool then return nil, err end
  local ann = type(tool.annotations) == "table" and tool.annotations or {}

  if ann.readOnlyHint ~= true and client:describe("check_plan_operation") then
    local check, cerr = client:call("check_plan_operation", { tool = name })
    if type(check) == "table" and check.allowed == false then
      return nil, plan_error(name, check)
    end
    if check == nil and cerr.code == "unauthorized" then return nil, cerr end
  end

  local confirmed = false
  if ann.destructiveHint == true then
    local target, id, id_field = lookup_target(client, tool, args)
    if target == nil and errors.is(id) then return nil, id end
    local summary = M.summary(tool, args, target, id, id_field)
    local yes = opts.confirm and opts.confirm(tool, args, summary)
    if yes ~= true then
      return nil, errors.new("confirmation_required", "not confirmed: " .. summary,
        { tool = name, summary = summary })
    end
    confirmed = true
  end

  local data, res = client:call(name, args, { confirm = confirmed, timeout = opts.timeout })
  if data ~= nil then return data, res end
  err = res
  if err.code == "plan_required" and type(err.upgrade_action) == "table" then
    local pe = plan_error(name, { upgradeAction = err.upgrade_action, requiredPlan = err.requiredPlan,
      plan = err.plan })
    pe.server_message = err.message
    return nil, pe
  end
  if opts.report_issues == true and unexpected(err) then
    err.issue_id = report(client, name, err)
  end
  return nil, err
end

return M
