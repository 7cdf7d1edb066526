--- favcrm.recipes.flow: the machinery the two-step e-mail-code recipes share
-- (signup: register_organisation_request/verify; team_invite:
-- accept_team_invite_request/verify). A recipe is a *kind*: a table of
-- hooks (how to parse the user's details, how to ask for the code, how to
-- verify it, what to say at the end). This module owns everything else:
-- the states, reading a code out of free text, expiry on an injectable
-- clock, wrong codes, "I didn't get the e-mail", resends after a cooldown,
-- rate limits, existing accounts, storing the key, the post-signup checks,
-- a key that stops working, and snapshots.
--
-- States (flow.state):
--   need_fields   asking for details the request needs (name, e-mail, token)
--   awaiting_code a code was e-mailed; waiting for the user to paste it
--   offer_resend  asked "shall I send a new code?" (after the resend
--                 cooldown, or after a code was locked by wrong tries)
--   done          the key is stored and the checks ran (terminal for run();
--                 "is it still working?" re-runs the checks)
--   key_rejected  the new key was refused (revoked or leaked): the user was
--                 told how to revoke it and issue a new one (terminal)
--   stopped       ended without a key; flow.reason says why: existing_account,
--                 rate_limited, too_many_codes, cancelled, invalid_invite,
--                 already_accepted, no_answer, too_many_turns (terminal)
--
-- A flow never holds the API key: it goes from the verify answer straight to
-- the store callback (and the client, which uses it for later calls).
local core = require("favcrm.core")
local errors = require("favcrm.errors")
local util = require("favcrm.util")
local config = require("favcrm.config")

local M = {}

M.SNAPSHOT_VERSION = 1
M.STATES = {
  need_fields = true, awaiting_code = true, offer_resend = true,
  done = true, key_rejected = true, stopped = true,
}
M.TERMINAL = { done = true, key_rejected = true, stopped = true }

-- The options start()/resume() take (name -> Lua type).
M.OPTIONS = {
  store = "function", clock = "function", resend_cooldown = "number",
  max_requests = "number", message = "string",
}

--- A conversation (signup, team invite) as a resumable state machine, from
-- `signup.start` or `team_invite.start`; feed it the user's words with
-- `flow:handle(text)`.
---@class favcrm.recipes.Flow
---@field state string need_fields, awaiting_code, done, key_rejected or stopped
---@field reason? string why a stopped flow stopped
---@field fields table the fields gathered so far
---@field workspace? table the workspace once done (its key masked)
local Flow = {}
Flow.__index = Flow
M.Flow = Flow

-- -------------------------------------------------------------------------
-- Text helpers
-- -------------------------------------------------------------------------

local function int(n)
  return math.floor((tonumber(n) or 0) + 0.5)
end
M.int = int

local function plural(n, one, many)
  n = int(n)
  return n .. " " .. (n == 1 and one or (many or one .. "s"))
end
M.plural = plural

--- flow.duration(seconds) -> "45 seconds", "10 minutes", "about 12 minutes",
-- "about 1 hour and 5 minutes". Within 5 seconds of a whole minute it says
-- the minute (a TTL of 599 s is "10 minutes": clocks tick between answers).
function M.duration(s)
  s = math.max(0, int(s))
  if s < 60 then return plural(s, "second") end
  local m = math.floor((s + 30) / 60)
  local about = "about "
  if math.abs(s - m * 60) <= 5 then about = "" else m = math.floor((s + 59) / 60) end
  if m < 60 then return about .. plural(m, "minute") end
  local h = math.floor(m / 60)
  m = m % 60
  if m == 0 then return about .. plural(h, "hour") end
  return "about " .. plural(h, "hour") .. " and " .. plural(m, "minute")
end

--- flow.ago(seconds) -> "just now", "2 minutes ago"
function M.ago(s)
  if int(s) < 5 then return "just now" end
  return M.duration(s) .. " ago"
end

--- flow.clock_time(epoch) -> "14:05 UTC"
function M.clock_time(t)
  return os.date("!%H:%M UTC", math.floor(tonumber(t) or 0))
end

local function mask_key(v)
  local ok, m = pcall(core.mask_key, v)
  if ok and type(m) == "string" then return m end
  return "fav_mcp_..."
