#!/usr/bin/python
# Copyright: selfhost.immich contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: runpod_endpoint
short_description: Manage a RunPod Serverless endpoint (load-balancing or queue-based)
version_added: 0.1.0
author: selfhost.immich contributors (@selfhost)
description:
  - Create, update or delete a RunPod Serverless endpoint through the REST API v2 (C(/v2/serverless)).
    REST v1 was retired on 2026-11-15 and could not create load-balancing endpoints.
  - The endpoint is identified by O(name).
  - Every option left unset is not managed; an update sends only the fields that differ (PATCH).
  - Input is checked before anything is written. O(gpu_pools) are checked against the GPU catalog
    (C(GET /v2/catalog/gpus), field C(pool)); an unknown pool fails with the list of valid ones.
extends_documentation_fragment:
  - selfhost.immich.runpod
  - selfhost.immich.api
  - selfhost.immich.runpod.resource
options:
  type:
    description:
      - V(LOAD_BALANCER) sends HTTP requests straight to the workers at C(https://<id>.api.runpod.ai/<path>)
        (what Immich machine learning needs); V(QUEUE) runs jobs through C(/run) and C(/runsync).
      - Immutable. A different type on an existing endpoint is an error, unless O(force=true).
      - Required with O(state=present).
    type: str
    choices: [LOAD_BALANCER, QUEUE]
  force:
    description:
      - With a different O(type) than the existing endpoint's, delete the endpoint and create it anew.
        Its id and request URL change.
    type: bool
    default: false
  template:
    description:
      - Name or id of a serverless template (see M(selfhost.immich.runpod_template)) to take the container
        settings (image, args, disk, ports, env, registry) from. Container options given here override
        the template's; O(env) is merged into the template's env.
      - The endpoint keeps no link to the template, so every run compares the endpoint with the template's
        current settings and updates it when the template changed.
      - O(template) or O(image) is required to create the endpoint.
      - A template not found by name is looked up by id only when O(template) is a RunPod id (lower-case letters
        and digits, with C(_) or C(-) inside).
      - A load-balancing worker needs C(PORT) and C(PORT_HEALTH) in its env and the port in O(ports).
    type: str
  gpu_pools:
    description:
      - Serverless GPU pool ids, for example V(ADA_24) or V(AMPERE_48); workers run on whichever has capacity.
      - Required with O(state=present).
    type: list
    elements: str
  gpu_excluded_types:
    description:
      - GPU type ids (catalog C(id), for example V(NVIDIA L40)) to leave out of O(gpu_pools).
      - If unset, exclusions already on the endpoint are kept, also when O(gpu_pools) change.
        V([]) removes them.
    type: list
    elements: str
  gpu_count:
    description: GPUs per worker.
    type: int
  min_cuda_version:
    description:
      - Lowest CUDA version for worker placement, as C(major.minor); V(12.2) for Immich C(-cuda) images.
      - An empty string removes the floor.
    type: str
  workers_min:
    description: Workers kept running (billed while idle).
    type: int
  workers_max:
    description: Most workers at once; at least O(workers_min).
    type: int
  idle_timeout:
    description:
      - Seconds an idle worker lives before it scales down, 1 to 3600.
      - Not valid for a V(QUEUE) endpoint scaling on V(REQUEST_COUNT).
    type: int
  scaling:
    description:
      - How the endpoint scales.
      - If unset, a new endpoint gets what RunPod's console gives it - V(REQUEST_COUNT) 1 for a V(LOAD_BALANCER)
        endpoint, V(QUEUE_DELAY) 4 seconds for a V(QUEUE) endpoint - and an existing endpoint keeps its scaling.
    type: dict
    suboptions:
      type:
        description:
          - V(REQUEST_COUNT) scales on requests in flight per worker; the only choice for V(LOAD_BALANCER).
          - V(QUEUE_DELAY) scales on seconds a job waits in the queue; V(QUEUE) endpoints only.
        type: str
        choices: [REQUEST_COUNT, QUEUE_DELAY]
        required: true
      value:
        description: Requests per worker (whole number, 1 to 1000) or queue delay in seconds (0.5 to 3600).
        type: float
        required: true
  flashboot:
    description:
      - FlashBoot cold-start acceleration. The API default is V(OFF).
      - Quote V("OFF") in YAML, which otherwise reads it as the boolean V(false).
    type: str
    choices: ["OFF", FLASHBOOT, PRIORITY_FLASHBOOT]
  timeout:
    description: Per-request execution timeout in milliseconds. The API default is V(300000).
    type: int
  network_volumes:
    description: Network volume ids to mount at C(/runpod-volume); pins workers to the volume's data center.
    type: list
    elements: str
  data_center_ids:
    description: Data centers to place workers in, for example V(EU-RO-1). V([]) lets the scheduler choose.
    type: list
    elements: str
seealso:
  - module: selfhost.immich.runpod_template
  - module: selfhost.immich.runpod_endpoint_info
"""

EXAMPLES = r"""
- name: Immich machine learning on a load-balancing endpoint
  selfhost.immich.runpod_endpoint:
    name: immich-ml
    type: LOAD_BALANCER
    template: immich-ml
    gpu_pools: [ADA_24, AMPERE_24]
    min_cuda_version: "12.2"
    workers_min: 0
    workers_max: 2
    idle_timeout: 60
    scaling:
      type: REQUEST_COUNT
      value: 4
    flashboot: FLASHBOOT
  register: immich_ml

- name: Show where Immich reaches the workers
  ansible.builtin.debug:
    msg: "{{ immich_ml.request_url }}"

- name: Without a template
  selfhost.immich.runpod_endpoint:
    name: immich-ml
    type: LOAD_BALANCER
    image: ghcr.io/immich-app/immich-machine-learning:v3.2.4-cuda
    env: {PORT: "3003", PORT_HEALTH: "3003"}
    ports: [3003/http]
    gpu_pools: [ADA_24]
    scaling: {type: REQUEST_COUNT, value: 1}

- name: Remove the endpoint
  selfhost.immich.runpod_endpoint:
    name: immich-ml
    state: absent
"""

RETURN = r"""
id:
  description: Endpoint ID; V(null) in check mode before it exists, or after O(state=absent).
  returned: always
  type: str
  sample: 4m7x2k9q
request_url:
  description: Base URL of a V(LOAD_BALANCER) endpoint (C(requestUrls.base)); V(null) for V(QUEUE) endpoints.
  returned: always
  type: str
  sample: https://4m7x2k9q.api.runpod.ai
request_urls:
  description: All request URLs the API reports (C(base), C(health) or the queue URLs).
  returned: success
  type: dict
  sample: {base: "https://4m7x2k9q.api.runpod.ai", health: "https://4m7x2k9q.api.runpod.ai/ping"}
endpoint:
  description: The endpoint as the API returns it (empty after deletion); secret env values masked.
  returned: always
  type: dict
  sample:
    id: 4m7x2k9q
    name: immich-ml
    type: LOAD_BALANCER
    gpu: {pools: [ADA_24], count: 1, minCudaVersion: "12.2", allowedCudaVersions: []}
    workers: {min: 0, max: 2, idleTimeout: 60}
    scaling: {type: REQUEST_COUNT, requestCount: 4}
    flashboot: FLASHBOOT
"""

import math  # noqa: E402
import re  # noqa: E402

from ansible_collections.selfhost.immich.plugins.module_utils._api import (  # noqa: E402
    CONTROL_CHARS,
    ApiError,
    InputError,
    name_problem,
    only_one,
    path_segment,
    range_problem,
    run_module,
)
from ansible_collections.selfhost.immich.plugins.module_utils._runpod import (  # noqa: E402
    CONTAINER_KEYS,
    RESOURCE_ARGUMENT_SPEC,
    RUNPOD_ID,
    RunpodClient,
    RunpodResource,
    container_body,
    container_problems,
    public_view,
    request_url,
    without_none,
)

ARGUMENT_SPEC = dict(
    RESOURCE_ARGUMENT_SPEC,
    type=dict(type="str", choices=["LOAD_BALANCER", "QUEUE"]),
    force=dict(type="bool", default=False),
    template=dict(type="str"),
    gpu_pools=dict(type="list", elements="str"),
    gpu_excluded_types=dict(type="list", elements="str"),
    gpu_count=dict(type="int"),
    min_cuda_version=dict(type="str"),
    workers_min=dict(type="int"),
    workers_max=dict(type="int"),
    idle_timeout=dict(type="int"),
    scaling=dict(type="dict", options=dict(
        type=dict(type="str", required=True, choices=["REQUEST_COUNT", "QUEUE_DELAY"]),
        value=dict(type="float", required=True),
    )),
    flashboot=dict(type="str", choices=["OFF", "FLASHBOOT", "PRIORITY_FLASHBOOT"]),
    timeout=dict(type="int"),
    network_volumes=dict(type="list", elements="str"),
    data_center_ids=dict(type="list", elements="str"),
)

#: What the API gives a new endpoint without `workers` (spec: CreateEndpointRequest).
CREATE_WORKERS = {"min": 0, "max": 3}


#: Scaling of a new endpoint when none is given, by endpoint type (what RunPod's console sets).
DEFAULT_SCALING = {"LOAD_BALANCER": {"type": "REQUEST_COUNT", "value": 1},
                   "QUEUE": {"type": "QUEUE_DELAY", "value": 4}}
_CUDA_VERSION = re.compile(r"[0-9]{1,3}\.[0-9]{1,3}")
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def input_problems(params):
    """What is wrong with the options on their own; checked before any API call."""
    errors = container_problems(params) + [name_problem("template", params["template"], 191)]
    low, high, idle = params["workers_min"], params["workers_max"], params["idle_timeout"]
    if low is not None and high is not None and low > high:
        errors.append(f"workers_min ({low}) must not exceed workers_max ({high})")
    errors += [range_problem("workers_min", low, 0, 1000), range_problem("workers_max", high, 0, 1000),
               range_problem("gpu_count", params["gpu_count"], 1, 16),
               range_problem("timeout", params["timeout"], 1, 7 * 24 * 3600 * 1000)]
    if idle is not None and not 1 <= idle <= 3600:
        errors.append(f"idle_timeout must be between 1 and 3600 seconds, got {idle}")
    cuda = params["min_cuda_version"]
    if cuda and not _CUDA_VERSION.fullmatch(cuda):
        errors.append(f"min_cuda_version must look like 12.2 (major.minor), got {cuda!r}")
    for option in ("gpu_pools", "gpu_excluded_types", "network_volumes", "data_center_ids"):
        for value in params[option] or []:
            if not _ID.fullmatch(value.strip() if option == "gpu_excluded_types" else value) or \
                    CONTROL_CHARS.search(value):
                errors.append(f"{option}: {value!r} is not an id (letters, digits, . _ -)")
    if params["gpu_pools"] is not None and not params["gpu_pools"]:
        errors.append("gpu_pools must name at least one pool")
    scaling = params["scaling"]
    if scaling:
        kind, value = scaling["type"], scaling["value"]
        if not math.isfinite(value):
            errors.append(f"scaling.value must be a finite number, got {value}")
        elif kind == "QUEUE_DELAY" and not 0.5 <= value <= 3600:
            errors.append("scaling.value for QUEUE_DELAY is seconds, 0.5 to 3600")
        elif kind == "REQUEST_COUNT" and (not 1 <= value <= 1000 or value != int(value)):
            errors.append("scaling.value for REQUEST_COUNT is requests per worker, a whole number from 1 to 1000")
        if kind == "QUEUE_DELAY" and params["type"] == "LOAD_BALANCER":
            errors.append("a LOAD_BALANCER endpoint scales on REQUEST_COUNT; QUEUE_DELAY is for QUEUE endpoints")
        if kind == "REQUEST_COUNT" and params["type"] == "QUEUE" and idle is not None:
            errors.append("idle_timeout does not apply to a QUEUE endpoint scaling on REQUEST_COUNT")
    return errors


def scaling_body(scaling):
    if not scaling:
        return None
    if scaling["type"] == "REQUEST_COUNT":
        return {"type": "REQUEST_COUNT", "requestCount": int(scaling["value"])}
    return {"type": "QUEUE_DELAY", "queueDelay": scaling["value"]}


class Endpoint(RunpodResource):
    collection = "serverless"
    result_key = "endpoint"
    template = None

    def desired(self, current):
        params = self.module.params
        creating = current is None or (params["force"] and current.get("type") != params["type"])
        if creating and not (params["image"] or params["template"]):
            raise InputError(f"image or template is required to create endpoint {params['name']!r}")
        self.check_gpus(params["gpu_pools"], params["gpu_excluded_types"])
        if params["template"]:
            self.template = self.find_template(params["template"])
        gpu = without_none(dict(pools=params["gpu_pools"], excludedTypes=params["gpu_excluded_types"],
                                count=params["gpu_count"], minCudaVersion=params["min_cuda_version"]))
        if creating and not gpu.get("minCudaVersion"):
            gpu.pop("minCudaVersion", None)  # "" only clears a floor on update; create rejects it
        workers = without_none(dict(min=params["workers_min"], max=params["workers_max"],
                                    idleTimeout=params["idle_timeout"]))
        self.check_workers(current, workers)
        body = without_none(dict(
            name=params["name"], type=params["type"], templateId=(self.template or {}).get("id"),
            gpu=gpu, workers=workers or None,
            scaling=scaling_body(params["scaling"] or (DEFAULT_SCALING[params["type"]] if creating else None)),
            flashboot=params["flashboot"], timeout=params["timeout"],
            networkVolumes=params["network_volumes"], dataCenterIds=params["data_center_ids"],
        ))
        return dict(body, **container_body(params))

    def expected(self, desired):
        """The endpoint reads the template's container settings, overridden by the explicit ones."""
        expected = {k: v for k, v in desired.items() if k != "templateId"}
        if self.template:
            for key in CONTAINER_KEYS:
                if key == "env":
                    expected["env"] = dict(self.template.get("env") or {}, **desired.get("env", {}))
                elif key not in desired and self.template.get(key) is not None:
                    expected[key] = self.template[key]
        return expected

    def changes(self, current, expected):
        patch = super().changes(current, {k: v for k, v in expected.items() if k != "type"})
        gpu = patch.get("gpu")
        if gpu and ("pools" in gpu or "excludedTypes" in gpu):
            # pools and excludedTypes are one selection: sending pools without excludedTypes clears them.
            gpu["pools"] = expected["gpu"]["pools"]
            kept = (current.get("gpu") or {}).get("excludedTypes")
            if "excludedTypes" not in gpu and kept:
                gpu["excludedTypes"] = kept
        return patch

    def must_replace(self, current, expected):
        have, want = current.get("type"), expected["type"]
        if have in (None, want):
            return False
        if not self.module.params["force"]:
            raise InputError(
                f"endpoint {current['name']!r} is {have} and its type is immutable: it cannot become {want}. "
                "Set force=true to delete it and create it anew (new id and request URL).")
        return True

    def extra_results(self, item):
        return {"request_url": request_url(item), "request_urls": (item or {}).get("requestUrls")}

    def check_gpus(self, pools, excluded):
        catalog = self.client.gpu_types()
        known = sorted({gpu["pool"] for gpu in catalog if gpu.get("pool")})
        unknown = [pool for pool in pools if pool not in known]
        if unknown:
            raise InputError(f"unknown GPU pool(s) {', '.join(unknown)}; valid pools: {', '.join(known)}")
        in_pools = sorted(gpu["id"] for gpu in catalog if gpu.get("pool") in pools)
        stray = [name for name in excluded or [] if name.strip() not in in_pools]
        if stray:
            raise InputError(f"gpu_excluded_types {', '.join(stray)} are not GPU types of pools "
                             f"{', '.join(pools)}; these are: {', '.join(in_pools)}")

    def check_workers(self, current, workers):
        effective = dict(CREATE_WORKERS, **(current or {}).get("workers") or {})
        effective.update(workers)
        if effective["min"] > effective["max"]:
            raise InputError(f"workers_min ({effective['min']}) must not exceed workers_max ({effective['max']})")

    def find_template(self, ref):
        """The serverless template named or with id ``ref``; None in check mode if it does not exist yet."""
        templates = self.client.list("templates")
        template = only_one(templates, ref, "templates") or only_one(templates, ref, "templates", key="id")
        if template is None and RUNPOD_ID.fullmatch(ref):
            template = self.client.get("/templates/" + path_segment(ref), accept_404=True)
        if template is None and self.module.check_mode:
            self.module.warn(f"template {ref!r} does not exist yet: its settings are not compared in check mode")
        elif template is None:
            raise ApiError(f"template {ref!r} not found (looked for it by name and id)", code="not_found")
        elif not template.get("serverless"):
            raise InputError(f"template {ref!r} is not a serverless template; endpoints need one")
        public_view(self.module, template)  # its secret env values stay out of the output too
        return template


def manage(module, client):
    return Endpoint(module, client).run()


def main():
    run_module(RunpodClient, ARGUMENT_SPEC, manage, input_problems,
               required_if=[("state", "present", ["type", "gpu_pools"])])


if __name__ == "__main__":
    main()
