-- favcrm.session_negotiate: the era probe of favcrm.session, and what
-- sends an op again when the era or the session it assumed no longer holds
-- (internal). favcrm.session loads it (favcrm.lazy) on first use (a client
-- pinned to one era, whose server keeps its session, never does); it
-- defines its methods on the Session class itself.
local errors = require("favcrm.errors")
local era = require("favcrm.era")

local Session = require("favcrm.session")

-- Calls fn once the initialization `gate` is over (at once if it is).
function Session._after_init(_, gate, fn)
  if gate.done then return fn() end
  gate.after[#gate.after + 1] = fn
end

-- The era probe (versioning: Backward Compatibility): server/discover sent
-- the modern way. A DiscoverResult that lists 2026-07-28 means modern; a
-- -32022 that lists it is answered by one more probe; an HTTP 400/404/405
-- without a recognised modern error (or, over stdio, any error or no
-- answer in time) means a legacy server: the initialize handshake follows.
-- The verdict is remembered per origin (HTTP) or server process (stdio).
function Session:_probe(over, retried)
  self.protocol_version = era.MODERN -- the probe's MCP-Protocol-Version
  local stdio = self:_is_stdio()
  local op = self:start_request("server/discover", nil,
    { timeout = stdio and math.min(self.timeout, 10) or self.timeout, modern = true })
  op.is_probe = true
  self.init_op = op -- (OAuth: initialize() authorizes after its 401)
  op.on_done = function(o)
    local verdict = era.classify(o.result, o.err, stdio)
    if verdict == "retry" and not retried then return self:_probe(over, true) end
    if verdict == "modern" then
      local r = o.result
      local meta = type(r._meta) == "table" and r._meta or {}
      local info = meta["io.modelcontextprotocol/serverInfo"]
      if type(info) ~= "table" then info = type(r.serverInfo) == "table" and r.serverInfo or nil end
      local caps = type(r.capabilities) == "table" and r.capabilities or {}
      local instructions = type(r.instructions) == "string" and r.instructions or nil
      self:_set_modern(info, caps, instructions)
      era.remember(self:_era_key(), { era = "modern", info = info, caps = caps, instructions = instructions })
      return over(nil)
    end
    self.protocol_version = nil
    if verdict == "legacy" then
      era.remember(self:_era_key(), { era = "legacy" })
      return self:_legacy_init(over)
    end
    return over(o.err or errors.new("protocol", "the server's server/discover lists no protocol version "
      .. "this client speaks (" .. era.MODERN .. " or " .. era.LEGACY .. ")",
      { supported = type(o.result) == "table" and o.result.supportedVersions or nil }))
  end
  if op.done then op.on_done(op) end
end

-- An op's transfer is no longer its own (it is sent again): the answer
-- stream ends by itself as an auxiliary transfer.
function Session:_detach(op)
  if op.tid then
    self.ops[op.tid] = nil
    self.aux[op.tid] = "stream"
    op.tid = false
  end
end

-- A modern op met -32022: once more with a version the server lists
-- (2026-07-28 again), or, in auto mode, the legacy era when it lists only
-- those. Returns true when it took the op over.
function Session:_modern_retry(op, code, data)
  if code ~= era.UNSUPPORTED_VERSION or op.is_probe then return false end
  local supported = era.supported_of({ rpc_code = code, data = data })
  if not supported then return false end
  for _, v in ipairs(supported) do
    if v == era.MODERN and not op.version_retry then
      op.version_retry = true
      self:_detach(op)
      self:_encode(op)
      self:_launch(op)
      return true
    end
  end
  if self.want == "auto" and not op.renegotiated and era.legacy_from({ rpc_code = code, data = data }) then
    self.force_legacy = true
    self:_renegotiate(op)
    return true
  end
  return false
end

-- The era this session assumed does not hold: forget it, negotiate again
-- (the op waits among the ops without a transfer, its deadline still
-- checked), then send the op once more the way the new era wants.
function Session:_renegotiate(op)
  op.renegotiated = true
  self:_detach(op)
  era.remember(self:_era_key(), nil)
  if self.initialized then
    self.era, self.initialized, self.protocol_version, self.session_id = nil, false, nil, nil
    if self.shared then self.shared.era, self.shared.initialized = nil, false end
  end
  return self:_relaunch_after_init(op, true)
end

-- Parks op among the ops without a transfer (its deadline still checked,
-- so no pump blocks on the new initialize) until a new initialization is
-- over, then sends it once more (with `reencode`, rebuilt the way the era
-- found wants), or ends it with the initialization's error.
function Session:_relaunch_after_init(op, reencode)
  op.reinit, op.resume_at = true, math.huge
  self.resuming = self.resuming or {}
  self.resuming[op] = true
  return self:_after_init(self:_start_init(), function()
    if op.done then return end
    self.resuming[op] = nil
    op.reinit, op.resume_at = false, nil
    if not self.initialized then return self:_finish(op, nil, self.init_err) end
    if reencode then
      op.modern = self.era == "modern"
      op.mrtr_responses, op.mrtr_state = false, false
      self:_encode(op)
    end
    return self:_launch(op)
  end)
end

return Session
