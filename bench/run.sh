#!/usr/bin/env bash
# The `make bench` driver: bench/run.sh [--smoke]
#
# Starts one sandbox, makes one workspace, and runs every client against it
# in the same run, interleaved round by round (so a drift of the machine or
# of the server hits every client alike):
#   libcurl_c, favcrm_lua54, favcrm_luajit, ts_sdk: N sequential list_services
#     calls after WARMUP, and the same with N=0 (the driver's getrusage of the
#     two runs gives the CPU of exactly N calls);
#   favcrm_lua54 call_many at 1 and 8 in flight; then call_many at 64 and
#     server_ceiling (libcurl_c, 64 handles on curl multi) back to back,
#     BENCH_PAIRS pairs, the order alternating.
# Then bench/schema_bench.sh (the schema engineer's), and bench/report.lua
# turns the raw lines into the table, the JSON and the chart.
#
# --smoke: one round of a few hundred calls, written under build/bench/ only;
# fails on errors, never on slowness.
# Then, once, each of libcurl_c and favcrm_* under callgrind with N and 0
# calls: instructions per call (instr_per_call), which load cannot move.
# Knobs (environment): BENCH_ROUNDS, BENCH_N, BENCH_WARMUP, BENCH_MANY_N,
# BENCH_CEILING_N (calls in each c64 and ceiling run), BENCH_SCHEMA_SECS, BENCH_CLIENTS (space-separated subset),
# BENCH_INSTR=0 (no callgrind runs), BENCH_INSTR_N, BENCH_PAIRS (c64/ceiling
# pairs a round), BENCH_STARTS (start-up-only runs per client a round).
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top" || exit 1

smoke=0
[ "${1:-}" = "--smoke" ] && smoke=1
if [ $smoke = 1 ]; then
  rounds=${BENCH_ROUNDS:-1} n=${BENCH_N:-300} warm=${BENCH_WARMUP:-30}
  many_n=${BENCH_MANY_N:-300} schema_secs=${BENCH_SCHEMA_SECS:-0.2}
  npairs=${BENCH_PAIRS:-2}
  pair_n=${BENCH_CEILING_N:-$many_n}
  starts=${BENCH_STARTS:-1}
  out_json=build/bench/smoke-results.json out_png=""
else
  rounds=${BENCH_ROUNDS:-5} n=${BENCH_N:-2000} warm=${BENCH_WARMUP:-200}
  many_n=${BENCH_MANY_N:-2000} schema_secs=${BENCH_SCHEMA_SECS:-1}
  npairs=${BENCH_PAIRS:-3}
  pair_n=${BENCH_CEILING_N:-$many_n}
  starts=${BENCH_STARTS:-3}
  out_json=bench/results.json out_png=bench/results.png
fi
clients=${BENCH_CLIENTS:-"libcurl_c favcrm_lua54 favcrm_luajit favcrm_lua54_2026 favcrm_luajit_2026 ts_sdk"}

mkdir -p build/bench
tmp=$(mktemp -d "${TMPDIR:-/tmp}/favcrm-bench.XXXXXX")
raw="$tmp/raw.jsonl"
: > "$raw"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

die() { echo "bench: $*" >&2; exit 1; }

for f in build/bench/runstat build/bench/libcurl_c build/5.4/favcrm/core.so build/luajit/favcrm/core.so; do
  [ -e "$f" ] || die "$f is missing (run it through make bench / make bench-smoke)"
done
[ -d sandbox/node_modules/@modelcontextprotocol/sdk ] || die "sandbox/node_modules is missing (bash .ci/sandbox-deps.sh)"

