"""A fake of the Cloudflare DNS API (``/client/v4``: ``GET /zones?name=``, the zone's ``dns_records``), reached by
``community.general.cloudflare_dns`` under its fixed name ``api.cloudflare.com``, over TLS, without patching it.

The module has no URL option (its base URL is ``https://api.cloudflare.com/client/v4``). Ansible's ``fetch_url``
honours the standard proxy variables and OpenSSL's ``SSL_CERT_FILE``, so a test gives the module's process
``https_proxy=<ConnectProxy.url>`` and ``SSL_CERT_FILE=<TestCA.ca_file>``: the module opens a ``CONNECT
api.cloudflare.com:443`` tunnel through :class:`ConnectProxy`, which sends it to this fake (and refuses any other
destination, recording it in ``refused``), and verifies the fake's certificate for ``api.cloudflare.com``, issued
by a throwaway CA (:class:`TestCA`), exactly as it would verify Cloudflare's.

In pytest::

    ca = TestCA.create(tmp_path)
    with CloudflareFake({"zones": [{"name": "example.com"}]}, tls=ca) as fake, ConnectProxy(fake) as proxy:
        env = {"https_proxy": proxy.url, "SSL_CERT_FILE": str(ca.ca_file), "CLOUDFLARE_TOKEN": fake.token}
        ...
        assert fake.violations == [] and fake.response_problems == [] and proxy.refused == []

From a shell (the lab)::

    python tests/fakes/cloudflare_api.py --port 8443 --tls-dir DIR --proxy-port 3128 [--seed seed.json]
                                         [--token-file F]

(``DIR`` gets ``ca.pem`` on first use, kept afterwards.) Every request and answer is checked against
``cloudflare-dns.openapi.json`` (:class:`base.FakeApi`); errors come in Cloudflare's envelope (``success: false``,
``errors: [{code, message}]``). The 2024 spec's ``result_info`` lacks ``total_pages``, which the module reads and the
API returns: the fake sends it (the spec leaves ``result_info`` open). Records carry ``zone_id``/``zone_name`` as
the API did then (community.general 9 reads ``zone_id`` when it deletes). That copy also lists only the legacy
``X-Auth-Email``/``X-Auth-Key`` pair as security of the DNS record paths, although Cloudflare documents API tokens
(Zone:DNS:Edit) for them and later copies list ``api_token`` too: the fake's contract adds it to those paths. And
its ``comment`` is a plain string, although the API answers ``"comment": null`` for a record without one and
community.general 10+ sends that null for every record it writes without a comment: ``comment`` may be null here.
Last, a DNS record's schema requires the read-only ``id``, ``proxiable``, ``created_on`` and ``modified_on`` beside a
``oneOf`` whose branches mark them read-only; OpenAPI 3.0 applies such a ``required`` to answers only, which the
validator cannot see there (it refuses every create), so the four leave that ``required`` (the fake always sends them).
And ``DELETE`` of a record declares a required body without a schema; Cloudflare's own example sends none, nor does
the module: the body is optional here.

Seed (JSON or dict): ``{"token": "...", "zones": [{"name": "example.com"}], "dns_records": [{"zone": "example.com",
"type": "A", "name": "photos.example.com", "content": "192.0.2.1", "proxied": true}]}``.
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import ipaddress
import itertools
import json
import re
import select
import socket
import ssl
import threading
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

if __package__:  # imported as ansible_collections.selfhost.immich.tests.fakes
    from .base import FakeApi, Fault, PatchedContract, _Handler, argument_parser, serve, token_of
else:  # run as a script (the lab starts fakes so)
    from base import FakeApi, Fault, PatchedContract, _Handler, argument_parser, serve, token_of

SPEC_FILE = "cloudflare-dns.openapi.json"
API_PREFIX = "/client/v4"
API_HOST = "api.cloudflare.com"
DEFAULT_TOKEN = "fake-cloudflare-token"
TYPES = ("A", "AAAA", "CNAME", "TXT")
READ_ONLY = ("id", "proxiable", "created_on", "modified_on")
ERROR_CODES = {400: 9207, 401: 10000, 403: 10000, 404: 7003, 405: 10405, 409: 81057, 429: 971, 501: 7000,
               503: 10001}


class CloudflareError(Fault):
    """Answer in Cloudflare's error envelope."""

    def __init__(self, status: int, message: str, code: int | None = None, headers: dict | None = None) -> None:
        super().__init__(status, message, headers)
        self.code = code or ERROR_CODES.get(status, 1000)

    def body(self) -> dict:
        return {"success": False, "errors": [{"code": self.code, "message": self.message}], "messages": [],
                "result": None}


