"""A fake of the Hetzner Storage Box API (``/v1/storage_boxes``) for unit, integration and Molecule tests.

In pytest::

    with HetznerFake(seed) as fake:          # listens on 127.0.0.1, random port
        env = {"HETZNER_API_URL": fake.url, "HETZNER_API_TOKEN": fake.token}
        ...
        assert fake.violations == [] and fake.response_problems == []

From a shell (Molecule ``prepare``)::

    python tests/fakes/hetzner_api.py --port 8080 --seed seed.json [--token T] [--action-polls 2]

Every request is checked against the vendor spec with :class:`contract.Contract`; a request the real API would
refuse is answered in Hetzner's error shape (400 ``invalid_input``, or 404 for an unknown path) and recorded in
``violations``. A few rules the spec cannot express are checked too (password policy, a home directory without
leading ``/``, only the box's own access flags on a box). Answers follow the spec's shapes and are themselves
checked (``response_problems``). Changes run as actions that are ``running`` when created and finish after
``action_polls`` polls of ``GET /storage_boxes/actions/{id}``; only then is the change applied.

Seed (JSON or dict): ``{"token": "...", "action_polls": 1, "storage_boxes": [{"id": 1, "name": "photos",
"access_settings": {...}, "subaccounts": [{"name": "immich", "home_directory": "immich"}]}]}``; every field
left out gets a plausible default.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import re
import sys
import threading
from datetime import UTC, datetime
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from contract import Contract, ContractViolation  # noqa: E402
from openapi_core import Config, OpenAPI  # noqa: E402
from openapi_core.testing import MockRequest, MockResponse  # noqa: E402

SPEC_FILE = "hetzner-storage-boxes.openapi.json"
API_PREFIX = "/v1"
DEFAULT_TOKEN = "fake-hetzner-token"
BOX_ACCESS = ("reachable_externally", "samba_enabled", "ssh_enabled", "webdav_enabled", "zfs_enabled")
SUB_ACCESS = ("reachable_externally", "readonly", "samba_enabled", "ssh_enabled", "webdav_enabled")
PASSWORD_SPECIALS = set("^°!§$%/()=?+#-.,;:~*@{}_&")
ERROR_CODES = {401: "unauthorized", 404: "not_found", 409: "conflict", 423: "locked",
               429: "rate_limit_exceeded", 500: "server_error", 502: "bad_gateway", 503: "unavailable",
               504: "timeout"}


@lru_cache(maxsize=1)
def _contract() -> Contract:
    return Contract(SPEC_FILE)


@lru_cache(maxsize=1)
def _response_spec() -> OpenAPI:
    """The spec for checking this fake's own answers.

    Hetzner writes nullable references as ``{"allOf": [{"$ref": ...}], "nullable": true}``; the OpenAPI 3.0
    validator ignores ``nullable`` beside ``allOf`` and refuses the ``null`` the real API sends (an action's
    ``error``, a box's ``snapshot_plan``). The referenced schema is inlined with ``nullable`` instead.
    """
    spec = copy.deepcopy(_contract().spec)
    schemas = spec["components"]["schemas"]

    def inline(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("nullable") and len(node.get("allOf") or []) == 1 and "$ref" in node["allOf"][0]:
                target = schemas[node.pop("allOf")[0]["$ref"].rsplit("/", 1)[1]]
                node.update({k: copy.deepcopy(v) for k, v in target.items() if k not in node})
            for value in node.values():
                inline(value)
        elif isinstance(node, list):
            for value in node:
                inline(value)

    inline(spec)
    return OpenAPI.from_dict(spec, config=Config(spec_validator_cls=None))


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Reject(Exception):
    """Answer with a Hetzner error body."""

    def __init__(self, status: int, message: str, code: str | None = None, fields: dict | None = None,
                 headers: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.message = status, message
        self.code = code or ERROR_CODES.get(status, "invalid_input")
        self.fields, self.headers = fields, headers or {}

    def body(self) -> dict:
        details = {"fields": [{"name": k, "messages": [v]} for k, v in self.fields.items()]} if self.fields else None
        return {"error": {"code": self.code, "message": self.message, "details": details}}


class HetznerFake:
    """In-memory Storage Boxes behind a threaded HTTP server. Thread-safe; read the attributes freely."""

    def __init__(self, seed: dict | None = None, token: str | None = None, port: int = 0,
                 host: str = "127.0.0.1", action_polls: int | None = None) -> None:
        seed = copy.deepcopy(seed or {})
        self.token = token or seed.get("token") or DEFAULT_TOKEN
        self.action_polls = action_polls if action_polls is not None else seed.get("action_polls", 1)
        self.host, self.port = host, port
        self.lock = threading.RLock()
        self.requests: list[dict] = []          # every request: method, path, query, body
        self.violations: list[str] = []          # requests the real API would refuse
        self.response_problems: list[str] = []   # answers of this fake that break the spec (a fake bug)
        self.passwords: dict[tuple[str, int], str] = {}
        self.boxes: dict[int, dict] = {}
        self.subaccounts: dict[int, dict] = {}
        self.actions: dict[int, dict] = {}
        self._pending: dict[int, list] = {}      # action id -> [polls left, change to apply]
        self._failures: list[dict] = []
        self._action_errors: list[tuple[str, str]] = []
        self._ids = itertools.count(9001)
        for box in seed.get("storage_boxes", []):
            self.add_box(box)
        self._server: ThreadingHTTPServer | None = None

    # -- test controls -----------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{API_PREFIX}"

    @property
    def writes(self) -> list[dict]:
        return [r for r in self.requests if r["method"] != "GET"]

    def fail_next(self, status: int = 503, times: int = 1, method: str | None = None, path: str | None = None,
                  headers: dict | None = None) -> None:
        """Answer the next ``times`` matching requests (method, path prefix after /v1) with ``status``."""
        self._failures.append(dict(status=status, times=times, method=method, path=path, headers=headers or {}))

    def fail_next_action(self, code: str = "action_failed", message: str = "the action failed") -> None:
        """The next action ends with status ``error`` (and changes nothing)."""
        self._action_errors.append((code, message))

    def reset_log(self) -> None:
        with self.lock:
            self.requests.clear()

    # -- state -------------------------------------------------------------------------------
    def add_box(self, seed: dict) -> dict:
        box_id = seed.get("id") or next(self._ids)
        username = seed.get("username") or f"u{100000 + box_id}"
        box = {
            "id": box_id, "name": seed.get("name", f"box-{box_id}"), "username": username, "status": "active",
            "server": f"{username}.your-storagebox.de", "system": "FSN1-BX123", "created": _now(),
            "labels": seed.get("labels", {}), "protection": {"delete": False},
            "location": {"id": 1, "name": "fsn1", "description": "Falkenstein DC Park 1", "country": "DE",
                         "city": "Falkenstein", "latitude": 50.47612, "longitude": 12.370071,
                         "network_zone": "eu-central"},
            "storage_box_type": {"id": 1, "name": "bx11", "description": "BX11", "size": 1099511627776,
                                 "snapshot_limit": 10, "automatic_snapshot_limit": 10, "subaccounts_limit": 100,
                                 "prices": [], "deprecation": None},
            "stats": {"size": 0, "size_data": 0, "size_snapshots": 0},
            "access_settings": dict(dict.fromkeys(BOX_ACCESS, False), **seed.get("access_settings", {})),
            "snapshot_plan": None,
        }
        box.update({k: v for k, v in seed.items() if k in ("protection", "snapshot_plan", "status", "server")})
        if box["snapshot_plan"]:
            box["snapshot_plan"] = dict(dict(day_of_week=None, day_of_month=None), **box["snapshot_plan"])
        self.boxes[box_id] = box
        for sub in seed.get("subaccounts", []):
            self.add_subaccount(box_id, sub)
        return box

    def add_subaccount(self, box_id: int, seed: dict) -> dict:
        box = self.boxes[box_id]
        number = 1 + sum(1 for s in self.subaccounts.values() if s["storage_box"] == box_id)
        username = seed.get("username") or f"{box['username']}-sub{number}"
        sub = {
            "id": seed.get("id") or next(self._ids), "storage_box": box_id, "username": username,
            "name": seed.get("name") or username, "server": f"{username}.your-storagebox.de",
            "home_directory": seed.get("home_directory", username), "description": seed.get("description", ""),
            "labels": seed.get("labels", {}), "created": _now(),
            "access_settings": dict(dict.fromkeys(SUB_ACCESS, False), **seed.get("access_settings", {})),
        }
        self.subaccounts[sub["id"]] = sub
        if seed.get("password"):
            self.passwords[("subaccount", sub["id"])] = seed["password"]
        return sub

    # -- server ------------------------------------------------------------------------------
    def start(self) -> HetznerFake:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                status, answer, headers = fake.handle(self.command, self.path, dict(self.headers), body)
                data = b"" if answer is None else json.dumps(answer).encode()
                self.send_response(status)
                for name, value in dict({"Content-Type": "application/json"}, **headers).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

        _response_spec()  # load the specs before the first request, not during it
        self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> HetznerFake:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- one request -------------------------------------------------------------------------
    def handle(self, method: str, raw_path: str, headers: dict, raw_body: bytes | None) -> tuple[int, Any, dict]:
        with self.lock:
            parts = urlsplit(raw_path)
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            try:
                body = json.loads(raw_body) if raw_body else None
            except ValueError:
                body = raw_body.decode(errors="replace")
            self.requests.append(dict(method=method, path=parts.path.removeprefix(API_PREFIX), query=query,
                                      body=body))
            try:
                self._check_contract(method, raw_path, headers, raw_body)
                if headers.get("Authorization") != f"Bearer {self.token}":
                    raise Reject(401, "unable to authenticate")
                self._injected_failure(method, parts.path.removeprefix(API_PREFIX))
                status, answer = self._route(method, parts.path.removeprefix(API_PREFIX), query, body)
            except Reject as exc:
                return exc.status, exc.body(), exc.headers
            self._check_response(method, parts.path, status, answer)
            return status, answer, {}

    def _check_contract(self, method: str, raw_path: str, headers: dict, raw_body: bytes | None) -> None:
        if not raw_path.startswith(API_PREFIX + "/"):
            self.violations.append(f"{method} {raw_path}: not under {API_PREFIX}")
            raise Reject(404, f"{raw_path} is not an API path")
        try:
            _contract().validate(method, raw_path, headers, raw_body)
        except ContractViolation as exc:
            self.violations.append(str(exc))
            raise Reject(404 if "Path not found" in str(exc) else 400, str(exc), "invalid_input") from None

    def _violation(self, message: str, field: str) -> Reject:
        """A request the spec allows but the real API refuses: recorded like a contract violation."""
        self.violations.append(message)
        return Reject(400, message, "invalid_input", {field: message})

    def _injected_failure(self, method: str, path: str) -> None:
        for failure in self._failures:
            if failure["method"] in (None, method) and path.startswith(failure["path"] or ""):
                failure["times"] -= 1
                if failure["times"] <= 0:
                    self._failures.remove(failure)
                raise Reject(failure["status"], "injected failure", headers=failure["headers"])

    def _check_response(self, method: str, path: str, status: int, answer: Any) -> None:
        try:
            result = _response_spec().unmarshal_response(
                MockRequest(_contract().host_url, method, path), MockResponse(json.dumps(answer).encode(), status))
        except Exception as exc:  # a broken spec lookup is a problem of the fake as well
            self.response_problems.append(f"{method} {path} {status}: {exc}")
            return
        for error in result.errors:
            self.response_problems.append(f"{method} {path} {status}: {error} {getattr(error, '__cause__', '')}")

    # -- routes ------------------------------------------------------------------------------
    ROUTES = [
        ("GET", r"/storage_boxes", "list_boxes"),
        ("GET", r"/storage_boxes/actions/(\d+)", "get_action"),
        ("GET", r"/storage_boxes/(\d+)", "get_box"),
        ("PUT", r"/storage_boxes/(\d+)", "replace_box"),
        ("POST", r"/storage_boxes/(\d+)/actions/(\w+)", "box_action"),
        ("GET", r"/storage_boxes/(\d+)/subaccounts", "list_subaccounts"),
        ("POST", r"/storage_boxes/(\d+)/subaccounts", "create_subaccount"),
        ("GET", r"/storage_boxes/(\d+)/subaccounts/(\d+)", "get_subaccount"),
        ("PUT", r"/storage_boxes/(\d+)/subaccounts/(\d+)", "replace_subaccount"),
        ("DELETE", r"/storage_boxes/(\d+)/subaccounts/(\d+)", "delete_subaccount"),
        ("POST", r"/storage_boxes/(\d+)/subaccounts/(\d+)/actions/(\w+)", "subaccount_action"),
    ]

    def _route(self, method: str, path: str, query: dict, body: Any) -> tuple[int, Any]:
        for route_method, pattern, name in self.ROUTES:
            match = re.fullmatch(pattern, path)
            if match and route_method == method:
                args = [int(a) if a.isdigit() else a for a in match.groups()]
                return getattr(self, name)(*args, query=query, body=body)
        raise Reject(404, f"{method} {path} is valid but not implemented by the fake")

    def _box(self, box_id: int) -> dict:
        if box_id not in self.boxes:
            raise Reject(404, f"Storage Box with ID {box_id} not found")
        return self.boxes[box_id]

    def _sub(self, box_id: int, sub_id: int) -> dict:
        self._box(box_id)
        sub = self.subaccounts.get(sub_id)
        if not sub or sub["storage_box"] != box_id:
            raise Reject(404, f"Storage Box Subaccount with ID {sub_id} not found")
        return sub

    def list_boxes(self, query: dict, body: Any) -> tuple[int, Any]:
        boxes = [b for b in sorted(self.boxes.values(), key=lambda b: b["id"])
                 if query.get("name") in (None, b["name"]) and _labels_match(b["labels"], query.get("label_selector"))]
        page, per_page = int(query.get("page", 1)), int(query.get("per_page", 25))
        last_page = max(1, -(-len(boxes) // per_page))
        pagination = {"page": page, "per_page": per_page, "previous_page": page - 1 if page > 1 else None,
                      "next_page": page + 1 if page < last_page else None, "last_page": last_page,
                      "total_entries": len(boxes)}
        chunk = boxes[(page - 1) * per_page:page * per_page]
        return 200, {"storage_boxes": copy.deepcopy(chunk), "meta": {"pagination": pagination}}

    def get_box(self, box_id: int, query: dict, body: Any) -> tuple[int, Any]:
        return 200, {"storage_box": copy.deepcopy(self._box(box_id))}

    def replace_box(self, box_id: int, query: dict, body: Any) -> tuple[int, Any]:
        box = self._box(box_id)
        box.update({k: body[k] for k in ("name", "labels") if k in body})
        return 200, {"storage_box": copy.deepcopy(box)}

    def box_action(self, box_id: int, command: str, query: dict, body: Any) -> tuple[int, Any]:
        box, body = self._box(box_id), body or {}
        if command == "change_protection":
            def change() -> None:
                box["protection"].update(body)
        elif command == "update_access_settings":
            # The spec reuses the sub-account schema here (it lists `readonly`, not `zfs_enabled`); the real
            # API takes the box's own flags.
            for key, value in body.items():
                if key not in BOX_ACCESS or not isinstance(value, bool):
                    raise self._violation(f"POST update_access_settings: {key}={value!r} is no box access flag", key)

            def change() -> None:
                box["access_settings"].update(body)
        elif command == "enable_snapshot_plan":
            def change() -> None:
                box["snapshot_plan"] = {k: body.get(k) for k in
                                        ("max_snapshots", "minute", "hour", "day_of_week", "day_of_month")}
        elif command == "disable_snapshot_plan":
            def change() -> None:
                box["snapshot_plan"] = None
        elif command == "reset_password":
            self._check_password(body.get("password", ""))

            def change() -> None:
                self.passwords[("storage_box", box_id)] = body["password"]
        else:
            raise Reject(404, f"box action {command} is not implemented by the fake")
        return 201, {"action": self._start_action(command, [(box_id, "storage_box")], change)}

    def list_subaccounts(self, box_id: int, query: dict, body: Any) -> tuple[int, Any]:
        self._box(box_id)
        subs = [s for s in sorted(self.subaccounts.values(), key=lambda s: s["id"])
                if s["storage_box"] == box_id and query.get("name") in (None, s["name"])
                and query.get("username") in (None, s["username"])]
        return 200, {"subaccounts": copy.deepcopy(subs)}

    def create_subaccount(self, box_id: int, query: dict, body: Any) -> tuple[int, Any]:
        self._box(box_id)
        self._check_home_directory(body["home_directory"])
        self._check_password(body["password"])
        if body.get("name") and any(s["storage_box"] == box_id and s["name"] == body["name"]
                                    for s in self.subaccounts.values()):
            raise Reject(409, f"a subaccount named {body['name']!r} already exists", "uniqueness_error")
        sub_id = next(self._ids)

        def change() -> None:
            self.add_subaccount(box_id, dict(body, id=sub_id))
        action = self._start_action("create_subaccount", [(box_id, "storage_box"), (sub_id, "storage_box_subaccount")],
                                    change)
        return 201, {"subaccount": {"id": sub_id, "storage_box": box_id}, "action": action}

    def get_subaccount(self, box_id: int, sub_id: int, query: dict, body: Any) -> tuple[int, Any]:
        return 200, {"subaccount": copy.deepcopy(self._sub(box_id, sub_id))}

    def replace_subaccount(self, box_id: int, sub_id: int, query: dict, body: Any) -> tuple[int, Any]:
        sub = self._sub(box_id, sub_id)
        sub.update({k: body[k] for k in ("name", "description", "labels") if k in body})
        return 200, {"subaccount": copy.deepcopy(sub)}

    def delete_subaccount(self, box_id: int, sub_id: int, query: dict, body: Any) -> tuple[int, Any]:
        self._sub(box_id, sub_id)

        def change() -> None:
            self.subaccounts.pop(sub_id, None)
        return 201, {"action": self._start_action("delete_subaccount", [(sub_id, "storage_box_subaccount")], change)}

    def subaccount_action(self, box_id: int, sub_id: int, command: str, query: dict, body: Any) -> tuple[int, Any]:
        sub, body = self._sub(box_id, sub_id), body or {}
        if command == "change_home_directory":
            self._check_home_directory(body["home_directory"])

            def change() -> None:
                sub["home_directory"] = body["home_directory"]
        elif command == "update_access_settings":
            def change() -> None:
                sub["access_settings"].update(body)
        elif command == "reset_subaccount_password":
            self._check_password(body["password"])

            def change() -> None:
                self.passwords[("subaccount", sub_id)] = body["password"]
        else:
            raise Reject(404, f"subaccount action {command} is not implemented by the fake")
        return 201, {"action": self._start_action(command, [(sub_id, "storage_box_subaccount")], change)}

    # -- actions -----------------------------------------------------------------------------
    def _start_action(self, command: str, resources: list[tuple[int, str]], change) -> dict:
        action = {"id": next(self._ids), "command": command, "status": "running", "progress": 0,
                  "started": _now(), "finished": None, "error": None,
                  "resources": [{"id": rid, "type": rtype} for rid, rtype in resources]}
        self.actions[action["id"]] = action
        self._pending[action["id"]] = [self.action_polls, change]
        if self.action_polls <= 0:
            self._finish(action)
        return copy.deepcopy(action)

    def _finish(self, action: dict) -> None:
        _, change = self._pending.pop(action["id"])
        action.update(progress=100, finished=_now())
        if self._action_errors:
            code, message = self._action_errors.pop(0)
            action.update(status="error", error={"code": code, "message": message})
        else:
            change()
            action["status"] = "success"

    def get_action(self, action_id: int, query: dict, body: Any) -> tuple[int, Any]:
        action = self.actions.get(action_id)
        if action is None:
            raise Reject(404, f"action with ID {action_id} not found")
        pending = self._pending.get(action_id)
        if pending:
            pending[0] -= 1
            if pending[0] <= 0:
                self._finish(action)
        return 200, {"action": copy.deepcopy(action)}

    # -- rules the spec does not express -----------------------------------------------------
    def _check_password(self, password: str) -> None:
        classes = (str.isupper, str.islower, str.isdigit, PASSWORD_SPECIALS.__contains__)
        if not (12 <= len(password) <= 128 and all(any(test(c) for c in password) for test in classes)):
            raise self._violation("password does not meet the password policy", "password")

    def _check_home_directory(self, path: str) -> None:
        if path.startswith("/"):
            raise self._violation("home_directory must not start with '/'", "home_directory")


def _labels_match(labels: dict, selector: str | None) -> bool:
    """A small subset of label selectors: ``k=v`` and ``k`` terms joined by commas."""
    for term in filter(None, (selector or "").split(",")):
        key, _, value = term.partition("=")
        if key not in labels or (value and labels[key] != value):
            return False
    return True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--seed", type=Path, help="JSON file with storage_boxes (and optionally token)")
    parser.add_argument("--token", help=f"bearer token to accept (default: seed token or {DEFAULT_TOKEN})")
    parser.add_argument("--action-polls", type=int, help="polls before an action finishes (default 1)")
    args = parser.parse_args(argv)
    seed = json.loads(args.seed.read_text()) if args.seed else {}
    fake = HetznerFake(seed, token=args.token, port=args.port, host=args.host, action_polls=args.action_polls).start()
    print(f"Hetzner fake listening on {fake.url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        if fake.violations:
            print("contract violations:\n  " + "\n  ".join(fake.violations), file=sys.stderr)
        fake.stop()


if __name__ == "__main__":
    main()