# ---- the sandboxes (the same start-up as spec/support/run.sh) ----------------
# start_sandbox ERA: a sandbox of that protocol era (2025: the v1 SDK, which
# every client but the *_2026 entries talks to; 2026: the v2 SDK, MCP
# 2026-07-28 only) with a ready workspace; sets `url` and `key` (the key
# lives in this process's environment only, never argv).
start_sandbox() {
  local era=$1 fifo="$tmp/sandbox-$1.fifo" line1 acct fd
  mkfifo "$fifo"
  node sandbox/server.mjs --port 0 --test --quiet --rate 100000/100000 --outbox "$tmp/outbox-$era" \
    --era "$era" >"$fifo" 2>"$tmp/sandbox-$era.log" &
  pids+=("$!")
  exec {fd}<"$fifo"
  if ! IFS= read -r -t 30 -u "$fd" line1; then
    echo "bench: the $era sandbox did not start; its log:" >&2
    cat "$tmp/sandbox-$era.log" >&2
    exit 1
  fi
  cat <&"$fd" >>"$tmp/sandbox-$era.log" &
  pids+=("$!")
  exec {fd}<&-
  url=${line1##* }
  acct=$(curl -sS --fail -X POST "${url%/mcp}/_sandbox/accounts" -H 'Content-Type: application/json' \
    -d '{"email":"bench@example.com"}') || die "POST /_sandbox/accounts failed ($era sandbox)"
  key=$(printf '%s' "$acct" | sed -n 's/.*"apiKey":"\([^"]*\)".*/\1/p')
  [ -n "$key" ] || die "no apiKey in the /_sandbox/accounts answer ($era sandbox)"
}
start_sandbox 2025
export FAVCRM_BENCH_URL="$url" FAVCRM_BENCH_KEY="$key"
url_2025=$url
case " $clients " in
  *_2026\ *)
    start_sandbox 2026
    export FAVCRM_BENCH_URL_2026="$url" FAVCRM_BENCH_KEY_2026="$key"
    url=$url_2025 ;;
esac
unset key
export LUA_PATH="$top/lua/?.lua;$top/lua/?/init.lua;;"

# ---- one measured run --------------------------------------------------------
# run ROUND CLIENT KIND ARGS... : appends {"round":..,"client":..,"kind":..,
# "res":<the client's JSON line>,"stat":{wall_ms,user_us,sys_us,maxrss_kb}}
# split_env: `cmd` (env VAR=... PROGRAM ARGS) into the arrays envs and rest
split_env() {
  local i=1
  envs=() rest=()
  while [[ "${cmd[$i]}" == *=* ]]; do envs+=("${cmd[$i]}"); i=$((i + 1)); done
  rest=("${cmd[@]:$i}")
}
cmd_for() { # CLIENT -> the command line, in the array `cmd`
  case "$1" in
    libcurl_c)     cmd=(build/bench/libcurl_c) ;;
    favcrm_lua54)  cmd=(env LUA_CPATH="$top/build/5.4/?.so;;" lua5.4 bench/favcrm.lua) ;;
    favcrm_luajit) cmd=(env LUA_CPATH="$top/build/luajit/?.so;;" luajit bench/favcrm.lua) ;;
    ts_sdk)        cmd=(node bench/ts_sdk.mjs) ;;
    # the same client pinned to MCP 2026-07-28 against the 2026-only sandbox
    # (stateless: no handshake, no session)
    favcrm_lua54_2026)  cmd=(env LUA_CPATH="$top/build/5.4/?.so;;" FAVCRM_BENCH_ERA=2026 lua5.4 bench/favcrm.lua) ;;
    favcrm_luajit_2026) cmd=(env LUA_CPATH="$top/build/luajit/?.so;;" FAVCRM_BENCH_ERA=2026 luajit bench/favcrm.lua) ;;
    *) die "unknown client $1" ;;
  esac
}
run() {
  local round=$1 client=$2 kind=$3; shift 3
  local cmd res wall user sys rss rc
  cmd_for "$client"
  # runstat (not `env`) must be the direct parent: it reads the child's rusage
  if [ "${cmd[0]}" = env ]; then
    split_env
    res=$(env "${envs[@]}" build/bench/runstat "$tmp/stat" -- "${rest[@]}" "$@" 2>"$tmp/err")
  else
    res=$(build/bench/runstat "$tmp/stat" -- "${cmd[@]}" "$@" 2>"$tmp/err")
  fi
  rc=$?
  if [ $rc -ne 0 ] || [ -z "$res" ]; then
    echo "bench: $client $kind ($*) failed (exit $rc):" >&2
    cat "$tmp/err" >&2
    echo "bench: the sandbox log ends with:" >&2
    tail -20 "$tmp/sandbox.log" >&2
    exit 1
  fi
  read -r wall user sys rss rc < "$tmp/stat"
  printf '{"round":%d,%s"client":"%s","kind":"%s","res":%s,"stat":{"wall_ms":%s,"user_us":%s,"sys_us":%s,"maxrss_kb":%s}}\n' \
    "$round" "${PAIR:+\"pair\":$PAIR,}" "$client" "$kind" "$res" "$wall" "$user" "$sys" "$rss" >> "$raw"
}

