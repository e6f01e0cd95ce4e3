# Copyright: selfhost.immich contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one RunPod REST v2 client, and what the RunPod modules share.

- :class:`RunpodClient`: bearer auth, retries and error text come from :class:`_api.ApiClient`; this adds
  the RFC 9457 error body, the wrapped lists (``{"endpoints": [...]}``, ``{"templates": [...]}``, which
  the v2 spec does not paginate) and lookup by name.
- :class:`RunpodResource`: desired vs current for one named template or endpoint, with check mode,
  diff, PATCH of changed fields only, and env secrets masked in every result.

Private module_utils file (leading underscore): not a public API of the collection.
"""

from __future__ import annotations

import copy
from typing import Any

from ansible.module_utils.basic import AnsibleModule, env_fallback, missing_required_lib
from ansible_collections.selfhost.immich.plugins.module_utils._api import (
    REQUESTS_IMPORT_ERROR,
    ApiClient,
    ApiError,
    redact,
)

DEFAULT_API_URL = "https://api.runpod.io/v2"

RUNPOD_ARGUMENT_SPEC = dict(
    api_token=dict(type="str", required=True, no_log=True, fallback=(env_fallback, ["RUNPOD_API_KEY"])),
    api_url=dict(type="str", default=DEFAULT_API_URL, fallback=(env_fallback, ["RUNPOD_API_URL"])),
    api_timeout=dict(type="int", default=30),
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

#: Options of a managed template or endpoint (doc fragments runpod, runpod.resource and runpod.container).
RESOURCE_ARGUMENT_SPEC = dict(
    RUNPOD_ARGUMENT_SPEC,
    name=dict(type="str", required=True),
    state=dict(type="str", choices=["present", "absent"], default="present"),
    **CONTAINER_ARGUMENT_SPEC,
)

#: Env keys containing one of these words hold secrets: masked in results and diffs.
SECRET_WORDS = ("key", "token", "secret", "password")
MASK = "********"

#: Collection path -> key of the wrapped list it answers with.
LIST_KEYS = {"templates": "templates", "serverless": "endpoints"}

#: Nested objects a PATCH may send partially (spec: EndpointWorkers, UpdateEndpointGpuConfig).
PARTIAL_KEYS = ("workers", "gpu")


class RunpodClient(ApiClient):
    """RunPod REST API v2 (https://api.runpod.io/v2)."""

    vendor = "RunPod API"

    def describe_error(self, status, body):
        """RFC 9457 ``{title, status, detail, errors[]}`` -> ("422 Unprocessable Entity", "detail (error; error)")."""
        if not isinstance(body, dict) or not ({"title", "detail"} & set(body)):
            return super(RunpodClient, self).describe_error(status, body)
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
        matches = [item for item in self.list(collection) if item.get("name") == name]
        if len(matches) > 1:
            ids = ", ".join(m["id"] for m in matches)
            raise ApiError(f"{len(matches)} {LIST_KEYS[collection]} are named {name!r} (ids {ids}): "
                           "rename or delete the extras first")
        return matches[0] if matches else None

    def gpu_types(self) -> list[dict]:
        """The GPU catalog; each type's ``pool`` is its serverless pool id (None: not serverless)."""
        return (self.get("/catalog/gpus") or {}).get("gpus", [])


def client_from_module(module: AnsibleModule) -> RunpodClient:
    if REQUESTS_IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("requests"), exception=REQUESTS_IMPORT_ERROR)
    params = module.params
    if not params["api_token"]:
        module.fail_json(msg="api_token is empty: set it or RUNPOD_API_KEY")
    return RunpodClient(params["api_url"], params["api_token"], timeout=params["api_timeout"])


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


def changed_fields(current: dict | None, desired: dict, partial: tuple = PARTIAL_KEYS) -> dict:
    """The part of ``desired`` that differs from ``current``: what a PATCH must send."""
    changes = {}
    for key, want in desired.items():
        have = (current or {}).get(key)
        if key in partial and isinstance(want, dict):
            sub = changed_fields(have or {}, want, ())
            if sub:
                changes[key] = sub
        elif _comparable(want) != _comparable(have):
            changes[key] = want
    return changes


