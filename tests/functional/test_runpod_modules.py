"""The real RunPod modules, run by ansible-playbook against the fake RunPod API v2 (tests/fakes/runpod_api.py).

Lifecycle: template + load-balancing endpoint (the modules' own first EXAMPLES) created -> same play again
changes nothing and only reads -> workers_max raised with one PATCH -> check mode writes nothing -> both deleted.
Throughout: every request met the vendor's spec, and neither the API key nor a secret env value appears in the
-v --diff output.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import yaml
from ansible_collections.selfhost.immich.plugins.modules import runpod_endpoint, runpod_template
from ansible_collections.selfhost.immich.tests.fakes.runpod_api import FakeRunpod

REPO = Path(__file__).resolve().parents[2]
FAKE_SCRIPT = REPO / "tests" / "fakes" / "runpod_api.py"
HF_TOKEN = "hf_integration_secret_7f3a9c"


def example(module, **changes):
    """The first task of ``module``'s EXAMPLES with ``changes``: the play runs what the documentation shows."""
    task = yaml.safe_load(module.EXAMPLES)[0]
    options = task[f"selfhost.immich.{module.__name__.rsplit('.', 1)[-1]}"]
    options.update(changes.pop("options", {}))
    return dict(task, **changes)


TEMPLATE_TASK = example(runpod_template, when="state == 'present'")
TEMPLATE_TASK["selfhost.immich.runpod_template"]["env"]["HF_TOKEN"] = "{{ lookup('ansible.builtin.env', 'HF_TOKEN') }}"
ENDPOINT_TASK = example(runpod_endpoint, register="endpoint",
                        options={"state": "{{ state }}", "workers_max": "{{ workers_max | int }}"})
PLAY = yaml.safe_dump([{
    "name": "RunPod machine learning for Immich", "hosts": "localhost", "gather_facts": False,
    "module_defaults": {"group/selfhost.immich.runpod": {"api_timeout": 20}}, "vars": {"state": "present"},
    "tasks": [TEMPLATE_TASK, ENDPOINT_TASK, *yaml.safe_load("""
- name: Info
  selfhost.immich.runpod_endpoint_info:
    name: immich-ml
  register: info

- name: Endpoint and info agree
  ansible.builtin.assert:
    that:
      - info.endpoints | map(attribute='request_url') | list == [endpoint.request_url] | select | list
  when: not ansible_check_mode

- name: Template removed after its endpoint
  selfhost.immich.runpod_template:
    name: immich-ml
    state: absent
  when: state == 'absent'
""")],
}], sort_keys=False)


@dataclass
class Run:
    output: str
    changed: int


@pytest.fixture
def runpod():
    with FakeRunpod() as api:
        yield api
        assert api.response_problems == [], "answers of the fake that break the spec"