echo "bench: sandbox at $url; $rounds round(s) of $n calls after $warm warm-up; clients: $clients"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
echo "bench: load average before: $load_before"

# Warm the servers (their JIT) before anything counts: the 2026 sandbox too
# (without it the first round's 2026 start-up met a cold server: 190 ms
# against 40-60 ms in the later rounds).
run 0 libcurl_c warmup seq 2000 200
run 0 favcrm_lua54 warmup seq 500 50
case " $clients " in
  *" favcrm_lua54_2026 "*) run 0 favcrm_lua54_2026 warmup seq 500 50 ;;
  *" favcrm_luajit_2026 "*) run 0 favcrm_luajit_2026 warmup seq 500 50 ;;
esac

for r in $(seq 1 "$rounds"); do
  printf 'bench: round %d/%d:' "$r" "$rounds"
  for c in $clients; do
    printf ' %s' "$c"
    run "$r" "$c" seq seq "$n" "$warm"
    run "$r" "$c" base seq 0 "$warm"
  done
  # start-up on its own: BENCH_STARTS runs of one call per client, the
  # clients interleaved, none right after a client's 2000 calls; with the
  # seq and base runs above, the round's start-up is the median of these
  # runs (report.lua)
  printf ' start-up x%d' "$starts"
  for k in $(seq 1 "$starts"); do
    for c in $clients; do run "$r" "$c" start seq 0 1; done
  done
  printf ' call_many'
  for k in 1 8; do
    run "$r" favcrm_lua54 "c$k" many "$many_n" "$warm" "$k"
  done
  # call_many at 64 against the server's ceiling: the two run back to back,
  # BENCH_PAIRS pairs a round, the order alternating (ceiling first in odd
  # pairs), so both runs of a pair see the same machine; report.lua takes
  # each pair's ratio and the round's median of them
  printf ' c64/ceiling x%d' "$npairs"
  for p in $(seq 1 "$npairs"); do
    if [ $((p % 2)) = 1 ]; then
      PAIR=$p run "$r" libcurl_c ceiling multi "$pair_n" "$warm" 64
      PAIR=$p run "$r" favcrm_lua54 c64 many "$pair_n" "$warm" 64
    else
      PAIR=$p run "$r" favcrm_lua54 c64 many "$pair_n" "$warm" 64
      PAIR=$p run "$r" libcurl_c ceiling multi "$pair_n" "$warm" 64
    fi
  done
  echo
done
echo "bench: load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

# ---- instructions per call (callgrind) --------------------------------------
# A figure a busy machine cannot move: each client under valgrind's
# callgrind, with N calls and with 0 calls (same start-up and warm-up); the
# difference divided by N is what one sequential call costs in instructions
# (libcurl, the Lua VM, cjson, favcrm's C, malloc: the whole process).
# BENCH_INSTR=0 skips it; BENCH_INSTR_N calls (1000; 50 for --smoke): at
# 300 the Lua figures moved by up to 2k between runs (where the collector's
# and malloc's cycles fall), at 1000 by a few hundred.
instr_n=${BENCH_INSTR_N:-1000}
[ $smoke = 1 ] && instr_n=${BENCH_INSTR_N:-50}
instr_clients=""
for c in $clients; do
  case "$c" in libcurl_c|favcrm_*) instr_clients="$instr_clients $c" ;; esac
