"""The traefik role refuses bad input before it touches a host.

One ansible-playbook run checks every case (tests/unit/utils/role_checks.py): the real role in check mode, limited
to the argument-spec validation and the role's own checks (tag traefik_validate); each case must fail on the
message a user would read, before any change. A wildcard domain with the DNS-01 challenge must pass.
"""

from __future__ import annotations

import pytest
from ansible_collections.selfhost.immich.tests.unit.utils.role_checks import CheckRun, assert_refused, check_role

ROLE = "traefik"
SENTINEL_TOKEN = "sentinel-cf-token-7f3a9c"
VALID = {
    "traefik_acme_email": "admin@example.org",
    "traefik_acme_challenge": "http",
    "traefik_acme_domains": ["photos.example.org"],
}
VALID_CASES = {
    "valid": VALID,
    "wildcard-with-dns": {
        **VALID,
        "traefik_acme_challenge": "dns-cloudflare",
        "traefik_cloudflare_dns_api_token": SENTINEL_TOKEN,
        "traefik_acme_domains": ["example.org", "*.example.org"],
    },
}
SECRETS = [SENTINEL_TOKEN]
# case -> (overrides of VALID, text the failure must contain); None leaves the variable unset.
BAD = {
    "no-email": ({"traefik_acme_email": None},
        "missing required arguments: traefik_acme_email"),
    "bad-email": ({"traefik_acme_email": "admin"},
        "is not an e-mail address"),
    "unknown-challenge": ({"traefik_acme_challenge": "tls-alpn"},
        "value of traefik_acme_challenge must be one of: dns-cloudflare, http, got: tls-alpn"),
    "no-dot": ({"traefik_acme_domains": ["photos"]},
        "'photos' is not a fully qualified domain"),
    "url-not-name": ({"traefik_acme_domains": ["https://photos.example.org/"]},
        "is not a fully qualified domain name"),
    "trailing-dot": ({"traefik_acme_domains": ["photos.example.org."]},
        "is not a fully qualified"),
    "wildcard-http": ({"traefik_acme_domains": ["*.example.org"]},
        "only the DNS-01 challenge"),
    "too-old": ({"traefik_version": "3.5.3"},
        "3.6.1 or newer"),
    "leading-v": ({"traefik_version": "v3.7.15"},
        "without a\nleading v"),
    "dns-without-token": ({"traefik_acme_challenge": "dns-cloudflare"},
        "traefik_cloudflare_dns_api_token must hold a Cloudflare API"),
    "reserved-entrypoint": ({"traefik_extra_entrypoints": {"websecure": {"address": ":8443"}}},
        "web, websecure and traefik are reserved"),
    "dashboard-without-auth": ({"traefik_dashboard_enabled": True, "traefik_dashboard_host": "traefik.example.org"},
        "never served without authentication"),
}


@pytest.fixture(scope="module")
def checks(tmp_path_factory) -> CheckRun:
    bad = {case: {k: v for k, v in {**VALID, **override}.items() if v is not None}
           for case, (override, _) in BAD.items()}
    return check_role(ROLE, {**VALID_CASES, **bad}, tmp_path_factory.mktemp(ROLE))


@pytest.mark.parametrize("case", list(VALID_CASES))
def test_valid_input_passes(checks, case):
    assert checks.hosts[case].passed, checks.output[-3000:]


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_fails_with_a_clear_message(checks, case):
    assert_refused(checks, case, BAD[case][1])


def test_no_secret_reaches_the_output(checks):
    assert checks.hosts["valid"].passed
    for secret in SECRETS:
        assert secret not in checks.output
