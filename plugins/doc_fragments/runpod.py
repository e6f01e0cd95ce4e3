# Copyright: selfhost.immich contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Documentation shared by the RunPod modules beyond selfhost.immich.api; mirrors plugins/module_utils/_runpod.py.

- selfhost.immich.runpod: token, URL and action group of every RunPod module (RunpodClient).
- selfhost.immich.runpod.resource: name/state identity and container settings of a managed template or endpoint
  (RESOURCE_ARGUMENT_SPEC).
"""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  api_token:
    description:
      - "RunPod API key, sent as C(Authorization: Bearer <key>)."
      - If not set, the value of the E(RUNPOD_API_KEY) environment variable is used.
    type: str
    required: true
  api_url:
    description:
      - Base URL of the RunPod REST API v2, up to and including C(/v2).
      - If not set, the value of the E(RUNPOD_API_URL) environment variable is used, else the default.
      - REST v1 (C(https://rest.runpod.io/v1)) was retired on 2026-11-15 and is not supported.
    type: str
    default: https://api.runpod.io/v2
attributes:
  action_group:
    description: Use C(group/selfhost.immich.runpod) in C(module_defaults) to set the connection options once.
    support: full
    membership:
      - selfhost.immich.runpod
"""

    RESOURCE = r"""
options:
  name:
    description:
      - Name of the item, its identity. Names must be unique among the account's items of this kind.
    type: str
    required: true
  state:
    description: Whether the item should exist.
    type: str
    choices: [present, absent]
    default: present
  image:
    description: Container image reference, for example C(ghcr.io/immich-app/immich-machine-learning:v3.2.4-cuda).
    type: str
  args:
    description: Arguments passed to the container entrypoint.
    type: str
  env:
    description:
      - Environment variables, values sent as strings. The whole set is managed, so keys not listed are removed.
      - Values must be plain strings, numbers or booleans; keys are variable names.
      - Values whose key contains C(PASS), C(PWD), C(AUTH), C(CRED), C(DSN), C(KEY), C(TOKEN) or C(SECRET) (any case),
        or is one of a few well-known secret names (for example C(DATABASE_URL)), are masked in results and diffs
        and kept out of the logs.
    type: dict
  ports:
    description: Exposed ports as C(port/protocol), for example V(3003/http).
    type: list
    elements: str
  disk:
    description: Container disk in GB (ephemeral).
    type: int
  registry:
    description: ID of a RunPod container registry credential, for private images.
    type: str
"""
