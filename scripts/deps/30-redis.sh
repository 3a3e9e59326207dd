#!/usr/bin/env bash
# Redis (examples/redis). Scenarios start their own servers, so the
# package's own service must not start: where the machine has no
# policy-rc.d forbidding it, one is put in place for the install only.
set -euo pipefail
dpkg-query -W -f='${Status}' redis-server 2>/dev/null | grep -q "install ok installed" && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "scripts/deps/30-redis.sh: need root to install redis-server" >&2
  exit 1
fi
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod +x "$policy"
  trap 'rm -f "$policy"' EXIT
fi
export DEBIAN_FRONTEND=noninteractive
install() { apt-get install -y -qq --no-install-recommends redis-server redis-tools >/dev/null; }
install || { apt-get update -qq && install; }
