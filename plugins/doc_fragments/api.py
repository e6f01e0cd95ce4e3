# Copyright: selfhost.immich contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The transport option every API module of the collection shares (Hetzner and RunPod alike: module_utils/_api)."""

from __future__ import annotations


class ModuleDocFragment(object):

    DOCUMENTATION = r"""
options:
  api_allow_http:
    description:
      - Allow a plain C(http://) O(api_url) to a host that is not this machine, for test labs only.
      - Without it such a URL is refused before any call, because the API token would travel unencrypted;
        C(http://) to a loopback address (C(127.0.0.0/8), C(::1), C(localhost)) is always allowed.
    type: bool
    default: false
"""
