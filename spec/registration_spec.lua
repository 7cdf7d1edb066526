-- client:request / client:verify against the sandbox's registration pair.
local favcrm = require("favcrm")
local cjson = require("cjson")
local sandbox = require("spec.support.sandbox")
local keys = require("spec.support.keys")

local n = 0
local function email()
  n = n + 1
  return string.format("owner%d.%d@example.com", os.time(), n)
end

local function fields(overrides)
  local f = { email = email(), organisationName = "Stretch + Breathe", industry = "fitness",
    country = "HK", timezone = "Asia/Hong_Kong" }
  for k, v in pairs(overrides or {}) do f[k] = v end
  return f
end

local function code_for(addr)
  local mails = sandbox.outbox(addr)
  assert(#mails > 0, "no mail for " .. addr)
  return mails[#mails].code
end

local function calls()
  return sandbox.stats().by_method["tools/call"] or 0
end

describe("client:request()", function()
  local c
  before_each(function()
    sandbox.reset()
    c = favcrm.new({ url = sandbox.url() })
  end)
  after_each(function() c:close() end)

  it("returns the request id, masked e-mail, expiry and ttl, and e-mails a code", function()
    local f = fields({ email = "you@example.com" })
    local r = assert(c:request(f))
    assert.matches("^signup_req_", r.request_id)
    assert.equal("yo*@example.com", r.masked_email)
    assert.is_number(r.expires_at)
    -- the Date header counts whole seconds: the ttl is good to one second
    assert.is_true(r.ttl >= 595 and r.ttl <= 601, "ttl " .. r.ttl)
    assert.is_string(r.instructions)
    assert.equal(r.request_id, r.raw.requestId)
    assert.matches("^%d%d%d%d%d%d$", code_for("you@example.com"))
  end)

  it("trims white space and upper-cases the country before sending", function()
    local f = fields({ country = " hk ", organisationName = "  Stretch + Breathe  " })
    assert(c:request(f))
    local sent = sandbox.stats().last_tool_arguments
    assert.equal("HK", sent.country)
    assert.equal("Stretch + Breathe", sent.organisationName)
  end)

  it("computes ttl from the server's Date header, not the local clock", function()
    sandbox.control("POST", "/_sandbox/clock", { offset = 7200 })
    local r = assert(c:request(fields()))
    -- the Date header counts whole seconds: the ttl is good to one second
    assert.is_true(r.ttl >= 595 and r.ttl <= 601, "ttl " .. r.ttl)
    assert.is_true(r.expires_at - os.time() > 7000)
    assert.is_true(r.local_expires_at - os.time() <= 600)
  end)

  local bad = {
    { "a missing e-mail", { email = false }, "email", "email: is required (the owner's e-mail address)" },
    { "a malformed e-mail", { email = "you@@example" }, "email",
      "email: does not look like an e-mail address (got 'you@@example')" },
    { "an e-mail with two dots in a row", { email = "a..b@example.com" }, "email",
      "email: does not look like an e-mail address (got 'a..b@example.com')" },
    { "a one-letter name", { organisationName = "S" }, "organisationName",
      "organisationName: must be 2 to 80 characters long (got 1)" },
    { "an 81-character name", { organisationName = string.rep("é", 81) }, "organisationName",
      "organisationName: must be 2 to 80 characters long (got 81)" },
    { "an unknown industry", { industry = "yoga" }, "industry",
      "industry: must be one of beauty, fitness, tutoring, retail, hospitality, services, other (got 'yoga')" },
    { "a country that is not ISO 3166-1", { country = "XX" }, "country",
      "country: must be an ISO 3166-1 alpha-2 code such as HK or GB (got 'XX')" },
    { "a three-letter country", { country = "HKG" }, "country",
      "country: must be an ISO 3166-1 alpha-2 code such as HK or GB (got 'HKG')" },
    { "an unknown time zone", { timezone = "Asia/Atlantis" }, "timezone",
      "timezone: is not a time zone the tz database knows (got 'Asia/Atlantis'; use a name such as Asia/Hong_Kong)" },
    { "a field of the wrong type", { country = 852 }, "country", "country: must be a string (got number)" },
    { "an unknown field", { emial = "x@example.com" }, "emial",
      "emial: unknown field (expected email, organisationName, industry, country, timezone)" },
  }
  for _, case in ipairs(bad) do
    it("refuses " .. case[1] .. " naming the field, and sends nothing", function()
      local f = fields()
      for k, v in pairs(case[2]) do
        if v == false then f[k] = nil else f[k] = v end
      end
      assert(c:tools())
      local before = calls()
      local r, err = c:request(f)
      assert.is_nil(r)
      assert.equal("invalid_arguments", err.code)
      assert.equal(case[3], err.field)
      assert.equal(case[4], err.message)
      assert.equal(before, calls())
    end)
  end

  it("raises on a non-table argument", function()
    assert.has_error(function() c:request("you@example.com") end,
      "bad argument #1 to 'request' (table of fields expected, got string)")
  end)

  it("reports an e-mail that already has an account as existing_account", function()
    local addr = email()
    sandbox.account(addr)
    local r, err = c:request(fields({ email = addr }))
    assert.is_nil(r)
    assert.equal("existing_account", err.code)
  end)

  it("reports the rate limit with retry_after and does not retry", function()
    for _ = 1, 3 do assert(c:request(fields())) end
    local before = calls()
    local r, err = c:request(fields())
    assert.is_nil(r)
    assert.equal("rate_limited", err.code)
    assert.is_true(err.retry_after > 0)
    assert.equal(before + 1, calls())
  end)
end)

describe("client:verify()", function()
  local c
  before_each(function()
    sandbox.reset()
    c = favcrm.new({ url = sandbox.url() })
  end)
  after_each(function() c:close() end)

  it("creates the workspace, returns the key as a masked secret and uses it from then on", function()
    local f = fields()
    local r = assert(c:request(f))
    local code = code_for(f.email)
    local ws = assert(c:verify(r, code:sub(1, 3) .. " " .. code:sub(4)))
    assert.matches("^org_", ws.organisation_id)
    assert.matches("^co_", ws.company_id)
    assert.matches("^usr_", ws.user_id)
    assert.matches("^https?://", ws.login_url)
    local key = ws.api_key:reveal()
    keys.remember(key)
    assert.matches("^fav_mcp_", key)
    assert.equal(key:sub(1, 8) .. "..." .. key:sub(-4), tostring(ws.api_key))
    assert.is_nil(cjson.encode({ ws.organisation_id }):find(key, 1, true))
    assert.same({}, (assert(c:call("list_services"))))
    assert.equal("signup", c.key_source)
  end)

  it("accepts the code as 123-456 and by request id alone", function()
    local f = fields()
    local r = assert(c:request(f))
    local code = code_for(f.email)
    local ws = assert(c:verify(r.request_id, code:sub(1, 3) .. "-" .. code:sub(4)))
    keys.remember(ws.api_key:reveal())
  end)

  it("refuses a code that is not six digits, naming the field, and sends nothing", function()
    local r = assert(c:request(fields()))
    local before = calls()
    for _, bad in ipairs({ "12345", "1234567", "12a456", "", {} }) do
      local ws, err = c:verify(r, bad)
      assert.is_nil(ws)
      assert.equal("invalid_arguments", err.code)
      assert.equal("code", err.field)
    end
    assert.equal(before, calls())
  end)

  it("fails a request known to be expired locally as expired_code without a call", function()
    local t = os.time()
    local c2 = favcrm.new({ url = sandbox.url(), clock = function() return t end })
    local f = fields()
    local r = assert(c2:request(f))
    t = t + 601
    local before = calls()
    local ws, err = c2:verify(r, code_for(f.email))
    assert.is_nil(ws)
    assert.equal("expired_code", err.code)
    assert.equal(before, calls())
    c2:close()
  end)

  it("maps the server's expired code to expired_code", function()
    local f = fields()
    local r = assert(c:request(f))
    sandbox.advance(601)
    local ws, err = c:verify(r.request_id, code_for(f.email))
    assert.is_nil(ws)
    assert.equal("expired_code", err.code)
  end)

  it("maps a wrong code to wrong_code with the attempts left, and kills the request after five", function()
    local f = fields()
    local r = assert(c:request(f))
    local good = code_for(f.email)
    local wrong = good == "000000" and "111111" or "000000"
    local ws, err = c:verify(r, wrong)
    assert.is_nil(ws)
    assert.equal("wrong_code", err.code)
    assert.equal(4, err.attempts_left)
    for _ = 1, 4 do
      ws, err = c:verify(r, wrong)
      assert.is_nil(ws)
    end
    assert.equal(0, err.attempts_left)
    ws, err = c:verify(r, good)
    assert.is_nil(ws)
    assert.is_true(err.code == "expired_code" or err.code == "wrong_code")
  end)

  it("saves the key to a 0600 config file when asked", function()
    local f = fields()
    local r = assert(c:request(f))
    local ws = assert(c:verify(r, code_for(f.email), { save = true }))
    local key = ws.api_key:reveal()
    keys.remember(key)
    assert.equal(favcrm.config.path(), ws.saved_to)
    assert.equal(tonumber("600", 8), require("favcrm.core").stat(ws.saved_to).mode)
    local cfg = assert(favcrm.config.load())
    assert.equal(key, cfg.api_key)
    assert.equal(sandbox.url(), cfg.url)
    os.remove(ws.saved_to)
  end)

  it("hands the key to opts.store instead of the config file", function()
    local f = fields()
    local r = assert(c:request(f))
    local got, got_ws
    local ws = assert(c:verify(r, code_for(f.email), { store = function(secret, w)
      got, got_ws = secret, w
      return true
    end }))
    keys.remember(got:reveal())
    assert.equal(ws.api_key, got)
    assert.equal(ws, got_ws)
    assert.is_nil(require("favcrm.core").stat(favcrm.config.path()))
  end)

  it("raises on a missing request id", function()
    assert.has_error(function() c:verify(nil, "123456") end,
      "bad argument #1 to 'verify' (request or request id expected, got nil)")
  end)
end)

describe("client:call() on destructive tools", function()
  local c, key
  before_each(function()
    sandbox.reset()
    key = sandbox.account()
    keys.remember(key)
    c = favcrm.new({ url = sandbox.url(), api_key = key })
  end)
  after_each(function() c:close() end)

  it("refuses without confirmation and sends nothing", function()
    assert(c:tools())
    local before = calls()
    local r, err = c:call("cancel_booking", { bookingId = "bk_missing" })
    assert.is_nil(r)
    assert.equal("confirmation_required", err.code)
    assert.equal(before, calls())
  end)

  it("goes ahead with opts.confirm or an on_confirm that says yes", function()
    local asked
    local _, err = c:call("cancel_booking", { bookingId = "bk_missing" }, { on_confirm = function(tool)
      asked = tool.name
      return true
    end })
    assert.equal("cancel_booking", asked)
    assert.are_not.equal("confirmation_required", err and err.code)
    local _, err2 = c:call("cancel_booking", { bookingId = "bk_missing" }, { confirm = true })
    assert.are_not.equal("confirmation_required", err2 and err2.code)
  end)

  it("maps a plan gate to plan_required with the upgrade action", function()
    local _, err = c:call("send_whatsapp_message", { to = "+85290000000", text = "hi" })
    assert.equal("plan_required", err.code)
    assert.is_table(err.upgrade_action)
  end)
end)
