"""selfhost.immich.storagebox: exact HTTP call sequences for change, no-op, check mode, partial updates and errors."""

from __future__ import annotations

import pytest
from ansible_collections.selfhost.immich.plugins.modules import storagebox
from ansible_collections.selfhost.immich.tests.unit.utils.hetzner_calls import action, action_calls, box, listing
from ansible_collections.selfhost.immich.tests.unit.utils.http_calls import Call

# `-k hetzner` selects these with the client and integration tests.
pytestmark = pytest.mark.hetzner

PLAN = {"max_snapshots": 14, "minute": 30, "hour": 3, "day_of_week": None, "day_of_month": None}
ARGS = {
    "name": "photos",
    "labels": {"app": "immich"},
    "delete_protection": True,
    "access_settings": {"ssh_enabled": True, "zfs_enabled": True},
    "snapshot_plan": {"max_snapshots": 14, "minute": 30, "hour": 3},
}
CONFIGURED = box(labels={"app": "immich"}, protection={"delete": True}, snapshot_plan=PLAN,
                 access_settings=dict(box()["access_settings"], ssh_enabled=True, zfs_enabled=True))


def find_by_name(found: dict | None) -> Call:
    return Call("GET", "/storage_boxes", params={"name": "photos", "page": 1, "per_page": 50}).returns(
        200, listing([found] if found else []))


def test_configure_sends_one_call_per_changed_setting(run_hetzner):
    result, session, _ = run_hetzner(storagebox, ARGS, [
        find_by_name(box()),
        Call("PUT", "/storage_boxes/1", body={"labels": {"app": "immich"}}).returns(200, {"storage_box": box()}),
        *action_calls("POST", "/storage_boxes/1/actions/change_protection", {"delete": True}, 11),
        *action_calls("POST", "/storage_boxes/1/actions/update_access_settings",
                      {"ssh_enabled": True, "zfs_enabled": True}, 12),
        *action_calls("POST", "/storage_boxes/1/actions/enable_snapshot_plan",
                      {"max_snapshots": 14, "minute": 30, "hour": 3}, 13),
        Call("GET", "/storage_boxes/1").returns(200, {"storage_box": CONFIGURED}),
    ])
    assert result["changed"] is True
    assert result["storagebox"] == CONFIGURED
    assert result["diff"]["before"]["snapshot_plan"] is None
    assert result["diff"]["after"] == {
        "name": "photos", "labels": {"app": "immich"}, "protection": {"delete": True},
        "access_settings": CONFIGURED["access_settings"], "snapshot_plan": PLAN}


def test_second_run_only_reads(run_hetzner):
    result, session, _ = run_hetzner(storagebox, ARGS, [find_by_name(CONFIGURED)])
    assert result["changed"] is False
    assert result["diff"]["before"] == result["diff"]["after"]
    assert session.writes == []


def test_check_mode_predicts_without_writing(run_hetzner):
    result, session, _ = run_hetzner(storagebox, ARGS, [find_by_name(box())], check_mode=True)
    assert result["changed"] is True
    assert session.writes == []
    assert result["storagebox"]["access_settings"]["ssh_enabled"] is True
    assert result["storagebox"]["snapshot_plan"] == PLAN
    assert result["diff"]["after"]["protection"] == {"delete": True}


def test_access_settings_are_a_partial_update(run_hetzner):
    current = box(access_settings=dict(box()["access_settings"], webdav_enabled=True, samba_enabled=True))
    args = {"id": 1, "access_settings": {"ssh_enabled": True, "webdav_enabled": True}}
    result, _, _ = run_hetzner(storagebox, args, [
        Call("GET", "/storage_boxes/1").returns(200, {"storage_box": current}),
        *action_calls("POST", "/storage_boxes/1/actions/update_access_settings", {"ssh_enabled": True}, 11),
        Call("GET", "/storage_boxes/1").returns(200, {"storage_box": current}),
    ])
    assert result["changed"] is True
    # samba_enabled was left out, so it stays enabled in the prediction as on the box
    assert result["diff"]["after"]["access_settings"]["samba_enabled"] is True


def test_rename_by_id_and_disable_snapshot_plan(run_hetzner):
    result, _, _ = run_hetzner(storagebox, {"id": 1, "name": "archive", "snapshot_plan": {"enabled": False}}, [
        Call("GET", "/storage_boxes/1").returns(200, {"storage_box": box(snapshot_plan=PLAN)}),
        Call("PUT", "/storage_boxes/1", body={"name": "archive"}).returns(200, {"storage_box": box()}),
        *action_calls("POST", "/storage_boxes/1/actions/disable_snapshot_plan", None, 11),
        Call("GET", "/storage_boxes/1").returns(200, {"storage_box": box(name="archive")}),
    ])
    assert result["changed"] is True
    assert result["diff"]["after"]["snapshot_plan"] is None


def test_disabled_plan_that_is_already_off_changes_nothing(run_hetzner):
    result, _, _ = run_hetzner(storagebox, {"name": "photos", "snapshot_plan": {"enabled": False}},
                               [find_by_name(box())])
    assert result["changed"] is False


