#!/usr/bin/env bash
# Runs the busted specs for one Lua against the local sandbox over loopback:
#   spec/support/run.sh LUA_BIN BUILD_DIR [busted args...]
# Starts the sandboxes (sessions kept, stateless, JSON responses, OAuth) in
# test mode on free ports, exports their URLs, runs busted, and stops them
# whatever happens. FAVCRM_SANDBOX_ERA (2025 default, 2026, dual; `make test
# SANDBOX_ERA=...`) picks the protocol era they speak; specs read it as
# require("spec.support.sandbox").era.
set -uo pipefail
lua_bin=${1:?usage: run.sh LUA_BIN BUILD_DIR}
build=${2:?usage: run.sh LUA_BIN BUILD_DIR}
shift 2
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top"
bash spec/support/preflight.sh "$lua_bin" "$build" || exit 1
# a Node.js the sandbox can run on (20+), first on PATH
nodedir=$(bash .ci/node.sh) || exit 1
export PATH="$nodedir:$PATH"
export FAVCRM_SANDBOX_ERA=${FAVCRM_SANDBOX_ERA:-2025}
case "$FAVCRM_SANDBOX_ERA" in 2025|2026|dual) ;; *)
  echo "run.sh: FAVCRM_SANDBOX_ERA must be 2025, 2026 or dual, not '$FAVCRM_SANDBOX_ERA'" >&2; exit 2 ;;
esac
tmp=$(mktemp -d "${TMPDIR:-/tmp}/favcrm-spec.XXXXXX")
pids=()
cleanup() {
  local rc=$?
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT INT TERM

# The five servers start side by side (each is a Node.js start-up, a few
# seconds on a loaded machine); each is then awaited in turn, with a bound.
# (A FIFO's open blocks until both ends are open, so each read end is opened
# as its server is launched, or the launches would wait on the awaits.)
declare -A fifo_fd
# launch_sandbox NAME ARGS...: starts one, its first lines come on fifo_fd[NAME]
launch_sandbox() {
  local name=$1; shift
  local fifo="$tmp/$name.fifo" fd
  mkfifo "$fifo"
  node sandbox/server.mjs --port 0 --test --outbox "$tmp/$name-outbox" "$@" \
    >"$fifo" 2>"$tmp/$name.log" &
  pids+=($!)
  exec {fd}<"$fifo"
  fifo_fd[$name]=$fd
}
# await_sandbox NAME: sets SANDBOX_URL, SANDBOX_OUTBOX
await_sandbox() {
  local name=$1
  local fd=${fifo_fd[$name]}
  local line1 line2
  if ! IFS= read -r -t 30 -u "$fd" line1 || ! IFS= read -r -t 5 -u "$fd" line2; then
    echo "run.sh: the $name sandbox did not start; its log:" >&2
    cat "$tmp/$name.log" >&2
    exit 1
  fi
  cat <&"$fd" >>"$tmp/$name.log" &
  exec {fd}<&-
  SANDBOX_URL=${line1##* }
  SANDBOX_OUTBOX=${line2##* }
}

# The reference server of the MCP project, over Streamable HTTP. It prints
# no port when given 0, so it gets a port that was free a moment ago.
everything=sandbox/node_modules/@modelcontextprotocol/server-everything/dist/index.js
port=$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
efifo="$tmp/everything.fifo"
mkfifo "$efifo"
PORT=$port node "$everything" streamableHttp >"$tmp/everything.log" 2>"$efifo" &
pids+=($!)
exec {efd}<"$efifo"

launch_sandbox stateful
launch_sandbox stateless --stateless
launch_sandbox jsonmode --json-response
launch_sandbox oauth --oauth

await_sandbox stateful
export FAVCRM_SANDBOX_URL=$SANDBOX_URL FAVCRM_SANDBOX_OUTBOX=$SANDBOX_OUTBOX
await_sandbox stateless
export FAVCRM_SANDBOX_STATELESS_URL=$SANDBOX_URL
await_sandbox jsonmode
export FAVCRM_SANDBOX_JSON_URL=$SANDBOX_URL
await_sandbox oauth
export FAVCRM_SANDBOX_OAUTH_URL=$SANDBOX_URL

ready=
while IFS= read -r -t 30 -u "$efd" line; do
  case "$line" in *"listening on port"*) ready=1; break ;; esac
done
[ -n "$ready" ] || { echo "run.sh: the everything server did not start" >&2; exit 1; }
cat <&"$efd" >>"$tmp/everything.log" &
exec {efd}<&-
export FAVCRM_EVERYTHING_URL="http://127.0.0.1:$port/mcp" FAVCRM_EVERYTHING_BIN="$top/$everything"

# The specs never see a user's real key or config.
unset FAVCRM_API_KEY FAVCRM_MCP_TOKEN FAVCRM_MCP_URL FAVCRM_MCP_ENDPOINT FAVCRM_TIMEOUT_MS
export HOME="$tmp/home" XDG_CONFIG_HOME="$tmp/home/.config"
mkdir -p "$HOME"
export FAVCRM_SPEC_TMP="$tmp" FAVCRM_LUA_BIN="$lua_bin" FAVCRM_BUILD="$build"
export LUA_PATH="$top/lua/?.lua;$top/lua/?/init.lua;$top/spec/?.lua;;"
export LUA_CPATH="$top/$build/?.so;;"
busted=$(command -v busted || echo /usr/bin/busted)
echo "specs: $($lua_bin -v 2>&1 | head -1) against $FAVCRM_SANDBOX_URL (sandbox era $FAVCRM_SANDBOX_ERA)"
set +e
# extra arguments (spec files, --filter=...) replace the default: all of spec/
[ $# -gt 0 ] || set -- spec
"$lua_bin" "$busted" --output=spec/support/summary.lua "$@" 2>&1 | tee "$tmp/busted.out"
rc=${PIPESTATUS[0]}

# No key a spec saw may appear in what the run printed or logged.
if [ -s "$tmp/keys.seen" ]; then
  leaks=0
  while IFS= read -r key; do
    [ -n "$key" ] || continue
    if grep -rqF -- "$key" "$tmp/busted.out" "$tmp"/*.log; then
      echo "run.sh: an API key ($(printf '%s' "${key:0:8}")...) appears in the run's output or logs" >&2
      leaks=1
    fi
  done < "$tmp/keys.seen"
  echo "secrets: $(sort -u "$tmp/keys.seen" | wc -l) keys checked against the run's output and logs: $([ $leaks = 0 ] && echo none found || echo LEAKED)"
  [ $leaks = 0 ] || rc=1
fi
exit $rc
