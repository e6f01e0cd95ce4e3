#!/usr/bin/env python3
"""Variables named like a role's that the role does not know, each with the closest known name.

Run by the selfhost.immich.preflight role on the controller (collection roles cannot embed filter plugins):
    unknown_variables.py ROLE ROLE_DIR '["defined", "variable", "names"]'
prints a JSON list of messages (empty when every name is known). Names only - never values.

Known names are the options of every entry point in the role's meta/argument_specs.yml, the top-level keys of
its vars/*.yml and defaults/*.yml, and every register, set_fact key and task/block vars key in its tasks/ and
handlers/ (so a role that runs twice in a play does not trip over its own registered results). Names with a
double underscore after the prefix (<role>__*) are scratch variables and never checked.
"""

from __future__ import annotations

import difflib
import json
import re
import sys
from pathlib import Path

import yaml

# register: name / set_fact keys / vars keys, found without executing anything.
_REGISTER = re.compile(r"^\s*register:\s*([A-Za-z_][A-Za-z0-9_]*)\s*$", re.M)


def _yaml(path: Path):
    try:
        return yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return {}


def _task_names(node, found: set[str]) -> None:
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


def known_names(role_dir: Path) -> set[str]:
    known: set[str] = set()
    specs = _yaml(role_dir / "meta" / "argument_specs.yml").get("argument_specs") or {}
    for entry in specs.values():
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


def unknown(names, role: str, role_dir: str) -> list[str]:
    """One message per defined variable `<role>_*` that the role does not know, with the closest known name."""
    prefix = f"{role}_"
    known = known_names(Path(role_dir))
    if not known:
        return [f"preflight: no variable names found under {role_dir} (meta/argument_specs.yml missing?)"]
    messages = []
    for name in sorted(set(names)):
        if not name.startswith(prefix) or name.startswith(f"{role}__") or name in known:
            continue
        close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
        hint = f" - did you mean {close[0]}?" if close else " (no similar name; see the role's README)"
        messages.append(f"{name} is not a variable of selfhost.immich.{role}{hint}")
    return messages


def main(argv: list[str]) -> int:
    role, role_dir, names = argv[1], argv[2], json.loads(argv[3])
    print(json.dumps(unknown(names, role, role_dir)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
