#!/bin/sh
# same-state.sh URL RUN_DIR ACTOR...: a mid-scenario convergence check for
# the sync examples. Lists each actor's entities (`sync-client list`, JSON)
# and exits 1, printing both lists, when one differs from the first actor's;
# otherwise prints `live=N deleted=M` for the scenario's `expect` to match.
# (State checks judge only the final states, so a checkpoint in the middle of
# a script is an exec step like this one.)
set -u
url=$1
run_dir=$2
shift 2
first=""
first_actor=""
for actor in "$@"; do
  list=$(shakedown-testbed sync-client --db "$run_dir/actors/$actor/home/sync.db" --server "$url" --actor "$actor" list) || exit 2
  if [ -z "$first_actor" ]; then
    first=$list
    first_actor=$actor
  elif [ "$list" != "$first" ]; then
    echo "diverged: $first_actor has $first"
    echo "diverged: $actor has $list"
    exit 1
  fi
done
live=$(printf '%s' "$first" | grep -o '"deleted":0' | wc -l)
deleted=$(printf '%s' "$first" | grep -o '"deleted":1' | wc -l)
echo "live=$live deleted=$deleted"
