#!/usr/bin/env python3
"""restic against the Storage Box stand-in: the second, unchanged backup and a full restore — time and bytes.

Needs the restic scenario's containers (converged, not destroyed; `molecule destroy -s restic` afterwards):
    molecule test -s restic --destroy never      # or: molecule converge -s restic
    python3 benchmarks/restic/bench.py [--host restic-arm64] [--mb 64]

On the host it writes --mb MiB of test data (random photos-like files, incompressible), backs it up to a separate
repository on the box (sftp:<alias>:restic-bench, same alias and password file as the role), backs it up again
unchanged, then restores it in full and checks every file's sha256. Bytes are the host's network counters
(eth0 tx for backups, rx for the restore), so they include SSH/SFTP overhead. Under qemu-user (arm64 on amd64)
the times are CPU-bound by emulation; compare them with each other, not with a real CAX41.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time

# The role's wrapper (its password file and SSH alias; restic.env is read as data, never sourced), on a separate
# repository and cache: restic's --repo/--cache-dir flags win over the wrapper's environment.
RESTIC = "selfhost-restic --repo sftp:selfhost-storagebox:restic-bench --cache-dir /var/cache/restic-bench "


def sh(host: str, script: str) -> str:
    result = subprocess.run(["docker", "exec", host, "bash", "-c", script], capture_output=True, text=True,
                            check=False, timeout=3600)
    if result.returncode != 0:
        raise SystemExit(f"{script}\n-> {result.returncode}\n{result.stdout}{result.stderr}")
    return result.stdout


def counters(host: str) -> tuple[int, int]:
    rx, tx = sh(host, "cat /sys/class/net/eth0/statistics/rx_bytes /sys/class/net/eth0/statistics/tx_bytes").split()
    return int(rx), int(tx)


def timed(host: str, script: str) -> tuple[float, int, int, str]:
    rx0, tx0 = counters(host)
    start = time.monotonic()
    out = sh(host, script)
    seconds = time.monotonic() - start
    rx1, tx1 = counters(host)
    return seconds, rx1 - rx0, tx1 - tx0, out


def summary(out: str) -> dict:
    return next(json.loads(line) for line in out.splitlines() if '"message_type":"summary"' in line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="restic-arm64")
    parser.add_argument("--mb", type=int, default=64)
    args = parser.parse_args()
    host, mib = args.host, args.mb

    sh(host, f"rm -rf /srv/bench /root/bench-restore; mkdir -p /srv/bench/library && cd /srv/bench/library && "
             f"for i in $(seq {mib}); do head -c 1048576 /dev/urandom > IMG_$i.jpg; done")
    sh(host, RESTIC + "cat config >/dev/null 2>&1 || " + RESTIC + "init >/dev/null")
    backup = RESTIC + "backup --json --host bench /srv/bench"
    first = timed(host, backup)
    second = timed(host, backup)
    restore = timed(host, RESTIC + "restore latest --host bench --target /root/bench-restore")
    digest = "cd {} && find . -type f -print0 | sort -z | xargs -0 sha256sum"
    same = sh(host, digest.format("/srv/bench")) == sh(host, digest.format("/root/bench-restore/srv/bench"))
    s1, s2 = summary(first[3]), summary(second[3])

    print(f"restic benchmark on {host}: {mib} MiB in {mib} files, repository on the box stand-in (SFTP, port 23)")
    print(f"{'step':<26}{'seconds':>9}{'MiB sent':>10}{'MiB recv':>10}  restic")
    for name, (seconds, rx, tx, _), note in (
        ("first backup", first, f"data_added={s1.get('data_added', 0) / 2**20:.1f} MiB"),
        ("second backup (unchanged)", second,
         f"data_added={s2.get('data_added', 0) / 2**20:.3f} MiB, files_unmodified={s2.get('files_unmodified')}"),
        ("full restore", restore, f"sha256 of every file equal: {same}"),
    ):
        print(f"{name:<26}{seconds:>9.1f}{tx / 2**20:>10.2f}{rx / 2**20:>10.2f}  {note}")
    sh(host, "rm -rf /srv/bench /root/bench-restore")
    if not same:
        raise SystemExit("restore differs from the source")


if __name__ == "__main__":
    main()
