#!/usr/bin/env bash
# The single source of truth for the Debian packages favcrm-lua needs.
#
#   .ci/deps.sh [5.1|5.2|5.3|5.4|luajit] [ROLE...] [extra-package...]
#
# ROLE is one of (default: test):
#   build    what `make` needs to compile favcrm.core for that Lua
#   demo     build + what `make demo` runs (Node.js for the sandbox)
#   test     demo + every program and Lua module a spec uses (`make test`)
#   lint     luacheck (`make lint`)
#   docs     LDoc (`make docs`)
#   checks   clang, valgrind and libFuzzer's runtime (`make asan valgrind fuzz`)
#   bench    what `make bench` adds: nginx with its Lua module and wrk
#            (bench/openresty.sh; use it with luajit)
#   --list   print the packages for the roles given and exit
# Anything else is taken as an extra Debian package name.
#
# As root it installs what is missing with apt-get; otherwise it prints the
# one `sudo apt-get install ...` line to run and exits 1. Node.js: the
# sandbox needs 20 or newer; when the machine has none (or an older one, as
# Debian 12's nodejs 18), .ci/node.sh brings one from the npm registry.
set -euo pipefail
lua=${1:-5.4}; shift || true
case "$lua" in
  5.1) lp="lua5.1 liblua5.1-0-dev" ;;
  5.2) lp="lua5.2 liblua5.2-dev" ;;
  5.3) lp="lua5.3 liblua5.3-dev" ;;
  5.4) lp="lua5.4 liblua5.4-dev" ;;
  # OpenResty's LuaJIT: the one nginx's lua module needs; Neovim brings its own
  luajit) lp="luajit2 libluajit2-5.1-dev" ;;
  *) echo "deps: unknown LUA '$lua' (use 5.1, 5.2, 5.3, 5.4 or luajit)" >&2; exit 1 ;;
esac

build="$lp make gcc pkg-config libcurl4-openssl-dev libpcre2-dev libssl-dev lua-cjson"
# node and npm: checked by version below, not by package name
demo="$build"
# The specs: busted and LuaSocket (the resty transport's spec runs on it),
# luarocks (the rockspec spec), git (it lists the checkout's files), curl,
# openssl and nginx (the TLS spec's server and certificate), tmux (the CLI's
# terminal spec), strace (no secret in a child's argv), procps (ps, pgrep)
# util-linux's script (a pseudo-terminal for the secret prompt specs), and
# zsh and fish (the completion scripts are run in the real shells).
test="$demo lua-busted lua-socket luarocks git curl openssl nginx tmux strace procps bsdutils zsh fish"
[ "$lua" = luajit ] && test="$test neovim libnginx-mod-http-lua"
lint="lua-check"
docs="lua-ldoc"
checks="$lp clang libclang-rt-14-dev valgrind"
bench="$lp lua5.4 lua-cjson curl nginx libnginx-mod-http-lua wrk"

roles=() extra=() list=
for a in "$@"; do
  case "$a" in
    build|demo|test|lint|docs|checks|bench) roles+=("$a") ;;
    --list) list=1 ;;
    *) extra+=("$a") ;;
  esac
done
[ ${#roles[@]} -gt 0 ] || roles=(test)
want=""
needs_node=
for r in "${roles[@]}"; do
  want="$want ${!r}"
  case "$r" in demo|test|bench) needs_node=1 ;; esac
done
want="$want ${extra[*]:-}"
# shellcheck disable=SC2086
want=$(printf '%s\n' $want | sort -u | tr '\n' ' ')

if [ -n "$list" ]; then echo "$want"; exit 0; fi

missing=()
# one dpkg-query for them all (a package it does not know is not printed, and
# makes it exit 1, hence the || true: a missing package is what we look for)
# shellcheck disable=SC2086
installed=$(dpkg-query -W -f='${Package} ${Status}\n' $want 2>/dev/null | awk '/ install ok installed$/ {print $1}' || true)
for p in $want; do
  printf '%s\n' "$installed" | grep -qxF "$p" || missing+=("$p")
done
# No Node.js at all: Debian's nodejs and npm, and npm then brings a newer one.
if [ -n "$needs_node" ] && ! command -v npm >/dev/null 2>&1; then
  missing+=(nodejs npm)
fi
if [ ${#missing[@]} -gt 0 ]; then
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
fi
if [ -n "$needs_node" ]; then
  bash "$(dirname "$0")/node.sh" >/dev/null
fi
exit 0
