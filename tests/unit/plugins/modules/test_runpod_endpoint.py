"""runpod_endpoint: the exact HTTP calls per situation, run in-process through main()."""

from __future__ import annotations

import pytest
from ansible_collections.selfhost.immich.plugins.modules import runpod_endpoint
from ansible_collections.selfhost.immich.tests.unit.utils.http_calls import Call
from ansible_collections.selfhost.immich.tests.unit.utils.runpod_calls import (
    IMAGE,
    assert_no_secrets,
    catalog_call,
    endpoint,
    list_call,
    template,
    v2,
)

ARGS = {
    "name": "immich-ml", "type": "LOAD_BALANCER", "template": "immich-ml", "gpu_pools": ["ADA_24", "AMPERE_24"],
    "min_cuda_version": "12.2", "workers_min": 0, "workers_max": 2, "idle_timeout": 60,
    "scaling": {"type": "REQUEST_COUNT", "value": 4}, "flashboot": "FLASHBOOT",
}

#: The GETs every present run makes, in order.
READS = [lambda current: list_call("serverless", current), lambda _: catalog_call(),
         lambda _: list_call("templates", [template()])]


def reads(current):
    return [make(current) for make in READS]


# -- tests -----------------------------------------------------------------------------------
def test_create_from_template_posts_the_whole_endpoint_once(run_runpod):
    post = Call("POST", v2("/serverless"), body={
        "name": "immich-ml", "type": "LOAD_BALANCER", "templateId": "tpl00001",
        "gpu": {"pools": ["ADA_24", "AMPERE_24"], "minCudaVersion": "12.2"},
        "workers": {"min": 0, "max": 2, "idleTimeout": 60},
        "scaling": {"type": "REQUEST_COUNT", "requestCount": 4}, "flashboot": "FLASHBOOT",
    }).returns(201, endpoint())
    result, session, _ = run_runpod(runpod_endpoint, ARGS, reads([]) + [post])
    assert result["changed"] is True
    assert result["id"] == "ep000001"
    assert result["request_url"] == "https://ep000001.api.runpod.ai"
    assert result["endpoint"]["env"]["HF_TOKEN"] == "********"
    assert result["diff"]["before"] == {}
    assert_no_secrets(result)


def test_same_options_again_only_reads(run_runpod):
    result, session, _ = run_runpod(runpod_endpoint, ARGS, reads([endpoint()]))
    assert result["changed"] is False
    assert session.writes == []
    assert result["request_url"] == "https://ep000001.api.runpod.ai"


def test_workers_max_change_patches_only_that_field(run_runpod):
    patch = Call("PATCH", v2("/serverless/ep000001"), body={"workers": {"max": 5}}).returns(
        200, endpoint(workers={"min": 0, "max": 5, "idleTimeout": 60}))
    result, session, _ = run_runpod(runpod_endpoint, dict(ARGS, workers_max=5), reads([endpoint()]) + [patch])
    assert result["changed"] is True
    assert session.writes == [("PATCH", v2("/serverless/ep000001"), {"workers": {"max": 5}})]
    assert result["diff"]["before"]["workers"]["max"] == 2
    assert result["diff"]["after"]["workers"]["max"] == 5


def test_check_mode_reports_the_change_and_writes_nothing(run_runpod):
    result, session, _ = run_runpod(runpod_endpoint, dict(ARGS, workers_max=5), reads([endpoint()]), check_mode=True)
    assert result["changed"] is True
    assert session.writes == []
    assert result["diff"]["after"]["workers"] == {"min": 0, "max": 5, "idleTimeout": 60}


def test_check_mode_create_writes_nothing(run_runpod):
    result, session, _ = run_runpod(runpod_endpoint, ARGS, reads([]), check_mode=True)
    assert (result["changed"], result["id"], session.writes) == (True, None, [])
    assert result["diff"]["after"]["image"] == IMAGE


def test_template_drift_is_patched_on_the_endpoint(run_runpod):
    newer = IMAGE.replace("v3.2.4", "v3.2.5")
    calls = [list_call("serverless", [endpoint()]), catalog_call(), list_call("templates", [template(image=newer)]),
             Call("PATCH", v2("/serverless/ep000001"), body={"image": newer}).returns(200, endpoint(image=newer))]
    result, _, _ = run_runpod(runpod_endpoint, ARGS, calls)
    assert result["changed"] is True


def test_changing_pools_restates_the_excluded_types(run_runpod):
    current = endpoint(gpu={"pools": ["ADA_48_PRO"], "excludedTypes": ["NVIDIA L40"], "count": 1,
                            "allowedCudaVersions": [], "minCudaVersion": "12.2"})
    body = {"gpu": {"pools": ["ADA_48_PRO", "AMPERE_48"], "excludedTypes": ["NVIDIA L40"]}}
    calls = reads([current]) + [Call("PATCH", v2("/serverless/ep000001"), body=body).returns(200, current)]
    run_runpod(runpod_endpoint, dict(ARGS, gpu_pools=["ADA_48_PRO", "AMPERE_48"]), calls)


