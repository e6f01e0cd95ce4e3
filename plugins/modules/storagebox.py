#!/usr/bin/python
# Copyright: selfhost.immich contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: storagebox
short_description: Configure an existing Hetzner Storage Box
version_added: 0.1.0
author: selfhost.immich contributors (@selfhost)
description:
  - Configures the name, labels, delete protection, access settings and automatic snapshot plan of a Hetzner
    Storage Box through the Hetzner API.
  - Only the options you set are managed; an option left out is left as it is.
  - The box must exist. This module neither orders nor deletes boxes, because both are billing and data-loss
    decisions better taken in the Hetzner Console (and SSH keys can only be given when a box is ordered).
  - Use M(selfhost.immich.storagebox_subaccount) for sub-accounts and M(selfhost.immich.storagebox_info) to read boxes.
extends_documentation_fragment:
  - selfhost.immich.hetzner
  - selfhost.immich.api
options:
  id:
    description:
      - ID of the Storage Box.
      - When set, the box is found by ID and O(name) renames it.
      - One of O(id) and O(name) is required.
    type: int
  name:
    description:
      - Name of the Storage Box. Finds the box when O(id) is not set, otherwise the new name of the box.
    type: str
  labels:
    description:
      - Labels of the box, replacing all existing ones. V({}) removes all labels.
    type: dict
  delete_protection:
    description:
      - Whether the box is protected against deletion.
    type: bool
  access_settings:
    description:
      - Services and reachability of the main account.
      - A partial update - a sub-option left out keeps its current value.
    type: dict
    suboptions:
      ssh_enabled:
        description: Allow SSH, SFTP, SCP, rsync and BorgBackup (ports 22 and 23).
        type: bool
      webdav_enabled:
        description: Allow WebDAV over HTTPS. Outside clients also need O(access_settings.reachable_externally=true).
        type: bool
      samba_enabled:
        description: Allow Samba/CIFS.
        type: bool
      reachable_externally:
        description: Allow access from outside the Hetzner network.
        type: bool
      zfs_enabled:
        description: Show the snapshots in the C(.zfs) directory of the home directory.
        type: bool
  snapshot_plan:
    description:
      - The automatic snapshot plan, taken as a whole. Times are UTC; a day left out means every day.
      - Any difference replaces the plan (the API keeps only one); V(false) for O(snapshot_plan.enabled) removes it.
        Snapshots already taken are kept either way.
    type: dict
    suboptions:
      enabled:
        description: Whether the box has a snapshot plan. With V(false), the other sub-options are ignored.
        type: bool
        default: true
      max_snapshots:
        description: How many automatic snapshots to keep; the oldest is deleted beyond that. Required when enabled.
        type: int
      minute:
        description: Minute of the snapshot, 0 to 59. Required when enabled.
        type: int
      hour:
        description: Hour of the snapshot (UTC), 0 to 23. Required when enabled.
        type: int
      day_of_week:
        description: Day of the week, 1 (Monday) to 7 (Sunday). Leave out for every day.
        type: int
      day_of_month:
        description: Day of the month, 1 to 31. Leave out for every day.
        type: int
"""

EXAMPLES = r"""
- name: Configure the photo Storage Box for SSHFS and restic
  selfhost.immich.storagebox:
    name: immich-photos
    delete_protection: true
    access_settings:
      ssh_enabled: true
      zfs_enabled: true
    snapshot_plan:
      max_snapshots: 14
      minute: 30
      hour: 3
    labels:
      app: immich

- name: Rename a box found by ID and drop its snapshot plan
  selfhost.immich.storagebox:
    id: 123456
    name: immich-archive
    snapshot_plan:
      enabled: false

- name: Same settings for every Hetzner module of the play
  module_defaults:
    group/selfhost.immich.hetzner:
      api_token: "{{ vault_hetzner_api_token }}"
  block:
    - name: Let the Synology reach the box over WebDAV
      selfhost.immich.storagebox:
        name: immich-photos
        access_settings:
          webdav_enabled: true
          reachable_externally: true
"""

RETURN = r"""
storagebox:
  description:
    - The Storage Box as the API returns it after the changes. In check mode, the current box with the predicted
      changes applied.
  returned: success
  type: dict
  sample:
    id: 123456
    name: immich-photos
    username: u123456
    server: u123456.your-storagebox.de
    status: active
    labels: {app: immich}
    protection: {delete: true}
    access_settings:
      reachable_externally: false
      samba_enabled: false
    snapshot_plan: {max_snapshots: 14, minute: 30, hour: 3, day_of_week: null, day_of_month: null}
