"""The provisioning fakes themselves (tests/fakes/hcloud_api.py, tests/fakes/cloudflare_api.py): the rules they
enforce beyond the spec, the narrow spec relaxations, actions that finish only after polls, and the Cloudflare
name reached only through the CONNECT proxy with the test CA."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request

import pytest
import requests
from ansible_collections.selfhost.immich.tests.fakes.cloudflare_api import CloudflareFake, ConnectProxy, TestCA
from ansible_collections.selfhost.immich.tests.fakes.hcloud_api import HcloudFake

TOKEN = "fake-test-token"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIH1n3jY5oN8mG1o1Jm5cQ1cQ2l4m0mW2pQy8r7s6t5u4 t"


def call(fake, method, path, body=None):
    answer = requests.request(method, fake.url + path, json=body, timeout=10,
                              headers={"Authorization": f"Bearer {TOKEN}"})
    return answer.status_code, answer.json() if answer.content else None


def test_hcloud_server_lifecycle_actions_and_protection():
    with HcloudFake({"server_ipv4": "192.0.2.44"}, token=TOKEN, action_polls=2) as fake:
        assert call(fake, "POST", "/ssh_keys", {"name": "me", "public_key": KEY})[0] == 201
        [key] = fake.ssh_keys.values()
        status, created = call(fake, "POST", "/servers", {"name": "s1", "server_type": 95, "image": "ubuntu-24.04",
                                                          "location": "fsn1", "ssh_keys": [key["id"]]})
        assert status == 201, created
        server_id = created["server"]["id"]
        assert created["server"]["public_net"]["ipv4"]["ip"] == "192.0.2.44"
        start = created["next_actions"][0]["id"]
        assert fake.servers[server_id]["status"] == "initializing"
        assert call(fake, "GET", f"/actions/{start}")[1]["action"]["status"] == "running"
        assert call(fake, "GET", f"/actions/{start}")[1]["action"]["status"] == "success"
        assert fake.servers[server_id]["status"] == "running"

        status, answer = call(fake, "POST", f"/servers/{server_id}/actions/change_protection",
                              {"delete": True, "rebuild": True})
        for _ in range(2):
            call(fake, "GET", f"/actions/{answer['action']['id']}")
        status, refused = call(fake, "DELETE", f"/servers/{server_id}")
        assert (status, refused["error"]["code"]) == (403, "protected") and server_id in fake.servers
        assert fake.violations == [] and fake.response_problems == []


def test_hcloud_refuses_what_the_api_refuses():
    with HcloudFake({"image_architectures": {"debian-13": ["x86"]}}, token=TOKEN) as fake:
        status, _ = call(fake, "POST", "/servers", {"name": "s", "server_type": "cax41", "image": "debian-13"})
        assert status == 400 and fake.servers == {}, "no arm image debian-13"
        status, _ = call(fake, "POST", "/servers", {"name": "s", "server_type": "cax41", "image": True})
        assert status == 400 and "image" in fake.violations[-1], "only integers are added to the ID-or-name fields"
        status, _ = call(fake, "POST", "/firewalls", {"name": "f", "rules": [
            {"direction": "in", "protocol": "tcp", "port": "22", "source_ips": ["10.0.0.300/8"]}]})
        assert status == 400 and "not a CIDR" in fake.violations[-1] and fake.firewalls == {}
        assert fake.response_problems == []


@pytest.fixture
def cloudflare(tmp_path):
    ca = TestCA.create(tmp_path)
    with CloudflareFake({"zones": [{"name": "example.com"}]}, token=TOKEN, tls=ca) as fake, \
            ConnectProxy(fake) as proxy:
        yield fake, proxy, ca


def open_through(proxy, ca, url, token=TOKEN):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({"https": proxy.url}),
                                         urllib.request.HTTPSHandler(context=ssl.create_default_context(
                                             cafile=str(ca.ca_file))))
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with opener.open(request, timeout=10) as answer:
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def test_cloudflare_is_reached_by_name_through_the_proxy_only(cloudflare):
    fake, proxy, ca = cloudflare
    status, zones = open_through(proxy, ca, "https://api.cloudflare.com/client/v4/zones?name=example.com")
    assert status == 200 and [z["name"] for z in zones["result"]] == ["example.com"]
    assert zones["result_info"]["total_pages"] == 1
    status, refused = open_through(proxy, ca, "https://api.cloudflare.com/client/v4/zones", token="wrong")
    assert status == 401 and refused["success"] is False and refused["errors"][0]["code"] == 10000
    with pytest.raises(urllib.error.URLError):
        open_through(proxy, ca, "https://example.org/")
    assert [line.rsplit(" ", 1)[0] for line in proxy.refused] == ["CONNECT example.org:443"]
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        open_through(proxy, TestCA.create(ca.ca_file.parent / "other"), "https://api.cloudflare.com/client/v4/zones")
    assert fake.violations == [] and fake.response_problems == []


def test_hcloud_primary_ips_kept_across_a_server_delete():
    with HcloudFake(token=TOKEN, action_polls=0) as fake:
        server = {"name": "s1", "server_type": "cax41", "image": "ubuntu-24.04", "location": "fsn1"}
        first = call(fake, "POST", "/servers", server)[1]["server"]
        ipv4 = first["public_net"]["ipv4"]
        assert fake.primary_ips[ipv4["id"]]["auto_delete"] is True
        status, updated = call(fake, "PUT", f"/primary_ips/{ipv4['id']}", {"auto_delete": False, "labels": {"k": "v"}})
        assert status == 200 and updated["primary_ip"]["auto_delete"] is False
        assert call(fake, "POST", f"/primary_ips/{ipv4['id']}/actions/change_protection", {"delete": True})[0] == 201
        assert fake.primary_ips[ipv4["id"]]["protection"] == {"delete": True}
        status, refused = call(fake, "POST", "/servers", dict(server, name="s2", public_net={"ipv4": ipv4["id"]}))
        assert (status, refused["error"]["code"]) == (409, "conflict"), "an assigned primary IP is refused"

        assert call(fake, "DELETE", f"/servers/{first['id']}")[0] == 200
        ipv6_id = first["public_net"]["ipv6"]["id"]
        assert ipv6_id not in fake.primary_ips, "auto_delete true goes with the server"
        assert fake.primary_ips[ipv4["id"]]["assignee_id"] is None, "auto_delete false stays, unassigned"

        elsewhere = dict(server, name="s2", location="nbg1", public_net={"ipv4": ipv4["id"]})
        status, refused = call(fake, "POST", "/servers", elsewhere)
        assert status == 422 and fake.servers == {}, "a primary IP only in its own location"
        status, created = call(fake, "POST", "/servers", dict(server, name="s2", public_net={"ipv4": ipv4["id"]}))
        assert status == 201 and created["server"]["public_net"]["ipv4"] == ipv4
        assert fake.primary_ips[ipv4["id"]]["assignee_id"] == created["server"]["id"]
        assert created["server"]["public_net"]["ipv6"]["id"] != ipv6_id
        assert fake.violations == [] and fake.response_problems == []
