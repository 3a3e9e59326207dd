#!/bin/sh
# Starts beanstalkd on 127.0.0.1:PORT with the engine a matrix cell names:
#   memory  jobs only in memory (no -b): a kill -9 loses every job
#   binlog  jobs in DIR/binlog, fsync'd after every write (-f 0)
# Usage: start-beanstalkd.sh ENGINE DIR PORT
set -eu
engine=$1 dir=$2 port=$3
case "$engine" in
  memory) exec beanstalkd -l 127.0.0.1 -p "$port" ;;
  binlog) mkdir -p "$dir/binlog" && exec beanstalkd -l 127.0.0.1 -p "$port" -b "$dir/binlog" -f 0 ;;
  *) echo "start-beanstalkd.sh: unknown engine $engine (memory, binlog)" >&2; exit 2 ;;
esac
