-- favcrm.recipes.signup: scripted conversations against the real sandbox,
-- one per branch (happy path, wrong code, expired code, existing account,
-- rate limit, no e-mail, revoked key), asserting the state and the words the
-- user is told, and that the key never appears in a reply.
local favcrm = require("favcrm")
local cjson = require("cjson")
local sandbox = require("spec.support.sandbox")
local signup = require("favcrm.recipes.signup")
local flowlib = require("favcrm.recipes.flow")

local OPENING = "Sign me up for FavCRM. The business is a yoga studio called Stretch + Breathe in Hong Kong."
local FIELDS = { email = "ann@example.com", organisationName = "Stretch + Breathe", industry = "fitness",
  country = "HK", timezone = "Asia/Hong_Kong" }

-- Per-test world: a client on an injectable clock, a store that captures
-- the real key, and every reply the user saw.
local T, client, stored, replies

local function clock() return T end

local function store(secret, ws)
  stored = { key = secret:reveal(), ws = ws, masked = tostring(secret) }
  return "/spec/favcrm/config.toml"
end

local function seen(flow)
  replies[#replies + 1] = flow:reply()
  return flow
end

local function say(flow, text)
  local r = flow:handle(text)
  replies[#replies + 1] = r
  assert.equal(r, flow:reply())
  return r
end

local function start(fields, opts)
  opts = opts or {}
  if opts.store == nil then opts.store = store end
  return seen(signup.start(client, fields, opts))
end

local function mails(to)
  return sandbox.outbox(to)
end

local function latest_code(to)
  local m = mails(to)
  assert.is_true(#m > 0, "no mail for " .. to)
  return m[#m].code
end

local function calls(name)
  return sandbox.stats().by_method["tools/call:" .. name] or 0
end

-- Uses up the per-IP signup limit from another client (bounded).
local function use_up_rate_limit()
  local other = favcrm.new({ url = sandbox.url() })
  for i = 1, 25 do
    local r, err = other:request({ email = "filler" .. i .. "@example.com", organisationName = "Filler Co" })
    if not r then
      assert.equal("rate_limited", err.code)
      other:close()
      return
    end
  end
  other:close()
  error("the sandbox never rate limited 25 requests")
end

local function contains(text, phrase)
  assert.is_truthy(text:find(phrase, 1, true), "expected to find [" .. phrase .. "] in: " .. text)
end

describe("favcrm.recipes.signup", function()
  before_each(function()
    sandbox.reset()
    T = os.time()
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
  end)

  describe("find_code()", function()
    it("finds a code written in the ways people write it", function()
      assert.equal("123456", flowlib.find_code("123456"))
      assert.equal("123456", flowlib.find_code("it's 123 456"))
      assert.equal("123456", flowlib.find_code("code: 123-456"))
      assert.equal("123456", flowlib.find_code("The code is 1 2 3 4 5 6, thanks"))
      assert.equal("654321", flowlib.find_code("at 10:30 I got 654321"))
    end)

    it("ignores the digits of an e-mail address while waiting for the code", function()
      local flow = start(FIELDS)
      local r = say(flow, "I used ann123456@example.com, right?")
      assert.equal(0, calls("register_organisation_verify"))
      contains(r, "A new 6-digit code is on its way")
    end)

    it("reports a run of digits that is not 6 long", function()
      local code, odd = flowlib.find_code("it says 12345")
      assert.is_nil(code)
      assert.equal("12345", odd)
      assert.is_nil((flowlib.find_code("no digits here")))
    end)
  end)

  describe("flow.duration()", function()
    it("says durations as a person would", function()
      assert.equal("40 seconds", flowlib.duration(40))
      assert.equal("10 minutes", flowlib.duration(599))
      assert.equal("about 42 minutes", flowlib.duration(2490))
      assert.equal("about 1 hour and 5 minutes", flowlib.duration(3900))
    end)
  end)

  describe("parse()", function()
    it("reads the business, industry, country and time zone from the opening words", function()
      local f = signup.parse(OPENING)
      assert.equal("Stretch + Breathe", f.organisationName)
      assert.equal("fitness", f.industry)
      assert.equal("HK", f.country)
      assert.equal("Asia/Hong_Kong", f.timezone)
      assert.is_nil(f.email)
    end)

    it("reads country codes, time zones, quoted names and e-mail addresses", function()
      local f = signup.parse('We are "Glow Nails & Spa", a salon in HK, time zone Asia/Hong_Kong. '
        .. "Mail: jo@example.com.")
      assert.equal("Glow Nails & Spa", f.organisationName)
      assert.equal("beauty", f.industry)
      assert.equal("HK", f.country)
      assert.equal("Asia/Hong_Kong", f.timezone)
      assert.equal("jo@example.com", f.email)
      local g = signup.parse("a tutoring centre called Bright Minds based in the UK")
      assert.equal("Bright Minds", g.organisationName)
      assert.equal("tutoring", g.industry)
      assert.equal("GB", g.country)
      assert.equal("Europe/London", g.timezone)
    end)

    it("takes a bare answer as the name when the name was asked for", function()
      assert.equal("Stretch + Breathe", signup.parse("It's Stretch + Breathe.", "organisationName").organisationName)
      assert.is_nil(signup.parse("Stretch + Breathe", "email").organisationName)
    end)
  end)

  describe("start()", function()
    it("asks for the business and the e-mail address when nothing is known", function()
      local flow = start({})
      assert.equal("need_fields", flow.state)
      contains(flow:reply(), "What's the business called, and which e-mail address should own the account?")
      assert.equal(0, #mails())
    end)

    it("reads the opening message and asks only for what is missing", function()
      local flow = start({}, { message = OPENING })
      assert.equal("need_fields", flow.state)
      contains(flow:reply(), "Stretch + Breathe (fitness, Hong Kong, time zone Asia/Hong_Kong)")
      contains(flow:reply(), "Which e-mail address should own the account?")
    end)

    it("asks for the code at once when the fields are complete", function()
      local flow = start(FIELDS)
      assert.equal("awaiting_code", flow.state)
      contains(flow:reply(), "FavCRM has e-mailed a 6-digit code to an*@example.com")
      contains(flow:reply(), "It's valid for 10 minutes")
      assert.equal(1, #mails("ann@example.com"))
    end)

    it("asks again, sending nothing, when the e-mail address is not one", function()
      local flow = start({}, { message = OPENING })
      local r = say(flow, "ann at example dot com")
      assert.equal("need_fields", flow.state)
      contains(r, "Which e-mail address should own the account?")
      r = say(flow, "ann@example")
      assert.equal("need_fields", flow.state)
      contains(r, "Sorry, I didn't catch that.")
      assert.equal(0, #mails())
      say(flow, "sorry: ann@example.com")
      assert.equal("awaiting_code", flow.state)
    end)

    it("raises on an unknown field or option, naming it", function()
      assert.has_error(function() signup.start(client, { mail = "x@example.com" }) end,
        "signup.start: unknown field 'mail'")
      assert.has_error(function() signup.start(client, {}, { stroe = store }) end,
        "signup.start: unknown option 'stroe'")
      assert.has_error(function() signup.start(client, {}):handle(42) end)
    end)
  end)

  describe("the happy path", function()
    it("goes from the opening words to a stored key, doctor and an empty services list", function()
      local flow = start({}, { message = OPENING })
      say(flow, "ann@example.com")
      assert.equal("awaiting_code", flow.state)
      local code = latest_code("ann@example.com")
      local r = say(flow, "it's " .. code:sub(1, 3) .. " " .. code:sub(4))
      assert.equal("done", flow.state)
      assert.is_true(flow:finished())
      assert.is_table(stored)
      assert.equal("fav_mcp_", stored.key:sub(1, 8))
      contains(r, "You're all set: the FavCRM workspace for Stretch + Breathe is ready.")
      contains(r, "I've saved the API key (" .. favcrm.mask_key(stored.key) .. ") to /spec/favcrm/config.toml")
      contains(r, "FavCRM shows a key only once")
      contains(r, "accepted the key")
      contains(r, "It has no services yet: that's expected for a new workspace")
      contains(r, "Next steps:")
      assert.equal(1, calls("list_my_companies"))
      assert.equal(1, calls("list_services"))
      assert.is_nil(stored.ws.api_key)
      assert.matches("^org_", stored.ws.organisation_id)
      -- the client now uses the key
      local services = assert(client:call("list_services", {}))
      assert.equal(0, #services)
    end)

    it("saves the key to the config file by default, and says where", function()
      local dir = os.getenv("FAVCRM_SPEC_TMP")
      if not dir then
        pending("needs spec/support/run.sh (HOME and XDG_CONFIG_HOME in a temp folder)")
        return
      end
      local path = assert(favcrm.config.path())
      assert.is_truthy(path:find(dir, 1, true), "the config path is not in the spec's temp folder")
      os.remove(path)
      local flow = seen(signup.start(client, FIELDS))
      local r = say(flow, latest_code("ann@example.com"))
      assert.equal("done", flow.state)
      contains(r, "to " .. path)
      local cfg = assert(favcrm.config.load())
      assert.equal("fav_mcp_", cfg.api_key:sub(1, 8))
      stored = { key = cfg.api_key }
      assert.equal(sandbox.url(), cfg.url)
      os.remove(path)
    end)

    it("tells the user when the store fails, without the key", function()
      local flow = start(FIELDS, { store = function(secret)
        stored = { key = secret:reveal() }
        return nil, "disk full"
      end })
      local r = say(flow, latest_code("ann@example.com"))
      assert.equal("done", flow.state)
      contains(r, "I couldn't save it (disk full)")
      contains(r, "Settings > MCP Keys")
    end)
  end)

  describe("a wrong code", function()
    it("asks again, saying how many tries are left", function()
      local flow = start(FIELDS)
      local good = latest_code("ann@example.com")
      local bad = good == "000000" and "111111" or "000000"
      local r = say(flow, "code: " .. bad)
      assert.equal("awaiting_code", flow.state)
      contains(r, "That code doesn't match.")
      contains(r, "you have 4 tries left.")
      r = say(flow, bad)
      contains(r, "you have 3 tries left.")
      say(flow, good)
      assert.equal("done", flow.state)
    end)

    it("offers a new code once the code is locked, and finishes with the new one", function()
      local flow = start(FIELDS)
      local good = latest_code("ann@example.com")
      local bad = good == "000000" and "111111" or "000000"
      for _ = 1, 4 do say(flow, bad) end
      local r = say(flow, bad)
      assert.equal("offer_resend", flow.state)
      contains(r, "FavCRM has locked this code. Shall I send a new code to an*@example.com? (yes/no)")
      r = say(flow, "yes please")
      assert.equal("awaiting_code", flow.state)
      contains(r, "A new 6-digit code is on its way to an*@example.com")
      assert.equal(2, #mails("ann@example.com"))
      say(flow, latest_code("ann@example.com"))
      assert.equal("done", flow.state)
    end)

    it("says what it read when the code has the wrong number of digits", function()
      local flow = start(FIELDS)
      local r = say(flow, "it's 12345")
      assert.equal("awaiting_code", flow.state)
      contains(r, "I read 12345, which is 5 digits, but the code has 6 digits.")
    end)
  end)

  describe("an expired code", function()
    it("requests a fresh code itself when the flow's clock is past the expiry, and says so", function()
      local flow = start(FIELDS)
      local old = latest_code("ann@example.com")
      T = T + 601
      sandbox.advance(601)
      local r = say(flow, old)
      assert.equal("awaiting_code", flow.state)
      contains(r, "That code has expired (codes are valid for 10 minutes), so I've asked FavCRM for a fresh one.")
      contains(r, "only the newest code works now")
      assert.equal(0, calls("register_organisation_verify"))
      assert.equal(2, #mails("ann@example.com"))
      say(flow, latest_code("ann@example.com"))
      assert.equal("done", flow.state)
    end)

    it("requests a fresh code when only the server says the code expired", function()
      local flow = start(FIELDS)
      sandbox.advance(601)
      local r = say(flow, latest_code("ann@example.com"))
      assert.equal("awaiting_code", flow.state)
      assert.equal(1, calls("register_organisation_verify"))
      contains(r, "That code has expired")
      say(flow, latest_code("ann@example.com"))
      assert.equal("done", flow.state)
    end)

    it("refreshes once per expiry and stops instead of asking for codes without end", function()
      local flow = start(FIELDS, { max_requests = 2 })
      T = T + 601
      say(flow, latest_code("ann@example.com"))
      assert.equal("awaiting_code", flow.state)
      assert.equal(2, #mails("ann@example.com"))
      T = T + 601
      local r = say(flow, latest_code("ann@example.com"))
      assert.equal("stopped", flow.state)
      assert.equal("too_many_codes", flow.reason)
      contains(r, "I've already asked FavCRM for 2 codes in this conversation")
      assert.equal(2, #mails("ann@example.com"))
    end)

    it("uses opts.clock over the client's clock", function()
      local t2 = T
      local flow = start(FIELDS, { clock = function() return t2 end })
      local old = latest_code("ann@example.com")
      t2 = t2 + 700
      local r = say(flow, old)
      contains(r, "That code has expired")
    end)
  end)

  describe("an existing account", function()
    it("explains the portal path and stops, sending no code", function()
      sandbox.account("ann@example.com")
      local flow = start(FIELDS)
      assert.equal("stopped", flow.state)
      assert.equal("existing_account", flow.reason)
      local r = flow:reply()
      contains(r, "There's already a FavCRM account for an*@example.com")
      contains(r, "sign in to the FavCRM portal at https://app.favcrm.io")
      contains(r, "open Settings > MCP Keys")
      contains(r, "create a key")
      contains(r, "Please don't paste the key into this chat.")
      assert.equal(0, #mails("ann@example.com"))
      r = say(flow, "ok, try again")
      assert.equal("stopped", flow.state)
      contains(r, "This conversation has ended (existing_account).")
      assert.equal(1, calls("register_organisation_request"))
    end)

    it("stops the same way when the account appears before the code is verified", function()
      local flow = start(FIELDS)
      sandbox.account("ann@example.com")
      local r = say(flow, latest_code("ann@example.com"))
      assert.equal("stopped", flow.state)
      assert.equal("existing_account", flow.reason)
      contains(r, "Settings > MCP Keys")
    end)
  end)

  describe("the rate limit", function()
    it("says when to try again and stops, without retrying", function()
      use_up_rate_limit()
      local before = calls("register_organisation_request")
      local flow = start(FIELDS)
      assert.equal("stopped", flow.state)
      assert.equal("rate_limited", flow.reason)
      local r = flow:reply()
      contains(r, "FavCRM is limiting how many codes can be requested from this network")
      assert.matches("Please try again in [%w ]+ %(after %d%d:%d%d UTC%)%.", r)
      contains(r, "I won't keep retrying in the meantime.")
      assert.is_true(flow.retry_at > T)
      assert.equal(before + 1, calls("register_organisation_request"))
      r = say(flow, "please try again")
      contains(r, "FavCRM is still limiting code requests from this network. Please try again in")
      assert.equal(before + 1, calls("register_organisation_request"))
    end)

    it("stops when the fresh code for an expired one is rate limited", function()
      local flow = start(FIELDS)
      use_up_rate_limit()
      T = T + 601
      local r = say(flow, latest_code("ann@example.com"))
      assert.equal("stopped", flow.state)
      assert.equal("rate_limited", flow.reason)
      contains(r, "Please try again in")
    end)
  end)

  describe("no e-mail", function()
    it("shows the masked address and the spam folder, and offers a resend only after the cooldown", function()
      sandbox.control("POST", "/_sandbox/drop_mail", { email = "ann@example.com", count = 1 })
      local flow = start(FIELDS)
      assert.equal("awaiting_code", flow.state)
      assert.equal(0, #mails("ann@example.com"))
      T = T + 20
      local r = say(flow, "I didn't get it")
      assert.equal("awaiting_code", flow.state)
      contains(r, "I asked FavCRM to send it to an*@example.com (partly hidden for privacy) 20 seconds ago.")
      contains(r, "Please check your spam or junk folder too")
      contains(r, "If it still hasn't arrived in 40 seconds, tell me and I can send a new code.")
      r = say(flow, "can you resend it?")
      contains(r, "let's give it a moment")
      assert.equal(1, calls("register_organisation_request"))
      T = T + 45
      r = say(flow, "still no email")
      assert.equal("offer_resend", flow.state)
      contains(r, "It's been long enough that I can send a new code. Shall I? (yes/no)")
      r = say(flow, "yes")
      assert.equal("awaiting_code", flow.state)
      contains(r, "A new 6-digit code is on its way to an*@example.com")
      assert.equal(1, #mails("ann@example.com"))
      say(flow, latest_code("ann@example.com"))
      assert.equal("done", flow.state)
    end)

    it("goes back to waiting when the user declines the resend", function()
      local flow = start(FIELDS, { resend_cooldown = 30 })
      T = T + 31
      say(flow, "nothing arrived")
      assert.equal("offer_resend", flow.state)
      local r = say(flow, "no, wait")
      assert.equal("awaiting_code", flow.state)
      contains(r, "Paste the code here when the e-mail arrives.")
      assert.equal(1, calls("register_organisation_request"))
    end)

    it("sends a new code to a corrected address", function()
      local flow = start(FIELDS)
      local r = say(flow, "oops, it should be ann.lee@example.com")
      assert.equal("awaiting_code", flow.state)
      contains(r, "A new 6-digit code is on its way to an*@example.com")
      assert.equal(1, #mails("ann.lee@example.com"))
      say(flow, latest_code("ann.lee@example.com"))
      assert.equal("done", flow.state)
    end)
  end)

  describe("a key that stops working", function()
    it("says how to revoke it and issue a new one when the check fails later", function()
      local flow = start(FIELDS)
      say(flow, latest_code("ann@example.com"))
      assert.equal("done", flow.state)
      sandbox.revoke(stored.key)
      local r = say(flow, "is it still working?")
      assert.equal("key_rejected", flow.state)
      contains(r, "FavCRM refused the API key (" .. favcrm.mask_key(stored.key) .. ")")
      contains(r, "open Settings > MCP Keys, revoke the old key and create a new one")
      contains(r, "please don't paste it into this chat")
    end)

    it("reports a key refused by the post-signup checks", function()
      local flow = start(FIELDS, { store = function(secret)
        stored = { key = secret:reveal() }
        sandbox.revoke(stored.key)
        return true
      end })
      local r = say(flow, latest_code("ann@example.com"))
      assert.equal("key_rejected", flow.state)
      contains(r, "The code was right, but FavCRM refused the API key")
      contains(r, "revoke the old key and create a new one")
    end)
  end)

  describe("snapshot() and resume()", function()
    local function round_trip(flow, opts)
      local snap = flow:snapshot()
      local text = cjson.encode(snap)
      if stored then assert.is_nil(text:find(stored.key, 1, true)) end
      return seen(signup.resume(client, cjson.decode(text), opts or { store = store })), text
    end

    it("carries a conversation through JSON at every step", function()
      local flow = round_trip(start({}, { message = OPENING }))
      assert.equal("need_fields", flow.state)
      contains(flow:reply(), "Which e-mail address should own the account?")
      say(flow, "ann@example.com")
      flow = round_trip(flow)
      assert.equal("awaiting_code", flow.state)
      contains(flow:reply(), "an*@example.com")
      local good = latest_code("ann@example.com")
      local r = say(flow, good == "000000" and "111111" or "000000")
      contains(r, "4 tries left")
      -- a new client, as a stateless web handler would have
      client:close()
      client = favcrm.new({ url = sandbox.url(), clock = clock })
      flow = round_trip(flow)
      assert.equal(4, flow.attempts_left)
      say(flow, good)
      assert.equal("done", flow.state)
      local done, text = round_trip(flow)
      assert.equal("done", done.state)
      assert.is_nil(text:find(stored.key, 1, true))
      assert.is_truthy(text:find(favcrm.mask_key(stored.key), 1, true))
      assert.equal(flow.workspace.company_id, done.workspace.company_id)
    end)

    it("says when a resumed flow has no key to check with", function()
      local flow = start(FIELDS)
      say(flow, latest_code("ann@example.com"))
      local snap = cjson.decode(cjson.encode(flow:snapshot()))
      client:close()
      client = favcrm.new({ url = sandbox.url(), clock = clock })
      local later = signup.resume(client, snap, { store = store })
      local r = say(later, "is everything still working?")
      assert.equal("done", later.state)
      contains(r, "I couldn't confirm that the key works right now")
      contains(r, "no API key is configured")
    end)

    it("keeps the expiry across a snapshot", function()
      local flow = round_trip(start(FIELDS))
      T = T + 601
      local r = say(flow, latest_code("ann@example.com"))
      contains(r, "That code has expired")
    end)

    it("refuses a snapshot of another kind or version", function()
      local snap = start({}):snapshot()
      snap.kind = "team_invite"
      assert.has_error(function() signup.resume(client, snap) end,
        "signup.resume: the snapshot is of a 'team_invite' flow, not 'signup'")
      snap.kind, snap.v = "signup", 99
      assert.has_error(function() signup.resume(client, snap) end,
        "signup.resume: snapshot version 99 is not supported")
    end)
  end)

  describe("cancelling", function()
    it("stops when the user says so", function()
      local flow = start(FIELDS)
      local r = say(flow, "cancel")
      assert.equal("stopped", flow.state)
      assert.equal("cancelled", flow.reason)
      contains(r, "No workspace was created.")
    end)
  end)

  describe("run()", function()
    it("drives a scripted conversation to the end", function()
      local lines = { "Sign me up. It's a yoga studio called Stretch + Breathe in Hong Kong.", "ann@example.com" }
      local said = {}
      local flow = signup.run(client, {
        store = store,
        say = function(text) said[#said + 1] = text; replies[#replies + 1] = text end,
        ask = function(prompt)
          assert.equal("> ", prompt)
          if #lines > 0 then return table.remove(lines, 1) end
          return "the code is " .. latest_code("ann@example.com")
        end,
      })
      assert.equal("done", flow.state)
      assert.equal(4, #said)
      contains(said[4], "You're all set")
    end)

    it("stops after max_turns when the conversation goes nowhere", function()
      local asked = 0
      local flow = signup.run(client, { store = store, max_turns = 5,
        say = function(text) replies[#replies + 1] = text end,
        ask = function() asked = asked + 1; return "hmm" end })
      assert.equal("stopped", flow.state)
      assert.equal("too_many_turns", flow.reason)
      assert.equal(5, asked)
      contains(flow:reply(), "We've gone back and forth 5 times without finishing")
    end)

    it("stops when the user stops answering", function()
      local flow = signup.run(client, { store = store, say = function() end, ask = function() return nil end })
      assert.equal("stopped", flow.state)
      assert.equal("no_answer", flow.reason)
    end)

    it("raises without ask and say", function()
      assert.has_error(function() signup.run(client, { say = print }) end,
        "bad argument #2 to 'signup.run' (table with ask and say functions expected)")
    end)
  end)
end)