"""

from ansible_collections.selfhost.immich.plugins.module_utils._api import (  # noqa: E402
    ApiError,
    Plan,
    changed_fields,
    name_problem,
    path_segment,
    range_problem,
    run_module,
)
from ansible_collections.selfhost.immich.plugins.module_utils._hetzner import (  # noqa: E402
    SNAPSHOT_PLAN_KEYS,
    HetznerClient,
    labels_problem,
)

ACCESS_KEYS = ("reachable_externally", "samba_enabled", "ssh_enabled", "webdav_enabled", "zfs_enabled")

ARGUMENT_SPEC = dict(
    id=dict(type="int"),
    name=dict(type="str"),
    labels=dict(type="dict"),
    delete_protection=dict(type="bool"),
    access_settings=dict(type="dict", options={key: dict(type="bool") for key in ACCESS_KEYS}),
    snapshot_plan=dict(
        type="dict",
        options=dict(enabled=dict(type="bool", default=True),
                     **{key: dict(type="int") for key in SNAPSHOT_PLAN_KEYS}),
        required_if=[("enabled", True, ("max_snapshots", "minute", "hour"))],
    ),
)


#: Ranges of the snapshot plan's fields (API: enable_snapshot_plan).
SNAPSHOT_PLAN_RANGES = {"max_snapshots": (1, None), "minute": (0, 59), "hour": (0, 23), "day_of_week": (1, 7),
                        "day_of_month": (1, 31)}


def input_problems(params: dict) -> list[str | None]:
    """What is wrong with the options on their own; checked before any call."""
    problems = [name_problem("name", params["name"], 100), labels_problem(params["labels"]),
                range_problem("id", params["id"], 1)]
    plan = params["snapshot_plan"] or {}
    if plan.get("enabled"):
        problems += [range_problem(f"snapshot_plan.{key}", plan[key], low, high)
                     for key, (low, high) in SNAPSHOT_PLAN_RANGES.items()]
    return problems


def box_state(box: dict) -> dict:
    """The settings this module manages, in the API's shape: the diff's before."""
    plan = box.get("snapshot_plan")
    return dict(
        name=box["name"],
        labels=box.get("labels") or {},
        protection={"delete": box["protection"]["delete"]},
        access_settings={key: box["access_settings"].get(key) for key in ACCESS_KEYS},
        snapshot_plan={key: plan.get(key) for key in SNAPSHOT_PLAN_KEYS} if plan else None,
    )


def plan_changes(box: dict, params: dict) -> Plan:
    path = f"/storage_boxes/{path_segment(box['id'], 'Storage Box id')}"
    plan = Plan(box_state(box))
    current = plan.current
    rename = params["name"] if params["id"] is not None else None
    plan.send("PUT", path, changed_fields(current, {"name": rename, "labels": params["labels"]}))
    plan.send("POST", path + "/actions/change_protection",
              changed_fields(current["protection"], {"delete": params["delete_protection"]}), key="protection")
    plan.send("POST", path + "/actions/update_access_settings",
              changed_fields(current["access_settings"], params["access_settings"]), key="access_settings")
    snapshots = params["snapshot_plan"]
    if snapshots is not None:
        wanted = {key: snapshots[key] for key in SNAPSHOT_PLAN_KEYS} if snapshots["enabled"] else None
        if wanted != current["snapshot_plan"]:
            if wanted is None:
                plan.add("POST", path + "/actions/disable_snapshot_plan")
            else:
                plan.add("POST", path + "/actions/enable_snapshot_plan",
                         {key: value for key, value in wanted.items() if value is not None})
            plan.desired["snapshot_plan"] = wanted
    return plan


def manage(module, client) -> dict:
    params = module.params
    box = client.find_box(params["id"], params["name"])
    if box is None:
        wanted = f"with ID {params['id']}" if params["id"] is not None else f"named {params['name']!r}"
        raise ApiError(f"No Storage Box {wanted} in this project; this module configures existing boxes "
                       "only (order one in the Hetzner Console).", code="not_found")
    plan = plan_changes(box, params)
    if plan.apply(client, module.check_mode):
        box = client.find_box(box["id"])
    else:
        box = dict(box, **plan.desired)
    return dict(changed=bool(plan), storagebox=box, diff=dict(before=plan.current, after=plan.desired))


def main() -> None:
    run_module(HetznerClient, ARGUMENT_SPEC, manage, input_problems, required_one_of=[("id", "name")])


if __name__ == "__main__":
    main()
