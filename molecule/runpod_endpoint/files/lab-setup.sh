#!/usr/bin/env bash
# Sets up the stand-ins inside the arm64 test host from the tarball prepare.yml copied to /var/tmp/lab.tar (one
# shell script instead of a dozen modules: every Python module run is slow under qemu-user).
# Usage: lab-setup.sh <traefik dynamic dir>
set -euo pipefail
dynamic_dir=$1

tar -xpf /var/tmp/lab.tar -C / --no-overwrite-dir
rm -f /var/tmp/lab.tar

# Traefik as the traefik role installs it: its own user, config readable by its group only.
getent passwd traefik >/dev/null || useradd --system --user-group --shell /usr/sbin/nologin --no-create-home traefik
install -d -o root -g traefik -m 0750 /etc/traefik "$dynamic_dir"
chown root:traefik /etc/traefik/traefik.yml
chmod 0640 /etc/traefik/traefik.yml
chmod 0600 /etc/ml-worker/edge.key /etc/ml-worker/token

/usr/local/sbin/lab-networks

systemctl daemon-reload
systemctl enable --now ml-worker.service traefik.service

wait_port() {
  for _ in $(seq 120); do
    (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && return 0
    sleep 1
  done
  echo "nothing listens on $1:$2" >&2
  systemctl status --no-pager ml-worker.service traefik.service >&2 || true
  return 1
}
wait_port 127.0.0.1 8443
wait_port 172.30.0.1 3003
