#!/usr/bin/env bash
# Models the Docker networks of an Immich host inside the arm64 test host, where Docker cannot run
# containers (qemu-user): a bridge with a Docker network's gateway address stands for the network, and a
# network namespace joined to it by a veth pair stands for a container on it. Idempotent.
#   immich:  bridge immich-br 172.30.0.1/24 (the role's default gateway address), "container" 172.30.0.2
#   outside: bridge outside-br 172.31.0.1/24 (any other network reaching the host), "container" 172.31.0.2
set -euo pipefail

network() {
  local ns=$1 bridge=$2 gateway=$3 address=$4
  ip link show "$bridge" >/dev/null 2>&1 || ip link add "$bridge" type bridge
  ip -4 addr show dev "$bridge" | grep -q "inet $gateway" || ip addr add "$gateway" dev "$bridge"
  ip link set "$bridge" up
  [[ -e /run/netns/$ns ]] || ip netns add "$ns"
  if ! ip link show "$ns-v" >/dev/null 2>&1; then
    ip link add "$ns-v" type veth peer name "$ns-c"
    ip link set "$ns-c" netns "$ns"
    ip link set "$ns-v" master "$bridge"
  fi
  ip link set "$ns-v" up
  ip netns exec "$ns" ip addr replace "$address" dev "$ns-c"
  ip netns exec "$ns" ip link set lo up
  ip netns exec "$ns" ip link set "$ns-c" up
  ip netns exec "$ns" ip route replace default via "${gateway%/*}"
}

network immich immich-br 172.30.0.1/24 172.30.0.2/24
network outside outside-br 172.31.0.1/24 172.31.0.2/24
