"""The runpod_endpoint role's workers guard (roles/runpod_endpoint/files/runpod-workers-guard) talks to the API only
over a safe URL: https, or plain http to this machine, or plain http elsewhere with RUNPOD_API_ALLOW_HTTP=true.

The guard runs as on the host (python3, its own process) against a tiny stand-in of GET/PATCH /serverless/<id>
that records every request; a refused setting must stop the guard before any request, without printing the key.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from ansible_collections.selfhost.immich.tests.fakes.network import non_loopback_address

REPO = Path(__file__).resolve().parents[2]
GUARD = REPO / "roles" / "runpod_endpoint" / "files" / "runpod-workers-guard"
KEY = "rpa_guard_marker_key_4c1f"


@pytest.fixture
def api():
    """A stand-in of the endpoint API on every address of this machine: (port, requests, state)."""
    requests: list[tuple[str, str]] = []
    state = {"max": 0}

    class Endpoint(BaseHTTPRequestHandler):
        def _answer(self):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(json.dumps({"id": "ep1", "workers": {"max": state["max"]}}).encode())

        def do_GET(self):  # noqa: N802
            requests.append(("GET", self.path))
            self._answer()

        def do_PATCH(self):  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            requests.append(("PATCH", self.path))
            state["max"] = body["workers"]["max"]
            self._answer()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("0.0.0.0", 0), Endpoint)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_port, requests, state
    server.shutdown()


def own_address() -> str:
    """This machine's address on its default route (not loopback), or skip."""
    address = non_loopback_address()
    if address is None:
        pytest.skip("no non-loopback address on this machine")
    return address


def guard(url: str, *args: str, endpoint: str = "ep1", **extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNPOD_")}
    env.update(RUNPOD_API_URL=url, RUNPOD_API_KEY=KEY, RUNPOD_ENDPOINT_ID=endpoint, RUNPOD_WORKERS_MAX="2", **extra)
    return subprocess.run([sys.executable, str(GUARD), "--env-file", "/nonexistent", *args], env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def test_plain_http_to_this_machine_restores_max_workers(api):
    port, requests, state = api
    result = guard(f"http://127.0.0.1:{port}/v2")
    assert result.returncode == 0, result.stderr
    assert requests == [("GET", "/v2/serverless/ep1"), ("PATCH", "/v2/serverless/ep1")]
    assert state["max"] == 2


def test_plain_http_elsewhere_is_refused_before_any_request(api):
    port, requests, _ = api
    result = guard(f"http://{own_address()}:{port}/v2")
    assert result.returncode == 2
    assert "is not a loopback address" in result.stderr and "RUNPOD_API_ALLOW_HTTP" in result.stderr
    assert requests == []
    assert KEY not in result.stdout + result.stderr


@pytest.mark.parametrize("flag", ["true", "1"])
def test_the_lab_switch_allows_plain_http_elsewhere(api, flag):
    port, requests, _ = api
    result = guard(f"http://{own_address()}:{port}/v2", "--check", RUNPOD_API_ALLOW_HTTP=flag)
    assert result.returncode == 1, result.stderr  # drifted: max 0, wanted 2 (--check changes nothing)
    assert requests == [("GET", "/v2/serverless/ep1")]


@pytest.mark.parametrize(
    ("url", "endpoint"),
    [
        pytest.param("http://127.0.0.1:{port}/v2\n", "ep1", id="url-newline"),
        pytest.param("http://user:pw@127.0.0.1:{port}/v2", "ep1", id="url-credentials"),
        pytest.param("ftp://127.0.0.1:{port}/v2", "ep1", id="url-ftp"),
        pytest.param("http://127.0.0.1:{port}/v2", "../../templates/x", id="endpoint-path"),
        pytest.param("http://127.0.0.1:{port}/v2", "ep1?x=1", id="endpoint-query"),
    ],
)
def test_malformed_settings_are_refused_before_any_request(api, url, endpoint):
    port, requests, _ = api
    result = guard(url.format(port=port), endpoint=endpoint)
    assert result.returncode == 2
    assert result.stderr.startswith("error: RUNPOD_")
    assert requests == []
    assert KEY not in result.stdout + result.stderr
