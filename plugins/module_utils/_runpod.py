# Copyright: selfhost.immich contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one RunPod REST v2 client, and what the RunPod modules share beyond the skeleton of :mod:`_api`.

- :class:`RunpodClient`: bearer auth, retries, error text and the connection options come from
  :class:`_api.ApiClient`; this adds the RFC 9457 error body, the wrapped lists (``{"endpoints": [...]}``,
  ``{"templates": [...]}``, which the v2 spec does not paginate) and lookup by name.
- :class:`RunpodResource`: desired vs current for one named template or endpoint as a :class:`_api.Plan`
  (check mode exact by construction), PATCH of changed fields only, env secrets masked in every result.

Private module_utils file (leading underscore): not a public API of the collection.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.selfhost.immich.plugins.module_utils._api import (
    CONTROL_CHARS,
    MASK,
    ApiClient,
    Plan,
    changed_fields,
    name_problem,
    only_one,
    path_segment,
    range_problem,
    redact,
    secret_values,
)

#: Container settings a template and an endpoint both carry (spec: ContainerConfig).
CONTAINER_ARGUMENT_SPEC = dict(
    image=dict(type="str"),
    args=dict(type="str"),
    env=dict(type="dict"),
    ports=dict(type="list", elements="str"),
    disk=dict(type="int"),
    registry=dict(type="str"),
)
CONTAINER_KEYS = tuple(CONTAINER_ARGUMENT_SPEC)

#: Options of a managed template or endpoint (doc fragment selfhost.immich.runpod.resource).
RESOURCE_ARGUMENT_SPEC = dict(
    name=dict(type="str", required=True),
    state=dict(type="str", choices=["present", "absent"], default="present"),
    **CONTAINER_ARGUMENT_SPEC,
)

#: Collection path -> key of the wrapped list it answers with.
LIST_KEYS = {"templates": "templates", "serverless": "endpoints"}

#: Nested objects a PATCH may send partially (spec: EndpointWorkers, UpdateEndpointGpuConfig).
PARTIAL_KEYS = ("workers", "gpu")

_PORT = re.compile(r"([1-9][0-9]{0,4})/(http|tcp|udp)")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_IMAGE = re.compile(r"[a-z0-9][A-Za-z0-9._/:@+-]*")
#: A RunPod id (endpoint, template): lower-case letters and digits (e.g. jpnw0v75y3qoql), with _ and - inside as in
#: the spec's examples (ep_abc123) and RunPod's own templates (runpod-torch-v240). Never '.', '/' or '%': ids go
#: into URL paths.
RUNPOD_ID = re.compile(r"[a-z0-9](?:[a-z0-9_-]{0,62}[a-z0-9])?")


class RunpodClient(ApiClient):
    """RunPod REST API v2 (https://api.runpod.io/v2)."""

    vendor = "RunPod API"
    default_url = "https://api.runpod.io/v2"
    token_env = ("RUNPOD_API_KEY",)
    url_env = ("RUNPOD_API_URL",)

    def describe_error(self, status, body):
        """RFC 9457 ``{title, status, detail, errors[]}`` -> ("422 Unprocessable Entity", "detail (error; error)")."""
        if not isinstance(body, dict) or not ({"title", "detail"} & set(body)):
            return super().describe_error(status, body)
        title = body.get("title") or ""
        message = body.get("detail") or title or "no detail"
        errors = [str(error) for error in body.get("errors") or []]
        if errors:
            message = f"{message} ({'; '.join(errors)})"
        return f"{status} {title}".strip(), message

    def list(self, collection: str) -> list[dict]:
        """Every template or endpoint of the account (``collection``: "templates" or "serverless")."""
        return (self.get("/" + collection) or {}).get(LIST_KEYS[collection], [])

    def find(self, collection: str, name: str) -> dict | None:
        """The one item called ``name``, or None. Several of that name cannot be managed safely."""
        return only_one(self.list(collection), name, LIST_KEYS[collection])

    def gpu_types(self) -> list[dict]:
        """The GPU catalog; each type's ``pool`` is its serverless pool id (None: not serverless)."""
        return (self.get("/catalog/gpus") or {}).get("gpus", [])


def id_problem(option: str, value: str | None) -> str | None:
    """Why ``value`` is not a RunPod id (it goes into a URL path), or None. Quotes it only when printable."""
    if value is None or RUNPOD_ID.fullmatch(value):
        return None
    shown = "" if CONTROL_CHARS.search(value) else f", got {value!r}"
    return (f"{option} must be a RunPod id: lower-case letters and digits, with _ or - inside, "
            f"at most 64 characters{shown}")


