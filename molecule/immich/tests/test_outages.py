"""Restarts and the Storage Box going away, on the amd64 host that runs the stack.

Marked disruptive: these checks stop and restart the host, the mount and the box, so molecule/conftest.py runs
them after every other test of the scenario (which then has seen the undisturbed stack). Each one leaves the stack
running on the mounted box again (and fails if it cannot).

A box outage while the mount stays up, and a dead or hung SSHFS daemon, are not here: sshfs `reconnect` rides out
a short one, and the role's health timer (storagebox-mount-health) heals a mount that stops answering by stopping
Immich, remounting and starting it again (molecule/sshfs_storagebox and the fault-injection step
tests/e2e/test_faults.py prove those). What the unit promises is about the MOUNT: Immich runs only while the box
is mounted and starts again when it is back.
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime

import pytest
from immich_scenario import ADMIN, API, BOX, BOX_IMMICH, docker, on_box

testinfra_hosts = ["immich-amd64"]
pytestmark = pytest.mark.disruptive

HOST = "immich-amd64"
MOUNT = "/mnt/storagebox"
UNIT = "mnt-storagebox.mount"
PROJECT = "label=com.docker.compose.project=immich"


def pong(host) -> bool:
    answer = host.run(f"curl -sS --max-time 5 {API}/server/ping")
    try:
        return answer.rc == 0 and json.loads(answer.stdout) == {"res": "pong"}
    except ValueError:
        return False


def running_containers(host) -> list[str]:
    return host.check_output(f"docker ps --filter {PROJECT} --format '{{{{.Names}}}}'").split()


def boot(wait_for) -> None:
    """Wait for the restarted host's systemd to finish booting (running, or degraded by a failed unit). Until PID 1
    listens on its bus, systemctl answers nothing, "offline" or "Failed to connect to system scope bus": asked
    again until it settles (the second of two separate calls once failed so under load)."""

    def settled() -> bool:
        state = docker("exec", HOST, "timeout", "60", "systemctl", "is-system-running", "--wait", check=False)
        return state.stdout.strip() in ("running", "degraded")

    wait_for("systemd in the restarted host to finish booting", settled, 300, interval=2)


def restart(wait_for) -> None:
    # Time for an orderly shutdown: immich.service's ExecStop (`compose stop`) before dockerd stops.
    docker("restart", "--time", "150", HOST)
    boot(wait_for)


def unit_time(host, unit: str, prop: str) -> int:
    """A unit's timestamp property in µs: *Monotonic ones as is, the others as UNIX time."""
    value = host.check_output(f"systemctl show --timestamp=us+utc --property={prop} --value {unit}")
    if prop.endswith("Monotonic"):
        return int(value)
    stamp = datetime.strptime(value, "%a %Y-%m-%d %H:%M:%S.%f UTC").replace(tzinfo=UTC)
    return int(stamp.timestamp() * 1_000_000)


