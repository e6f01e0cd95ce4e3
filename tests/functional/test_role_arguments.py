"""Bad role variables fail at argument validation, naming the variable, before any task touches a host.

Each case runs the real role through ansible-playbook against localhost in check mode; argument
validation (meta/argument_specs.yml) is the role's first task, so a bad value stops the play there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

CASES = [
    ("docker", {"docker_install_source": "foo"}, ["docker_install_source", "foo", "official, distro"]),
    ("docker", {"docker_daemon_options": ["log-driver", "local"]}, ["docker_daemon_options", "dict"]),
    ("docker", {"docker_daemon_options": "local"}, ["docker_daemon_options", "dict"]),
    ("docker", {"docker_service_state": "running"}, ["docker_service_state", "running", "started, stopped"]),
]


def run_role(role: str, role_vars: dict, tmp_path: Path) -> subprocess.CompletedProcess:
    playbook = tmp_path / "play.yml"
    playbook.write_text(
        "- hosts: localhost\n  gather_facts: false\n  connection: local\n"
        f"  roles:\n    - role: selfhost.immich.{role}\n"
    )
    extra = tmp_path / "vars.json"
    extra.write_text(json.dumps(role_vars))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(REPO / ".collections"), ANSIBLE_NOCOLOR="1")
    return subprocess.run(
        [str(BIN / "ansible-playbook"), "--check", "-i", "localhost,", "-e", f"@{extra}", str(playbook)],
        cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300,
    )


IDS = [f"{role}-{next(iter(role_vars))}-{i}" for i, (role, role_vars, _) in enumerate(CASES)]


@pytest.mark.parametrize(("role", "role_vars", "expected"), CASES, ids=IDS)
def test_bad_variable_is_rejected_by_argument_validation(role, role_vars, expected, tmp_path):
    result = run_role(role, role_vars, tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Validating arguments against arg spec" in output
    failing = output[output.index("Validating arguments against arg spec"):]
    for fragment in expected:
        assert fragment in failing, f"{fragment!r} missing from:\n{failing}"
    # Nothing after validation ran: the first real task of the role never started.
    assert "TASK [selfhost.immich.docker : Check that the host runs" not in output
