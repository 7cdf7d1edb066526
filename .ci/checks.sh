#!/usr/bin/env bash
# CI: the memory-safety checks of issue 8, for Lua 5.4: the whole spec suite
# under ASan+UBSan, the spec suite under valgrind (busted's process; see
# VG_SPECS in mk/checks.mk for what it leaves out and why), and a short
# libFuzzer smoke run of each fuzz target. .ci/run calls this after the
# `make test` runs. Budget on the CI machine (2 cores): see docs/LIMITS.md
# and the timings `make asan` / `make valgrind` print.
#   FUZZ_SECONDS=0 skips the fuzz smoke run (default 10 s a target).
#   CHECKS_ASAN_DONE="SPEC..." leaves those spec files out of the ASan run,
#   CHECKS_VG_DONE="SPEC..." out of the valgrind run (.ci/run runs
#   spec/integration/everything_spec.lua under both in its lane).
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive

# valgrind, clang with libFuzzer, and what the TLS and secrets specs use
bash .ci/deps.sh 5.4 test checks
bash .ci/sandbox-deps.sh

# The specs whose work is in-process C code (CI_CHECK_SPECS in mk/checks.mk);
# `make asan` and `make valgrind` without SPECS run everything.
specs=$(make --no-print-directory -s print-ci-check-specs)

# without SPEC... (the spec files a list holds, one a line, minus those)
without() {
  local list=$1 done_spec
  shift
  for done_spec in "$@"; do
    list=$(echo "$list" | tr ' ' '\n' | grep -vxF "$done_spec" | tr '\n' ' ')
  done
  echo "$list"
}
# shellcheck disable=SC2086 # the lists are space-separated spec paths
asan_specs=$(without "$specs" ${CHECKS_ASAN_DONE:-})
# the official JSON Schema suite stays out of valgrind (VG_SPECS in mk/checks.mk)
# shellcheck disable=SC2086
vg_specs=$(without "$specs" spec/integration/schema_suite_spec.lua ${CHECKS_VG_DONE:-})
echo "== make asan (Lua 5.4)${CHECKS_ASAN_DONE:+, without $CHECKS_ASAN_DONE (run under ASan already)}"
make --no-print-directory asan SPECS="$asan_specs"

echo "== make valgrind (Lua 5.4)${CHECKS_VG_DONE:+, without $CHECKS_VG_DONE (run under valgrind already)}"
make --no-print-directory valgrind SPECS="$vg_specs"

fuzz_seconds=${FUZZ_SECONDS:-10}
if [ "$fuzz_seconds" != 0 ]; then
  # The targets, each one process on one core and measuring nothing, run
  # two at a time (one half per core; nothing else runs by now), each half
  # into its own log, printed in order afterwards.
  echo "== make fuzz FUZZ_SECONDS=$fuzz_seconds (two targets at a time)"
  make --no-print-directory fuzz-build
  read -ra targets <<<"$(make --no-print-directory -s print-fuzz-targets)"
  half=$(( (${#targets[@]} + 1) / 2 ))
  mkdir -p build/ci
  fuzz_rc=0
  make --no-print-directory fuzz FUZZ_SECONDS="$fuzz_seconds" FUZZ_TARGETS="${targets[*]:0:$half}" \
    >build/ci/fuzz-1.log 2>&1 &
  fuzz_pid=$!
  make --no-print-directory fuzz FUZZ_SECONDS="$fuzz_seconds" FUZZ_TARGETS="${targets[*]:$half}" \
    >build/ci/fuzz-2.log 2>&1 || fuzz_rc=1
  wait "$fuzz_pid" || fuzz_rc=1
  cat build/ci/fuzz-1.log build/ci/fuzz-2.log
  [ "$fuzz_rc" = 0 ] || { echo "CI: make fuzz failed" >&2; exit 1; }
fi