def _comparable(value: Any) -> Any:
    # The API answers null, "" or [] for an unset field; its lists (ports, pools, data centers) are sets.
    if value is None or value == "" or value == [] or value == {}:
        return None
    if isinstance(value, list):
        return sorted(value, key=str)
    return value


def merged(current: dict, patch: dict) -> dict:
    """``current`` as it will be after ``patch`` (check mode's prediction)."""
    result = copy.deepcopy(current)
    for key, value in patch.items():
        if key in PARTIAL_KEYS and isinstance(value, dict):
            result[key] = dict(result.get(key) or {}, **value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def public_view(module: AnsibleModule, resource: dict | None, before: dict | None = None) -> dict:
    """A copy of ``resource`` safe to print: secret env values masked, and kept out of all module output.

    With ``before``, a masked value that differs from the one there reads "******** (changed)" so the diff
    still shows that a secret changed.
    """
    if not resource:
        return {}
    env = resource.get("env") or {}
    module.no_log_values.update(v for k, v in env.items() if v and _looks_secret(k))
    view = copy.deepcopy(resource)
    if env:
        view["env"] = redact(env, SECRET_WORDS)
        old = (before or {}).get("env") or {}
        for key, value in view["env"].items():
            if value == MASK and key in old and old[key] != env[key]:
                view["env"][key] = MASK + " (changed)"
    return view


def request_url(endpoint: dict | None) -> str | None:
    """Where a load-balancing endpoint's workers answer (``requestUrls.base``); None for queue endpoints."""
    return ((endpoint or {}).get("requestUrls") or {}).get("base")


def _looks_secret(key: str) -> bool:
    return any(word in str(key).lower() for word in SECRET_WORDS)


class RunpodResource(object):
    """Desired vs current for one RunPod item identified by ``name``; subclasses say what is desired.

    A run makes GETs, then at most the writes needed (none in check mode), and exits with an exact
    ``changed``, a diff of masked before/after views and the item under ``result_key``.
    """

    collection = None  # "templates" or "serverless"
    result_key = None  # "template" or "endpoint"

    def __init__(self, module):
        self.module = module
        self.client = client_from_module(module)
        self.writes = 0  # planned writes; made only outside check mode
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
        return changed_fields(current, expected)

    def must_replace(self, current, expected):
        """True if ``current`` can only reach ``expected`` by delete + create."""
        return False

    def extra_results(self, item):
        return {}

    # -- flow --------------------------------------------------------------------------------
    def run(self):
        try:
            before, after = self.reconcile()
        except ApiError as exc:
            self.module.fail_json(msg=str(exc))
        results = {self.result_key: public_view(self.module, after), **self.extra_results(after)}
        self.module.exit_json(
            changed=self.writes > 0,
            id=(after or {}).get("id"),
            diff=dict(before=public_view(self.module, before), after=public_view(self.module, after, before)),
            **results,
        )

    def reconcile(self) -> tuple[dict | None, dict | None]:
        """Return (before, after), writing what is needed."""
        current = self.client.find(self.collection, self.module.params["name"])
        if self.module.params["state"] == "absent":
            if current:
                self.delete(current)
            return current, None
        desired = self.desired(current)
        expected = self.expected(desired)
        if current is None:
            return None, self.create(desired, expected)
        if self.must_replace(current, expected):
            self.delete(current)
            return current, self.create(desired, expected)
        patch = self.changes(current, expected)
        if not patch:
            return current, current
        self.writes += 1
        if self.module.check_mode:
            return current, merged(current, patch)
        return current, self.client.patch(self._path(current), patch)

    def create(self, desired, expected):
        self.writes += 1
        if self.module.check_mode:
            return dict(expected, id=None)
        return self.client.post("/" + self.collection, desired)

    def delete(self, current):
        self.writes += 1
        if not self.module.check_mode:
            self.client.delete(self._path(current))

    def _path(self, item):
        return f"/{self.collection}/{item['id']}"
