"""A fake of the Hetzner Storage Box API (``/v1/storage_boxes``) for unit, integration and Molecule tests.

In pytest::

    with HetznerFake(seed) as fake:          # listens on 127.0.0.1, random port
        env = {"HETZNER_API_URL": fake.url, "HETZNER_API_TOKEN": fake.token}
        fake.fail_next(429, path="/v1/storage_boxes")   # one-shot error, then normal service
        ...
        assert fake.violations == [] and fake.response_problems == []

From a shell (Molecule ``prepare``; the ``/_fake/`` control paths of :mod:`base` steer it then)::

    python tests/fakes/hetzner_api.py --port 8080 --seed seed.json [--token-file F] [--action-polls 2]

(``--token-file``, or the file named by ``$FAKE_API_TOKEN_FILE``, keeps the token out of ``ps``; ``--token T``
is for tests.)

Server, request log, contract checks of requests and answers and injected failures come from
:class:`base.FakeApi`; a request the real API would refuse is answered in Hetzner's error shape
(400 ``invalid_input``, or 404 for an unknown path) and recorded in ``violations``. A few rules the spec cannot
express are checked too (password policy, a home directory without leading ``/``, only the box's own access
flags on a box). Changes run as actions that are ``running`` when created and finish after
``action_polls`` polls of ``GET /storage_boxes/actions/{id}``; only then is the change applied.

Seed (JSON or dict): ``{"token": "...", "action_polls": 1, "storage_boxes": [{"id": 1, "name": "photos",
"access_settings": {...}, "location": "fsn1", "storage_box_type": "bx11", "subaccounts": [{"name": "immich",
"home_directory": "immich"}]}]}``; every field left out gets a plausible default. ``POST /storage_boxes`` orders a
box (``initializing`` until its action finishes; the password and SSH keys are kept in ``passwords`` and
``ssh_keys``) and ``DELETE /storage_boxes/{id}`` deletes one unless it is protected.
"""

from __future__ import annotations

import copy
import itertools
import json
from pathlib import Path
from typing import Any

if __package__:  # imported as ansible_collections.selfhost.immich.tests.fakes
    from .base import FakeApi, Fault, argument_parser, serve, token_of, utc_now
    from .contract import ContractViolation
else:  # run as a script (Molecule's prepare and the lab start fakes so)
    from base import FakeApi, Fault, argument_parser, serve, token_of, utc_now
    from contract import ContractViolation

SPEC_FILE = "hetzner-storage-boxes.openapi.json"
API_PREFIX = "/v1"
DEFAULT_TOKEN = "fake-hetzner-token"
BOX_ACCESS = ("reachable_externally", "samba_enabled", "ssh_enabled", "webdav_enabled", "zfs_enabled")
SUB_ACCESS = ("reachable_externally", "readonly", "samba_enabled", "ssh_enabled", "webdav_enabled")
PASSWORD_SPECIALS = set("^°!§$%/()=?+#-.,;:~*@{}_&")
#: The locations and box types the fake knows (the real API refuses other names).
LOCATIONS = {name: {"id": number, "name": name, "description": f"{city} DC Park 1", "country": country, "city": city,
                    "latitude": latitude, "longitude": longitude, "network_zone": "eu-central"}
             for number, name, city, country, latitude, longitude in (
                 (1, "fsn1", "Falkenstein", "DE", 50.47612, 12.370071),
                 (2, "nbg1", "Nuremberg", "DE", 49.452102, 11.076665),
                 (3, "hel1", "Helsinki", "FI", 60.169855, 24.938379))}
BOX_TYPES = {name: {"id": number, "name": name, "description": name.upper(), "size": terabytes * 1099511627776,
                    "snapshot_limit": 10, "automatic_snapshot_limit": 10, "subaccounts_limit": 100,
                    "prices": [], "deprecation": None}
             for number, name, terabytes in ((1, "bx11", 1), (2, "bx21", 5), (3, "bx31", 10), (4, "bx41", 20))}
ERROR_CODES = {401: "unauthorized", 404: "not_found", 409: "conflict", 423: "locked",
               429: "rate_limit_exceeded", 500: "server_error", 501: "not_implemented", 502: "bad_gateway",
               503: "unavailable", 504: "timeout"}


