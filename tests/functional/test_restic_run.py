"""The restic role's job runner (roles/restic/files/restic-run) exits with the exact outcome, and its wrapper
(roles/restic/templates/selfhost-restic.j2) reads restic.env as data, never as shell.

A fake `restic` records its calls and exits with the code the test gives per subcommand; a local HTTP
server records the pings. The runner and the wrapper are executed as they are on the host (their own process),
the runner with a run.json naming the fake, the wrapper rendered with the fake's and the env file's paths.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar
from ansible_collections.selfhost.immich.tests.fakes.network import http_server
from ansible_collections.selfhost.immich.tests.unit.utils.role_files import trust_as_template

REPO = Path(__file__).resolve().parents[2]
RUNNER = REPO / "roles" / "restic" / "files" / "restic-run"
WRAPPER = REPO / "roles" / "restic" / "templates" / "selfhost-restic.j2"
TRAILER = "--\\n-- PostgreSQL database dump complete\\n--\\n"
FAKE_RESTIC = """#!/bin/sh
echo "$*" >> "$FAKE_LOG"
eval "code=\\${FAKE_RC_$1:-0}"
exit "$code"
"""


@pytest.fixture
def pinged():
    paths: list[str] = []

    def record(path: str) -> tuple[int, bytes]:
        paths.append(path)
        return 200, b""

    with http_server(record) as url:
        yield f"{url}/ping/x", paths


def run(tmp_path: Path, job: str, ping_url: str, codes: dict[str, int] | None = None,
        dump: str = f"printf 'CREATE TABLE a();\\n{TRAILER}'") -> tuple[int, list[str]]:
    fake = tmp_path / "restic"
    fake.write_text(FAKE_RESTIC)
    fake.chmod(0o755)
    config = {
        "restic": str(fake),
        "staging_dir": str(tmp_path / "staging"),
        "dump_enabled": True,
        "dump_command": ["sh", "-c", dump],
        "dump_timeout": 30,
        "paths": [str(tmp_path / "staging"), "/etc/hostname"],
        "keep": {"daily": 7, "weekly": 0, "monthly": 12, "yearly": 0},
        "check_read_data_subset": "5%",
        "ping_url": ping_url,
        "check_ping_url": ping_url,
    }
    (tmp_path / "run.json").write_text(json.dumps(config))
    env = {
        **os.environ,
        "FAKE_LOG": str(tmp_path / "calls.log"),
        **{f"FAKE_RC_{name}": str(code) for name, code in (codes or {}).items()},
    }
    result = subprocess.run([sys.executable, str(RUNNER), job, str(tmp_path / "run.json")], env=env,
                            capture_output=True, text=True, timeout=60)
    log = tmp_path / "calls.log"
    return result.returncode, log.read_text().splitlines() if log.exists() else []


def test_a_good_backup_dumps_backs_up_and_forgets(tmp_path, pinged):
    url, paths = pinged
    code, calls = run(tmp_path, "backup", url)
    assert code == 0
    assert [call.split()[0] for call in calls] == ["unlock", "backup", "forget"]
    assert calls[2] == "forget --prune --keep-daily=7 --keep-monthly=12"
    dump = tmp_path / "staging" / "immich-database.sql.gz"
    assert gzip.decompress(dump.read_bytes()).startswith(b"CREATE TABLE a();")
    assert oct(dump.stat().st_mode & 0o777) == "0o600"
    assert paths == ["/ping/x/start", "/ping/x/0"]


@pytest.mark.parametrize(
    ("codes", "expected", "ran"),
    [
        pytest.param({"backup": 3}, 3, ["unlock", "backup"], id="unreadable-source-3"),
        pytest.param({"forget": 11}, 11, ["unlock", "backup", "forget"], id="lock-failed-11"),
        pytest.param({"unlock": 12}, 12, ["unlock"], id="wrong-password-12"),
        pytest.param({"unlock": 10}, 10, ["unlock"], id="no-repository-10"),
        pytest.param({"backup": 130}, 130, ["unlock", "backup"], id="interrupted-130"),
    ],
)
def test_every_restic_failure_is_the_exit_code_and_the_ping(tmp_path, pinged, codes, expected, ran):
    url, paths = pinged
    code, calls = run(tmp_path, "backup", url, codes)
    assert code == expected
    assert [call.split()[0] for call in calls] == ran
    assert paths == ["/ping/x/start", f"/ping/x/{expected}"]


@pytest.mark.parametrize(
    "dump",
    [
        pytest.param("echo 'partial'; exit 1", id="dump-exits-1"),
        pytest.param("echo 'CREATE TABLE a();'", id="dump-cut-short"),
        pytest.param("exec /nonexistent/pg_dump", id="dump-missing"),
    ],
)
def test_a_failed_dump_never_reaches_backup(tmp_path, pinged, dump):
    url, paths = pinged
    staging = tmp_path / "staging"
    staging.mkdir()
    (staging / "immich-database.sql.gz").write_bytes(b"yesterday")
    code, calls = run(tmp_path, "backup", url, dump=dump)
    assert code == 20
    assert [call.split()[0] for call in calls] == ["unlock"]
    assert list(staging.iterdir()) == []  # neither yesterday's dump nor a partial one is left to back up
    assert paths == ["/ping/x/start", "/ping/x/20"]


def test_the_check_reads_the_subset_and_reports_failure(tmp_path, pinged):
    url, paths = pinged
    code, calls = run(tmp_path, "check", url, {"check": 1})
    assert code == 1
    assert calls == ["unlock", "check --read-data-subset=5%"]
    assert paths == ["/ping/x/start", "/ping/x/1"]


def test_an_unreachable_monitor_does_not_change_the_outcome(tmp_path):
    code, _ = run(tmp_path, "backup", "http://127.0.0.1:9/ping/x")
    assert code == 0
    code, _ = run(tmp_path, "backup", "http://127.0.0.1:9/ping/x", {"backup": 3})
    assert code == 3


# --- the selfhost-restic wrapper (used by the role's probe and init, restore.yml and by hand)
FAKE_RESTIC_ENV = """#!/bin/sh
printf '%s\\n' "$*" "$RESTIC_REPOSITORY" "$RESTIC_PASSWORD_FILE" "$RESTIC_CACHE_DIR" > "$FAKE_LOG"
"""
GOOD_ENV = (
    "# Managed by selfhost.immich\n"
    "RESTIC_REPOSITORY=sftp:selfhost-storagebox:backups/restic\n"
    "RESTIC_PASSWORD_FILE=/etc/selfhost-restic/password\n"
    "RESTIC_CACHE_DIR=/var/cache/selfhost-restic\n"
)


def wrap(tmp_path: Path, env_text: str, *args: str) -> tuple[subprocess.CompletedProcess, list[str] | None]:
    fake = tmp_path / "restic"
    fake.write_text(FAKE_RESTIC_ENV)
    fake.chmod(0o755)
    (tmp_path / "restic.env").write_text(env_text)
    templar = Templar(loader=DataLoader(), variables={"restic_env_file": str(tmp_path / "restic.env"),
                                                      "restic_binary": str(fake)})
    wrapper = tmp_path / "selfhost-restic"
    wrapper.write_text(templar.template(trust_as_template(WRAPPER.read_text())))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("RESTIC_")},
        "FAKE_LOG": str(tmp_path / "calls.log"),
    }
    result = subprocess.run(["bash", str(wrapper), *args], env=env, capture_output=True, text=True, timeout=30,
                            cwd=tmp_path)
    log = tmp_path / "calls.log"
    return result, log.read_text().splitlines() if log.exists() else None


def test_the_wrapper_hands_restic_the_environment_and_the_arguments(tmp_path):
    result, seen = wrap(tmp_path, GOOD_ENV, "snapshots", "--json", "$(id)")
    assert result.returncode == 0, result.stderr
    assert seen == ["snapshots --json $(id)", "sftp:selfhost-storagebox:backups/restic",
                    "/etc/selfhost-restic/password", "/var/cache/selfhost-restic"]


@pytest.mark.parametrize(
    "line",
    [
        pytest.param("RESTIC_REPOSITORY=sftp:box:$(touch {marker})", id="command-substitution"),
        pytest.param("RESTIC_REPOSITORY=sftp:box:`touch {marker}`", id="backticks"),
        pytest.param("RESTIC_CACHE_DIR=/tmp; touch {marker}", id="semicolon"),
        pytest.param('RESTIC_REPOSITORY="sftp:box:r" && touch {marker}', id="quotes-and-and"),
        pytest.param("touch {marker}", id="bare-command"),
        pytest.param("BASH_ENV={marker}", id="unknown-key"),
        pytest.param("RESTIC_REPOSITORY=sftp:box:${{IFS}}x", id="parameter-expansion"),
    ],
)
def test_the_wrapper_never_runs_the_env_file_as_shell(tmp_path, line):
    marker = tmp_path / "pwned"
    result, seen = wrap(tmp_path, GOOD_ENV + line.format(marker=marker) + "\n", "snapshots")
    assert not marker.exists(), "a line of restic.env was executed"
    assert seen is None, "restic ran with an environment file it should have refused"
    assert result.returncode == 2
    assert "restic.env line 5 is not RESTIC_REPOSITORY" in result.stderr
