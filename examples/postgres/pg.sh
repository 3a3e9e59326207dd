#!/bin/sh
# Runs a throwaway PostgreSQL server for a scenario: `pg.sh DATA_DIR PORT`.
# Creates the cluster on first start (trust authentication, user postgres,
# listening on 127.0.0.1 only, no Unix socket), then replaces itself with the
# server, so shakedown's signals reach postgres directly. PostgreSQL refuses
# to run as root; as root, the server runs as the `postgres` user, which must
# be able to reach DATA_DIR. Installed by scripts/install-deps.
#
# Run directories are owner-only (0700), so as root the script lets other
# users traverse (o+x, not read) each directory from $SHAKEDOWN_RUN_DIR down
# to DATA_DIR's parent, and nothing above the run directory: this example
# opts in to that. Outside a run, DATA_DIR's parents must be traversable already.
set -eu
data=$1
port=$2
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
if [ -z "$bin" ] || [ ! -x "$bin/postgres" ]; then
  echo "pg.sh: no PostgreSQL server under /usr/lib/postgresql; run scripts/install-deps" >&2
  exit 127
fi
as_owner=""
if [ "$(id -u)" = 0 ]; then
  mkdir -p "$data"
  run_dir=${SHAKEDOWN_RUN_DIR:-}
  dir=$(dirname "$data")
  case "$dir" in
    "$run_dir" | "$run_dir"/*)
      while [ -n "$run_dir" ]; do
        chmod o+x "$dir"
        [ "$dir" = "$run_dir" ] && break
        dir=$(dirname "$dir")
      done
      ;;
  esac
  chown postgres: "$data"
  chmod 0700 "$data"
  if ! setpriv --reuid=postgres --regid=postgres --init-groups test -w "$data"; then
    echo "pg.sh: the postgres user cannot reach $data; run from a directory every user can traverse" >&2
    exit 1
  fi
  as_owner="setpriv --reuid=postgres --regid=postgres --init-groups --"
fi
if [ ! -s "$data/PG_VERSION" ]; then
  $as_owner "$bin/initdb" -D "$data" -U postgres --auth=trust --no-sync -E UTF8 --locale=C >"$data.initdb.log" 2>&1 || {
    cat "$data.initdb.log" >&2
    exit 1
  }
fi
# fsync off: a killed server loses nothing the OS already has, and runs fast.
# The connection check ends a query whose client died (a killed psql), as it
# would end with a real client's connection; otherwise it runs on unseen.
exec $as_owner "$bin/postgres" -D "$data" -p "$port" -c listen_addresses=127.0.0.1 \
  -c unix_socket_directories= -c fsync=off -c max_connections=50 \
  -c client_connection_check_interval=100ms
