"""RunPod REST v2 answers and scripted calls for the module unit tests.

Modules reach the API at its default URL (https://api.runpod.io/v2), so scripted paths start with ``/v2``.
"""

from __future__ import annotations

import copy
import json

from ansible_collections.selfhost.immich.plugins.module_utils import _runpod
from ansible_collections.selfhost.immich.tests.fakes.runpod_api import gpu_catalog
from ansible_collections.selfhost.immich.tests.unit.utils.http_calls import Call

TOKEN = "rpa_unit_test_key_0001"
HF_TOKEN = "hf_unit_secret_value"
IMAGE = "ghcr.io/immich-app/immich-machine-learning:v3.2.4-cuda"
#: What the connection options default to in a module run (the run_runpod fixture).
MODULE_DEFAULTS = {"api_token": TOKEN}
#: Environment a module would fall back to; cleared so only what a test gives counts.
ENV = ("RUNPOD_API_KEY", "RUNPOD_API_URL")


def v2(path):
    return "/v2" + path


def catalog_call():
    return Call("GET", v2("/catalog/gpus")).returns(200, {"gpus": gpu_catalog()})


def list_call(collection, items):
    key = _runpod.LIST_KEYS[collection]
    return Call("GET", v2("/" + collection)).returns(200, {key: items})


def template(**overrides):
    """A template as GET /v2/templates returns it."""
    item = {"id": "tpl00001", "name": "immich-ml", "image": IMAGE, "args": "", "disk": 20, "mounts": {},
            "ports": ["3003/http"], "env": {"PORT": "3003", "PORT_HEALTH": "3003", "HF_TOKEN": HF_TOKEN},
            "registry": None, "serverless": True, "public": False, "category": "NVIDIA", "startSsh": False,
            "startJupyter": False, "allowedCudaVersions": []}
    item.update(overrides)
    return item


def endpoint(**overrides):
    """An LB endpoint created from template() as GET /v2/serverless returns it."""
    tpl = template()
    item = {"id": "ep000001", "name": "immich-ml", "type": "LOAD_BALANCER",
            "requestUrls": {"base": "https://ep000001.api.runpod.ai", "health": "https://ep000001.api.runpod.ai/ping"},
            **{k: copy.deepcopy(tpl[k]) for k in _runpod.CONTAINER_KEYS},
            "gpu": {"pools": ["ADA_24", "AMPERE_24"], "count": 1, "allowedCudaVersions": [], "minCudaVersion": "12.2"},
            "workers": {"min": 0, "max": 2, "idleTimeout": 60},
            "scaling": {"type": "REQUEST_COUNT", "requestCount": 4},
            "dataCenterIds": [], "networkVolumes": [], "timeout": 300000, "flashboot": "FLASHBOOT",
            "createdAt": "2026-11-25T10:00:00Z"}
    item.update(overrides)
    return item


def assert_no_secrets(result):
    text = json.dumps(result)
    assert TOKEN not in text and HF_TOKEN not in text
