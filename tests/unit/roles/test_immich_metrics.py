"""Immich's Prometheus metrics are opt-in: off, neither the environment nor the compose file mentions them; on,
IMMICH_TELEMETRY_INCLUDE=all is set and the two metrics ports are published on the configured address only.

The lab proves the published ports answer from the server itself (tests/e2e); this checks what the role renders.
"""

from __future__ import annotations

import yaml
from ansible_collections.selfhost.immich.tests.unit.utils.role_files import render_immich as render


def server_ports(**overrides) -> list[str]:
    return yaml.safe_load(render("compose.yml.j2", **overrides))["services"]["immich-server"]["ports"]


def test_metrics_are_off_by_default():
    assert server_ports() == ["127.0.0.1:2283:2283"]
    assert "TELEMETRY" not in render("env.j2")


def test_metrics_on_publish_both_ports_on_the_chosen_address_only():
    assert server_ports(immich_metrics_enabled=True) == [
        "127.0.0.1:2283:2283", "127.0.0.1:8081:8081", "127.0.0.1:8082:8082"]
    assert server_ports(immich_metrics_enabled=True, immich_metrics_bind_address="10.0.0.2",
                        immich_metrics_api_port=9181, immich_metrics_microservices_port=9182)[1:] == [
        "10.0.0.2:9181:8081", "10.0.0.2:9182:8082"]
    assert "\nIMMICH_TELEMETRY_INCLUDE=all\n" in render("env.j2", immich_metrics_enabled=True)
