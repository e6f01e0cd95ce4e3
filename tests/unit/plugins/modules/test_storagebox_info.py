"""selfhost.immich.storagebox_info: boxes by id, name or all (paginated), each with its sub-accounts; token fallback."""

from __future__ import annotations

import pytest
from ansible_collections.selfhost.immich.plugins.modules import storagebox_info
from ansible_collections.selfhost.immich.tests.unit.utils.hetzner_calls import box, listing, subaccount
from ansible_collections.selfhost.immich.tests.unit.utils.http_calls import Call, ScriptedSession

# `-k hetzner` selects these with the client and integration tests.
pytestmark = pytest.mark.hetzner


def test_all_boxes_across_pages_with_subaccounts(run_hetzner):
    result, session, _ = run_hetzner(storagebox_info, {}, [
        Call("GET", "/storage_boxes", params={"page": 1, "per_page": 50})
        .returns(200, listing([box()], page=1, next_page=2)),
        Call("GET", "/storage_boxes", params={"page": 2, "per_page": 50})
        .returns(200, listing([box(id=2, name="archive")], page=2)),
        Call("GET", "/storage_boxes/1/subaccounts").returns(200, {"subaccounts": [subaccount()]}),
        Call("GET", "/storage_boxes/2/subaccounts").returns(200, {"subaccounts": []}),
    ])
    assert result["changed"] is False
    assert [b["name"] for b in result["storageboxes"]] == ["photos", "archive"]
    assert result["storageboxes"][0]["subaccounts"][0]["username"] == "u100001-sub1"
    assert result["storageboxes"][0]["access_settings"]["ssh_enabled"] is False
    assert session.writes == []


def test_label_selector_is_passed_on(run_hetzner):
    result, _, _ = run_hetzner(storagebox_info, {"label_selector": "app=immich"}, [
        Call("GET", "/storage_boxes", params={"label_selector": "app=immich", "page": 1, "per_page": 50})
        .returns(200, listing([])),
    ])
    assert result["storageboxes"] == []


def test_unknown_id_gives_an_empty_list(run_hetzner):
    result, _, _ = run_hetzner(storagebox_info, {"id": 7}, [
        Call("GET", "/storage_boxes/7").returns(404, {"error": {"code": "not_found", "message": "not found"}}),
    ])
    assert result["storageboxes"] == []


class HeaderRecordingSession(ScriptedSession):
    def request(self, method, url, headers=None, **kwargs):
        self.authorization = headers["Authorization"]
        return super().request(method, url, headers=headers, **kwargs)


def test_token_falls_back_to_hcloud_token(run_hetzner, monkeypatch):
    monkeypatch.delenv("HETZNER_API_TOKEN", raising=False)
    monkeypatch.setenv("HCLOUD_TOKEN", "from-hcloud-env")
    session = HeaderRecordingSession([
        Call("GET", "/storage_boxes/1").returns(200, {"storage_box": box()}),
        Call("GET", "/storage_boxes/1/subaccounts").returns(200, {"subaccounts": []}),
    ])
    run_hetzner(storagebox_info, {"id": 1, "api_token": None}, [], session=session)
    assert session.authorization == "Bearer from-hcloud-env"
