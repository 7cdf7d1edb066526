--- favcrm.era: what differs when a server speaks MCP 2026-07-28 (the
-- "modern" era: no initialize, no session, per-request `_meta`) from the
-- 2025-11-25 "legacy" era (issue 16). favcrm.session holds the state and
-- the flows; this module holds the protocol facts so they are in one place:
--
--   * the `protocol` option and the era verdicts (negotiate, classify), with
--     the cache of outcomes per origin (HTTP) kept for the process;
--   * the `_meta` every modern request carries, and the HTTP headers
--     (MCP-Protocol-Version, Mcp-Method, Mcp-Name, Mcp-Param-{Name}) with
--     their value encoding (`=?base64?...?=`);
--   * the x-mcp-header checks that drop a tool from tools/list;
--   * the multi-round-trip (MRTR) answers built from the on_* callbacks;
--   * the modern JSON-RPC error codes mapped to favcrm error codes.
--
-- Source: the MCP specification, docs/specification/2026-07-28/ (changelog,
-- basic/versioning, basic/transports/streamable-http and stdio,
-- basic/patterns/mrtr and subscriptions, server/discover, server/tools).

local M = {}

--- The modern revision this client speaks.
M.MODERN = "2026-07-28"
--- The legacy revision it offers in initialize.
M.LEGACY = "2025-11-25"
--- Legacy revisions an initialize may settle on.
M.LEGACY_VERSIONS = {
  ["2025-11-25"] = true, ["2025-06-18"] = true,
  ["2025-03-26"] = true, ["2024-11-05"] = true,
}

--- The values of favcrm.new's `protocol` option.
M.OPTION_VALUES = { auto = true, ["2026-07-28"] = true, ["2025-11-25"] = true }

-- The modern error codes (basic/index: Error codes).
M.HEADER_MISMATCH = -32020
M.MISSING_CAPABILITY = -32021
M.UNSUPPORTED_VERSION = -32022

--- Rounds of one multi-round-trip request before it is given up (the
-- official TypeScript client's default, inputRequired.maxRounds, is 10).
M.MAX_MRTR_ROUNDS = 10
--- Inputs one input_required result may ask for.
M.MAX_INPUT_REQUESTS = 32
--- Origins whose era this process remembers (the oldest goes first).
M.MAX_CACHED_ORIGINS = 64
--- Seconds a remembered verdict holds; then the next client negotiates
-- again (a server that turned modern is found within the hour).
M.CACHE_TTL = 3600
--- The clock of the cache (core.monotonic; specs replace it).
M.clock = require("favcrm.core").monotonic

-- Methods whose result may be input_required (basic/patterns/mrtr).
M.MRTR_METHODS = { ["tools/call"] = true, ["resources/read"] = true, ["prompts/get"] = true }
-- Methods that read only: a broken response stream re-issues them (there is
-- no SSE resumption in the modern era). tools/call is added per call for
-- tools annotated readOnlyHint.
M.REISSUE = {
  ["server/discover"] = true, ["tools/list"] = true, ["resources/list"] = true,
  ["resources/templates/list"] = true, ["resources/read"] = true, ["prompts/list"] = true,
  ["prompts/get"] = true, ["completion/complete"] = true,
}
-- Legacy methods with a modern stand-in: ping is gone, server/discover
-- answers the same question ("does the server answer?").
M.ALIAS = { ping = "server/discover" }

--- era.check_option(v) -> v (or "auto" for nil); raises naming `protocol`.
function M.check_option(v, level)
  if v == nil then return "auto" end
  if not M.OPTION_VALUES[v] then
    error("favcrm.new: option 'protocol' must be \"auto\", \"2026-07-28\" or \"2025-11-25\" (got "
      .. (type(v) == "string" and ("\"" .. v .. "\"") or type(v)) .. ")", (level or 1) + 1)
  end
  return v
end

-- ---- the outcome of negotiation, per origin (HTTP) ------------------------
-- origin -> {era = "modern"|"legacy", version =, discover =}; per process
-- (stdio keeps its verdict keyed by the transport, i.e. per server process,
-- in a weak table: the cache must not keep a dropped client's child process
-- and its pipes alive).
local cache, cache_order = {}, {}
local by_transport = setmetatable({}, { __mode = "k" })

--- era.cached(key) -> the verdict remembered for key, or nil (also once
-- it is older than CACHE_TTL)
function M.cached(key)
  if type(key) == "table" then return by_transport[key] end
  local e = key and cache[key]
  if not e then return nil end
  if M.clock() - e.at > M.CACHE_TTL then return nil end
  return e.verdict
end

--- era.remember(key, verdict): remembers (nil forgets) a verdict.
function M.remember(key, verdict)
  if not key then return end
  if type(key) == "table" then
    by_transport[key] = verdict or nil
    return
  end
  if verdict and cache[key] == nil then
    cache_order[#cache_order + 1] = key
    if #cache_order > M.MAX_CACHED_ORIGINS then
      cache[table.remove(cache_order, 1)] = nil
    end
  end
  cache[key] = verdict and { verdict = verdict, at = M.clock() } or nil
end

--- era.forget_all(): clears the cache (specs).
function M.forget_all()
  cache, cache_order = {}, {}
  by_transport = setmetatable({}, { __mode = "k" })
end

-- ---- the rest: favcrm.era_wire ----------------------------------------------
-- The request's `_meta` and headers, the x-mcp-header checks, the verdicts
-- and the error mapping live in favcrm.era_wire, which defines them on this
-- table the first time one of them is looked up: a client pinned to
-- 2025-11-25 never parses them (`era.meta` and the rest work as before).
setmetatable(M, { __index = function(t, k)
  setmetatable(t, nil)
  require("favcrm.era_wire")
  return rawget(t, k)
end })

return M
