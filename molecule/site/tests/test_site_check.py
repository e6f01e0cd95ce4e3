"""`site.yml --check` on a bare host (the scenario's `check` step) resolved every variable and wrote nothing."""

import os
from pathlib import Path

import pytest
import requests

LAB_DIR = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "lab"
LOG = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "ansible.log"
FAKE = "http://127.0.0.1:18090"
# Every server role of playbooks/site.yml: each must have run tasks in the check run.
ROLES = ["docker", "traefik", "sshfs_storagebox", "runpod_endpoint", "immich", "restic"]


@pytest.fixture(scope="module")
def check_log() -> str:
    text = LOG.read_text()
    start = text.rfind("PLAY [Immich server]")
    assert start >= 0, "the check run of playbooks/site.yml is not in the Ansible log"
    return text[start:]


@pytest.mark.parametrize("role", ROLES)
def test_every_role_ran_in_check_mode(check_log, role):
    assert f"TASK [selfhost.immich.{role} : " in check_log, f"no task of {role} ran in the check run"


def test_no_undefined_variable_and_no_failure(check_log):
    assert "is undefined" not in check_log
    assert "failed=0" in check_log.splitlines()[-1] or "failed=0" in check_log


def test_nothing_written_to_the_host(host):
    for path in ["/etc/traefik", "/etc/docker/daemon.json", "/usr/local/sbin/storagebox-mount-guard",
                 "/etc/ssh/ssh_config.d/60-selfhost-storagebox.conf", "/etc/systemd/system/mnt-storagebox.mount"]:
        assert not host.file(path).exists, f"check mode wrote {path}"
    assert not host.exists("dockerd")


def test_nothing_written_to_runpod():
    log = requests.get(f"{FAKE}/_fake/log", timeout=10).json()
    assert log, "the check run made no RunPod call: the role's API part did not run"
    assert [e for e in log if e["method"] != "GET"] == []
    assert requests.get(f"{FAKE}/_fake/violations", timeout=10).json() == []


def test_runpod_key_not_in_output(check_log):
    key = (LAB_DIR / "runpod-key").read_text().strip()
    assert key and key not in LOG.read_text()
