--- Test helper: what spec/integration/bridge_spec.lua and bridge_era_spec.lua
-- share to drive `favcrm mcp serve` through an agent host on the official
-- MCP SDK (spec/support/mcp_bridge_client.mjs, the v1 SDK, or
-- mcp_bridge_client_v2.mjs, the v2 client), run with core.spawn so the spec
-- can act on the world while the host waits ({"wait": LABEL} steps).
local cjson = require("cjson")
local core = require("favcrm.core")
local files = require("spec.support.files")

local M = {}

--- M.new(name, script [, opts]) -> a helper table for one spec file, with
-- temp files under $FAVCRM_SPEC_TMP/name. script: the host's path (from the
-- checkout's top). opts.lenient: skip stdout lines that are not JSON (the
-- default raises on one); opts.hint: added to the "no report" failure.
function M.new(name, script, opts)
  opts = opts or {}
  local lua = os.getenv("FAVCRM_LUA_BIN") or "lua5.4"
  local _, tmpname = files.tmpdir(name)
  local B = { tmpname = tmpname }

  local function decode(line)
    if not opts.lenient then return cjson.decode(line) end
    local ok, m = pcall(cjson.decode, line)
    if ok and type(m) == "table" then return m end
    return {}
  end

  --- B.host(plan, env [, on_wait]) -> report, everything the host received
  -- (text). on_wait(label) -> the line handed back to the host (default "go").
  function B.host(plan, env, on_wait)
    local received = tmpname("received")
    local p = assert(core.spawn({ "node", script, lua, cjson.encode(plan), received }, env))
    local report, err = nil, {}
    while not report do
      local r = p:poll(2000)
      for _, line in ipairs(r.lines) do
        local m = decode(line)
        if m.waiting then
          p:write(tostring(on_wait and on_wait(m.waiting) or "go") .. "\n")
        elseif m.report then
          report = m.report
        end
      end
      if r.stderr then err[#err + 1] = r.stderr end
      if r.exited then break end
    end
    p:close(2000)
    assert(report, "the " .. (opts.what or "host") .. " printed no report" .. (opts.hint or "") .. ": "
      .. table.concat(err))
    assert(report.fatal == nil, tostring(report.fatal) .. "\n" .. tostring(report.stderr))
    return report, files.slurp(received) or ""
  end

  --- B.new_xdg() -> a fresh, made folder to use as XDG_CONFIG_HOME
  function B.new_xdg()
    local d = tmpname("xdg")
    os.execute("mkdir -p " .. files.q(d))
    return d
  end

  return B
end

--- M.step(report, name [, nth [, kind]]) -> the nth (default first) step of
-- the report whose `kind` field (default "call": a tool call; "rpc": a
-- request) is name; raises when there is none
function M.step(report, name, nth, kind)
  local seen = 0
  for _, s in ipairs(report.steps) do
    if s[kind or "call"] == name then
      seen = seen + 1
      if seen == (nth or 1) then return s end
    end
  end
  error("no step " .. name)
end

return M
