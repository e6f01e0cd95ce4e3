#!/usr/bin/python
# Copyright: selfhost.immich contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: storagebox
short_description: Order, configure or delete a Hetzner Storage Box
version_added: 0.1.0
author: selfhost.immich contributors (@selfhost)
description:
  - Configures the name, labels, delete protection, access settings and automatic snapshot plan of a Hetzner
    Storage Box through the Hetzner API.
  - Only the options you set are managed; an option left out is left as it is.
  - With O(state=present) (the default), a box named O(name) that does not exist is ordered (C(POST /storage_boxes))
    when O(storage_box_type), O(location) and O(password) are given, then configured like an existing one. Without
    them a missing box is an error, so a typo in O(name) never orders a second box. A box is billed from its order.
    The same C(state) switch as M(selfhost.immich.storagebox_subaccount) and C(hetzner.hcloud.storage_box), rather
    than a separate C(create) flag, because ordering needs the very options that only make sense for it.
  - O(storage_box_type), O(location), O(password) and O(ssh_keys) only take effect when the box is ordered. An
    existing box of another type or location is an error (this module never changes the type or moves a box);
    its password and SSH keys are left alone (the API never returns the password, and takes SSH keys only at order
    time; add keys later to C(.ssh/authorized_keys) over SFTP).
  - With O(state=absent), the box is deleted with everything on it, but only when O(confirm_name) repeats its name
    and its delete protection is off; otherwise the module fails and changes nothing.
  - Use M(selfhost.immich.storagebox_subaccount) for sub-accounts and M(selfhost.immich.storagebox_info) to read boxes.
extends_documentation_fragment:
  - selfhost.immich.hetzner
  - selfhost.immich.api
options:
  id:
    description:
      - ID of the Storage Box.
      - When set, the box is found by ID and O(name) renames it.
      - One of O(id) and O(name) is required. A box is ordered only by O(name), never by O(id).
    type: int
  name:
    description:
      - Name of the Storage Box. Finds the box when O(id) is not set, otherwise the new name of the box.
      - The name of the box to order when none has it.
    type: str
  state:
    description:
      - V(present) finds the box (ordering it when it is missing and O(storage_box_type), O(location) and
        O(password) are set) and configures it.
      - V(absent) deletes the box and all its data, sub-accounts and snapshots; it needs O(confirm_name).
        A box that does not exist is left absent.
    type: str
    choices: [present, absent]
    default: present
  confirm_name:
    description:
      - With O(state=absent), the name of the box once more, as a written confirmation of the deletion.
        The box is deleted only when this equals its name. Required with O(state=absent); ignored otherwise.
    type: str
  storage_box_type:
    description:
      - Type (size) of the box to order, for example V(bx11) (1 TB). Case does not matter.
      - Used to order a missing box; an existing box of another type is an error.
    type: str
  location:
    description:
      - Location of the box to order, for example V(fsn1), V(nbg1) or V(hel1). Case does not matter.
      - Used to order a missing box; an existing box elsewhere is an error.
    type: str
  password:
    description:
      - Password of the main account of the box to order; it must meet the Storage Box password policy
        (12 to 128 characters with an upper-case and a lower-case letter, a digit and a special character).
      - Used only when the box is ordered; never compared or changed afterwards, and never shown.
    type: str
  ssh_keys:
    description:
      - OpenSSH public keys (one line each, for example V(ssh-ed25519 AAAA... me@laptop)) the ordered box accepts.
      - Used only when the box is ordered (the API takes keys at order time only).
    type: list
    elements: str
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
      - When a box is ordered, the flags set here are part of the order; the others start off.
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
- name: Order the photo Storage Box unless it exists, then configure it
  selfhost.immich.storagebox:
    name: immich-photos
    storage_box_type: bx11
    location: fsn1
    password: "{{ vault_storagebox_password }}"
    ssh_keys:
      - "{{ lookup('ansible.builtin.file', 'files/immich_storagebox.pub') }}"
    delete_protection: true
    access_settings:
      ssh_enabled: true
      zfs_enabled: true

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

