# Copyright: selfhost.immich contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The attributes every module of the collection states, described once (after community.hrobot).

- selfhost.immich.attributes: what check_mode, diff_mode and idempotent mean here.
- selfhost.immich.attributes.managed: a module that changes one resource - all three fully supported.
- selfhost.immich.attributes.info_module: a module that only reads.
- selfhost.immich.attributes.actiongroup_hetzner / .actiongroup_runpod: membership of the action group
  (meta/runtime.yml) that C(module_defaults) can address.
"""

from __future__ import annotations


class ModuleDocFragment(object):

    DOCUMENTATION = r"""
options: {}
attributes:
  check_mode:
    description:
      - Can run in check mode; reads the API and returns the C(changed) status and results it predicts without
        sending any change (the planned writes are simply not sent, so the prediction is exact).
  diff_mode:
    description: Returns the managed settings before and after (secrets masked) in diff mode.
  idempotent:
    description:
      - A second run with the same options only reads the API and reports C(changed=false).
"""

    MANAGED = r"""
options: {}
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  idempotent:
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

    ACTIONGROUP_HETZNER = r"""
options: {}
attributes:
  action_group:
    description: Use C(group/selfhost.immich.hetzner) in C(module_defaults) to set the connection options once.
    support: full
    membership:
      - selfhost.immich.hetzner
"""

    ACTIONGROUP_RUNPOD = r"""
options: {}
attributes:
  action_group:
    description: Use C(group/selfhost.immich.runpod) in C(module_defaults) to set the connection options once.
    support: full
    membership:
      - selfhost.immich.runpod
"""
