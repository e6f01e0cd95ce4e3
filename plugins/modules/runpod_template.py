#!/usr/bin/python
# Copyright: selfhost.immich contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: runpod_template
short_description: Manage a RunPod template
version_added: 0.1.0
author: selfhost.immich contributors (@selfhost)
description:
  - Create, update or delete a RunPod template through the REST API v2 (C(/v2/templates)).
  - A template is a reusable container configuration (image, env, ports, disk) that
    M(selfhost.immich.runpod_endpoint) can start serverless workers from.
  - The template is identified by O(name). O(image) is required with O(state=present); the other container
    settings are not managed when omitted.
  - Only the fields that differ are sent (PATCH). Endpoints already created from the template keep their
    settings; M(selfhost.immich.runpod_endpoint) with O(selfhost.immich.runpod_endpoint#module:template)
    brings them back in line.
extends_documentation_fragment:
  - selfhost.immich.runpod
  - selfhost.immich.api
  - selfhost.immich.runpod.resource
options:
  serverless:
    description: Whether the template is for serverless workers. Endpoints accept only serverless templates.
    type: bool
    default: true
  start_jupyter:
    description: Whether containers start JupyterLab (the API defaults to V(true)).
    type: bool
    default: false
  start_ssh:
    description: Whether containers get SSH access provisioned (the API defaults to V(true)).
    type: bool
    default: false
seealso:
  - module: selfhost.immich.runpod_endpoint
"""

EXAMPLES = r"""
- name: Immich machine-learning template for RunPod load-balancing workers
  selfhost.immich.runpod_template:
    name: immich-ml
    image: ghcr.io/immich-app/immich-machine-learning:v3.2.4-cuda
    env:
      PORT: "3003"
      PORT_HEALTH: "3003"
      IMMICH_HOST: 0.0.0.0
    ports:
      - 3003/http
    disk: 20

- name: Remove the template
  selfhost.immich.runpod_template:
    name: immich-ml
    state: absent
"""

RETURN = r"""
id:
  description: Template ID; V(null) in check mode before it exists or after O(state=absent).
  returned: always
  type: str
  sample: 9x4m2p7v
template:
  description: The template as the API returns it (empty after deletion); secret env values masked.
  returned: always
  type: dict
  sample:
    id: 9x4m2p7v
    name: immich-ml
    image: ghcr.io/immich-app/immich-machine-learning:v3.2.4-cuda
    env: {PORT: "3003", HF_TOKEN: "********"}
    ports: [3003/http]
    serverless: true
    startJupyter: false
    startSsh: false
"""

from ansible_collections.selfhost.immich.plugins.module_utils._api import run_module  # noqa: E402
from ansible_collections.selfhost.immich.plugins.module_utils._runpod import (  # noqa: E402
    RESOURCE_ARGUMENT_SPEC,
    RunpodClient,
    RunpodResource,
    container_body,
    container_problems,
)

ARGUMENT_SPEC = dict(
    RESOURCE_ARGUMENT_SPEC,
    serverless=dict(type="bool", default=True),
    start_jupyter=dict(type="bool", default=False),
    start_ssh=dict(type="bool", default=False),
)


class Template(RunpodResource):
    collection = "templates"
    result_key = "template"

    def desired(self, current):
        params = self.module.params
        return dict(container_body(params), name=params["name"], serverless=params["serverless"],
                    startJupyter=params["start_jupyter"], startSsh=params["start_ssh"])


def manage(module, client):
    return Template(module, client).run()


def main():
    run_module(RunpodClient, ARGUMENT_SPEC, manage, container_problems, required_if=[("state", "present", ["image"])])


if __name__ == "__main__":
    main()
