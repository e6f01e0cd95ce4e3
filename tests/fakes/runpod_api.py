"""A fake RunPod REST API v2: templates, serverless endpoints and the GPU catalog, in memory.

Server, request log, contract checks of requests and answers and injected failures come from
:class:`base.FakeApi`: a request the vendor's spec (contracts/runpod-rest-v2.openapi.json) refuses is answered
with an RFC 9457 400 and kept in ``violations``, an answer off the spec lands in ``response_problems``, so a
test can assert there were none.

From pytest::

    with FakeRunpod() as api:          # 127.0.0.1, random port
        env = {"RUNPOD_API_URL": api.url, "RUNPOD_API_KEY": api.api_key}
        api.fail_next(429)             # one-shot error, then normal service
        ...
        assert api.violations == [] and api.response_problems == [] and not api.writes

As a process (e.g. a Molecule prepare step)::

    python tests/fakes/runpod_api.py --port 8089 --token-file key   # or $FAKE_API_TOKEN_FILE; --api-key K in tests

then ``GET /_fake/log``, ``GET /_fake/violations``, ``POST /_fake/fail_next {"status": 503}`` and
``POST /_fake/reset`` inspect and steer it (those paths are the fake's own, outside the contract; see
:mod:`base`).
"""

from __future__ import annotations

import copy
import re
import secrets
import string
from urllib.parse import unquote

if __package__:  # imported as ansible_collections.selfhost.immich.tests.fakes
    from .base import FakeApi, Fault, argument_parser, serve, token_of, utc_now
    from .contract import ContractViolation
else:  # run as a script (Molecule's prepare and the lab start fakes so)
    from base import FakeApi, Fault, argument_parser, serve, token_of, utc_now
    from contract import ContractViolation

DEFAULT_API_KEY = "rpa_fake_0123456789"

#: A small GPU catalog: (type id, display name, serverless pool or None, VRAM GB).
DEFAULT_GPUS = [
    ("NVIDIA RTX A4000", "RTX A4000", "AMPERE_16", 16),
    ("NVIDIA RTX A5000", "RTX A5000", "AMPERE_24", 24),
    ("NVIDIA GeForce RTX 3090", "RTX 3090", "AMPERE_24", 24),
    ("NVIDIA L4", "L4", "ADA_24", 24),
    ("NVIDIA GeForce RTX 4090", "RTX 4090", "ADA_24", 24),
    ("NVIDIA RTX A6000", "RTX A6000", "AMPERE_48", 48),
    ("NVIDIA A40", "A40", "AMPERE_48", 48),
    ("NVIDIA L40S", "L40S", "ADA_48_PRO", 48),
    ("NVIDIA L40", "L40", "ADA_48_PRO", 48),
    ("NVIDIA A100 80GB PCIe", "A100 PCIe", "AMPERE_80", 80),
    ("NVIDIA GeForce RTX 3070", "RTX 3070", None, 8),
]

CONTAINER_KEYS = ("image", "args", "disk", "ports", "env", "registry")


class Problem(Fault):
    """An RFC 9457 error answer."""

    TITLES = {400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 422: "Unprocessable Entity",
              429: "Too Many Requests", 501: "Not Implemented", 503: "Service Unavailable"}

    def __init__(self, status: int, detail: str, errors: list[str] | None = None, headers: dict | None = None) -> None:
        super().__init__(status, detail, headers)
        self.errors = errors

    def body(self) -> dict:
        body = {"title": self.TITLES.get(self.status, "Error"), "status": self.status, "detail": self.message}
        if self.errors:
            body["errors"] = self.errors
        return body


