"""Every task a role delegates to the controller runs there without become.

site.yml has `become: true` for the server. A task or block with `delegate_to: localhost` inherits it, and on the
controller that means sudo on the user's own machine: a password prompt, or a failure where sudo is not set up
(the runpod_endpoint role's API block did this until it got `become: false`). The roles' API calls need no root.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROLES = Path(__file__).resolve().parents[3] / "roles"
TASK_FILES = sorted([*ROLES.glob("*/tasks/*.yml"), *ROLES.glob("*/handlers/*.yml")])


def _delegated(tasks, inherited_become=None, where=""):
    """(where, become in effect) for every task or block delegated to localhost."""
    for index, task in enumerate(tasks or []):
        if not isinstance(task, dict):
            continue
        become = task.get("become", inherited_become)
        here = f"{where}[{index}] {task.get('name', '')}".strip()
        if task.get("delegate_to") in ("localhost", "127.0.0.1"):
            yield here, become
        for key in ("block", "rescue", "always"):
            yield from _delegated(task.get(key), become, f"{here} > {key}")


def test_the_roles_delegate_something_to_the_controller():
    found = [where for path in TASK_FILES for where, _ in _delegated(yaml.safe_load(path.read_text()))]
    assert len(found) >= 3, found  # the Hetzner API (sshfs_storagebox, restic) and the RunPod API calls


@pytest.mark.parametrize("path", TASK_FILES, ids=lambda p: f"{p.parts[-3]}/{p.name}")
def test_delegated_tasks_do_not_become_root_on_the_controller(path):
    offending = [where for where, become in _delegated(yaml.safe_load(path.read_text())) if become is not False]
    assert not offending, f"{path}: delegated to localhost without `become: false`: {offending}"