class CloudflareContract(PatchedContract):
    """:class:`contract.Contract` with API tokens accepted on every operation (see the module docstring)."""

    served_at = (f"https://{API_HOST}", API_PREFIX)

    def patch(self, checked: dict) -> None:
        schemas = checked["components"]["schemas"]
        schemas["dns-records_comment"]["nullable"] = True
        record = schemas["dns-records_dns-record"]
        record["required"] = [k for k in record["required"] if k not in READ_ONLY]
        checked["paths"]["/zones/{zone_id}/dns_records/{dns_record_id}"]["delete"]["requestBody"]["required"] = False
        for operations in checked["paths"].values():
            for operation in operations.values():
                security = operation.get("security") if isinstance(operation, dict) else None
                if security is not None and {"api_token": []} not in security:
                    security.insert(0, {"api_token": []})


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class CloudflareFake(FakeApi):
    """In-memory zones and DNS records behind a threaded HTTP(S) server. Thread-safe; read the attributes."""

    spec_file = SPEC_FILE
    prefix = API_PREFIX
    spec_paths = ("/zones",)
    contract_class = CloudflareContract
    fault = CloudflareError
    unauthorized = "Authentication error"

    def __init__(self, seed: dict | None = None, token: str | None = None, port: int = 0,
                 host: str = "127.0.0.1", tls: TestCA | None = None) -> None:
        self.seed = copy.deepcopy(seed or {})
        self.tls = tls
        super().__init__(token or self.seed.get("token") or DEFAULT_TOKEN, host=host, port=port)

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{self.host}:{self.port}{self.prefix}"

    def start(self) -> CloudflareFake:
        """As :meth:`FakeApi.start`, over TLS when ``tls`` is given (the socket is wrapped before serving)."""
        if not self.tls:
            super().start()
            return self
        self._server = ThreadingHTTPServer((self.host, self.port), _Handler)
        self._server.fake = self
        self.port = self._server.server_address[1]
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.tls.cert_file, self.tls.key_file)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        threading.Thread(target=self._server.serve_forever, name=type(self).__name__, daemon=True).start()
        return self

    # -- state -------------------------------------------------------------------------------
    def reset(self) -> None:
        with self.lock:
            super().reset()
            self.zones: dict[str, dict] = {}
            self.records: dict[str, dict] = {}
            self._serial = itertools.count(1)
            for zone in self.seed.get("zones", []):
                self.add_zone(zone["name"])
            for record in copy.deepcopy(self.seed.get("dns_records", [])):
                zone = record.pop("zone")
                self.add_record(self.zone_id(zone), record)

    @staticmethod
    def zone_id(name: str) -> str:
        return hashlib.md5(name.encode()).hexdigest()  # noqa: S324 (an identifier, 32 hex like Cloudflare's)

    def add_zone(self, name: str) -> dict:
        zone = {"id": self.zone_id(name), "name": name, "status": "active", "paused": False, "type": "full",
                "development_mode": 0, "name_servers": ["ada.ns.cloudflare.com", "bob.ns.cloudflare.com"],
                "original_name_servers": None, "original_registrar": None, "original_dnshost": None,
                "created_on": "2024-01-01T00:00:00.000000Z", "modified_on": "2024-01-01T00:00:00.000000Z",
                "activated_on": "2024-01-01T00:00:00.000000Z", "meta": {}, "owner": {"type": "user"},
                "account": {"id": "a" * 32, "name": "fake account"}, "permissions": []}
        self.zones[zone["id"]] = zone
        return zone

    def add_record(self, zone_id: str, body: dict) -> dict:
        zone = self.zones[zone_id]
        now = _now()
        record = {"id": hashlib.md5(f"{zone_id}/{next(self._serial)}".encode()).hexdigest(),  # noqa: S324
                  "zone_id": zone_id, "zone_name": zone["name"], "name": body["name"], "type": body["type"],
                  "content": body["content"], "proxiable": body["type"] in ("A", "AAAA", "CNAME"),
                  "proxied": bool(body.get("proxied", False)), "ttl": body.get("ttl", 1), "locked": False,
                  "meta": {"auto_added": False, "managed_by_apps": False, "managed_by_argo_tunnel": False},
                  "comment": body.get("comment"), "tags": body.get("tags", []), "created_on": now,
                  "modified_on": now}
        self.records[record["id"]] = record
        return record

    def records_of(self, zone: str) -> list[dict]:
        """The records of a zone (by name), sorted by type and name: what a test asserts."""
        zone_id = self.zone_id(zone)
        return sorted((r for r in self.records.values() if r["zone_id"] == zone_id),
                      key=lambda r: (r["type"], r["name"], r["content"]))

    # -- routes ------------------------------------------------------------------------------
    def route(self, method: str, path: str, query: dict, body: Any) -> tuple[int, Any]:
        if method == "GET" and path == "/zones":
            zones = [z for z in self.zones.values() if query.get("name") in (None, z["name"])]
            return self._list(zones, query)
        match = re.fullmatch(r"/zones/([0-9a-f]{32})/dns_records(?:/([0-9a-f]{32}))?", path)
        if not match:
            raise self.not_modelled(method, path)
        zone_id, record_id = match.groups()
        if zone_id not in self.zones:
            raise CloudflareError(404, "Could not route to /zones/{zone_id}: zone not found", 7003)
        if record_id is None and method == "GET":
            records = [copy.deepcopy(r) for r in self.records_of(self.zones[zone_id]["name"])
                       if all(query.get(k) in (None, str(r[k])) for k in ("name", "type", "content"))]
            return self._list(records, query)
        if record_id is None and method == "POST":
            self._check(zone_id, body)
            return 200, self._ok(copy.deepcopy(self.add_record(zone_id, body)))
        record = self.records.get(record_id)
        if record is None or record["zone_id"] != zone_id:
            raise CloudflareError(404, "Record does not exist.", 81044)
        if method == "GET":
            return 200, self._ok(copy.deepcopy(record))
        if method in ("PUT", "PATCH"):
            merged = body if method == "PUT" else dict(record, **body)
            self._check(zone_id, merged, replacing=record_id)
            record.update({k: merged[k] for k in ("name", "type", "content", "ttl", "comment", "tags") if k in merged},
                          proxied=bool(merged.get("proxied", False)), modified_on=_now())
            return 200, self._ok(copy.deepcopy(record))
        if method == "DELETE":
            del self.records[record_id]
            return 200, self._ok({"id": record_id})
        raise self.not_modelled(method, path)

    def _check(self, zone_id: str, body: dict, replacing: str | None = None) -> None:
        """What the API refuses beyond the spec: a name outside the zone, a bad address, a duplicate."""
        zone = self.zones[zone_id]["name"]
        if body["type"] not in TYPES:
            raise self.not_modelled("POST", f"/zones/{zone_id}/dns_records", f" (type {body['type']})")
        if body["name"] != zone and not body["name"].endswith("." + zone):
            self.violations.append(f"record name {body['name']} is outside the zone {zone}")
            raise CloudflareError(400, "DNS name is invalid.", 9007)
        if body["type"] in ("A", "AAAA"):
            version = 4 if body["type"] == "A" else 6
            try:
                valid = ipaddress.ip_address(body["content"]).version == version
            except ValueError:
                valid = False
            if not valid:
                self.violations.append(f"{body['type']} record content {body['content']!r} is no IPv{version}")
                raise CloudflareError(400, "Content for record is invalid.", 9005 if version == 4 else 9006)
        if any(r["zone_id"] == zone_id and r["id"] != replacing and (r["name"], r["type"], r["content"])
               == (body["name"], body["type"], body["content"]) for r in self.records.values()):
            raise CloudflareError(400, "An identical record already exists.", 81058)

    @staticmethod
    def _ok(result: Any) -> dict:
        return {"success": True, "errors": [], "messages": [], "result": result}

    def _list(self, items: list[dict], query: dict) -> tuple[int, dict]:
        page, per_page = int(query.get("page", 1)), int(query.get("per_page", 100))
        total_pages = max(1, -(-len(items) // per_page))
        answer = self._ok(copy.deepcopy(items[(page - 1) * per_page:page * per_page]))
        answer["result_info"] = {"page": page, "per_page": per_page, "count": len(answer["result"]),
                                 "total_count": len(items), "total_pages": total_pages}
        return 200, answer


# -- TLS under Cloudflare's name -----------------------------------------------------------------
@dataclass(frozen=True)
class TestCA:
    """A throwaway CA (``ca_file``) and a certificate for ``api.cloudflare.com`` it issued (``cert_file``,
    ``key_file``), in one directory."""

    __test__ = False  # not a pytest test class
    ca_file: Path
    cert_file: Path
    key_file: Path

    @classmethod
    def create(cls, directory: Path, names: tuple[str, ...] = (API_HOST,)) -> TestCA:
        """Write the CA and the server certificate into ``directory`` (reused when already there)."""
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        directory = Path(directory)
        found = cls(directory / "ca.pem", directory / "server.pem", directory / "server.key")
        if all(p.is_file() for p in (found.ca_file, found.cert_file, found.key_file)):
            return found
        directory.mkdir(parents=True, exist_ok=True)
        now = datetime.datetime.now(datetime.UTC)
        ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "selfhost.immich test CA (throwaway)")])
        ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
        ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
              .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
              .not_valid_after(now + datetime.timedelta(days=30))
              .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
              .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                           data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                           crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
              .add_extension(ca_ski, critical=False)
              .sign(ca_key, hashes.SHA256()))
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
                .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=30))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
                .sign(ca_key, hashes.SHA256()))
        found.key_file.touch(mode=0o600)
        found.key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                     serialization.NoEncryption()))
        found.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        found.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        return found


