#!/usr/bin/env bash
# Builds the web UI (ui/dist) from its lockfile; the control plane embeds it
# when it is compiled next. The API client is generated from proto/ each time.
set -euo pipefail
cd "$(dirname "$0")/../ui"
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
# Node trusts only its own CA list: add the system's (a site's TLS proxy or
# private registry is trusted there, as it is for apt and cargo).
if [ -z "${NODE_EXTRA_CA_CERTS:-}" ] && [ -f /etc/ssl/certs/ca-certificates.crt ]; then
  export NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt
fi
# npm ci reinstalls from scratch; skip it when the lockfile did not change.
if [ ! -f node_modules/.package-lock.json ] || ! cmp -s package-lock.json node_modules/.lq-installed-lock; then
  npm ci --no-audit --no-fund
  cp package-lock.json node_modules/.lq-installed-lock
fi
npm run build