- name: Delete a box that is no longer needed (its delete protection must be off)
  selfhost.immich.storagebox:
    name: immich-old
    state: absent
    confirm_name: immich-old

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
      changes applied; for a box that would be ordered, the predicted box with V(null) for what only the API
      assigns (C(id), C(username), C(server)).
    - V(null) after O(state=absent).
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

import re  # noqa: E402

from ansible_collections.selfhost.immich.plugins.module_utils._api import (  # noqa: E402
    CONTROL_CHARS,
    MASK,
    ApiError,
    InputError,
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
    password_problem,
)

ACCESS_KEYS = ("reachable_externally", "samba_enabled", "ssh_enabled", "webdav_enabled", "zfs_enabled")
#: What ordering a box needs besides its name (the API's required fields of POST /storage_boxes).
ORDER_KEYS = ("storage_box_type", "location", "password")

ARGUMENT_SPEC = dict(
    id=dict(type="int"),
    name=dict(type="str"),
    state=dict(type="str", choices=["present", "absent"], default="present"),
    confirm_name=dict(type="str"),
    storage_box_type=dict(type="str"),
    location=dict(type="str"),
    password=dict(type="str", no_log=True),
    ssh_keys=dict(type="list", elements="str", no_log=False),
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
#: A Storage Box type or location name as the API spells them (bx11, fsn1), compared case-insensitively.
_CATALOG_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")
#: One OpenSSH public key line: key type, base64 blob, optional comment (printable, one line).
_PUBLIC_KEY = re.compile(r"(?:ssh|ecdsa|sk)-[a-z0-9@.-]+ [A-Za-z0-9+/]+={0,3}(?: [^\s][^\r\n]*)?")


def input_problems(params: dict) -> list[str | None]:
    """What is wrong with the options on their own; checked before any call. Never quotes the password or a key."""
    problems = [name_problem("name", params["name"], 100), labels_problem(params["labels"]),
                range_problem("id", params["id"], 1)]
    plan = params["snapshot_plan"] or {}
    if plan.get("enabled"):
        problems += [range_problem(f"snapshot_plan.{key}", plan[key], low, high)
                     for key, (low, high) in SNAPSHOT_PLAN_RANGES.items()]
    for option, example in (("storage_box_type", "bx11"), ("location", "fsn1")):
        value = params[option]
        if value is not None and not _CATALOG_NAME.fullmatch(value.lower()):
            problems.append(f"{option} must be a name like {example} (letters, digits and '-', at most 32)")
    problem = params["password"] is not None and password_problem(params["password"])
    if problem:
        problems.append("password does not meet the Storage Box password policy: " + problem)
    for index, key in enumerate(params["ssh_keys"] or []):
        if not _PUBLIC_KEY.fullmatch(key) or CONTROL_CHARS.search(key):
            problems.append(f"ssh_keys[{index}] is not one OpenSSH public key line (type, base64 key, optional "
                            "comment), for example the content of id_ed25519.pub")
    if params["state"] == "absent" and params["id"] is None and params["confirm_name"] != params["name"]:
        problems.append(confirm_problem(params["name"]))
    return problems


def confirm_problem(name: str) -> str:
    return (f"confirm_name must repeat the name of the Storage Box, {name!r}, to delete it with all its data "
            "(nothing was deleted)")


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
    """The calls that configure ``box``; one to be ordered (``id`` None, check mode only) gets a placeholder path."""
    box_id = box["id"]
    path = f"/storage_boxes/{path_segment(box_id, 'Storage Box id') if box_id is not None else '{new}'}"
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


def _catalog_name(value) -> str | None:
    """The name of a box's type or location, whether the API gives an object or a bare name."""
    return value.get("name") if isinstance(value, dict) else value


def check_conflicts(box: dict, params: dict) -> None:
    """An existing box of another type or in another location: refused before any write."""
    for option in ("storage_box_type", "location"):
        wanted, actual = params[option], _catalog_name(box.get(option))
        if wanted is not None and actual is not None and wanted.lower() != str(actual).lower():
            raise ApiError(f"Storage Box {box['name']!r} (ID {box['id']}) exists with {option} {actual}, not "
                           f"{wanted.lower()}; this module neither changes the type of a box nor moves it "
                           "(nothing was changed)", code="conflict")


def order_body(params: dict) -> dict:
    """The body of POST /storage_boxes."""
    body = dict(name=params["name"], storage_box_type=params["storage_box_type"].lower(),
                location=params["location"].lower(), password=params["password"])
    if params["ssh_keys"]:
        body["ssh_keys"] = params["ssh_keys"]
    if params["labels"]:
        body["labels"] = params["labels"]
    access = {key: value for key, value in (params["access_settings"] or {}).items() if value is not None}
    if access:
        body["access_settings"] = access
    return body


def ordered_box(body: dict) -> dict:
    """The box an order will make, as far as it can be known before the API answers (check mode)."""
    return dict(id=None, name=body["name"], username=None, server=None, system=None, status="initializing",
                labels=body.get("labels") or {}, protection={"delete": False},
                access_settings=dict(dict.fromkeys(ACCESS_KEYS, False), **body.get("access_settings", {})),
                snapshot_plan=None, location={"name": body["location"]},
                storage_box_type={"name": body["storage_box_type"]})


def order(module, client) -> dict:
    """Order the missing box named ``name`` (one POST, waiting for its action), then configure it."""
    params = module.params
    missing = [key for key in ORDER_KEYS if params[key] is None]
    if params["id"] is not None or missing:
        wanted = f"with ID {params['id']}" if params["id"] is not None else f"named {params['name']!r}"
        how = ("a box is ordered by name, not by ID" if params["id"] is not None
               else f"set {', '.join(missing)} to order one")
        raise ApiError(f"No Storage Box {wanted} in this project; {how} (nothing was changed).", code="not_found")
    body = order_body(params)
    if module.check_mode:
        box = ordered_box(body)
        follow = plan_changes(box, params)
        box = dict(box, **follow.desired)
    else:
        created = client.execute("POST", "/storage_boxes", body, recover=lambda: ordered_meanwhile(client, params))
        box = client.find_box(created["storage_box"]["id"])
        follow = plan_changes(box, params)
        if follow.apply(client, False):
            box = client.find_box(box["id"])
    # the diff shows that a password is sent, never which one
    after = dict(follow.desired, storage_box_type=body["storage_box_type"], location=body["location"], password=MASK)
    if "ssh_keys" in body:
        after["ssh_keys"] = body["ssh_keys"]
    return dict(changed=True, storagebox=box, diff=dict(before={}, after=after))


def ordered_meanwhile(client, params: dict) -> dict | None:
    """After a lost answer to the order: the box if it was ordered after all (then it is not ordered twice)."""
    box = client.find_box(None, params["name"])
    return {"storage_box": box} if box else None


def remove(module, client, box: dict | None) -> dict:
    """Delete ``box`` when confirmed by name and not protected; a missing box is already absent."""
    if box is None:
        return dict(changed=False, storagebox=None, diff=dict(before={}, after={}))
    if module.params["confirm_name"] != box["name"]:
        raise InputError(confirm_problem(box["name"]))
    if box["protection"]["delete"]:
        raise ApiError(f"Storage Box {box['name']!r} (ID {box['id']}) is protected against deletion; set "
                       "delete_protection: false first if it really is to be deleted (nothing was changed)",
                       code="protected")
    plan = Plan(box_state(box))
    plan.add("DELETE", f"/storage_boxes/{path_segment(box['id'], 'Storage Box id')}")
    plan.apply(client, module.check_mode)
    return dict(changed=True, storagebox=None, diff=dict(before=plan.current, after={}))


def manage(module, client) -> dict:
    params = module.params
    box = client.find_box(params["id"], params["name"])
    if params["state"] == "absent":
        return remove(module, client, box)
    if box is None:
        return order(module, client)
    check_conflicts(box, params)
    plan = plan_changes(box, params)
    if plan.apply(client, module.check_mode):
        box = client.find_box(box["id"])
    else:
        box = dict(box, **plan.desired)
    return dict(changed=bool(plan), storagebox=box, diff=dict(before=plan.current, after=plan.desired))


def main() -> None:
    run_module(HetznerClient, ARGUMENT_SPEC, manage, input_problems, required_one_of=[("id", "name")],
               required_if=[("state", "absent", ("confirm_name",))])


if __name__ == "__main__":
    main()
