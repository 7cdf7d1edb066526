-- favcrm.cli_workspace: the `favcrm` commands of the Rust CLI that each
-- run one workspace tool (plan, team invite, whatsapp, orgs, members,
-- bookings, invoices, dashboard; internal). favcrm.cli loads it (favcrm.lazy)
-- when one of them runs; it defines them on favcrm.cli's command table.
local core = require("favcrm.core")
local config = require("favcrm.config")
local S = require("favcrm.cli")._shared
local C, EXIT, cell, is_list = S.C, S.EXIT, S.cell, S.is_list

local function count_flag(ctx, flag, min, max)
  local v = ctx.flags[flag]
  if v == nil then return nil end
  local n = tonumber(v)
  if not n or n % 1 ~= 0 or n < min or (max and n > max) then
    return nil, ctx:fail("--" .. flag .. " wants a whole number" .. (max and (" from " .. min .. " to " .. max)
      or (" of at least " .. min)))
  end
  return math.floor(n)
end

-- Copies the flags that are set into args under the tool's names.
local function copy_flags(ctx, args, map)
  for flag, field in pairs(map) do
    if ctx.flags[flag] ~= nil then args[field] = ctx.flags[flag] end
  end
  return args
end

local function one_id(ctx, rest, what)
  if not rest[1] or rest[2] then return nil, ctx:fail("`favcrm " .. ctx.usage_of .. "` needs exactly one " .. what) end
  return rest[1]
end

-- plan -------------------------------------------------------------------

