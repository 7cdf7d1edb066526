#!/usr/bin/env bash
# bench/openresty.sh [--smoke]: favcrm.resty inside nginx against nginx's own
# proxy_pass, same nginx, same sandbox, same tools/call (issue 19).
#
# One Debian nginx with lua-nginx-module (worker_processes 1) serves
#   /resty  content_by_lua: favcrm.new{transport = favcrm.resty.new()} per
#           request, client:call("list_services"), client:close()
#   /proxy  proxy_pass to an upstream with a keepalive pool, the same
#           tools/call body with the headers of a session the script
#           initialised once (the floor: nginx forwarding bytes)
# and wrk (2 threads, 50 connections, 10 s) hits each in turn, round by
# round, after a warm-up. Writes build/bench/openresty.json and merges it
# as `openresty` into OUT_JSON (bench/results.json; build/bench/ with
# --smoke): resty_req_s, proxy_pass_req_s, errors (socket errors and
# non-2xx answers of every measured run), resty_vs_proxy_pass (the median
# of the per-round ratios), the rounds and the wrk command.
# Knobs: BENCH_OR_ROUNDS (5), BENCH_OR_SECS (10), BENCH_OR_CONNS (50),
# BENCH_OR_THREADS (2), BENCH_OR_WARMUP_SECS (3).
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top" || exit 1

smoke=0
[ "${1:-}" = "--smoke" ] && smoke=1
if [ $smoke = 1 ]; then
  rounds=${BENCH_OR_ROUNDS:-1} secs=${BENCH_OR_SECS:-2} warm=${BENCH_OR_WARMUP_SECS:-1}
  out_json=build/bench/smoke-results.json
else
  rounds=${BENCH_OR_ROUNDS:-5} secs=${BENCH_OR_SECS:-10} warm=${BENCH_OR_WARMUP_SECS:-3}
  out_json=bench/results.json
fi
conns=${BENCH_OR_CONNS:-50} threads=${BENCH_OR_THREADS:-2}

die() { echo "bench/openresty: $*" >&2; exit 1; }
modules=/usr/lib/nginx/modules
for f in /usr/sbin/nginx "$modules/ngx_http_lua_module.so" build/luajit/favcrm/core.so; do
  [ -e "$f" ] || die "$f is missing (bash .ci/deps.sh luajit bench; make LUA=luajit)"
done
command -v wrk >/dev/null 2>&1 || die "wrk is missing (bash .ci/deps.sh luajit bench)"
[ -d sandbox/node_modules/@modelcontextprotocol/sdk ] || die "sandbox/node_modules is missing (bash .ci/sandbox-deps.sh)"
nodedir=$(bash .ci/node.sh) || exit 1
export PATH="$nodedir:$PATH"

