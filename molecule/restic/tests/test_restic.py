"""restic on the arm64 host: verified binary, timers, a snapshot holding a fresh dump, a restore drill that
replays the dump, and every failure (dump, lock, password, corrupt pack) leaves the unit failed and pinged.

The stand-ins (the box, restic-aux with PostgreSQL and the ping recorder) are driven from the controller with
`docker exec`. The tests run in file order: each leaves the repository healthy for the next.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

testinfra_hosts = ["restic-arm64"]

BOX, AUX = "restic-box", "restic-aux"
REPO_ON_BOX = "/srv/storagebox/u100001/home/restic"
BACKUP, CHECK = "selfhost-restic-backup", "selfhost-restic-check"
DUMP = "/var/lib/selfhost-restic/staging/immich-database.sql.gz"
SOURCES = ["/var/lib/selfhost-restic/staging", "/srv/immich/backups", "/opt/immich/.env",
           "/opt/immich/docker-compose.yml", "/etc/traefik/acme.json"]
PSQL = "psql --host=restic-aux --username=postgres -v ON_ERROR_STOP=1 -tA"
# Immich's documented restore command (backup-and-restore guide), pointed at the database stand-in.
REPLAY = (
    "gunzip --stdout {dump} | sed \"s/SELECT pg_catalog.set_config('search_path', '', false);/"
    "SELECT pg_catalog.set_config('search_path', 'public, pg_catalog', true);/g\" | "
    "psql --host=restic-aux --username=postgres --dbname={db} --single-transaction --set ON_ERROR_STOP=on -q"
)
TABLE_DIGEST = "SELECT md5(string_agg(a::text, ',' ORDER BY id)) || ':' || count(*) FROM asset a"
SCENARIO_DIR = Path(__file__).resolve().parents[1]


def docker_exec(container: str, script: str, check: bool = True) -> str:
    result = subprocess.run(["docker", "exec", container, "bash", "-c", script], capture_output=True, text=True,
                            timeout=600, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"{container}: {script} -> {result.returncode}\n{result.stdout}{result.stderr}")
    return result.stdout


def pings() -> list[str]:
    return docker_exec(AUX, "cat /var/log/pings.log 2>/dev/null || true").split()


def clear_pings() -> None:
    docker_exec(AUX, ": > /var/log/pings.log")


def run_unit(host, unit: str) -> int:
    """Start a oneshot unit, wait for it, return its main process's exit status."""
    host.run(f"systemctl reset-failed {unit}.service")
    host.run(f"systemctl start {unit}.service")
    return int(host.check_output(f"systemctl show -p ExecMainStatus --value {unit}.service"))


def snapshots(host) -> list[dict]:
    return json.loads(host.check_output("selfhost-restic snapshots --json --no-lock"))


def assert_restored_byte_exact(host, root: str) -> None:
    """Every backed-up file is under root with the same sha256 (the dump among them)."""
    files = host.check_output(f"find {' '.join(SOURCES)} -type f | sort").split()
    assert DUMP in files and len(files) >= 5
    for path in files:
        original = host.check_output(f"sha256sum {shlex.quote(path)}").split()[0]
        restored = host.check_output(f"sha256sum {shlex.quote(root + path)}").split()[0]
        assert original == restored, path


def run_playbook(play: Path, extra_vars: dict | None = None) -> tuple[int, str]:
    """ansible-playbook against the scenario's inventory; (exit status, output on one line)."""
    command = [str(Path(sys.executable).with_name("ansible-playbook")), "-i", os.environ["MOLECULE_INVENTORY_FILE"],
               str(play)]
    if extra_vars:
        command += ["-e", json.dumps(extra_vars)]
    run = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False,
                         env={**os.environ, "ANSIBLE_NOCOLOR": "1"})
    return run.returncode, " ".join((run.stdout + run.stderr).split())


def locks_on_box() -> int:
    return len(docker_exec(BOX, f"ls {REPO_ON_BOX}/locks").split())


