"""A fake of the Hetzner Cloud API (``/v1``: servers, ssh_keys, firewalls, primary_ips, server_types, locations,
images, actions) for the provisioning tests, driven by the real ``hetzner.hcloud`` modules through their
``api_endpoint`` option.

In pytest::

    with HcloudFake({"server_ipv4": "192.0.2.10"}) as fake:     # listens on 127.0.0.1, random port
        env = {"HCLOUD_ENDPOINT": fake.url, "HCLOUD_TOKEN": fake.token}
        ...
        assert fake.violations == [] and fake.response_problems == []

From a shell (the lab: the new server's address is the lab host's)::

    python tests/fakes/hcloud_api.py --port 8081 --server-ipv4 172.20.0.5 [--server-ipv6 fd00:1::/64]
                                     [--seed seed.json] [--token-file F] [--action-polls 1]

Server, request log, contract checks and injected failures come from :class:`base.FakeApi`, errors are
answered in Hetzner's shape (:class:`hetzner_api.Reject`). What the fake models, as the real API does it:
the catalogue (locations, server types with their architecture and the locations they are sold in, system
images per architecture: Ubuntu 24.04, Debian 12 and 13 for ``arm`` and ``x86``), SSH keys (unique names and
fingerprints), servers (created from a type, an image of the type's architecture, a location that sells the type,
SSH keys by ID or name; public IPv4 and IPv6 as primary IPs, new or existing unassigned ones of the server's
location given in ``public_net``; labels; delete and rebuild protection, a protected server is not deleted; its
primary IPs go with it unless their ``auto_delete`` is false: those stay, unassigned), primary IPs (labels, name,
``auto_delete``, delete protection), firewalls (rules, applied to servers or label selectors, whose matching
servers show in ``applied_to_resources``). Changes run as actions that are ``running`` when created and finish after
``action_polls`` polls of ``GET /actions/{id}`` (0: at once).

Seed (JSON or dict), every key optional: ``{"token": "...", "action_polls": 1, "server_ipv4": "203.0.113.10",
"server_ipv6": "2001:db8:10::/64", "image_architectures": {"debian-13": ["x86"]}, "ssh_keys": [{"name": ...,
"public_key": ...}], "servers": [{"name": ..., "server_type": "cx22", "image": "ubuntu-24.04", "location": "fsn1",
"labels": {}}], "firewalls": [{"name": ..., "rules": [...]}]}``. Every server created gets ``server_ipv4`` (and
``server_ipv6``) when given, else an address from the documentation ranges.

The published spec types some IDs as strings although its own descriptions say "ID or name" (the server's
``image``, ``server_type``, ``location``, ``ssh_keys``; the official clients send integers there): those fields
accept an integer as well here; nothing else is relaxed.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import ipaddress
import itertools
import json
import re
from pathlib import Path
from typing import Any

if __package__:  # imported as ansible_collections.selfhost.immich.tests.fakes
    from .base import FakeApi, PatchedContract, argument_parser, serve, token_of, utc_now
    from .hetzner_api import Reject, _labels_match
else:  # run as a script (the lab starts fakes so)
    from base import FakeApi, PatchedContract, argument_parser, serve, token_of, utc_now
    from hetzner_api import Reject, _labels_match

SPEC_FILE = "hetzner-cloud-provisioning.openapi.json"
API_PREFIX = "/v1"
DEFAULT_TOKEN = "fake-hcloud-token"
SPEC_PATHS = ("/actions", "/firewalls", "/images", "/locations", "/primary_ips", "/server_types", "/servers",
              "/ssh_keys")

LOCATIONS = [
    {"id": 1, "name": "fsn1", "description": "Falkenstein DC Park 1", "country": "DE", "city": "Falkenstein",
     "latitude": 50.47612, "longitude": 12.370071, "network_zone": "eu-central"},
    {"id": 2, "name": "nbg1", "description": "Nuremberg DC Park 1", "country": "DE", "city": "Nuremberg",
     "latitude": 49.452102, "longitude": 11.076665, "network_zone": "eu-central"},
    {"id": 3, "name": "hel1", "description": "Helsinki DC Park 1", "country": "FI", "city": "Helsinki",
     "latitude": 60.169855, "longitude": 24.938379, "network_zone": "eu-central"},
    {"id": 4, "name": "ash", "description": "Ashburn, VA", "country": "US", "city": "Ashburn, VA",
     "latitude": 39.045821, "longitude": -77.487073, "network_zone": "us-east"},
]
EU = ("fsn1", "nbg1", "hel1")
#: name -> (id, architecture, cores, memory GB, disk GB, monthly net price EUR, locations)
SERVER_TYPES = {
    "cax11": (45, "arm", 2, 4.0, 40, "3.79", EU), "cax21": (93, "arm", 4, 8.0, 80, "6.49", EU),
    "cax31": (94, "arm", 8, 16.0, 160, "12.49", EU), "cax41": (95, "arm", 16, 32.0, 320, "24.49", EU),
    "cx22": (104, "x86", 2, 4.0, 40, "3.79", EU), "cpx31": (9, "x86", 4, 8.0, 160, "13.60", EU + ("ash",)),
}
#: name -> (os_flavor, os_version, description)
IMAGES = {"ubuntu-24.04": ("ubuntu", "24.04", "Ubuntu 24.04"), "debian-12": ("debian", "12", "Debian 12"),
          "debian-13": ("debian", "13", "Debian 13")}
ARCHITECTURES = ("x86", "arm")
SERVER_ACTIONS = ("change_protection", "poweron", "poweroff", "shutdown", "reboot")


class HcloudContract(PatchedContract):
    """:class:`contract.Contract` with the published "ID or name" fields typed as the API takes them."""

    served_at = ("https://api.hetzner.cloud", "/v1")

    def patch(self, checked: dict) -> None:
        _id_or_name(checked.get("components", {}))


def _id_or_name(node: Any) -> None:
    """A string field described as "ID or name" (or an array of "IDs (`integer`) or names") takes integers too."""
    either = re.compile(r"\bIDs? \(`integer`\) or names?\b|\bID or name\b")
    if isinstance(node, dict):
        for key, value in list(node.items()):
            if isinstance(value, dict) and isinstance(value.get("description"), str) \
                    and either.search(value["description"]):
                if value.get("type") == "string":
                    node[key] = {"description": value["description"],
                                 "anyOf": [{"type": "string"}, {"type": "integer"}]}
                elif value.get("type") == "array" and value.get("items", {}).get("type") == "string":
                    value["items"] = {"anyOf": [{"type": "string"}, {"type": "integer"}]}
            _id_or_name(value)
    elif isinstance(node, list):
        for value in node:
            _id_or_name(value)


class HcloudFake(FakeApi):
    """In-memory Hetzner Cloud project behind a threaded HTTP server. Thread-safe; read the attributes freely."""

    spec_file = SPEC_FILE
    prefix = API_PREFIX
    spec_paths = SPEC_PATHS
    contract_class = HcloudContract
    fault = Reject
    unauthorized = "unable to authenticate"

    def __init__(self, seed: dict | None = None, token: str | None = None, port: int = 0,
                 host: str = "127.0.0.1", action_polls: int | None = None) -> None:
        self.seed = copy.deepcopy(seed or {})
        self.action_polls = action_polls if action_polls is not None else self.seed.get("action_polls", 1)
        super().__init__(token or self.seed.get("token") or DEFAULT_TOKEN, host=host, port=port)

    # -- test controls -----------------------------------------------------------------------
    def reset(self) -> None:
        """Back to the seed, with an empty log."""
        with self.lock:
            super().reset()
            self.ssh_keys: dict[int, dict] = {}
            self.servers: dict[int, dict] = {}
            self.firewalls: dict[int, dict] = {}
            self.primary_ips: dict[int, dict] = {}
            self.actions: dict[int, dict] = {}
            self._pending: dict[int, list] = {}
            self._ids = itertools.count(5001)
            self._created = 0
            for key in copy.deepcopy(self.seed.get("ssh_keys", [])):
                self.add_ssh_key(key)
            for server in copy.deepcopy(self.seed.get("servers", [])):
                self.add_server(server)
            for firewall in copy.deepcopy(self.seed.get("firewalls", [])):
                self.add_firewall(firewall)

    # -- catalogue ---------------------------------------------------------------------------
    @staticmethod
    def location(name: str) -> dict | None:
        return next((copy.deepcopy(loc) for loc in LOCATIONS if name in (loc["name"], str(loc["id"]))), None)

    @staticmethod
    def server_type(name: str) -> dict | None:
        for type_name, (type_id, arch, cores, memory, disk, price, locations) in SERVER_TYPES.items():
            if name in (type_name, str(type_id)):
                gross = f"{float(price) * 1.19:.4f}"
                prices = [{"location": loc, "included_traffic": 21990232555520,
                           "price_hourly": {"net": f"{float(price) / 730:.4f}", "gross": gross},
                           "price_monthly": {"net": price, "gross": gross},
                           "price_per_tb_traffic": {"net": "1.0000", "gross": "1.1900"}} for loc in locations]
                return {"id": type_id, "name": type_name, "description": type_name.upper(), "cores": cores,
                        "memory": memory, "disk": disk, "cpu_type": "shared", "storage_type": "local",
                        "architecture": arch, "category": "cost_optimized" if arch == "arm" else "regular_purpose",
                        "deprecated": False, "deprecation": None, "prices": prices,
                        "locations": [{"id": HcloudFake.location(loc)["id"], "name": loc, "deprecation": None}
                                      for loc in locations]}
        return None

    def images(self) -> list[dict]:
        """The system images; seed ``image_architectures`` ({name: [arch, ...]}) narrows an image's."""
        found = []
        narrowed = self.seed.get("image_architectures", {})
        for number, (name, (flavor, version, description)) in enumerate(IMAGES.items()):
            for offset, arch in enumerate(ARCHITECTURES):
                if arch not in narrowed.get(name, ARCHITECTURES):
                    continue
                found.append({"id": 161000 + 10 * number + offset, "type": "system", "status": "available",
                              "name": name, "description": description, "image_size": None, "disk_size": 5,
                              "created": "2025-06-01T10:00:00Z", "created_from": None, "bound_to": None,
                              "os_flavor": flavor, "os_version": version, "rapid_deploy": True,
                              "protection": {"delete": False}, "deprecated": None, "deleted": None,
                              "labels": {}, "architecture": arch})
        return found

    def image(self, name: str, architecture: str | None = None) -> dict | None:
        return next((i for i in self.images() if name in (i["name"], str(i["id"]))
                     and architecture in (None, i["architecture"])), None)

    # -- state -------------------------------------------------------------------------------
    def add_ssh_key(self, seed: dict) -> dict:
        key = {"id": seed.get("id") or next(self._ids), "name": seed["name"], "public_key": seed["public_key"],
               "fingerprint": fingerprint(seed["public_key"]), "labels": seed.get("labels", {}),
               "created": utc_now()}
        self.ssh_keys[key["id"]] = key
        return key

    def add_server(self, seed: dict) -> dict:
        server_type = self.server_type(seed.get("server_type", "cax41"))
        location = self.location(seed.get("location", "fsn1"))
        image = self.image(seed.get("image", "ubuntu-24.04"), server_type["architecture"])
        server_id = seed.get("id") or next(self._ids)
        ipv4, ipv6 = self._addresses()
        public_net = {"firewalls": [], "floating_ips": [], "ipv4": None, "ipv6": None}
        given = seed.get("primary_ips", {})  # {"ipv4": id, "ipv6": id}: existing unassigned primary IPs
        for kind, address in (("ipv4", ipv4), ("ipv6", ipv6)):
            if given.get(kind) is not None:
                kept = self.primary_ips[given[kind]]
                kept.update(assignee_id=server_id, assignee_type="server")
                ip_id, address = kept["id"], kept["ip"]
            elif seed.get(f"enable_{kind}", True):
                ip_id = self._primary_ip(server_id, kind, address, location)
            else:
                continue
            public_net[kind] = {"id": ip_id, "ip": address, "blocked": False,
                                "dns_ptr": f"static.{address}.clients.your-server.de" if kind == "ipv4" else []}
        server = {
            "id": server_id, "name": seed["name"], "status": seed.get("status", "running"), "created": utc_now(),
            "public_net": public_net, "private_net": [], "server_type": server_type, "location": location,
            "datacenter": {"id": location["id"], "name": f"{location['name']}-dc1",
                           "description": f"{location['description']} DC 1", "location": location,
                           "server_types": {"supported": [server_type["id"]], "available": [server_type["id"]],
                                            "available_for_migration": [server_type["id"]]}},
            "image": image, "iso": None, "rescue_enabled": False, "locked": False, "backup_window": None,
            "outgoing_traffic": 0, "ingoing_traffic": 0, "included_traffic": 21990232555520,
            "protection": {"delete": False, "rebuild": False}, "labels": seed.get("labels", {}),
            "volumes": [], "load_balancers": [], "primary_disk_size": server_type["disk"],
            "placement_group": None, "ssh_keys": seed.get("ssh_keys", []),
        }
        server["protection"].update(seed.get("protection", {}))
        self.servers[server_id] = server
        return server

    def _addresses(self) -> tuple[str, str]:
        self._created += 1
        ipv4 = self.seed.get("server_ipv4") or f"203.0.113.{9 + self._created}"
        ipv6 = self.seed.get("server_ipv6") or f"2001:db8:{self._created:x}::/64"
        return ipv4, str(ipaddress.ip_network(ipv6, strict=False)) if "/" in ipv6 else f"{ipv6}/64"

    def _primary_ip(self, server_id: int, kind: str, ip: str, location: dict) -> int:
        ip_id = next(self._ids)
        self.primary_ips[ip_id] = {
            "id": ip_id, "name": f"primary_ip-{ip_id}", "ip": ip, "type": kind, "assignee_id": server_id,
            "assignee_type": "server", "auto_delete": True, "blocked": False, "created": utc_now(),
            "dns_ptr": [], "labels": {}, "protection": {"delete": False}, "location": location,
            "datacenter": {"id": location["id"], "name": f"{location['name']}-dc1",
                           "description": f"{location['description']} DC 1", "location": location,
                           "server_types": {"supported": [], "available": [], "available_for_migration": []}}}
        return ip_id

    def add_firewall(self, seed: dict) -> dict:
        firewall = {"id": seed.get("id") or next(self._ids), "name": seed["name"], "labels": seed.get("labels", {}),
                    "rules": [self._rule(r) for r in seed.get("rules", [])], "created": utc_now(),
                    "_apply_to": copy.deepcopy(seed.get("apply_to", []))}
        self.firewalls[firewall["id"]] = firewall
        return firewall

    @staticmethod
    def _rule(rule: dict) -> dict:
        return {"description": rule.get("description"), "direction": rule["direction"],
                "protocol": rule["protocol"], "port": rule.get("port"),
                "source_ips": list(rule.get("source_ips", [])),
                "destination_ips": list(rule.get("destination_ips", []))}

    def _render_firewall(self, firewall: dict) -> dict:
        applied = []
        for target in firewall["_apply_to"]:
            if target["type"] == "server":
                applied.append({"type": "server", "server": {"id": target["server"]["id"]}})
            else:
                selector = target["label_selector"]["selector"]
                matching = [s for s in sorted(self.servers) if _labels_match(self.servers[s]["labels"], selector)]
                applied.append({"type": "label_selector", "label_selector": {"selector": selector},
                                "applied_to_resources": [{"type": "server", "server": {"id": s}} for s in matching]})
        return dict({k: copy.deepcopy(v) for k, v in firewall.items() if not k.startswith("_")}, applied_to=applied)

    def firewalls_of(self, server_id: int) -> list[int]:
        """IDs of the firewalls applied to a server (directly or by label)."""
        return [fw_id for fw_id, fw in sorted(self.firewalls.items())
                if any(t.get("server", {}).get("id") == server_id
                       or any(r["server"]["id"] == server_id for r in t.get("applied_to_resources", []))
                       for t in self._render_firewall(fw)["applied_to"])]

    def _render_server(self, server: dict) -> dict:
        rendered = {k: copy.deepcopy(v) for k, v in server.items() if k != "ssh_keys"}
        rendered["public_net"]["firewalls"] = [{"id": f, "status": "applied"} for f in self.firewalls_of(server["id"])]
        return rendered

    # -- routes ------------------------------------------------------------------------------
    empty_body: dict = {}
    ROUTES = [
        ("GET", r"/actions/(\d+)", "get_action"),
        ("GET", r"/locations", "list_locations"),
        ("GET", r"/locations/(\d+)", "get_location"),
        ("GET", r"/server_types", "list_server_types"),
        ("GET", r"/server_types/(\d+)", "get_server_type"),
        ("GET", r"/images", "list_images"),
        ("GET", r"/images/(\d+)", "get_image"),
        ("GET", r"/ssh_keys", "list_ssh_keys"),
        ("POST", r"/ssh_keys", "create_ssh_key"),
        ("GET", r"/ssh_keys/(\d+)", "get_ssh_key"),
        ("PUT", r"/ssh_keys/(\d+)", "update_ssh_key"),
        ("DELETE", r"/ssh_keys/(\d+)", "delete_ssh_key"),
        ("GET", r"/servers", "list_servers"),
        ("POST", r"/servers", "create_server"),
        ("GET", r"/servers/(\d+)", "get_server"),
        ("PUT", r"/servers/(\d+)", "update_server"),
        ("DELETE", r"/servers/(\d+)", "delete_server"),
        ("POST", r"/servers/(\d+)/actions/(\w+)", "server_action"),
        ("GET", r"/primary_ips", "list_primary_ips"),
        ("GET", r"/primary_ips/(\d+)", "get_primary_ip"),
        ("PUT", r"/primary_ips/(\d+)", "update_primary_ip"),
        ("POST", r"/primary_ips/(\d+)/actions/(\w+)", "primary_ip_action"),
        ("GET", r"/firewalls", "list_firewalls"),
        ("POST", r"/firewalls", "create_firewall"),
        ("GET", r"/firewalls/(\d+)", "get_firewall"),
        ("PUT", r"/firewalls/(\d+)", "update_firewall"),
        ("DELETE", r"/firewalls/(\d+)", "delete_firewall"),
        ("POST", r"/firewalls/(\d+)/actions/(\w+)", "firewall_action"),
    ]

    def _page(self, key: str, items: list[dict], query: dict) -> tuple[int, dict]:
        page, per_page = int(query.get("page", 1)), int(query.get("per_page", 25))
        if page < 1 or not 1 <= per_page <= 50:
            raise self._violation(f"GET: page={page}, per_page={per_page} out of range", "per_page")
        last_page = max(1, -(-len(items) // per_page))
        pagination = {"page": page, "per_page": per_page, "previous_page": page - 1 if page > 1 else None,
                      "next_page": page + 1 if page < last_page else None, "last_page": last_page,
                      "total_entries": len(items)}
        return 200, {key: items[(page - 1) * per_page:page * per_page], "meta": {"pagination": pagination}}

    def _violation(self, message: str, field: str) -> Reject:
        """A request the spec allows but the real API refuses: recorded like a contract violation."""
        self.violations.append(message)
        return Reject(400, message, "invalid_input", {field: message})

    @staticmethod
    def _filter(items: list[dict], query: dict, *fields: str) -> list[dict]:
        return [i for i in items if all(query.get(f) in (None, str(i.get(f))) for f in fields)
                and _labels_match(i.get("labels", {}), query.get("label_selector"))]

    def _get(self, table: dict, item_id: int, what: str) -> dict:
        if item_id not in table:
            raise Reject(404, f"{what} with ID {item_id} not found")
        return table[item_id]

    # catalogue
    def list_locations(self, query: dict, body: Any) -> tuple[int, Any]:
        return self._page("locations", self._filter(copy.deepcopy(LOCATIONS), query, "name"), query)

    def get_location(self, location_id: int, query: dict, body: Any) -> tuple[int, Any]:
        location = self.location(str(location_id))
        if location is None:
            raise Reject(404, f"location with ID {location_id} not found")
        return 200, {"location": location}

    def list_server_types(self, query: dict, body: Any) -> tuple[int, Any]:
        types = [self.server_type(name) for name in SERVER_TYPES]
        return self._page("server_types", self._filter(types, query, "name"), query)

    def get_server_type(self, type_id: int, query: dict, body: Any) -> tuple[int, Any]:
        server_type = self.server_type(str(type_id))
        if server_type is None:
            raise Reject(404, f"server type with ID {type_id} not found")
        return 200, {"server_type": server_type}

    def list_images(self, query: dict, body: Any) -> tuple[int, Any]:
        images = self._filter(self.images(), query, "name", "architecture", "type", "status")
        return self._page("images", images, query)

    def get_image(self, image_id: int, query: dict, body: Any) -> tuple[int, Any]:
        image = self.image(str(image_id))
        if image is None:
            raise Reject(404, f"image with ID {image_id} not found")
        return 200, {"image": image}

    # ssh keys
    def list_ssh_keys(self, query: dict, body: Any) -> tuple[int, Any]:
        keys = self._filter(copy.deepcopy(sorted(self.ssh_keys.values(), key=lambda k: k["id"])), query,
                            "name", "fingerprint")
        return self._page("ssh_keys", keys, query)

    def create_ssh_key(self, query: dict, body: Any) -> tuple[int, Any]:
        try:
            print_ = fingerprint(body["public_key"])
        except ValueError:
            raise Reject(400, "invalid public key", "invalid_input", {"public_key": "invalid public key"}) from None
        if any(k["name"] == body["name"] for k in self.ssh_keys.values()):
            raise Reject(409, "SSH key with the same name already exists", "uniqueness_error")
        if any(k["fingerprint"] == print_ for k in self.ssh_keys.values()):
            raise Reject(409, "SSH key with the same fingerprint already exists", "uniqueness_error")
        return 201, {"ssh_key": copy.deepcopy(self.add_ssh_key(body))}

    def get_ssh_key(self, key_id: int, query: dict, body: Any) -> tuple[int, Any]:
        return 200, {"ssh_key": copy.deepcopy(self._get(self.ssh_keys, key_id, "SSH key"))}

    def update_ssh_key(self, key_id: int, query: dict, body: Any) -> tuple[int, Any]:
        key = self._get(self.ssh_keys, key_id, "SSH key")
        key.update({k: body[k] for k in ("name", "labels") if k in body})
        return 200, {"ssh_key": copy.deepcopy(key)}

    def delete_ssh_key(self, key_id: int, query: dict, body: Any) -> tuple[int, Any]:
        self._get(self.ssh_keys, key_id, "SSH key")
        del self.ssh_keys[key_id]
        return 204, None

    # servers
    def list_servers(self, query: dict, body: Any) -> tuple[int, Any]:
        servers = self._filter([self._render_server(self.servers[i]) for i in sorted(self.servers)], query,
                               "name", "status")
        return self._page("servers", servers, query)

    def get_server(self, server_id: int, query: dict, body: Any) -> tuple[int, Any]:
        return 200, {"server": self._render_server(self._get(self.servers, server_id, "server"))}

    def create_server(self, query: dict, body: Any) -> tuple[int, Any]:
        if any(s["name"] == body["name"] for s in self.servers.values()):
            raise Reject(409, "server name is already used", "uniqueness_error")
        server_type = self.server_type(str(body["server_type"]))
        if server_type is None:
            raise Reject(400, f"server type {body['server_type']} not found", "invalid_input",
                         {"server_type": "not found"})
        location = self.location(str(body.get("location") or "fsn1"))
        if location is None:
            raise Reject(400, f"location {body['location']} not found", "invalid_input", {"location": "not found"})
        if location["name"] not in [loc["name"] for loc in server_type["locations"]]:
            raise Reject(412, f"server type {server_type['name']} is not available in {location['name']}",
                         "resource_unavailable")
        image = self.image(str(body["image"]), server_type["architecture"])  # a name means the type's architecture
        if image is None:
            raise Reject(400, f"image {body['image']} not found or not for {server_type['architecture']}",
                         "invalid_input", {"image": "not found"})
        keys = []
        for wanted in body.get("ssh_keys", []):
            key = next((k for k in self.ssh_keys.values() if str(wanted) in (k["name"], str(k["id"]))), None)
            if key is None:
                raise Reject(400, f"SSH key {wanted} not found", "invalid_input", {"ssh_keys": "not found"})
            keys.append(key["id"])
        public_net = body.get("public_net") or {}
        given = {}
        for kind in ("ipv4", "ipv6"):
            if public_net.get(kind) is None:
                continue
            wanted = self.primary_ips.get(public_net[kind])
            if wanted is None or wanted["type"] != kind:
                raise Reject(400, f"{kind} primary IP {public_net[kind]} not found", "invalid_input",
                             {f"public_net.{kind}": "not found"})
            if wanted["assignee_id"] is not None:
                raise Reject(409, f"primary IP {wanted['id']} is already assigned", "conflict")
            if wanted["location"]["name"] != location["name"]:
                raise Reject(422, f"primary IP {wanted['id']} is in {wanted['location']['name']}, not in "
                             f"{location['name']}", "invalid_input")
            given[kind] = wanted["id"]
        server = self.add_server({"name": body["name"], "server_type": server_type["name"], "image": image["name"],
                                  "location": location["name"], "labels": body.get("labels") or {},
                                  "ssh_keys": keys, "status": "initializing",
                                  "enable_ipv4": public_net.get("enable_ipv4", True),
                                  "enable_ipv6": public_net.get("enable_ipv6", True), "primary_ips": given})
        for firewall in body.get("firewalls", []):
            self._get(self.firewalls, firewall["firewall"], "firewall")["_apply_to"].append(
                {"type": "server", "server": {"id": server["id"]}})
        resources = [(server["id"], "server")]
        create = self._start_action("create_server", resources, lambda: None)
        start = [] if body.get("start_after_create") is False else [
            self._start_action("start_server", resources, lambda: server.update(status="running"))]
        return 201, {"server": self._render_server(server), "action": create, "next_actions": start,
                     "root_password": None}

    def update_server(self, server_id: int, query: dict, body: Any) -> tuple[int, Any]:
        server = self._get(self.servers, server_id, "server")
        server.update({k: body[k] for k in ("name", "labels") if k in body})
        return 200, {"server": self._render_server(server)}

    def delete_server(self, server_id: int, query: dict, body: Any) -> tuple[int, Any]:
        server = self._get(self.servers, server_id, "server")
        if server["protection"]["delete"]:
            raise Reject(403, "server is protected against deletion", "protected")

        def change() -> None:
            self.servers.pop(server_id, None)
            for ip_id, ip in list(self.primary_ips.items()):
                if ip["assignee_id"] == server_id:  # auto_delete: false keeps the address, unassigned
                    if ip["auto_delete"]:
                        del self.primary_ips[ip_id]
                    else:
                        ip["assignee_id"] = None
            for firewall in self.firewalls.values():
                firewall["_apply_to"] = [t for t in firewall["_apply_to"]
                                         if t.get("server", {}).get("id") != server_id]
        return 200, {"action": self._start_action("delete_server", [(server_id, "server")], change)}

    def server_action(self, server_id: int, command: str, query: dict, body: Any) -> tuple[int, Any]:
        server = self._get(self.servers, server_id, "server")
        if command not in SERVER_ACTIONS:
            raise self.not_modelled("POST", f"/servers/{server_id}/actions/{command}")
        if command == "change_protection":
            if body.get("rebuild") is not None and body.get("delete") is not None \
                    and body["rebuild"] and not body["delete"]:
                raise Reject(400, "rebuild protection needs delete protection", "invalid_input")

            def change() -> None:
                server["protection"].update({k: v for k, v in body.items() if v is not None})
        else:
            status = {"poweron": "running", "reboot": "running"}.get(command, "off")

            def change() -> None:
                server["status"] = status
        return 201, {"action": self._start_action(command, [(server_id, "server")], change)}

    # primary IPs
    def list_primary_ips(self, query: dict, body: Any) -> tuple[int, Any]:
        ips = self._filter(copy.deepcopy([self.primary_ips[i] for i in sorted(self.primary_ips)]), query, "name", "ip")
        return self._page("primary_ips", ips, query)

    def get_primary_ip(self, ip_id: int, query: dict, body: Any) -> tuple[int, Any]:
        return 200, {"primary_ip": copy.deepcopy(self._get(self.primary_ips, ip_id, "primary IP"))}

    def update_primary_ip(self, ip_id: int, query: dict, body: Any) -> tuple[int, Any]:
        primary_ip = self._get(self.primary_ips, ip_id, "primary IP")
        if "name" in body and any(i["name"] == body["name"] and i["id"] != ip_id for i in self.primary_ips.values()):
            raise Reject(409, "primary IP name is already used", "uniqueness_error")
        primary_ip.update({k: body[k] for k in ("name", "labels", "auto_delete") if k in body})
        return 200, {"primary_ip": copy.deepcopy(primary_ip)}

    def primary_ip_action(self, ip_id: int, command: str, query: dict, body: Any) -> tuple[int, Any]:
        primary_ip = self._get(self.primary_ips, ip_id, "primary IP")
        if command != "change_protection":
            raise self.not_modelled("POST", f"/primary_ips/{ip_id}/actions/{command}")

        def change() -> None:
            primary_ip["protection"]["delete"] = body["delete"]
        return 201, {"action": self._start_action("change_protection", [(ip_id, "primary_ip")], change)}

    # firewalls
    def list_firewalls(self, query: dict, body: Any) -> tuple[int, Any]:
        firewalls = self._filter([self._render_firewall(self.firewalls[i]) for i in sorted(self.firewalls)], query,
                                 "name")
        return self._page("firewalls", firewalls, query)

    def get_firewall(self, firewall_id: int, query: dict, body: Any) -> tuple[int, Any]:
        return 200, {"firewall": self._render_firewall(self._get(self.firewalls, firewall_id, "firewall"))}

    def create_firewall(self, query: dict, body: Any) -> tuple[int, Any]:
        if any(f["name"] == body["name"] for f in self.firewalls.values()):
            raise Reject(409, "firewall name is already used", "uniqueness_error")
        for rule in body.get("rules", []):
            self._check_rule(rule)
        firewall = self.add_firewall({"name": body["name"], "labels": body.get("labels") or {},
                                      "rules": body.get("rules", []), "apply_to": body.get("apply_to", [])})
        actions = [self._start_action("set_firewall_rules", [(firewall["id"], "firewall")], lambda: None)]
        if body.get("apply_to"):
            actions.append(self._start_action("apply_firewall", [(firewall["id"], "firewall")], lambda: None))
        return 201, {"firewall": self._render_firewall(firewall), "actions": actions}

    def update_firewall(self, firewall_id: int, query: dict, body: Any) -> tuple[int, Any]:
        firewall = self._get(self.firewalls, firewall_id, "firewall")
        firewall.update({k: body[k] for k in ("name", "labels") if k in body})
        return 200, {"firewall": self._render_firewall(firewall)}

    def delete_firewall(self, firewall_id: int, query: dict, body: Any) -> tuple[int, Any]:
        firewall = self._get(self.firewalls, firewall_id, "firewall")
        if self._render_firewall(firewall)["applied_to"]:
            raise Reject(422, "firewall is still in use", "resource_in_use")
        del self.firewalls[firewall_id]
        return 204, None

    def firewall_action(self, firewall_id: int, command: str, query: dict, body: Any) -> tuple[int, Any]:
        firewall = self._get(self.firewalls, firewall_id, "firewall")
        if command == "set_rules":
            for rule in body["rules"]:
                self._check_rule(rule)

            def change() -> None:
                firewall["rules"] = [self._rule(r) for r in body["rules"]]
            return 201, {"actions": [self._start_action("set_firewall_rules", [(firewall_id, "firewall")], change)]}
        if command in ("apply_to_resources", "remove_from_resources"):
            applied = [json.dumps(t, sort_keys=True) for t in firewall["_apply_to"]]
            targets = body["apply_to" if command == "apply_to_resources" else "remove_from"]
            for target in targets:
                present = json.dumps(target, sort_keys=True) in applied
                if command == "apply_to_resources" and present:
                    raise Reject(422, "firewall is already applied to this resource", "firewall_already_applied")
                if command == "remove_from_resources" and not present:
                    raise Reject(422, "firewall is not applied to this resource", "firewall_already_removed")

            def change() -> None:
                for target in targets:
                    if command == "apply_to_resources":
                        firewall["_apply_to"].append(copy.deepcopy(target))
                    else:
                        firewall["_apply_to"].remove(target)
            verb = "apply_firewall" if command == "apply_to_resources" else "remove_firewall"
            return 201, {"actions": [self._start_action(verb, [(firewall_id, "firewall")], change)]}
        raise self.not_modelled("POST", f"/firewalls/{firewall_id}/actions/{command}")

    def _check_rule(self, rule: dict) -> None:
        """What the API checks beyond the spec: addresses are CIDRs, a port only for TCP/UDP, ``in`` needs
        source_ips."""
        for address in rule.get("source_ips", []) + rule.get("destination_ips", []):
            try:
                ipaddress.ip_network(address, strict=False)
            except ValueError:
                raise self._violation(f"firewall rule: {address!r} is not a CIDR", "rules") from None
        if (rule.get("port") is not None) != (rule["protocol"] in ("tcp", "udp")):
            raise self._violation("firewall rule: a port is required for tcp/udp only", "rules")
        if rule["direction"] == "in" and not rule.get("source_ips"):
            raise self._violation("firewall rule: an inbound rule needs source_ips", "rules")

    # -- actions -----------------------------------------------------------------------------
    def _finish(self, action: dict) -> None:
        self._pending.pop(action["id"])[1]()
        action.update(progress=100, finished=utc_now(), status="success")

    def get_action(self, action_id: int, query: dict, body: Any) -> tuple[int, Any]:
        action = self._get(self.actions, action_id, "action")
        pending = self._pending.get(action_id)
        if pending:
            pending[0] -= 1
            if pending[0] <= 0:
                self._finish(action)
        return 200, {"action": copy.deepcopy(action)}


def fingerprint(public_key: str) -> str:
    """The MD5 fingerprint Hetzner shows for an OpenSSH public key (``aa:bb:...``); ValueError if not a key."""
    parts = public_key.split()
    if len(parts) < 2 or not parts[0].startswith(("ssh-", "ecdsa-", "sk-")):
        raise ValueError("not an OpenSSH public key")
    digest = hashlib.md5(base64.b64decode(parts[1], validate=True)).hexdigest()  # noqa: S324 (Hetzner's format)
    return ":".join(digest[i:i + 2] for i in range(0, 32, 2))


def main(argv: list[str] | None = None) -> None:
    parser = argument_parser(__doc__.splitlines()[0])
    parser.add_argument("--seed", type=Path, help=f"JSON seed (see the module docstring; token, else {DEFAULT_TOKEN})")
    parser.add_argument("--action-polls", type=int, help="polls before an action finishes (default 1)")
    parser.add_argument("--server-ipv4", help="the IPv4 address a new server gets (e.g. the lab host's)")
    parser.add_argument("--server-ipv6", help="the IPv6 network a new server gets (e.g. fd00:1::/64)")
    args = parser.parse_args(argv)
    seed = json.loads(args.seed.read_text()) if args.seed else {}
    seed.update({k: v for k, v in (("server_ipv4", args.server_ipv4), ("server_ipv6", args.server_ipv6)) if v})
    serve(HcloudFake(seed, token=token_of(args), port=args.port, host=args.host, action_polls=args.action_polls),
          "Hetzner Cloud fake listening on {url}")


if __name__ == "__main__":
    main()
