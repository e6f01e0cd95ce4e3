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
from ansible.template import Templar
from ansible_collections.selfhost.immich.plugins.filter.release_arch import release_arch
from ansible_collections.selfhost.immich.tests.unit.utils.role_files import trust, trust_as_template

ROLE = Path(__file__).resolve().parents[3] / "roles" / "traefik"
TOKEN = "cf-sentinel-token-0123456789"
FACTS = {"architecture": "aarch64", "distribution": "Debian", "distribution_major_version": "12"}
# traefik_arch's default is the collection filter release_arch of the facts (a plain Templar knows no collection
# filters; tests/unit/plugins/filter checks that the default calls it).
ARCH = {"traefik_arch": release_arch(FACTS["architecture"])}
BASE = {"traefik_acme_email": "admin@example.org", "traefik_cloudflare_dns_api_token": TOKEN}
# Traefik's own graceTimeOut is 10s: requests in flight longer than that were cut on a restart.
LIFECYCLE = {"requestAcceptGraceTimeout": "2s", "graceTimeOut": "30s"}


def _variables(**overrides) -> dict:
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    role_vars = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())
    return {**trust(defaults), **trust(role_vars), **ARCH, **BASE, **overrides, "ansible_facts": FACTS}


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
        "transport": {"lifeCycle": LIFECYCLE},
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
        "transport": {"lifeCycle": LIFECYCLE, "respondingTimeouts": {"readTimeout": "600s", "idleTimeout": "600s"}},
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


def _stop_timeout(unit: str) -> int:
    (line,) = [line for line in unit.splitlines() if line.startswith("TimeoutStopSec=")]
    match = re.fullmatch(r"TimeoutStopSec=([0-9]+)s", line)
    assert match, line
    return int(match.group(1))


@pytest.mark.parametrize(
    ("accept", "grace", "seconds"),
    [("2s", "30s", 32), ("0s", "1s", 1), ("5s", "2m", 125), ("1m", "10m", 660)],
)
def test_every_entrypoint_drains_on_restart_and_systemd_waits_longer(accept, grace, seconds):
    overrides = {
        "traefik_request_accept_grace_timeout": accept,
        "traefik_grace_timeout": grace,
        "traefik_extra_entrypoints": {"ml-gateway": {"address": "127.0.0.1:3003"}},
    }
    entrypoints = static(**overrides)["entryPoints"]
    assert set(entrypoints) == {"web", "websecure", "ml-gateway"}
    for name, entrypoint in entrypoints.items():
        lifecycle = entrypoint["transport"]["lifeCycle"]
        assert lifecycle == {"requestAcceptGraceTimeout": accept, "graceTimeOut": grace}, name
    # systemd sends SIGKILL after TimeoutStopSec: it must leave Traefik both grace times, with a margin.
    assert _stop_timeout(render("traefik.service.j2", **overrides)) > seconds
    assert _stop_timeout(render("traefik.service.j2", **overrides)) >= seconds + 10


def test_default_grace_outlasts_traefiks_own_10s():
    lifecycle = static()["entryPoints"]["websecure"]["transport"]["lifeCycle"]
    assert lifecycle == LIFECYCLE
    assert _stop_timeout(render("traefik.service.j2")) > 32


def test_access_log_header_modes():
    logged = static(
        traefik_access_log_enabled=True,
        traefik_access_log_headers_default_mode="redact",
        traefik_access_log_headers={"User-Agent": "keep", "Authorization": "drop"},
    )
    assert logged["accessLog"]["fields"]["headers"] == {
        "defaultMode": "redact",
        "names": {"User-Agent": "keep", "Authorization": "drop"},
    }


# A value with a line break, a colon or YAML flow syntax must stay one value: before every interpolation was written
# as a JSON string, a certificate resolver named "acme\napi: {insecure: true}" enabled the insecure API.
HOSTILE = "x\napi: {insecure: true, dashboard: true}\nlog: {level: DEBUG}\n#"


