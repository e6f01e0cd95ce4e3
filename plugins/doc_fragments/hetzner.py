# Copyright: selfhost.immich contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Connection options shared by the Hetzner Storage Box modules (attributes: selfhost.immich.attributes)."""

from __future__ import annotations


class ModuleDocFragment(object):

    DOCUMENTATION = r"""
options:
  api_token:
    description:
      - API token of the Hetzner project that holds the Storage Boxes (Console, project, Security, API tokens).
        Read-only tokens are enough for M(selfhost.immich.storagebox_info).
      - When not set, the E(HETZNER_API_TOKEN) environment variable is used, then E(HCLOUD_TOKEN).
      - This is a project token of the new Hetzner API, not the retired Robot web service credentials.
      - A token with surrounding whitespace or a line break (a vault value written as a block scalar ends in one)
        is refused before any call; the message names the option, never the value.
    type: str
    required: true
  api_url:
    description:
      - Base URL of the Hetzner API.
      - When not set, the E(HETZNER_API_URL) environment variable is used (for tests against a fake).
      - Checked before any call - C(https://) (C(http://) only to a loopback address, see O(api_allow_http)), a host
        and optional port, no user credentials, whitespace, query or fragment.
    type: str
    default: https://api.hetzner.com/v1
  api_timeout:
    description:
      - Timeout in seconds of one HTTP request, 1 to 600.
    type: int
    default: 30
requirements:
  - requests
notes:
  - Talks to the Hetzner API U(https://api.hetzner.com/v1) (C(/storage_boxes)), which replaced the Robot web
    service in 2025.
  - Rate limits (HTTP 429), server errors (5xx) and network errors are retried with exponential backoff within two
    minutes per call, waits included. A create whose answer was lost is resent only if a lookup by name does not
    find it.
    Changes run as asynchronous actions; the module waits up to ten minutes for each one to finish.
  - "Failures read C(<METHOD> <path> failed: <code>: <message>) with Hetzner's error code, for example
    C(invalid_input) or C(locked)."
  - Set the options of all Hetzner modules at once with C(module_defaults) and the action group
    C(group/selfhost.immich.hetzner).
"""
