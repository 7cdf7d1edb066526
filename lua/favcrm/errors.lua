--- favcrm.errors: the error objects every expected failure comes back as.
-- An error is a table with `code` (a short stable string), `message` (for
-- people; never holds a secret) and fields that fit the code (`status`,
-- `retry_after`, `path`, `keyword`, `upgrade_action`, `hint`, ...).
-- Recipes and programs branch on `code`, never on the message.
--
-- M.CODES is the one list of codes (docs/ERRORS.md says the same, and
-- spec/errors_spec.lua checks that they agree). A new code is added to both,
-- never invented ad hoc: errors.new raises on a code not in the list.
local has_core, core = pcall(require, "favcrm.core")

--- An expected failure, as `nil, err` gives it; `tostring(err)` is
-- `favcrm: CODE: message`. Other fields fit the code.
---@class favcrm.Error
---@field code string one of favcrm.errors.CODES (docs/ERRORS.md)
---@field message string for people; never holds a secret
---@field status? integer the HTTP status (`http`)
---@field retry_after? integer seconds to wait (`rate_limited`)
---@field upgrade_action? string how to get the plan (`plan_required`)
---@field suggestions? string[] near tool names (`unknown_tool`)
---@field tool? string the tool's name, for a tool's failure
---@field path? string JSON Pointer of the failing value (`invalid_arguments`)
---@field keyword? string the schema keyword that failed
---@field source? string where a bad setting came from (`config_error`)
---@field hint? string what to do about it
---@field unlisted? boolean the C core used a code not in the list (a bug)

local M = {}

--- The one list of error codes: code -> what it means (docs/ERRORS.md
-- says the same).
---@class favcrm.ErrorCodes
---@field [string] string the meaning of a code
M.CODES = {
  -- the caller's input
  invalid_arguments = "bad input: a field, an option or a tool argument fails its check; nothing was sent",
  config_error = "the configuration found outside the call's options (environment, config file) is unusable",
  confirmation_required = "the tool is destructive and no confirmation was given; nothing was sent",
  -- registration and the server's answers
  expired_code = "the e-mailed code is older than its 10-minute lifetime",
  wrong_code = "the e-mailed code does not match",
  existing_account = "an account already exists for this e-mail address",
  rate_limited = "the server limits the rate; `retry_after` says how many seconds to wait",
  unauthorized = "the API key is missing, unknown, revoked, or may not do this",
  plan_required = "the workspace's plan does not include this; `upgrade_action` says how to get it",
  unknown_tool = "the server has no tool of that name; `suggestions` lists near names",
  tool_error = "the tool ran and reported a failure the client has no narrower code for",
  not_found = "what the tool was asked about does not exist (a server answer), or a local file is missing",
  elicitation_required = "the user must open `url` first (URL-mode elicitation, MCP error -32042), then retry",
  -- transport and protocol
  timeout = "the call's deadline passed",
  network = "the connection failed or dropped (DNS, refused, reset, a stdio server that ended)",
  tls = "TLS failed: certificate, verification or handshake",
  http = "an HTTP status the protocol does not expect; `status` holds it",
  protocol = "the server broke the MCP or JSON-RPC rules, or answered something unusable",
  session_expired = "the server forgot the MCP session and a fresh one failed too",
  too_large = "an answer, an event or an input went over its bound",
  cancelled = "the call or the prompt was cancelled (by the user, or an empty input)",
  spawn = "the stdio server process could not be started",
  -- local resources
  io = "a local file or terminal operation failed (config file, atomic write, folder creation)",
  no_terminal = "a secret had to be typed but there is no terminal to read it from",
  invalid_schema = "a JSON Schema does not compile",
  -- the favcrm command line only
  usage = "favcrm CLI: a bad command line (exit status 1)",
  no_key = "favcrm CLI: the command needs an API key and none is configured (exit status 3)",
}

---------------------------------------------------------------------------
-- The redactor: every message built from what a server or a child sent
-- passes it (errors.new and errors.wrap run it on `message`, `hint` and a
-- text `data`; the CLI on what it prints for errors and warnings). It masks
-- the keys of the live clients (errors.protect) wherever they occur, and
-- anything shaped like a FavCRM key (fav_mcp_...). What a person asked to
-- see (`--show-key`) does not go through it.
---------------------------------------------------------------------------

