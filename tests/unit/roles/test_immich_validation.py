"""The immich role refuses bad input before it touches a host.

Each case runs the real role with ansible-playbook against localhost in check mode, limited to the
argument-spec validation (always runs) and the role's own input checks (tag immich_validate), and asserts
on the message a user would read. The host-side refusals (thumbs on the box mount, a downgrade) need a
host: molecule/immich proves them.
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
- name: Validate the immich role's input
  hosts: localhost
  gather_facts: false
  roles:
    - role: selfhost.immich.immich
"""
VALID = {"immich_domain": "photos.example.org"}
SENTINEL = "SentinelDbPassword0123456789"


def run_role(tmp_path: Path, variables: dict) -> subprocess.CompletedProcess:
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    (tmp_path / "vars.json").write_text(json.dumps(variables))
    env = {
        **os.environ,
        "ANSIBLE_COLLECTIONS_PATH": str(REPO / ".collections"),
        "ANSIBLE_CONFIG": str(tmp_path / "none.cfg"),
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
        "--tags", "immich_validate",
        str(tmp_path / "play.yml"),
    ]  # fmt: skip
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def test_valid_input_passes(tmp_path):
    result = run_role(
        tmp_path,
        {
            **VALID,
            "immich_db_password": SENTINEL,
            "immich_config_overrides": {"machineLearning": {"clip": {"modelName": "ViT-B-16__openai"}},
                                        "oauth": {"enabled": False}, "ffmpeg": {"acceptedVideoCodecs": ["h264"]}},
        },
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "failed=0" in result.stdout
    assert SENTINEL not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("override", "message"),
    [
        pytest.param({"immich_domain": None}, "missing required arguments: immich_domain", id="no-domain"),
        pytest.param({"immich_domain": "https://photos.example.org/"}, "is not a fully qualified", id="url-domain"),
        pytest.param({"immich_version": "v2.7.5"}, "is not supported: give an Immich v3 release tag", id="v2"),
        pytest.param({"immich_version": "release"}, "is not supported", id="floating-tag"),
        pytest.param({"immich_version": "3.3.1"}, "is not supported", id="no-leading-v"),
        pytest.param(
            {"immich_db_password": "Pass-word$1"}, "may only contain A-Z, a-z and 0-9", id="db-password-chars"
        ),
        pytest.param(
            {"immich_thumbs_location": "/mnt/storagebox/immich/thumbs"},
            "immich_thumbs_location '/mnt/storagebox/immich/thumbs' is inside immich_upload_location",
            id="thumbs-on-box",
        ),
        pytest.param(
            {"immich_db_data_location": "/mnt/storagebox/immich/postgres"},
            "immich_db_data_location '/mnt/storagebox/immich/postgres' is inside",
            id="db-on-box",
        ),
        pytest.param(
            {"immich_config_overrides": {"machineLearning": {"clip": {"modelname": "ViT-B-16__openai"}}}},
            "Immich does not know: machineLearning.clip.modelname",
            id="misspelt-config-key",
        ),
        pytest.param(
            {"immich_config_overrides": {"machinelearning": {"enabled": False}}},
            "Immich does not know: machinelearning.enabled",
            id="misspelt-section",
        ),
        pytest.param({"immich_server_bind_address": "0.0.0.0"}, "is not a loopback address", id="published-on-all"),
        pytest.param({"immich_pull_policy": "sometimes"}, "value of immich_pull_policy must be one of", id="pull"),
        pytest.param({"immich_admin_email": "admin@example.org"}, "Set both immich_admin_email", id="admin-half"),
        pytest.param({"immich_smtp_enabled": True}, "needs immich_smtp_host and immich_smtp_from", id="smtp"),
    ],
)
def test_bad_input_fails_with_a_clear_message(tmp_path, override, message):
    variables = {k: v for k, v in {**VALID, **override}.items() if v is not None}
    result = run_role(tmp_path, variables)
    assert result.returncode != 0
    assert " ".join(message.split()) in " ".join(result.stdout.split()), result.stdout
