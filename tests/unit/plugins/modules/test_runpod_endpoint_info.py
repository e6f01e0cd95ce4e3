"""runpod_endpoint_info: reads only."""

from __future__ import annotations

from ansible_collections.selfhost.immich.plugins.modules import runpod_endpoint_info
from ansible_collections.selfhost.immich.tests.unit.utils.http_calls import Call
from ansible_collections.selfhost.immich.tests.unit.utils.runpod_calls import assert_no_secrets, endpoint, list_call, v2


def test_lists_endpoints_by_name_with_request_url(run_runpod):
    calls = [list_call("serverless", [endpoint(), endpoint(id="ep000002", name="other")])]
    result, session, _ = run_runpod(runpod_endpoint_info, {"name": "immich-ml"}, calls, check_mode=True)
    assert result["changed"] is False
    assert [(e["id"], e["request_url"]) for e in result["endpoints"]] == [("ep000001", "https://ep000001.api.runpod.ai")]
    assert_no_secrets(result)


def test_unknown_id_is_an_empty_list(run_runpod):
    calls = [Call("GET", v2("/serverless/nope")).returns(404, {"title": "Not Found", "status": 404, "detail": "no"})]
    result, _, _ = run_runpod(runpod_endpoint_info, {"id": "nope"}, calls)
    assert result["endpoints"] == []


def test_api_errors_fail_with_one_message(run_runpod):
    calls = [Call("GET", v2("/serverless")).returns(401, {"title": "Unauthorized", "status": 401,
                                                          "detail": "invalid api key"})]
    result, _, _ = run_runpod(runpod_endpoint_info, {}, calls, fails=True)
    assert result["msg"] == ("GET /serverless failed: 401 Unauthorized: invalid api key "
                             "(check the API token and its permissions)")
