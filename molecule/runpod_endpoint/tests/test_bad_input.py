"""Bad input fails with a clear message before anything is written to RunPod, and without echoing the key.

Each case runs the real role with ansible-playbook on the controller against the scenario's fake RunPod API
(which has the converged endpoint in it), and compares the fake's write log before and after.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from runpod_lab import LAB_DIR

testinfra_hosts = ["ansible://all"]

PLAY = """
- name: Apply the role with bad input
  hosts: localhost
  connection: local
  gather_facts: false
  vars:
    ansible_python_interpreter: "{{ ansible_playbook_python }}"
  roles:
    - role: selfhost.immich.runpod_endpoint
"""

CASES = {
    "unknown-gpu-pool": ({"runpod_endpoint_gpu_pools": ["AMPERE_48", "HOPPER_999"]},
                         ["unknown GPU pool(s) HOPPER_999", "valid pools: ", "AMPERE_48"]),
    "lower-case-gpu-pool": ({"runpod_endpoint_gpu_pools": ["ampere_48"]}, ["runpod_endpoint_gpu_pools", "AMPERE_48"]),
    "workers-min-above-max": ({"runpod_endpoint_workers_min": 3, "runpod_endpoint_workers_max": 2},
                              ["runpod_endpoint_workers_min (3) must not exceed runpod_endpoint_workers_max (2)"]),
    "missing-key": ({"runpod_endpoint_api_key": None}, ["missing required arguments: runpod_endpoint_api_key"]),
    "empty-key": ({"runpod_endpoint_api_key": ""}, ["runpod_endpoint_api_key is empty or malformed"]),
    "wildcard-gateway": ({"runpod_endpoint_gateway_address": "0.0.0.0"}, ["never 0.0.0.0 or loopback"]),
    "plain-http-without-the-lab-switch": ({"runpod_endpoint_api_allow_http": False},
                                          ["unless runpod_endpoint_api_allow_http is true"]),
}


def test_platform_architecture(host, expected_arch):
    assert host.system_info.arch == expected_arch


@pytest.mark.parametrize("case", CASES)
def test_bad_input_fails_clearly_before_any_write(case, fake_runpod, lab_key, tmp_path):
    overrides, expected = CASES[case]
    role_vars = {"runpod_endpoint_api_key": lab_key, "runpod_endpoint_api_url": fake_runpod.url,
                 "runpod_endpoint_api_allow_http": True}
    role_vars.update(overrides)
    role_vars = {k: v for k, v in role_vars.items() if v is not None}
    (tmp_path / "play.yml").write_text(PLAY)
    (tmp_path / "vars.json").write_text(json.dumps(role_vars))
    writes_before = len(fake_runpod.writes())

    result = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "-e", f"@{tmp_path / 'vars.json'}",
         str(tmp_path / "play.yml")],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env=dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_LOG_PATH=str(LAB_DIR / f"bad-input-{case}.log")),
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    for fragment in expected:
        assert fragment in output, f"{fragment!r} missing from:\n{output}"
    assert len(fake_runpod.writes()) == writes_before, "something was written to RunPod"
    assert lab_key not in output
    assert "Ensure the Immich machine-learning template" not in output  # stopped before the first write