end

--- flow.scrub(text) -> text with anything shaped like an API key masked.
-- Every reply goes through it: a last line of defence, not the first.
function M.scrub(text)
  return (text:gsub("fav_mcp_[%w_%-]+", mask_key))
end

-- Lower case, curly apostrophes straightened, spaces squeezed.
local function norm(text)
  return (text:gsub("\226\128\153", "'"):gsub("\226\128\152", "'"):lower():gsub("%s+", " "))
end
M.norm = norm

local INTENTS = {
  no_email = { "didn'?t get", "did not get", "haven'?t got", "have not got", "haven'?t received",
    "have not received", "didn'?t receive", "did not receive", "not received", "never got", "never came",
    "never arrived", "no e%-?mail", "no mail", "no code", "not arrived", "hasn'?t arrived", "has not arrived",
    "hasn'?t come", "not here", "can'?t find", "cannot find", "can not find", "where is", "where's",
    "nothing arrived", "nothing came", "got nothing", "not getting", "isn'?t there" },
  resend = { "resend", "re%-send", "send it again", "send again", "send another", "send a new",
    "new code", "another code", "fresh code" },
  cancel = { "^cancel", "^stop", "never ?mind", "forget it", "^quit", "^abort", "don'?t want",
    "do not want", "^no thanks" },
  yes = { "^yes", "^yeah", "^yep", "^yup", "^sure", "^ok", "^okay", "^please", "^go ahead", "^y$",
    "^do it", "^send it", "^alright", "^why not" },
  no = { "^no", "^nope", "^not yet", "^n$", "^don'?t", "^do not", "^wait", "^hold on" },
  check = { "check", "working", "work%?", "status", "doctor", "test", "still", "ok%?", "okay%?" },
}

--- flow.intent(text, name) -> true when the user's words fit the intent.
function M.intent(text, name)
  local t = norm(text):gsub("^%s+", ""):gsub("[%s%.!]+$", "")
  for _, p in ipairs(INTENTS[name]) do
    if t:find(p) then return true end
  end
  return false
end

--- flow.find_code(text) -> "123456" or nil, digits_seen (a run of digits
-- that is not 6 long, so the caller can say what it read).
-- Accepts "123456", "123 456", "code: 123-456", "1 2 3 4 5 6".
function M.find_code(text)
  local odd
  for run in text:gmatch("%d[%d %-%.]*") do
    local digits = run:gsub("%D", "")
    if #digits == 6 then return digits end
    for piece in run:gmatch("%d+") do
      if #piece == 6 then return piece end
    end
    if not odd and #digits >= 4 and #digits <= 8 then odd = digits end
  end
  return nil, odd
end

--- flow.find_email(text) -> the first thing shaped like an e-mail address, or nil
function M.find_email(text)
  local e = text:match("[%w%.%%%+%-_']+@[%w%-]+%.[%w%.%-]+")
  if not e then return nil end
  e = e:gsub("^[%.']+", ""):gsub("[%.%-]+$", "")
  return e
end

-- -------------------------------------------------------------------------
-- Construction, snapshots
-- -------------------------------------------------------------------------

local function check_opts(opts, fname)
  if opts == nil then return {} end
  if type(opts) ~= "table" then
    error("bad argument #3 to '" .. fname .. "' (table of options expected, got " .. type(opts) .. ")", 4)
  end
  for k, v in pairs(opts) do
    local want = M.OPTIONS[k]
    if not want then error(fname .. ": unknown option '" .. tostring(k) .. "'", 4) end
    if type(v) ~= want then
      error(fname .. ": option '" .. k .. "' must be a " .. want .. " (got " .. type(v) .. ")", 4)
    end
  end
  return opts
end

local function check_client(client, fname)
  if type(client) ~= "table" or type(client.call) ~= "function" or type(client.now) ~= "function" then
    error("bad argument #1 to '" .. fname .. "' (favcrm client expected, got " .. type(client) .. ")", 4)
  end
end

local function copy(t)
  if type(t) ~= "table" then return t end
  local out = {}
  for k, v in pairs(t) do
    local tv = type(v)
    if tv == "table" then out[k] = copy(v)
    elseif tv == "string" or tv == "number" or tv == "boolean" then out[k] = v end
  end
  return out