def test_changed_weekday_replaces_the_plan(run_hetzner):
    args = {"name": "photos", "snapshot_plan": dict(ARGS["snapshot_plan"], day_of_week=7)}
    run_hetzner(storagebox, args, [
        find_by_name(box(snapshot_plan=PLAN)),
        *action_calls("POST", "/storage_boxes/1/actions/enable_snapshot_plan",
                      {"max_snapshots": 14, "minute": 30, "hour": 3, "day_of_week": 7}, 11),
        Call("GET", "/storage_boxes/1").returns(200, {"storage_box": box()}),
    ])


def test_vendor_error_is_one_clear_message(run_hetzner):
    error = {"error": {"code": "invalid_input", "message": "invalid input in field 'labels'",
                       "details": {"fields": [{"name": "labels", "messages": ["label key is invalid"]}]}}}
    result, _, _ = run_hetzner(storagebox, {"name": "photos", "labels": {"-bad": "x"}}, [
        find_by_name(box()),
        Call("PUT", "/storage_boxes/1", body={"labels": {"-bad": "x"}}).returns(400, error),
    ], fails=True)
    assert result["msg"] == ("PUT /storage_boxes/1 failed: invalid_input: invalid input in field 'labels' "
                             "(labels: label key is invalid)")
    assert result["code"] == "invalid_input"


@pytest.mark.parametrize("status", [429, 503])
def test_rate_limit_and_unavailable_are_retried(run_hetzner, status):
    result, _, _ = run_hetzner(storagebox, {"name": "photos"}, [
        Call("GET", "/storage_boxes", params={"name": "photos", "page": 1, "per_page": 50})
        .returns(status, {"error": {"code": "rate_limit_exceeded", "message": "try later"}}),
        find_by_name(box()),
    ])
    assert result["changed"] is False


def test_failed_action_fails_the_module(run_hetzner):
    result, _, _ = run_hetzner(storagebox, {"name": "photos", "delete_protection": True}, [
        find_by_name(box()),
        Call("POST", "/storage_boxes/1/actions/change_protection", body={"delete": True})
        .returns(201, {"action": {"id": 11, "command": "change_protection", "status": "running", "progress": 0,
                                  "started": "x", "finished": None, "resources": [], "error": None}}),
        Call("GET", "/storage_boxes/actions/11").returns(200, {"action": {
            "id": 11, "command": "change_protection", "status": "error", "progress": 100, "started": "x",
            "finished": "y", "resources": [], "error": {"code": "locked", "message": "box is locked"}}}),
    ], fails=True)
    assert result["msg"] == ("POST /storage_boxes/1/actions/change_protection failed: locked: box is locked "
                             "(action 11, change_protection)")


def test_missing_box_is_reported_not_created(run_hetzner):
    result, session, _ = run_hetzner(storagebox, {"name": "photos"}, [find_by_name(None)], fails=True)
    assert result["msg"] == ("No Storage Box named 'photos' in this project; set storage_box_type, location, "
                             "password to order one (nothing was changed).")
    assert session.writes == []


# -- ordering and deleting ------------------------------------------------------------------------
PASSWORD = "Order-Secret-2026!"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOrderKey0000000000000000000000000000000000 immich@host"
ORDER = dict(ARGS, storage_box_type="BX11", location="fsn1", password=PASSWORD, ssh_keys=[KEY])
ORDER_BODY = {"name": "photos", "storage_box_type": "bx11", "location": "fsn1", "password": PASSWORD,
              "ssh_keys": [KEY], "labels": {"app": "immich"},
              "access_settings": {"ssh_enabled": True, "zfs_enabled": True}}
ORDERED = box(id=7, labels={"app": "immich"},
              access_settings=dict(box()["access_settings"], ssh_enabled=True, zfs_enabled=True),
              location={"name": "fsn1"}, storage_box_type={"name": "bx11"})


def test_missing_box_is_ordered_then_configured(run_hetzner):
    initializing = dict(ORDERED, username=None, server=None, status="initializing")
    final = dict(ORDERED, protection={"delete": True}, snapshot_plan=PLAN)
    result, session, _ = run_hetzner(storagebox, ORDER, [
        find_by_name(None),
        Call("POST", "/storage_boxes", body=ORDER_BODY).returns(201, {"storage_box": initializing,
                                                                      "action": action(21, command="create")}),
        Call("GET", "/storage_boxes/actions/21").returns(200, {"action": action(21, "success", "create")}),
        Call("GET", "/storage_boxes/7").returns(200, {"storage_box": ORDERED}),
        *action_calls("POST", "/storage_boxes/7/actions/change_protection", {"delete": True}, 22),
        *action_calls("POST", "/storage_boxes/7/actions/enable_snapshot_plan",
                      {"max_snapshots": 14, "minute": 30, "hour": 3}, 23),
        Call("GET", "/storage_boxes/7").returns(200, {"storage_box": final}),
    ])
    assert result["changed"] is True
    assert result["storagebox"] == final
    assert result["diff"]["before"] == {}
    assert result["diff"]["after"] == {
        "name": "photos", "labels": {"app": "immich"}, "protection": {"delete": True},
        "access_settings": ORDERED["access_settings"], "snapshot_plan": PLAN, "storage_box_type": "bx11",
        "location": "fsn1", "password": "********", "ssh_keys": [KEY]}
    assert PASSWORD not in str(result)


