#!/usr/bin/env bash
# Runs inside the benchmark's client container (see run.sh). Subcommands:
#   setup USER            key for root, pinned host key, key authorized on the box (password on stdin)
#   gen PHOTOS THUMBS     the photo-sized (3-6 MB) and thumbnail-sized (20-60 KB) files, random bytes
#   rtt                   median round trip of 50 small HTTP requests to the box, direct and via the proxy
#   sftp SET DEST         write SET (photos|thumbs) to the box with one raw `sftp -b` batch; prints seconds
#   sshfs SET DEST JOBS OPTIONS   the same through an sshfs mount with OPTIONS, JOBS parallel writers
# The box is reached through the delay proxy on 127.0.0.1:2223 (SFTP) and :2280 (HTTP, for rtt).
set -euo pipefail
src=/bench/src
key=/root/.ssh/bench_ed25519
known_hosts=/root/.ssh/bench_known_hosts
user_file=/bench/user
port=2223

ssh_opts=(-o "IdentityFile=$key" -o IdentitiesOnly=yes -o "UserKnownHostsFile=$known_hosts"
          -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes -o BatchMode=yes)

now() { date +%s.%N; }

case $1 in
  setup)
    echo "$2" >"$user_file"
    mkdir -p /root/.ssh /mnt/bench
    [[ -f $key ]] || ssh-keygen -q -t ed25519 -N "" -f "$key"
    ssh-keyscan -p "$port" 127.0.0.1 2>/dev/null >"$known_hosts"
    /opt/storagebox-authorize-key "$2" 127.0.0.1 "$port" "$known_hosts" "$key.pub"
    ;;
  gen)
    mkdir -p "$src/photos" "$src/thumbs"
    RANDOM=42
    for ((i = 1; i <= $2; i++)); do
      head -c $(( (3000 + RANDOM % 3001) * 1000 )) /dev/urandom >"$(printf '%s/photos/IMG_%04d.jpg' "$src" "$i")"
    done
    for ((i = 1; i <= $3; i++)); do
      head -c $(( (20 + RANDOM % 41) * 1000 )) /dev/urandom >"$(printf '%s/thumbs/%05d.webp' "$src" "$i")"
    done
    du -sb "$src/photos" "$src/thumbs"
    ;;
  rtt)
    python3 - <<'PY'
import http.client, statistics, time
for label, host, port in (("direct", "box", 80), ("via proxy", "127.0.0.1", 2280)):
    conn = http.client.HTTPConnection(host, port)
    samples = []
    for _ in range(50):
        t = time.perf_counter()
        conn.request("OPTIONS", "/")
        conn.getresponse().read()
        samples.append(time.perf_counter() - t)
    print(f"rtt {label}: median {statistics.median(samples) * 1000:.2f} ms")
PY
    ;;
  sftp)
    set_name=$2 dest=$3
    batch=$(mktemp)
    echo "mkdir $dest" >"$batch"
    for f in "$src/$set_name"/*; do echo "put $f $dest/${f##*/}" >>"$batch"; done
    t0=$(now)
    sftp -q -b "$batch" -P "$port" "${ssh_opts[@]}" "$(cat "$user_file")@127.0.0.1" >/dev/null
    t1=$(now)
    rm -f "$batch"
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f\n", b - a }'
    ;;
  sshfs)
    set_name=$2 dest=$3 jobs=$4 options=$5
    opts="port=$port"
    for o in "${ssh_opts[@]}"; do [[ $o == -o ]] || opts+=",$o"; done
    sshfs "$(cat "$user_file")@127.0.0.1:/home" /mnt/bench -o "$opts,$options"
    mkdir "/mnt/bench/$dest"
    t0=$(now)
    if [[ $jobs == 1 ]]; then
      cp "$src/$set_name"/* "/mnt/bench/$dest/"
    else
      find "$src/$set_name" -type f -print0 | xargs -0 -n 50 -P "$jobs" cp -t "/mnt/bench/$dest/"
    fi
    t1=$(now)
    # Every close() waited for its writes to be acknowledged (sshfs flush): the data is on the box.
    fusermount3 -u /mnt/bench
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f\n", b - a }'
    ;;
  *)
    echo "unknown subcommand $1" >&2
    exit 2
    ;;
esac