done
if [ "${BENCH_INSTR:-1}" != 0 ] && [ -n "$instr_clients" ]; then
  if command -v valgrind >/dev/null 2>&1; then
    printf 'bench: instructions per call (callgrind, %d calls):' "$instr_n"
    instr_of() { # CLIENT N -> the instruction count of one run, on stdout
      local cmd out
      cmd_for "$1"
      if [ "${cmd[0]}" = env ]; then
        split_env
        out=$(env "${envs[@]}" valgrind --tool=callgrind --callgrind-out-file=/dev/null "${rest[@]}" \
          seq "$2" "$warm" 2>&1 >/dev/null)
      else
        out=$(valgrind --tool=callgrind --callgrind-out-file=/dev/null "${cmd[@]}" seq "$2" "$warm" 2>&1 >/dev/null)
      fi
      printf '%s\n' "$out" | sed -n 's/.*Collected : \([0-9][0-9]*\).*/\1/p' | tail -1
    }
    for c in $instr_clients; do
      printf ' %s' "$c"
      i_n=$(instr_of "$c" "$instr_n")
      i_0=$(instr_of "$c" 0)
      if [ -z "$i_n" ] || [ -z "$i_0" ]; then
        echo
        die "callgrind run of $c failed"
      fi
      printf '{"round":1,"client":"%s","kind":"instr","res":{"n":%d,"instr_n":%s,"instr_0":%s}}\n' \
        "$c" "$instr_n" "$i_n" "$i_0" >> "$raw"
    done
    echo
  else
    echo "bench: no valgrind, so no instr_per_call (bash .ci/deps.sh checks installs it)" >&2
  fi
fi

# ---- schema (bench/schema_bench.sh belongs to the schema engineer) ----------
schema_out="$tmp/schema.txt"
: > "$schema_out"
if [ -f bench/schema_bench.sh ] && [ "${BENCH_SKIP_SCHEMA:-0}" != 1 ]; then
  echo "bench: bench/schema_bench.sh $schema_secs"
  if ! bash bench/schema_bench.sh "$schema_secs" > "$schema_out" 2>"$tmp/schema.err"; then
    echo "bench: bench/schema_bench.sh failed (schema.* left out):" >&2
    cat "$tmp/schema.err" >&2
    : > "$schema_out"
  fi
fi

# ---- report ------------------------------------------------------------------
meta="$tmp/meta.json"
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
{
  printf '{"date":"%s",' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  printf '"cpu":"%s","cores":%s,' "${cpu//\"/}" "$(nproc)"
  printf '"mem_mb":%s,' "$(awk '/MemTotal/ {printf "%d", $2/1024}' /proc/meminfo)"
  printf '"kernel":"%s",' "$(uname -sr)"
  printf '"lua54":"%s",' "$(lua5.4 -v 2>&1 | head -1 | cut -d' ' -f1-2)"
  printf '"luajit":"%s",' "$(luajit -v 2>&1 | head -1 | cut -d' ' -f1-2)"
  printf '"node":"%s",' "$(node -v)"
  printf '"libcurl":"%s",' "$(curl-config --version 2>/dev/null || pkg-config --modversion libcurl)"
  printf '"mcp_sdk":"%s",' "$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' sandbox/node_modules/@modelcontextprotocol/sdk/package.json | head -1)"
  printf '"rounds":%d,"n":%d,"warmup":%d,"many_n":%d,"ceiling_n":%d,"instr_n":%d,"smoke":%s,' \
    "$rounds" "$n" "$warm" "$many_n" "$pair_n" "$instr_n" "$([ $smoke = 1 ] && echo true || echo false)"
  printf '"loadavg_before":"%s","loadavg_after":"%s"}\n' "$load_before" "$(cut -d' ' -f1-3 /proc/loadavg)"
} > "$meta"

# kept, so bench/report.lua can be rerun on them: see bench/README.md
tag=""
[ $smoke = 1 ] && tag=smoke-
cp "$raw" "build/bench/${tag}raw.jsonl"
cp "$meta" "build/bench/${tag}meta.json"
cp "$schema_out" "build/bench/${tag}schema.txt"
LUA_CPATH="$top/build/5.4/?.so;;" lua5.4 bench/report.lua "$raw" "$meta" "$schema_out" "$out_json" "$out_png"
# README's benchmark table quotes this run (not a smoke run)
if [ $smoke = 0 ]; then
  LUA_CPATH="$top/build/5.4/?.so;;" lua5.4 bench/report.lua --readme "$out_json" README.md
fi
