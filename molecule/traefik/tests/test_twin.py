"""The role on the native amd64 twin (applied by side_effect): the DNS-01 path keeps the Cloudflare token
out of ps, the unit, the configuration, the journal and Ansible's output; UFW really filters."""

from __future__ import annotations

import re

import pytest
import yaml

testinfra_hosts = ["ansible://traefik-amd64"]


@pytest.fixture(scope="module")
def token(scenario_dir) -> str:
    value = yaml.safe_load((scenario_dir / "cloudflare-token.yml").read_text())["traefik_cloudflare_dns_api_token"]
    assert len(value) == 40
    return value


@pytest.fixture(scope="module")
def ansible_outputs(scenario_dir) -> dict:
    return {run: (scenario_dir / f"twin-{run}-run.log").read_text() for run in ("check", "first", "second", "dynamic")}


def test_platform_architecture(host, expected_arch):
    assert host.system_info.arch == expected_arch


def test_token_reaches_traefik_only_through_the_root_only_env_file(host, token):
    env = host.file("/etc/traefik/traefik.env")
    assert (env.user, env.group, env.mode) == ("root", "root", 0o600)
    assert f"CF_DNS_API_TOKEN={token}" in env.content_string.splitlines()
    pid = host.check_output("systemctl show -P MainPID traefik")
    environ = host.check_output(f"tr '\\0' '\\n' < /proc/{pid}/environ").splitlines()
    assert f"CF_DNS_API_TOKEN={token}" in environ


def test_token_not_in_ps_unit_configuration_or_journal(host, token):
    assert host.service("traefik").is_running
    assert token not in host.check_output("ps -eo args")
    assert token not in host.file("/etc/systemd/system/traefik.service").content_string
    assert token not in host.check_output("systemctl show traefik")
    assert token not in host.check_output("grep -r . /etc/traefik/traefik.yml /etc/traefik/dynamic")
    assert token not in host.check_output("journalctl -u traefik --no-pager")


def test_token_not_in_ansible_output(ansible_outputs, token):
    for run, output in ansible_outputs.items():
        assert token not in output, f"the {run} run printed the token"
    # The env file task ran and was censored (-v --diff would otherwise show its content).
    assert "Write the service environment (secrets)" in ansible_outputs["first"]
    assert "censored" in ansible_outputs["first"]


def test_check_mode_on_the_bare_host_passed(ansible_outputs):
    recap = re.search(r"^traefik-amd64\s*:.*$", ansible_outputs["check"], re.M).group(0)
    assert re.search(r"\bfailed=0\b", recap), recap
    assert re.search(r"\bchanged=[1-9]", recap), recap  # it did report what it would change


def test_second_run_changes_nothing(ansible_outputs):
    recap = re.search(r"^traefik-amd64\s*:.*$", ansible_outputs["second"], re.M).group(0)
    assert re.search(r"\bchanged=0\b", recap), recap
    assert re.search(r"\bfailed=0\b", recap), recap


def test_dns_challenge_configuration(host):
    config = yaml.safe_load(host.file("/etc/traefik/traefik.yml").content_string)
    acme = config["certificatesResolvers"]["acme"]["acme"]
    assert acme["dnsChallenge"] == {"provider": "cloudflare", "resolvers": ["1.1.1.1:53", "1.0.0.1:53"]}
    assert "httpChallenge" not in acme
    edge = yaml.safe_load(host.file("/etc/traefik/dynamic/selfhost-edge.yml").content_string)
    assert edge["tls"]["stores"]["default"]["defaultGeneratedCert"] == {
        "resolver": "acme",
        "domain": {"main": "twin.traefik.test"},
    }


def test_firewall_rules(host):
    status = host.check_output("ufw status verbose")
    assert "Status: active" in status
    assert "Default: deny (incoming), allow (outgoing)" in status
    for rule in (r"22/tcp\s+ALLOW IN\s+Anywhere", r"80/tcp\s+ALLOW IN\s+Anywhere", r"443/tcp\s+ALLOW IN\s+Anywhere",
                 r"3003/tcp\s+ALLOW IN\s+10\.0\.0\.0/8"):
        assert re.search(rule, status), rule


def test_firewall_drops_what_is_not_allowed(host, standin):
    client = standin("traefik-backend")
    # Allowed: Traefik answers on 80 (redirect) through UFW.
    assert client.check_output("curl -sS -o /dev/null -w '%{http_code}' --max-time 10 http://traefik-amd64/") == "301"
    # Not allowed: a listener on 9000 answers locally but is unreachable from the network.
    host.check_output("systemd-run --unit=fw-probe python3 -m http.server 9000")
    try:
        local = "curl -s -o /dev/null http://127.0.0.1:9000/"
        host.check_output(f"for i in $(seq 20); do {local} && exit 0; sleep 0.5; done; exit 1")
        blocked = client.run("curl -sS -o /dev/null --connect-timeout 3 http://traefik-amd64:9000/")
        assert blocked.rc == 28, blocked.stderr  # timed out: dropped, not refused
    finally:
        host.run("systemctl stop fw-probe")


def test_dynamic_only_change_applies_without_a_restart(host, ansible_outputs, scenario_dir):
    # side_effect's last run changed only traefik_referrer_policy, which lives in the dynamic selfhost-edge.yml.
    output = ansible_outputs["dynamic"]
    recap = re.search(r"^traefik-amd64\s*:.*$", output, re.M).group(0)
    assert re.search(r"\bchanged=1\b", recap), recap
    assert re.search(r"\bfailed=0\b", recap), recap
    assert "no-referrer" in output  # the diff of selfhost-edge.yml
    assert "RUNNING HANDLER [selfhost.immich.traefik : Restart traefik]" not in output
    pids = yaml.safe_load((scenario_dir / "twin-dynamic-pids.yml").read_text())
    assert pids["before"] == pids["after"] == host.check_output("systemctl show -P MainPID traefik") != "0"
    edge = yaml.safe_load(host.file("/etc/traefik/dynamic/selfhost-edge.yml").content_string)
    assert edge["http"]["middlewares"]["security-headers"]["headers"]["referrerPolicy"] == "no-referrer"
