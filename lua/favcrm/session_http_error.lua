-- favcrm.session_http_error: a non-2xx answer to one of favcrm.session's
-- requests (internal): the op's error, or a relaunch (a new session, a
-- redirect, another era). favcrm.session loads it (favcrm.lazy) the first
-- time an answer is not 2xx; it defines Session:_on_http_error on the
-- Session class itself.
local json = require("favcrm.json")
local errors = require("favcrm.errors")
local urls = require("favcrm.url")
local era = require("favcrm.era")

local Session = require("favcrm.session")
local MAX_REDIRECTS = 3
local rpc_error_text, rpc_code_of = Session._rpc_error_text, Session._rpc_code_of

-- The JSON-RPC error in an HTTP error body: its text, code and data.
local function rpc_error_message(body)
  local msg = body and json.decode_plain(body)
  if type(msg) == "table" and type(msg.error) == "table" and type(msg.error.message) == "string" then
    return rpc_error_text(msg.error), rpc_code_of(msg.error.code), msg.error.data
  end
end

-- Turns a non-2xx answer into the op's end (or a relaunch).
function Session:_on_http_error(op, item)
  local st = op.status or item.status
  local h = op.headers or {}
  local smsg, rpc_code, rpc_data = rpc_error_message(item.body)
  local detail = smsg and (": " .. smsg) or ""
  if st == 404 and op.sent_session and not op.replayed and not op.is_init then
    -- the server forgot our session: start a new one and replay once. The
    -- op waits for it among the ops without a transfer (its deadline still
    -- checked), so no pump blocks on the new initialize
    op.replayed = true
    local sh = self.shared
    if sh and sh.initialized and sh.session_id == op.sent_session then sh.initialized = false end
    if self.session_id == op.sent_session then
      self.session_id, self.initialized, self.protocol_version = nil, false, nil
    end
    return self:_relaunch_after_init(op, false)
  elseif st == 404 and op.sent_session then
    return self:_finish(op, nil, errors.new("session_expired",
      "the server no longer knows this session and a fresh one failed too", { status = st }))
  elseif (st == 307 or st == 308) and h.location then
    if op.redirects >= MAX_REDIRECTS then
      return self:_finish(op, nil, errors.new("http", "too many redirects", { status = st }))
    end
    op.redirects = op.redirects + 1
    local target = urls.resolve(op.url or self.url, h.location)
    local ok_url, why = urls.check(target)
    if not ok_url then
      return self:_finish(op, nil, errors.new("http", "refused a redirect: its target " .. why .. " (got "
        .. (target:match("^[%w+.-]*:") or "a relative reference") .. "...)", { status = st }))
    end
    if urls.origin(target) ~= urls.origin(self.url) then op.drop_auth = true end
    op.url = target
    return self:_launch(op)
  elseif st == 401 or st == 403 then
    -- with OAuth, Session:wait (or initialize) hands this to favcrm.oauth,
    -- which authorizes (or refreshes, or steps up) and the request is sent again
    local what
    if self.oauth then what = st == 403 and "the OAuth token may not do this" or "the server wants OAuth authorization"
    elseif st == 403 then what = "the API key may not do this"
    elseif self.auth == nil or op.drop_auth then what = "this needs an API key and none was sent"
    else what = "the server refused the API key" end
    local wa = h["www-authenticate"]
    return self:_finish(op, nil, errors.new("unauthorized", what .. detail,
      { status = st, www_authenticate = wa,
        -- where OAuth is offered (RFC 9728): an application may use the oauth option
        resource_metadata = wa and require("favcrm.oauth").resource_metadata_of(wa) or nil,
        hint = not self.oauth and ("check FAVCRM_API_KEY; if the key was revoked or leaked, revoke it in the "
          .. "FavCRM portal (Settings, MCP Keys) and issue a new one") or nil }))
  elseif op.modern and rpc_code ~= nil and self:_modern_retry(op, rpc_code, rpc_data) then
    return
  elseif op.modern and (st == 400 or st == 404 or st == 405) and not op.is_probe and not op.renegotiated
    and self.want == "auto" and not era.map_error(op.method, rpc_code, "", rpc_data)
    and rpc_code ~= -32602 then
    -- the era remembered for this origin no longer holds (the server was
    -- replaced by an older one): negotiate again, then send the op once more
    return self:_renegotiate(op)
  elseif op.modern and rpc_code ~= nil and era.map_error(op.method, rpc_code, smsg, rpc_data) then
    return self:_finish(op, nil, era.map_error(op.method, rpc_code, smsg, rpc_data, { status = st }))
  elseif op.modern and st == 400 and rpc_code == -32602 then
    return self:_finish(op, nil, errors.new("invalid_arguments", "the server refused the request" .. detail,
      { status = st, rpc_code = rpc_code, data = rpc_data }))
  elseif st == 429 then
    local ra = tonumber(h["retry-after"])
    if ra then ra = math.floor(ra) end
    return self:_finish(op, nil, errors.new("rate_limited",
      "the server is rate limiting this client" .. (ra and ("; retry in " .. ra .. " s") or "") .. detail,
      { status = st, retry_after = ra }))
  end
  return self:_finish(op, nil, errors.new("http", "HTTP " .. tostring(st) .. detail,
    { status = st, retry_after = tonumber(h["retry-after"]), rpc_code = rpc_code, data = rpc_data }))
end

return Session
