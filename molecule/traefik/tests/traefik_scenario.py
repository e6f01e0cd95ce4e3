"""Constants and helpers shared by the traefik scenario's tests (a unique name: conftest.py is not importable)."""

from __future__ import annotations

import time

DOMAIN = "immich.traefik.test"
PEBBLE_ROOT = "/tmp/pebble-root.pem"


def served_certificate(client, domain: str = DOMAIN) -> dict:
    """Issuer/subject/serial of the certificate Traefik presents for `domain` (SNI)."""
    out = client.run(
        f"echo | openssl s_client -connect {domain}:443 -servername {domain} 2>/dev/null"
        " | openssl x509 -noout -issuer -subject -serial -nameopt RFC2253"
    ).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def wait_for_pebble_certificate(client, timeout: int = 180) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        cert = served_certificate(client)
        if cert.get("issuer", "").startswith("CN=Pebble Intermediate CA"):
            return cert
        assert time.monotonic() < deadline, f"no certificate from Pebble for {DOMAIN} after {timeout}s: {cert}"
        time.sleep(3)