def test_empty_min_cuda_version_clears_the_floor(run_runpod):
    calls = reads([endpoint()]) + [
        Call("PATCH", v2("/serverless/ep000001"), body={"gpu": {"minCudaVersion": ""}}).returns(200, endpoint())]
    result, _, _ = run_runpod(runpod_endpoint, dict(ARGS, min_cuda_version=""), calls)
    assert result["changed"] is True


def test_type_change_is_refused_before_any_write(run_runpod):
    queue = endpoint(type="QUEUE", scaling={"type": "QUEUE_DELAY", "queueDelay": 4})
    result, session, _ = run_runpod(runpod_endpoint, ARGS, reads([queue]), fails=True)
    assert result["failed"] is True
    assert "type is immutable" in result["msg"] and "force=true" in result["msg"]
    assert session.writes == []


def test_type_change_with_force_deletes_and_creates(run_runpod):
    queue = endpoint(id="old00001", type="QUEUE", scaling={"type": "QUEUE_DELAY", "queueDelay": 4})
    calls = reads([queue]) + [Call("DELETE", v2("/serverless/old00001")).returns(204),
                              Call("POST", v2("/serverless")).returns(201, endpoint())]
    result, session, _ = run_runpod(runpod_endpoint, dict(ARGS, force=True), calls)
    assert (result["changed"], result["id"]) == (True, "ep000001")
    assert [w[0] for w in session.writes] == ["DELETE", "POST"]


def test_unknown_gpu_pool_fails_listing_the_valid_ones(run_runpod):
    calls = [list_call("serverless", []), catalog_call()]
    result, _, _ = run_runpod(runpod_endpoint, dict(ARGS, gpu_pools=["ADA_24", "TPU_9000"]), calls, fails=True)
    assert result["failed"] is True
    assert result["msg"] == ("unknown GPU pool(s) TPU_9000; valid pools: ADA_24, ADA_48_PRO, AMPERE_16, "
                             "AMPERE_24, AMPERE_48, AMPERE_80")


@pytest.mark.parametrize("change, message", [
    ({"workers_min": 3, "workers_max": 2}, "workers_min (3) must not exceed workers_max (2)"),
    ({"idle_timeout": 0}, "idle_timeout must be between 1 and 3600 seconds, got 0"),
    ({"scaling": {"type": "QUEUE_DELAY", "value": 4}}, "a LOAD_BALANCER endpoint scales on REQUEST_COUNT"),
    ({"type": "QUEUE", "scaling": {"type": "REQUEST_COUNT", "value": 4}},
     "idle_timeout does not apply to a QUEUE endpoint scaling on REQUEST_COUNT"),
    ({"scaling": {"type": "REQUEST_COUNT", "value": 0.5}}, "a whole number from 1 to 1000"),
    ({"min_cuda_version": "12"}, "min_cuda_version must look like 12.2"),
])
def test_bad_input_fails_before_any_call(run_runpod, change, message):
    result, session, _ = run_runpod(runpod_endpoint, dict(ARGS, **change), [], fails=True)
    assert result["failed"] is True
    assert message in result["msg"]
    assert session.sent == []


def test_workers_min_above_the_current_max_fails_before_any_write(run_runpod):
    result, session, _ = run_runpod(runpod_endpoint, dict(ARGS, workers_min=3, workers_max=None), reads([endpoint()]),
                                    fails=True)
    assert result["msg"] == "workers_min (3) must not exceed workers_max (2)"
    assert session.writes == []


def test_queue_endpoint_may_scale_on_request_count(run_runpod):
    args = dict(ARGS, name="jobs", type="QUEUE", template=None, image="worker:1", idle_timeout=None,
                scaling={"type": "REQUEST_COUNT", "value": 2})
    body = {"name": "jobs", "type": "QUEUE", "image": "worker:1",
            "gpu": {"pools": ["ADA_24", "AMPERE_24"], "minCudaVersion": "12.2"}, "workers": {"min": 0, "max": 2},
            "scaling": {"type": "REQUEST_COUNT", "requestCount": 2}, "flashboot": "FLASHBOOT"}
    calls = [list_call("serverless", []), catalog_call(), Call("POST", v2("/serverless"), body=body).returns(
        201, endpoint(name="jobs", type="QUEUE", requestUrls={}))]
    result, _, _ = run_runpod(runpod_endpoint, args, calls)
    assert result["changed"] is True and result["request_url"] is None


def test_missing_api_key_fails_before_any_call(run_runpod):
    result, session, _ = run_runpod(runpod_endpoint, dict(ARGS, api_token=None), [], fails=True)
    assert "missing required arguments: api_token" in result["msg"]
    assert session.sent == []


