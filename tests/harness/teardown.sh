#!/usr/bin/env bash
# Stop what tests/harness/setup.sh started, and only that: the dockerd it launched (if any).
set -u
state_dir=${SELFHOST_STATE_DIR:-/var/tmp/selfhost-immich}
pidfile="$state_dir/dockerd.pid"
if [[ -f "$pidfile" ]]; then
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
  fi
  rm -f "$pidfile"
fi
