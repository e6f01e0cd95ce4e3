"""selfhost-immich-status (roles/immich/files) reports each part of the stack and fails when one is down.

The script runs as on the server (python3, its own process) against fakes: a tmp directory as the upload
location, fake `mountpoint`, `stat`, `systemctl` and `docker` first on PATH (their answers set per test), and a
local HTTP server answering Immich's ping and the ML route's ping (or refusing them).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from ansible_collections.selfhost.immich.tests.fakes.network import http_server

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "roles" / "immich" / "files" / "selfhost-immich-status"
FAKES = {
    "mountpoint": 'exit "${FAKE_MOUNTPOINT_RC:-0}"\n',
    # The real stat unless a test makes it hang (a lost SSHFS link) or fail (a dead SSHFS daemon).
    "stat": 'case "${FAKE_STAT:-}" in\n  hang) sleep 30 ;;\n'
            '  dead) echo "stat: cannot statx: Transport endpoint is not connected" >&2; exit 1 ;;\n'
            '  *) exec /usr/bin/stat "$@" ;;\nesac\n',
    "systemctl": 'echo "$*" >> "$FAKE_LOG"\nprintf "%b" "${FAKE_SHOW:-}"\n',
    "docker": 'echo "$*" >> "$FAKE_LOG"\n[ -n "${FAKE_DOCKER:-}" ] || { echo "No such object" >&2; exit 1; }\n'
              'echo "$FAKE_DOCKER"\n',
    # Enters no namespace: records the target and runs the command after --.
    "nsenter": 'echo "nsenter $1 $2" >> "$FAKE_LOG"\nshift 3\nexec "$@"\n',
}
SUCCESS = ("LoadState=loaded\\nActiveState=inactive\\nResult=success\\n"
           "ExecMainExitTimestamp=Fri 2026-12-04 02:14:07 UTC\\nActiveExitTimestamp=\\n")


@pytest.fixture
def http():
    """A local server: /api/server/ping -> pong, /ml/ping -> 200; `answers` changes them per test."""
    answers = {"/api/server/ping": (200, b'{"res":"pong"}'), "/ml/ping": (200, b"pong")}

    with http_server(lambda path: answers.get(path, (404, b"{}"))) as url:
        yield url, answers


@pytest.fixture
def status(tmp_path, http):
    base, _ = http
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in FAKES.items():
        (bin_dir / name).write_text("#!/bin/sh\n" + body)
        (bin_dir / name).chmod(0o755)
    mount = tmp_path / "mnt" / "storagebox"
    (mount / "immich").mkdir(parents=True)
    config = {"upload_location": str(mount / "immich"), "mount_where": str(mount), "server_url": base,
              "backup_unit": "selfhost-restic-backup.service", "ml_url": f"{base}/ml/", "ml_local_container": ""}

    def run(env: dict[str, str] | None = None, **changes) -> tuple[int, dict[str, str], str]:
        (tmp_path / "status.conf").write_text(json.dumps({**config, **changes}))
        result = subprocess.run(
            [sys.executable, str(SCRIPT), "--config", str(tmp_path / "status.conf")],
            env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_LOG": str(tmp_path / "calls.log"),
                 "FAKE_SHOW": SUCCESS, **(env or {})},
            capture_output=True, text=True, timeout=60, check=False,
        )
        lines = {line.split()[0]: line for line in result.stdout.splitlines()}
        return result.returncode, lines, result.stderr

    return run


def state(line: str) -> str:
    return line.split()[1]


def test_everything_up_prints_one_ok_line_each_and_exits_0(status, tmp_path):
    code, lines, _ = status()
    assert code == 0
    assert list(lines) == ["mount", "stack", "backup", "ml"]
    assert all(state(line) == "ok" for line in lines.values()), lines
    assert lines["mount"].split()[2] == str(tmp_path / "mnt" / "storagebox" / "immich")
    assert "pong" in lines["stack"]
    assert "success at Fri 2026-12-04 02:14:07 UTC" in lines["backup"]
    assert lines["ml"].endswith("/ml/ping -> 200")
    assert "show --property=" in (tmp_path / "calls.log").read_text()
    assert "selfhost-restic-backup.service" in (tmp_path / "calls.log").read_text()


@pytest.mark.parametrize(("env", "detail"), [
    ({"FAKE_MOUNTPOINT_RC": "32"}, "is not mounted"),
    ({"FAKE_STAT": "dead"}, "Transport endpoint is not connected"),
    ({"FAKE_STAT": "hang"}, "no answer within 5 s"),
])
def test_a_box_that_is_not_mounted_dead_or_hanging_is_down(status, env, detail):
    code, lines, _ = status(env)
    assert code == 1
    assert state(lines["mount"]) == "DOWN" and detail in lines["mount"], lines["mount"]
    assert state(lines["stack"]) == "ok"  # the other parts are still checked and reported


def test_a_missing_upload_location_is_down(status, tmp_path):
    code, lines, _ = status(upload_location=str(tmp_path / "nowhere"))
    assert (code, state(lines["mount"])) == (1, "DOWN")


def test_a_local_library_needs_no_mountpoint(status):
    code, lines, _ = status({"FAKE_MOUNTPOINT_RC": "32"}, mount_where="")
    assert (code, state(lines["mount"])) == (0, "ok")
    assert "local disk" in lines["mount"]


@pytest.mark.parametrize("answer", [(500, b'{"res":"pong"}'), (200, b'{"res":"starting"}'), (200, b"<html>")])
def test_a_stack_that_does_not_say_pong_is_down(status, http, answer):
    _, answers = http
    answers["/api/server/ping"] = answer
    code, lines, _ = status()
    assert (code, state(lines["stack"])) == (1, "DOWN"), lines["stack"]


def test_a_stack_that_refuses_the_connection_is_down(status):
    code, lines, _ = status(server_url="http://127.0.0.1:9")
    assert (code, state(lines["stack"])) == (1, "DOWN")


@pytest.mark.parametrize(("show", "code", "expected", "detail"), [
    ("LoadState=loaded\\nActiveState=failed\\nResult=exit-code\\nExecMainExitTimestamp=Fri 2026-12-04 02:14:07 UTC\\n",
     1, "DOWN", "exit-code at Fri 2026-12-04 02:14:07 UTC"),
    ("LoadState=not-found\\nActiveState=inactive\\nResult=success\\n", 1, "DOWN", "no such unit"),
    ("LoadState=loaded\\nActiveState=inactive\\nResult=success\\nExecMainExitTimestamp=\\nActiveExitTimestamp=\\n",
     0, "ok", "no run since boot"),
    ("LoadState=loaded\\nActiveState=inactive\\nResult=success\\nExecMainExitTimestamp=\\n"
     "ActiveExitTimestamp=Thu 2026-12-03 02:00:01 UTC\\n", 0, "ok", "success at Thu 2026-12-03 02:00:01 UTC"),
])
def test_the_backup_line_reports_the_units_last_result(status, show, code, expected, detail):
    rc, lines, _ = status({"FAKE_SHOW": show})
    assert (rc, state(lines["backup"])) == (code, expected)
    assert detail in lines["backup"], lines["backup"]


def test_no_backup_unit_is_not_configured_and_not_down(status, tmp_path):
    code, lines, _ = status(backup_unit="")
    assert code == 0 and lines["backup"].split(None, 2)[2] == "not configured"
    assert not (tmp_path / "calls.log").exists()  # systemctl was not asked


def test_an_ml_route_that_fails_is_down_and_none_without_a_url(status, http):
    _, answers = http
    answers["/ml/ping"] = (401, b"")
    code, lines, _ = status()
    assert (code, state(lines["ml"])) == (1, "DOWN") and "401" in lines["ml"]
    code, lines, _ = status(ml_url="")
    assert code == 0 and "none" in lines["ml"]


def test_the_ml_ping_goes_out_from_the_server_containers_network(status, http, tmp_path):
    code, lines, _ = status({"FAKE_DOCKER": "4242"}, ml_from_container="immich_server")
    assert (code, state(lines["ml"])) == (0, "ok"), lines["ml"]
    calls = (tmp_path / "calls.log").read_text()
    assert "inspect --format {{.State.Pid}} immich_server" in calls and "nsenter --target=4242 --net" in calls
    _, answers = http
    answers["/ml/ping"] = (403, b"Forbidden")
    code, lines, _ = status({"FAKE_DOCKER": "4242"}, ml_from_container="immich_server")
    assert (code, state(lines["ml"])) == (1, "DOWN") and "403" in lines["ml"]
    code, lines, _ = status({}, ml_from_container="immich_server")  # the server container is not running
    assert (code, state(lines["ml"])) == (1, "DOWN") and "not running" in lines["ml"]


def test_the_local_ml_container_is_asked_of_dockerd(status):
    local = {"ml_url": "http://immich-machine-learning:3003", "ml_local_container": "immich_machine_learning"}
    code, lines, _ = status({"FAKE_DOCKER": "running"}, **local)
    assert (code, state(lines["ml"])) == (0, "ok")
    code, lines, _ = status({"FAKE_DOCKER": "restarting"}, **local)
    assert (code, state(lines["ml"])) == (1, "DOWN")
    code, lines, _ = status({}, **local)
    assert (code, state(lines["ml"])) == (1, "DOWN")


@pytest.mark.parametrize("changes", [{"upload_location": ""}, {"mount_where": "relative"}, {"server_url": 5},
                                     {"ml_url": "file:///etc/passwd"}, {"extra": "x"}])
def test_a_bad_configuration_exits_2_with_a_message(status, changes):
    code, lines, stderr = status(**changes)
    assert code == 2 and not lines
    assert "selfhost-immich-status:" in stderr


def router_state(tmp_path: Path, **fields) -> str:
    import time

    now = time.time()
    state = {"mode": "idle", "since": now - 3600, "observed_at": now - 20, "backlog": 3, "pending": [],
             "immich_error": "", **fields}
    path = tmp_path / "ml-router.json"
    path.write_text(json.dumps(state))
    return str(path)


def test_no_router_line_without_the_router(status):
    _, lines, _ = status()
    assert "router" not in lines


def test_the_router_line_reports_mode_and_backlog(status, tmp_path):
    code, lines, _ = status(ml_router_state=router_state(tmp_path, mode="burst", backlog=312))
    assert (code, state(lines["router"])) == (0, "ok"), lines["router"]
    assert "burst since " in lines["router"] and "backlog 312 ML jobs" in lines["router"]
    assert "decided 20 s ago" in lines["router"]


@pytest.mark.parametrize(("fields", "detail"), [
    ({"observed_at": None}, "last decision never"),
    ({"observed_at": 1}, "last decision"),
    ({"immich_error": "immich: GET /api/queues -> HTTP 401"}, "its API key: immich: GET /api/queues -> HTTP 401"),
])
def test_a_router_that_stopped_deciding_or_whose_key_fails_is_down(status, tmp_path, fields, detail):
    code, lines, _ = status(ml_router_state=router_state(tmp_path, **fields))
    assert (code, state(lines["router"])) == (1, "DOWN") and detail in lines["router"], lines["router"]


def test_immich_down_at_the_routers_last_decision_is_shown_not_counted(status, tmp_path):
    """The stack line reports Immich; right after Immich comes back the router's state is up to a minute old."""
    error = "immich: GET /api/queues: [Errno 111] Connection refused"
    code, lines, _ = status(ml_router_state=router_state(tmp_path, immich_error=error))
    assert (code, state(lines["router"])) == (0, "ok"), lines["router"]
    assert f"Immich unreachable at its last decision: {error}" in lines["router"]


def test_a_router_without_state_is_down(status, tmp_path):
    code, lines, _ = status(ml_router_state=str(tmp_path / "none.json"))
    assert (code, state(lines["router"])) == (1, "DOWN") and "no decision yet" in lines["router"]
