"""The ML cost router as the immich role installs it: its JSON config as the role renders it is one the router
accepts (types included, on every supported ansible-core), its units run it with that config, and the gateway's
own /ping answers idle (503) when the router decides, below the router's mode file.

The router's decisions are tested in tests/unit/test_ml_router.py; the lab (tests/e2e/test_lab.py) runs it.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import sys

import yaml
from ansible_collections.selfhost.immich.tests.unit.utils.role_files import (
    IMMICH_ROLE,
    load_trusted,
    render_immich,
    trust_as_template,
)

REPO = IMMICH_ROLE.parents[1]
SCRIPT = IMMICH_ROLE / "files" / "selfhost-immich-ml-router"
_loader = importlib.machinery.SourceFileLoader("selfhost_immich_ml_router_role", str(SCRIPT))
_spec = importlib.util.spec_from_loader(_loader.name, _loader)
router = importlib.util.module_from_spec(_spec)
sys.modules[_loader.name] = router
_loader.exec_module(router)

ROUTER_ON = {"immich_ml_router_enabled": True, "immich_ml_urls": ["http://172.30.0.1:3003/"],
             "immich_local_ml_enabled": True, "immich_traefik_dynamic_dir": "/etc/traefik/dynamic"}


def rendered_config(**overrides) -> dict:
    """tasks/ml_router.yml's content for the config file, rendered with the role's defaults and vars."""
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar

    variables = {**load_trusted(IMMICH_ROLE / "defaults" / "main.yml"),
                 **load_trusted(IMMICH_ROLE / "vars" / "main.yml"),
                 "immich_domain": "photos.example.org", **ROUTER_ON, **overrides}
    text = Templar(loader=DataLoader(), variables=variables).template(
        trust_as_template("{{ immich_ml_router_config | to_nice_json(indent=2) }}\n"))
    return json.loads(text)


def test_the_rendered_config_is_one_the_router_accepts():
    raw = rendered_config()
    config = router.config_from_dict(raw)  # strict types: a "50" or "True" string would be refused
    assert config.immich_url == "http://127.0.0.1:2283"
    assert config.immich_api_key_file == "/etc/selfhost-immich/ml-router-immich.key"
    assert config.mode_file == "/etc/traefik/dynamic/runpod-ml-mode.yml"
    assert (config.gateway_entrypoint, config.gateway_middlewares) == ("runpod-ml", ("runpod-ml-allow",))
    assert (config.burst_threshold, config.hold_seconds, config.local_ml) == (50, 600, True)
    assert (config.release_time, config.release_within_days) == ("03:00", 3)
    assert not config.manages_idle_timeout  # no guard env file given: the idle timeout is left alone


def test_the_wired_values_reach_the_config():
    config = router.config_from_dict(rendered_config(
        immich_ml_router_runpod_env_file="/etc/selfhost-immich/runpod-workers-guard.env",
        immich_ml_router_gateway_entrypoint="gpu", immich_local_ml_enabled=False,
        immich_ml_router_burst_threshold="80", immich_ml_router_normal_idle_timeout=90))
    assert config.runpod_env_file == "/etc/selfhost-immich/runpod-workers-guard.env" and config.manages_idle_timeout
    assert config.mode_file == "/etc/traefik/dynamic/gpu-mode.yml" and config.gateway_middlewares == ("gpu-allow",)
    assert (config.local_ml, config.burst_threshold, config.normal_idle_timeout) == (False, 80, 90)


def test_the_timer_runs_the_router_with_its_config_once_a_minute():
    service = render_immich("selfhost-immich-ml-router.service.j2", **ROUTER_ON)
    assert ("ExecStart=/usr/bin/python3 /usr/local/sbin/selfhost-immich-ml-router "
            "--config /etc/selfhost-immich/ml-router.json") in service
    assert "ReadWritePaths=/etc/traefik/dynamic\n" in service  # where it writes the mode file
    assert "StateDirectory=selfhost-immich\n" in service  # /var/lib/selfhost-immich: its state file
    timer = render_immich("selfhost-immich-ml-router.timer.j2", **ROUTER_ON)
    assert "OnUnitActiveSec=1min" in timer and "WantedBy=timers.target" in timer


def render_gateway(**overrides) -> dict:
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar

    role = REPO / "roles" / "runpod_endpoint"
    variables = {**load_trusted(role / "defaults" / "main.yml"), **load_trusted(role / "vars" / "main.yml"),
                 "runpod_endpoint_api_key": "rpa_unit", "runpod_endpoint_upstream_url": "https://ep1.api.runpod.ai",
                 "runpod_endpoint_gateway_key": "rpa_unit", **overrides}
    text = Templar(loader=DataLoader(), variables=variables).template(
        trust_as_template((role / "templates" / "runpod-gateway.yml.j2").read_text()))
    return yaml.safe_load(text)["http"]


def test_the_gateways_own_ping_says_idle_under_the_routers_mode_file():
    assert render_gateway()["middlewares"]["runpod-ml-pong"]["errors"]["statusRewrites"] == {"418": 200}
    gateway = render_gateway(runpod_endpoint_gateway_ping_status=503)
    assert gateway["middlewares"]["runpod-ml-pong"]["errors"]["statusRewrites"] == {"418": 503}
    mode = yaml.safe_load(router.render_mode_file("burst", "runpod-ml", ("runpod-ml-allow",)))["http"]
    own, routed = gateway["routers"]["runpod-ml-ping"], mode["routers"]["runpod-ml-mode"]
    # Same rule and entrypoint; the mode file's router wins while it exists, the gateway's answers without it.
    assert (own["rule"], own["entryPoints"]) == (routed["rule"], routed["entryPoints"])
    assert routed["priority"] > own["priority"] > gateway["routers"]["runpod-ml"]["priority"]
    # The mode file's middleware chain starts with the gateway's allow list, defined in the gateway's file.
    assert routed["middlewares"][0] in gateway["middlewares"]
