-- favcrm.recipes.team_invite: accepting an invitation in a conversation,
-- against the real sandbox; the same machinery (favcrm.recipes.flow) as the
-- signup, so these scripts check the invite-specific words and branches.
local favcrm = require("favcrm")
local cjson = require("cjson")
local sandbox = require("spec.support.sandbox")
local invite = require("favcrm.recipes.team_invite")
local flowlib = require("favcrm.recipes.flow")

local INVITEE = "bo@example.com"

local T, owner, client, token, stored, replies

local function clock() return T end

local function store(secret, ws)
  stored = { key = secret:reveal(), ws = ws }
  return "/spec/favcrm/config.toml"
end

local function say(flow, text)
  local r = flow:handle(text)
  replies[#replies + 1] = r
  return r
end

local function start(fields, opts)
  opts = opts or {}
  if opts.store == nil then opts.store = store end
  local flow = invite.start(client, fields, opts)
  replies[#replies + 1] = flow:reply()
  return flow
end

local function latest_code()
  local m = sandbox.outbox(INVITEE)
  for i = #m, 1, -1 do
    if m[i].kind == "invite-code" then return m[i].code end
  end
  error("no invitation code for " .. INVITEE)
end

local function code_mails()
  local n = 0
  for _, m in ipairs(sandbox.outbox(INVITEE)) do
    if m.kind == "invite-code" then n = n + 1 end
  end
  return n
end

local function calls(name)
  return sandbox.stats().by_method["tools/call:" .. name] or 0
end

local function contains(text, phrase)
  assert.is_truthy(text:find(phrase, 1, true), "expected to find [" .. phrase .. "] in: " .. text)
end

describe("favcrm.recipes.team_invite", function()
  before_each(function()
    sandbox.reset()
    T = os.time()
    local key = sandbox.account("owner@example.com")
    owner = favcrm.new({ url = sandbox.url(), api_key = key })
    local inv = assert(owner:call("create_team_member_invite", { email = INVITEE, name = "Bo" }))
    token = inv.inviteToken
    client = favcrm.new({ url = sandbox.url(), clock = clock })
    stored, replies = nil, {}
  end)

  after_each(function()
    if stored then
      for _, r in ipairs(replies) do
        assert.is_nil(r:find(stored.key, 1, true), "a reply holds the whole key")
      end
    end
    client:close()
    owner:close()
  end)

  it("reuses the flow machinery rather than a copy of it", function()
    local flow = start({ token = token })
    assert.equal(flowlib.Flow, getmetatable(flow))
    assert.is_nil(rawget(invite, "handle"))
  end)

  it("asks for the token, finds it in free text, and sends the code", function()
    local flow = start({})
    assert.equal("need_fields", flow.state)
    contains(flow:reply(), "Please paste the invite token from your invitation e-mail (it starts with inv_)")
    local r = say(flow, "I don't have it handy")
    assert.equal("need_fields", flow.state)
    contains(r, "I couldn't find an invite token in that")
    r = say(flow, "Here it is: " .. token .. ". My name is Bo Chan.")
    assert.equal("awaiting_code", flow.state)
    assert.equal("Bo Chan", flow.fields.name)
    contains(r, "Thanks, Bo Chan! I've asked FavCRM to confirm the invitation.")
    contains(r, "FavCRM has e-mailed a 6-digit code to bo*@example.com")
    assert.equal(1, code_mails())
  end)

  it("accepts the invitation, stores the key and checks it works", function()
    local flow = start({ token = token })
    local code = latest_code()
    local r = say(flow, "code " .. code:sub(1, 3) .. "-" .. code:sub(4))
    assert.equal("done", flow.state)
    contains(r, "Welcome to the team: you've joined the workspace as staff.")
    contains(r, "I've saved the API key (" .. favcrm.mask_key(stored.key) .. ")")
    contains(r, "accepted the key")
    assert.matches("^usr_", stored.ws.user_id)
    assert.is_nil(stored.ws.api_key)
    local me = assert(client:call("list_my_companies", {}))
    assert.equal("staff", me.role)
    assert.equal(INVITEE, me.email)
  end)

  it("asks again after a wrong code, saying how many tries are left", function()
    local flow = start({ token = token })
    local good = latest_code()
    local r = say(flow, good == "000000" and "111111" or "000000")
    assert.equal("awaiting_code", flow.state)
    contains(r, "That code doesn't match.")
    contains(r, "you have 4 tries left.")
    say(flow, good)
    assert.equal("done", flow.state)
  end)

  it("requests a fresh code itself when the code has expired", function()
    local flow = start({ token = token })
    local old = latest_code()
    T = T + 601
    sandbox.advance(601)
    local r = say(flow, old)
    assert.equal("awaiting_code", flow.state)
    contains(r, "That code has expired (codes are valid for 10 minutes), so I've asked FavCRM for a fresh one.")
    assert.equal(2, code_mails())
    say(flow, latest_code())
    assert.equal("done", flow.state)
  end)

  it("stops, saying when to try again, when the rate limit is used up", function()
    local other = favcrm.new({ url = sandbox.url() })
    local limited
    for _ = 1, 25 do
      local ok, err = other:call("accept_team_invite_request", { token = token })
      if not ok then
        assert.equal("rate_limited", err.code)
        limited = true
        break
      end
    end
    other:close()
    assert.is_true(limited)
    local before = calls("accept_team_invite_request")
    local flow = start({ token = token })
    assert.equal("stopped", flow.state)
    assert.equal("rate_limited", flow.reason)
    assert.matches("Please try again in [%w ]+ %(after %d%d:%d%d UTC%)%.", flow:reply())
    contains(flow:reply(), "I won't keep retrying in the meantime.")
    say(flow, "try again")
    assert.equal(before + 1, calls("accept_team_invite_request"))
  end)

  it("stops on a token FavCRM does not know", function()
    local flow = start({ token = "inv_doesnotexist" })
    assert.equal("stopped", flow.state)
    assert.equal("invalid_invite", flow.reason)
    contains(flow:reply(), "FavCRM doesn't recognise that invitation, or it has expired")
    contains(flow:reply(), "ask the person who invited you to send a new one")
  end)

  it("stops on an invitation that was already accepted", function()
    local first = start({ token = token })
    say(first, latest_code())
    assert.equal("done", first.state)
    local again = start({ token = token })
    assert.equal("stopped", again.state)
    assert.equal("already_accepted", again.reason)
    contains(again:reply(), "This invitation has already been accepted.")
  end)

  it("explains the portal path when the invited address already has an account", function()
    sandbox.account(INVITEE)
    local flow = start({ token = token })
    assert.equal("stopped", flow.state)
    assert.equal("existing_account", flow.reason)
    contains(flow:reply(), "There's already a FavCRM account for the invited address")
    contains(flow:reply(), "open Settings > MCP Keys there, create a key")
  end)

  it("handles a dropped e-mail: masked address, spam folder, resend after the cooldown", function()
    sandbox.control("POST", "/_sandbox/drop_mail", { email = INVITEE, count = 1 })
    local flow = start({ token = token })
    assert.equal(0, code_mails())
    local r = say(flow, "no email yet")
    assert.equal("awaiting_code", flow.state)
    contains(r, "bo*@example.com (partly hidden for privacy) just now")
    contains(r, "spam or junk folder")
    contains(r, "Your FavCRM invitation code")
    T = T + 61
    r = say(flow, "still haven't received anything")
    assert.equal("offer_resend", flow.state)
    contains(r, "Shall I? (yes/no)")
    say(flow, "yes")
    assert.equal("awaiting_code", flow.state)
    assert.equal(1, code_mails())
    say(flow, latest_code())
    assert.equal("done", flow.state)
  end)

  it("survives a JSON round trip of its snapshot mid-conversation", function()
    local flow = start({ token = token, name = "Bo" })
    local text = cjson.encode(flow:snapshot())
    client:close()
    client = favcrm.new({ url = sandbox.url(), clock = clock })
    flow = invite.resume(client, cjson.decode(text), { store = store })
    assert.equal("awaiting_code", flow.state)
    contains(flow:reply(), "bo*@example.com")
    say(flow, latest_code())
    assert.equal("done", flow.state)
    local done = cjson.encode(flow:snapshot())
    assert.is_nil(done:find(stored.key, 1, true))
  end)

  it("says how to revoke and reissue a key that stops working", function()
    local flow = start({ token = token })
    say(flow, latest_code())
    sandbox.revoke(stored.key)
    local r = say(flow, "can you check my access still works?")
    assert.equal("key_rejected", flow.state)
    contains(r, "revoke the old key and create a new one")
  end)
end)