def test_host_is_arm64(host):
    assert host.system_info.arch == "aarch64"


def test_the_pinned_verified_release_runs(host):
    assert host.file("/usr/local/bin/restic").linked_to == "/usr/local/lib/selfhost-restic/0.18.0/restic"
    assert host.check_output("restic version").startswith("restic 0.18.0 ")
    mirrored = docker_exec(AUX, "bzip2 -dc /srv/mirror/v0.18.0/restic_0.18.0_linux_arm64.bz2 | sha256sum")
    assert host.check_output("sha256sum /usr/local/bin/restic").split()[0] == mirrored.split()[0]


def test_secrets_are_root_only_and_the_repository_goes_through_the_alias(host):
    for path in ["/etc/selfhost-restic/password", "/etc/selfhost-restic/restic.env", "/etc/selfhost-restic/run.json"]:
        secret = host.file(path)
        assert (secret.user, secret.mode) == ("root", 0o600), path
    folder = host.file("/etc/selfhost-restic")
    assert (folder.user, folder.mode) == ("root", 0o700)
    env = host.file("/etc/selfhost-restic/restic.env").content_string
    assert "RESTIC_REPOSITORY=sftp:selfhost-storagebox:restic\n" in env
    assert "Lab-Restic-Repo-Pass-2026" not in env + host.file("/etc/selfhost-restic/run.json").content_string
    # Port 23 comes from the alias: restic reached the box's repository (made by converge) through it.
    assert docker_exec(BOX, f"test -f {REPO_ON_BOX}/config && ls {REPO_ON_BOX}/keys | wc -l").strip() == "1"


def test_the_wrapper_reads_the_environment_as_data(host):
    """selfhost-restic never runs restic.env as shell: an injected line stops it before restic runs."""
    env = "/etc/selfhost-restic/restic.env"
    host.check_output(f"rm -f /tmp/pwned && cp -p {env} /root/restic.env.good && "
                      f"sed -i 's/^RESTIC_CACHE_DIR=.*/RESTIC_CACHE_DIR=$(touch \\/tmp\\/pwned)/' {env}")
    try:
        refused = host.run("selfhost-restic snapshots --no-lock")
    finally:
        host.check_output(f"mv /root/restic.env.good {env}")
    assert refused.rc == 2 and "restic was not run" in refused.stderr, refused.stderr
    assert not host.file("/tmp/pwned").exists


def test_timers_are_active_and_catch_up(host):
    for unit in (BACKUP, CHECK):
        timer = host.service(f"{unit}.timer")
        assert timer.is_enabled and timer.is_running, unit
        text = host.file(f"/etc/systemd/system/{unit}.timer").content_string
        assert "Persistent=true" in text and "RandomizedDelaySec=" in text
    assert "OnCalendar=*-*-* 03:00:00" in host.file(f"/etc/systemd/system/{BACKUP}.timer").content_string


def test_backup_makes_a_snapshot_with_a_fresh_dump(host):
    clear_pings()
    before = {snapshot["id"] for snapshot in snapshots(host)}
    assert run_unit(host, BACKUP) == 0, host.run(f"journalctl -u {BACKUP} -n 40 --no-pager").stdout
    assert not host.service(f"{BACKUP}.service").is_running
    latest = snapshots(host)[-1]
    # forget --prune keeps one snapshot a day (restic_keep_daily), so the count need not grow: the latest is new.
    assert latest["id"] not in before
    assert sorted(latest["paths"]) == sorted(SOURCES)
    listing = host.check_output("selfhost-restic ls latest --no-lock")
    assert DUMP in listing.splitlines()
    assert "PostgreSQL database dump complete" in host.check_output(f"gunzip --stdout {DUMP} | tail -n 5")
    assert pings() == ["/ping/backup/start", "/ping/backup/0"]


