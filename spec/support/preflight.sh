#!/usr/bin/env bash
# Before the specs run: every program and Lua module a spec uses is here, or
# the run stops at once naming the Debian package that brings it (a spec that
# finds a tool missing fails too; none is skipped for it).
#   spec/support/preflight.sh LUA_BIN BUILD_DIR
# The package names agree with .ci/deps.sh (test role), the one list.
set -uo pipefail
lua_bin=${1:?usage: preflight.sh LUA_BIN BUILD_DIR}
build=${2:?usage: preflight.sh LUA_BIN BUILD_DIR}
missing=()
need_prog() { # PROGRAM PACKAGE
  command -v "$1" >/dev/null 2>&1 || missing+=("$2 (for the program $1)")
}
need_mod() { # MODULE PACKAGE
  "$lua_bin" -e "require('$1')" >/dev/null 2>&1 || missing+=("$2 (for the Lua module $1 under $lua_bin)")
}
need_prog "$lua_bin" "the Lua interpreter's package (make test LUA=...)"
need_prog busted lua-busted
need_prog git git
need_prog curl curl
need_prog openssl openssl
need_prog nginx nginx
need_prog tmux tmux
need_prog strace strace
need_prog luarocks luarocks
need_prog script bsdutils
need_prog ps procps
need_prog npm npm
need_mod cjson lua-cjson
need_mod socket lua-socket
need_mod busted.runner lua-busted
case "$lua_bin" in
  *luajit*)
    need_prog nvim neovim
    [ -f /usr/lib/nginx/modules/ngx_http_lua_module.so ] ||
      missing+=("libnginx-mod-http-lua (for nginx's lua module)") ;;
esac
[ -f "$build/favcrm/core.so" ] || missing+=("the module $build/favcrm/core.so: run make first")
if [ ${#missing[@]} -gt 0 ]; then
  echo "preflight: the specs cannot run; missing:" >&2
  printf '  - %s\n' "${missing[@]}" >&2
  echo "run 'make test' as root (it installs them), or: bash .ci/deps.sh <lua> test --list" >&2
  exit 1
fi
exit 0
