#!/usr/bin/env bash
# Installs the official MCP conformance suite exactly as conformance/
# package-lock.json pins it (@modelcontextprotocol/conformance, npm ci), once
# (again only when the lock file changed), and prints the folder of the
# Node.js 22 it needs (.ci/node.sh 22). Callers put that folder first on PATH.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
nodedir=$(bash "$top/.ci/node.sh" 22)
cd "$top/conformance"
stamp=node_modules/.favcrm-lock
if ! { [ -f "$stamp" ] && cmp -s package-lock.json "$stamp"; }; then
  PATH="$nodedir:$PATH" npm ci --no-audit --no-fund --loglevel=error >&2
  cp package-lock.json "$stamp"
fi
echo "$nodedir"