def test_restore_drill_is_byte_exact_and_the_dump_replays(host):
    host.run("rm -rf /tmp/drill")
    host.check_output("selfhost-restic restore latest --no-lock --target /tmp/drill")
    assert_restored_byte_exact(host, "/tmp/drill")
    host.check_output(f"{PSQL} --dbname=postgres -c 'DROP DATABASE IF EXISTS immich_drill'")
    host.check_output(f"{PSQL} --dbname=postgres -c 'CREATE DATABASE immich_drill'")
    replay = host.run(REPLAY.format(dump=f"/tmp/drill{DUMP}", db="immich_drill"))
    assert replay.rc == 0, replay.stderr
    source = host.check_output(f'{PSQL} --dbname=immich -c "{TABLE_DIGEST}"')
    drilled = host.check_output(f'{PSQL} --dbname=immich_drill -c "{TABLE_DIGEST}"')
    assert source == drilled and source.endswith(":5000")


def test_restore_playbook_restores_the_files_and_replays_the_dump_into_the_stopped_stack(host):
    """playbooks/restore.yml as a user runs it: latest snapshot into an empty target, dump replayed in between
    stopping and starting the stack. The stack's unit is a stand-in for immich.service that logs its stops and
    starts; the database is the stand-in PostgreSQL on restic-aux (a fresh, empty database)."""
    stack, stack_log, target = "lab-immich-stack", "/var/log/lab-immich-stack.log", "/tmp/restore-playbook"
    unit = ("[Service]\nType=oneshot\nRemainAfterExit=yes\n"
            f"ExecStart=/bin/sh -c 'echo start >> {stack_log}'\nExecStop=/bin/sh -c 'echo stop >> {stack_log}'\n")
    host.check_output(f"printf {shlex.quote(unit)} > /etc/systemd/system/{stack}.service && systemctl daemon-reload"
                      f" && rm -rf {stack_log} {target} && systemctl restart {stack}")
    host.check_output(f"{PSQL} --dbname=postgres -c 'DROP DATABASE IF EXISTS immich_restored'")
    host.check_output(f"{PSQL} --dbname=postgres -c 'CREATE DATABASE immich_restored'")
    latest = snapshots(host)[-1]["short_id"]
    restore = {
        "restore_hosts": "restic-arm64", "restore_target": target, "restore_database": True,
        "restore_stack_unit": f"{stack}.service", "restore_db_start_command": [],
        "restore_psql_command": ["psql", "--host=restic-aux", "--username=postgres", "--dbname=immich_restored"],
    }
    play = SCENARIO_DIR.parents[1] / "playbooks" / "restore.yml"

    rc, output = run_playbook(play, restore)
    assert rc == 0, output[-3000:]
    assert f"Restore snapshot {latest}" in output
    assert_restored_byte_exact(host, target)
    source = host.check_output(f'{PSQL} --dbname=immich -c "{TABLE_DIGEST}"')
    assert host.check_output(f'{PSQL} --dbname=immich_restored -c "{TABLE_DIGEST}"') == source
    assert source.endswith(":5000")
    assert host.file(stack_log).content_string.split() == ["start", "stop", "start"]
    assert host.service(f"{stack}.service").is_running

    # Never over files: the same target again is refused before the stack is touched.
    rc, output = run_playbook(play, restore)
    assert rc != 0 and f"{target} is not empty" in output, output[-3000:]
    assert host.file(stack_log).content_string.split() == ["start", "stop", "start"]
    # A snapshot ID that is not one is refused with what to pass instead.
    rc, output = run_playbook(play, {**restore, "restore_snapshot": "latest; rm -rf /"})
    assert rc != 0 and "restore_snapshot is 'latest' or a snapshot ID" in output, output[-3000:]
    host.run(f"systemctl stop {stack}; rm -f /etc/systemd/system/{stack}.service; systemctl daemon-reload")