class FakeRunpod(FakeApi):
    """The fake API's state and server; thread-safe, one instance per test or process."""

    spec_file = "runpod-rest-v2.openapi.json"
    prefix = "/v2"
    fault = Problem
    unauthorized = "invalid api key"

    def __init__(self, api_key: str = DEFAULT_API_KEY, host: str = "127.0.0.1", port: int = 0,
                 gpus: list[tuple] | None = None) -> None:
        self.gpus = gpu_catalog(gpus or DEFAULT_GPUS)
        super().__init__(api_key, host=host, port=port)

    @property
    def api_key(self) -> str:
        return self.token

    def reset(self) -> None:
        """No templates or endpoints, an empty log."""
        with self.lock:
            super().reset()
            self.templates: dict[str, dict] = {}
            self.endpoints: dict[str, dict] = {}
            self.bound_templates: dict[str, str] = {}  # endpoint id -> id of the template it was created from

    def contract_fault(self, violation: ContractViolation) -> Problem:
        return Problem(400, "request violates the RunPod v2 contract", [str(violation)])

    def content_type(self, status: int) -> str:
        return "application/problem+json" if status >= 400 else "application/json"

    def route(self, method: str, path: str, query: dict, body: dict | None) -> tuple[int, object]:
        match = re.fullmatch(r"/(templates|serverless)(?:/([^/]+))?", path)
        if path == "/catalog/gpus" and method == "GET":
            return 200, {"gpus": copy.deepcopy(self.gpus)}
        if not match:
            raise self.not_modelled(method, path)
        kind, item_id = match.group(1), unquote(match.group(2) or "")
        store = self.templates if kind == "templates" else self.endpoints
        list_key = "templates" if kind == "templates" else "endpoints"
        if not item_id:
            if method == "GET":
                return 200, {list_key: [copy.deepcopy(v) for v in store.values()]}
            create = self._create_template if kind == "templates" else self._create_endpoint
            item = create(body)
            store[item["id"]] = item
            return 201, copy.deepcopy(item)
        if item_id not in store:
            raise Problem(404, f"{list_key[:-1]} {item_id} not found")
        if method == "GET":
            return 200, copy.deepcopy(store[item_id])
        if method == "DELETE":
            users = sorted(e for e, t in self.bound_templates.items() if t == item_id)
            if kind == "templates" and users:  # spec: "Template is in use by a pod or serverless endpoint"
                raise Problem(400, f"template {item_id} is in use by endpoint(s) {', '.join(users)}")
            del store[item_id]
            self.bound_templates.pop(item_id, None)
            return 204, None
        update = self._update_template if kind == "templates" else self._update_endpoint
        update(store[item_id], body)
        return 200, copy.deepcopy(store[item_id])

    # -- templates ---------------------------------------------------------------------------
    def _create_template(self, body: dict) -> dict:
        self._unique_template_name(body["name"])
        template = {"id": _new_id(), "name": body["name"], "image": body["image"], "args": "", "disk": 20,
                    "mounts": {}, "ports": [], "env": {}, "registry": None, "serverless": False, "public": False,
                    "category": "NVIDIA", "startSsh": True, "startJupyter": True, "allowedCudaVersions": []}
        template.update(copy.deepcopy(body))
        return template

    def _update_template(self, template: dict, body: dict) -> None:
        if body.get("name", template["name"]) != template["name"]:
            self._unique_template_name(body["name"])
        template.update(copy.deepcopy(body))

    def _unique_template_name(self, name: str) -> None:
        if any(t["name"] == name for t in self.templates.values()):
            raise Problem(400, f"a template named {name!r} already exists")

    # -- endpoints ---------------------------------------------------------------------------
    def _create_endpoint(self, body: dict) -> dict:
        if "cpu" in body or "gpu" not in body:
            raise Problem(400, "this fake serves GPU endpoints only: send gpu")
        endpoint = {"image": None, "args": "", "disk": 20, "ports": [], "env": {}, "registry": None}
        template = self._template_for(body.get("templateId"))
        if template:
            endpoint.update({k: copy.deepcopy(template[k]) for k in CONTAINER_KEYS})
        self._apply_container(endpoint, body)
        gpu = {"count": 1, "allowedCudaVersions": [], "minCudaVersion": None}
        if template and "minCudaVersion" not in body["gpu"]:
            gpu["allowedCudaVersions"] = list(template["allowedCudaVersions"])
        gpu.update(copy.deepcopy(body["gpu"]))
        endpoint_id = _new_id()
        if template:
            self.bound_templates[endpoint_id] = template["id"]
        endpoint.update(
            id=endpoint_id, name=body["name"], type=body["type"], requestUrls=_request_urls(endpoint_id, body["type"]),
            gpu=gpu, workers=dict({"min": 0, "max": 3, "idleTimeout": 10}, **body.get("workers", {})),
            scaling=body["scaling"], dataCenterIds=body.get("dataCenterIds", []),
            networkVolumes=body.get("networkVolumes", []), timeout=body.get("timeout", 300000),
            flashboot=body.get("flashboot", "OFF"), createdAt=utc_now(),
        )
        self._check_endpoint(endpoint, body)
        return endpoint

    def _update_endpoint(self, endpoint: dict, body: dict) -> None:
        updated = copy.deepcopy(endpoint)
        template = self._template_for(body.get("templateId"))
        if template:
            self.bound_templates[endpoint["id"]] = template["id"]
        if template:
            updated.update({k: copy.deepcopy(template[k]) for k in CONTAINER_KEYS})
        self._apply_container(updated, body, merge_env=bool(template))
        gpu = body.get("gpu", {})
        if "pools" in gpu:  # pools and exclusions are one selection: pools alone clears the exclusions
            updated["gpu"].pop("excludedTypes", None)
        updated["gpu"].update(copy.deepcopy(gpu))
        if updated["gpu"].get("minCudaVersion") == "":
            updated["gpu"]["minCudaVersion"] = None
        updated["workers"].update(body.get("workers", {}))
        for key in ("name", "scaling", "dataCenterIds", "networkVolumes", "timeout", "flashboot"):
            if key in body:
                updated[key] = copy.deepcopy(body[key])
        self._check_endpoint(updated, body)
        endpoint.clear()
        endpoint.update(updated)

    def _apply_container(self, endpoint: dict, body: dict, merge_env: bool = True) -> None:
        for key in CONTAINER_KEYS:
            if key == "env" and "env" in body:
                endpoint["env"] = dict(endpoint["env"] if merge_env else {}, **body["env"])
            elif key in body:
                endpoint[key] = copy.deepcopy(body[key])

    def _template_for(self, template_id: str | None) -> dict | None:
        if not template_id:
            return None
        template = self.templates.get(template_id)
        if template is None:
            raise Problem(404, f"template {template_id} not found")
        if not template["serverless"]:
            raise Problem(422, f"template {template_id} is not a serverless template")
        return template

    def _check_endpoint(self, endpoint: dict, body: dict) -> None:
        """What the real API refuses beyond the schema (400 in the spec's descriptions)."""
        gpu, workers, scaling = endpoint["gpu"], endpoint["workers"], endpoint["scaling"]
        pools = {g["pool"] for g in self.gpus if g["pool"]}
        unknown = sorted(set(gpu["pools"]) - pools)
        if unknown:
            raise Problem(400, f"unknown GPU pool(s): {', '.join(unknown)}")
        types = {g["id"] for g in self.gpus if g["pool"] in gpu["pools"]}
        stray = [t for t in gpu.get("excludedTypes", []) if t.strip() not in types]
        if stray:
            raise Problem(400, f"excludedTypes not in the selected pools: {', '.join(stray)}")
        if gpu["allowedCudaVersions"] and gpu["minCudaVersion"]:
            raise Problem(400, "allowedCudaVersions and minCudaVersion are mutually exclusive")
        if workers["min"] > workers["max"]:
            raise Problem(400, "workers.min must not exceed workers.max")
        if scaling["type"] == "QUEUE_DELAY" and endpoint["type"] == "LOAD_BALANCER":
            raise Problem(400, "QUEUE_DELAY scaling is for queue-based endpoints only")
        if endpoint["type"] == "QUEUE" and scaling["type"] == "REQUEST_COUNT":
            if "idleTimeout" in body.get("workers", {}):
                raise Problem(400, "idleTimeout does not apply to a queue-based endpoint scaling on requestCount")
            workers.pop("idleTimeout", None)
        if not endpoint["image"]:
            raise Problem(400, "image is required unless templateId is set")