end

local function new_flow(kind, client, opts)
  return setmetatable({
    kind = kind, client = client, opts = opts,
    state = "need_fields", fields = {}, requests = 0, turns = 0, last = "",
  }, Flow)
end

--- flow.start(kind, client, fields, opts, fname) -> flow (raises on misuse)
---@param kind table the recipe (`signup.kind`, `team_invite.kind`)
---@param client favcrm.Client
---@param fields? table the fields known up front
---@param opts? table flow options
---@param fname string the caller's name, for error messages
---@return favcrm.recipes.Flow flow
function M.start(kind, client, fields, opts, fname)
  fname = fname or (kind.name .. ".start")
  check_client(client, fname)
  if fields ~= nil and type(fields) ~= "table" then
    error("bad argument #2 to '" .. fname .. "' (table of fields expected, got " .. type(fields) .. ")", 3)
  end
  opts = check_opts(opts, fname)
  local self = new_flow(kind, client, opts)
  for k, v in pairs(fields or {}) do
    local name = kind.field_names[k]
    if not name then error(fname .. ": unknown field '" .. tostring(k) .. "'", 3) end
    if type(v) ~= "string" then
      error(fname .. ": field '" .. tostring(k) .. "' must be a string (got " .. type(v) .. ")", 3)
    end
    v = util.trim(v)
    if v ~= "" then self.fields[name] = v end
  end
  if opts.message then
    for k, v in pairs(kind.parse(self, opts.message, nil)) do
      if self.fields[k] == nil then self.fields[k] = v end
    end
  end
  self:_advance()
  return self
end

--- flow.resume(kind, client, snapshot, opts, fname) -> flow (raises on a
-- snapshot that is not one of this kind's)
---@param kind table the recipe
---@param client favcrm.Client
---@param snap table a snapshot of this kind
---@param opts? table flow options
---@param fname string the caller's name, for error messages
---@return favcrm.recipes.Flow flow
function M.resume(kind, client, snap, opts, fname)
  fname = fname or (kind.name .. ".resume")
  check_client(client, fname)
  if type(snap) ~= "table" then
    error("bad argument #2 to '" .. fname .. "' (snapshot table expected, got " .. type(snap) .. ")", 3)
  end
  if snap.kind ~= kind.name then
    error(fname .. ": the snapshot is of a '" .. tostring(snap.kind) .. "' flow, not '" .. kind.name .. "'", 3)
  end
  if tonumber(snap.v) ~= M.SNAPSHOT_VERSION then
    error(fname .. ": snapshot version " .. tostring(snap.v) .. " is not supported", 3)
  end
  if not M.STATES[snap.state] then
    error(fname .. ": the snapshot has an unknown state '" .. tostring(snap.state) .. "'", 3)
  end
  opts = check_opts(opts, fname)
  local self = new_flow(kind, client, opts)
  self.state = snap.state
  self.reason = snap.reason
  self.fields = copy(snap.fields) or {}
  self.asking = snap.asking
  self.req = copy(snap.req)
  self.requests = int(snap.requests)
  self.turns = int(snap.turns)
  self.offer = snap.offer
  self.attempts_left = snap.attempts_left and int(snap.attempts_left) or nil
  self.retry_at = snap.retry_at
  self.workspace = copy(snap.workspace)
  self.last = type(snap.reply) == "string" and snap.reply or ""
  return self
end

--- flow:snapshot() -> a plain table (strings, numbers, booleans, tables of
-- them; no key, no function) that resume() continues from.
---@return table snapshot
function Flow:snapshot()
  return {
    v = M.SNAPSHOT_VERSION, kind = self.kind.name, state = self.state, reason = self.reason,
    fields = copy(self.fields), asking = self.asking, req = copy(self.req), requests = self.requests,
    turns = self.turns, offer = self.offer, attempts_left = self.attempts_left, retry_at = self.retry_at,
    workspace = copy(self.workspace), reply = self.last,
  }
end

--- flow:now() -> epoch seconds on the flow's clock (opts.clock, else the client's)
---@return number seconds since the epoch
function Flow:now()
  if self.opts.clock then return self.opts.clock() end
  return self.client:now()