def test_a_failed_dump_fails_the_unit_pings_the_failure_and_makes_no_snapshot(host):
    before = [snapshot["id"] for snapshot in snapshots(host)]
    docker_exec(AUX, "systemctl stop postgresql")
    try:
        clear_pings()
        assert run_unit(host, BACKUP) == 20
        assert host.run(f"systemctl is-failed {BACKUP}.service").stdout.strip() == "failed"
        assert f"{BACKUP}.service" in host.check_output("systemctl --failed --no-legend")
        assert pings() == ["/ping/backup/start", "/ping/backup/20"]
        assert [snapshot["id"] for snapshot in snapshots(host)] == before
        assert not host.file(DUMP).exists
    finally:
        docker_exec(AUX, "systemctl start postgresql && "
                         "for i in $(seq 30); do pg_isready -q -h localhost && break; sleep 1; done")
        host.run(f"systemctl reset-failed {BACKUP}.service")


def test_a_held_lock_fails_the_unit_with_11_and_a_stale_one_does_not_block(host):
    # A backup that never ends holds a lock, as a run on another machine or a hung one would.
    holder = ("systemd-run --unit=restic-lock-holder -p EnvironmentFile=/etc/selfhost-restic/restic.env "
              "sh -c 'sleep 900 | /usr/local/bin/restic backup --stdin --stdin-filename held'")
    host.check_output(holder)
    deadline = time.monotonic() + 120
    while locks_on_box() == 0:
        assert time.monotonic() < deadline, "the holder never took a lock"
        time.sleep(2)
    try:
        clear_pings()
        # unlock leaves a live lock alone; forget --prune needs the exclusive lock: exit 11 = failure.
        assert run_unit(host, BACKUP) == 11
        assert pings() == ["/ping/backup/start", "/ping/backup/11"]
        assert host.run(f"systemctl is-failed {BACKUP}.service").stdout.strip() == "failed"
    finally:
        # Killed without a chance to clean up: its lock stays on the box, now stale.
        host.run("systemctl kill -s KILL restic-lock-holder.service")
        host.run("systemctl stop restic-lock-holder.service; systemctl reset-failed restic-lock-holder.service")
    assert locks_on_box() >= 1
    clear_pings()
    assert run_unit(host, BACKUP) == 0, host.run(f"journalctl -u {BACKUP} -n 40 --no-pager").stdout
    assert pings() == ["/ping/backup/start", "/ping/backup/0"]
    assert locks_on_box() == 0


def test_a_corrupt_pack_fails_the_check(host):
    pack = docker_exec(BOX, f"find {REPO_ON_BOX}/data -type f -size +100k | head -n 1").strip()
    assert pack
    docker_exec(BOX, f"cp -p {pack} /root/pack.orig && "
                     f"printf 'CORRUPT-CORRUPT-CORRUPT' | dd of={pack} bs=1 seek=4096 conv=notrunc status=none")
    try:
        clear_pings()
        assert run_unit(host, CHECK) != 0
        assert host.run(f"systemctl is-failed {CHECK}.service").stdout.strip() == "failed"
        assert pings()[0] == "/ping/check/start" and pings()[-1] not in ("/ping/check/0", "/ping/check/start")
    finally:
        docker_exec(BOX, f"cp -p /root/pack.orig {pack}")
    clear_pings()
    assert run_unit(host, CHECK) == 0
    assert pings() == ["/ping/check/start", "/ping/check/0"]


def test_a_wrong_password_fails_loudly_and_never_reinitialises(host):
    config_before = docker_exec(BOX, f"sha256sum {REPO_ON_BOX}/config")
    wrong = host.run("RESTIC_REPOSITORY=sftp:selfhost-storagebox:restic RESTIC_PASSWORD=wrong-password-123 "
                     "restic --no-cache cat config")
    assert wrong.rc == 12, wrong.stderr
    rc, output = run_playbook(SCENARIO_DIR / "tests" / "wrong_password.yml")
    assert rc != 0
    assert "does not open it (restic exit 12)" in output, output[-3000:]
    assert docker_exec(BOX, f"sha256sum {REPO_ON_BOX}/config") == config_before
    assert docker_exec(BOX, f"ls {REPO_ON_BOX}/keys | wc -l").strip() == "1"
