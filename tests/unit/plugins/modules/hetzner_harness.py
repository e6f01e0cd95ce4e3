"""Run a Hetzner module's main() in-process against a ScriptedSession (the usual ansible unit-test pattern).

    result = run_module(storagebox.main, {"name": "photos"}, [Call("GET", "/storage_boxes", ...).returns(...)])

``run_module`` patches the module args, exit_json/fail_json (raising ModuleExit with the result), the
requests.Session the client builds and the client's sleep; it asserts every scripted call was made.
"""

from __future__ import annotations

from typing import Any

import pytest
from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args
from ansible_collections.selfhost.immich.plugins.module_utils import _api, _hetzner
from http_calls import Call, ScriptedSession

API_URL = "https://api.hetzner.test"
TOKEN = "unit-test-token-Secret1!"


class ModuleExit(Exception):
    def __init__(self, result: dict, failed: bool) -> None:
        super().__init__(result.get("msg"))
        self.result, self.failed = result, failed


def _exit_json(self, **result: Any) -> None:
    raise ModuleExit(result, failed=False)


def _fail_json(self, msg: str, **result: Any) -> None:
    raise ModuleExit(dict(result, msg=msg, failed=True), failed=True)


def run_module(monkeypatch: pytest.MonkeyPatch, main, args: dict, calls: list[Call], check_mode: bool = False,
               fails: bool = False, session: ScriptedSession | None = None) -> tuple[dict, ScriptedSession]:
    """main() with ``args`` (plus api_url/api_token) must make exactly ``calls``; returns (result, session)."""
    session = session or ScriptedSession(calls)
    monkeypatch.setattr(_api.requests, "Session", lambda: session)
    monkeypatch.setattr(_hetzner, "sleep", lambda seconds: None)
    monkeypatch.setattr(basic.AnsibleModule, "exit_json", _exit_json)
    monkeypatch.setattr(basic.AnsibleModule, "fail_json", _fail_json)
    # An argument given as None is left out, so an env fallback can be tested with {"api_token": None}.
    module_args = {k: v for k, v in dict(dict(api_url=API_URL, api_token=TOKEN), **args).items() if v is not None}
    module_args.update(_ansible_check_mode=check_mode, _ansible_diff=True)
    with patch_module_args(module_args), pytest.raises(ModuleExit) as raised:
        main()
    assert raised.value.failed == fails, raised.value.result
    session.assert_done()
    return raised.value.result, session


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
