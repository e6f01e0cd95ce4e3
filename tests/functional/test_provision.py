"""playbooks/provision.yml run by ansible-playbook against the Hetzner Cloud fake (tests/fakes/hcloud_api.py, through
hetzner.hcloud's ``api_endpoint``) and the Cloudflare fake (tests/fakes/cloudflare_api.py, reached by
community.general.cloudflare_dns as ``api.cloudflare.com`` through a CONNECT proxy, over TLS from a test CA).

What a user relies on: the first run creates exactly the server, its firewall and the records; a second run changes
nothing; ``--check`` creates nothing; a conflicting server or a bad input stops the run before any change (bad
inputs before any API call, or after reads only when the API's lists decide); no token is ever shown.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import threading
from datetime import datetime
from pathlib import Path

import pytest
import yaml
from ansible_collections.selfhost.immich.tests.fakes.cloudflare_api import CloudflareFake, ConnectProxy, TestCA
from ansible_collections.selfhost.immich.tests.fakes.hcloud_api import HcloudFake
from ansible_collections.selfhost.immich.tests.fakes.hetzner_api import HetznerFake

REPO = Path(__file__).resolve().parents[2]
HCLOUD_COLLECTION = tuple(int(p) for p in json.loads(
    (Path(importlib.util.find_spec("ansible_collections.hetzner.hcloud").submodule_search_locations[0])
     / "MANIFEST.json").read_text())["collection_info"]["version"].split("."))
ANSIBLE_PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"
HCLOUD_TOKEN = "Hcloud-Token-Secret-7731"
CLOUDFLARE_TOKEN = "Cloudflare-Token-Secret-4410"
PUBLIC_KEY = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIH1n3jY5oN8mG1o1Jm5cQ1cQ2l4m0mW2pQy8r7s6t5u4 admin@laptop")
IPV4, IPV6_NET = "203.0.113.80", "2001:db8:80::/64"
RULES = {("in", "tcp", "22", ("0.0.0.0/0", "::/0")), ("in", "tcp", "80", ("0.0.0.0/0", "::/0")),
         ("in", "tcp", "443", ("0.0.0.0/0", "::/0"))}
# A play after provision.yml: the server must be in the group for it (add_host).
NEXT_PLAY = [{"name": "Use the provisioned server", "hosts": "immich", "gather_facts": False,
              "tasks": [{"name": "Show the address", "ansible.builtin.debug": {"var": "ansible_host"}}]}]


def own_etc_hosts(hosts_file: Path) -> list[str]:
    """The command prefix that runs a command with hosts_file bind-mounted on /etc/hosts in a user and mount namespace
    of its own: the controller's real resolver (glibc reads /etc/hosts on every lookup) answers the test's names, and
    nothing outside that process sees them."""
    return ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
            'mount --bind "$0" /etc/hosts && exec "$@"', str(hosts_file)]


def _own_etc_hosts_works() -> bool:
    probe = Path(os.environ.get("TMPDIR", "/tmp")) / f"selfhost-hosts-probe-{os.getpid()}"
    probe.write_text("203.0.113.99 probe.selfhost.test\n")
    try:
        done = subprocess.run([*own_etc_hosts(probe), "getent", "ahostsv4", "probe.selfhost.test"],
                              capture_output=True, text=True, timeout=30)
        return done.returncode == 0 and "203.0.113.99" in done.stdout
    except (OSError, subprocess.SubprocessError):
        return False
    finally:
        probe.unlink()


needs_own_etc_hosts = pytest.mark.skipif(not _own_etc_hosts_works(), reason=(
    "no user and mount namespaces here (unshare --user --map-root-user --mount) to give ansible-playbook an "
    "/etc/hosts of its own"))


@pytest.fixture
def apis(tmp_path):
    ca = TestCA.create(tmp_path / "ca")
    seed = {"server_ipv4": IPV4, "server_ipv6": IPV6_NET, "image_architectures": {"debian-13": ["x86"]}}
    with HcloudFake(seed, token=HCLOUD_TOKEN) as hcloud, \
            CloudflareFake({"zones": [{"name": "example.com"}]}, token=CLOUDFLARE_TOKEN, tls=ca) as cloudflare, \
            ConnectProxy(cloudflare) as proxy:
        yield Apis(tmp_path, hcloud, cloudflare, proxy, ca)
        for fake in (hcloud, cloudflare):
            assert fake.violations == [], "requests the real API would refuse"
            assert fake.response_problems == [], "answers of the fake that break the spec"
        assert proxy.refused == [], "a connection that was not for api.cloudflare.com"


class Apis:
    def __init__(self, tmp_path: Path, hcloud: HcloudFake, cloudflare: CloudflareFake, proxy: ConnectProxy,
                 ca: TestCA) -> None:
        self.tmp_path, self.hcloud, self.cloudflare, self.proxy, self.ca = tmp_path, hcloud, cloudflare, proxy, ca
        self.output = ""
        self.hosts_file = tmp_path / "hosts"
        self.last_json = ""
        (tmp_path / "id_ed25519.pub").write_text(PUBLIC_KEY + "\n")

    def variables(self, **overrides) -> dict:
        variables = {
            "provision_hcloud_token": HCLOUD_TOKEN, "provision_hcloud_api_endpoint": self.hcloud.url,
            "provision_ssh_public_key_file": str(self.tmp_path / "id_ed25519.pub"),
            "provision_domain": "photos.example.com", "provision_cloudflare_token": CLOUDFLARE_TOKEN,
            "provision_wait_for_ssh": False,
        }
        variables.update(overrides)
        return {k: v for k, v in variables.items() if v is not None}

    def run(self, *options: str, fails: bool = False, **overrides) -> tuple[dict, str]:
        """Run provision.yml and the next play; return (stats of localhost, all output)."""
        playbook = self.tmp_path / "play.yml"
        playbook.write_text(json.dumps([{"ansible.builtin.import_playbook": str(REPO / "playbooks" / "provision.yml")},
                                        *NEXT_PLAY]))
        return self.run_playbook(playbook, *options, fails=fails, **overrides)

    def run_playbook(self, playbook: str | Path, *options: str, fails: bool = False, hosts: str | None = None,
                     **overrides) -> tuple[dict, str]:
        """Run a playbook (a name in playbooks/ or a path) with the inventory's variables; with ``hosts``, in a
        mount namespace of its own whose /etc/hosts is the file self.hosts_file holding that text."""
        playbook = REPO / "playbooks" / playbook if isinstance(playbook, str) else playbook
        inventory = {"all": {"hosts": {"localhost": {"ansible_connection": "local",
                                                     "ansible_python_interpreter": sys.executable}},
                             "vars": self.variables(**overrides)}}
        (self.tmp_path / "inventory.yml").write_text(yaml.safe_dump(inventory))
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("ANSIBLE_", "HCLOUD_", "CLOUDFLARE_")) and k.lower() not in
               ("http_proxy", "https_proxy", "no_proxy", "all_proxy", "ssl_cert_file", "requests_ca_bundle")}
        env.update(ANSIBLE_COLLECTIONS_PATH=str(REPO / ".collections"), ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
                   ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
                   https_proxy=self.proxy.url, no_proxy="127.0.0.1,localhost", SSL_CERT_FILE=str(self.ca.ca_file))
        command = [str(ANSIBLE_PLAYBOOK), "-i", str(self.tmp_path / "inventory.yml"), *options, str(playbook)]
        if hosts is not None:
            self.hosts_file.write_text(hosts)
            command = [*own_etc_hosts(self.hosts_file), *command]
        done = subprocess.run(command, env=env, cwd=self.tmp_path, capture_output=True, text=True, timeout=300)
        output = done.stdout + done.stderr
        self.output += output
        self.last_json = done.stdout
        assert (done.returncode != 0) == fails, output
        for secret in (HCLOUD_TOKEN, CLOUDFLARE_TOKEN):
            assert secret not in output
        return json.loads(done.stdout)["stats"].get("localhost", {}), output

    def writes(self) -> list[dict]:
        return self.hcloud.writes + self.cloudflare.writes


def test_first_run_creates_everything_and_a_second_changes_nothing(apis):
    stats, output = apis.run()
    assert stats["changed"] > 0 and stats["failures"] == 0
    hcloud = apis.hcloud
    [server] = hcloud.servers.values()
    assert (server["name"], server["server_type"]["name"], server["server_type"]["architecture"]) == \
        ("immich", "cax41", "arm")
    assert (server["image"]["name"], server["image"]["architecture"], server["location"]["name"]) == \
        ("ubuntu-24.04", "arm", "fsn1")
    assert server["protection"] == {"delete": True, "rebuild": True}
    assert server["labels"] == {"managed-by": "selfhost.immich", "immich-server": "immich"}
    [key] = hcloud.ssh_keys.values()
    assert key["public_key"] == PUBLIC_KEY and server["ssh_keys"] == [key["id"]]
    [firewall] = hcloud.firewalls.values()
    rules = {(r["direction"], r["protocol"], r["port"], tuple(r["source_ips"])) for r in firewall["rules"]}
    assert rules == RULES and len(firewall["rules"]) == 3
    assert hcloud.firewalls_of(server["id"]) == [firewall["id"]], "the firewall applies to the server (by label)"
    records = [(r["type"], r["name"], r["content"], r["proxied"]) for r in apis.cloudflare.records_of("example.com")]
    assert records == [("A", "photos.example.com", IPV4, False),
                       ("AAAA", "photos.example.com", "2001:db8:80::1", False)]
    assert apis.proxy.tunnels > 0, "cloudflare_dns went through the proxy to the fake"
    assert f'"ansible_host": "{IPV4}"' in output, "the next play has the server"
    assert f"Server immich: IPv4 {IPV4}, IPv6 2001:db8:80::1" in output, "the addresses for hosts.yml"

    hcloud.clear_log()
    apis.cloudflare.clear_log()
    stats, _ = apis.run()
    assert stats["changed"] == 0
    assert apis.writes() == [] and hcloud.log and apis.cloudflare.log, "a second run only reads"

    # Without a Cloudflare token the records are printed, with the server's addresses, and the run stops: the
    # name does not resolve to the server (203.0.113.80 is a documentation address). Nothing changes.
    apis.cloudflare.clear_log()
    stats, output = apis.run(provision_cloudflare_token=None, fails=True)
    assert stats["changed"] == 0 and apis.cloudflare.log == [] and apis.writes() == []
    assert f"photos.example.com. 300 IN A {IPV4}" in output
    assert "photos.example.com. 300 IN AAAA 2001:db8:80::1" in output
    assert "photos.example.com does not resolve to the server on this controller" in output


RESOLVES = f"127.0.0.1 localhost\n{IPV4} photos.example.com\n2001:db8:80::1 photos.example.com\n"


def test_without_cloudflare_a_name_that_does_not_resolve_stops_the_run_after_the_server(apis):
    # .invalid never resolves (RFC 6761), here or anywhere.
    stats, output = apis.run(provision_cloudflare_token=None, provision_domain="photos.example.invalid", fails=True)
    assert stats["failures"] == 1
    assert "photos.example.invalid does not resolve to the server on this controller: it resolves to nothing" \
        in output
    assert f"the records A {IPV4} and AAAA 2001:db8:80::1 are missing" in output
    assert "then run provision.yml again or site.yml" in output
    assert len(apis.hcloud.servers) == 1 and len(apis.hcloud.firewalls) == 1, "the server and firewall are in place"
    assert f'"ansible_host": "{IPV4}"' not in output, "the next play does not run"
    assert apis.cloudflare.log == []


@needs_own_etc_hosts
def test_without_cloudflare_the_run_goes_on_once_the_name_resolves_to_the_server(apis):
    variables = {"provision_cloudflare_token": None}
    _, output = apis.run(fails=True, hosts=f"{IPV4} photos.example.com\n", **variables)
    assert "it resolves to 203.0.113.80, and the record AAAA 2001:db8:80::1 is missing" in output
    assert len(apis.hcloud.servers) == 1

    _, output = apis.run(fails=True, hosts=f"192.0.2.7 photos.example.com\n{IPV4} other.example.com\n", **variables)
    assert f"it resolves to 192.0.2.7, and the records A {IPV4} and AAAA 2001:db8:80::1 are missing" in output

    apis.hcloud.clear_log()
    stats, output = apis.run(hosts=RESOLVES, **variables)
    assert stats["changed"] == 0 and stats["failures"] == 0 and apis.writes() == [], "the rerun changes nothing"
    assert f'"ansible_host": "{IPV4}"' in output, "the next play has the server"

    # --check reads too: the check runs in check mode and passes.
    stats, _ = apis.run("--check", hosts=RESOLVES, **variables)
    assert stats["failures"] == 0 and apis.writes() == []


@needs_own_etc_hosts
def test_without_cloudflare_the_run_waits_for_the_records(apis):
    stop = threading.Event()

    def records_appear() -> None:
        # Once the firewall is applied (the last write before the DNS check), the records appear 3 s later: the
        # check has looked up the name before, in vain, and finds it on a later lookup (glibc reads /etc/hosts anew).
        while not stop.wait(0.2):
            if any(apis.hcloud.firewalls_of(server["id"]) for server in list(apis.hcloud.servers.values())):
                if not stop.wait(3):
                    apis.hosts_file.write_text(RESOLVES)
                return

    helper = threading.Thread(target=records_appear)
    helper.start()
    try:
        stats, output = apis.run(hosts="127.0.0.1 localhost\n", provision_cloudflare_token=None,
                                 provision_dns_wait_seconds=60)
    finally:
        stop.set()
        helper.join()
    assert stats["failures"] == 0 and f'"ansible_host": "{IPV4}"' in output
    [resolved] = [result for play in json.loads(apis.last_json)["plays"] for task in play["tasks"]
                  if task["task"]["name"].endswith("Resolve the DNS name on the controller (no Cloudflare token given)")
                  for result in task["hosts"].values()]
    waited = datetime.fromisoformat(resolved["end"]) - datetime.fromisoformat(resolved["start"])
    assert waited.total_seconds() >= 1, f"the records were there at the first lookup ({waited}): no wait shown"
    assert json.loads(resolved["stdout"])["missing"] == []

    # Without a wait the same missing records stop the run at once.
    _, output = apis.run(hosts="127.0.0.1 localhost\n", provision_cloudflare_token=None, fails=True)
    assert "does not resolve to the server on this controller" in output


def test_check_mode_on_an_empty_account_creates_nothing(apis):
    stats, output = apis.run("--check", "--diff")
    assert stats["changed"] > 0 and stats["failures"] == 0
    assert apis.writes() == [], "check mode must not write"
    assert not apis.hcloud.servers and not apis.hcloud.firewalls and not apis.hcloud.ssh_keys
    assert apis.cloudflare.records == {}
    assert "gets A and AAAA records once the server exists" in output


def test_a_conflicting_server_stops_the_run_and_changes_nothing(apis):
    apis.hcloud.seed["servers"] = [{"name": "immich", "server_type": "cx22", "labels": {"team": "web"}}]
    apis.hcloud.reset()
    _, output = apis.run(fails=True)
    assert "A server named immich already exists (type cx22" in output and "Nothing was changed" in output
    assert apis.writes() == []
    assert [s["server_type"]["name"] for s in apis.hcloud.servers.values()] == ["cx22"]


BOX_PASSWORD = "Provision-Box-Secret-9"


def test_storage_box_is_checked_first_ordered_once_and_found_again(apis):
    with HetznerFake(token=HCLOUD_TOKEN) as boxes:  # the Cloud project's token, as provision_storagebox_token defaults
        box_vars = {"provision_storagebox_enabled": True, "provision_storagebox_api_url": boxes.url,
                    "provision_storagebox_password": BOX_PASSWORD, "provision_storagebox_ssh_keys": [PUBLIC_KEY]}
        _, output = apis.run(fails=True, **dict(box_vars, provision_storagebox_password="Too-short-1"))
        assert "password does not meet the Storage Box password policy" in output
        _, output = apis.run(fails=True, **dict(box_vars, provision_storagebox_password=""))
        assert "provision_storagebox_password is empty" in output
        assert apis.writes() == [] and boxes.writes == [], "refused before anything changes"

        stats, _ = apis.run("--check", **box_vars)
        assert stats["failures"] == 0 and boxes.writes == [] and boxes.boxes == {}, "check mode orders nothing"

        stats, output = apis.run(**box_vars)
        assert stats["failures"] == 0
        [box] = boxes.boxes.values()
        assert (box["name"], box["storage_box_type"]["name"], box["location"]["name"]) == ("immich", "bx11", "fsn1")
        assert box["protection"] == {"delete": True} and box["access_settings"]["ssh_enabled"] is True
        assert boxes.passwords[("storage_box", box["id"])] == BOX_PASSWORD
        assert boxes.ssh_keys[box["id"]] == [PUBLIC_KEY]
        assert f"{box['username']}@{box['server']} (SFTP and SSHFS on port 23)" in output
        assert [e["method"] for e in boxes.writes].count("POST") == 2, "one order, one change_protection"

        boxes.clear_log()
        stats, _ = apis.run(**box_vars)
        assert stats["changed"] == 0 and boxes.writes == [], "a second run finds the box by name"

        boxes.clear_log()
        _, output = apis.run(fails=True, **dict(box_vars, provision_storagebox_location="hel1"))
        assert "exists with location fsn1, not hel1" in output and boxes.writes == []
        assert BOX_PASSWORD not in apis.output
        assert boxes.violations == [] and boxes.response_problems == []


BAD_BEFORE_ANY_CALL = [
    ({"provision_hcloud_token": ""}, "provision_hcloud_token is empty"),
    ({"provision_hcloud_token": None}, "provision_hcloud_token is empty"),
    ({"provision_ssh_public_key_file": "/nonexistent/id.pub"}, "must be a file holding one OpenSSH public key"),
    ({"provision_domain": "photos example"}, "provision_domain must be a fully qualified DNS name"),
    ({"provision_domain": "photos.example.com\n"}, "provision_domain must be a fully qualified DNS name"),
    ({"provision_ssh_sources": ["10.0.0.300/8", "::/0"]}, "provision_ssh_sources must hold CIDRs"),
    ({"provision_ssh_sources": ["198.51.100.7"]}, "provision_ssh_sources must hold CIDRs"),
    ({"provision_server_image": "ubuntu-22.04"}, "provision_server_image"),
    ({"provision_hcloud_api_endpoint": "http://api.example.net/v1"}, "must be an https:// URL"),
    ({"provision_dns_wait_seconds": -1}, "provision_dns_wait_seconds must be 0 (check once) or more: -1"),
    ({"provision_keep_ips": "maybe"}, "provision_keep_ips"),
]
BAD_AFTER_READS = [
    ({"provision_server_type": "cax99"}, "provision_server_type cax99 is not a Hetzner Cloud server type"),
    ({"provision_location": "xyz1"}, "provision_location xyz1 is not a Hetzner Cloud location"),
    ({"provision_location": "ash"}, "Server type cax41 is not sold in ash"),
    ({"provision_server_image": "debian-13"}, "has no image for the architecture arm of cax41"),
]


@pytest.mark.parametrize(("overrides", "message"), BAD_BEFORE_ANY_CALL + BAD_AFTER_READS,
                         ids=[m[:40] for _, m in BAD_BEFORE_ANY_CALL + BAD_AFTER_READS])
def test_bad_input_is_refused_before_any_change(apis, overrides, message):
    if "not sold in" in message and HCLOUD_COLLECTION < (4,):
        pytest.skip("hetzner.hcloud before 4.0 returns no locations of a server type (the API refuses the server)")
    _, output = apis.run(fails=True, **overrides)
    assert message in output
    assert apis.writes() == []
    if (overrides, message) in BAD_BEFORE_ANY_CALL:
        assert apis.hcloud.log == [] and apis.cloudflare.log == [], "refused before any API call"


def test_teardown_needs_the_confirmation_and_keeps_what_it_did_not_create(apis):
    apis.run()
    [server] = apis.hcloud.servers.values()
    apis.hcloud.clear_log()
    apis.cloudflare.clear_log()
    _, output = apis.run_playbook("teardown.yml", fails=True)
    assert "Confirm with -e teardown_confirm=immich" in output
    assert apis.hcloud.log == [] and apis.cloudflare.log == []

    stats, _ = apis.run_playbook("teardown.yml", "-e", "teardown_confirm=immich")
    assert stats["changed"] > 0
    assert apis.hcloud.servers == {} and apis.hcloud.firewalls == {} and apis.cloudflare.records == {}
    assert [k["public_key"] for k in apis.hcloud.ssh_keys.values()] == [PUBLIC_KEY], "the SSH key stays"
    assert any(e["method"] == "POST" and e["path"].endswith(f"/servers/{server['id']}/actions/change_protection")
               for e in apis.hcloud.log), "the protection was lifted first"


def test_kept_addresses_survive_a_teardown_and_the_records_stay_valid(apis):
    hcloud = apis.hcloud
    for fixed in ("server_ipv4", "server_ipv6"):  # every new server gets new addresses, as at Hetzner
        hcloud.seed.pop(fixed)
    stats, _ = apis.run("--check", provision_keep_ips=True)
    assert stats["failures"] == 0 and apis.writes() == [], "check mode on an empty account writes nothing"

    stats, _ = apis.run(provision_keep_ips=True)
    assert stats["failures"] == 0
    [server] = hcloud.servers.values()
    kept = {ip["type"]: ip for ip in hcloud.primary_ips.values()}
    assert sorted(kept) == ["ipv4", "ipv6"] and len(hcloud.primary_ips) == 2
    for kind, ip in kept.items():
        assert (ip["assignee_id"], ip["auto_delete"], ip["protection"]) == (server["id"], False, {"delete": True})
        assert ip["labels"] == {"managed-by": "selfhost.immich", "immich-server": "immich", "immich-kept-ip": kind}
        assert server["public_net"][kind]["id"] == ip["id"]
    ipv4, ipv6 = kept["ipv4"]["ip"], kept["ipv6"]["ip"]
    records = {(r["type"], r["content"]) for r in apis.cloudflare.records_of("example.com")}
    assert records == {("A", ipv4), ("AAAA", ipv6.split("/")[0] + "1")}

    hcloud.clear_log()
    apis.cloudflare.clear_log()
    stats, _ = apis.run(provision_keep_ips=True)
    assert stats["changed"] == 0 and apis.writes() == [], "a second run changes nothing"

    stats, output = apis.run_playbook("teardown.yml", "-e", "teardown_confirm=immich")
    assert stats["failures"] == 0 and hcloud.servers == {}
    assert sorted(ip["id"] for ip in hcloud.primary_ips.values()) == sorted(ip["id"] for ip in kept.values())
    assert all(ip["assignee_id"] is None for ip in hcloud.primary_ips.values()), "kept, unassigned"
    assert f"Kept primary IPs stay (provision_keep_ips), unassigned and billed: {ipv4}, {ipv6}" in output

    hcloud.clear_log()
    apis.cloudflare.clear_log()
    stats, _ = apis.run("--check", provision_keep_ips=True)
    assert stats["failures"] == 0 and apis.writes() == [] and hcloud.servers == {}

    stats, output = apis.run(provision_keep_ips=True)
    assert stats["failures"] == 0
    [again] = hcloud.servers.values()
    assert again["id"] != server["id"]
    assert (again["public_net"]["ipv4"]["ip"], again["public_net"]["ipv6"]["ip"]) == (ipv4, ipv6), \
        "the new server has the old addresses"
    assert len(hcloud.primary_ips) == 2
    assert {(r["type"], r["content"]) for r in apis.cloudflare.records_of("example.com")} == records
    assert f'"ansible_host": "{ipv4}"' in output

    # Without provision_keep_ips the role changes nothing on the kept addresses, and a new server gets new ones.
    hcloud.clear_log()
    apis.cloudflare.clear_log()
    stats, _ = apis.run()
    assert stats["changed"] == 0 and apis.writes() == []
    apis.run_playbook("teardown.yml", "-e", "teardown_confirm=immich")
    apis.run()
    [other] = hcloud.servers.values()
    assert other["public_net"]["ipv4"]["ip"] != ipv4 and len(hcloud.primary_ips) == 4