mkdir -p build/bench
tmp=$(mktemp -d "${TMPDIR:-/tmp}/favcrm-bench-or.XXXXXX")
pids=()
cleanup() {
  [ -f "$tmp/nginx.pid" ] && kill "$(cat "$tmp/nginx.pid")" 2>/dev/null
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- the sandbox (as bench/run.sh starts it) ---------------------------------
fifo="$tmp/sandbox.fifo"
mkfifo "$fifo"
node sandbox/server.mjs --port 0 --test --quiet --rate 1000000/1000000 --outbox "$tmp/outbox" \
  >"$fifo" 2>"$tmp/sandbox.log" &
pids+=("$!")
exec {fd}<"$fifo"
IFS= read -r -t 30 -u "$fd" line1 || { cat "$tmp/sandbox.log" >&2; die "the sandbox did not start"; }
cat <&"$fd" >>"$tmp/sandbox.log" &
pids+=("$!")
exec {fd}<&-
url=${line1##* }
base=${url%/mcp}
upstream=${base#http://}

acct=$(curl -sS --fail -X POST "$base/_sandbox/accounts" -H 'Content-Type: application/json' \
  -d '{"email":"bench-openresty@example.com"}') || die "POST /_sandbox/accounts failed"
key=$(printf '%s' "$acct" | sed -n 's/.*"apiKey":"\([^"]*\)".*/\1/p')
[ -n "$key" ] || die "no apiKey in the /_sandbox/accounts answer"
unset acct

# The proxy_pass location's session: initialised once, here.
pv=2025-11-25
hdrs=(-H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream'
  -H "Authorization: Bearer $key")
sid=$(curl -sS --fail -D - -o /dev/null "${hdrs[@]}" "$url" -d '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"'$pv'","capabilities":{},"clientInfo":{"name":"bench-proxy","version":"1"}}}' \
  | tr -d '\r' | sed -n 's/^[Mm]cp-[Ss]ession-[Ii]d: *//p')
[ -n "$sid" ] || die "the sandbox gave no Mcp-Session-Id"
curl -sS --fail -o /dev/null "${hdrs[@]}" -H "Mcp-Session-Id: $sid" -H "MCP-Protocol-Version: $pv" "$url" \
  -d '{"jsonrpc":"2.0","method":"notifications/initialized"}' || die "notifications/initialized failed"

# ---- nginx --------------------------------------------------------------------
port=$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
mkdir -p "$tmp/logs"
as_root=""
[ "$(id -u)" = 0 ] && as_root="user root root;"
# The key is written into the config file (in a 0700 folder that goes at the
# end) for proxy_set_header; it never reaches a command line.
cat > "$tmp/nginx.conf" <<CONF
$as_root
daemon on;
worker_processes 1;
pid $tmp/nginx.pid;
error_log $tmp/logs/error.log warn;
load_module $modules/ndk_http_module.so;
load_module $modules/ngx_http_lua_module.so;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $tmp/tmp-body;
  proxy_temp_path $tmp/tmp-proxy;
  fastcgi_temp_path $tmp/tmp-fcgi;
  uwsgi_temp_path $tmp/tmp-uwsgi;
  scgi_temp_path $tmp/tmp-scgi;
  lua_package_path "$top/lua/?.lua;$top/lua/?/init.lua;/usr/share/lua/5.1/?.lua;;";
  lua_package_cpath "$top/build/luajit/?.so;/usr/lib/x86_64-linux-gnu/lua/5.1/?.so;;";
  upstream sandbox {
    server $upstream;
    keepalive 64;
  }
  server {
    listen 127.0.0.1:$port;
    location = /resty {
      content_by_lua_block {
        local favcrm = require("favcrm")
        local client = favcrm.new({ url = "$url", api_key = "$key",
          transport = require("favcrm.resty").new({ pool_size = 64 }) })
        local data, err = client:call("list_services")
        client:close()
        if data == nil then
          ngx.status = 502
          ngx.say(tostring(err))
          return
        end
        ngx.say("ok")
      }
    }
    location = /proxy {
      proxy_pass http://sandbox/mcp;
      proxy_http_version 1.1;
      proxy_method POST;
      proxy_set_header Connection "";
      proxy_set_header Content-Type "application/json";
      proxy_set_header Accept "application/json, text/event-stream";
      proxy_set_header Authorization "Bearer $key";
      proxy_set_header Mcp-Session-Id "$sid";
      proxy_set_header MCP-Protocol-Version "$pv";
      proxy_pass_request_body off;
      proxy_set_body '{"jsonrpc":"2.0","id":"\$request_id","method":"tools/call","params":{"name":"list_services","arguments":{}}}';
    }
  }
}
CONF
unset key
nginx -p "$tmp" -c "$tmp/nginx.conf" -e "$tmp/logs/error.log" || die "nginx did not start"
ok=
for _ in $(seq 1 100); do
  if curl -s -o /dev/null "http://127.0.0.1:$port/proxy"; then ok=1; break; fi
  sleep 0.05
done
[ -n "$ok" ] || { cat "$tmp/logs/error.log" >&2; die "nginx does not answer"; }
# Both locations answer what they should before anything is measured.
r=$(curl -sS "http://127.0.0.1:$port/resty")
[ "$r" = ok ] || { cat "$tmp/logs/error.log" >&2; die "/resty answered: $r"; }
r=$(curl -sS "http://127.0.0.1:$port/proxy")
case "$r" in *'"result"'*'"structuredContent"'*) ;; *) die "/proxy answered: $r" ;; esac

# ---- wrk ------------------------------------------------------------------------
# wrk_run LOCATION SECS -> "req_per_s errors" on stdout
wrk_run() {
  local out rps errs non2xx
  out=$(wrk -t"$threads" -c"$conns" -d"$2"s "http://127.0.0.1:$port/$1" 2>&1) || die "wrk failed: $out"
  rps=$(printf '%s\n' "$out" | sed -n 's/^Requests\/sec: *//p')
  errs=$(printf '%s\n' "$out" | sed -n 's/.*Socket errors: connect \([0-9]*\), read \([0-9]*\), write \([0-9]*\), timeout \([0-9]*\).*/\1 \2 \3 \4/p' \
    | awk '{print $1+$2+$3+$4}')
  non2xx=$(printf '%s\n' "$out" | sed -n 's/.*Non-2xx or 3xx responses: *\([0-9]*\).*/\1/p')
  echo "${rps:-0} $(( ${errs:-0} + ${non2xx:-0} ))"
}
cmd="wrk -t$threads -c$conns -d${secs}s"
echo "bench/openresty: nginx $(nginx -v 2>&1 | sed 's/.*\///'), 1 worker, sandbox at $url; $rounds round(s) of: $cmd on /resty then /proxy"
echo "bench/openresty: load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
wrk_run resty "$warm" >/dev/null
wrk_run proxy "$warm" >/dev/null
stats_before=$(curl -sS "$base/_sandbox/stats")
rows=()
for r in $(seq 1 "$rounds"); do
  read -r a ea < <(wrk_run resty "$secs")
  read -r b eb < <(wrk_run proxy "$secs")
  echo "bench/openresty: round $r: resty $a req/s ($ea errors), proxy_pass $b req/s ($eb errors)"
  rows+=("$a $ea $b $eb")
