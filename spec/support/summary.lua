-- busted output handler: plainTerminal's report, then every skip with its
-- reason, then one closing line "N passed, N failed, N skipped" that CI
-- readers recognise.
return function(options)
  local busted = require("busted")
  local handler = require("busted.outputHandlers.plainTerminal")(options)
  busted.subscribe({ "suite", "end" }, function()
    local failed = handler.failuresCount + handler.errorsCount
    for _, p in ipairs(handler.pendings or {}) do
      -- a pending() at describe level carries its reason in its name
      local why = type(p.message) == "string" and p.message ~= "" and (": " .. p.message) or ""
      io.write(string.format("\nskipped: %s%s", p.name or "?", why))
    end
    io.write(string.format("\n%d passed, %d failed, %d skipped\n",
      handler.successesCount, failed, handler.pendingsCount))
    io.flush()
    return nil, true
  end)
  return handler
end
