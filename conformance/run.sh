#!/usr/bin/env bash
# Runs client scenarios of the official MCP conformance suite against
# conformance/client.lua on one Lua build:
#   conformance/run.sh LUA_BIN BUILD_DIR SCENARIO@SPEC-VERSION...
# (SPEC-VERSION "extension": an extension scenario, run without --spec-version)
# (`make conformance` passes the list of mk/conformance.mk.) Prints one line
# per scenario, then "conformance: N passed, N failed" where failed counts
# the unexpected outcomes (FAIL, XPASS; expected failures are listed with
# their reason just before it); exits 1 when a scenario failed that
# conformance/expected-failures.txt does not list, or one it lists passed.
# Each scenario's results: build/conformance/<scenario>/ (checks.json,
# the client's stdout.txt/stderr.txt) and build/conformance/<scenario>.log.
set -uo pipefail
lua_bin=${1:?usage: run.sh LUA_BIN BUILD_DIR SCENARIO@VERSION...}
build=${2:?usage: run.sh LUA_BIN BUILD_DIR SCENARIO@VERSION...}
shift 2
[ $# -gt 0 ] || { echo "run.sh: no scenarios given" >&2; exit 2; }
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
command -v "$lua_bin" >/dev/null || { echo "run.sh: no $lua_bin on PATH" >&2; exit 1; }
[ -f "$build/favcrm/core.so" ] || { echo "run.sh: no $build/favcrm/core.so (make first)" >&2; exit 1; }
nodedir=$(bash .ci/conformance-deps.sh) || exit 1
export PATH="$nodedir:$PATH"
suite="$top/conformance/node_modules/.bin/conformance"
export LUA_PATH="$top/lua/?.lua;$top/lua/?/init.lua;;"
export LUA_CPATH="$top/$build/?.so;;"
out="$top/build/conformance"
mkdir -p "$out"

# scenario -> reason, from the expected-failures file
declare -A expected=()
while IFS= read -r line; do
  line=${line%%#*}
  name=${line%%[[:space:]]*}
  [ -n "$name" ] || continue
  reason=$(echo "${line#"$name"}" | sed 's/^[[:space:]]*//; s/[[:space:]]*$//')
  [ -n "$reason" ] || { echo "run.sh: expected-failures.txt: '$name' has no reason" >&2; exit 2; }
  expected[$name]=$reason
done < conformance/expected-failures.txt

passed=0 failed=0 xfail=0 bad=0
for item in "$@"; do
  name=${item%@*}
  version=${item#*@}
  [ "$version" != "$item" ] || { echo "run.sh: '$item' is not SCENARIO@SPEC-VERSION" >&2; exit 2; }
  safe=${name//\//_}
  rm -rf "${out:?}/$safe"
  log="$out/$safe.log"
  # SCENARIO@extension: an extension scenario (not on the spec timeline)
  if [ "$version" = extension ]; then vopt=(); else vopt=(--spec-version "$version"); fi
  timeout 300 "$suite" client --command "$lua_bin $top/conformance/client.lua" \
    --scenario "$name" "${vopt[@]}" -o "$out/$safe" >"$log" 2>&1
  rc=$?
  clean=$(sed 's/\x1b\[[0-9;]*m//g' "$log")
  counts=$(echo "$clean" | grep -o 'Passed: [0-9]*/[0-9]*, [0-9]* failed, [0-9]* warnings' | tail -1)
  counts=${counts#Passed: }
  if echo "$clean" | grep -q '^SKIPPED: scenario'; then
    # the suite skips (exit 0) a scenario outside its version window: never
    # silently (a SKIPPED check inside a scenario that ran is not that)
    rc=99
    counts="skipped by the suite: $(echo "$clean" | grep -m1 '^SKIPPED: scenario')"
  fi
  if [ $rc -eq 0 ]; then
    passed=$((passed + 1))
    if [ -n "${expected[$name]+x}" ]; then
      bad=$((bad + 1))
      printf 'XPASS %-45s %s  (listed in conformance/expected-failures.txt: take it off)\n' "$item" "$counts"
    else
      printf 'PASS  %-45s %s\n' "$item" "$counts"
    fi
  else
    failed=$((failed + 1))
    first=$(echo "$clean" | sed -n '/^Failed Checks:/{n;p;q}' | sed 's/^[[:space:]]*- //')
    [ -n "$counts" ] || counts="no result (exit $rc; see build/conformance/$safe.log)"
    if [ -n "${expected[$name]+x}" ]; then
      xfail=$((xfail + 1))
      printf 'XFAIL %-45s %s  expected: %s\n' "$item" "$counts" "${expected[$name]}"
    else
      bad=$((bad + 1))
      printf 'FAIL  %-45s %s%s\n' "$item" "$counts" "${first:+  first: $first}"
    fi
  fi
done
echo "conformance: $xfail scenarios failed as expected (conformance/expected-failures.txt says why)"
# the closing line counts the unexpected outcomes (FAIL, XPASS) as failed
echo "conformance: $passed passed, $bad failed"
[ $bad -eq 0 ]
