"""Connection and URL-path hardening of the Hetzner and RunPod modules, run in-process through main().

- api_url: plain http:// only to a loopback address unless api_allow_http is set (the one connection option both
  vendors' modules get from _api.connection_argument_spec), refused before any call, the message naming the option.
- Values that end up in a URL path: RunPod ids are a closed alphabet, ids an API answers are made path-safe, and
  sub-account home directories are plain relative paths below the box root.
"""

from __future__ import annotations

import pytest
from ansible_collections.selfhost.immich.plugins.modules import (
    runpod_endpoint,
    runpod_endpoint_info,
    runpod_template,
    storagebox,
    storagebox_info,
    storagebox_subaccount,
)
from ansible_collections.selfhost.immich.tests.unit.utils.hetzner_calls import box, listing, subaccount
from ansible_collections.selfhost.immich.tests.unit.utils.http_calls import Call, ScriptedSession
from ansible_collections.selfhost.immich.tests.unit.utils.runpod_calls import (
    catalog_call,
    endpoint,
    list_call,
    template,
    v2,
)

REMOTE = "203.0.113.7"  # TEST-NET-3: never reached, the session is scripted
PLAIN_HTTP = (f"api_url uses plain http:// to {REMOTE}, which is not a loopback address: the API token would travel "
              "unencrypted. Use https://, or set api_allow_http=true to allow it (for test labs only)")
RUNPOD_ID = "id must be a RunPod id: lower-case letters and digits, with _ or - inside, at most 64 characters"


class UrlSession(ScriptedSession):
    """A scripted session that also records the full URL of each call (the base URL is under test here)."""

    def __init__(self, calls):
        super().__init__(calls)
        self.urls = []

    def request(self, method, url, **kwargs):
        self.urls.append(url)
        return super().request(method, url, **kwargs)


HETZNER_ARGS = {"name": "photos"}
HETZNER_READ = [Call("GET", "/v1/storage_boxes").returns(200, listing([box()])),
                Call("GET", "/v1/storage_boxes/1/subaccounts").returns(200, {"subaccounts": []})]


# -- api_url / api_allow_http ------------------------------------------------------------------
@pytest.mark.parametrize("module, args", [(storagebox_info, HETZNER_ARGS), (storagebox, {"id": 1}),
                                          (storagebox_subaccount, {"storagebox_id": 1, "name": "immich"})])
def test_hetzner_plain_http_to_a_remote_host_is_refused_before_any_call(run_hetzner, module, args):
    result, session, _ = run_hetzner(module, dict(args, api_url=f"http://{REMOTE}:18091/v1"), [], fails=True)
    assert result["msg"] == PLAIN_HTTP and session.sent == []
    assert (result["status"], result["code"]) == (None, "invalid_input")


@pytest.mark.parametrize("module, args", [(runpod_endpoint_info, {}), (runpod_template, {"name": "t", "image": "i"}),
                                          (runpod_endpoint, {"name": "e", "state": "absent"})])
def test_runpod_plain_http_to_a_remote_host_is_refused_before_any_call(run_runpod, module, args):
    result, session, _ = run_runpod(module, dict(args, api_url=f"http://{REMOTE}:18092/v2"), [], fails=True)
    assert result["msg"] == PLAIN_HTTP and session.sent == []


def test_hetzner_opt_in_allows_plain_http_to_a_remote_host(run_hetzner):
    session = UrlSession(HETZNER_READ)
    result, _, _ = run_hetzner(storagebox_info, dict(HETZNER_ARGS, api_url=f"http://{REMOTE}:18091/v1",
                                                     api_allow_http=True), session=session)
    assert result["storageboxes"][0]["name"] == "photos"
    base = f"http://{REMOTE}:18091/v1"
    assert session.urls == [f"{base}/storage_boxes", f"{base}/storage_boxes/1/subaccounts"]


def test_runpod_opt_in_allows_plain_http_to_a_remote_host(run_runpod):
    session = UrlSession([list_call("serverless", [endpoint()])])
    result, _, _ = run_runpod(runpod_endpoint_info, {"api_url": f"http://{REMOTE}:18092/v2", "api_allow_http": True},
                              session=session)
    assert [e["id"] for e in result["endpoints"]] == ["ep000001"]
    assert session.urls == [f"http://{REMOTE}:18092/v2/serverless"]


@pytest.mark.parametrize("url", ["http://127.0.0.1:18091/v1", "http://localhost:18091/v1", "http://[::1]:18091/v1"])
def test_plain_http_to_loopback_needs_no_opt_in(run_hetzner, url):
    session = UrlSession(HETZNER_READ)
    run_hetzner(storagebox_info, dict(HETZNER_ARGS, api_url=url), session=session)
    assert session.urls[0] == url + "/storage_boxes"


