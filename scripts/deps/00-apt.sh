#!/usr/bin/env bash
# Debian packages: iproute2 and nftables/iptables (namespace partitions),
# libfaketime (clock faults), socat (the proxy benchmark's peer),
# etcd-server and etcd-client (examples/etcd), beanstalkd (examples/beanstalkd),
# rsync (examples/rsync-resume).
set -euo pipefail
packages=(iproute2 nftables iptables libfaketime faketime socat etcd-server etcd-client beanstalkd rsync)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "scripts/deps/00-apt.sh: need root to install: ${missing[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
