#!/usr/bin/env bash
# Installs the sandbox's npm packages, and spec/support's, exactly as their
# lock files pin them, once (again only when a lock file changed).
set -euo pipefail
cd "$(dirname "$0")/../sandbox"
stamp=node_modules/.favcrm-lock
if ! { [ -f "$stamp" ] && cmp -s package-lock.json "$stamp"; }; then
  npm ci --no-audit --no-fund --loglevel=error >&2
  cp package-lock.json "$stamp"
fi
# spec/support's own packages (the MCP v2 client the bridge's era spec runs)
cd ../spec/support
stamp=node_modules/.favcrm-lock
if [ -f "$stamp" ] && cmp -s package-lock.json "$stamp"; then exit 0; fi
npm ci --no-audit --no-fund --loglevel=error >&2
cp package-lock.json "$stamp"
