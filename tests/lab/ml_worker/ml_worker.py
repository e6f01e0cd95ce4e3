#!/usr/bin/env python3
"""A stand-in for a RunPod load-balancing endpoint running Immich machine learning (tests and benchmarks only).

It plays both parts a request meets at ``https://<endpoint-id>.api.runpod.ai`` (docs/decisions.md, Immich machine
learning; RunPod):

- **the RunPod edge**: ``Authorization: Bearer <key>`` is enforced before anything else (none or a wrong
  one -> 401); with ``--expect-host`` a request for another Host is not routed (404), which is what the
  gateway's ``passHostHeader: false`` is for; when no worker is running the request is held while one
  cold-starts, for at most ``--max-wait`` seconds (RunPod: 2 minutes), then answered 503 "no workers
  available" (RunPod's status code for that answer is not documented: 503 is our assumption);
- **the worker** (the stock immich-machine-learning image): ``GET /`` -> ``{"message":"Immich ML"}``,
  ``GET /ping`` -> ``pong``, ``POST /predict`` with Immich's multipart body (field ``entries`` + file
  ``image`` or field ``text``) -> deterministic embeddings, faces and OCR in Immich's response shapes;
  bad ``entries`` -> 422, no payload -> 400.

Worker lifecycle: cold at start; the first authorised request starts it and it is ready ``--cold-start``
seconds later; after ``--idle-timeout`` idle seconds (0 = never) it is gone and the next request cold-starts
it again. RunPod bills a worker from its start to its stop (cold start + work + idle timeout): ``billed_seconds``
in the stats is the sum of the finished workers' lifetimes plus the running one's so far. ``/_lab/*`` is the
lab's own side door, never forwarded by RunPod: ``GET /_lab/stats`` (counters: requests, pings, predicts and
predicts per task, cold_starts, billed_seconds, ...; the last request's Host and whether it carried the right
key -- never the key itself), ``POST /_lab/reset`` (counters to zero, worker cold) and ``POST /_lab/config``
(JSON with any of cold_start, max_wait, idle_timeout, predict_seconds (the time one predict takes, e.g. a CPU
container's), and the faults ping_status / predict_status: answer
``GET /ping`` / ``POST /predict`` with that status instead, 0 = normal).

``--local`` (alias ``--no-edge``): Immich's own CPU machine-learning container instead (``immich-machine-learning``
on port 3003): no key, no Host check, no cold start, no billing; the same routes, answers and /_lab side door.

The key comes from ``--token-file`` or the environment variable ``ML_WORKER_TOKEN``, never from the
command line (``ps`` would show it). Python standard library only: it runs on the arm64 test host too.

    ML_WORKER_TOKEN=... ml_worker.py --host 127.0.0.1 --port 8443 --tls-cert c.pem --tls-key k.pem \\
        --expect-host runpod-edge.test:8443 --cold-start 0 --idle-timeout 0
    ml_worker.py --local --host 0.0.0.0          # the CPU ML container's stand-in on port 3003
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import math
import os
import signal
import ssl
import struct
import sys
import threading
import time
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

EMBEDDING_SIZE = 512
TASKS = {"clip": {"visual", "textual"}, "facial-recognition": {"detection", "recognition"},
         "ocr": {"detection", "recognition"}}


class Edge:
    """The worker's lifecycle and the edge's counters; thread-safe."""

    SETTINGS = ("cold_start", "max_wait", "idle_timeout", "ping_status", "predict_status", "predict_seconds")

    def __init__(self, cold_start: float, max_wait: float, idle_timeout: float, local: bool = False) -> None:
        self.lock = threading.Condition()
        self.cold_start, self.max_wait, self.idle_timeout = cold_start, max_wait, idle_timeout
        self.local = local  # Immich's CPU container: always ready, nothing billed
        self.ping_status = self.predict_status = 0  # faults: answer with this status instead (0: normal)
        self.predict_seconds = 0.0  # the work of one predict (a CPU container is slower than a GPU worker)
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.ready_at: float | None = None  # None: no worker; in the future: booting
            self.started_at = 0.0  # when the running worker started (billing starts)
            self.billed_done = 0.0  # the lifetimes of the workers that are gone
            self.last_activity = 0.0
            self.in_flight = 0
            self.stats = {"mode": "local" if self.local else "edge", "requests": 0, "unauthorized": 0,
                          "misrouted": 0, "no_worker": 0, "cold_starts": 0, "pings": 0, "predicts": 0,
                          "predicts_by_task": {}, "failed_on_purpose": 0, "max_in_flight": 0, "last_host": None,
                          "last_path": None, "last_authorized": None}

    def configure(self, **settings: float) -> None:
        with self.lock:
            for key in self.SETTINGS:
                if key in settings:
                    setattr(self, key, int(settings[key]) if key.endswith("_status") else float(settings[key]))

    def settings(self) -> dict:
        with self.lock:
            return {key: getattr(self, key) for key in self.SETTINGS}

    def count_task(self, task: str) -> None:
        with self.lock:
            by_task = self.stats["predicts_by_task"]
            by_task[task] = by_task.get(task, 0) + 1

    def count(self, key: str, value: object = None) -> None:
        with self.lock:
            if value is None:
                self.stats[key] += 1
            else:
                self.stats[key] = value

    def snapshot(self) -> dict:
        with self.lock:
            now = time.monotonic()
            self._settle(now)
            if self.local:
                state, running = "ready", 0.0
            else:
                state = "cold" if self.ready_at is None else "booting" if self.ready_at > now else "ready"
                running = 0.0 if self.ready_at is None else now - self.started_at
            return dict(self.stats, predicts_by_task=dict(self.stats["predicts_by_task"]), worker=state,
                        billed_seconds=round(self.billed_done + running, 3))

    def _gone(self, now: float) -> bool:
        if self.ready_at is None:
            return True
        idle = self.idle_timeout > 0 and self.in_flight == 0 and self.ready_at <= now
        return idle and now - max(self.last_activity, self.ready_at) >= self.idle_timeout

    def _settle(self, now: float) -> None:
        """A worker whose idle timeout ran out stopped then: its lifetime (start to stop) is billed."""
        if self.ready_at is not None and self._gone(now):
            stopped = max(self.last_activity, self.ready_at) + self.idle_timeout
            self.billed_done += stopped - self.started_at
            self.ready_at = None

    def acquire(self) -> bool:
        """Wait for a ready worker like the edge does; False after max_wait without one."""
        with self.lock:
            if self.local:
                self.in_flight += 1
                self.stats["max_in_flight"] = max(self.stats["max_in_flight"], self.in_flight)
                return True
            now = time.monotonic()
            self._settle(now)
            if self.ready_at is None:
                self.started_at, self.ready_at = now, now + self.cold_start
                self.stats["cold_starts"] += 1
            deadline = now + self.max_wait
            while self.ready_at > time.monotonic():
                remaining = min(self.ready_at, deadline) - time.monotonic()
                if remaining <= 0:
                    self.stats["no_worker"] += 1
                    return False
                self.lock.wait(remaining)
            self.in_flight += 1
            self.stats["max_in_flight"] = max(self.stats["max_in_flight"], self.in_flight)
            return True

    def release(self) -> None:
        with self.lock:
            self.in_flight -= 1
            self.last_activity = time.monotonic()


# -- Immich machine learning ------------------------------------------------------------------
class PredictError(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


def parse_multipart(content_type: str, body: bytes) -> dict[str, bytes]:
    """Field name -> raw value of a multipart/form-data body."""
    if not content_type.startswith("multipart/form-data"):
        raise PredictError(400, "expected multipart/form-data")
    message = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
    fields = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name:
            fields[name] = part.get_payload(decode=True) or b""
    return fields


def embedding(seed: bytes) -> str:
    """A deterministic unit vector as Immich's JSON-array string."""
    values, counter = [], 0
    while len(values) < EMBEDDING_SIZE:
        digest = hashlib.sha256(seed + counter.to_bytes(4, "big")).digest()
        values.extend(b / 127.5 - 1.0 for b in digest)
        counter += 1
    values = values[:EMBEDDING_SIZE]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return json.dumps([round(v / norm, 6) for v in values], separators=(",", ":"))


