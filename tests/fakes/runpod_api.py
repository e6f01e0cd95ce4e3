"""A fake RunPod REST API v2: templates, serverless endpoints and the GPU catalog, in memory.

Every request is first checked against the vendor's spec (contracts/runpod-rest-v2.openapi.json) by
:class:`contract.Contract`; a request the real API would refuse is answered with an RFC 9457 400 and kept
in ``violations`` so a test can assert there were none. Answers follow the spec's response shapes.

From pytest::

    with FakeRunpod() as api:          # 127.0.0.1, random port
        env = {"RUNPOD_API_URL": api.url, "RUNPOD_API_KEY": api.api_key}
        api.fail_next(429)             # one-shot error, then normal service
        ...
        assert api.violations == [] and not api.writes

As a process (e.g. a Molecule prepare step)::

    python tests/fakes/runpod_api.py --port 8089 --api-key test-key

then ``GET /_fake/log``, ``GET /_fake/violations``, ``POST /_fake/fail_next {"status": 503}`` and
``POST /_fake/reset`` inspect and steer it (those paths are the fake's own, outside the contract).
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import secrets
import string
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

from contract import Contract, ContractViolation

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


class Problem(Exception):
    """An RFC 9457 error answer."""

    TITLES = {400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 422: "Unprocessable Entity",
              429: "Too Many Requests", 503: "Service Unavailable"}

    def __init__(self, status: int, detail: str, errors: list[str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.errors = status, detail, errors
        self.retry_after = "0"

    def body(self) -> dict:
        body = {"title": self.TITLES.get(self.status, "Error"), "status": self.status, "detail": self.detail}
        if self.errors:
            body["errors"] = self.errors
        return body


class FakeRunpod:
    """The fake API's state and server; thread-safe, one instance per test or process."""

    def __init__(self, api_key: str = DEFAULT_API_KEY, host: str = "127.0.0.1", port: int = 0,
                 gpus: list[tuple] | None = None) -> None:
        self.api_key = api_key
        self.contract = Contract("runpod-rest-v2.openapi.json")
        self.gpus = gpu_catalog(gpus or DEFAULT_GPUS)
        self.lock = threading.RLock()
        self.server = ThreadingHTTPServer((host, port), _Handler)
        self.server.fake = self
        self.thread: threading.Thread | None = None
        self.reset()

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/v2"

    def start(self) -> FakeRunpod:
        self.thread = threading.Thread(target=self.server.serve_forever, name="fake-runpod", daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> FakeRunpod:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- what tests steer and inspect --------------------------------------------------------
    def reset(self) -> None:
        with self.lock:
            self.templates: dict[str, dict] = {}
            self.endpoints: dict[str, dict] = {}
            self.log: list[dict] = []
            self.violations: list[str] = []
            self.failures: list[dict] = []

    def fail_next(self, status: int = 429, times: int = 1, method: str | None = None, path: str | None = None,
                  retry_after: str = "0") -> None:
        """Answer the next ``times`` matching requests with ``status`` (429/5xx), then serve normally."""
        with self.lock:
            self.failures.append(dict(status=status, times=times, method=method, path=path,
                                      retry_after=retry_after))

    @property
    def writes(self) -> list[dict]:
        return [entry for entry in self.log if entry["method"] != "GET"]

    def clear_log(self) -> None:
        with self.lock:
            self.log.clear()

    # -- request handling --------------------------------------------------------------------
    def handle(self, method: str, raw_path: str, headers: dict[str, str],
               raw_body: bytes) -> tuple[int, object, dict[str, str]]:
        """Answer one request: (status, JSON body or None, extra headers)."""
        path = urlsplit(raw_path).path
        extra_headers = {}
        with self.lock:
            entry = {"method": method, "path": path, "body": None, "status": None}
            self.log.append(entry)
            try:
                body = json.loads(raw_body) if raw_body else None
                entry["body"] = body
                try:
                    self.contract.validate(method, raw_path, headers, raw_body)
                except ContractViolation as exc:
                    self.violations.append(str(exc))
                    raise Problem(400, "request violates the RunPod v2 contract", [str(exc)]) from None
                self._injected_failure(method, path)
                if headers.get("Authorization") != f"Bearer {self.api_key}":
                    raise Problem(401, "invalid api key")
                status, answer = self._route(method, path, body)
            except Problem as problem:
                status, answer = problem.status, problem.body()
                if problem.status in (429, 503):
                    extra_headers["Retry-After"] = problem.retry_after
            except ValueError as exc:
                status, answer = 400, Problem(400, f"invalid JSON: {exc}").body()
            entry["status"] = status
            return status, answer, extra_headers

    def _injected_failure(self, method: str, path: str) -> None:
        for failure in self.failures:
            if failure["method"] in (None, method) and (failure["path"] is None or path.startswith(failure["path"])):
                failure["times"] -= 1
                if failure["times"] <= 0:
                    self.failures.remove(failure)
                problem = Problem(failure["status"], "injected failure")
                problem.retry_after = str(failure["retry_after"])
                raise problem

    def _route(self, method: str, path: str, body: dict | None) -> tuple[int, object]:
        match = re.fullmatch(r"/v2/(templates|serverless)(?:/([^/]+))?", path)
        if path == "/v2/catalog/gpus" and method == "GET":
            return 200, {"gpus": copy.deepcopy(self.gpus)}
        if not match:
            raise Problem(404, f"{method} {path} is not served by this fake")
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
            del store[item_id]
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
        endpoint.update(
            id=endpoint_id, name=body["name"], type=body["type"], requestUrls=_request_urls(endpoint_id, body["type"]),
            gpu=gpu, workers=dict({"min": 0, "max": 3, "idleTimeout": 10}, **body.get("workers", {})),
            scaling=body["scaling"], dataCenterIds=body.get("dataCenterIds", []),
            networkVolumes=body.get("networkVolumes", []), timeout=body.get("timeout", 300000),
            flashboot=body.get("flashboot", "OFF"), createdAt=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        )
        self._check_endpoint(endpoint, body)
        return endpoint

    def _update_endpoint(self, endpoint: dict, body: dict) -> None:
        updated = copy.deepcopy(endpoint)
        template = self._template_for(body.get("templateId"))
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


def gpu_catalog(gpus: list[tuple] = DEFAULT_GPUS) -> list[dict]:
    """GpuType objects (spec: ListGpuTypesResponse.gpus) for (id, name, pool, memory) tuples."""
    return [
        {"id": gid, "name": name, "pool": pool, "manufacturer": "NVIDIA", "memory": memory,
         "secure": True, "community": True, "price": {"secure": 0.5, "community": 0.4},
         "maxCount": {"secure": 8, "community": 4}}
        for gid, name, pool, memory in gpus
    ]


def _new_id() -> str:
    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))


