#!/usr/bin/env bash
# The npm package toxiproxy-node-client (pinned in package-lock.json) that the
# proxy's compatibility test drives shakedown's toxiproxy API with. Installs
# only when node_modules is missing, so reruns are quick and offline.
set -euo pipefail
dir="$(dirname "$0")/../../crates/shakedown-proxy/tests/toxiproxy-node"
if ! command -v npm >/dev/null; then
  echo "scripts/deps/20-toxiproxy-node.sh: npm not found; install node 18 or newer" >&2
  exit 1
fi
if [ ! -d "$dir/node_modules/toxiproxy-node-client" ]; then
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
fi
