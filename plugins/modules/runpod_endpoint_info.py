#!/usr/bin/python
# Copyright: selfhost.immich contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: runpod_endpoint_info
short_description: Read RunPod Serverless endpoints
version_added: 0.1.0
author: selfhost.immich contributors (@selfhost)
description:
  - List the account's RunPod Serverless endpoints through the REST API v2, or read one by O(name) or O(id).
extends_documentation_fragment:
  - selfhost.immich.api.info_module
  - selfhost.immich.runpod
  - selfhost.immich.api
options:
  name:
    description: Only the endpoint with this name. Mutually exclusive with O(id).
    type: str
  id:
    description:
      - Only the endpoint with this id. Mutually exclusive with O(name).
      - A RunPod id - lower-case letters and digits, with C(_) or C(-) inside, at most 64 characters; anything else
        is refused before any call.
    type: str
seealso:
  - module: selfhost.immich.runpod_endpoint
"""

EXAMPLES = r"""
- name: Read the Immich ML endpoint
  selfhost.immich.runpod_endpoint_info:
    name: immich-ml
  register: immich_ml_info

- name: Fail unless it is a load-balancing endpoint
  ansible.builtin.assert:
    that:
      - immich_ml_info.endpoints | length == 1
      - immich_ml_info.endpoints[0].type == 'LOAD_BALANCER'
"""

RETURN = r"""
endpoints:
  description:
    - The matching endpoints as the API returns them (empty if none), secret env values masked,
      each with C(request_url), the base URL of a load-balancing endpoint (V(null) for queue endpoints).
  returned: always
  type: list
  elements: dict
  sample:
    - id: 4m7x2k9q
      name: immich-ml
      type: LOAD_BALANCER
      request_url: https://4m7x2k9q.api.runpod.ai
      requestUrls: {base: "https://4m7x2k9q.api.runpod.ai", health: "https://4m7x2k9q.api.runpod.ai/ping"}
      workers: {min: 0, max: 2, idleTimeout: 60}
"""

from ansible_collections.selfhost.immich.plugins.module_utils._api import (  # noqa: E402
    name_problem,
    path_segment,
    run_module,
)
from ansible_collections.selfhost.immich.plugins.module_utils._runpod import (  # noqa: E402
    RunpodClient,
    id_problem,
    public_view,
    request_url,
)

ARGUMENT_SPEC = dict(name=dict(type="str"), id=dict(type="str"))


def read_endpoints(client, name=None, endpoint_id=None):
    if endpoint_id:
        found = client.get("/serverless/" + path_segment(endpoint_id), accept_404=True)
        return [found] if found else []
    return [e for e in client.list("serverless") if name in (None, e.get("name"))]


def input_problems(params):
    """What is wrong with the options on their own; checked before any call."""
    return [name_problem("name", params["name"], 191), id_problem("id", params["id"])]


def manage(module, client):
    endpoints = read_endpoints(client, module.params["name"], module.params["id"])
    return dict(changed=False, endpoints=[dict(public_view(module, e), request_url=request_url(e)) for e in endpoints])


def main():
    run_module(RunpodClient, ARGUMENT_SPEC, manage, input_problems, mutually_exclusive=[("name", "id")])


if __name__ == "__main__":
    main()