def test_order_in_check_mode_predicts_without_writing(run_hetzner):
    result, session, _ = run_hetzner(storagebox, ORDER, [find_by_name(None)], check_mode=True)
    assert result["changed"] is True
    assert session.writes == []
    predicted = result["storagebox"]
    assert predicted["id"] is None and predicted["status"] == "initializing"
    assert predicted["protection"] == {"delete": True} and predicted["snapshot_plan"] == PLAN
    access = predicted["access_settings"]
    assert access["ssh_enabled"] is True and access["samba_enabled"] is False
    assert result["diff"]["after"]["password"] == "********"


def test_existing_box_is_not_ordered_again(run_hetzner):
    configured = dict(CONFIGURED, location={"name": "fsn1"}, storage_box_type={"name": "bx11"})
    result, session, _ = run_hetzner(storagebox, ORDER, [find_by_name(configured)])
    assert result["changed"] is False
    assert session.writes == []


@pytest.mark.parametrize(("option", "value"), [("storage_box_type", "bx21"), ("location", "hel1")])
def test_existing_box_of_another_type_or_place_is_a_conflict(run_hetzner, option, value):
    existing = dict(CONFIGURED, location={"name": "fsn1"}, storage_box_type={"name": "bx11"})
    result, session, _ = run_hetzner(storagebox, dict(ORDER, **{option: value}), [find_by_name(existing)],
                                     fails=True)
    assert result["msg"].startswith(f"Storage Box 'photos' (ID 1) exists with {option} ")
    assert result["code"] == "conflict"
    assert session.writes == []


def test_order_needs_name_not_id(run_hetzner):
    result, session, _ = run_hetzner(storagebox, dict(ORDER, id=5), [
        Call("GET", "/storage_boxes/5").returns(404, {"error": {"code": "not_found", "message": "not found"}}),
    ], fails=True)
    assert "a box is ordered by name, not by ID" in result["msg"]
    assert session.writes == []


def test_lost_order_answer_finds_the_box_instead_of_ordering_twice(run_hetzner):
    args = {"name": "photos", "storage_box_type": "bx11", "location": "fsn1", "password": PASSWORD}
    run_hetzner(storagebox, args, [
        find_by_name(None),
        Call("POST", "/storage_boxes", body={"name": "photos", "storage_box_type": "bx11", "location": "fsn1",
                                             "password": PASSWORD}).returns(504, None),
        find_by_name(ORDERED),
        Call("GET", "/storage_boxes/7").returns(200, {"storage_box": ORDERED}),
    ])


def test_delete_needs_the_name_confirmed(run_hetzner):
    result, session, _ = run_hetzner(storagebox, {"id": 1, "state": "absent", "confirm_name": "photo"}, [
        Call("GET", "/storage_boxes/1").returns(200, {"storage_box": box()}),
    ], fails=True)
    assert result["msg"].startswith("confirm_name must repeat the name of the Storage Box, 'photos'")
    assert session.writes == []


def test_protected_box_is_not_deleted(run_hetzner):
    args = {"name": "photos", "state": "absent", "confirm_name": "photos"}
    result, session, _ = run_hetzner(storagebox, args, [find_by_name(box(protection={"delete": True}))], fails=True)
    assert "is protected against deletion" in result["msg"] and result["code"] == "protected"
    assert session.writes == []


def test_confirmed_delete_waits_for_its_action(run_hetzner):
    args = {"name": "photos", "state": "absent", "confirm_name": "photos"}
    result, _, _ = run_hetzner(storagebox, args, [
        find_by_name(box()),
        *action_calls("DELETE", "/storage_boxes/1", None, 31),
    ])
    assert result["changed"] is True and result["storagebox"] is None
    assert result["diff"]["before"]["name"] == "photos" and result["diff"]["after"] == {}


def test_delete_in_check_mode_and_of_a_missing_box(run_hetzner):
    args = {"name": "photos", "state": "absent", "confirm_name": "photos"}
    result, session, _ = run_hetzner(storagebox, args, [find_by_name(box())], check_mode=True)
    assert result["changed"] is True and session.writes == []
    result, session, _ = run_hetzner(storagebox, args, [find_by_name(None)])
    assert result["changed"] is False and session.writes == []


def test_missing_requests_library(run_hetzner, monkeypatch):
    from ansible_collections.selfhost.immich.plugins.module_utils import _api

    monkeypatch.setattr(_api, "REQUESTS_IMPORT_ERROR", "Traceback: No module named 'requests'")
    result, _, _ = run_hetzner(storagebox, {"name": "photos"}, [], fails=True)
    assert "Failed to import the required Python library (requests)" in result["msg"]