def jpeg_size(data: bytes) -> tuple[int, int]:
    """(height, width) from a JPEG's SOF marker; (0, 0) if it is not a JPEG."""
    if not data.startswith(b"\xff\xd8"):
        return 0, 0
    index = 2
    while index + 9 < len(data):
        if data[index] != 0xFF:
            return 0, 0
        marker, length = data[index + 1], struct.unpack(">H", data[index + 2:index + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            height, width = struct.unpack(">HH", data[index + 5:index + 9])
            return height, width
        index += 2 + length
    return 0, 0


def tasks_of(entries: dict) -> list[str]:
    """The counters a predict adds to: clip.visual / clip.textual, facial-recognition, ocr."""
    tasks: list[str] = []
    for task, types in entries.items():
        tasks.extend([f"clip.{kind}" for kind in types] if task == "clip" else [task])
    return tasks


def predict(fields: dict[str, bytes], served: list[str] | None = None) -> dict:
    """Answer Immich's POST /predict like immich_ml/main.py does (`served` gets the tasks answered)."""
    try:
        entries = json.loads(fields.get("entries") or b"")
    except ValueError as exc:
        raise PredictError(422, f"entries is not JSON: {exc}") from None
    if not isinstance(entries, dict) or not entries:
        raise PredictError(422, "entries must be a non-empty object of tasks")
    for task, types in entries.items():
        if task not in TASKS or not isinstance(types, dict) or not set(types) <= TASKS[task] or not types:
            raise PredictError(422, f"unknown task or model type: {task}")
        for settings in types.values():
            if not isinstance(settings, dict) or not settings.get("modelName"):
                raise PredictError(422, f"{task}: every model type needs modelName")
    image, text = fields.get("image"), fields.get("text")
    if image is None and text is None:
        raise PredictError(400, "either image or text must be provided")
    payload = image if image is not None else text
    if served is not None:
        served.extend(tasks_of(entries))
    response: dict = {}
    if "clip" in entries:
        response["clip"] = embedding(b"clip" + payload)
    if "facial-recognition" in entries and image is not None:
        response["facial-recognition"] = [{"boundingBox": {"x1": 10, "y1": 10, "x2": 110, "y2": 130},
                                           "embedding": embedding(b"face" + payload), "score": 0.93}]
    if "ocr" in entries and image is not None:
        response["ocr"] = {"text": [], "box": [], "boxScore": [], "textScore": []}
    if image is not None:
        response["imageHeight"], response["imageWidth"] = jpeg_size(image)
    return response


# -- HTTP ---------------------------------------------------------------------------------------
class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "runpod-edge-lab"
    # Headers and body go out in two writes: without TCP_NODELAY, Nagle + the peer's delayed ACK add ~40 ms.
    disable_nagle_algorithm = True

    @property
    def edge(self) -> Edge:
        return self.server.edge

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._serve()

    def do_POST(self) -> None:  # noqa: N802
        self._serve()

    def _serve(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        path = self.path.split("?", 1)[0]
        if path.startswith("/_lab/"):
            return self._lab(path, body)
        self.edge.count("requests")
        self.edge.count("last_path", path)
        self.edge.count("last_host", self.headers.get("Host"))
        if not self.edge.local:  # Immich's ML container: no key, no routing, always ready
            authorized = hmac.compare_digest(self.headers.get("Authorization", ""), self.server.expected_auth)
            self.edge.count("last_authorized", authorized)
            if not authorized:
                self.edge.count("unauthorized")
                return self._send(401, {"error": "Unauthorized"})
            if self.server.expect_host and self.headers.get("Host") != self.server.expect_host:
                self.edge.count("misrouted")
                return self._send(404, {"error": "no endpoint for this host"})
        if not self.edge.acquire():
            return self._send(503, {"error": "no workers available"})
        try:
            self._worker(path, body)
        finally:
            self.edge.release()

    def _worker(self, path: str, body: bytes) -> None:
        if self.command == "GET" and path == "/":
            return self._send(200, {"message": "Immich ML"})
        if self.command == "GET" and path == "/ping":
            self.edge.count("pings")
            if self.edge.ping_status:
                self.edge.count("failed_on_purpose")
                return self._send(self.edge.ping_status, {"detail": "ping_status fault (lab)"})
            return self._send(200, "pong")
        if self.command == "POST" and path == "/predict":
            self.edge.count("predicts")  # every predict the worker got; predicts_by_task: those answered 200
            if self.edge.predict_status:
                self.edge.count("failed_on_purpose")
                return self._send(self.edge.predict_status, {"detail": "predict_status fault (lab)"})
            if self.edge.predict_seconds:
                time.sleep(self.edge.predict_seconds)
            served: list[str] = []
            try:
                answer = predict(parse_multipart(self.headers.get("Content-Type", ""), body), served)
            except PredictError as exc:
                return self._send(exc.status, {"detail": exc.detail})
            for task in served:
                self.edge.count_task(task)
            return self._send(200, answer)
        return self._send(404, {"detail": "Not Found"})

    def _lab(self, path: str, body: bytes) -> None:
        if self.command == "GET" and path == "/_lab/stats":
            return self._send(200, self.edge.snapshot())
        if self.command == "POST" and path == "/_lab/reset":
            self.edge.reset()
            return self._send(200, self.edge.snapshot())
        if self.command == "POST" and path == "/_lab/config":
            self.edge.configure(**json.loads(body or b"{}"))
            return self._send(200, self.edge.settings())
        return self._send(404, {"detail": "Not Found"})

    def _send(self, status: int, answer: object) -> None:
        if isinstance(answer, str):
            data, content_type = answer.encode(), "text/plain; charset=utf-8"
        else:
            data, content_type = json.dumps(answer).encode(), "application/json"
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt: str, *args: object) -> None:
        if not self.server.quiet:  # request line and status only: never a header value
            sys.stderr.write(f"{self.address_string()} {fmt % args}\n")


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128


def read_token(token_file: str | None) -> str:
    if token_file:
        with open(token_file, encoding="utf-8") as handle:
            token = handle.read().strip()
    else:
        token = os.environ.get("ML_WORKER_TOKEN", "").strip()
    if not token:
        sys.exit("no key: set ML_WORKER_TOKEN or --token-file")
    return token


def make_server(args: argparse.Namespace, token: str) -> Server:
    local = getattr(args, "local", False)
    port = args.port if args.port is not None else 3003 if local else 8443
    server = Server((args.host, port), Handler)
    server.edge = Edge(args.cold_start, args.max_wait, args.idle_timeout, local=local)
    server.expected_auth = f"Bearer {token}"
    server.expect_host = args.expect_host
    server.quiet = args.quiet
    if args.tls_cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.tls_cert, args.tls_key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, help="default 8443 (the edge), 3003 with --local")
    parser.add_argument("--local", "--no-edge", action="store_true",
                        help="Immich's CPU ML container: no key, no Host check, no cold start, no billing")
    parser.add_argument("--token-file", help="file holding the key (else $ML_WORKER_TOKEN)")
    parser.add_argument("--tls-cert", help="PEM certificate chain: serve HTTPS like RunPod's edge")
    parser.add_argument("--tls-key", help="PEM private key of --tls-cert")
    parser.add_argument("--expect-host", help="route only requests whose Host header is exactly this")
    parser.add_argument("--cold-start", type=float, default=0.0, help="seconds a worker needs to become ready")
    parser.add_argument("--max-wait", type=float, default=120.0, help="seconds the edge holds a request (RunPod: 120)")
    parser.add_argument("--idle-timeout", type=float, default=0.0, help="idle seconds before it goes (0: never)")
    parser.add_argument("--quiet", action="store_true", help="no per-request log lines (benchmarks)")
    args = parser.parse_args(argv)
    server = make_server(args, "" if args.local else read_token(args.token_file))
    scheme = "https" if args.tls_cert else "http"
    host, port = server.server_address[:2]
    what = "immich ML (local CPU container) stand-in" if args.local else "runpod edge + immich ML stand-in"
    print(f"{what} at {scheme}://{host}:{port}", file=sys.stderr, flush=True)
    # As PID 1 of its container Python would ignore `docker stop`'s SIGTERM.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
