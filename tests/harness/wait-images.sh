#!/usr/bin/env bash
# Wait for the base-image builds that `SELFHOST_IMAGES_IN_BACKGROUND=1 tests/harness/setup.sh` started;
# print each build's log and fail if any build failed or none finished within SELFHOST_IMAGE_TIMEOUT seconds.
# --quiet prints a build's log only when it failed (tests/run.sh puts it in front of every scenario).
set -uo pipefail
quiet=0; [[ "${1-}" == --quiet ]] && quiet=1
state_dir=${SELFHOST_STATE_DIR:-/var/tmp/selfhost-immich}
deadline=$(( $(date +%s) + ${SELFHOST_IMAGE_TIMEOUT:-3000} ))
failed=0
for suite in ${SELFHOST_TEST_SUITES:-bookworm trixie}; do
  for arch in ${SELFHOST_TEST_ARCHES:-arm64 amd64}; do
    base="$state_dir/image-$suite-$arch"
    until [[ -f "$base.rc" ]]; do
      if (( $(date +%s) > deadline )); then echo "wait-images: $suite-$arch still building, giving up"; exit 1; fi
      sleep 5
    done
    if [[ "$(cat "$base.rc")" != 0 ]]; then
      cat "$base.log" 2>/dev/null; echo "wait-images: $suite-$arch failed"; failed=1
    elif ((quiet == 0)); then cat "$base.log" 2>/dev/null; fi
  done
done
exit "$failed"