end

--- flow:reply() -> what to tell the user now
---@return string reply
function Flow:reply()
  return self.last
end

--- flow:finished() -> true in done, key_rejected and stopped
---@return boolean finished
function Flow:finished()
  return M.TERMINAL[self.state] == true
end

function Flow:_say(text)
  self.last = M.scrub(text)
  return self.last
end

function Flow:_stop(reason, text)
  self.state = "stopped"
  self.reason = reason
  return self:_say(text)
end

--- flow:stop(reason [, text]) -> reply. Ends the flow (state stopped).
---@param reason string why (kept in `flow.reason`)
---@param text? string what to say instead of the default
---@return string reply
function Flow:stop(reason, text)
  return self:_stop(reason or "cancelled", text or
    "OK, I've stopped here. Nothing more will be sent; you can start again whenever you like.")
end

-- -------------------------------------------------------------------------
-- The turn
-- -------------------------------------------------------------------------

-- The user's words without e-mail addresses, URLs and tokens, whose digits
-- are not a code.
local function without_addresses(text)
  return (text:gsub("[%w%.%%%+%-_']+@[%w%-%.]+", " "):gsub("https?://%S+", " "):gsub("%f[%w]%a+_[%w_]+", " "))
end

--- flow:handle(text) -> the next reply. Raises when text is not a string.
---@param text string the user's words
---@return string reply
function Flow:handle(text)
  if type(text) ~= "string" then
    error("bad argument #1 to 'handle' (the user's message, a string, expected; got " .. type(text) .. ")", 2)
  end
  self.turns = self.turns + 1
  if self.state == "done" then
    if M.intent(text, "check") then return self:check() end
    return self:_say(self.kind.after_done(self))
  end
  if self.state == "key_rejected" then
    if M.intent(text, "check") then return self:check() end
    return self:_say(self:_key_rejected_words())
  end
  if self.state == "stopped" then
    return self:_say(self:_stopped_words())
  end
  if M.intent(text, "cancel") and not M.find_code(without_addresses(text)) then
    return self:_stop("cancelled", "OK, I've stopped. " .. self.kind.cancelled_words(self))
  end
  if self.state == "need_fields" then return self:_on_fields(text) end
  if self.state == "offer_resend" then return self:_on_offer(text) end
  return self:_on_code(text)
end

function Flow:_stopped_words()
  if self.reason == "rate_limited" and self.retry_at then
    local left = self.retry_at - self:now()
    if left > 0 then
      return "FavCRM is still limiting code requests from this network. Please try again in "
        .. M.duration(left) .. " (after " .. M.clock_time(self.retry_at) .. "). I won't retry before then."
    end
    return "The wait should be over now: start a new sign-up and I'll ask FavCRM for a fresh code."
  end
  return "This conversation has ended (" .. tostring(self.reason) .. "). Start a new one whenever you're ready."
end

-- need_fields: merge what the user said, then ask for what is still missing.
function Flow:_on_fields(text)
  local found = self.kind.parse(self, text, self.asking)
  local got = false
  for k, v in pairs(found) do
    self.fields[k] = v
    got = true
  end
  return self:_advance(not got)
end

