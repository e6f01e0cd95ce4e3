"""playbooks/restore.yml refuses bad input before it runs anything, and passes good input on to restic.

The real playbook runs with ansible-playbook in check mode against localhost; `restore_wrapper` points at a fake
selfhost-restic that records its arguments and lists one snapshot. A refused run must stop at its checks: the fake
is never called. The restore itself (files, dump replayed into PostgreSQL) is proven by molecule/restic.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = REPO / "playbooks" / "restore.yml"
FAKE_WRAPPER = """#!/bin/sh
printf '%s\\n' "$*" >> "{log}"
echo '[{{"id": "abcdef1234567890", "short_id": "abcdef12"}}]'
"""


def restore(tmp_path: Path, variables: dict) -> tuple[subprocess.CompletedProcess, list[str]]:
    wrapper, log = tmp_path / "selfhost-restic", tmp_path / "wrapper.log"
    wrapper.write_text(FAKE_WRAPPER.format(log=log))
    wrapper.chmod(0o755)
    (tmp_path / "target").mkdir(exist_ok=True)
    extra = {"restore_hosts": "localhost", "ansible_become": False, "ansible_python_interpreter": sys.executable,
             "restore_wrapper": str(wrapper), "restore_target": str(tmp_path / "target"), **variables}
    (tmp_path / "vars.json").write_text(json.dumps(extra))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(ANSIBLE_COLLECTIONS_PATH=str(REPO / ".collections"), ANSIBLE_CONFIG=str(tmp_path / "none.cfg"),
               ANSIBLE_NOCOLOR="1", ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_INVENTORY_UNPARSED_WARNING="0")
    result = subprocess.run(
        [str(Path(sys.executable).with_name("ansible-playbook")), "-i", "localhost,", "-c", "local", "--check",
         "-e", f"@{tmp_path / 'vars.json'}", str(PLAYBOOK)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180, check=False,
    )
    return result, log.read_text().splitlines() if log.exists() else []


def test_good_input_reaches_restic_with_the_snapshot_as_one_argument(tmp_path):
    result, calls = restore(tmp_path, {"restore_snapshot": "abcdef12"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    assert calls == ["snapshots --json --no-lock abcdef12"]
    assert "Restore snapshot abcdef12" in result.stdout


# case -> (extra variables, text the failure must contain)
BAD = {
    "snapshot-newline": ({"restore_snapshot": "abcdef12\n"}, "restore_snapshot is 'latest' or a snapshot ID"),
    "snapshot-injection": ({"restore_snapshot": "latest; rm -rf /"}, "restore_snapshot is 'latest' or a snapshot ID"),
    "db-name-injection": ({"restore_db_name": "immich; DROP DATABASE immich"}, "restore_db_name and restore_db_user"),
    "db-user-newline": ({"restore_db_user": "postgres\n"}, "restore_db_name and restore_db_user"),
    "db-container-substitution": ({"restore_db_container": "$(touch /tmp/pwned)"}, "restore_db_container"),
    "compose-project-space": ({"restore_compose_project": "immich --file /tmp/x"}, "restore_compose_project"),
    "psql-shell-string": ({"restore_psql_command": "psql --dbname=immich; touch /tmp/pwned"},
                          "restore_psql_command must be a non-empty argv list"),
    "start-shell-string": ({"restore_db_start_command": "docker compose up -d database"},
                           "restore_db_start_command an argv list"),
    "target-relative": ({"restore_target": "root/restore"}, "restore_target must be empty or an absolute path"),
    "target-dot-dot": ({"restore_target": "/root/../etc"}, "restore_target must be empty or an absolute path"),
    "stack-unit-newline": ({"restore_stack_unit": "immich.service\n"}, "restore_stack_unit"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_refused_before_anything_runs(tmp_path, case):
    variables, expected = BAD[case]
    result, calls = restore(tmp_path, variables)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert expected in " ".join(output.split()), output[-3000:]
    assert calls == [], "the wrapper ran although the input was refused"
    assert "TASK [Find the snapshot]" not in output


def test_the_replay_pipe_hands_values_to_psql_as_arguments_never_as_shell(tmp_path):
    """The playbook's own replay script (restore_replay_script) with a fake psql: the dump is decompressed, the
    search_path line rewritten, and every argument arrives literally - `$(...)` in one runs nothing."""
    script = yaml.safe_load(PLAYBOOK.read_text())[0]["vars"]["restore_replay_script"]
    dump = tmp_path / "dump dir" / "immich-database.sql.gz"
    dump.parent.mkdir()
    dump.write_bytes(gzip.compress(b"SELECT pg_catalog.set_config('search_path', '', false);\nCREATE TABLE a();\n"))
    psql = tmp_path / "psql"
    psql.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$ARGS_LOG"; cat > "$SQL_LOG"\n')
    psql.chmod(0o755)
    marker = tmp_path / "pwned"
    env = {**os.environ, "ARGS_LOG": str(tmp_path / "args"), "SQL_LOG": str(tmp_path / "sql")}
    result = subprocess.run(["/bin/bash", "-c", script, "restore-replay", str(dump), str(psql),
                             f"--dbname=$(touch {marker})", "--username=postgres; touch " + str(marker)],
                            env=env, capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    assert not marker.exists()
    assert (tmp_path / "args").read_text().splitlines() == [
        f"--dbname=$(touch {marker})", f"--username=postgres; touch {marker}",
        "--single-transaction", "--set", "ON_ERROR_STOP=on", "--quiet"]
    assert (tmp_path / "sql").read_text() == (
        "SELECT pg_catalog.set_config('search_path', 'public, pg_catalog', true);\nCREATE TABLE a();\n")


def test_a_failing_psql_fails_the_replay(tmp_path):
    script = yaml.safe_load(PLAYBOOK.read_text())[0]["vars"]["restore_replay_script"]
    dump = tmp_path / "dump.sql.gz"
    dump.write_bytes(gzip.compress(b"CREATE TABLE a();\n"))
    failing_psql = ["sh", "-c", "cat >/dev/null; exit 3"]
    result = subprocess.run(["/bin/bash", "-c", script, "restore-replay", str(dump), *failing_psql],
                            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 3
