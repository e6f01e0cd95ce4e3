#!/usr/bin/env python3
"""Stand-in for an app behind Traefik (Immich in production), run in the scenario's backend container.

GET  any path           -> 200 JSON {"backend", "path", "headers"}: what arrived through the proxy.
GET  /sleep?seconds=S&marker=M -> touches /tmp/molecule-sleep-M on arrival, waits S seconds, then answers as
                           above plus {"slept": S}: a request still in flight when Traefik restarts.
POST /upload?rate_mib=R -> reads the body at most R MiB/s (a slow disk or a busy Immich), then answers
                           200 JSON {"bytes", "sha256", "seconds"}. Backpressure makes Traefik read the
                           client's body just as slowly, which is what its readTimeout measures.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

CHUNK = 64 * 1024


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _reply(self, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        answer = {"backend": "molecule", "path": self.path, "headers": dict(self.headers.items())}
        url = urlparse(self.path)
        if url.path == "/sleep":
            query = parse_qs(url.query)
            marker = "".join(c for c in query.get("marker", ["x"])[0] if c.isalnum())
            Path(f"/tmp/molecule-sleep-{marker}").touch()
            answer["slept"] = float(query.get("seconds", ["3"])[0])
            time.sleep(answer["slept"])
        self._reply(answer)

    def do_POST(self) -> None:  # noqa: N802
        query = parse_qs(urlparse(self.path).query)
        rate = float(query.get("rate_mib", ["0"])[0]) * 1024 * 1024
        digest, received, start = hashlib.sha256(), 0, time.monotonic()
        for block in self._body():
            digest.update(block)
            received += len(block)
            if rate:
                ahead = start + received / rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
        self._reply({"bytes": received, "sha256": digest.hexdigest(), "seconds": round(time.monotonic() - start, 1)})

    def _body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", ""):
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                yield from self._read(size)
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass
        else:
            yield from self._read(int(self.headers.get("Content-Length", "0")))

    def _read(self, size: int):
        while size > 0:
            block = self.rfile.read(min(CHUNK, size))
            if not block:
                return
            size -= len(block)
            yield block


if __name__ == "__main__":
    ThreadingHTTPServer(("0.0.0.0", int(sys.argv[1]) if len(sys.argv) > 1 else 8080), Handler).serve_forever()
