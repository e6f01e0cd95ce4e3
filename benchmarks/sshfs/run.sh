#!/usr/bin/env bash
# SSHFS vs raw SFTP write throughput to the Storage Box stand-in, over a link with ~1 ms RTT.
#
# Runs natively (amd64) between two local containers on a private Docker network: `box` (the stand-in,
# tests/lab/storagebox/setup.sh, home on tmpfs so the disk is not measured) and `client` (sshfs + the
# delay proxy). This kernel has no netem, so the 1 ms RTT comes from delay_proxy.py (0.5 ms each way);
# --rate adds a tc tbf rate limit on the client's egress. Not a timed test: it prints figures.
#
#   benchmarks/sshfs/run.sh                 # full set: 200 photos (3-6 MB) + 2000 thumbnails (20-60 KB)
#   benchmarks/sshfs/run.sh --quick         # 20 photos + 200 thumbnails
#   options: --photos N --thumbs N --repeat N --delay-ms MS --rate RATE (e.g. 1gbit) --jobs N
#            --variant NAME=OPTIONS (extra sshfs option sets to compare) --keep (leave the containers)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
image=${BENCH_IMAGE:-selfhost-immich/debian:bookworm-amd64}
net=sshfs-bench
box=sshfs-bench-box
client=sshfs-bench-client
photos=200 thumbs=2000 repeat=1 delay_ms=0.5 rate="" jobs=4 keep=0
variants=()
while (($#)); do
  case $1 in
    --quick) photos=20 thumbs=200 ;;
    --photos) photos=$2; shift ;;
    --thumbs) thumbs=$2; shift ;;
    --repeat) repeat=$2; shift ;;
    --delay-ms) delay_ms=$2; shift ;;
    --rate) rate=$2; shift ;;
    --jobs) jobs=$2; shift ;;
    --variant) variants+=("$2"); shift ;;
    --keep) keep=1 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

# The role's throughput options, from its defaults (a one-line YAML list).
role_options=$(sed -n 's/^sshfs_storagebox_throughput_options: *\[\(.*\)\] *$/\1/p' \
  "$repo/roles/sshfs_storagebox/defaults/main.yml" | tr -d ' ')
[[ -n $role_options ]] || { echo "cannot read sshfs_storagebox_throughput_options" >&2; exit 1; }
# The role's connection options that matter for speed (keep-alives and reconnect cost nothing here).
variants=("role=reconnect,ServerAliveInterval=15,ServerAliveCountMax=3,$role_options" "seed=reconnect" "${variants[@]}")

cleanup() {
  ((keep)) && return
  docker rm -f "$box" "$client" >/dev/null 2>&1 || true
  docker network rm "$net" >/dev/null 2>&1 || true
}
trap cleanup EXIT
cleanup
docker network create "$net" >/dev/null
common=(--network "$net" --cgroupns host -v /sys/fs/cgroup:/sys/fs/cgroup:rw --tmpfs /run --tmpfs /run/lock
        --tmpfs /tmp --security-opt seccomp=unconfined --security-opt apparmor=unconfined --stop-signal SIGRTMIN+3)
docker run -d --name "$box" --hostname box --network-alias box "${common[@]}" --cap-add SYS_ADMIN \
  --tmpfs /srv/storagebox:mode=0755,size=3g "$image" /lib/systemd/systemd >/dev/null
docker run -d --name "$client" --hostname client "${common[@]}" --cap-add SYS_ADMIN --cap-add NET_ADMIN \
  --device /dev/fuse --tmpfs /bench:size=2g "$image" /lib/systemd/systemd >/dev/null
sleep 2

