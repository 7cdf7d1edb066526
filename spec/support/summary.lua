-- busted output handler: plainTerminal's report, then every skip with its
-- reason, then one closing line "N passed, N failed, N skipped" that CI
-- readers recognise, with every failure named again on one line each just
-- above it (a log cut to its tail still says what failed).
-- FAVCRM_SPEC_TIMES=N (CI sets it) prints, before those lines, the N spec
-- files that took longest (wall seconds, LuaSocket's clock);
-- FAVCRM_TEST_TIMES=N the N single tests (`it` blocks) that took longest,
-- for finding where a slow file spends its time.
return function(options)
  local busted = require("busted")
  local handler = require("busted.outputHandlers.plainTerminal")(options)
  local top_n = tonumber(os.getenv("FAVCRM_SPEC_TIMES") or "")
  local top_tests = tonumber(os.getenv("FAVCRM_TEST_TIMES") or "")
  local ok_socket, socket = pcall(require, "socket")
  local times, started = {}, {}
  local test_times, test_started = {}, {}
  if top_n and ok_socket then
    busted.subscribe({ "file", "start" }, function(file)
      started[file.name] = socket.gettime()
      return nil, true
    end)
    busted.subscribe({ "file", "end" }, function(file)
      if started[file.name] then times[#times + 1] = { file.name, socket.gettime() - started[file.name] } end
      return nil, true
    end)
  end
  if top_tests and ok_socket then
    busted.subscribe({ "test", "start" }, function(element)
      test_started[element] = socket.gettime()
      return nil, true
    end)
    busted.subscribe({ "test", "end" }, function(element, parent)
      if test_started[element] then
        local where = element.trace and element.trace.short_src or (parent and parent.name) or "?"
        local line = element.trace and element.trace.currentline or 0
        test_times[#test_times + 1] = { where .. ":" .. line .. " " .. (element.name or "?"),
          socket.gettime() - test_started[element] }
      end
      return nil, true
    end)
  end
  busted.subscribe({ "suite", "end" }, function()
    local failed = handler.failuresCount + handler.errorsCount
    for _, p in ipairs(handler.pendings or {}) do
      -- a pending() at describe level carries its reason in its name
      local why = type(p.message) == "string" and p.message ~= "" and (": " .. p.message) or ""
      io.write(string.format("\nskipped: %s%s", p.name or "?", why))
    end
    if #times > 0 then
      table.sort(times, function(a, b) return a[2] > b[2] end)
      io.write("\nslowest spec files:")
      for i = 1, math.min(top_n, #times) do io.write(string.format("\n  %6.1f s  %s", times[i][2], times[i][1])) end
    end
    if #test_times > 0 then
      table.sort(test_times, function(a, b) return a[2] > b[2] end)
      io.write("\nslowest tests:")
      for i = 1, math.min(top_tests, #test_times) do
        io.write(string.format("\n  %6.2f s  %s", test_times[i][2], test_times[i][1]))
      end
    end
    -- every failure once more, one line each, right above the closing line:
    -- a CI log that keeps only its tail still names what failed
    local listed = 0
    for _, list in ipairs({ handler.failures or {}, handler.errors or {} }) do
      for _, f in ipairs(list) do
        if listed == 0 then io.write("\nfailed:") end
        listed = listed + 1
        local where = f.trace and f.trace.short_src and (f.trace.short_src .. ":" .. (f.trace.currentline or 0)) or "?"
        local msg = type(f.message) == "string" and f.message:match("^[^\n]*") or tostring(f.message)
        if #msg > 200 then msg = msg:sub(1, 200) .. "..." end
        io.write(string.format("\n  %s %s: %s", where, f.name or "?", msg))
      end
    end
    io.write(string.format("\n%d passed, %d failed, %d skipped\n",
      handler.successesCount, failed, handler.pendingsCount))
    io.flush()
    return nil, true
  end)
  return handler
end
