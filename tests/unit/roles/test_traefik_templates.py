"""The traefik role's files, rendered with the role's own defaults, vars and templates.

Molecule proves the HTTP-01 path end to end (arm64) and the DNS-01 path's secret handling (amd64 twin);
these render every variant - both challenges, extra entrypoints, access log, dashboard, several domains -
and check what Traefik and systemd will read.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template
from ansible_collections.selfhost.immich.tests.unit.utils.role_files import trust

ROLE = Path(__file__).resolve().parents[3] / "roles" / "traefik"
TOKEN = "cf-sentinel-token-0123456789"
FACTS = {"architecture": "aarch64", "distribution": "Debian", "distribution_major_version": "12"}
PREFLIGHT = {"preflight_arch": "arm64"}  # set by the shared preflight role from the facts
BASE = {"traefik_acme_email": "admin@example.org", "traefik_cloudflare_dns_api_token": TOKEN}


def _variables(**overrides) -> dict:
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    role_vars = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())
    return {**trust(defaults), **trust(role_vars), **PREFLIGHT, **BASE, **overrides, "ansible_facts": FACTS}


def render(template: str, **overrides) -> str:
    templar = Templar(loader=DataLoader(), variables=_variables(**overrides))
    return templar.template(trust_as_template((ROLE / "templates" / template).read_text()))


def value(name: str, **overrides):
    templar = Templar(loader=DataLoader(), variables=_variables(**overrides))
    return templar.template(trust_as_template("{{ " + name + " }}"))


def static(**overrides) -> dict:
    return yaml.safe_load(render("traefik.yml.j2", **overrides))


def env_lines(**overrides) -> list[str]:
    return [line for line in render("traefik.env.j2", **overrides).splitlines() if line and line[0] != "#"]


@pytest.mark.parametrize(
    "template",
    ["traefik.yml.j2", "traefik.env.j2", "traefik.service.j2", "dynamic/selfhost-edge.yml.j2",
     "dynamic/selfhost-dashboard.yml.j2"],
)
def test_every_file_says_it_is_managed(template):
    text = render(template, traefik_dashboard_host="t.example.org", traefik_dashboard_users=["u:$2y$05$x"])
    assert text.startswith("# Managed by selfhost.immich — local changes are overwritten\n")


def test_entrypoints_redirect_and_immich_timeouts():
    config = static()
    web, websecure = config["entryPoints"]["web"], config["entryPoints"]["websecure"]
    assert web == {
        "address": ":80",
        "http": {"redirections": {"entryPoint": {"to": "websecure", "scheme": "https", "permanent": True}}},
    }
    assert websecure["address"] == ":443"
    assert websecure["transport"]["respondingTimeouts"] == {"readTimeout": "600s", "idleTimeout": "600s"}
    assert websecure["http"] == {"tls": {"certResolver": "acme"}, "middlewares": ["security-headers@file"]}


def test_no_write_timeout_anywhere():
    # A writeTimeout would cut long downloads (Immich PR #25837); Traefik's default is none.
    config = static(traefik_extra_entrypoints={"ml-gateway": {"address": "127.0.0.1:3003"}})
    for name, entrypoint in config["entryPoints"].items():
        assert "writeTimeout" not in entrypoint.get("transport", {}).get("respondingTimeouts", {}), name


def test_extra_entrypoints_and_dynamic_dir():
    config = static(
        traefik_extra_entrypoints={"ml-gateway": {"address": "127.0.0.1:3003"}},
        traefik_dynamic_dir="/srv/traefik/dynamic",
    )
    assert config["entryPoints"]["ml-gateway"] == {
        "address": "127.0.0.1:3003",
        "transport": {"respondingTimeouts": {"readTimeout": "600s", "idleTimeout": "600s"}},
    }
    assert config["providers"] == {"file": {"directory": "/srv/traefik/dynamic", "watch": True}}


def test_no_phoning_home_and_optional_access_log():
    config = static()
    assert config["global"] == {"checkNewVersion": False, "sendAnonymousUsage": False}
    assert "accessLog" not in config
    logged = static(traefik_access_log_enabled=True, traefik_access_log_format="json")
    assert logged["accessLog"] == {"format": "json", "fields": {"headers": {"defaultMode": "drop"}}}


def test_dns_cloudflare_is_the_default_challenge():
    acme = static()["certificatesResolvers"]["acme"]["acme"]
    assert acme == {
        "email": "admin@example.org",
        "storage": "/var/lib/traefik/acme.json",
        "caServer": "https://acme-v02.api.letsencrypt.org/directory",
        "keyType": "EC256",
        "dnsChallenge": {"provider": "cloudflare", "resolvers": ["1.1.1.1:53", "1.0.0.1:53"]},
    }


def test_cloudflare_token_only_in_the_env_file():
    assert env_lines() == [f"CF_DNS_API_TOKEN={TOKEN}"]
    assert env_lines(traefik_cloudflare_zone_api_token="zone-token") == [
        f"CF_DNS_API_TOKEN={TOKEN}",
        "CF_ZONE_API_TOKEN=zone-token",
    ]
    for template in ("traefik.yml.j2", "traefik.service.j2", "dynamic/selfhost-edge.yml.j2"):
        assert TOKEN not in render(template)


def test_http_challenge_with_a_test_ca():
    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"
    overrides = {
        "traefik_acme_challenge": "http",
        "traefik_acme_ca_server": "https://pebble:14000/dir",
        "traefik_acme_ca_bundle": pem,
    }
    acme = static(**overrides)["certificatesResolvers"]["acme"]["acme"]
    assert acme["httpChallenge"] == {"entryPoint": "web"}
    assert "dnsChallenge" not in acme
    assert acme["caServer"] == "https://pebble:14000/dir"
    # The token stays out even if it is still set in the inventory.
    assert env_lines(**overrides) == ["LEGO_CA_CERTIFICATES=/etc/traefik/acme-ca.pem", "LEGO_CA_SYSTEM_CERT_POOL=true"]


def test_unit_is_hardened_and_reads_secrets_from_the_env_file():
    unit = render("traefik.service.j2").splitlines()
    assert "ExecStart=/usr/local/bin/traefik --configFile=/etc/traefik/traefik.yml" in unit
    assert "EnvironmentFile=/etc/traefik/traefik.env" in unit
    for directive in (
        "User=traefik", "Type=notify", "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE", "NoNewPrivileges=true", "ProtectSystem=strict",
        "StateDirectory=traefik", "StateDirectoryMode=0700", "UMask=0077", "PrivateDevices=true",
    ):
        assert directive in unit
    assert not any("docker" in line.lower() for line in unit)


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
def test_unit_exposure_score(tmp_path):
    unit = tmp_path / "traefik.service"
    unit.write_text(render("traefik.service.j2"))
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(unit)],
        capture_output=True, text=True, check=False,
    )
    score = re.search(r"Overall exposure level for traefik\.service: ([0-9.]+)", result.stdout)
    assert score, result.stdout + result.stderr
    assert float(score.group(1)) <= 2.0, result.stdout  # "OK"; a plain service scores 9.6 ("UNSAFE")


def test_security_headers_and_tls_options():
    edge = yaml.safe_load(render("dynamic/selfhost-edge.yml.j2"))
    assert edge["http"]["middlewares"]["security-headers"]["headers"] == {
        "stsSeconds": 31536000,
        "stsIncludeSubdomains": False,
        "stsPreload": False,
        "contentTypeNosniff": True,
        "frameDeny": True,
        "referrerPolicy": "strict-origin-when-cross-origin",
    }
    options = edge["tls"]["options"]["default"]
    assert options["minVersion"] == "VersionTLS12"
    assert options["sniStrict"] is True
    assert options["cipherSuites"]
    assert all(s.startswith("TLS_ECDHE_") and ("_GCM_" in s or "CHACHA20" in s) for s in options["cipherSuites"])
    assert "stores" not in edge["tls"]  # no domains, no startup certificate


def test_domains_become_one_startup_certificate():
    edge = yaml.safe_load(
        render("dynamic/selfhost-edge.yml.j2", traefik_acme_domains=["example.org", "*.example.org"])
    )
    assert edge["tls"]["stores"]["default"]["defaultGeneratedCert"] == {
        "resolver": "acme",
        "domain": {"main": "example.org", "sans": ["*.example.org"]},
    }


def test_dashboard_off_by_default_and_otherwise_authenticated():
    assert "api" not in static()
    config = static(traefik_dashboard_enabled=True)
    assert config["api"] == {"dashboard": True, "insecure": False}
    dashboard = yaml.safe_load(
        render(
            "dynamic/selfhost-dashboard.yml.j2",
            traefik_dashboard_host="traefik.example.org",
            traefik_dashboard_users=["admin:$2y$05$abcdefghijklmnopqrstuv"],
        )
    )["http"]
    router = dashboard["routers"]["traefik-dashboard"]
    assert router["entryPoints"] == ["websecure"]
    assert router["service"] == "api@internal"
    assert router["rule"].startswith("Host(`traefik.example.org`) && ")
    assert router["middlewares"] == ["traefik-dashboard-auth"]
    assert dashboard["middlewares"]["traefik-dashboard-auth"] == {
        "basicAuth": {"users": ["admin:$2y$05$abcdefghijklmnopqrstuv"]}
    }


def test_release_tarball_url_and_checksum():
    assert value("traefik_download_url") == (
        "https://github.com/traefik/traefik/releases/download/v3.7.15/traefik_v3.7.15_linux_arm64.tar.gz"
    )
    # Without a pinned digest the release's published checksum list is used ...
    assert value("traefik_download_checksum") == (
        "sha256:https://github.com/traefik/traefik/releases/download/v3.7.15/traefik_v3.7.15_checksums.txt"
    )
    # ... a pinned digest for the host's architecture wins.
    digest = "a" * 64
    pinned = value("traefik_download_checksum", traefik_release_sha256={"arm64": digest, "amd64": ""})
    assert pinned == f"sha256:{digest}"
    mirror = value("traefik_download_url", traefik_release_url="http://mirror.lab/v3.7.15")
    assert mirror == "http://mirror.lab/v3.7.15/traefik_v3.7.15_linux_arm64.tar.gz"


def test_defaults_mirror_the_argument_specs():
    specs = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())["argument_specs"]["main"]["options"]
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    required = {name for name, spec in specs.items() if spec.get("required")}
    assert set(defaults) == set(specs) - required
    for name, spec in specs.items():
        templated = "{{" in str(defaults.get(name, ""))  # computed defaults are described, not listed
        if "default" in spec and not templated:
            assert defaults[name] == spec["default"], name
