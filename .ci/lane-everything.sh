#!/usr/bin/env bash
# .ci/run's lane beside the three full runs:
#   .ci/lane-everything.sh SPEC_FILE LUA:ERA...
# 1. `make test` of SPEC_FILE (a spec that is mostly waiting: everything_spec,
#    on server-everything's own timers and Node.js start-ups) for each LUA:ERA,
#    at nice 5: on a contended core the runs in front get ~3/4 of it, and
#    the lane is not starved (its servers' start-up has a 30 s bound);
# 2. `make checks-build` (the ASan, valgrind and fuzz builds) at nice 19:
#    compiling measures nothing, so it only takes what the runs leave idle;
# 3. `make asan` of SPEC_FILE (the same ASan build and report folder that
#    .ci/checks.sh uses afterwards, never at the same time), at nice 5;
# 4. `make valgrind` of SPEC_FILE (the same valgrind build and report files
#    as .ci/checks.sh's run, never at the same time), at nice 5: it is as
#    much waiting under valgrind as without (~70 s), and the lane is
#    otherwise idle while the last run in front finishes.
# Stops at the first failure, with its exit status.
set -euo pipefail
cd "$(dirname "$0")/.."
spec=${1:?usage: lane-everything.sh SPEC_FILE LUA:ERA...}
shift
start=$(date +%s)
# 0. favcrm.core for the Luas besides 5.4 (the demo built that one), at nice
#    19, then the lock .ci/run handed over (CI_BUILD_LOCK_FD) is let go: the
#    runs in front that need those builds wait on it.
echo "== lane: favcrm.core for luajit, 5.1, 5.2, 5.3, at nice 19 ($(( $(date +%s) - start )) s in)"
for lua in luajit 5.1 5.2 5.3; do
  nice -n 19 make --no-print-directory -j2 module LUA="$lua" >build/ci/modules-build.log 2>&1 \
    || { cat build/ci/modules-build.log; exit 1; }
done
if [ -n "${CI_BUILD_LOCK_FD:-}" ]; then exec {CI_BUILD_LOCK_FD}>&-; fi
for run in "$@"; do
  lua=${run%:*} era=${run#*:}
  echo "== lane: make test LUA=$lua SANDBOX_ERA=$era TEST_SPECS=$spec ($(( $(date +%s) - start )) s in)"
  nice -n 5 make --no-print-directory test LUA="$lua" SANDBOX_ERA="$era" TEST_SPECS="$spec"
done
echo "== lane: make checks-build, at nice 19 ($(( $(date +%s) - start )) s in)"
nice -n 19 make --no-print-directory -j2 checks-build >build/ci/checks-build.log 2>&1 \
  || { cat build/ci/checks-build.log; exit 1; }
echo "== lane: make asan SPECS=$spec ($(( $(date +%s) - start )) s in)"
nice -n 5 make --no-print-directory asan SPECS="$spec"
echo "== lane: make valgrind SPECS=$spec ($(( $(date +%s) - start )) s in)"
nice -n 5 make --no-print-directory valgrind SPECS="$spec"
echo "== lane: done ($(( $(date +%s) - start )) s in)"
