"""Hetzner Storage Box answers and scripted calls for the unit tests (client and modules).

The API is reached at ``API_URL`` with ``TOKEN``, so scripted paths have no ``/v1`` prefix.
"""

from __future__ import annotations

from typing import Any

from ansible_collections.selfhost.immich.tests.unit.utils.http_calls import Call

API_URL = "https://api.hetzner.test"
TOKEN = "unit-test-token-Secret1!"
#: What the connection options default to in a module run (the run_hetzner fixture).
MODULE_DEFAULTS = {"api_url": API_URL, "api_token": TOKEN}
#: Environment a module would fall back to; cleared so only what a test gives counts.
ENV = ("HETZNER_API_TOKEN", "HCLOUD_TOKEN", "HETZNER_API_URL")


def action(action_id: int, status: str = "running", command: str = "some_action", error: dict | None = None) -> dict:
    """An action object as the API returns it."""
    return {"id": action_id, "command": command, "status": status, "progress": 100 if status != "running" else 0,
            "started": "2026-11-25T10:00:00Z", "finished": None if status == "running" else "2026-11-25T10:00:01Z",
            "resources": [], "error": error}


def action_calls(method: str, path: str, body: Any, action_id: int) -> list[Call]:
    """A write that starts an action, then the one poll that finds it done."""
    return [
        Call(method, path, body=body).returns(201, {"action": action(action_id)}),
        Call("GET", f"/storage_boxes/actions/{action_id}").returns(200, {"action": action(action_id, "success")}),
    ]


def box(**overrides: Any) -> dict:
    """A Storage Box as GET /storage_boxes/{id} returns it (the fields the modules read)."""
    data = {
        "id": 1, "name": "photos", "username": "u100001", "server": "u100001.your-storagebox.de",
        "status": "active", "labels": {}, "protection": {"delete": False}, "snapshot_plan": None,
        "access_settings": {"reachable_externally": False, "samba_enabled": False, "ssh_enabled": False,
                            "webdav_enabled": False, "zfs_enabled": False},
    }
    data.update(overrides)
    return data


def subaccount(**overrides: Any) -> dict:
    """A sub-account as GET /storage_boxes/{id}/subaccounts/{sid} returns it."""
    data = {
        "id": 42, "storage_box": 1, "name": "immich", "username": "u100001-sub1",
        "server": "u100001-sub1.your-storagebox.de", "home_directory": "immich", "description": "", "labels": {},
        "access_settings": {"reachable_externally": False, "readonly": False, "samba_enabled": False,
                            "ssh_enabled": True, "webdav_enabled": False},
    }
    data.update(overrides)
    return data


def listing(boxes: list[dict], page: int = 1, next_page: int | None = None) -> dict:
    """One page of GET /storage_boxes."""
    return {"storage_boxes": boxes, "meta": {"pagination": {
        "page": page, "per_page": 50, "previous_page": page - 1 or None, "next_page": next_page,
        "last_page": next_page or page, "total_entries": len(boxes)}}}
