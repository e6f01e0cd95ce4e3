"""The traefik role refuses bad input before it touches a host.

Each case runs the real role with ansible-playbook against localhost in check mode, limited to the
argument-spec validation (always runs) and the role's own checks (tag traefik_validate), and asserts on
the message a user would read.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
PLAYBOOK = """\
- name: Validate the traefik role's input
  hosts: localhost
  gather_facts: false
  roles:
    - role: selfhost.immich.traefik
"""
VALID = {
    "traefik_acme_email": "admin@example.org",
    "traefik_acme_challenge": "http",
    "traefik_acme_domains": ["photos.example.org"],
}
SENTINEL_TOKEN = "sentinel-cf-token-7f3a9c"


def run_role(tmp_path: Path, variables: dict) -> subprocess.CompletedProcess:
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    (tmp_path / "vars.json").write_text(json.dumps(variables))
    env = {
        **os.environ,
        "ANSIBLE_COLLECTIONS_PATH": str(REPO / ".collections"),
        "ANSIBLE_CONFIG": str(tmp_path / "none.cfg"),  # not the repo's ansible.cfg (lab inventory)
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_LOCALHOST_WARNING": "0",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0",
    }
    cmd = [
        str(Path(sys.executable).with_name("ansible-playbook")),
        "-i", "localhost,",
        "-c", "local",
        "-e", f"ansible_python_interpreter={sys.executable}",
        "-e", f"@{tmp_path / 'vars.json'}",
        "--check",
        "--tags", "traefik_validate",
        str(tmp_path / "play.yml"),
    ]
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def test_valid_input_passes(tmp_path):
    result = run_role(tmp_path, VALID)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "failed=0" in result.stdout


@pytest.mark.parametrize(
    ("override", "message"),
    [
        pytest.param({"traefik_acme_email": None}, "missing required arguments: traefik_acme_email", id="no-email"),
        pytest.param({"traefik_acme_email": "admin"}, "is not an e-mail address", id="bad-email"),
        pytest.param(
            {"traefik_acme_challenge": "tls-alpn"},
            "value of traefik_acme_challenge must be one of: dns-cloudflare, http, got: tls-alpn",
            id="unknown-challenge",
        ),
        pytest.param({"traefik_acme_domains": ["photos"]}, "'photos' is not a fully qualified domain", id="no-dot"),
        pytest.param(
            {"traefik_acme_domains": ["https://photos.example.org/"]},
            "is not a fully qualified domain name",
            id="url-not-name",
        ),
        pytest.param({"traefik_acme_domains": ["photos.example.org."]}, "is not a fully qualified", id="trailing-dot"),
        pytest.param({"traefik_acme_domains": ["*.example.org"]}, "only the DNS-01 challenge", id="wildcard-http"),
        pytest.param({"traefik_version": "3.5.3"}, "3.6.1 or newer", id="too-old"),
        pytest.param({"traefik_version": "v3.7.15"}, "without a\nleading v", id="leading-v"),
        pytest.param(
            {"traefik_acme_challenge": "dns-cloudflare"},
            "traefik_cloudflare_dns_api_token must hold a Cloudflare API",
            id="dns-without-token",
        ),
        pytest.param(
            {"traefik_extra_entrypoints": {"websecure": {"address": ":8443"}}},
            "web, websecure and traefik are reserved",
            id="reserved-entrypoint",
        ),
        pytest.param(
            {"traefik_dashboard_enabled": True, "traefik_dashboard_host": "traefik.example.org"},
            "never served without authentication",
            id="dashboard-without-auth",
        ),
    ],
)
def test_bad_input_fails_with_a_clear_message(tmp_path, override, message):
    variables = {**VALID, **override}
    variables = {k: v for k, v in variables.items() if v is not None}
    result = run_role(tmp_path, variables)
    assert result.returncode != 0
    # Ansible folds long messages; compare whitespace-insensitively.
    assert " ".join(message.split()) in " ".join(result.stdout.split()), result.stdout


def test_wildcard_with_dns_challenge_passes(tmp_path):
    variables = {
        **VALID,
        "traefik_acme_challenge": "dns-cloudflare",
        "traefik_cloudflare_dns_api_token": SENTINEL_TOKEN,
        "traefik_acme_domains": ["example.org", "*.example.org"],
    }
    result = run_role(tmp_path, variables)
    assert result.returncode == 0, result.stdout + result.stderr
    assert SENTINEL_TOKEN not in result.stdout + result.stderr
