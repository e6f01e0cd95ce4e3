#!/usr/bin/env bash
# Build a local Debian systemd base image for Molecule with debootstrap + a FROM-scratch docker build.
# No registry is reachable here, so every platform image is made from Debian's packages.
# Usage: build-image.sh SUITE ARCH   (e.g. bookworm arm64)  -> image selfhost-immich/debian:SUITE-ARCH
# Reuses an existing image unless FORCE=1.
set -euo pipefail

suite=${1:?suite (bookworm|trixie)}
arch=${2:?arch (arm64|amd64)}
image="selfhost-immich/debian:${suite}-${arch}"
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
security_mirror=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
cache_dir=${IMAGE_CACHE_DIR:-/var/cache/selfhost-immich/debootstrap/${suite}-${arch}}

if [[ "${FORCE:-0}" != 1 ]] \
   && [[ "$(docker image inspect "$image" --format '{{.Architecture}}' 2>/dev/null)" == "$arch" ]]; then
  echo "build-image: $image present, reused"
  exit 0
fi

# Packages a bare cloud server has: systemd as init, python3 for Ansible, sudo, CA certs, iproute2.
include=systemd,systemd-sysv,dbus,python3,python3-apt,sudo,ca-certificates,iproute2,procps,gnupg,curl,kmod,udev,less

root=$(mktemp -d "/var/tmp/rootfs-${suite}-${arch}.XXXXXX")
trap 'rm -rf "$root"' EXIT
mkdir -p "$cache_dir"
start=$(date +%s)
debootstrap --variant=minbase --arch="$arch" --include="$include" --cache-dir="$cache_dir" \
  "$suite" "$root" "$mirror" >"$root.log" 2>&1 || { tail -40 "$root.log"; exit 1; }
rm -f "$root.log"

cat >"$root/etc/apt/sources.list" <<SRC
deb $mirror $suite main
deb $mirror $suite-updates main
deb $security_mirror $suite-security main
SRC
# A container's systemd must not try to manage the host's devices, consoles or clock.
for unit in systemd-udevd.service systemd-udevd-control.socket systemd-udevd-kernel.socket \
            getty@tty1.service systemd-timesyncd.service systemd-resolved.service \
            sys-kernel-config.mount dev-hugepages.mount sys-kernel-debug.mount; do
  ln -sf /dev/null "$root/etc/systemd/system/$unit"
done
echo 'export container=docker' >"$root/etc/profile.d/container.sh"
: >"$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"
chroot "$root" apt-get update -q >/dev/null
chroot "$root" apt-get clean

# `docker import --platform` is ignored by docker.io 20.10 (the image would claim amd64), so the rootfs
# goes into a FROM-scratch build, which records the architecture and the stop signal systemd wants.
ctx=$(mktemp -d "/var/tmp/ctx-${suite}-${arch}.XXXXXX")
trap 'rm -rf "$root" "$ctx"' EXIT
tar -C "$root" -cf "$ctx/rootfs.tar" .
cat >"$ctx/Dockerfile" <<'DOCKERFILE'
FROM scratch
ADD rootfs.tar /
ENV container=docker
STOPSIGNAL SIGRTMIN+3
CMD ["/lib/systemd/systemd"]
DOCKERFILE
DOCKER_BUILDKIT=0 docker build -q --platform "linux/$arch" -t "$image" "$ctx" >/dev/null 2>&1 \
  || DOCKER_BUILDKIT=0 docker build --platform "linux/$arch" -t "$image" "$ctx"
[[ "$(docker image inspect "$image" --format '{{.Architecture}}')" == "$arch" ]] \
  || { echo "build-image: $image does not record architecture $arch" >&2; exit 1; }
echo "build-image: $image built in $(( $(date +%s) - start ))s"