def _request_urls(endpoint_id: str, endpoint_type: str) -> dict:
    if endpoint_type == "LOAD_BALANCER":
        base = f"https://{endpoint_id}.api.runpod.ai"
        return {"base": base, "health": f"{base}/ping"}
    api = f"https://api.runpod.ai/v2/{endpoint_id}"
    return {"run": f"{api}/run", "runSync": f"{api}/runsync", "status": f"{api}/status/{{job_id}}",
            "stream": f"{api}/stream/{{job_id}}", "cancel": f"{api}/cancel/{{job_id}}",
            "retry": f"{api}/retry/{{job_id}}", "purgeQueue": f"{api}/purge-queue", "health": f"{api}/health"}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _serve(self) -> None:
        fake: FakeRunpod = self.server.fake
        raw_body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.startswith("/_fake/"):
            status, answer = self._control(fake, raw_body)
            return self._send(status, answer)
        return self._send(*fake.handle(self.command, self.path, dict(self.headers.items()), raw_body))

    def _send(self, status: int, answer: object, extra_headers: dict | None = None) -> None:
        data = b"" if answer is None else json.dumps(answer).encode()
        self.send_response(status)
        if data:
            content_type = "application/problem+json" if status >= 400 else "application/json"
            self.send_header("Content-Type", content_type)
        for name, value in (extra_headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _control(self, fake: FakeRunpod, raw_body: bytes) -> tuple[int, object]:
        action = self.path[len("/_fake/"):]
        if self.command == "GET" and action == "log":
            return 200, fake.log
        if self.command == "GET" and action == "violations":
            return 200, fake.violations
        if self.command == "POST" and action == "fail_next":
            fake.fail_next(**json.loads(raw_body or b"{}"))
            return 204, None
        if self.command == "POST" and action == "reset":
            fake.reset()
            return 204, None
        return 404, Problem(404, f"no control action {self.command} {action}").body()

    do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _serve

    def log_message(self, *args) -> None:  # keep pytest and Molecule output quiet
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8089)
    parser.add_argument("--api-key", default=DEFAULT_API_KEY)
    args = parser.parse_args()
    fake = FakeRunpod(api_key=args.api_key, host=args.host, port=args.port)
    print(f"fake RunPod API v2 at {fake.url} (key {args.api_key})", flush=True)
    try:
        fake.server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        fake.server.server_close()


if __name__ == "__main__":
    main()
