#!/usr/bin/env bash
# What a new user meets: purge every Debian package a new machine of our
# kind lacks (.ci/base-packages.txt), clone the repository afresh into a
# 0700 folder with no ../shared beside it, and run the README's commands
# there, timing each:
#
#   sudo bash .ci/fresh-machine.sh [--no-purge] [REPO] [TARGET...]
#
# REPO defaults to this checkout (its committed HEAD is what is cloned);
# TARGETs default to: demo test test-luajit test-5.1 lint (any make target,
# "test-X" meaning `make test LUA=X`). Exits non-zero if any target fails.
# It changes the machine (apt-get purge): run it on a machine you can spare.
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
purge=1
if [ "${1:-}" = --no-purge ]; then purge=; shift; fi
repo=${1:-$here}; shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(demo test test-luajit test-5.1 lint)
export DEBIAN_FRONTEND=noninteractive

if [ -n "$purge" ]; then
  [ "$(id -u)" = 0 ] || { echo "fresh-machine: the purge needs root (or pass --no-purge)" >&2; exit 1; }
  base=$(grep -v '^#' "$here/.ci/base-packages.txt" | sort -u)
  now=$(dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' | awk '$1 ~ /^.i/ {print $2}' | sed 's/:.*//' | sort -u)
  extra=$(comm -13 <(echo "$base") <(echo "$now") | tr '\n' ' ')
  if [ -n "${extra// /}" ]; then
    echo "== purging $(echo "$extra" | wc -w) packages the base image lacks: $extra"
    # Simulate first: the purge must not take a package of the base image with it.
    # shellcheck disable=SC2086
    taken=$(apt-get -s purge $extra 2>/dev/null | awk '/^Purg|^Remv/ {print $2}' | sed 's/:.*//' | sort -u)
    collateral=$(comm -12 <(echo "$base") <(echo "$taken") | tr '\n' ' ')
    if [ -n "${collateral// /}" ]; then
      echo "fresh-machine: purging would also remove base packages: $collateral" >&2
      exit 1
    fi
    # shellcheck disable=SC2086
    apt-get purge -y -qq $extra >/dev/null || { echo "fresh-machine: apt-get purge failed" >&2; exit 1; }
  else
    echo "== no package beyond the base image is installed"
  fi
fi

parent=$(mktemp -d "${TMPDIR:-/tmp}/favcrm-fresh.XXXXXX")   # mode 0700, as a home folder
clone="$parent/favcrm-lua"
git clone -q "$repo" "$clone" || exit 1
[ ! -e "$parent/shared" ] || { echo "fresh-machine: $parent/shared exists" >&2; exit 1; }
echo "== clean clone of $(git -C "$clone" rev-parse --short HEAD) in $clone (0700 parent, no ../shared)"

cd "$clone" || exit 1
results=() failed=0
for t in "${targets[@]}"; do
  case "$t" in
    test-*) cmd=(make test "LUA=${t#test-}") ;;
    *) cmd=(make "$t") ;;
  esac
  echo "== ${cmd[*]}"
  start=$(date +%s)
  "${cmd[@]}" 2>&1 | tee "$parent/$t.log"
  rc=${PIPESTATUS[0]}
  secs=$(( $(date +%s) - start ))
  summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$parent/$t.log" | tail -1)
  results+=("$(printf '%-22s exit %-3s %4ss  %s' "${cmd[*]}" "$rc" "$secs" "$summary")")
  [ "$rc" = 0 ] || failed=1
done
echo
echo "== fresh-machine results ($(date -u +%Y-%m-%dT%H:%MZ), logs in $parent)"
printf '%s\n' "${results[@]}"
exit $failed
