"""The Synology pull: a one-way WebDAV sync with the box's read-only sub-account makes an exact copy of the
box's Immich folder, and the sub-account cannot write (checked with the script users run, and by rclone).

restic-aux plays the NAS (tests/lab/synology/nas-sync.sh: rclone, as DSM Cloud Sync "download only" does).
"""

from __future__ import annotations

import subprocess

testinfra_hosts = ["restic-arm64"]

BOX, NAS = "restic-box", "restic-aux"
BOX_IMMICH = "/srv/storagebox/u100001/home/immich"
NAS_COPY = "/srv/nas/immich"
SUB_USER, SUB_PASSWORD = "u100001-sub1", "Lab-Sub-Pass-2026"
WEBDAV = f"http://restic-box/{SUB_USER}/"
TREE_DIGEST = "cd {} && find . -type f -print0 | sort -z | xargs -0 sha256sum"


def docker_exec(container: str, script: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    flags = [f"--env={key}={value}" for key, value in (env or {}).items()]
    return subprocess.run(["docker", "exec", *flags, container, "bash", "-c", script], capture_output=True,
                          text=True, timeout=300, check=False)


def test_the_nas_copy_equals_the_box_immich_folder():
    sync = docker_exec(NAS, f"nas-sync {WEBDAV} {SUB_USER} {NAS_COPY}", {"WEBDAV_PASSWORD": SUB_PASSWORD})
    assert sync.returncode == 0, sync.stderr
    box = docker_exec(BOX, TREE_DIGEST.format(BOX_IMMICH)).stdout
    nas = docker_exec(NAS, TREE_DIGEST.format(NAS_COPY)).stdout
    assert box.count("\n") >= 8 and box == nas
    assert "./upload/with space/notes ä.txt" in nas


def test_the_sub_account_reads_and_cannot_write():
    check = docker_exec(NAS, f"webdav-readonly-check {WEBDAV} {SUB_USER}", {"WEBDAV_PASSWORD": SUB_PASSWORD})
    assert check.returncode == 0, check.stdout + check.stderr
    assert "write refused: PUT" in check.stdout and "write refused: MKCOL" in check.stdout
    push = docker_exec(NAS, f"echo x > /tmp/x && RCLONE_WEBDAV_URL={WEBDAV} RCLONE_WEBDAV_VENDOR=other "
                            f"RCLONE_WEBDAV_USER={SUB_USER} RCLONE_WEBDAV_PASS=$(printf %s '{SUB_PASSWORD}' "
                            "| rclone obscure -) rclone copyto /tmp/x :webdav:pushed.txt")
    assert push.returncode != 0
    assert docker_exec(BOX, f"test -e {BOX_IMMICH}/pushed.txt").returncode != 0


def test_the_check_catches_a_writable_account():
    # The main account can write: the script must say so (and remove its probe).
    check = docker_exec(NAS, "webdav-readonly-check http://restic-box/u100001/ u100001",
                        {"WEBDAV_PASSWORD": "Lab-Box-Pass-2026"})
    assert check.returncode == 1 and "the account can write" in check.stdout
    assert docker_exec(BOX, "ls -a /srv/storagebox/u100001/home | grep -c selfhost-write-probe").stdout.strip() == "0"
