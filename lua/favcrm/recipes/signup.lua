--- favcrm.recipes.signup: the "sign me up for FavCRM" conversation, as a
-- resumable, turn-based state machine (see favcrm.recipes.flow for the
-- shared machinery).
--
--   local signup = require("favcrm.recipes.signup")
--   local flow = signup.start(client, {}, { message = "Sign me up. The business is a yoga "
--     .. "studio called Stretch + Breathe in Hong Kong." })
--   print(flow:reply())                 -- asks for the e-mail address
--   print(flow:handle("ann@example.com"))  -- code sent to an*@example.com
--   print(flow:handle("it's 123 456"))  -- verified, key stored, checks run
--   local snap = flow:snapshot()        -- plain table, no secret
--   flow = signup.resume(client, snap)  -- ... in another request or process
--
-- States (flow.state) and how they move:
--   need_fields   -> awaiting_code   when the business name and e-mail are known
--                                    and FavCRM accepted the request
--   need_fields   -> stopped         existing_account, rate_limited, cancelled
--   awaiting_code -> done            the code was right: key stored, doctor and
--                                    list_services ran (an empty list is success)
--   awaiting_code -> key_rejected    the code was right but the key was refused
--   awaiting_code -> awaiting_code   wrong code (tries left said), expired code
--                                    (a fresh one requested, once per expiry),
--                                    "I didn't get it" inside the cooldown, a
--                                    different e-mail address (new request)
--   awaiting_code -> offer_resend    "I didn't get it" after the cooldown, or the
--                                    code was locked by too many wrong tries
--   offer_resend  -> awaiting_code   "yes" (a new code is sent) or "no"
--   any           -> stopped         existing account, rate limited (retry time
--                                    said, never retried), too many codes,
--                                    "cancel"
--   done          -> key_rejected    "is it still working?" after the key was
--                                    revoked; key_rejected -> done when it works
--
-- Options (start and resume): store(secret, workspace) (default: the config
-- file, favcrm.config.save), clock() (default client:now()), resend_cooldown
-- (seconds, default 60), max_requests (codes per flow, default 3), message
-- (start only: the user's opening words, parsed for the details).
local flow = require("favcrm.recipes.flow")
local registration = require("favcrm.registration")
local util = require("favcrm.util")
local core = require("favcrm.core")

local M = {}

M.STATES = flow.STATES

-- Country names (lower case) -> ISO 3166-1 alpha-2.
local COUNTRY_NAMES = {
  ["hong kong"] = "HK", ["hongkong"] = "HK", ["singapore"] = "SG", ["united kingdom"] = "GB", ["uk"] = "GB",
  ["england"] = "GB", ["scotland"] = "GB", ["wales"] = "GB", ["britain"] = "GB", ["great britain"] = "GB",
  ["united states"] = "US", ["usa"] = "US", ["america"] = "US", ["australia"] = "AU", ["canada"] = "CA",
  ["japan"] = "JP", ["taiwan"] = "TW", ["china"] = "CN", ["new zealand"] = "NZ", ["malaysia"] = "MY",
  ["india"] = "IN", ["germany"] = "DE", ["france"] = "FR", ["ireland"] = "IE", ["spain"] = "ES",
  ["italy"] = "IT", ["netherlands"] = "NL", ["holland"] = "NL", ["macau"] = "MO", ["macao"] = "MO",
  ["philippines"] = "PH", ["thailand"] = "TH", ["vietnam"] = "VN", ["viet nam"] = "VN", ["indonesia"] = "ID",
  ["south korea"] = "KR", ["korea"] = "KR", ["mexico"] = "MX", ["brazil"] = "BR", ["south africa"] = "ZA",
  ["united arab emirates"] = "AE", ["uae"] = "AE", ["switzerland"] = "CH", ["sweden"] = "SE",
  ["norway"] = "NO", ["denmark"] = "DK", ["portugal"] = "PT", ["belgium"] = "BE", ["austria"] = "AT",
  ["poland"] = "PL", ["israel"] = "IL", ["egypt"] = "EG", ["nigeria"] = "NG", ["kenya"] = "KE",
  ["argentina"] = "AR", ["chile"] = "CL", ["colombia"] = "CO", ["peru"] = "PE", ["finland"] = "FI",
  ["greece"] = "GR", ["turkey"] = "TR", ["saudi arabia"] = "SA", ["qatar"] = "QA",
}
local COUNTRY_DISPLAY = {
  HK = "Hong Kong", SG = "Singapore", GB = "the United Kingdom", US = "the United States", AU = "Australia",
  CA = "Canada", JP = "Japan", TW = "Taiwan", CN = "China", NZ = "New Zealand", MY = "Malaysia", IN = "India",
  DE = "Germany", FR = "France", IE = "Ireland", ES = "Spain", IT = "Italy", NL = "the Netherlands",
  MO = "Macau", PH = "the Philippines", TH = "Thailand", VN = "Vietnam", ID = "Indonesia", KR = "South Korea",
}
-- Countries with one time zone: the zone to send when the user names the country.
local ZONE_OF = {
  HK = "Asia/Hong_Kong", SG = "Asia/Singapore", GB = "Europe/London", JP = "Asia/Tokyo", TW = "Asia/Taipei",
  MY = "Asia/Kuala_Lumpur", IN = "Asia/Kolkata", DE = "Europe/Berlin", FR = "Europe/Paris",
  IE = "Europe/Dublin", IT = "Europe/Rome", NL = "Europe/Amsterdam", MO = "Asia/Macau", PH = "Asia/Manila",
  TH = "Asia/Bangkok", VN = "Asia/Ho_Chi_Minh", KR = "Asia/Seoul", AE = "Asia/Dubai", CH = "Europe/Zurich",
  SE = "Europe/Stockholm", NO = "Europe/Oslo", DK = "Europe/Copenhagen", BE = "Europe/Brussels",
  AT = "Europe/Vienna", PL = "Europe/Warsaw", IL = "Asia/Jerusalem", EG = "Africa/Cairo", NG = "Africa/Lagos",
  KE = "Africa/Nairobi", FI = "Europe/Helsinki", GR = "Europe/Athens", TR = "Europe/Istanbul",
  SA = "Asia/Riyadh", QA = "Asia/Qatar", CN = "Asia/Shanghai", NZ = "Pacific/Auckland",
}

-- Words -> industry (the published enum), checked in this order. A word
-- ending in "*" matches as a prefix ("tutor*": tutor, tutors, tutoring).
local INDUSTRY_WORDS = {
  { "fitness", { "fitness", "yoga", "pilates", "gym*", "crossfit", "personal train*", "martial art*", "boxing",
    "dance", "spin", "climbing", "barre", "bootcamp", "workout*" } },
  { "beauty", { "beauty", "salon*", "nail*", "hair*", "barber*", "spa", "spas", "lash*", "brow*", "makeup",
    "cosmetic*", "skincare", "skin care", "massage*", "facial*" } },
  { "tutoring", { "tutor*", "tuition", "lesson*", "coaching", "academy", "school*", "learning cent*",
    "teach*" } },
  { "hospitality", { "hospitality", "restaurant*", "cafe*", "caf\195\169*", "coffee", "bar", "bars",
    "bakery", "bakeries", "hotel*", "hostel*", "catering", "bistro*", "pub", "pubs" } },
  { "retail", { "retail*", "shop*", "store*", "boutique*", "florist*", "e%-?commerce" } },
  { "services", { "services", "consult*", "agency", "agencies", "cleaning", "repair*", "clinic*",
    "plumb*", "studio*" } },
  { "other", { "other" } },
}

M.COUNTRY_NAMES = COUNTRY_NAMES

local function find_country(text)
  local low = flow.norm(text)
  local best, best_len
  for name, code in pairs(COUNTRY_NAMES) do
    if #name > (best_len or 0) and low:find("%f[%w]" .. name:gsub("%s", "%%s") .. "%f[^%w]") then
      best, best_len = code, #name
    end
  end
  if best then return best end
  -- "in HK", "country: SG", or the whole answer "HK"
  local code = text:match("%f[%w]in%s+(%u%u)%f[^%w]") or text:match("[Cc]ountry%s*[:=]?%s*(%a%a)%f[^%w]")
    or text:match("^%s*(%u%u)%s*%.?%s*$")
  if code and util.is_country(code:upper()) then return code:upper() end
  return nil
end

local function find_timezone(text)
  for tz in text:gmatch("%f[%w](%u[%a_]+/[%a_%-]+[/%a_%-]*)") do
    if util.is_timezone(tz) ~= false then return tz end
  end
  if text:find("%f[%w]UTC%f[^%w]") then return "UTC" end
  return nil
end

local function find_industry(text)
  local low = flow.norm(text)
  for _, entry in ipairs(INDUSTRY_WORDS) do
    for _, w in ipairs(entry[2]) do
      local pat = w:sub(-1) == "*" and ("%f[%w]" .. w:sub(1, -2)) or ("%f[%w]" .. w .. "%f[^%w]")
      if low:find(pat) then return entry[1] end
    end
  end
  return nil
end

-- The country a whole phrase names ("Hong Kong", "the UK", "HK"), or nil.
local function exact_country(s)
  s = util.trim(s):gsub("[%.!?,;]+$", "")
  local low = flow.norm(s):gsub("^the%s+", "")
  if COUNTRY_NAMES[low] then return COUNTRY_NAMES[low] end
  if s:match("^%u%u$") and util.is_country(s) then return s end
  return nil
end

-- Cuts a captured name at the end of its sentence or clause, and drops a
-- trailing "in Hong Kong" / "based in Singapore" / "from the UK".
local function tidy_name(s)
  s = s:gsub("%s*[%w%.%%%+%-_']+@[%w%-]+%.[%w%.%-]+.*$", "")
  local cut = s:find("[%.!?]%s") or s:find("[,;\n]") or s:find("%s+and%s+my%s") or s:find("%s+%-%-?%s")
  if cut then s = s:sub(1, cut - 1) end
  s = s:gsub("[%.!?]+%s*$", "")
  local pos = 1
  while true do
    local a, b = s:find("%s+in%s+", pos)
    if not a then a, b = s:find("%s+from%s+", pos) end
    if not a then break end
    if exact_country(s:sub(b + 1)) then
      s = s:sub(1, a - 1):gsub("%s+based$", ""):gsub("%s+located$", "")
      break
    end
    pos = b + 1
  end
  s = s:gsub('^"', ""):gsub('"$', ""):gsub("^\226\128\156", ""):gsub("\226\128\157$", "")
  return util.trim(s)
end

local function find_name(text, asking)
  local q = text:match('"([^"]+)"') or text:match("\226\128\156(.-)\226\128\157")
  if q and util.trim(q) ~= "" then return util.trim(q) end
  local patterns = {
    "[Cc]alled%s+(.+)", "[Nn]amed%s+(.+)", "[Bb]usiness%s+name%s+is%s+(.+)", "[Cc]ompany%s+name%s+is%s+(.+)",
    "[Bb]usiness%s+is%s+(.+)", "[Cc]ompany%s+is%s+(.+)", "[Ss]tudio%s+is%s+(.+)",
  }
  for _, p in ipairs(patterns) do
    local s = text:match(p)
    if s and not s:match("^an?%s") then
      s = tidy_name(s)
      if s ~= "" then return s end
    end
  end
  if asking == "organisationName" and not flow.find_email(text) then
    local s = text:gsub("^%s*[Ii]t'?s%s+", ""):gsub("^%s*[Ii]t%s+is%s+", ""):gsub("^%s*[Ww]e'?re%s+", "")
      :gsub("^%s*[Ww]e%s+are%s+", ""):gsub("^%s*[Tt]he%s+name%s+is%s+", "")
    local words = select(2, s:gsub("%S+", ""))
    s = tidy_name(s)
    if s ~= "" and words <= 8 then return s end
  end
  return nil
end

--- signup.parse(text [, asking]) -> the fields found in the user's words
-- (email, organisationName, industry, country, timezone). `asking` is the
-- field just asked for: a bare answer is taken as that field.
---@param text string the user's words
---@param asking? string the field just asked for
---@return table fields the fields found (email, organisationName, industry, country, timezone)
function M.parse(text, asking)
  local found = {}
  found.email = flow.find_email(text)
  found.organisationName = find_name(text, asking)
  found.industry = find_industry(text)
  found.country = find_country(text)
  found.timezone = find_timezone(text)
  if found.country and not found.timezone then found.timezone = ZONE_OF[found.country] end
  return found
end

--- The business as the flow words it: `Name (industry, country, time zone Z)`.
---@param fields table signup fields
---@return string text
local function describe(fields)
  local bits = {}
  if fields.industry then bits[#bits + 1] = fields.industry end
  if fields.country then bits[#bits + 1] = COUNTRY_DISPLAY[fields.country] or fields.country end
  if fields.timezone then bits[#bits + 1] = "time zone " .. fields.timezone end
  return (fields.organisationName or "your business") .. (#bits > 0 and (" (" .. table.concat(bits, ", ") .. ")")
    or "")
end
M.describe = describe

local kind = {
  name = "signup",
  required = { "organisationName", "email" },
  field_names = {
    email = "email", organisationName = "organisationName", organisation_name = "organisationName",
    organizationName = "organisationName", organization_name = "organisationName",
    industry = "industry", country = "country", timezone = "timezone",
  },
  mail_subject = "Your FavCRM verification code",
}

function kind.parse(_, text, asking)
  local found = M.parse(text, asking)
  local out = {}
  for k, v in pairs(found) do out[k] = v end
  return out
end

function kind.question(self, missing, nothing_new)
  local f = self.fields
  local sorry = nothing_new and self.turns > 0 and "Sorry, I didn't catch that. " or ""
  if #missing == 2 then
    return sorry .. "Happy to set up FavCRM for you. What's the business called, and which e-mail address "
      .. "should own the account? FavCRM will e-mail a 6-digit code there to confirm it's yours."
  end
  if missing[1] == "email" then
    return sorry .. "Great: " .. describe(f) .. ". Which e-mail address should own the account? FavCRM will "
      .. "send a 6-digit code there to confirm it's yours."
  end
  return sorry .. "Thanks. What's the name of the business? (2 to 80 characters)"
end

function kind.check(self)
  local args, err = registration.check_request(self.fields)
  if not args then return err end
  self.fields = args
  return nil
end

function kind.bad_field(_, field, was, err)
  if field == "email" then
    return "That e-mail address doesn't look right" .. (was and (" (" .. was .. ")") or "")
      .. ". Which address should FavCRM send the code to?"
  end
  if field == "organisationName" then
    return "The business name needs to be 2 to 80 characters" .. (was and (" (I had \"" .. was .. "\")") or "")
      .. ". What's the business called?"
  end
  return "I couldn't use the " .. field .. " (" .. tostring(err.message) .. "). Could you tell me again?"
end

function kind.intro(self)
  return "Thanks! I've asked FavCRM to create a workspace for " .. describe(self.fields) .. ". "
end

function kind.request(self)
  local req, err = self.client:request(self.fields)
  if not req then return nil, err end
  return { request_id = req.request_id, masked_email = req.masked_email, expires_at = req.expires_at,
    ttl = req.ttl }
end

function kind.verify(self, code)
  return self.client:verify(self.req.id, code)
end

-- A different e-mail address while waiting for the code: a new request.
function kind.new_email(self, text)
  local e = flow.find_email(text)
  if not e or e:lower() == (self.fields.email or ""):lower() then return nil end
  local old = self.fields.email
  self.fields.email = e
  local err = kind.check(self)
  if err then
    self.fields.email = old
    return self:_say("That e-mail address doesn't look right (" .. e .. "). The code went to "
      .. self:_where() .. "; paste it here, or give me a different address.")
  end
  return self:_send_code("new_email")
end

function kind.existing_account_words(self, err)
  local portal = type(err.loginUrl) == "string" and err.loginUrl or "https://app.favcrm.io"
  local settings = type(err.settingsUrl) == "string" and (" (" .. err.settingsUrl .. ")") or ""
  local who = self.fields.email and core.mask_email(self.fields.email) or "that address"
  return "There's already a FavCRM account for " .. who .. ", so I can't create a new workspace with it. "
    .. "To connect this assistant to the existing account: sign in to the FavCRM portal at " .. portal
    .. ", open Settings > MCP Keys" .. settings .. ", create a key, and store it where this assistant reads it "
    .. "(the FavCRM config file or the FAVCRM_API_KEY environment variable). Please don't paste the key into "
    .. "this chat. If you meant to create a separate workspace, start again with a different e-mail address."
end

function kind.cancelled_words()
  return "No workspace was created. Just ask whenever you want to sign up."
end

function kind.success(self, facts, first)
  local ws = self.workspace
  local head
  if first then
    head = "You're all set: the FavCRM workspace for " .. (self.fields.organisationName or "your business")
      .. " is ready. " .. flow.stored_words(ws) .. " "
  else
    head = "Everything is still working. "
  end
  local text = head .. flow.describe_checks(facts)
  if first then
    text = text .. " Next steps: 1) add your first service (for example \"a 60-minute class for 180\"); "
      .. "2) invite your team; 3) sign in to the portal at " .. (ws.login_url or "https://app.favcrm.io")
      .. " to look around. If the key ever leaks, revoke it in the portal (Settings > MCP Keys) and create a new one."
  end
  return text
end

function kind.after_done(self)
  return "Your workspace for " .. (self.fields.organisationName or "your business") .. " is set up. "
    .. "Ask me to check that it's still working any time, or tell me what you'd like to do in FavCRM next."
end

M.kind = kind

--- signup.start(client, fields [, opts]) -> flow. fields: as client:request
-- takes them (email, organisationName, industry, country, timezone), any of
-- them missing; missing required ones are asked for.
---@param client favcrm.Client
---@param fields? table signup fields (any may be missing)
---@param opts? table flow options (clock, store, on_expiry, ...)
---@return favcrm.recipes.Flow flow
function M.start(client, fields, opts)
  return flow.start(kind, client, fields, opts, "signup.start")
end

--- signup.resume(client, snapshot [, opts]) -> flow, continuing a snapshot
---@param client favcrm.Client
---@param snap table what `flow:snapshot()` returned
---@param opts? table flow options
---@return favcrm.recipes.Flow flow
function M.resume(client, snap, opts)
  return flow.resume(kind, client, snap, opts, "signup.resume")
end

--- signup.run(client, {ask = fn(prompt) -> line|nil, say = fn(text), fields =,
-- message =, prompt =, max_turns = (default 40), store =, clock =, ...})
-- -> flow. Drives a flow in a terminal or script until it is finished, the
-- user stops answering (ask returns nil), or max_turns is reached.
---@param client favcrm.Client
---@param opts table `ask`, `say`, `fields`, `message`, `prompt`, `max_turns`, and the flow options
---@return favcrm.recipes.Flow flow
function M.run(client, opts)
  return flow.run(kind, client, opts, "signup.run")
end

return M