@pytest.fixture
def playbook(runpod, tmp_path):
    """playbook(workers_max=2, state="present", check=False) -> Run, asserting the play succeeded."""
    (tmp_path / "play.yml").write_text(PLAY)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(REPO / ".collections"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"), ANSIBLE_HOME=str(tmp_path / "home"),
               RUNPOD_API_URL=runpod.url, RUNPOD_API_KEY=runpod.api_key, HF_TOKEN=HF_TOKEN,
               NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    env.pop("ANSIBLE_CONFIG", None)

    def run(workers_max=2, state="present", check=False):
        command = [str(Path(sys.executable).parent / "ansible-playbook"), "-v", "--diff", "-i", "localhost,",
                   "-c", "local", "-e", f"ansible_python_interpreter={sys.executable}",
                   "-e", f"workers_max={workers_max}", "-e", f"state={state}", "play.yml"]
        if check:
            command.append("--check")
        done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        output = done.stdout + done.stderr
        assert done.returncode == 0, output
        recap = re.search(r"localhost\s*:\s*ok=\d+\s+changed=(\d+)\s+unreachable=0\s+failed=0", output)
        assert recap, output
        assert runpod.api_key not in output and HF_TOKEN not in output
        return Run(output, int(recap.group(1)))

    return run


def writes(api):
    return [(entry["method"], entry["path"], entry["body"]) for entry in api.writes]


def test_lifecycle_through_ansible_playbook(runpod, playbook):
    created = playbook(workers_max=2)
    assert created.changed == 2
    [endpoint], [template] = runpod.endpoints.values(), runpod.templates.values()
    assert endpoint["requestUrls"]["base"] == f"https://{endpoint['id']}.api.runpod.ai"
    assert endpoint["env"]["HF_TOKEN"] == HF_TOKEN and endpoint["workers"]["max"] == 2
    assert '"HF_TOKEN": "********"' in created.output or "HF_TOKEN: '********'" in created.output

    runpod.clear_log()
    runpod.fail_next(429, path="/v2/serverless")  # answered once, retried by the client
    again = playbook(workers_max=2)
    assert again.changed == 0
    assert writes(runpod) == []
    assert [entry["status"] for entry in runpod.log].count(429) == 1

    runpod.clear_log()
    raised = playbook(workers_max=4)
    assert raised.changed == 1
    assert writes(runpod) == [("PATCH", f"/v2/serverless/{endpoint['id']}", {"workers": {"max": 4}})]

    runpod.clear_log()
    checked = playbook(workers_max=6, check=True)
    assert checked.changed == 1
    assert writes(runpod) == []
    assert runpod.endpoints[endpoint["id"]]["workers"]["max"] == 4

    runpod.clear_log()
    deleted = playbook(state="absent")
    assert deleted.changed == 2
    assert writes(runpod) == [("DELETE", f"/v2/serverless/{endpoint['id']}", None),
                              ("DELETE", f"/v2/templates/{template['id']}", None)]
    assert runpod.endpoints == {} and runpod.templates == {}
    assert runpod.violations == []


# -- the fake itself ---------------------------------------------------------------------------
def test_fake_answers_in_the_spec_shapes(runpod):
    headers = {"Authorization": f"Bearer {runpod.api_key}"}

    def call(method, path, body=None, expect=200):
        answer = requests.request(method, runpod.url + path, json=body, headers=headers, timeout=10)
        assert answer.status_code == expect, answer.text
        # As the client received it (the fake checks its answers before sending them, too).
        runpod.contract.validate_response(method, "/v2" + path, answer.status_code, dict(answer.headers),
                                          answer.content)
        return answer.json() if answer.content else None

    template = call("POST", "/templates", {"name": "t", "image": "img", "serverless": True}, 201)
    call("GET", "/templates")
    call("GET", "/catalog/gpus")
    lb = call("POST", "/serverless", {"name": "lb", "type": "LOAD_BALANCER", "templateId": template["id"],
                                      "gpu": {"pools": ["ADA_24"]},
                                      "scaling": {"type": "REQUEST_COUNT", "requestCount": 1}}, 201)
    assert set(lb["requestUrls"]) == {"base", "health"}
    queue = call("POST", "/serverless", {"name": "q", "type": "QUEUE", "image": "img", "gpu": {"pools": ["ADA_24"]},
                                         "scaling": {"type": "QUEUE_DELAY", "queueDelay": 2}}, 201)
    assert "runSync" in queue["requestUrls"]
    call("GET", "/serverless")
    call("PATCH", f"/serverless/{lb['id']}", {"workers": {"max": 5}, "gpu": {"minCudaVersion": "12.2"}})
    call("GET", "/serverless/missing", expect=404)
    call("PATCH", f"/serverless/{lb['id']}", {"type": "QUEUE"}, expect=400)  # immutable: not in the update schema
    assert len(runpod.violations) == 1
    call("DELETE", f"/serverless/{queue['id']}", expect=204)
    runpod.fail_next(503)
    call("GET", "/serverless", expect=503)
    headers["Authorization"] = "Bearer wrong"
    call("GET", "/serverless", expect=401)


def test_fake_runs_as_a_process(tmp_path):
    """As the lab starts it: the key read from a file, so it never shows in ps (nor in the banner)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (tmp_path / "key").write_text("k\n")
    process = subprocess.Popen([sys.executable, str(FAKE_SCRIPT), "--port", str(port), "--token-file",
                                str(tmp_path / "key")], stdout=subprocess.PIPE, text=True)
    try:
        banner = f"fake RunPod API v2 at http://127.0.0.1:{port}/v2 (key: as given, not shown)"
        assert process.stdout.readline().strip() == banner
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 10
        while True:
            try:
                answer = requests.get(f"{base}/v2/serverless", headers={"Authorization": "Bearer k"}, timeout=2)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert answer.json() == {"endpoints": []}
        assert requests.post(f"{base}/_fake/fail_next", json={"status": 503}, timeout=2).status_code == 204
        failed = requests.get(f"{base}/v2/serverless", headers={"Authorization": "Bearer k"}, timeout=2)
        assert failed.status_code == 503
        log = requests.get(f"{base}/_fake/log", timeout=2).json()
        assert [entry["status"] for entry in log] == [200, 503]
        assert requests.get(f"{base}/_fake/violations", timeout=2).json() == []
    finally:
        process.terminate()
        process.wait(timeout=10)