done
stats_after=$(curl -sS "$base/_sandbox/stats")
echo "bench/openresty: load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
if grep -q "lua entry thread aborted\|\[error\]" "$tmp/logs/error.log"; then
  echo "bench/openresty: nginx's error log:" >&2
  tail -20 "$tmp/logs/error.log" >&2
fi

printf '%s\n' "${rows[@]}" > "$tmp/rows"
printf '%s\n%s\n' "$stats_before" "$stats_after" > "$tmp/stats"
LUA_CPATH="$top/build/5.4/?.so;;" lua5.4 - "$tmp/rows" "$tmp/stats" "$cmd" "$rounds" build/bench/openresty.json <<'LUA' || die "could not write the figures"
local cjson = require("cjson")
local rows_path, stats_path, cmd, rounds, out = arg[1], arg[2], arg[3], tonumber(arg[4]), arg[5]
local function median(t)
  local s = {}
  for i, v in ipairs(t) do s[i] = v end
  table.sort(s)
  local m = (#s + 1) / 2
  return (s[math.floor(m)] + s[math.ceil(m)]) / 2
end
local function round(x, d) local m = 10 ^ (d or 0) return math.floor(x * m + 0.5) / m end
local a, b, ratios, errors, per = {}, {}, {}, 0, {}
for line in io.lines(rows_path) do
  local ra, ea, rb, eb = line:match("^(%S+) (%d+) (%S+) (%d+)$")
  ra, rb = tonumber(ra), tonumber(rb)
  a[#a + 1], b[#b + 1] = ra, rb
  ratios[#ratios + 1] = rb > 0 and ra / rb or 0
  errors = errors + tonumber(ea) + tonumber(eb)
  per[#per + 1] = { resty_req_s = round(ra, 1), proxy_pass_req_s = round(rb, 1), resty_errors = tonumber(ea),
    proxy_pass_errors = tonumber(eb) }
end
local f = io.open(stats_path)
local before, after = cjson.decode(f:read("l")), cjson.decode(f:read("l"))
f:close()
local function delta(k, sub)
  local x = (after[k] or {})[sub] or 0
  local y = (before[k] or {})[sub] or 0
  return x - y
end
local ratio = median(ratios)
local res = {
  resty_req_s = round(median(a), 1), proxy_pass_req_s = round(median(b), 1), errors = errors,
  resty_vs_proxy_pass = round(ratio, 3), date = os.date("!%Y-%m-%dT%H:%M:%SZ"), goal = ">= 0.8 with 0 errors", met = ratio >= 0.8 and errors == 0,
  rounds = per, how = cmd .. " per location and round, alternating; 1 nginx worker; figures are medians, "
    .. "the ratio the median of the per-round ratios",
  -- what the sandbox saw during the measured runs (favcrm.resty's requests included)
  sandbox_initialize = delta("by_method", "initialize"), sandbox_tools_list = delta("by_method", "tools/list"),
  sandbox_delete = delta("by_http_method", "DELETE"), sandbox_tools_call = delta("by_method", "tools/call"),
}
f = assert(io.open(out, "w"))
f:write(cjson.encode(res), "\n")
f:close()
print(string.format("bench/openresty: resty %.1f req/s, proxy_pass %.1f req/s, ratio %.3f (goal >= 0.8), %d errors; "
  .. "during the runs the sandbox saw %d initialize, %d tools/list, %d DELETE, %d tools/call", res.resty_req_s,
  res.proxy_pass_req_s, res.resty_vs_proxy_pass, errors, res.sandbox_initialize, res.sandbox_tools_list,
  res.sandbox_delete, res.sandbox_tools_call))
LUA
LUA_CPATH="$top/build/5.4/?.so;;" lua5.4 bench/report.lua --merge "$out_json" openresty build/bench/openresty.json