local protected = setmetatable({}, { __mode = "k" }) -- favcrm.Secret -> true

--- errors.protect(secret): masks this secret's text in every later message
-- while the secret is alive and open (clients protect their key).
---@param secret any a favcrm.Secret (anything else is ignored)
function M.protect(secret)
  if has_core and core.is_secret(secret) then protected[secret] = true end
end

local function mask_token(tok)
  if has_core then return core.mask_key(tok) end
  return "fav_mcp_****"
end

--- errors.redact(text) -> text with the protected keys and OAuth tokens and
-- anything shaped like a key or a FavCRM OAuth token (fav_mcp_, fav_oat_,
-- fav_ort_ followed by key characters) masked. Other values
-- come back as they are.
---@param text any the text to redact
---@return any text the redacted text (a non-string as it came)
function M.redact(text)
  if type(text) ~= "string" then return text end
  if has_core and next(protected) ~= nil then
    local list = {}
    for s in pairs(protected) do
      if s:is_closed() then protected[s] = nil else list[#list + 1] = s end
    end
    if #list > 0 then text = core.redact(text, (table.unpack or unpack)(list)) end
  end
  if text:find("fav_mcp_", 1, true) then
    text = text:gsub("fav_mcp_[%w_%-]+", mask_token)
  end
  -- FavCRM's OAuth access and refresh tokens (fav_oat_..., fav_ort_...)
  if text:find("fav_o", 1, true) then
    text = text:gsub("fav_o[ar]t_[%w_%-]+", mask_token)
  end
  return text
end

local function redact_fields(e)
  e.message = M.redact(e.message)
  if type(e.hint) == "string" then e.hint = M.redact(e.hint) end
  if type(e.data) == "string" then e.data = M.redact(e.data) end
end

local mt = {}
mt.__index = mt
mt.__tostring = function(e)
  return "favcrm: " .. tostring(e.code) .. ": " .. tostring(e.message)
end
M.mt = mt

--- errors.new(code, message [, fields]) -> error object. `fields`
-- (optional) are copied in; message, hint and a text data are redacted
-- (errors.redact). Raises on a code not in M.CODES (a bug).
---@param code string a code of M.CODES
---@param message string for people; no secrets
---@param fields? table more fields (code and message win)
---@return favcrm.Error err
function M.new(code, message, fields)
  if not M.CODES[code] then error("favcrm.errors.new: unknown error code '" .. tostring(code) .. "'", 2) end
  local e = { code = code, message = message }
  if fields then
    for k, v in pairs(fields) do
      if e[k] == nil then e[k] = v end
    end
  end
  redact_fields(e)
  return setmetatable(e, mt)
end

--- errors.wrap(t) -> t: gives a plain error table from the C core
-- ({code=, message=, ...}) the error metatable, in place. A code that is not
-- in M.CODES is a bug in the C core: the code is kept as it came (so the bug
-- can be found, and nothing branches on a made-up code), the message says
-- so, and `unlisted = true` marks it. With FAVCRM_DEBUG set in the
-- environment it raises instead, so specs and developers see it at once.
---@param t any an error table from the C core (anything else is returned as is)
---@return any t the same value
function M.wrap(t)
  if type(t) == "table" and getmetatable(t) == nil then
    if not M.CODES[t.code] then
      if os.getenv("FAVCRM_DEBUG") then
        error("favcrm.errors.wrap: the C core used an unlisted error code '" .. tostring(t.code) .. "'", 2)
      end
      t.unlisted = true
      t.message = tostring(t.message) .. " (unlisted error code '" .. tostring(t.code)
        .. "': a bug in favcrm-lua, please report it)"
    end
    redact_fields(t)
    setmetatable(t, mt)
  end
  return t
end

--- errors.is(v) -> true when `v` is an error object made here
---@param v any
---@return boolean is
function M.is(v)
  return getmetatable(v) == mt
end

return M