password=Bench-Box-Pass-2026
echo "== setting up the stand-in and the client"
docker cp "$repo/tests/lab/storagebox" "$box:/opt/storagebox-standin"
docker exec -e STORAGEBOX_PASSWORD=$password "$box" bash /opt/storagebox-standin/setup.sh >/dev/null
docker exec "$client" sh -c 'apt-get install -y -q --no-install-recommends sshfs sshpass openssh-client >/dev/null 2>&1'
for f in "$here/client.sh" "$here/delay_proxy.py" "$repo/roles/sshfs_storagebox/files/storagebox-authorize-key"; do
  docker cp "$f" "$client:/opt/"
done
for pair in 2223:23 2280:80; do
  docker exec -d "$client" python3 /opt/delay_proxy.py --listen "127.0.0.1:${pair%:*}" \
    --target "box:${pair#*:}" --delay-ms "$delay_ms"
done
sleep 1
if [[ -n $rate ]]; then
  docker exec "$client" tc qdisc replace dev eth0 root tbf rate "$rate" burst 1mb latency 50ms
fi
docker exec -i "$client" /opt/client.sh setup u100001 <<<"$password" >/dev/null
docker exec "$client" /opt/client.sh rtt
echo "== generating $photos photos and $thumbs thumbnails"
sizes=$(docker exec "$client" /opt/client.sh gen "$photos" "$thumbs")
photo_bytes=$(awk '/photos/ {print $1}' <<<"$sizes")
thumb_bytes=$(awk '/thumbs/ {print $1}' <<<"$sizes")
echo "photos: $photo_bytes bytes, thumbs: $thumb_bytes bytes; rate limit: ${rate:-none}; one-way delay ${delay_ms} ms"

declare -A best
record() {  # name set seconds
  local key="$1/$2"
  if [[ -z ${best[$key]:-} ]] || awk -v a="$3" -v b="${best[$key]}" 'BEGIN { exit !(a < b) }'; then best[$key]=$3; fi
}
wipe() { docker exec "$box" sh -c 'rm -rf /srv/storagebox/u100001/home/bench-*'; }
n=0
for ((r = 1; r <= repeat; r++)); do
  for set in photos thumbs; do
    n=$((n + 1)); s=$(docker exec "$client" /opt/client.sh sftp "$set" "bench-$n"); wipe
    echo "run $r $set raw-sftp: ${s}s"; record raw-sftp "$set" "$s"
    for v in "${variants[@]}"; do
      n=$((n + 1)); s=$(docker exec "$client" /opt/client.sh sshfs "$set" "bench-$n" 1 "${v#*=}"); wipe
      echo "run $r $set sshfs-${v%%=*}: ${s}s"; record "sshfs-${v%%=*}" "$set" "$s"
      if ((jobs > 1)); then
        n=$((n + 1)); s=$(docker exec "$client" /opt/client.sh sshfs "$set" "bench-$n" "$jobs" "${v#*=}"); wipe
        echo "run $r $set sshfs-${v%%=*} x$jobs writers: ${s}s"; record "sshfs-${v%%=*}-x$jobs" "$set" "$s"
      fi
    done
  done
done

echo
echo "== results (best of $repeat; MB = 10^6 bytes)"
for v in "${variants[@]}"; do echo "sshfs-${v%%=*}: -o ${v#*=}"; done
printf '%-22s %14s %14s %16s %16s\n' method "photos MB/s" "thumbs MB/s" "photos x raw" "thumbs x raw"
names=(raw-sftp)
for v in "${variants[@]}"; do
  names+=("sshfs-${v%%=*}")
  ((jobs > 1)) && names+=("sshfs-${v%%=*}-x$jobs")
done
for name in "${names[@]}"; do
  awk -v n="$name" -v pb="$photo_bytes" -v tb="$thumb_bytes" -v p="${best[$name/photos]}" -v t="${best[$name/thumbs]}" \
      -v rp="${best[raw-sftp/photos]}" -v rt="${best[raw-sftp/thumbs]}" \
      'BEGIN { printf "%-22s %14.1f %14.1f %15.2fx %15.2fx\n", n, pb/p/1e6, tb/t/1e6, rp/p, rt/t }'
done
