"""selfhost.immich.storagebox_subaccount: create, no-op, partial update, password, absent, checks before any call."""

from __future__ import annotations

import json

import pytest
from ansible_collections.selfhost.immich.plugins.modules import storagebox_subaccount
from ansible_collections.selfhost.immich.tests.unit.utils.hetzner_calls import action, action_calls, subaccount
from ansible_collections.selfhost.immich.tests.unit.utils.http_calls import Call

# `-k hetzner` selects these with the client and integration tests.
pytestmark = pytest.mark.hetzner

PASSWORD = "Immich-Photos-2026"
NEW_PASSWORD = "Restic-Backup-2027"
ARGS = {"storagebox_id": 1, "name": "immich", "home_directory": "immich", "password": PASSWORD,
        "access_settings": {"ssh_enabled": True}}
SUBS = "/storage_boxes/1/subaccounts"


def find(*found: dict) -> Call:
    return Call("GET", SUBS, params={"name": "immich"}).returns(200, {"subaccounts": list(found)})


def test_create_returns_username_and_host(run_hetzner):
    body = {"name": "immich", "home_directory": "immich", "password": PASSWORD,
            "access_settings": {"ssh_enabled": True}}
    result, _, _ = run_hetzner(storagebox_subaccount, ARGS, [
        find(),
        Call("POST", SUBS, body=body).returns(201, {"subaccount": {"id": 42, "storage_box": 1},
                                                    "action": action(7, command="create_subaccount")}),
        Call("GET", "/storage_boxes/actions/7").returns(200, {"action": action(7, "success")}),
        Call("GET", f"{SUBS}/42").returns(200, {"subaccount": subaccount()}),
    ])
    assert result["changed"] is True
    assert result["username"] == "u100001-sub1"
    assert result["hostname"] == "u100001-sub1.your-storagebox.de"
    assert result["diff"]["before"] == {}
    assert result["diff"]["after"]["password"] == "********"
    assert PASSWORD not in json.dumps(result)


def test_second_run_only_reads(run_hetzner):
    result, session, _ = run_hetzner(storagebox_subaccount, ARGS, [find(subaccount())])
    assert result["changed"] is False
    assert session.writes == []
    assert result["diff"]["before"] == result["diff"]["after"]


def test_check_mode_create_sends_no_write(run_hetzner):
    result, session, _ = run_hetzner(storagebox_subaccount, ARGS, [find()], check_mode=True)
    assert result["changed"] is True
    assert session.writes == []
    assert result["username"] is None and result["hostname"] is None
    assert result["subaccount"]["home_directory"] == "immich"
    assert PASSWORD not in json.dumps(result)


def test_partial_update_sends_only_changed_keys(run_hetzner):
    args = dict(ARGS, home_directory="photos", description="Immich media",
                access_settings={"ssh_enabled": True, "readonly": True, "webdav_enabled": None})
    path = f"{SUBS}/42"
    result, _, _ = run_hetzner(storagebox_subaccount, args, [
        find(subaccount()),
        *action_calls("POST", path + "/actions/change_home_directory", {"home_directory": "photos"}, 7),
        *action_calls("POST", path + "/actions/update_access_settings", {"readonly": True}, 8),
        Call("PUT", path, body={"description": "Immich media"}).returns(200, {"subaccount": subaccount()}),
        Call("GET", path).returns(200, {"subaccount": subaccount(home_directory="photos")}),
    ])
    assert result["changed"] is True
    assert result["diff"]["after"]["access_settings"]["readonly"] is True
    assert "password" not in result["diff"]["after"]


def test_check_mode_update_sends_no_write(run_hetzner):
    args = dict(ARGS, access_settings={"readonly": True}, update_password="always")
    result, session, _ = run_hetzner(storagebox_subaccount, args, [find(subaccount())], check_mode=True)
    assert result["changed"] is True and session.writes == []
    assert result["subaccount"]["access_settings"]["readonly"] is True
    assert result["username"] == "u100001-sub1"


def test_update_password_always_resets_it(run_hetzner):
    args = dict(ARGS, password=NEW_PASSWORD, update_password="always")
    result, _, _ = run_hetzner(storagebox_subaccount, args, [
        find(subaccount()),
        *action_calls("POST", f"{SUBS}/42/actions/reset_subaccount_password", {"password": NEW_PASSWORD}, 7),
        Call("GET", f"{SUBS}/42").returns(200, {"subaccount": subaccount()}),
    ])
    assert result["changed"] is True
    assert result["diff"]["after"]["password"] == "********"
    assert NEW_PASSWORD not in json.dumps(result)


def test_absent_deletes_and_waits(run_hetzner):
    result, _, _ = run_hetzner(storagebox_subaccount, {"storagebox_id": 1, "name": "immich", "state": "absent"}, [
        find(subaccount()),
        *action_calls("DELETE", f"{SUBS}/42", None, 7),
    ])
    assert result["changed"] is True
    assert result["subaccount"] is None
    assert result["diff"]["after"] == {} and result["diff"]["before"]["name"] == "immich"


def test_absent_when_missing_only_reads(run_hetzner):
    result, session, _ = run_hetzner(storagebox_subaccount,
                                     {"storagebox_id": 1, "name": "immich", "state": "absent"}, [find()])
    assert result["changed"] is False and session.writes == []


def test_leading_slash_home_directory_is_refused_before_any_call(run_hetzner):
    result, session, _ = run_hetzner(storagebox_subaccount, dict(ARGS, home_directory="/immich"), [], fails=True)
    assert result["msg"] == ("home_directory is relative and must not start with '/': "
                             "use 'immich' instead of '/immich'")
    assert session.sent == []


@pytest.mark.parametrize("password", ["short-1A", "no-upper-case-1", "Umlaut-but-space 1"])
def test_password_policy_is_checked_before_any_call(run_hetzner, password):
    result, session, _ = run_hetzner(storagebox_subaccount, dict(ARGS, password=password), [], fails=True)
    assert result["msg"].startswith("password does not meet the Storage Box password policy: it ")
    assert password not in result["msg"]
    assert session.sent == []


def test_create_without_password_is_refused_after_lookup(run_hetzner):
    args = {k: v for k, v in ARGS.items() if k != "password"}
    result, session, _ = run_hetzner(storagebox_subaccount, args, [find()], fails=True)
    assert "home_directory and password are needed to create it" in result["msg"]
    assert session.writes == []


def test_vendor_error_on_create(run_hetzner):
    error = {"error": {"code": "uniqueness_error", "message": "subaccount name already taken", "details": None}}
    result, _, _ = run_hetzner(storagebox_subaccount, ARGS, [
        find(), Call("POST", SUBS).returns(409, error)], fails=True)
    assert result["msg"] == "POST /storage_boxes/1/subaccounts failed: uniqueness_error: subaccount name already taken"


def test_hostname_falls_back_to_the_username(run_hetzner):
    sub = subaccount()
    del sub["server"]
    result, _, _ = run_hetzner(storagebox_subaccount, ARGS, [find(sub)])
    assert result["hostname"] == "u100001-sub1.your-storagebox.de"
