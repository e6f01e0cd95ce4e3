#!/usr/bin/python
# Copyright: selfhost.immich contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: storagebox_info
short_description: Read Hetzner Storage Boxes with their settings and sub-accounts
version_added: 0.1.0
author: selfhost.immich contributors (@selfhost)
description:
  - Returns Hetzner Storage Boxes from the Hetzner API, each with its access settings, snapshot plan and sub-accounts.
  - Without O(id), O(name) or O(label_selector), returns every box of the project.
  - A box that does not exist gives an empty list, not a failure.
extends_documentation_fragment:
  - selfhost.immich.api.info_module
  - selfhost.immich.hetzner
  - selfhost.immich.api
options:
  id:
    description: ID of the one box to return.
    type: int
  name:
    description: Name of the one box to return.
    type: str
  label_selector:
    description: Return only the boxes matching this label selector, for example V(app=immich).
    type: str
"""

EXAMPLES = r"""
- name: Read the photo box
  selfhost.immich.storagebox_info:
    name: immich-photos
  register: photo_box

- name: Mount host of the first sub-account
  ansible.builtin.debug:
    msg: "{{ photo_box.storageboxes[0].subaccounts[0].server }}"

- name: Every box labelled for Immich
  selfhost.immich.storagebox_info:
    label_selector: app=immich
  register: immich_boxes
"""

RETURN = r"""
storageboxes:
  description:
    - The boxes as the API returns them (including C(access_settings), C(snapshot_plan), C(protection),
      C(username), C(server)), each with an added C(subaccounts) list.
  returned: always
  type: list
  elements: dict
  sample:
    - id: 123456
      name: immich-photos
      username: u123456
      server: u123456.your-storagebox.de
      status: active
      access_settings:
        reachable_externally: false
        samba_enabled: false
        ssh_enabled: true
        webdav_enabled: false
        zfs_enabled: true
      snapshot_plan: {max_snapshots: 14, minute: 30, hour: 3, day_of_week: null, day_of_month: null}
      subaccounts:
        - id: 42
          name: immich
          username: u123456-sub1
          server: u123456-sub1.your-storagebox.de
          home_directory: immich
"""

from ansible_collections.selfhost.immich.plugins.module_utils._api import (  # noqa: E402
    CONTROL_CHARS,
    name_problem,
    range_problem,
    run_module,
)
from ansible_collections.selfhost.immich.plugins.module_utils._hetzner import HetznerClient  # noqa: E402

ARGUMENT_SPEC = dict(
    id=dict(type="int"),
    name=dict(type="str"),
    label_selector=dict(type="str"),
)


def input_problems(params: dict) -> list[str | None]:
    """What is wrong with the options on their own; checked before any call."""
    problems = [name_problem("name", params["name"], 100), range_problem("id", params["id"], 1)]
    selector = params["label_selector"]
    if selector is not None and (not selector.strip() or CONTROL_CHARS.search(selector)):
        problems.append("label_selector must not be empty or contain control characters")
    return problems


def manage(module, client) -> dict:
    params = module.params
    if params["id"] is not None or params["name"] is not None:
        box = client.find_box(params["id"], params["name"])
        boxes = [box] if box else []
    else:
        selector = {"label_selector": params["label_selector"]} if params["label_selector"] else None
        boxes = client.list_all("/storage_boxes", "storage_boxes", selector)
    for box in boxes:
        box["subaccounts"] = client.subaccounts(box["id"])
    return dict(changed=False, storageboxes=boxes)


def main() -> None:
    run_module(HetznerClient, ARGUMENT_SPEC, manage, input_problems,
               mutually_exclusive=[("id", "name", "label_selector")])


if __name__ == "__main__":
    main()
