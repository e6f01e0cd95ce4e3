"""This machine's addresses, for tests that bind a fake (or another local server) to an address that is not loopback."""

from __future__ import annotations

import ipaddress
import socket


def non_loopback_address() -> str | None:
    """An IPv4 address of this machine that is not loopback (the source address of the default route), or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # UDP: sets the route, sends nothing
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if ipaddress.ip_address(address).is_loopback else address
