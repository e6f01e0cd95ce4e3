"""runpod_endpoint_info: reads only (harness in test_runpod_endpoint.py)."""

from __future__ import annotations

from ansible_collections.selfhost.immich.plugins.modules import runpod_endpoint_info
from http_calls import Call
from test_runpod_endpoint import assert_no_secrets, endpoint, list_call, run_module, v2

__all__ = ["run_module"]  # the fixture, imported so pytest finds it here


def test_lists_endpoints_by_name_with_request_url(run_module):
    calls = [list_call("serverless", [endpoint(), endpoint(id="ep000002", name="other")])]
    result, session, _ = run_module(runpod_endpoint_info, {"name": "immich-ml"}, calls, check_mode=True)
    assert result["changed"] is False
    assert [(e["id"], e["request_url"]) for e in result["endpoints"]] == [("ep000001", "https://ep000001.api.runpod.ai")]
    assert_no_secrets(result)


def test_unknown_id_is_an_empty_list(run_module):
    calls = [Call("GET", v2("/serverless/nope")).returns(404, {"title": "Not Found", "status": 404, "detail": "no"})]
    result, _, _ = run_module(runpod_endpoint_info, {"id": "nope"}, calls)
    assert result["endpoints"] == []


def test_api_errors_fail_with_one_message(run_module):
    calls = [Call("GET", v2("/serverless")).returns(401, {"title": "Unauthorized", "status": 401,
                                                          "detail": "invalid api key"})]
    result, _, _ = run_module(runpod_endpoint_info, {}, calls)
    assert result["msg"] == ("GET /serverless failed: 401 Unauthorized: invalid api key "
                             "(check the API token and its permissions)")
