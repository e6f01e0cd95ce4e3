"""The runpod_endpoint scenario's stand-ins as seen from its tests (see molecule.yml)."""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

import requests

LAB_DIR = Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "/nonexistent")) / "lab"
EDGE = "https://runpod-edge.test:8443"
EDGE_CA = "/etc/ml-worker/ca.pem"
PHOTO = "/tmp/lab-photo.jpg"
# A JPEG header with a 1920x1440 SOF0 frame (octal escapes for dash's printf): enough for Immich ML's payload
# and the stand-in's size check.
PHOTO_BYTES = (r"\377\330\377\300\000\021\010\005\240\007\200\003"
               r"\001\042\000\002\021\001\003\021\001\377\331")
CLIP_ENTRIES = json.dumps({"clip": {"visual": {"modelName": "ViT-B-32__openai"}}})


class FakeRunpod:
    """The fake RunPod API v2 on the controller (started by prepare.yml)."""

    def __init__(self, key: str) -> None:
        self.url = (LAB_DIR / "fake-runpod-url").read_text().strip()
        self.base = self.url.rsplit("/v2", 1)[0]
        self.headers = {"Authorization": f"Bearer {key}"}

    def endpoint(self, name: str = "immich-ml") -> dict:
        answer = requests.get(f"{self.url}/serverless", headers=self.headers, timeout=10)
        answer.raise_for_status()
        found = [e for e in answer.json()["endpoints"] if e["name"] == name]
        assert len(found) == 1, f"expected one endpoint {name}, got {answer.json()}"
        return found[0]

    def patch_endpoint(self, endpoint_id: str, body: dict) -> dict:
        answer = requests.patch(f"{self.url}/serverless/{endpoint_id}", json=body, headers=self.headers, timeout=10)
        answer.raise_for_status()
        return answer.json()

    def log(self) -> list[dict]:
        return requests.get(f"{self.base}/_fake/log", timeout=10).json()

    def writes(self) -> list[dict]:
        return [entry for entry in self.log() if entry["method"] != "GET"]

    def violations(self) -> list[str]:
        return requests.get(f"{self.base}/_fake/violations", timeout=10).json()


class Edge:
    """The RunPod edge + Immich ML stand-in inside the host, steered through its /_lab side door."""

    def __init__(self, host) -> None:
        self.host = host

    def _call(self, method: str, path: str, body: dict | None = None) -> dict:
        data = f"-d {shlex.quote(json.dumps(body))}" if body is not None else ""
        out = self.host.check_output(f"curl -sf --cacert {EDGE_CA} -X {method} {data} {EDGE}{path}")
        return json.loads(out)

    def reset(self, cold_start: float = 0, max_wait: float = 120, idle_timeout: float = 0) -> None:
        settings = {"cold_start": cold_start, "max_wait": max_wait, "idle_timeout": idle_timeout}
        self._call("POST", "/_lab/config", settings)
        self._call("POST", "/_lab/reset")

    def stats(self) -> dict:
        return self._call("GET", "/_lab/stats")


def predict_command(url: str, namespace: str, photo: str, extra: str = "") -> str:
    """curl as Immich's server sends a CLIP request, from inside a modelled container; prints body + status."""
    return (f"ip netns exec {namespace} curl -s --max-time 280 -w '\\n%{{http_code}}' {extra} "
            f"-F {shlex.quote('entries=' + CLIP_ENTRIES)} -F 'image=@{photo};type=image/jpeg' {url}/predict")
