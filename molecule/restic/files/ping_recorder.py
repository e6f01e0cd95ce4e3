#!/usr/bin/env python3
"""A healthchecks.io stand-in: answers 200 OK to every ping and appends its path to a log file."""

from __future__ import annotations

import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

LOG = Path(sys.argv[2] if len(sys.argv) > 2 else "/var/log/pings.log")


class Recorder(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        with LOG.open("a") as log:
            log.write(self.path + "\n")
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"OK")

    do_POST = do_HEAD = do_GET  # noqa: N815


ThreadingHTTPServer(("0.0.0.0", int(sys.argv[1])), Recorder).serve_forever()
