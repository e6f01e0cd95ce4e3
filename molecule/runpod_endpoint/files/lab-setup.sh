#!/usr/bin/env bash
# Sets up the stand-ins inside the arm64 test host from the tarball prepare.yml copied to /var/tmp/lab.tar (one
# shell script instead of a dozen modules: every Python module run is slow under qemu-user).
set -euo pipefail

tar -xpf /var/tmp/lab.tar -C / --no-overwrite-dir
rm -f /var/tmp/lab.tar
chmod 0600 /etc/ml-worker/edge.key /etc/ml-worker/token

/usr/local/sbin/lab-networks

systemctl daemon-reload
systemctl enable --now ml-worker.service

wait_port() {
  for _ in $(seq 120); do
    (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && return 0
    sleep 1
  done
  echo "nothing listens on $1:$2" >&2
  systemctl status --no-pager ml-worker.service >&2 || true
  return 1
}
wait_port 127.0.0.1 8443
