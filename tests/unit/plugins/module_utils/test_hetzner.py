"""HetznerClient: errors, retries, pagination, action polling, lookups; the input checks done before any call."""

from __future__ import annotations

import pytest
import requests
from ansible_collections.selfhost.immich.plugins.module_utils._api import ApiError
from ansible_collections.selfhost.immich.plugins.module_utils._hetzner import (
    HetznerClient,
    home_directory_problem,
    password_problem,
)
from ansible_collections.selfhost.immich.tests.unit.utils.hetzner_calls import API_URL
from ansible_collections.selfhost.immich.tests.unit.utils.hetzner_calls import action as action_object
from ansible_collections.selfhost.immich.tests.unit.utils.http_calls import Call, ScriptedSession, scripted_client

BOX_PAGE = {"page": 1, "per_page": 50}


def client_for(calls: list[Call], **kwargs) -> tuple[HetznerClient, ScriptedSession, list[float]]:
    return scripted_client(HetznerClient, API_URL, calls, **kwargs)


def action(action_id: int, status: str, error: dict | None = None) -> dict:
    return {"action": action_object(action_id, status, "enable_snapshot_plan", error)}


def test_error_message_has_vendor_code_and_invalid_fields():
    body = {"error": {"code": "invalid_input", "message": "invalid input in fields 'labels', 'name'",
                      "details": {"fields": [{"name": "labels", "messages": ["label value is invalid"]},
                                             {"name": "name", "messages": ["is too long", "is taken"]}]}}}
    client, session, _ = client_for([Call("PUT", "/storage_boxes/1", body={"name": "x"}).returns(400, body)])
    with pytest.raises(ApiError) as raised:
        client.request("PUT", "/storage_boxes/1", {"name": "x"})
    assert str(raised.value) == ("PUT /storage_boxes/1 failed: invalid_input: invalid input in fields 'labels', "
                                 "'name' (labels: label value is invalid; name: is too long, is taken)")
    assert raised.value.code == "invalid_input" and raised.value.status == 400
    session.assert_done()


def test_error_without_hetzner_body_falls_back_to_status():
    client, _, _ = client_for([Call("GET", "/storage_boxes/1").returns(418, "teapot")])
    with pytest.raises(ApiError, match=r"^GET /storage_boxes/1 failed: 418: teapot$"):
        client.get("/storage_boxes/1")


@pytest.mark.parametrize("status, code", [(429, "rate_limit_exceeded"), (503, "unavailable"), (502, "bad_gateway")])
def test_rate_limit_and_server_errors_are_retried(status, code):
    client, session, slept = client_for([
        Call("GET", "/storage_boxes/1").returns(status, {"error": {"code": code, "message": "slow down"}}),
        Call("GET", "/storage_boxes/1").returns(200, {"storage_box": {"id": 1, "name": "photos"}}),
    ])
    assert client.find_box(1) == {"id": 1, "name": "photos"}
    assert len(slept) == 1
    session.assert_done()


def test_network_errors_are_retried_then_reported():
    client, _, slept = client_for(
        [Call("GET", "/storage_boxes/1").fails_with(requests.ConnectionError("refused"))] * 3, max_retries=2)
    with pytest.raises(ApiError, match=r"^GET /storage_boxes/1 failed: cannot reach Hetzner API: refused"):
        client.get("/storage_boxes/1")
    assert len(slept) == 2


def test_gives_up_on_persistent_rate_limit_with_one_clear_message():
    error = {"error": {"code": "rate_limit_exceeded", "message": "limit of 3600 requests per hour reached"}}
    client, session, _ = client_for([Call("GET", "/storage_boxes/1").returns(429, error)] * 3, max_retries=2)
    with pytest.raises(ApiError) as raised:
        client.get("/storage_boxes/1")
    assert str(raised.value) == ("GET /storage_boxes/1 failed: rate_limit_exceeded: limit of 3600 requests per "
                                 "hour reached (gave up after 3 attempts)")
    session.assert_done()


def test_list_all_follows_pagination():
    def page(number, next_page, names):
        return {"storage_boxes": [{"id": i, "name": n} for i, n in enumerate(names, number * 10)],
                "meta": {"pagination": {"page": number, "per_page": 2, "next_page": next_page}}}

    client, session, _ = client_for([
        Call("GET", "/storage_boxes", params={"label_selector": "app=immich", "page": 1, "per_page": 2})
        .returns(200, page(1, 2, ["a", "b"])),
        Call("GET", "/storage_boxes", params={"label_selector": "app=immich", "page": 2, "per_page": 2})
        .returns(200, page(2, None, ["c"])),
    ], per_page=2)
    boxes = client.list_all("/storage_boxes", "storage_boxes", {"label_selector": "app=immich"})
    assert [b["name"] for b in boxes] == ["a", "b", "c"]
    session.assert_done()


def test_find_box_by_name_matches_exactly_and_refuses_duplicates():
    listing = {"storage_boxes": [{"id": 1, "name": "photos"}, {"id": 2, "name": "photos-old"}],
               "meta": {"pagination": {"next_page": None}}}
    client, _, _ = client_for([Call("GET", "/storage_boxes", params=dict(BOX_PAGE, name="photos"))
                               .returns(200, listing)])
    assert client.find_box(name="photos") == {"id": 1, "name": "photos"}

    twice = {"storage_boxes": [{"id": 1, "name": "photos"}, {"id": 2, "name": "photos"}], "meta": {}}
    client, _, _ = client_for([Call("GET", "/storage_boxes", params=dict(BOX_PAGE, name="photos"))
                               .returns(200, twice)])
    with pytest.raises(ApiError, match=r"2 Storage Boxes are named 'photos' \(ids 1, 2\): rename or delete"):
        client.find_box(name="photos")


