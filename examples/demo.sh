#!/usr/bin/env bash
# `make demo`: the signup conversation end to end against a local sandbox.
#   examples/demo.sh LUA_BIN BUILD_DIR
# Starts the sandbox in test mode on a free loopback port, keeps the key in a
# throw-away config folder (never yours), runs examples/demo.lua, and stops
# everything it started on the way out, whatever happens. The sandbox speaks
# the era FAVCRM_SANDBOX_ERA names (`make demo SANDBOX_ERA=2025|2026|dual`).
set -uo pipefail
lua_bin=${1:?usage: demo.sh LUA_BIN BUILD_DIR}
build=${2:?usage: demo.sh LUA_BIN BUILD_DIR}
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
case "$build" in /*) ;; *) build="$top/$build" ;; esac

if [ ! -f "$build/favcrm/core.so" ]; then
  echo "demo.sh: $build/favcrm/core.so is missing; run 'make demo' (or 'make module') first" >&2
  exit 1
fi
# a Node.js the sandbox can run on (20+), first on PATH
nodedir=$(bash .ci/node.sh) || exit 1
export PATH="$nodedir:$PATH"
if [ ! -d sandbox/node_modules ]; then
  echo "demo.sh: the sandbox's packages are missing; run 'make sandbox-deps' (or 'make demo')" >&2
  exit 1
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/favcrm-demo.XXXXXX")
pid="" catpid=""
cleanup() {
  if [ -n "$pid" ]; then
    kill "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  fi
  if [ -n "$catpid" ]; then
    kill "$catpid" 2>/dev/null
    wait "$catpid" 2>/dev/null
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fifo="$tmp/sandbox.fifo"
mkfifo "$fifo"
node sandbox/server.mjs --port 0 --test --era "${FAVCRM_SANDBOX_ERA:-2025}" --outbox "$tmp/outbox" >"$fifo" 2>"$tmp/sandbox.log" &
pid=$!
exec {fd}<"$fifo"
if ! IFS= read -r -t 30 -u "$fd" line1 || ! IFS= read -r -t 5 -u "$fd" line2; then
  echo "demo.sh: the sandbox did not start; its log:" >&2
  cat "$tmp/sandbox.log" >&2
  exit 1
fi
cat <&"$fd" >>"$tmp/sandbox.log" &
catpid=$!
exec {fd}<&-
url=${line1##* }
outbox=${line2##* }

# The demo never sees your key or your config.
unset FAVCRM_API_KEY FAVCRM_MCP_TOKEN FAVCRM_MCP_URL FAVCRM_MCP_ENDPOINT FAVCRM_TIMEOUT_MS
export XDG_CONFIG_HOME="$tmp/config"
export LUA_PATH="$top/lua/?.lua;$top/lua/?/init.lua;;"
export LUA_CPATH="$build/?.so;;"

"$lua_bin" examples/demo.lua "$url" "$outbox"
status=$?
if [ "$status" -ne 0 ]; then
  echo "demo.sh: the demo failed (exit $status); the sandbox's log:" >&2
  cat "$tmp/sandbox.log" >&2
fi
exit "$status"