function Flow:_advance(nothing_new)
  local missing = {}
  for _, f in ipairs(self.kind.required) do
    if self.fields[f] == nil then missing[#missing + 1] = f end
  end
  if #missing > 0 then
    self.state = "need_fields"
    self.asking = missing[1]
    return self:_say(self.kind.question(self, missing, nothing_new))
  end
  local err = self.kind.check(self)
  if err then return self:_bad_field(err) end
  self.asking = nil
  return self:_send_code("first")
end

function Flow:_bad_field(err)
  local field = err.field or self.kind.required[1]
  local was = self.fields[field]
  self.fields[field] = nil
  self.state = "need_fields"
  self.asking = field
  return self:_say(self.kind.bad_field(self, field, was, err))
end

-- -------------------------------------------------------------------------
-- Sending the code (step 1)
-- -------------------------------------------------------------------------

function Flow:_max_requests()
  return int(self.opts.max_requests or 3)
end

local SENT_LEAD = {
  expired = "That code has expired (codes are valid for 10 minutes), so I've asked FavCRM for a fresh one. ",
  resend = "I've asked FavCRM to send a new code. ",
  locked = "I've asked FavCRM for a new code. ",
  new_email = "Got it, I'll use that address instead. ",
}

function Flow:_send_code(why)
  if self.requests >= self:_max_requests() then
    return self:_stop("too_many_codes", "I've already asked FavCRM for " .. plural(self.requests, "code")
      .. " in this conversation, and it only allows a few an hour from one network, so I'll stop here "
      .. "rather than keep asking. Please try again in about an hour; if the e-mails never arrive, check the "
      .. "address and your spam or junk folder first.")
  end
  local info, err = self.kind.request(self)
  if not info then return self:_fail(err, "request") end
  self.requests = self.requests + 1
  local now = self:now()
  local ttl = int(info.ttl)
  self.req = {
    id = info.request_id, masked_email = info.masked_email, expires_at = info.expires_at,
    ttl = ttl, local_expires_at = now + ttl, sent_at = now,
  }
  self.attempts_left = nil
  self.offer = nil
  self.state = "awaiting_code"
  local lead = why == "first" and self.kind.intro(self) or SENT_LEAD[why] or ""
  local where = self.req.masked_email or "your inbox"
  local tail
  if why == "first" then
    tail = "FavCRM has e-mailed a 6-digit code to " .. where .. ". It's valid for "
      .. M.duration(ttl) .. " (until " .. M.clock_time(self.req.local_expires_at)
      .. "). Please paste it here when it arrives."
  else
    tail = "A new 6-digit code is on its way to " .. where .. "; only the newest code works now. It's valid until "
      .. M.clock_time(self.req.local_expires_at) .. ". Please paste it here when it arrives."
  end
  return self:_say(lead .. tail)
end

-- Maps an error from any step to the state and the words for it.
function Flow:_fail(err, phase, hooked)
  local hook = not hooked and self.kind.on_error and self.kind.on_error(self, err, phase)
  if hook then return hook end
  local code = err.code
  if code == "rate_limited" then
    local wait = tonumber(err.retry_after) or 3600
    self.retry_at = self:now() + int(wait)
    local limit = ""
    if tonumber(err.limit) and type(err.window) == "string" then
      limit = " (at most " .. int(err.limit) .. " an " .. err.window .. ")"
    end
    return self:_stop("rate_limited", "FavCRM is limiting how many codes can be requested from this network"
      .. limit .. ", so I can't ask for a code right now. Please try again in " .. M.duration(wait)
      .. " (after " .. M.clock_time(self.retry_at) .. "). I won't keep retrying in the meantime.")
  end
  if code == "existing_account" then
    return self:_stop("existing_account", self.kind.existing_account_words(self, err))
  end
  if code == "unauthorized" then
    self.state = "key_rejected"
    return self:_say(self:_key_rejected_words())
  end
  if code == "invalid_arguments" and phase == "request" and err.field and self.kind.field_names[err.field] then
    return self:_bad_field(err)
  end
  -- Network trouble and the like: keep the conversation where it is.
  local again = phase == "request" and "Say \"try again\" in a moment and I'll ask again."
    or "Please send the code again in a moment."
  return self:_say("I couldn't get through to FavCRM just now (" .. tostring(err.message) .. "). Nothing is lost: "
    .. again)
end

-- -------------------------------------------------------------------------
-- Waiting for the code (step 2)
-- -------------------------------------------------------------------------

function Flow:_cooldown()
  return tonumber(self.opts.resend_cooldown) or 60
end

function Flow:_on_code(text)
  local code, odd = M.find_code(without_addresses(text))
  if code then return self:_try_code(code) end
  if self.kind.new_email then
    local reply = self.kind.new_email(self, text)
    if reply then return reply end
  end
  if M.intent(text, "no_email") then return self:_no_email() end
  if M.intent(text, "resend") then return self:_resend() end
  if odd then
    return self:_say("I read " .. odd .. ", which is " .. plural(#odd, "digit") .. ", but the code has 6 digits. "
      .. "Could you check the e-mail from FavCRM and paste all six?")
  end
  local left = (self.req and self.req.local_expires_at or self:now()) - self:now()
  local when = left > 0 and (" It's valid for " .. M.duration(left) .. " more (until "
    .. M.clock_time(self.req.local_expires_at) .. ").") or ""
  return self:_say("I'm waiting for the 6-digit code FavCRM e-mailed to " .. self:_where() .. "." .. when
    .. " Paste it here, or tell me if the e-mail hasn't arrived.")
end

function Flow:_where()
  return self.req and self.req.masked_email or "your address"
end

function Flow:_try_code(code)
  if self.req.local_expires_at and self:now() >= self.req.local_expires_at then
    return self:_send_code("expired")
  end
  local ws, err = self.kind.verify(self, code)
  if ws then return self:_finish(ws) end
  local hook = self.kind.on_error and self.kind.on_error(self, err, "verify")
  if hook then return hook end
  if err.code == "wrong_code" then
    local left = tonumber(err.attempts_left)
    if left and left <= 0 then return self:_locked() end
    self.attempts_left = left and int(left) or nil
    return self:_say("That code doesn't match. Please check the newest e-mail from FavCRM to " .. self:_where()
      .. " and try again" .. (left and (": you have " .. plural(left, "try", "tries") .. " left.") or "."))
  end
  if err.code == "expired_code" then
    if err.reason == "too_many_attempts" then return self:_locked() end
    return self:_send_code("expired")
  end
  if err.code == "invalid_arguments" and (err.field == "code" or err.path == "/code") then
    return self:_say("That doesn't look like the code: it's 6 digits, like 123 456. Could you paste it again?")
  end
  return self:_fail(err, "verify", true)
end

function Flow:_locked()
  self.state = "offer_resend"
  self.offer = "locked"
  self.attempts_left = 0
  return self:_say("That code isn't right either, and that was the last try: FavCRM has locked this code. "
    .. "Shall I send a new code to " .. self:_where() .. "? (yes/no)")
end

function Flow:_no_email()
  local since = self:now() - (self.req.sent_at or 0)
  local wait = self:_cooldown() - since
  local text = "I asked FavCRM to send it to " .. self:_where() .. " (partly hidden for privacy) "
    .. M.ago(since) .. ". E-mails can take a minute or two. Please check your spam or junk folder "
    .. "too, and look for a message from FavCRM with the subject \"" .. self.kind.mail_subject .. "\"."
  if self.kind.new_email then
    text = text .. " If that address is wrong, just tell me the right one."
  end
  if wait > 0 then
    return self:_say(text .. " If it still hasn't arrived in " .. M.duration(wait)
      .. ", tell me and I can send a new code.")
  end
  self.state = "offer_resend"
  self.offer = "no_email"
  return self:_say(text .. " It's been long enough that I can send a new code. Shall I? (yes/no)")
end

function Flow:_resend()
  local since = self:now() - (self.req.sent_at or 0)
  local wait = self:_cooldown() - since
  if wait > 0 then
    return self:_say("The last code went to " .. self:_where() .. " " .. M.ago(since)
      .. ", so let's give it a moment: e-mails can take a minute or two, and check your spam or junk "
      .. "folder too. If it still hasn't arrived in " .. M.duration(wait) .. ", ask me again and I'll send a new one.")
  end
  return self:_send_code("resend")
end

function Flow:_on_offer(text)
  if M.find_code(without_addresses(text)) then return self:_on_code(text) end
  if M.intent(text, "yes") or M.intent(text, "resend") then
    return self:_send_code(self.offer == "locked" and "locked" or "resend")
  end
  if M.intent(text, "no") then
    if self.offer == "locked" then
      return self:_stop("cancelled", "OK, I won't ask for a new code. " .. self.kind.cancelled_words(self))
    end
    self.state = "awaiting_code"
    self.offer = nil
    return self:_say("OK. Paste the code here when the e-mail arrives.")
  end
  return self:_say("Shall I send a new code to " .. self:_where() .. "? Please answer yes or no.")
end

-- -------------------------------------------------------------------------
-- After the code: store, check, report
-- -------------------------------------------------------------------------

local function default_store(client)
  return function(secret)
    return config.save({ api_key = secret, url = client:savable_url() })
  end
end

-- Hands the secret to the store; returns where it went (string or true) or
-- nil, message.
function Flow:_store(secret, ws)
  local store = self.opts.store or default_store(self.client)
  local public = {}
  for k, v in pairs(ws) do
    if k ~= "api_key" then public[k] = v end
  end
  local ok, res, err = pcall(store, secret, public)
  if not ok then return nil, "the store callback raised an error" end
  if res == nil or res == false then
    local msg = type(err) == "table" and err.message or err
    return nil, M.scrub(tostring(msg or "the store callback returned nothing"))
  end
  return res
end

-- The checks after signup and on "is it still working?": doctor, then
-- list_services. Returns a table of facts, or nil and the error when the key
-- is refused.
function Flow:_checks()
  local facts = { notes = {} }
  local rep = self.client:doctor()
  facts.report = rep
  for _, p in ipairs(rep.problems or {}) do
    if p.code == "unauthorized" then return nil, p end
  end
  facts.reachable = rep.reachable
  facts.tool_count = rep.tool_count
  facts.authenticated = rep.authenticated
  facts.plan = type(rep.plan) == "table" and rep.plan.plan or nil
  for _, p in ipairs(rep.problems or {}) do
    facts.notes[#facts.notes + 1] = p.check .. ": " .. tostring(p.message)
  end
  if not self.client:has_api_key() then return facts end
  local services, err = self.client:call("list_services", {})
  if services == nil then
    if err.code == "unauthorized" then return nil, err end
    facts.services_error = err
  else
    facts.services = type(services) == "table" and #services or 0
  end
  return facts
end

function Flow:_finish(ws)
  local secret = ws.api_key
  ws.api_key = nil
  local where, serr = self:_store(secret, ws)
  self.workspace = {
    organisation_id = ws.organisation_id, company_id = ws.company_id, user_id = ws.user_id,
    role = ws.role, login_url = ws.login_url, masked_key = mask_key(secret),
    saved_to = type(where) == "string" and where or nil, store_error = serr,
  }
  secret = nil -- luacheck: ignore 311
  return self:check(true)
end

--- flow:check() -> reply: (re)runs doctor and list_services with the key.
-- In done or key_rejected; a refused key moves the flow to key_rejected.
---@param first? boolean true for the check right after the key was stored
---@return string reply
function Flow:check(first)
  local facts = self:_checks()
  if not facts then
    self.state = "key_rejected"
    return self:_say((first and "The code was right, but " or "")
      .. self:_key_rejected_words())
  end
  self.state = "done"
  self.reason = nil
  if not first and not facts.authenticated then
    return self:_say("I couldn't confirm that the key works right now"
      .. (#facts.notes > 0 and (": " .. table.concat(facts.notes, "; ")) or "") .. ". If this assistant was "
      .. "restarted, make sure it reads the saved key (the FavCRM config file or FAVCRM_API_KEY).")
  end
  return self:_say(self.kind.success(self, facts, first))
end

--- flow.describe_checks(facts) -> sentences about doctor and list_services
function M.describe_checks(facts)
  local out = {}
  if facts.reachable then
    out[#out + 1] = "FavCRM answered" .. (facts.tool_count and (" (" .. plural(facts.tool_count, "tool")
      .. " available)") or "") .. (facts.authenticated and " and accepted the key" or "") .. "."
  end
  if facts.plan then out[#out + 1] = "The workspace is on the " .. facts.plan .. " plan." end
  if facts.services == 0 then
    out[#out + 1] = "It has no services yet: that's expected for a new workspace, and it means "
      .. "everything is connected and ready for you to set up."
  elseif facts.services then
    out[#out + 1] = "It has " .. plural(facts.services, "service") .. "."
  elseif facts.services_error then
    out[#out + 1] = "I couldn't list the services just now (" .. tostring(facts.services_error.message) .. ")."
  end
  if #facts.notes > 0 then
    out[#out + 1] = "Worth knowing: " .. table.concat(facts.notes, "; ") .. "."
  end
  return table.concat(out, " ")
end

--- flow.stored_words(workspace) -> "I've saved the API key (fav_mcp_...cdef) to PATH ..."
function M.stored_words(ws)
  if ws.store_error then
    return "The API key (" .. ws.masked_key .. ") is loaded for this session, but I couldn't save it ("
      .. ws.store_error .. "). It's shown only once, so if this session ends before it's saved, revoke it "
      .. "in the portal (Settings > MCP Keys) and create a new one."
  end
  return "I've saved the API key (" .. ws.masked_key .. ")" .. (ws.saved_to and (" to " .. ws.saved_to) or "")
    .. ". FavCRM shows a key only once, and I won't repeat it here."
end

function Flow:_key_rejected_words()
  local portal = (self.workspace and self.workspace.login_url) or "https://app.favcrm.io"
  return "FavCRM refused the API key" .. (self.workspace and (" (" .. self.workspace.masked_key .. ")") or "")
    .. ": it has probably been revoked. If you revoked it, or think it may have leaked: sign in to the "
    .. "FavCRM portal at " .. portal
    .. ", open Settings > MCP Keys, revoke the old key and create a new one. Then store the new key where "
    .. "this assistant reads it (the FavCRM config file or the FAVCRM_API_KEY environment variable); please "
    .. "don't paste it into this chat."
end

--- flow.call(client, name, args) -> payload or nil, err: the tool-call
-- helper the recipes use (through client:call, so validation, sessions and
-- errors are the client's).
function M.call(client, name, args, opts)
  local data, res = client:call(name, args or {}, opts)
  if data == nil then
    if errors.is(res) then return nil, res end
    return nil, errors.new("protocol", name .. " answered no data")
  end
  return data
end

--- flow.expiry(client, expires_at_iso) -> expires_at (epoch), ttl (seconds)
-- or nil, err: ttl is measured on the server's clock when it is known.
function M.expiry(client, iso, tool)
  local at = util.parse_iso8601(iso)
  if not at then
    return nil, errors.new("protocol", tool .. " answered an expiresAt that is not ISO-8601")
  end
  local now = client:server_time() or client:now()
  return at, math.floor(at - now)
end

--- flow.secret_from(data, tool) -> secret or nil, err. Takes the apiKey out of
-- a verify answer (and removes it from the table).
function M.secret_from(data, tool)
  local key = type(data) == "table" and data.apiKey or nil
  if type(data) == "table" then data.apiKey = nil end
  if type(key) ~= "string" or key:sub(1, 8) ~= "fav_mcp_" or #key < 16 then
    return nil, errors.new("protocol", tool .. " answered no valid API key (fav_mcp_...)")
  end
  return core.secret(key)
end

-- -------------------------------------------------------------------------
-- The terminal driver
-- -------------------------------------------------------------------------

local RUN_OPTIONS = { ask = "function", say = "function", fields = "table", prompt = "string",
  max_turns = "number" }

--- flow.run(kind, client, opts, fname) -> flow: asks and says until the flow
-- is finished, ask() returns nil, or max_turns (default 40) is reached.
function M.run(kind, client, opts, fname)
  if type(opts) ~= "table" or type(opts.ask) ~= "function" or type(opts.say) ~= "function" then
    error("bad argument #2 to '" .. fname .. "' (table with ask and say functions expected)", 3)
  end
  local start_opts = {}
  for k, v in pairs(opts) do
    local want = RUN_OPTIONS[k]
    if want then
      if type(v) ~= want then error(fname .. ": option '" .. k .. "' must be a " .. want, 3) end
    else
      start_opts[k] = v
    end
  end
  local f = M.start(kind, client, opts.fields or {}, start_opts, fname)
  opts.say(f:reply())
  local max_turns = int(opts.max_turns or 40)
  local turns = 0
  while not f:finished() do
    if turns >= max_turns then
      opts.say(f:_stop("too_many_turns", "We've gone back and forth " .. plural(turns, "time")
        .. " without finishing, so I'll stop here. Nothing more will be sent; start again whenever you like."))
      break
    end
    turns = turns + 1
    local line = opts.ask(opts.prompt or "> ")
    if line == nil then
      opts.say(f:_stop("no_answer", "I'll stop here for now. " .. kind.cancelled_words(f)))
      break
    end
    opts.say(f:handle(tostring(line)))
  end
  return f
end

return M
