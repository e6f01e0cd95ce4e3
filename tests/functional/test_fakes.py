"""The API fakes cannot hide a bug: an unmodelled operation is a 501 and a recorded problem, odd paging is refused
like the real API does, and a template still used by an endpoint cannot be deleted (400, as the spec says)."""

from __future__ import annotations

import copy
import json

import pytest
import requests
from ansible_collections.selfhost.immich.tests.fakes.base import TOKEN_FILE_ENV, argument_parser, token_of
from ansible_collections.selfhost.immich.tests.fakes.contract import spec_path
from ansible_collections.selfhost.immich.tests.fakes.hetzner_api import SPEC_FILE, HetznerFake
from ansible_collections.selfhost.immich.tests.fakes.runpod_api import FakeRunpod

SEED = {"storage_boxes": [{"id": 1, "name": "photos"}]}


def call(fake, method, path, body=None, token=None):
    headers = {"Authorization": f"Bearer {token or fake.token}"}
    return requests.request(method, fake.url + path, json=body, headers=headers, timeout=10)


def test_hetzner_unmodelled_operation_is_501_and_a_recorded_problem():
    with HetznerFake(SEED) as fake:
        answer = call(fake, "GET", "/storage_boxes/1/snapshots")  # in the spec, not modelled
        assert answer.status_code == 501
        assert answer.json()["error"]["code"] == "not_implemented"
        assert fake.response_problems == ["GET /v1/storage_boxes/1/snapshots is valid but not modelled by this fake"]
        assert fake.violations == []


def test_runpod_unmodelled_operation_is_501_and_a_recorded_problem():
    with FakeRunpod() as fake:
        answer = call(fake, "GET", "/pods")
        assert answer.status_code == 501
        assert fake.response_problems == ["GET /v2/pods is valid but not modelled by this fake"]


@pytest.mark.parametrize("query", ["per_page=0", "per_page=51", "page=0", "page=-3"])
def test_hetzner_paging_out_of_range_is_refused_not_a_crash(query):
    with HetznerFake(SEED) as fake:
        answer = call(fake, "GET", f"/storage_boxes?{query}")
        assert answer.status_code == 400
        assert answer.json()["error"]["code"] == "invalid_input"
        assert len(fake.violations) == 1 and fake.response_problems == []
        assert call(fake, "GET", "/storage_boxes?per_page=1").status_code == 200


def test_runpod_template_in_use_cannot_be_deleted():
    with FakeRunpod() as fake:
        template = call(fake, "POST", "/templates", {"name": "t", "image": "img", "serverless": True}).json()
        endpoint = call(fake, "POST", "/serverless", {
            "name": "lb", "type": "LOAD_BALANCER", "templateId": template["id"], "gpu": {"pools": ["ADA_24"]},
            "scaling": {"type": "REQUEST_COUNT", "requestCount": 1}}).json()
        refused = call(fake, "DELETE", f"/templates/{template['id']}")
        assert refused.status_code == 400
        assert f"in use by endpoint(s) {endpoint['id']}" in refused.json()["detail"]
        assert template["id"] in fake.templates
        assert call(fake, "DELETE", f"/serverless/{endpoint['id']}").status_code == 204
        assert call(fake, "DELETE", f"/templates/{template['id']}").status_code == 204
        assert fake.response_problems == [] and fake.violations == []


def test_hetzner_fake_works_with_the_full_api_spec(tmp_path, monkeypatch):
    """The full Hetzner API spec has more than the Storage Box paths, and servers per path: the fake keeps its own."""
    from ansible_collections.selfhost.immich.tests.fakes import base

    subset = json.loads(spec_path(SPEC_FILE).read_text())
    full = copy.deepcopy(subset)
    full["info"]["title"] = "Hetzner API"
    full["servers"] = [{"url": "https://api.hetzner.example/unrelated"}]
    full["paths"] = {"/zones": {"get": {"responses": {"200": {"description": "other API"}}},
                                "servers": [{"url": "https://api.hetzner.com/v1"}]}}
    for path, item in subset["paths"].items():
        full["paths"][path] = dict(item, servers=[{"url": "https://api.hetzner.com/v1"}])
    (tmp_path / SPEC_FILE).write_text(json.dumps(full))
    monkeypatch.setenv("SELFHOST_CONTRACTS_DIR", str(tmp_path))
    base.load_contract.cache_clear()
    try:
        with HetznerFake(SEED) as fake:
            assert fake.contract.path == tmp_path / SPEC_FILE
            assert call(fake, "GET", "/storage_boxes?name=photos").json()["storage_boxes"][0]["id"] == 1
            assert call(fake, "GET", "/zones").status_code == 404  # not a Storage Box path: refused, recorded
            assert fake.response_problems == [] and len(fake.violations) == 1
    finally:
        base.load_contract.cache_clear()


def test_missing_spec_fails_fast_with_one_line_naming_the_fix(tmp_path, monkeypatch):
    import time

    from ansible_collections.selfhost.immich.tests.fakes import contract

    monkeypatch.setattr(contract, "candidate_dirs", lambda: [tmp_path / "nothing"])
    monkeypatch.setattr(contract, "cache_dir", lambda: tmp_path / "cache")
    monkeypatch.setattr(contract, "manifest", lambda: {"x.json": {"url": "http://127.0.0.1:9/x.json"}})
    monkeypatch.setattr(contract, "_failed_downloads", {})
    started = time.monotonic()
    with pytest.raises(contract.ContractsMissing) as missing:
        contract.spec_path("x.json")
    assert time.monotonic() - started < 5
    message = str(missing.value)
    assert "\n" not in message
    assert "set SELFHOST_CONTRACTS_DIR" in message and "http://127.0.0.1:9/x.json" in message


def test_manifest_names_a_published_url_for_every_spec_the_fakes_use():
    from ansible_collections.selfhost.immich.tests.fakes.contract import manifest

    entries = manifest()
    for spec_file in (SPEC_FILE, FakeRunpod.spec_file):
        assert entries[spec_file]["url"].startswith("https://")
        assert isinstance(entries[spec_file]["confirmed"], bool)


def test_a_fake_run_as_a_process_takes_its_token_from_a_file(tmp_path, monkeypatch):
    """--token-file or $FAKE_API_TOKEN_FILE (how the lab starts the fakes, the token kept out of ps); the
    vendor's own option (--token, RunPod's --api-key) wins; neither: the fake's default token."""
    monkeypatch.delenv(TOKEN_FILE_ENV, raising=False)
    key = tmp_path / "key"
    key.write_text("rpa_lab_secret\n")

    def token(*argv, option="--token"):
        return token_of(argument_parser("fake", token_option=option).parse_args(argv))

    assert token("--token-file", str(key), option="--api-key") == "rpa_lab_secret"
    assert token("--api-key", "k", option="--api-key") == "k"
    assert token() is None
    monkeypatch.setenv(TOKEN_FILE_ENV, str(key))
    assert token() == "rpa_lab_secret"
    assert token("--token", "t") == "t"
    with pytest.raises(SystemExit):
        token("--token", "t", "--token-file", str(key))
    key.write_text(" \n")
    with pytest.raises(SystemExit, match="no token in"):
        token()
