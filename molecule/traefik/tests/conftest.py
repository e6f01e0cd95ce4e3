"""Fixtures of the traefik scenario: stand-in hosts, Pebble's trust anchor, the served certificate."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import testinfra
import yaml
from traefik_scenario import PEBBLE_ROOT, wait_for_pebble_certificate

ROLE_DEFAULTS = Path(__file__).resolve().parents[3] / "roles" / "traefik" / "defaults" / "main.yml"


@pytest.fixture(scope="session")
def scenario_dir() -> Path:
    """The controller-side directory prepare and side_effect leave files in."""
    return Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])


@pytest.fixture(scope="session")
def pinned_version() -> str:
    return yaml.safe_load(ROLE_DEFAULTS.read_text())["traefik_version"]


@pytest.fixture(scope="session")
def standin(request):
    """standin("traefik-backend") -> a testinfra host for a stand-in container."""
    inventory = request.config.option.ansible_inventory

    def get(name: str):
        return testinfra.get_host(f"ansible://{name}", ansible_inventory=inventory)

    return get


@pytest.fixture(scope="session")
def client(standin):
    """The backend container doubles as the HTTPS client; it trusts Pebble's issuing root.

    Pebble makes a new root at each start and serves it on its management port: the trust anchor a client
    of this CA has, as ISRG Root X1 is for Let's Encrypt. The lab CA verifies that management endpoint.
    """
    backend = standin("traefik-backend")
    backend.check_output(
        f"curl -fsS --cacert /usr/local/share/lab-ca.pem -o {PEBBLE_ROOT} https://traefik-pebble:15000/roots/0"
    )
    return backend


@pytest.fixture(scope="session")
def certificate(client) -> dict:
    """The certificate served for the test domain, once Traefik has obtained it from Pebble."""
    return wait_for_pebble_certificate(client)
