"""The sshfs_storagebox role sets the Storage Box's ZFS snapshot plan through the Hetzner fake, from the controller.

The role's real API tasks (tasks_from api; with no other API feature switched on, only the plan runs) run with
ansible-playbook against localhost; the fake validates every request against Hetzner's published spec.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from ansible_collections.selfhost.immich.tests.fakes.hetzner_api import HetznerFake
from ansible_collections.selfhost.immich.tests.fakes.network import non_loopback_address

REPO = Path(__file__).resolve().parents[2]
TOKEN = "Box-Snapshot-Token-Secret-0042"
PLAY = """\
- name: Set the snapshot plan as the sshfs_storagebox role does
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Run the role's API tasks
      ansible.builtin.include_role:
        name: selfhost.immich.sshfs_storagebox
        tasks_from: api
"""


@pytest.fixture
def fake():
    with HetznerFake({"storage_boxes": [{"id": 1, "name": "photos"}]}, token=TOKEN) as running:
        yield running
        assert running.violations == [], "requests the real API would refuse"
        assert running.response_problems == [], "answers of the fake that break the spec"


def converge(tmp_path: Path, fake: HetznerFake, variables: dict) -> subprocess.CompletedProcess:
    (tmp_path / "play.yml").write_text(PLAY)
    (tmp_path / "vars.json").write_text(json.dumps(variables))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "HETZNER_", "HCLOUD_"))}
    env.update(ANSIBLE_COLLECTIONS_PATH=str(REPO / ".collections"), ANSIBLE_CONFIG=str(tmp_path / "none.cfg"),
               ANSIBLE_NOCOLOR="1", ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_INVENTORY_UNPARSED_WARNING="0")
    return subprocess.run(
        [str(Path(sys.executable).with_name("ansible-playbook")), "-i", "localhost,", "-c", "local",
         "-e", f"ansible_python_interpreter={sys.executable}", "-e", f"@{tmp_path / 'vars.json'}",
         str(tmp_path / "play.yml")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180, check=False,
    )


def test_the_plan_is_set_once_and_the_token_never_shown(tmp_path, fake):
    variables = {"sshfs_storagebox_api_token": TOKEN, "sshfs_storagebox_api_url": fake.url,
                 "sshfs_storagebox_id": 1,
                 "sshfs_storagebox_snapshot_plan": {"max_snapshots": 10, "hour": 1, "minute": 30}}
    first = converge(tmp_path, fake, variables)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "changed=1" in first.stdout
    assert fake.boxes[1]["snapshot_plan"] == {"max_snapshots": 10, "hour": 1, "minute": 30,
                                              "day_of_week": None, "day_of_month": None}
    fake.clear_log()
    second = converge(tmp_path, fake, variables)
    assert second.returncode == 0 and "changed=0" in second.stdout
    assert fake.writes == []
    assert TOKEN not in first.stdout + first.stderr + second.stdout + second.stderr


@pytest.mark.parametrize("variables", [
    {"sshfs_storagebox_id": 1},  # no token
    {"sshfs_storagebox_id": 1, "sshfs_storagebox_api_token": TOKEN, "sshfs_storagebox_snapshot_plan": {}},  # opt-out
], ids=["no-token", "empty-plan"])
def test_without_a_token_or_a_plan_nothing_is_called(tmp_path, fake, variables):
    result = converge(tmp_path, fake, {**variables, "sshfs_storagebox_api_url": fake.url})
    assert result.returncode == 0, result.stdout + result.stderr
    assert fake.log == []


def own_address() -> str:
    """This machine's address on its default route (not loopback), or skip."""
    address = non_loopback_address()
    if address is None:
        pytest.skip("no non-loopback address on this machine")
    return address


def test_plain_http_to_another_host_needs_the_lab_switch(tmp_path):
    address = own_address()
    with HetznerFake({"storage_boxes": [{"id": 1, "name": "photos"}]}, token=TOKEN, host="0.0.0.0") as remote:
        variables = {"sshfs_storagebox_api_token": TOKEN, "sshfs_storagebox_id": 1,
                     "sshfs_storagebox_api_url": f"http://{address}:{remote.port}{remote.prefix}",
                     "sshfs_storagebox_snapshot_plan": {"max_snapshots": 10, "hour": 1, "minute": 30}}
        refused = converge(tmp_path, remote, variables)
        assert refused.returncode != 0
        assert "api_allow_http" in refused.stdout and remote.log == []
        allowed = converge(tmp_path, remote, {**variables, "sshfs_storagebox_api_allow_http": True})
        assert allowed.returncode == 0, allowed.stdout + allowed.stderr
        assert remote.boxes[1]["snapshot_plan"]["max_snapshots"] == 10
        assert TOKEN not in refused.stdout + refused.stderr + allowed.stdout + allowed.stderr
        assert remote.violations == []