def container_problems(params: dict) -> list[str | None]:
    """What is wrong with the name and container options of a template or endpoint; checked before any call."""
    problems = [name_problem("name", params["name"], 191), name_problem("registry", params["registry"]),
                range_problem("disk", params["disk"], 1, 10000)]
    image = params["image"]
    if image is not None and not _IMAGE.fullmatch(image):
        problems.append("image must be an image reference such as ghcr.io/org/name:tag (lower-case start, "
                        "no spaces or control characters)")
    if params["args"] is not None and CONTROL_CHARS.search(params["args"]):
        problems.append("args must not contain line breaks or control characters")
    for port in params["ports"] or []:
        match = _PORT.fullmatch(port)
        if not match or int(match.group(1)) > 65535:
            problems.append(f"ports: {port!r} is not port/protocol with a port 1 to 65535 and http, tcp or udp")
    for key, value in (params["env"] or {}).items():
        if not _ENV_NAME.fullmatch(str(key)):
            problems.append(f"env: {key!r} is not a variable name (letters, digits, _; not starting with a digit)")
        elif isinstance(value, (dict, list)):
            problems.append(f"env.{key} must be a plain string, number or boolean, not a {type(value).__name__}")
        elif isinstance(value, str) and "\0" in value:
            problems.append(f"env.{key} must not contain NUL characters")
    return problems


def container_body(params: dict) -> dict:
    """The container settings the user stated (None = not managed); env values become strings."""
    body = {key: params[key] for key in CONTAINER_KEYS if params.get(key) is not None}
    if "env" in body:
        body["env"] = {str(k): "" if v is None else str(v) for k, v in body["env"].items()}
    return body


def without_none(value: Any) -> Any:
    """Drop None values (options the user left unmanaged), recursively."""
    if isinstance(value, dict):
        return {k: without_none(v) for k, v in value.items() if v is not None}
    return value


def public_view(module: AnsibleModule, resource: dict | None, before: dict | None = None) -> dict:
    """A copy of ``resource`` safe to print: secret env values masked, and kept out of all module output.

    With ``before``, a masked value that differs from the one there reads "******** (changed)" so the diff
    still shows that a secret changed.
    """
    if not resource:
        return {}
    env = resource.get("env") or {}
    module.no_log_values.update(secret_values(env))
    view = copy.deepcopy(resource)
    if env:
        view["env"] = redact(env)
        old = (before or {}).get("env") or {}
        for key, value in view["env"].items():
            if value == MASK and key in old and old[key] != env[key]:
                view["env"][key] = MASK + " (changed)"
    return view


def request_url(endpoint: dict | None) -> str | None:
    """Where a load-balancing endpoint's workers answer (``requestUrls.base``); None for queue endpoints."""
    return ((endpoint or {}).get("requestUrls") or {}).get("base")


class RunpodResource:
    """Desired vs current for one RunPod item identified by ``name``; subclasses say what is desired.

    A run makes GETs, then plans the writes needed (:class:`_api.Plan`, sent only outside check mode) and returns
    an exact ``changed``, a diff of masked before/after views and the item under ``result_key``.
    """

    collection = None  # "templates" or "serverless"
    result_key = None  # "template" or "endpoint"

    def __init__(self, module: AnsibleModule, client: RunpodClient) -> None:
        self.module = module
        self.client = client
        public_view(module, {"env": container_body(module.params).get("env")})  # hide stated secrets at once

    # -- hooks -------------------------------------------------------------------------------
    def desired(self, current):
        """The create body (may read the API and fail: nothing has been written yet)."""
        raise NotImplementedError

    def expected(self, desired):
        """The item as it should read once created or updated (what current is compared with)."""
        return desired

    def changes(self, current, expected):
        """The PATCH body taking ``current`` to ``expected``; empty if nothing differs."""
        return changed_fields(current, expected, PARTIAL_KEYS)

    def must_replace(self, current, expected):
        """True if ``current`` can only reach ``expected`` by delete + create."""
        return False

    def extra_results(self, item):
        return {}

    # -- flow --------------------------------------------------------------------------------
    def run(self) -> dict:
        plan = self.plan()
        answers = plan.apply(self.client, self.module.check_mode)
        before = plan.current
        after = answers[-1] if answers and plan.desired is not None else plan.desired
        return dict(
            changed=bool(plan),
            id=(after or {}).get("id"),
            diff=dict(before=public_view(self.module, before), after=public_view(self.module, after, before)),
            **{self.result_key: public_view(self.module, after)},
            **self.extra_results(after),
        )

    def plan(self) -> Plan:
        """The writes taking the current item to the desired one; ``desired`` is the check-mode prediction."""
        name = self.module.params["name"]
        current = self.client.find(self.collection, name)
        plan = Plan(current)
        if self.module.params["state"] == "absent":
            if current:
                plan.add("DELETE", self._path(current))
            plan.desired = None
            return plan
        desired = self.desired(current)
        expected = self.expected(desired)
        replace = current is not None and self.must_replace(current, expected)
        if current is None or replace:
            if replace:
                plan.add("DELETE", self._path(current))
            plan.add("POST", "/" + self.collection, desired, recover=lambda: self.client.find(self.collection, name))
            plan.desired = dict(expected, id=None)
            return plan
        plan.send("PATCH", self._path(current), self.changes(current, expected), partial=PARTIAL_KEYS)
        return plan

    def _path(self, item):
        return f"/{self.collection}/{path_segment(item['id'], 'RunPod id')}"
