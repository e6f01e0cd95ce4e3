"""The runpod_endpoint role converged against the fake RunPod API, with the RunPod edge + Immich ML stand-in behind
its gateway (see molecule.yml for what stands in for what).

What a user cares about: Immich's /predict reaches the GPU endpoint with the key although Immich sends none;
nothing outside Immich's network can use the gateway; the key is nowhere else (files, processes, Ansible's
output); a cold start does not fail Immich's request; the RunPod idle policy's cut to 0 workers is undone.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import yaml
from runpod_lab import CLIP_ENTRIES, LAB_DIR, predict_command

testinfra_hosts = ["ansible://all"]

GATEWAY_FILE = "/etc/traefik/dynamic/selfhost-runpod-ml.yml"
GUARD_ENV = "/etc/selfhost-immich/runpod-workers-guard.env"
LAB_TOKEN = "/etc/ml-worker/token"


def test_platform_architecture(host, expected_arch):
    assert host.system_info.arch == expected_arch


# -- RunPod side ---------------------------------------------------------------------------------------
def test_endpoint_is_an_immich_ready_load_balancer(fake_runpod):
    endpoint = fake_runpod.endpoint()
    assert endpoint["type"] == "LOAD_BALANCER"
    assert endpoint["gpu"]["pools"][0] == "AMPERE_48"  # A40-class first
    assert endpoint["gpu"]["minCudaVersion"] == "12.2"
    assert endpoint["workers"] == {"min": 0, "max": 2, "idleTimeout": 60}
    assert endpoint["scaling"] == {"type": "REQUEST_COUNT", "requestCount": 6}
    assert endpoint["flashboot"] == "FLASHBOOT"
    assert endpoint["image"].startswith("ghcr.io/immich-app/immich-machine-learning:v3.2.4-cuda@sha256:")
    assert endpoint["ports"] == ["3003/http"]
    env = endpoint["env"]
    assert env["PORT"] == env["PORT_HEALTH"] == "3003"
    assert env["IMMICH_HOST"] == "0.0.0.0"
    assert env["MACHINE_LEARNING_MODEL_TTL"] == "0"
    assert env["MACHINE_LEARNING_PRELOAD__CLIP__TEXTUAL"] == "ViT-B-32__openai"
    assert env["MACHINE_LEARNING_PRELOAD__CLIP__VISUAL"] == "ViT-B-32__openai"
    assert env["MACHINE_LEARNING_PRELOAD__FACIAL_RECOGNITION__DETECTION"] == "buffalo_l"
    assert env["MACHINE_LEARNING_PRELOAD__FACIAL_RECOGNITION__RECOGNITION"] == "buffalo_l"


def test_api_calls_met_the_contract_and_the_second_converge_only_read(fake_runpod):
    assert fake_runpod.violations() == []
    writes = [(entry["method"], entry["path"]) for entry in fake_runpod.writes()]
    # converge created the template and the endpoint; idempotence (and any later converge) wrote nothing.
    assert writes[:2] == [("POST", "/v2/templates"), ("POST", "/v2/serverless")]
    assert not [w for w in writes[2:] if w[0] != "PATCH"], writes  # only the guard test below patches


# -- Gateway: reachability -------------------------------------------------------------------------
def test_role_publishes_the_gateway_url_for_immich(ml_url):
    assert ml_url == "http://172.30.0.1:3003"


def test_predict_from_the_immich_network_reaches_the_worker_with_the_key(host, edge, ml_url, photo):
    out = host.check_output(predict_command(ml_url, "immich", photo))
    body, status = out.rsplit("\n", 1)
    assert status == "200", out
    answer = json.loads(body)
    assert len(json.loads(answer["clip"])) == 512
    assert (answer["imageHeight"], answer["imageWidth"]) == (1440, 1920)
    stats = edge.stats()
    assert stats["predicts"] == 1 and stats["unauthorized"] == 0 and stats["last_authorized"] is True
    # passHostHeader false: RunPod routes on the endpoint's own host name.
    assert stats["last_host"] == "runpod-edge.test:8443"


def test_a_client_supplied_authorization_header_is_replaced(host, edge, ml_url, photo):
    out = host.check_output(predict_command(ml_url, "immich", photo, "-H 'Authorization: Bearer not-the-key'"))
    assert out.endswith("\n200"), out
    assert edge.stats()["last_authorized"] is True


def test_the_edge_stand_in_rejects_requests_without_the_key(host, edge):
    # Proves the 200s above are the gateway's doing: the stand-in refuses keyless requests like RunPod's edge.
    out = host.check_output(f"curl -s -o /dev/null -w '%{{http_code}}' --cacert /etc/ml-worker/ca.pem "
                            f"-F {json.dumps('entries=' + CLIP_ENTRIES)} -F text=x https://runpod-edge.test:8443/predict")
    assert out == "401"


def test_ping_is_answered_by_the_gateway_without_waking_a_worker(host, edge, ml_url):
    for _ in range(3):
        out = host.check_output(f"ip netns exec immich curl -s -o /dev/null -w '%{{http_code}}' {ml_url}/ping")
        assert out == "200"
    assert edge.stats()["requests"] == 0


def test_entrypoint_listens_only_on_the_immich_network_gateway(host):
    sockets = host.check_output("ss -Hltn 'sport = :3003' | awk '{print $4}'").split()
    assert sockets == ["172.30.0.1:3003"]


def test_gateway_is_not_reachable_from_loopback(host):
    assert host.run("curl -s --max-time 5 http://127.0.0.1:3003/ping").rc == 7  # connection refused


def test_gateway_is_not_reachable_from_outside_the_host(host):
    addresses = [a for a in host.interface("eth0").addresses if ":" not in a]
    assert addresses
    for address in addresses:  # from the controller, over the scenario's Docker network
        try:
            socket.create_connection((address, 3003), timeout=5).close()
        except ConnectionRefusedError:
            continue
        raise AssertionError(f"{address}:3003 accepted a connection")


def test_another_network_reaching_the_address_gets_403_and_nothing_is_forwarded(host, edge, ml_url, photo):
    # Linux accepts packets for any local address on any interface: another Docker network routed through the
    # host reaches 172.30.0.1. The ipAllowList stops it before the key is added (UFW stops it earlier in production).
    out = host.check_output(predict_command(ml_url, "outside", photo))
    assert out.endswith("\n403"), out
    ping = host.check_output(f"ip netns exec outside curl -s -o /dev/null -w '%{{http_code}}' {ml_url}/ping")
    assert ping == "403"
    assert edge.stats()["requests"] == 0


# -- Gateway: cold starts --------------------------------------------------------------------------
def test_configured_policy_covers_runpods_two_minute_cold_start_window(host):
    config = yaml.safe_load(host.file(GATEWAY_FILE).content_string)
    transport = config["http"]["serversTransports"]["runpod-ml"]["forwardingTimeouts"]
    retry = config["http"]["middlewares"]["runpod-ml-retry"]["retry"]

    def seconds(value: str) -> int:
        return int(value.rstrip("s"))

    # One attempt outlasts RunPod's 2-minute hold; retries stop early enough that the last attempt ends
    # before Immich gives up after 300 s.
    assert seconds(transport["responseHeaderTimeout"]) > 120
    assert seconds(retry["timeout"]) + seconds(transport["responseHeaderTimeout"]) < 300
    assert retry["retryNonIdempotentMethod"] is True
    assert "502-504" in retry["status"] and retry["attempts"] >= 2
    assert config["http"]["services"]["runpod-ml"]["loadBalancer"]["passHostHeader"] is False


def test_a_cold_start_held_by_the_edge_is_waited_for(host, edge, ml_url, photo):
    # The edge holds the request while the worker starts (20 s here, up to 120 s at RunPod).
    edge.reset(cold_start=20, max_wait=120)
    started = time.monotonic()
    out = host.check_output(predict_command(ml_url, "immich", photo))
    elapsed = time.monotonic() - started
    assert out.endswith("\n200"), out
    assert elapsed >= 19
    stats = edge.stats()
    assert stats["cold_starts"] == 1 and stats["no_worker"] == 0 and stats["predicts"] == 1


def test_a_cold_start_longer_than_the_edge_wait_is_retried(host, edge, ml_url, photo):
    # Time-scaled RunPod: the edge gives up after 8 s ("no workers available", 503) while the worker needs 15 s;
    # the gateway retries and the same Immich request succeeds. At RunPod's scale: 120 s hold, then a retry
    # after ~5 s that starts before the 140 s retry timeout.
    edge.reset(cold_start=15, max_wait=8)
    out = host.check_output(predict_command(ml_url, "immich", photo))
    assert out.endswith("\n200"), out
    stats = edge.stats()
    assert stats["no_worker"] >= 1, stats
    assert stats["predicts"] == 1 and stats["cold_starts"] == 1


# -- The key ------------------------------------------------------------------------------------------
def test_key_files_are_private(host):
    gateway = host.file(GATEWAY_FILE)
    assert (gateway.user, gateway.mode) == ("traefik", 0o600)
    guard = host.file(GUARD_ENV)
    assert (guard.user, guard.group, guard.mode) == ("root", "root", 0o600)
    folder = host.file(str(Path(GUARD_ENV).parent))
    assert (folder.user, folder.group, folder.mode) == ("root", "root", 0o700)


def test_key_is_only_in_its_two_files(host):
    # The key is read on the host from the stand-in's own token file, so it never appears in a command here.
    found = host.run(f"grep -rlsF -- \"$(cat {LAB_TOKEN})\" /etc /opt /usr/local /var/lib /var/log /root /home /tmp "
                     "/run /srv | sort").stdout.split()
    assert found == sorted([GUARD_ENV, LAB_TOKEN, GATEWAY_FILE])


def test_key_is_in_no_process_environment_or_command_line(host):
    found = host.run(f"grep -lsF -- \"$(cat {LAB_TOKEN})\" /proc/[0-9]*/environ /proc/[0-9]*/cmdline").stdout.split()
    assert found == []


def test_key_is_absent_from_all_ansible_output(lab_key):
    log = Path(os.environ.get("ANSIBLE_LOG_PATH") or LAB_DIR.parent / "ansible.log")
    text = log.read_text()
    assert "selfhost.immich.runpod_endpoint : Ensure the load-balancing endpoint" in text  # the converge is in it
    assert lab_key not in text


# -- Workers guard -------------------------------------------------------------------------------------
def test_guard_timer_is_enabled(host):
    timer = host.service("runpod-workers-guard.timer")
    assert timer.is_enabled and timer.is_running


def test_guard_restores_max_workers_after_runpods_idle_cut(host, fake_runpod):
    endpoint = fake_runpod.endpoint()
    fake_runpod.patch_endpoint(endpoint["id"], {"workers": {"max": 0}})  # what RunPod does after 7 idle days
    check = host.run("runpod-workers-guard --check")
    assert check.rc == 1 and "wanted 2" in check.stdout, check.stdout + check.stderr
    host.run_expect([0], "systemctl start runpod-workers-guard.service")
    assert fake_runpod.endpoint()["workers"]["max"] == 2
    assert host.run("runpod-workers-guard --check").rc == 0
    journal = host.check_output("journalctl -u runpod-workers-guard.service --no-pager -o cat")
    assert "restored" in journal
    assert fake_runpod.violations() == []
