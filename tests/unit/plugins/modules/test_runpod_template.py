"""runpod_template: the exact HTTP calls per situation."""

from __future__ import annotations

from ansible_collections.selfhost.immich.plugins.modules import runpod_template
from ansible_collections.selfhost.immich.tests.unit.utils.http_calls import Call
from ansible_collections.selfhost.immich.tests.unit.utils.runpod_calls import (
    HF_TOKEN,
    IMAGE,
    assert_no_secrets,
    list_call,
    template,
    v2,
)

ARGS = {"name": "immich-ml", "image": IMAGE, "env": {"PORT": 3003, "PORT_HEALTH": "3003", "HF_TOKEN": HF_TOKEN},
        "ports": ["3003/http"], "disk": 20}
CREATE_BODY = {"name": "immich-ml", "image": IMAGE, "ports": ["3003/http"], "disk": 20,
               "env": {"PORT": "3003", "PORT_HEALTH": "3003", "HF_TOKEN": HF_TOKEN},
               "serverless": True, "startJupyter": False, "startSsh": False}


def test_create_sends_serverless_without_jupyter_or_ssh(run_runpod):
    calls = [list_call("templates", []),
             Call("POST", v2("/templates"), body=CREATE_BODY).returns(201, template())]
    result, _, _ = run_runpod(runpod_template, ARGS, calls)
    assert (result["changed"], result["id"]) == (True, "tpl00001")
    assert result["template"]["env"] == {"PORT": "3003", "PORT_HEALTH": "3003", "HF_TOKEN": "********"}
    assert result["diff"]["after"]["env"]["HF_TOKEN"] == "********"
    assert_no_secrets(result)


def test_same_options_again_only_reads(run_runpod):
    result, session, _ = run_runpod(runpod_template, ARGS, [list_call("templates", [template()])])
    assert result["changed"] is False and session.writes == []


def test_changed_secret_is_patched_and_shown_masked(run_runpod):
    new_env = dict(CREATE_BODY["env"], HF_TOKEN="hf_rotated_value")
    calls = [list_call("templates", [template()]),
             Call("PATCH", v2("/templates/tpl00001"), body={"env": new_env}).returns(200, template(env=new_env))]
    result, _, _ = run_runpod(runpod_template, dict(ARGS, env=new_env), calls)
    assert result["changed"] is True
    assert result["diff"]["before"]["env"]["HF_TOKEN"] == "********"
    assert result["diff"]["after"]["env"]["HF_TOKEN"] == "******** (changed)"
    assert "hf_rotated_value" not in str(result)
    assert_no_secrets(result)


def test_check_mode_writes_nothing(run_runpod):
    calls = [list_call("templates", [template(startSsh=True)])]
    result, session, _ = run_runpod(runpod_template, dict(ARGS, image="other:1"), calls, check_mode=True)
    assert result["changed"] is True and session.writes == []
    assert (result["diff"]["after"]["image"], result["diff"]["after"]["startSsh"]) == ("other:1", False)


def test_unmanaged_fields_are_left_alone(run_runpod):
    calls = [list_call("templates", [template(args="--verbose", registry="reg00001")])]
    result, _, _ = run_runpod(runpod_template, {"name": "immich-ml", "image": IMAGE}, calls)
    assert result["changed"] is False


def test_absent_deletes(run_runpod):
    calls = [list_call("templates", [template()]), Call("DELETE", v2("/templates/tpl00001")).returns(204)]
    result, _, _ = run_runpod(runpod_template, {"name": "immich-ml", "state": "absent"}, calls)
    assert result["changed"] is True and result["id"] is None


def test_two_templates_with_the_name_fail_without_writing(run_runpod):
    calls = [list_call("templates", [template(), template(id="tpl00002")])]
    result, session, _ = run_runpod(runpod_template, ARGS, calls, fails=True)
    assert result["msg"] == ("2 templates are named 'immich-ml' (ids tpl00001, tpl00002): "
                             "rename or delete the extras, or use the id")
    assert session.writes == []


def test_image_is_required_when_present(run_runpod):
    result, session, _ = run_runpod(runpod_template, {"name": "immich-ml"}, [], fails=True)
    assert "image" in result["msg"] and session.sent == []