def test_rfc9457_error_becomes_one_clear_message(run_runpod):
    problem = {"title": "Unprocessable Entity", "status": 422, "detail": "Request validation failed.",
               "errors": ["$.gpu.count: must be >= 1"]}
    calls = reads([]) + [Call("POST", v2("/serverless")).returns(422, problem)]
    result, _, _ = run_runpod(runpod_endpoint, ARGS, calls, fails=True)
    assert result["msg"] == ("POST /serverless failed: 422 Unprocessable Entity: Request validation failed. "
                             "($.gpu.count: must be >= 1)")


def test_rate_limit_and_server_errors_are_retried(run_runpod):
    calls = [Call("GET", v2("/serverless")).returns(429, {"title": "Too Many Requests", "status": 429,
                                                          "detail": "slow down"}, {"Retry-After": "7"}),
             Call("GET", v2("/serverless")).returns(503, None)] + reads([endpoint()])
    result, _, sleeps = run_runpod(runpod_endpoint, ARGS, calls)
    assert result["changed"] is False
    assert sleeps == [7.0, 2.0]


def test_absent_deletes_and_then_has_nothing_to_do(run_runpod):
    args = {"name": "immich-ml", "state": "absent"}
    calls = [list_call("serverless", [endpoint()]), Call("DELETE", v2("/serverless/ep000001")).returns(204)]
    result, _, _ = run_runpod(runpod_endpoint, args, calls)
    assert (result["changed"], result["endpoint"], result["diff"]["after"]) == (True, {}, {})
    result, session, _ = run_runpod(runpod_endpoint, args, [list_call("serverless", [])])
    assert result["changed"] is False and session.writes == []


def test_template_missing_in_check_mode_warns_instead_of_failing(run_runpod):
    calls = [list_call("serverless", []), catalog_call(), list_call("templates", []),
             Call("GET", v2("/templates/immich-ml")).returns(
                 404, {"title": "Not Found", "status": 404, "detail": "template not found"})]
    result, session, _ = run_runpod(runpod_endpoint, ARGS, calls, check_mode=True)
    assert result["changed"] is True and session.writes == []
    assert "does not exist yet" in result["warnings"][0]


@pytest.mark.parametrize("templates, lookup, message", [
    ([], Call("GET", v2("/templates/immich-ml")).returns(404, {"title": "Not Found", "status": 404, "detail": "no"}),
     "template 'immich-ml' not found (looked for it by name and id)"),
    ([template(serverless=False)], None, "template 'immich-ml' is not a serverless template; endpoints need one"),
])
def test_unusable_template_fails_before_any_write(run_runpod, templates, lookup, message):
    calls = [list_call("serverless", []), catalog_call(), list_call("templates", templates)]
    calls += [lookup] if lookup else []
    result, session, _ = run_runpod(runpod_endpoint, ARGS, calls, fails=True)
    assert result["msg"] == message and session.writes == []


def test_template_given_by_id_is_found_in_the_list(run_runpod):
    calls = [list_call("serverless", [endpoint()]), catalog_call(), list_call("templates", [template()])]
    result, _, _ = run_runpod(runpod_endpoint, dict(ARGS, template="tpl00001"), calls)
    assert result["changed"] is False


@pytest.mark.parametrize("kind, scaling", [
    ("LOAD_BALANCER", {"type": "REQUEST_COUNT", "requestCount": 1}),
    ("QUEUE", {"type": "QUEUE_DELAY", "queueDelay": 4}),
])
def test_scaling_defaults_by_type_on_create(run_runpod, kind, scaling):
    args = {k: v for k, v in ARGS.items() if k not in ("scaling", "idle_timeout")}
    post = Call("POST", v2("/serverless"), body={
        "name": "immich-ml", "type": kind, "templateId": "tpl00001",
        "gpu": {"pools": ["ADA_24", "AMPERE_24"], "minCudaVersion": "12.2"},
        "workers": {"min": 0, "max": 2}, "scaling": scaling, "flashboot": "FLASHBOOT",
    }).returns(201, endpoint(type=kind, scaling=scaling))
    result, session, _ = run_runpod(runpod_endpoint, dict(args, type=kind), reads([]) + [post])
    assert result["changed"] is True
    assert session.writes[-1][2]["scaling"] == scaling


def test_unset_scaling_keeps_the_existing_one(run_runpod):
    args = {k: v for k, v in ARGS.items() if k != "scaling"}
    result, session, _ = run_runpod(runpod_endpoint, args, reads([endpoint()]))
    assert (result["changed"], session.writes) == (False, [])


def test_every_failure_has_msg_status_and_code(run_runpod):
    refused, _, _ = run_runpod(runpod_endpoint, dict(ARGS, workers_min=-1), [], fails=True)
    assert (refused["status"], refused["code"]) == (None, "invalid_input")
    calls = [Call("GET", v2("/serverless")).returns(403, {"title": "Forbidden", "status": 403, "detail": "no"})]
    denied, _, _ = run_runpod(runpod_endpoint, ARGS, calls, fails=True)
    assert (denied["status"], denied["code"]) == (403, "403 Forbidden")
    assert denied["msg"].startswith("GET /serverless failed: 403 Forbidden: no")