@pytest.mark.parametrize(
    ("template", "overrides"),
    [
        ("traefik.yml.j2", {"traefik_cert_resolver": HOSTILE}),
        ("traefik.yml.j2", {"traefik_extra_entrypoints": {HOSTILE: {"address": "127.0.0.1:3003"}}}),
        ("traefik.yml.j2", {"traefik_extra_entrypoints": {"x": {"address": HOSTILE}}}),
        ("traefik.yml.j2", {"traefik_read_timeout": HOSTILE, "traefik_idle_timeout": HOSTILE}),
        ("traefik.yml.j2", {"traefik_grace_timeout": HOSTILE, "traefik_request_accept_grace_timeout": HOSTILE}),
        ("traefik.yml.j2", {"traefik_log_level": "INFO\napi: {insecure: true}"}),
        ("traefik.yml.j2", {"traefik_acme_email": HOSTILE, "traefik_acme_ca_server": HOSTILE,
                            "traefik_acme_key_type": HOSTILE, "traefik_dynamic_dir": HOSTILE}),
        ("traefik.yml.j2", {"traefik_access_log_enabled": True, "traefik_access_log_format": HOSTILE,
                            "traefik_access_log_headers_default_mode": HOSTILE,
                            "traefik_access_log_headers": {HOSTILE: HOSTILE}}),
        ("dynamic/selfhost-edge.yml.j2", {"traefik_cert_resolver": HOSTILE, "traefik_referrer_policy": HOSTILE,
                                          "traefik_acme_domains": [HOSTILE, HOSTILE]}),
        ("dynamic/selfhost-dashboard.yml.j2", {"traefik_dashboard_host": HOSTILE,
                                               "traefik_dashboard_users": [HOSTILE]}),
    ],
    ids=["cert-resolver", "entrypoint-name", "entrypoint-address", "timeouts", "grace", "log-level", "acme",
         "access-log", "edge", "dashboard"],
)
def test_hostile_values_stay_values(template, overrides):
    # The role refuses such values first (validate.yml); the templates must not depend on that alone.
    text = render(template, **overrides)
    document = yaml.safe_load(text)
    assert "api" not in document
    assert document.get("log", {}).get("level") != "DEBUG"
    leaves = []

    def walk(node):
        if isinstance(node, dict):
            for key, item in node.items():
                leaves.append(key)
                walk(item)
        elif isinstance(node, list):
            for item in node:
                walk(item)
        else:
            leaves.append(node)

    walk(document)
    hostile = [leaf for leaf in leaves if isinstance(leaf, str) and "insecure: true" in leaf]
    assert hostile, "the hostile value did not arrive as one string"
    assert "insecure" not in [leaf for leaf in leaves if isinstance(leaf, str) and "\n" not in leaf]


def _tasks(*files: str) -> list[dict]:
    tasks = []
    for name in files:
        for task in yaml.safe_load((ROLE / "tasks" / name).read_text()):
            tasks.extend(task.get("block", [task]))
    return tasks


def _destinations(task: dict) -> list[str]:
    module = task.get("selfhost.immich.file_set") or task.get("ansible.builtin.file") or {}
    paths = [entry["dest"] for entry in module.get("files", [])]
    paths += [entry["path"] for entry in module.get("directories", [])]
    if "path" in module:
        paths.append(module["path"])
    if "dest" in module:
        paths.append(module["dest"])
    return paths


def test_only_static_changes_restart_traefik():
    """Dynamic configuration (the file provider's directory) is reloaded live: nothing written there notifies."""
    tasks = _tasks("install.yml", "configure.yml", "firewall.yml", "service.yml")
    notifying = {task["name"]: task.get("notify") for task in tasks if task.get("notify")}
    for task in tasks:
        dynamic = [path for path in _destinations(task) if path.startswith("{{ traefik_dynamic_dir }}/")]
        if dynamic:
            assert "notify" not in task, f"{task['name']} writes {dynamic} and notifies {task['notify']}"
    restarting = {name for name, notify in notifying.items() if "Restart traefik" in notify}
    assert restarting == {
        "Write the static configuration",
        "Write the service environment (secrets)",
        "Install the CA that signed the ACME directory's certificate",
        "Remove an ACME CA bundle that is no longer configured",
        "Write the systemd unit",
        "Point the traefik command at the pinned release",
    }
    # The task that writes the shared dynamic file also creates the directories: it must not notify either.
    edge = [task for task in tasks if "{{ traefik_dynamic_dir }}/selfhost-edge.yml" in _destinations(task)]
    assert len(edge) == 1 and "notify" not in edge[0]


def test_metrics_are_opt_in_on_their_own_entrypoint():
    assert "metrics" not in static() and "metrics" not in static()["entryPoints"]
    config = static(traefik_metrics_enabled=True, traefik_metrics_address="10.0.0.2:9100")
    assert config["entryPoints"]["metrics"] == {"address": "10.0.0.2:9100"}
    assert config["metrics"]["prometheus"]["entryPoint"] == "metrics"
