#!/usr/bin/env bash
# Installs the sandbox's npm packages exactly as its lock file pins them,
# once (again only when the lock file changed). They serve the specs' Node
# helpers too (spec/support/*.mjs import the MCP SDKs from sandbox/
# node_modules: one pin of each, sandbox/package-lock.json).
set -euo pipefail
cd "$(dirname "$0")/../sandbox"
stamp=node_modules/.favcrm-lock
if [ -f "$stamp" ] && cmp -s package-lock.json "$stamp"; then exit 0; fi
npm ci --no-audit --no-fund --loglevel=error >&2
cp package-lock.json "$stamp"