function C.plan_status(ctx)
  return ctx:run_tool("get_plan_status", {}, { render = function(c, p)
    if type(p) ~= "table" then return c:show(p) end
    c:say("Plan: " .. c:paint(tostring(p.plan or p.planCode or "?"), "bold") .. " ("
      .. tostring(p.status or "?") .. ")")
    local rows = {}
    local limits = type(p.limits) == "table" and p.limits or {}
    local usage = type(p.usage) == "table" and p.usage or {}
    local names = {}
    for k in pairs(limits) do names[#names + 1] = k end
    table.sort(names)
    for _, k in ipairs(names) do
      local used = usage[k]
      if used == nil then used = usage[(k:gsub("PerMonth$", "ThisMonth"))] end
      rows[#rows + 1] = { k, cell(used), cell(limits[k]) }
    end
    if #rows > 0 then
      c:say("")
      c:table({ "QUOTA", "USED", "LIMIT" }, rows)
    end
    if is_list(p.features) then c:say("") c:say("Modules: " .. table.concat(p.features, ", ")) end
  end })
end

function C.plan_check(ctx)
  local f = ctx.flags
  if not f.tool and not f.quota and not f.module then
    return ctx:fail("plan check needs --tool, --quota or --module")
  end
  local delta, dcode = count_flag(ctx, "delta", 1)
  if dcode then return dcode end
  local args = copy_flags(ctx, {}, { tool = "toolName", quota = "quotaCode", module = "moduleCode" })
  args.delta = delta or 1
  return ctx:run_tool("check_plan_operation", args, { render = function(c, r)
    if type(r) ~= "table" then return c:show(r) end
    if r.allowed == true then
      c:say(c:paint("Allowed", "green") .. " on the " .. tostring(r.plan) .. " plan.")
    else
      c:say(c:paint("Not allowed", "red") .. " on the " .. tostring(r.plan) .. " plan"
        .. (r.requiredPlan and ("; it needs " .. tostring(r.requiredPlan)) or "") .. ".")
    end
    local rows = {}
    for _, ch in ipairs(is_list(r.checks) and r.checks or {}) do
      local what = ch.toolName or ch.quotaCode or ch.moduleCode
      local note = ch.reason or (ch.kind == "quota" and (cell(ch.used) .. " used of " .. cell(ch.limit)) or "")
      rows[#rows + 1] = { tostring(ch.kind), tostring(what), ch.allowed == false and "no" or "yes", note }
    end
    if #rows > 0 then c:say("") c:table({ "CHECK", "NAME", "ALLOWED", "NOTES" }, rows) end
    local ua = type(r.upgradeAction) == "table" and r.upgradeAction or nil
    if ua then
      local a = type(ua.arguments) == "table" and ua.arguments or {}
      c:say("")
      c:say("Upgrade: favcrm plan upgrade --plan-code " .. tostring(a.planCode or a.plan or r.requiredPlan)
        .. " --confirm")
    end
  end })
end

function C.plan_options(ctx)
  return ctx:run_tool("list_plan_options", {}, { render = function(c, list)
    if not is_list(list) then return c:show(list) end
    local rows = {}
    for _, p in ipairs(list) do
      rows[#rows + 1] = { (p.current and "* " or "  ") .. tostring(p.name or p.plan), tostring(p.planCode or ""),
        tostring(p.planId or ""), cell(p.priceMonthly) .. " " .. tostring(p.currency or "") }
    end
    c:table({ "  PLAN", "PLAN CODE", "PLAN ID", "PER MONTH" }, rows)
    c:say("")
    c:say("Upgrade: favcrm plan upgrade --plan-code CODE --confirm")
  end })
end

local function link_render(c, r)
  if type(r) == "table" and type(r.url) == "string" then
    c:say((r.kind == "portal" and "Billing portal: " or "Checkout: ") .. r.url)
    if r.expiresAt then c:say("Valid until " .. tostring(r.expiresAt) .. ".") end
    return
  end
  c:show(r)
end

local function not_confirmed(err)
  if err.code == "confirmation_required" then
    err.message = "the link was not created: it starts a paid Stripe checkout"
    err.hint = "run it again with --confirm once the account owner agrees"
    err.exit = EXIT.usage
  end
  return err
end

function C.plan_upgrade(ctx)
  local f = ctx.flags
  if not f["plan-code"] and not f["plan-id"] then
    return ctx:fail("plan upgrade needs --plan-code or --plan-id (`favcrm plan options` lists them)")
  end
  local cycle = f["billing-cycle"] or "monthly"
  if cycle ~= "monthly" and cycle ~= "yearly" then return ctx:fail("--billing-cycle is monthly or yearly") end
  local args = copy_flags(ctx, {}, { ["plan-code"] = "planCode", ["plan-id"] = "planId", ["return-url"] = "returnUrl" })
  args.billingCycle = cycle
  args.confirm = f.confirm == true
  return ctx:run_tool("create_plan_upgrade_link", args, { render = link_render, failed = not_confirmed })
end

function C.plan_portal(ctx)
  local client, code = ctx:keyed_client()
  if not client then return code end
  -- the current plan's code when the server names it (the Rust CLI always sends favcrm-lite)
  local status = client:call("get_plan_status", {})
  local plan_code = type(status) == "table" and type(status.planCode) == "string" and status.planCode or "favcrm-lite"
  local args = copy_flags(ctx, { planCode = plan_code }, { ["return-url"] = "returnUrl" })
  args.confirm = ctx.flags.confirm == true
  return ctx:run_tool("create_plan_upgrade_link", args, { render = link_render, failed = function(err)
    not_confirmed(err)
    if err.code == "conflict" or err.server_code == "conflict" then
      err.hint = "the " .. tostring(type(status) == "table" and status.plan or "current") .. " plan has no billing "
        .. "portal: `favcrm plan upgrade` moves to a paid plan"
    end
    return err
  end })
end

-- team invite ------------------------------------------------------------

function C.team_invite_create(ctx)
  local f = ctx.flags
  if not f.email then return ctx:fail("team invite create needs --email") end
  local role = f.role or "staff"
  if role ~= "staff" and role ~= "manager" then return ctx:fail("--role is staff or manager") end
  local hours, hcode = count_flag(ctx, "expires-in-hours", 1)
  if hcode then return hcode end
  local args = copy_flags(ctx, { role = role }, { email = "email", name = "name" })
  args.expiresInHours = hours
  return ctx:run_tool("create_team_member_invite", args, { render = function(c, r)
    if type(r) ~= "table" or not r.inviteToken then return c:show(r) end
    c:say(c:paint("Invitation created", "green") .. " for " .. tostring(r.email) .. " as " .. tostring(r.role) .. ".")
    c:table({ "FIELD", "VALUE" }, { { "token", tostring(r.inviteToken) }, { "expires", tostring(r.expiresAt) } })
    c:say("")
    c:say("The invitee runs: favcrm team invite accept --token " .. tostring(r.inviteToken))
  end })
end

function C.team_invite_accept_request(ctx)
  if not ctx.flags.token then return ctx:fail("team invite accept-request needs --token") end
  return ctx:run_tool("accept_team_invite_request", { token = ctx.flags.token }, { no_auth = true,
    render = function(c, r)
      if type(r) ~= "table" then return c:show(r) end
      c:say(c:paint("A 6-digit code is on its way to " .. tostring(r.maskedEmail) .. ".", "green"))
      if r.expiresAt then c:say("It is valid until " .. tostring(r.expiresAt) .. ".") end
      c:say("")
      c:say("Next: favcrm team invite accept-verify --token " .. tostring(ctx.flags.token) .. " --code CODE")
    end })
end

function C.team_invite_accept_verify(ctx)
  local f = ctx.flags
  if not f.token or not f.code then return ctx:fail("team invite accept-verify needs --token and --code") end
  local args = { token = f.token, code = f.code, name = f.name }
  local save_problem
  return ctx:run_tool("accept_team_invite_verify", args, { no_auth = true,
    after = function(r, client)
      if type(r) ~= "table" or type(r.apiKey) ~= "string" then return r end
      local secret = core.secret(r.apiKey)
      r.apiKey = nil
      if not f["no-save"] then
        local fields = { api_key = secret }
        local url = client:savable_url()
        if url and (ctx.flags.url or ctx:env("FAVCRM_MCP_URL")) then fields.url = url end
        local path, serr = config.save(fields)
        if path then r.apiKeySavedTo = path else save_problem = serr and (serr.message or tostring(serr)) end
        r.saveError = save_problem
      end
      r.apiKey = f["show-key"] and secret:reveal() or tostring(secret)
      r.apiKeyShown = f["show-key"] == true
      r.nextCommand = "favcrm whoami"
      return r, save_problem and EXIT.failure or EXIT.ok
    end,
    render = function(c, r)
      c:say(c:paint("You have joined the team.", "green"))
      c:table({ "FIELD", "VALUE" }, {
        { "user", tostring(r.userId) }, { "company", tostring(r.companyId) }, { "role", tostring(r.role) },
        { "API key", tostring(r.apiKey) },
        { "saved to", r.apiKeySavedTo or (f["no-save"] and "not saved (--no-save)") or "not saved" },
        { "portal", tostring(r.loginUrl) },
      })
      c:say("")
      c:say("Next: favcrm whoami")
      if f["no-save"] and not f["show-key"] then
        c:warn("the key was not saved and FavCRM shows it only once; run accept-verify with --show-key to see it")
      end
      if save_problem then c:warn("the key could not be saved (" .. tostring(save_problem) .. ")") end
    end })
end

-- whatsapp ---------------------------------------------------------------

function C.whatsapp_status(ctx)
  return ctx:run_tool("get_whatsapp_connection_status", {})
end

function C.whatsapp_connect(ctx)
  local mode = ctx.flags.mode or "cloud-api"
  if mode ~= "cloud-api" and mode ~= "coexistence" then return ctx:fail("--mode is cloud-api or coexistence") end
  local ttl, tcode = count_flag(ctx, "ttl-minutes", 1)
  if tcode then return tcode end
  return ctx:run_tool("create_whatsapp_connect_link",
    { onboardingMode = mode == "cloud-api" and "cloud_api" or mode, ttlMinutes = ttl }, { render = function(c, r)
      if type(r) ~= "table" or type(r.url) ~= "string" then return c:show(r) end
      c:say("Open this link in a browser to connect WhatsApp (" .. mode .. "):")
      c:say(r.url)
      if r.expiresAt then c:say("Valid until " .. tostring(r.expiresAt) .. ".") end
    end })
end

-- orgs, dashboard ----------------------------------------------------------

function C.orgs_list(ctx)
  return ctx:run_tool("list_my_companies", {}, { render = function(c, who)
    local list = type(who) == "table" and (is_list(who) and who or who.companies) or nil
    if not is_list(list) then return c:show(who) end
    local rows = {}
    for _, co in ipairs(list) do
      rows[#rows + 1] = { (co.current and "* " or "  ") .. tostring(co.name), tostring(co.companyId),
        tostring(co.organisationId or ""), tostring(co.plan or ""), tostring(co.role or "") }
    end
    c:table({ "  COMPANY", "COMPANY ID", "ORGANISATION ID", "PLAN", "ROLE" }, rows)
  end })
end

function C.orgs_switch(ctx, rest)
  local id, code = one_id(ctx, rest, "COMPANY_ID")
  if not id then return code end
  return ctx:run_tool("switch_company", { companyId = id })
end

function C.dashboard(ctx)
  return ctx:run_tool("get_dashboard_stats", {})
end

-- members, bookings, invoices -----------------------------------------------

function C.members_search(ctx, rest)
  if rest[2] then return ctx:fail("members search takes at most one QUERY") end
  local days, dcode = count_flag(ctx, "inactive-days", 1)
  if dcode then return dcode end
  local limit, lcode = count_flag(ctx, "limit", 1, 200)
  if lcode then return lcode end
  local args = copy_flags(ctx, {}, { ["tier-id"] = "tierId" })
  args.search, args.inactiveDays, args.limit = rest[1], days, limit
  return ctx:run_tool("search_members", args)
end

local function by_id(tool, field, what)
  return function(ctx, rest)
    local id, code = one_id(ctx, rest, what)
    if not id then return code end
    return ctx:run_tool(tool, { [field] = id })
  end
end

C.members_get = by_id("get_member_profile", "accountId", "ACCOUNT_ID")

function C.bookings_list(ctx)
  local limit, lcode = count_flag(ctx, "limit", 1, 200)
  if lcode then return lcode end
  local args = copy_flags(ctx, {}, { from = "from", to = "to", status = "status" })
  args.limit = limit
  return ctx:run_tool("list_bookings", args)
end

C.bookings_get = by_id("get_booking_detail", "bookingId", "BOOKING_ID")
function C.bookings_stats(ctx) return ctx:run_tool("get_booking_stats", {}) end
C.bookings_cancel = by_id("cancel_booking", "bookingId", "BOOKING_ID")
C.bookings_complete = by_id("complete_booking", "bookingId", "BOOKING_ID")
C.bookings_confirm = by_id("confirm_booking", "bookingId", "BOOKING_ID")

function C.invoices_list(ctx)
  local limit, lcode = count_flag(ctx, "limit", 1, 200)
  if lcode then return lcode end
  local args = copy_flags(ctx, {}, { status = "status" })
  args.limit = limit
  return ctx:run_tool("list_invoices", args)
end

C.invoices_get = by_id("get_invoice", "invoiceId", "INVOICE_ID")
C.invoices_send = by_id("mark_invoice_sent", "invoiceId", "INVOICE_ID")
C.invoices_void = by_id("void_invoice", "invoiceId", "INVOICE_ID")
function C.invoices_stats(ctx) return ctx:run_tool("get_invoice_stats", {}) end

return C
