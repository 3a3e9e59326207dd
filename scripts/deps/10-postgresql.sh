#!/usr/bin/env bash
# PostgreSQL's server and psql (examples/postgres, the postgres state
# reader's tests). Scenarios start their own throwaway servers
# (examples/postgres/pg.sh), so the package must not create or start a
# system cluster: postgresql-common is installed first and told not to,
# before the server package whose install would create one.
set -euo pipefail
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
# A server binary and psql are all the examples use, whichever packages
# brought them.
if command -v psql >/dev/null && ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "scripts/deps/10-postgresql.sh: need root to install postgresql" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive UCF_FORCE_CONFFOLD=1
apt_install() { apt-get install -y -qq --no-install-recommends "$@" >/dev/null; }
if ! installed postgresql-common; then
  apt-get update -qq
  apt_install postgresql-common
fi
conf=/etc/postgresql-common/createcluster.conf
if ! grep -q '^create_main_cluster *= *false' "$conf" 2>/dev/null; then
  echo "create_main_cluster = false" >>"$conf"
fi
apt_install postgresql postgresql-client || { apt-get update -qq && apt_install postgresql postgresql-client; }