class Reject(Fault):
    """Answer with a Hetzner error body."""

    def __init__(self, status: int, message: str, code: str | None = None, fields: dict | None = None,
                 headers: dict | None = None) -> None:
        super().__init__(status, message, headers)
        self.code = code or ERROR_CODES.get(status, "invalid_input")
        self.fields = fields

    def body(self) -> dict:
        details = {"fields": [{"name": k, "messages": [v]} for k, v in self.fields.items()]} if self.fields else None
        return {"error": {"code": self.code, "message": self.message, "details": details}}


class HetznerFake(FakeApi):
    """In-memory Storage Boxes behind a threaded HTTP server. Thread-safe; read the attributes freely."""

    spec_file = SPEC_FILE
    prefix = API_PREFIX
    spec_paths = ("/storage_box",)  # the Storage Box part of the Hetzner API spec (or all of the subset file)
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
            self.passwords: dict[tuple[str, int], str] = {}
            self.boxes: dict[int, dict] = {}
            self.subaccounts: dict[int, dict] = {}
            self.actions: dict[int, dict] = {}
            self._pending: dict[int, list] = {}      # action id -> [polls left, change to apply]
            self._action_errors: list[tuple[str, str]] = []
            self._on_error: dict[int, Any] = {}     # action id -> what undoes its start when it fails
            self.ssh_keys: dict[int, list[str]] = {}  # box id -> the public keys given at its order
            self._ids = itertools.count(9001)
            for box in copy.deepcopy(self.seed.get("storage_boxes", [])):
                self.add_box(box)

    def fail_next_action(self, code: str = "action_failed", message: str = "the action failed") -> None:
        """The next action ends with status ``error`` (and changes nothing)."""
        self._action_errors.append((code, message))

    # -- state -------------------------------------------------------------------------------
    def add_box(self, seed: dict) -> dict:
        box_id = seed.get("id") or next(self._ids)
        username = seed.get("username") or f"u{100000 + box_id}"
        box = {
            "id": box_id, "name": seed.get("name", f"box-{box_id}"), "username": username, "status": "active",
            "server": f"{username}.your-storagebox.de", "system": f"{seed.get('location', 'fsn1').upper()}-BX123",
            "created": utc_now(),
            "labels": seed.get("labels", {}), "protection": {"delete": False},
            "location": copy.deepcopy(LOCATIONS[seed.get("location", "fsn1")]),
            "storage_box_type": copy.deepcopy(BOX_TYPES[seed.get("storage_box_type", "bx11")]),
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
            "labels": seed.get("labels", {}), "created": utc_now(),
            "access_settings": dict(dict.fromkeys(SUB_ACCESS, False), **seed.get("access_settings", {})),
        }
        self.subaccounts[sub["id"]] = sub
        if seed.get("password"):
            self.passwords[("subaccount", sub["id"])] = seed["password"]
        return sub

    def contract_fault(self, violation: ContractViolation) -> Reject:
        return Reject(404 if violation.unknown_path else 400, str(violation), "invalid_input")

    def _violation(self, message: str, field: str) -> Reject:
        """A request the spec allows but the real API refuses: recorded like a contract violation."""
        self.violations.append(message)
        return Reject(400, message, "invalid_input", {field: message})

    # -- routes ------------------------------------------------------------------------------
    ROUTES = [
        ("GET", r"/storage_boxes", "list_boxes"),
        ("POST", r"/storage_boxes", "create_box"),
        ("GET", r"/storage_boxes/actions/(\d+)", "get_action"),
        ("GET", r"/storage_boxes/(\d+)", "get_box"),
        ("PUT", r"/storage_boxes/(\d+)", "replace_box"),
        ("DELETE", r"/storage_boxes/(\d+)", "delete_box"),
        ("POST", r"/storage_boxes/(\d+)/actions/(\w+)", "box_action"),
        ("GET", r"/storage_boxes/(\d+)/subaccounts", "list_subaccounts"),
        ("POST", r"/storage_boxes/(\d+)/subaccounts", "create_subaccount"),
        ("GET", r"/storage_boxes/(\d+)/subaccounts/(\d+)", "get_subaccount"),
        ("PUT", r"/storage_boxes/(\d+)/subaccounts/(\d+)", "replace_subaccount"),
        ("DELETE", r"/storage_boxes/(\d+)/subaccounts/(\d+)", "delete_subaccount"),
        ("POST", r"/storage_boxes/(\d+)/subaccounts/(\d+)/actions/(\w+)", "subaccount_action"),
    ]

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
        if page < 1 or not 1 <= per_page <= 50:  # the real API refuses these (spec text: per_page at most 50)
            field = "page" if page < 1 else "per_page"
            raise self._violation(f"GET /storage_boxes: {field}={query.get(field)} is out of range", field)
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

    def create_box(self, query: dict, body: Any) -> tuple[int, Any]:
        """An order: the box exists at once (``initializing``, no username or server yet) and becomes ``active``
        when its ``create`` action finishes; an action that fails takes the box away again."""
        self._check_password(body["password"])
        for field, known in (("location", LOCATIONS), ("storage_box_type", BOX_TYPES)):
            if body[field] not in known:  # the spec takes any string; the real API refuses an unknown name
                raise Reject(400, f"{field} {body[field]!r} not found", "invalid_input", {field: "not found"})
        if any(b["name"] == body["name"] for b in self.boxes.values()):
            raise Reject(409, f"a Storage Box named {body['name']!r} already exists", "uniqueness_error")
        box_id = next(self._ids)
        box = self.add_box({"id": box_id, "name": body["name"], "labels": body.get("labels", {}),
                            "access_settings": body.get("access_settings", {}), "status": "initializing",
                            "location": body["location"], "storage_box_type": body["storage_box_type"]})
        ready = {k: box[k] for k in ("username", "server", "system")}
        box.update(username=None, server=None, system=None)
        self.passwords[("storage_box", box_id)] = body["password"]
        self.ssh_keys[box_id] = list(body.get("ssh_keys", []))
        answer = copy.deepcopy(box)

        def change() -> None:
            box.update(ready, status="active")

        def undo() -> None:
            self.boxes.pop(box_id, None)
        action = self._start_action("create", [(box_id, "storage_box")], change)
        if action["status"] == "running":
            self._on_error[action["id"]] = undo
        elif action["status"] == "error":
            undo()
        return 201, {"storage_box": answer, "action": action}

    def delete_box(self, box_id: int, query: dict, body: Any) -> tuple[int, Any]:
        box = self._box(box_id)
        if box["protection"]["delete"]:
            raise Reject(403, "Storage Box is protected against deletion", "protected")

        def change() -> None:
            self.boxes.pop(box_id, None)
            for sub_id in [s for s, sub in self.subaccounts.items() if sub["storage_box"] == box_id]:
                del self.subaccounts[sub_id]
        return 201, {"action": self._start_action("delete", [(box_id, "storage_box")], change)}

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
            raise self.not_modelled("POST", f"/storage_boxes/{box_id}/actions/{command}")
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
            raise self.not_modelled("POST", f"/storage_boxes/{box_id}/subaccounts/{sub_id}/actions/{command}")
        return 201, {"action": self._start_action(command, [(sub_id, "storage_box_subaccount")], change)}

    # -- actions -----------------------------------------------------------------------------
    def _finish(self, action: dict) -> None:
        change = self._pending.pop(action["id"])[1]
        action.update(progress=100, finished=utc_now())
        if self._action_errors:
            code, message = self._action_errors.pop(0)
            action.update(status="error", error={"code": code, "message": message})
            self._on_error.pop(action["id"], lambda: None)()
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
        key, _equals, value = term.partition("=")
        if key not in labels or (value and labels[key] != value):
            return False
    return True


def main(argv: list[str] | None = None) -> None:
    parser = argument_parser(__doc__.splitlines()[0])
    parser.add_argument("--seed", type=Path, help=f"JSON file with storage_boxes (and a token, else {DEFAULT_TOKEN})")
    parser.add_argument("--action-polls", type=int, help="polls before an action finishes (default 1)")
    args = parser.parse_args(argv)
    seed = json.loads(args.seed.read_text()) if args.seed else {}
    serve(HetznerFake(seed, token=token_of(args), port=args.port, host=args.host, action_polls=args.action_polls),
          "Hetzner fake listening on {url}")


if __name__ == "__main__":
    main()