def gpu_catalog(gpus: tuple[tuple, ...] | list[tuple] = tuple(DEFAULT_GPUS)) -> list[dict]:
    """GpuType objects (spec: ListGpuTypesResponse.gpus) for (id, name, pool, memory) tuples."""
    return [
        {"id": gid, "name": name, "pool": pool, "manufacturer": "NVIDIA", "memory": memory,
         "secure": True, "community": True, "price": {"secure": 0.5, "community": 0.4},
         "maxCount": {"secure": 8, "community": 4}}
        for gid, name, pool, memory in gpus
    ]


def _new_id() -> str:
    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _position in range(8))


def _request_urls(endpoint_id: str, endpoint_type: str) -> dict:
    if endpoint_type == "LOAD_BALANCER":
        base = f"https://{endpoint_id}.api.runpod.ai"
        return {"base": base, "health": f"{base}/ping"}
    api = f"https://api.runpod.ai/v2/{endpoint_id}"
    return {"run": f"{api}/run", "runSync": f"{api}/runsync", "status": f"{api}/status/{{job_id}}",
            "stream": f"{api}/stream/{{job_id}}", "cancel": f"{api}/cancel/{{job_id}}",
            "retry": f"{api}/retry/{{job_id}}", "purgeQueue": f"{api}/purge-queue", "health": f"{api}/health"}


def main(argv: list[str] | None = None) -> None:
    parser = argument_parser(__doc__.split("\n\n", maxsplit=1)[0], port=8089, token_option="--api-key")
    args = parser.parse_args(argv)
    api_key = token_of(args) or DEFAULT_API_KEY
    # A key given to the fake is a secret of whoever runs it (the lab's): never printed.
    shown = f"the test key {DEFAULT_API_KEY}" if api_key == DEFAULT_API_KEY else "as given, not shown"
    serve(FakeRunpod(api_key=api_key, host=args.host, port=args.port), f"fake RunPod API v2 at {{url}} (key: {shown})")


if __name__ == "__main__":
    main()
