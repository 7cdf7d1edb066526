--- favcrm.recipes.team_invite: accepting a FavCRM team invitation in a
-- conversation (`accept_team_invite_request` {token} e-mails a 6-digit code;
-- `accept_team_invite_verify` {token, code, name?} returns the member's API
-- key, once). The same shape and states as favcrm.recipes.signup; the
-- machinery is favcrm.recipes.flow's.
--
--   local invite = require("favcrm.recipes.team_invite")
--   local flow = invite.start(client, { token = "inv_...", name = "Bo" })
--   print(flow:reply())               -- code sent to bo*@example.com
--   print(flow:handle("code 123-456")) -- joined; key stored; checks run
--
-- States: need_fields (asking for the invite token from the invitation
-- e-mail), awaiting_code, offer_resend, done, key_rejected, stopped (reasons:
-- invalid_invite, already_accepted, existing_account, rate_limited,
-- too_many_codes, cancelled, no_answer, too_many_turns). Transitions as in
-- favcrm.recipes.signup.
--
-- The snapshot holds the invite token (it is needed to finish); it never
-- holds the API key.
local flow = require("favcrm.recipes.flow")
local util = require("favcrm.util")
local errors = require("favcrm.errors")

local M = {}

M.STATES = flow.STATES

local kind = {
  name = "team_invite",
  required = { "token" },
  field_names = { token = "token", name = "name" },
  mail_subject = "Your FavCRM invitation code",
}

--- team_invite.parse(text [, asking]) -> {token =, name =} as found
---@param text string the user's words
---@param asking? string the field just asked for
---@return table fields `token` and `name` as found
function M.parse(text, asking)
  local found = {}
  found.token = text:match("%f[%w](inv_[%w]+)")
  local name = text:match("[Mm]y%s+name%s+is%s+([^%.,;!?\n]+)") or text:match("[Cc]all%s+me%s+([^%.,;!?\n]+)")
  if name then
    name = util.trim(name)
    if name ~= "" and #name <= 120 then found.name = name end
  end
  if asking == "name" and not found.name and not found.token then
    local s = util.trim(text)
    if s ~= "" and #s <= 120 then found.name = s end
  end
  return found
end

function kind.parse(_, text, asking)
  return M.parse(text, asking)
end

function kind.question(self, _, nothing_new)
  local sorry = nothing_new and self.turns > 0
    and "I couldn't find an invite token in that: it starts with inv_ and is in the invitation e-mail. " or ""
  return sorry .. "Happy to get you into the team's FavCRM workspace. Please paste the invite token from "
    .. "your invitation e-mail (it starts with inv_); FavCRM will then e-mail you a 6-digit code to confirm "
    .. "it's you."
end

function kind.check(self)
  if not self.fields.token:match("^inv_[%w]+$") then
    return { field = "token", message = "an invite token starts with inv_" }
  end
  if self.fields.name and #self.fields.name > 120 then
    return { field = "name", message = "a name has at most 120 characters" }
  end
  return nil
end

function kind.bad_field(_, field)
  if field == "token" then
    return "That doesn't look like an invite token: it starts with inv_ and is in the invitation e-mail. "
      .. "Could you paste it again?"
  end
  return "Your name can be up to 120 characters. What name should your teammates see?"
end

function kind.intro(self)
  return "Thanks" .. (self.fields.name and (", " .. self.fields.name) or "") .. "! I've asked FavCRM to "
    .. "confirm the invitation. "
end

function kind.request(self)
  local data, err = flow.call(self.client, "accept_team_invite_request", { token = self.fields.token })
  if not data then return nil, err end
  if type(data) ~= "table" or type(data.expiresAt) ~= "string" then
    return nil, errors.new("protocol", "accept_team_invite_request answered without expiresAt")
  end
  local at, ttl = flow.expiry(self.client, data.expiresAt, "accept_team_invite_request")
  if not at then return nil, ttl end
  return { masked_email = data.maskedEmail, expires_at = at, ttl = ttl }
end

function kind.verify(self, code)
  local args = { token = self.fields.token, code = code }
  if self.fields.name then args.name = self.fields.name end
  local data, err = flow.call(self.client, "accept_team_invite_verify", args)
  if not data then return nil, err end
  local secret, serr = flow.secret_from(data, "accept_team_invite_verify")
  if not secret then return nil, serr end
  self.client:set_api_key(secret, "team invite")
  return {
    api_key = secret, organisation_id = data.organisationId, company_id = data.companyId,
    user_id = data.userId, role = data.role, login_url = data.loginUrl, next_steps = data.nextSteps,
  }
end

function kind.on_error(self, err, phase)
  if err.code == "not_found" then
    return self:_stop("invalid_invite", "FavCRM doesn't recognise that invitation, or it has expired "
      .. "(invitations last 7 days). Please ask the person who invited you to send a new one.")
  end
  if err.code == "expired_code" and (err.reason == "already_used" or phase == "request") then
    return self:_stop("already_accepted", "This invitation has already been accepted. If that wasn't you, "
      .. "tell the workspace owner; otherwise sign in to the portal at https://app.favcrm.io.")
  end
  if err.code == "expired_code" and err.reason == "no_code" then
    return self:_send_code("expired")
  end
  return nil
end

function kind.existing_account_words(_, err)
  local portal = type(err.loginUrl) == "string" and err.loginUrl or "https://app.favcrm.io"
  return "There's already a FavCRM account for the invited address, so the invitation can't create a new one. "
    .. "Sign in to the FavCRM portal at " .. portal .. " instead; to connect this assistant, open Settings > "
    .. "MCP Keys there, create a key, and store it where this assistant reads it (the FavCRM config file or "
    .. "the FAVCRM_API_KEY environment variable). Please don't paste the key into this chat."
end

function kind.cancelled_words()
  return "The invitation is still open; just ask when you want to accept it."
end

function kind.success(self, facts, first)
  local ws = self.workspace
  local head
  if first then
    head = "Welcome to the team: you've joined the workspace" .. (ws.role and (" as " .. ws.role) or "") .. ". "
      .. flow.stored_words(ws) .. " "
  else
    head = "Everything is still working. "
  end
  local text = head .. flow.describe_checks(facts)
  if first then
    text = text .. " Next steps: sign in to the portal at " .. (ws.login_url or "https://app.favcrm.io")
      .. " to see the team's bookings and contacts. If the key ever leaks, revoke it in the portal "
      .. "(Settings > MCP Keys) and create a new one."
  end
  return text
end

function kind.after_done()
  return "You've accepted the invitation. Ask me to check that your key still works any time."
end

M.kind = kind

--- team_invite.start(client, {token =, name =} [, opts]) -> flow (a missing
-- token is asked for). Options as signup.start.
---@param client favcrm.Client
---@param fields? table `token`, `name`
---@param opts? table flow options
---@return favcrm.recipes.Flow flow
function M.start(client, fields, opts)
  return flow.start(kind, client, fields, opts, "team_invite.start")
end

--- team_invite.resume(client, snapshot [, opts]) -> flow
---@param client favcrm.Client
---@param snap table what `flow:snapshot()` returned
---@param opts? table flow options
---@return favcrm.recipes.Flow flow
function M.resume(client, snap, opts)
  return flow.resume(kind, client, snap, opts, "team_invite.resume")
end

--- team_invite.run(client, {ask =, say =, ...}) -> flow (see signup.run)
---@param client favcrm.Client
---@param opts table `ask`, `say`, ... as for signup.run
---@return favcrm.recipes.Flow flow
function M.run(client, opts)
  return flow.run(kind, client, opts, "team_invite.run")
end

return M
