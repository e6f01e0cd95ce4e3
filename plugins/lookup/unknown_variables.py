# Copyright: selfhost.immich contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: unknown_variables
author: selfhost.immich contributors (@selfhost)
version_added: 0.2.0
short_description: Defined variables named like a role's that the role does not know, with the closest known name
description:
  - Returns one message per defined variable whose name starts with C(<role>_) and that the role does not know, each
    naming the closest known name (a typo such as C(docker_instal_source) gives
    C(docker_instal_source is not a variable of selfhost.immich.docker - did you mean docker_install_source?)).
    An empty list when every such name is known.
  - Known names are the options of every entry point in the role's C(meta/argument_specs.yml), the top-level keys of
    its C(defaults/*.yml) and C(vars/*.yml), and every C(register) name, C(set_fact) key and task or block C(vars)
    key in its C(tasks/*.yml) and C(handlers/*.yml), so a role that runs twice in a play does not trip over its own
    registered results.
  - Names with a double underscore after the prefix (C(<role>__*)) are scratch variables and never checked.
  - Only the names of the variables are read, never their values. Runs on the controller, in-process.
  - The shared first task of every selfhost.immich role (the internal C(selfhost.immich.preflight) role) fails the
    run when this list is not empty.
options:
  _terms:
    description: The role's name, which is its variables' prefix (exactly one).
    type: list
    elements: str
    required: true
  role_dir:
    description:
      - The role's directory, whose files give the known names.
      - If not given, the role of that name in this collection (C(roles/<role>)).
    type: path
"""

EXAMPLES = r"""
- name: Refuse unknown docker_* variables
  ansible.builtin.assert:
    that: unknown | length == 0
    fail_msg: "{{ unknown }}"
  vars:
    unknown: "{{ query('selfhost.immich.unknown_variables', 'docker') }}"
"""

RETURN = r"""
_value:
  description:
    - One message per unknown variable, sorted by name, each with the closest known name or a pointer to the role's
      README when no known name is close.
    - A single message saying that no names were found when the role's directory holds none (a wrong O(role_dir)).
  type: list
  elements: str
"""

import difflib  # noqa: E402
import re  # noqa: E402
from pathlib import Path  # noqa: E402

import yaml  # noqa: E402
from ansible.errors import AnsibleLookupError  # noqa: E402
from ansible.plugins.lookup import LookupBase  # noqa: E402

# The collection's roles/ (plugins/lookup/<this file> -> the collection's root).
ROLES = Path(__file__).resolve().parents[2] / "roles"
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the same YAML as safe_load, faster where libyaml is
# register: name, found without executing anything (set_fact and vars keys are read from the parsed YAML).
_REGISTER = re.compile(r"^\s*register:\s*([A-Za-z_][A-Za-z0-9_]*)\s*$", re.M)


def _yaml(path):
    try:
        return yaml.load(path.read_text(), Loader=_LOADER) or {}
    except (OSError, yaml.YAMLError):
        return {}


def _task_names(node, found):
    """Names a role's task files bind: set_fact keys and task/block vars keys (registers are found by regex)."""
    if isinstance(node, list):
        for item in node:
            _task_names(item, found)
    elif isinstance(node, dict):
        for key in ("ansible.builtin.set_fact", "set_fact", "vars"):
            if isinstance(node.get(key), dict):
                found.update(k for k in node[key] if isinstance(k, str))
        for key in ("block", "rescue", "always"):
            _task_names(node.get(key), found)


def known_names(role_dir):
    """Every variable name the role at ``role_dir`` declares, derives, sets or registers."""
    role_dir = Path(role_dir)
    known = set()
    specs = _yaml(role_dir / "meta" / "argument_specs.yml")
    specs = specs.get("argument_specs") if isinstance(specs, dict) else None
    for entry in (specs or {}).values():
        known.update((entry or {}).get("options") or {})
    for folder in ("defaults", "vars"):
        for path in sorted((role_dir / folder).glob("*.yml")):
            data = _yaml(path)
            if isinstance(data, dict):
                known.update(data)
    for folder in ("tasks", "handlers"):
        for path in sorted((role_dir / folder).glob("*.yml")):
            try:
                known.update(_REGISTER.findall(path.read_text()))
            except OSError:
                continue
            _task_names(_yaml(path), known)
    return known


def unknown_variables(names, role, role_dir):
    """One message per name ``<role>_*`` in ``names`` that the role does not know, with the closest known name."""
    prefix = f"{role}_"
    known = known_names(role_dir)
    if not known:
        return [f"preflight: no variable names found under {role_dir} (meta/argument_specs.yml missing?)"]
    candidates = sorted(known)
    messages = []
    for name in sorted(set(names)):
        if not name.startswith(prefix) or name.startswith(f"{role}__") or name in known:
            continue
        close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
        hint = f" - did you mean {close[0]}?" if close else " (no similar name; see the role's README)"
        messages.append(f"{name} is not a variable of selfhost.immich.{role}{hint}")
    return messages


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        if len(terms) != 1 or not isinstance(terms[0], str) or not terms[0]:
            raise AnsibleLookupError(f"unknown_variables takes exactly one role name, not {terms!r}")
        if variables is None:
            raise AnsibleLookupError("unknown_variables needs the defined variables (call it from a task)")
        role = terms[0]
        role_dir = self.get_option("role_dir") or str(ROLES / role)
        return unknown_variables(list(variables), role, role_dir)
