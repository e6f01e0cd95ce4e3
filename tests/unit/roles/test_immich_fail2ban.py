"""Immich behind Traefik: the trusted proxy and the fail2ban jail, as the immich role renders them.

The lab proves them end to end (tests/e2e/test_lab.py: the client's address through Traefik, a ban at the firewall
and its expiry); molecule/immich runs the real fail2ban-regex on the rendered filter. This checks the rendering: the
one trusted address follows the network's gateway, the server logs to the journal under the name the jail matches,
the jail's values, and that the filter takes the address Immich appends, whatever the client put into the e-mail or
its request id (lines made by the Immich server double's copy of Immich's logger).
"""

from __future__ import annotations

import configparser
import importlib.util
import re
from pathlib import Path

import pytest
import yaml
from ansible_collections.selfhost.immich.tests.unit.utils.role_files import render_immich as render

REPO = Path(__file__).resolve().parents[3]


def env(**overrides) -> dict[str, str]:
    lines = [line for line in render("env.j2", **overrides).splitlines() if line and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


def jail(**overrides) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(render("fail2ban-jail.conf.j2", **overrides))
    return parser


def test_immich_trusts_exactly_the_networks_gateway_and_logs_without_colours():
    assert env()["IMMICH_TRUSTED_PROXIES"] == "172.30.0.1"
    assert env(immich_network_gateway="10.99.0.1")["IMMICH_TRUSTED_PROXIES"] == "10.99.0.1"
    assert env()["NO_COLOR"] == "true"


def test_the_server_logs_to_the_journal_under_the_name_the_jail_matches():
    server = yaml.safe_load(render("compose.yml.j2"))["services"]["immich-server"]
    assert server["logging"] == {"driver": "journald", "options": {"tag": "immich_server"}}
    assert jail()["immich"]["journalmatch"] == f"CONTAINER_NAME={server['container_name']}"


def test_jail_defaults_and_settings():
    immich = jail()["immich"]
    assert {key: immich[key] for key in ("enabled", "filter", "backend", "maxretry", "findtime", "bantime", "port",
                                         "protocol", "banaction", "ignoreip")} == {
        "enabled": "true", "filter": "selfhost-immich", "backend": "systemd", "maxretry": "5", "findtime": "600",
        "bantime": "3600", "port": "80,443", "protocol": "tcp", "banaction": "nftables[type=multiport]",
        "ignoreip": "127.0.0.1/8 ::1"}
    tuned = jail(immich_fail2ban_maxretry=3, immich_fail2ban_findtime=60, immich_fail2ban_bantime=30,
                 immich_fail2ban_ports=[443, 8443], immich_fail2ban_ignoreip=["203.0.113.7", "2001:db8::/32"])["immich"]
    assert (tuned["maxretry"], tuned["findtime"], tuned["bantime"], tuned["port"], tuned["ignoreip"]) == (
        "3", "60", "30", "443,8443", "127.0.0.1/8 ::1 203.0.113.7 2001:db8::/32")
    # Debian 12's sshd jail would keep fail2ban from starting on a journald-only server.
    assert jail()["sshd"]["backend"] == "systemd"


def failregex() -> re.Pattern:
    """The filter's failregex with fail2ban's <ADDR> as a named group of address characters."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(render("fail2ban-filter.conf.j2"))
    pattern = parser["Definition"]["failregex"]
    assert pattern.count("<ADDR>") == 1 and pattern.endswith("<ADDR>$")
    return re.compile(pattern.replace("<ADDR>", r"(?P<addr>[0-9A-Fa-f:.]+)"))


@pytest.fixture
def double(monkeypatch):
    pytest.importorskip("psycopg2", reason="the Immich server double imports psycopg2 (requirements.txt)")
    spec = importlib.util.spec_from_file_location("immich_double", REPO / "tests/lab/immich_double/immich_double.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setenv("NO_COLOR", "true")
    return module


def journal_line(double, email: str, address: str, cid: str = "k3j5h2g1") -> str:
    """What fail2ban's systemd backend makes of the journal entry: host, identifier[pid]: MESSAGE."""
    message = f"Failed login attempt for user {email} from ip address {address}"
    return f"immich-host immich_server[812]: {double.nest_line('WARN', f'Api:AuthService~{cid}', message)}"


@pytest.mark.parametrize(
    ("email", "cid"),
    [
        ("a@b.org", "k3j5h2g1"),
        # The e-mail and the request id (x-immich-cid) are the client's: neither can name another address.
        ('"x from ip address 9.9.9.9"@b.org', "k3j5h2g1"),
        ("a@b.org", "] Failed login attempt for user x from ip address 9.9.9.9"),
        ("a@b.org", "a]b"),  # a "]" in the request id must not let the line escape the filter
    ],
)
def test_the_filter_takes_the_address_immich_appends(double, email, cid):
    match = failregex().search(journal_line(double, email, "203.0.113.7", cid))
    assert match and match.group("addr") == "203.0.113.7"
    v6 = failregex().search(journal_line(double, email, "2001:db8::7", cid))
    assert v6 and v6.group("addr") == "2001:db8::7"


def test_the_filter_ignores_other_lines_and_needs_no_color(double, monkeypatch):
    pattern = failregex()
    denied = double.nest_line("WARN", "Api:AuthService~k3j5h2g1", "Denied access to admin only route: /api/x")
    assert not pattern.search(f"h immich_server[1]: {denied}")
    failed = "Failed login attempt for user a@b.org from ip address 203.0.113.7"
    assert not pattern.search(f"h immich_server[1]: {double.nest_line('LOG', 'Api:AuthService~k3j5h2g1', failed)}")
    # Immich colours its lines unless NO_COLOR is set (the role sets it in .env): a coloured line would never match.
    monkeypatch.delenv("NO_COLOR")
    assert not pattern.search(f"h immich_server[1]: {double.nest_line('WARN', 'Api:AuthService~k3j5h2g1', failed)}")
