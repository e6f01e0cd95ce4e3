"""tests/lab/ml_worker: the RunPod edge's billing (cold start + work + idle timeout) and the --local mode that
stands in for Immich's CPU machine-learning container (no key, no cold start, counts what it served)."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

WORKER = Path(__file__).resolve().parents[2] / "tests" / "lab" / "ml_worker" / "ml_worker.py"
CLIP = json.dumps({"clip": {"visual": {"modelName": "ViT-B-32__openai"}}})
TEXT = json.dumps({"clip": {"textual": {"modelName": "ViT-B-32__openai", "options": {}}}})
TOKEN = "lab-token-for-the-test"


def load_worker():
    spec = importlib.util.spec_from_file_location("ml_worker", WORKER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def edge():
    """An edge (RunPod) in this process: edge(cold_start, idle_timeout) -> (base url, Edge)."""
    worker = load_worker()
    servers = []

    def start(cold_start: float, idle_timeout: float):
        args = worker.argparse.Namespace(host="127.0.0.1", port=0, local=False, cold_start=cold_start,
                                         max_wait=120.0, idle_timeout=idle_timeout, expect_host=None, quiet=True,
                                         tls_cert=None, tls_key=None)
        server = worker.make_server(args, TOKEN)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}", server.edge

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def predict(url: str, entries: str = CLIP, token: str | None = TOKEN, **payload) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    files = payload or {"image": ("blob", os.urandom(1024))}
    return requests.post(f"{url}/predict", data={"entries": entries}, files=files, headers=headers, timeout=30)


def test_billed_seconds_are_cold_start_plus_work_plus_idle_timeout_per_worker(edge):
    url, state = edge(cold_start=0.3, idle_timeout=0.5)
    assert state.snapshot()["billed_seconds"] == 0 and state.snapshot()["worker"] == "cold"
    started = time.monotonic()
    assert predict(url).status_code == 200
    assert time.monotonic() - started >= 0.3  # held while the worker cold-started
    running = state.snapshot()
    assert running["worker"] == "ready" and 0.3 <= running["billed_seconds"] < 0.5  # the running one, so far
    time.sleep(0.8)
    first = state.snapshot()
    assert first["worker"] == "cold" and first["cold_starts"] == 1
    assert 0.8 <= first["billed_seconds"] <= 0.95, first  # 0.3 cold start + the work + 0.5 idle, then it stopped
    time.sleep(0.3)
    assert state.snapshot()["billed_seconds"] == first["billed_seconds"]  # nothing billed while no worker runs
    # A second burst: two requests back to back keep one worker; it is billed again from its own start.
    assert predict(url).status_code == 200
    time.sleep(0.2)
    assert predict(url, TEXT, text=(None, "a dog")).status_code == 200
    time.sleep(0.8)
    second = state.snapshot()
    assert second["cold_starts"] == 2 and second["predicts"] == 3
    assert second["predicts_by_task"] == {"clip.visual": 2, "clip.textual": 1}
    added = second["billed_seconds"] - first["billed_seconds"]
    assert 1.0 <= added <= 1.2, second  # 0.3 + 0.2 between the two + 0.5 idle


def test_an_unauthorised_request_neither_starts_nor_bills_a_worker(edge):
    url, state = edge(cold_start=0.1, idle_timeout=0.2)
    assert predict(url, token="wrong").status_code == 401
    time.sleep(0.3)
    stats = state.snapshot()
    assert (stats["unauthorized"], stats["cold_starts"], stats["billed_seconds"]) == (1, 0, 0)


def test_faults_answer_ping_and_predict_with_the_status_set(edge):
    url, state = edge(cold_start=0, idle_timeout=0)
    answer = requests.post(f"{url}/_lab/config", json={"ping_status": 503, "predict_status": 400}, timeout=10)
    assert answer.json()["ping_status"] == 503
    headers = {"Authorization": f"Bearer {TOKEN}"}
    assert requests.get(f"{url}/ping", headers=headers, timeout=10).status_code == 503
    assert predict(url).status_code == 400
    stats = state.snapshot()
    assert (stats["predicts"], stats["predicts_by_task"], stats["failed_on_purpose"]) == (1, {}, 2)
    requests.post(f"{url}/_lab/config", json={"ping_status": 0, "predict_status": 0}, timeout=10)
    assert requests.get(f"{url}/ping", headers=headers, timeout=10).text == "pong"


def test_predict_seconds_makes_each_predict_take_that_long(edge):
    """The lab's CPU container is slower than a GPU worker: the router's burst test depends on it."""
    url, state = edge(cold_start=0, idle_timeout=0)
    answer = requests.post(f"{url}/_lab/config", json={"predict_seconds": 0.4}, timeout=10)
    assert answer.json()["predict_seconds"] == 0.4
    started = time.monotonic()
    assert predict(url).status_code == 200
    assert time.monotonic() - started >= 0.4
    requests.post(f"{url}/_lab/config", json={"predict_seconds": 0}, timeout=10)
    assert state.snapshot()["predicts_by_task"] == {"clip.visual": 1}


@pytest.mark.parametrize("flag", ["--local", "--no-edge"])
def test_local_mode_is_immichs_cpu_container_no_key_no_cold_start_counted(flag, tmp_path):
    """The command line the lab's ml-double image runs (no key in the environment)."""
    port = free_port()
    env = {key: value for key, value in os.environ.items() if key != "ML_WORKER_TOKEN"}
    process = subprocess.Popen([sys.executable, str(WORKER), flag, "--host", "127.0.0.1", "--port", str(port),
                                "--cold-start", "5"], env=env, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                assert requests.get(f"{url}/ping", timeout=2).text == "pong"
                break
            except requests.ConnectionError:
                assert process.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)
        assert requests.get(url, timeout=5).json() == {"message": "Immich ML"}
        started = time.monotonic()
        answer = predict(url, token=None)
        assert answer.status_code == 200 and json.loads(answer.json()["clip"])  # no key asked, no cold start
        assert time.monotonic() - started < 2
        assert predict(url, TEXT, token=None, text=(None, "a cat")).status_code == 200
        assert predict(url, "{}", token=None).status_code == 422
        stats = requests.get(f"{url}/_lab/stats", timeout=5).json()
        # (max_in_flight is not asserted: a handler still finishing its answer overlaps the next request under load)
        assert stats["mode"] == "local" and stats["worker"] == "ready"
        assert (stats["predicts"], stats["pings"], stats["cold_starts"], stats["billed_seconds"]) == (3, 1, 0, 0)
        assert stats["predicts_by_task"] == {"clip.visual": 1, "clip.textual": 1}
        assert requests.post(f"{url}/_lab/reset", timeout=5).json()["predicts"] == 0
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert process.returncode == 0  # SIGTERM (docker stop) ends it cleanly
    assert "local CPU container" in process.stderr.read()


def test_edge_mode_still_needs_the_key():
    env = {key: value for key, value in os.environ.items() if key != "ML_WORKER_TOKEN"}
    refused = subprocess.run([sys.executable, str(WORKER), "--port", str(free_port())], env=env,
                             capture_output=True, text=True, timeout=30, check=False)
    assert refused.returncode != 0 and "no key" in refused.stderr
