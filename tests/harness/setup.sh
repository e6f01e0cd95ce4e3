#!/usr/bin/env bash
# Idempotent test harness for selfhost.immich on a machine with no registry access:
#   1. Debian packages (docker.io, qemu-user-static, binfmt-support, debootstrap, ...)
#   2. binfmt_misc mounted and qemu-aarch64 enabled (arm64 containers run under emulation)
#   3. a dockerd answering on /var/run/docker.sock (started here only if none answers; see teardown.sh)
#   4. the Python venv from requirements.txt (.venv/, rebuilt when requirements.txt changes), and .venv-lowest/ with
#      the lowest supported ansible-core (tests/requirements-lowest.txt)
#   5. local Debian systemd base images (debootstrap + docker import), reused when present
#   6. .collections/ansible_collections/selfhost/immich -> this checkout
# Environment: SELFHOST_TEST_IMAGES, the <suite>-<arch> images to build (default: every SELFHOST_TEST_SUITES
# (default "bookworm trixie") x SELFHOST_TEST_ARCHES (default "arm64 amd64")); see tests/harness/images.sh.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
state_dir=${SELFHOST_STATE_DIR:-/var/tmp/selfhost-immich}
mkdir -p "$state_dir"
log() { printf '[harness %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
t0=$(date +%s)

# 1. Debian packages --------------------------------------------------------------------------
packages=(docker.io qemu-user-static binfmt-support debootstrap iproute2 e2fsprogs openssh-client sshpass curl
  postgresql)  # postgresql: a throwaway cluster for the Immich double's functional tests
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing Debian packages: ${missing[*]}"
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

# 2. binfmt_misc + qemu-aarch64 ----------------------------------------------------------------
if [[ -z "$(ls -A /proc/sys/fs/binfmt_misc 2>/dev/null)" ]]; then
  mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
fi
if [[ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]] || ! grep -q enabled /proc/sys/fs/binfmt_misc/qemu-aarch64; then
  update-binfmts --enable qemu-aarch64
fi
grep -q '^flags: .*F' /proc/sys/fs/binfmt_misc/qemu-aarch64 || {
  echo "qemu-aarch64 binfmt lacks the F flag: containers could not find the interpreter" >&2; exit 1; }

# 3. dockerd ------------------------------------------------------------------------------------
if ! docker info >/dev/null 2>&1; then
  log "starting dockerd (stopped again by tests/harness/teardown.sh)"
  nohup dockerd >"$state_dir/dockerd.log" 2>&1 &
  echo $! >"$state_dir/dockerd.pid"
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { tail -20 "$state_dir/dockerd.log" >&2; exit 1; }
fi

# 4. Python venv --------------------------------------------------------------------------------
venv=${SELFHOST_VENV:-$repo/.venv}
stamp="$venv/.requirements.sha256"
want=$(sha256sum "$repo/requirements.txt" | cut -d' ' -f1)
if [[ ! -x "$venv/bin/python" || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
  log "creating the Python venv $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$repo/requirements.txt" 2>&1 | grep -v "^WARNING: Location" || true
  "$venv/bin/python" -c "import ansible, molecule, testinfra, requests, jmespath, openapi_core" 
  echo "$want" >"$stamp"
fi

# 4b. the lowest supported ansible-core in a venv of its own (tests/requirements-lowest.txt, tests/lowest.sh)
lowest=${SELFHOST_VENV_LOWEST:-$repo/.venv-lowest}
stamp="$lowest/.requirements.sha256"
want=$(sha256sum "$repo/tests/requirements-lowest.txt" | cut -d' ' -f1)
if [[ ! -x "$lowest/bin/python" || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
  log "creating the Python venv $lowest (lowest supported ansible-core)"
  python3 -m venv "$lowest"
  "$lowest/bin/pip" install -q --disable-pip-version-check -r "$repo/tests/requirements-lowest.txt" 2>&1 \
    | grep -v "^WARNING: Location" || true
  "$lowest/bin/ansible-playbook" --version >/dev/null
  echo "$want" >"$stamp"
fi

# 5. base images --------------------------------------------------------------------------------
# SELFHOST_IMAGES_IN_BACKGROUND=1: start the builds and return at once (tests/run.sh lints and runs the unit
# tests meanwhile); tests/harness/wait-images.sh waits for them and fails if one failed.
pids=()
for image in $(bash "$here/images.sh"); do
  suite=${image%-*} arch=${image##*-}
  if [[ "${SELFHOST_IMAGES_IN_BACKGROUND:-0}" == 1 ]]; then
    rm -f "$state_dir/image-$image.rc"
    nohup bash -c '"$1" "$2" "$3" >"$4.log" 2>&1; echo $? >"$4.rc"' _ \
      "$here/build-image.sh" "$suite" "$arch" "$state_dir/image-$image" >/dev/null 2>&1 &
  else
    "$here/build-image.sh" "$suite" "$arch" &
    pids+=($!)
  fi
done
for pid in "${pids[@]}"; do wait "$pid"; done

# 6. collection path ----------------------------------------------------------------------------
mkdir -p "$repo/.collections/ansible_collections/selfhost"
ln -sfn ../../.. "$repo/.collections/ansible_collections/selfhost/immich"

log "ready in $(( $(date +%s) - t0 ))s"
