#!/usr/bin/env bash
# CI: the memory-safety checks of issue 8, for Lua 5.4: the whole spec suite
# under ASan+UBSan, the spec suite under valgrind (busted's process; see
# VG_SPECS in mk/checks.mk for what it leaves out and why), and a short
# libFuzzer smoke run of each fuzz target. .ci/run calls this after the
# `make test` runs. Budget on the CI machine (2 cores): see docs/LIMITS.md
# and the timings `make asan` / `make valgrind` print.
#   FUZZ_SECONDS=0 skips the fuzz smoke run (default 10 s a target).
#   CHECKS_ASAN_DONE="SPEC..." leaves those spec files out of the ASan run
#   (.ci/run runs spec/integration/everything_spec.lua under ASan in its lane).
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive

# valgrind, clang with libFuzzer, and what the TLS and secrets specs use
bash .ci/deps.sh 5.4 test checks
bash .ci/sandbox-deps.sh

# The specs whose work is in-process C code (CI_CHECK_SPECS in mk/checks.mk);
# `make asan` and `make valgrind` without SPECS run everything.
specs=$(make --no-print-directory -s print-ci-check-specs)

asan_specs=$specs
for done_spec in ${CHECKS_ASAN_DONE:-}; do
  asan_specs=$(echo "$asan_specs" | tr ' ' '\n' | grep -vxF "$done_spec" | tr '\n' ' ')
done
echo "== make asan (Lua 5.4)${CHECKS_ASAN_DONE:+, without $CHECKS_ASAN_DONE (run under ASan already)}"
make --no-print-directory asan SPECS="$asan_specs"

echo "== make valgrind (Lua 5.4)"
make --no-print-directory valgrind SPECS="$(echo "$specs" | tr ' ' '\n' | grep -v schema_suite_spec | tr '\n' ' ')"

fuzz_seconds=${FUZZ_SECONDS:-10}
if [ "$fuzz_seconds" != 0 ]; then
  echo "== make fuzz FUZZ_SECONDS=$fuzz_seconds"
  make --no-print-directory fuzz FUZZ_SECONDS="$fuzz_seconds"
fi
