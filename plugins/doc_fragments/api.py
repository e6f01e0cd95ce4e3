# Copyright: selfhost.immich contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What every API module of the collection shares, Hetzner and RunPod alike (plugins/module_utils/_api.py).

- selfhost.immich.api: the vendor-neutral connection options, the checks made before any call, retries and the
  attributes of a module that manages one resource (all fully supported). A module lists it after its vendor's
  fragment (selfhost.immich.hetzner, selfhost.immich.runpod: token, URL, action group).
- selfhost.immich.api.info_module: the attributes of a module that only reads. A fragment listed earlier wins
  where two set the same field, so it comes before selfhost.immich.api.
"""

from __future__ import annotations


class ModuleDocFragment:

    DOCUMENTATION = r"""
options:
  api_allow_http:
    description:
      - Allow a plain C(http://) O(api_url) to a host that is not this machine, for test labs only.
      - Without it such a URL is refused before any call, because the API token would travel unencrypted;
        C(http://) to a loopback address (C(127.0.0.0/8), C(::1), C(localhost)) is always allowed.
    type: bool
    default: false
  api_timeout:
    description:
      - Seconds to wait for each HTTP response, 1 to 600.
    type: int
    default: 30
requirements:
  - requests
notes:
  - O(api_token) with surrounding whitespace or a line break (a vault value written as a block scalar ends in one)
    is refused before any call; the message names the option, never the value.
  - O(api_url) is checked before any call - C(https://) (C(http://) only to a loopback address, see
    O(api_allow_http)), a host and optional port, no user credentials, whitespace, query or fragment.
  - Rate limits (HTTP 429), server errors (5xx) and network errors are retried with exponential backoff within two
    minutes per call, waits included. A create whose answer was lost is resent only if a lookup by name does not
    find it.
attributes:
  check_mode:
    description:
      - Can run in check mode; reads the API and returns the C(changed) status and results it predicts without
        sending any change (the planned writes are simply not sent, so the prediction is exact).
    support: full
  diff_mode:
    description: Returns the managed settings before and after (secrets masked) in diff mode.
    support: full
  idempotent:
    description:
      - A second run with the same options only reads the API and reports C(changed=false).
    support: full
"""

    INFO_MODULE = r"""
options: {}
attributes:
  check_mode:
    support: full
    details: Only reads the API, so it runs the same in check mode.
  diff_mode:
    support: N/A
    details: Changes nothing, so there is no diff.
  idempotent:
    support: full
    details: Only reads the API.
"""
