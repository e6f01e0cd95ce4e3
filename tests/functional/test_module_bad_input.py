"""The modules' bad-input corpus: hostile input through every module, as ansible-playbook runs it against the API
fakes (the roles' corpus is test_role_bad_input.py).

- The corpus (CORPUS): malformed options per module, each refused before any HTTP call (the fakes log nothing),
  with a message naming the option, no traceback and no retry (well under 5 s each).
- The marker-secret sweep: marker tokens (valid, with a trailing newline, non-ASCII, with a leading blank),
  passwords and secret env values (trailing newline, non-ASCII) through every module at -vvv --diff, writes,
  reruns, check mode and failures included: the marker appears nowhere in the output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from ansible_collections.selfhost.immich.tests.fakes.hetzner_api import HetznerFake
from ansible_collections.selfhost.immich.tests.fakes.network import non_loopback_address
from ansible_collections.selfhost.immich.tests.fakes.runpod_api import FakeRunpod

REPO = Path(__file__).resolve().parents[2]
MARKER = "Mk7rSwp"  # every secret below contains it; the output must not
TOKEN = MARKER + "Tok-0001"
BAD_TOKENS = (MARKER + "Tok-nl\n", MARKER + "Tök-ü", " " + MARKER + "Tok-sp", MARKER + "Tok-crlf\r\n")
PASSWORDS = (MARKER + "Pw-Secret1!", MARKER + "PwÄö-Secret2!")
SECRET_ENV = {"DB_PASS": MARKER + "Db", "AUTH_HEADER": MARKER + "Auth", "HF_TOKEN": MARKER + "Hf\n",
              "SENTRY_DSN": MARKER + "Dsnü", "PGPWD": MARKER + "Pwd", "AWS_CREDENTIALS": MARKER + "Cred"}
SEED = {"storage_boxes": [{"id": 1, "name": "photos"}]}

#: Valid options of each module (the corpus breaks one thing at a time).
VALID = {
    "storagebox": {"name": "photos"},
    "storagebox_subaccount": {"storagebox_id": 1, "name": "immich", "home_directory": "immich",
                              "password": "Valid-Passw0rd!"},
    "storagebox_info": {},
    "runpod_template": {"name": "immich-ml", "image": "ghcr.io/immich-app/ml:v3"},
    "runpod_endpoint": {"name": "immich-ml", "type": "LOAD_BALANCER", "image": "ghcr.io/immich-app/ml:v3",
                        "gpu_pools": ["ADA_24"]},
    "runpod_endpoint_info": {},
}
CONNECTION = [({"api_token": "tok\n"}, "api_token"), ({"api_token": "tök"}, "api_token"),
              ({"api_url": "api.example.com/v1"}, "api_url"), ({"api_timeout": 0}, "api_timeout")]
CORPUS = {
    "storagebox": CONNECTION + [
        ({"name": ""}, "name"), ({"name": "a\nb"}, "name"), ({"id": 0, "name": None}, "id"),
        ({"labels": {"a": {"b": "c"}}}, "labels"),
        ({"snapshot_plan": {"max_snapshots": 7, "minute": 99, "hour": 2}}, "snapshot_plan.minute"),
        ({"snapshot_plan": {"max_snapshots": 7, "minute": 0, "hour": 25}}, "snapshot_plan.hour"),
        ({"snapshot_plan": {"max_snapshots": 0, "minute": 0, "hour": 2}}, "snapshot_plan.max_snapshots"),
        ({"snapshot_plan": {"max_snapshots": 7, "minute": 0, "hour": 2, "day_of_week": 8}},
         "snapshot_plan.day_of_week"),
        ({"api_url": "http://203.0.113.7:18091/v1"}, "api_url"),  # plain http off this machine: token in clear
        ({"api_url": "http://localhost.example.com/v1"}, "api_url"),
        ({"storage_box_type": "bx 11"}, "storage_box_type"), ({"location": "fsn1\n"}, "location"),
        ({"password": MARKER + "short"}, "password"), ({"password": MARKER + "NoSpecialChar"}, "password"),
        ({"ssh_keys": ["-----BEGIN OPENSSH PRIVATE KEY-----"]}, "ssh_keys[0]"),
        ({"ssh_keys": ["ssh-ed25519 AAAA\nssh-rsa BBBB"]}, "ssh_keys[0]"),
        ({"state": "absent"}, "confirm_name"), ({"state": "absent", "confirm_name": "photo"}, "confirm_name")],
    "storagebox_subaccount": CONNECTION + [
        ({"home_directory": ".."}, "home_directory"), ({"home_directory": "../"}, "home_directory"),
        ({"home_directory": "a/../../b"}, "home_directory"), ({"home_directory": "/immich"}, "home_directory"),
        ({"home_directory": "a\nb"}, "home_directory"), ({"name": ""}, "name"), ({"name": "x\n"}, "name"),
        ({"password": "short"}, "password"), ({"storagebox_id": -1}, "storagebox_id"),
        ({"description": "a\nb"}, "description"),
        ({"home_directory": "./."}, "home_directory"), ({"home_directory": " /etc"}, "home_directory"),
        ({"home_directory": " .."}, "home_directory"), ({"home_directory": "a/../b"}, "home_directory"),
        ({"api_url": "https://api.example.com/v1\nX-Injected: 1"}, "api_url")],
    "storagebox_info": CONNECTION + [
        ({"name": ""}, "name"), ({"name": "a\nb"}, "name"), ({"id": 0}, "id"),
        ({"label_selector": ""}, "label_selector"), ({"label_selector": "a=b\n"}, "label_selector"),
        ({"api_url": "ftp://api.example.com"}, "api_url"),
        ({"api_url": f"https://user:{MARKER}Url@api.example.com/v1"}, "api_url")],
    "runpod_template": CONNECTION + [
        ({"name": ""}, "name"), ({"name": "a\n"}, "name"), ({"image": "img\n"}, "image"),
        ({"image": "has space"}, "image"), ({"ports": ["junk"]}, "ports"), ({"ports": ["70000/http"]}, "ports"),
        ({"disk": -1}, "disk"), ({"env": {"A": {"nested": 1}}}, "env.A"), ({"env": {"BAD-NAME": "x"}}, "env"),
        ({"args": "a\nrm -rf /"}, "args"),
        ({"api_url": "http://203.0.113.7:18092/v2"}, "api_url"), ({"api_url": "ftp://api.example.com/v2"}, "api_url")],
    "runpod_endpoint": CONNECTION + [
        ({"workers_min": -1}, "workers_min"), ({"idle_timeout": 0}, "idle_timeout"),
        ({"min_cuda_version": "12.2\n"}, "min_cuda_version"),
        ({"type": "QUEUE", "scaling": {"type": "QUEUE_DELAY", "value": "inf"}}, "scaling.value"),
        ({"type": "QUEUE", "scaling": {"type": "QUEUE_DELAY", "value": "nan"}}, "scaling.value"),
        ({"scaling": {"type": "REQUEST_COUNT", "value": 0}}, "scaling.value"), ({"gpu_pools": []}, "gpu_pools"),
        ({"gpu_pools": ["ADA_24\n"]}, "gpu_pools"), ({"disk": 0}, "disk"), ({"ports": ["3003"]}, "ports"),
        ({"env": {"PORT": ["3003"]}}, "env.PORT"), ({"timeout": 0}, "timeout"), ({"gpu_count": 0}, "gpu_count"),
        ({"name": " immich-ml"}, "name"),
        ({"api_url": f"http://{MARKER}Url@127.0.0.1/v2"}, "api_url"), ({"template": "immich-ml\n"}, "template")],
    "runpod_endpoint_info": CONNECTION + [
        ({"name": ""}, "name"), ({"name": "a\n"}, "name"), ({"id": ""}, "id"), ({"id": "a/b"}, "id"),
        ({"id": "x\n"}, "id"), ({"api_url": "https://api.example.com/v2?x=1"}, "api_url"),
        ({"id": ".."}, "id"), ({"id": "../serverless"}, "id"), ({"id": "ep/.."}, "id"), ({"id": "%2e%2e"}, "id"),
        ({"api_url": "http://[2001:db8::1]:18092/v2"}, "api_url")],
}


@pytest.fixture
def fakes():
    with HetznerFake(SEED, token=TOKEN) as hetzner, FakeRunpod(api_key=TOKEN) as runpod:
        yield hetzner, runpod
        for fake in (hetzner, runpod):
            assert fake.violations == [] and fake.response_problems == []


def run_playbook(tmp_path: Path, fakes, tasks: list[dict], *options: str, json_output: bool = False):
    hetzner, runpod = fakes
    playbook = tmp_path / "play.yml"
    playbook.write_text(json.dumps([{"hosts": "localhost", "gather_facts": False, "tasks": tasks}]))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "HETZNER_", "HCLOUD_", "RUNPOD_"))}
    env.update(ANSIBLE_COLLECTIONS_PATH=str(REPO / ".collections"), ANSIBLE_LOCALHOST_WARNING="false",
               ANSIBLE_INVENTORY_UNPARSED_WARNING="false", ANSIBLE_NOCOLOR="1", ANSIBLE_HOME=str(tmp_path / "home"),
               ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"), HETZNER_API_URL=hetzner.url, RUNPOD_API_URL=runpod.url,
               HETZNER_API_TOKEN=TOKEN, RUNPOD_API_KEY=TOKEN, NO_PROXY="127.0.0.1,localhost",
               no_proxy="127.0.0.1,localhost")
    if json_output:
        env["ANSIBLE_STDOUT_CALLBACK"] = "ansible.posix.json"
    command = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "-c", "local",
               "-e", f"ansible_python_interpreter={sys.executable}", *options, str(playbook)]
    done = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    return done


@pytest.mark.parametrize("module", sorted(CORPUS))
def test_bad_input_is_refused_before_any_call(tmp_path, fakes, module):
    cases = CORPUS[module]
    assert len(cases) >= 10
    tasks = [{"name": f"Case {i}", "ignore_errors": True,
              f"selfhost.immich.{module}": {k: v for k, v in dict(VALID[module], **change).items() if v is not None}}
             for i, (change, _) in enumerate(cases)]
    done = run_playbook(tmp_path, fakes, tasks, json_output=True)
    report = json.loads(done.stdout)
    results = report["plays"][0]["tasks"]
    assert len(results) == len(cases)
    clean = 0
    for (change, option), task in zip(cases, results, strict=True):
        result = task["hosts"]["localhost"]
        seconds = (datetime.fromisoformat(task["task"]["duration"]["end"].replace("Z", "+00:00")) -
                   datetime.fromisoformat(task["task"]["duration"]["start"].replace("Z", "+00:00"))).total_seconds()
        problems = []
        if not result.get("failed"):
            problems.append("accepted")
        if option not in result.get("msg", ""):
            problems.append(f"message does not name {option}")
        # ansible-core 2.19 puts "exception": "(traceback unavailable)" in every failed result without one.
        if "Traceback" in json.dumps(result) or "module_stderr" in result:
            problems.append("traceback")
        if seconds > 5:
            problems.append(f"took {seconds:.1f} s")
        assert not problems, (module, change, problems, result.get("msg"))
        clean += 1
    hetzner, runpod = fakes
    assert hetzner.log == [] and runpod.log == [], "a malformed input reached an API"
    assert MARKER not in done.stdout + done.stderr, "a refused input (or the token) was echoed"
    print(f"{module}: {len(cases)} malformed inputs tried, {clean} refused cleanly before any call")


def test_plain_http_needs_loopback_or_the_opt_in(tmp_path, monkeypatch):
    """The API fakes on a non-loopback address of this machine: plain http:// to it is refused before any call
    unless api_allow_http is set; to 127.0.0.1 it needs no opt-in. The token never shows."""
    address = non_loopback_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address to bind the fakes to")
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)  # the fakes are reached directly
    with HetznerFake(SEED, token=TOKEN, host=address) as hetzner, FakeRunpod(api_key=TOKEN, host=address) as runpod, \
            HetznerFake(SEED, token=TOKEN) as local_hetzner, FakeRunpod(api_key=TOKEN) as local_runpod:
        remote = {"storagebox_info": {"name": "photos", "api_url": hetzner.url},
                  "runpod_endpoint_info": {"api_url": runpod.url}}
        local = {"storagebox_info": {"name": "photos", "api_url": local_hetzner.url},
                 "runpod_endpoint_info": {"api_url": local_runpod.url}}
        tasks = []
        for module in remote:
            tasks += [{"name": f"Remote {module}", "ignore_errors": True, f"selfhost.immich.{module}": remote[module]},
                      {"name": f"Remote {module} opted in",
                       f"selfhost.immich.{module}": dict(remote[module], api_allow_http=True)},
                      {"name": f"Local {module}", f"selfhost.immich.{module}": local[module]}]
        done = run_playbook(tmp_path, (hetzner, runpod), tasks, json_output=True)
        results = [task["hosts"]["localhost"] for task in json.loads(done.stdout)["plays"][0]["tasks"]]
        for fake in (hetzner, runpod, local_hetzner, local_runpod):
            assert fake.violations == [] and fake.response_problems == []
        calls = [[entry["path"] for entry in fake.log] for fake in (hetzner, runpod, local_hetzner, local_runpod)]
    assert [bool(r.get("failed")) for r in results] == [True, False, False] * 2, results
    for refused in (results[0], results[3]):
        assert refused["msg"] == (f"api_url uses plain http:// to {address}, which is not a loopback address: the API "
                                  "token would travel unencrypted. Use https://, or set api_allow_http=true to allow "
                                  "it (for test labs only)")
    assert results[1]["storageboxes"][0]["name"] == "photos" and results[2]["storageboxes"][0]["name"] == "photos"
    assert results[4]["endpoints"] == [] and results[5]["endpoints"] == []
    # one read per opted-in run on the remote fakes (the refused runs sent nothing), one per local run
    assert calls == [["/v1/storage_boxes", "/v1/storage_boxes/1/subaccounts"], ["/v2/serverless"],
                     ["/v1/storage_boxes", "/v1/storage_boxes/1/subaccounts"], ["/v2/serverless"]]
    assert MARKER not in done.stdout + done.stderr


def sweep_tasks() -> list[dict]:
    env = dict(SECRET_ENV, PORT="3003", PORT_HEALTH="3003")
    box = {"name": "photos", "labels": {"app": "immich"}, "access_settings": {"ssh_enabled": True},
           "snapshot_plan": {"max_snapshots": 7, "minute": 15, "hour": 2}}
    sub = {"storagebox_id": 1, "name": "immich", "home_directory": "immich", "password": PASSWORDS[0]}
    template = {"name": "immich-ml", "image": "ghcr.io/immich-app/ml:v3", "env": env, "ports": ["3003/http"]}
    endpoint = {"name": "immich-ml", "type": "LOAD_BALANCER", "template": "immich-ml", "gpu_pools": ["ADA_24"],
                "env": {"DB_PASS": MARKER + "Db-override", "AUTH_HEADER": MARKER + "Auth"}}
    tasks = []
    for module, args in [("storagebox", box), ("storagebox_subaccount", sub), ("storagebox_info", {"name": "photos"}),
                         ("storagebox_subaccount", dict(sub, password=PASSWORDS[1], update_password="always")),
                         ("runpod_template", template), ("runpod_endpoint", endpoint),
                         ("runpod_endpoint_info", {"name": "immich-ml"}),
                         ("runpod_template", dict(template, env=dict(env, DB_PASS=MARKER + "Db-rotated")))]:
        tasks.append({"name": f"Write {module}", f"selfhost.immich.{module}": args})
        tasks.append({"name": f"Check {module}", f"selfhost.immich.{module}": args, "check_mode": True})
    for token in BAD_TOKENS:
        for module in VALID:
            tasks.append({"name": f"Bad token {module}", "ignore_errors": True,
                          f"selfhost.immich.{module}": dict(VALID[module], api_token=token)})
    tasks.append({"name": "Refused password", "selfhost.immich.storagebox_subaccount":
                  dict(sub, name="other", password=MARKER + "short\n"), "ignore_errors": True})
    tasks += [{"name": "Remove endpoint", "selfhost.immich.runpod_endpoint": {"name": "immich-ml", "state": "absent"}},
              {"name": "Remove template", "selfhost.immich.runpod_template": {"name": "immich-ml", "state": "absent"}},
              {"name": "Remove sub-account", "selfhost.immich.storagebox_subaccount":
               {"storagebox_id": 1, "name": "immich", "state": "absent"}}]
    return tasks


def test_marker_secrets_never_reach_the_output(tmp_path, fakes):
    done = run_playbook(tmp_path, fakes, sweep_tasks(), "-vvv", "--diff")
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    hetzner, runpod = fakes
    assert list(hetzner.passwords.values()) == [PASSWORDS[1]], "the password was set, then rotated"
    assert any(entry["method"] == "POST" for entry in runpod.log), "the writes happened"
    assert "changed=" in output and "api_token has surrounding whitespace" in output
    hits = [line for line in output.splitlines() if MARKER in line]
    print(f"marker-secret sweep: {len(output.splitlines())} lines of -vvv --diff output, {len(hits)} hits")
    assert hits == []
