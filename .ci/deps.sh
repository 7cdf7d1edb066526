#!/usr/bin/env bash
# Installs (as root) or names (otherwise) the Debian packages favcrm-lua needs
# to build and test for one Lua: .ci/deps.sh [5.1|5.2|5.3|5.4|luajit] [extra...]
set -euo pipefail
lua=${1:-5.4}; shift || true
case "$lua" in
  5.1) lp="lua5.1 liblua5.1-0-dev" ;;
  5.2) lp="lua5.2 liblua5.2-dev" ;;
  5.3) lp="lua5.3 liblua5.3-dev" ;;
  5.4) lp="lua5.4 liblua5.4-dev" ;;
  luajit) lp="luajit2 libluajit2-5.1-dev neovim nginx libnginx-mod-http-lua" ;; # OpenResty's LuaJIT: the one nginx-lua needs, and neovim takes it too
  *) echo "deps: unknown LUA '$lua' (use 5.1, 5.2, 5.3, 5.4 or luajit)" >&2; exit 1 ;;
esac
want="$lp lua-cjson libcurl4-openssl-dev libpcre2-dev pkg-config lua-busted make gcc $*"
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || want="$want nodejs npm"
missing=()
for p in $want; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "deps: missing Debian packages. Install them with:" >&2
  echo "  sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
