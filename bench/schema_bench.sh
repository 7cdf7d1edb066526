#!/usr/bin/env bash
# Runs the schema benchmark on Lua 5.4, LuaJIT and ajv (Node) and prints a
# table with ratios. Usage: bash bench/schema_bench.sh [seconds-per-case]
# Rows named after a case time `v:check` (the first failure, as ajv's default
# mode); CASE_validate rows time `v:validate` against the same ajv figure,
# for information (bench/report.lua reads the goal from the check rows).
# Needs: make LUA=5.4 && make LUA=luajit; (cd bench && npm ci).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-1}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export LUA_PATH='lua/?.lua;lua/?/init.lua;;'
LUA_CPATH='build/5.4/?.so;;' lua5.4 bench/schema_bench.lua --emit "$tmp/cases.json"
LUA_CPATH='build/5.4/?.so;;' lua5.4 bench/schema_bench.lua "$secs" > "$tmp/lua54"
if command -v luajit >/dev/null && [ -f build/luajit/favcrm/core.so ]; then
  LUA_CPATH='build/luajit/?.so;;' luajit bench/schema_bench.lua "$secs" > "$tmp/luajit"
else
  : > "$tmp/luajit"
fi
if [ -d bench/node_modules/ajv ]; then
  node bench/schema_ajv.mjs "$tmp/cases.json" "$secs" > "$tmp/ajv"
else
  echo "bench/node_modules missing: run (cd bench && npm ci) for the ajv column" >&2
  : > "$tmp/ajv"
fi
awk -F'\t' '
  FILENAME ~ /lua54$/  { l[$1] = $2; order[++n] = $1 }
  FILENAME ~ /luajit$/ { j[$1] = $2 }
  FILENAME ~ /ajv$/    { a[$1] = $2 }
  function r(x, y) { return (x && y) ? sprintf("%.2f", x / y) : "-" }
  function f(x) { return x ? sprintf("%.0f", x) : "-" }
  END {
    printf "%-24s %14s %14s %14s %10s %10s\n", "case (per s)", "Lua 5.4", "LuaJIT", "ajv", "5.4/ajv", "JIT/ajv"
    for (i = 1; i <= n; i++) { k = order[i]; b = k; sub(/_validate$/, "", b)
      printf "%-24s %14s %14s %14s %10s %10s\n", k, f(l[k]), f(j[k]), f(a[b]), r(l[k], a[b]), r(j[k], a[b]) }
  }' "$tmp/lua54" "$tmp/luajit" "$tmp/ajv"
