"""_runpod: the RunPod v2 client (errors, wrapped lists, lookup, retries), container bodies and masked views."""

from __future__ import annotations

import pytest
from ansible_collections.selfhost.immich.plugins.module_utils._api import ApiError
from ansible_collections.selfhost.immich.plugins.module_utils._runpod import (
    RunpodClient,
    container_body,
    public_view,
    request_url,
)
from ansible_collections.selfhost.immich.tests.unit.utils.http_calls import Call, scripted_client

BASE = "https://api.runpod.io/v2"


def client(calls):
    """(client, session, sleeps)"""
    return scripted_client(RunpodClient, BASE, calls)


@pytest.mark.parametrize("body, message", [
    ({"title": "Unprocessable Entity", "status": 422, "detail": "Request validation failed.",
      "errors": ["$: additional properties 'bogus' not allowed", "$.name: too short"]},
     "PATCH /serverless/e1 failed: 422 Unprocessable Entity: Request validation failed. "
     "($: additional properties 'bogus' not allowed; $.name: too short)"),
    ({"title": "Bad Request", "status": 400, "detail": "allowedCudaVersions and minCudaVersion are exclusive"},
     "PATCH /serverless/e1 failed: 400 Bad Request: allowedCudaVersions and minCudaVersion are exclusive"),
    ({"title": "Bad Request", "status": 400}, "PATCH /serverless/e1 failed: 400 Bad Request: Bad Request"),
    ("upstream gateway said no", "PATCH /serverless/e1 failed: 400: upstream gateway said no"),
])
def test_rfc9457_bodies_become_one_line(body, message):
    status = body["status"] if isinstance(body, dict) else 400
    api, _, _ = client([Call("PATCH", "/v2/serverless/e1").returns(status, body)])
    with pytest.raises(ApiError) as error:
        api.request("PATCH", "/serverless/e1", {"name": "x"})
    assert str(error.value) == message


def test_lists_are_unwrapped_and_found_by_name():
    items = [{"id": "a", "name": "one"}, {"id": "b", "name": "two"}]
    api, session, _ = client([Call("GET", "/v2/serverless").returns(200, {"endpoints": items}),
                              Call("GET", "/v2/templates").returns(200, {"templates": []})])
    assert api.find("serverless", "two") == items[1]
    assert api.find("templates", "two") is None
    session.assert_done()


def test_duplicate_names_are_refused():
    items = [{"id": "a", "name": "x"}, {"id": "b", "name": "x"}]
    api, _, _ = client([Call("GET", "/v2/serverless").returns(200, {"endpoints": items})])
    with pytest.raises(ApiError, match="2 endpoints are named 'x' \\(ids a, b\\)"):
        api.find("serverless", "x")


def test_429_and_5xx_are_retried_with_backoff_then_reported():
    calls = [Call("GET", "/v2/catalog/gpus").returns(429, None, {"Retry-After": "3"})]
    calls += [Call("GET", "/v2/catalog/gpus").returns(503, None) for _ in range(5)]
    api, session, sleeps = client(calls)
    with pytest.raises(ApiError, match="GET /catalog/gpus failed: 503: no body \\(gave up after 6 attempts\\)"):
        api.gpu_types()
    assert sleeps == [3.0, 2.0, 4.0, 8.0, 16.0]
    session.assert_done()


def test_container_body_keeps_only_given_settings_as_strings():
    params = {"image": "img", "args": None, "env": {"PORT": 3003, "FLAG": True, "EMPTY": None}, "ports": None,
              "disk": None, "registry": None}
    assert container_body(params) == {"image": "img", "env": {"PORT": "3003", "FLAG": "True", "EMPTY": ""}}


class _Module:
    def __init__(self):
        self.no_log_values = set()


def test_public_view_masks_secret_env_and_registers_it_for_no_log():
    module = _Module()
    before = {"env": {"HF_TOKEN": "old", "DB_PASSWORD": "same", "PORT": "3003"}}
    after = {"env": {"HF_TOKEN": "new", "DB_PASSWORD": "same", "PORT": "3003"}}
    assert public_view(module, after, before)["env"] == {
        "HF_TOKEN": "******** (changed)", "DB_PASSWORD": "********", "PORT": "3003"}
    assert module.no_log_values == {"new", "same"}
    assert after["env"]["HF_TOKEN"] == "new"  # the resource itself is untouched
    assert public_view(module, None) == {}


def test_request_url_is_the_load_balancer_base():
    assert request_url({"requestUrls": {"base": "https://x.api.runpod.ai", "health": "..."}}) == "https://x.api.runpod.ai"
    assert request_url({"requestUrls": {"runSync": "https://api.runpod.ai/v2/x/runsync"}}) is None
    assert request_url(None) is None
