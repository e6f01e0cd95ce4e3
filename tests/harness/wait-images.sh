#!/usr/bin/env bash
# Wait for the base-image builds that `SELFHOST_IMAGES_IN_BACKGROUND=1 tests/harness/setup.sh` started;
# print each build's log and fail if any build failed or none finished within SELFHOST_IMAGE_TIMEOUT seconds.
# --quiet prints a build's log only when it failed (tests/run.sh puts it in front of every scenario).
set -uo pipefail
quiet=0; [[ "${1-}" == --quiet ]] && quiet=1
state_dir=${SELFHOST_STATE_DIR:-/var/tmp/selfhost-immich}
deadline=$(( $(date +%s) + ${SELFHOST_IMAGE_TIMEOUT:-3000} ))
failed=0
for image in $(bash "$(dirname "$0")/images.sh"); do
  base="$state_dir/image-$image"
  until [[ -f "$base.rc" ]]; do
    if (( $(date +%s) > deadline )); then echo "wait-images: $image still building, giving up"; exit 1; fi
    sleep 5
  done
  if [[ "$(cat "$base.rc")" != 0 ]]; then
    cat "$base.log" 2>/dev/null; echo "wait-images: $image failed"; failed=1
  elif ((quiet == 0)); then cat "$base.log" 2>/dev/null; fi
done
exit "$failed"
