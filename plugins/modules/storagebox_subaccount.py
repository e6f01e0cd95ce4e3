#!/usr/bin/python
# Copyright: selfhost.immich contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: storagebox_subaccount
short_description: Manage a sub-account of a Hetzner Storage Box
version_added: 0.1.0
author: selfhost.immich contributors (@selfhost)
description:
  - Creates, updates or deletes a sub-account of a Hetzner Storage Box through the Hetzner API.
  - A sub-account is found by its O(name) within the box, not by the username Hetzner generates for it
    (C(u123456-sub1)); the username is returned.
  - Only the options you set are managed; an option left out is left as it is.
extends_documentation_fragment:
  - selfhost.immich.hetzner
  - selfhost.immich.api
attributes:
  diff_mode:
    details: The password is never shown; when one is sent, the diff shows it as C(********).
  idempotent:
    support: partial
    details: Idempotent unless O(update_password=always), which sets the password on every run
      (the API never returns it, so it cannot be compared).
options:
  storagebox_id:
    description: ID of the Storage Box that holds the sub-account.
    type: int
    required: true
  name:
    description:
      - Name of the sub-account (the API's C(name), up to 50 characters), unique within the box.
    type: str
    required: true
  state:
    description: Whether the sub-account exists. V(absent) deletes it; the files in its home directory stay.
    type: str
    choices: [present, absent]
    default: present
  home_directory:
    description:
      - Home directory of the sub-account, relative to the box root and without a leading C(/), for example
        V(immich/library). Created when missing.
      - Checked before any call - C(/)-separated names of letters, digits, C(.), C(_) and C(-); no C(.) or C(..)
        segment, empty segment, trailing C(/), space or line break (so never the box root or above it).
      - Required to create the sub-account. Changing it moves the sub-account, not the files.
    type: str
  password:
    description:
      - Password of the sub-account. Required to create it.
      - Hetzner's policy, checked before any call - 12 to 128 characters from a-z, A-Z, ÄÖÜäöüß, digits and
        C(^°!§$%/()=?+#-.,;:~*@{}_&), with at least one upper-case letter, lower-case letter, digit and
        special character.
    type: str
  update_password:
    description:
      - V(on_create) sets O(password) only when the sub-account is created.
      - V(always) sets it on every run and so always reports a change.
    type: str
    choices: [on_create, always]
    default: on_create
  description:
    description: Free-text description of the sub-account.
    type: str
  labels:
    description: Labels of the sub-account, replacing all existing ones.
    type: dict
  access_settings:
    description:
      - Services, reachability and write access of the sub-account.
      - A partial update - a sub-option left out keeps its current value (on creation, Hetzner's default).
    type: dict
    suboptions:
      ssh_enabled:
        description: Allow SSH, SFTP, SCP, rsync and BorgBackup.
        type: bool
      webdav_enabled:
        description: Allow WebDAV over HTTPS.
        type: bool
      samba_enabled:
        description: Allow Samba/CIFS.
        type: bool
      reachable_externally:
        description: Allow access from outside the Hetzner network.
        type: bool
      readonly:
        description: Allow reading only.
        type: bool
"""

EXAMPLES = r"""
- name: Sub-account for the Immich library, mounted over SSHFS
  selfhost.immich.storagebox_subaccount:
    storagebox_id: 123456
    name: immich
    home_directory: immich
    password: "{{ vault_storagebox_immich_password }}"
    description: Immich media over SSHFS
    access_settings:
      ssh_enabled: true
      readonly: false
  register: immich_subaccount

- name: Show where to mount it
  ansible.builtin.debug:
    msg: "{{ immich_subaccount.username }}@{{ immich_subaccount.hostname }}:/home"

- name: Rotate the password of the restic sub-account
  selfhost.immich.storagebox_subaccount:
    storagebox_id: 123456
    name: restic
    password: "{{ vault_storagebox_restic_password }}"
    update_password: always
  no_log: true

- name: Remove an old sub-account (its files stay on the box)
  selfhost.immich.storagebox_subaccount:
    storagebox_id: 123456
    name: old-backup
    state: absent
"""

RETURN = r"""
subaccount:
  description:
    - The sub-account as the API returns it after the changes; in check mode the predicted settings.
    - V(null) when O(state=absent).
  returned: success
  type: dict
  sample:
    id: 42
    name: immich
    username: u123456-sub1
    server: u123456-sub1.your-storagebox.de
    home_directory: immich
    description: Immich media over SSHFS
    labels: {}
    storage_box: 123456
    access_settings:
      reachable_externally: false
      readonly: false
      samba_enabled: false
      ssh_enabled: true
      webdav_enabled: false
username:
  description: Login name of the sub-account; V(null) when absent or not created yet (check mode).
  returned: success
  type: str
  sample: u123456-sub1
hostname:
  description:
    - Host name to reach the sub-account (SFTP on ports 22 and 23, WebDAV, Samba); the API's C(server), else
      C(<username>.your-storagebox.de). V(null) when there is no username yet.
  returned: success
  type: str
  sample: u123456-sub1.your-storagebox.de
"""

from ansible_collections.selfhost.immich.plugins.module_utils._api import (  # noqa: E402
    CONTROL_CHARS,
    MASK,
    InputError,
    Plan,
    changed_fields,
    name_problem,
    path_segment,
    range_problem,
    run_module,
)
from ansible_collections.selfhost.immich.plugins.module_utils._hetzner import (  # noqa: E402
    HetznerClient,
    home_directory_problem,
    labels_problem,
    password_problem,
)

ACCESS_KEYS = ("reachable_externally", "readonly", "samba_enabled", "ssh_enabled", "webdav_enabled")

ARGUMENT_SPEC = dict(
    storagebox_id=dict(type="int", required=True),
    name=dict(type="str", required=True),
    state=dict(type="str", choices=["present", "absent"], default="present"),
    home_directory=dict(type="str"),
    password=dict(type="str", no_log=True),
    update_password=dict(type="str", choices=["on_create", "always"], default="on_create", no_log=False),
    description=dict(type="str"),
    labels=dict(type="dict"),
    access_settings=dict(type="dict", options={key: dict(type="bool") for key in ACCESS_KEYS}),
)


def subaccount_state(sub: dict) -> dict:
    """The settings this module manages, in the API's shape: the diff's before."""
    return dict(
        name=sub["name"],
        home_directory=sub["home_directory"],
        description=sub.get("description") or "",
        labels=sub.get("labels") or {},
        access_settings={key: sub["access_settings"].get(key) for key in ACCESS_KEYS},
    )


def input_problems(params: dict) -> list[str | None]:
    """What is wrong with the options on their own (a bad home directory or password); checked before any call."""
    problems = [range_problem("storagebox_id", params["storagebox_id"], 1), name_problem("name", params["name"], 50),
                labels_problem(params["labels"])]
    if params["home_directory"] is not None:
        problems.append(home_directory_problem(params["home_directory"]))
    if params["description"] is not None and CONTROL_CHARS.search(params["description"]):
        problems.append("description must not contain line breaks or control characters")
    problem = params["password"] is not None and password_problem(params["password"])
    if problem:
        problems.append("password does not meet the Storage Box password policy: " + problem)
    return problems


def plan_create(client, box_path: str, params: dict) -> Plan:
    body = {key: params[key] for key in ("name", "home_directory", "password", "description", "labels")
            if params[key] is not None}
    access = {key: value for key, value in (params["access_settings"] or {}).items() if value is not None}
    if access:
        body["access_settings"] = access
    plan = Plan(None)
    plan.add("POST", box_path + "/subaccounts", body, recover=lambda: created_meanwhile(client, params))
    plan.desired = dict(description="", labels={}, access_settings={})
    plan.desired.update(body, password=MASK)  # the diff shows that a password is sent, never which one
    return plan


def created_meanwhile(client, params: dict) -> dict | None:
    """After a lost answer to the create: the sub-account if it was created after all (then it is not resent)."""
    sub = client.find_subaccount(params["storagebox_id"], params["name"])
    return {"subaccount": sub} if sub else None


def plan_update(sub_path: str, sub: dict, params: dict) -> Plan:
    plan = Plan(subaccount_state(sub))
    current = plan.current
    plan.send("POST", sub_path + "/actions/change_home_directory",
              changed_fields(current, {"home_directory": params["home_directory"]}))
    plan.send("POST", sub_path + "/actions/update_access_settings",
              changed_fields(current["access_settings"], params["access_settings"]), key="access_settings")
    plan.send("PUT", sub_path,
              changed_fields(current, {"description": params["description"], "labels": params["labels"]}))
    if params["password"] is not None and params["update_password"] == "always":
        plan.add("POST", sub_path + "/actions/reset_subaccount_password", {"password": params["password"]})
        plan.desired["password"] = MASK
    return plan


def manage(module, client) -> dict:
    params = module.params
    box_path = f"/storage_boxes/{path_segment(params['storagebox_id'], 'storagebox_id')}"
    sub = client.find_subaccount(params["storagebox_id"], params["name"])
    sub_path = f"{box_path}/subaccounts/{path_segment(sub['id'], 'sub-account id')}" if sub else None
    if params["state"] == "absent":
        plan = Plan(subaccount_state(sub) if sub else None)
        if sub:
            plan.add("DELETE", sub_path)
        plan.desired = None
        plan.apply(client, module.check_mode)
        sub = None
    elif sub is None:
        if params["home_directory"] is None or params["password"] is None:
            raise InputError(f"Sub-account {params['name']!r} does not exist in Storage Box "
                             f"{params['storagebox_id']}; home_directory and password are needed to create it.")
        plan = plan_create(client, box_path, params)
        created = plan.apply(client, module.check_mode)
        if created:
            sub_path = f"{box_path}/subaccounts/{path_segment(created[0]['subaccount']['id'], 'sub-account id')}"
            sub = client.get(sub_path)["subaccount"]
    else:
        plan = plan_update(sub_path, sub, params)
        if plan.apply(client, module.check_mode):
            sub = client.get(sub_path)["subaccount"]
    if module.check_mode and plan.desired is not None:
        sub = dict(sub or {}, **{key: value for key, value in plan.desired.items() if key != "password"})
    return result(plan, sub)


def result(plan: Plan, sub: dict | None) -> dict:
    username = (sub or {}).get("username")
    hostname = (sub or {}).get("server") or (f"{username}.your-storagebox.de" if username else None)
    return dict(changed=bool(plan), subaccount=sub, username=username, hostname=hostname,
                diff=dict(before=plan.current or {}, after=plan.desired or {}))


def main() -> None:
    run_module(HetznerClient, ARGUMENT_SPEC, manage, input_problems,
               required_if=[("update_password", "always", ("password",))])


if __name__ == "__main__":
    main()
