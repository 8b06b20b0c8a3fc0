#!/usr/bin/env bash
# Builds the web UI (ui/dist) from its lockfile; the control plane embeds it
# when it is compiled next. The API client is generated from proto/ each time.
set -euo pipefail
cd "$(dirname "$0")/../ui"
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
# npm ci reinstalls from scratch; skip it when the lockfile did not change.
if [ ! -f node_modules/.package-lock.json ] || ! cmp -s package-lock.json node_modules/.lq-installed-lock; then
  npm ci --no-audit --no-fund
  cp package-lock.json node_modules/.lq-installed-lock
fi
npm run build