def container_started(host, name: str) -> int:
    """A container's .State.StartedAt in µs of UNIX time (Docker gives nanoseconds, RFC 3339)."""
    value = host.check_output(f"docker inspect --format '{{{{.State.StartedAt}}}}' {name}")
    seconds, _, fraction = value.rstrip("Z").partition(".")
    stamp = datetime.strptime(seconds, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    return int(stamp.timestamp()) * 1_000_000 + int((fraction + "000000")[:6])


def upload_lands_on_the_box(host) -> None:
    """The stack works end to end: log in (database) and upload a photo that arrives on the box unchanged."""
    login = json.loads(
        host.check_output(
            f"curl -sS --fail-with-body -X POST {API}/auth/login -H 'Content-Type: application/json' "
            f"-d '{json.dumps(ADMIN)}'"
        )
    )
    name = f"outage-{secrets.token_hex(4)}.jpg"
    host.check_output(f"head -c 65536 /dev/urandom > /root/{name}")
    digest = host.check_output(f"sha256sum /root/{name}").split()[0]
    asset = json.loads(
        host.check_output(
            f"curl -sS --fail-with-body -X POST {API}/assets -H 'Authorization: Bearer {login['accessToken']}' "
            f"-F assetData=@/root/{name} -F fileCreatedAt=2026-10-01T10:00:00Z -F fileModifiedAt=2026-10-01T10:00:00Z"
        )
    )
    assert asset["status"] == "created", asset
    stored = on_box(f"find {BOX_IMMICH}/upload -type f -name '{asset['id']}.jpg' -exec sha256sum {{}} +").split()
    assert stored and stored[0] == digest, stored


def assert_nothing_local(host, mounted) -> None:
    """The bare mountpoint on the local disk is still empty and immutable: nothing landed there."""
    assert not mounted()
    assert host.check_output(f"ls -A {MOUNT}") == ""
    assert host.check_output(f"storagebox-mount-guard status {MOUNT}") == "immutable"


def test_losing_the_mount_stops_the_stack_and_the_mount_brings_it_back(host, wait_for, mounted):
    assert sorted(running_containers(host)) == ["immich_postgres", "immich_redis", "immich_server"]
    host.check_output("systemctl stop storagebox-mount-retry.timer")  # it would mount the box again meanwhile
    try:
        host.check_output(f"systemctl stop {UNIT}")
        # BindsTo: the unit stopped first (`compose stop`), so the unmount was not blocked by the server's bind.
        assert not host.service("immich.service").is_running
        assert running_containers(host) == []
        assert not pong(host)
        for attempt in (f"mkdir {MOUNT}/immich", f"touch {MOUNT}/.immich"):
            result = host.run(attempt)
            assert result.rc != 0 and "Operation not permitted" in result.stderr, attempt
        assert_nothing_local(host, mounted)
    finally:
        # Only the mount: immich.service must follow it by itself (it is wanted by the mount unit).
        host.check_output(f"systemctl start {UNIT} storagebox-mount-retry.timer")
    wait_for("the stack after the mount came back", lambda: pong(host), 180)
    assert host.service("immich.service").is_running
    assert sorted(running_containers(host)) == ["immich_postgres", "immich_redis", "immich_server"]


def test_host_restart_mounts_the_box_before_it_starts_the_stack(host, wait_for):
    restart(wait_for)
    wait_for("the server's ping after the restart", lambda: pong(host), 300)
    mount_active = unit_time(host, UNIT, "ActiveEnterTimestampMonotonic")
    stack_start = unit_time(host, "immich.service", "InactiveExitTimestampMonotonic")
    assert 0 < mount_active <= stack_start, (mount_active, stack_start)
    # Every container was started by the unit, after the mount: dockerd did not start one by itself at boot
    # (`restart: unless-stopped` + the unit's `compose stop` at shutdown), which could run it on the bare
    # mountpoint. Wall clock here: Docker's StartedAt against the unit's start.
    stack_start_wall = unit_time(host, "immich.service", "InactiveExitTimestamp")
    for name in ("immich_server", "immich_redis", "immich_postgres"):
        assert container_started(host, name) >= stack_start_wall, name
    upload_lands_on_the_box(host)


def test_box_down_at_boot_keeps_immich_stopped_until_the_box_is_back(host, wait_for, mounted):
    docker("stop", "--time", "10", BOX)
    try:
        restart(wait_for)
        state = host.run(f"systemctl is-active {UNIT}").stdout.strip()
        assert state in ("failed", "inactive"), state  # boot is over (boot() waited): the mount gave up
        host.check_output("docker info --format '{{.ServerVersion}}'")  # dockerd runs, the stack does not
        assert not host.service("immich.service").is_running
        assert running_containers(host) == []
        assert not pong(host)
        # Starting Immich by hand is refused too (its unit requires the mount), and leaves nothing behind.
        assert host.run("systemctl start immich.service").rc != 0
        assert running_containers(host) == []
        assert_nothing_local(host, mounted)
    finally:
        docker("start", BOX)
    # Nobody starts anything: storagebox-mount-retry.timer mounts the box again and the mount starts Immich.
    wait_for("the retry timer to mount the box again", mounted, 240, interval=5)
    wait_for("the stack after the box came back", lambda: pong(host), 240)
    assert host.service("immich.service").is_running
    upload_lands_on_the_box(host)
