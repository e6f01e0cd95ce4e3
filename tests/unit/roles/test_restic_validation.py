"""The restic role refuses bad input before it touches a host.

Each case runs the real role with ansible-playbook against localhost in check mode, limited to the
argument-spec validation (always runs) and the role's own checks (tag restic_validate), and asserts on
the message a user would read.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
PLAYBOOK = """\
- name: Validate the restic role's input
  hosts: localhost
  gather_facts: false
  roles:
    - role: selfhost.immich.restic
"""
SENTINEL_PASSWORD = "sentinel-restic-pass-4b1d"
VALID = {"restic_password": SENTINEL_PASSWORD}


def run_role(tmp_path: Path, variables: dict) -> subprocess.CompletedProcess:
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    (tmp_path / "vars.json").write_text(json.dumps(variables))
    env = {
        **os.environ,
        "ANSIBLE_COLLECTIONS_PATH": str(REPO / ".collections"),
        "ANSIBLE_CONFIG": str(tmp_path / "none.cfg"),  # not the repo's ansible.cfg (lab inventory)
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_LOCALHOST_WARNING": "0",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0",
    }
    cmd = [
        str(Path(sys.executable).with_name("ansible-playbook")),
        "-i", "localhost,",
        "-c", "local",
        "-e", f"ansible_python_interpreter={sys.executable}",
        "-e", f"@{tmp_path / 'vars.json'}",
        "--check",
        "--tags", "restic_validate",
        str(tmp_path / "play.yml"),
    ]
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def test_valid_input_passes(tmp_path):
    result = run_role(tmp_path, VALID)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "failed=0" in result.stdout
    assert SENTINEL_PASSWORD not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("override", "message"),
    [
        pytest.param({"restic_password": None}, "missing required arguments: restic_password", id="no-password"),
        pytest.param({"restic_password": "short"}, "at least 12 characters", id="short-password"),
        pytest.param({"restic_version": "0.16.4"}, "0.17.0 or newer", id="too-old"),
        pytest.param({"restic_version": "v0.19.1"}, "without a leading v", id="leading-v"),
        pytest.param({"restic_gpg_fingerprint": "91A6868BD3F7A907"}, "40-hex-digit", id="short-key-id"),
        pytest.param({"restic_release_sha256": {"arm64": "abc"}}, "64-hex-digit", id="bad-digest"),
        pytest.param({"restic_release_sha256": {"riscv64": "a" * 64}}, "arm64/amd64", id="unknown-arch-digest"),
        pytest.param({"restic_ssh_alias": "u123456@u123456.your-storagebox.de"}, "no user@", id="user-at-host"),
        pytest.param({"restic_repository_path": "23/restic"}, "'23/restic' means a folder", id="port-in-path"),
        pytest.param({"restic_repository_path": "host:restic"}, "without ':' or '@'", id="colon-in-path"),
        pytest.param({"restic_backup_paths": ["opt/immich/.env"]}, "take absolute paths", id="relative-path"),
        pytest.param({"restic_backup_paths": ["/"]}, "take absolute paths", id="root-path"),
        pytest.param({"restic_dump_command": []}, "restic_dump_command is an argv list", id="empty-dump"),
        pytest.param(
            {"restic_keep_daily": 0, "restic_keep_weekly": 0, "restic_keep_monthly": 0, "restic_keep_yearly": 0},
            "at least one above 0",
            id="no-retention",
        ),
        pytest.param({"restic_keep_daily": "seven"}, "restic_keep_daily", id="keep-not-int"),
        pytest.param({"restic_check_read_data_subset": "all"}, "is not n/t, x% or a size", id="bad-subset"),
        pytest.param({"restic_ping_url": "hc-ping.com/uuid"}, "empty or http(s) URLs", id="ping-no-scheme"),
        pytest.param({"restic_backup_randomized_delay": "soon"}, "a time span", id="bad-delay"),
        pytest.param(
            {"restic_storagebox_api_token": "sentinel-token"},
            "restic_storagebox_id must be the box's ID",
            id="token-without-id",
        ),
    ],
)
def test_bad_input_fails_with_a_clear_message(tmp_path, override, message):
    variables = {**VALID, **override}
    variables = {k: v for k, v in variables.items() if v is not None}
    result = run_role(tmp_path, variables)
    assert result.returncode != 0
    # Ansible folds long messages; compare whitespace-insensitively.
    assert " ".join(message.split()) in " ".join(result.stdout.split()), result.stdout
    assert SENTINEL_PASSWORD not in result.stdout + result.stderr
