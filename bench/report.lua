--- bench/report.lua RAW META SCHEMA_TXT OUT_JSON [OUT_PNG]
--- bench/report.lua --merge OUT_JSON KEY FILE
--- bench/report.lua --readme RESULTS_JSON README_MD
-- Turns bench/run.sh's raw lines into medians, prints the table and the
-- ratios against issue 9's targets, writes OUT_JSON and (when gnuplot is
-- there and OUT_PNG is given) the chart.
local cjson = require("cjson")

local raw_path, meta_path, schema_path, out_json, out_png = arg[1], arg[2], arg[3], arg[4], arg[5]
if out_png == "" then out_png = nil end

local function slurp(p)
  local f = p and io.open(p, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

-- ---- JSON with sorted keys (diffs of results.json stay readable) --------------
local function encode(v, ind)
  ind = ind or ""
  local t = type(v)
  if t == "table" then
    local n = #v
    if n > 0 or next(v) == nil then
      if next(v) == nil then return "{}" end
      local parts = {}
      for i = 1, n do parts[i] = encode(v[i], ind .. "  ") end
      local flat = "[" .. table.concat(parts, ", ") .. "]"
      if #flat < 80 then return flat end
      return "[\n" .. ind .. "  " .. table.concat(parts, ",\n" .. ind .. "  ") .. "\n" .. ind .. "]"
    end
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = k end
    table.sort(keys)
    local parts = {}
    for _, k in ipairs(keys) do
      parts[#parts + 1] = ind .. "  " .. cjson.encode(tostring(k)) .. ": " .. encode(v[k], ind .. "  ")
    end
    return "{\n" .. table.concat(parts, ",\n") .. "\n" .. ind .. "}"
  elseif t == "number" then
    if v == math.floor(v) and math.abs(v) < 2 ^ 53 then return string.format("%d", v) end
    return string.format("%.6g", v)
  elseif v == nil then
    return "null"
  end
  return cjson.encode(v)
end
-- bench/report.lua --merge OUT_JSON KEY FILE: sets KEY of OUT_JSON to the
-- JSON in FILE (another bench's figures, e.g. bench/openresty.sh's), the
-- rest of OUT_JSON kept, written in the same sorted form.
if arg[1] == "--merge" then
  local out, key, file = arg[2], arg[3], arg[4]
  local results = cjson.decode(slurp(out) or "{}")
  results[key] = cjson.decode((assert(slurp(file), "cannot read " .. tostring(file))))
  local f = assert(io.open(out, "w"))
  f:write(encode(results), "\n")
  f:close()
  print("wrote " .. key .. " into " .. out)
  return
end

-- bench/report.lua --readme RESULTS_JSON README: rewrites README's
-- benchmark table (between the bench:begin and bench:end comments) from
-- RESULTS_JSON's targets, so the README quotes one `make bench` run.
if arg[1] == "--readme" then
  local results = cjson.decode((assert(slurp(arg[2]), "cannot read " .. tostring(arg[2]))))
  local readme = assert(slurp(arg[3]), "cannot read " .. tostring(arg[3]))
  local by = {}
  for _, t in ipairs(results.targets or {}) do by[t.name] = t end
  local function cell(name, digits)
    local t = by[name]
    if not t or not t.ratio then return "" end
    return string.format("%." .. digits .. "f", t.ratio) .. (t.met and "" or " (not met)")
  end
  local function goal(name)
    local t = by[name]
    return t and t.goal or ""
  end
  local rows = {
    { "instructions per call vs raw libcurl (callgrind)", "instr_vs_libcurl", 2 },
    { "CPU per call vs raw libcurl", "cpu_vs_libcurl", 2 },
    { "CPU per call vs TS SDK client", "cpu_vs_ts_sdk", 3 },
    { "calls/s vs raw libcurl", "calls_vs_libcurl", 2 },
    { "start to first result vs the C program", "startup_vs_c", 2 },
    { "peak RSS vs the C program", "rss_vs_c", 2 },
  }
  local m = results.meta or {}
  local function int(x) return type(x) == "number" and string.format("%d", x) or "?" end
  local out = {
    string.format("On %s, on a %s-core %s, load average %s before and %s after, median of %s rounds of %s",
      (m.date or "?"):sub(1, 10), int(m.cores), m.cpu or "?", m.loadavg_before or "?",
      m.loadavg_after or "?", int(m.rounds), int(m.n)),
    "sequential `list_services` (instructions: one callgrind run of " .. int(m.instr_n)
      .. " calls each):",
    "",
    "| ratio (same run) | Lua 5.4 | LuaJIT | goal |",
    "| --- | --: | --: | --- |",
  }
  for _, r in ipairs(rows) do
    out[#out + 1] = string.format("| %s | %s | %s | %s |", r[1], cell("favcrm_lua54." .. r[2], r[3]),
      cell("favcrm_luajit." .. r[2], r[3]), goal("favcrm_lua54." .. r[2]))
  end
  out[#out + 1] = string.format("| `call_many` with 64 in flight vs the server's ceiling | %s | | %s |",
    cell("favcrm_lua54.c64_vs_ceiling", 2), goal("favcrm_lua54.c64_vs_ceiling"))
  local cases = {}
  for k, v in pairs(results.schema or {}) do if type(v) == "table" then cases[#cases + 1] = k end end
  table.sort(cases)
  for _, k in ipairs(cases) do
    out[#out + 1] = string.format("| schema `%s`: validations/s vs ajv | %s | %s | %s |", k,
      cell("schema." .. k .. ".lua54_vs_ajv", 2), cell("schema." .. k .. ".luajit_vs_ajv", 2),
      goal("schema." .. k .. ".lua54_vs_ajv"))
  end
  local body = table.concat(out, "\n")
  local a, b = readme:find("<!%-%- bench:begin[^\n]*%-%->\n")
  local c = readme:find("<!%-%- bench:end %-%->", b or 1)
  if not a or not c then error("no <!-- bench:begin --> ... <!-- bench:end --> in " .. arg[3]) end
  local new = readme:sub(1, b) .. body .. "\n" .. readme:sub(c)
  local f = assert(io.open(arg[3], "w"))
  f:write(new)
  f:close()
  print("rewrote the benchmark table of " .. arg[3] .. " from " .. arg[2])
  return
end

local CLIENTS = { "libcurl_c", "favcrm_lua54", "favcrm_luajit", "favcrm_lua54_2026", "favcrm_luajit_2026",
  "ts_sdk" }
local LABEL = {
  libcurl_c = "libcurl C (floor)", favcrm_lua54 = "favcrm Lua 5.4",
  favcrm_luajit = "favcrm LuaJIT", ts_sdk = "TS SDK (node)",
  favcrm_lua54_2026 = "favcrm Lua 5.4, MCP 2026", favcrm_luajit_2026 = "favcrm LuaJIT, MCP 2026",
}

-- ---- statistics --------------------------------------------------------------
local function median(t)
  if #t == 0 then return nil end
  local s = {}
  for i, v in ipairs(t) do s[i] = v end
  table.sort(s)
  local m = (#s + 1) / 2
  return (s[math.floor(m)] + s[math.ceil(m)]) / 2
end
local function minmax(t)
  if #t == 0 then return nil end
  local lo, hi = math.huge, -math.huge
  for _, v in ipairs(t) do lo, hi = math.min(lo, v), math.max(hi, v) end
  return { lo, hi }
end
local function round(x, d)
  if x == nil then return nil end
  local m = 10 ^ (d or 1)
  return math.floor(x * m + 0.5) / m
end

-- ---- read ----------------------------------------------------------------------
local runs = {} -- client -> kind -> round -> line (for paired kinds: pair 1)
-- round -> pair -> kind -> line: call_many at 64 ("c64") and the server's
-- ceiling ("ceiling") run back to back, several pairs a round (bench/run.sh)
local pairs_of = {}
-- client -> round -> start-up (ms) of every run of the round: the seq and
-- base runs and the start-up-only runs ("start", several a round)
local starts = {}
local meta = cjson.decode(slurp(meta_path) or "{}")
for line in (slurp(raw_path) or ""):gmatch("[^\n]+") do
  local ok, r = pcall(cjson.decode, line)
  if ok and type(r) == "table" and r.round ~= 0 then
    runs[r.client] = runs[r.client] or {}
    runs[r.client][r.kind] = runs[r.client][r.kind] or {}
    if r.pair then
      pairs_of[r.round] = pairs_of[r.round] or {}
      pairs_of[r.round][r.pair] = pairs_of[r.round][r.pair] or {}
      pairs_of[r.round][r.pair][r.kind] = r
    end
    if not r.pair or r.pair == 1 then runs[r.client][r.kind][r.round] = r end
    if (r.kind == "seq" or r.kind == "base" or r.kind == "start") and type(r.res) == "table"
      and r.res.startup_ms then
      starts[r.client] = starts[r.client] or {}
      local l = starts[r.client][r.round] or {}
      starts[r.client][r.round] = l
      l[#l + 1] = r.res.startup_ms
    end
  end
end
-- every run of a kind, pairs included: client -> kind -> list of lines
local function all_runs(client, kind)
  local list = {}
  for rnd, r in pairs(runs[client] and runs[client][kind] or {}) do
    local ps = pairs_of[rnd]
    if ps then
      for _, pr in pairs(ps) do
        if pr[kind] and pr[kind].client == client then list[#list + 1] = pr[kind] end
      end
    else
      list[#list + 1] = r
    end
  end
  return list
end

local results = {}
local spread = {}
local per = {} -- client -> figure -> round -> value (for the paired ratios)
for _, c in ipairs(CLIENTS) do
  local seq, base = runs[c] and runs[c].seq or {}, runs[c] and runs[c].base or {}
  local cpu, inproc, cps, p50, p99, st, rss = {}, {}, {}, {}, {}, {}, {}
  local pc = { cpu = {}, cps = {}, startup = {} }
  per[c] = pc
  for rnd, s in pairs(seq) do
    local n = s.res.n
    local b = base[rnd]
    if b and n > 0 then
      local total = s.stat.user_us + s.stat.sys_us
      local fixed = b.stat.user_us + b.stat.sys_us
      cpu[#cpu + 1] = (total - fixed) / n
      pc.cpu[rnd] = cpu[#cpu]
    end
    pc.cps[rnd] = s.res.calls_per_s
    inproc[#inproc + 1] = s.res.loop_cpu_us / n
    cps[#cps + 1] = s.res.calls_per_s
    p50[#p50 + 1] = s.res.p50_ms
    p99[#p99 + 1] = s.res.p99_ms
    rss[#rss + 1] = s.stat.maxrss_kb
  end
  -- a round's start-up: the median of its runs' (seq, base, and the
  -- start-up-only runs); the client's: the median of its rounds'
  for rnd, l in pairs(starts[c] or {}) do
    pc.startup[rnd] = median(l)
    st[#st + 1] = pc.startup[rnd]
  end
  if #cps > 0 then
    results[c] = {
      cpu_us_per_call = round(median(cpu), 1),
      cpu_us_per_call_inproc = round(median(inproc), 1),
      calls_per_s = round(median(cps), 0),
      p50_ms = round(median(p50), 3),
      p99_ms = round(median(p99), 3),
      startup_ms = round(median(st), 1),
      rss_kb = round(median(rss), 0),
      rounds = #cps,
    }
    spread[c] = { cpu = minmax(cpu), cps = minmax(cps) }
    results[c].spread = {
      cpu_us_per_call = spread[c].cpu and { round(spread[c].cpu[1], 1), round(spread[c].cpu[2], 1) },
      calls_per_s = { round(spread[c].cps[1], 0), round(spread[c].cps[2], 0) },
    }
  end
end

-- instructions per call (callgrind, one N-call and one 0-call run each;
-- counts do not move with the machine's load, so no rounds)
for _, c in ipairs(CLIENTS) do
  local r = runs[c] and runs[c].instr and runs[c].instr[1]
  if r and r.res.n > 0 then
    results[c] = results[c] or {}
    results[c].instr_per_call = round((r.res.instr_n - r.res.instr_0) / r.res.n, 0)
    results[c].instr = { n = r.res.n, with_n_calls = r.res.instr_n, with_0_calls = r.res.instr_0,
      how = "valgrind --tool=callgrind: (count with n calls - count with 0 calls) / n" }
  end
end

-- call_many and the server's ceiling
local many = runs.favcrm_lua54 or {}
if results.favcrm_lua54 then
  local cm = {}
  for _, k in ipairs({ "c1", "c8", "c64" }) do
    local v, skipped = {}, nil
    for _, r in ipairs(all_runs("favcrm_lua54", k)) do
      if r.res.skipped then skipped = r.res.skipped else v[#v + 1] = r.res.calls_per_s end
    end
    if skipped then cm.skipped = skipped
    elseif #v > 0 then cm[k] = round(median(v), 0) end
  end
  results.favcrm_lua54.call_many = cm
end
do
  local v, cpu = {}, {}
  for _, r in ipairs(all_runs("libcurl_c", "ceiling")) do
    v[#v + 1] = r.res.calls_per_s
    cpu[#cpu + 1] = r.res.loop_cpu_us / r.res.n
  end
  if #v > 0 then
    results.server_ceiling = { calls_per_s = round(median(v), 0), concurrency = 64,
      how = "bench/libcurl_c multi: 64 handles on curl multi, one session",
      client_cpu_us_per_call = round(median(cpu), 1) }
  end
end

-- schema.*: the rows of bench/schema_bench.sh's table
do
  local txt = slurp(schema_path) or ""
  local schema, validate_rows = {}, {}
  local function num(s) return s ~= "-" and tonumber(s) or nil end
  for line in txt:gmatch("[^\n]+") do
    local case, l, j, a = line:match("^(%S+)%s+(%S+)%s+(%S+)%s+(%S+)")
    if case and case ~= "case" and (num(l) or num(j) or num(a)) then
      -- CASE_validate rows (v:validate, informational) go beside the
      -- targets, which are read from the v:check rows
      local into = case:match("_validate$") and validate_rows or schema
      into[case] = {
        lua54_per_s = num(l), luajit_per_s = num(j), ajv_per_s = num(a),
        lua54_vs_ajv = num(l) and num(a) and round(num(l) / num(a), 2) or nil,
        luajit_vs_ajv = num(j) and num(a) and round(num(j) / num(a), 2) or nil,
      }
    end
  end
  if next(schema) then
    schema.source = "bench/schema_bench.sh (validations per second)"
    results.schema = schema
    if next(validate_rows) then results.schema_validate = validate_rows end
  else
    results.schema = { skipped = "bench/schema_bench.sh absent, failed or printed no rows" }
  end
end

-- ---- targets --------------------------------------------------------------------
local L, T = results.libcurl_c or {}, results.ts_sdk or {}
local targets = {}
local function ratio(a, b) return (a and b and b ~= 0) and a / b or nil end
-- The ratio is the median of the per-round ratios (the two figures of a
-- round were taken minutes apart at most, so a drift of the shared machine
-- cancels out); the ratio of the medians is kept beside it.
local function target(name, what, num, den, med_ratio, op, goal)
  local rs, list = {}, {}
  for rnd, a in pairs(num or {}) do
    local r = ratio(a, den and den[rnd])
    if r then rs[#rs + 1] = r; list[rnd] = round(r, 3) end
  end
  local value = median(rs) or med_ratio
  local t = { name = name, what = what, goal = op .. " " .. goal, ratio_of_medians = round(med_ratio, 3),
    per_round = #rs > 0 and list or nil }
  if value ~= nil then
    t.ratio = round(value, 3)
    if op == "<=" then t.met = value <= goal else t.met = value >= goal end
  end
  targets[#targets + 1] = t
end
-- Goals: issue 9's (CPU/call) and issue 20's (instructions per call,
-- calls/s, start-up, RSS, call_many at 64, the schema rows).
-- The 2026-07-28 stateless entries (favcrm_lua54_2026, favcrm_luajit_2026)
-- are held to the same goals against the same 2025-era libcurl loop.
local FAVCRM = { "favcrm_lua54", "favcrm_luajit", "favcrm_lua54_2026", "favcrm_luajit_2026" }
for _, c in ipairs(FAVCRM) do
  local F, P, PL, PT = results[c] or {}, per[c] or {}, per.libcurl_c or {}, per.ts_sdk or {}
  target(c .. ".instr_vs_libcurl", "instructions/call vs raw libcurl", nil, nil,
    ratio(F.instr_per_call, L.instr_per_call), "<=", 1.6)
  target(c .. ".cpu_vs_libcurl", "CPU/call vs raw libcurl", P.cpu, PL.cpu,
    ratio(F.cpu_us_per_call, L.cpu_us_per_call), "<=", 2)
  target(c .. ".cpu_vs_ts_sdk", "CPU/call vs TS SDK", P.cpu, PT.cpu,
    ratio(F.cpu_us_per_call, T.cpu_us_per_call), "<=", 0.1)
  target(c .. ".calls_vs_libcurl", "calls/s vs raw libcurl", P.cps, PL.cps,
    ratio(F.calls_per_s, L.calls_per_s), ">=", 0.95)
  target(c .. ".startup_vs_c", "startup vs the C program", P.startup, PL.startup,
    ratio(F.startup_ms, L.startup_ms), "<=", 1.5)
  local rss, rssl = {}, {}
  for rnd, s2 in pairs(runs[c] and runs[c].seq or {}) do rss[rnd] = s2.stat.maxrss_kb end
  for rnd, s2 in pairs(runs.libcurl_c and runs.libcurl_c.seq or {}) do rssl[rnd] = s2.stat.maxrss_kb end
  target(c .. ".rss_vs_c", "peak RSS vs the C program", rss, rssl, ratio(F.rss_kb, L.rss_kb), "<=", 1.3)
end
if results.schema and not results.schema.skipped then
  local cases = {}
  for k, v in pairs(results.schema) do if type(v) == "table" then cases[#cases + 1] = k end end
  table.sort(cases)
  for _, k in ipairs(cases) do
    local row = results.schema[k]
    target("schema." .. k .. ".lua54_vs_ajv", "validations/s vs ajv (Lua 5.4)", nil, nil, row.lua54_vs_ajv, ">=", 0.5)
    target("schema." .. k .. ".luajit_vs_ajv", "validations/s vs ajv (LuaJIT)", nil, nil, row.luajit_vs_ajv, ">=", 0.5)
  end
end
do
  local cm = results.favcrm_lua54 and results.favcrm_lua54.call_many or {}
  local ceil = results.server_ceiling and results.server_ceiling.calls_per_s
  local c64, cl = {}, {}
  for rnd, r in pairs(many.c64 or {}) do c64[rnd] = r.res.calls_per_s end
  for rnd, r in pairs(runs.libcurl_c and runs.libcurl_c.ceiling or {}) do cl[rnd] = r.res.calls_per_s end
  -- paired runs (bench/run.sh): a round's ratio is the median of its pairs'
  -- ratios, each pair's two runs back to back (so they see the same machine)
  local pr, one, pairs_list = {}, {}, {}
  for rnd, ps in pairs(pairs_of) do
    local rs = {}
    for _, p in pairs(ps) do
      local a, b = p.c64 and p.c64.res.calls_per_s, p.ceiling and p.ceiling.res.calls_per_s
      if a and b and b > 0 then rs[#rs + 1] = a / b end
    end
    if #rs > 0 then
      pr[rnd], one[rnd] = median(rs), 1
      table.sort(rs)
      for i, x in ipairs(rs) do rs[i] = round(x, 3) end
      pairs_list[rnd] = rs
    end
  end
  if next(pr) then c64, cl = pr, one end
  target("favcrm_lua54.c64_vs_ceiling", "call_many c64 vs server ceiling", c64, cl, ratio(cm.c64, ceil), ">=", 0.9)
  if next(pairs_list) then
    targets[#targets].pairs = pairs_list
    targets[#targets].how = "per round: the median over pairs of c64/ceiling, each pair run back to back "
      .. "(order alternating); the ratio: the median over rounds"
  end
end
results.targets = targets
results.meta = meta

-- the figures other benches merged in (bench/openresty.sh) stay
do
  local ok, old = pcall(cjson.decode, slurp(out_json) or "{}")
  if ok and type(old) == "table" then results.openresty = old.openresty end
end
local f = assert(io.open(out_json, "w"))
f:write(encode(results), "\n")
f:close()

-- ---- the table ------------------------------------------------------------------
local function fmt(x, d)
  if x == nil then return "-" end
  return string.format("%." .. (d or 0) .. "f", x)
end
print()
print(string.format("favcrm bench, %s, %s (%s cores), %d round(s), median; %d calls after %d warm-up",
  meta.date or "?", meta.cpu or "?", string.format("%d", meta.cores or 0), meta.rounds or 0,
  meta.n or 0, meta.warmup or 0))
print(string.format("%-20s %11s %11s %9s %9s %9s %11s %9s %15s", "client", "instr/call", "CPU us/call",
  "calls/s", "p50 ms", "p99 ms", "startup ms", "RSS MB", "calls/s min-max"))
for _, c in ipairs(CLIENTS) do
  local r = results[c]
  if r and r.calls_per_s then
    print(string.format("%-20s %11s %11s %9s %9s %9s %11s %9s %15s", LABEL[c], fmt(r.instr_per_call),
      fmt(r.cpu_us_per_call, 1), fmt(r.calls_per_s), fmt(r.p50_ms, 3), fmt(r.p99_ms, 3), fmt(r.startup_ms, 1),
      fmt(r.rss_kb and r.rss_kb / 1024, 1),
      fmt(r.spread.calls_per_s[1]) .. "-" .. fmt(r.spread.calls_per_s[2])))
  end
end
local cm = results.favcrm_lua54 and results.favcrm_lua54.call_many
if cm then
  if cm.skipped then
    print("favcrm_lua54 call_many: skipped (" .. cm.skipped .. ")")
  else
    print(string.format(
      "favcrm_lua54 call_many calls/s: c1 %s, c8 %s, c64 %s; server ceiling (libcurl multi, 64) %s",
      fmt(cm.c1), fmt(cm.c8), fmt(cm.c64), fmt(results.server_ceiling and results.server_ceiling.calls_per_s)))
  end
end
if results.schema and not results.schema.skipped then
  print(string.format("%-20s %12s %12s %12s %9s %9s", "schema (valid./s)", "Lua 5.4", "LuaJIT", "ajv",
    "5.4/ajv", "JIT/ajv"))
  local cases = {}
  for k, v in pairs(results.schema) do if type(v) == "table" then cases[#cases + 1] = k end end
  table.sort(cases)
  for _, k in ipairs(cases) do
    local s = results.schema[k]
    print(string.format("%-20s %12s %12s %12s %9s %9s", k, fmt(s.lua54_per_s), fmt(s.luajit_per_s), fmt(s.ajv_per_s),
      fmt(s.lua54_vs_ajv, 2), fmt(s.luajit_vs_ajv, 2)))
  end
end
print()
print("targets (median of the per-round ratios; ratio of the medians in brackets):")
for _, t in ipairs(targets) do
  print(string.format("  %-34s %-32s %6s (%5s)  goal %-7s %s", t.name, t.what,
    t.ratio and string.format("%.3f", t.ratio) or "-",
    t.ratio_of_medians and string.format("%.2f", t.ratio_of_medians) or "-", t.goal,
    t.met == nil and "n/a" or (t.met and "met" or "NOT MET")))
end
print()
print("wrote " .. out_json)

-- ---- the chart ----------------------------------------------------------------
if out_png then
  local gp = io.popen("command -v gnuplot 2>/dev/null"):read("l")
  if not gp then
    print("gnuplot not found (apt-get install gnuplot-nox): " .. out_png .. " not written")
    return
  end
  local dat = os.tmpname()
  local d = assert(io.open(dat, "w"))
  for i, c in ipairs(CLIENTS) do
    local r = results[c]
    if r then
      d:write(string.format("%d \"%s\" %s %s\n", i - 1, LABEL[c], fmt(r.calls_per_s), fmt(r.cpu_us_per_call, 1)))
    end
  end
  d:close()
  local dat2 = os.tmpname()
  d = assert(io.open(dat2, "w"))
  local ceil = results.server_ceiling and results.server_ceiling.calls_per_s
  if cm and not cm.skipped then
    for i, k in ipairs({ "c1", "c8", "c64" }) do
      d:write(string.format("%d \"favcrm %s\" %s\n", i - 1, k, fmt(cm[k])))
    end
  end
  if ceil then d:write(string.format("3 \"server ceiling\" %s\n", fmt(ceil))) end
  d:close()
  local title = string.format("favcrm-lua bench %s - %s, %s cores - median of %d rounds",
    (meta.date or ""):sub(1, 10), meta.cpu or "?", string.format("%d", meta.cores or 0), meta.rounds or 0)
  local script = table.concat({
    "set terminal pngcairo size 1500,520 font 'sans,10' noenhanced",
    "set output '" .. out_png .. "'",
    "set multiplot layout 1,3 title '" .. title:gsub("'", "") .. "'",
    "set style fill solid 0.8 border -1",
    "set boxwidth 0.6",
    "set grid ytics",
    "set xtics rotate by -20 nomirror",
    "set yrange [0:*]",
    "unset key",
    "set title 'sequential list_services: calls/s (higher is better)'",
    "plot '" .. dat .. "' using 1:3:xtic(2) with boxes lc rgb '#3b7dd8', "
      .. "'' using 1:3:(sprintf('%d',$3)) with labels offset 0,0.7",
    "set title 'client CPU per call, us (lower is better, log scale)'",
    "set logscale y",
    "set yrange [1:*]",
    "plot '" .. dat .. "' using 1:4:xtic(2) with boxes lc rgb '#d8703b', "
      .. "'' using 1:4:(sprintf('%.1f',$4)) with labels offset 0,0.7",
    "unset logscale y",
    "set yrange [0:*]",
    "set title 'favcrm Lua 5.4 call_many: calls/s by calls in flight'",
    (cm and not cm.skipped or ceil)
      and ("plot '" .. dat2 .. "' using 1:3:xtic(2) with boxes lc rgb '#4caf50', "
        .. "'' using 1:3:(sprintf('%d',$3)) with labels offset 0,0.7")
      or "set label 1 'call_many not measured' at graph 0.3,0.5\nplot 0 notitle",
    "unset multiplot",
  }, "\n")
  local p = io.popen("gnuplot 2>&1", "w")
  p:write(script, "\n")
  local ok = p:close()
  os.remove(dat)
  os.remove(dat2)
  print(ok and ("wrote " .. out_png) or ("gnuplot failed: " .. out_png .. " may be missing"))
end
