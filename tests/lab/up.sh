#!/usr/bin/env bash
# README "Set up and run the main job": bring up the local lab host and converge playbooks/site.yml on it.
#   LAB_ARCH=amd64 (default) | arm64   the lab host's architecture (arm64 runs under qemu-user: the
#                                      stack's containers cannot start there, see molecule/docker)
#   LAB_SUITE=bookworm (default) | trixie
#   LAB_TAGS=docker (default)          the site.yml concerns to converge
#   tests/lab/up.sh --down             remove the lab host
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
name=immich-lab
if [[ "${1:-}" == "--down" ]]; then docker rm -f "$name" >/dev/null 2>&1 || true; exit 0; fi
arch=${LAB_ARCH:-amd64}
suite=${LAB_SUITE:-bookworm}
SELFHOST_TEST_SUITES=$suite SELFHOST_TEST_ARCHES=$arch bash tests/harness/setup.sh
image="selfhost-immich/debian:${suite}-${arch}"

if [[ "$(docker inspect -f '{{.State.Running}} {{.Config.Image}}' "$name" 2>/dev/null)" != "true $image" ]]; then
  docker rm -f "$name" >/dev/null 2>&1 || true
  # The same systemd-container settings as .config/molecule/config.yml (no --privileged here), plus
  # NET_ADMIN and a volume for /var/lib/docker so the lab's own dockerd can run containers.
  docker run -d --name "$name" --hostname "$name" --platform "linux/$arch" \
    --cap-add SYS_ADMIN --cap-add NET_ADMIN --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
    --cgroupns host -v /sys/fs/cgroup:/sys/fs/cgroup:rw -v /var/lib/docker \
    --tmpfs /run --tmpfs /run/lock --tmpfs /tmp --device /dev/fuse \
    "$image" >/dev/null
fi
for _ in $(seq 60); do
  state=$(docker exec "$name" systemctl is-system-running 2>/dev/null || true)
  [[ "$state" == running || "$state" == degraded ]] && break
  sleep 1
done

# shellcheck disable=SC1091
source "${SELFHOST_VENV:-$repo/.venv}/bin/activate"
export ANSIBLE_COLLECTIONS_PATH="$repo/.collections"
if [[ "$arch" == arm64 ]]; then extra=(-e docker_service_state=stopped); else extra=(); fi
# The lab has no stand-ins for Let's Encrypt/Cloudflare and GitHub yet, so it converges the concerns that can
# run here (LAB_TAGS); the edge is proven by molecule/traefik against Pebble and a local release mirror.
ansible-playbook -i inventories/lab/hosts.yml site.yml --tags "${LAB_TAGS:-docker}" "${extra[@]}"
echo
echo "lab host $name ($arch, $suite) converged:"
docker exec "$name" sh -c 'dockerd --version; systemctl is-enabled docker; systemctl is-active docker || true'
