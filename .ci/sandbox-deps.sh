#!/usr/bin/env bash
# Installs the sandbox's npm packages exactly as the lock file pins them,
# once (again only when the lock file changed).
set -euo pipefail
cd "$(dirname "$0")/../sandbox"
stamp=node_modules/.favcrm-lock
if [ -f "$stamp" ] && cmp -s package-lock.json "$stamp"; then exit 0; fi
npm ci --no-audit --no-fund --loglevel=error >&2
cp package-lock.json "$stamp"