class ConnectProxy:
    """A loopback HTTP proxy that only tunnels ``CONNECT api.cloudflare.com:443`` to ``fake``; every other
    request is refused (403) and recorded in ``refused`` (so a test also shows nothing went elsewhere)."""

    def __init__(self, fake: CloudflareFake, host: str = "127.0.0.1", port: int = 0,
                 allowed: tuple[str, ...] = (f"{API_HOST}:443",)) -> None:
        self.fake, self.allowed = fake, allowed
        self.refused: list[str] = []
        self.tunnels = 0
        self._listener = socket.create_server((host, port))
        self.host, self.port = self._listener.getsockname()[:2]
        self._stopped = threading.Event()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> ConnectProxy:
        threading.Thread(target=self._accept, name="ConnectProxy", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._listener.close()

    def __enter__(self) -> ConnectProxy:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client = self._listener.accept()[0]
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with client:
            head = b""
            while b"\r\n\r\n" not in head and len(head) < 65536:
                chunk = client.recv(4096)
                if not chunk:
                    return
                head += chunk
            request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
            method, _space, rest = request_line.partition(" ")
            target = rest.rsplit(" ", 1)[0]
            if method != "CONNECT" or target.lower() not in self.allowed:
                self.refused.append(request_line)
                client.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                return
            with socket.create_connection((self.fake.host, self.fake.port)) as upstream:
                self.tunnels += 1
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                _pipe(client, upstream)


def _pipe(a: socket.socket, b: socket.socket) -> None:
    """Copy bytes both ways until either side closes."""
    sockets = [a, b]
    while True:
        readable = select.select(sockets, [], [], 30)[0]
        if not readable:
            return
        for sock in readable:
            try:
                data = sock.recv(65536)
                if data:
                    (b if sock is a else a).sendall(data)
            except OSError:  # a side reset the connection (e.g. a client refusing the certificate)
                return
            if not data:
                return


def main(argv: list[str] | None = None) -> None:
    parser = argument_parser(__doc__.splitlines()[0])
    parser.add_argument("--seed", type=Path, help=f"JSON seed: zones, dns_records (and a token, else {DEFAULT_TOKEN})")
    parser.add_argument("--tls-dir", type=Path, help="serve HTTPS as api.cloudflare.com with the test CA in this dir")
    parser.add_argument("--proxy-port", type=int, help="also run the CONNECT proxy on this port (needs --tls-dir)")
    args = parser.parse_args(argv)
    seed = json.loads(args.seed.read_text()) if args.seed else {}
    tls = TestCA.create(args.tls_dir) if args.tls_dir else None
    fake = CloudflareFake(seed, token=token_of(args), port=args.port, host=args.host, tls=tls)
    if args.proxy_port is not None:  # the proxy reads the fake's port when a tunnel opens
        proxy = ConnectProxy(fake, host=args.host, port=args.proxy_port).start()
        print(f"CONNECT proxy for {API_HOST} on {proxy.url}; CA {tls.ca_file if tls else '(none)'}", flush=True)
    serve(fake, "Cloudflare fake listening on {url}")


if __name__ == "__main__":
    main()
