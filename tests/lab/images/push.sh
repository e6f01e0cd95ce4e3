#!/usr/bin/env bash
# Build the stack's lab images (the Dockerfile here) on this machine's dockerd and push them to the registry stand-in
# on immich-lab-github (tests/lab/prepare.yml). No `docker push`: this machine's dockerd cannot resolve the lab's
# container names, so the images go in as one `docker save` archive (their shared layers once) and the registry
# container's skopeo copies each in, over the same HTTPS (lab CA) the server pulls through.
#   push.sh <target>=<reference>[=<build arg NAME=value>] ...     reference: immich-lab-github:5000/<repository>:<tag>
# Prints "pushed <reference>" for each image the registry did not hold, "unchanged <reference>" for each it did
# (the registry's manifest names the same config digest, which is the image id).
set -euo pipefail
registry_container=immich-lab-github
context=$(cd "$(dirname "$0")/.." && pwd)   # tests/lab
archive=/var/tmp/lab-images.tar
outdated=()
for spec in "$@"; do
  IFS== read -r target reference build_arg <<<"$spec"
  args=(--quiet --network host -f images/Dockerfile --target "$target" -t "$reference")
  [[ -n $build_arg ]] && args+=(--build-arg "$build_arg")
  # The context as a tar with links followed: immich_double/config_keys.json links to the immich role's file.
  id=$(tar -ch -C "$context" images immich_double ml_worker | docker build "${args[@]}" -)
  held=$(docker exec "$registry_container" skopeo inspect --raw --cert-dir /etc/docker/registry/ca \
    "docker://$reference" 2>/dev/null || true)
  held_id=$(python3 -c 'import json, sys
try:
    print(json.loads(sys.argv[1])["config"]["digest"])
except (ValueError, KeyError):
    print("")' "$held")
  if [[ $held_id == "$id" ]]; then
    echo "unchanged $reference"
  else
    outdated+=("$reference")
  fi
done
((${#outdated[@]})) || exit 0
docker save "${outdated[@]}" | docker exec -i "$registry_container" sh -c "cat > $archive"
for reference in "${outdated[@]}"; do
  docker exec "$registry_container" sh -c "skopeo copy --quiet --dest-cert-dir /etc/docker/registry/ca \
    docker-archive:$archive:$reference docker://$reference" || { docker exec "$registry_container" rm -f "$archive"; exit 1; }
  echo "pushed $reference"
done
docker exec "$registry_container" rm -f "$archive"