def test_the_opt_in_does_not_lift_the_other_url_rules(run_runpod):
    secret = "Mk7rUrlSecret"
    result, session, _ = run_runpod(runpod_endpoint_info, {"api_url": f"http://user:{secret}@{REMOTE}/v2",
                                                           "api_allow_http": True}, [], fails=True)
    assert result["msg"] == "api_url must not contain user credentials (user:password@): the token goes in api_token"
    assert secret not in str(result) and session.sent == []


def test_the_env_url_is_checked_too(run_runpod, monkeypatch):
    monkeypatch.setenv("RUNPOD_API_URL", f"http://{REMOTE}:18092/v2")
    result, session, _ = run_runpod(runpod_endpoint_info, {}, [], fails=True)
    assert result["msg"] == PLAIN_HTTP and session.sent == []


# -- RunPod ids in URL paths -------------------------------------------------------------------
@pytest.mark.parametrize("bad_id, shown", [
    ("..", ", got '..'"), (".", ", got '.'"), ("a/b", ", got 'a/b'"), ("../serverless", ", got '../serverless'"),
    ("ep%2F..", ", got 'ep%2F..'"), ("EP000001", ", got 'EP000001'"), ("ep 1", ", got 'ep 1'"), ("-ep", ", got '-ep'"),
    ("ep?x=1", ", got 'ep?x=1'"), ("ep\n", ""), ("a" * 65, f", got {'a' * 65!r}"),
])
def test_runpod_endpoint_id_is_a_closed_alphabet(run_runpod, bad_id, shown):
    result, session, _ = run_runpod(runpod_endpoint_info, {"id": bad_id}, [], fails=True)
    assert result["msg"] == RUNPOD_ID + shown and session.sent == []


@pytest.mark.parametrize("good_id", ["jpnw0v75y3qoql", "ep_abc123", "runpod-torch-v240", "a", "a" * 64])
def test_runpod_ids_of_the_real_alphabet_are_looked_up(run_runpod, good_id):
    calls = [Call("GET", v2(f"/serverless/{good_id}")).returns(200, endpoint(id=good_id))]
    result, _, _ = run_runpod(runpod_endpoint_info, {"id": good_id}, calls)
    assert [e["id"] for e in result["endpoints"]] == [good_id]


@pytest.mark.parametrize("ref", ["..", "../templates", "a/b", "My Template"])
def test_a_template_that_is_no_id_is_never_put_in_a_url(run_runpod, ref):
    """Not found by name: looked up by id only if it is one (before, '..' sent GET /v2/templates/.. = /v2/)."""
    args = {"name": "e", "type": "LOAD_BALANCER", "template": ref, "gpu_pools": ["ADA_24"]}
    calls = [list_call("serverless", []), catalog_call(), list_call("templates", [template()])]
    result, session, _ = run_runpod(runpod_endpoint, args, calls, fails=True)
    assert result["msg"] == f"template {ref!r} not found (looked for it by name and id)"
    assert [s[1] for s in session.sent] == ["/v2/serverless", "/v2/catalog/gpus", "/v2/templates"]


def test_template_with_a_line_break_is_refused_before_any_call(run_runpod):
    args = {"name": "e", "type": "LOAD_BALANCER", "template": "immich-ml\n", "gpu_pools": ["ADA_24"]}
    result, session, _ = run_runpod(runpod_endpoint, args, [], fails=True)
    assert result["msg"] == "template must not have surrounding whitespace, line breaks or control characters"
    assert session.sent == []


def test_an_id_the_api_answers_cannot_redirect_a_write(run_runpod):
    calls = [list_call("serverless", [endpoint(id="..")])]
    result, session, _ = run_runpod(runpod_endpoint, {"name": "immich-ml", "state": "absent"}, calls, fails=True)
    assert result["msg"] == "RunPod id '..' cannot be used in a URL path"
    assert session.writes == []


# -- Storage Box home directory ----------------------------------------------------------------
@pytest.mark.parametrize("home", ["./.", " /etc", " ..", "a/../b", ".", "immich/", "my photos", "a\nb"])
def test_home_directory_outside_the_closed_pattern_is_refused_before_any_call(run_hetzner, home):
    args = {"storagebox_id": 1, "name": "immich", "home_directory": home, "password": "Valid-Passw0rd!"}
    result, session, _ = run_hetzner(storagebox_subaccount, args, [], fails=True)
    assert result["msg"].startswith("home_directory must") and session.sent == []


def test_a_sub_account_id_the_api_answers_cannot_redirect_a_write(run_hetzner):
    calls = [Call("GET", "/storage_boxes/1/subaccounts").returns(200, {"subaccounts": [subaccount(id="..")]})]
    result, session, _ = run_hetzner(storagebox_subaccount, {"storagebox_id": 1, "name": "immich", "state": "absent"},
                                     calls, fails=True)
    assert result["msg"] == "sub-account id '..' cannot be used in a URL path"
    assert session.writes == []
