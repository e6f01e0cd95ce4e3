"""The real storagebox modules, run by ansible-playbook against the Hetzner fake (tests/fakes/hetzner_api.py).

Each test asserts what a user relies on (second run changed=0, check mode sends no write, secrets never shown)
and that the fake saw no request the real API would refuse.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from ansible_collections.selfhost.immich.tests.fakes.hetzner_api import HetznerFake

REPO = Path(__file__).resolve().parents[2]
ANSIBLE_PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"
TOKEN = "Integration-Token-Secret-0042"
PASSWORD = "Immich-Photos-2026"
NEW_PASSWORD = "Rotated§Secret-2027"
ORDER_PASSWORD = "Ordered-Box-Secret-77"
SECRETS = (TOKEN, PASSWORD, NEW_PASSWORD, ORDER_PASSWORD)
SEED = {"storage_boxes": [{"id": 1, "name": "photos", "access_settings": {"samba_enabled": True}}]}

BOX = {
    "name": "photos",
    "delete_protection": True,
    "labels": {"app": "immich"},
    "access_settings": {"ssh_enabled": True, "zfs_enabled": True},
    "snapshot_plan": {"max_snapshots": 7, "minute": 15, "hour": 2},
}
SUBACCOUNT = {"storagebox_id": 1, "name": "immich", "home_directory": "immich", "password": PASSWORD,
              "access_settings": {"ssh_enabled": True, "readonly": False}}


@pytest.fixture
def fake():
    with HetznerFake(SEED, token=TOKEN) as running:
        yield running
        assert running.violations == [], "requests the real API would refuse"
        assert running.response_problems == [], "answers of the fake that break the spec"


class Playbook:
    """ansible-playbook with the JSON callback; remembers all output to check for secrets."""

    def __init__(self, tmp_path: Path, fake: HetznerFake) -> None:
        self.tmp_path, self.fake, self.output = tmp_path, fake, ""

    def run(self, module: str, args: dict, *options: str, fails: bool = False) -> tuple[dict, int]:
        """Run one task of ``module``; return (its result, changed count)."""
        playbook = self.tmp_path / "play.yml"
        task = {"name": f"Run {module}", f"selfhost.immich.{module}": args}
        playbook.write_text(json.dumps([{"hosts": "localhost", "gather_facts": False, "tasks": [task]}]))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "HETZNER_", "HCLOUD_"))}
        env.update(ANSIBLE_COLLECTIONS_PATH=str(REPO / ".collections"), ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
                   ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
                   HETZNER_API_URL=self.fake.url, HETZNER_API_TOKEN=TOKEN)
        command = [str(ANSIBLE_PLAYBOOK), "-i", "localhost,", "-c", "local",
                   "-e", f"ansible_python_interpreter={sys.executable}", *options, str(playbook)]
        done = subprocess.run(command, env=env, cwd=self.tmp_path, capture_output=True, text=True, timeout=120)
        self.output += done.stdout + done.stderr
        assert (done.returncode != 0) == fails, done.stdout + done.stderr
        report = json.loads(done.stdout)
        result = report["plays"][0]["tasks"][0]["hosts"]["localhost"]
        return result, report["stats"]["localhost"]["changed"]

    def assert_no_secrets(self) -> None:
        for secret in SECRETS:
            assert secret not in self.output


def test_storagebox_configure_rerun_check_and_diff(tmp_path, fake):
    play = Playbook(tmp_path, fake)
    result, changed = play.run("storagebox", BOX, "--diff")
    assert changed == 1
    box = fake.boxes[1]
    assert box["access_settings"] == {"ssh_enabled": True, "zfs_enabled": True, "samba_enabled": True,
                                      "webdav_enabled": False, "reachable_externally": False}
    assert box["snapshot_plan"] == {"max_snapshots": 7, "minute": 15, "hour": 2, "day_of_week": None,
                                    "day_of_month": None}
    assert box["protection"] == {"delete": True} and box["labels"] == {"app": "immich"}
    assert result["diff"]["before"]["snapshot_plan"] is None

    fake.clear_log()
    _, changed = play.run("storagebox", BOX)
    assert changed == 0
    assert fake.writes == [] and fake.log, "a second run only reads"

    fake.clear_log()
    result, changed = play.run("storagebox", dict(BOX, snapshot_plan={"enabled": False},
                                                  access_settings={"webdav_enabled": True}), "--check", "--diff")
    assert changed == 1
    assert fake.writes == [], "check mode must not write"
    assert result["diff"]["after"]["snapshot_plan"] is None
    assert fake.boxes[1]["snapshot_plan"] is not None
    play.assert_no_secrets()


ORDER = {"name": "archive", "storage_box_type": "BX11", "location": "nbg1", "password": ORDER_PASSWORD,
         "ssh_keys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFunctionalTestKey000000000000000000000000 immich@host"],
         "labels": {"app": "immich"}, "delete_protection": True, "access_settings": {"ssh_enabled": True},
         "snapshot_plan": {"max_snapshots": 7, "minute": 15, "hour": 2}}


def test_storagebox_order_rerun_conflict_and_guarded_delete(tmp_path, fake):
    play = Playbook(tmp_path, fake)
    result, changed = play.run("storagebox", ORDER, "--check", "--diff")
    assert changed == 1 and fake.writes == [], "check mode orders nothing"
    assert [b["name"] for b in fake.boxes.values()] == ["photos"]
    assert result["diff"]["after"]["password"] == "********" and result["storagebox"]["id"] is None

    fake.action_polls = 2  # the order's action keeps running for a while: the module must wait for it
    result, changed = play.run("storagebox", ORDER, "--diff")
    assert changed == 1
    [box] = [b for b in fake.boxes.values() if b["name"] == "archive"]
    assert result["storagebox"]["id"] == box["id"] and result["storagebox"]["status"] == "active"
    assert box["storage_box_type"]["name"] == "bx11" and box["location"]["name"] == "nbg1"
    assert box["protection"] == {"delete": True} and box["labels"] == {"app": "immich"}
    assert box["access_settings"]["ssh_enabled"] is True and box["snapshot_plan"]["hour"] == 2
    assert fake.passwords[("storage_box", box["id"])] == ORDER_PASSWORD
    assert fake.ssh_keys[box["id"]] == ORDER["ssh_keys"]
    assert [e["method"] + " " + e["path"] for e in fake.writes] == [
        "POST /v1/storage_boxes", f"POST /v1/storage_boxes/{box['id']}/actions/change_protection",
        f"POST /v1/storage_boxes/{box['id']}/actions/enable_snapshot_plan"]

    fake.clear_log()
    _, changed = play.run("storagebox", ORDER, "--diff")
    assert changed == 0 and fake.writes == [], "a second run finds the box by name"
    result, _ = play.run("storagebox", dict(ORDER, location="fsn1"), fails=True)
    assert result["msg"].startswith("Storage Box 'archive' (ID ") and "location nbg1, not fsn1" in result["msg"]

    absent = {"name": "archive", "state": "absent", "confirm_name": "archive"}
    result, _ = play.run("storagebox", dict(absent, confirm_name="photos"), fails=True)
    assert result["msg"].startswith("confirm_name must repeat the name of the Storage Box, 'archive'")
    result, _ = play.run("storagebox", absent, fails=True)
    assert "is protected against deletion" in result["msg"]
    assert fake.writes == [] and box["id"] in fake.boxes, "a refused delete changes nothing"

    play.run("storagebox", {"name": "archive", "delete_protection": False})
    _, changed = play.run("storagebox", absent, "--check")
    assert changed == 1 and box["id"] in fake.boxes
    _, changed = play.run("storagebox", absent, "--diff")
    assert changed == 1 and box["id"] not in fake.boxes and 1 in fake.boxes
    _, changed = play.run("storagebox", absent)
    assert changed == 0
    play.assert_no_secrets()


def test_subaccount_lifecycle(tmp_path, fake):
    play = Playbook(tmp_path, fake)
    result, changed = play.run("storagebox_subaccount", SUBACCOUNT, "--diff")
    assert changed == 1
    assert result["username"] == "u100001-sub1"
    assert result["hostname"] == "u100001-sub1.your-storagebox.de"
    assert result["diff"]["after"]["password"] == "********"
    sub_id = result["subaccount"]["id"]
    assert fake.subaccounts[sub_id]["home_directory"] == "immich"
    assert fake.passwords[("subaccount", sub_id)] == PASSWORD

    fake.clear_log()
    _, changed = play.run("storagebox_subaccount", SUBACCOUNT, "--diff")
    assert changed == 0 and fake.writes == []

    always = dict(SUBACCOUNT, password=NEW_PASSWORD, update_password="always")
    _, changed = play.run("storagebox_subaccount", always, "--check", "--diff")
    assert changed == 1 and fake.writes == []
    assert fake.passwords[("subaccount", sub_id)] == PASSWORD

    fake.action_polls = 2  # slower actions: the module must keep polling
    _, changed = play.run("storagebox_subaccount", always, "--diff")
    assert changed == 1
    assert fake.passwords[("subaccount", sub_id)] == NEW_PASSWORD

    absent = {"storagebox_id": 1, "name": "immich", "state": "absent"}
    _, changed = play.run("storagebox_subaccount", absent, "--diff")
    assert changed == 1 and sub_id not in fake.subaccounts
    fake.clear_log()
    _, changed = play.run("storagebox_subaccount", absent)
    assert changed == 0 and fake.writes == []
    play.assert_no_secrets()


def test_info_and_retried_rate_limit(tmp_path, fake):
    fake.add_subaccount(1, {"name": "restic", "home_directory": "restic"})
    fake.fail_next(429, method="GET", path="/v1/storage_boxes")
    play = Playbook(tmp_path, fake)
    result, changed = play.run("storagebox_info", {"name": "photos"})
    assert changed == 0
    [box] = result["storageboxes"]
    assert box["access_settings"]["samba_enabled"] is True
    assert [s["name"] for s in box["subaccounts"]] == ["restic"]
    retried = [("/v1/storage_boxes", 429), ("/v1/storage_boxes", 200)]
    assert [(r["path"], r["status"]) for r in fake.log][:2] == retried, "429 retried"
    play.assert_no_secrets()


def test_refused_input_and_failed_action_give_clear_messages(tmp_path, fake):
    play = Playbook(tmp_path, fake)
    result, _ = play.run("storagebox_subaccount", dict(SUBACCOUNT, home_directory="/immich"), fails=True)
    assert "must not start with '/'" in result["msg"]
    result, _ = play.run("storagebox_subaccount", dict(SUBACCOUNT, password="too-short"), fails=True)
    assert result["msg"].startswith("password does not meet the Storage Box password policy")
    assert fake.log == [], "refused before any call"

    fake.fail_next_action("locked", "Storage Box is locked by a running action")
    result, _ = play.run("storagebox", {"name": "photos", "delete_protection": True}, fails=True)
    assert result["msg"].startswith("POST /storage_boxes/1/actions/change_protection failed: locked: Storage Box is")

    result, _ = play.run("storagebox", {"name": "photos", "api_token": "Wrong-Token-1"}, fails=True)
    assert result["msg"] == ("GET /storage_boxes failed: unauthorized: unable to authenticate "
                             "(check the API token and its permissions)")
    play.assert_no_secrets()


def test_fake_records_contract_violations():
    """The zero-violation assertions above mean something: a request off the spec is refused and recorded."""
    with HetznerFake(SEED, token=TOKEN) as fake:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        missing_password = requests.post(f"{fake.url}/storage_boxes/1/subaccounts",
                                         json={"home_directory": "x"}, headers=auth, timeout=10)
        assert missing_password.status_code == 400
        assert missing_password.json()["error"]["code"] == "invalid_input"
        bad_id = requests.get(f"{fake.url}/storage_boxes/abc", headers=auth, timeout=10)
        assert bad_id.status_code == 400
        order = {"name": "x", "location": "fsn1", "password": "Valid-Passw0rd!"}
        no_type = requests.post(f"{fake.url}/storage_boxes", json=order, headers=auth, timeout=10)
        assert no_type.status_code == 400 and not fake.boxes.keys() - {1}
        assert len(fake.violations) == 3 and "'password' is a required property" in fake.violations[0]
        assert "'storage_box_type' is a required property" in fake.violations[2]


def test_fake_runs_from_the_command_line(tmp_path):
    """The way a Molecule scenario starts it: a seed file, a port (0 = any), the URL printed on the first line."""
    seed = tmp_path / "seed.json"
    seed.write_text(json.dumps(dict(SEED, token=TOKEN)))
    command = [sys.executable, str(REPO / "tests/fakes/hetzner_api.py"), "--port", "0", "--seed", str(seed)]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as server:
        try:
            url = server.stdout.readline().split()[-1]
            boxes = requests.get(f"{url}/storage_boxes", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
            assert [b["name"] for b in boxes.json()["storage_boxes"]] == ["photos"]
            assert requests.get(f"{url}/storage_boxes", headers={"Authorization": "Bearer wrong"},
                                timeout=10).status_code == 401
        finally:
            server.terminate()
