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
it again. ``/_lab/*`` is the lab's own side door, never forwarded by RunPod: ``GET /_lab/stats`` (counters,
the last request's Host and whether it carried the right key -- never the key itself), ``POST /_lab/reset``
(counters to zero, worker cold) and ``POST /_lab/config`` (JSON with any of cold_start, max_wait,
idle_timeout).

The key comes from ``--token-file`` or the environment variable ``ML_WORKER_TOKEN``, never from the
command line (``ps`` would show it). Python standard library only: it runs on the arm64 test host too.

    ML_WORKER_TOKEN=... ml_worker.py --host 127.0.0.1 --port 8443 --tls-cert c.pem --tls-key k.pem \\
        --expect-host runpod-edge.test:8443 --cold-start 0 --idle-timeout 0
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import math
import os
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

    def __init__(self, cold_start: float, max_wait: float, idle_timeout: float) -> None:
        self.lock = threading.Condition()
        self.cold_start, self.max_wait, self.idle_timeout = cold_start, max_wait, idle_timeout
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.ready_at: float | None = None  # None: no worker; in the future: booting
            self.last_activity = 0.0
            self.in_flight = 0
            self.stats = {"requests": 0, "unauthorized": 0, "misrouted": 0, "no_worker": 0, "cold_starts": 0,
                          "pings": 0, "predicts": 0, "max_in_flight": 0, "last_host": None,
                          "last_path": None, "last_authorized": None}

    def configure(self, **settings: float) -> None:
        with self.lock:
            for key in ("cold_start", "max_wait", "idle_timeout"):
                if key in settings:
                    setattr(self, key, float(settings[key]))

    def count(self, key: str, value: object = None) -> None:
        with self.lock:
            if value is None:
                self.stats[key] += 1
            else:
                self.stats[key] = value

    def snapshot(self) -> dict:
        with self.lock:
            now = time.monotonic()
            state = "cold" if self._gone(now) else "booting" if self.ready_at > now else "ready"
            return dict(self.stats, worker=state)

    def _gone(self, now: float) -> bool:
        if self.ready_at is None:
            return True
        idle = self.idle_timeout > 0 and self.in_flight == 0 and self.ready_at <= now
        return idle and now - max(self.last_activity, self.ready_at) >= self.idle_timeout

    def acquire(self) -> bool:
        """Wait for a ready worker like the edge does; False after max_wait without one."""
        with self.lock:
            now = time.monotonic()
            if self._gone(now):
                self.ready_at = now + self.cold_start
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


def predict(fields: dict[str, bytes]) -> dict:
    """Answer Immich's POST /predict like immich_ml/main.py does."""
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
            return self._send(200, "pong")
        if self.command == "POST" and path == "/predict":
            self.edge.count("predicts")
            try:
                return self._send(200, predict(parse_multipart(self.headers.get("Content-Type", ""), body)))
            except PredictError as exc:
                return self._send(exc.status, {"detail": exc.detail})
        return self._send(404, {"detail": "Not Found"})

    def _lab(self, path: str, body: bytes) -> None:
        if self.command == "GET" and path == "/_lab/stats":
            return self._send(200, self.edge.snapshot())
        if self.command == "POST" and path == "/_lab/reset":
            self.edge.reset()
            return self._send(200, self.edge.snapshot())
        if self.command == "POST" and path == "/_lab/config":
            self.edge.configure(**json.loads(body or b"{}"))
            return self._send(200, {k: getattr(self.edge, k) for k in ("cold_start", "max_wait", "idle_timeout")})
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
    server = Server((args.host, args.port), Handler)
    server.edge = Edge(args.cold_start, args.max_wait, args.idle_timeout)
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
    parser.add_argument("--port", type=int, default=8443)
    parser.add_argument("--token-file", help="file holding the key (else $ML_WORKER_TOKEN)")
    parser.add_argument("--tls-cert", help="PEM certificate chain: serve HTTPS like RunPod's edge")
    parser.add_argument("--tls-key", help="PEM private key of --tls-cert")
    parser.add_argument("--expect-host", help="route only requests whose Host header is exactly this")
    parser.add_argument("--cold-start", type=float, default=0.0, help="seconds a worker needs to become ready")
    parser.add_argument("--max-wait", type=float, default=120.0, help="seconds the edge holds a request (RunPod: 120)")
    parser.add_argument("--idle-timeout", type=float, default=0.0, help="idle seconds before it goes (0: never)")
    parser.add_argument("--quiet", action="store_true", help="no per-request log lines (benchmarks)")
    args = parser.parse_args(argv)
    server = make_server(args, read_token(args.token_file))
    scheme = "https" if args.tls_cert else "http"
    print(f"runpod edge + immich ML stand-in at {scheme}://{args.host}:{args.port}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