def test_find_box_by_id_returns_none_when_absent():
    client, _, _ = client_for([Call("GET", "/storage_boxes/7").returns(
        404, {"error": {"code": "not_found", "message": "Storage Box not found"}})])
    assert client.find_box(7) is None


def test_find_subaccount_uses_the_unpaginated_name_filter():
    client, session, _ = client_for([
        Call("GET", "/storage_boxes/1/subaccounts", params={"name": "immich"})
        .returns(200, {"subaccounts": [{"id": 42, "name": "immich"}]}),
        Call("GET", "/storage_boxes/1/subaccounts", params={"name": "restic"}).returns(200, {"subaccounts": []}),
    ])
    assert client.find_subaccount(1, "immich") == {"id": 42, "name": "immich"}
    assert client.find_subaccount(1, "restic") is None
    session.assert_done()


def test_execute_waits_for_the_action():
    body = {"max_snapshots": 7, "minute": 0, "hour": 3}
    client, session, slept = client_for([
        Call("POST", "/storage_boxes/1/actions/enable_snapshot_plan", body=body).returns(201, action(5, "running")),
        Call("GET", "/storage_boxes/actions/5").returns(200, action(5, "running")),
        Call("GET", "/storage_boxes/actions/5").returns(200, action(5, "success")),
    ], poll_interval=2.0)
    result = client.execute("POST", "/storage_boxes/1/actions/enable_snapshot_plan", body)
    assert result["action"]["status"] == "success"
    assert slept == [2.0, 4.0]
    session.assert_done()


def test_failed_action_gives_one_clear_message():
    error = {"code": "locked", "message": "Storage Box is locked by another action"}
    client, _, _ = client_for([
        Call("POST", "/storage_boxes/1/actions/disable_snapshot_plan").returns(201, action(5, "running")),
        Call("GET", "/storage_boxes/actions/5").returns(200, action(5, "error", error)),
    ])
    with pytest.raises(ApiError) as raised:
        client.execute("POST", "/storage_boxes/1/actions/disable_snapshot_plan")
    assert str(raised.value) == ("POST /storage_boxes/1/actions/disable_snapshot_plan failed: locked: Storage Box "
                                 "is locked by another action (action 5, enable_snapshot_plan)")
    assert raised.value.code == "locked"


def test_action_wait_is_bounded():
    client, session, slept = client_for(
        [Call("POST", "/storage_boxes/1/actions/disable_snapshot_plan").returns(201, action(5, "running"))]
        + [Call("GET", "/storage_boxes/actions/5").returns(200, action(5, "running"))] * 3,
        action_timeout=7, poll_interval=1, max_poll_interval=4)
    with pytest.raises(ApiError, match=r"action 5 \(enable_snapshot_plan\) still running after 7 s"):
        client.execute("POST", "/storage_boxes/1/actions/disable_snapshot_plan")
    assert slept == [1, 2, 4]
    session.assert_done()


@pytest.mark.parametrize("password, problem", [
    ("Immich-Photos-2026", None),
    ("Äpfelbaum§Öl9", None),
    ("Short-1a", "12 to 128 characters long (it has 8)"),
    ("A1-" + "a" * 126, "12 to 128 characters long (it has 129)"),
    ("Immich Photos-2026", "may only contain"),
    ("Immich'Photos'2026", "may only contain"),
    ("immich-photos-2026", "needs at least one upper-case letter"),
    ("ImmichPhotos2026", "needs at least one special character"),
    ("IMMICH-PHOTOS", "needs at least one lower-case letter, one digit"),
])
def test_password_policy(password, problem):
    found = password_problem(password)
    if problem is None:
        assert found is None
    else:
        assert problem in found
        assert password not in found


HOME_SHAPE = ("home_directory must be a relative path of '/'-separated names made of letters, digits and . _ - "
              "(no spaces, line breaks, empty segments or trailing '/'), for example immich/library")
HOME_DOTS = "home_directory must not contain '.' or '..' segments: it has to name a directory below the box root"
HOME_ABSOLUTE = "home_directory is relative and must not start with '/'"


@pytest.mark.parametrize("path", ["immich", "backups/immich_2026-11", "immich/library", "a.b/c-d_e", ".immich",
                                  "immich..old", "..immich", "a/b/c/d"])
def test_home_directory_accepted(path):
    assert home_directory_problem(path) is None


@pytest.mark.parametrize("path, problem", [
    ("/immich", HOME_ABSOLUTE + ": use 'immich' instead of '/immich'"),
    ("//immich/library", HOME_ABSOLUTE + ": use 'immich/library' instead of '//immich/library'"),
    ("/", HOME_ABSOLUTE), ("/..", HOME_ABSOLUTE), ("/etc\n", HOME_ABSOLUTE),
    ("./.", HOME_DOTS), (".", HOME_DOTS), ("..", HOME_DOTS), ("a/../b", HOME_DOTS), ("a/../../b", HOME_DOTS),
    ("immich/.", HOME_DOTS), ("./immich", HOME_DOTS),
    (" /etc", HOME_SHAPE), (" ..", HOME_SHAPE), ("immich ", HOME_SHAPE), ("my photos", HOME_SHAPE),
    ("a\nb", HOME_SHAPE), ("a\tb", HOME_SHAPE), ("a\x00b", HOME_SHAPE), ("immich/", HOME_SHAPE),
    ("a//b", HOME_SHAPE), ("immich;rm", HOME_SHAPE), ("bücher", HOME_SHAPE), ("a\\b", HOME_SHAPE),
    ("~/immich", HOME_SHAPE), ("$HOME", HOME_SHAPE),
    ("", "home_directory must not be empty: name a directory below the box root, for example immich"),
])
def test_home_directory_refused_with_the_reason(path, problem):
    assert home_directory_problem(path) == problem
