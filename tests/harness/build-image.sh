#!/usr/bin/env bash
# Build a local Debian systemd base image for Molecule with debootstrap + docker import.
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

if [[ "${FORCE:-0}" != 1 ]] && docker image inspect "$image" >/dev/null 2>&1; then
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

tar -C "$root" -c . | docker import \
  --change 'ENV container=docker' \
  --change 'CMD ["/lib/systemd/systemd"]' \
  --platform "linux/$arch" - "$image" >/dev/null
echo "build-image: $image built in $(( $(date +%s) - start ))s"
