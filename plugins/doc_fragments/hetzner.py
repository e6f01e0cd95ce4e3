# Copyright: selfhost.immich contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the Hetzner Storage Box modules share beyond selfhost.immich.api: token, URL, notes and action group
(module_utils/_hetzner.py, HetznerClient)."""

from __future__ import annotations


class ModuleDocFragment:

    DOCUMENTATION = r"""
options:
  api_token:
    description:
      - API token of the Hetzner project that holds the Storage Boxes (Console, project, Security, API tokens).
        Read-only tokens are enough for M(selfhost.immich.storagebox_info).
      - When not set, the E(HETZNER_API_TOKEN) environment variable is used, then E(HCLOUD_TOKEN).
      - This is a project token of the new Hetzner API, not the retired Robot web service credentials.
    type: str
    required: true
  api_url:
    description:
      - Base URL of the Hetzner API.
      - When not set, the E(HETZNER_API_URL) environment variable is used (for tests against a fake).
    type: str
    default: https://api.hetzner.com/v1
notes:
  - Talks to the Hetzner API U(https://api.hetzner.com/v1) (C(/storage_boxes)), which replaced the Robot web
    service in 2025.
  - Changes run as asynchronous actions; the module waits up to ten minutes for each one to finish.
  - "Failures read C(<METHOD> <path> failed: <code>: <message>) with Hetzner's error code, for example
    C(invalid_input) or C(locked)."
attributes:
  action_group:
    description: Use C(group/selfhost.immich.hetzner) in C(module_defaults) to set the connection options once.
    support: full
    membership:
      - selfhost.immich.hetzner
"""
